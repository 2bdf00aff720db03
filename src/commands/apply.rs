//! `pwdrift apply`: apply a saved plan (`pwdrift apply PLAN.json`), or plan now and apply after
//! confirmation (`pwdrift apply [PATH ...]`, `--auto-approve` in CI); then verify by reading back.
//!
//! A saved plan is applied only if every user it lists still has the live state the plan was
//! computed from (fingerprints); otherwise it is refused as stale and nothing is written.
//! Safety rails, checked before any write ([`crate::rails`]): `--max-changes N`, and a change set
//! touching more than `--change-threshold` percent of at least 10 managed users needs `--force`
//! (as octoDNS does).
//!
//! Exit 0 only if every change was applied and verified; 1 otherwise, with what failed and why.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::apply::{self, ApplyReport, SecretsSink, Status};
use crate::cli::{ApplyArgs, ExitStatus};
use crate::commands::session::{self, DiagnosticStyle, Session};
use crate::config::{DesiredState, TenantDesired, TenantRef};
use crate::plan::Plan;
use crate::printer::{OutputError, Printer};

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

/// A single path that holds a saved plan document (not YAML desired state), with its text.
fn saved_plan(paths: &[PathBuf]) -> Option<(&Path, String)> {
    match paths {
        [one] if one.is_file() => {
            let text = std::fs::read_to_string(one).ok()?;
            let trimmed = text.trim_start();
            (trimmed.starts_with('{') && trimmed.contains("\"format_version\""))
                .then_some((one.as_path(), text))
        }
        _ => None,
    }
}

async fn run_async(args: ApplyArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let target = &args.target;
    let (plan, session) = if let Some((path, text)) = saved_plan(&target.paths) {
        let mut plan = crate::plan::parse_saved(&text)
            .with_context(|| format!("{} is not a usable saved plan", path.display()))?;
        plan.tenants
            .retain(|t| session::in_shard(target.shard, &t.tenant));
        let desired = DesiredState {
            tenants: plan
                .tenants
                .iter()
                .map(|t| TenantDesired {
                    tenant: TenantRef::Domain(t.tenant.clone()),
                    users: vec![],
                    groups: vec![],
                    files: vec![],
                })
                .collect(),
            files: vec![],
        };
        let session = Session::open(target, desired, args.concurrency, printer).await?;
        if let Err(stale) = check_not_stale(&session, &plan).await? {
            session.close().await;
            printer.error("error: the saved plan is stale: live state changed since it was made; nothing was written");
            for line in stale {
                printer.error(&format!("  - {line}"));
            }
            printer
                .error("Run `pwdrift plan --out FILE` again, review it, and apply the new plan.");
            return Ok(ExitStatus::Failure);
        }
        (plan, session)
    } else {
        let Some((desired, sources)) =
            session::load_desired(&target.paths, printer, DiagnosticStyle::Text)?
        else {
            return Ok(ExitStatus::Failure);
        };
        let session = Session::open(target, desired, args.concurrency, printer).await?;
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

    let result = apply_plan(&args, &plan, &session, printer).await;
    session.close().await;
    result
}

/// Re-reads every user of the plan; lists those whose live state no longer matches.
async fn check_not_stale(
    session: &Session,
    plan: &Plan,
) -> anyhow::Result<Result<(), Vec<String>>> {
    let mut stale = Vec::new();
    let mut reads = Vec::with_capacity(plan.tenants.len());
    for t in &plan.tenants {
        let ts = session
            .tenant(&t.tenant)
            .with_context(|| format!("no connection for tenant {}", t.tenant))?;
        let ids: Vec<String> = t.users.iter().map(|u| u.user_id.clone()).collect();
        reads.push(
            async move { crate::live::read_users_by_id(&ts.clients.app, &t.tenant, &ids).await },
        );
    }
    let lives = super::session::all_tenants(reads).await?;
    for (t, live) in plan.tenants.iter().zip(lives) {
        for u in &t.users {
            match live.get(&u.user_id) {
                None => stale.push(format!("{}: no longer exists", u.user_principal_name)),
                Some(l) if l.fingerprint() != u.fingerprint => {
                    stale.push(format!("{}: changed since the plan", u.user_principal_name))
                }
                Some(_) => {}
            }
        }
    }
    Ok(if stale.is_empty() { Ok(()) } else { Err(stale) })
}

async fn apply_plan(
    args: &ApplyArgs,
    plan: &Plan,
    session: &Session,
    printer: &Printer,
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
    let mut secrets = match &args.secrets_out {
        Some(p) => Some(SecretsSink::open(p)?),
        None if generated > 0 => {
            return Err(apply::ApplyError::SecretsOutRequired { count: generated }.into())
        }
        None => None,
    };

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

    let mut users = Vec::new();
    if secrets.is_none() {
        // Nothing to record: tenants are applied side by side (each paced by its own quotas).
        let mut applying = Vec::with_capacity(plan.tenants.len());
        for t in &plan.tenants {
            let ts = session
                .tenant(&t.tenant)
                .with_context(|| format!("no connection for tenant {}", t.tenant))?;
            let (passwords, tick) = (&passwords, &tick);
            applying.push(async move {
                apply::apply_tenant(&ts.clients, t, passwords, &mut None, tick).await
            });
        }
        for done in super::session::all_tenants(applying).await? {
            users.extend(done);
        }
    } else {
        // One secrets sink written in order: tenants one after the other.
        for t in &plan.tenants {
            let ts = session
                .tenant(&t.tenant)
                .with_context(|| format!("no connection for tenant {}", t.tenant))?;
            users.extend(
                apply::apply_tenant(&ts.clients, t, &passwords, &mut secrets, &tick).await?,
            );
        }
    }
    bar.finish_and_clear();

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

    use std::fmt::Write;
    let mut text = String::new();
    for u in report
        .users
        .iter()
        .filter(|u| u.status == Status::Failed || u.status == Status::Blocked)
    {
        let what = if u.status == Status::Failed {
            "failed"
        } else {
            "blocked"
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
    writeln!(
        text,
        "Apply {}: {verified} changed and verified, {failed} failed, {blocked} blocked, {} unchanged.",
        if failed == 0 && blocked == 0 { "complete" } else { "incomplete" },
        report.count(Status::Unchanged)
    )?;
    if let Some(s) = &secrets {
        if generated > 0 {
            writeln!(
                text,
                "Generated passwords were written to {}.",
                s.path().display()
            )?;
        }
    }
    // Details come from Graph: without colour, any escape sequence in them is stripped (as
    // anstream did when this was written through it).
    if !printer.color_out() {
        text = anstream::adapter::strip_str(&text).to_string();
    }
    out(printer, &text)?;
    Ok(if failed == 0 && blocked == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
