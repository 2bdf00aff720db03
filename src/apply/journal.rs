//! The apply's side of the write-ahead secrets file ([`crate::secrets`]): [`SharedSecrets`], the
//! file shared by the concurrent writes; the `Recorder`, which records a write's intent (and a
//! password pwdrift chose) before it is sent, a system-generated password the moment its 202
//! body is read, the operation's URL and the outcome; and [`resolve_pending`], which finds out
//! what became of the entries an interrupted run left pending before the next run plans.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use secrecy::SecretString;

use super::{ApplyError, TenantClients};
use crate::graph::model::OperationStatus;
use crate::plan::UserPlan;
use crate::secrets::{Method, Outcome, SecretsFile};
use crate::verify;

/// The secrets file of a run, shared by its concurrent writes. The lock is held only while one
/// record is appended and fsync'd, never across a request.
pub type SharedSecrets = Mutex<Option<SecretsFile>>;

/// The shared secrets file, one record at a time (the lock is released before any request).
pub(super) struct Recorder<'a>(pub(super) &'a SharedSecrets);

impl Recorder<'_> {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Option<SecretsFile>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the intent (and a password pwdrift chose) and fsyncs, before the request is sent.
    /// `Ok(None)` when no file is kept.
    pub(super) fn intent(
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
    pub(super) fn generated(
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
    pub(super) fn operation(&self, seq: Option<u64>, location: &str) {
        if let (Some(seq), Some(f)) = (seq, self.lock().as_mut()) {
            if let Err(e) = f.operation(seq, location) {
                tracing::warn!(
                    "cannot record the operation in the secrets file: {}",
                    crate::escape::Shown(&e.to_string())
                );
            }
        }
    }

    /// Records an outcome; a failure to record leaves the entry pending (the next run resolves
    /// it).
    pub(super) fn outcome(&self, seq: Option<u64>, outcome: Outcome, detail: Option<&str>) {
        if let (Some(seq), Some(f)) = (seq, self.lock().as_mut()) {
            if let Err(e) = f.outcome(seq, outcome, detail) {
                tracing::warn!(
                    "cannot record an outcome in the secrets file: {}",
                    crate::escape::Shown(&e.to_string())
                );
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
        // a reset that took effect with no password recorded (a system-generated password lost
        // with its 202): the user has a password nobody knows, and the journal says so
        let outcome = if outcome == Outcome::Applied && !e.has_password {
            Outcome::PasswordUnknown
        } else {
            outcome
        };
        secrets.outcome(e.seq, outcome, Some(&detail))?;
        let mut line = format!(
            "{}: {} ({detail})",
            e.user_principal_name,
            match outcome {
                Outcome::Applied => "applied",
                Outcome::PasswordUnknown => "applied, PASSWORD UNKNOWN",
                _ => "not applied",
            }
        );
        if outcome == Outcome::PasswordUnknown {
            line.push_str(
                "; its password was not recorded (lost with the response): reset it again, \
                 with a password pwdrift generates (`generate`)",
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
