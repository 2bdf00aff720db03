//! What `selectors:` and `exclude:` read.
//!
//! - `all: true` is the listing of the whole tenant, the same read (paged, or partitioned when
//!   large) as when many users are declared: `fetch_tenant` lists once and the declared users and
//!   the selector share that listing.
//! - `filter` is sent to Graph exactly as written, never evaluated locally, with `$select=id`
//!   ([`GraphClient::user_ids_matching`]: `ConsistencyLevel: eventual` and `$count=true` when
//!   Graph needs them). That read only says *who*: an eventual-consistency index can lag writes
//!   ("Advanced query capabilities on Microsoft Entra ID objects"), so the state that decides a
//!   write is taken from the listing, or read by id in `$batch` without the header.
//! - `riskyUsers` reads Identity Protection's users at risk once per tenant, whatever the number
//!   of `riskyUsers` selectors ([`GraphClient::risky_users_at_risk`], paced to its 1 request per
//!   second), and keeps those at exactly the level named; their state is read as for a filter.
//! - `exclude` entries resolve to object ids: a user by its key, a group by its transitive
//!   members.

use std::collections::{HashMap, HashSet};

use crate::config::{
    Directives, ExcludeEntry, Excluded, GroupEntry, Selection, TenantDesired, UserRef,
};
use crate::graph::client::{GraphClient, GraphError, UserKey};
use crate::graph::model::GraphUser;

use super::resolve::user_key;
use super::{FetchedExclusion, FetchedGroup, FetchedSelector, LiveError};

/// Whether `desired` has an `all: true` selector (then the whole tenant is listed).
pub(super) fn selects_all(desired: &TenantDesired) -> bool {
    desired
        .selectors
        .iter()
        .any(|s| matches!(s.select, Selection::All))
}

/// Each selector of `desired`, in order. `listing`: the whole tenant, when it was listed (the
/// selected users' state is then taken from it, not read again).
pub(super) async fn read_selectors(
    client: &GraphClient,
    desired: &TenantDesired,
    listing: Option<&[GraphUser]>,
) -> Result<Vec<FetchedSelector>, LiveError> {
    let tenant = desired.tenant.as_str();
    let mut ids: Vec<Option<Vec<String>>> = Vec::with_capacity(desired.selectors.len());
    let mut risky = None;
    for s in &desired.selectors {
        ids.push(match &s.select {
            Selection::All => None,
            Selection::Filter(f) => Some(client.user_ids_matching(tenant, f).await.map_err(
                |source| match source.status() {
                    Some(400) => LiveError::FilterRefused(Box::new(super::RefusedFilter {
                        filter: f.clone(),
                        origin: s.origin.clone(),
                        source,
                    })),
                    _ => source.into(),
                },
            )?),
            Selection::RiskyUsers(level) => {
                if risky.is_none() {
                    risky = Some(client.risky_users_at_risk(tenant).await.map_err(|source| {
                        match source.status() {
                            Some(401 | 403) => LiveError::RiskyUsersDenied {
                                tenant: tenant.to_owned(),
                                source,
                            },
                            _ => source.into(),
                        }
                    })?);
                }
                let at_risk = risky.as_deref().unwrap_or_default();
                Some(
                    at_risk
                        .iter()
                        .filter(|r| {
                            r.risk_level
                                .as_deref()
                                .is_some_and(|l| l.eq_ignore_ascii_case(level.as_str()))
                                && r.risk_state
                                    .as_deref()
                                    .is_some_and(|s| s.eq_ignore_ascii_case("atRisk"))
                        })
                        .map(|r| r.id.clone())
                        .collect(),
                )
            }
        });
    }
    // Every selected user's state, from the listing or read by id without the eventual header.
    let wanted: HashSet<String> = ids
        .iter()
        .flatten()
        .flatten()
        .map(|i| i.to_ascii_lowercase())
        .collect();
    let mut state: HashMap<String, GraphUser> = HashMap::with_capacity(wanted.len());
    match listing {
        Some(all) => {
            for u in all {
                if wanted.contains(&u.id.to_ascii_lowercase()) {
                    state.insert(u.id.to_ascii_lowercase(), u.clone());
                }
            }
        }
        None if !wanted.is_empty() => {
            let mut keys: Vec<UserKey> = wanted.iter().cloned().map(UserKey::Id).collect();
            keys.sort();
            for (_, result) in client.get_users_by_batch(tenant, &keys).await? {
                match result {
                    Ok(u) => {
                        state.insert(u.id.to_ascii_lowercase(), u);
                    }
                    // deleted since it was selected: selected no more
                    Err(GraphError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        None => {}
    }
    Ok(ids
        .into_iter()
        .map(|ids| match ids {
            None => FetchedSelector::All,
            Some(ids) => FetchedSelector::Members(
                ids.iter()
                    .filter_map(|i| state.get(&i.to_ascii_lowercase()).cloned())
                    .collect(),
            ),
        })
        .collect())
}

/// Each `exclude` entry of `desired`, in order, as the object ids it names.
pub(super) async fn read_exclusions(
    client: &GraphClient,
    desired: &TenantDesired,
    listing: Option<&[GraphUser]>,
) -> Result<Vec<FetchedExclusion>, LiveError> {
    let tenant = desired.tenant.as_str();
    let users: Vec<&UserRef> = desired
        .exclude
        .iter()
        .filter_map(|e| match &e.who {
            Excluded::User(u) => Some(u),
            Excluded::Group(_) => None,
        })
        .collect();
    let mut by_key: HashMap<UserKey, String> = HashMap::new();
    match listing {
        Some(all) => {
            for u in users {
                let found = all.iter().find(|l| match u {
                    UserRef::ObjectId(id) => l.id.eq_ignore_ascii_case(id),
                    UserRef::Upn(upn) => l
                        .user_principal_name
                        .as_deref()
                        .is_some_and(|x| x.to_lowercase() == *upn),
                    UserRef::Sid(sid) => l
                        .on_premises_security_identifier
                        .as_deref()
                        .is_some_and(|x| x.eq_ignore_ascii_case(sid)),
                });
                if let Some(l) = found {
                    by_key.insert(user_key(u), l.id.clone());
                }
            }
        }
        None if !users.is_empty() => {
            let keys: Vec<UserKey> = users.iter().map(|u| user_key(u)).collect();
            for (key, result) in client.get_users_by_batch(tenant, &keys).await? {
                match result {
                    Ok(u) => {
                        by_key.insert(key, u.id);
                    }
                    Err(GraphError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        None => {}
    }
    let groups: Vec<GroupEntry> = desired
        .exclude
        .iter()
        .filter_map(|e| match &e.who {
            Excluded::Group(g) => Some(GroupEntry {
                group: g.clone(),
                directives: Directives::default(),
                origin: e.origin.clone(),
            }),
            Excluded::User(_) => None,
        })
        .collect();
    let mut groups = super::groups::read_groups(client, tenant, &groups)
        .await?
        .into_iter();
    Ok(desired
        .exclude
        .iter()
        .map(|e: &ExcludeEntry| match &e.who {
            Excluded::User(u) => {
                FetchedExclusion::Users(by_key.get(&user_key(u)).cloned().into_iter().collect())
            }
            Excluded::Group(_) => match groups.next() {
                Some(FetchedGroup::Members(m)) => {
                    FetchedExclusion::Users(m.into_iter().map(|u| u.id).collect())
                }
                Some(FetchedGroup::Ambiguous(n)) => FetchedExclusion::Ambiguous(n),
                _ => FetchedExclusion::Users(Vec::new()),
            },
        })
        .collect())
}
