//! The machine plan: the [`Plan`] serialised as pretty JSON, `format_version` first, keys in a
//! fixed order (struct order; `serde_json` keeps insertion order), so the same plan always gives
//! the same bytes. The document is described by `pwdrift schema plan`; `plan --out FILE` writes
//! exactly this, and [`crate::plan::parse_saved`] reads it back.

use crate::plan::Plan;

/// A sealed plan ([`Plan::sealed`]: its `content_hash` set) written straight to `w`, the same bytes
/// as [`json`], without holding the document in memory: a 100,000-user plan is about 100 MB of
/// JSON. A plan that is not sealed yet is sealed on a copy first.
pub fn write_json<W: std::io::Write>(plan: &Plan, mut w: W) -> std::io::Result<()> {
    let sealed;
    let plan = if plan.content_hash.is_some() {
        plan
    } else {
        sealed = plan.clone().sealed();
        &sealed
    };
    serde_json::to_writer_pretty(&mut w, plan).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// The plan as a versioned JSON document, with a trailing newline and its `content_hash`
/// ([`crate::plan::content_hash`], always computed here from the content).
pub fn json(plan: &Plan) -> String {
    let plan = plan.clone().sealed();
    let mut s = serde_json::to_string_pretty(&plan).expect("a plan always serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PasswordSource;
    use crate::graph::model::ForceFlags;
    use crate::plan::{
        compare, parse_saved, Action, Blocker, PlanFileError, ResetMethod, UserPlan,
    };
    use crate::render::fixtures;

    #[test]
    fn rich_plan() {
        insta::assert_snapshot!(json(&fixtures::rich()));
    }

    #[test]
    fn no_changes_plan() {
        insta::assert_snapshot!(json(&fixtures::no_changes()));
    }

    #[test]
    fn format_version_comes_first_and_round_trips() {
        let plan = fixtures::rich();
        let s = json(&plan);
        assert!(s.starts_with("{\n  \"format_version\": \"4\",\n"), "{s}");
        let back = parse_saved(&s).unwrap();
        assert_eq!(back.content_hash, Some(crate::plan::content_hash(&plan)));
        assert_eq!(
            Plan {
                content_hash: None,
                ..back
            },
            plan
        );
        // whitespace does not matter, content does
        let compact: serde_json::Value = serde_json::from_str(&s).unwrap();
        parse_saved(&compact.to_string()).unwrap();
    }

    #[test]
    fn unknown_version_is_a_clear_error() {
        let s = json(&fixtures::no_changes())
            .replace("\"format_version\": \"4\"", "\"format_version\": \"5\"");
        let err = parse_saved(&s).unwrap_err();
        assert!(matches!(err, PlanFileError::UnsupportedVersion { ref found } if found == "5"));
        let msg = err.to_string();
        assert!(msg.contains("format_version 5 is not supported"), "{msg}");
        assert!(msg.contains("reads version 4"), "{msg}");
        assert!(msg.contains("pwdrift plan --out FILE"), "{msg}");
        // version 1 (before content hashes) and 2 (before `made_from`: no desired state to
        // derive the plan again from) and 3 (before `decided_at`: no record of the clock it
        // was decided by) are refused the same way: re-plan
        for old in ["1", "2", "3"] {
            let s = json(&fixtures::no_changes()).replace(
                "\"format_version\": \"4\"",
                &format!("\"format_version\": \"{old}\""),
            );
            assert!(matches!(
                parse_saved(&s),
                Err(PlanFileError::UnsupportedVersion { .. })
            ));
        }
    }

    #[test]
    fn missing_version_and_bad_json() {
        assert!(matches!(
            parse_saved("{\"tenants\": []}"),
            Err(PlanFileError::MissingVersion)
        ));
        let err = parse_saved("{\"format_version\": \"4\",").unwrap_err();
        assert!(matches!(err, PlanFileError::Syntax(_)));
        assert!(err.to_string().contains("line 1"), "{err}");
        // right version, wrong shape: names the problem
        let err = parse_saved("{\"format_version\": \"4\", \"tenants\": 3}").unwrap_err();
        assert!(matches!(err, PlanFileError::Invalid(_)), "{err:?}");
    }

    /// Edits the saved JSON of `plan` with `edit`, optionally recomputing the hash (a deliberate
    /// forgery rather than a hand edit).
    fn edited(plan: &Plan, reseal: bool, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&json(plan)).unwrap();
        edit(&mut v);
        if reseal {
            v.as_object_mut().unwrap().remove("content_hash");
            let unsealed: Plan = serde_json::from_value(v.clone()).unwrap();
            v["content_hash"] = crate::plan::content_hash(&unsealed).into();
        }
        v.to_string()
    }

    #[test]
    fn an_edited_plan_is_refused() {
        let plan = fixtures::rich();
        let s = edited(&plan, false, |v| {
            v["tenants"][0]["users"][0]["user_principal_name"] = "mallory@contoso.com".into();
        });
        let err = parse_saved(&s).unwrap_err();
        assert!(matches!(err, PlanFileError::Modified { .. }), "{err:?}");
        assert!(
            err.to_string().contains("modified after it was saved"),
            "{err}"
        );
        assert!(err.to_string().contains("re-plan"), "{err}");
        // no hash at all
        let s = edited(&plan, false, |v| {
            v.as_object_mut().unwrap().remove("content_hash");
        });
        assert!(matches!(parse_saved(&s), Err(PlanFileError::MissingHash)));
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        let plan = fixtures::rich();
        for path in [
            &[][..],
            &["tenants", "0"][..],
            &["tenants", "0", "users", "0"][..],
            &["tenants", "0", "users", "0", "action"][..],
        ] {
            let s = edited(&plan, false, |v| {
                let mut at = v;
                for k in path {
                    at = match k.parse::<usize>() {
                        Ok(i) => &mut at[i],
                        Err(_) => &mut at[*k],
                    };
                }
                at["surprise"] = true.into();
            });
            let err = parse_saved(&s).unwrap_err();
            assert!(
                err.to_string().contains("unknown field `surprise`"),
                "{path:?}: {err}"
            );
        }
    }

    #[test]
    fn duplicates_and_values_outside_the_schema_are_refused() {
        let plan = fixtures::rich();
        let dup = edited(&plan, true, |v| {
            let u = v["tenants"][0]["users"][0].clone();
            v["tenants"][0]["users"].as_array_mut().unwrap().push(u);
        });
        let err = parse_saved(&dup).unwrap_err();
        assert!(matches!(err, PlanFileError::OutOfSchema(_)), "{err:?}");
        assert!(err.to_string().contains("listed more than once"), "{err}");
        let dup_tenant = edited(&plan, true, |v| {
            let t = v["tenants"][0].clone();
            v["tenants"].as_array_mut().unwrap().push(t);
        });
        assert!(parse_saved(&dup_tenant)
            .unwrap_err()
            .to_string()
            .contains("more than once"));
        let bad_fp = edited(&plan, true, |v| {
            v["tenants"][0]["users"][0]["fingerprint"] = "abc".into();
        });
        assert!(parse_saved(&bad_fp)
            .unwrap_err()
            .to_string()
            .contains("64 hex digits"));
        let short = edited(&plan, true, |v| {
            v["tenants"][0]["users"][0]["action"]["password"] =
                serde_json::json!({"generate": {"length": 3}});
        });
        let err = parse_saved(&short).unwrap_err();
        assert!(
            err.to_string().contains("8 to 256 characters, not 3"),
            "{err}"
        );
        // what the plan was made from: at least one file, well-formed digests and shard
        for (edit, says) in [
            (
                serde_json::json!({"files": []}),
                "records no desired-state file",
            ),
            (
                serde_json::json!({"files": [{"path": "a.yaml", "sha256": "sha256:12"}]}),
                "64 hex digits",
            ),
            (
                serde_json::json!({"files": [{"path": "a.yaml", "sha256": format!("sha256:{}", "a".repeat(64))}], "shard": "5/4"}),
                "--shard",
            ),
        ] {
            let text = edited(&plan, true, |v| v["made_from"] = edit);
            let err = parse_saved(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        let bad_type = edited(&plan, false, |v| {
            v["tenants"][0]["users"][0]["action"]["type"] = "delete_user".into();
        });
        assert!(matches!(
            parse_saved(&bad_type),
            Err(PlanFileError::Invalid(_))
        ));
    }

    /// The plan derived again at apply time is compared on content: reasons, `created_at` and
    /// notes may differ; anything else names the user, sorted by kind.
    #[test]
    fn compare_names_the_users_that_differ_by_kind() {
        let saved = fixtures::rich();
        let mut derived = saved.clone();
        derived.created_at += chrono::Duration::hours(1);
        derived.content_hash = None;
        for t in &mut derived.tenants {
            t.notes.clear();
            for u in &mut t.users {
                match &mut u.action {
                    Action::NoChange { reason }
                    | Action::SetFlags { reason, .. }
                    | Action::ResetPassword { reason, .. } => *reason = "other words".into(),
                    Action::Blocked { detail, .. } => *detail = "other words".into(),
                }
            }
        }
        assert!(compare(&saved, &derived).is_empty());

        fn user<'a>(p: &'a mut Plan, upn: &str) -> &'a mut UserPlan {
            p.tenants
                .iter_mut()
                .flat_map(|t| t.users.iter_mut())
                .find(|u| u.user_principal_name == upn)
                .unwrap()
        }

        // a forged allow_privileged on a user the desired state does not allow
        let mut forged = saved.clone();
        user(&mut forged, "bob@contoso.com").allow_privileged = true;
        let m = compare(&forged, &derived);
        assert_eq!(m.different.len(), 1, "{m:?}");
        assert!(m.different[0].starts_with("bob@contoso.com ("), "{m:?}");
        assert!(m.different[0].contains("allow_privileged is true in the saved plan"));
        assert!(m.protected.is_empty() && m.stale.is_empty() && m.other_tenant.is_empty());

        // a blocked privileged user turned into a reset: the rails name it
        let mut forged = saved.clone();
        let (blocked_upn, blocker) = saved
            .tenants
            .iter()
            .flat_map(|t| &t.users)
            .find_map(|u| match u.action {
                Action::Blocked {
                    blocker: b @ Blocker::PrivilegedTarget,
                    ..
                } => Some((u.user_principal_name.clone(), b)),
                _ => None,
            })
            .expect("the fixture has a privileged user");
        assert_eq!(blocker, Blocker::PrivilegedTarget);
        user(&mut forged, &blocked_upn).action = Action::ResetPassword {
            method: ResetMethod::PatchPasswordProfile,
            password: PasswordSource::File {
                path: "/tmp/known".into(),
            },
            before: ForceFlags::default(),
            after: ForceFlags::default(),
            reason: "edited".into(),
        };
        let m = compare(&forged, &derived);
        assert_eq!(m.protected.len(), 1, "{m:?}");
        assert!(m.protected[0].contains(&blocked_upn), "{m:?}");
        assert!(m.protected[0].contains("from file /tmp/known"), "{m:?}");

        // another password source, another method, other flags: each is a difference
        let mut forged = saved.clone();
        let reset = forged
            .tenants
            .iter_mut()
            .flat_map(|t| t.users.iter_mut())
            .find(|u| matches!(u.action, Action::ResetPassword { .. }))
            .unwrap();
        let name = reset.user_principal_name.clone();
        if let Action::ResetPassword { password, .. } = &mut reset.action {
            *password = PasswordSource::Env { var: "MINE".into() };
        }
        let m = compare(&forged, &derived);
        assert!(
            m.different.len() == 1 && m.different[0].contains(&name),
            "{m:?}"
        );
        assert!(m.different[0].contains("from $MINE"), "{m:?}");

        // live state moved on: stale, not "different"
        let mut moved = derived.clone();
        user(&mut moved, "bob@contoso.com").fingerprint = "0".repeat(64);
        let m = compare(&saved, &moved);
        assert_eq!(m.stale.len(), 1, "{m:?}");
        assert!(m.stale[0].contains("bob@contoso.com"));
        assert!(m.different.is_empty());

        // a user dropped from, or added to, the saved plan
        let mut fewer = saved.clone();
        fewer.tenants[0].users.remove(0);
        let m = compare(&fewer, &derived);
        assert_eq!(m.different.len(), 1, "{m:?}");
        assert!(m.different[0].contains("not in the saved plan"), "{m:?}");
        let m = compare(&saved, &{
            let mut d = derived.clone();
            d.tenants[0].users.remove(0);
            d
        });
        assert!(
            m.different[0].contains("in the saved plan, not in the plan"),
            "{m:?}"
        );

        // another tenant id
        let mut other = saved.clone();
        other.tenants[0].tenant_id = "00000000-0000-4000-8000-000000000bad".into();
        let m = compare(&other, &derived);
        assert_eq!(m.other_tenant.len(), 1, "{m:?}");
        assert!(
            m.other_tenant[0].contains("the credentials are for"),
            "{m:?}"
        );
    }
}
