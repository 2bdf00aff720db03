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

mod cancel;
mod flags;
mod journal;
mod ledger;
mod passwords;
mod readback;
mod report;
mod resets;

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::Utc;
use futures_util::StreamExt as _;

use crate::graph::client::GraphClient;
use crate::plan::{Action, TenantPlan, UserPlan};

pub use cancel::Cancel;
pub use journal::{resolve_pending, SharedSecrets};
pub use ledger::Ledger;
pub use passwords::ResolvedPasswords;
pub use report::{ApplyReport, Status, UserResult, REPORT_FORMAT_VERSION};

use flags::{patch_flags, profile};
use journal::Recorder;
use ledger::Stage;
use readback::verify_written;
use report::result;
use resets::reset_one;

/// The Graph clients of one tenant: app-only for reads and PATCH, and a delegated one when the
/// run has a delegated sign-in (needed by resetPassword).
pub struct TenantClients {
    pub app: GraphClient,
    pub delegated: Option<GraphClient>,
    /// how long read-back verification keeps re-reading before concluding (`--verify-timeout`)
    pub verify_timeout: std::time::Duration,
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

/// Progress callback: called once per user when its write finished (ok or not).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

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
    // 2a. flags: PATCHes inside `$batch` requests
    let flags = patch_flags(clients, tenant, flag_patches, run);

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
        for r in verify_written(clients, tenant, written, started).await {
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

/// `results` in the tenant's plan order.
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
