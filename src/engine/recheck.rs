//! The re-check of a saved plan before anything is written, and what `apply` shares with it:
//! connect, resolve what an interrupted run left pending, plan against live state.
//!
//! The trust root is the reviewed desired state, not the plan document (its content hash can be
//! recomputed by whoever edits it): the desired-state files the plan records are loaded again
//! (relative paths from the current directory, as `plan` did), and refused if any is missing or
//! its SHA-256 differs; the plan is then made again against live state with the filters it
//! records (`--tenant`, `--target`, `--shard`), and the saved plan is applied only if it is the
//! same ([`crate::plan::compare`]): same tenant ids, same live state (fingerprints), same action,
//! reset method, password source, flags and `allow_privileged` for every user. The rails of
//! [`crate::diff`] (privileged users, the caller's own account) hold because the derived plan
//! applies them. A `--shard` given to `apply` keeps only that shard's tenants of both plans.

use std::path::{Path, PathBuf};

use crate::config;
use crate::plan::Plan;
use crate::secrets::SecretsFile;

use super::error::Context;
use super::session::{in_shard, Session};
use super::settings::ApplySettings;
use super::{EngineError, Observer, Rejected};

/// Largest saved plan read.
pub(crate) const MAX_PLAN_BYTES: u64 = 256 << 20;

/// A plan ready to apply, with the session to apply it in and, with `--secrets-append`, the
/// secrets file (what an earlier run left pending in it resolved).
pub struct Ready {
    pub plan: Plan,
    pub session: Session,
    pub secrets: Option<SecretsFile>,
    /// the per-tenant locks of this apply (see [`super::lock`]), held until it is dropped
    pub locks: super::lock::TenantLocks,
    /// with `--lock-blob`, the per-tenant leases (see [`super::lease`]): release them
    /// ([`super::lease::Leases::release`]) when the apply ends
    pub lease: super::lease::Leases,
}

/// A single path that holds a saved plan document (not YAML desired state), with its text.
/// A path that is not a regular file, or too large, is an error (not desired state either).
pub fn saved_plan(paths: &[PathBuf]) -> Result<Option<(&Path, String)>, EngineError> {
    let [one] = paths else { return Ok(None) };
    // a directory, or a missing path: desired state (the loader says what is wrong)
    if one.is_dir() || std::fs::symlink_metadata(one).is_err() {
        return Ok(None);
    }
    if one.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        return Ok(None);
    }
    let text = config::read::read_regular_text(one, MAX_PLAN_BYTES)
        .context_with(|| format!("cannot read {}", one.display()))?;
    let trimmed = text.trim_start();
    Ok(
        (trimmed.starts_with('{') && trimmed.contains("\"format_version\""))
            .then_some((one.as_path(), text)),
    )
}

/// Reads a saved plan document (see [`crate::plan::parse_saved`]).
pub fn parse_saved(path: &Path, text: &str) -> Result<Plan, EngineError> {
    crate::plan::parse_saved(text)
        .context_with(|| format!("{} is not a usable saved plan", path.display()))
}

/// Connects for the loaded desired state, resolves what an interrupted run left pending (with
/// `--secrets-append`), and plans against live state by Graph's clock ([`super::clock`]).
pub async fn prepare(
    settings: &ApplySettings,
    loaded: config::Loaded,
    observer: &dyn Observer,
) -> Result<Result<Ready, Rejected>, EngineError> {
    prepare_for(settings, loaded, observer, None).await
}

/// [`prepare`]; with `saved`, each of its tenants must be the tenant its clients were checked to
/// talk to (the tenant id the plan records), before anything is resolved or read.
async fn prepare_for(
    settings: &ApplySettings,
    loaded: config::Loaded,
    observer: &dyn Observer,
    saved: Option<&Plan>,
) -> Result<Result<Ready, Rejected>, EngineError> {
    let target = &settings.target;
    let (session, sources) =
        match super::plan::open(target, loaded.state, loaded.sources, observer).await? {
            Ok(opened) => opened,
            Err(rejected) => return Ok(Err(rejected)),
        };
    if let Some(saved) = saved {
        if let Err(e) = saved_tenants_match(saved, &session) {
            session.close().await;
            return Err(e);
        }
    }
    // one apply per tenant at a time: before anything is written or resolved
    let (locks, lease) = match lock_tenants(settings, &session, observer).await {
        Ok(locks) => locks,
        Err(e) => {
            session.close().await;
            return Err(e);
        }
    };
    let secrets = match super::apply::resume(settings, &session, observer).await {
        Ok(secrets) => secrets,
        Err(e) => {
            lease.release().await;
            session.close().await;
            return Err(e);
        }
    };
    match session.plan(&target.targets, observer).await {
        Ok(plan) => Ok(Ok(Ready {
            plan,
            session,
            secrets,
            locks,
            lease,
        })),
        Err(e) => {
            lease.release().await;
            session.close().await;
            super::plan::rejected_or_error(e, sources)
        }
    }
}

/// Takes the machine-wide lock of every tenant of the session ([`super::lock`]), by the tenant id
/// the tenant check established ([`super::tenant_check`]), waiting up to `--lock-timeout`.
/// None for the embedded sandbox: its tenants are private to this process. With `--lock-blob`,
/// then the lease of every tenant in that container ([`super::lease`]), in the same order.
async fn lock_tenants(
    settings: &ApplySettings,
    session: &Session,
    observer: &dyn Observer,
) -> Result<(super::lock::TenantLocks, super::lease::Leases), EngineError> {
    if settings.target.sandbox.is_some() {
        return Ok((
            super::lock::TenantLocks::none(),
            super::lease::Leases::none(),
        ));
    }
    // a bad --lock-blob (or no key for it) is refused before any lock is taken
    let container = match &settings.lock_blob {
        Some(raw) => Some(super::lease::container(raw)?),
        None => None,
    };
    // the id the tenant check established for every client of the tenant (an opaque token's
    // too), so that two runs naming one tenant differently (a domain, its id) take one lock
    let ids: Vec<String> = session
        .tenants
        .iter()
        .map(|t| t.tenant_id.clone())
        .collect();
    let me = super::lock::describe_self(chrono::Utc::now());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx = std::sync::Mutex::new(tx);
    let waiting = move |line: &str| {
        let _ = tx.lock().map(|tx| tx.send(line.to_owned()));
    };
    let acquired = {
        let waiting = &waiting;
        let acquire = super::lock::acquire(&ids, settings.lock_timeout, &me, waiting);
        tokio::pin!(acquire);
        // the waiting notice is shown as soon as it comes (the observer is not Sync)
        loop {
            tokio::select! {
                r = &mut acquire => break r,
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    for line in rx.try_iter() {
                        observer.info(&line);
                    }
                }
            }
        }
    };
    for line in rx.try_iter() {
        observer.info(&line);
    }
    let locks = acquired?;
    let Some(container) = container else {
        return Ok((locks, super::lease::Leases::none()));
    };
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx = std::sync::Mutex::new(tx);
    let waiting = move |line: &str| {
        let _ = tx.lock().map(|tx| tx.send(line.to_owned()));
    };
    let leased = {
        let waiting = &waiting;
        let acquire = super::lease::acquire(container, &ids, settings.lock_timeout, &me, waiting);
        tokio::pin!(acquire);
        loop {
            tokio::select! {
                r = &mut acquire => break r,
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {
                    for line in rx.try_iter() {
                        observer.info(&line);
                    }
                }
            }
        }
    };
    for line in rx.try_iter() {
        observer.info(&line);
    }
    Ok((locks, leased?))
}

/// Derives a saved plan again before anything is written (see the module's comment), and
/// returns it with the session to apply it in, or why it is refused.
pub async fn recheck(
    settings: &ApplySettings,
    mut plan: Plan,
    observer: &dyn Observer,
) -> Result<Result<Ready, Rejected>, EngineError> {
    let made = plan.made_from.clone();
    let target = &settings.target;
    if (!target.tenants.is_empty() && target.tenants != made.tenants)
        || (!target.targets.is_empty() && target.targets != made.targets)
    {
        return Err(EngineError::refused(format!(
            "--tenant and --target choose what a plan covers when it is made (`pwdrift plan \
             --out FILE`); a saved plan is applied as it was made (it records --tenant {:?}, \
             --target {:?})",
            made.tenants, made.targets
        )));
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
    let mut found = Vec::new();
    for f in &made.files {
        if let Ok(bytes) = config::read::read_regular(&f.path, config::MAX_FILE_SIZE) {
            found.push((f.path.clone(), config::file_digest(&bytes)));
        }
    }
    let changed = check_files(&found);
    if !changed.is_empty() {
        return Ok(Err(Rejected::Changed(changed)));
    }
    let paths: Vec<PathBuf> = made.files.iter().map(|f| f.path.clone()).collect();
    let loaded = match super::load_desired(&paths, &target.allow_password_dirs) {
        Ok(loaded) => loaded,
        Err(invalid) => return Ok(Err(Rejected::Invalid(invalid))),
    };
    if !loaded.warnings.is_empty() {
        observer.warnings(&loaded.warnings, &loaded.sources);
    }
    // what was parsed is what was hashed (a file swapped between the two reads is refused)
    let changed = check_files(&loaded.digests);
    if !changed.is_empty() {
        return Ok(Err(Rejected::Changed(changed)));
    }

    let mut again = settings.clone();
    again.target.paths = paths;
    again.target.tenants = made.tenants.clone();
    again.target.targets = made.targets.clone();
    again.target.shard = match &made.shard {
        Some(s) => Some(
            s.parse()
                .map_err(|e: crate::shard::ShardError| EngineError::Refused(e.to_string()))?,
        ),
        None => None,
    };
    let mut ready = match prepare_for(&again, loaded, observer, Some(&plan)).await? {
        Ok(ready) => ready,
        Err(rejected) => return Ok(Err(rejected)),
    };
    plan.tenants
        .retain(|t| in_shard(target.shard, &t.tenant_id));
    ready
        .plan
        .tenants
        .retain(|t| in_shard(target.shard, &t.tenant_id));
    let m = crate::plan::compare(&plan, &ready.plan);
    if !m.is_empty() {
        ready.session.close().await;
        return Ok(Err(Rejected::Differs(m)));
    }
    // A plan saved before plans recorded `last_password_change` has none: the plan derived now
    // read the same live state (same fingerprints), so its value is the one the saved plan saw.
    for st in &mut plan.tenants {
        let Some(dt) = ready
            .plan
            .tenants
            .iter()
            .find(|d| d.tenant_id == st.tenant_id)
        else {
            continue;
        };
        for su in st
            .users
            .iter_mut()
            .filter(|u| u.last_password_change.is_none())
        {
            if let Some(du) = dt.users.iter().find(|d| d.user_id == su.user_id) {
                su.last_password_change = du.last_password_change;
            }
        }
    }
    ready.plan = plan;
    Ok(Ok(ready))
}

/// Every tenant of the saved plan is the tenant the session's clients talk to: the tenant id
/// the plan records is the one the tenant check found.
fn saved_tenants_match(saved: &Plan, session: &Session) -> Result<(), EngineError> {
    for t in &saved.tenants {
        if let Some(ts) = session.tenant(&t.tenant) {
            if !ts.tenant_id.eq_ignore_ascii_case(&t.tenant_id) {
                return Err(EngineError::refused(format!(
                    "wrong tenant: the saved plan was made for another tenant, {} ({}), \
                     but the credentials now talk to tenant {}; nothing was read or written",
                    crate::graph::client::escape_for_message(&t.tenant, 200),
                    crate::graph::client::escape_for_message(&t.tenant_id, 200),
                    ts.tenant_id
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_plan_document_is_a_saved_plan() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("plan.json");
        std::fs::write(&doc, " {\"format_version\": \"1\"}").unwrap();
        let yaml = dir.path().join("plan.yaml");
        std::fs::write(&yaml, "{\"format_version\": \"1\"}").unwrap();
        let other = dir.path().join("other.json");
        std::fs::write(&other, "{\"users\": []}").unwrap();
        let found = saved_plan(std::slice::from_ref(&doc)).unwrap();
        assert_eq!(found.map(|(p, _)| p.to_path_buf()), Some(doc.clone()));
        for paths in [
            vec![yaml],
            vec![other],
            vec![dir.path().to_path_buf()],
            vec![dir.path().join("missing")],
            vec![doc.clone(), doc],
        ] {
            assert!(saved_plan(&paths).unwrap().is_none(), "{paths:?}");
        }
    }
}
