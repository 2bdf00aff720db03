//! End to end: the real `pwdrift` binary against the Graph sandbox over loopback HTTP.
//!
//! Each test pins one promise pwdrift makes: plan/apply/plan converges to "No changes"; a user
//! who complied with a one-shot requirement is not forced again; a stale saved plan writes nothing;
//! synced users go through the delegated resetPassword API; a flags-only PATCH that Graph ignores
//! is caught by read-back verification; throttling and faults converge; no secret leaks.

use crate::common::*;

const DESIRED: &str = "examples/desired";

fn flags(sb: &Sandbox, upn: &str) -> (bool, bool, Option<String>) {
    let u = sandbox_user(sb, upn);
    (
        u["forceChangePasswordNextSignIn"]
            .as_bool()
            .unwrap_or(false),
        u["forceChangePasswordNextSignInWithMfa"]
            .as_bool()
            .unwrap_or(false),
        u["lastPasswordChangeDateTime"].as_str().map(str::to_owned),
    )
}

/// One user as the sandbox's observation endpoint reports it.
fn sandbox_user(sb: &Sandbox, upn: &str) -> serde_json::Value {
    let state = sb.state();
    find_user(&state, upn).unwrap_or_else(|| panic!("no {upn} in sandbox state"))
}

fn find_user(state: &serde_json::Value, upn: &str) -> Option<serde_json::Value> {
    let tenants = state["tenants"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![state.clone()]);
    tenants.iter().find_map(|t| {
        t["users"]
            .as_array()?
            .iter()
            .find(|u| {
                u["userPrincipalName"]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(upn))
            })
            .cloned()
    })
}

#[test]
fn embedded_sandbox_plan_apply_plan_converges() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_copy(dir.path());
    let seed = seed.to_str().unwrap();
    let desired = repo().join(DESIRED);
    let desired = desired.to_str().unwrap();
    let secrets = dir.path().join("secrets.jsonl");
    let report = dir.path().join("report.json");

    let plan = run(std::process::Command::new(BIN).env("NO_COLOR", "1").args([
        "plan",
        "--sandbox",
        seed,
        desired,
        "--detailed-exitcode",
    ]));
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("bob@contoso.com"), "{plan:?}");

    let apply = run(std::process::Command::new(BIN).env("NO_COLOR", "1").args([
        "apply",
        "--sandbox",
        seed,
        desired,
        "--auto-approve",
        "--secrets-out",
        secrets.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains("Apply complete"), "{apply:?}");

    let again = run(std::process::Command::new(BIN).env("NO_COLOR", "1").args([
        "plan",
        "--sandbox",
        seed,
        desired,
        "--detailed-exitcode",
    ]));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("No changes"), "{again:?}");

    // the generated password of carol went to the secrets file only, mode 0600
    let text = std::fs::read_to_string(&secrets).unwrap();
    assert!(text.contains("carol@contoso.com"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let pw = line["password"].as_str().unwrap();
    assert!(pw.len() == 20, "generated length 20");
    for out in [
        &plan.stdout,
        &plan.stderr,
        &apply.stdout,
        &apply.stderr,
        &again.stdout,
    ] {
        assert!(!out.contains(pw), "generated password leaked");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(!report.to_string().contains(pw));
    let statuses: Vec<&str> = report["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"verified"), "{report}");
    assert!(!statuses.contains(&"failed"), "{report}");
}

fn desired_file(dir: &std::path::Path, users_yaml: &str) -> String {
    let text = format!("version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n{users_yaml}");
    write(dir, "desired.yaml", &text)
        .to_str()
        .unwrap()
        .to_owned()
}

/// `requirePasswordChange` is one-shot: once the user changed the password at or after `since`
/// (Graph then clears the flag), the next run leaves the user alone. A literal `true`, by
/// contrast, forces the user again, which is why `validate` warns about it.
#[test]
fn user_who_complied_is_not_forced_again() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired_file(
        dir.path(),
        "  - user: alice@contoso.com\n    requirePasswordChange: { since: 2026-11-01T00:00:00Z }\n",
    );

    let plan = run(sb.pwdrift().args(["plan", &desired, "--detailed-exitcode"]));
    assert_eq!(plan.code, 2, "{plan:?}");
    let apply = run(sb.pwdrift().args(["apply", &desired, "--auto-approve"]));
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(flags(&sb, "alice@contoso.com").0, "flag set by apply");

    // the flag being set satisfies the requirement: nothing more to do
    let plan = run(sb.pwdrift().args(["plan", &desired, "--detailed-exitcode"]));
    assert_eq!(plan.code, 0, "{plan:?}");

    // alice changes her password: Graph clears the flag and stamps lastPasswordChangeDateTime
    sb.call(
        "POST",
        "/_sandbox/users/alice@contoso.com/changePassword",
        Some(serde_json::json!({})),
    );
    let (f, fm, last) = flags(&sb, "alice@contoso.com");
    assert!(!f && !fm && last.is_some());

    let plan = run(sb.pwdrift().args(["plan", &desired, "--detailed-exitcode"]));
    assert_eq!(
        plan.code, 0,
        "complied user must not be forced again: {plan:?}"
    );
    assert!(plan.stdout.contains("No changes"), "{plan:?}");
    let apply = run(sb.pwdrift().args(["apply", &desired, "--auto-approve"]));
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(
        sb.patches_of("alice@contoso.com"),
        1,
        "exactly one PATCH over both runs"
    );
    assert!(!flags(&sb, "alice@contoso.com").0);

    // contrast: a literal `true` re-forces her after she complied
    let literal = desired_file(
        dir.path(),
        "  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: true\n",
    );
    let plan = run(sb.pwdrift().args(["plan", &literal, "--detailed-exitcode"]));
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stderr.contains("warning"),
        "validate-time warning shown: {plan:?}"
    );
}

/// A saved plan whose users changed since it was made is refused, and nothing is written.
#[test]
fn stale_saved_plan_is_refused_and_writes_nothing() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired_file(
        dir.path(),
        "  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n  - user: alice@contoso.com\n    forceChangePasswordNextSignInWithMfa: false\n",
    );
    let saved = dir.path().join("plan.json");
    let plan = run(sb
        .pwdrift()
        .args(["plan", &desired, "--out", saved.to_str().unwrap()]));
    assert_eq!(plan.code, 0, "{plan:?}");
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("\"format_version\": \"4\""), "{text}");

    // bob changes his password meanwhile
    sb.call(
        "POST",
        "/_sandbox/users/bob@contoso.com/changePassword",
        Some(serde_json::json!({})),
    );

    let apply = run(sb
        .pwdrift()
        .args(["apply", saved.to_str().unwrap(), "--auto-approve"]));
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stderr.contains("stale"), "{apply:?}");
    assert!(apply.stderr.contains("bob@contoso.com"), "{apply:?}");
    assert_eq!(sb.total_patches(), 0, "a stale plan writes nothing");

    // a fresh plan applies
    let plan = run(sb
        .pwdrift()
        .args(["plan", &desired, "--out", saved.to_str().unwrap()]));
    assert_eq!(plan.code, 0, "{plan:?}");
    let apply = run(sb
        .pwdrift()
        .args(["apply", saved.to_str().unwrap(), "--auto-approve"]));
    assert_eq!(apply.code, 0, "{apply:?}");
}

/// The sandbox's switch that reproduces the disputed Graph behaviour (a flags-only PATCH answers
/// 204 and changes nothing) is caught by read-back verification: exit 1, with what to do.
#[test]
fn flags_only_patch_that_changes_nothing_fails_verification() {
    let sb = Sandbox::contoso().flag_only_patch_noop().start();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let desired = desired_file(
        dir.path(),
        "  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n",
    );
    let apply = run(sb.pwdrift().args([
        "apply",
        &desired,
        "--auto-approve",
        "--verify-timeout",
        "2",
        "--report",
        report.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stdout.contains("bob@contoso.com"), "{apply:?}");
    assert!(
        apply.stdout.contains("--verify-timeout"),
        "concluded only after re-reading: {apply:?}"
    );
    assert!(
        apply.stdout.contains("resetPassword"),
        "hint says what to do: {apply:?}"
    );
    assert!(
        apply.stdout.contains("0 changed and verified, 1 failed"),
        "{apply:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["users"][0]["status"], "failed", "{report}");
    assert!(
        flags(&sb, "bob@contoso.com").0,
        "nothing claimed that did not happen"
    );
}

/// Without the needed permission the PATCH is refused (403) and pwdrift reports it, exit 1.
#[test]
fn permission_error_is_reported_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let seed_text = std::fs::read_to_string(repo().join(CONTOSO_SEED))
        .unwrap()
        .replace("          - User-PasswordProfile.ReadWrite.All\n", "");
    let seed = write(dir.path(), "seed.yaml", &seed_text);
    let sb = Sandbox::seed(&seed).start();
    let desired = desired_file(
        dir.path(),
        "  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n",
    );
    let apply = run(sb.pwdrift().args(["apply", &desired, "--auto-approve"]));
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stdout.contains("403"), "{apply:?}");
    assert!(
        apply.stdout.contains("Authorization_RequestDenied"),
        "{apply:?}"
    );
    assert!(flags(&sb, "bob@contoso.com").0);
}

/// A synced user's password can only be reset through the delegated-only resetPassword API:
/// without a delegated sign-in the user is blocked and nothing is written.
#[test]
fn synced_user_reset_needs_a_delegated_sign_in() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired_file(
        dir.path(),
        "  - user: S-1-5-21-1004336348-1177238915-682003330-1104\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { generate: { length: 24 } }\n      forceChangeAfter: true\n",
    );
    let plan = run(sb.pwdrift().args(["plan", &desired, "--detailed-exitcode"]));
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("carol@contoso.com"), "{plan:?}");
    assert!(plan.stdout.contains("delegated"), "{plan:?}");
    let secrets = dir.path().join("s.jsonl");
    let apply = run(sb.pwdrift().args([
        "apply",
        &desired,
        "--auto-approve",
        "--secrets-out",
        secrets.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 1, "blocked is not success: {apply:?}");
    let stats = sb.stats();
    assert!(
        stats["resetsPerUser"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{stats}"
    );

    // with a delegated sign-in (ROPC for the seeded admin, Azure SDK variables) it goes through
    let apply = run(sb.pwdrift_delegated().args([
        "apply",
        &desired,
        "--delegated",
        "--auto-approve",
        "--secrets-out",
        secrets.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    let (f, _, last) = flags(&sb, "carol@contoso.com");
    assert!(f, "resetPassword makes the user change it at next sign-in");
    assert!(last.unwrap().as_str() > "2026-11-20", "password changed");
    let line = std::fs::read_to_string(&secrets).unwrap();
    assert!(line.contains("carol@contoso.com"));
}

/// A synced user reset through the delegated resetPassword API, with
/// `forceChangePasswordNextSignIn: false` declared: resetPassword sets the flag, apply's flags
/// PATCH after it sets it back, so plan -> apply -> plan is "No changes" after ONE apply (diff
/// rule 19; before, the second run still patched the flag).
#[test]
fn synced_user_reset_with_a_literal_false_flag_converges_in_one_run() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired_file(
        dir.path(),
        "  - user: S-1-5-21-1004336348-1177238915-682003330-1104
    forceChangePasswordNextSignIn: false
    resetPassword:
      notBefore: 2026-11-20T00:00:00Z
      password: { generate: { length: 24 } }
",
    );
    let secrets = dir.path().join("s.jsonl");
    let delegated = || sb.pwdrift_delegated();
    let plan = run(delegated().args([
        "plan",
        "--synced-flags-writable",
        &desired,
        "--delegated",
        "--detailed-exitcode",
    ]));
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("carol@contoso.com"), "{plan:?}");
    assert!(
        plan.stdout
            .contains("a flags PATCH after it sets forceChangePasswordNextSignIn back to false"),
        "{plan:?}"
    );
    let apply = run(delegated().args([
        "apply",
        &desired,
        "--delegated",
        "--auto-approve",
        "--synced-flags-writable",
        "--secrets-out",
        secrets.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains("Apply complete"), "{apply:?}");
    let (f, fm, last) = flags(&sb, "carol@contoso.com");
    assert!(
        !f && !fm,
        "the flag PATCH after resetPassword set it back to false"
    );
    assert!(last.unwrap().as_str() > "2026-11-20", "password changed");
    let stats = sb.stats();
    assert_eq!(stats["resetsPerUser"]["carol@contoso.com"], 1, "{stats}");

    let again = run(delegated().args([
        "plan",
        "--synced-flags-writable",
        &desired,
        "--delegated",
        "--detailed-exitcode",
    ]));
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("No changes"), "{again:?}");
}

/// A canary secret (the password from an `env` source) never appears in any output: plan in
/// every format, the saved plan, apply's report, logs at the most verbose level.
#[test]
fn canary_secret_never_leaks() {
    const CANARY: &str = "Canary-7xQ!pwdrift-Leak";
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired_file(
        dir.path(),
        "  - user: alice@contoso.com\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { env: CANARY_PASSWORD }\n",
    );
    let saved = dir.path().join("plan.json");
    let report = dir.path().join("report.json");
    let mut outputs = Vec::new();
    for format in ["text", "json", "markdown"] {
        let r = run(sb
            .pwdrift()
            .env("CANARY_PASSWORD", CANARY)
            .env("RUST_LOG", "trace")
            .args([
                "plan",
                &desired,
                "-vvv",
                "--format",
                format,
                "--out",
                saved.to_str().unwrap(),
            ]));
        assert_eq!(r.code, 0, "{r:?}");
        outputs.push(r.stdout);
        outputs.push(r.stderr);
    }
    let apply = run(sb
        .pwdrift()
        .env("CANARY_PASSWORD", CANARY)
        .env("RUST_LOG", "trace")
        .args([
            "apply",
            saved.to_str().unwrap(),
            "-vvv",
            "--auto-approve",
            "--report",
            report.to_str().unwrap(),
        ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stderr.len() > 1000, "trace logging was on: {apply:?}");
    outputs.push(apply.stdout);
    outputs.push(apply.stderr);
    outputs.push(std::fs::read_to_string(&saved).unwrap());
    outputs.push(std::fs::read_to_string(&report).unwrap());
    for o in &outputs {
        assert!(!o.contains(CANARY), "canary leaked in:\n{o}");
        assert!(
            !o.contains(&sb.get("client_secret")),
            "client secret leaked in:\n{o}"
        );
    }
    // and the reset did happen with that password: the sandbox accepted it
    let (_, _, last) = flags(&sb, "alice@contoso.com");
    assert!(last.unwrap().as_str() > "2026-11-20");
}

/// Safety rails refuse before anything is written.
#[test]
fn safety_rails_refuse_large_change_sets() {
    let sb = Sandbox::generate(40).rng_seed(3).start();
    let state = sb.state();
    let users: Vec<String> = state["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["directoryRoles"].as_array().is_none_or(|r| r.is_empty()))
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
        .take(20)
        .collect();
    let tenant = state["tenants"][0]["initialDomain"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("version: 1\ntenant: {tenant}\nusers:\n");
    for u in &users {
        text.push_str(&format!(
            "  - user: {u}\n    requirePasswordChange: {{ since: 2099-01-01T00:00:00Z }}\n"
        ));
    }
    // since in the future: not due, so nothing would change; use an always-due one for half
    for u in users.iter().take(10) {
        text = text.replace(
            &format!(
                "  - user: {u}\n    requirePasswordChange: {{ since: 2099-01-01T00:00:00Z }}\n"
            ),
            &format!(
                "  - user: {u}\n    requirePasswordChange: {{ since: 2026-11-22T00:00:00Z }}\n"
            ),
        );
    }
    let desired = write(dir.path(), "d.yaml", &text);
    let desired = desired.to_str().unwrap();
    let r = run(sb.pwdrift().args([
        "apply",
        desired,
        "--auto-approve",
        "--synced-flags-writable",
        "--max-changes",
        "3",
    ]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--max-changes"), "{r:?}");
    let r = run(sb.pwdrift().args([
        "apply",
        desired,
        "--auto-approve",
        "--synced-flags-writable",
    ]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--force"), "{r:?}");
    assert_eq!(sb.total_patches(), 0);
    let r = run(sb.pwdrift().args([
        "apply",
        desired,
        "--auto-approve",
        "--synced-flags-writable",
        "--force",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    // no confirmation on a non-terminal stdin without --auto-approve
    let r = run(sb
        .pwdrift()
        .args(["apply", desired])
        .stdin(std::process::Stdio::null()));
    assert!(r.code == 0 || r.stderr.contains("--auto-approve"), "{r:?}");
}

/// Throttling (the documented model, scaled down) and injected faults (429, 503, dropped
/// connections) slow pwdrift down but do not change the outcome: every user converges.
#[test]
fn throttling_and_faults_converge() {
    let sb = Sandbox::generate(200)
        .rng_seed(11)
        .throttle("scaled:300")
        .faults("429=0.08,503=0.04,drop=0.03")
        .start();
    let state = sb.state();
    let tenant = state["tenants"][0]["initialDomain"]
        .as_str()
        .unwrap()
        .to_owned();
    let users: Vec<String> = state["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["directoryRoles"].as_array().is_none_or(|r| r.is_empty()))
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
        .take(60)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("version: 1\ntenant: {tenant}\nusers:\n");
    for u in &users {
        text.push_str(&format!("  - user: {u}\n    forceChangePasswordNextSignInWithMfa: false\n    requirePasswordChange: {{ since: 2026-11-22T00:00:00Z }}\n"));
    }
    let desired = write(dir.path(), "d.yaml", &text);
    let desired = desired.to_str().unwrap();
    let apply = run(sb.pwdrift().args([
        "apply",
        desired,
        "--auto-approve",
        "--synced-flags-writable",
        "--force",
    ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    let plan = run(sb.pwdrift().args([
        "plan",
        "--synced-flags-writable",
        desired,
        "--detailed-exitcode",
    ]));
    assert_eq!(plan.code, 0, "{plan:?}");
    let state = sb.state();
    for u in &users {
        let found = find_user(&state, u).unwrap();
        let complied = found["lastPasswordChangeDateTime"]
            .as_str()
            .is_some_and(|t| t >= "2026-11-22");
        assert!(
            complied || found["forceChangePasswordNextSignIn"].as_bool() == Some(true),
            "{u} did not converge: {found}"
        );
    }
    let stats = sb.stats();
    let injected = stats["faults"]["injected_429"].as_u64().unwrap_or(0)
        + stats["faults"]["injected_503"].as_u64().unwrap_or(0)
        + stats["faults"]["dropped"].as_u64().unwrap_or(0);
    assert!(injected > 0, "faults were injected: {stats}");
}

/// A declared user that does not exist in the tenant is an error naming file, line and column;
/// nothing is planned or written.
#[test]
fn unknown_user_is_an_error_naming_file_and_line() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired_file(
        dir.path(),
        "  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n  - user: nobody@contoso.com\n    forceChangePasswordNextSignIn: false\n",
    );
    let plan = run(sb.pwdrift().args(["plan", &desired]));
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(plan.stderr.contains("nobody@contoso.com"), "{plan:?}");
    assert!(plan.stderr.contains("desired.yaml:6:11"), "{plan:?}");
    let apply = run(sb.pwdrift().args(["apply", &desired, "--auto-approve"]));
    assert_eq!(apply.code, 1, "{apply:?}");
    assert_eq!(sb.total_patches(), 0);
}

/// A delegated admin cannot reset its own password through resetPassword: blocked in the plan.
#[test]
fn callers_own_account_is_blocked() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired_file(
        dir.path(),
        "  - user: admin@contoso.com\n    allowPrivileged: true\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { generate: { length: 20 } }\n",
    );
    let plan =
        run(sb
            .pwdrift_delegated()
            .args(["plan", &desired, "--delegated", "--detailed-exitcode"]));
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("own account"), "{plan:?}");
}

/// Snapshots of the three plan formats for the shipped example, computed against the embedded
/// sandbox (timestamps and the version filtered out).
#[test]
fn plan_formats_of_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_copy(dir.path());
    for format in ["text", "json", "markdown"] {
        let r = run(std::process::Command::new(BIN)
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .args([
                "plan",
                "--sandbox",
                seed.to_str().unwrap(),
                DESIRED,
                "--format",
                format,
            ]));
        assert_eq!(r.code, 0, "{r:?}");
        insta::with_settings!({
            snapshot_suffix => format,
            filters => vec![
                (r#""created_at": "[^"]+""#, r#""created_at": "[time]""#),
                (r#""decided_at": "[^"]+""#, r#""decided_at": "[time]""#),
                (r#""pwdrift_version": "[^"]+""#, r#""pwdrift_version": "[version]""#),
                (r#""content_hash": "[^"]+""#, r#""content_hash": "[hash of the above]""#),
                (r#""sha256": "[^"]+""#, r#""sha256": "[sha256 of the file]""#),
            ],
        }, {
            insta::assert_snapshot!(r.stdout);
        });
    }
}

/// A user reached through a group and declared directly with a different value of one directive:
/// the user's own entry wins, directive by directive (docs/configuration.md, "Precedence"); two
/// groups that disagree are the error (`tests/it/selectors.rs`).
#[test]
fn group_and_direct_entry_the_direct_entry_wins() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let text = "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: frank@contoso.com\n    requirePasswordChange: { since: 2026-11-01T00:00:00Z }\ngroups:\n  - group: Finance\n    requirePasswordChange: { since: 2026-11-20T00:00:00Z }\n";
    let desired = write(dir.path(), "desired.yaml", text);
    let plan = run(sb
        .pwdrift()
        .args(["plan", desired.to_str().unwrap(), "--format", "json"]));
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
    let frank = plan["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_principal_name"] == "frank@contoso.com")
        .cloned()
        .expect("frank is planned");
    let text = frank.to_string();
    assert!(text.contains("2026-11-01"), "{text}");
    assert!(!text.contains("2026-11-20"), "{text}");
    assert_eq!(sb.total_patches(), 0);
}

/// Reading by `$batch` (few users) and by listing the tenant (many users) give the same plan.
#[test]
fn both_read_paths_give_the_same_plan() {
    let sb = Sandbox::contoso().start();
    // the example without its selectors: `all: true` always lists the tenant
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo().join(DESIRED).join("contoso.yaml")).unwrap();
    let desired = write(
        dir.path(),
        "contoso.yaml",
        example.split("\nselectors:").next().unwrap(),
    );
    let plan_json = |threshold: &str| {
        let r = run(sb
            .pwdrift()
            .current_dir(repo())
            .env("PWDRIFT_LIST_ALL_THRESHOLD", threshold)
            .args(["plan", desired.to_str().unwrap(), "--format", "json"]));
        assert_eq!(r.code, 0, "{r:?}");
        let mut v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["created_at"] = serde_json::Value::Null;
        for t in v["tenants"].as_array_mut().unwrap() {
            t["decided_at"] = serde_json::Value::Null;
        }
        // the hash covers created_at
        v["content_hash"] = serde_json::Value::Null;
        v
    };
    let batched = plan_json("100000");
    let listed = plan_json("0");
    assert_eq!(batched, listed);
    let stats = sb.stats();
    assert!(
        stats["requests"]["GET /v1.0/users"].is_object(),
        "the list path ran: {stats}"
    );
    assert!(
        stats["requests"]["POST /v1.0/$batch"].is_object(),
        "the batch path ran: {stats}"
    );
}

/// Password resets whose responses are lost (the sandbox applies the PATCH, then cuts the
/// connection) are not sent again blindly: pwdrift re-reads `lastPasswordChangeDateTime` first.
/// Every user ends up reset exactly once, and every generated password reaches --secrets-out.
#[test]
fn lost_reset_responses_are_not_repeated() {
    let sb = Sandbox::contoso().faults("drop=0.5").rng_seed(5).start();
    let dir = tempfile::tempdir().unwrap();
    let mut users = String::new();
    for u in ["alice", "bob", "dave", "frank", "grace"] {
        users.push_str(&format!(
            "  - user: {u}@contoso.com\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: {{ generate: {{ length: 16 }} }}\n"
        ));
    }
    let desired = desired_file(dir.path(), &users);
    let secrets = dir.path().join("secrets.jsonl");
    let apply = run(sb.pwdrift().args([
        "apply",
        &desired,
        "--auto-approve",
        "--force",
        "--secrets-out",
        secrets.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    let stats = sb.stats();
    assert!(stats["faults"]["dropped"].as_u64().unwrap() > 0, "{stats}");
    for u in ["alice", "bob", "dave", "frank", "grace"] {
        assert_eq!(
            sb.patches_of(&format!("{u}@contoso.com")),
            1,
            "{u}: {stats}"
        );
    }
    // one intent (the password, written before the PATCH) and one outcome per user
    let lines = std::fs::read_to_string(&secrets).unwrap();
    let intents = lines
        .lines()
        .filter(|l| l.contains("\"event\":\"intent\""))
        .count();
    assert_eq!(intents, 5, "{lines}");
    let pending = lines
        .lines()
        .filter(|l| l.contains("\"outcome\":\"applied\""))
        .count();
    assert_eq!(pending, 5, "{lines}");
}

/// Several tenants in one run: one token each, the same (multi-tenant) app registration.
#[test]
fn two_tenants_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let sb = two_tenant_sandbox(dir.path());
    let desired_dir = dir.path().join("desired");
    std::fs::create_dir(&desired_dir).unwrap();
    for t in ["contoso", "fabrikam"] {
        write(
            &desired_dir,
            &format!("{t}.yaml"),
            &format!("version: 1\ntenant: {t}.onmicrosoft.com\nusers:\n  - user: bob@{t}.com\n    forceChangePasswordNextSignIn: false\n"),
        );
    }
    let desired = desired_dir.to_str().unwrap();
    let plan = run(sb.pwdrift().args(["plan", desired, "--detailed-exitcode"]));
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(
        plan.stdout.contains("Tenant contoso.onmicrosoft.com"),
        "{plan:?}"
    );
    assert!(
        plan.stdout.contains("Tenant fabrikam.onmicrosoft.com"),
        "{plan:?}"
    );
    let only = run(sb.pwdrift().args([
        "apply",
        desired,
        "--tenant",
        "fabrikam.onmicrosoft.com",
        "--auto-approve",
    ]));
    assert_eq!(only.code, 0, "{only:?}");
    assert!(
        flags(&sb, "bob@contoso.com").0,
        "--tenant left contoso alone"
    );
    assert!(!flags(&sb, "bob@fabrikam.com").0);
    let all = run(sb.pwdrift().args(["apply", desired, "--auto-approve"]));
    assert_eq!(all.code, 0, "{all:?}");
    assert!(!flags(&sb, "bob@contoso.com").0);
    let stats = sb.stats();
    assert!(
        stats["requests"]["POST /{tenant}/oauth2/v2.0/token"]["200"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

/// The `$batch` envelope itself needs a bearer token, as in Graph.
#[test]
fn batch_without_token_is_401() {
    let sb = Sandbox::contoso().start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/v1.0/$batch", sb.graph_url()))
            .json(&serde_json::json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}]}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 401);
}

/// `--delegated` without a username signs in with the device-code flow (the sandbox approves it
/// for its seeded admin); the verification message goes to stderr. `plan -v` lists unchanged
/// users too, with the reason.
#[test]
fn delegated_device_code_sign_in_and_verbose_plan() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired_file(
        dir.path(),
        "  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: false\n  - user: S-1-5-21-1004336348-1177238915-682003330-1104\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { generate: { length: 20 } }\n",
    );
    let plan = run(sb
        .pwdrift()
        .env("PWDRIFT_DELEGATED_CLIENT_ID", sb.get("delegated_client_id"))
        .args(["plan", &desired, "--delegated", "-v"]));
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stderr.contains("devicelogin") || plan.stderr.contains("code"),
        "{plan:?}"
    );
    // with a delegated sign-in the synced user's reset is planned, not blocked
    assert!(plan.stdout.contains("resetPassword"), "{plan:?}");
    assert!(plan.stdout.contains("0 blocked"), "{plan:?}");
    // -v: the unchanged user is listed with its reason
    assert!(plan.stdout.contains("alice@contoso.com"), "{plan:?}");
}

/// A sandbox with two tenants, contoso and fabrikam, and the same app registered in both.
fn two_tenant_sandbox(dir: &std::path::Path) -> Sandbox {
    let contoso = std::fs::read_to_string(repo().join(CONTOSO_SEED)).unwrap();
    let tenants_at = contoso.find("  - id: ").unwrap();
    let fabrikam = contoso[tenants_at..]
        .replace(
            "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90",
            "9d1f3b64-2e5a-4c7b-8d9e-0f1a2b3c4d5e",
        )
        .replace("contoso", "fabrikam")
        .replace("Contoso", "Fabrikam")
        // the same app registration, with the same secret, consented in both tenants
        .replace("fabrikam-sandbox-secret", "contoso-sandbox-secret");
    let seed = write(dir, "two.seed.yaml", &format!("{contoso}\n{fabrikam}"));
    Sandbox::seed(&seed).start()
}

/// Password sources are resolved for the whole plan before any tenant is written: a missing
/// variable for one tenant leaves the other tenant untouched too.
#[test]
fn bad_password_source_in_one_tenant_writes_nothing_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let sb = two_tenant_sandbox(dir.path());
    let desired_dir = dir.path().join("desired");
    std::fs::create_dir(&desired_dir).unwrap();
    write(
        &desired_dir,
        "a-contoso.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: bob@contoso.com\n    forceChangePasswordNextSignIn: false\n",
    );
    write(
        &desired_dir,
        "b-fabrikam.yaml",
        "version: 1\ntenant: fabrikam.onmicrosoft.com\nusers:\n  - user: alice@fabrikam.com\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { env: TEST_UNSET_PASSWORD }\n",
    );
    let apply = run(sb
        .pwdrift()
        .args(["apply", desired_dir.to_str().unwrap(), "--auto-approve"]));
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(apply.stderr.contains("TEST_UNSET_PASSWORD"), "{apply:?}");
    assert_eq!(sb.total_patches(), 0, "nothing written in either tenant");
    assert!(flags(&sb, "bob@contoso.com").0);
}

/// Runs pwdrift with stdout a pipe whose reader is gone before pwdrift writes anything (closed
/// at once; every command below takes longer to start than that).
fn with_stdout_closed(cmd: &mut std::process::Command) -> Run {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pwdrift");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr,
    }
}

/// `pwdrift plan ... | head -1`: a closed stdout ends the run quietly with exit 0 (as ripgrep),
/// no panic and no message, and the plan asked for with `--out` is still saved.
#[test]
fn closed_stdout_exits_quietly_with_zero() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_copy(dir.path());
    let saved = dir.path().join("plan.json");
    let plan = with_stdout_closed(
        std::process::Command::new(BIN)
            .current_dir(repo())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .args(["plan", "--sandbox", seed.to_str().unwrap(), DESIRED])
            .args(["--detailed-exitcode", "--quiet", "--out"])
            .arg(&saved),
    );
    assert_eq!(plan.code, 0, "{plan:?}");
    assert_eq!(plan.stderr, "", "{plan:?}");
    assert!(
        saved.is_file(),
        "the plan is saved even though stdout closed"
    );

    let schema = with_stdout_closed(
        std::process::Command::new(BIN)
            .env_remove("RUST_LOG")
            .args(["schema", "config"]),
    );
    assert_eq!(schema.code, 0, "{schema:?}");
    assert_eq!(schema.stderr, "", "{schema:?}");
}

/// The same with a reader that takes the first line of a large plan and goes away, as
/// `pwdrift plan ... | head -1` does: pwdrift fills the pipe (the plan is larger than the pipe's
/// buffer), gets a broken pipe, and exits 0 with nothing on stderr.
#[test]
fn plan_piped_into_head_exits_quietly() {
    use std::io::{BufRead, Read};
    const USERS: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_copy(dir.path());
    let mut users = String::new();
    let mut members = Vec::new();
    for i in 0..USERS {
        users.push_str(&format!(
            "      - id: 00000000-0000-4000-8000-{i:012}\n        userPrincipalName: user{i}@contoso.com\n        displayName: User {i}\n"
        ));
        members.push(format!("user{i}@contoso.com"));
    }
    let text = std::fs::read_to_string(&seed).unwrap();
    let text = text.replacen("\n    groups:\n", &format!("\n{users}\n    groups:\n"), 1)
        + &format!(
            "      - id: 2c4e6a8b-1d3f-4a5b-8c7d-9e0f1a2b3cff\n        displayName: Everyone\n        members: [{}]\n",
            members.join(", ")
        );
    std::fs::write(&seed, text).unwrap();
    let desired = write(
        dir.path(),
        "everyone.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\ngroups:\n  - group: Everyone\n    requirePasswordChange: { since: 2026-11-20T00:00:00Z }\n",
    );

    let mut child = std::process::Command::new(BIN)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .args(["plan", "--sandbox", seed.to_str().unwrap()])
        .arg(&desired)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "the plan starts");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(stderr, "", "no panic, no message");
    assert_eq!(status.code(), Some(0));

    // and the plan is indeed larger than a pipe's buffer
    let full = run(std::process::Command::new(BIN)
        .env("NO_COLOR", "1")
        .args(["plan", "--sandbox", seed.to_str().unwrap()])
        .arg(&desired));
    assert_eq!(full.code, 0, "{}", full.stderr);
    assert!(
        full.stdout.len() > 256 * 1024,
        "{} bytes",
        full.stdout.len()
    );
}

/// `--quiet` drops informational messages, never the requested output; `CLICOLOR_FORCE=1`
/// colours the plan even through a pipe, and `NO_COLOR` wins over it.
#[test]
fn quiet_and_forced_colour() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_copy(dir.path());
    let saved = dir.path().join("plan.json");
    let plan = |quiet: bool, env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.current_dir(repo())
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .args([
                "plan",
                "--sandbox",
                seed.to_str().unwrap(),
                DESIRED,
                "--out",
            ])
            .arg(&saved);
        if quiet {
            cmd.arg("-q");
        }
        run(&mut cmd)
    };
    let loud = plan(false, &[]);
    assert_eq!(loud.code, 0, "{loud:?}");
    assert!(loud.stderr.contains("Saved the plan to"), "{loud:?}");
    assert!(!loud.stdout.contains('\u{1b}'), "no colour into a pipe");
    let quiet = plan(true, &[]);
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert_eq!(quiet.stderr, "", "{quiet:?}");
    assert_eq!(
        quiet.stdout, loud.stdout,
        "--quiet keeps the requested output"
    );
    let forced = plan(true, &[("CLICOLOR_FORCE", "1")]);
    assert!(forced.stdout.contains('\u{1b}'), "{forced:?}");
    let both = plan(true, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(!both.stdout.contains('\u{1b}'), "{both:?}");
}

/// `--shard I/N`: the example's tenant is planned by exactly one of N shards; the others plan
/// nothing and say so.
#[test]
fn shards_split_the_tenants_between_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_copy(dir.path());
    let desired = repo().join(DESIRED);
    for n in [1u32, 3] {
        let mut holders = 0;
        for i in 1..=n {
            let r = run(std::process::Command::new(BIN).env("NO_COLOR", "1").args([
                "plan",
                "--sandbox",
                seed.to_str().unwrap(),
                desired.to_str().unwrap(),
                "--format",
                "json",
                "--shard",
                &format!("{i}/{n}"),
            ]));
            assert_eq!(r.code, 0, "{r:?}");
            let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
            match plan["tenants"].as_array().unwrap().len() {
                0 => assert!(r
                    .stderr
                    .contains("no tenant of the desired state is in shard")),
                1 => holders += 1,
                k => panic!("{k} tenants in one shard"),
            }
        }
        assert_eq!(holders, 1, "N={n}");
    }
}
