//! GitHub Actions workflow commands (`::error file=…,line=…,col=…,title=…::message`), so that
//! findings show up as annotations on the pull request's diff: [`plan`] for `plan --format github`
//! and [`diagnostics`] for `validate --format github` (and for the errors of `plan` in that
//! format).
//!
//! Escaping follows GitHub's runner: in the message `%`, `\r`, `\n` become `%25`, `%0D`, `%0A`;
//! in a property value `:` and `,` also become `%3A` and `%2C`. Data that is printed as plain log
//! text (the full text plan) is wrapped in `::stop-commands::TOKEN` … `::TOKEN::` with a token
//! chosen by the caller, so that nothing in it (a group name, a UPN) can be taken for a command.
//! Values (a UPN, a reason, a file name) are escaped for display first ([`shown`]), so that no
//! control character reaches the log, and the runner's escaping then keeps every value inside
//! its command: no value can start a line, so no line starts with `::` but pwdrift's own commands.
//! A plan holds no secret, and diagnostics never quote a secret value (see
//! [`crate::config::diag`]); nothing here reads source lines.

use std::fmt::Write as _;

use super::{reason_parts, shown, summary_line, tenant_title};
use crate::config::diag::{Diagnostic, Severity};
use crate::config::Origin;
use crate::plan::{Action, Plan, Summary};

/// Escapes a workflow command's message.
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value (`file=`, `title=`, ...).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One command line: `::LEVEL file=…,line=…,col=…,title=…::message`.
fn command(level: &str, at: Option<&Origin>, title: &str, message: &str) -> String {
    let mut props = Vec::new();
    if let Some(o) = at {
        props.push(format!(
            "file={}",
            escape_property(&shown(&o.file.to_string_lossy()))
        ));
        if o.line > 0 {
            props.push(format!("line={}", o.line));
            if o.column > 0 {
                props.push(format!("col={}", o.column));
            }
        }
    }
    if !title.is_empty() {
        props.push(format!("title={}", escape_property(title)));
    }
    let props = if props.is_empty() {
        String::new()
    } else {
        format!(" {}", props.join(","))
    };
    format!("::{level}{props}::{}\n", escape_data(message))
}

/// `2 to update, 1 password reset, 0 blocked, 5 unchanged`
pub fn counts(s: &Summary) -> String {
    let resets = if s.reset_password == 1 {
        "password reset"
    } else {
        "password resets"
    };
    format!(
        "{} to update, {} {resets}, {} blocked, {} unchanged",
        s.set_flags, s.reset_password, s.blocked, s.unchanged
    )
}

/// `plan --format github`: a `::notice` with the summary and the counts of every tenant, a
/// `::warning` per blocked user at its desired-state entry, then the text plan as plain log lines
/// (in a collapsed group, commands stopped with `stop_token`).
pub fn plan(p: &Plan, stop_token: &str) -> String {
    let mut out = String::new();
    let mut message = summary_line(p);
    for t in &p.tenants {
        let _ = write!(message, "\n{}: {}", tenant_title(t), counts(&t.summary()));
    }
    out.push_str(&command("notice", None, "pwdrift plan", &message));
    for t in &p.tenants {
        for note in &t.notes {
            let title = format!("pwdrift: note for {}", tenant_title(t));
            out.push_str(&command("notice", None, &title, &shown(note)));
        }
    }
    for t in &p.tenants {
        for u in &t.users {
            if let Action::Blocked { blocker, detail } = &u.action {
                let upn = shown(&u.user_principal_name);
                let title = format!("pwdrift: {upn} is blocked ({})", blocker.label());
                let mut message: Vec<String> = reason_parts(detail)
                    .map(|part| shown(part).into_owned())
                    .collect();
                message.push(format!("To do: {}", blocker.remedy()));
                let message = format!(
                    "{upn} in tenant {}: nothing will be written for this user.\n{}",
                    tenant_title(t),
                    message.join("\n")
                );
                out.push_str(&command("warning", u.declared_at.first(), &title, &message));
            }
        }
    }
    let _ = writeln!(out, "::group::Full plan");
    let _ = writeln!(out, "::stop-commands::{stop_token}");
    out.push_str(&super::text(p, false));
    let _ = writeln!(out, "::{stop_token}::");
    let _ = writeln!(out, "::endgroup::");
    out
}

/// One `::warning` command with `title` and `message` (both escaped), e.g. the local clock far
/// from Graph's.
pub fn warning(title: &str, message: &str) -> String {
    command("warning", None, title, message)
}

/// Diagnostics as `::error`/`::warning` commands at their first position; the other positions
/// and the help are part of the message.
pub fn diagnostics(diags: &[Diagnostic]) -> String {
    use crate::config::diag::{clean, not_shown, MAX_DIAGNOSTICS, MAX_MESSAGE_CHARS};
    let mut out = String::new();
    for d in diags.iter().take(MAX_DIAGNOSTICS) {
        let d = &crate::config::Diagnostic {
            message: clean(&d.message, MAX_MESSAGE_CHARS),
            labels: (d.labels.iter())
                .map(|l| crate::config::diag::Label {
                    text: clean(&l.text, MAX_MESSAGE_CHARS),
                    ..l.clone()
                })
                .collect(),
            help: d.help.as_deref().map(|h| clean(h, MAX_MESSAGE_CHARS)),
            ..d.clone()
        };
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut message = d.message.clone();
        for (i, label) in d.labels.iter().enumerate() {
            if i == 0 {
                if !label.text.is_empty() {
                    let _ = write!(message, ": {}", label.text);
                }
            } else {
                let _ = write!(message, "\nsee also {}", label.origin);
                if !label.text.is_empty() {
                    let _ = write!(message, ": {}", label.text);
                }
            }
        }
        if let Some(help) = &d.help {
            let _ = write!(message, "\nhelp: {help}");
        }
        let title = format!("pwdrift: {}", d.message);
        out.push_str(&command(
            level,
            d.labels.first().map(|l| &l.origin),
            &title,
            &message,
        ));
    }
    if let Some(more) = not_shown(diags.len()) {
        out.push_str(&command(
            "warning",
            None,
            "pwdrift: diagnostics not shown",
            &more,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;
    use std::path::PathBuf;

    #[test]
    fn escaping_follows_the_runner() {
        assert_eq!(escape_data("100% a\r\nb"), "100%25 a%0D%0Ab");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        // message data keeps `:` and `,`
        assert_eq!(escape_data("a:b,c"), "a:b,c");
    }

    #[test]
    fn rich_plan() {
        insta::assert_snapshot!(plan(&fixtures::rich(), "TOKEN"));
    }

    #[test]
    fn every_blocked_user_is_a_warning_at_its_entry() {
        let p = fixtures::rich();
        let out = plan(&p, "TOKEN");
        let blocked = p.summary().blocked;
        let warnings: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("::warning "))
            .collect();
        assert_eq!(warnings.len(), blocked);
        for w in &warnings {
            assert!(w.contains("file=examples/desired/"), "{w}");
            assert!(w.contains(",line="), "{w}");
        }
        // the summary, and one per tenant note
        let notes: usize = p.tenants.iter().map(|t| t.notes.len()).sum();
        assert_eq!(notes, 1);
        assert_eq!(
            out.lines().filter(|l| l.starts_with("::notice ")).count(),
            1 + notes
        );
        // the only lines that start with `::` outside the stopped section are commands
        let stop = out.find("::stop-commands::TOKEN").unwrap();
        let resume = out.find("::TOKEN::").unwrap();
        assert!(stop < resume);
        assert!(!out[..stop].lines().any(|l| !l.starts_with("::")), "{out}");
    }

    #[test]
    fn no_changes_plan_is_one_notice() {
        let out = plan(&fixtures::no_changes(), "T");
        let commands: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("::notice") || l.starts_with("::warning"))
            .collect();
        assert_eq!(commands.len(), 1, "{out}");
        assert!(commands[0].contains("No changes."), "{out}");
    }

    #[test]
    fn diagnostics_become_annotations() {
        let at = |line, column| Origin {
            file: PathBuf::from("desired/a,b.yaml").into(),
            line,
            column,
        };
        let diags = [
            Diagnostic::error("unknown key `forceChange`")
                .with_label(at(6, 5), "unknown key")
                .with_label(at(2, 1), "in this entry")
                .with_help("did you mean `forceChangePasswordNextSignIn`?"),
            Diagnostic::warning("50% of the users\nare risky"),
            Diagnostic::error("empty file").with_label(at(0, 0), ""),
        ];
        insta::assert_snapshot!(diagnostics(&diags), @r"
        ::error file=desired/a%2Cb.yaml,line=6,col=5,title=pwdrift%3A unknown key `forceChange`::unknown key `forceChange`: unknown key%0Asee also desired/a,b.yaml:2:1: in this entry%0Ahelp: did you mean `forceChangePasswordNextSignIn`?
        ::warning title=pwdrift%3A 50%25 of the users%0Aare risky::50%25 of the users%0Aare risky
        ::error file=desired/a%2Cb.yaml,title=pwdrift%3A empty file::empty file
        ");
    }
}
