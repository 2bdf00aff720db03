//! Users Graph would refuse to change even with the right role, seen before writing: synced
//! users' flags (`--synced-flags-writable`, the sandbox's `--synced-flags-refused`),
//! restricted management administrative units (`--admin-unit`), and PIM for Groups making a
//! user privileged. The real binary against the sandbox.

use crate::common::{repo, run, write, Sandbox, CONTOSO_SEED};

/// The Contoso seed plus a restricted unit holding dave, a role-assignable group holding a
/// role, for which frank is eligible (PIM for Groups) and grace an owner (active).
fn seed(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(repo().join(CONTOSO_SEED)).unwrap();
    text = text.replace(
        "        displayName: Finance Contractors\n        members: [grace@contoso.com]\n",
        "        displayName: Finance Contractors\n        members: [grace@contoso.com]\n      - displayName: Tier0 Admins\n        isAssignableToRole: true\n        members: []\n",
    );
    text.push_str(
        "    administrativeUnits:\n      - displayName: \"Board\\u202e\"\n        isMemberManagementRestricted: true\n        members: [dave@contoso.com]\n      - displayName: Open Unit\n        members: [alice@contoso.com]\n    roleAssignments:\n      - role: Global Administrator\n        principal: Tier0 Admins\n    groupEligibilities:\n      - group: Tier0 Admins\n        principal: frank@contoso.com\n    groupAssignments:\n      - group: Tier0 Admins\n        principal: grace@contoso.com\n        accessId: owner\n",
    );
    write(dir, "seed.yaml", &text)
}

fn desired(dir: &std::path::Path, users: &str) -> String {
    write(
        dir,
        "desired.yaml",
        &format!("version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n{users}"),
    )
    .to_str()
    .unwrap()
    .to_owned()
}

fn plan_json(cmd: &mut std::process::Command) -> (crate::common::Run, serde_json::Value) {
    let r = run(cmd.args(["--format", "json"]));
    let json = serde_json::from_str(&r.stdout).unwrap_or(serde_json::Value::Null);
    (r, json)
}

/// upn -> (action type, blocker, detail)
fn actions(plan: &serde_json::Value) -> std::collections::BTreeMap<String, (String, String)> {
    plan["tenants"][0]["users"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|u| {
            let a = &u["action"];
            (
                u["user_principal_name"].as_str().unwrap_or("").to_owned(),
                (
                    a["type"].as_str().unwrap_or("").to_owned(),
                    format!(
                        "{} {}",
                        a["blocker"].as_str().unwrap_or(""),
                        a["detail"].as_str().unwrap_or("")
                    ),
                ),
            )
        })
        .collect()
}

const CAROL_FLAG: &str = "  - user: carol@contoso.com\n    forceChangePasswordNextSignIn: true\n";

#[test]
fn synced_users_flags_are_blocked_unless_the_tenant_accepts_them() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::contoso()
        .configure(|c| c.synced_flags_refused = true)
        .start();
    let d = desired(dir.path(), CAROL_FLAG);
    let (p, plan) = plan_json(sb.pwdrift().args(["plan", &d]));
    let a = actions(&plan);
    assert_eq!(a["carol@contoso.com"].0, "blocked", "{p:?}");
    assert!(
        a["carol@contoso.com"].1.starts_with("synced_user_flags "),
        "{a:?}"
    );
    let text = run(sb.pwdrift().args(["plan", &d]));
    assert!(
        text.stdout
            .contains("User must change password at next logon"),
        "{text:?}"
    );
    // nothing written by an apply
    let apply = run(sb.pwdrift().args(["apply", &d, "--auto-approve"]));
    assert_eq!(apply.code, 1, "blocked is not success: {apply:?}");
    assert!(sb.stats()["patchesPerUser"]
        .as_object()
        .is_none_or(|m| m.is_empty()));

    // declared writable, and the tenant accepts: written
    let sb = Sandbox::contoso().start();
    let apply = run(sb
        .pwdrift()
        .args(["apply", &d, "--auto-approve", "--synced-flags-writable"]));
    assert_eq!(apply.code, 0, "{apply:?}");
}

#[test]
fn a_refused_synced_flag_change_stops_the_others_and_reports_them_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(repo().join(CONTOSO_SEED)).unwrap();
    text = text.replace(
        "        displayName: Grace Green\n",
        "        displayName: Grace Green\n        onPremisesSyncEnabled: true\n",
    );
    text = text.replace(
        "        displayName: Frank Foster\n",
        "        displayName: Frank Foster\n        onPremisesSyncEnabled: true\n",
    );
    let sb = Sandbox::seed(write(dir.path(), "seed.yaml", &text))
        .configure(|c| c.synced_flags_refused = true)
        .start();
    let d = desired(
        dir.path(),
        &format!(
            "{CAROL_FLAG}  - user: frank@contoso.com\n    forceChangePasswordNextSignIn: true\n  - user: grace@contoso.com\n    forceChangePasswordNextSignIn: true\n  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: true\n"
        ),
    );
    let report = dir.path().join("report.json");
    let apply = run(sb.pwdrift().args([
        "apply",
        &d,
        "--auto-approve",
        "--synced-flags-writable",
        "--report",
        report.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 1, "{apply:?}");
    let stats = sb.stats();
    let patches = stats["patchesPerUser"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // the cloud user is written; of the three synced users only the first was tried (refused
    // before it counted)
    assert!(patches.contains_key("alice@contoso.com"), "{stats}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let users = report["users"].as_array().unwrap();
    let not_attempted = users
        .iter()
        .filter(|u| {
            u["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("not attempted: Graph refused the flag change"))
        })
        .count();
    assert_eq!(not_attempted, 2, "{report}");
    let failed: Vec<_> = users.iter().filter(|u| u["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("on-premises mastered"),
        "{report}"
    );
}

#[test]
fn members_of_restricted_units_are_blocked_naming_the_unit_unless_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::seed(seed(dir.path())).start();
    let d = desired(
        dir.path(),
        "  - user: dave@contoso.com\n    forceChangePasswordNextSignIn: true\n  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: true\n",
    );
    let (p, plan) = plan_json(sb.pwdrift().args(["plan", &d]));
    let a = actions(&plan);
    assert_eq!(a["dave@contoso.com"].0, "blocked", "{p:?}");
    assert!(
        a["dave@contoso.com"]
            .1
            .starts_with("restricted_administrative_unit member of restricted management administrative unit(s) 'Board\u{202e}'"),
        "{a:?}"
    );
    // a member of an unrestricted unit is planned as usual
    assert_eq!(a["alice@contoso.com"].0, "set_flags", "{a:?}");
    // the text plan shows the name escaped
    let text = run(sb.pwdrift().args(["plan", &d]));
    assert!(!text.stdout.contains('\u{202e}'), "{text:?}");
    assert!(text.stdout.contains("Board"), "{text:?}");

    // the sandbox refuses the write from a tenant-wide app (what the block avoids)
    let apply = run(sb.pwdrift().args([
        "apply",
        &d,
        "--auto-approve",
        "--admin-unit",
        "board\u{202e}",
    ]));
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stdout.contains("403"), "{apply:?}");
}

#[test]
fn unreadable_units_stop_the_plan_naming_the_permission() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(seed(dir.path())).unwrap().replacen(
        "          - AdministrativeUnit.Read.All\n",
        "",
        1,
    );
    let sb = Sandbox::seed(write(dir.path(), "seed2.yaml", &text)).start();
    let d = desired(dir.path(), CAROL_FLAG);
    let p = run(sb.pwdrift().args(["plan", &d]));
    assert_ne!(p.code, 0, "{p:?}");
    assert!(p.stderr.contains("AdministrativeUnit.Read.All"), "{p:?}");
}

#[test]
fn pim_for_groups_eligibility_and_ownership_make_a_user_privileged() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::seed(seed(dir.path())).start();
    let d = desired(
        dir.path(),
        "  - user: frank@contoso.com\n    forceChangePasswordNextSignIn: true\n  - user: grace@contoso.com\n    forceChangePasswordNextSignIn: true\n",
    );
    let (p, plan) = plan_json(sb.pwdrift().args(["plan", &d]));
    let a = actions(&plan);
    assert_eq!(a["frank@contoso.com"].0, "blocked", "{p:?}");
    assert!(
        a["frank@contoso.com"].1.contains(
            "Global Administrator (active, via group Tier0 Admins, eligible member through PIM for Groups)"
        ),
        "{a:?}"
    );
    assert!(
        a["grace@contoso.com"]
            .1
            .contains("via group Tier0 Admins, active owner through PIM for Groups"),
        "{a:?}"
    );

    // without the permission: stopped, naming it, unless assumed
    let text = std::fs::read_to_string(dir.path().join("seed.yaml"))
        .unwrap()
        .replacen(
            "          - PrivilegedEligibilitySchedule.Read.AzureADGroup\n",
            "",
            1,
        );
    let sb = Sandbox::seed(write(dir.path(), "seed2.yaml", &text)).start();
    let p = run(sb.pwdrift().args(["plan", &d]));
    assert_ne!(p.code, 0, "{p:?}");
    assert!(
        p.stderr
            .contains("PrivilegedEligibilitySchedule.Read.AzureADGroup"),
        "{p:?}"
    );
    let (p, plan) = plan_json(
        sb.pwdrift()
            .args(["plan", &d, "--assume-no-eligible-admins"]),
    );
    assert_eq!(actions(&plan)["frank@contoso.com"].0, "set_flags", "{p:?}");
    assert!(p.stdout.contains("PIM for Groups"), "the note: {p:?}");
}

/// The text plan's lines for the three kinds of user Graph would refuse (synced flags, a
/// restricted unit's member, a user privileged through PIM for Groups), as an operator reads
/// them; the temporary directory's path is replaced.
#[test]
fn blocked_lines_of_the_text_plan() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::seed(seed(dir.path())).start();
    let d = desired(
        dir.path(),
        &format!("{CAROL_FLAG}  - user: dave@contoso.com\n    forceChangePasswordNextSignIn: true\n  - user: frank@contoso.com\n    forceChangePasswordNextSignIn: true\n"),
    );
    let p = run(sb.pwdrift().env("NO_COLOR", "1").args(["plan", &d]));
    assert_eq!(p.code, 0, "nothing to write, only blocked users: {p:?}");
    let shown = p
        .stdout
        .replace(dir.path().to_str().unwrap(), "[dir]")
        .replace('\\', "/");
    insta::assert_snapshot!(shown);
}
