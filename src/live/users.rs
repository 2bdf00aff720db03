//! How the declared users of a tenant are read, and how users are read back after a write.
//!
//! Two ways to read the declared users: look each one up by id, UPN or SID in `$batch` envelopes
//! of 20, or list the whole tenant (999 a page, or as parallel `userPrincipalName` partitions when
//! it is large). Which one is cheaper depends on how many users are declared and how large the
//! tenant is: [`choose_user_read`] decides by a cost model, reading the tenant's `$count` only
//! when the lookups would be long enough for the answer to matter.
//!
//! # No decision from an advanced query
//!
//! A group's transitive members are read with `ConsistencyLevel: eventual` (the type cast is an
//! advanced query), and advanced queries are served from an index that can lag writes
//! ("Advanced query capabilities on Microsoft Entra ID objects",
//! <https://learn.microsoft.com/en-us/graph/aad-advanced-queries>): right after a reset, the
//! member list can still show the old `lastPasswordChangeDateTime`, and a reset would look due
//! again. So such reads only select users: [`fresh_members`] replaces every member by the user
//! as an ordinary read returns it (from the declared users just read, else read again by id,
//! in `$batch` or, for many, by listing the tenant), before anything is diffed.

use std::collections::HashMap;

use crate::config::TenantDesired;
use crate::graph::client::{GraphClient, GraphError, UserKey};
use crate::graph::model::{GraphUser, USER_SELECT};
use crate::graph::retry::MAX_BATCH_SIZE;

use super::resolve::user_key;
use super::{FetchedUsers, LiveError, LiveUser, PrivilegedRoles};

/// When the desired state names more users than this, the whole tenant is listed with
/// `$top=999` paging (about `n/999` requests); below it, users are fetched by id, UPN or SID in
/// `$batch` requests of 20 (about `n/20` requests), unless the tenant turns out small enough
/// that listing it is cheaper (see [`choose_user_read`]). 2,000 named users is ~100 batches,
/// which is where paging a mid-size tenant starts to win.
const LIST_ALL_THRESHOLD: usize = 2000;

/// The directly declared users of `desired`: the tenant listed, or each looked up by its key
/// (results come back keyed by the lookup key; a key not found maps to `None`).
pub(super) async fn read_declared(
    client: &GraphClient,
    desired: &TenantDesired,
) -> Result<FetchedUsers, LiveError> {
    let tenant = desired.tenant.as_str();
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
}

/// The threshold in effect: [`LIST_ALL_THRESHOLD`], or `PWDRIFT_LIST_ALL_THRESHOLD` (a tuning
/// knob, also used by the tests to exercise both read paths on a small tenant).
fn list_all_threshold() -> usize {
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
/// about half a second, `docs/performance.md`), used here only to compare two ways of reading.
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
            tracing::debug!(tenant = %crate::escape::Shown(tenant), declared, users, ?read, "declared users read");
            Ok(read)
        }
        Err(e @ GraphError::Auth(_)) => Err(e),
        Err(e) => {
            tracing::debug!(tenant = %crate::escape::Shown(tenant), error = %crate::escape::Shown(&e.to_string()), "cannot count users; looking the declared ones up");
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
fn partition_min_users() -> usize {
    std::env::var("PWDRIFT_PARTITION_MIN_USERS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(crate::graph::client::PARTITION_MIN_USERS)
}

/// Every user of the tenant, as [`read_declared`] lists it (for `all: true`).
pub(super) async fn list_tenant(
    client: &GraphClient,
    tenant: &str,
) -> Result<Vec<GraphUser>, LiveError> {
    Ok(list_all(client, tenant).await?)
}

/// Every user of the tenant: partitioned in parallel when it is large, else paged.
async fn list_all(client: &GraphClient, tenant: &str) -> Result<Vec<GraphUser>, GraphError> {
    client
        .list_all_users_with(tenant, partition_min_users())
        .await
        .map(|(users, _)| users)
}

/// The members of the declared groups (read through an advanced query) replaced by their state
/// from ordinary reads (see "No decision from an advanced query"): taken from `declared` when it
/// holds them, else read again by id. A member gone since is dropped.
pub(super) async fn fresh_members(
    client: &GraphClient,
    tenant: &str,
    declared: &FetchedUsers,
    groups: &mut [super::FetchedGroup],
) -> Result<(), GraphError> {
    use std::collections::HashSet;
    let mut fresh: HashMap<String, GraphUser> = HashMap::new();
    // index the declared users once (a listing can hold the whole tenant)
    let declared_by_id: HashMap<String, &GraphUser> = match declared {
        FetchedUsers::Listed(users) => users
            .iter()
            .map(|u| (u.id.to_ascii_lowercase(), u))
            .collect(),
        FetchedUsers::ByKey(map) => map
            .values()
            .flatten()
            .map(|u| (u.id.to_ascii_lowercase(), u))
            .collect(),
    };
    let mut wanted: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for g in groups.iter() {
        if let super::FetchedGroup::Members(members) = g {
            for m in members {
                let id = m.id.to_ascii_lowercase();
                if !seen.insert(id.clone()) {
                    continue;
                }
                match declared_by_id.get(&id) {
                    Some(u) => {
                        fresh.insert(id, (*u).clone());
                    }
                    None => wanted.push(m.id.clone()),
                }
            }
        }
    }
    if !wanted.is_empty() {
        let read = if wanted.len() > list_all_threshold() {
            let want: HashSet<String> = wanted.iter().map(|i| i.to_ascii_lowercase()).collect();
            list_all(client, tenant)
                .await?
                .into_iter()
                .filter(|u| want.contains(&u.id.to_ascii_lowercase()))
                .collect()
        } else {
            client.reread_users(tenant, &wanted, USER_SELECT).await?
        };
        tracing::debug!(tenant = %crate::escape::Shown(tenant), members = wanted.len(), read = read.len(), "group members read again without ConsistencyLevel: eventual");
        for u in read {
            fresh.insert(u.id.to_ascii_lowercase(), u);
        }
    }
    for g in groups.iter_mut() {
        if let super::FetchedGroup::Members(members) = g {
            *members = std::mem::take(members)
                .into_iter()
                .filter_map(|m| fresh.get(&m.id.to_ascii_lowercase()).cloned())
                .collect();
        }
    }
    Ok(())
}

/// Reads users by object id for verification after a write: their password state only (no
/// roles, no domains: a read-back compares flags and `lastPasswordChangeDateTime`). Looked up in
/// `$batch` envelopes, or picked out of the listed tenant when there are more than
/// `list_all_threshold` of them. Users that no longer exist are absent from the map.
pub async fn read_back(
    client: &GraphClient,
    tenant: &str,
    ids: &[String],
) -> Result<HashMap<String, LiveUser>, GraphError> {
    let roles = PrivilegedRoles::default();
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
}
