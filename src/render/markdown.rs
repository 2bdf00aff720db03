//! The plan as Markdown for a pull-request comment: a title, the summary line, per tenant a table
//! `| | User | Change | Reason |` of the changed and blocked users, and the full text plan in a
//! collapsed `<details>` section.
//!
//! Markers are plain characters in code spans (`~` update, `±` password reset, `!` blocked), no
//! emoji. Every cell built from data is escaped ([`escape_cell`]): a `|` would end the cell, a
//! newline the row, and `<`, `&`, `*`, `_`, `` ` ``, `[`, `~` would turn into HTML or formatting.

use std::fmt::Write as _;

use super::{describe_password_source, reason_parts, summary_line, tenant_title};
use crate::graph::model::ForceFlags;
use crate::plan::{Action, Plan};

/// The plan as GitHub-flavoured Markdown.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## pwdrift plan");
    let _ = writeln!(out);
    let _ = writeln!(out, "**{}**", escape_cell(&summary_line(plan)));
    let _ = writeln!(out);
    let s = plan.summary();
    if s.set_flags == 0 && s.reset_password == 0 && s.blocked == 0 {
        return out;
    }
    for tenant in &plan.tenants {
        let _ = writeln!(out, "### {}", escape_cell(&tenant_title(tenant)));
        let _ = writeln!(out);
        let unchanged = tenant
            .users
            .iter()
            .filter(|u| matches!(u.action, Action::NoChange { .. }))
            .count();
        if unchanged < tenant.users.len() {
            let _ = writeln!(out, "| | User | Change | Reason |");
            let _ = writeln!(out, "|---|---|---|---|");
            for user in &tenant.users {
                let (marker, change, reason) = match &user.action {
                    Action::NoChange { .. } => continue,
                    Action::SetFlags {
                        before,
                        after,
                        reason,
                    } => ("~", flag_changes(before, after), reason.as_str()),
                    Action::ResetPassword {
                        method,
                        password,
                        before,
                        after,
                        reason,
                    } => {
                        let flags = flag_changes(before, after);
                        let mut change = format!(
                            "password reset by {}; new password {}",
                            method.label(),
                            describe_password_source(password)
                        );
                        if flags != "no flag change" {
                            change.push_str("; ");
                            change.push_str(&flags);
                        }
                        ("±", change, reason.as_str())
                    }
                    Action::Blocked { blocker, detail } => (
                        "!",
                        format!(
                            "blocked ({}), nothing written; to do: {}",
                            blocker.label(),
                            blocker.remedy()
                        ),
                        detail.as_str(),
                    ),
                };
                let _ = writeln!(
                    out,
                    "| `{marker}` | {} | {} | {} |",
                    code_cell(&user.user_principal_name),
                    cell_lines(&change),
                    cell_lines(reason)
                );
            }
            let _ = writeln!(out);
        }
        if unchanged > 0 {
            let users = if unchanged == 1 { "user" } else { "users" };
            let _ = writeln!(out, "{unchanged} {users} unchanged.");
            let _ = writeln!(out);
        }
    }
    let text = super::text(plan, false);
    let fence = "`".repeat(longest_backtick_run(&text).max(2) + 1);
    let _ = writeln!(out, "<details>");
    let _ = writeln!(out, "<summary>Full plan</summary>");
    let _ = writeln!(out);
    let _ = writeln!(out, "{fence}text");
    out.push_str(&text);
    let _ = writeln!(out, "{fence}");
    let _ = writeln!(out);
    let _ = writeln!(out, "</details>");
    out
}

fn flag_changes(before: &ForceFlags, after: &ForceFlags) -> String {
    let pairs = [
        (
            "forceChangePasswordNextSignIn",
            before.force_change_password_next_sign_in,
            after.force_change_password_next_sign_in,
        ),
        (
            "forceChangePasswordNextSignInWithMfa",
            before.force_change_password_next_sign_in_with_mfa,
            after.force_change_password_next_sign_in_with_mfa,
        ),
    ];
    let changed: Vec<String> = pairs
        .iter()
        .filter(|(_, b, a)| b != a)
        .map(|(n, b, a)| format!("{n}: {b} → {a}"))
        .collect();
    if changed.is_empty() {
        "no flag change".to_owned()
    } else {
        changed.join("; ")
    }
}

/// A cell holding several `"; "`-separated parts, one per line.
fn cell_lines(s: &str) -> String {
    reason_parts(s)
        .map(escape_cell)
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Escapes text for a GitHub table cell: no `|`, no newline, no HTML, no formatting.
pub fn escape_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("<br>");
            }
            '\n' => out.push_str("<br>"),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// A code span for identifiers (no autolinked e-mail addresses); falls back to an escaped plain
/// cell when the text itself holds a backtick or a line break.
fn code_cell(s: &str) -> String {
    if s.contains(['`', '\n', '\r']) {
        escape_cell(s)
    } else {
        // GitHub splits table cells on `|` even inside code spans; `\|` keeps it in the cell.
        format!("`{}`", s.replace('|', "\\|"))
    }
}

fn longest_backtick_run(s: &str) -> usize {
    let mut best = 0;
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    #[test]
    fn rich_plan() {
        insta::assert_snapshot!(markdown(&fixtures::rich()));
    }

    #[test]
    fn no_changes_plan() {
        insta::assert_snapshot!(markdown(&fixtures::no_changes()));
    }

    #[test]
    fn escaping_cells() {
        assert_eq!(escape_cell("a|b"), "a\\|b");
        assert_eq!(
            escape_cell("one\ntwo\r\nthree\rfour"),
            "one<br>two<br>three<br>four"
        );
        assert_eq!(escape_cell("<script>&"), "&lt;script&gt;&amp;");
        assert_eq!(
            escape_cell("first_last*x*`y`"),
            "first\\_last\\*x\\*\\`y\\`"
        );
        assert_eq!(
            escape_cell("[link](x) ~strike~"),
            "\\[link\\](x) \\~strike\\~"
        );
        assert_eq!(escape_cell("C:\\path"), "C:\\\\path");
        assert_eq!(code_cell("kim|ops@x"), "`kim\\|ops@x`");
        assert_eq!(code_cell("a`b"), "a\\`b");
    }

    #[test]
    fn every_table_row_has_four_cells() {
        let md = markdown(&fixtures::rich());
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(rows.len(), 10, "{md}");
        for row in rows {
            // unescaped pipes delimit the cells: 5 of them for 4 cells
            let bytes = row.as_bytes();
            let delimiters = (0..bytes.len())
                .filter(|&i| bytes[i] == b'|' && (i == 0 || bytes[i - 1] != b'\\'))
                .count();
            assert_eq!(delimiters, 5, "{row}");
        }
    }

    #[test]
    fn fence_is_longer_than_any_backtick_run() {
        assert_eq!(longest_backtick_run("a ```` b ` c"), 4);
    }
}
