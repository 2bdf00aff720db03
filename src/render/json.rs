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
    use crate::plan::{parse_saved, PlanFileError};
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
        assert!(s.starts_with("{\n  \"format_version\": \"3\",\n"), "{s}");
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
            .replace("\"format_version\": \"3\"", "\"format_version\": \"4\"");
        let err = parse_saved(&s).unwrap_err();
        assert!(matches!(err, PlanFileError::UnsupportedVersion { ref found } if found == "4"));
        let msg = err.to_string();
        assert!(msg.contains("format_version 4 is not supported"), "{msg}");
        assert!(msg.contains("reads version 3"), "{msg}");
        assert!(msg.contains("pwdrift plan --out FILE"), "{msg}");
        // version 1 (before content hashes) and 2 (before `made_from`: no desired state to
        // derive the plan again from) are refused the same way: re-plan
        for old in ["1", "2"] {
            let s = json(&fixtures::no_changes()).replace(
                "\"format_version\": \"3\"",
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
        let err = parse_saved("{\"format_version\": \"3\",").unwrap_err();
        assert!(matches!(err, PlanFileError::Syntax(_)));
        assert!(err.to_string().contains("line 1"), "{err}");
        // right version, wrong shape: names the problem
        let err = parse_saved("{\"format_version\": \"3\", \"tenants\": 3}").unwrap_err();
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
}
