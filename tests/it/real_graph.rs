//! End to end against a tenant shaped like real ones (examples/sandbox/privileged.seed.yaml):
//! custom roles, administrative-unit scopes, roles held through role-assignable groups, PIM
//! eligibility (and its refusal, and a tenant without the licence), a federated domain, a guest
//! and a UPN starting with `$`. The real binary runs against the sandbox (`common::Sandbox`);
//! what was written is checked through `/_sandbox/stats` and `/_sandbox/state`.

use crate::common::*;

const DESIRED: &str = "tests/fixtures/real_graph/northwind.yaml";
const SEED: &str = "examples/sandbox/privileged.seed.yaml";

fn desired() -> String {
    repo().join(DESIRED).to_str().unwrap().to_owned()
}

/// The privileged seed with `from` replaced by `to` (e.g. a permission taken away), in `dir`.
fn seed_with(dir: &std::path::Path, from: &str, to: &str) -> String {
    let text = std::fs::read_to_string(repo().join(SEED)).unwrap();
    assert!(text.contains(from), "{from} not in the seed");
    write(dir, "seed.yaml", &text.replace(from, to))
        .to_str()
        .unwrap()
        .to_owned()
}

fn plan_json(sb: &Sandbox, extra: &[&str]) -> (Run, serde_json::Value) {
    let run = run(sb
        .pwdrift()
        .args(["plan", "--format", "json"])
        .args(extra)
        .arg(desired()));
    let json = serde_json::from_str(&run.stdout).unwrap_or(serde_json::Value::Null);
    (run, json)
}

/// upn -> (action type, blocker, detail)
fn actions(
    plan: &serde_json::Value,
) -> std::collections::BTreeMap<String, (String, String, String)> {
    plan["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            let a = &u["action"];
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            (
                s(&u["user_principal_name"]).to_lowercase(),
                (s(&a["type"]), s(&a["blocker"]), s(&a["detail"])),
            )
        })
        .collect()
}

#[test]
fn every_kind_of_admin_guest_and_federated_user_is_blocked_and_the_dollar_upn_is_applied() {
    let sb = Sandbox::seed(repo().join(SEED)).start();
    let (run_plan, plan) = plan_json(&sb, &[]);
    assert_eq!(run_plan.code, 0, "{run_plan:?}");
    let a = actions(&plan);
    let blocked = |upn: &str, blocker: &str, needle: &str| {
        let (ty, b, detail) = &a[upn];
        assert_eq!(
            (ty.as_str(), b.as_str()),
            ("blocked", blocker),
            "{upn}: {detail}"
        );
        assert!(detail.contains(needle), "{upn}: {detail}");
    };
    let p = "privileged_target";
    blocked(
        "admin@northwind.com",
        p,
        "Privileged Authentication Administrator (active)",
    );
    blocked("ben@northwind.com", p, "Password Resetter (active)");
    blocked(
        "chloe@northwind.com",
        p,
        "User Administrator (active, scope /administrativeUnits/",
    );
    blocked(
        "dmitri@northwind.com",
        p,
        "Helpdesk Administrator (active, via group Helpdesk Admins)",
    );
    blocked("elena@northwind.com", p, "Global Administrator (eligible)");
    blocked(
        "farid@northwind.com",
        p,
        "Privileged Role Administrator (eligible, via group Tier0 Candidates)",
    );
    let unmanaged = "password_not_managed_by_entra";
    blocked(
        "grace@corp.northwind.com",
        unmanaged,
        "federated domain corp.northwind.com",
    );
    blocked(
        "hiro_fabrikam.com#ext#@northwind.onmicrosoft.com",
        unmanaged,
        "guest",
    );
    assert_eq!(a["ada@northwind.com"].0, "set_flags");
    assert_eq!(a["$ines@northwind.com"].0, "set_flags");
    assert!(plan["tenants"][0].get("notes").is_none(), "{plan}");

    let apply = run(sb
        .pwdrift()
        .args(["apply", "--auto-approve"])
        .arg(desired()));
    // blocked users make the apply incomplete (exit 1); the two changes are verified
    assert!(
        apply
            .stdout
            .contains("2 changed and verified, 0 failed, 0 unknown, 0 not started, 8 blocked"),
        "{apply:?}"
    );
    let stats = sb.stats();
    let mut patched: Vec<String> = stats["patchesPerUser"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.to_lowercase())
        .collect();
    patched.sort();
    assert_eq!(
        patched,
        ["$ines@northwind.com", "ada@northwind.com"],
        "{stats}"
    );
    let state = sb.call("GET", "/_sandbox/state?user=$ines@northwind.com", None);
    assert!(
        state
            .to_string()
            .contains("\"forceChangePasswordNextSignIn\":true"),
        "{state}"
    );

    let again = run(sb.pwdrift().arg("plan").arg(desired()));
    assert!(
        again
            .stdout
            .contains("0 to update, 0 password resets, 8 blocked, 2 unchanged"),
        "only blocked users remain: {again:?}"
    );
}

#[test]
fn refused_eligibility_read_stops_naming_the_permission_unless_assumed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_with(
        dir.path(),
        "- RoleManagement.Read.Directory",
        "- Directory.Read.All",
    );
    let sb = Sandbox::seed(&seed).start();
    let (plan, _) = plan_json(&sb, &[]);
    assert_ne!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stderr
            .contains("RoleEligibilitySchedule.Read.Directory"),
        "{plan:?}"
    );
    assert!(
        plan.stderr.contains("--assume-no-eligible-admins"),
        "{plan:?}"
    );

    let apply = run(sb
        .pwdrift()
        .args(["apply", "--auto-approve"])
        .arg(desired()));
    assert_ne!(apply.code, 0, "{apply:?}");
    assert!(
        apply
            .stderr
            .contains("RoleEligibilitySchedule.Read.Directory"),
        "{apply:?}"
    );
    assert_eq!(sb.total_patches(), 0, "nothing written");

    // knowingly: eligible admins are then ordinary users, and the plan says so
    let (plan, json) = plan_json(&sb, &["--assume-no-eligible-admins"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let notes = json["tenants"][0]["notes"].to_string();
    assert!(notes.contains("--assume-no-eligible-admins"), "{notes}");
    let a = actions(&json);
    assert_eq!(a["elena@northwind.com"].0, "set_flags");
    assert_eq!(
        a["dmitri@northwind.com"].1, "privileged_target",
        "active roles still read"
    );
}

#[test]
fn a_tenant_without_a_pim_licence_has_no_eligible_admins_and_the_plan_says_so() {
    // a tenant without the licence cannot have eligibilities: the seed's are left out
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join(SEED)).unwrap();
    let cut = text
        .find("    roleEligibilities:")
        .expect("eligibilities last in the seed");
    let seed = write(dir.path(), "seed.yaml", &text[..cut]);
    let sb = Sandbox::seed(&seed)
        .configure(|c| c.realism.no_pim_license = true)
        .start();
    let (plan, json) = plan_json(&sb, &[]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let notes = json["tenants"][0]["notes"].to_string();
    assert!(
        notes.contains("no licence for Privileged Identity Management"),
        "{notes}"
    );
    let a = actions(&json);
    assert_eq!(
        a["elena@northwind.com"].0, "set_flags",
        "no one can be eligible"
    );
    assert_eq!(a["chloe@northwind.com"].1, "privileged_target");

    for format in ["text", "markdown"] {
        let out = run(sb
            .pwdrift()
            .args(["plan", "--format", format])
            .arg(desired()));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.stdout
                .contains("no licence for Privileged Identity Management"),
            "{format}: {out:?}"
        );
    }
}

#[test]
fn refused_domains_read_stops_naming_the_permission() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_with(dir.path(), "          - Domain.Read.All\n", "");
    let sb = Sandbox::seed(&seed).start();
    let (plan, _) = plan_json(&sb, &[]);
    assert_ne!(plan.code, 0, "{plan:?}");
    assert!(plan.stderr.contains("Domain.Read.All"), "{plan:?}");
    assert_eq!(sb.total_patches(), 0);
}

/// Reads lag writes by 3 s: apply of ~40 changes (flag changes and password resets) still ends
/// with every change verified, each user written once.
#[test]
fn replica_lag_is_tolerated_and_nothing_is_written_twice() {
    let sb = Sandbox::generate(120)
        .rng_seed(7)
        .read_lag(std::time::Duration::from_millis(3000))
        .start();
    let state = sb.state();
    let t = &state["tenants"][0];
    let tenant = t["initialDomain"].as_str().unwrap().to_owned();
    let users: Vec<String> = t["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| {
            u["privileged"] != serde_json::json!(true)
                && u["onPremisesSyncEnabled"] != serde_json::json!(true)
                && u["userType"] == serde_json::json!("Member")
                && u["federatedDomain"] != serde_json::json!(true)
        })
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
        .take(40)
        .collect();
    assert_eq!(users.len(), 40, "{state}");
    let mut text = format!("version: 1\ntenant: {tenant}\nusers:\n");
    for (i, u) in users.iter().enumerate() {
        if i % 2 == 0 {
            text.push_str(&format!(
                "  - user: {u}\n    forceChangePasswordNextSignInWithMfa: true\n"
            ));
        } else {
            text.push_str(&format!(
                "  - user: {u}\n    resetPassword:\n      notBefore: 2026-01-01T00:00:00Z\n      password: {{ generate: {{ length: 24 }} }}\n"
            ));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let desired = write(dir.path(), "d.yaml", &text);
    let secrets = dir.path().join("secrets.jsonl");
    let report = dir.path().join("report.json");
    let apply = run(sb.pwdrift().args([
        "apply",
        desired.to_str().unwrap(),
        "--auto-approve",
        "--force",
        "--verify-timeout",
        "60",
        "--secrets-out",
        secrets.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let users = report["users"].as_array().unwrap();
    let failed: Vec<_> = users.iter().filter(|u| u["status"] == "failed").collect();
    assert!(failed.is_empty(), "{failed:?}");
    let changed: Vec<&str> = users
        .iter()
        .filter(|u| u["status"] == "verified")
        .map(|u| u["user_principal_name"].as_str().unwrap())
        .collect();
    assert!(changed.len() >= 30, "about 40 changes: {report}");
    let stats = sb.stats();
    for u in users {
        let upn = u["user_principal_name"].as_str().unwrap();
        let patches = stats["patchesPerUser"][upn].as_u64().unwrap_or(0);
        let resets = stats["resetsPerUser"][upn].as_u64().unwrap_or(0);
        let want = u64::from(changed.contains(&upn));
        assert_eq!(
            patches + resets,
            want,
            "{upn} written {want} time(s): {stats}"
        );
    }
}
