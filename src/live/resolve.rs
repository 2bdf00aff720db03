//! The pure half of reading live state: desired state x what was fetched -> [`LiveTenant`], the
//! view the diff consumes, or every resolution problem as diagnostics. No I/O, no clock.
//!
//! Desired state names users by userPrincipalName, object id or on-premises SID and groups by
//! name or id. Keys are compared as Entra ID compares them: UPNs and object ids
//! case-insensitively, SIDs in their canonical upper case.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::diag::Diagnostic;
use crate::config::{
    Directives, ExcludeEntry, Excluded, GroupEntry, Origin, TenantDesired, UserEntry, UserRef,
};
use crate::graph::client::UserKey;
use crate::graph::model::GraphUser;

use super::{
    Caller, Fetched, FetchedExclusion, FetchedGroup, FetchedSelector, FetchedUsers, LiveTenant,
    LiveUser, Target,
};

/// The pure half of [`super::read_tenant`]: desired state x fetched data -> the live view the diff
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
        selectors,
        exclude,
    } = fetched;
    roles.federated = federated_domains;
    let mut notes = notes;
    let mut problems = Vec::new();
    // `all: true`: the listing also feeds the selector, so declared users are copied out of it
    // instead of moved, and the rest of it is kept for the selector.
    let selects_all = selectors.iter().any(|s| matches!(s, FetchedSelector::All));
    let mut listed_rest: Vec<GraphUser> = Vec::new();

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
                        if selects_all {
                            all[i] = Some(u.clone());
                        }
                        roles.live(u)
                    }
                    None => resolved[first_at[i]].1.clone(),
                };
                resolved.push((entry, live));
            }
            if selects_all {
                listed_rest = all.into_iter().flatten().collect();
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
    let mut group_members: Vec<(&GroupEntry, Vec<LiveUser>)> = Vec::new();
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
    /// A user's live state and every (directives, origin, from its own `users:` entry) that
    /// reaches it.
    type Contributions<'a> = (LiveUser, Vec<(&'a Directives, &'a Origin, bool)>);
    let mut reached: Vec<(Option<LiveUser>, &Directives, &Origin, bool)> = resolved
        .into_iter()
        .map(|(entry, live)| (Some(live), &entry.directives, &entry.origin, true))
        .collect();
    for (g, members) in group_members {
        reached.extend(
            members
                .into_iter()
                .map(|live| (Some(live), &g.directives, &g.origin, false)),
        );
    }
    // Selectors: `all: true` takes the listing, the others their members (guests never).
    let mut rest = Some(listed_rest);
    let mut all_range: Option<std::ops::Range<usize>> = None;
    for (s, fetched) in desired.selectors.iter().zip(selectors) {
        match fetched {
            // guests are left out as `all: true` leaves them: their home tenant owns their password
            FetchedSelector::Members(m) => {
                let (guests, members): (Vec<GraphUser>, Vec<GraphUser>) =
                    m.into_iter().partition(is_guest);
                if !guests.is_empty() {
                    notes.push(format!(
                        "{} guest{} selected by the selector at {} left out: a guest's password lives in its home tenant",
                        guests.len(),
                        if guests.len() == 1 { "" } else { "s" },
                        s.origin
                    ));
                }
                reached.extend(
                    members
                        .into_iter()
                        .map(|u| (Some(roles.live(u)), &s.directives, &s.origin, false)),
                )
            }
            FetchedSelector::All => match (rest.take(), &all_range) {
                (Some(all), _) => {
                    let start = reached.len();
                    reached.extend(
                        all.into_iter()
                            .filter(|u| !is_guest(u))
                            .map(|u| (Some(roles.live(u)), &s.directives, &s.origin, false)),
                    );
                    all_range = Some(start..reached.len());
                }
                // a second `all: true`: the users of the first one
                (None, Some(range)) => {
                    let again: Vec<LiveUser> = reached[range.clone()]
                        .iter()
                        .filter_map(|r| r.0.clone())
                        .collect();
                    reached.extend(
                        again
                            .into_iter()
                            .map(|live| (Some(live), &s.directives, &s.origin, false)),
                    );
                }
                (None, None) => {}
            },
        }
    }
    drop(rest);

    // Exclusions: object ids no entry changes.
    let mut excluded_ids: foldhash::HashSet<String> = foldhash::HashSet::default();
    for (e, fetched) in desired.exclude.iter().zip(exclude) {
        match fetched {
            FetchedExclusion::Users(ids) if ids.is_empty() => {
                let (who, origin) = describe(e);
                notes.push(format!(
                    "the exclusion of {who} ({origin}) names no one in the tenant"
                ));
            }
            FetchedExclusion::Users(ids) => {
                excluded_ids.extend(ids.into_iter().map(|i| i.to_ascii_lowercase()));
            }
            FetchedExclusion::Ambiguous(n) => {
                let (who, origin) = describe(e);
                problems.push(
                    Diagnostic::error(format!(
                        "{n} groups match the exclusion of {who} in {tenant}"
                    ))
                    .with_label(origin.clone(), "excluded here".to_owned())
                    .with_help("name the group by its object id instead".to_owned()),
                );
            }
        }
    }
    let mut excluded = 0usize;
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
        let (live, directives, origin, own) = &mut reached[i];
        let live = live.take().expect("each reached user is taken once");
        match per_user.last_mut() {
            Some((last, (_, entries))) if *last == live.id => {
                entries.push((*directives, *origin, *own))
            }
            _ => per_user.push((live.id.clone(), (live, vec![(*directives, *origin, *own)]))),
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
        if !excluded_ids.is_empty() && excluded_ids.contains(&live.id.to_ascii_lowercase()) {
            excluded += 1;
            continue;
        }
        let mut own: Vec<(&Directives, &Origin)> = Vec::new();
        let mut shared: Vec<(&Directives, &Origin)> = Vec::with_capacity(entries.len());
        for &(d, o, is_own) in &entries {
            if is_own {
                own.push((d, o));
            } else {
                shared.push((d, o));
            }
        }
        match crate::config::merge_directives(&own, &shared, &live.user_principal_name) {
            Ok(directives) => {
                let mut declared_at: Vec<Origin> =
                    entries.iter().map(|(_, o, _)| (*o).clone()).collect();
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
        excluded,
        synced_flags_writable: false,
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
/// Whether a listed user is a guest (`userType` Guest): never selected by a selector.
fn is_guest(u: &GraphUser) -> bool {
    u.user_type
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("guest"))
}

/// How an exclusion is named in the note that says it names no one.
fn describe(e: &ExcludeEntry) -> (String, &Origin) {
    let who = match &e.who {
        Excluded::User(u) => format!("user {u}"),
        Excluded::Group(g) => format!("group {g}"),
    };
    (who, &e.origin)
}

/// The lookup key of a user as desired state names it.
pub(super) fn user_key(user: &UserRef) -> UserKey {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ExcludeEntry, Excluded, GroupRef, Selection, SelectorEntry, TenantRef};
    use crate::live::testing::user;
    use crate::live::{PrivilegedRoles, RoleGrant};
    use std::path::PathBuf;

    fn at(line: usize) -> Origin {
        Origin {
            file: PathBuf::from("d.yaml").into(),
            line,
            column: 5,
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
            selectors: vec![],
            exclude: vec![],
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
            selectors: vec![],
            exclude: vec![],
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
    fn two_groups_that_disagree_are_a_problem_the_users_own_entry_settles() {
        let d = desired(
            vec![],
            vec![
                group("Finance", 9, flag(true)),
                group("Sales", 12, flag(false)),
            ],
        );
        let members = || FetchedGroup::Members(vec![user("id-a", "a@contoso.com", None)]);
        let f = fetched(by_key(vec![]), vec![members(), members()]);
        let problems = resolve(&d, f.clone(), Caller::Application, false, &[]).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].message.contains("for user a@contoso.com"),
            "{}",
            problems[0].message
        );
        let origins: Vec<&Origin> = problems[0].labels.iter().map(|l| &l.origin).collect();
        assert_eq!(origins, [&at(9), &at(12)]);
        // the user's own entry overrides both
        let mut d = d;
        d.users
            .push(entry(UserRef::Upn("a@contoso.com".into()), 3, flag(false)));
        let mut f = f;
        f.users = by_key(vec![(
            UserKey::Upn("a@contoso.com".into()),
            Some(user("id-a", "a@contoso.com", None)),
        )]);
        let live = resolve(&d, f, Caller::Application, false, &[]).unwrap();
        assert_eq!(live.targets["id-a"].directives, flag(false));
        assert_eq!(live.targets["id-a"].declared_at, [at(3), at(9), at(12)]);
    }

    fn selector(select: Selection, line: usize, directives: Directives) -> SelectorEntry {
        SelectorEntry {
            select,
            directives,
            origin: at(line),
        }
    }

    fn guest(id: &str) -> GraphUser {
        GraphUser {
            user_type: Some("Guest".into()),
            ..user(id, &format!("{id}_x.com#EXT#@contoso.com"), None)
        }
    }

    /// `all: true` takes every listed member user (never a guest), shares the listing with the
    /// declared users, and exclusions take users out whatever reaches them, counted.
    #[test]
    fn all_users_without_guests_and_exclusions_counted() {
        let mut d = desired(
            vec![entry(UserRef::Upn("a@contoso.com".into()), 3, flag(true))],
            vec![group("Finance", 9, flag(false))],
        );
        d.selectors = vec![
            selector(Selection::All, 20, flag(false)),
            selector(
                Selection::Filter("department eq 'x'".into()),
                22,
                Directives {
                    force_change_password_next_sign_in_with_mfa: Some(false),
                    ..Directives::default()
                },
            ),
        ];
        d.exclude = vec![
            ExcludeEntry {
                who: Excluded::User(UserRef::Upn("bg@contoso.com".into())),
                origin: at(30),
            },
            ExcludeEntry {
                who: Excluded::Group(GroupRef::DisplayName("Gone".into())),
                origin: at(31),
            },
        ];
        let mut f = fetched(
            FetchedUsers::Listed(vec![
                user("id-a", "a@contoso.com", None),
                user("id-b", "b@contoso.com", None),
                user("id-bg", "bg@contoso.com", None),
                guest("id-g"),
            ]),
            // Finance reaches the excluded user too: no conflict is checked for it
            vec![FetchedGroup::Members(vec![user(
                "id-bg",
                "bg@contoso.com",
                None,
            )])],
        );
        f.selectors = vec![
            FetchedSelector::All,
            FetchedSelector::Members(vec![user("id-b", "b@contoso.com", None), guest("id-g")]),
        ];
        f.exclude = vec![
            FetchedExclusion::Users(vec!["ID-BG".into()]),
            FetchedExclusion::Users(vec![]),
        ];
        let live = resolve(&d, f, Caller::Application, false, &[]).unwrap();
        let ids: Vec<&str> = live.targets.keys().map(String::as_str).collect();
        // the guest is reached by the filter only: left out there too (its home tenant owns its
        // password), and counted in a note
        assert_eq!(ids, ["id-a", "id-b"]);
        assert_eq!(live.excluded, 1);
        // own entry wins over the selector
        assert_eq!(live.targets["id-a"].directives, flag(true));
        let b = &live.targets["id-b"].directives;
        assert_eq!(b.force_change_password_next_sign_in, Some(false));
        assert_eq!(b.force_change_password_next_sign_in_with_mfa, Some(false));
        assert_eq!(live.notes.len(), 2, "{:?}", live.notes);
        assert!(
            live.notes[0].starts_with("1 guest selected by the selector at d.yaml:22:"),
            "{:?}",
            live.notes
        );
        assert_eq!(
            live.notes[1],
            "the exclusion of group Gone (d.yaml:31:5) names no one in the tenant"
        );
    }

    #[test]
    fn an_ambiguous_excluded_group_is_a_problem() {
        let mut d = desired(vec![], vec![group("Finance", 9, flag(false))]);
        d.exclude = vec![ExcludeEntry {
            who: Excluded::Group(GroupRef::DisplayName("Twice".into())),
            origin: at(31),
        }];
        let mut f = fetched(by_key(vec![]), vec![FetchedGroup::Members(vec![])]);
        f.exclude = vec![FetchedExclusion::Ambiguous(2)];
        let problems = resolve(&d, f, Caller::Application, false, &[]).unwrap_err();
        assert_eq!(
            messages(&problems),
            ["2 groups match the exclusion of group Twice in contoso.com"]
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
