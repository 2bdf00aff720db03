//! Property tests (proptest) of the pure pipeline: desired state (split over files, a user's own
//! entry and a group's) x live state -> `live::resolve` -> `diff::diff` -> plan, and a pure
//! simulation of what Graph does when the plan is applied (a flags PATCH sets the flags; a reset
//! stamps `lastPasswordChangeDateTime`; a PATCH reset sets the flags to `after`, resetPassword
//! leaves them at (true, false) and apply's flags PATCH after it sets `after` when it differs).
//!
//! Properties, over arbitrary users, flags, directives with timestamps around `now`, privileged
//! roles and synced users:
//! - applying the plan and planning again (same instant) yields no change, with no exception;
//! - no reset without a due, unmet `resetPassword` directive;
//! - a user who changed the password at or after `since` is never flagged by
//!   `requirePasswordChange`;
//! - merging the files in any order gives the same plan.
//!
//! 256 cases each; the whole file runs in well under a second.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use pwdrift::config::check::contradictions;
use pwdrift::config::{
    merge, Directives, GroupEntry, GroupRef, Origin, PasswordSource, RequirePasswordChange,
    ResetPassword, TenantDesired, TenantRef, UserEntry, UserRef,
};
use pwdrift::engine::steps::live::{
    self, Caller, Fetched, FetchedGroup, FetchedUsers, PrivilegedRoles, RoleGrant,
};
use pwdrift::graph::model::{ForceFlags, GraphUser, PasswordProfile};
use pwdrift::plan::{Action, Plan, ResetMethod};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap()
}

/// An instant within ten days of `now`, to the minute.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (-14_400i64..14_400).prop_map(|m| now() + Duration::minutes(m))
}

#[derive(Clone, Debug)]
struct LiveSpec {
    force: Option<bool>,
    force_mfa: Option<bool>,
    last: Option<DateTime<Utc>>,
    synced: bool,
    privileged: bool,
}

fn live_spec() -> impl Strategy<Value = LiveSpec> {
    (
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<bool>()),
        proptest::option::of(instant()),
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(force, force_mfa, last, synced, privileged)| LiveSpec {
            force,
            force_mfa,
            last,
            synced,
            privileged,
        })
}

fn password_source() -> impl Strategy<Value = PasswordSource> {
    prop_oneof![
        3 => Just(PasswordSource::Generate { length: 20 }),
        1 => Just(PasswordSource::SystemGenerated),
        1 => Just(PasswordSource::Env { var: "PW".into() }),
    ]
}

/// Directives without contradictions (as the validator guarantees for one entry).
fn directives() -> impl Strategy<Value = Directives> {
    (
        proptest::option::weighted(0.3, any::<bool>()),
        proptest::option::weighted(0.3, any::<bool>()),
        proptest::option::weighted(0.4, (instant(), any::<bool>())),
        proptest::option::weighted(
            0.3,
            (instant(), password_source(), any::<bool>(), any::<bool>()),
        ),
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(force, force_mfa, require, reset, allow_privileged)| {
            let mut d = Directives {
                force_change_password_next_sign_in: force,
                force_change_password_next_sign_in_with_mfa: force_mfa,
                require_password_change: require
                    .map(|(since, with_mfa)| RequirePasswordChange { since, with_mfa }),
                reset_password: reset.map(|(not_before, password, after, after_mfa)| {
                    ResetPassword {
                        not_before,
                        password,
                        force_change_after: after,
                        force_change_after_with_mfa: after_mfa,
                    }
                }),
                allow_privileged,
            };
            // drop what contradicts, as a person fixing the validator's error would
            while let Some(c) = contradictions(&d).into_iter().next() {
                use pwdrift::config::check::Field;
                match c.fields.0 {
                    Field::ForceChange => d.force_change_password_next_sign_in = None,
                    Field::ForceChangeWithMfa => {
                        d.force_change_password_next_sign_in_with_mfa = None
                    }
                    Field::RequirePasswordChange => d.require_password_change = None,
                    Field::ResetPassword => d.reset_password = None,
                }
            }
            d
        })
}

/// One test world: live users, each user's own entry (or none) and the file it is in, and one
/// group's entry with its members and file.
#[derive(Clone, Debug)]
struct World {
    live: Vec<LiveSpec>,
    own: Vec<Option<(Directives, usize)>>,
    group: Option<(Directives, usize, BTreeSet<usize>)>,
    delegated_reset_available: bool,
    /// `--synced-flags-writable`: the tenant accepts synced users' flag changes
    synced_flags_writable: bool,
}

const FILES: usize = 3;

fn world() -> impl Strategy<Value = World> {
    proptest::collection::vec(
        (
            live_spec(),
            proptest::option::weighted(0.8, (directives(), 0..FILES)),
        ),
        1..8,
    )
    .prop_flat_map(|users| {
        let n = users.len();
        (
            Just(users),
            proptest::option::weighted(
                0.3,
                (
                    directives(),
                    0..FILES,
                    proptest::collection::btree_set(0..n, 0..=n),
                ),
            ),
            any::<bool>(),
        )
    })
    .prop_map(|(users, group, delegated_reset_available)| {
        let (live, own) = users.into_iter().unzip();
        World {
            live,
            own,
            group,
            delegated_reset_available,
            synced_flags_writable: false,
        }
    })
}

fn upn(i: usize) -> String {
    format!("u{i}@contoso.com")
}

fn id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}

fn graph_user(i: usize, l: &LiveSpec) -> GraphUser {
    GraphUser {
        id: id(i),
        user_principal_name: Some(upn(i)),
        password_profile: Some(PasswordProfile {
            force_change_password_next_sign_in: l.force,
            force_change_password_next_sign_in_with_mfa: l.force_mfa,
            ..Default::default()
        }),
        last_password_change_date_time: l.last,
        on_premises_sync_enabled: l.synced.then_some(true),
        ..Default::default()
    }
}

fn origin(file: usize, line: usize) -> Origin {
    Origin {
        file: PathBuf::from(format!("f{file}.yaml")).into(),
        line,
        column: 11,
    }
}

/// The desired state as files: one `TenantDesired` per file, in file order.
fn parts(w: &World) -> Vec<TenantDesired> {
    let mut parts: Vec<TenantDesired> = (0..FILES)
        .map(|f| TenantDesired {
            tenant: TenantRef::Domain("contoso.onmicrosoft.com".into()),
            users: vec![],
            groups: vec![],
            selectors: vec![],
            exclude: vec![],
            files: vec![PathBuf::from(format!("f{f}.yaml"))],
        })
        .collect();
    for (i, own) in w.own.iter().enumerate() {
        if let Some((d, f)) = own {
            parts[*f].users.push(UserEntry {
                user: UserRef::Upn(upn(i)),
                directives: d.clone(),
                origin: origin(*f, 4 + i),
            });
        }
    }
    if let Some((d, f, _)) = &w.group {
        parts[*f].groups.push(GroupEntry {
            group: GroupRef::DisplayName("G".into()),
            directives: d.clone(),
            origin: origin(*f, 100),
        });
    }
    parts
}

/// desired x live -> plan (`None`: the desired state does not resolve, e.g. a contradiction
/// within the group's entry).
fn plan(w: &World, live: &[LiveSpec], parts: Vec<TenantDesired>) -> Option<Plan> {
    let desired = merge::union(parts).ok()?;
    let users: Vec<GraphUser> = live
        .iter()
        .enumerate()
        .map(|(i, l)| graph_user(i, l))
        .collect();
    let groups = desired
        .groups
        .iter()
        .map(|_| {
            let members = w.group.as_ref().map(|g| &g.2).cloned().unwrap_or_default();
            FetchedGroup::Members(members.iter().map(|&i| users[i].clone()).collect())
        })
        .collect();
    let roles =
        PrivilegedRoles::from_grants(live.iter().enumerate().filter(|(_, l)| l.privileged).map(
            |(i, _)| {
                (
                    id(i),
                    RoleGrant {
                        role: "Global Administrator".into(),
                        eligible: false,
                        scope: "/".into(),
                        via_group: None,
                    },
                )
            },
        ));
    let fetched = Fetched {
        tenant_id: "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90".into(),
        roles,
        federated_domains: Default::default(),
        notes: vec![],
        users: FetchedUsers::Listed(users),
        groups,
        selectors: vec![],
        exclude: vec![],
    };
    let mut lt = live::resolve(
        &desired,
        fetched,
        Caller::Application,
        w.delegated_reset_available,
        &[],
    )
    .ok()?;
    lt.synced_flags_writable = w.synced_flags_writable;
    Some(pwdrift::engine::steps::diff(&[lt], now()))
}

fn index_of(user_id: &str) -> usize {
    user_id.rsplit('-').next().unwrap().parse().unwrap()
}

/// What Graph does when the plan is applied, at `now`.
fn apply(plan: &Plan, live: &mut [LiveSpec]) {
    for u in &plan.tenants[0].users {
        let l = &mut live[index_of(&u.user_id)];
        match &u.action {
            Action::SetFlags { after, .. } => {
                l.force = Some(after.force_change_password_next_sign_in);
                l.force_mfa = Some(after.force_change_password_next_sign_in_with_mfa);
            }
            Action::ResetPassword { method, after, .. } => {
                l.last = Some(now());
                match method {
                    // the PATCH sets the password and both flags
                    ResetMethod::PatchPasswordProfile => {
                        l.force = Some(after.force_change_password_next_sign_in);
                        l.force_mfa = Some(after.force_change_password_next_sign_in_with_mfa);
                    }
                    // resetPassword always leaves (true, false); apply sends a flags PATCH
                    // after it when the plan wants other flags (src/apply.rs)
                    ResetMethod::ResetPasswordApi => {
                        l.force = Some(true);
                        l.force_mfa = Some(false);
                        let left = ForceFlags {
                            force_change_password_next_sign_in: true,
                            force_change_password_next_sign_in_with_mfa: false,
                        };
                        if *after != left {
                            l.force = Some(after.force_change_password_next_sign_in);
                            l.force_mfa = Some(after.force_change_password_next_sign_in_with_mfa);
                        }
                    }
                }
            }
            Action::NoChange { .. } | Action::Blocked { .. } => {}
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn applying_the_plan_then_planning_again_changes_nothing(w in world()) {
        let Some(first) = plan(&w, &w.live, parts(&w)) else { return Ok(()) };
        let mut live = w.live.clone();
        apply(&first, &mut live);
        let second = plan(&w, &live, parts(&w)).expect("still resolves");
        // no exception: a synced user (resetPassword) with a literal
        // `forceChangePasswordNextSignIn: false` converges in one run too (diff rule 19)
        let changes: Vec<_> = second.tenants[0].users.iter().filter(|u| u.action.is_change()).collect();
        prop_assert!(changes.is_empty(), "first plan: {:#?}\nsecond plan's changes: {:#?}", first, changes);
    }

    #[test]
    fn no_reset_without_a_due_unmet_reset_directive(w in world()) {
        let Some(p) = plan(&w, &w.live, parts(&w)) else { return Ok(()) };
        for u in &p.tenants[0].users {
            if let Action::ResetPassword { .. } = u.action {
                let i = index_of(&u.user_id);
                let own = w.own[i].as_ref().and_then(|(d, _)| d.reset_password.as_ref());
                let by_group = w.group.as_ref().filter(|g| g.2.contains(&i)).and_then(|g| g.0.reset_password.as_ref());
                let r = own.or(by_group);
                prop_assert!(r.is_some(), "reset without a directive: {u:?}");
                let r = r.unwrap();
                prop_assert!(r.not_before <= now(), "reset before notBefore: {u:?}");
                prop_assert!(w.live[i].last.is_none_or(|l| l < r.not_before), "reset already met: {u:?}");
            }
        }
    }

    #[test]
    fn a_user_who_changed_the_password_after_since_is_never_flagged(w in world()) {
        let Some(p) = plan(&w, &w.live, parts(&w)) else { return Ok(()) };
        for u in &p.tenants[0].users {
            let i = index_of(&u.user_id);
            // the requirePasswordChange in effect: the user's own entry overrides the group's,
            // also where its other directives contradict the group's (docs/configuration.md)
            let o = origin(0, 1);
            let own: Vec<(&Directives, &Origin)> = w.own[i].as_ref().map(|(d, _)| (d, &o)).into_iter().collect();
            let group: Vec<(&Directives, &Origin)> = w.group.as_ref().filter(|g| g.2.contains(&i)).map(|g| (&g.0, &o)).into_iter().collect();
            let Ok(merged) = merge::merge_directives(&own, &group, "u") else { continue };
            let Some(r) = merged.require_password_change.as_ref() else { continue };
            let Some(last) = w.live[i].last else { continue };
            if last < r.since {
                continue;
            }
            // requirePasswordChange excludes a reset and a literal on the flag it drives
            if let Action::SetFlags { before, after, .. } = &u.action {
                let (b, a) = if r.with_mfa {
                    (before.force_change_password_next_sign_in_with_mfa, after.force_change_password_next_sign_in_with_mfa)
                } else {
                    (before.force_change_password_next_sign_in, after.force_change_password_next_sign_in)
                };
                prop_assert!(b || !a, "complied user flagged again: {u:?}");
            }
            prop_assert!(!matches!(u.action, Action::ResetPassword { .. }), "{u:?}");
        }
    }

    #[test]
    fn merging_the_files_in_any_order_gives_the_same_plan(
        w in world(),
        order in Just((0..FILES).collect::<Vec<_>>()).prop_shuffle(),
    ) {
        let given = parts(&w);
        let shuffled: Vec<TenantDesired> = order.iter().map(|&i| given[i].clone()).collect();
        let a = plan(&w, &w.live, given);
        let b = plan(&w, &w.live, shuffled);
        prop_assert_eq!(a.is_some(), b.is_some());
        if let (Some(a), Some(b)) = (a, b) {
            let strip = |p: &Plan| serde_json::to_value(&p.tenants[0].users).unwrap();
            prop_assert_eq!(strip(&a), strip(&b));
        }
    }
}

/// Found by the convergence property (first written as "converges in one run", which failed): a
/// synced user whose reset goes through resetPassword (which always sets
/// `forceChangePasswordNextSignIn`) while a literal declares that flag false. The plan's `after`
/// now carries the literal (diff rule 19) and apply sends a flags PATCH after the reset, so one
/// run converges: the simulation leaves the flag false and the next plan has no change.
#[test]
fn reset_via_the_api_with_a_literal_false_flag_converges_in_one_run() {
    let d = Directives {
        force_change_password_next_sign_in: Some(false),
        reset_password: Some(ResetPassword {
            not_before: now() - Duration::days(1),
            password: PasswordSource::Generate { length: 20 },
            force_change_after: false,
            force_change_after_with_mfa: false,
        }),
        ..Default::default()
    };
    assert!(contradictions(&d).is_empty());
    let w = World {
        live: vec![LiveSpec {
            force: Some(false),
            force_mfa: None,
            last: None,
            synced: true,
            privileged: false,
        }],
        own: vec![Some((d, 0))],
        group: None,
        delegated_reset_available: true,
        synced_flags_writable: true,
    };
    let first = plan(&w, &w.live, parts(&w)).unwrap();
    let Action::ResetPassword { method, after, .. } = &first.tenants[0].users[0].action else {
        panic!("a reset: {first:#?}")
    };
    assert_eq!(*method, ResetMethod::ResetPasswordApi);
    assert!(!after.force_change_password_next_sign_in, "{first:#?}");
    let mut live = w.live.clone();
    apply(&first, &mut live);
    assert_eq!(
        live[0].force,
        Some(false),
        "the flags PATCH after the reset"
    );
    let second = plan(&w, &live, parts(&w)).unwrap();
    assert!(
        !second.tenants[0].users[0].action.is_change(),
        "{second:#?}"
    );
}
