//! `pwdrift validate`: load and check desired-state files, offline.
//!
//! Output contract: diagnostics (errors and warnings) go to stderr; on success exactly one summary
//! line goes to stdout (`ok: 2 files, 1 tenant, 5 users, 1 group (1 warning)`), so scripts can
//! rely on it. Invalid input exits 1 after a last stderr line counting the errors.

use std::collections::BTreeSet;

use crate::cli::{ExitStatus, ValidateArgs};
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
    let color = printer.color_err();
    match config::load_paths(&args.paths) {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                printer.diagnostics(&format!(
                    "{}\n",
                    diag::render(&loaded.warnings, &loaded.sources, color)
                ));
            }
            printer.outln(&summary(&loaded))?;
            Ok(ExitStatus::Success)
        }
        Err(invalid) => {
            printer.diagnostics(&format!(
                "{}\n{}\n",
                diag::render(&invalid.diagnostics, &invalid.sources, color),
                failure_line(&invalid.diagnostics)
            ));
            Ok(ExitStatus::Failure)
        }
    }
}
