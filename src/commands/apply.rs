//! `pwdrift apply`: apply a saved plan (`pwdrift apply PLAN.json`), or plan now and apply after
//! confirmation (`pwdrift apply [PATH ...]`, `--auto-approve` in CI); then verify by reading back.
//!
//! A saved plan is applied only if it is what `plan --out` wrote (its `content_hash`; see
//! [`crate::plan::parse_saved`]) and it is the plan its desired state gives now: the
//! desired-state files it records are unchanged (SHA-256), and planning again from them, with the
//! filters it records, against live state gives the same plan (tenant ids, fingerprints, and per
//! user the action, method, password source, flags and `allow_privileged`), so the rails of the
//! diff (privileged users, the caller's own account) hold on live state; otherwise it is refused,
//! the users that differ are named, and nothing is written (see `rederive`).
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
//! Tenants are applied concurrently (see [`session::all_tenants`]), each paced by its own
//! client; the results keep the plan's order.
//!
//! Exit 0 only if every change was applied and verified; 1 otherwise, with what failed and why
//! (and which users need attention); 130 (SIGINT) or 143 (SIGTERM) when interrupted.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::apply::{self, ApplyReport, Status};
use crate::cli::{ApplyArgs, ExitStatus};
use crate::commands::session::{self, DiagnosticStyle, Session};
use crate::plan::Plan;
use crate::printer::{OutputError, Printer};
use crate::secrets::{OpenMode, SecretsFile};

/// How long the writes in flight may take to finish after the first SIGINT/SIGTERM.
const GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// [`GRACE`], or, for tests only, `PWDRIFT_SIGNAL_GRACE_MS` (so that a test of an expiring grace
/// stays fast).
fn grace() -> std::time::Duration {
    std::env::var("PWDRIFT_SIGNAL_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(GRACE, std::time::Duration::from_millis)
}

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

/// Largest saved plan read.
const MAX_PLAN_BYTES: u64 = 256 << 20;

/// A single path that holds a saved plan document (not YAML desired state), with its text.
/// A path that is not a regular file, or too large, is an error (not desired state either).
fn saved_plan(paths: &[PathBuf]) -> anyhow::Result<Option<(&Path, String)>> {
    let [one] = paths else { return Ok(None) };
    // a directory, or a missing path: desired state (the loader says what is wrong)
    if one.is_dir() || std::fs::symlink_metadata(one).is_err() {
        return Ok(None);
    }
    if one.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        return Ok(None);
    }
    let text = crate::config::read::read_regular_text(one, MAX_PLAN_BYTES)
        .with_context(|| format!("cannot read {}", one.display()))?;
    let trimmed = text.trim_start();
    Ok(
        (trimmed.starts_with('{') && trimmed.contains("\"format_version\""))
            .then_some((one.as_path(), text)),
    )
}

/// The age recipients of `--secrets-recipient`: each value a recipient, or a file of them.
fn recipients(values: &[String]) -> anyhow::Result<Vec<age::x25519::Recipient>> {
    let mut out = Vec::new();
    for v in values {
        if v.trim_start().starts_with("age1") {
            out.push(crate::secrets::parse_recipient(v).map_err(anyhow::Error::msg)?);
            continue;
        }
        let text = std::fs::read_to_string(v).with_context(|| {
            format!("--secrets-recipient {v}: not age1... and not a readable file")
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(
                crate::secrets::parse_recipient(line)
                    .map_err(|e| anyhow::anyhow!("{v}:{}: {e}", i + 1))?,
            );
        }
    }
    Ok(out)
}

/// With `--secrets-append`: opens the file and resolves what an interrupted run left pending,
/// before anything is planned.
async fn resume(
    args: &ApplyArgs,
    session: &Session,
    printer: &Printer,
    secrets: &mut Option<SecretsFile>,
) -> anyhow::Result<()> {
    let (Some(path), true) = (&args.secrets_out, args.secrets_append) else {
        return Ok(());
    };
    let (mut file, journal) =
        SecretsFile::open(path, OpenMode::Append, recipients(&args.secrets_recipient)?)
            .map_err(apply::ApplyError::from)?;
    let pending: Vec<_> = journal.pending().cloned().collect();
    if !pending.is_empty() {
        printer.info(&format!(
            "{}: {} entr{} left pending by an earlier run; resolving before planning:",
            path.display(),
            pending.len(),
            if pending.len() == 1 { "y" } else { "ies" }
        ));
        let lookup = |t: &str| session.tenant(t).map(|ts| &ts.clients);
        for line in apply::resolve_pending(lookup, &mut file, &pending).await? {
            printer.info(&format!("  {line}"));
        }
    }
    *secrets = Some(file);
    Ok(())
}

async fn run_async(args: ApplyArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let target = &args.target;
    // a bad recipient is an error before anything else
    recipients(&args.secrets_recipient)?;
    let mut secrets: Option<SecretsFile> = None;
    let (plan, session) = if let Some((path, text)) = saved_plan(&target.paths)? {
        let plan = crate::plan::parse_saved(&text)
            .with_context(|| format!("{} is not a usable saved plan", path.display()))?;
        match rederive(&args, plan, printer, &mut secrets).await? {
            Some(ready) => ready,
            None => return Ok(ExitStatus::Failure),
        }
    } else {
        let Some(loaded) = session::load_desired(&target.paths, printer, DiagnosticStyle::Text)?
        else {
            return Ok(ExitStatus::Failure);
        };
        let sources = loaded.sources;
        let Some(session) = session::open_reporting(
            target,
            loaded.state,
            args.concurrency,
            printer,
            &sources,
            DiagnosticStyle::Text,
        )
        .await?
        else {
            return Ok(ExitStatus::Failure);
        };
        if let Err(e) = resume(&args, &session, printer, &mut secrets).await {
            session.close().await;
            return Err(e);
        }
        let plan = match session
            .plan(&target.targets, &sources, printer, DiagnosticStyle::Text)
            .await
        {
            Ok(Some(plan)) => plan,
            other => {
                session.close().await;
                return other.map(|_| ExitStatus::Failure);
            }
        };
        out(printer, &crate::render::text(&plan, printer.color_out()))?;
        (plan, session)
    };

    let mut session = session;
    for t in &mut session.tenants {
        t.clients.verify_timeout = std::time::Duration::from_secs(args.verify_timeout);
    }
    let result = apply_plan(&args, &plan, &session, printer, secrets).await;
    session.close().await;
    result
}

/// Most lines shown per kind of refusal; the rest are counted.
const MAX_REFUSAL_LINES: usize = 50;

/// Prints a refusal of a saved plan: each kind of problem with the users it names (at most
/// [`MAX_REFUSAL_LINES`] each), then what to do.
fn refuse(printer: &Printer, kinds: &[(&str, &[String])], remedy: &str) {
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

const REPLAN: &str = "Run `pwdrift plan --out FILE` again, review it, and apply the new plan.";

/// Derives a saved plan again before anything is written, and returns it with the session to
/// apply it in, or `Ok(None)` after printing why it is refused.
///
/// The trust root is the reviewed desired state, not the plan document (its content hash can be
/// recomputed by whoever edits it): the desired-state files the plan records are loaded again
/// (relative paths from the current directory, as `plan` did), and refused if any is missing or
/// its SHA-256 differs; the plan is then made again against live state with the filters it
/// records (`--tenant`, `--target`, `--shard`), and the saved plan is applied only if it is the
/// same ([`crate::plan::compare`]): same tenant ids, same live state (fingerprints), same action,
/// reset method, password source, flags and `allow_privileged` for every user. The rails of
/// [`crate::diff`] (privileged users, the caller's own account) hold because the derived plan
/// applies them. A `--shard` given to `apply` keeps only that shard's tenants of both plans.
async fn rederive(
    args: &ApplyArgs,
    mut plan: Plan,
    printer: &Printer,
    secrets: &mut Option<SecretsFile>,
) -> anyhow::Result<Option<(Plan, Session)>> {
    let made = plan.made_from.clone();
    let target = &args.target;
    if (!target.tenants.is_empty() && target.tenants != made.tenants)
        || (!target.targets.is_empty() && target.targets != made.targets)
    {
        anyhow::bail!(
            "--tenant and --target choose what a plan covers when it is made (`pwdrift plan \
             --out FILE`); a saved plan is applied as it was made (it records --tenant {:?}, \
             --target {:?})",
            made.tenants,
            made.targets
        );
    }

    // The desired state must be the one the plan was made from.
    let check_files = |found: &[(PathBuf, String)]| -> Vec<String> {
        made.files
            .iter()
            .filter_map(|f| match found.iter().find(|(p, _)| *p == f.path) {
                None => Some(format!("{}: missing", f.path.display())),
                Some((_, d)) if *d != f.sha256 => Some(format!(
                    "{}: changed (the plan was made from {}, the file is now {d})",
                    f.path.display(),
                    f.sha256
                )),
                Some(_) => None,
            })
            .collect()
    };
    let mut now = Vec::new();
    for f in &made.files {
        if let Ok(bytes) = crate::config::read::read_regular(&f.path, crate::config::MAX_FILE_SIZE)
        {
            now.push((f.path.clone(), crate::config::file_digest(&bytes)));
        }
    }
    let refuse_changed = |changed: &[String]| {
        refuse(
            printer,
            &[(
                "the desired state changed since the plan was made: re-plan",
                changed,
            )],
            "Run `pwdrift plan --out FILE` again (in the directory the desired-state paths are \
             relative to), review it, and apply the new plan.",
        )
    };
    let changed = check_files(&now);
    if !changed.is_empty() {
        refuse_changed(&changed);
        return Ok(None);
    }
    let paths: Vec<PathBuf> = made.files.iter().map(|f| f.path.clone()).collect();
    let Some(loaded) = session::load_desired(&paths, printer, DiagnosticStyle::Text)? else {
        return Ok(None);
    };
    // what was parsed is what was hashed (a file swapped between the two reads is refused)
    let changed = check_files(&loaded.digests);
    if !changed.is_empty() {
        refuse_changed(&changed);
        return Ok(None);
    }

    let mut again = target.clone();
    again.paths = paths;
    again.tenants = made.tenants.clone();
    again.targets = made.targets.clone();
    again.shard = match &made.shard {
        Some(s) => Some(s.parse().map_err(anyhow::Error::msg)?),
        None => None,
    };
    let Some(session) = session::open_reporting(
        &again,
        loaded.state,
        args.concurrency,
        printer,
        &loaded.sources,
        DiagnosticStyle::Text,
    )
    .await?
    else {
        return Ok(None);
    };
    if let Err(e) = resume(args, &session, printer, secrets).await {
        session.close().await;
        return Err(e);
    }
    let mut derived = match session
        .plan(
            &again.targets,
            &loaded.sources,
            printer,
            DiagnosticStyle::Text,
        )
        .await
    {
        Ok(Some(derived)) => derived,
        other => {
            session.close().await;
            return other.map(|_| None);
        }
    };
    plan.tenants
        .retain(|t| session::in_shard(target.shard, &t.tenant_id));
    derived
        .tenants
        .retain(|t| session::in_shard(target.shard, &t.tenant_id));
    let m = crate::plan::compare(&plan, &derived);
    if !m.is_empty() {
        session.close().await;
        refuse(
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
        );
        return Ok(None);
    }
    printer.info(&format!(
        "The saved plan is the plan its desired state ({}) gives against live state now.",
        made.files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(Some((plan, session)))
}

async fn apply_plan(
    args: &ApplyArgs,
    plan: &Plan,
    session: &Session,
    printer: &Printer,
    mut secrets: Option<SecretsFile>,
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

    // Safety rails, before anything is written.
    crate::rails::Rails {
        max_changes: args.max_changes,
        change_threshold: args.change_threshold,
        force: args.force,
    }
    .check(plan)?;
    // Every password source of every tenant, before anything is written.
    let passwords = apply::ResolvedPasswords::resolve(plan)?;
    let generated = passwords.generated_count();
    if secrets.is_none() {
        secrets = match &args.secrets_out {
            // a new file: O_CREAT|O_EXCL|O_NOFOLLOW, 0600 (an existing one needs --secrets-append)
            Some(p) => Some(
                SecretsFile::open(p, OpenMode::CreateNew, recipients(&args.secrets_recipient)?)
                    .map_err(apply::ApplyError::from)?
                    .0,
            ),
            None if generated > 0 => {
                return Err(apply::ApplyError::SecretsOutRequired { count: generated }.into())
            }
            None => None,
        };
    }

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

    let started_at = chrono::Utc::now();
    let bar = printer.progress(changes as u64);
    let tick = |upn: &str| {
        bar.inc(1);
        bar.set_message(upn.to_owned());
    };

    // From here on, the first SIGINT/SIGTERM stops new writes; a second one exits at once.
    let cancel = apply::Cancel::default();
    let ledger = apply::Ledger::default();
    let secrets = apply::SharedSecrets::new(secrets);
    let mut signals = Signals::install()?;
    let mut signalled: Option<ExitStatus> = None;
    let grace = grace();
    // true when the grace expired with writes still in flight: the run stops without them
    let mut stopped = false;
    let users = {
        let shared = apply::Shared {
            passwords: &passwords,
            secrets: &secrets,
            cancel: &cancel,
            ledger: &ledger,
            progress: &tick,
            resets_at_once: args.concurrency.max(1) * apply::RESETS_PER_REQUEST_SLOT,
        };
        let shared = &shared;
        // tenants at once (each paced by its own client's quotas), results in plan order
        let tenants: Vec<_> = plan
            .tenants
            .iter()
            .map(|t| async move {
                let ts = session
                    .tenant(&t.tenant)
                    .with_context(|| format!("no connection for tenant {}", t.tenant))?;
                anyhow::Ok(apply::apply_tenant(&ts.clients, t, shared).await?)
            })
            .collect();
        let work = session::all_tenants(tenants);
        tokio::pin!(work);
        let mut grace_end: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                users = &mut work => break users?.into_iter().flatten().collect::<Vec<_>>(),
                sig = signals.next() => {
                    if let Some(code) = signalled {
                        printer.error("Second signal: exiting now. Writes in flight stay pending in the secrets file; run apply again with --secrets-append to resolve them.");
                        std::process::exit(code as i32);
                    }
                    signalled = Some(sig);
                    cancel.cancel();
                    grace_end = Some(tokio::time::Instant::now() + grace);
                    bar.suspend(|| printer.error(&format!(
                        "{}: no new write starts; waiting up to {} for the writes in flight, then recording every outcome (signal again to exit at once).",
                        if sig == ExitStatus::Terminated { "SIGTERM" } else { "SIGINT" },
                        seconds(grace)
                    )));
                }
                _ = sleep_until(grace_end), if grace_end.is_some() => {
                    stopped = true;
                    bar.suspend(|| printer.error(&format!("Writes in flight did not finish within {}: stopping without them. Their entries stay pending in the secrets file; run apply again with --secrets-append to resolve them.", seconds(grace))));
                    break ledger.snapshot(
                        plan,
                        &format!("the run was stopped ({} after the signal)", seconds(grace)),
                    );
                }
            }
        }
    };
    bar.finish_and_clear();
    // no write is running any more (the ones still in flight when the grace expired were
    // dropped above): the file is this task's again
    let secrets = secrets
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);

    let report = ApplyReport {
        format_version: apply::REPORT_FORMAT_VERSION.to_owned(),
        started_at,
        finished_at: chrono::Utc::now(),
        users,
    };
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)? + "\n";
        crate::commands::plan::write_atomically(path, json.as_bytes())
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }

    let (mut text, status) = closing_summary(
        &report,
        signalled,
        secrets
            .as_ref()
            .map(|s| (s.recorded(), s.path(), s.encrypted())),
    )?;
    // Details come from Graph: without colour, any escape sequence in them is stripped (as
    // anstream did when this was written through it).
    if !printer.color_out() {
        text = anstream::adapter::strip_str(&text).to_string();
    }
    out(printer, &text)?;
    if stopped {
        // writes were abandoned mid-flight: exit now rather than wait for anything they left
        // behind in the runtime (the report and the summary are out)
        std::process::exit(status as i32);
    }
    Ok(status)
}

/// The closing lines of an apply (what was done, what was not, who needs attention, where the
/// passwords were recorded) and its exit status. `secrets`: passwords recorded by this run,
/// the file, whether encrypted.
fn closing_summary(
    report: &ApplyReport,
    signalled: Option<ExitStatus>,
    secrets: Option<(usize, &Path, bool)>,
) -> Result<(String, ExitStatus), std::fmt::Error> {
    use std::fmt::Write;
    let mut text = String::new();
    for u in report.users.iter().filter(|u| {
        matches!(
            u.status,
            Status::Failed | Status::Blocked | Status::Unknown | Status::NotStarted
        )
    }) {
        let what = match u.status {
            Status::Failed => "failed",
            Status::Unknown => "OUTCOME UNKNOWN",
            Status::NotStarted => "not started",
            _ => "blocked",
        };
        writeln!(
            text,
            "  ! {} ({}): {what}: {}",
            u.user_principal_name,
            u.action,
            u.detail.as_deref().unwrap_or("")
        )?;
        if let Some(h) = &u.hint {
            writeln!(text, "      hint: {h}")?;
        }
    }
    let verified = report.count(Status::Verified);
    let failed = report.count(Status::Failed);
    let blocked = report.count(Status::Blocked);
    let unknown = report.count(Status::Unknown);
    let not_started = report.count(Status::NotStarted);
    let complete = failed == 0 && blocked == 0 && unknown == 0 && not_started == 0;
    writeln!(
        text,
        "Apply {}: {verified} changed and verified, {failed} failed, {unknown} unknown, {not_started} not started, {blocked} blocked, {} unchanged.",
        match signalled {
            Some(ExitStatus::Terminated) => "interrupted by SIGTERM",
            Some(_) => "interrupted by SIGINT",
            None if complete => "complete",
            None => "incomplete",
        },
        report.count(Status::Unchanged)
    )?;
    if let Some((recorded, path, encrypted)) = secrets {
        if recorded > 0 {
            writeln!(
                text,
                "{recorded} password(s) recorded in {}{}.",
                path.display(),
                if encrypted {
                    " (encrypted to the age recipients)"
                } else {
                    ""
                }
            )?;
        }
    }
    let attention: Vec<&str> = report
        .users
        .iter()
        .filter(|u| u.status == Status::Unknown)
        .map(|u| u.user_principal_name.as_str())
        .collect();
    if !attention.is_empty() {
        writeln!(
            text,
            "Needs attention (outcome unknown): {}. Run apply again with --secrets-append and the same --secrets-out file to resolve them.",
            attention.join(", ")
        )?;
    }
    if not_started > 0 {
        writeln!(
            text,
            "{not_started} change(s) were not started; run apply again to carry them out."
        )?;
    }
    let status = match signalled {
        Some(code) => code,
        None if complete => ExitStatus::Success,
        None => ExitStatus::Failure,
    };
    Ok((text, status))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM, once the writes start (before that, the default: the process ends).
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal, as the exit status it stands for.
    async fn next(&mut self) -> ExitStatus {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => ExitStatus::Interrupted,
                _ = self.term.recv() => ExitStatus::Terminated,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            ExitStatus::Interrupted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::UserResult;

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
