//! Merging the directives that apply to one user: its own entry and the entries of the groups it
//! is a (transitive) member of.
//!
//! Group membership is live state, so this cannot happen at load time; the plan step calls
//! [`merge_directives`] once it knows the members. The rules:
//!
//! - Directives that are identical, or that no other entry sets, merge into one set.
//! - The same directive with different values (e.g. the user's entry says
//!   `forceChangePasswordNextSignIn: false`, a group says `true`; or two `requirePasswordChange`
//!   with different `since`) is a conflict: an error naming both origins. No entry silently wins,
//!   not even the user's own: which one was meant is for a person to decide.
//! - The merged set must also pass the contradiction table of [`contradictions`] (e.g. a group's
//!   `requirePasswordChange` with the user's literal `forceChangePasswordNextSignIn: false`); a
//!   contradiction across entries is an error naming the entries involved.
//! - `allowPrivileged` is true when any entry says so. Rationale: `allowPrivileged: true` on a group
//!   entry is an explicit, reviewed statement that the group's privileged members are in scope;
//!   requiring it on a per-user entry as well would make group entries unable to cover them at all.
//!   Without any `allowPrivileged: true`, privileged users are not touched.
//!
//! Also here: the declarations of one tenant across files. [`duplicates`] finds a user or group
//! declared twice for one tenant; [`union`] joins the [`TenantDesired`] entries that turn out to
//! be one tenant written several ways (its initial domain, a verified domain, its id), which only
//! the plan step can know, so that [`duplicates`] runs again over all of its files.

use std::collections::HashMap;

use super::check::{contradictions, Field};
use super::diag::Diagnostic;
use super::model::{Directives, Origin, TenantDesired, UserRef};

const CONFLICT_HELP: &str = "a user's own entry and the entries of its groups must agree: \
    change one of them, or take the user out of the group";

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
            "conflicting `{key}` for one user: its entries declare different values"
        ))
        .with_label(seen.origin.clone(), describe(&seen.value))
        .with_label(origin.clone(), describe(value))
        .with_help(CONFLICT_HELP)),
    }
}

/// Merges the directives of the entries that apply to one user (see the module comment).
/// `entries` are (directives, origin of the entry's `user:`/`group:` value).
pub fn merge_directives(entries: &[(&Directives, &Origin)]) -> Result<Directives, Diagnostic> {
    let mut force: Option<Seen<bool>> = None;
    let mut force_mfa: Option<Seen<bool>> = None;
    let mut require = None;
    let mut reset = None;
    let mut allow_privileged = false;
    for (d, origin) in entries {
        merge_field(
            &mut force,
            d.force_change_password_next_sign_in.as_ref(),
            origin,
            "forceChangePasswordNextSignIn",
            |v| format!("`forceChangePasswordNextSignIn: {v}` here"),
        )?;
        merge_field(
            &mut force_mfa,
            d.force_change_password_next_sign_in_with_mfa.as_ref(),
            origin,
            "forceChangePasswordNextSignInWithMfa",
            |v| format!("`forceChangePasswordNextSignInWithMfa: {v}` here"),
        )?;
        merge_field(
            &mut require,
            d.require_password_change.as_ref(),
            origin,
            "requirePasswordChange",
            |r| {
                format!(
                    "since {}, withMfa: {}",
                    r.since.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    r.with_mfa
                )
            },
        )?;
        merge_field(
            &mut reset,
            d.reset_password.as_ref(),
            origin,
            "resetPassword",
            |p| {
                format!(
                    "notBefore {}, forceChangeAfter: {}",
                    p.not_before
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    p.force_change_after
                )
            },
        )?;
        allow_privileged |= d.allow_privileged;
    }
    let origin_of = |f: Field| -> Option<&Origin> {
        match f {
            Field::ForceChange => force.as_ref().map(|s| s.origin),
            Field::ForceChangeWithMfa => force_mfa.as_ref().map(|s| s.origin),
            Field::RequirePasswordChange => require.as_ref().map(|s| s.origin),
            Field::ResetPassword => reset.as_ref().map(|s| s.origin),
        }
    };
    let merged = Directives {
        force_change_password_next_sign_in: force.as_ref().map(|s| s.value),
        force_change_password_next_sign_in_with_mfa: force_mfa.as_ref().map(|s| s.value),
        require_password_change: require.as_ref().map(|s| s.value.clone()),
        reset_password: reset.as_ref().map(|s| s.value.clone()),
        allow_privileged,
    };
    if let Some(c) = contradictions(&merged).into_iter().next() {
        let mut d = Diagnostic::error(format!(
            "conflicting directives for one user: {}",
            c.message
        ))
        .with_help(CONFLICT_HELP);
        let (a, b) = c.fields;
        let oa = origin_of(a);
        let ob = origin_of(b);
        for o in [oa, ob].into_iter().flatten() {
            if !d.labels.iter().any(|l| &l.origin == o) {
                d = d.with_label(o.clone(), "declared here");
            }
        }
        return Err(d);
    }
    Ok(merged)
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
        let merged = merge_directives(&[(&a, &o(1)), (&b, &o(2)), (&c, &o(3))]).unwrap();
        assert_eq!(merged.require_password_change, a.require_password_change);
        assert_eq!(merged.force_change_password_next_sign_in, Some(false));
        assert!(!merged.allow_privileged);
    }

    #[test]
    fn empty_input_is_empty_directives() {
        assert_eq!(merge_directives(&[]).unwrap(), Directives::default());
    }

    #[test]
    fn same_directive_with_different_values_conflicts_naming_both() {
        let a = flag(false);
        let b = flag(true);
        let err = merge_directives(&[(&a, &o(4)), (&b, &o(9))]).unwrap_err();
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
        let err = merge_directives(&[(&a, &o(4)), (&b, &o(9))]).unwrap_err();
        assert!(err.message.contains("requirePasswordChange"));
        assert!(err.labels[1].text.contains("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn contradictions_across_entries_are_conflicts() {
        // the user's own literal false vs the group's requirePasswordChange
        let own = flag(false);
        let group = require("2026-11-20T00:00:00Z", false);
        let err = merge_directives(&[(&own, &o(4)), (&group, &o(20))]).unwrap_err();
        assert!(err
            .message
            .starts_with("conflicting directives for one user"));
        let lines: Vec<_> = err.labels.iter().map(|l| l.origin.line).collect();
        assert_eq!(lines, vec![4, 20]);

        // with MFA the group drives the other flag: no contradiction
        let group = require("2026-11-20T00:00:00Z", true);
        assert!(merge_directives(&[(&own, &o(4)), (&group, &o(20))]).is_ok());

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
        let err = merge_directives(&[(&group, &o(20)), (&reset, &o(30))]).unwrap_err();
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
        let merged = merge_directives(&[(&own, &o(1)), (&group, &o(2))]).unwrap();
        assert!(merged.allow_privileged);
        let merged = merge_directives(&[(&own, &o(1))]).unwrap();
        assert!(!merged.allow_privileged);
    }
}
