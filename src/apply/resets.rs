//! Password resets, one user at a time from admission to a settled outcome ([`reset_one`]): a
//! cloud user's new password as a single non-idempotent `PATCH /users/{id}` ("Update user",
//! <https://learn.microsoft.com/en-us/graph/api/user-update>), a synced user's (or a
//! system-generated one) through the delegated-only resetPassword API and its long-running
//! operation ("authenticationMethod: resetPassword",
//! <https://learn.microsoft.com/en-us/graph/api/authenticationmethod-resetpassword>). Each write is
//! admitted by the tenant's pacer, then its intent recorded, then sent; an ambiguous answer (a
//! lost response, any 5xx, a failed poll) is resolved by reading the user back (`read_back`)
//! before any repeat, and a repeat sends the same password.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::cancel::{admit, admit_reset};
use super::flags::profile;
use super::journal::Recorder;
use super::ledger::Stage;
use super::passwords::ResolvedReset;
use super::report::{not_started, result, Status, PASSWORD_UNKNOWN_HINT, UNKNOWN_HINT};
use super::{Settled, Shared, TenantClients};
use crate::graph::client::{GraphClient, GraphError};
use crate::graph::model::{ForceFlags, OperationStatus};
use crate::plan::{Action, ResetMethod, TenantPlan, UserPlan};
use crate::secrets::{Method, Outcome};
use crate::verify;

/// Attempts of one password write with the same password (the first included).
const WRITE_ATTEMPTS: u32 = 3;
/// How long a resetPassword operation is polled.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// What became of one password write, after resolving any ambiguity.
enum WriteOutcome {
    Applied,
    NotApplied(String),
    Unknown(String),
    /// took effect, but the answer carried no system-generated password: nobody knows it
    PasswordUnknown(String),
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

/// What resetPassword leaves on the user: it forces a change at next sign-in, without MFA.
const AFTER_RESET_PASSWORD_API: ForceFlags = ForceFlags {
    force_change_password_next_sign_in: true,
    force_change_password_next_sign_in_with_mfa: false,
};

/// One password reset, from its admission to its settled outcome (recorded in the journal).
pub(super) async fn reset_one<'a>(
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
    if run.cancel.is_cancelled() {
        return Settled::Done(not_started(tenant, u));
    }
    match changed_since_planned(clients, name, u).await {
        Recheck::Unchanged => {}
        Recheck::Changed(detail) => {
            (run.progress)(&u.user_principal_name);
            return Settled::Done(result(tenant, u, Status::Skipped, Some(detail)));
        }
        Recheck::Unreadable(detail) => {
            (run.progress)(&u.user_principal_name);
            return Settled::Done(result(tenant, u, Status::Failed, Some(detail)));
        }
    }
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
                        tracing::warn!(user = %crate::escape::Shown(&u.user_principal_name), "flags after resetPassword: {}", crate::escape::Shown(&e.to_string()));
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
        WriteOutcome::PasswordUnknown(detail) => {
            journal.outcome(seq, Outcome::PasswordUnknown, Some(&detail));
            tracing::warn!(user = %u.user_principal_name, "password unknown: {detail}");
            let mut r = result(tenant, u, Status::PasswordUnknown, Some(detail));
            r.hint = Some(PASSWORD_UNKNOWN_HINT.into());
            Settled::Done(r)
        }
    };
    (run.progress)(&u.user_principal_name);
    settled
}

/// What the user's password state, read again right before its password write, says.
enum Recheck {
    /// no change since the plan read it: write
    Unchanged,
    /// the password changed after the plan read it: skip (the detail says when)
    Changed(String),
    /// the user could not be read (or no longer exists): nothing is sent
    Unreadable(String),
}

/// Reads the user again right before its password write and compares its
/// `lastPasswordChangeDateTime` ("user resource type",
/// <https://learn.microsoft.com/en-us/graph/api/resources/user>) with the one the plan read
/// ([`UserPlan::last_password_change`]): a later one means someone changed the password since
/// (another run, on this machine or another, or an administrator), and writing now would reset
/// it a second time and leave whoever set it with a password that is no longer the user's.
///
/// The read comes before the write's admission by the pacer (a read needs a request slot of its
/// own), so the window between it and the write is the admission wait. Graph gives whole
/// seconds: a change in the same second as the one the plan saw does not show. Reads are served
/// from replicas that can lag writes, so an older value than the plan's (or the same one) is
/// taken as no change: this check narrows the window, the per-tenant lock of `apply` closes it
/// on one machine.
async fn changed_since_planned(clients: &TenantClients, tenant: &str, u: &UserPlan) -> Recheck {
    let now =
        match clients.app.get_user_by_id(tenant, &u.user_id).await {
            Ok(Some(user)) => user,
            Ok(None) => return Recheck::Unreadable(
                "not sent: the user no longer exists (read again right before the password write)"
                    .to_owned(),
            ),
            Err(e) => {
                return Recheck::Unreadable(format!(
                "not sent: the user could not be read again right before the password write: {e}"
            ))
            }
        };
    match (now.last_password_change_date_time, u.last_password_change) {
        (Some(now), Some(then)) if now > then => Recheck::Changed(format!(
            "password changed since the plan read it (at {}; the plan read {})",
            now.to_rfc3339(),
            then.to_rfc3339()
        )),
        (Some(now), None) => Recheck::Changed(format!(
            "password changed since the plan read it (at {}; the plan read none)",
            now.to_rfc3339()
        )),
        _ => Recheck::Unchanged,
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
                tracing::warn!(user = %crate::escape::Shown(&user.user_principal_name), attempt, "reset answer lost or 5xx; reading the user back before any repeat: {}", crate::escape::Shown(&e.to_string()));
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
    // At most as many resets in progress as the authentication-method limit allows per window
    // (5 per 10 s by default): each one's polls get their turns before further resets take them.
    let gate = client.reset_gate(tenant);
    let _in_progress = tokio::select! {
        biased;
        _ = run.cancel.cancelled() => return Write::NotStarted,
        permit = gate.acquire_owned() => permit.expect("the reset gate is never closed"),
    };
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
        // resetPassword's turn within the authentication-method limit is part of its admission:
        // nothing is recorded while it waits
        let slot = if attempt == 1 {
            match admit_reset(client, tenant, run.cancel).await {
                Some(slot) => slot,
                None => return Write::NotStarted,
            }
        } else {
            client.admit_reset_password(tenant).await
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
                tracing::warn!(user = %crate::escape::Shown(&user.user_principal_name), attempt, "resetPassword answer lost or 5xx; reading the user back: {}", crate::escape::Shown(&e.to_string()));
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
        // A password was expected (system-generated) and the success answer did not carry it:
        // the reset still runs its course (the operation is polled: a failed one changed
        // nothing), but one that took effect leaves a password nobody knows.
        let no_password = match (&resolved.password, &answer.generated_password) {
            (None, None) => Some(
                answer
                    .no_password
                    .clone()
                    .unwrap_or_else(|| "an answer without a password".into()),
            ),
            _ => None,
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
        let outcome = match (outcome, no_password) {
            (WriteOutcome::Applied, Some(why)) => WriteOutcome::PasswordUnknown(format!(
                "password unknown: the reset took effect, but its answer ({why}) did not carry \
                 the system-generated password, so nobody knows the user's new password"
            )),
            (WriteOutcome::Unknown(detail), Some(why)) => WriteOutcome::Unknown(format!(
                "{detail}; and its answer ({why}) did not carry the system-generated password"
            )),
            (outcome, _) => outcome,
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
