//! `pwdrift apply`: apply a saved plan (`pwdrift apply PLAN.json`), or plan now and apply after
//! confirmation (`pwdrift apply [PATH ...]`, `--auto-approve` in CI); then verify by reading back.
//!
//! A saved plan is applied only if every user it lists still has the live state the plan was
//! computed from (fingerprints); otherwise it is refused as stale and nothing is written.
//! Safety rails, checked before any write: `--max-changes N`, and a change set touching more than
//! `--change-threshold` percent of at least 10 managed users needs `--force` (as octoDNS does).
//!
//! Exit 0 only if every change was applied and verified; 1 otherwise, with what failed and why.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::apply::{self, ApplyReport, SecretsSink, Status};
use crate::cli::{ApplyArgs, ExitStatus};
use crate::commands::session::{self, Session};
use crate::config::{DesiredState, TenantDesired, TenantRef};
use crate::plan::Plan;

pub fn run(args: ApplyArgs) -> anyhow::Result<ExitStatus> {
    let rt = session::runtime()?;
    rt.block_on(run_async(args))
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

async fn run_async(args: ApplyArgs) -> anyhow::Result<ExitStatus> {
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
        let session = Session::open(target, desired, args.concurrency).await?;
        if let Err(stale) = check_not_stale(&session, &plan).await? {
            session.close().await;
            eprintln!("error: the saved plan is stale: live state changed since it was made; nothing was written");
            for line in stale {
                eprintln!("  - {line}");
            }
            eprintln!("Run `pwdrift plan --out FILE` again, review it, and apply the new plan.");
            return Ok(ExitStatus::Failure);
        }
        (plan, session)
    } else {
        let Some(desired) = session::load_desired(&target.paths)? else {
            return Ok(ExitStatus::Failure);
        };
        let session = Session::open(target, desired, args.concurrency).await?;
        let plan = match session.plan(&target.targets).await {
            Ok(Some(plan)) => plan,
            other => {
                session.close().await;
                return other.map(|_| ExitStatus::Failure);
            }
        };
        let color = crate::render::color_for_stdout();
        print!("{}", crate::render::text(&plan, color));
        (plan, session)
    };

    let result = apply_plan(&args, &plan, &session).await;
    session.close().await;
    result
}

/// Re-reads every user of the plan; lists those whose live state no longer matches.
async fn check_not_stale(
    session: &Session,
    plan: &Plan,
) -> anyhow::Result<Result<(), Vec<String>>> {
    let mut stale = Vec::new();
    for t in &plan.tenants {
        let ts = session
            .tenant(&t.tenant)
            .with_context(|| format!("no connection for tenant {}", t.tenant))?;
        let ids: Vec<String> = t.users.iter().map(|u| u.user_id.clone()).collect();
        let live = crate::live::read_users_by_id(&ts.clients.app, &t.tenant, &ids).await?;
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
) -> anyhow::Result<ExitStatus> {
    let summary = plan.summary();
    let changes = summary.set_flags + summary.reset_password;
    if changes == 0 {
        println!("No changes to apply.");
        return Ok(if summary.blocked > 0 {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        });
    }

    // Safety rails, before anything is written.
    if let Some(max) = args.max_changes {
        if changes > max {
            anyhow::bail!("the plan has {changes} changes, more than --max-changes {max}; nothing was written");
        }
    }
    let managed = summary.unchanged + summary.set_flags + summary.reset_password + summary.blocked;
    if managed >= 10 && changes * 100 > usize::from(args.change_threshold) * managed && !args.force
    {
        anyhow::bail!(
            "the plan changes {changes} of {managed} managed users ({}%), more than the {}% threshold; \
             review it and pass --force to proceed (or raise --change-threshold); nothing was written",
            changes * 100 / managed,
            args.change_threshold
        );
    }
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
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("refusing to apply without confirmation: stdin is not a terminal; pass --auto-approve");
        }
        eprint!("\nDo you want to apply these {changes} change(s)? Only 'yes' will be accepted: ");
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("Apply cancelled; nothing was written.");
            return Ok(ExitStatus::Failure);
        }
    }

    let started_at = chrono::Utc::now();
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(changes as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {wide_msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let tick = |upn: &str| {
        bar.inc(1);
        bar.set_message(upn.to_owned());
    };

    let mut users = Vec::new();
    for t in &plan.tenants {
        let ts = session
            .tenant(&t.tenant)
            .with_context(|| format!("no connection for tenant {}", t.tenant))?;
        users.extend(apply::apply_tenant(&ts.clients, t, &passwords, &mut secrets, &tick).await?);
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

    let mut out = anstream::stdout();
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
            out,
            "  ! {} ({}): {what}: {}",
            u.user_principal_name,
            u.action,
            u.detail.as_deref().unwrap_or("")
        )?;
        if let Some(h) = &u.hint {
            writeln!(out, "      hint: {h}")?;
        }
    }
    let verified = report.count(Status::Verified);
    let failed = report.count(Status::Failed);
    let blocked = report.count(Status::Blocked);
    writeln!(
        out,
        "Apply {}: {verified} changed and verified, {failed} failed, {blocked} blocked, {} unchanged.",
        if failed == 0 && blocked == 0 { "complete" } else { "incomplete" },
        report.count(Status::Unchanged)
    )?;
    if let Some(s) = &secrets {
        if generated > 0 {
            writeln!(
                out,
                "Generated passwords were written to {}.",
                s.path().display()
            )?;
        }
    }
    Ok(if failed == 0 && blocked == 0 {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
