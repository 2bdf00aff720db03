//! The force-change flags of a password profile as pwdrift writes them: [`profile`], which always
//! states both flags of Microsoft's "passwordProfile resource type"
//! (<https://learn.microsoft.com/en-us/graph/api/resources/passwordprofile>; an omitted flag next
//! to a password may default to true in Graph), and [`patch_flags`],
//! the flag-only changes of a tenant sent as `PATCH /users/{id}` inside `$batch` requests ("Combine
//! multiple HTTP requests using JSON batching",
//! <https://learn.microsoft.com/en-us/graph/json-batching>).
//!
//! Flag changes of users synced from on-premises are planned only where the tenant is declared
//! to accept them (`--synced-flags-writable`); Graph refuses updates of on-premises mastered
//! properties ("Unable to update the specified properties for on-premises mastered Directory
//! Sync objects or objects currently undergoing migration.", "Update user",
//! <https://learn.microsoft.com/en-us/graph/api/user-update>), and flag-only PATCHes are
//! reported refused as well. So [`patch_flags`] sends the synced users' PATCHes one at a time
//! until one is accepted (then the rest in `$batch`); after the first refusal of that kind, the
//! rest are not attempted and are reported together, naming it.

use std::collections::HashMap;

use secrecy::SecretString;

use super::ledger::Stage;
use super::report::{not_started, result, Status};
use super::{Settled, Shared, TenantClients};
use crate::graph::model::{ForceFlags, PasswordProfile};
use crate::plan::{TenantPlan, UserPlan};

/// The password profile of a write: both force flags explicit, and the password if one is set.
pub(super) fn profile(flags: ForceFlags, password: Option<SecretString>) -> PasswordProfile {
    PasswordProfile {
        force_change_password_next_sign_in: Some(flags.force_change_password_next_sign_in),
        force_change_password_next_sign_in_with_mfa: Some(
            flags.force_change_password_next_sign_in_with_mfa,
        ),
        password,
        odata_type: None,
    }
}

/// Sends a tenant's flag-only changes (`(user id, profile)`) as PATCHes inside `$batch`
/// requests, unless the run was cancelled first. Each user is in flight in the ledger from
/// before the first batch goes out; each settles as written (to be read back) or failed.
pub(super) async fn patch_flags<'a>(
    clients: &TenantClients,
    tenant: &'a TenantPlan,
    flag_patches: Vec<(String, PasswordProfile)>,
    run: &Shared<'_>,
) -> Vec<Settled<'a>> {
    let name = tenant.tenant.as_str();
    let ledger = run.ledger;
    let mut out: Vec<Settled> = Vec::new();
    if flag_patches.is_empty() {
        return out;
    }
    let by_id: HashMap<&str, &UserPlan> = tenant
        .users
        .iter()
        .map(|u| (u.user_id.as_str(), u))
        .collect();
    if run.cancel.is_cancelled() {
        for (id, _) in &flag_patches {
            out.push(Settled::Done(not_started(tenant, by_id[id.as_str()])));
        }
        return out;
    }
    for (id, _) in &flag_patches {
        ledger.set(name, id, Stage::InFlight);
    }
    // synced users first, one at a time, until the tenant accepts or refuses one
    let (mut synced, mut flag_patches): (Vec<_>, Vec<_>) = flag_patches
        .into_iter()
        .partition(|(id, _)| by_id[id.as_str()].synced);
    synced.reverse();
    while let Some((id, p)) = synced.pop() {
        let u = by_id[id.as_str()];
        let mut answers = clients
            .app
            .patch_password_profiles(name, vec![(id, p)])
            .await;
        let outcome = answers.pop().map_or(Ok(()), |(_, o)| o);
        (run.progress)(&u.user_principal_name);
        match outcome {
            Ok(()) => {
                out.push(Settled::Written(u));
                flag_patches.append(&mut synced);
            }
            Err(e) if refuses_synced(&e) => {
                let first = e.to_string();
                out.push(Settled::Done(result(
                    tenant,
                    u,
                    Status::Failed,
                    Some(first.clone()),
                )));
                for (id, _) in synced.drain(..).rev() {
                    let other = by_id[id.as_str()];
                    out.push(Settled::Done(result(
                        tenant,
                        other,
                        Status::Blocked,
                        Some(format!(
                            "not attempted: Graph refused the flag change of the synced user {} ({first}), so this tenant refuses flag changes of users synced from on-premises despite --synced-flags-writable; set \"User must change password at next logon\" in Active Directory",
                            u.user_principal_name
                        )),
                    )));
                }
            }
            Err(e) => out.push(Settled::Done(result(
                tenant,
                u,
                Status::Failed,
                Some(e.to_string()),
            ))),
        }
    }
    if flag_patches.is_empty() {
        return out;
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
}

/// Whether Graph refused a write because the user is mastered on-premises: a 400 whose message
/// names on-premises mastered (Directory Sync) objects. Matched leniently on the message, the
/// only thing that tells this refusal from another 400 (its code is the generic
/// `Request_BadRequest`).
fn refuses_synced(e: &crate::graph::client::GraphError) -> bool {
    let crate::graph::client::GraphError::Http {
        status: 400,
        message,
        ..
    } = e
    else {
        return false;
    };
    let m = message.to_ascii_lowercase();
    m.contains("on-premises mastered") || m.contains("directory sync")
}

#[cfg(test)]
mod tests {
    use super::refuses_synced;
    use crate::graph::client::GraphError;

    #[test]
    fn the_on_premises_refusal_is_told_from_other_errors() {
        let http = |status: u16, message: &str| GraphError::Http {
            status,
            code: "Request_BadRequest".into(),
            message: message.into(),
            request_id: None,
        };
        assert!(refuses_synced(&http(
            400,
            "Unable to update the specified properties for on-premises mastered Directory Sync objects or objects currently undergoing migration."
        )));
        assert!(!refuses_synced(&http(400, "Invalid value specified")));
        assert!(!refuses_synced(&http(
            403,
            "Unable to update ... on-premises mastered Directory Sync objects"
        )));
    }
}
