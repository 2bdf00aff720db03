//! The last step of a tenant's apply: every user whose write Graph acknowledged is read back
//! ([`crate::verify`]) and gets its final status. A write Graph acknowledged is not trusted on its
//! own: only a verified change counts as done.

use chrono::{DateTime, Utc};

use super::report::{result, Status, UserResult};
use super::TenantClients;
use crate::plan::{Action, TenantPlan, UserPlan};
use crate::verify::{self, Verdict};

/// Reads the `written` users of `tenant` back (changes since `started`, re-read for up to the
/// tenant's `--verify-timeout`) and returns their results, in the order given: verified, or
/// failed with what the read-back showed. When the users cannot be read back at all, every one
/// of them fails with that reason.
pub(super) async fn verify_written(
    clients: &TenantClients,
    tenant: &TenantPlan,
    written: Vec<&UserPlan>,
    started: DateTime<Utc>,
) -> Vec<UserResult> {
    let name = tenant.tenant.as_str();
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
            return written
                .into_iter()
                .map(|u| {
                    result(
                        tenant,
                        u,
                        Status::Failed,
                        Some(format!(
                            "written, but could not be read back to verify: {e}"
                        )),
                    )
                })
                .collect();
        }
    };
    written
        .into_iter()
        .map(
            |u| match verdicts.remove(&u.user_id).unwrap_or(Verdict::Missing) {
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
            },
        )
        .collect()
}
