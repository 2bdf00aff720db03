//! `pwdrift validate`: load and check desired-state files, offline.
//!
//! Output contract: diagnostics (errors and warnings) go to stderr; on success exactly one summary
//! line goes to stdout (`ok: 2 files, 1 tenant, 5 users, 1 group (1 warning)`), so scripts can
//! rely on it. Invalid input exits 1 after a last stderr line counting the errors.
//! `--format json` prints one JSON document on stdout instead ([`crate::render::diagnostics`]);
//! `--format github` prints workflow commands on stdout ([`crate::render::github`]), then the
//! summary or failure line. The exit code is the same in every format.

use std::collections::BTreeSet;
use std::io::Write;

use crate::cli::{ExitStatus, ValidateArgs, ValidateFormat};
use crate::config::{self, diag, Diagnostic};

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

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitStatus> {
    let loaded = config::load_paths(&args.paths);
    let status = if loaded.is_ok() {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    };
    match args.format {
        ValidateFormat::Text => text(&loaded)?,
        ValidateFormat::Json => {
            let out = match &loaded {
                Ok(l) => crate::render::diagnostics::json(&l.warnings, Some(counts(l))),
                Err(diags) => crate::render::diagnostics::json(diags, None),
            };
            print!("{out}");
        }
        ValidateFormat::Github => {
            // the annotations, then the human summary as a plain log line
            match &loaded {
                Ok(l) => {
                    print!("{}", crate::render::github::diagnostics(&l.warnings));
                    println!("{}", summary(l));
                }
                Err(diags) => {
                    print!("{}", crate::render::github::diagnostics(diags));
                    println!("{}", failure_line(diags));
                }
            }
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

/// The text format: diagnostics on stderr, the summary on stdout.
fn text(loaded: &Result<config::Loaded, Vec<Diagnostic>>) -> anyhow::Result<()> {
    let color = crate::render::color_for_stderr();
    let mut err = std::io::stderr().lock();
    match loaded {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                writeln!(err, "{}", diag::render(&loaded.warnings, color))?;
            }
            println!("{}", summary(loaded));
        }
        Err(diags) => {
            write!(
                err,
                "{}\n{}\n",
                diag::render(diags, color),
                failure_line(diags)
            )?;
        }
    }
    Ok(())
}
