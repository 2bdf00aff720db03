//! Step 5 of the pipeline: carry out a plan through the Graph client, then verify by reading back.
//!
//! Order of work:
//! 1. For the whole plan, every password source (generate, env, file) is resolved *before*
//!    anything is written ([`ResolvedPasswords`]): a missing variable or unreadable file in any
//!    tenant fails the run with nothing changed.
//! 2. Per tenant, flag changes go out as `PATCH /users/{id}` inside `$batch` requests of 20, and
//!    cloud-user resets as single non-idempotent PATCHes; both force flags are always explicit (an
//!    omitted flag next to a password may default to true in Graph). Synced users (and
//!    system-generated passwords) are reset through the delegated-only resetPassword API and the
//!    long-running operation is polled through its `Location` to a terminal status; when the plan
//!    wants other flags than the ones resetPassword leaves, a flags PATCH follows. The resets run
//!    concurrently ([`Shared::resets_at_once`] in progress, operations polled side by side), next
//!    to the flag batches; every request is admitted by the tenant's pacer (in-flight limit and
//!    write quotas), a reset *before* its intent is recorded.
//! 3. A reset whose response was lost (transport error, 5xx) is not sent again blindly: the
//!    user's `lastPasswordChangeDateTime` is read first (for a while: reads can lag), and the
//!    reset is repeated, with the same password, only if it did not land.
//! 4. Every changed user is read back ([`crate::verify`]); only a verified change counts as done.
//!
//! Every password write goes through the write-ahead secrets file ([`crate::secrets`]): the
//! password pwdrift chose is recorded (fsync'd) before the request is sent, a system-generated
//! one the moment the 202 body is read, and the outcome after. An ambiguous answer (a lost
//! response, any 5xx, a failed poll) is resolved by reading the user back; a retry sends the
//! same password. Entries an interrupted run left pending are resolved ([`resolve_pending`])
//! before the next run plans. The file is shared by the concurrent writes ([`SharedSecrets`]: a
//! mutex held only while one record is appended and fsync'd). A [`Cancel`] (the first
//! SIGINT/SIGTERM) stops new writes; the writes in flight finish and are recorded, and the
//! [`Ledger`] says where every user stands should the run have to stop before they do.
//! Passwords reach nothing but that file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::PasswordSource;
use crate::graph::client::{GraphClient, GraphError, WriteSlot};
use crate::graph::model::{ForceFlags, OperationStatus, PasswordProfile};
use crate::plan::{Action, Plan, ResetMethod, TenantPlan, UserPlan};
use crate::secrets::{Method, Outcome, SecretsFile};
use crate::verify::{self, Verdict};

/// Version of the `--report` document.
pub const REPORT_FORMAT_VERSION: &str = "1";

/// Largest `password: {file: ...}` read (a password is at most 256 characters).
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// The Graph clients of one tenant: app-only for reads and PATCH, and a delegated one when the
/// run has a delegated sign-in (needed by resetPassword).
pub struct TenantClients {
    pub app: GraphClient,
    pub delegated: Option<GraphClient>,
    /// how long read-back verification keeps re-reading before concluding (`--verify-timeout`)
    pub verify_timeout: std::time::Duration,
}

/// Outcome of one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// written and read back as planned
    Verified,
    /// the write failed (Graph error), or was accepted but did not show on read-back
    Failed,
    /// blocked in the plan; nothing written
    Blocked,
    /// nothing to do
    Unchanged,
    /// the write was sent but whether it took effect could not be told (its entry in the secrets
    /// file stays pending: the next run with `--secrets-append` resolves it); needs attention
    Unknown,
    /// not written: the run was interrupted (SIGINT/SIGTERM) before this change was started
    NotStarted,
}

/// One line of the `--report` document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserResult {
    pub tenant: String,
    pub user_id: String,
    pub user_principal_name: String,
    /// `set_flags`, `reset_password`, `blocked` or `no_change`
    pub action: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The `--report` document: what happened to every user of the plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyReport {
    pub format_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub users: Vec<UserResult>,
}

impl ApplyReport {
    pub fn count(&self, status: Status) -> usize {
        self.users.iter().filter(|u| u.status == status).count()
    }

    /// True when every planned change was applied and verified.
    pub fn all_verified(&self) -> bool {
        self.count(Status::Failed) == 0
            && self.count(Status::Unknown) == 0
            && self.count(Status::NotStarted) == 0
    }
}

/// Errors that stop an apply before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{count} password(s) would be generated but nowhere to put them: pass --secrets-out FILE (created with mode 0600)")]
    SecretsOutRequired { count: usize },
    #[error("--secrets-out {0}")]
    SecretsOut(#[from] crate::secrets::SecretsError),
    #[error("--secrets-out: the entries an interrupted run left pending could not be resolved; nothing was written: {0}")]
    Unresolved(String),
    #[error("password for {user}: environment variable {var} is not set")]
    MissingEnv { user: String, var: String },
    #[error("password for {user}: cannot read {path}: {reason}")]
    PasswordFile {
        user: String,
        path: PathBuf,
        reason: String,
    },
    #[error("password for {user} from {source_name} does not meet Entra's rules: {weakness}")]
    WeakPassword {
        user: String,
        source_name: String,
        weakness: crate::password::Weakness,
    },
}

/// A reset's password, resolved before anything is written. `None` = system-generated.
struct ResolvedReset {
    password: Option<SecretString>,
    generated: bool,
}

fn resolve_password(user: &UserPlan, source: &PasswordSource) -> Result<ResolvedReset, ApplyError> {
    let upn = user.user_principal_name.clone();
    let checked = |pw: SecretString, source_name: String| {
        // Local check with the strong rules; Graph decides in the end (banned lists, policies).
        crate::password::check(pw.expose_secret(), true)
            .map_err(|weakness| ApplyError::WeakPassword {
                user: upn.clone(),
                source_name,
                weakness,
            })
            .map(|_| pw)
    };
    Ok(match source {
        PasswordSource::Generate { length } => ResolvedReset {
            password: Some(crate::password::generate(*length)),
            generated: true,
        },
        PasswordSource::Env { var } => {
            let value = std::env::var(var).map_err(|_| ApplyError::MissingEnv {
                user: upn.clone(),
                var: var.clone(),
            })?;
            ResolvedReset {
                password: Some(checked(SecretString::from(value), format!("${var}"))?),
                generated: false,
            }
        }
        PasswordSource::File { path } => {
            // a regular file of at most 4 KiB: no FIFO, no device (`/dev/zero`)
            let text = crate::config::read::read_regular_text(path, MAX_PASSWORD_FILE_BYTES)
                .map_err(|e| ApplyError::PasswordFile {
                    user: upn.clone(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            ResolvedReset {
                password: Some(checked(
                    SecretString::from(text.to_owned()),
                    path.display().to_string(),
                )?),
                generated: false,
            }
        }
        PasswordSource::SystemGenerated => ResolvedReset {
            password: None,
            generated: true,
        },
    })
}

/// Every reset password of a plan, resolved from its source before anything is written (a
/// missing variable or unreadable file in any tenant stops the whole run up front).
pub struct ResolvedPasswords(HashMap<(String, String), ResolvedReset>);

impl ResolvedPasswords {
    /// Resolves the password source of every `ResetPassword` in the plan.
    pub fn resolve(plan: &Plan) -> Result<Self, ApplyError> {
        let mut out = HashMap::new();
        for t in &plan.tenants {
            for u in &t.users {
                if let Action::ResetPassword { password, .. } = &u.action {
                    out.insert(
                        (t.tenant.clone(), u.user_id.clone()),
                        resolve_password(u, password)?,
                    );
                }
            }
        }
        Ok(ResolvedPasswords(out))
    }

    /// How many passwords will be generated (by pwdrift or by Microsoft): each must reach
    /// `--secrets-out`.
    pub fn generated_count(&self) -> usize {
        self.0.values().filter(|r| r.generated).count()
    }

    fn get(&self, tenant: &TenantPlan, user: &UserPlan) -> Option<&ResolvedReset> {
        self.0.get(&(tenant.tenant.clone(), user.user_id.clone()))
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::NoChange { .. } => "no_change",
        Action::SetFlags { .. } => "set_flags",
        Action::ResetPassword { .. } => "reset_password",
        Action::Blocked { .. } => "blocked",
    }
}

fn result(t: &TenantPlan, u: &UserPlan, status: Status, detail: Option<String>) -> UserResult {
    UserResult {
        tenant: t.tenant.clone(),
        user_id: u.user_id.clone(),
        user_principal_name: u.user_principal_name.clone(),
        action: action_name(&u.action).to_owned(),
        status,
        detail,
        hint: None,
    }
}

fn profile(flags: ForceFlags, password: Option<SecretString>) -> PasswordProfile {
    PasswordProfile {
        force_change_password_next_sign_in: Some(flags.force_change_password_next_sign_in),
        force_change_password_next_sign_in_with_mfa: Some(
            flags.force_change_password_next_sign_in_with_mfa,
        ),
        password,
        odata_type: None,
    }
}

/// Progress callback: called once per user when its write finished (ok or not).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// Set by the first SIGINT/SIGTERM: no new write starts (writes waiting for their turn give it
/// up at once); writes in flight finish and their outcomes are recorded.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Completes once [`Cancel::cancel`] was called.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // registered before the flag is read, so a cancel in between is not missed
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// The secrets file of a run, shared by its concurrent writes. The lock is held only while one
/// record is appended and fsync'd, never across a request.
pub type SharedSecrets = Mutex<Option<SecretsFile>>;

/// Where each user of a run stands, written by the concurrent writes as they go and read when
/// the run must stop before its end (the grace after a signal expired): a user is in flight from
/// the moment its intent is recorded (its write may be on the wire), written once Graph
/// acknowledged it, and done with its final result.
#[derive(Debug, Default)]
pub struct Ledger(Mutex<HashMap<(String, String), Stage>>);

#[derive(Debug)]
enum Stage {
    InFlight,
    Written,
    Done(Box<UserResult>),
}

/// The hint of a user whose write's outcome is unknown.
const UNKNOWN_HINT: &str = "run apply again with --secrets-append and the same --secrets-out \
     file: it resolves this entry (reads the user back) before planning anything else";

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Stage>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, tenant: &str, user_id: &str, stage: Stage) {
        self.lock()
            .insert((tenant.to_owned(), user_id.to_owned()), stage);
    }

    /// Records a final result and returns it.
    fn done(&self, r: UserResult) -> UserResult {
        self.set(&r.tenant, &r.user_id, Stage::Done(Box::new(r.clone())));
        r
    }

    /// Every user of `plan`, in plan order, as it stands now: a finished user as it ended; a
    /// write in flight (sent, or about to be) as `unknown`, with the hint to resolve it; a write
    /// Graph acknowledged but not yet read back as `unknown` too (it was not verified); every
    /// other change as `not_started`.
    pub fn snapshot(&self, plan: &Plan, why: &str) -> Vec<UserResult> {
        let stages = self.lock();
        let mut out = Vec::new();
        for t in &plan.tenants {
            for u in &t.users {
                let stage = stages.get(&(t.tenant.clone(), u.user_id.clone()));
                out.push(match (stage, &u.action) {
                    (Some(Stage::Done(r)), _) => (**r).clone(),
                    (_, Action::NoChange { .. }) => result(t, u, Status::Unchanged, None),
                    (_, Action::Blocked { detail, .. }) => {
                        result(t, u, Status::Blocked, Some(detail.clone()))
                    }
                    (Some(Stage::InFlight), _) => {
                        let mut r = result(
                            t,
                            u,
                            Status::Unknown,
                            Some(format!("the write was in flight when {why}")),
                        );
                        r.hint = Some(UNKNOWN_HINT.into());
                        r
                    }
                    (Some(Stage::Written), _) => {
                        let mut r = result(
                            t,
                            u,
                            Status::Unknown,
                            Some(format!(
                                "written (Graph acknowledged it) but not yet read back when {why}"
                            )),
                        );
                        r.hint = Some(
                            "run `pwdrift plan` with the same desired state: it shows whether the \
                             change holds"
                                .into(),
                        );
                        r
                    }
                    (None, _) => result(
                        t,
                        u,
                        Status::NotStarted,
                        Some(format!("not written: {why} before this change was started")),
                    ),
                });
            }
        }
        out
    }
}

/// What the tenants of one apply share.
pub struct Shared<'a> {
    /// every reset password of the plan, resolved before anything was written
    pub passwords: &'a ResolvedPasswords,
    /// the write-ahead secrets file (see [`crate::secrets`])
    pub secrets: &'a SharedSecrets,
    /// set by the first SIGINT/SIGTERM: no new write starts
    pub cancel: &'a Cancel,
    /// where each user stands, for a run stopped before its end
    pub ledger: &'a Ledger,
    pub progress: Progress<'a>,
    /// password resets in progress at once per tenant (sent, being polled or read back); the
    /// requests themselves are bounded by the client's in-flight limit and write pacing
    pub resets_at_once: usize,
}

/// How many password resets of one tenant are in progress at once, per request the client may
/// have in flight (`--concurrency`): a resetPassword operation spends most of its time waiting
/// between polls, holding no request slot, so several fit in each slot.
pub const RESETS_PER_REQUEST_SLOT: usize = 8;

/// Attempts of one password write with the same password (the first included).
const WRITE_ATTEMPTS: u32 = 3;
/// How long a resetPassword operation is polled.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// What became of one password write, after resolving any ambiguity.
enum WriteOutcome {
    Applied,
    NotApplied(String),
    Unknown(String),
}

/// One password write, from its start.
enum Write {
    /// the run was cancelled before it was admitted: nothing recorded, nothing sent
    NotStarted,
    /// nothing was sent (its intent could not be recorded first)
    NotSent(String),
    /// sent: the journal entry of its last attempt (if a file is kept) and what became of it
    Sent(Option<u64>, WriteOutcome),
}

/// A write whose response does not say whether it took effect: a lost response (timeout,
/// connection dropped after sending) or any 5xx.
fn ambiguous(e: &GraphError) -> bool {
    e.outcome_unknown() || e.status().is_some_and(|s| s >= 500)
}

/// The shared secrets file, one record at a time (the lock is released before any request).
struct Recorder<'a>(&'a SharedSecrets);

impl Recorder<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SecretsFile>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the intent (and a password pwdrift chose) and fsyncs, before the request is sent.
    /// `Ok(None)` when no file is kept.
    fn intent(
        &self,
        tenant: &str,
        user: &UserPlan,
        method: Method,
        password: Option<&SecretString>,
    ) -> Result<Option<u64>, crate::secrets::SecretsError> {
        self.lock()
            .as_mut()
            .map(|f| {
                f.intent(
                    tenant,
                    &user.user_id,
                    &user.user_principal_name,
                    method,
                    password,
                )
            })
            .transpose()
    }

    /// Records a password Microsoft generated, the moment the 202 body is read.
    fn generated(
        &self,
        seq: Option<u64>,
        password: &SecretString,
    ) -> Result<(), crate::secrets::SecretsError> {
        match (seq, self.lock().as_mut()) {
            (Some(seq), Some(f)) => f.generated(seq, password),
            _ => Ok(()),
        }
    }

    /// Records the operation's URL, so that an interrupted run's operation can be polled.
    fn operation(&self, seq: Option<u64>, location: &str) {
        if let (Some(seq), Some(f)) = (seq, self.lock().as_mut()) {
            if let Err(e) = f.operation(seq, location) {
                tracing::warn!("cannot record the operation in the secrets file: {e}");
            }
        }
    }

    /// Records an outcome; a failure to record leaves the entry pending (the next run resolves
    /// it).
    fn outcome(&self, seq: Option<u64>, outcome: Outcome, detail: Option<&str>) {
        if let (Some(seq), Some(f)) = (seq, self.lock().as_mut()) {
            if let Err(e) = f.outcome(seq, outcome, detail) {
                tracing::warn!("cannot record an outcome in the secrets file: {e}");
            }
        }
    }
}

/// Resolves the entries an interrupted run left pending in the secrets file, for the tenants
/// this run has clients for, before anything is planned: polls a recorded resetPassword
/// operation, or reads the user back (`lastPasswordChangeDateTime` at or after the intent), and
/// records the outcome. Returns one line per resolved entry (for the operator), and an error
/// when an entry cannot be resolved (then nothing may be written for that user: the run stops).
pub async fn resolve_pending<'a>(
    clients: impl Fn(&str) -> Option<&'a TenantClients>,
    secrets: &mut SecretsFile,
    pending: &[crate::secrets::Entry],
) -> Result<Vec<String>, ApplyError> {
    // Entries are found out side by side (a write that did not land is only concluded after
    // the whole `--verify-timeout`: one after the other, 20 of them would take 10 minutes),
    // then recorded in journal order.
    let verdicts: Vec<_> = futures_util::stream::iter(pending.iter().map(|e| {
        let c = clients(&e.tenant);
        async move { Some(find_out(c?, e).await) }
    }))
    .buffered(RESOLVE_AT_ONCE)
    .collect()
    .await;
    let mut lines = Vec::new();
    for (e, verdict) in pending.iter().zip(verdicts) {
        let Some(verdict) = verdict else {
            lines.push(format!(
                "{} ({}): left pending (tenant not in this run)",
                e.user_principal_name, e.tenant
            ));
            continue;
        };
        let (outcome, detail) = verdict?;
        secrets.outcome(e.seq, outcome, Some(&detail))?;
        let mut line = format!(
            "{}: {} ({detail})",
            e.user_principal_name,
            match outcome {
                Outcome::Applied => "applied",
                _ => "not applied",
            }
        );
        if outcome == Outcome::Applied && !e.has_password {
            line.push_str(
                "; its password was not recorded (lost with the response): reset it again",
            );
        }
        lines.push(line);
    }
    Ok(lines)
}

/// Pending entries found out at once by [`resolve_pending`].
const RESOLVE_AT_ONCE: usize = 16;

/// What became of one pending entry: its recorded resetPassword operation, if it can still be
/// polled, or else a lag-tolerant read-back of the user.
async fn find_out(
    c: &TenantClients,
    e: &crate::secrets::Entry,
) -> Result<(Outcome, String), ApplyError> {
    if let (Some(op), Some(delegated)) = (&e.operation, c.delegated.as_ref()) {
        match delegated
            .poll_operation(&e.tenant, op, Duration::from_secs(30))
            .await
        {
            Ok(op) if op.status == OperationStatus::Succeeded => {
                return Ok((Outcome::Applied, "operation succeeded".into()))
            }
            Ok(op) if op.status == OperationStatus::Failed => {
                return Ok((Outcome::NotApplied, "operation failed".into()))
            }
            _ => {}
        }
    }
    match verify::password_changed_since(&c.app, &e.tenant, &e.user_id, e.at, c.verify_timeout)
        .await
    {
        Ok(true) => Ok((Outcome::Applied, "read back: the password changed".into())),
        Ok(false) => Ok((
            Outcome::NotApplied,
            "read back: the password did not change".into(),
        )),
        Err(err) => Err(ApplyError::Unresolved(format!(
            "{}: cannot read the user back: {err}",
            e.user_principal_name
        ))),
    }
}

/// Applies one tenant's part of a plan and verifies it, with the passwords resolved for the whole
/// plan beforehand. Flag changes go out in `$batch` requests while the password resets run
/// concurrently, up to `run.resets_at_once` of them in progress; every request is admitted by
/// the tenant's pacer (in-flight limit, write quotas). Every password write is recorded in the
/// secrets file before it is sent and its outcome after (see [`crate::secrets`]). Once
/// `run.cancel` is set, no new write starts. Results are in the tenant's plan order.
pub async fn apply_tenant(
    clients: &TenantClients,
    tenant: &TenantPlan,
    run: &Shared<'_>,
) -> Result<Vec<UserResult>, ApplyError> {
    let started = Utc::now();
    let name = tenant.tenant.as_str();
    let ledger = run.ledger;

    // Passwords were resolved before anything was written; a generated one must have somewhere
    // to go.
    let generated = tenant
        .users
        .iter()
        .filter(|u| run.passwords.get(tenant, u).is_some_and(|r| r.generated))
        .count();
    if generated > 0 && Recorder(run.secrets).lock().is_none() {
        return Err(ApplyError::SecretsOutRequired { count: generated });
    }

    let mut results: Vec<UserResult> = Vec::new();
    let mut flag_patches = Vec::new();
    let mut resets: Vec<&UserPlan> = Vec::new();
    for u in &tenant.users {
        match &u.action {
            Action::NoChange { .. } => {
                results.push(ledger.done(result(tenant, u, Status::Unchanged, None)))
            }
            Action::Blocked { detail, .. } => {
                results.push(ledger.done(result(tenant, u, Status::Blocked, Some(detail.clone()))))
            }
            Action::SetFlags { after, .. } => {
                flag_patches.push((u.user_id.clone(), profile(*after, None)))
            }
            Action::ResetPassword { .. } => resets.push(u),
        }
    }
    let by_id: HashMap<&str, &UserPlan> = tenant
        .users
        .iter()
        .map(|u| (u.user_id.as_str(), u))
        .collect();

    // 2a. flags: PATCHes inside `$batch` requests
    let flags = async {
        let mut out: Vec<Settled> = Vec::new();
        if flag_patches.is_empty() {
            return out;
        }
        if run.cancel.is_cancelled() {
            for (id, _) in &flag_patches {
                out.push(Settled::Done(not_started(tenant, by_id[id.as_str()])));
            }
            return out;
        }
        for (id, _) in &flag_patches {
            ledger.set(name, id, Stage::InFlight);
        }
        for (id, outcome) in clients
            .app
            .patch_password_profiles(name, flag_patches)
            .await
        {
            let u = by_id[id.as_str()];
            (run.progress)(&u.user_principal_name);
            out.push(match outcome {
                Ok(()) => Settled::Written(u),
                Err(e) => Settled::Done(result(tenant, u, Status::Failed, Some(e.to_string()))),
            });
        }
        out
    };

    // 2b. password resets, concurrently: each recorded before it is sent, resolved by reading
    // back when its answer is ambiguous, retried only with the same password
    let resets = futures_util::stream::iter(
        resets
            .into_iter()
            .map(|u| reset_one(clients, tenant, u, run)),
    )
    .buffer_unordered(run.resets_at_once.max(1))
    .collect::<Vec<Settled>>();

    let (flags, resets) = tokio::join!(flags, resets);
    let mut written: Vec<&UserPlan> = Vec::new();
    for s in flags.into_iter().chain(resets) {
        match s {
            Settled::Written(u) => {
                ledger.set(name, &u.user_id, Stage::Written);
                written.push(u);
            }
            Settled::Done(r) => results.push(ledger.done(r)),
        }
    }

    // 3. verify by reading back
    if !written.is_empty() {
        let to_check: Vec<(String, &Action)> = written
            .iter()
            .map(|u| (u.user_id.clone(), &u.action))
            .collect();
        let mut verdicts = match verify::settle(
            &clients.app,
            name,
            &to_check,
            started,
            clients.verify_timeout,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                for u in written {
                    results.push(ledger.done(result(
                        tenant,
                        u,
                        Status::Failed,
                        Some(format!(
                            "written, but could not be read back to verify: {e}"
                        )),
                    )));
                }
                return Ok(sort(results, tenant));
            }
        };
        for u in written {
            let r = match verdicts.remove(&u.user_id).unwrap_or(Verdict::Missing) {
                Verdict::Verified => result(tenant, u, Status::Verified, None),
                Verdict::Missing => result(
                    tenant,
                    u,
                    Status::Failed,
                    Some("the user could not be read back".into()),
                ),
                Verdict::Mismatch { detail, hint } => {
                    let mut r = result(tenant, u, Status::Failed, Some(detail));
                    r.hint = Some(hint);
                    r
                }
            };
            results.push(ledger.done(r));
        }
    }
    Ok(sort(results, tenant))
}

/// A user's write, settled: written (to be verified by reading back), or a final result.
enum Settled<'a> {
    Written(&'a UserPlan),
    Done(UserResult),
}

fn not_started(tenant: &TenantPlan, u: &UserPlan) -> UserResult {
    result(
        tenant,
        u,
        Status::NotStarted,
        Some("not written: the run was interrupted".into()),
    )
}

/// What resetPassword leaves on the user: it forces a change at next sign-in, without MFA.
const AFTER_RESET_PASSWORD_API: ForceFlags = ForceFlags {
    force_change_password_next_sign_in: true,
    force_change_password_next_sign_in_with_mfa: false,
};

/// One password reset, from its admission to its settled outcome (recorded in the journal).
async fn reset_one<'a>(
    clients: &TenantClients,
    tenant: &TenantPlan,
    u: &'a UserPlan,
    run: &Shared<'_>,
) -> Settled<'a> {
    let Action::ResetPassword { method, after, .. } = &u.action else {
        unreachable!("only resets are passed here")
    };
    let name = tenant.tenant.as_str();
    let resolved = run
        .passwords
        .get(tenant, u)
        .expect("every reset of the plan was resolved");
    let write = match method {
        ResetMethod::PatchPasswordProfile => {
            patch_reset(clients, name, u, *after, resolved, run).await
        }
        ResetMethod::ResetPasswordApi => {
            let Some(delegated) = clients.delegated.as_ref() else {
                (run.progress)(&u.user_principal_name);
                return Settled::Done(result(
                    tenant,
                    u,
                    Status::Failed,
                    Some("resetPassword needs a delegated sign-in (--delegated)".into()),
                ));
            };
            api_reset(clients, delegated, name, u, resolved, run).await
        }
    };
    let (seq, outcome) = match write {
        Write::NotStarted => return Settled::Done(not_started(tenant, u)),
        Write::NotSent(detail) => {
            (run.progress)(&u.user_principal_name);
            return Settled::Done(result(tenant, u, Status::Failed, Some(detail)));
        }
        Write::Sent(seq, outcome) => (seq, outcome),
    };
    let journal = Recorder(run.secrets);
    let settled = match outcome {
        WriteOutcome::Applied => {
            journal.outcome(seq, Outcome::Applied, None);
            // resetPassword itself leaves `forceChangePasswordNextSignIn` set and the MFA
            // variant clear; when the plan wants other flags, they go out as a flags PATCH
            // after the reset succeeded.
            let follow_up =
                *method == ResetMethod::ResetPasswordApi && *after != AFTER_RESET_PASSWORD_API;
            match follow_up {
                false => Settled::Written(u),
                true => match clients
                    .app
                    .patch_password_profile_once(name, &u.user_id, profile(*after, None))
                    .await
                {
                    Ok(()) => Settled::Written(u),
                    // whether it landed is for the read-back to tell
                    Err(e) if ambiguous(&e) => {
                        tracing::warn!(user = %u.user_principal_name, "flags after resetPassword: {e}");
                        Settled::Written(u)
                    }
                    Err(e) => Settled::Done(result(
                        tenant,
                        u,
                        Status::Failed,
                        Some(format!(
                            "the password was reset (and recorded), but the flags PATCH after it \
                             failed, so the force-change flags are not as planned: {e}"
                        )),
                    )),
                },
            }
        }
        WriteOutcome::NotApplied(detail) => {
            journal.outcome(seq, Outcome::NotApplied, Some(&detail));
            Settled::Done(result(tenant, u, Status::Failed, Some(detail)))
        }
        WriteOutcome::Unknown(detail) => {
            journal.outcome(seq, Outcome::Unknown, Some(&detail));
            let mut r = result(tenant, u, Status::Unknown, Some(detail));
            r.hint = Some(UNKNOWN_HINT.into());
            Settled::Done(r)
        }
    };
    (run.progress)(&u.user_principal_name);
    settled
}

fn sort(mut results: Vec<UserResult>, tenant: &TenantPlan) -> Vec<UserResult> {
    let order: HashMap<&str, usize> = tenant
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.user_id.as_str(), i))
        .collect();
    results.sort_by_key(|r| order.get(r.user_id.as_str()).copied().unwrap_or(usize::MAX));
    results
}

/// Waits for the tenant's pacer to admit one write (an in-flight slot, room in the write
/// quotas), unless the run is cancelled first (`None`: the write is not started).
async fn admit(client: &GraphClient, tenant: &str, cancel: &Cancel) -> Option<WriteSlot> {
    if cancel.is_cancelled() {
        return None;
    }
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        slot = client.admit_write(tenant) => Some(slot),
    }
}

/// Waits until Graph's clock is past the whole second of `change` (a `lastPasswordChangeDateTime`),
/// so that a password change made now shows a later one. At most about a second.
async fn wait_for_graph_second_after(client: &GraphClient, change: DateTime<Utc>) {
    let next = change + chrono::Duration::seconds(1);
    let ahead = next - client.to_graph_clock(Utc::now());
    if let Ok(wait) = ahead.to_std() {
        tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
    }
}

/// What reading a user back says about a password write whose answer was ambiguous.
enum ReadBack {
    /// with the `lastPasswordChangeDateTime` that showed it
    Landed(DateTime<Utc>),
    NotLanded,
    /// the user could not be read back: the detail says why, after what made it ambiguous
    Unknown(String),
}

/// Resolves an ambiguous password write (a lost answer, a 5xx, a failed poll) by reading the
/// user back: `lastPasswordChangeDateTime` at or after `since` (and later than `not_up_to`, a
/// change already put down to an earlier attempt), re-read for a while (reads can lag). `why`
/// is what made it ambiguous.
async fn read_back(
    clients: &TenantClients,
    tenant: &str,
    user: &UserPlan,
    since: DateTime<Utc>,
    not_up_to: Option<DateTime<Utc>>,
    why: &str,
) -> ReadBack {
    match verify::password_change_since(
        &clients.app,
        tenant,
        &user.user_id,
        since,
        not_up_to,
        clients.verify_timeout,
    )
    .await
    {
        Ok(Some(t)) => ReadBack::Landed(t),
        Ok(None) => ReadBack::NotLanded,
        Err(read) => ReadBack::Unknown(format!(
            "{why}; and the user could not be read back: {read}"
        )),
    }
}

/// PATCHes a new password: admitted by the pacer first, then recorded (fsync'd), then sent. An
/// ambiguous answer (lost response, any 5xx) is resolved by reading the user back; only when it
/// did not land is the PATCH sent again, with the same password.
async fn patch_reset(
    clients: &TenantClients,
    tenant: &str,
    user: &UserPlan,
    after: ForceFlags,
    resolved: &ResolvedReset,
    run: &Shared<'_>,
) -> Write {
    let password = resolved
        .password
        .clone()
        .expect("a PATCH reset has a password (systemGenerated goes through the API)");
    let Some(slot) = admit(&clients.app, tenant, run.cancel).await else {
        return Write::NotStarted;
    };
    let since = Utc::now();
    let seq = match Recorder(run.secrets).intent(
        tenant,
        user,
        Method::Patch,
        resolved.generated.then_some(&password),
    ) {
        Ok(seq) => seq,
        Err(e) => {
            return Write::NotSent(format!("not sent: cannot record the password first: {e}"))
        }
    };
    run.ledger.set(tenant, &user.user_id, Stage::InFlight);
    let mut slot = Some(slot);
    let mut last = String::new();
    for attempt in 1..=WRITE_ATTEMPTS {
        let sent = clients
            .app
            .patch_password_profile_in(
                tenant,
                &user.user_id,
                profile(after, Some(password.clone())),
                slot.take(),
            )
            .await;
        match sent {
            Ok(()) => return Write::Sent(seq, WriteOutcome::Applied),
            Err(e) if ambiguous(&e) => {
                tracing::warn!(user = %user.user_principal_name, attempt, "reset answer lost or 5xx; reading the user back before any repeat: {e}");
                match read_back(clients, tenant, user, since, None, &e.to_string()).await {
                    ReadBack::Landed(_) => return Write::Sent(seq, WriteOutcome::Applied),
                    ReadBack::NotLanded => last = e.to_string(),
                    ReadBack::Unknown(detail) => {
                        return Write::Sent(seq, WriteOutcome::Unknown(detail))
                    }
                }
            }
            Err(e) => return Write::Sent(seq, WriteOutcome::NotApplied(e.to_string())),
        }
    }
    Write::Sent(
        seq,
        WriteOutcome::Unknown(format!(
            "{WRITE_ATTEMPTS} attempts with the same password, none confirmed: {last}"
        )),
    )
}

/// Calls resetPassword: admitted by the pacer, then the intent recorded, then sent; the
/// generated password is recorded the moment the 202 body is read, then the operation's
/// `Location`, and the operation is polled. Ambiguity (a lost answer, a poll that fails, no
/// `Location`) is resolved by reading the user back. A password pwdrift chose is retried as is;
/// a system-generated one whose 202 was lost cannot be (it exists nowhere), so a new reset is
/// sent and its own password recorded.
async fn api_reset(
    clients: &TenantClients,
    client: &GraphClient,
    tenant: &str,
    user: &UserPlan,
    resolved: &ResolvedReset,
    run: &Shared<'_>,
) -> Write {
    let journal = Recorder(run.secrets);
    let mut superseded: Option<u64> = None;
    // The last password change a read-back put down to an attempt of this user: a later attempt
    // is confirmed only by a later change (Graph's whole seconds cannot tell two changes in one
    // second apart, so a replacement waits for the next second before it is sent).
    let mut seen_change: Option<DateTime<Utc>> = None;
    let mut last = String::new();
    let mut last_seq = None;
    for attempt in 1..=WRITE_ATTEMPTS {
        if let Some(t) = seen_change {
            wait_for_graph_second_after(client, t).await;
        }
        // a repeat belongs to a write already in flight: it is not given up on cancel
        let slot = if attempt == 1 {
            match admit(client, tenant, run.cancel).await {
                Some(slot) => slot,
                None => return Write::NotStarted,
            }
        } else {
            client.admit_write(tenant).await
        };
        let since = Utc::now();
        let seq = match journal.intent(
            tenant,
            user,
            Method::ResetPasswordApi,
            resolved
                .generated
                .then_some(resolved.password.as_ref())
                .flatten(),
        ) {
            Ok(seq) => seq,
            Err(e) if attempt == 1 => {
                return Write::NotSent(format!("not sent: cannot record the reset first: {e}"))
            }
            Err(e) => {
                // the earlier attempt's entry stays pending: the next run resolves it
                return Write::Sent(
                    superseded.or(last_seq),
                    WriteOutcome::Unknown(format!(
                        "{last}; and the next attempt could not be recorded first: {e}"
                    )),
                );
            }
        };
        run.ledger.set(tenant, &user.user_id, Stage::InFlight);
        if let Some(old) = superseded.take() {
            let detail = format!(
                "its 202 answer was lost; replaced by entry {}",
                seq.unwrap_or(0)
            );
            journal.outcome(Some(old), Outcome::Superseded, Some(&detail));
        }
        let sent = client
            .reset_password_in(tenant, &user.user_id, resolved.password.clone(), Some(slot))
            .await;
        let answer = match sent {
            Ok(a) => a,
            Err(e) if ambiguous(&e) => {
                tracing::warn!(user = %user.user_principal_name, attempt, "resetPassword answer lost or 5xx; reading the user back: {e}");
                let landed =
                    read_back(clients, tenant, user, since, seen_change, &e.to_string()).await;
                if let ReadBack::Landed(t) = landed {
                    seen_change = Some(t);
                }
                match (landed, resolved.password.is_some()) {
                    (ReadBack::Landed(_), true) => return Write::Sent(seq, WriteOutcome::Applied),
                    (ReadBack::Landed(_) | ReadBack::NotLanded, false) => {
                        // the service's password went with the lost answer: reset again
                        last = e.to_string();
                        superseded = seq;
                        continue;
                    }
                    (ReadBack::NotLanded, true) => {
                        last = e.to_string();
                        last_seq = seq;
                        if attempt < WRITE_ATTEMPTS {
                            journal.outcome(
                                seq,
                                Outcome::NotApplied,
                                Some("read back: not applied; sent again with the same password"),
                            );
                        }
                        continue;
                    }
                    (ReadBack::Unknown(detail), _) => {
                        return Write::Sent(seq, WriteOutcome::Unknown(detail))
                    }
                }
            }
            Err(e) => return Write::Sent(seq, WriteOutcome::NotApplied(e.to_string())),
        };
        // The generated password, durably, before anything else can fail.
        if let Some(pw) = &answer.generated_password {
            if let Err(e) = journal.generated(seq, pw) {
                return Write::Sent(
                    seq,
                    WriteOutcome::Unknown(format!(
                        "the password was reset but the generated password could not be recorded: {e}; reset the user again"
                    )),
                );
            }
        }
        let polled = match &answer.location {
            Ok(location) => {
                journal.operation(seq, location);
                client
                    .poll_operation_after(tenant, location, answer.retry_after, OPERATION_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("no operation to poll: {e}")),
        };
        let outcome = match polled {
            Ok(op) if op.status == OperationStatus::Succeeded => WriteOutcome::Applied,
            Ok(op) if op.status == OperationStatus::Failed => WriteOutcome::NotApplied(format!(
                "the resetPassword operation failed{}",
                op.status_detail
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )),
            other => {
                let why = match other {
                    Ok(op) => format!("the operation ended {:?}", op.status),
                    Err(e) => e,
                };
                match read_back(clients, tenant, user, since, seen_change, &why).await {
                    ReadBack::Landed(_) => WriteOutcome::Applied,
                    ReadBack::NotLanded => WriteOutcome::Unknown(format!(
                        "{why}; the password does not show as changed yet"
                    )),
                    ReadBack::Unknown(detail) => WriteOutcome::Unknown(detail),
                }
            }
        };
        return Write::Sent(seq, outcome);
    }
    if let Some(old) = superseded {
        // the last attempt's answer was lost too: its outcome is unknown
        return Write::Sent(
            Some(old),
            WriteOutcome::Unknown(format!(
                "{WRITE_ATTEMPTS} resetPassword answers lost; the user's password may have changed to one nobody knows: reset it again ({last})"
            )),
        );
    }
    Write::Sent(
        last_seq,
        WriteOutcome::Unknown(format!(
            "{WRITE_ATTEMPTS} attempts with the same password, none confirmed: {last}"
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_plan(id: &str, action: Action) -> UserPlan {
        UserPlan {
            user_id: id.into(),
            user_principal_name: format!("{id}@x"),
            declared_at: vec![],
            fingerprint: String::new(),
            allow_privileged: false,
            action,
        }
    }

    /// A run stopped before its end reports every user of the plan, in plan order: finished
    /// users as they ended, writes in flight or not yet read back as `unknown` (with a hint),
    /// the other changes as `not_started`, and users with nothing to do as such even in a
    /// tenant that had not started.
    #[test]
    fn a_ledger_snapshot_says_where_every_user_stands() {
        let reset = || Action::ResetPassword {
            method: ResetMethod::PatchPasswordProfile,
            password: PasswordSource::Generate { length: 20 },
            before: ForceFlags::default(),
            after: ForceFlags::default(),
            reason: String::new(),
        };
        let tenant = |name: &str, users: Vec<UserPlan>| TenantPlan {
            tenant: name.into(),
            tenant_id: name.into(),
            users,
            notes: vec![],
        };
        let t1 = tenant(
            "t1",
            vec![
                user_plan("a", reset()),
                user_plan("b", reset()),
                user_plan("c", reset()),
                user_plan("d", reset()),
            ],
        );
        let t2 = tenant(
            "t2",
            vec![
                user_plan("e", reset()),
                user_plan(
                    "f",
                    Action::NoChange {
                        reason: String::new(),
                    },
                ),
            ],
        );
        let plan = Plan {
            format_version: "3".into(),
            pwdrift_version: "test".into(),
            created_at: Utc::now(),
            tenants: vec![t1.clone(), t2],
            content_hash: None,
            made_from: Default::default(),
        };
        let ledger = Ledger::default();
        ledger.set("t1", "c", Stage::InFlight);
        ledger.set("t1", "b", Stage::Written);
        ledger.done(result(&t1, &t1.users[0], Status::Verified, None));
        let got = ledger.snapshot(&plan, "stopped");
        let statuses: Vec<(&str, Status)> =
            got.iter().map(|r| (r.user_id.as_str(), r.status)).collect();
        assert_eq!(
            statuses,
            [
                ("a", Status::Verified),
                ("b", Status::Unknown),
                ("c", Status::Unknown),
                ("d", Status::NotStarted),
                ("e", Status::NotStarted),
                ("f", Status::Unchanged),
            ]
        );
        assert!(got[2].hint.as_deref().unwrap().contains("--secrets-append"));
        assert!(got[1]
            .detail
            .as_deref()
            .unwrap()
            .contains("not yet read back"));
    }

    #[test]
    fn password_sources_resolve_before_writing() {
        let user = UserPlan {
            user_id: "u".into(),
            user_principal_name: "u@contoso.com".into(),
            declared_at: vec![],
            fingerprint: String::new(),
            allow_privileged: false,
            action: Action::NoChange {
                reason: String::new(),
            },
        };
        let missing = PasswordSource::Env {
            var: "PWDRIFT_TEST_SURELY_UNSET_VAR".into(),
        };
        assert!(matches!(
            resolve_password(&user, &missing),
            Err(ApplyError::MissingEnv { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let weak = dir.path().join("weak.txt");
        std::fs::write(&weak, "abc\n").unwrap();
        let err = resolve_password(&user, &PasswordSource::File { path: weak })
            .err()
            .expect("weak refused");
        assert!(
            !err.to_string().contains("abc"),
            "no password in errors: {err}"
        );
        let good = dir.path().join("good.txt");
        std::fs::write(&good, "Correct-Horse-9\n").unwrap();
        let r = resolve_password(&user, &PasswordSource::File { path: good }).unwrap();
        assert_eq!(r.password.unwrap().expose_secret(), "Correct-Horse-9");
        assert!(!r.generated);
        let g = resolve_password(&user, &PasswordSource::Generate { length: 30 }).unwrap();
        assert!(g.generated);
        assert_eq!(g.password.unwrap().expose_secret().len(), 30);
    }
}
