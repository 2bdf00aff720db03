//! The force-change flags of a password profile as pwdrift writes them: [`profile`], which always
//! states both flags of Microsoft's "passwordProfile resource type"
//! (<https://learn.microsoft.com/en-us/graph/api/resources/passwordprofile>; an omitted flag next
//! to a password may default to true in Graph), and [`patch_flags`],
//! the flag-only changes of a tenant sent as `PATCH /users/{id}` inside `$batch` requests ("Combine
//! multiple HTTP requests using JSON batching",
//! <https://learn.microsoft.com/en-us/graph/json-batching>).

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
