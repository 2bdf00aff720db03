//! `pwdrift validate`: load and check desired-state files, offline.
//!
//! Output contract: diagnostics (errors and warnings) go to stderr; on success exactly one summary
//! line goes to stdout (`ok: 2 files, 1 tenant, 5 users, 1 group (1 warning)`), so scripts can
//! rely on it. Invalid input exits 1 after a last stderr line counting the errors.
//! `--format json` prints one JSON document on stdout instead ([`crate::render::diagnostics`]);
//! `--format github` prints workflow commands on stdout ([`crate::render::github`]), then the
//! summary or failure line. The exit code is the same in every format.

use std::collections::BTreeSet;

use crate::cli::{ExitStatus, ValidateArgs, ValidateFormat};
use crate::config::{self, diag, Diagnostic};
use crate::printer::Printer;

/// `n thing`/`n things`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The one-line summary of a valid desired state.
pub fn summary(loaded: &config::Loaded) -> String {
    let state = &loaded.state;
    let users: usize = state.tenants.iter().map(|t| t.users.len()).sum();
    let groups: usize = state.tenants.iter().map(|t| t.groups.len()).sum();
    let mut line = format!(
        "ok: {}, {}, {}, {}",
        count(state.files.len(), "file", "files"),
        count(state.tenants.len(), "tenant", "tenants"),
        count(users, "user", "users"),
        count(groups, "group", "groups"),
    );
    if !loaded.warnings.is_empty() {
        line.push_str(&format!(
            " ({})",
            count(loaded.warnings.len(), "warning", "warnings")
        ));
    }
    line
}

/// The last line after errors: `error: 3 errors in 2 files; nothing was changed`.
pub fn failure_line(diags: &[Diagnostic]) -> String {
    let errors: Vec<&Diagnostic> = diags.iter().filter(|d| d.is_error()).collect();
    let files: BTreeSet<_> = errors
        .iter()
        .flat_map(|d| d.labels.iter().map(|l| &l.origin.file))
        .collect();
    let mut line = format!("error: {}", count(errors.len(), "error", "errors"));
    if !files.is_empty() {
        line.push_str(&format!(" in {}", count(files.len(), "file", "files")));
    }
    line.push_str("; nothing was changed");
    line
}

pub fn run(args: ValidateArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let loaded = config::load_paths_with(
        &args.paths,
        &config::LoadOptions {
            allow_password_dirs: args.allow_password_dirs.clone(),
        },
    );
    let status = if loaded.is_ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    };
    match args.format {
        ValidateFormat::Text => text(&loaded, printer)?,
        ValidateFormat::Json => {
            let out = match &loaded {
                Ok(l) => crate::render::diagnostics::json(&l.warnings, Some(counts(l))),
                Err(invalid) => crate::render::diagnostics::json(&invalid.diagnostics, None),
            };
            printer.out(&out)?;
        }
        ValidateFormat::Github => {
            // the annotations, then the human summary as a plain log line
            let out = match &loaded {
                Ok(l) => format!(
                    "{}{}\n",
                    crate::render::github::diagnostics(&l.warnings),
                    summary(l)
                ),
                Err(invalid) => format!(
                    "{}{}\n",
                    crate::render::github::diagnostics(&invalid.diagnostics),
                    failure_line(&invalid.diagnostics)
                ),
            };
            printer.out(&out)?;
        }
    }
    Ok(status)
}

fn counts(loaded: &config::Loaded) -> crate::render::diagnostics::Counts {
    let state = &loaded.state;
    crate::render::diagnostics::Counts {
        files: state.files.len(),
        tenants: state.tenants.len(),
        users: state.tenants.iter().map(|t| t.users.len()).sum(),
        groups: state.tenants.iter().map(|t| t.groups.len()).sum(),
    }
}

/// Offline, a domain cannot be resolved to its tenant id: with more than one tenant, some written
/// as domains, two of them may be one tenant (its initial domain, a verified domain, its id).
/// `plan` and `apply` resolve them and check the union; this says so.
pub fn alias_note(state: &config::DesiredState) -> Option<String> {
    let domains = state
        .tenants
        .iter()
        .filter(|t| matches!(t.tenant, config::TenantRef::Domain(_)))
        .count();
    (state.tenants.len() > 1 && domains > 0).then(|| {
        format!(
            "note: {} written as domains; whether they are the same tenant is checked by plan",
            count(domains, "tenant", "tenants")
        )
    })
}

/// The text format: diagnostics on stderr, the summary on stdout.
fn text(loaded: &Result<config::Loaded, config::Invalid>, printer: &Printer) -> anyhow::Result<()> {
    let color = printer.color_err();
    match loaded {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                printer.diagnostics(&format!(
                    "{}\n",
                    diag::render(&loaded.warnings, &loaded.sources, color)
                ));
            }
            printer.outln(&summary(loaded))?;
            if let Some(note) = alias_note(&loaded.state) {
                printer.info(&note);
            }
        }
        Err(invalid) => {
            printer.diagnostics(&format!(
                "{}\n{}\n",
                diag::render(&invalid.diagnostics, &invalid.sources, color),
                failure_line(&invalid.diagnostics)
            ));
        }
    }
    Ok(())
}
