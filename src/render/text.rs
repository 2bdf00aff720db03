//! The human plan, in the spirit of `terraform plan`: a header per tenant, a block per changed or
//! blocked user (marker, reason, method, and a small diff of the password profile rendered with
//! `similar`), then a summary line. Unchanged users are counted, and listed only by
//! [`text_verbose`].
//!
//! Colour is decided by the caller (see [`crate::printer::Printer::color_out`]): with
//! `color == false` the output holds no escape sequence at all. Markers: `~` flags updated in place, `±` password
//! reset, `!` blocked (nothing written). A password is only ever shown as `(sensitive)`.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use similar::{ChangeTag, TextDiff};

use super::{describe_password_source, reason_parts, shown, summary_line, tenant_title};
use crate::graph::model::ForceFlags;
use crate::plan::{Action, Plan, ResetMethod, TenantPlan, UserPlan};

/// The plan as text; unchanged users are counted per tenant, not listed.
pub fn text(plan: &Plan, color: bool) -> String {
    render_string(plan, color, false)
}

/// As [`text`], and every unchanged user is listed with the reason nothing changes.
pub fn text_verbose(plan: &Plan, color: bool) -> String {
    render_string(plan, color, true)
}

/// [`text`] (or [`text_verbose`]) written to `w` as it is rendered, in chunks of about
/// [`CHUNK`] bytes, the same bytes: the text of a 100,000-user verbose plan is tens of megabytes,
/// which need not be held in memory at once.
pub fn write_text(
    plan: &Plan,
    color: bool,
    verbose: bool,
    w: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    render(plan, color, verbose, &mut |chunk: &str| {
        w.write_all(chunk.as_bytes())
    })
}

/// About how much rendered text [`write_text`] holds before writing it.
const CHUNK: usize = 1 << 16;

fn render_string(plan: &Plan, color: bool, verbose: bool) -> String {
    let mut all = String::new();
    let _ = render(plan, color, verbose, &mut |chunk: &str| {
        all.push_str(chunk);
        Ok(())
    });
    all
}

/// Styles, or none of them when colour is off.
struct Paint {
    color: bool,
}

impl Paint {
    fn paint(&self, style: Style, s: &str) -> String {
        if self.color {
            format!("{style}{s}{style:#}")
        } else {
            s.to_owned()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint(Style::new().bold(), s)
    }
    fn green(&self, s: &str) -> String {
        self.paint(AnsiColor::Green.on_default(), s)
    }
    fn red(&self, s: &str) -> String {
        self.paint(AnsiColor::Red.on_default(), s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint(AnsiColor::Yellow.on_default(), s)
    }
    fn red_bold(&self, s: &str) -> String {
        self.paint(AnsiColor::Red.on_default().bold(), s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint(Style::new().dimmed(), s)
    }
}

const FLAG_NAMES: [&str; 2] = [
    "forceChangePasswordNextSignIn",
    "forceChangePasswordNextSignInWithMfa",
];
const NAME_WIDTH: usize = 36; // the longest name above

/// Where rendered text goes, a chunk at a time.
type Sink<'a> = dyn FnMut(&str) -> std::io::Result<()> + 'a;

/// Renders into a buffer handed to `sink` whenever it passes [`CHUNK`] bytes, and at the end.
fn render(plan: &Plan, color: bool, verbose: bool, sink: &mut Sink) -> std::io::Result<()> {
    let p = Paint { color };
    let mut out = String::new();
    for tenant in &plan.tenants {
        tenant_block(&mut out, &p, tenant, verbose, sink)?;
    }
    let summary = summary_line(plan);
    let _ = writeln!(out, "{}", p.bold(&summary));
    if let Some(pace) = super::reset_pace_line(plan) {
        let _ = writeln!(out, "{pace}");
    }
    sink(&out)
}

fn tenant_block(
    out: &mut String,
    p: &Paint,
    tenant: &TenantPlan,
    verbose: bool,
    sink: &mut Sink,
) -> std::io::Result<()> {
    let _ = writeln!(
        out,
        "{}",
        p.bold(&format!("Tenant {}", tenant_title(tenant)))
    );
    let _ = writeln!(out);
    for note in &tenant.notes {
        let _ = writeln!(out, "  {} {}", p.yellow("note:"), shown(note));
        let _ = writeln!(out);
    }
    if tenant.users.is_empty() {
        let _ = writeln!(out, "  {}", p.dim("No managed users."));
        let _ = writeln!(out);
    }
    let mut unchanged = 0;
    for user in &tenant.users {
        if out.len() >= CHUNK {
            sink(out)?;
            out.clear();
        }
        if let Action::NoChange { reason } = &user.action {
            unchanged += 1;
            if verbose {
                let _ = writeln!(
                    out,
                    "    user {} ({}): no changes",
                    shown(&user.user_principal_name),
                    shown(&user.user_id)
                );
                comment(out, p, "reason", reason_parts(reason));
                let _ = writeln!(out);
            }
            continue;
        }
        user_block(out, p, user);
        let _ = writeln!(out);
    }
    if unchanged > 0 {
        let users = if unchanged == 1 { "user" } else { "users" };
        let _ = writeln!(
            out,
            "  {}",
            p.dim(&format!("{unchanged} {users} unchanged."))
        );
        let _ = writeln!(out);
    }
    if tenant.excluded > 0 {
        let _ = writeln!(
            out,
            "  {}",
            p.dim(&format!("{} excluded.", tenant.excluded))
        );
        let _ = writeln!(out);
    }
    Ok(())
}

/// `      # label: first` then `      #        next` lines; each part escaped ([`shown`]).
fn comment<'a>(out: &mut String, p: &Paint, label: &str, parts: impl Iterator<Item = &'a str>) {
    let pad = " ".repeat(label.len() + 2);
    for (i, part) in parts.enumerate() {
        let part = shown(part);
        let line = if i == 0 {
            format!("# {label}: {part}")
        } else {
            format!("# {pad}{part}")
        };
        let _ = writeln!(out, "      {}", p.dim(&line));
    }
}

fn user_block(out: &mut String, p: &Paint, user: &UserPlan) {
    let who = format!(
        "user {} ({})",
        shown(&user.user_principal_name),
        shown(&user.user_id)
    );
    let declared = user
        .declared_at
        .iter()
        .map(|o| o.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match &user.action {
        Action::NoChange { .. } => {}
        Action::SetFlags {
            before,
            after,
            reason,
        } => {
            let _ = writeln!(
                out,
                "  {} {} will be updated in place",
                p.yellow("~"),
                p.bold(&who)
            );
            comment(out, p, "reason", reason_parts(reason));
            comment(
                out,
                p,
                "method",
                std::iter::once(ResetMethod::PatchPasswordProfile.describe()),
            );
            if !declared.is_empty() {
                comment(out, p, "declared at", std::iter::once(declared.as_str()));
            }
            profile_diff(out, p, before, after, false);
        }
        Action::ResetPassword {
            method,
            password,
            before,
            after,
            reason,
        } => {
            let _ = writeln!(
                out,
                "  {} {} password will be reset",
                p.yellow("±"),
                p.bold(&who)
            );
            comment(out, p, "reason", reason_parts(reason));
            comment(out, p, "method", std::iter::once(method.describe()));
            let source = describe_password_source(password);
            comment(out, p, "password", std::iter::once(source.as_str()));
            if !declared.is_empty() {
                comment(out, p, "declared at", std::iter::once(declared.as_str()));
            }
            profile_diff(out, p, before, after, true);
        }
        Action::Blocked { blocker, detail } => {
            let _ = writeln!(
                out,
                "  {} {} is blocked ({}): nothing will be written",
                p.red_bold("!"),
                p.bold(&who),
                blocker.label()
            );
            comment(out, p, "why", reason_parts(detail));
            comment(out, p, "to do", std::iter::once(blocker.remedy()));
            if !declared.is_empty() {
                comment(out, p, "declared at", std::iter::once(declared.as_str()));
            }
        }
    }
}

fn profile_lines(flags: &ForceFlags, password: bool) -> String {
    let mut s = String::new();
    if password {
        let _ = writeln!(s, "{:<NAME_WIDTH$} = (sensitive)", "password");
    }
    let values = [
        flags.force_change_password_next_sign_in,
        flags.force_change_password_next_sign_in_with_mfa,
    ];
    for (name, value) in FLAG_NAMES.iter().zip(values) {
        let _ = writeln!(s, "{name:<NAME_WIDTH$} = {value}");
    }
    s
}

/// The before/after password profile as a line diff (similar's `TextDiff`).
fn profile_diff(
    out: &mut String,
    p: &Paint,
    before: &ForceFlags,
    after: &ForceFlags,
    password: bool,
) {
    let old = profile_lines(before, false);
    let new = profile_lines(after, password);
    let diff = TextDiff::from_lines(&old, &new);
    let _ = writeln!(out, "      passwordProfile {{");
    for change in diff.iter_all_changes() {
        let line = change.value().trim_end_matches('\n');
        let _ = match change.tag() {
            ChangeTag::Equal => writeln!(out, "          {line}"),
            ChangeTag::Delete => writeln!(out, "  {}", p.red(&format!("-       {line}"))),
            ChangeTag::Insert => writeln!(out, "  {}", p.green(&format!("+       {line}"))),
        };
    }
    let _ = writeln!(out, "      }}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures;

    /// Written in chunks, the same bytes as rendered into one string, for a plan larger than a
    /// chunk (every user of the rich fixture many times over).
    #[test]
    fn written_in_chunks_the_same_bytes() {
        let mut plan = fixtures::rich();
        let users = plan.tenants[0].users.clone();
        for _ in 0..400 {
            plan.tenants[0].users.extend(users.iter().cloned());
        }
        for verbose in [false, true] {
            let whole = render_string(&plan, false, verbose);
            assert!(whole.len() > 2 * CHUNK, "{}", whole.len());
            let mut written = Vec::new();
            write_text(&plan, false, verbose, &mut written).unwrap();
            assert_eq!(String::from_utf8(written).unwrap(), whole);
        }
        let mut small = Vec::new();
        write_text(&fixtures::rich(), false, true, &mut small).unwrap();
        assert_eq!(
            String::from_utf8(small).unwrap(),
            text_verbose(&fixtures::rich(), false)
        );
    }

    #[test]
    fn rich_plan() {
        insta::assert_snapshot!(text(&fixtures::rich(), false));
    }

    #[test]
    fn rich_plan_verbose() {
        insta::assert_snapshot!(text_verbose(&fixtures::rich(), false));
    }

    #[test]
    fn no_changes_plan() {
        insta::assert_snapshot!(text(&fixtures::no_changes(), false));
    }

    #[test]
    fn tenant_named_by_id_and_empty_tenant() {
        let mut plan = fixtures::no_changes();
        plan.tenants[0].tenant = plan.tenants[0].tenant_id.clone();
        plan.tenants[0].users.clear();
        let out = text(&plan, false);
        assert!(
            out.starts_with("Tenant c0c0c0c0-0000-4000-8000-000000000001\n\n  No managed users.\n"),
            "{out}"
        );
        assert!(out.ends_with("No changes. Live state matches desired state (0 users).\n"));
    }

    #[test]
    fn color_only_when_asked() {
        let plan = fixtures::rich();
        let plain = text(&plan, false);
        assert!(!plain.contains('\u{1b}'), "no escape without colour");
        let colored = text(&plan, true);
        assert!(colored.contains('\u{1b}'));
        // green `+`, red `-`, yellow `~`
        assert!(colored.contains("\u{1b}[32m+       "));
        assert!(colored.contains("\u{1b}[31m-       "));
        assert!(colored.contains("\u{1b}[33m~"));
        // the same text once the escapes are removed
        assert_eq!(strip_ansi(&colored), plain);
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn password_only_ever_sensitive() {
        let out = text(&fixtures::rich(), false);
        let password_lines: Vec<&str> = out
            .lines()
            .filter(|l| {
                l.trim_start_matches(['+', '-', ' '])
                    .starts_with("password ")
            })
            .collect();
        assert_eq!(password_lines.len(), 3, "one per reset:\n{out}");
        for l in password_lines {
            assert!(l.ends_with("= (sensitive)"), "{l}");
            assert!(l.starts_with("  +"), "a reset adds the password line: {l}");
        }
    }
}
