//! No password is lost to an odd answer (issue 19, point 4): a system-generated resetPassword
//! whose 202 carries no password (an empty body, a body without `newPassword`, `text/plain`; the
//! sandbox's `reset_answer` fault) is recorded `password_unknown` in the secrets file, reported by
//! name with a hint in the summary and the `--report`, and fails the run (exit 1); a reset with a
//! password pwdrift generated is unaffected.

use pwdrift::secrets::{Journal, Outcome};

use crate::common::{run, write, Sandbox};

/// alice gets a system-generated password, frank one pwdrift generates.
const DESIRED: &str = "version: 1
tenant: contoso.onmicrosoft.com
users:
  - user: alice@contoso.com
    resetPassword:
      notBefore: 2026-11-20T00:00:00Z
      password: { systemGenerated: true }
  - user: frank@contoso.com
    resetPassword:
      notBefore: 2026-11-20T00:00:00Z
      password: { generate: { length: 20 } }
";

fn apply_with(fault: &str) {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::contoso()
        .faults(&format!("reset_answer={fault}"))
        .start();
    let desired = write(dir.path(), "desired.yaml", DESIRED);
    let secrets = dir.path().join("secrets.jsonl");
    let report = dir.path().join("report.json");
    let r = run(sb.pwdrift_delegated().args([
        "apply",
        desired.to_str().unwrap(),
        "--delegated",
        "--auto-approve",
        "--force",
        "--secrets-out",
        secrets.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]));
    assert_eq!(
        r.code, 1,
        "{fault}: a password nobody knows fails the run: {r:?}"
    );
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("alice@contoso.com (reset_password): PASSWORD UNKNOWN"),
        "{fault}: {r:?}"
    );
    assert!(
        all.contains("Needs attention (password unknown): alice@contoso.com."),
        "{fault}: {r:?}"
    );
    assert!(all.contains("hint: reset the user again"), "{fault}: {r:?}");

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let status = |upn: &str| {
        doc["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user_principal_name"] == upn)
            .unwrap_or_else(|| panic!("{upn} in the report: {doc}"))
            .clone()
    };
    let alice = status("alice@contoso.com");
    assert_eq!(alice["status"], "password_unknown", "{fault}: {alice}");
    assert!(
        alice["detail"]
            .as_str()
            .unwrap()
            .contains("did not carry the system-generated password"),
        "{fault}: {alice}"
    );
    assert!(
        alice["hint"].as_str().unwrap().contains("generate"),
        "{alice}"
    );
    assert_eq!(status("frank@contoso.com")["status"], "verified", "{fault}");

    let text = std::fs::read_to_string(&secrets).unwrap();
    let journal = Journal::parse(&secrets, &text).unwrap();
    let outcome = |upn: &str| {
        journal
            .entries()
            .find(|e| e.user_principal_name == upn)
            .unwrap_or_else(|| panic!("{upn} in the journal"))
            .clone()
    };
    let a = outcome("alice@contoso.com");
    assert_eq!(a.outcome, Some(Outcome::PasswordUnknown), "{fault}: {text}");
    assert!(!a.has_password, "{fault}: no password was received");
    assert!(
        !a.is_pending(),
        "settled: a re-read cannot find the password"
    );
    assert!(text.contains("\"outcome\":\"password_unknown\""), "{text}");
    let f = outcome("frank@contoso.com");
    assert_eq!(f.outcome, Some(Outcome::Applied), "{fault}");
    assert!(f.has_password);
    // the reset did take effect in the tenant: one reset of alice, answered oddly
    assert_eq!(
        sb.stats()["resetsPerUser"]["alice@contoso.com"],
        1,
        "{fault}"
    );
}

#[test]
fn a_202_with_an_empty_body_is_password_unknown() {
    apply_with("empty");
}

#[test]
fn a_202_without_new_password_is_password_unknown() {
    apply_with("no_password");
}

#[test]
fn a_202_in_text_plain_is_password_unknown() {
    apply_with("text_plain");
}

/// A journal written before the `password_unknown` outcome existed reads as before, and one with
/// it reads it back as settled.
#[test]
fn journals_old_and_new_read_back() {
    let path = std::path::Path::new("s.jsonl");
    let intent = r#"{"event":"intent","seq":1,"at":"2026-11-20T00:00:00Z","tenant":"t","userId":"u","userPrincipalName":"a@x","method":"reset_password_api"}"#;
    let old = format!(
        "{intent}\n{}\n",
        r#"{"event":"outcome","seq":1,"at":"2026-11-20T00:00:01Z","outcome":"applied"}"#
    );
    let j = Journal::parse(path, &old).unwrap();
    assert_eq!(j.entries().next().unwrap().outcome, Some(Outcome::Applied));
    let new = format!(
        "{intent}\n{}\n",
        r#"{"event":"outcome","seq":1,"at":"2026-11-20T00:00:01Z","outcome":"password_unknown"}"#
    );
    let j = Journal::parse(path, &new).unwrap();
    assert_eq!(
        j.entries().next().unwrap().outcome,
        Some(Outcome::PasswordUnknown)
    );
    assert_eq!(j.pending().count(), 0);
}
