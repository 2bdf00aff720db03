//! The closing lines of an apply: what was done, what was not, who needs attention, where the
//! passwords were recorded; and whether the run is complete. Every value in them (a UPN, a detail
//! quoting Graph, a file name) is escaped for display ([`Shown`]): one line each, no control,
//! bidirectional or separator character.

use std::fmt::Write;
use std::path::Path;

use crate::apply::{ApplyReport, Status};
use crate::escape::Shown;

/// What stopped a run before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interruption {
    /// SIGINT (Ctrl-C)
    Interrupt,
    /// SIGTERM
    Terminate,
}

/// Whether every planned change was applied and verified (nothing failed, blocked, unknown or
/// not started).
pub fn complete(report: &ApplyReport) -> bool {
    [
        Status::Failed,
        Status::Blocked,
        Status::Unknown,
        Status::NotStarted,
        Status::PasswordUnknown,
    ]
    .iter()
    .all(|s| report.count(*s) == 0)
}

/// The closing lines of an apply. `secrets`: passwords recorded by this run, the file, whether
/// encrypted.
pub fn closing_summary(
    report: &ApplyReport,
    interrupted: Option<Interruption>,
    secrets: Option<(usize, &Path, bool)>,
) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    for u in report.users.iter().filter(|u| {
        matches!(
            u.status,
            Status::Failed
                | Status::Blocked
                | Status::Unknown
                | Status::NotStarted
                | Status::PasswordUnknown
                | Status::Skipped
        )
    }) {
        let what = match u.status {
            Status::Failed => "failed",
            Status::Unknown => "OUTCOME UNKNOWN",
            Status::PasswordUnknown => "PASSWORD UNKNOWN",
            Status::NotStarted => "not started",
            Status::Skipped => "skipped",
            _ => "blocked",
        };
        writeln!(
            text,
            "  ! {} ({}): {what}: {}",
            Shown(&u.user_principal_name),
            Shown(&u.action),
            Shown(u.detail.as_deref().unwrap_or(""))
        )?;
        if let Some(h) = &u.hint {
            writeln!(text, "      hint: {}", Shown(h))?;
        }
    }
    let verified = report.count(Status::Verified);
    let failed = report.count(Status::Failed);
    let blocked = report.count(Status::Blocked);
    let unknown = report.count(Status::Unknown);
    let not_started = report.count(Status::NotStarted);
    let skipped = match report.count(Status::Skipped) {
        0 => String::new(),
        n => format!(", {n} skipped (password changed since planned)"),
    };
    writeln!(
        text,
        "Apply {}: {verified} changed and verified, {failed} failed, {unknown} unknown, {not_started} not started, {blocked} blocked, {} unchanged{skipped}.",
        match interrupted {
            Some(Interruption::Terminate) => "interrupted by SIGTERM",
            Some(Interruption::Interrupt) => "interrupted by SIGINT",
            None if complete(report) => "complete",
            None => "incomplete",
        },
        report.count(Status::Unchanged)
    )?;
    if let Some((recorded, path, encrypted)) = secrets {
        if recorded > 0 {
            writeln!(
                text,
                "{recorded} password(s) recorded in {}{}.",
                Shown(&path.display().to_string()),
                if encrypted {
                    " (encrypted to the age recipients)"
                } else {
                    ""
                }
            )?;
        }
    }
    let attention: Vec<String> = report
        .users
        .iter()
        .filter(|u| u.status == Status::Unknown)
        .map(|u| Shown(&u.user_principal_name).to_string())
        .collect();
    if !attention.is_empty() {
        writeln!(
            text,
            "Needs attention (outcome unknown): {}. Run apply again with --secrets-append and the same --secrets-out file to resolve them.",
            attention.join(", ")
        )?;
    }
    let lost: Vec<&str> = report
        .users
        .iter()
        .filter(|u| u.status == Status::PasswordUnknown)
        .map(|u| u.user_principal_name.as_str())
        .collect();
    if !lost.is_empty() {
        writeln!(
            text,
            "Needs attention (password unknown): {}. Their passwords were reset but the answer did not carry the system-generated password; reset them again with a password pwdrift generates (`generate`).",
            lost.join(", ")
        )?;
    }
    let skipped: Vec<&str> = report
        .users
        .iter()
        .filter(|u| u.status == Status::Skipped)
        .map(|u| u.user_principal_name.as_str())
        .collect();
    if !skipped.is_empty() {
        writeln!(
            text,
            "Skipped, their password changed since the plan read it (not a failure): {}. Run plan again to see whether they still need a change.",
            skipped.join(", ")
        )?;
    }
    if not_started > 0 {
        writeln!(
            text,
            "{not_started} change(s) were not started; run apply again to carry them out."
        )?;
    }
    Ok(text)
}
