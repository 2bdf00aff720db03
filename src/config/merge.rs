//! Merging the directives that apply to one user: its own `users:` entry, and the entries of the
//! groups it is a (transitive) member of and of the selectors that select it.
//!
//! Group membership and selection are live state, so this cannot happen at load time; the plan
//! step calls [`merge_directives`] once it knows who is reached. The rules (docs/configuration.md,
//! "Precedence"):
//!
//! - **A user's own entry overrides its groups and selectors, directive by directive.** A field
//!   the user's entry sets is taken from it, whatever the groups and selectors say; a field it
//!   does not set comes from them. A directive inherited from a group or selector that contradicts
//!   one the user's entry sets (the user's `forceChangePasswordNextSignIn: false` against a
//!   group's `requirePasswordChange`) is overridden too: the user's entry is the more specific
//!   statement, and it is the one a reviewer reads next to the user's name.
//! - **Groups and selectors are peers.** Directives that are identical, or that no other entry
//!   sets, merge into one set. The same directive with different values from two of them (e.g. a
//!   group says `forceChangePasswordNextSignIn: false`, a selector `true`; or two
//!   `requirePasswordChange` with different `since`) is a conflict: one error naming the user and
//!   both entries (file:line). No entry silently wins: which one was meant is for a person to
//!   decide (a `users:` entry for that user, or an `exclude`, settles it).
//! - The inherited set must also pass the contradiction table of [`contradictions`] (a group's
//!   `requirePasswordChange` with a selector's `resetPassword`); a contradiction between two
//!   entries is an error naming both.
//! - `allowPrivileged` is true when any entry says so. Rationale: `allowPrivileged: true` on a
//!   group or selector entry is an explicit, reviewed statement that its privileged members are in
//!   scope; requiring it on a per-user entry as well would make those entries unable to cover them
//!   at all. Without any `allowPrivileged: true`, privileged users are not touched.
//!
//! Also here: the declarations of one tenant across files. [`duplicates`] finds a user or group
//! declared twice for one tenant; [`union`] joins the [`TenantDesired`] entries that turn out to
//! be one tenant written several ways (its initial domain, a verified domain, its id), which only
//! the plan step can know, so that [`duplicates`] runs again over all of its files.

use std::collections::HashMap;

use super::check::{contradictions, Field};
use super::diag::Diagnostic;
use super::model::{Directives, Origin, TenantDesired, UserRef};

const CONFLICT_HELP: &str = "the groups and selectors that reach one user must agree: change \
    one of them, add a `users:` entry for the user (it overrides them), or `exclude` the user";

/// One directive value and the entry that set it first.
struct Seen<'a, T> {
    value: T,
    origin: &'a Origin,
}

fn merge_field<'a, T: PartialEq + Clone>(
    slot: &mut Option<Seen<'a, T>>,
    value: Option<&T>,
    origin: &'a Origin,
    key: &str,
    user: &str,
    describe: impl Fn(&T) -> String,
) -> Result<(), Diagnostic> {
    let Some(value) = value else {
        return Ok(());
    };
    match slot {
        None => {
            *slot = Some(Seen {
                value: value.clone(),
                origin,
            });
            Ok(())
        }
        Some(seen) if seen.value == *value => Ok(()),
        Some(seen) => Err(Diagnostic::error(format!(
            "conflicting `{key}` for user {user}: two entries set different values"
        ))
        .with_label(seen.origin.clone(), describe(&seen.value))
        .with_label(origin.clone(), describe(value))
        .with_help(CONFLICT_HELP)),
    }
}

/// The directives of several peer entries, merged field by field, each with the entry that set
/// it.
#[derive(Default)]
struct Merged<'a> {
    force: Option<Seen<'a, bool>>,
    force_mfa: Option<Seen<'a, bool>>,
    require: Option<Seen<'a, crate::config::model::RequirePasswordChange>>,
    reset: Option<Seen<'a, crate::config::model::ResetPassword>>,
    allow_privileged: bool,
}

impl<'a> Merged<'a> {
    /// `skip`: fields not merged (the user's own entry sets them).
    fn of(
        entries: &[(&'a Directives, &'a Origin)],
        user: &str,
        skip: &[Field],
    ) -> Result<Self, Diagnostic> {
        let mut m = Merged::default();
        let keep = |f: Field| !skip.contains(&f);
        for (d, origin) in entries {
            merge_field(
                &mut m.force,
                d.force_change_password_next_sign_in
                    .as_ref()
                    .filter(|_| keep(Field::ForceChange)),
                origin,
                "forceChangePasswordNextSignIn",
                user,
                |v| format!("`forceChangePasswordNextSignIn: {v}` here"),
            )?;
            merge_field(
                &mut m.force_mfa,
                d.force_change_password_next_sign_in_with_mfa
                    .as_ref()
                    .filter(|_| keep(Field::ForceChangeWithMfa)),
                origin,
                "forceChangePasswordNextSignInWithMfa",
                user,
                |v| format!("`forceChangePasswordNextSignInWithMfa: {v}` here"),
            )?;
            merge_field(
                &mut m.require,
                d.require_password_change
                    .as_ref()
                    .filter(|_| keep(Field::RequirePasswordChange)),
                origin,
                "requirePasswordChange",
                user,
                |r| {
                    format!(
                        "since {}, withMfa: {}",
                        r.since.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                        r.with_mfa
                    )
                },
            )?;
            merge_field(
                &mut m.reset,
                d.reset_password
                    .as_ref()
                    .filter(|_| keep(Field::ResetPassword)),
                origin,
                "resetPassword",
                user,
                |p| {
                    format!(
                        "notBefore {}, forceChangeAfter: {}",
                        p.not_before
                            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                        p.force_change_after
                    )
                },
            )?;
            m.allow_privileged |= d.allow_privileged;
        }
        Ok(m)
    }

    fn origin_of(&self, f: Field) -> Option<&'a Origin> {
        match f {
            Field::ForceChange => self.force.as_ref().map(|s| s.origin),
            Field::ForceChangeWithMfa => self.force_mfa.as_ref().map(|s| s.origin),
            Field::RequirePasswordChange => self.require.as_ref().map(|s| s.origin),
            Field::ResetPassword => self.reset.as_ref().map(|s| s.origin),
        }
    }

    fn is_set(&self, f: Field) -> bool {
        self.origin_of(f).is_some()
    }

    fn clear(&mut self, f: Field) {
        match f {
            Field::ForceChange => self.force = None,
            Field::ForceChangeWithMfa => self.force_mfa = None,
            Field::RequirePasswordChange => self.require = None,
            Field::ResetPassword => self.reset = None,
        }
    }

    fn directives(&self) -> Directives {
        Directives {
            force_change_password_next_sign_in: self.force.as_ref().map(|s| s.value),
            force_change_password_next_sign_in_with_mfa: self.force_mfa.as_ref().map(|s| s.value),
            require_password_change: self.require.as_ref().map(|s| s.value.clone()),
            reset_password: self.reset.as_ref().map(|s| s.value.clone()),
            allow_privileged: self.allow_privileged,
        }
    }

    /// The first contradiction in this set, as an error naming the entries involved.
    fn check(&self, user: &str) -> Result<(), Diagnostic> {
        let Some(c) = contradictions(&self.directives()).into_iter().next() else {
            return Ok(());
        };
        let mut d = Diagnostic::error(format!(
            "conflicting directives for user {user}: {}",
            c.message
        ))
        .with_help(CONFLICT_HELP);
        let (a, b) = c.fields;
        for o in [self.origin_of(a), self.origin_of(b)].into_iter().flatten() {
            if !d.labels.iter().any(|l| &l.origin == o) {
                d = d.with_label(o.clone(), "declared here");
            }
        }
        Err(d)
    }
}

/// Merges the directives that apply to one user (see the module comment): `own` are its
/// `users:` entries (one, unless it was declared under two spellings, which the caller reports),
/// `shared` the group and selector entries that reach it; each is (directives, origin of the
/// entry's `user:`/`group:`/selector value). `user` names the user in a conflict.
pub fn merge_directives(
    own: &[(&Directives, &Origin)],
    shared: &[(&Directives, &Origin)],
    user: &str,
) -> Result<Directives, Diagnostic> {
    let own = Merged::of(own, user, &[])?;
    own.check(user)?;
    const FIELDS: [Field; 4] = [
        Field::ForceChange,
        Field::ForceChangeWithMfa,
        Field::RequirePasswordChange,
        Field::ResetPassword,
    ];
    let own_sets: Vec<Field> = FIELDS.into_iter().filter(|f| own.is_set(*f)).collect();
    // What the user's own entry sets is not inherited (nor, below, what contradicts it).
    let inherited = Merged::of(shared, user, &own_sets)?;
    inherited.check(user)?;
    let mut merged = Merged {
        force: own.force.or(inherited.force),
        force_mfa: own.force_mfa.or(inherited.force_mfa),
        require: own.require.or(inherited.require),
        reset: own.reset.or(inherited.reset),
        allow_privileged: own.allow_privileged || inherited.allow_privileged,
    };
    // An inherited directive that contradicts one of the user's own: the user's entry wins.
    // Each contradiction left has one own and one inherited field (both sets passed alone), and
    // each round clears one field: at most four rounds.
    while let Some(c) = contradictions(&merged.directives()).into_iter().next() {
        let (a, b) = c.fields;
        merged.clear(if own_sets.contains(&a) { b } else { a });
    }
    Ok(merged.directives())
}
/// Users and groups declared more than once for `t`, one error per repeat naming both places
/// (file, line and column).
pub fn duplicates(t: &TenantDesired) -> Vec<Diagnostic> {
    let mut dup = Vec::new();
    // foldhash, not SipHash: a large tenant's users are hashed here once each (keys come from
    // reviewed desired state; foldhash is still seeded per process)
    let mut seen: foldhash::HashMap<&UserRef, &Origin> =
        foldhash::HashMap::with_capacity_and_hasher(t.users.len(), Default::default());
    for u in &t.users {
        if let Some(first) = seen.get(&u.user) {
            dup.push(
                Diagnostic::error(format!(
                    "user `{}` is declared twice for tenant `{}`",
                    u.user, t.tenant
                ))
                .with_label((*first).clone(), "first declared here")
                .with_label(u.origin.clone(), "declared again here")
                .with_help("declare each user once; merge the two entries"),
            );
        } else {
            seen.insert(&u.user, &u.origin);
        }
    }
    let mut seen: HashMap<String, &Origin> = HashMap::new();
    for g in &t.groups {
        let key = super::check::group_key(&g.group);
        if let Some(first) = seen.get(&key) {
            dup.push(
                Diagnostic::error(format!(
                    "group `{}` is declared twice for tenant `{}`",
                    g.group, t.tenant
                ))
                .with_label((*first).clone(), "first declared here")
                .with_label(g.origin.clone(), "declared again here")
                .with_help("declare each group once; merge the two entries"),
            );
        } else {
            seen.insert(key, &g.origin);
        }
    }
    dup
}

/// Joins declarations that name one tenant (in the order given: the first one's name is kept,
/// users, groups and files follow in order), then checks the union for users and groups declared
/// twice across all of its files. `Err` holds one diagnostic per repeat; `parts` must not be
/// empty.
pub fn union(parts: Vec<TenantDesired>) -> Result<TenantDesired, Vec<Diagnostic>> {
    let mut parts = parts.into_iter();
    let mut out = parts.next().expect("union of no tenant declaration");
    for p in parts {
        out.users.extend(p.users);
        out.groups.extend(p.groups);
        out.selectors.extend(p.selectors);
        out.exclude.extend(p.exclude);
        for f in p.files {
            if !out.files.contains(&f) {
                out.files.push(f);
            }
        }
    }
    let dup = duplicates(&out);
    if dup.is_empty() {
        Ok(out)
    } else {
        Err(dup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{PasswordSource, RequirePasswordChange, ResetPassword};
    use std::path::PathBuf;

    fn o(line: usize) -> Origin {
        Origin {
            file: PathBuf::from("d.yaml").into(),
            line,
            column: 11,
        }
    }

    fn ts(s: &str) -> chrono::DateTime<chrono::Utc> {
        s.parse().unwrap()
    }

    fn require(since: &str, with_mfa: bool) -> Directives {
        Directives {
            require_password_change: Some(RequirePasswordChange {
                since: ts(since),
                with_mfa,
            }),
            ..Default::default()
        }
    }

    fn flag(v: bool) -> Directives {
        Directives {
            force_change_password_next_sign_in: Some(v),
            ..Default::default()
        }
    }

    #[test]
    fn identical_and_disjoint_directives_merge() {
        let a = require("2026-11-20T00:00:00Z", true);
        let b = require("2026-11-20T00:00:00Z", true);
        let c = Directives {
            force_change_password_next_sign_in: Some(false),
            ..Default::default()
        };
        let merged = merge_directives(
            &[],
            &[(&a, &o(1)), (&b, &o(2)), (&c, &o(3))],
            "a@contoso.com",
        )
        .unwrap();
        assert_eq!(merged.require_password_change, a.require_password_change);
        assert_eq!(merged.force_change_password_next_sign_in, Some(false));
        assert!(!merged.allow_privileged);
    }

    #[test]
    fn empty_input_is_empty_directives() {
        assert_eq!(
            merge_directives(&[], &[], "a@contoso.com").unwrap(),
            Directives::default()
        );
    }

    #[test]
    fn same_directive_with_different_values_conflicts_naming_both() {
        let a = flag(false);
        let b = flag(true);
        let err = merge_directives(&[], &[(&a, &o(4)), (&b, &o(9))], "a@contoso.com").unwrap_err();
        assert!(err.is_error());
        assert!(
            err.message.contains("forceChangePasswordNextSignIn"),
            "{}",
            err.message
        );
        assert_eq!(err.labels.len(), 2);
        assert_eq!(err.labels[0].origin.line, 4);
        assert_eq!(err.labels[1].origin.line, 9);
        assert!(err.labels[1].text.contains("true"));

        let a = require("2026-11-20T00:00:00Z", false);
        let b = require("2026-12-01T00:00:00Z", false);
        let err = merge_directives(&[], &[(&a, &o(4)), (&b, &o(9))], "a@contoso.com").unwrap_err();
        assert!(err.message.contains("requirePasswordChange"));
        assert!(err.labels[1].text.contains("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn contradictions_across_entries_are_conflicts() {
        // a group's literal false vs another group's requirePasswordChange
        let own = flag(false);
        let group = require("2026-11-20T00:00:00Z", false);
        let err =
            merge_directives(&[], &[(&own, &o(4)), (&group, &o(20))], "a@contoso.com").unwrap_err();
        assert!(err
            .message
            .starts_with("conflicting directives for user a@contoso.com"));
        let lines: Vec<_> = err.labels.iter().map(|l| l.origin.line).collect();
        assert_eq!(lines, vec![4, 20]);

        // with MFA the group drives the other flag: no contradiction
        let group = require("2026-11-20T00:00:00Z", true);
        assert!(merge_directives(&[], &[(&own, &o(4)), (&group, &o(20))], "a@contoso.com").is_ok());

        // requirePasswordChange from one group, resetPassword from another
        let reset = Directives {
            reset_password: Some(ResetPassword {
                not_before: ts("2026-11-20T00:00:00Z"),
                password: PasswordSource::Generate { length: 20 },
                force_change_after: true,
                force_change_after_with_mfa: false,
            }),
            ..Default::default()
        };
        let err = merge_directives(&[], &[(&group, &o(20)), (&reset, &o(30))], "a@contoso.com")
            .unwrap_err();
        assert_eq!(err.labels.len(), 2);
    }

    fn tenant(name: &str, file: &str, users: &[(&str, usize)]) -> TenantDesired {
        use crate::config::model::{TenantRef, UserEntry};
        TenantDesired {
            tenant: TenantRef::Domain(name.into()),
            users: users
                .iter()
                .map(|(u, line)| UserEntry {
                    user: UserRef::Upn((*u).into()),
                    directives: flag(false),
                    origin: Origin {
                        file: PathBuf::from(file).into(),
                        line: *line,
                        column: 11,
                    },
                })
                .collect(),
            groups: vec![],
            selectors: vec![],
            exclude: vec![],
            files: vec![PathBuf::from(file)],
        }
    }

    #[test]
    fn union_keeps_the_first_name_and_finds_duplicates_across_parts() {
        let a = tenant("contoso.onmicrosoft.com", "a.yaml", &[("x@contoso.com", 4)]);
        let b = tenant("contoso.com", "b.yaml", &[("y@contoso.com", 5)]);
        let joined = union(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(joined.tenant.as_str(), "contoso.onmicrosoft.com");
        assert_eq!(joined.users.len(), 2);
        assert_eq!(
            joined.files,
            vec![PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]
        );

        let c = tenant(
            "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90",
            "c.yaml",
            &[("x@contoso.com", 9)],
        );
        let errs = union(vec![a, b, c]).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.contains("declared twice"),
            "{}",
            errs[0].message
        );
        let at: Vec<String> = errs[0]
            .labels
            .iter()
            .map(|l| l.origin.to_string())
            .collect();
        assert_eq!(at, vec!["a.yaml:4:11", "c.yaml:9:11"]);
    }

    #[test]
    fn allow_privileged_is_true_when_any_entry_says_so() {
        let own = flag(false);
        let group = Directives {
            allow_privileged: true,
            ..require("2026-11-20T00:00:00Z", true)
        };
        let merged =
            merge_directives(&[], &[(&own, &o(1)), (&group, &o(2))], "a@contoso.com").unwrap();
        assert!(merged.allow_privileged);
        let merged = merge_directives(&[], &[(&own, &o(1))], "a@contoso.com").unwrap();
        assert!(!merged.allow_privileged);
    }

    /// Every directive set an entry may carry, valid on its own (the checker refuses the others).
    fn samples() -> Vec<Directives> {
        let reset = |t: &str, after: bool| Directives {
            reset_password: Some(ResetPassword {
                not_before: ts(t),
                password: PasswordSource::Generate { length: 20 },
                force_change_after: after,
                force_change_after_with_mfa: false,
            }),
            ..Default::default()
        };
        let mfa = |v: bool| Directives {
            force_change_password_next_sign_in_with_mfa: Some(v),
            ..Default::default()
        };
        let mut out = vec![
            Directives::default(),
            flag(false),
            flag(true),
            mfa(false),
            mfa(true),
            require("2026-11-20T00:00:00Z", false),
            require("2026-11-20T00:00:00Z", true),
            require("2026-12-01T00:00:00Z", false),
            reset("2026-11-20T00:00:00Z", true),
            reset("2026-11-20T00:00:00Z", false),
            Directives {
                allow_privileged: true,
                ..mfa(false)
            },
        ];
        out.retain(|d| contradictions(d).is_empty());
        out
    }

    fn fields(d: &Directives) -> [Option<String>; 4] {
        [
            d.force_change_password_next_sign_in.map(|v| v.to_string()),
            d.force_change_password_next_sign_in_with_mfa
                .map(|v| v.to_string()),
            d.require_password_change.as_ref().map(|v| format!("{v:?}")),
            d.reset_password.as_ref().map(|v| format!("{v:?}")),
        ]
    }

    /// The precedence rules, over every (own entry, group or selector, group or selector) of
    /// [`samples`] (with and without an own entry): what the user's entry sets wins; a field it
    /// does not set comes from the peers, which must agree; the result never contradicts itself
    /// and invents nothing; the peers' order changes nothing.
    #[test]
    fn precedence_exhaustively() {
        let all = samples();
        let mut checked = 0;
        for own in std::iter::once(None).chain(all.iter().map(Some)) {
            for g1 in &all {
                for g2 in &all {
                    let own_list: Vec<(&Directives, &Origin)> = Vec::new();
                    let o1 = o(1);
                    let o2 = o(20);
                    let o3 = o(30);
                    let own_list = match own {
                        Some(d) => vec![(d, &o1)],
                        None => own_list,
                    };
                    let r = merge_directives(&own_list, &[(g1, &o2), (g2, &o3)], "u@contoso.com");
                    let swapped =
                        merge_directives(&own_list, &[(g2, &o3), (g1, &o2)], "u@contoso.com");
                    assert_eq!(r.is_ok(), swapped.is_ok(), "{own:?} {g1:?} {g2:?}");
                    let fo = own.map(fields).unwrap_or_default();
                    let (f1, f2) = (fields(g1), fields(g2));
                    match r {
                        Ok(m) => {
                            assert!(contradictions(&m).is_empty(), "{m:?}");
                            assert_eq!(m, swapped.unwrap());
                            let fm = fields(&m);
                            for i in 0..4 {
                                if fo[i].is_some() {
                                    assert_eq!(fm[i], fo[i], "own wins: {own:?} {g1:?} {g2:?}");
                                } else if let Some(v) = &fm[i] {
                                    assert!(
                                        f1[i].as_ref() == Some(v) || f2[i].as_ref() == Some(v),
                                        "invented: {m:?}"
                                    );
                                } else {
                                    // dropped only for contradicting the user's own entry
                                    assert!(
                                        (f1[i].is_none() && f2[i].is_none()) || own.is_some(),
                                        "{own:?} {g1:?} {g2:?} -> {m:?}"
                                    );
                                }
                            }
                            assert_eq!(
                                m.allow_privileged,
                                own.is_some_and(|d| d.allow_privileged)
                                    || g1.allow_privileged
                                    || g2.allow_privileged
                            );
                            if own.is_none() && g1 == g2 {
                                assert_eq!(&m, g1);
                            }
                        }
                        Err(e) => {
                            assert!(
                                e.message.contains("for user u@contoso.com"),
                                "{}",
                                e.message
                            );
                            assert_eq!(e.labels.len(), 2, "{e:?}");
                            // the peers disagree, never the user's own entry with one of them
                            assert!(e.labels.iter().all(|l| l.origin != o1), "{e:?}");
                        }
                    }
                    for i in 0..4 {
                        if fo[i].is_none() && f1[i].is_some() && f2[i].is_some() && f1[i] != f2[i] {
                            assert!(
                                merge_directives(
                                    &own_list,
                                    &[(g1, &o2), (g2, &o3)],
                                    "u@contoso.com"
                                )
                                .is_err(),
                                "peers disagree on field {i}: {own:?} {g1:?} {g2:?}"
                            );
                        }
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked >= 1000, "{checked}");
    }

    #[test]
    fn the_users_own_entry_overrides_a_group_field_by_field() {
        let own = flag(false);
        let group = Directives {
            force_change_password_next_sign_in_with_mfa: Some(true),
            ..flag(true)
        };
        let m = merge_directives(&[(&own, &o(3))], &[(&group, &o(9))], "a@contoso.com").unwrap();
        assert_eq!(m.force_change_password_next_sign_in, Some(false));
        assert_eq!(m.force_change_password_next_sign_in_with_mfa, Some(true));
        // a group's requirePasswordChange against the user's literal false: the user's wins
        let group = require("2026-11-20T00:00:00Z", false);
        let m = merge_directives(&[(&own, &o(3))], &[(&group, &o(9))], "a@contoso.com").unwrap();
        assert_eq!(m, own);
    }
}
