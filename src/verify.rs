//! Step 6 of the pipeline: read every changed user back and decide whether the change took effect.
//!
//! A write that Graph acknowledged is not trusted on its own: the sources disagree on whether a
//! flags-only `PATCH` of `passwordProfile` does anything (a report on Microsoft's Graph
//! documentation, "A new password is always required in a passwordProfile PATCH",
//! <https://github.com/microsoftgraph/microsoft-graph-docs/issues/4267>, has it return 204 and
//! change nothing; the "passwordProfile resource type" page,
//! <https://learn.microsoft.com/en-us/graph/api/resources/passwordprofile>, does not say). So a change counts as done only when the live state read back equals
//! the planned `after` flags and, for a password reset, `lastPasswordChangeDateTime` moved to (or
//! past) the moment the apply started.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::graph::client::{GraphClient, GraphError};
use crate::live::LiveUser;
use crate::plan::{Action, ResetMethod};

/// The verdict on one user after applying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Live state now matches the plan.
    Verified,
    /// Graph accepted the write but the live state does not show it.
    Mismatch { detail: String, hint: String },
    /// The user could not be read back (deleted meanwhile?).
    Missing,
}

/// Compares the read-back state of one user with its planned action. `started` is when apply
/// began writing (resets must show a `lastPasswordChangeDateTime` at or after it).
pub fn check(action: &Action, after_write: Option<&LiveUser>, started: DateTime<Utc>) -> Verdict {
    let Some(live) = after_write else {
        return Verdict::Missing;
    };
    match action {
        Action::SetFlags { after, .. } => {
            if live.flags == *after {
                Verdict::Verified
            } else {
                Verdict::Mismatch {
                    detail: format!(
                        "Graph accepted the PATCH but the flags read back as \
                         forceChangePasswordNextSignIn={}, forceChangePasswordNextSignInWithMfa={} \
                         (wanted {}, {})",
                        live.flags.force_change_password_next_sign_in,
                        live.flags.force_change_password_next_sign_in_with_mfa,
                        after.force_change_password_next_sign_in,
                        after.force_change_password_next_sign_in_with_mfa,
                    ),
                    hint: "the change did not show on any read-back until --verify-timeout: this \
                           tenant ignores a passwordProfile PATCH that carries flags but no \
                           password (reported in microsoft-graph-docs#4267); declare a \
                           `resetPassword` for this user so the flags go out with a new password, \
                           or set the flag in the Entra admin center"
                        .to_owned(),
                }
            }
        }
        Action::ResetPassword { after, method, .. } => {
            let changed = live
                .last_password_change
                .is_some_and(|t| t >= trunc(started));
            if !changed {
                return Verdict::Mismatch {
                    detail: format!(
                        "the reset was accepted but lastPasswordChangeDateTime is still {}",
                        live.last_password_change
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| "null".to_owned())
                    ),
                    hint: "run `pwdrift plan` again in a minute: Graph may not have finished; the \
                           next run will not reset again once the change shows"
                        .to_owned(),
                };
            }
            // resetPassword always prompts the user to change the password ("authenticationMethod: resetPassword"), so the
            // API method is held only to the MFA flag it was asked for; PATCH to both flags.
            let flags_ok = match method {
                ResetMethod::PatchPasswordProfile => live.flags == *after,
                ResetMethod::ResetPasswordApi => {
                    !after.force_change_password_next_sign_in_with_mfa
                        || live.flags.force_change_password_next_sign_in_with_mfa
                }
            };
            if !flags_ok {
                return Verdict::Mismatch {
                    detail: format!(
                        "the password was reset but the flags read back as {}/{} (wanted {}/{})",
                        live.flags.force_change_password_next_sign_in,
                        live.flags.force_change_password_next_sign_in_with_mfa,
                        after.force_change_password_next_sign_in,
                        after.force_change_password_next_sign_in_with_mfa,
                    ),
                    hint: "run `pwdrift plan` to see the remaining difference".to_owned(),
                };
            }
            Verdict::Verified
        }
        Action::NoChange { .. } | Action::Blocked { .. } => Verdict::Verified,
    }
}

/// How long verification keeps re-reading by default (`--verify-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the written users back until every change shows or `timeout` has passed, and returns
/// the verdict of each (by user id). Entra serves reads from replicas, so a read right after a
/// write may show the old state: a mismatch is only concluded when it persists to the deadline
/// (re-reads back off from 250 ms to 4 s, only the users not yet verified). `started` (local
/// clock, before the first write) is moved onto Graph's clock by the `Date` of Graph's responses
/// ([`GraphClient::to_graph_clock`]) before it is compared with `lastPasswordChangeDateTime`.
pub async fn settle(
    client: &GraphClient,
    tenant: &str,
    written: &[(String, &Action)],
    started: DateTime<Utc>,
    timeout: Duration,
) -> Result<HashMap<String, Verdict>, GraphError> {
    let since = client.to_graph_clock(started);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut verdicts: HashMap<String, Verdict> = HashMap::new();
    let mut pending: Vec<&(String, &Action)> = written.iter().collect();
    let mut wait = Duration::from_millis(250);
    loop {
        let ids: Vec<String> = pending.iter().map(|(id, _)| id.clone()).collect();
        let live = crate::live::read_back(client, tenant, &ids).await?;
        let since = since.min(client.to_graph_clock(started));
        pending.retain(|(id, action)| {
            let v = check(action, live.get(id), since);
            let done = v == Verdict::Verified;
            verdicts.insert(id.clone(), v);
            !done
        });
        let now = tokio::time::Instant::now();
        if pending.is_empty() || now >= deadline {
            return Ok(verdicts);
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
        wait = (wait * 2).min(Duration::from_secs(4));
    }
}

/// Whether a password write whose response was lost landed: re-reads the user with backoff until
/// `lastPasswordChangeDateTime` is at or after `started` (moved onto Graph's clock), or `timeout`
/// has passed. `Ok(false)` only after the deadline: a replica may show the old value for a while,
/// and concluding early would send the write twice.
pub async fn password_changed_since(
    client: &GraphClient,
    tenant: &str,
    user_id: &str,
    started: DateTime<Utc>,
    timeout: Duration,
) -> Result<bool, GraphError> {
    password_change_since(client, tenant, user_id, started, None, timeout)
        .await
        .map(|t| t.is_some())
}

/// [`password_changed_since`], also requiring the change to be later than `not_up_to` (a change
/// already seen and put down to an earlier write of the same user), and returning the
/// `lastPasswordChangeDateTime` that showed it. Graph gives whole seconds, so without that bound
/// an earlier write that landed in the same second as `started` would pass for this one.
pub async fn password_change_since(
    client: &GraphClient,
    tenant: &str,
    user_id: &str,
    started: DateTime<Utc>,
    not_up_to: Option<DateTime<Utc>>,
    timeout: Duration,
) -> Result<Option<DateTime<Utc>>, GraphError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(250);
    loop {
        let live =
            crate::live::read_back(client, tenant, std::slice::from_ref(&user_id.to_owned()))
                .await?;
        let since = trunc(client.to_graph_clock(started));
        if let Some(t) = live
            .get(user_id)
            .and_then(|l| l.last_password_change)
            .filter(|t| *t >= since && not_up_to.is_none_or(|e| *t > e))
        {
            return Ok(Some(t));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
        wait = (wait * 2).min(Duration::from_secs(4));
    }
}

/// Graph reports `lastPasswordChangeDateTime` with whole seconds; compare at that precision.
fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    t.with_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PasswordSource;
    use crate::graph::model::ForceFlags;

    fn live(flags: ForceFlags, last: Option<&str>) -> LiveUser {
        LiveUser {
            id: "u1".into(),
            user_principal_name: "u1@contoso.com".into(),
            flags,
            password_policies: vec![],
            last_password_change: last.map(|s| s.parse().unwrap()),
            synced: false,
            on_premises_security_identifier: None,
            privileged_roles: vec![],
            unmanaged_password: None,
            restricted_units: Vec::new(),
        }
    }
    const F: ForceFlags = ForceFlags {
        force_change_password_next_sign_in: false,
        force_change_password_next_sign_in_with_mfa: false,
    };
    const T: ForceFlags = ForceFlags {
        force_change_password_next_sign_in: true,
        force_change_password_next_sign_in_with_mfa: false,
    };

    #[test]
    fn flags_only_patch_that_changed_nothing_is_caught() {
        let action = Action::SetFlags {
            before: F,
            after: T,
            reason: String::new(),
        };
        let started = "2026-11-23T10:00:00Z".parse().unwrap();
        assert_eq!(
            check(&action, Some(&live(T, None)), started),
            Verdict::Verified
        );
        let v = check(&action, Some(&live(F, None)), started);
        assert!(matches!(v, Verdict::Mismatch { ref hint, .. } if hint.contains("resetPassword")));
        assert_eq!(check(&action, None, started), Verdict::Missing);
    }

    #[test]
    fn reset_needs_last_change_at_or_after_start() {
        let action = Action::ResetPassword {
            method: ResetMethod::PatchPasswordProfile,
            password: PasswordSource::Generate { length: 20 },
            before: F,
            after: T,
            reason: String::new(),
        };
        let started: DateTime<Utc> = "2026-11-23T10:00:00.700Z".parse().unwrap();
        let ok = live(T, Some("2026-11-23T10:00:00Z"));
        assert_eq!(check(&action, Some(&ok), started), Verdict::Verified);
        let old = live(T, Some("2026-11-01T10:00:00Z"));
        assert!(matches!(
            check(&action, Some(&old), started),
            Verdict::Mismatch { .. }
        ));
        let wrong_flags = live(F, Some("2026-11-23T10:00:01Z"));
        assert!(matches!(
            check(&action, Some(&wrong_flags), started),
            Verdict::Mismatch { .. }
        ));
        // the resetPassword API always forces a change: flags are not held to `after`
        let api = Action::ResetPassword {
            method: ResetMethod::ResetPasswordApi,
            password: PasswordSource::Generate { length: 20 },
            before: F,
            after: F,
            reason: String::new(),
        };
        let forced = live(T, Some("2026-11-23T10:00:01Z"));
        assert_eq!(check(&api, Some(&forced), started), Verdict::Verified);
    }
}
