//! Step 2 of the pipeline: read the live state of the declared users from Microsoft Graph and
//! resolve desired-state references (UPN, object id, SID, group) to concrete users.
//!
//! The output, [`LiveTenant`], is everything [`crate::diff`] needs, so the diff itself does no I/O.
//! Reading is two halves: [`fetch_tenant`] does the Graph I/O and returns what it read
//! ([`Fetched`]); [`resolve`], a pure function unit-tested below, turns desired state and that
//! data into the [`LiveTenant`] (or every resolution problem, as diagnostics).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Directives, Origin};
use crate::graph::model::{password_policies, ForceFlags};

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
}

impl LiveUser {
    /// Converts Graph's wire shape (every field optional) into the compared shape.
    pub fn from_graph(user: &GraphUser, privileged_roles: Vec<String>) -> Self {
        Self::from_graph_owned(user.clone(), privileged_roles)
    }

    /// [`Self::from_graph`], moving the strings out of `user` instead of copying them.
    pub fn from_graph_owned(user: GraphUser, privileged_roles: Vec<String>) -> Self {
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
}

// ---------------------------------------------------------------------------------------------
// Reading live state
// ---------------------------------------------------------------------------------------------

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use crate::config::diag::Diagnostic;
use crate::config::{GroupRef, TenantDesired, UserEntry, UserRef};
use crate::graph::client::{GraphClient, GraphError, UserKey};
use crate::graph::model::GraphUser;
use crate::graph::retry::MAX_BATCH_SIZE;

/// When the desired state names more users than this, the whole tenant is listed with
/// `$top=999` paging (about `n/999` requests); below it, users are fetched by id, UPN or SID in
/// `$batch` requests of 20 (about `n/20` requests), unless the tenant turns out small enough
/// that listing it is cheaper (see [`choose_user_read`]). 2,000 named users is ~100 batches,
/// which is where paging a mid-size tenant starts to win.
pub const LIST_ALL_THRESHOLD: usize = 2000;

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
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// How live state is read: what the operator accepted not to know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// `--assume-no-eligible-admins`: when PIM eligibilities may not be read (403), proceed as if
    /// no one were eligible (the plan says so) instead of stopping.
    pub assume_no_eligible_admins: bool,
}

/// Reads the live state of everything `desired` declares in one tenant and resolves it into
/// [`Target`]s. `only` limits the run to the named users (as written in desired state: UPN,
/// object id or SID; compared case-insensitively); empty means all.
///
/// Two halves: [`fetch_tenant`] does the Graph I/O, [`resolve`] (pure) turns what was fetched
/// into the live view the diff consumes.
pub async fn read_tenant(
    client: &GraphClient,
    desired: &TenantDesired,
    caller: Caller,
    delegated_reset_available: bool,
    only: &[String],
    options: ReadOptions,
) -> Result<LiveTenant, LiveError> {
    let fetched = fetch_tenant(client, desired, options).await?;
    resolve(desired, fetched, caller, delegated_reset_available, only)
        .map_err(LiveError::Resolution)
}

/// Everything read from Graph for one tenant's desired state, before resolution.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    /// the tenant id (GUID) as the access token states it (see [`tenant_id`])
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
}

/// The directly declared users, as they were read.
#[derive(Clone, Debug)]
pub enum FetchedUsers {
    /// the whole tenant, listed (when many users are declared: see [`LIST_ALL_THRESHOLD`])
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
/// errors; a user or group that does not exist is recorded for [`resolve`] to report.
pub async fn fetch_tenant(
    client: &GraphClient,
    desired: &TenantDesired,
    options: ReadOptions,
) -> Result<Fetched, LiveError> {
    let tenant = desired.tenant.as_str();
    // Roles, domains, the declared users and the tenant id are independent reads: they go side
    // by side (each bounded by the client's pacing), and their errors are judged in this order.
    let users = async {
        match choose_user_read(client, tenant, desired.users.len()).await? {
            UserRead::List => return Ok(FetchedUsers::Listed(list_all(client, tenant).await?)),
            UserRead::ListCounted(count) => {
                let (users, _) = client
                    .list_counted_users(tenant, partition_min_users(), count)
                    .await?;
                return Ok(FetchedUsers::Listed(users));
            }
            UserRead::Lookup => {}
        }
        let keys: Vec<UserKey> = desired.users.iter().map(|e| user_key(&e.user)).collect();
        // results come back keyed by the lookup key, in any order
        let mut results: HashMap<UserKey, Result<GraphUser, GraphError>> = client
            .get_users_by_batch(tenant, &keys)
            .await?
            .into_iter()
            .collect();
        let mut found = HashMap::with_capacity(results.len());
        for key in keys {
            match results.remove(&key) {
                Some(Ok(u)) => {
                    found.insert(key, Some(u));
                }
                Some(Err(GraphError::NotFound { .. })) | None => {
                    found.entry(key).or_insert(None);
                }
                Some(Err(e)) => return Err(LiveError::from(e)),
            }
        }
        Ok(FetchedUsers::ByKey(found))
    };
    let (roles, federated_domains, users, tenant_id) = tokio::join!(
        PrivilegedRoles::read(client, tenant, options),
        federated_domains(client, tenant),
        users,
        tenant_id(client, tenant)
    );
    let (roles, notes) = roles?;
    let federated_domains = federated_domains?;
    let users = users?;

    let mut groups = Vec::with_capacity(desired.groups.len());
    for g in &desired.groups {
        let group_id = match &g.group {
            GroupRef::ObjectId(id) => id.clone(),
            GroupRef::DisplayName(name) => {
                let found = client.find_groups_by_name(tenant, name).await?;
                match found.as_slice() {
                    [one] => one.id.clone(),
                    [] => {
                        groups.push(FetchedGroup::NoneNamed);
                        continue;
                    }
                    many => {
                        groups.push(FetchedGroup::Ambiguous(many.len()));
                        continue;
                    }
                }
            }
        };
        groups.push(match client.group_user_members(tenant, &group_id).await {
            Ok(members) => FetchedGroup::Members(members),
            Err(GraphError::NotFound { .. }) => FetchedGroup::NotFound,
            Err(e) => return Err(e.into()),
        });
    }

    Ok(Fetched {
        tenant_id,
        roles,
        federated_domains,
        notes,
        users,
        groups,
    })
}

/// The pure half of [`read_tenant`]: desired state x fetched data -> the live view the diff
/// consumes. Every user reached (directly or through groups) becomes one [`Target`] with its
/// merged directives; `only` keeps the named users. `Err` holds every resolution problem: a user
/// or group that does not exist, a group name that matches several groups, one user declared
/// under two spellings, conflicting directives through group membership.
pub fn resolve(
    desired: &TenantDesired,
    fetched: Fetched,
    caller: Caller,
    delegated_reset_available: bool,
    only: &[String],
) -> Result<LiveTenant, Vec<Diagnostic>> {
    let tenant = desired.tenant.as_str();
    let Fetched {
        tenant_id,
        mut roles,
        federated_domains,
        notes,
        users,
        groups,
    } = fetched;
    roles.federated = federated_domains;
    let mut problems = Vec::new();

    // Directly declared users.
    let mut resolved: Vec<(&UserEntry, LiveUser)> = Vec::new();
    match users {
        FetchedUsers::Listed(all) => {
            // Keys already in their canonical case (GUIDs, lowercase UPNs) are borrowed from the
            // listed users, not copied. Only the kinds of key desired state uses are indexed:
            // usually UPNs alone, one key per listed user.
            let uses = |kind: fn(&UserRef) -> bool| desired.users.iter().any(|e| kind(&e.user));
            let (by_id, by_upn, by_sid) = (
                uses(|u| matches!(u, UserRef::ObjectId(_))),
                uses(|u| matches!(u, UserRef::Upn(_))),
                uses(|u| matches!(u, UserRef::Sid(_))),
            );
            let kinds = usize::from(by_id) + usize::from(by_upn) + usize::from(by_sid);
            let mut by_key: foldhash::HashMap<Cow<str>, usize> =
                foldhash::HashMap::with_capacity_and_hasher(all.len() * kinds, Default::default());
            for (i, u) in all.iter().enumerate() {
                if by_id {
                    by_key.insert(ascii_lowercase(&u.id), i);
                }
                if let Some(upn) = u.user_principal_name.as_ref().filter(|_| by_upn) {
                    by_key.insert(lowercase(upn), i);
                }
                if let Some(sid) = u
                    .on_premises_security_identifier
                    .as_ref()
                    .filter(|_| by_sid)
                {
                    by_key.insert(ascii_uppercase(sid), i);
                }
            }
            let mut found: Vec<(&UserEntry, usize)> = Vec::with_capacity(desired.users.len());
            for entry in &desired.users {
                let key = match &entry.user {
                    UserRef::Sid(s) => s.to_ascii_uppercase(),
                    other => other.as_str().to_lowercase(),
                };
                match by_key.get(key.as_str()) {
                    Some(&i) => found.push((entry, i)),
                    None => problems.push(not_found(entry)),
                }
            }
            drop(by_key);
            // Each listed user moves into its live form (its strings are not copied); one
            // declared twice (an error, reported below) is copied from its first live form.
            let mut all: Vec<Option<GraphUser>> = all.into_iter().map(Some).collect();
            let mut first_at = vec![usize::MAX; all.len()];
            resolved.reserve(found.len());
            for (entry, i) in found {
                let live = match all[i].take() {
                    Some(u) => {
                        first_at[i] = resolved.len();
                        roles.live(u)
                    }
                    None => resolved[first_at[i]].1.clone(),
                };
                resolved.push((entry, live));
            }
        }
        FetchedUsers::ByKey(mut by_key) => {
            for entry in &desired.users {
                match by_key.remove(&user_key(&entry.user)).flatten() {
                    Some(u) => resolved.push((entry, roles.live(u))),
                    None => problems.push(not_found(entry)),
                }
            }
        }
    }

    // Two spellings (UPN and object id, say) of the same user in desired state.
    let mut first_seen: foldhash::HashMap<&str, &UserEntry> =
        foldhash::HashMap::with_capacity_and_hasher(resolved.len(), Default::default());
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
    for (g, fetched) in desired.groups.iter().zip(groups) {
        match fetched {
            FetchedGroup::Members(members) => {
                group_members.push((g, members.into_iter().map(|u| roles.live(u)).collect()));
            }
            FetchedGroup::NoneNamed => problems.push(
                Diagnostic::error(format!("no group named `{}` in {tenant}", g.group))
                    .with_label(g.origin.clone(), "declared here".to_owned()),
            ),
            FetchedGroup::Ambiguous(n) => problems.push(
                Diagnostic::error(format!("{n} groups are named `{}` in {tenant}", g.group))
                    .with_label(g.origin.clone(), "declared here".to_owned())
                    .with_help("name the group by its object id instead".to_owned()),
            ),
            FetchedGroup::NotFound => problems.push(
                Diagnostic::error(format!("group {} does not exist in {tenant}", g.group))
                    .with_label(g.origin.clone(), "declared here".to_owned()),
            ),
        }
    }

    // Merge: per user, its direct entry and every group entry that reaches it, in that order;
    // the first live form of a user is kept. Sorted by id rather than inserted into a map one
    // by one: with a large tenant, a million random insertions into a tree cost more than the
    // rest of the resolution (and each live user is moved, never cloned: a second copy of each
    // would be the largest thing in memory).
    /// A user's live state and every (directives, origin) that reaches it.
    type Contributions<'a> = (LiveUser, Vec<(&'a crate::config::Directives, &'a Origin)>);
    let mut reached: Vec<(Option<LiveUser>, &crate::config::Directives, &Origin)> = resolved
        .into_iter()
        .map(|(entry, live)| (Some(live), &entry.directives, &entry.origin))
        .collect();
    for (g, members) in group_members {
        reached.extend(
            members
                .into_iter()
                .map(|live| (Some(live), &g.directives, &g.origin)),
        );
    }
    // Object ids are GUIDs: sorted as 128-bit integers, which compare without chasing a pointer
    // to the string; if any id is not a lowercase GUID, all are sorted as text. Either way the
    // sort is by (id, position), so a user's entries stay in the order they reached it.
    let id_of = |i: usize| reached[i].0.as_ref().expect("not taken yet").id.as_str();
    let order: Vec<usize> = match (0..reached.len())
        .map(|i| guid_key(id_of(i)).map(|k| (k, i)))
        .collect::<Option<Vec<(u128, usize)>>>()
    {
        Some(mut keys) => {
            keys.sort_unstable();
            keys.into_iter().map(|(_, i)| i).collect()
        }
        None => {
            let mut order: Vec<usize> = (0..reached.len()).collect();
            order.sort_by(|&a, &b| id_of(a).cmp(id_of(b)));
            order
        }
    };
    let mut per_user: Vec<(String, Contributions)> = Vec::with_capacity(order.len());
    for i in order {
        let (live, directives, origin) = &mut reached[i];
        let live = live.take().expect("each reached user is taken once");
        match per_user.last_mut() {
            Some((last, (_, entries))) if *last == live.id => entries.push((*directives, *origin)),
            _ => per_user.push((live.id.clone(), (live, vec![(*directives, *origin)]))),
        }
    }
    drop(reached);

    let only: BTreeSet<String> = only.iter().map(|s| s.to_lowercase()).collect();
    // Collected, then built in one go: `BTreeMap::from_iter` packs its nodes full, where inserting
    // in ascending order leaves them half empty.
    let mut targets = Vec::with_capacity(per_user.len());
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
                targets.push((
                    id,
                    Box::new(Target {
                        live,
                        directives,
                        declared_at,
                    }),
                ));
            }
            Err(diag) => problems.push(diag),
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(LiveTenant {
        tenant: tenant.to_owned(),
        tenant_id,
        caller,
        delegated_reset_available,
        targets: BTreeMap::from_iter(targets),
        notes,
    })
}

/// A GUID in Graph's form (lowercase, hyphenated) as an integer that sorts as the text does;
/// `None` for anything else.
fn guid_key(id: &str) -> Option<u128> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut key = 0u128;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        key = key << 4 | u128::from(digit);
    }
    Some(key)
}

/// The tenant id (GUID) as the access token states it ([`GraphClient::tenant_id`]: the `tid`
/// claim, decoded, not verified: it came from the token endpoint we trust). Falls back to the
/// name used in desired state when the token is not a JWT.
async fn tenant_id(client: &GraphClient, tenant: &str) -> String {
    match client.tenant_id(tenant).await {
        Ok(Some(id)) => id,
        _ => tenant.to_owned(),
    }
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

/// `s.to_ascii_lowercase()`, borrowed when that changes nothing.
fn ascii_lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `s.to_ascii_uppercase()`, borrowed when that changes nothing.
fn ascii_uppercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(s.to_ascii_uppercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `s.to_lowercase()`, borrowed when that changes nothing (every character is its own only
/// lowercase form; `str::to_lowercase` differs from that only for a capital sigma, which is not
/// its own lowercase form either).
fn lowercase(s: &str) -> Cow<'_, str> {
    let unchanged = s.chars().all(|c| {
        let mut lower = c.to_lowercase();
        lower.next() == Some(c) && lower.next().is_none()
    });
    if unchanged {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// The threshold in effect: [`LIST_ALL_THRESHOLD`], or `PWDRIFT_LIST_ALL_THRESHOLD` (a tuning
/// knob, also used by the tests to exercise both read paths on a small tenant).
pub fn list_all_threshold() -> usize {
    threshold_override().unwrap_or(LIST_ALL_THRESHOLD)
}

fn threshold_override() -> Option<usize> {
    std::env::var("PWDRIFT_LIST_ALL_THRESHOLD")
        .ok()
        .and_then(|v| v.trim().parse().ok())
}

/// How the declared users of a tenant are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UserRead {
    /// list the whole tenant (it counts its users itself)
    List,
    /// list the whole tenant, whose `$count` was just read
    ListCounted(usize),
    /// look each declared user up, in `$batch` envelopes of 20
    Lookup,
}

/// What one response costs, in objects returned: a round trip costs about as much as 150 of the
/// objects it carries. Microsoft documents no latencies; this is the assumption the benchmark's
/// latency model makes (60 ms per request and 0.4 ms per object: a full page of 999 users in
/// about half a second, README "Performance"), used here only to compare two ways of reading.
const ROUND_TRIP_IN_OBJECTS: usize = 150;

/// The cost of looking `declared` users up: `$batch` envelopes of 20, `concurrency` in flight,
/// as rounds one after another (each as slow as an envelope of 20).
fn lookup_cost(declared: usize, concurrency: usize) -> usize {
    lookup_rounds(declared, concurrency) * (ROUND_TRIP_IN_OBJECTS + MAX_BATCH_SIZE)
}

/// `$batch` envelopes of 20 for `declared` users, `concurrency` at a time: rounds one after
/// another.
fn lookup_rounds(declared: usize, concurrency: usize) -> usize {
    declared
        .div_ceil(MAX_BATCH_SIZE)
        .div_ceil(concurrency.max(1))
}

/// The cost of listing a tenant of `users` once its count is known: pages of 999 one after
/// another below `partition_min`; above it, every partition's pages 16 at a time.
fn listing_cost(users: usize, partition_min: usize) -> usize {
    use crate::graph::client::{partition_boundaries, partition_filters, READ_CONCURRENCY};
    use crate::graph::model::PAGE_SIZE;
    let pages = users.div_ceil(PAGE_SIZE).max(1);
    if users < partition_min {
        pages * ROUND_TRIP_IN_OBJECTS + users
    } else {
        let partitions = partition_filters(&partition_boundaries()).len();
        pages.max(partitions).div_ceil(READ_CONCURRENCY) * ROUND_TRIP_IN_OBJECTS
            + users.div_ceil(READ_CONCURRENCY)
    }
}

/// Listing is considered only when the lookups take this many rounds or more: below, one
/// `$count` round trip before deciding would cost more than listing could save.
const MIN_LOOKUP_ROUNDS_TO_COUNT: usize = 3;

/// Lists the tenant when many users are declared ([`list_all_threshold`]), and also when fewer
/// are but the tenant is small enough that listing it all is cheaper than looking them up (2,000
/// declared users of a 2,000-user tenant: 3 pages instead of 100 `$batch` envelopes, and 3
/// resource units instead of 2,000). That takes the tenant's `$count` first, so it is only asked
/// when the lookups would take [`MIN_LOOKUP_ROUNDS_TO_COUNT`] rounds or more. A count that cannot
/// be read (other than for authentication) leaves the lookups.
async fn choose_user_read(
    client: &GraphClient,
    tenant: &str,
    declared: usize,
) -> Result<UserRead, GraphError> {
    if let Some(threshold) = threshold_override() {
        return Ok(if declared > threshold {
            UserRead::List
        } else {
            UserRead::Lookup
        });
    }
    if declared > LIST_ALL_THRESHOLD {
        return Ok(UserRead::List);
    }
    let concurrency = client.options().concurrency;
    if lookup_rounds(declared, concurrency) < MIN_LOOKUP_ROUNDS_TO_COUNT {
        return Ok(UserRead::Lookup);
    }
    match client.count_users(tenant).await {
        Ok(users) => {
            let read = read_for_count(declared, users, concurrency, partition_min_users());
            tracing::debug!(%tenant, declared, users, ?read, "declared users read");
            Ok(read)
        }
        Err(e @ GraphError::Auth(_)) => Err(e),
        Err(e) => {
            tracing::debug!(%tenant, error = %e, "cannot count users; looking the declared ones up");
            Ok(UserRead::Lookup)
        }
    }
}

/// The pure decision of [`choose_user_read`] once the tenant's count is known.
fn read_for_count(
    declared: usize,
    users: usize,
    concurrency: usize,
    partition_min: usize,
) -> UserRead {
    if listing_cost(users, partition_min) < lookup_cost(declared, concurrency) {
        UserRead::ListCounted(users)
    } else {
        UserRead::Lookup
    }
}

/// The tenant size from which the user list is read as parallel partitions:
/// [`crate::graph::client::PARTITION_MIN_USERS`], or `PWDRIFT_PARTITION_MIN_USERS` (a tuning
/// knob, also used by the tests to exercise both listing paths on a small tenant).
pub fn partition_min_users() -> usize {
    std::env::var("PWDRIFT_PARTITION_MIN_USERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(crate::graph::client::PARTITION_MIN_USERS)
}

/// Every user of the tenant: partitioned in parallel when it is large, else paged.
async fn list_all(client: &GraphClient, tenant: &str) -> Result<Vec<GraphUser>, GraphError> {
    client
        .list_all_users_with(tenant, partition_min_users())
        .await
        .map(|(users, _)| users)
}

/// Who holds directory roles in a tenant (any role makes a user a privileged target), and the
/// tenant's federated domains: what [`LiveUser`] needs beyond the user object itself.
#[derive(Clone, Debug, Default)]
pub struct PrivilegedRoles {
    /// user id -> descriptions of the roles held (sorted, deduplicated)
    by_user: HashMap<String, Vec<String>>,
    /// federated domains (lowercase)
    federated: BTreeSet<String>,
}

/// How one role is held, before it is tied to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleGrant {
    pub role: String,
    pub eligible: bool,
    /// `/` (tenant-wide) or `/administrativeUnits/{id}`
    pub scope: String,
    /// the role-assignable group it is held through, by name (or id)
    pub via_group: Option<String>,
}

impl RoleGrant {
    /// `Global Administrator (eligible, via group Tier0 Admins, scope /administrativeUnits/..)`
    pub fn describe(&self) -> String {
        let mut how = vec![if self.eligible { "eligible" } else { "active" }.to_owned()];
        if let Some(g) = &self.via_group {
            how.push(format!("via group {g}"));
        }
        if self.scope != "/" && !self.scope.is_empty() {
            how.push(format!("scope {}", self.scope));
        }
        format!("{} ({})", self.role, how.join(", "))
    }
}

/// Whether Graph's answer says the tenant lacks the licence PIM needs (undocumented: the code
/// reported is `AadPremiumLicenseRequired`; matched leniently on any 400/403 whose code or
/// message names a premium, P2 or licence requirement).
pub fn is_license_error(e: &GraphError) -> bool {
    let GraphError::Http {
        status,
        code,
        message,
        ..
    } = e
    else {
        return false;
    };
    if !matches!(status, 400 | 403) {
        return false;
    }
    let text = format!("{code} {message}").to_ascii_lowercase();
    text.contains("licen") || text.contains("premium") || text.contains("p2")
}

/// The note a plan carries when the tenant has no PIM licence.
pub const NO_PIM_LICENSE_NOTE: &str = "the tenant has no licence for Privileged Identity Management (Graph answered that it needs Microsoft Entra ID P2): no one can be eligible for a role, so only active role assignments were considered";

/// The note a plan carries under `--assume-no-eligible-admins` when eligibility was refused.
pub const ASSUMED_NO_ELIGIBLE_NOTE: &str = "PIM role eligibilities could not be read (permission RoleEligibilitySchedule.Read.Directory missing) and --assume-no-eligible-admins was given: eligible administrators are treated as ordinary users";

impl PrivilegedRoles {
    /// Reads role definitions, active assignments and PIM eligibilities (every page), and the
    /// transitive user members of every group a role is held through. Returns the notes the plan
    /// must carry.
    async fn read(
        client: &GraphClient,
        tenant: &str,
        options: ReadOptions,
    ) -> Result<(Self, Vec<String>), LiveError> {
        let denied = |e: &GraphError| matches!(e.status(), Some(401 | 403));
        // The three lists are independent: read side by side, judged in this order.
        let (definitions, active, eligible) = tokio::join!(
            client.role_definitions(tenant),
            client.role_assignments(tenant),
            client.role_eligibilities(tenant)
        );
        let definitions = match definitions {
            Ok(d) => d,
            Err(e) if denied(&e) => {
                return Err(LiveError::RolesDenied {
                    tenant: tenant.to_owned(),
                    source: e,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let active = match active {
            Ok(a) => a,
            Err(e) if denied(&e) => {
                return Err(LiveError::RolesDenied {
                    tenant: tenant.to_owned(),
                    source: e,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let mut notes = Vec::new();
        let eligible = match eligible {
            Ok(a) => a,
            Err(e) if is_license_error(&e) => {
                notes.push(NO_PIM_LICENSE_NOTE.to_owned());
                Vec::new()
            }
            Err(e) if denied(&e) => {
                if !options.assume_no_eligible_admins {
                    return Err(LiveError::EligibilityDenied {
                        tenant: tenant.to_owned(),
                        source: e,
                    });
                }
                notes.push(ASSUMED_NO_ELIGIBLE_NOTE.to_owned());
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };

        let names: HashMap<String, String> = definitions
            .iter()
            .flat_map(|d| {
                let name = d.display_name.clone().unwrap_or_else(|| d.id.clone());
                let mut keys = vec![(d.id.to_ascii_lowercase(), name.clone())];
                if let Some(t) = &d.template_id {
                    keys.push((t.to_ascii_lowercase(), name));
                }
                keys
            })
            .collect();

        let mut users: Vec<(String, RoleGrant)> = Vec::new();
        let mut through_groups: Vec<(String, RoleGrant, bool)> = Vec::new();
        for (list, is_eligible) in [(&active, false), (&eligible, true)] {
            for a in list {
                let role = names
                    .get(&a.role_definition_id.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_else(|| a.role_definition_id.clone());
                let mut grant = RoleGrant {
                    role,
                    eligible: is_eligible,
                    scope: a.directory_scope_id.clone().unwrap_or_else(|| "/".into()),
                    via_group: None,
                };
                let kind = a
                    .principal
                    .as_ref()
                    .and_then(|p| p.odata_type.as_deref())
                    .map(|t| t.trim_start_matches('#').to_ascii_lowercase());
                match kind.as_deref() {
                    Some("microsoft.graph.user") => users.push((a.principal_id.clone(), grant)),
                    Some("microsoft.graph.group") => {
                        grant.via_group = Some(
                            a.principal
                                .as_ref()
                                .and_then(|p| p.display_name.clone())
                                .unwrap_or_else(|| a.principal_id.clone()),
                        );
                        through_groups.push((a.principal_id.clone(), grant, true));
                    }
                    Some(_) => {} // a service principal or other non-user
                    None => {
                        // principal not expanded: it may be a user or a group
                        users.push((a.principal_id.clone(), grant.clone()));
                        grant.via_group = Some(a.principal_id.clone());
                        through_groups.push((a.principal_id.clone(), grant, false));
                    }
                }
            }
        }

        let mut members: HashMap<String, Vec<GraphUser>> = HashMap::new();
        for (group_id, grant, known_group) in through_groups {
            if !members.contains_key(&group_id) {
                let read = match client.group_user_members(tenant, &group_id).await {
                    Ok(m) => m,
                    Err(GraphError::NotFound { .. }) if !known_group => Vec::new(),
                    Err(e) => return Err(e.into()),
                };
                members.insert(group_id.clone(), read);
            }
            for m in &members[&group_id] {
                users.push((m.id.clone(), grant.clone()));
            }
        }
        Ok((Self::from_grants(users), notes))
    }

    /// Role descriptions per user (sorted, deduplicated).
    pub fn from_grants(grants: impl IntoIterator<Item = (String, RoleGrant)>) -> Self {
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        for (user, grant) in grants {
            by_user.entry(user).or_default().push(grant.describe());
        }
        for names in by_user.values_mut() {
            names.sort();
            names.dedup();
        }
        PrivilegedRoles {
            by_user,
            federated: BTreeSet::new(),
        }
    }

    /// The live form of a listed user, with the privileged roles it holds and whether its
    /// password is Entra's to set (its strings are moved, not copied).
    fn live(&self, user: crate::graph::model::GraphUser) -> LiveUser {
        let unmanaged = unmanaged_password(&user, &self.federated);
        let roles = self.by_user.get(&user.id).cloned().unwrap_or_default();
        let mut live = LiveUser::from_graph_owned(user, roles);
        live.unmanaged_password = unmanaged;
        live
    }
}

/// Why Entra ID does not manage a user's password, if it does not: a guest or other external
/// identity (`userType` Guest, or `#EXT#` in the UPN: its home tenant or identity provider owns
/// the password), or a cloud user of a federated domain (the federation's identity provider
/// authenticates it). A synced user of a federated domain keeps the resetPassword path (its
/// password lives in the on-premises directory, written back by resetPassword).
pub fn unmanaged_password(user: &GraphUser, federated: &BTreeSet<String>) -> Option<String> {
    let upn = user.user_principal_name.as_deref().unwrap_or_default();
    if user
        .user_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("guest"))
    {
        return Some(
            "a guest (userType Guest): its home tenant or identity provider owns the password"
                .into(),
        );
    }
    if upn.to_ascii_uppercase().contains("#EXT#") {
        return Some("an external identity (#EXT# in the userPrincipalName): its home tenant or identity provider owns the password".into());
    }
    let domain = upn.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())?;
    if federated.contains(&domain) && user.on_premises_sync_enabled != Some(true) {
        return Some(format!(
            "in the federated domain {domain}: the federation's identity provider owns the password"
        ));
    }
    None
}

/// The tenant's federated domains (lowercase). A refusal (403) stops the read: guessing would
/// plan writes to passwords Entra does not own.
async fn federated_domains(
    client: &GraphClient,
    tenant: &str,
) -> Result<BTreeSet<String>, LiveError> {
    match client.domains(tenant).await {
        Ok(domains) => Ok(domains
            .into_iter()
            .filter(|d| {
                d.authentication_type
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case("federated"))
            })
            .map(|d| d.id.to_ascii_lowercase())
            .collect()),
        Err(e) if matches!(e.status(), Some(401 | 403)) => Err(LiveError::DomainsDenied {
            tenant: tenant.to_owned(),
            source: e,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Reads users by object id together with their directory roles and kind, in the same shape
/// [`read_tenant`] produces (so that fingerprints compare): in `$batch` requests of 20, or by
/// listing the tenant when there are more than [`list_all_threshold`] of them. Used to check a
/// saved plan for staleness. Users that no longer exist are absent from the map.
pub async fn read_users_by_id(
    client: &GraphClient,
    tenant: &str,
    ids: &[String],
    options: ReadOptions,
) -> Result<HashMap<String, LiveUser>, LiveError> {
    let (mut roles, _) = PrivilegedRoles::read(client, tenant, options).await?;
    roles.federated = federated_domains(client, tenant).await?;
    Ok(read_with(client, tenant, ids, &roles).await?)
}

/// Reads users by object id for verification after a write: their password state only (no
/// roles, no domains: a read-back compares flags and `lastPasswordChangeDateTime`).
pub async fn read_back(
    client: &GraphClient,
    tenant: &str,
    ids: &[String],
) -> Result<HashMap<String, LiveUser>, GraphError> {
    read_with(client, tenant, ids, &PrivilegedRoles::default()).await
}

async fn read_with(
    client: &GraphClient,
    tenant: &str,
    ids: &[String],
    roles: &PrivilegedRoles,
) -> Result<HashMap<String, LiveUser>, GraphError> {
    let mut out = HashMap::with_capacity(ids.len());
    if ids.len() > list_all_threshold() {
        let wanted: std::collections::HashSet<String> =
            ids.iter().map(|i| i.to_ascii_lowercase()).collect();
        for u in list_all(client, tenant).await? {
            if wanted.contains(&u.id.to_ascii_lowercase()) {
                out.insert(u.id.clone(), roles.live(u));
            }
        }
        return Ok(out);
    }
    let keys: Vec<UserKey> = ids.iter().cloned().map(UserKey::Id).collect();
    for (_, result) in client.get_users_by_batch(tenant, &keys).await? {
        match result {
            Ok(u) => {
                out.insert(u.id.clone(), roles.live(u));
            }
            Err(GraphError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{GroupEntry, TenantRef};
    use std::path::PathBuf;

    fn at(line: usize) -> Origin {
        Origin {
            file: PathBuf::from("d.yaml").into(),
            line,
            column: 5,
        }
    }

    fn user(id: &str, upn: &str, sid: Option<&str>) -> GraphUser {
        GraphUser {
            id: id.to_owned(),
            user_principal_name: Some(upn.to_owned()),
            on_premises_security_identifier: sid.map(str::to_owned),
            ..GraphUser::default()
        }
    }

    fn flag(value: bool) -> Directives {
        Directives {
            force_change_password_next_sign_in: Some(value),
            ..Directives::default()
        }
    }

    fn entry(user: UserRef, line: usize, directives: Directives) -> UserEntry {
        UserEntry {
            user,
            directives,
            origin: at(line),
        }
    }

    fn group(name: &str, line: usize, directives: Directives) -> GroupEntry {
        GroupEntry {
            group: GroupRef::DisplayName(name.to_owned()),
            directives,
            origin: at(line),
        }
    }

    fn desired(users: Vec<UserEntry>, groups: Vec<GroupEntry>) -> TenantDesired {
        TenantDesired {
            tenant: TenantRef::Domain("contoso.com".into()),
            users,
            groups,
            files: vec![PathBuf::from("d.yaml")],
        }
    }

    fn fetched(users: FetchedUsers, groups: Vec<FetchedGroup>) -> Fetched {
        Fetched {
            tenant_id: "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90".into(),
            roles: PrivilegedRoles::from_grants([(
                "id-a".to_owned(),
                RoleGrant {
                    role: "User Administrator".into(),
                    eligible: false,
                    scope: "/".into(),
                    via_group: None,
                },
            )]),
            federated_domains: BTreeSet::new(),
            notes: vec![],
            users,
            groups,
        }
    }

    fn by_key(pairs: Vec<(UserKey, Option<GraphUser>)>) -> FetchedUsers {
        FetchedUsers::ByKey(pairs.into_iter().collect())
    }

    fn messages(problems: &[Diagnostic]) -> Vec<&str> {
        problems.iter().map(|d| d.message.as_str()).collect()
    }

    #[test]
    fn declared_users_become_targets_with_roles_and_origins() {
        let d = desired(
            vec![
                entry(UserRef::Upn("a@contoso.com".into()), 3, flag(false)),
                entry(UserRef::ObjectId("id-b".into()), 5, flag(true)),
            ],
            vec![],
        );
        let f = fetched(
            by_key(vec![
                (
                    UserKey::Upn("a@contoso.com".into()),
                    Some(user("id-a", "A@contoso.com", None)),
                ),
                (
                    UserKey::Id("id-b".into()),
                    Some(user("id-b", "b@contoso.com", None)),
                ),
            ]),
            vec![],
        );
        let live = resolve(&d, f, Caller::Application, false, &[]).unwrap();
        assert_eq!(live.tenant, "contoso.com");
        assert_eq!(live.tenant_id, "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90");
        assert_eq!(live.caller, Caller::Application);
        let ids: Vec<&str> = live.targets.keys().map(String::as_str).collect();
        assert_eq!(ids, ["id-a", "id-b"]);
        let a = &live.targets["id-a"];
        assert_eq!(a.live.privileged_roles, ["User Administrator (active)"]);
        assert_eq!(a.directives, flag(false));
        assert_eq!(a.declared_at, [at(3)]);
        assert!(live.targets["id-b"].live.privileged_roles.is_empty());
    }

    #[test]
    fn a_user_that_does_not_exist_is_a_problem_at_its_entry() {
        let d = desired(
            vec![
                entry(UserRef::Upn("gone@contoso.com".into()), 4, flag(false)),
                entry(UserRef::Upn("absent@contoso.com".into()), 6, flag(false)),
            ],
            vec![],
        );
        // one looked up and not found, one missing from the batch answer altogether
        let f = fetched(
            by_key(vec![(UserKey::Upn("gone@contoso.com".into()), None)]),
            vec![],
        );
        let problems = resolve(&d, f, Caller::Application, false, &[]).unwrap_err();
        assert_eq!(
            messages(&problems),
            [
                "user `gone@contoso.com` does not exist in the tenant",
                "user `absent@contoso.com` does not exist in the tenant"
            ]
        );
        assert_eq!(problems[0].labels[0].origin, at(4));
    }

    #[test]
    fn a_listed_tenant_is_matched_by_upn_id_and_sid_ignoring_case() {
        let sid = "S-1-5-21-1-2-3-1104";
        let d = desired(
            vec![
                entry(UserRef::Upn("a@contoso.com".into()), 3, flag(false)),
                entry(UserRef::ObjectId("id-b".into()), 4, flag(false)),
                entry(UserRef::Sid(sid.into()), 5, flag(false)),
                entry(UserRef::Upn("nobody@contoso.com".into()), 6, flag(false)),
            ],
            vec![],
        );
        let f = fetched(
            FetchedUsers::Listed(vec![
                user("ID-A", "A@Contoso.com", None),
                user("ID-B", "b@contoso.com", None),
                user("id-c", "c@contoso.com", Some(&sid.to_lowercase())),
                user("id-z", "z@contoso.com", None),
            ]),
            vec![],
        );
        let problems = resolve(&d, f.clone(), Caller::Application, false, &[]).unwrap_err();
        assert_eq!(
            messages(&problems),
            ["user `nobody@contoso.com` does not exist in the tenant"]
        );
        let mut d = d;
        d.users.pop();
        let live = resolve(&d, f, Caller::Application, false, &[]).unwrap();
        let upns: Vec<&str> = live
            .targets
            .values()
            .map(|t| t.live.user_principal_name.as_str())
            .collect();
        assert_eq!(upns, ["A@Contoso.com", "b@contoso.com", "c@contoso.com"]);
    }

    /// The listing path moves each listed user into its live form; a user reached twice (the
    /// second time from the copy of its first live form) is still reported with both places.
    #[test]
    fn one_listed_user_under_two_spellings_is_reported() {
        let d = desired(
            vec![
                entry(UserRef::Upn("A@contoso.com".into()), 3, flag(false)),
                entry(UserRef::ObjectId("ID-A".into()), 7, flag(false)),
            ],
            vec![],
        );
        let f = fetched(
            FetchedUsers::Listed(vec![
                user("id-a", "a@Contoso.com", None),
                user("id-b", "b@contoso.com", None),
            ]),
            vec![],
        );
        let problems = resolve(&d, f, Caller::Application, false, &[]).unwrap_err();
        assert_eq!(
            messages(&problems),
            ["user a@Contoso.com is declared twice (as `A@contoso.com` and `ID-A`)"]
        );
    }

    #[test]
    fn case_folding_borrows_only_when_nothing_changes() {
        use std::borrow::Cow;
        assert!(matches!(lowercase("a.b@x.com"), Cow::Borrowed(_)));
        assert!(matches!(lowercase("éva@x.com"), Cow::Borrowed(_)));
        assert_eq!(lowercase("Éva@X.com"), "éva@x.com");
        // a capital sigma lowercases by context: never borrowed, same as `to_lowercase`
        assert_eq!(lowercase("ΟΔΟΣ@x"), "ΟΔΟΣ@x".to_lowercase());
        // a titlecase letter is not its own lowercase form
        assert_eq!(lowercase("\u{1c5}@x"), "\u{1c6}@x");
        assert!(matches!(ascii_lowercase("id-a"), Cow::Borrowed(_)));
        assert_eq!(ascii_lowercase("ID-A"), "id-a");
        assert!(matches!(ascii_uppercase("S-1-5"), Cow::Borrowed(_)));
        assert_eq!(ascii_uppercase("s-1-5"), "S-1-5");
    }

    #[test]
    fn one_user_under_two_spellings_is_reported() {
        let d = desired(
            vec![
                entry(UserRef::Upn("a@contoso.com".into()), 3, flag(false)),
                entry(UserRef::ObjectId("id-a".into()), 7, flag(false)),
            ],
            vec![],
        );
        let a = user("id-a", "a@contoso.com", None);
        let f = fetched(
            by_key(vec![
                (UserKey::Upn("a@contoso.com".into()), Some(a.clone())),
                (UserKey::Id("id-a".into()), Some(a)),
            ]),
            vec![],
        );
        let problems = resolve(&d, f, Caller::Application, false, &[]).unwrap_err();
        assert_eq!(
            messages(&problems),
            ["user a@contoso.com is declared twice (as `a@contoso.com` and `id-a`)"]
        );
        let origins: Vec<&Origin> = problems[0].labels.iter().map(|l| &l.origin).collect();
        assert_eq!(origins, [&at(3), &at(7)]);
    }

    #[test]
    fn group_members_merge_with_direct_entries() {
        let require = Directives {
            require_password_change: Some(crate::config::RequirePasswordChange {
                since: "2026-11-20T00:00:00Z".parse().unwrap(),
                with_mfa: false,
            }),
            ..Directives::default()
        };
        let allow = Directives {
            allow_privileged: true,
            ..Directives::default()
        };
        let d = desired(
            vec![entry(UserRef::Upn("a@contoso.com".into()), 3, allow)],
            vec![group("Finance", 9, require.clone())],
        );
        let f = fetched(
            by_key(vec![(
                UserKey::Upn("a@contoso.com".into()),
                Some(user("id-a", "a@contoso.com", None)),
            )]),
            vec![FetchedGroup::Members(vec![
                user("id-a", "a@contoso.com", None),
                user("id-m", "m@contoso.com", None),
            ])],
        );
        let live = resolve(&d, f, Caller::Application, true, &[]).unwrap();
        assert!(live.delegated_reset_available);
        let a = &live.targets["id-a"];
        assert_eq!(a.declared_at, [at(3), at(9)]);
        assert!(a.directives.allow_privileged);
        assert!(a.directives.require_password_change.is_some());
        assert_eq!(live.targets["id-m"].directives, require);
        assert_eq!(live.targets["id-m"].declared_at, [at(9)]);
    }

    #[test]
    fn conflicting_directives_through_a_group_are_a_problem() {
        let d = desired(
            vec![entry(UserRef::Upn("a@contoso.com".into()), 3, flag(false))],
            vec![group("Finance", 9, flag(true))],
        );
        let f = fetched(
            by_key(vec![(
                UserKey::Upn("a@contoso.com".into()),
                Some(user("id-a", "a@contoso.com", None)),
            )]),
            vec![FetchedGroup::Members(vec![user(
                "id-a",
                "a@contoso.com",
                None,
            )])],
        );
        let problems = resolve(&d, f, Caller::Application, false, &[]).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let origins: Vec<&Origin> = problems[0].labels.iter().map(|l| &l.origin).collect();
        assert!(
            origins.contains(&&at(3)) && origins.contains(&&at(9)),
            "{problems:?}"
        );
    }

    #[test]
    fn groups_that_cannot_be_resolved_are_reported_each() {
        let d = desired(
            vec![],
            vec![
                group("Nobody", 2, flag(false)),
                group("Twice", 4, flag(false)),
                group("Gone", 6, flag(false)),
                group("Empty", 8, flag(false)),
            ],
        );
        let f = fetched(
            by_key(vec![]),
            vec![
                FetchedGroup::NoneNamed,
                FetchedGroup::Ambiguous(2),
                FetchedGroup::NotFound,
                FetchedGroup::Members(vec![]),
            ],
        );
        let problems = resolve(&d, f, Caller::Application, false, &[]).unwrap_err();
        assert_eq!(
            messages(&problems),
            [
                "no group named `Nobody` in contoso.com",
                "2 groups are named `Twice` in contoso.com",
                "group Gone does not exist in contoso.com",
            ]
        );
        assert_eq!(
            problems[1].help.as_deref(),
            Some("name the group by its object id instead")
        );
        let lines: Vec<usize> = problems.iter().map(|p| p.labels[0].origin.line).collect();
        assert_eq!(lines, [2, 4, 6]);
    }

    #[test]
    fn only_keeps_the_named_users_by_upn_id_or_sid() {
        let sid = "S-1-5-21-1-2-3-1104";
        let d = desired(vec![], vec![group("All", 2, flag(false))]);
        let f = fetched(
            by_key(vec![]),
            vec![FetchedGroup::Members(vec![
                user("id-a", "a@contoso.com", None),
                user("id-b", "b@contoso.com", None),
                user("id-c", "c@contoso.com", Some(sid)),
                user("id-d", "d@contoso.com", None),
            ])],
        );
        let caller = Caller::Delegated {
            user_id: "id-x".into(),
        };
        let only = [
            "A@CONTOSO.COM".to_owned(),
            "id-b".to_owned(),
            sid.to_lowercase(),
        ];
        let live = resolve(&d, f.clone(), caller.clone(), false, &only).unwrap();
        let ids: Vec<&str> = live.targets.keys().map(String::as_str).collect();
        assert_eq!(ids, ["id-a", "id-b", "id-c"]);
        assert_eq!(live.caller, caller);
        let all = resolve(&d, f, caller, false, &[]).unwrap();
        assert_eq!(all.targets.len(), 4);
    }

    #[test]
    fn roles_are_described_with_how_they_are_held_sorted_and_deduplicated() {
        let grant = |role: &str, eligible: bool, scope: &str, via: Option<&str>| RoleGrant {
            role: role.into(),
            eligible,
            scope: scope.into(),
            via_group: via.map(str::to_owned),
        };
        let roles = PrivilegedRoles::from_grants([
            (
                "u1".to_owned(),
                grant("Global Administrator", true, "/", Some("Tier0")),
            ),
            (
                "u1".to_owned(),
                grant("Password Resetter", false, "/", None),
            ),
            (
                "u1".to_owned(),
                grant("Password Resetter", false, "/", None),
            ),
            (
                "u2".to_owned(),
                grant(
                    "User Administrator",
                    false,
                    "/administrativeUnits/au1",
                    None,
                ),
            ),
        ]);
        assert_eq!(
            roles.live(user("u1", "u1@x.com", None)).privileged_roles,
            [
                "Global Administrator (eligible, via group Tier0)",
                "Password Resetter (active)"
            ]
        );
        assert_eq!(
            roles.live(user("u2", "u2@x.com", None)).privileged_roles,
            ["User Administrator (active, scope /administrativeUnits/au1)"]
        );
        assert!(roles
            .live(user("u3", "u3@x.com", None))
            .privileged_roles
            .is_empty());
    }

    #[test]
    fn guests_external_and_federated_cloud_users_are_unmanaged() {
        let federated: BTreeSet<String> = ["corp.contoso.com".to_owned()].into();
        let mut guest = user("g", "g_fabrikam.com#ext#@contoso.onmicrosoft.com", None);
        assert!(unmanaged_password(&guest, &federated)
            .unwrap()
            .contains("#EXT#"));
        guest.user_type = Some("Guest".into());
        assert!(unmanaged_password(&guest, &federated)
            .unwrap()
            .contains("guest"));
        let fed = user("f", "f@Corp.Contoso.com", None);
        assert!(unmanaged_password(&fed, &federated)
            .unwrap()
            .contains("federated domain corp.contoso.com"));
        let mut synced = fed.clone();
        synced.on_premises_sync_enabled = Some(true);
        assert_eq!(unmanaged_password(&synced, &federated), None);
        let mut member = user("m", "m@contoso.com", None);
        member.user_type = Some("Member".into());
        assert_eq!(unmanaged_password(&member, &federated), None);
    }

    #[test]
    fn licence_errors_are_recognised_leniently() {
        let http = |status: u16, code: &str, message: &str| GraphError::Http {
            status,
            code: code.into(),
            message: message.into(),
            request_id: None,
        };
        assert!(is_license_error(&http(
            400,
            "AadPremiumLicenseRequired",
            "The tenant needs an AAD Premium 2 license."
        )));
        assert!(is_license_error(&http(
            403,
            "Forbidden",
            "Requires a P2 licence"
        )));
        assert!(!is_license_error(&http(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation."
        )));
        assert!(!is_license_error(&http(
            500,
            "AadPremiumLicenseRequired",
            ""
        )));
    }

    #[test]
    fn declared_users_are_listed_only_when_listing_is_cheaper() {
        let min = crate::graph::client::PARTITION_MIN_USERS;
        // 2,000 of 2,000: 3 pages one after another against 25 rounds of 4 envelopes
        assert_eq!(
            read_for_count(2000, 2000, 4, min),
            UserRead::ListCounted(2000)
        );
        // a few hundred of a small tenant: one page against 3 rounds
        assert_eq!(read_for_count(240, 300, 4, min), UserRead::ListCounted(300));
        // 1,000 of 5,000: 6 large pages against 13 small rounds
        assert_eq!(read_for_count(1000, 5000, 4, min), UserRead::Lookup);
        // 2,000 of 15,000 (sequential pages) and of 100,000 (partitioned)
        assert_eq!(read_for_count(2000, 15_000, 4, min), UserRead::Lookup);
        assert_eq!(read_for_count(2000, 100_000, 4, min), UserRead::Lookup);
        // more envelopes in flight make the lookups cheaper
        assert_eq!(
            read_for_count(2000, 3000, 4, min),
            UserRead::ListCounted(3000)
        );
        assert_eq!(read_for_count(2000, 3000, 16, min), UserRead::Lookup);
        // a partitioned read of 20,000 users is 4 rounds of 16 pages
        assert_eq!(
            read_for_count(2000, 20_000, 4, min),
            UserRead::ListCounted(20_000)
        );
        assert_eq!(
            read_for_count(2000, 20_000, 4, usize::MAX),
            UserRead::Lookup
        );
    }

    #[test]
    fn the_count_is_asked_only_when_lookups_take_three_rounds() {
        assert_eq!(lookup_rounds(0, 4), 0);
        assert_eq!(lookup_rounds(1, 4), 1);
        assert_eq!(lookup_rounds(80, 4), 1);
        assert_eq!(lookup_rounds(160, 4), 2);
        assert_eq!(lookup_rounds(161, 4), MIN_LOOKUP_ROUNDS_TO_COUNT);
        assert_eq!(lookup_rounds(161, 0), 9, "no concurrency counts as one");
        assert_eq!(lookup_cost(2000, 4), 25 * 170);
        assert_eq!(listing_cost(2000, usize::MAX), 3 * 150 + 2000);
    }

    #[test]
    fn guid_keys_sort_as_the_text_and_refuse_other_ids() {
        let ids = [
            "00000000-0000-0000-0000-000000000000",
            "0000000a-0000-0000-0000-000000000001",
            "09ffffff-ffff-ffff-ffff-ffffffffffff",
            "a0000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-fffffffffffe",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ];
        let keys: Vec<u128> = ids.iter().map(|i| guid_key(i).unwrap()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(keys[5], u128::MAX);
        for other in [
            "FFFFFFFF-ffff-ffff-ffff-ffffffffffff",
            "ffffffffffffffffffffffffffffffffffff",
            "ffffffff-ffff-ffff-ffff-fffffffffff",
            "gfffffff-ffff-ffff-ffff-ffffffffffff",
            "u1",
        ] {
            assert_eq!(guid_key(other), None, "{other}");
        }
    }
}
