//! What `plan` and `apply` share in the command layer: showing what the engine hands back
//! (diagnostics of the desired state, the reasons a run is rejected, its notes) through the
//! printer, and the async runtime a command runs the engine on. The work itself (load, connect
//! or start the embedded sandbox, read live state) is the engine's ([`crate::engine`]).

use std::path::PathBuf;

use anyhow::Context;

use crate::config::{self, SourceMap};
use crate::engine::{Observer, Rejected};
use crate::printer::Printer;

/// How diagnostics are reported on stderr: as rustc does, or as GitHub workflow commands
/// (`plan --format github`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagnosticStyle {
    Text,
    Github,
}

/// Prints diagnostics on stderr in `style`; the lines shown come from `sources`.
pub fn report_diagnostics(
    printer: &Printer,
    diags: &[config::Diagnostic],
    sources: &SourceMap,
    style: DiagnosticStyle,
) {
    printer.diagnostics(&match style {
        DiagnosticStyle::Text => config::diag::render(diags, sources, printer.color_err()),
        DiagnosticStyle::Github => crate::render::github::diagnostics(diags),
    });
}

/// Loads desired state, printing diagnostics in `style`; returns it with the files' source map
/// (for the diagnostics of the plan step) and digests (for a saved plan). `Ok(None)` means
/// invalid input (already reported).
pub fn load_desired(
    paths: &[PathBuf],
    allow_password_dirs: &[PathBuf],
    printer: &Printer,
    style: DiagnosticStyle,
) -> anyhow::Result<Option<config::Loaded>> {
    match crate::engine::load_desired(paths, allow_password_dirs) {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                report_diagnostics(printer, &loaded.warnings, &loaded.sources, style);
            }
            Ok(Some(loaded))
        }
        Err(invalid) => {
            report_rejected(printer, &Rejected::Invalid(invalid), style);
            Ok(None)
        }
    }
}

/// The engine's notes and warnings, through the printer (diagnostics in `style`).
pub struct Shown<'a> {
    pub printer: &'a Printer,
    pub style: DiagnosticStyle,
}

impl Observer for Shown<'_> {
    fn info(&self, text: &str) {
        self.printer.info(text);
    }

    fn warnings(&self, diagnostics: &[config::Diagnostic], sources: &SourceMap) {
        report_diagnostics(self.printer, diagnostics, sources, self.style);
    }

    fn warning(&self, text: &str) {
        self.printer.diagnostics(&match self.style {
            DiagnosticStyle::Text => {
                format!("warning: {}\n", crate::printer::escape_controls(text))
            }
            DiagnosticStyle::Github => crate::render::github::warning("pwdrift: warning", text),
        });
    }
}

/// Most lines shown per kind of refusal of a saved plan; the rest are counted.
const MAX_REFUSAL_LINES: usize = 50;

const REPLAN: &str = "Run `pwdrift plan --out FILE` again, review it, and apply the new plan.";

/// Prints why a run was rejected before anything was written: the diagnostics (in `style`) and
/// the line that says so, or each kind of problem of a saved plan with the users it names (at
/// most 50 each), then what to do.
pub fn report_rejected(printer: &Printer, rejected: &Rejected, style: DiagnosticStyle) {
    let (diags, sources, line) = match rejected {
        Rejected::Invalid(invalid) => (
            &invalid.diagnostics,
            &invalid.sources,
            "error: desired state is invalid; nothing was read or changed",
        ),
        Rejected::AliasConflict {
            diagnostics,
            sources,
        } => (
            diagnostics,
            sources,
            "error: desired state is invalid once its tenants are resolved; nothing was read or changed",
        ),
        Rejected::Mismatch {
            diagnostics,
            sources,
        } => (
            diagnostics,
            sources,
            "error: desired state does not match the tenant; nothing was changed",
        ),
        Rejected::Changed(changed) => {
            return refuse(
                printer,
                &[(
                    "the desired state changed since the plan was made: re-plan",
                    changed,
                )],
                "Run `pwdrift plan --out FILE` again (in the directory the desired-state paths \
                 are relative to), review it, and apply the new plan.",
            )
        }
        Rejected::Differs(m) => {
            return refuse(
                printer,
                &[
                    ("the saved plan is for another tenant:", &m.other_tenant),
                    (
                        "the saved plan changes users the safety rails protect:",
                        &m.protected,
                    ),
                    (
                        "the saved plan is not the plan its desired state gives (it was edited, \
                         or made differently):",
                        &m.different,
                    ),
                    (
                        "the saved plan is stale: live state changed since it was made:",
                        &m.stale,
                    ),
                ],
                REPLAN,
            )
        }
    };
    report_diagnostics(printer, diags, sources, style);
    printer.error(line);
}

fn refuse(printer: &Printer, kinds: &[(&str, &Vec<String>)], remedy: &str) {
    for (what, lines) in kinds.iter().filter(|(_, l)| !l.is_empty()) {
        printer.error(&format!("error: {what}"));
        for line in lines.iter().take(MAX_REFUSAL_LINES) {
            printer.error(&format!("  - {line}"));
        }
        if lines.len() > MAX_REFUSAL_LINES {
            printer.error(&format!(
                "  ... and {} more",
                lines.len() - MAX_REFUSAL_LINES
            ));
        }
    }
    printer.error(&format!("Nothing was written. {remedy}"));
}

/// A tokio runtime for a command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
