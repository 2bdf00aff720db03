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

// ---------------------------------------------------------------------------------------------
// Reading live state
// ---------------------------------------------------------------------------------------------

use std::collections::{BTreeSet, HashMap};

use crate::config::diag::Diagnostic;
use crate::config::{GroupRef, TenantDesired, UserEntry, UserRef};
use crate::graph::client::{GraphClient, GraphError, UserKey};

/// When the desired state names more users than this, the whole tenant is listed with
/// `$top=999` paging (about `n/999` requests); below it, users are fetched by id, UPN or SID in
/// `$batch` requests of 20 (about `n/20` requests). 2,000 named users is ~100 batches, which is
/// where paging a mid-size tenant starts to win.
pub const LIST_ALL_THRESHOLD: usize = 2000;

/// Why live state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Problems in desired state that only live state reveals (a user that does not exist, a group
    /// name that matches no group or several, conflicting directives through group membership).
    #[error("{} problem(s) resolving desired state against the tenant", .0.len())]
    Resolution(Vec<Diagnostic>),
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// Reads the live state of everything `desired` declares in one tenant and resolves it into
/// [`Target`]s. `only` limits the run to the named users (as written in desired state: UPN,
/// object id or SID; compared case-insensitively); empty means all.
pub async fn read_tenant(
    client: &GraphClient,
    desired: &TenantDesired,
    caller: Caller,
    delegated_reset_available: bool,
    only: &[String],
) -> Result<LiveTenant, LiveError> {
    let tenant = desired.tenant.as_str();
    let mut problems = Vec::new();

    let roles = PrivilegedRoles::read(client, tenant).await?;

    // Directly declared users.
    let mut resolved: Vec<(&UserEntry, LiveUser)> = Vec::new();
    if desired.users.len() > list_all_threshold() {
        let all = client.list_users(tenant, None).await?;
        let mut by_key: HashMap<String, usize> = HashMap::with_capacity(all.len() * 2);
        for (i, u) in all.iter().enumerate() {
            by_key.insert(u.id.to_ascii_lowercase(), i);
            if let Some(upn) = &u.user_principal_name {
                by_key.insert(upn.to_lowercase(), i);
            }
            if let Some(sid) = &u.on_premises_security_identifier {
                by_key.insert(sid.to_ascii_uppercase(), i);
            }
        }
        for entry in &desired.users {
            let key = match &entry.user {
                UserRef::Sid(s) => s.to_ascii_uppercase(),
                other => other.as_str().to_lowercase(),
            };
            match by_key.get(&key) {
                Some(&i) => resolved.push((entry, roles.live(&all[i]))),
                None => problems.push(not_found(entry)),
            }
        }
    } else {
        let keys: Vec<UserKey> = desired.users.iter().map(|e| user_key(&e.user)).collect();
        let results = client.get_users_by_batch(tenant, &keys).await?;
        // results come back keyed by the lookup key, in any order
        let mut by_key: HashMap<UserKey, Result<crate::graph::model::GraphUser, GraphError>> =
            results.into_iter().collect();
        for entry in &desired.users {
            match by_key.remove(&user_key(&entry.user)) {
                Some(Ok(u)) => resolved.push((entry, roles.live(&u))),
                Some(Err(GraphError::NotFound { .. })) | None => problems.push(not_found(entry)),
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    // Two spellings (UPN and object id, say) of the same user in desired state.
    let mut first_seen: HashMap<&str, &UserEntry> = HashMap::new();
    for (entry, live) in &resolved {
        if let Some(prev) = first_seen.insert(live.id.as_str(), entry) {
            problems.push(
                Diagnostic::error(format!(
                    "user {} is declared twice (as `{}` and `{}`)",
                    live.user_principal_name, prev.user, entry.user
                ))
                .with_label(prev.origin.clone(), "first declared here".to_owned())
                .with_label(entry.origin.clone(), "declared again here".to_owned()),
            );
        }
    }

    // Groups: every transitive user member.
    let mut group_members: Vec<(&crate::config::GroupEntry, Vec<LiveUser>)> = Vec::new();
    for g in &desired.groups {
        let group_id = match &g.group {
            GroupRef::ObjectId(id) => id.clone(),
            GroupRef::DisplayName(name) => {
                let found = client.find_groups_by_name(tenant, name).await?;
                match found.as_slice() {
                    [one] => one.id.clone(),
                    [] => {
                        problems.push(
                            Diagnostic::error(format!("no group named `{name}` in {tenant}"))
                                .with_label(g.origin.clone(), "declared here".to_owned()),
                        );
                        continue;
                    }
                    many => {
                        problems.push(
                            Diagnostic::error(format!(
                                "{} groups are named `{name}` in {tenant}",
                                many.len()
                            ))
                            .with_label(g.origin.clone(), "declared here".to_owned())
                            .with_help("name the group by its object id instead".to_owned()),
                        );
                        continue;
                    }
                }
            }
        };
        let members = match client.group_user_members(tenant, &group_id).await {
            Ok(m) => m,
            Err(GraphError::NotFound { .. }) => {
                problems.push(
                    Diagnostic::error(format!("group {} does not exist in {tenant}", g.group))
                        .with_label(g.origin.clone(), "declared here".to_owned()),
                );
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        group_members.push((g, members.iter().map(|u| roles.live(u)).collect()));
    }

    // Merge: per user, its direct entry and every group entry that reaches it.
    /// A user's live state and every (directives, origin) that reaches it.
    type Contributions<'a> = (LiveUser, Vec<(&'a crate::config::Directives, &'a Origin)>);
    let mut per_user: BTreeMap<String, Contributions> = BTreeMap::new();
    for (entry, live) in &resolved {
        per_user
            .entry(live.id.clone())
            .or_insert_with(|| (live.clone(), Vec::new()))
            .1
            .push((&entry.directives, &entry.origin));
    }
    for (g, members) in &group_members {
        for live in members {
            per_user
                .entry(live.id.clone())
                .or_insert_with(|| (live.clone(), Vec::new()))
                .1
                .push((&g.directives, &g.origin));
        }
    }

    let only: BTreeSet<String> = only.iter().map(|s| s.to_lowercase()).collect();
    let mut targets = BTreeMap::new();
    for (id, (live, entries)) in per_user {
        if !only.is_empty()
            && !only.contains(&live.id.to_lowercase())
            && !only.contains(&live.user_principal_name.to_lowercase())
            && !live
                .on_premises_security_identifier
                .as_ref()
                .is_some_and(|s| only.contains(&s.to_lowercase()))
        {
            continue;
        }
        match crate::config::merge_directives(&entries) {
            Ok(directives) => {
                let mut declared_at: Vec<Origin> =
                    entries.iter().map(|(_, o)| (*o).clone()).collect();
                declared_at.sort();
                declared_at.dedup();
                targets.insert(
                    id,
                    Target {
                        live,
                        directives,
                        declared_at,
                    },
                );
            }
            Err(diag) => problems.push(diag),
        }
    }

    if !problems.is_empty() {
        return Err(LiveError::Resolution(problems));
    }
    let tenant_id = tenant_id(client, tenant).await;
    Ok(LiveTenant {
        tenant: tenant.to_owned(),
        tenant_id,
        caller,
        delegated_reset_available,
        targets,
    })
}

/// The tenant id (GUID) as the access token states it (`tid` claim of the JWT; the token is only
/// decoded, not verified: it came from the token endpoint we trust). Falls back to the name used
/// in desired state when the token is not a JWT.
async fn tenant_id(client: &GraphClient, tenant: &str) -> String {
    use base64::Engine;
    use secrecy::ExposeSecret;
    let Ok(token) = client.token(tenant).await else {
        return tenant.to_owned();
    };
    token
        .expose_secret()
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|claims| claims.get("tid")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| tenant.to_owned())
}

fn user_key(user: &UserRef) -> UserKey {
    match user {
        UserRef::Upn(s) => UserKey::Upn(s.clone()),
        UserRef::ObjectId(s) => UserKey::Id(s.clone()),
        UserRef::Sid(s) => UserKey::Sid(s.clone()),
    }
}

fn not_found(entry: &UserEntry) -> Diagnostic {
    Diagnostic::error(format!(
        "user `{}` does not exist in the tenant",
        entry.user
    ))
    .with_label(entry.origin.clone(), "declared here".to_owned())
}

/// The threshold in effect: [`LIST_ALL_THRESHOLD`], or `PWDRIFT_LIST_ALL_THRESHOLD` (a tuning
/// knob, also used by the tests to exercise both read paths on a small tenant).
pub fn list_all_threshold() -> usize {
    std::env::var("PWDRIFT_LIST_ALL_THRESHOLD")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(LIST_ALL_THRESHOLD)
}

/// Who holds directory roles in a tenant: any directory role makes a user a privileged target.
struct PrivilegedRoles(HashMap<String, Vec<String>>);

impl PrivilegedRoles {
    async fn read(client: &GraphClient, tenant: &str) -> Result<Self, GraphError> {
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        for role in client.directory_roles(tenant).await? {
            let name = role.display_name.clone().unwrap_or_else(|| role.id.clone());
            for m in &role.members {
                by_user.entry(m.id.clone()).or_default().push(name.clone());
            }
        }
        for names in by_user.values_mut() {
            names.sort();
        }
        Ok(PrivilegedRoles(by_user))
    }

    fn live(&self, user: &crate::graph::model::GraphUser) -> LiveUser {
        LiveUser::from_graph(user, self.0.get(&user.id).cloned().unwrap_or_default())
    }
}

/// Reads users by object id together with their directory roles, in the same shape
/// [`read_tenant`] produces: in `$batch` requests of 20, or by listing the tenant when there are
/// more than [`list_all_threshold`] of them. Used to check a saved plan for staleness and to
/// verify after applying. Users that no longer exist are absent from the map.
pub async fn read_users_by_id(
    client: &GraphClient,
    tenant: &str,
    ids: &[String],
) -> Result<HashMap<String, LiveUser>, GraphError> {
    let roles = PrivilegedRoles::read(client, tenant).await?;
    let mut out = HashMap::with_capacity(ids.len());
    if ids.len() > list_all_threshold() {
        let wanted: std::collections::HashSet<String> =
            ids.iter().map(|i| i.to_ascii_lowercase()).collect();
        for u in client.list_users(tenant, None).await? {
            if wanted.contains(&u.id.to_ascii_lowercase()) {
                out.insert(u.id.clone(), roles.live(&u));
            }
        }
        return Ok(out);
    }
    let keys: Vec<UserKey> = ids.iter().cloned().map(UserKey::Id).collect();
    for (_, result) in client.get_users_by_batch(tenant, &keys).await? {
        match result {
            Ok(u) => {
                out.insert(u.id.clone(), roles.live(&u));
            }
            Err(GraphError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
