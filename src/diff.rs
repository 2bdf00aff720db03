//! Step 3 of the pipeline: the diff. A pure function from (desired, live, now) to a plan: no I/O,
//! no clock (`now` is a parameter), deterministic order.
//!
//! [`diff`] maps every resolved [`LiveTenant`] to a [`TenantPlan`]; [`diff_user_in`] decides one
//! user. The rules, in the order they are applied (`L` is the live `lastPasswordChangeDateTime`,
//! `null` meaning "never changed"; `f` is `forceChangePasswordNextSignIn`, `fm` is
//! `forceChangePasswordNextSignInWithMfa`):
//!
//! | # | directive / situation | condition | outcome |
//! |---|---|---|---|
//! | 1 | literal `f: v` / `fm: v` | live flag == v | nothing for this flag |
//! | 2 | literal `f: v` / `fm: v` | live flag != v | the flag is set to v (`SetFlags`, or the reset's `after`) |
//! | 3 | no literal for a flag | | the flag keeps its live value (or the reset's `forceChangeAfter*` value when a reset is due) |
//! | 4 | `requirePasswordChange {since}` | `L >= since` | met: the user complied; never forced again |
//! | 5 | `requirePasswordChange {since}` | `L < since` or `L` null, `since > now` | not due yet: nothing |
//! | 6 | `requirePasswordChange {since}` (no MFA) | `L < since` or null, `f` or `fm` set (after literals) | met by the flag already set: nothing |
//! | 7 | `requirePasswordChange {since, withMfa}` | `L < since` or null, `fm` set (after literals) | met: nothing (`f` alone does not satisfy an MFA requirement) |
//! | 8 | `requirePasswordChange` | due and not met | its flag (`f`, or `fm` with `withMfa`) is set to true |
//! | 9 | `requirePasswordChange` | due, not met, and a literal declares its flag `false` | `Blocked(ConflictingDirectives)` |
//! | 10 | `resetPassword {notBefore}` | `L >= notBefore` | met: already reset; nothing |
//! | 11 | `resetPassword {notBefore}` | `L < notBefore` or null, `notBefore > now` | not due yet: nothing |
//! | 12 | `resetPassword {notBefore}` | `L < notBefore` or null, `notBefore <= now` | `ResetPassword`; `after` = (`forceChangeAfter`, `forceChangeAfterWithMfa`), then literals (rule 2 wins over `forceChangeAfter*`), then an open `requirePasswordChange` sets its flag (the reset would otherwise make it look complied) |
//! | 13a | any change wanted (rules 2, 8, 12) | Entra ID does not manage the password (guest, external, cloud user of a federated domain) | `Blocked(PasswordNotManagedByEntra)` (never when nothing changes) |
//! | 13 | any change wanted (rules 2, 8, 12) | user holds any directory role (active or eligible, direct or through a group, any scope), no `allowPrivileged` | `Blocked(PrivilegedTarget)` (never when nothing changes) |
//! | 13b | any change wanted | the user is a member of a restricted management administrative unit the credential is not scoped to (`--admin-unit`) | `Blocked(RestrictedAdministrativeUnit)`, naming the units |
//! | 13c | flags only (rules 2, 8), no reset | synced user (`onPremisesSyncEnabled`), tenant not declared to accept flag changes of synced users (`--synced-flags-writable`) | `Blocked(SyncedUserFlags)`: set "User must change password at next logon" in Active Directory |
//! | 14 | reset, synced user, `systemGenerated` | | `Blocked(UnsupportedPasswordSource)`: hybrid tenants must supply the password |
//! | 15 | reset, synced user, or cloud user with `systemGenerated` | | method `reset_password_api` (delegated only) |
//! | 16 | reset, cloud user, `generate`/`env`/`file` | | method `patch_password_profile` (app or delegated) |
//! | 17 | reset (either method) | caller is delegated as this very user | `Blocked(CallersOwnAccount)` |
//! | 18 | reset via the API | caller is an application and no delegated credential is available | `Blocked(NeedsDelegatedCredential)` |
//! | 19 | reset via the API | | resetPassword always leaves `f` true ("authenticationMethod: resetPassword"): `after.f` is true unless a literal declares `f: false`, which a flags PATCH after the reset restores (apply sends one whenever `after` is not (`f` true, `fm` false)); the reason says which |
//! | 19a | reset via the API, synced user, flag changes of synced users not accepted | `after` is not what resetPassword leaves | no flags PATCH follows: `after` = (`f` true, `fm` false), the reason says which declared flags are left to Active Directory |
//! | 20 | nothing above wants a change | | `NoChange`, with the reason for every directive |
//!
//! Design choices made here:
//! - **The WithMfa flag satisfies a plain requirement** (rule 6): with `fm` set the user is forced
//!   to change the password at next sign-in anyway (after MFA), which is what the requirement
//!   asks. The reverse is not true (rule 7): `f` does not make the user do MFA first.
//! - **Not yet due means no change** (rules 5, 11): forcing a change before `since` would be undone
//!   by the requirement itself (the user changes before `since`, so is forced again after it).
//! - **A literal is the last word on its flag** (rule 2 over `forceChangeAfter*`): the next run
//!   compares live flags against the literal, so anything else would not converge. Where a literal
//!   would make `requirePasswordChange` impossible, that is a contradiction, not a silent no-op:
//!   the user is blocked (rule 9) and nothing is written.
//! - **systemGenerated for a cloud user goes through resetPassword** (rule 15): only that API can
//!   generate the password. Without a delegated credential it is `NeedsDelegatedCredential`
//!   (rule 18) rather than `UnsupportedPasswordSource`: the source is fine, the credential is
//!   missing.
//! - **No reset of the caller's own account by either method** (rule 17): resetPassword refuses it,
//!   and a PATCH would change the password of the session that runs pwdrift. Flag changes on the
//!   caller's own account are allowed. When the caller is an application and a separate delegated
//!   credential exists, its user id is not known here; Graph refuses that case at apply time.
//! - Blockers are checked in this order: conflicting directives, password not managed by Entra,
//!   privileged target, restricted administrative unit, synced user's flags, unsupported
//!   password source, caller's own account, delegated credential. One blocker is reported.
//! - **Synced users' flags are refused by Graph unless known otherwise** (rules 13c, 19a): Graph
//!   refuses updates of properties mastered on-premises, and flag-only `passwordProfile` PATCHes
//!   of synced users are reported refused too; a reset of a synced user therefore goes ahead
//!   without the flags PATCH after it.
//! - Nothing resets a password unless a due, unmet `resetPassword` asks for it (rule 12).

use chrono::{DateTime, SecondsFormat, Utc};

use crate::config::{Directives, PasswordSource};
use crate::graph::model::ForceFlags;
use crate::live::{Caller, LiveTenant, Target};
use crate::plan::{self, Action, Blocker, Plan, ResetMethod, TenantPlan, UserPlan};

/// Computes the plan for every tenant. Users are ordered by userPrincipalName (case-insensitive),
/// then object id; tenants keep the given order.
pub fn diff(tenants: &[LiveTenant], now: DateTime<Utc>) -> Plan {
    diff_owned(tenants.to_vec(), now)
}

/// [`diff`], consuming the live state: each user's strings move into its plan entry instead of
/// being copied, and the live state is freed as the plan grows (with every user of a large
/// tenant declared, live state and plan side by side were the peak of a run).
pub fn diff_owned(tenants: Vec<LiveTenant>, now: DateTime<Utc>) -> Plan {
    let decided = tenants
        .into_iter()
        .map(|t| (t, now, plan::ClockSource::Local))
        .collect();
    diff_decided(decided, now)
}

/// [`diff_owned`], each tenant decided by its own clock (Graph's time as its answers gave it,
/// recorded in the plan with whose clock it is); `created_at` is the plan's.
pub fn diff_decided(
    tenants: Vec<(LiveTenant, DateTime<Utc>, plan::ClockSource)>,
    created_at: DateTime<Utc>,
) -> Plan {
    let tenants = tenants
        .into_iter()
        .map(|(t, now, clock)| {
            let LiveTenant {
                tenant,
                tenant_id,
                caller,
                delegated_reset_available,
                targets,
                notes,
                excluded,
                synced_flags_writable,
            } = t;
            let mut users: Vec<UserPlan> = Vec::with_capacity(targets.len());
            for target in targets.into_values() {
                let action = diff_user_in(
                    &target,
                    &caller,
                    delegated_reset_available,
                    synced_flags_writable,
                    now,
                );
                let Target {
                    live,
                    directives,
                    mut declared_at,
                } = *target;
                declared_at.sort();
                declared_at.dedup();
                users.push(UserPlan {
                    fingerprint: live.fingerprint(),
                    last_password_change: live.last_password_change,
                    user_id: live.id,
                    user_principal_name: live.user_principal_name,
                    declared_at,
                    allow_privileged: directives.allow_privileged,
                    synced: live.synced,
                    action,
                });
            }
            sort_users(&mut users);
            TenantPlan {
                tenant,
                tenant_id,
                decided_at: now,
                clock,
                users,
                notes,
                excluded,
            }
        })
        .collect();
    Plan {
        format_version: plan::FORMAT_VERSION.to_owned(),
        pwdrift_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_at,
        // set by the command, which knows the files and filters
        made_from: plan::MadeFrom::default(),
        tenants,
        content_hash: None,
    }
}

/// Sorts users by UPN (case-insensitive), then id. Sorted through a key of the UPN's first 16
/// lowercase bytes held inline, the full comparison only for equal prefixes, then each user is
/// moved into place once: sorting a million `UserPlan`s directly moved each large struct some
/// twenty times and chased two pointers per comparison, a cost per user that grew with the
/// tenant.
fn sort_users(users: &mut [UserPlan]) {
    /// The first 16 lowercase bytes as two integers (compared as integers, not by `memcmp`).
    fn prefix(upn: &str) -> (u64, u64) {
        let mut key = [0u8; 16];
        if upn.is_ascii() {
            for (k, b) in key.iter_mut().zip(upn.bytes()) {
                *k = b.to_ascii_lowercase();
            }
        } else {
            for (k, b) in key.iter_mut().zip(upn.to_lowercase().bytes()) {
                *k = b;
            }
        }
        let (hi, lo) = key.split_at(8);
        (
            u64::from_be_bytes(hi.try_into().expect("8 bytes")),
            u64::from_be_bytes(lo.try_into().expect("8 bytes")),
        )
    }
    let mut keys: Vec<((u64, u64), usize)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (prefix(&u.user_principal_name), i))
        .collect();
    keys.sort_unstable_by(|(pa, a), (pb, b)| {
        pa.cmp(pb).then_with(|| {
            let (a, b) = (&users[*a], &users[*b]);
            cmp_lowercase(&a.user_principal_name, &b.user_principal_name)
                .then_with(|| a.user_id.cmp(&b.user_id))
        })
    });
    // position p receives the user at keys[p]: followed cycle by cycle, one swap per user
    let mut from: Vec<usize> = keys.into_iter().map(|(_, i)| i).collect();
    for start in 0..from.len() {
        let mut at = start;
        loop {
            let src = from[at];
            from[at] = at;
            if src == start || src == at {
                break;
            }
            users.swap(at, src);
            at = src;
        }
    }
}

/// `a.to_lowercase().cmp(&b.to_lowercase())` without allocating when both are ASCII (sorting
/// 100,000 users compares about 1.7 million pairs).
fn cmp_lowercase(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.bytes().map(|c| c.to_ascii_lowercase()))
    } else {
        a.to_lowercase().cmp(&b.to_lowercase())
    }
}

/// One of the two force flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flag {
    Plain,
    Mfa,
}

impl Flag {
    const BOTH: [Flag; 2] = [Flag::Plain, Flag::Mfa];

    fn name(self) -> &'static str {
        match self {
            Flag::Plain => "forceChangePasswordNextSignIn",
            Flag::Mfa => "forceChangePasswordNextSignInWithMfa",
        }
    }

    fn get(self, flags: &ForceFlags) -> bool {
        match self {
            Flag::Plain => flags.force_change_password_next_sign_in,
            Flag::Mfa => flags.force_change_password_next_sign_in_with_mfa,
        }
    }

    fn set(self, flags: &mut ForceFlags, value: bool) {
        match self {
            Flag::Plain => flags.force_change_password_next_sign_in = value,
            Flag::Mfa => flags.force_change_password_next_sign_in_with_mfa = value,
        }
    }

    fn literal(self, d: &Directives) -> Option<bool> {
        match self {
            Flag::Plain => d.force_change_password_next_sign_in,
            Flag::Mfa => d.force_change_password_next_sign_in_with_mfa,
        }
    }
}

/// Where a one-shot directive (`requirePasswordChange`, `resetPassword`) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// `L >= at`: done.
    Met,
    /// `at > now` and not met: wait.
    NotYet,
    /// due and not met.
    Open,
}

fn due(at: DateTime<Utc>, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Due {
    match last {
        Some(l) if l >= at => Due::Met,
        _ if at > now => Due::NotYet,
        _ => Due::Open,
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// "password last changed L (before)" / "... (at or after since)" / "password never changed".
fn last_change(last: Option<DateTime<Utc>>, at_name: &str, met: bool) -> String {
    match last {
        None => "password never changed (lastPasswordChangeDateTime is null)".to_owned(),
        Some(l) if met => format!("password last changed {} (at or after {at_name})", ts(l)),
        Some(l) => format!("password last changed {} (before)", ts(l)),
    }
}

fn describe_flags(before: &ForceFlags, after: &ForceFlags) -> String {
    let changed: Vec<String> = Flag::BOTH
        .iter()
        .filter(|f| f.get(before) != f.get(after))
        .map(|f| format!("{} {} -> {}", f.name(), f.get(before), f.get(after)))
        .collect();
    if changed.is_empty() {
        "flags unchanged".to_owned()
    } else {
        changed.join(", ")
    }
}

/// Decides what happens to one user in a tenant that refuses flag changes of synced users (the
/// tests' shorthand for [`diff_user_in`]).
#[cfg(test)]
pub fn diff_user(
    target: &Target,
    caller: &Caller,
    delegated_reset_available: bool,
    now: DateTime<Utc>,
) -> Action {
    diff_user_in(target, caller, delegated_reset_available, false, now)
}

/// Decides what happens to one user. See the module documentation for the rules;
/// `synced_flags_writable` says whether the tenant accepts flag changes of synced users (rules
/// 13c and 19a).
pub fn diff_user_in(
    target: &Target,
    caller: &Caller,
    delegated_reset_available: bool,
    synced_flags_writable: bool,
    now: DateTime<Utc>,
) -> Action {
    let live = &target.live;
    let d = &target.directives;
    let last = live.last_password_change;
    let mut reasons: Vec<String> = Vec::new();

    // Rules 1-2: literals (reported against live).
    for flag in Flag::BOTH {
        if let Some(v) = flag.literal(d) {
            let l = flag.get(&live.flags);
            reasons.push(if l == v {
                format!("{} is {v} as declared", flag.name())
            } else {
                format!("{} declared {v}, live {l}", flag.name())
            });
        }
    }

    // Rules 10-12: is a reset wanted? Decided before the flags, because a reset changes the base
    // the flags start from.
    let mut reset_wanted = None;
    if let Some(rp) = &d.reset_password {
        let state = due(rp.not_before, last, now);
        let prefix = format!("resetPassword notBefore {}", ts(rp.not_before));
        reasons.push(match state {
            Due::Met => format!(
                "{prefix}: {}: already reset",
                last_change(last, "notBefore", true)
            ),
            Due::NotYet => format!("{prefix}: not due yet (now {})", ts(now)),
            Due::Open => format!("{prefix}: {}: reset", last_change(last, "notBefore", false)),
        });
        if state == Due::Open {
            reset_wanted = Some(rp);
        }
    }

    // Rule 3: the base the flags start from; rule 2: literals have the last word.
    let mut after = match reset_wanted {
        Some(rp) => ForceFlags {
            force_change_password_next_sign_in: rp.force_change_after,
            force_change_password_next_sign_in_with_mfa: rp.force_change_after_with_mfa,
        },
        None => live.flags,
    };
    for flag in Flag::BOTH {
        if let Some(v) = flag.literal(d) {
            if reset_wanted.is_some() && flag.get(&after) != v {
                let param = match flag {
                    Flag::Plain => "forceChangeAfter",
                    Flag::Mfa => "forceChangeAfterWithMfa",
                };
                reasons.push(format!(
                    "resetPassword {param} {} overridden by {} declared {v}",
                    flag.get(&after),
                    flag.name()
                ));
            }
            flag.set(&mut after, v);
        }
    }

    // Rules 4-9: requirePasswordChange.
    if let Some(rpc) = &d.require_password_change {
        let state = due(rpc.since, last, now);
        let prefix = format!(
            "requirePasswordChange{} since {}",
            if rpc.with_mfa { " (withMfa)" } else { "" },
            ts(rpc.since)
        );
        match state {
            Due::Met => reasons.push(format!(
                "{prefix}: {}: already complied",
                last_change(last, "since", true)
            )),
            Due::NotYet => reasons.push(format!("{prefix}: not due yet (now {})", ts(now))),
            Due::Open => {
                let needed = if rpc.with_mfa { Flag::Mfa } else { Flag::Plain };
                let satisfied_by = if rpc.with_mfa {
                    [Flag::Mfa].into_iter().find(|f| f.get(&after))
                } else {
                    Flag::BOTH.into_iter().find(|f| f.get(&after))
                };
                let history = last_change(last, "since", false);
                if let Some(flag) = satisfied_by {
                    reasons.push(if reset_wanted.is_some() {
                        format!("{prefix}: {history}: the reset leaves {} set", flag.name())
                    } else {
                        format!("{prefix}: {history}, but {} is already set", flag.name())
                    });
                } else if needed.literal(d) == Some(false) {
                    return Action::Blocked {
                        blocker: Blocker::ConflictingDirectives,
                        detail: format!(
                            "{prefix}: {history}: it needs {} true, but {} is declared false",
                            needed.name(),
                            needed.name()
                        ),
                    };
                } else {
                    needed.set(&mut after, true);
                    reasons.push(format!("{prefix}: {history}: set {}", needed.name()));
                }
            }
        }
    }

    let changed = reset_wanted.is_some() || after != live.flags;
    if !changed {
        let reason = if d.is_empty() {
            "no directive (the user is only declared as managed)".to_owned()
        } else {
            reasons.join("; ")
        };
        return Action::NoChange { reason };
    }

    // Rule 13a: users whose password Entra ID does not manage.
    if let Some(why) = &live.unmanaged_password {
        return Action::Blocked {
            blocker: Blocker::PasswordNotManagedByEntra,
            detail: format!("the user is {why}; because: {}", reasons.join("; ")),
        };
    }

    // Rule 13: privileged users.
    if !live.privileged_roles.is_empty() && !d.allow_privileged {
        let wanted = match reset_wanted {
            Some(_) => format!(
                "reset the password ({})",
                describe_flags(&live.flags, &after)
            ),
            None => describe_flags(&live.flags, &after),
        };
        return Action::Blocked {
            blocker: Blocker::PrivilegedTarget,
            detail: format!(
                "holds privileged role(s) {} and allowPrivileged is not declared; wanted: {wanted}; because: {}",
                live.privileged_roles.join(", "),
                reasons.join("; ")
            ),
        };
    }

    // Rule 13b: members of restricted management administrative units the credential is not
    // scoped to.
    if !live.restricted_units.is_empty() {
        let wanted = match reset_wanted {
            Some(_) => format!(
                "reset the password ({})",
                describe_flags(&live.flags, &after)
            ),
            None => describe_flags(&live.flags, &after),
        };
        let units: Vec<String> = live
            .restricted_units
            .iter()
            .map(|u| format!("'{u}'"))
            .collect();
        return Action::Blocked {
            blocker: Blocker::RestrictedAdministrativeUnit,
            detail: format!(
                "member of restricted management administrative unit(s) {}, which only administrators scoped to the unit may change, and the credential is not declared scoped to it (--admin-unit); wanted: {wanted}; because: {}",
                units.join(", "),
                reasons.join("; ")
            ),
        };
    }

    // Rule 13c: flag changes of users mastered on-premises.
    if reset_wanted.is_none() && live.synced && !synced_flags_writable {
        return Action::Blocked {
            blocker: Blocker::SyncedUserFlags,
            detail: format!(
                "the user is synced from on-premises Active Directory (onPremisesSyncEnabled) and Graph refuses flag changes of on-premises mastered users; wanted: {}; set \"User must change password at next logon\" in Active Directory instead; because: {}",
                describe_flags(&live.flags, &after),
                reasons.join("; ")
            ),
        };
    }

    let Some(rp) = reset_wanted else {
        return Action::SetFlags {
            before: live.flags,
            after,
            reason: reasons.join("; "),
        };
    };

    // Rules 14-19: how to reset.
    let system = matches!(rp.password, PasswordSource::SystemGenerated);
    if live.synced && system {
        return Action::Blocked {
            blocker: Blocker::UnsupportedPasswordSource,
            detail: format!(
                "a reset is due but the user is synced from on-premises: resetPassword needs a supplied password, not systemGenerated; because: {}",
                reasons.join("; ")
            ),
        };
    }
    let method = if live.synced || system {
        ResetMethod::ResetPasswordApi
    } else {
        ResetMethod::PatchPasswordProfile
    };
    if let Caller::Delegated { user_id } = caller {
        if *user_id == live.id {
            return Action::Blocked {
                blocker: Blocker::CallersOwnAccount,
                detail: format!(
                    "a reset is due but this is the account pwdrift is signed in as; because: {}",
                    reasons.join("; ")
                ),
            };
        }
    }
    if method == ResetMethod::ResetPasswordApi
        && !matches!(caller, Caller::Delegated { .. })
        && !delegated_reset_available
    {
        let why = if live.synced {
            "the user is synced from on-premises (PATCH cannot set its password)"
        } else {
            "a systemGenerated password can only be made by resetPassword"
        };
        return Action::Blocked {
            blocker: Blocker::NeedsDelegatedCredential,
            detail: format!(
                "a reset is due and {why}; resetPassword accepts only a delegated credential and the caller is an application; because: {}",
                reasons.join("; ")
            ),
        };
    }
    // Rule 19: resetPassword leaves forceChangePasswordNextSignIn true. A literal `false` is
    // honoured by a flags PATCH after the reset (apply sends one whenever `after` is not what
    // resetPassword leaves), so that the next run finds the literal and changes nothing.
    if method == ResetMethod::ResetPasswordApi && !after.force_change_password_next_sign_in {
        if Flag::Plain.literal(d) == Some(false) {
            reasons.push(
                "resetPassword makes the user change the password at next sign-in: a flags \
                 PATCH after it sets forceChangePasswordNextSignIn back to false as declared"
                    .to_owned(),
            );
        } else {
            reasons.push(
                "resetPassword always makes the user change the password at next sign-in: \
                 forceChangePasswordNextSignIn will be true although false was wanted"
                    .to_owned(),
            );
            after.force_change_password_next_sign_in = true;
        }
    }
    // Rule 19a: no flags PATCH after resetPassword for a synced user (Graph refuses it unless
    // the tenant accepts flag changes of synced users): the flags stay as resetPassword leaves
    // them.
    let left = ForceFlags {
        force_change_password_next_sign_in: true,
        force_change_password_next_sign_in_with_mfa: false,
    };
    if method == ResetMethod::ResetPasswordApi
        && live.synced
        && !synced_flags_writable
        && after != left
    {
        reasons.push(format!(
            "the user is synced from on-premises: no flags PATCH follows the reset (Graph refuses flag changes of on-premises mastered users), so the flags stay as resetPassword leaves them ({} wanted); set them in Active Directory",
            describe_flags(&left, &after)
        ));
        after = left;
    }
    Action::ResetPassword {
        method,
        password: rp.password.clone(),
        before: live.flags,
        after,
        reason: reasons.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::config::{Origin, RequirePasswordChange, ResetPassword};
    use crate::live::LiveUser;

    /// The keyed sort gives exactly the order of sorting the users themselves: UPNs that share
    /// their first 16 bytes, differ only in case, are not ASCII (`Ä` lowercases to two bytes),
    /// are shorter than the key, or are equal (then the id decides).
    #[test]
    fn users_sort_by_upn_case_insensitively_then_id() {
        let upns = [
            "ada.andersen100044@contoso.com",
            "ada.andersen100043@contoso.com",
            "ADA.andersen100043@contoso.com",
            "Ada.Andersen1000@contoso.com",
            "äda@contoso.com",
            "Äda@contoso.com",
            "zed@contoso.com",
            "a@x",
            "A@x",
            "ad@x",
            "émile.zola.long.name@contoso.com",
            "Émile.zola.long.name@contoso.com",
            "b",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut users: Vec<UserPlan> = Vec::new();
        for i in 0..400 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let upn = upns[(state % upns.len() as u64) as usize];
            users.push(UserPlan {
                user_id: format!("{:04}", (state >> 20) % 97 + i % 3),
                user_principal_name: upn.to_owned(),
                declared_at: vec![],
                fingerprint: i.to_string(),
                allow_privileged: false,
                synced: false,
                last_password_change: None,
                action: Action::NoChange {
                    reason: String::new(),
                },
            });
        }
        let mut expected = users.clone();
        expected.sort_by(|a, b| {
            a.user_principal_name
                .to_lowercase()
                .cmp(&b.user_principal_name.to_lowercase())
                .then_with(|| a.user_id.cmp(&b.user_id))
        });
        sort_users(&mut users);
        let key = |u: &UserPlan| (u.user_principal_name.to_lowercase(), u.user_id.clone());
        assert_eq!(
            users.iter().map(key).collect::<Vec<_>>(),
            expected.iter().map(key).collect::<Vec<_>>()
        );
        // a permutation: every user once
        let mut seen: Vec<String> = users.iter().map(|u| u.fingerprint.clone()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 400);
    }

    const ID: &str = "2f1c6a4e-0000-4000-8000-000000000001";
    const ADMIN_ID: &str = "9a9a9a9a-0000-4000-8000-000000000009";

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn now() -> DateTime<Utc> {
        t("2026-11-23T12:00:00Z")
    }

    fn flags(f: bool, fm: bool) -> ForceFlags {
        ForceFlags {
            force_change_password_next_sign_in: f,
            force_change_password_next_sign_in_with_mfa: fm,
        }
    }

    fn live(fl: ForceFlags, last: Option<&str>) -> LiveUser {
        LiveUser {
            id: ID.to_owned(),
            user_principal_name: "bob@contoso.com".to_owned(),
            flags: fl,
            password_policies: vec![],
            last_password_change: last.map(t),
            synced: false,
            on_premises_security_identifier: None,
            privileged_roles: vec![],
            unmanaged_password: None,
            restricted_units: Vec::new(),
        }
    }

    fn target(live: LiveUser, directives: Directives) -> Target {
        Target {
            live,
            directives,
            declared_at: vec![Origin {
                file: PathBuf::from("desired/contoso.yaml").into(),
                line: 4,
                column: 5,
            }],
        }
    }

    fn rpc(since: &str, with_mfa: bool) -> Option<RequirePasswordChange> {
        Some(RequirePasswordChange {
            since: t(since),
            with_mfa,
        })
    }

    fn reset(
        not_before: &str,
        password: PasswordSource,
        after: ForceFlags,
    ) -> Option<ResetPassword> {
        Some(ResetPassword {
            not_before: t(not_before),
            password,
            force_change_after: after.force_change_password_next_sign_in,
            force_change_after_with_mfa: after.force_change_password_next_sign_in_with_mfa,
        })
    }

    fn env_pw() -> PasswordSource {
        PasswordSource::Env {
            var: "PWDRIFT_BOB_PASSWORD".to_owned(),
        }
    }

    fn app(target: &Target) -> Action {
        diff_user(target, &Caller::Application, false, now())
    }

    // ---------------------------------------------------------------------------------------
    // Hand-written cases: one (or more) per row of the table in the module documentation.
    // ---------------------------------------------------------------------------------------

    #[test]
    fn row1_literal_equal_is_no_change() {
        let tg = target(
            live(flags(false, true), None),
            Directives {
                force_change_password_next_sign_in: Some(false),
                force_change_password_next_sign_in_with_mfa: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::NoChange {
                reason: "forceChangePasswordNextSignIn is false as declared; \
                         forceChangePasswordNextSignInWithMfa is true as declared"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row2_literal_differs_sets_flag_and_keeps_the_other() {
        let tg = target(
            live(flags(true, true), None),
            Directives {
                force_change_password_next_sign_in: Some(false),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::SetFlags {
                before: flags(true, true),
                after: flags(false, true),
                reason: "forceChangePasswordNextSignIn declared false, live true".to_owned()
            }
        );
    }

    #[test]
    fn row3_no_directive_is_no_change_whatever_the_flags() {
        let tg = target(
            live(flags(true, false), Some("2020-01-01T00:00:00Z")),
            Directives::default(),
        );
        assert_eq!(
            app(&tg),
            Action::NoChange {
                reason: "no directive (the user is only declared as managed)".to_owned()
            }
        );
    }

    #[test]
    fn row4_complied_user_is_never_forced_again() {
        let tg = target(
            live(flags(false, false), Some("2026-11-21T08:00:00Z")),
            Directives {
                require_password_change: rpc("2026-11-20T00:00:00Z", false),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::NoChange {
                reason: "requirePasswordChange since 2026-11-20T00:00:00Z: password last changed \
                         2026-11-21T08:00:00Z (at or after since): already complied"
                    .to_owned()
            }
        );
        // exactly at `since` counts as complied
        let mut tg2 = tg.clone();
        tg2.live.last_password_change = Some(t("2026-11-20T00:00:00Z"));
        assert!(matches!(app(&tg2), Action::NoChange { .. }));
    }

    #[test]
    fn row5_requirement_not_due_yet_is_no_change() {
        let tg = target(
            live(flags(false, false), Some("2026-03-01T00:00:00Z")),
            Directives {
                require_password_change: rpc("2026-12-01T00:00:00Z", false),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::NoChange {
                reason: "requirePasswordChange since 2026-12-01T00:00:00Z: not due yet (now \
                         2026-11-23T12:00:00Z)"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row6_requirement_met_by_either_flag_already_set() {
        for live_flags in [flags(true, false), flags(false, true)] {
            let tg = target(
                live(live_flags, Some("2026-03-01T00:00:00Z")),
                Directives {
                    require_password_change: rpc("2026-11-20T00:00:00Z", false),
                    ..Default::default()
                },
            );
            let name = if live_flags.force_change_password_next_sign_in {
                "forceChangePasswordNextSignIn"
            } else {
                "forceChangePasswordNextSignInWithMfa"
            };
            assert_eq!(
                app(&tg),
                Action::NoChange {
                    reason: format!(
                        "requirePasswordChange since 2026-11-20T00:00:00Z: password last changed \
                         2026-03-01T00:00:00Z (before), but {name} is already set"
                    )
                }
            );
        }
    }

    #[test]
    fn row7_mfa_requirement_not_met_by_plain_flag() {
        let tg = target(
            live(flags(true, false), Some("2026-03-01T00:00:00Z")),
            Directives {
                require_password_change: rpc("2026-11-20T00:00:00Z", true),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::SetFlags {
                before: flags(true, false),
                after: flags(true, true),
                reason: "requirePasswordChange (withMfa) since 2026-11-20T00:00:00Z: password last \
                         changed 2026-03-01T00:00:00Z (before): set forceChangePasswordNextSignInWithMfa"
                    .to_owned()
            }
        );
        let mut met = tg.clone();
        met.live.flags = flags(false, true);
        assert!(matches!(app(&met), Action::NoChange { .. }));
    }

    #[test]
    fn row8_open_requirement_sets_its_flag_also_when_never_changed() {
        let tg = target(
            live(flags(false, false), None),
            Directives {
                require_password_change: rpc("2026-11-20T00:00:00Z", false),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::SetFlags {
                before: flags(false, false),
                after: flags(true, false),
                reason: "requirePasswordChange since 2026-11-20T00:00:00Z: password never changed \
                         (lastPasswordChangeDateTime is null): set forceChangePasswordNextSignIn"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row9_requirement_against_literal_false_is_a_conflict() {
        let tg = target(
            live(flags(true, false), Some("2026-03-01T00:00:00Z")),
            Directives {
                force_change_password_next_sign_in: Some(false),
                require_password_change: rpc("2026-11-20T00:00:00Z", false),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::Blocked {
                blocker: Blocker::ConflictingDirectives,
                detail: "requirePasswordChange since 2026-11-20T00:00:00Z: password last changed \
                         2026-03-01T00:00:00Z (before): it needs forceChangePasswordNextSignIn \
                         true, but forceChangePasswordNextSignIn is declared false"
                    .to_owned()
            }
        );
        // once complied, the literal false is simply applied: no conflict
        let mut complied = tg.clone();
        complied.live.last_password_change = Some(t("2026-11-22T00:00:00Z"));
        assert!(matches!(app(&complied), Action::SetFlags { .. }));
    }

    #[test]
    fn row10_reset_already_done_is_no_change() {
        let tg = target(
            live(flags(false, false), Some("2026-11-21T00:00:00Z")),
            Directives {
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::NoChange {
                reason: "resetPassword notBefore 2026-11-20T00:00:00Z: password last changed \
                         2026-11-21T00:00:00Z (at or after notBefore): already reset"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row11_reset_not_due_yet_is_no_change() {
        let tg = target(
            live(flags(false, false), None),
            Directives {
                reset_password: reset("2026-12-24T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::NoChange {
                reason: "resetPassword notBefore 2026-12-24T00:00:00Z: not due yet (now \
                         2026-11-23T12:00:00Z)"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row12_reset_by_patch_carries_final_flags() {
        let tg = target(
            live(flags(false, false), Some("2026-03-01T00:00:00Z")),
            Directives {
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::ResetPassword {
                method: ResetMethod::PatchPasswordProfile,
                password: env_pw(),
                before: flags(false, false),
                after: flags(true, false),
                reason: "resetPassword notBefore 2026-11-20T00:00:00Z: password last changed \
                         2026-03-01T00:00:00Z (before): reset"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row12_literal_overrides_force_change_after_and_open_requirement_adds_its_flag() {
        let tg = target(
            live(flags(false, false), Some("2026-03-01T00:00:00Z")),
            Directives {
                force_change_password_next_sign_in: Some(false),
                require_password_change: rpc("2026-11-01T00:00:00Z", true),
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::ResetPassword {
                method: ResetMethod::PatchPasswordProfile,
                password: env_pw(),
                before: flags(false, false),
                after: flags(false, true),
                reason: "forceChangePasswordNextSignIn is false as declared; \
                         resetPassword notBefore 2026-11-20T00:00:00Z: password last changed \
                         2026-03-01T00:00:00Z (before): reset; \
                         resetPassword forceChangeAfter true overridden by \
                         forceChangePasswordNextSignIn declared false; \
                         requirePasswordChange (withMfa) since 2026-11-01T00:00:00Z: password last \
                         changed 2026-03-01T00:00:00Z (before): set forceChangePasswordNextSignInWithMfa"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row13a_unmanaged_password_blocks_any_change_even_with_allow_privileged() {
        let mut l = live(flags(false, false), Some("2026-03-01T00:00:00Z"));
        l.unmanaged_password = Some("a guest (userType Guest): its home tenant owns it".into());
        l.privileged_roles = vec!["Global Administrator (eligible)".to_owned()];
        let flag_change = target(
            l.clone(),
            Directives {
                force_change_password_next_sign_in: Some(true),
                allow_privileged: true,
                ..Default::default()
            },
        );
        assert_eq!(
            app(&flag_change),
            Action::Blocked {
                blocker: Blocker::PasswordNotManagedByEntra,
                detail: "the user is a guest (userType Guest): its home tenant owns it; because: \
                     forceChangePasswordNextSignIn declared true, live false"
                    .to_owned()
            }
        );
        let reset = target(
            l.clone(),
            Directives {
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        assert!(matches!(
            app(&reset),
            Action::Blocked {
                blocker: Blocker::PasswordNotManagedByEntra,
                ..
            }
        ));
        // nothing to change: not blocked
        let same = target(
            l,
            Directives {
                force_change_password_next_sign_in: Some(false),
                ..Default::default()
            },
        );
        assert!(matches!(app(&same), Action::NoChange { .. }));
    }

    #[test]
    fn row13_eligible_and_group_held_roles_block_like_active_ones() {
        let mut l = live(flags(false, false), None);
        l.privileged_roles =
            vec!["Privileged Role Administrator (eligible, via group Tier0 Candidates)".to_owned()];
        let tg = target(
            l,
            Directives {
                force_change_password_next_sign_in: Some(true),
                ..Default::default()
            },
        );
        let Action::Blocked { blocker, detail } = app(&tg) else {
            panic!("not blocked")
        };
        assert_eq!(blocker, Blocker::PrivilegedTarget);
        assert!(
            detail.contains("Privileged Role Administrator (eligible, via group Tier0 Candidates)"),
            "{detail}"
        );
    }

    #[test]
    fn row13_privileged_blocked_only_when_changing() {
        let mut l = live(flags(false, false), Some("2026-03-01T00:00:00Z"));
        l.privileged_roles = vec!["Global Administrator".to_owned()];
        let tg = target(
            l,
            Directives {
                require_password_change: rpc("2026-11-20T00:00:00Z", false),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::Blocked {
                blocker: Blocker::PrivilegedTarget,
                detail: "holds privileged role(s) Global Administrator and allowPrivileged is not \
                         declared; wanted: forceChangePasswordNextSignIn false -> true; because: \
                         requirePasswordChange since 2026-11-20T00:00:00Z: password last changed \
                         2026-03-01T00:00:00Z (before): set forceChangePasswordNextSignIn"
                    .to_owned()
            }
        );
        // nothing to change: not blocked
        let mut met = tg.clone();
        met.live.last_password_change = Some(t("2026-11-21T00:00:00Z"));
        assert!(matches!(app(&met), Action::NoChange { .. }));
        // allowPrivileged: the change goes through
        let mut allowed = tg.clone();
        allowed.directives.allow_privileged = true;
        assert!(matches!(app(&allowed), Action::SetFlags { .. }));
    }

    #[test]
    fn row14_system_generated_for_synced_user_is_unsupported() {
        let mut l = live(flags(false, false), None);
        l.synced = true;
        let tg = target(
            l,
            Directives {
                reset_password: reset(
                    "2026-11-20T00:00:00Z",
                    PasswordSource::SystemGenerated,
                    flags(true, false),
                ),
                ..Default::default()
            },
        );
        let caller = Caller::Delegated {
            user_id: ADMIN_ID.to_owned(),
        };
        assert_eq!(
            diff_user(&tg, &caller, true, now()),
            Action::Blocked {
                blocker: Blocker::UnsupportedPasswordSource,
                detail: "a reset is due but the user is synced from on-premises: resetPassword \
                         needs a supplied password, not systemGenerated; because: resetPassword \
                         notBefore 2026-11-20T00:00:00Z: password never changed \
                         (lastPasswordChangeDateTime is null): reset"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row15_synced_user_and_system_generated_use_the_api() {
        let mut l = live(flags(false, false), None);
        l.synced = true;
        let synced = target(
            l,
            Directives {
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        let delegated = Caller::Delegated {
            user_id: ADMIN_ID.to_owned(),
        };
        assert_eq!(
            diff_user(&synced, &delegated, true, now()),
            Action::ResetPassword {
                method: ResetMethod::ResetPasswordApi,
                password: env_pw(),
                before: flags(false, false),
                after: flags(true, false),
                reason: "resetPassword notBefore 2026-11-20T00:00:00Z: password never changed \
                         (lastPasswordChangeDateTime is null): reset"
                    .to_owned()
            }
        );
        // application caller with a separate delegated credential: also the API
        assert!(matches!(
            diff_user(&synced, &Caller::Application, true, now()),
            Action::ResetPassword {
                method: ResetMethod::ResetPasswordApi,
                ..
            }
        ));
        let cloud_system = target(
            live(flags(false, false), None),
            Directives {
                reset_password: reset(
                    "2026-11-20T00:00:00Z",
                    PasswordSource::SystemGenerated,
                    flags(true, false),
                ),
                ..Default::default()
            },
        );
        assert!(matches!(
            diff_user(&cloud_system, &delegated, false, now()),
            Action::ResetPassword {
                method: ResetMethod::ResetPasswordApi,
                password: PasswordSource::SystemGenerated,
                ..
            }
        ));
    }

    #[test]
    fn row16_cloud_user_with_supplied_password_uses_patch_for_any_caller() {
        let tg = target(
            live(flags(false, false), None),
            Directives {
                reset_password: reset(
                    "2026-11-20T00:00:00Z",
                    PasswordSource::Generate { length: 24 },
                    flags(false, true),
                ),
                ..Default::default()
            },
        );
        for caller in [
            Caller::Application,
            Caller::Delegated {
                user_id: ADMIN_ID.to_owned(),
            },
        ] {
            assert_eq!(
                diff_user(&tg, &caller, false, now()),
                Action::ResetPassword {
                    method: ResetMethod::PatchPasswordProfile,
                    password: PasswordSource::Generate { length: 24 },
                    before: flags(false, false),
                    after: flags(false, true),
                    reason: "resetPassword notBefore 2026-11-20T00:00:00Z: password never changed \
                             (lastPasswordChangeDateTime is null): reset"
                        .to_owned()
                }
            );
        }
    }

    #[test]
    fn row17_no_reset_of_the_callers_own_account_but_flags_are_fine() {
        let me = Caller::Delegated {
            user_id: ID.to_owned(),
        };
        let tg = target(
            live(flags(false, false), None),
            Directives {
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        assert_eq!(
            diff_user(&tg, &me, true, now()),
            Action::Blocked {
                blocker: Blocker::CallersOwnAccount,
                detail: "a reset is due but this is the account pwdrift is signed in as; because: \
                         resetPassword notBefore 2026-11-20T00:00:00Z: password never changed \
                         (lastPasswordChangeDateTime is null): reset"
                    .to_owned()
            }
        );
        let flags_only = target(
            live(flags(false, false), None),
            Directives {
                force_change_password_next_sign_in: Some(true),
                ..Default::default()
            },
        );
        assert!(matches!(
            diff_user(&flags_only, &me, true, now()),
            Action::SetFlags { .. }
        ));
    }

    #[test]
    fn row18_api_without_delegated_credential_is_blocked() {
        let mut l = live(flags(false, false), Some("2026-03-01T00:00:00Z"));
        l.synced = true;
        let tg = target(
            l,
            Directives {
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::Blocked {
                blocker: Blocker::NeedsDelegatedCredential,
                detail: "a reset is due and the user is synced from on-premises (PATCH cannot set \
                         its password); resetPassword accepts only a delegated credential and the \
                         caller is an application; because: resetPassword notBefore \
                         2026-11-20T00:00:00Z: password last changed 2026-03-01T00:00:00Z \
                         (before): reset"
                    .to_owned()
            }
        );
        let cloud_system = target(
            live(flags(false, false), None),
            Directives {
                reset_password: reset(
                    "2026-11-20T00:00:00Z",
                    PasswordSource::SystemGenerated,
                    flags(true, false),
                ),
                ..Default::default()
            },
        );
        assert!(matches!(
            app(&cloud_system),
            Action::Blocked {
                blocker: Blocker::NeedsDelegatedCredential,
                ..
            }
        ));
    }

    #[test]
    fn row19_api_always_forces_change_and_says_so() {
        let mut l = live(flags(false, false), None);
        l.synced = true;
        let tg = target(
            l,
            Directives {
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(false, false)),
                ..Default::default()
            },
        );
        assert_eq!(
            diff_user(&tg, &Caller::Application, true, now()),
            Action::ResetPassword {
                method: ResetMethod::ResetPasswordApi,
                password: env_pw(),
                before: flags(false, false),
                after: flags(true, false),
                reason: "resetPassword notBefore 2026-11-20T00:00:00Z: password never changed \
                         (lastPasswordChangeDateTime is null): reset; resetPassword always makes \
                         the user change the password at next sign-in: \
                         forceChangePasswordNextSignIn will be true although false was wanted"
                    .to_owned()
            }
        );
    }

    #[test]
    fn row19_a_literal_false_survives_the_api_reset() {
        let mut l = live(flags(true, false), None);
        l.synced = true;
        let tg = target(
            l,
            Directives {
                force_change_password_next_sign_in: Some(false),
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(false, false)),
                ..Default::default()
            },
        );
        assert_eq!(
            diff_user_in(&tg, &Caller::Application, true, true, now()),
            Action::ResetPassword {
                method: ResetMethod::ResetPasswordApi,
                password: env_pw(),
                before: flags(true, false),
                after: flags(false, false),
                reason: "forceChangePasswordNextSignIn declared false, live true; \
                         resetPassword notBefore 2026-11-20T00:00:00Z: password never changed \
                         (lastPasswordChangeDateTime is null): reset; resetPassword makes the \
                         user change the password at next sign-in: a flags PATCH after it sets \
                         forceChangePasswordNextSignIn back to false as declared"
                    .to_owned()
            }
        );
        // the MFA literal is kept as well, and forceChangeAfter does not override the literal
        let mut l = live(flags(false, false), None);
        l.synced = true;
        let tg = target(
            l,
            Directives {
                force_change_password_next_sign_in: Some(false),
                force_change_password_next_sign_in_with_mfa: Some(true),
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
                ..Default::default()
            },
        );
        let Action::ResetPassword { after, .. } =
            diff_user_in(&tg, &Caller::Application, true, true, now())
        else {
            panic!("a reset")
        };
        assert_eq!(after, flags(false, true));
    }

    #[test]
    fn row20_everything_met_with_all_directives() {
        let tg = target(
            live(flags(true, false), Some("2026-11-21T00:00:00Z")),
            Directives {
                force_change_password_next_sign_in: Some(true),
                require_password_change: rpc("2026-11-20T00:00:00Z", false),
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, true)),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::NoChange {
                reason: "forceChangePasswordNextSignIn is true as declared; \
                         resetPassword notBefore 2026-11-20T00:00:00Z: password last changed \
                         2026-11-21T00:00:00Z (at or after notBefore): already reset; \
                         requirePasswordChange since 2026-11-20T00:00:00Z: password last changed \
                         2026-11-21T00:00:00Z (at or after since): already complied"
                    .to_owned()
            }
        );
    }

    #[test]
    fn lowercase_comparison_is_that_of_the_lowercased_strings() {
        let words = [
            "", "a", "A", "amy@x", "Amy@x", "AMY@Y", "zed", "Zed", "é", "É", "e", "f", "ΟΔΟΣ",
            "οδος", "οδοσ", "a\u{1c5}", "a\u{1c6}", "[", "_", "~",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    cmp_lowercase(a, b),
                    a.to_lowercase().cmp(&b.to_lowercase()),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn diff_orders_users_and_fills_the_document() {
        let mut targets = BTreeMap::new();
        for (id, upn) in [("a", "Zed@contoso.com"), ("b", "amy@contoso.com")] {
            let mut l = live(flags(false, false), None);
            l.id = id.to_owned();
            l.user_principal_name = upn.to_owned();
            let mut tg = target(l, Directives::default());
            tg.declared_at.push(tg.declared_at[0].clone());
            targets.insert(id.to_owned(), Box::new(tg));
        }
        let tenants = vec![LiveTenant {
            tenant: "contoso.com".to_owned(),
            tenant_id: "11111111-1111-4111-8111-111111111111".to_owned(),
            caller: Caller::Application,
            delegated_reset_available: false,
            targets,
            notes: vec!["a note".to_owned()],
            excluded: 0,
            synced_flags_writable: false,
        }];
        let plan = diff(&tenants, now());
        assert_eq!(plan.format_version, plan::FORMAT_VERSION);
        assert_eq!(plan.created_at, now());
        let users = &plan.tenants[0].users;
        assert_eq!(users[0].user_principal_name, "amy@contoso.com");
        assert_eq!(users[1].user_principal_name, "Zed@contoso.com");
        assert_eq!(users[0].declared_at.len(), 1, "duplicate origins merged");
        assert_eq!(
            users[0].fingerprint,
            tenants[0].targets["b"].live.fingerprint()
        );
        assert_eq!(diff(&tenants, now()), plan, "deterministic");
    }

    // ---------------------------------------------------------------------------------------
    // Exhaustive: the cross product of every input dimension, checked against invariants that
    // restate the rules independently of the implementation's control flow.
    // ---------------------------------------------------------------------------------------

    #[derive(Clone, Copy, Debug)]
    enum Who {
        App { delegated_available: bool },
        DelegatedSelf,
        DelegatedOther,
    }

    #[test]
    fn exhaustive_invariants() {
        let bools = [false, true];
        let lits = [None, Some(false), Some(true)];
        // lastPasswordChangeDateTime: null, or 2026-11-10
        let lasts = [None, Some("2026-11-10T00:00:00Z")];
        // since / notBefore: before the last change, equal to it, after it (due), in the future
        // (not due)
        let ats = [
            "2026-11-01T00:00:00Z",
            "2026-11-10T00:00:00Z",
            "2026-11-20T00:00:00Z",
            "2026-12-01T00:00:00Z",
        ];
        let mut rpcs = vec![None];
        for at in ats {
            for m in bools {
                rpcs.push(rpc(at, m));
            }
        }
        let mut resets = vec![None];
        for at in ats {
            for pw in [env_pw(), PasswordSource::SystemGenerated] {
                for (a, am) in [(false, false), (true, false), (false, true), (true, true)] {
                    resets.push(reset(at, pw.clone(), flags(a, am)));
                }
            }
        }
        let whos = [
            Who::App {
                delegated_available: false,
            },
            Who::App {
                delegated_available: true,
            },
            Who::DelegatedSelf,
            Who::DelegatedOther,
        ];
        // (privileged, allowPrivileged)
        let privs = [(false, false), (true, false), (true, true)];

        let mut count = 0usize;
        let mut seen = std::collections::BTreeSet::new();
        for (lf, lfm) in [(false, false), (true, false), (false, true), (true, true)] {
            for lit_f in lits {
                for lit_fm in lits {
                    for last in lasts {
                        for r in &rpcs {
                            for rp in &resets {
                                for synced in bools {
                                    for who in whos {
                                        for (privileged, allow) in privs {
                                            let mut l = live(flags(lf, lfm), last);
                                            l.synced = synced;
                                            if privileged {
                                                l.privileged_roles =
                                                    vec!["Global Administrator".to_owned()];
                                            }
                                            let d = Directives {
                                                force_change_password_next_sign_in: lit_f,
                                                force_change_password_next_sign_in_with_mfa: lit_fm,
                                                require_password_change: r.clone(),
                                                reset_password: rp.clone(),
                                                allow_privileged: allow,
                                            };
                                            let tg = target(l, d);
                                            let (caller, dra) = match who {
                                                Who::App {
                                                    delegated_available,
                                                } => (Caller::Application, delegated_available),
                                                Who::DelegatedSelf => (
                                                    Caller::Delegated {
                                                        user_id: ID.to_owned(),
                                                    },
                                                    true,
                                                ),
                                                Who::DelegatedOther => (
                                                    Caller::Delegated {
                                                        user_id: ADMIN_ID.to_owned(),
                                                    },
                                                    true,
                                                ),
                                            };
                                            let action =
                                                diff_user_in(&tg, &caller, dra, true, now());
                                            check(&tg, who, &action);
                                            seen.insert(kind(&action));
                                            let refused = diff_user(&tg, &caller, dra, now());
                                            check_synced_refused(&tg, &action, &refused);
                                            seen.insert(kind(&refused));
                                            count += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(count > 100_000, "{count} cases");
        // every outcome kind is reached by the cross product
        assert_eq!(seen.len(), 10, "{seen:?}");
    }

    /// Where the tenant refuses synced users' flag changes: a cloud user is decided as where it
    /// accepts them; a synced user never gets a flags PATCH (none alone, none after a reset).
    fn check_synced_refused(tg: &Target, accepted: &Action, refused: &Action) {
        if !tg.live.synced {
            assert_eq!(accepted, refused);
            return;
        }
        match (accepted, refused) {
            (Action::SetFlags { .. }, r) => assert!(
                matches!(
                    r,
                    Action::Blocked {
                        blocker: Blocker::SyncedUserFlags,
                        ..
                    }
                ),
                "{tg:?} => {r:?}"
            ),
            (Action::ResetPassword { .. }, Action::ResetPassword { after, .. }) => {
                assert_eq!(*after, flags(true, false), "{tg:?}");
            }
            (a, r) => assert_eq!(a, r),
        }
    }

    fn kind(a: &Action) -> String {
        match a {
            Action::NoChange { .. } => "no_change".into(),
            Action::SetFlags { .. } => "set_flags".into(),
            Action::ResetPassword { method, .. } => format!("reset {method:?}"),
            Action::Blocked { blocker, .. } => format!("blocked {blocker:?}"),
        }
    }

    /// The invariants, stated from the inputs.
    fn check(tg: &Target, who: Who, action: &Action) {
        let ctx = || format!("{tg:?} {who:?} => {action:?}");
        let d = &tg.directives;
        let l = &tg.live;
        let last = l.last_password_change;
        let lit = [
            d.force_change_password_next_sign_in,
            d.force_change_password_next_sign_in_with_mfa,
        ];
        let live_f = [
            l.flags.force_change_password_next_sign_in,
            l.flags.force_change_password_next_sign_in_with_mfa,
        ];
        let n = now();
        let done = |at: DateTime<Utc>| last.is_some_and(|l| l >= at);
        let reset_open = d
            .reset_password
            .as_ref()
            .is_some_and(|r| !done(r.not_before) && r.not_before <= n);
        let rpc_open = d
            .require_password_change
            .as_ref()
            .is_some_and(|r| !done(r.since) && r.since <= n);
        let rpc_complied = d
            .require_password_change
            .as_ref()
            .is_some_and(|r| done(r.since));
        // does a flag pair satisfy the open requirement?
        let satisfies = |f: [bool; 2]| match &d.require_password_change {
            Some(r) if r.with_mfa => f[1],
            _ => f[0] || f[1],
        };
        let literals_hold = (0..2).all(|i| lit[i].is_none_or(|v| v == live_f[i]));
        let all_met = literals_hold && !reset_open && (!rpc_open || satisfies(live_f));
        let system = matches!(
            d.reset_password.as_ref().map(|r| &r.password),
            Some(PasswordSource::SystemGenerated)
        );
        let api = l.synced || system;

        // Never a change (nor a block) when everything is met; and NoChange only then.
        assert_eq!(
            matches!(action, Action::NoChange { .. }),
            all_met,
            "{}",
            ctx()
        );

        // The expected blocker.
        let needed_idx = match &d.require_password_change {
            Some(r) if r.with_mfa => 1,
            _ => 0,
        };
        let base = match (&d.reset_password, reset_open) {
            (Some(r), true) => [r.force_change_after, r.force_change_after_with_mfa],
            _ => live_f,
        };
        let with_lits = [lit[0].unwrap_or(base[0]), lit[1].unwrap_or(base[1])];
        let conflict = rpc_open && !satisfies(with_lits) && lit[needed_idx] == Some(false);
        let expected_blocker = if conflict {
            Some(Blocker::ConflictingDirectives)
        } else if all_met {
            None
        } else if !l.privileged_roles.is_empty() && !d.allow_privileged {
            Some(Blocker::PrivilegedTarget)
        } else if reset_open && l.synced && system {
            Some(Blocker::UnsupportedPasswordSource)
        } else if reset_open && matches!(who, Who::DelegatedSelf) {
            Some(Blocker::CallersOwnAccount)
        } else if reset_open
            && api
            && matches!(
                who,
                Who::App {
                    delegated_available: false
                }
            )
        {
            Some(Blocker::NeedsDelegatedCredential)
        } else {
            None
        };
        let got_blocker = match action {
            Action::Blocked { blocker, .. } => Some(*blocker),
            _ => None,
        };
        assert_eq!(got_blocker, expected_blocker, "{}", ctx());

        // A reset exactly when a due, unmet resetPassword asks and nothing blocks it.
        let is_reset = matches!(action, Action::ResetPassword { .. });
        assert_eq!(
            is_reset,
            reset_open && expected_blocker.is_none(),
            "{}",
            ctx()
        );

        match action {
            Action::SetFlags { before, after, .. }
            | Action::ResetPassword { before, after, .. } => {
                assert_eq!(*before, l.flags, "{}", ctx());
                let after_f = [
                    after.force_change_password_next_sign_in,
                    after.force_change_password_next_sign_in_with_mfa,
                ];
                let via_api = matches!(
                    action,
                    Action::ResetPassword {
                        method: ResetMethod::ResetPasswordApi,
                        ..
                    }
                );
                for i in 0..2 {
                    // after-flags equal declared literals (with the API too: a flags PATCH
                    // follows the reset)
                    if let Some(v) = lit[i] {
                        assert_eq!(after_f[i], v, "flag {i}: {}", ctx());
                    }
                    // a flag only goes false -> true for a reason: a literal true, the open
                    // requirement's flag, the reset's forceChangeAfter*, or the API
                    if !live_f[i] && after_f[i] {
                        let justified = lit[i] == Some(true)
                            || (rpc_open && i == needed_idx)
                            || (is_reset && base[i])
                            || (via_api && i == 0);
                        assert!(justified, "flag {i} forced without reason: {}", ctx());
                    }
                    // undeclared flag untouched by anything keeps its value
                    let touched = lit[i].is_some() || (rpc_open && i == needed_idx) || is_reset;
                    if !touched {
                        assert_eq!(after_f[i], live_f[i], "flag {i}: {}", ctx());
                    }
                }
                // a complied user is never forced by the requirement: with nothing else asking,
                // no flag is raised
                if rpc_complied && !is_reset && !lit.contains(&Some(true)) {
                    assert!(
                        (0..2).all(|i| !after_f[i] || live_f[i]),
                        "complied user forced: {}",
                        ctx()
                    );
                }
                // an open requirement is satisfied by the result
                if rpc_open {
                    assert!(satisfies(after_f), "requirement left open: {}", ctx());
                }
                if let Action::SetFlags { .. } = action {
                    assert_ne!(after, before, "{}", ctx());
                }
                if let Action::ResetPassword { method, .. } = action {
                    let expected = if api {
                        ResetMethod::ResetPasswordApi
                    } else {
                        ResetMethod::PatchPasswordProfile
                    };
                    assert_eq!(*method, expected, "{}", ctx());
                    // forceChangeAfter* unless a literal says otherwise, plus the requirement's
                    // flag; through the API, an undeclared plain flag is true (resetPassword
                    // leaves it so)
                    for i in 0..2 {
                        let want = lit[i].unwrap_or(base[i] || (via_api && i == 0))
                            || (rpc_open && i == needed_idx && !satisfies(with_lits));
                        assert_eq!(after_f[i], want, "flag {i}: {}", ctx());
                    }
                }
            }
            Action::NoChange { .. } | Action::Blocked { .. } => {}
        }
    }

    /// A tenant declared to accept synced users' flag changes (`--synced-flags-writable`).
    fn accepting(tg: &Target) -> Action {
        diff_user_in(tg, &Caller::Application, true, true, now())
    }

    #[test]
    fn row13c_flag_change_of_a_synced_user_is_blocked_unless_the_tenant_accepts_it() {
        let mut l = live(flags(false, false), None);
        l.synced = true;
        let tg = target(
            l,
            Directives {
                force_change_password_next_sign_in: Some(true),
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::Blocked {
                blocker: Blocker::SyncedUserFlags,
                detail: "the user is synced from on-premises Active Directory \
                         (onPremisesSyncEnabled) and Graph refuses flag changes of on-premises \
                         mastered users; wanted: forceChangePasswordNextSignIn false -> true; set \
                         \"User must change password at next logon\" in Active Directory instead; \
                         because: forceChangePasswordNextSignIn declared true, live false"
                    .to_owned()
            }
        );
        assert!(matches!(accepting(&tg), Action::SetFlags { .. }));
        // nothing to change: no blocker
        let mut same = tg.clone();
        same.live.flags = flags(true, false);
        assert!(matches!(app(&same), Action::NoChange { .. }));
        // a requirePasswordChange is a flag change too
        let mut required = tg.clone();
        required.directives = Directives {
            require_password_change: rpc("2026-11-01T00:00:00Z", false),
            ..Default::default()
        };
        assert!(matches!(
            app(&required),
            Action::Blocked {
                blocker: Blocker::SyncedUserFlags,
                ..
            }
        ));
    }

    #[test]
    fn row19a_no_flags_patch_after_resetting_a_synced_user() {
        let mut l = live(flags(true, false), None);
        l.synced = true;
        let tg = target(
            l,
            Directives {
                force_change_password_next_sign_in: Some(false),
                force_change_password_next_sign_in_with_mfa: Some(true),
                reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(false, false)),
                ..Default::default()
            },
        );
        let Action::ResetPassword { after, reason, .. } =
            diff_user(&tg, &Caller::Application, true, now())
        else {
            panic!("a reset")
        };
        // what resetPassword leaves: no follow-up PATCH is needed
        assert_eq!(after, flags(true, false));
        assert!(
            reason.contains(
                "no flags PATCH follows the reset (Graph refuses flag changes of on-premises \
                 mastered users), so the flags stay as resetPassword leaves them \
                 (forceChangePasswordNextSignIn true -> false, \
                 forceChangePasswordNextSignInWithMfa false -> true wanted)"
            ),
            "{reason}"
        );
        // a cloud user's reset through the API keeps its follow-up
        let mut cloud = tg.clone();
        cloud.live.synced = false;
        cloud.directives.reset_password = reset(
            "2026-11-20T00:00:00Z",
            PasswordSource::SystemGenerated,
            flags(false, false),
        );
        let Action::ResetPassword { after, .. } =
            diff_user(&cloud, &Caller::Application, true, now())
        else {
            panic!("a reset")
        };
        assert_eq!(after, flags(false, true));
    }

    #[test]
    fn row13b_restricted_administrative_unit_blocks_any_change() {
        let mut l = live(flags(false, false), None);
        l.restricted_units = vec!["Executives\u{202e}".to_owned(), "Board".to_owned()];
        let tg = target(
            l,
            Directives {
                force_change_password_next_sign_in: Some(true),
                allow_privileged: true,
                ..Default::default()
            },
        );
        assert_eq!(
            app(&tg),
            Action::Blocked {
                blocker: Blocker::RestrictedAdministrativeUnit,
                detail: "member of restricted management administrative unit(s) \
                         'Executives\u{202e}', 'Board', which only administrators scoped to the \
                         unit may change, and the credential is not declared scoped to it \
                         (--admin-unit); wanted: forceChangePasswordNextSignIn false -> true; \
                         because: forceChangePasswordNextSignIn declared true, live false"
                    .to_owned()
            }
        );
        // a reset is blocked the same way
        let mut reset_tg = tg.clone();
        reset_tg.directives = Directives {
            reset_password: reset("2026-11-20T00:00:00Z", env_pw(), flags(true, false)),
            ..Default::default()
        };
        let Action::Blocked { blocker, detail } = app(&reset_tg) else {
            panic!("blocked")
        };
        assert_eq!(blocker, Blocker::RestrictedAdministrativeUnit);
        assert!(detail.contains("wanted: reset the password"), "{detail}");
        // nothing wanted: nothing blocked
        let mut idle = tg.clone();
        idle.live.flags = flags(true, false);
        assert!(matches!(app(&idle), Action::NoChange { .. }));
        // a privileged member is reported as privileged first
        let mut admin = tg.clone();
        admin.directives.allow_privileged = false;
        admin.live.privileged_roles = vec!["Global Administrator (active)".into()];
        assert!(matches!(
            app(&admin),
            Action::Blocked {
                blocker: Blocker::PrivilegedTarget,
                ..
            }
        ));
    }
}
