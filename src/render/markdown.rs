//! The plan as Markdown for a pull-request comment: a title, the summary line, a table of counts
//! per tenant, per tenant a table `| | User | Change | Reason |` of the changed and blocked users,
//! and the full text plan in a collapsed `<details>` section.
//!
//! A comment on GitHub holds at most 65,536 characters ([`COMMENT_LIMIT`]). Whatever the plan's
//! size the output stays under it: the summary and the counts always, then as many users as fit,
//! then a line saying how many were left out and that the full plan is the saved plan artifact.
//!
//! Markers are plain characters in code spans (`~` update, `±` password reset, `!` blocked), no
//! emoji. Every cell built from data is escaped ([`escape_cell`]): a `|` would end the cell, a
//! newline the row, and `<`, `&`, `*`, `_`, `` ` ``, `[`, `~` would turn into HTML or formatting.

use std::fmt::Write as _;

use super::{describe_password_source, reason_parts, shown, summary_line, tenant_title};
use crate::graph::model::ForceFlags;
use crate::plan::{Action, Plan};

/// GitHub's limit on the body of a pull-request comment, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// What [`markdown`] aims at, in bytes (a character is at least one byte): under
/// [`COMMENT_LIMIT`] with room for a marker line a CI step adds to find its sticky comment.
pub const BUDGET: usize = COMMENT_LIMIT - 4_096;

/// Room kept for the closing lines (the omitted-count line) while rows are added.
const RESERVE: usize = 1_024;

/// The plan as GitHub-flavoured Markdown, under [`BUDGET`] bytes whatever the plan's size.
pub fn markdown(plan: &Plan) -> String {
    markdown_within(plan, BUDGET)
}

/// The plan as Markdown in at most about `budget` bytes: the summary and the per-tenant counts
/// always; then the changed and blocked users, in plan order, as long as they fit; then a line
/// saying how many were left out and where the full plan is; the full text plan only when it fits
/// too.
pub fn markdown_within(plan: &Plan, budget: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## pwdrift plan");
    let _ = writeln!(out);
    let _ = writeln!(out, "**{}**", escape_cell(&summary_line(plan)));
    if let Some(pace) = super::reset_pace_line(plan) {
        let _ = writeln!(out, "\n{}", escape_cell(&pace));
    }
    let _ = writeln!(out);
    for tenant in &plan.tenants {
        for note in &tenant.notes {
            let _ = writeln!(
                out,
                "> **Note ({}):** {}",
                escape_cell(&tenant_title(tenant)),
                escape_cell(&shown(note))
            );
            let _ = writeln!(out);
        }
    }
    let s = plan.summary();
    if s.set_flags == 0 && s.reset_password == 0 && s.blocked == 0 {
        return out;
    }

    // Per-tenant counts: always (at most half the budget, for a plan of thousands of tenants).
    let _ = writeln!(
        out,
        "| Tenant | To update | Password resets | Blocked | Unchanged |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (i, tenant) in plan.tenants.iter().enumerate() {
        let c = tenant.summary();
        let row = format!(
            "| {} | {} | {} | {} | {} |\n",
            escape_cell(&tenant_title(tenant)),
            c.set_flags,
            c.reset_password,
            c.blocked,
            c.unchanged
        );
        if out.len() + row.len() > budget / 2 {
            let _ = writeln!(
                out,
                "| … {} more tenants, counted in the summary above | | | | |",
                plan.tenants.len() - i
            );
            break;
        }
        out.push_str(&row);
    }
    let _ = writeln!(out);

    let total = s.set_flags + s.reset_password + s.blocked;
    let mut shown = 0usize;
    let mut full = false;
    for tenant in &plan.tenants {
        if full {
            break;
        }
        let rows: Vec<String> = tenant.users.iter().filter_map(row).collect();
        let unchanged = tenant.users.len() - rows.len();
        let mut section = String::new();
        let _ = writeln!(section, "### {}", escape_cell(&tenant_title(tenant)));
        let _ = writeln!(section);
        if !rows.is_empty() {
            let _ = writeln!(section, "| | User | Change | Reason |");
            let _ = writeln!(section, "|---|---|---|---|");
        }
        let mut tenant_shown = 0;
        for r in &rows {
            if out.len() + section.len() + r.len() + RESERVE > budget {
                full = true;
                break;
            }
            section.push_str(r);
            tenant_shown += 1;
        }
        if tenant_shown == 0 && !rows.is_empty() {
            break; // not even the heading of a tenant whose rows do not fit
        }
        shown += tenant_shown;
        if !rows.is_empty() {
            let _ = writeln!(section);
        }
        if unchanged > 0 && !full {
            let users = if unchanged == 1 { "user" } else { "users" };
            let _ = writeln!(section, "{unchanged} {users} unchanged.");
            let _ = writeln!(section);
        }
        out.push_str(&section);
    }

    if shown < total {
        let _ = writeln!(
            out,
            "**{} of {total} changed or blocked users are not shown** (a comment is limited to \
             {COMMENT_LIMIT} characters). The full plan is in the saved plan (`pwdrift plan --out`), \
             kept as this run's artifact.",
            total - shown
        );
        return out;
    }

    let text = super::text(plan, false);
    let fence = "`".repeat(longest_backtick_run(&text).max(2) + 1);
    let mut details = String::new();
    let _ = writeln!(details, "<details>");
    let _ = writeln!(details, "<summary>Full plan</summary>");
    let _ = writeln!(details);
    let _ = writeln!(details, "{fence}text");
    details.push_str(&text);
    let _ = writeln!(details, "{fence}");
    let _ = writeln!(details);
    let _ = writeln!(details, "</details>");
    if out.len() + details.len() <= budget {
        out.push_str(&details);
    } else {
        let _ = writeln!(
            out,
            "The full text plan is too long for a comment; it is in the saved plan \
             (`pwdrift plan --out`), kept as this run's artifact."
        );
    }
    out
}

/// The table row of a changed or blocked user; `None` for an unchanged one.
fn row(user: &crate::plan::UserPlan) -> Option<String> {
    let (marker, change, reason) = match &user.action {
        Action::NoChange { .. } => return None,
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
    Some(format!(
        "| `{marker}` | {} | {} | {} |\n",
        code_cell(&shown(&user.user_principal_name)),
        cell_lines(&change),
        cell_lines(reason)
    ))
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

/// A cell holding several `"; "`-separated parts, one per line; each part a value ([`shown`]).
fn cell_lines(s: &str) -> String {
    reason_parts(s)
        .map(|part| escape_cell(&shown(part)))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Escapes text for a GitHub table cell: no `|`, no newline, no HTML, no formatting. Values are
/// escaped for display first ([`shown`]: a newline in a value is `\n`, not a `<br>`).
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

    /// A plan of `n` flag changes spread over three tenants, built directly.
    fn huge_plan(n: usize) -> Plan {
        use crate::plan::{TenantPlan, UserPlan};
        let flags = |b| ForceFlags {
            force_change_password_next_sign_in: b,
            force_change_password_next_sign_in_with_mfa: false,
        };
        let tenants = (0..3)
            .map(|t| TenantPlan {
                tenant: format!("tenant{t}.onmicrosoft.com"),
                tenant_id: format!("00000000-0000-4000-8000-00000000000{t}"),
                decided_at: "2026-11-23T12:00:00Z".parse().unwrap(),
                clock: crate::plan::ClockSource::Graph,
                notes: vec![],
                excluded: 0,
                users: (0..n)
                    .filter(|i| i % 3 == t)
                    .map(|i| UserPlan {
                        user_id: format!("00000000-0000-4000-8000-{i:012}"),
                        user_principal_name: format!("user{i:05}@tenant{t}.onmicrosoft.com"),
                        declared_at: vec![crate::config::Origin {
                            file: std::path::PathBuf::from(format!("desired/tenant{t}.yaml"))
                                .into(),
                            line: i + 1,
                            column: 5,
                        }],
                        fingerprint: "0".repeat(64),
                        allow_privileged: false,
                        synced: false,
                        last_password_change: None,
                        action: Action::SetFlags {
                            before: flags(true),
                            after: flags(false),
                            reason: "forceChangePasswordNextSignIn declared false, live true"
                                .to_owned(),
                        },
                    })
                    .collect(),
            })
            .collect();
        Plan {
            format_version: crate::plan::FORMAT_VERSION.to_owned(),
            pwdrift_version: "0.0.0-test".to_owned(),
            created_at: "2026-11-23T12:00:00Z".parse().unwrap(),
            made_from: crate::render::fixtures::made_from(),
            tenants,
            content_hash: None,
        }
    }

    #[test]
    fn a_10000_change_plan_fits_in_a_comment() {
        let md = markdown(&huge_plan(10_000));
        assert!(
            md.chars().count() < COMMENT_LIMIT,
            "{} chars",
            md.chars().count()
        );
        assert!(md.len() < COMMENT_LIMIT, "{} bytes", md.len());
        // summary and every tenant's counts
        assert!(
            md.contains("**Plan: 10000 to update, 0 password resets, 0 blocked, 0 unchanged.**")
        );
        for t in 0..3 {
            assert!(
                md.contains(&format!("| tenant{t}.onmicrosoft.com (")),
                "tenant {t}"
            );
        }
        let shown = md.lines().filter(|l| l.starts_with("| `~` |")).count();
        assert!(shown > 100, "only {shown} rows shown");
        let omitted = format!(
            "**{} of 10000 changed or blocked users are not shown**",
            10_000 - shown
        );
        assert!(md.contains(&omitted), "{}", &md[md.len() - 600..]);
        assert!(md.trim_end().ends_with("kept as this run's artifact."));
        assert!(
            !md.contains("<details>"),
            "no full text plan when rows are omitted"
        );
    }

    #[test]
    fn a_small_plan_is_complete() {
        let md = markdown(&huge_plan(30));
        assert_eq!(md.lines().filter(|l| l.starts_with("| `~` |")).count(), 30);
        assert!(!md.contains("not shown"));
        assert!(md.contains("<details>"));
    }

    #[test]
    fn counts_survive_a_tiny_budget() {
        let md = markdown_within(&fixtures::rich(), 1_500);
        assert!(md.len() <= 1_500, "{md}");
        assert!(md.contains("| contoso.onmicrosoft.com (c0c0c0c0-0000-4000-8000-000000000001) | 1 | 1 | 2 | 2 |"), "{md}");
        assert!(
            md.contains("changed or blocked users are not shown"),
            "{md}"
        );
    }

    #[test]
    fn fence_is_longer_than_any_backtick_run() {
        assert_eq!(longest_backtick_run("a ```` b ` c"), 4);
    }
}
