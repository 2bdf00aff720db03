//! A tenant is its id: the same tenant written as its initial domain, its id and a verified
//! domain in three files is one tenant. `validate` (offline) says it cannot tell; `plan` and
//! `apply` resolve the names (the `tid` of the token issued for each) and check the union, so a
//! user declared twice across those files is refused with both places, and a split desired state
//! writes each user once.

use crate::common::*;

const SEED: &str = "examples/sandbox/contoso.seed.yaml";
const TENANT_ID: &str = "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90";

/// Three files, one per way of naming Contoso, each with these users.
fn three_files(dir: &std::path::Path, users: [&str; 3]) -> String {
    for (name, (tenant, u)) in ["a.yaml", "b.yaml", "c.yaml"].into_iter().zip(
        ["contoso.onmicrosoft.com", TENANT_ID, "contoso.com"]
            .into_iter()
            .zip(users),
    ) {
        write(dir, name, &format!("version: 1\ntenant: {tenant}\n{u}"));
    }
    dir.to_str().unwrap().to_owned()
}

fn writes(sb: &Sandbox) -> serde_json::Value {
    let stats = sb.stats();
    serde_json::json!({
        "patches": stats["patchesPerUser"],
        "resets": stats["resetsPerUser"],
    })
}

#[test]
fn one_user_declared_in_two_aliases_of_a_tenant_is_refused_naming_both() {
    let sb = Sandbox::seed(repo().join(SEED)).start();
    let dir = tempfile::tempdir().unwrap();
    let desired = three_files(
        dir.path(),
        [
            "users:\n  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n",
            "users:\n  - user: grace@contoso.com\n    forceChangePasswordNextSignIn: false\n",
            "users:\n  - user: Bob@contoso.com\n    forceChangePasswordNextSignIn: true\n",
        ],
    );

    // offline: three tenants as far as anyone can tell, and it says so
    let validate = run(sb.pwdrift().args(["validate", &desired]));
    assert_eq!(validate.code, 0, "{validate:?}");
    assert!(validate.stdout.contains("3 tenants"), "{validate:?}");
    assert!(
        validate.stderr.contains(
            "note: 2 tenants written as domains; whether they are the same tenant is checked by plan"
        ),
        "{validate:?}"
    );

    for cmd in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let out = run(sb.pwdrift().args(cmd).arg(&desired));
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.contains(
                "user `bob@contoso.com` is declared twice for tenant `contoso.onmicrosoft.com`"
            ),
            "{out:?}"
        );
        let a = dir.path().join("a.yaml");
        let c = dir.path().join("c.yaml");
        assert!(
            out.stderr.contains(&format!("{}:4:11", a.display())),
            "{out:?}"
        );
        assert!(
            out.stderr.contains(&format!("{}:4:11", c.display())),
            "{out:?}"
        );
        assert!(
            out.stderr.contains("nothing was read or changed"),
            "{out:?}"
        );
        assert!(out.stdout.is_empty(), "no plan shown: {out:?}");
    }
    let w = writes(&sb);
    assert!(
        w["patches"].as_object().is_none_or(|m| m.is_empty()),
        "nothing written: {w}"
    );
}

#[test]
fn a_tenant_split_over_its_aliases_is_one_tenant_and_each_user_is_written_once() {
    let sb = Sandbox::seed(repo().join(SEED)).start();
    let dir = tempfile::tempdir().unwrap();
    // frank is in Finance: his own entry (c.yaml) and the group's (b.yaml) agree, so they merge;
    // written as three tenants, he would be patched once per name
    let desired = three_files(
        dir.path(),
        [
            "users:\n  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n",
            "groups:\n  - group: Finance\n    requirePasswordChange: { since: 2026-11-01T00:00:00Z }\n",
            "users:\n  - user: frank@contoso.com\n    requirePasswordChange: { since: 2026-11-01T00:00:00Z }\n",
        ],
    );

    let plan = run(sb.pwdrift().args(["plan", "--format", "json", &desired]));
    assert_eq!(plan.code, 0, "{plan:?}");
    let json: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let tenants = json["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 1, "one tenant: {}", plan.stdout);
    assert_eq!(tenants[0]["tenant"], "contoso.onmicrosoft.com");

    let apply = run(sb.pwdrift().args(["apply", "--auto-approve", &desired]));
    assert_eq!(apply.code, 0, "{apply:?}");
    let w = writes(&sb);
    assert_eq!(
        w["patches"],
        serde_json::json!({"bob@contoso.com": 1, "frank@contoso.com": 1, "grace@contoso.com": 1}),
        "{w}"
    );

    let plan = run(sb.pwdrift().args(["plan", "--detailed-exitcode", &desired]));
    assert_eq!(plan.code, 0, "converged: {plan:?}");

    // `--tenant` names the tenant by any of its names: all of its files are selected
    let only = run(sb.pwdrift().args([
        "plan",
        "--format",
        "json",
        "--tenant",
        "contoso.com",
        &desired,
    ]));
    assert_eq!(only.code, 0, "{only:?}");
    let json: serde_json::Value = serde_json::from_str(&only.stdout).unwrap();
    let users: Vec<&str> = json["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_principal_name"].as_str().unwrap())
        .collect();
    assert_eq!(json["tenants"].as_array().unwrap().len(), 1, "{only:?}");
    assert!(users.contains(&"bob@contoso.com"), "{users:?}");
    assert!(users.contains(&"frank@contoso.com"), "{users:?}");
}

/// `--shard` decides by tenant id: the three names of one tenant land in one shard (which
/// plans all their users, as one tenant), never split between CI jobs that would each write
/// part of the tenant without seeing the rest.
#[test]
fn every_name_of_a_tenant_lands_in_the_same_shard() {
    let sb = Sandbox::seed(repo().join(SEED)).start();
    let dir = tempfile::tempdir().unwrap();
    let desired = three_files(
        dir.path(),
        [
            "users:\n  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n",
            "users:\n  - user: grace@contoso.com\n    forceChangePasswordNextSignIn: false\n",
            "users:\n  - user: frank@contoso.com\n    forceChangePasswordNextSignIn: false\n",
        ],
    );
    // by name, these three would spread: the assignment below must not depend on the names
    let by_name: std::collections::HashSet<u32> =
        ["contoso.onmicrosoft.com", TENANT_ID, "contoso.com"]
            .iter()
            .map(|n| pwdrift::engine::steps::Shard::of(n, 5))
            .collect();
    assert!(by_name.len() > 1, "the names hash apart: {by_name:?}");
    let mut holders = Vec::new();
    for i in 1..=5 {
        let out = run(sb.pwdrift().args([
            "plan",
            "--format",
            "json",
            "--shard",
            &format!("{i}/5"),
            &desired,
        ]));
        assert_eq!(out.code, 0, "{out:?}");
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let tenants = json["tenants"].as_array().unwrap();
        if tenants.is_empty() {
            assert!(
                out.stderr
                    .contains("no tenant of the desired state is in shard"),
                "{out:?}"
            );
            continue;
        }
        assert_eq!(tenants.len(), 1, "{out:?}");
        let mut users: Vec<&str> = tenants[0]["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["user_principal_name"].as_str().unwrap())
            .collect();
        users.sort();
        assert_eq!(
            users,
            ["bob@contoso.com", "frank@contoso.com", "grace@contoso.com"]
        );
        holders.push(i);
    }
    assert_eq!(
        holders,
        [pwdrift::engine::steps::Shard::of(TENANT_ID, 5)],
        "exactly the tenant id's shard holds the tenant"
    );
}
