//! The machine plan: the [`Plan`] serialised as pretty JSON, `format_version` first, keys in a
//! fixed order (struct order; `serde_json` keeps insertion order), so the same plan always gives
//! the same bytes. The document is described by `pwdrift schema plan`; `plan --out FILE` writes
//! exactly this, and [`crate::plan::parse_saved`] reads it back.

use crate::plan::Plan;

/// The plan as a versioned JSON document, with a trailing newline.
/// [`json`] written straight to `w` (the same bytes), without holding the document in memory: a
/// 100,000-user plan is about 100 MB of JSON.
pub fn write_json<W: std::io::Write>(plan: &Plan, mut w: W) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut w, plan).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}

pub fn json(plan: &Plan) -> String {
    let mut s = serde_json::to_string_pretty(plan).expect("a plan always serialises");
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
        assert!(s.starts_with("{\n  \"format_version\": \"1\",\n"), "{s}");
        assert_eq!(parse_saved(&s).unwrap(), plan);
    }

    #[test]
    fn unknown_version_is_a_clear_error() {
        let s = json(&fixtures::no_changes())
            .replace("\"format_version\": \"1\"", "\"format_version\": \"2\"");
        let err = parse_saved(&s).unwrap_err();
        assert!(matches!(err, PlanFileError::UnsupportedVersion { ref found } if found == "2"));
        let msg = err.to_string();
        assert!(msg.contains("format_version 2 is not supported"), "{msg}");
        assert!(msg.contains("reads version 1"), "{msg}");
    }

    #[test]
    fn missing_version_and_bad_json() {
        assert!(matches!(
            parse_saved("{\"tenants\": []}"),
            Err(PlanFileError::MissingVersion)
        ));
        let err = parse_saved("{\"format_version\": \"1\",").unwrap_err();
        assert!(matches!(err, PlanFileError::Syntax(_)));
        assert!(err.to_string().contains("line 1"), "{err}");
        // right version, wrong shape: names the problem
        let err = parse_saved("{\"format_version\": \"1\", \"tenants\": 3}").unwrap_err();
        assert!(matches!(err, PlanFileError::Invalid(_)), "{err:?}");
    }
}
