//! `pwdrift apply`: apply a saved plan (`pwdrift apply PLAN.json`), or plan now and apply after
//! confirmation (`pwdrift apply [PATH ...]`, `--auto-approve` in CI); then verify by reading back.
//!
//! A saved plan is applied only if it is what `plan --out` wrote (its `content_hash`; see
//! [`crate::plan::parse_saved`]) and it is the plan its desired state gives now: the
//! desired-state files it records are unchanged (SHA-256), and planning again from them, with the
//! filters it records, against live state gives the same plan (tenant ids, fingerprints, and per
//! user the action, method, password source, flags and `allow_privileged`), so the rails of the
//! diff (privileged users, the caller's own account) hold on live state; otherwise it is refused,
//! the users that differ are named, and nothing is written (see [`crate::engine::recheck()`]).
//! Safety rails, checked before any write ([`crate::rails`]): `--max-changes N`, and a change set
//! touching more than `--change-threshold` percent of at least 10 managed users needs `--force`
//! (as octoDNS does).
//!
//! Passwords go through the write-ahead secrets file ([`crate::secrets`]); with
//! `--secrets-append` the entries an interrupted run left pending are resolved before planning.
//! The first SIGINT/SIGTERM during the writes stops new writes, lets those in flight finish (up
//! to 10 s), records every outcome and exits 130/143; if writes are still in flight after the
//! 10 s, the report and the summary are written without them (`unknown`, their entries pending
//! in the secrets file) before the exit. A second signal exits at once.
//!
//! Tenants are applied concurrently (see [`crate::engine::apply`]), each paced by its own
//! client; the results keep the plan's order. This module is the command's adapter: the flags
//! become [`crate::engine::ApplySettings`], the engine does the work, and the signals, the
//! confirmation and every line shown are handled here.
//!
//! Exit 0 only if every change was applied and verified; 1 otherwise, with what failed and why
//! (and which users need attention); 130 (SIGINT) or 143 (SIGTERM) when interrupted.

use std::cell::Cell;
use std::path::Path;

use crate::apply::ApplyReport;
use crate::cli::{ApplyArgs, ExitStatus};
use crate::commands::session::{self, DiagnosticStyle, Shown};
use crate::engine::recheck::Ready;
use crate::engine::report::Interruption;
use crate::engine::{self, ApplySettings, Rejected};
use crate::plan::Plan;
use crate::printer::{OutputError, Printer};

/// "10 s", "0.3 s".
fn seconds(d: std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// A closed stdout does not stop an apply: its output is dropped and the exit code still says
/// whether every change was applied and verified.
pub fn run(args: ApplyArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let rt = session::runtime()?;
    rt.block_on(run_async(args, printer))
}

/// Requested output; a closed stdout is ignored (see [`run`]).
fn out(printer: &Printer, text: &str) -> Result<(), OutputError> {
    match printer.out(text) {
        Err(OutputError::Closed) => Ok(()),
        other => other,
    }
}

async fn run_async(args: ApplyArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let settings = super::target::apply_settings(&args);
    let shown = Shown {
        printer,
        style: DiagnosticStyle::Text,
    };
    // a bad recipient is an error before anything else
    engine::apply::recipients(&settings.secrets_recipients)?;
    let ready = if let Some((path, text)) = engine::saved_plan(&settings.target.paths)? {
        let plan = engine::recheck::parse_saved(path, &text)?;
        let files: Vec<String> = (plan.made_from.files.iter())
            .map(|f| crate::escape::value(&f.path.display().to_string()).into_owned())
            .collect();
        let ready = rejected(printer, engine::recheck(&settings, plan, &shown).await?);
        if ready.is_some() {
            printer.info(&format!(
                "The saved plan is the plan its desired state ({}) gives against live state now.",
                files.join(", ")
            ));
        }
        ready
    } else {
        let Some(loaded) = session::load_desired(
            &settings.target.paths,
            &settings.target.allow_password_dirs,
            printer,
            DiagnosticStyle::Text,
        )?
        else {
            return Ok(ExitStatus::Failure);
        };
        let ready = rejected(
            printer,
            engine::recheck::prepare(&settings, loaded, &shown).await?,
        );
        if let Some(r) = &ready {
            out(printer, &crate::render::text(&r.plan, printer.color_out()))?;
        }
        ready
    };
    let Some(Ready {
        plan,
        mut session,
        secrets,
        locks: _locks,
        lease,
    }) = ready
    else {
        return Ok(ExitStatus::Failure);
    };
    for t in &mut session.tenants {
        t.clients.verify_timeout = settings.verify_timeout;
    }
    let result = apply_plan(&args, &settings, &plan, &session, printer, secrets, &lease).await;
    session.close().await;
    lease.release().await;
    result
}

/// The plan ready to apply, or `None` after printing why the run was rejected.
fn rejected(printer: &Printer, outcome: Result<Ready, Rejected>) -> Option<Ready> {
    match outcome {
        Ok(ready) => Some(ready),
        Err(r) => {
            session::report_rejected(printer, &r, DiagnosticStyle::Text);
            None
        }
    }
}

async fn apply_plan(
    args: &ApplyArgs,
    settings: &ApplySettings,
    plan: &Plan,
    session: &engine::Session,
    printer: &Printer,
    secrets: Option<crate::secrets::SecretsFile>,
    lease: &engine::lease::Leases,
) -> anyhow::Result<ExitStatus> {
    let summary = plan.summary();
    let changes = summary.set_flags + summary.reset_password;
    if changes == 0 {
        out(printer, "No changes to apply.\n")?;
        return Ok(if summary.blocked > 0 {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        });
    }
    // the rails, every password source, the secrets file: before anything is written
    let cleared = engine::apply::clear(settings, plan, secrets)?;

    if !args.auto_approve {
        if !printer.can_ask() {
            anyhow::bail!("refusing to apply without confirmation: stdin is not a terminal; pass --auto-approve");
        }
        let answer = printer.ask(&format!(
            "\nDo you want to apply these {changes} change(s)? Only 'yes' will be accepted: "
        ))?;
        if answer != "yes" {
            printer.error("Apply cancelled; nothing was written.");
            return Ok(ExitStatus::Failure);
        }
    }

    let bar = printer.progress(changes as u64);
    let tick = |upn: &str| {
        bar.inc(1);
        bar.set_message(crate::escape::value(upn).into_owned());
    };

    // From here on, the first SIGINT/SIGTERM stops new writes; a second one exits at once.
    let cancel = crate::apply::Cancel::default();
    let mut signals = super::signals::Signals::install()?;
    let signalled: Cell<Option<ExitStatus>> = Cell::new(None);
    let grace = settings.grace;
    let stop = async {
        let sig = signals.next().await;
        signalled.set(Some(sig));
        cancel.cancel();
        bar.suspend(|| printer.error(&format!(
            "{}: no new write starts; waiting up to {} for the writes in flight, then recording every outcome (signal again to exit at once).",
            if sig == ExitStatus::Terminated { "SIGTERM" } else { "SIGINT" },
            seconds(grace)
        )));
        tokio::select! {
            _ = signals.next() => {
                printer.error("Second signal: exiting now. Writes in flight stay pending in the secrets file; run apply again with --secrets-append to resolve them.");
                // --lock-blob: released if the storage account answers within 2 s, else the
                // leases expire on their own
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), lease.release()).await;
                std::process::exit(sig as i32);
            }
            _ = tokio::time::sleep(grace) => {}
        }
        bar.suspend(|| printer.error(&format!("Writes in flight did not finish within {}: stopping without them. Their entries stay pending in the secrets file; run apply again with --secrets-append to resolve them.", seconds(grace))));
        format!("the run was stopped ({} after the signal)", seconds(grace))
    };
    let applied = engine::apply::run(settings, plan, session, cleared, &tick, &cancel, stop).await;
    bar.finish_and_clear();
    let applied = applied?;

    let (mut text, status) = closing_summary(
        &applied.report,
        signalled.get(),
        applied
            .secrets
            .as_ref()
            .map(|s| (s.recorded(), s.path(), s.encrypted())),
    )?;
    // Details come from Graph: without colour, any escape sequence in them is stripped (as
    // anstream did when this was written through it).
    if !printer.color_out() {
        text = anstream::adapter::strip_str(&text).to_string();
    }
    out(printer, &text)?;
    if applied.stopped {
        // writes were abandoned mid-flight: exit now rather than wait for anything they left
        // behind in the runtime (the report and the summary are out); the leases first
        lease.release().await;
        std::process::exit(status as i32);
    }
    Ok(status)
}

/// The closing lines of an apply ([`engine::report::closing_summary`]) and its exit status: the
/// signal's when interrupted, else success only when complete. `secrets`: passwords recorded by
/// this run, the file, whether encrypted.
fn closing_summary(
    report: &ApplyReport,
    signalled: Option<ExitStatus>,
    secrets: Option<(usize, &Path, bool)>,
) -> Result<(String, ExitStatus), std::fmt::Error> {
    let interrupted = signalled.map(|s| match s {
        ExitStatus::Terminated => Interruption::Terminate,
        _ => Interruption::Interrupt,
    });
    let text = engine::report::closing_summary(report, interrupted, secrets)?;
    let status = match signalled {
        Some(code) => code,
        None if engine::report::complete(report) => ExitStatus::Success,
        None => ExitStatus::Failure,
    };
    Ok((text, status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{Status, UserResult};

    fn user(upn: &str, status: Status) -> UserResult {
        UserResult {
            tenant: "t".into(),
            user_id: upn.into(),
            user_principal_name: upn.into(),
            action: "reset_password".into(),
            status,
            detail: Some("why".into()),
            hint: None,
        }
    }

    fn report(users: Vec<UserResult>) -> ApplyReport {
        ApplyReport {
            format_version: "1".into(),
            started_at: chrono::Utc::now(),
            finished_at: chrono::Utc::now(),
            users,
        }
    }

    #[test]
    fn unknown_outcomes_name_the_users_and_fail() {
        let r = report(vec![
            user("a@x", Status::Verified),
            user("b@x", Status::Unknown),
            user("c@x", Status::Unknown),
        ]);
        let (text, status) =
            closing_summary(&r, None, Some((3, Path::new("s.jsonl"), false))).unwrap();
        assert_eq!(status, ExitStatus::Failure);
        assert!(
            text.contains("Apply incomplete: 1 changed and verified, 0 failed, 2 unknown"),
            "{text}"
        );
        assert!(
            text.contains("Needs attention (outcome unknown): b@x, c@x."),
            "{text}"
        );
        assert!(
            text.contains("3 password(s) recorded in s.jsonl."),
            "{text}"
        );
    }

    #[test]
    fn no_password_line_when_none_was_recorded() {
        let r = report(vec![user("a@x", Status::Failed)]);
        let (text, status) =
            closing_summary(&r, None, Some((0, Path::new("s.jsonl"), false))).unwrap();
        assert_eq!(status, ExitStatus::Failure);
        assert!(!text.contains("recorded"), "{text}");
        assert!(!text.contains("written to"), "{text}");
        let r = report(vec![user("a@x", Status::Verified)]);
        let (text, status) = closing_summary(&r, None, None).unwrap();
        assert_eq!(status, ExitStatus::Success);
        assert!(text.starts_with("Apply complete"), "{text}");
    }

    #[test]
    fn a_skipped_user_is_named_and_is_not_a_failure() {
        let r = report(vec![
            user("a@x", Status::Verified),
            user("b@x", Status::Skipped),
        ]);
        let (text, status) = closing_summary(&r, None, None).unwrap();
        assert_eq!(status, ExitStatus::Success);
        assert!(
            text.contains("b@x (reset_password): skipped: why"),
            "{text}"
        );
        assert!(
            text.contains(", 1 skipped (password changed since planned)."),
            "{text}"
        );
        assert!(
            text.contains(
                "Skipped, their password changed since the plan read it (not a failure): b@x."
            ),
            "{text}"
        );
    }

    #[test]
    fn an_interrupted_run_says_what_was_not_started_and_exits_with_the_signal() {
        let r = report(vec![
            user("a@x", Status::Verified),
            user("b@x", Status::NotStarted),
        ]);
        let (text, status) = closing_summary(
            &r,
            Some(ExitStatus::Terminated),
            Some((1, Path::new("s"), true)),
        )
        .unwrap();
        assert_eq!(status, ExitStatus::Terminated);
        assert_eq!(status as i32, 143);
        assert!(text.contains("Apply interrupted by SIGTERM"), "{text}");
        assert!(text.contains("b@x (reset_password): not started"), "{text}");
        assert!(text.contains("1 change(s) were not started"), "{text}");
        assert!(text.contains("(encrypted to the age recipients)"), "{text}");
    }
}
