//! Step 2 of the pipeline: read the live state of the declared users from Microsoft Graph and
//! resolve desired-state references (UPN, object id, SID, group) to concrete users.
//!
//! The output, [`LiveTenant`], is everything [`crate::diff`] needs, so the diff itself does no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Directives, Origin};
use crate::graph::model::{password_policies, ForceFlags, GraphUser};

/// A user's live password state as pwdrift compares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveUser {
    pub id: String,
    pub user_principal_name: String,
    pub flags: ForceFlags,
    /// `passwordPolicies`, split and trimmed (`None` dropped)
    pub password_policies: Vec<String>,
    pub last_password_change: Option<DateTime<Utc>>,
    /// `onPremisesSyncEnabled == true`: a hybrid user whose password PATCH refuses
    pub synced: bool,
    pub on_premises_security_identifier: Option<String>,
    /// display names of the privileged directory roles the user holds (empty: not an admin)
    pub privileged_roles: Vec<String>,
}

impl LiveUser {
    /// Converts Graph's wire shape (every field optional) into the compared shape.
    pub fn from_graph(user: &GraphUser, privileged_roles: Vec<String>) -> Self {
        LiveUser {
            id: user.id.clone(),
            user_principal_name: user.user_principal_name.clone().unwrap_or_default(),
            flags: ForceFlags::from_profile(user.password_profile.as_ref()),
            password_policies: password_policies(user.password_policies.as_deref()),
            last_password_change: user.last_password_change_date_time,
            synced: user.on_premises_sync_enabled.unwrap_or(false),
            on_premises_security_identifier: user.on_premises_security_identifier.clone(),
            privileged_roles,
        }
    }

    /// A stable fingerprint of everything the plan was computed from. `apply FILE` refuses a
    /// saved plan when any user's fingerprint changed since ("stale plan").
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(self).expect("LiveUser serialises");
        hex::encode(Sha256::digest(canonical))
    }
}

/// Who runs pwdrift against this tenant, as far as the diff needs to know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Caller {
    /// App-only (client credentials): can PATCH passwordProfile, cannot call resetPassword.
    Application,
    /// A signed-in admin: can call resetPassword, but never on its own account.
    Delegated { user_id: String },
}

/// One managed user: live state plus the merged directives that apply to it (direct entry and
/// every group it is a transitive member of), with every place they were declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub live: LiveUser,
    pub directives: Directives,
    pub declared_at: Vec<Origin>,
}

/// Live state of one tenant, resolved against its desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveTenant {
    /// the tenant as named in desired state
    pub tenant: String,
    /// resolved tenant id (GUID)
    pub tenant_id: String,
    pub caller: Caller,
    /// a delegated credential is available for resetPassword (synced users)
    pub delegated_reset_available: bool,
    /// keyed by object id: stable order, one entry per user
    pub targets: BTreeMap<String, Target>,
}
