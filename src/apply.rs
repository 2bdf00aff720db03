//! Step 5 of the pipeline: carry out a plan through the Graph client, then verify by reading back.
//!
//! Order of work:
//! 1. For the whole plan, every password source (generate, env, file) is resolved *before*
//!    anything is written ([`ResolvedPasswords`]): a missing variable or unreadable file in any
//!    tenant fails the run with nothing changed.
//! 2. Per tenant, flag changes go out as `PATCH /users/{id}` inside `$batch` requests of 20, and
//!    cloud-user resets as single non-idempotent PATCHes; both force flags are always explicit (an
//!    omitted flag next to a password may default to true in Graph). Synced users are reset
//!    through the delegated-only resetPassword API and the long-running operation is polled
//!    through its `Location` to a terminal status.
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
//! before the next run plans. A [`Cancel`] (the first SIGINT/SIGTERM) stops new writes; the
//! writes in flight finish and are recorded. Passwords reach nothing but that file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::PasswordSource;
use crate::graph::client::{GraphClient, GraphError};
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

/// Set by the first SIGINT/SIGTERM: no new write starts; writes in flight finish and their
/// outcomes are recorded.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

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

/// A write whose response does not say whether it took effect: a lost response (timeout,
/// connection dropped after sending) or any 5xx.
fn ambiguous(e: &GraphError) -> bool {
    e.outcome_unknown() || e.status().is_some_and(|s| s >= 500)
}

/// Records an outcome; a failure to record leaves the entry pending (the next run resolves it).
fn record_outcome(
    secrets: &mut Option<SecretsFile>,
    seq: Option<u64>,
    outcome: Outcome,
    detail: Option<&str>,
) {
    if let (Some(f), Some(seq)) = (secrets.as_mut(), seq) {
        if let Err(e) = f.outcome(seq, outcome, detail) {
            tracing::warn!("cannot record an outcome in the secrets file: {e}");
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
    let mut lines = Vec::new();
    for e in pending {
        let Some(c) = clients(&e.tenant) else {
            lines.push(format!(
                "{} ({}): left pending (tenant not in this run)",
                e.user_principal_name, e.tenant
            ));
            continue;
        };
        let mut verdict: Option<(Outcome, String)> = None;
        if let (Some(op), Some(delegated)) = (&e.operation, c.delegated.as_ref()) {
            match delegated
                .poll_operation(&e.tenant, op, Duration::from_secs(30))
                .await
            {
                Ok(op) if op.status == OperationStatus::Succeeded => {
                    verdict = Some((Outcome::Applied, "operation succeeded".into()))
                }
                Ok(op) if op.status == OperationStatus::Failed => {
                    verdict = Some((Outcome::NotApplied, "operation failed".into()))
                }
                _ => {}
            }
        }
        let (outcome, detail) = match verdict {
            Some(v) => v,
            None => {
                match verify::password_changed_since(
                    &c.app,
                    &e.tenant,
                    &e.user_id,
                    e.at,
                    c.verify_timeout,
                )
                .await
                {
                    Ok(true) => (Outcome::Applied, "read back: the password changed".into()),
                    Ok(false) => (
                        Outcome::NotApplied,
                        "read back: the password did not change".into(),
                    ),
                    Err(err) => {
                        return Err(ApplyError::Unresolved(format!(
                            "{}: cannot read the user back: {err}",
                            e.user_principal_name
                        )))
                    }
                }
            }
        };
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

/// Applies one tenant's part of a plan and verifies it, with the passwords resolved for the whole
/// plan beforehand. Every password write is recorded in `secrets` before it is sent and its
/// outcome after (see [`crate::secrets`]). Once `cancel` is set, no new write starts.
pub async fn apply_tenant(
    clients: &TenantClients,
    tenant: &TenantPlan,
    passwords: &ResolvedPasswords,
    secrets: &mut Option<SecretsFile>,
    cancel: &Cancel,
    progress: Progress<'_>,
) -> Result<Vec<UserResult>, ApplyError> {
    let started = Utc::now();
    let name = tenant.tenant.as_str();

    // Passwords were resolved before anything was written; a generated one must have somewhere
    // to go.
    let generated = tenant
        .users
        .iter()
        .filter(|u| passwords.get(tenant, u).is_some_and(|r| r.generated))
        .count();
    if generated > 0 && secrets.is_none() {
        return Err(ApplyError::SecretsOutRequired { count: generated });
    }
    let resolved = |u: &UserPlan| {
        passwords
            .get(tenant, u)
            .expect("every reset of the plan was resolved")
    };

    let mut results: Vec<UserResult> = Vec::new();
    let mut written: Vec<&UserPlan> = Vec::new();
    let not_started = |u: &UserPlan| {
        result(
            tenant,
            u,
            Status::NotStarted,
            Some("not written: the run was interrupted".into()),
        )
    };

    // 2a. PATCHes: flags, and resets of cloud users
    let mut flag_patches = Vec::new();
    let mut reset_patches: Vec<&UserPlan> = Vec::new();
    let mut api_resets: Vec<&UserPlan> = Vec::new();
    for u in &tenant.users {
        match &u.action {
            Action::NoChange { .. } => results.push(result(tenant, u, Status::Unchanged, None)),
            Action::Blocked { detail, .. } => {
                results.push(result(tenant, u, Status::Blocked, Some(detail.clone())))
            }
            Action::SetFlags { after, .. } => {
                flag_patches.push((u.user_id.clone(), profile(*after, None)))
            }
            Action::ResetPassword {
                method: ResetMethod::PatchPasswordProfile,
                ..
            } => reset_patches.push(u),
            Action::ResetPassword {
                method: ResetMethod::ResetPasswordApi,
                ..
            } => api_resets.push(u),
        }
    }
    let by_id: HashMap<&str, &UserPlan> = tenant
        .users
        .iter()
        .map(|u| (u.user_id.as_str(), u))
        .collect();

    if !flag_patches.is_empty() {
        if cancel.is_cancelled() {
            for (id, _) in &flag_patches {
                results.push(not_started(by_id[id.as_str()]));
            }
        } else {
            for (id, outcome) in clients
                .app
                .patch_password_profiles(name, flag_patches)
                .await
            {
                let u = by_id[id.as_str()];
                progress(&u.user_principal_name);
                match outcome {
                    Ok(()) => written.push(u),
                    Err(e) => results.push(result(tenant, u, Status::Failed, Some(e.to_string()))),
                }
            }
        }
    }

    // 2b. resets by PATCH: recorded before sending, resolved by reading back when the response
    // is lost, retried only with the same password
    for u in reset_patches {
        if cancel.is_cancelled() {
            results.push(not_started(u));
            continue;
        }
        let Action::ResetPassword { after, .. } = &u.action else {
            unreachable!()
        };
        let r = resolved(u);
        let pw = r
            .password
            .clone()
            .expect("a PATCH reset has a password (systemGenerated goes through the API)");
        let intent_at = Utc::now();
        let seq = match secrets.as_mut().map(|f| {
            f.intent(
                name,
                &u.user_id,
                &u.user_principal_name,
                Method::Patch,
                r.generated.then_some(&pw),
            )
        }) {
            None => None,
            Some(Ok(seq)) => Some(seq),
            Some(Err(e)) => {
                results.push(result(
                    tenant,
                    u,
                    Status::Failed,
                    Some(format!("not sent: cannot record the password first: {e}")),
                ));
                continue;
            }
        };
        let outcome = patch_reset(clients, name, u, *after, pw, intent_at).await;
        progress(&u.user_principal_name);
        settle(secrets, seq, outcome, tenant, u, &mut results, &mut written);
    }

    // 2c. resets through the delegated-only resetPassword API (synced users)
    for u in api_resets {
        if cancel.is_cancelled() {
            results.push(not_started(u));
            continue;
        }
        progress(&u.user_principal_name);
        let Some(delegated) = clients.delegated.as_ref() else {
            results.push(result(
                tenant,
                u,
                Status::Failed,
                Some("resetPassword needs a delegated sign-in (--delegated)".into()),
            ));
            continue;
        };
        let r = resolved(u);
        let outcome = api_reset(clients, delegated, name, u, r, secrets).await;
        let (seq, outcome) = match outcome {
            Ok(v) => v,
            Err(detail) => {
                results.push(result(tenant, u, Status::Failed, Some(detail)));
                continue;
            }
        };
        // resetPassword leaves the flags at (force true, mfa false); when the plan wants others
        // (the MFA variant, or a literal `forceChangePasswordNextSignIn: false`), they go out as
        // a flags PATCH after the reset succeeded.
        if let (WriteOutcome::Applied, Action::ResetPassword { after, .. }) = (&outcome, &u.action)
        {
            if *after
                != (ForceFlags {
                    force_change_password_next_sign_in: true,
                    force_change_password_next_sign_in_with_mfa: false,
                })
            {
                if let Err(e) = clients
                    .app
                    .patch_password_profile_once(name, &u.user_id, profile(*after, None))
                    .await
                {
                    // read-back verification reports the missing flag
                    tracing::warn!(user = %u.user_principal_name, "flags after resetPassword: {e}");
                }
            }
        }
        settle(secrets, seq, outcome, tenant, u, &mut results, &mut written);
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
                    results.push(result(
                        tenant,
                        u,
                        Status::Failed,
                        Some(format!(
                            "written, but could not be read back to verify: {e}"
                        )),
                    ));
                }
                return Ok(sort(results, tenant));
            }
        };
        for u in written {
            match verdicts.remove(&u.user_id).unwrap_or(Verdict::Missing) {
                Verdict::Verified => results.push(result(tenant, u, Status::Verified, None)),
                Verdict::Missing => results.push(result(
                    tenant,
                    u,
                    Status::Failed,
                    Some("the user could not be read back".into()),
                )),
                Verdict::Mismatch { detail, hint } => {
                    let mut r = result(tenant, u, Status::Failed, Some(detail));
                    r.hint = Some(hint);
                    results.push(r);
                }
            }
        }
    }
    Ok(sort(results, tenant))
}

/// Records a password write's outcome in the secrets file and the run's results.
fn settle<'a>(
    secrets: &mut Option<SecretsFile>,
    seq: Option<u64>,
    outcome: WriteOutcome,
    tenant: &TenantPlan,
    u: &'a UserPlan,
    results: &mut Vec<UserResult>,
    written: &mut Vec<&'a UserPlan>,
) {
    match outcome {
        WriteOutcome::Applied => {
            record_outcome(secrets, seq, Outcome::Applied, None);
            written.push(u);
        }
        WriteOutcome::NotApplied(detail) => {
            record_outcome(secrets, seq, Outcome::NotApplied, Some(&detail));
            results.push(result(tenant, u, Status::Failed, Some(detail)));
        }
        WriteOutcome::Unknown(detail) => {
            record_outcome(secrets, seq, Outcome::Unknown, Some(&detail));
            let mut r = result(tenant, u, Status::Unknown, Some(detail));
            r.hint = Some(
                "run apply again with --secrets-append and the same --secrets-out file: it \
                 resolves this entry (reads the user back) before planning anything else"
                    .into(),
            );
            results.push(r);
        }
    }
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

/// PATCHes a new password. An ambiguous answer (lost response, any 5xx) is resolved by reading
/// the user back (`lastPasswordChangeDateTime` at or after `since`, re-read for a while: reads
/// can lag); only when it did not land is the PATCH sent again, with the same password.
async fn patch_reset(
    clients: &TenantClients,
    tenant: &str,
    user: &UserPlan,
    after: ForceFlags,
    password: SecretString,
    since: DateTime<Utc>,
) -> WriteOutcome {
    let mut last = String::new();
    for attempt in 1..=WRITE_ATTEMPTS {
        let sent = clients
            .app
            .patch_password_profile_once(
                tenant,
                &user.user_id,
                profile(after, Some(password.clone())),
            )
            .await;
        match sent {
            Ok(()) => return WriteOutcome::Applied,
            Err(e) if ambiguous(&e) => {
                tracing::warn!(user = %user.user_principal_name, attempt, "reset answer lost or 5xx; reading the user back before any repeat: {e}");
                match verify::password_changed_since(
                    &clients.app,
                    tenant,
                    &user.user_id,
                    since,
                    clients.verify_timeout,
                )
                .await
                {
                    Ok(true) => return WriteOutcome::Applied,
                    Ok(false) => last = e.to_string(),
                    Err(read) => {
                        return WriteOutcome::Unknown(format!(
                            "{e}; and the user could not be read back: {read}"
                        ))
                    }
                }
            }
            Err(e) => return WriteOutcome::NotApplied(e.to_string()),
        }
    }
    WriteOutcome::Unknown(format!(
        "{WRITE_ATTEMPTS} attempts with the same password, none confirmed: {last}"
    ))
}

/// Calls resetPassword, recording the intent first, the generated password the moment the 202
/// body is read, then the operation's `Location`, and polls the operation. Ambiguity (a lost
/// answer, a poll that fails, no `Location`) is resolved by reading the user back. A password
/// pwdrift chose is retried as is; a system-generated one whose 202 was lost cannot be (it
/// exists nowhere), so a new reset is sent and its own password recorded. `Err` when nothing was
/// sent.
async fn api_reset(
    clients: &TenantClients,
    client: &GraphClient,
    tenant: &str,
    user: &UserPlan,
    resolved: &ResolvedReset,
    secrets: &mut Option<SecretsFile>,
) -> Result<(Option<u64>, WriteOutcome), String> {
    let mut superseded: Option<u64> = None;
    let mut last = String::new();
    let mut last_seq = None;
    for attempt in 1..=WRITE_ATTEMPTS {
        let since = Utc::now();
        let seq = match secrets.as_mut().map(|f| {
            f.intent(
                tenant,
                &user.user_id,
                &user.user_principal_name,
                Method::ResetPasswordApi,
                resolved
                    .generated
                    .then_some(resolved.password.as_ref())
                    .flatten(),
            )
        }) {
            None => None,
            Some(Ok(seq)) => Some(seq),
            Some(Err(e)) => {
                return Err(format!("not sent: cannot record the reset first: {e}"));
            }
        };
        if let Some(old) = superseded.take() {
            let detail = format!(
                "its 202 answer was lost; replaced by entry {}",
                seq.unwrap_or(0)
            );
            record_outcome(secrets, Some(old), Outcome::Superseded, Some(&detail));
        }
        let sent = client
            .reset_password(tenant, &user.user_id, resolved.password.clone())
            .await;
        let answer = match sent {
            Ok(a) => a,
            Err(e) if ambiguous(&e) => {
                tracing::warn!(user = %user.user_principal_name, attempt, "resetPassword answer lost or 5xx; reading the user back: {e}");
                let landed = verify::password_changed_since(
                    &clients.app,
                    tenant,
                    &user.user_id,
                    since,
                    clients.verify_timeout,
                )
                .await;
                match (landed, resolved.password.is_some()) {
                    (Ok(true), true) => return Ok((seq, WriteOutcome::Applied)),
                    (Ok(_), false) => {
                        // the service's password went with the lost answer: reset again
                        last = e.to_string();
                        superseded = seq;
                        continue;
                    }
                    (Ok(false), true) => {
                        last = e.to_string();
                        last_seq = seq;
                        if attempt < WRITE_ATTEMPTS {
                            record_outcome(
                                secrets,
                                seq,
                                Outcome::NotApplied,
                                Some("read back: not applied; sent again with the same password"),
                            );
                        }
                        continue;
                    }
                    (Err(read), _) => {
                        return Ok((
                            seq,
                            WriteOutcome::Unknown(format!(
                                "{e}; and the user could not be read back: {read}"
                            )),
                        ))
                    }
                }
            }
            Err(e) => return Ok((seq, WriteOutcome::NotApplied(e.to_string()))),
        };
        // The generated password, durably, before anything else can fail.
        if let (Some(pw), Some(seq), Some(f)) = (&answer.generated_password, seq, secrets.as_mut())
        {
            if let Err(e) = f.generated(seq, pw) {
                return Ok((
                    Some(seq),
                    WriteOutcome::Unknown(format!(
                        "the password was reset but the generated password could not be recorded: {e}; reset the user again"
                    )),
                ));
            }
        }
        let polled = match &answer.location {
            Ok(location) => {
                if let (Some(seq), Some(f)) = (seq, secrets.as_mut()) {
                    if let Err(e) = f.operation(seq, location) {
                        tracing::warn!("cannot record the operation in the secrets file: {e}");
                    }
                }
                client
                    .poll_operation(tenant, location, OPERATION_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("no operation to poll: {e}")),
        };
        return Ok((
            seq,
            match polled {
                Ok(op) if op.status == OperationStatus::Succeeded => WriteOutcome::Applied,
                Ok(op) if op.status == OperationStatus::Failed => {
                    WriteOutcome::NotApplied(format!(
                        "the resetPassword operation failed{}",
                        op.status_detail
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    ))
                }
                other => {
                    let why = match other {
                        Ok(op) => format!("the operation ended {:?}", op.status),
                        Err(e) => e,
                    };
                    match verify::password_changed_since(
                        &clients.app,
                        tenant,
                        &user.user_id,
                        since,
                        clients.verify_timeout,
                    )
                    .await
                    {
                        Ok(true) => WriteOutcome::Applied,
                        Ok(false) => WriteOutcome::Unknown(format!(
                            "{why}; the password does not show as changed yet"
                        )),
                        Err(read) => WriteOutcome::Unknown(format!(
                            "{why}; and the user could not be read back: {read}"
                        )),
                    }
                }
            },
        ));
    }
    if let Some(old) = superseded {
        // the last attempt's answer was lost too: its outcome is unknown
        return Ok((
            Some(old),
            WriteOutcome::Unknown(format!(
                "{WRITE_ATTEMPTS} resetPassword answers lost; the user's password may have changed to one nobody knows: reset it again ({last})"
            )),
        ));
    }
    Ok((
        last_seq,
        WriteOutcome::Unknown(format!(
            "{WRITE_ATTEMPTS} attempts with the same password, none confirmed: {last}"
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
