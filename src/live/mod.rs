//! Step 2 of the pipeline: read the live state of the declared users from Microsoft Graph and
//! resolve desired-state references (UPN, object id, SID, group) to concrete users.
//!
//! The output, [`LiveTenant`], is everything [`crate::diff`] needs, so the diff itself does no I/O.
//! Reading is two halves: `fetch_tenant` does the Graph I/O and returns what it read
//! ([`Fetched`]); [`resolve()`], a pure function, turns desired state and that data into the
//! [`LiveTenant`] (or every resolution problem, as diagnostics).
//!
//! This module holds the types both halves share and the orchestration; one concern per file:
//!
//! - `users`: how the declared users are read (looked up in `$batch` or the tenant listed, chosen
//!   by a cost model over the tenant's `$count`), and the read-back after a write;
//! - `groups`: the declared groups and their transitive user members;
//! - `admins`: who holds directory roles (active assignments and PIM eligibilities);
//! - `domains`: the federated domains, and which users' passwords Entra ID does not manage;
//! - `selectors`: what `selectors:` (all users, a filter, Identity Protection's risky users) and
//!   `exclude:` read;
//! - `units`: the restricted management administrative units and their members;
//! - `resolve`: the pure resolution of desired state against what was fetched.

mod admins;
mod domains;
mod groups;
mod resolve;
mod selectors;
mod units;
mod users;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::diag::Diagnostic;
use crate::config::{Directives, Origin, TenantDesired};
use crate::graph::client::{GraphClient, GraphError, UserKey};
use crate::graph::model::{password_policies, ForceFlags, GraphUser};

// the renderers' tests show a plan that carries this note
#[cfg(test)]
pub(crate) use admins::NO_PIM_LICENSE_NOTE;
pub use admins::{PrivilegedRoles, RoleGrant};
pub use resolve::resolve;
pub use users::read_back;

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
    /// the directory roles the user holds, each with how it is held, e.g. `Global Administrator
    /// (eligible, via group Tier0 Admins, scope /administrativeUnits/..)` (empty: not an admin)
    pub privileged_roles: Vec<String>,
    /// why Entra ID does not manage this user's password (a guest, a federated domain), if so
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged_password: Option<String>,
    /// the restricted management administrative units (display names) the user is a member of
    /// and the credential is not scoped to (empty: none)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restricted_units: Vec<String>,
}

impl LiveUser {
    /// Converts Graph's wire shape (every field optional) into the compared shape.
    pub fn from_graph(user: &GraphUser, privileged_roles: Vec<String>) -> Self {
        Self::from_graph_owned(user.clone(), privileged_roles)
    }

    /// [`Self::from_graph`], moving the strings out of `user` instead of copying them.
    pub(crate) fn from_graph_owned(user: GraphUser, privileged_roles: Vec<String>) -> Self {
        LiveUser {
            flags: ForceFlags::from_profile(user.password_profile.as_ref()),
            password_policies: password_policies(user.password_policies.as_deref()),
            last_password_change: user.last_password_change_date_time,
            synced: user.on_premises_sync_enabled.unwrap_or(false),
            id: user.id,
            user_principal_name: user.user_principal_name.unwrap_or_default(),
            on_premises_security_identifier: user.on_premises_security_identifier,
            privileged_roles,
            unmanaged_password: None,
            restricted_units: Vec::new(),
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
    /// keyed by object id: stable order, one entry per user (boxed: the map's nodes stay small,
    /// so that building it from a sorted list does not hold two copies of every user)
    pub targets: BTreeMap<String, Box<Target>>,
    /// what the reader could not see or assumed (no PIM licence, eligibility not read), for the
    /// plan to say
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// how many users an entry reached that `exclude` took out (not among `targets`)
    #[serde(default)]
    pub excluded: usize,
    /// the tenant accepts flag changes of users synced from on-premises (`--synced-flags-writable`)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synced_flags_writable: bool,
}

/// Why live state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Problems in desired state that only live state reveals (a user that does not exist, a group
    /// name that matches no group or several, conflicting directives through group membership).
    #[error("{} problem(s) resolving desired state against the tenant", .0.len())]
    Resolution(Vec<Diagnostic>),
    /// PIM eligibilities could not be read for lack of permission: eligible administrators
    /// would go unrecognised, so nothing is planned.
    #[error("cannot read PIM role eligibilities in {tenant}: {source}\n  eligible administrators would not be recognised, so nothing was planned or changed; grant the application RoleEligibilitySchedule.Read.Directory (or RoleManagement.Read.Directory), or pass --assume-no-eligible-admins to proceed knowing that eligible administrators are treated as ordinary users")]
    EligibilityDenied { tenant: String, source: GraphError },
    /// Active role assignments could not be read for lack of permission.
    #[error("cannot read directory role assignments in {tenant}: {source}\n  administrators could not be recognised, so nothing was planned or changed; grant the application RoleManagement.Read.Directory")]
    RolesDenied { tenant: String, source: GraphError },
    /// Domains could not be read: users of federated domains could not be told apart.
    #[error("cannot read the domains of {tenant}: {source}\n  users of federated domains (whose password the identity provider owns) could not be recognised, so nothing was planned or changed; grant the application Domain.Read.All")]
    DomainsDenied { tenant: String, source: GraphError },
    /// Graph refused a selector's `filter` (400): it is quoted as written (escaped).
    #[error("Graph refused the filter of the selector at {}: `{}`: {}\n  the filter is sent to Graph as written; check it against the properties and operators \"List users\" supports (\"Advanced query capabilities on Microsoft Entra ID objects\" on learn.microsoft.com), e.g. with `pwdrift import --filter`", .0.origin, crate::escape::Shown(&.0.filter), .0.source)]
    FilterRefused(Box<RefusedFilter>),
    /// Identity Protection's risky users could not be read (licence or permission).
    #[error("cannot read Identity Protection's risky users in {tenant}: {source}\n  a `riskyUsers` selector needs the permission IdentityRiskyUser.Read.All and a licence that includes Microsoft Entra ID Protection (Entra ID P2); nothing was planned or changed")]
    RiskyUsersDenied { tenant: String, source: GraphError },
    /// Restricted management administrative units could not be read.
    #[error("cannot read the administrative units of {tenant}: {source}\n  members of restricted management administrative units (which only administrators scoped to the unit may change) could not be recognised, so nothing was planned or changed; grant the application AdministrativeUnit.Read.All")]
    UnitsDenied { tenant: String, source: GraphError },
    /// PIM for Groups could not be read for lack of permission: users eligible for a
    /// role-holding group would go unrecognised.
    #[error("cannot read PIM for Groups eligibilities and assignments in {tenant}: {source}\n  users eligible for (or owners of) groups that hold directory roles would not be recognised, so nothing was planned or changed; grant the application PrivilegedEligibilitySchedule.Read.AzureADGroup and PrivilegedAssignmentSchedule.Read.AzureADGroup, or pass --assume-no-eligible-admins to proceed knowing that they are treated as ordinary users")]
    GroupEligibilityDenied { tenant: String, source: GraphError },
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// A selector's filter that Graph refused, and where it was written.
#[derive(Debug)]
pub struct RefusedFilter {
    pub filter: String,
    pub origin: Origin,
    pub source: GraphError,
}

/// How live state is read: what the operator accepted not to know, and what the tenant and the
/// credential are declared to allow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// `--assume-no-eligible-admins`: when PIM eligibilities may not be read (403), proceed as if
    /// no one were eligible (the plan says so) instead of stopping.
    pub assume_no_eligible_admins: bool,
    /// `--synced-flags-writable`: the tenant accepts flag-only changes of synced users.
    pub synced_flags_writable: bool,
    /// `--admin-unit`: the restricted management administrative units (display name or id) the
    /// credential is scoped to; their members are not blocked.
    pub admin_units: Vec<String>,
}

/// Reads the live state of everything `desired` declares in one tenant and resolves it into
/// [`Target`]s. `only` limits the run to the named users (as written in desired state: UPN,
/// object id or SID; compared case-insensitively); empty means all.
///
/// Two halves: `fetch_tenant` does the Graph I/O, [`resolve()`] (pure) turns what was fetched
/// into the live view the diff consumes.
pub async fn read_tenant(
    client: &GraphClient,
    desired: &TenantDesired,
    caller: Caller,
    delegated_reset_available: bool,
    only: &[String],
    options: ReadOptions,
) -> Result<LiveTenant, LiveError> {
    let synced_flags_writable = options.synced_flags_writable;
    let fetched = fetch_tenant(client, desired, options).await?;
    let mut live = resolve(desired, fetched, caller, delegated_reset_available, only)
        .map_err(LiveError::Resolution)?;
    live.synced_flags_writable = synced_flags_writable;
    Ok(live)
}

/// Everything read from Graph for one tenant's desired state, before resolution.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    /// the tenant id (GUID) as the access token states it (see `tenant_id`)
    pub tenant_id: String,
    /// who holds directory roles, and how
    pub roles: PrivilegedRoles,
    /// the tenant's federated domains (lowercase)
    pub federated_domains: BTreeSet<String>,
    /// what the read could not see (see [`LiveTenant::notes`])
    pub notes: Vec<String>,
    /// the directly declared users
    pub users: FetchedUsers,
    /// one per declared group, in the order of desired state
    pub groups: Vec<FetchedGroup>,
    /// one per selector, in the order of desired state
    pub selectors: Vec<FetchedSelector>,
    /// one per `exclude` entry, in the order of desired state
    pub exclude: Vec<FetchedExclusion>,
}

/// A selector, as it was read.
#[derive(Clone, Debug, PartialEq)]
pub enum FetchedSelector {
    /// `all: true`: the users are the listing in [`Fetched::users`] (then `Listed`), guests left
    /// out
    All,
    /// the users selected, their state read without `ConsistencyLevel: eventual`
    Members(Vec<GraphUser>),
}

/// An `exclude` entry, as it was read.
#[derive(Clone, Debug, PartialEq)]
pub enum FetchedExclusion {
    /// the object ids of the users it names (empty: it names no one)
    Users(Vec<String>),
    /// a group name that this many groups have
    Ambiguous(usize),
}

/// The directly declared users, as they were read.
#[derive(Clone, Debug)]
pub enum FetchedUsers {
    /// the whole tenant, listed (when many users are declared, or the tenant is small enough that
    /// listing it is cheaper than looking them up)
    Listed(Vec<GraphUser>),
    /// looked up one by one; `None` (or a key absent): no such user
    ByKey(HashMap<UserKey, Option<GraphUser>>),
}

impl Default for FetchedUsers {
    fn default() -> Self {
        FetchedUsers::ByKey(HashMap::new())
    }
}

/// A declared group, as it was read.
#[derive(Clone, Debug, PartialEq)]
pub enum FetchedGroup {
    /// its transitive user members
    Members(Vec<GraphUser>),
    /// no group has this display name
    NoneNamed,
    /// this many groups have this display name
    Ambiguous(usize),
    /// the group does not exist (named by an object id that is not there, or gone since found)
    NotFound,
}

/// The I/O half of [`read_tenant`]: directory roles, the declared users (listed or looked up by
/// key in `$batch`), and each declared group's transitive members. Only Graph failures are
/// errors; a user or group that does not exist is recorded for [`resolve()`] to report.
async fn fetch_tenant(
    client: &GraphClient,
    desired: &TenantDesired,
    options: ReadOptions,
) -> Result<Fetched, LiveError> {
    let tenant = desired.tenant.as_str();
    // Roles, domains, the declared users and the tenant id are independent reads: they go side
    // by side (each bounded by the client's pacing), and their errors are judged in this order.
    let (roles, federated_domains, users, tenant_id, restricted) = tokio::join!(
        PrivilegedRoles::read(client, tenant, options.clone()),
        domains::federated_domains(client, tenant),
        async {
            if selectors::selects_all(desired) {
                // `all: true`: the same listing as when many users are declared, read once
                users::list_tenant(client, tenant)
                    .await
                    .map(FetchedUsers::Listed)
            } else {
                users::read_declared(client, desired).await
            }
        },
        tenant_id(client, tenant),
        units::restricted_members(client, tenant, &options.admin_units)
    );
    let (mut roles, notes) = roles?;
    roles.restricted = restricted?;
    let federated_domains = federated_domains?;
    let users = users?;
    let mut groups = groups::read_groups(client, tenant, &desired.groups).await?;
    // the members came from an advanced query: their state comes from ordinary reads
    users::fresh_members(client, tenant, &users, &mut groups).await?;
    let listing = match &users {
        FetchedUsers::Listed(all) => Some(all.as_slice()),
        FetchedUsers::ByKey(_) => None,
    };
    let selectors = selectors::read_selectors(client, desired, listing).await?;
    let exclude = selectors::read_exclusions(client, desired, listing).await?;

    Ok(Fetched {
        tenant_id,
        roles,
        federated_domains,
        notes,
        users,
        groups,
        selectors,
        exclude,
    })
}

/// The tenant id (GUID) as the access token states it ([`GraphClient::tenant_id`]: the `tid`
/// claim, decoded, not verified: it came from the token endpoint we trust). Falls back to the
/// name used in desired state when the token is not a JWT. A session replaces it with the id the
/// tenant check established (`engine::tenant_check`), which also knows an opaque token's tenant.
async fn tenant_id(client: &GraphClient, tenant: &str) -> String {
    match client.tenant_id(tenant).await {
        Ok(Some(id)) => id,
        _ => tenant.to_owned(),
    }
}

/// What the unit tests of the submodules share.
#[cfg(test)]
mod testing {
    use crate::graph::model::GraphUser;

    /// A listed user with these id, UPN and SID, every other field unset.
    pub(super) fn user(id: &str, upn: &str, sid: Option<&str>) -> GraphUser {
        GraphUser {
            id: id.to_owned(),
            user_principal_name: Some(upn.to_owned()),
            on_premises_security_identifier: sid.map(str::to_owned),
            ..GraphUser::default()
        }
    }
}
