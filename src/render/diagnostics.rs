//! `validate --format json`: the diagnostics of a desired state as one JSON document, for CI and
//! editors. Each diagnostic has its first position flattened (`file`, `line`, `column`; `null`
//! when it has none or points at a whole file), `severity`, `code` (`null`: pwdrift has no codes
//! yet), `message`, `help`, and every position in `labels`. `summary` counts errors and warnings,
//! and, when the desired state is valid, its files, tenants, users and groups.
//!
//! No source line is included, so no secret can be: diagnostics never quote a secret value (see
//! [`crate::config::diag`]).

use serde::Serialize;

use crate::config::diag::{Diagnostic, Severity};

/// Version of this document's format.
pub const FORMAT_VERSION: &str = "1";

/// What a valid desired state holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub files: usize,
    pub tenants: usize,
    pub users: usize,
    pub groups: usize,
}

#[derive(Serialize)]
struct Document<'a> {
    format_version: &'static str,
    valid: bool,
    summary: SummaryDoc,
    diagnostics: Vec<DiagnosticDoc<'a>>,
}

#[derive(Serialize)]
struct SummaryDoc {
    errors: usize,
    warnings: usize,
    files: Option<usize>,
    tenants: Option<usize>,
    users: Option<usize>,
    groups: Option<usize>,
}

#[derive(Serialize)]
struct DiagnosticDoc<'a> {
    severity: &'static str,
    code: Option<&'static str>,
    message: &'a str,
    file: Option<String>,
    line: Option<usize>,
    column: Option<usize>,
    help: Option<&'a str>,
    labels: Vec<LabelDoc<'a>>,
}

#[derive(Serialize)]
struct LabelDoc<'a> {
    file: String,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
}

/// The document, pretty-printed with a trailing newline. `counts` is `Some` for a valid desired
/// state (`diags` then holds only warnings).
pub fn json(diags: &[Diagnostic], counts: Option<Counts>) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let doc = Document {
        format_version: FORMAT_VERSION,
        valid: counts.is_some() && errors == 0,
        summary: SummaryDoc {
            errors,
            warnings: diags.len() - errors,
            files: counts.map(|c| c.files),
            tenants: counts.map(|c| c.tenants),
            users: counts.map(|c| c.users),
            groups: counts.map(|c| c.groups),
        },
        diagnostics: diags
            .iter()
            .map(|d| {
                let labels: Vec<LabelDoc> = d
                    .labels
                    .iter()
                    .map(|l| {
                        let whole_file = l.origin.line == 0;
                        LabelDoc {
                            file: l.origin.file.to_string_lossy().into_owned(),
                            line: (!whole_file).then_some(l.origin.line),
                            column: (!whole_file && l.origin.column > 0).then_some(l.origin.column),
                            message: &l.text,
                        }
                    })
                    .collect();
                let first = labels.first();
                DiagnosticDoc {
                    severity: match d.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                    },
                    code: None,
                    message: &d.message,
                    file: first.map(|l| l.file.clone()),
                    line: first.and_then(|l| l.line),
                    column: first.and_then(|l| l.column),
                    help: d.help.as_deref(),
                    labels,
                }
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&doc).expect("serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use std::path::PathBuf;

    #[test]
    fn invalid_document() {
        let at = |line, column| Origin {
            file: PathBuf::from("desired/a.yaml").into(),
            line,
            column,
        };
        let diags = [
            Diagnostic::error("unknown key `forceChange`")
                .with_label(at(6, 5), "unknown key")
                .with_help("did you mean `forceChangePasswordNextSignIn`?"),
            Diagnostic::warning("literal true").with_label(at(9, 7), ""),
            Diagnostic::error("empty file").with_label(at(0, 0), ""),
            Diagnostic::error("no desired-state file found"),
        ];
        insta::assert_snapshot!(json(&diags, None));
    }

    #[test]
    fn valid_document() {
        let v: serde_json::Value = serde_json::from_str(&json(
            &[],
            Some(Counts {
                files: 2,
                tenants: 1,
                users: 5,
                groups: 1,
            }),
        ))
        .unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["summary"]["users"], 5);
        assert_eq!(v["summary"]["errors"], 0);
        assert_eq!(v["diagnostics"], serde_json::json!([]));
    }
}
