//! Listing every user of a large tenant as disjoint partitions read in parallel, with a proof of
//! completeness and a fallback to sequential paging.
//!
//! Sequential paging costs one round trip per 999 users, one after the other: on Graph a full
//! page takes about half a second, so 100,000 users cannot be read in under ~50 s that way.
//! Above [`PARTITION_MIN_USERS`] users (counted with `GET /users/$count`), the user list is read
//! instead as ranges of `userPrincipalName`, each paged on its own, [`READ_CONCURRENCY`](super::READ_CONCURRENCY) pages in
//! flight at most (a separate in-flight pool from the writes' one, see `Pool::ListPages`).
//!
//! # Why these filters
//!
//! Microsoft's "user resource type" (<https://learn.microsoft.com/en-us/graph/api/resources/user>)
//! and "Advanced query capabilities on Microsoft Entra ID objects"
//! (<https://learn.microsoft.com/en-us/graph/aad-advanced-queries>): `userPrincipalName` supports
//! `eq, ne, not, ge, le, in, startsWith, endsWith`;
//! only `ne`, `not` and `endsWith` need the advanced-query headers, so `ge` and `le` (and their
//! `and`) are ordinary filters. `lt`/`gt` are not in the list, so every range is closed:
//! `ge 'a' and le 'am'`. Ranges are disjoint anyway because every boundary is a string that no
//! UPN can equal (a UPN always has an `@`, a boundary never), and together they cover every
//! string whatever characters it starts with (digits, letters, `_`, `'`, `.`, non-ASCII): the
//! first range is `le '0'`, the last `ge 'zm'`. The boundaries split on the first character
//! (digits, letters) and each letter once more at `m`, so a common first letter does not make
//! one partition the long pole.
//!
//! # A filter Graph may ignore
//!
//! The "user resource type" page lists `ge`/`le` for `userPrincipalName`, but a public docs
//! issue (microsoft-graph-docs-contrib #6581, "filter on userPrincipalName with ge/le does not
//! work") reports range filters that do not work. A clause Graph accepted and ignored would make
//! every partition read the whole tenant, 63 times over. So every page of a partition is checked
//! as it arrives: every user's UPN must lie in the partition's range, compared the way the range
//! was built (lowercased, then by code point: the boundaries are lowercase ASCII, and Graph
//! compares UPNs case-insensitively). At the first user outside its range the other partitions'
//! reads are cancelled (dropped, requests in flight included), the tenant is read sequentially,
//! a warning says so once, `-v` says which user came back for which range, and the client never
//! partitions that tenant again. A range filter Graph refuses (400) ends the same way, without
//! the warning. The worst case costs the pages in flight when the first one is checked (at most
//! [`READ_CONCURRENCY`](super::READ_CONCURRENCY), one round trip side by side) on top of the
//! sequential read: `examples/bench.py --upn-range-filter` measures it.
//!
//! # Completeness
//!
//! Graph does not document its collation for `ge`/`le`, and users can be created or deleted
//! while we read. So the union is checked: no object id twice, and exactly as many users as
//! `$count` said (`GET /users/$count` needs `ConsistencyLevel: eventual`, which is fine for the
//! count alone: the count never decides a write, and the users' state comes from the pages,
//! which are ordinary reads). On any mismatch, or any error of a partition other than
//! authentication, the tenant is read again by sequential paging and the reason is logged at
//! `info` (`-v`).
//!
//! # Budget
//!
//! `GET /users` costs 2 resource units, 1 with `$select`: one per page. 16 pages in flight at
//! about 2 pages per second each is ~32 RU/s, a tenth of the smallest documented budget
//! (3,500 RU per 10 s per app and tenant).

use std::collections::HashSet;

use futures_util::future::try_join_all;
use reqwest::Method;
use url::Url;

use super::error::{decode, error_from};
use super::execute::{Pool, Req};
use super::urls::encode_query_value;
use super::{GraphClient, GraphError};
use crate::graph::model::{GraphUser, Page, PAGE_SIZE, USER_SELECT};

/// Below this many users in the tenant, the list is paged sequentially (about 20 pages).
pub const PARTITION_MIN_USERS: usize = 20_000;

/// How the user list was read (for the log and the tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListingPath {
    /// one paged request (small tenant, or the count could not be read)
    Sequential,
    /// `n` partitions in parallel, union checked against `$count`
    Partitioned(usize),
    /// partitions were read but the union did not check out (the reason); then paged sequentially
    FellBack(String),
    /// paged sequentially because an earlier listing found the tenant's range filters ignored or
    /// refused
    SequentialAfterFallBack,
}

/// The range of (lowercased) UPNs one partition's filter admits: `None` is unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpnRange {
    pub ge: Option<String>,
    pub le: Option<String>,
}

impl UpnRange {
    /// The range a filter of [`partition_filters`] states: its `userPrincipalName ge '..'` and
    /// `le '..'` clauses (lowercased); other clauses are not ranges and bound nothing.
    pub fn of_filter(filter: &str) -> UpnRange {
        let mut r = UpnRange::default();
        for clause in filter.split(" and ") {
            let clause = clause.trim();
            let lit = |rest: &str| {
                rest.trim()
                    .strip_prefix('\'')
                    .and_then(|x| x.strip_suffix('\''))
                    .map(|x| x.replace("''", "'").to_lowercase())
            };
            if let Some(rest) = clause.strip_prefix("userPrincipalName ge ") {
                r.ge = lit(rest);
            } else if let Some(rest) = clause.strip_prefix("userPrincipalName le ") {
                r.le = lit(rest);
            }
        }
        r
    }

    /// Whether `upn` lies in the range, compared as the range was built: lowercased, by code
    /// point.
    pub fn contains(&self, upn: &str) -> bool {
        let u = upn.to_lowercase();
        self.ge.as_deref().is_none_or(|lo| u.as_str() >= lo)
            && self.le.as_deref().is_none_or(|hi| u.as_str() <= hi)
    }
}

/// The range boundaries: digits, then each letter and the letter followed by `m`. None contains
/// an `@`, so no UPN equals one.
pub fn partition_boundaries() -> Vec<String> {
    let mut b: Vec<String> = ('0'..='9').map(String::from).collect();
    for c in 'a'..='z' {
        b.push(c.to_string());
        b.push(format!("{c}m"));
    }
    b
}

/// The `$filter` of each partition, in order: `le B0`, `ge Bi and le Bi+1`, ..., `ge Bn`.
pub fn partition_filters(boundaries: &[String]) -> Vec<String> {
    let p = "userPrincipalName";
    let mut out = Vec::with_capacity(boundaries.len() + 1);
    let Some(first) = boundaries.first() else {
        return out;
    };
    out.push(format!("{p} le '{first}'"));
    for w in boundaries.windows(2) {
        out.push(format!("{p} ge '{}' and {p} le '{}'", w[0], w[1]));
    }
    if let Some(last) = boundaries.last() {
        out.push(format!("{p} ge '{last}'"));
    }
    out
}

/// Why the union of the partitions is not the tenant's user list.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnionMismatch {
    #[error("user {id} was read in two partitions")]
    Duplicate { id: String },
    #[error("the partitions hold {held} users, $count says {expected}")]
    Count { held: usize, expected: usize },
}

/// Checks the union of the partitions: no object id twice, and `expected` users in all.
pub fn check_complete(users: &[GraphUser], expected: usize) -> Result<(), UnionMismatch> {
    let mut seen = HashSet::with_capacity(users.len());
    for u in users {
        if !seen.insert(u.id.to_ascii_lowercase()) {
            return Err(UnionMismatch::Duplicate { id: u.id.clone() });
        }
    }
    if users.len() != expected {
        return Err(UnionMismatch::Count {
            held: users.len(),
            expected,
        });
    }
    Ok(())
}

impl GraphClient {
    /// Whether a partitioned read of `tenant` failed earlier in this client's life.
    fn partitions_failed_before(&self, tenant: &str) -> bool {
        self.inner
            .unpartitioned
            .lock()
            .expect("unpartitioned lock")
            .contains(&tenant.to_ascii_lowercase())
    }

    /// Records that `tenant` is to be listed sequentially from now on; `true` the first time.
    fn remember_partitions_failed(&self, tenant: &str) -> bool {
        self.inner
            .unpartitioned
            .lock()
            .expect("unpartitioned lock")
            .insert(tenant.to_ascii_lowercase())
    }

    /// `GET /users/$count` (with `ConsistencyLevel: eventual`, which `$count` requires).
    /// The count also sets the tenant's resource-unit quota (it depends on the tenant's size).
    pub async fn count_users(&self, tenant: &str) -> Result<usize, GraphError> {
        let count = self
            .get_json_with(
                tenant,
                self.url("users/$count")?,
                vec![("ConsistencyLevel", "eventual")],
            )
            .await?;
        self.note_tenant_users(tenant, count);
        Ok(count)
    }

    /// Every user of the tenant with exactly [`USER_SELECT`]: sequential paging for a tenant
    /// under [`PARTITION_MIN_USERS`], partitions in parallel above (see the module
    /// documentation), falling back to sequential paging when the partitions do not prove
    /// complete.
    pub async fn list_all_users(&self, tenant: &str) -> Result<Vec<GraphUser>, GraphError> {
        self.list_all_users_with(tenant, PARTITION_MIN_USERS)
            .await
            .map(|(users, _)| users)
    }

    /// [`Self::list_all_users`] with the threshold given, saying which path it took.
    pub async fn list_all_users_with(
        &self,
        tenant: &str,
        min_users: usize,
    ) -> Result<(Vec<GraphUser>, ListingPath), GraphError> {
        let filters = partition_filters(&partition_boundaries());
        self.list_all_users_by(tenant, min_users, &filters).await
    }

    /// [`Self::list_all_users_with`] with the partition filters given (the tests use overlapping
    /// or incomplete ones to see the fallback).
    pub async fn list_all_users_by(
        &self,
        tenant: &str,
        min_users: usize,
        filters: &[String],
    ) -> Result<(Vec<GraphUser>, ListingPath), GraphError> {
        let count = match self.count_users(tenant).await {
            Ok(n) => n,
            Err(e @ GraphError::Auth(_)) => return Err(e),
            Err(e) => {
                tracing::info!(tenant = %crate::escape::Shown(tenant), error = %crate::escape::Shown(&e.to_string()), "cannot count users; paging sequentially");
                return Ok((
                    self.list_users(tenant, None).await?,
                    ListingPath::Sequential,
                ));
            }
        };
        self.list_counted_users_by(tenant, min_users, filters, count)
            .await
    }

    /// [`Self::list_all_users_with`] for a tenant whose `$count` the caller has just read (so it
    /// is not read twice).
    pub async fn list_counted_users(
        &self,
        tenant: &str,
        min_users: usize,
        count: usize,
    ) -> Result<(Vec<GraphUser>, ListingPath), GraphError> {
        let filters = partition_filters(&partition_boundaries());
        self.list_counted_users_by(tenant, min_users, &filters, count)
            .await
    }

    async fn list_counted_users_by(
        &self,
        tenant: &str,
        min_users: usize,
        filters: &[String],
        count: usize,
    ) -> Result<(Vec<GraphUser>, ListingPath), GraphError> {
        if count < min_users {
            return Ok((
                self.list_users(tenant, None).await?,
                ListingPath::Sequential,
            ));
        }
        if self.partitions_failed_before(tenant) {
            return Ok((
                self.list_users(tenant, None).await?,
                ListingPath::SequentialAfterFallBack,
            ));
        }
        let n = filters.len();
        match self.read_partitions(tenant, filters, count).await {
            Ok(users) => {
                tracing::info!(tenant = %crate::escape::Shown(tenant), users = users.len(), partitions = n, "users read in parallel partitions");
                Ok((users, ListingPath::Partitioned(n)))
            }
            Err(Incomplete::Graph(e @ GraphError::Auth(_))) => Err(e),
            Err(reason) => {
                let first_time = match &reason {
                    Incomplete::Union(_) => false,
                    Incomplete::Graph(_) | Incomplete::OutOfRange { .. } => {
                        self.remember_partitions_failed(tenant)
                    }
                };
                if first_time && matches!(reason, Incomplete::OutOfRange { .. }) {
                    tracing::warn!(tenant = %crate::escape::Shown(tenant), "Graph ignored the userPrincipalName range filter of the partitioned user read; reading this tenant's users sequentially (-v: why)");
                }
                let reason = reason.to_string();
                tracing::info!(tenant = %crate::escape::Shown(tenant), reason = %crate::escape::Shown(&reason.to_string()), "partitioned read of users incomplete; falling back to sequential paging");
                Ok((
                    self.list_users(tenant, None).await?,
                    ListingPath::FellBack(reason),
                ))
            }
        }
    }

    /// Every page of one partition, in order, admitted by the tenant's pool of partition pages
    /// ([`Pool::ListPages`]).
    async fn get_paged_bulk(
        &self,
        tenant: &str,
        first: Url,
        filter: &str,
        out: &std::sync::Mutex<Vec<GraphUser>>,
    ) -> Result<(), Incomplete> {
        let range = UpnRange::of_filter(filter);
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let what = url.path().to_owned();
            let req = Req {
                method: Method::GET,
                url,
                body: None,
                headers: Vec::new(),
                idempotent: true,
                paced_by_caller: false,
                pool: Pool::ListPages,
                weight: 1,
                units: None,
                auth_method: false,
            };
            let resp = self
                .execute(tenant, &req)
                .await
                .map_err(Incomplete::Graph)?;
            if !(200..300).contains(&resp.status) {
                return Err(Incomplete::Graph(error_from(
                    resp.status,
                    &resp.body,
                    resp.request_id,
                    &what,
                )));
            }
            let page: Page<GraphUser> = decode(&resp.body, &what).map_err(Incomplete::Graph)?;
            drop(resp);
            // Checked before anything is kept: the first user outside the range ends every
            // partition's read (see "A filter Graph may ignore").
            if let Some(stray) = page.value.iter().find_map(|u| {
                u.user_principal_name
                    .as_deref()
                    .filter(|upn| !range.contains(upn))
            }) {
                return Err(Incomplete::OutOfRange {
                    upn: stray.to_owned(),
                    filter: filter.to_owned(),
                });
            }
            out.lock()
                .expect("partition results poisoned")
                .extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.same_origin_url(&link).map_err(Incomplete::Graph)?);
            }
        }
        Ok(())
    }

    /// Reads every partition (pages of each in order, partitions side by side) and checks the
    /// union against `expected`.
    async fn read_partitions(
        &self,
        tenant: &str,
        filters: &[String],
        expected: usize,
    ) -> Result<Vec<GraphUser>, Incomplete> {
        // Pages go straight into one vector (no per-partition copies to merge at the end).
        let users = std::sync::Mutex::new(Vec::with_capacity(expected));
        let reads = filters.iter().map(|f| {
            let users = &users;
            async move {
                let q = format!(
                    "users?$select={USER_SELECT}&$top={PAGE_SIZE}&$filter={}",
                    encode_query_value(f)
                );
                let url = self.url(&q).map_err(Incomplete::Graph)?;
                self.get_paged_bulk(tenant, url, f, users).await
            }
        });
        // The first failure (an error, or a user outside its range) drops the other reads,
        // requests in flight included.
        try_join_all(reads).await?;
        let users = users.into_inner().expect("partition results poisoned");
        check_complete(&users, expected).map_err(Incomplete::Union)?;
        Ok(users)
    }
}

/// Why the partitions were not used.
#[derive(Debug, thiserror::Error)]
enum Incomplete {
    #[error("a partition failed: {0}")]
    Graph(GraphError),
    #[error("{0}")]
    Union(UnionMismatch),
    #[error("user {upn} came back for the partition `{filter}`, outside its range: Graph did not apply the range filter")]
    OutOfRange { upn: String, filter: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, upn: &str) -> GraphUser {
        serde_json::from_value(serde_json::json!({"id": id, "userPrincipalName": upn})).unwrap()
    }

    /// Evaluates a partition filter the way a case-insensitive ordinal collation would.
    fn matches(filter: &str, upn: &str) -> bool {
        let upn = upn.to_lowercase();
        filter.split(" and ").all(|clause| {
            let (op, lit) = if let Some(r) = clause.strip_prefix("userPrincipalName ge ") {
                ("ge", r)
            } else if let Some(r) = clause.strip_prefix("userPrincipalName le ") {
                ("le", r)
            } else {
                panic!("unexpected clause {clause}")
            };
            let lit = lit.trim_matches('\'');
            match op {
                "ge" => upn.as_str() >= lit,
                _ => upn.as_str() <= lit,
            }
        })
    }

    /// Every UPN, whatever its first characters, falls in exactly one partition.
    #[test]
    fn partitions_are_disjoint_and_cover_every_upn() {
        let filters = partition_filters(&partition_boundaries());
        assert_eq!(filters.len(), 10 + 52 + 1);
        for upn in [
            "0@x", "9z@x", "a@x", "am@x", "al.z@x", "mz@x", "m@x", "zz@x", "zm@x", "zl@x",
            "_under@x", "'quote@x", ".dot@x", "-dash@x", "~tilde@x", "éva@x", "Ünal@x", "ZOE.X1@x",
            "!bang@x", "#hash@x", "{brace@x",
        ] {
            let hits = filters.iter().filter(|f| matches(f, upn)).count();
            assert_eq!(hits, 1, "{upn} is in {hits} partitions");
        }
        assert!(filters
            .iter()
            .all(|f| !f.contains(" lt ") && !f.contains(" gt ")));
    }

    /// The check of a page uses the ranges the filters state, with the ordering that built them:
    /// each UPN is in the range of exactly the partition that covers it, whatever its case.
    #[test]
    fn every_upn_lies_in_the_range_of_its_own_partition_only() {
        let filters = partition_filters(&partition_boundaries());
        assert_eq!(
            UpnRange::of_filter("userPrincipalName ge 'a' and userPrincipalName le 'am'"),
            UpnRange {
                ge: Some("a".into()),
                le: Some("am".into())
            }
        );
        assert_eq!(
            UpnRange::of_filter("userPrincipalName le '0'"),
            UpnRange {
                ge: None,
                le: Some("0".into())
            }
        );
        for upn in [
            "0@x", "9z@x", "a@x", "AM@x", "Al.Z@x", "mz@x", "M@x", "ZZ@x", "zM@x", "zl@x",
            "_under@x", "'quote@x", ".dot@x", "éva@x", "Ünal@x", "ZOE.X1@x", "{brace@x",
        ] {
            let holders: Vec<&String> = filters
                .iter()
                .filter(|f| UpnRange::of_filter(f).contains(upn))
                .collect();
            assert_eq!(holders.len(), 1, "{upn}: {holders:?}");
            assert!(
                matches(holders[0], upn),
                "{upn} checked against another range"
            );
        }
        // a user of another range is caught
        let b = UpnRange::of_filter("userPrincipalName ge 'b' and userPrincipalName le 'bm'");
        assert!(b.contains("Bea@x") && b.contains("bl@x"));
        assert!(!b.contains("anne@x") && !b.contains("Bob@x") && !b.contains("C@x"));
    }

    #[test]
    fn completeness_needs_the_count_and_no_duplicates() {
        let users = vec![user("a", "a@x"), user("b", "b@x")];
        assert_eq!(check_complete(&users, 2), Ok(()));
        assert!(check_complete(&users, 3)
            .unwrap_err()
            .to_string()
            .contains("$count says 3"));
        let dup = vec![user("a", "a@x"), user("A", "a@x")];
        assert!(check_complete(&dup, 2)
            .unwrap_err()
            .to_string()
            .contains("two partitions"));
    }
}
