//! `selectors:` and `exclude:` through the real binary against the sandbox: every member user,
//! an OData filter sent as written (an advanced one too), a filter Graph refuses, exclusions
//! counted and never blocking, an exclusion that names no one, and the precedence rule (a
//! `users:` entry overrides; two selectors that disagree fail before any write).

use crate::common::*;

const HEAD: &str = "version: 1\ntenant: contoso.onmicrosoft.com\n";

fn desired(dir: &std::path::Path, body: &str) -> String {
    write(dir, "d.yaml", &format!("{HEAD}{body}"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn json_plan(sb: &Sandbox, desired: &str) -> serde_json::Value {
    let out = run(sb.pwdrift().args(["plan", desired, "--format", "json"]));
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

fn upns(plan: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = plan["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_principal_name"].as_str().unwrap().to_lowercase())
        .collect();
    v.sort();
    v
}

/// `all: true` with the break-glass administrator and a group excluded: the excluded users are
/// not in the plan, the text says how many, and `apply` does not fail on them.
#[test]
fn all_users_except_the_excluded_ones() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let d = desired(
        dir.path(),
        "selectors:\n  - all: true\n    forceChangePasswordNextSignIn: false\nexclude:\n  - user: admin@contoso.com\n  - user: erin@contoso.com\n  - group: Finance Contractors\n",
    );
    let plan = json_plan(&sb, &d);
    let users = upns(&plan);
    assert!(users.contains(&"bob@contoso.com".to_owned()), "{users:?}");
    assert!(
        !users.contains(&"admin@contoso.com".to_owned()),
        "{users:?}"
    );
    assert!(!users.contains(&"erin@contoso.com".to_owned()), "{users:?}");
    let excluded = plan["tenants"][0]["excluded"].as_u64().unwrap();
    assert!(excluded >= 2, "{plan}");

    let text = run(sb.pwdrift().args(["plan", &d]));
    assert_eq!(text.code, 0, "{text:?}");
    let line = text
        .stdout
        .lines()
        .find(|l| l.contains("excluded"))
        .unwrap_or_else(|| panic!("no excluded line: {text:?}"))
        .trim()
        .to_owned();
    assert_eq!(line, format!("{excluded} excluded."));
    insta::assert_snapshot!("excluded_count_line", line);

    let apply = run(sb.pwdrift().args(["apply", "--auto-approve", &d]));
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(sb.patches_of("admin@contoso.com"), 0);
    assert_eq!(sb.patches_of("erin@contoso.com"), 0);
    assert_eq!(sb.patches_of("bob@contoso.com"), 1);
}

/// A filter is sent as written: a plain one and an advanced one (`ne`, which needs
/// `ConsistencyLevel: eventual`) select exactly the users Graph matches.
#[test]
fn filters_select_what_graph_matches() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let d = desired(
        dir.path(),
        "selectors:\n  - filter: \"startsWith(userPrincipalName,'b')\"\n    forceChangePasswordNextSignIn: false\n",
    );
    assert_eq!(upns(&json_plan(&sb, &d)), ["bob@contoso.com"]);
    let d = desired(
        dir.path(),
        "selectors:\n  - filter: \"userPrincipalName ne 'bob@contoso.com'\"\n    forceChangePasswordNextSignInWithMfa: false\nexclude:\n  - user: erin@contoso.com\n  - user: admin@contoso.com\n",
    );
    let users = upns(&json_plan(&sb, &d));
    assert!(!users.contains(&"bob@contoso.com".to_owned()), "{users:?}");
    assert!(users.contains(&"alice@contoso.com".to_owned()), "{users:?}");
}

/// A filter Graph refuses: `plan` exits 1 quoting it (escaped), and nothing is written.
#[test]
fn a_refused_filter_is_quoted_and_nothing_is_written() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let d = desired(
        dir.path(),
        "selectors:\n  - filter: \"favouriteColour eq 'blue\\u001b[31m'\"\n    forceChangePasswordNextSignIn: false\n",
    );
    for cmd in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let out = run(sb.pwdrift().args(cmd).arg(&d));
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr
                .contains("Graph refused the filter of the selector at"),
            "{out:?}"
        );
        assert!(
            out.stderr.contains("favouriteColour eq 'blue\\u{1b}[31m'"),
            "{out:?}"
        );
        assert!(!out.stderr.contains('\u{1b}'), "{out:?}");
    }
    assert_eq!(sb.total_patches(), 0);
}

/// An exclusion that names no one is a warning in the plan, not an error.
#[test]
fn an_exclusion_naming_no_one_is_warned_about() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let d = desired(
        dir.path(),
        "users:\n  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: false\nexclude:\n  - user: gone@contoso.com\n",
    );
    let out = run(sb.pwdrift().args(["plan", &d]));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("the exclusion of user gone@contoso.com")
            && out.stdout.contains("names no one"),
        "{out:?}"
    );
}

/// Precedence: a `users:` entry overrides the selectors; two selectors that disagree for one
/// user fail before any write with one diagnostic naming both entries and the user.
#[test]
fn precedence_users_entry_wins_and_disagreeing_selectors_fail() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let conflict = desired(
        dir.path(),
        "selectors:\n  - filter: \"startsWith(userPrincipalName,'b')\"\n    forceChangePasswordNextSignIn: false\n  - filter: \"startsWith(userPrincipalName,'bo')\"\n    forceChangePasswordNextSignIn: true\n",
    );
    for cmd in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let out = run(sb.pwdrift().args(cmd).arg(&conflict).env("NO_COLOR", "1"));
        assert_eq!(out.code, 1, "{out:?}");
        assert_eq!(
            out.stderr.matches("error: conflicting").count(),
            1,
            "{out:?}"
        );
        assert!(out.stderr.contains("d.yaml:4:13"), "{out:?}");
        assert!(out.stderr.contains("d.yaml:6:13"), "{out:?}");
        assert!(out.stderr.contains("for user bob@contoso.com"), "{out:?}");
    }
    assert_eq!(sb.total_patches(), 0);
    let out = run(sb.pwdrift().args(["plan", &conflict]).env("NO_COLOR", "1"));
    let shown = out
        .stderr
        .replace(dir.path().to_str().unwrap(), "DIR")
        .lines()
        .filter(|l| !l.contains("warning") && !l.trim_start().starts_with("= help: Graph clears"))
        .collect::<Vec<_>>()
        .join("\n");
    let from = shown.find("error: conflicting").unwrap();
    insta::assert_snapshot!("selector_conflict_diagnostic", &shown[from..]);

    // the user's own entry settles it
    let settled = desired(
        dir.path(),
        "users:\n  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\nselectors:\n  - filter: \"startsWith(userPrincipalName,'b')\"\n    forceChangePasswordNextSignIn: false\n  - filter: \"startsWith(userPrincipalName,'bo')\"\n    forceChangePasswordNextSignIn: true\n",
    );
    let plan = json_plan(&sb, &settled);
    assert_eq!(upns(&plan), ["bob@contoso.com"]);
    let apply = run(sb.pwdrift().args(["apply", "--auto-approve", &settled]));
    assert_eq!(apply.code, 0, "{apply:?}");
    let state = sb.state();
    let bob = state["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["userPrincipalName"] == "bob@contoso.com")
        .cloned();
    assert!(bob.is_some());
}

/// Requests to `identityProtection/riskyUsers` by status, summed over the API versions.
fn risky_requests(sb: &Sandbox) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    let stats = sb.stats();
    for (route, by_status) in stats["requests"].as_object().unwrap() {
        if !route.contains("riskyUsers") {
            continue;
        }
        for (status, n) in by_status.as_object().unwrap() {
            *out.entry(status.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
        }
    }
    out
}

const RISKY_HIGH: &str =
    "selectors:\n  - riskyUsers: { riskLevel: high }\n    forceChangePasswordNextSignIn: true\n";

/// `riskyUsers: { riskLevel: high }` selects exactly the users at high risk still at risk (frank
/// in the contoso seed; not dave, dismissed, nor carol, remediated, nor grace, medium), read
/// across pages (page size 1) without one 429: the client keeps to 1 request per second.
#[test]
fn risky_users_high_selects_exactly_high_and_at_risk_across_pages() {
    let sb = Sandbox::contoso()
        .configure(|c| c.realism.risky_page_size = 1)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let d = desired(dir.path(), RISKY_HIGH);
    let plan = json_plan(&sb, &d);
    assert_eq!(upns(&plan), vec!["frank@contoso.com".to_owned()], "{plan}");
    let by_status = risky_requests(&sb);
    // three users at risk (frank, grace, bob), one per page
    assert_eq!(by_status.get("200"), Some(&3), "{by_status:?}");
    assert_eq!(by_status.get("429"), None, "{by_status:?}");
}

/// A tenant without Entra ID P2: the plan stops with exit 1 and says what is needed.
#[test]
fn risky_users_without_a_p2_licence_is_explained() {
    let sb = Sandbox::contoso()
        .configure(|c| c.realism.no_identity_protection_license = true)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let d = desired(dir.path(), RISKY_HIGH);
    let out = run(sb.pwdrift().args(["plan", &d]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("Entra ID P2"), "{out:?}");
    assert!(out.stderr.contains("IdentityRiskyUser.Read.All"), "{out:?}");
    assert!(out.stderr.contains("nothing was planned"), "{out:?}");
    assert_eq!(sb.total_patches(), 0);
}

/// An app without IdentityRiskyUser.Read.All: exit 1, the permission named.
#[test]
fn risky_users_without_the_permission_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(repo().join(CONTOSO_SEED))
        .unwrap()
        .replace("          - IdentityRiskyUser.Read.All\n", "");
    let seed = write(dir.path(), "no-risky-permission.seed.yaml", &seed);
    let sb = Sandbox::seed(&seed).start();
    let d = desired(dir.path(), RISKY_HIGH);
    let out = run(sb.pwdrift().args(["plan", &d]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("IdentityRiskyUser.Read.All"), "{out:?}");
    assert!(
        out.stderr.contains("Authorization_RequestDenied"),
        "{out:?}"
    );
    assert_eq!(risky_requests(&sb).get("403"), Some(&1));
}

/// Two plans at once share Identity Protection's 1 request per second: at least one request is
/// answered 429 (without `Retry-After`), and both plans wait it out and succeed with the same
/// selection.
#[test]
fn risky_users_throttled_waits_and_succeeds() {
    let sb = Sandbox::contoso()
        .configure(|c| c.realism.risky_page_size = 1)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let d = desired(dir.path(), RISKY_HIGH);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(sb.pwdrift().args(["plan", &d, "--format", "json"])));
        let b = s.spawn(|| run(sb.pwdrift().args(["plan", &d, "--format", "json"])));
        (a.join().unwrap(), b.join().unwrap())
    });
    for out in [&a, &b] {
        assert_eq!(out.code, 0, "{out:?}");
        let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(upns(&plan), vec!["frank@contoso.com".to_owned()], "{plan}");
    }
    let by_status = risky_requests(&sb);
    assert_eq!(by_status.get("200"), Some(&6), "{by_status:?}");
    assert!(
        by_status.get("429").is_some_and(|n| *n >= 1),
        "{by_status:?}"
    );
}

/// A guest selected by a filter or by `riskyUsers` is left out, as `all: true` leaves guests
/// out (its home tenant owns its password), and a note counts it.
#[test]
fn guests_selected_by_filter_or_risky_users_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(repo().join(CONTOSO_SEED))
        .unwrap()
        .replacen(
            "\n    groups:",
            "\n      - id: 0b8f6b1c-3f41-4b8e-9a55-1c2d3e4f5a99\n        userPrincipalName: \"gina_fabrikam.com#EXT#@contoso.onmicrosoft.com\"\n        displayName: Gina Guest\n        userType: Guest\n        lastPasswordChangeDateTime: 2026-01-05T09:00:00Z\n\n    groups:",
            1,
        )
        .replacen(
            "\n    riskyUsers:\n",
            "\n    riskyUsers:\n      - user: \"gina_fabrikam.com#EXT#@contoso.onmicrosoft.com\"\n        riskLevel: high\n        riskState: atRisk\n",
            1,
        );
    let seed = write(dir.path(), "guest.seed.yaml", &seed);
    let sb = Sandbox::seed(&seed).start();
    let d = desired(
        dir.path(),
        "selectors:\n  - riskyUsers: { riskLevel: high }\n    forceChangePasswordNextSignIn: true\n  - filter: \"startsWith(userPrincipalName,'gina')\"\n    forceChangePasswordNextSignIn: true\n",
    );
    let plan = json_plan(&sb, &d);
    assert_eq!(upns(&plan), vec!["frank@contoso.com".to_owned()], "{plan}");
    let text = run(sb.pwdrift().args(["plan", &d]));
    assert_eq!(text.code, 0, "{text:?}");
    let notes: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.contains("guest selected by the selector"))
        .collect();
    assert_eq!(notes.len(), 2, "{text:?}");
    assert!(notes[0].contains("d.yaml:4:"), "{notes:?}");
    assert!(notes[1].contains("d.yaml:6:"), "{notes:?}");
}
