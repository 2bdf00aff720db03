//! `pwdrift secrets` (issue 21, point 5): the helpdesk's view of a secrets file through the real
//! binary: the last password of each user after real applies against the sandbox, encrypted
//! passwords with and without `--identity`, the table (escaped), CSV (quoted, formula-guarded)
//! and JSON of a journal with every outcome, the filters, `--resolve` reading unknown outcomes
//! back from the sandbox and appending them, and the refusals.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const BOB_ID: &str = "0b8f6b1c-3f41-4b8e-9a55-1c2d3e4f5a02";

/// `pwdrift` without credentials or a reachable Graph: reading a secrets file needs neither.
fn offline() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env(
            "PWDRIFT_GRAPH_URL",
            "http://127.0.0.1:9/nothing-listens-here",
        );
    cmd
}

/// Writes a secrets file as `apply` leaves it: 0600.
fn journal(dir: &Path, lines: &[serde_json::Value]) -> PathBuf {
    let path = dir.join("secrets.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

fn intent(seq: u64, at: &str, upn: &str, id: &str, password: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({"event": "intent", "seq": seq, "at": at,
        "tenant": "contoso.onmicrosoft.com", "userId": id, "userPrincipalName": upn,
        "method": "patch"});
    if let Some(p) = password {
        v["password"] = p.into();
    }
    v
}

fn outcome(seq: u64, outcome: &str, detail: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({"event": "outcome", "seq": seq,
        "at": "2026-02-01T00:00:00Z", "outcome": outcome});
    if let Some(d) = detail {
        v["detail"] = d.into();
    }
    v
}

/// A journal with every outcome: a user reset twice, a failed write, a pending one, an unknown
/// one, a system-generated password, a password nobody knows, a superseded entry, a UPN holding
/// an escape sequence and a comma, a password that starts like a formula.
fn every_outcome(dir: &Path) -> PathBuf {
    journal(
        dir,
        &[
            intent(
                1,
                "2026-01-10T09:00:00Z",
                "alice@contoso.com",
                "id-a",
                Some("First-Pw-1!"),
            ),
            outcome(1, "applied", Some("verified")),
            intent(
                2,
                "2026-01-11T09:00:00Z",
                "bob@contoso.com",
                "id-b",
                Some("Bob,\"Pw\"-2!"),
            ),
            outcome(
                2,
                "not_applied",
                Some("read back: the password did not change"),
            ),
            intent(
                3,
                "2026-01-12T09:00:00Z",
                "alice@contoso.com",
                "id-a",
                Some("Second-Pw-2!"),
            ),
            outcome(3, "applied", None),
            intent(
                4,
                "2026-01-13T09:00:00Z",
                "carol@contoso.com",
                "id-c",
                Some("=HYPERLINK(\"x\")"),
            ),
            intent(
                5,
                "2026-01-14T09:00:00Z",
                "dave@contoso.com",
                "id-d",
                Some("-Dave-Pw-5!"),
            ),
            outcome(5, "unknown", Some("timeout")),
            intent(6, "2026-01-15T09:00:00Z", "erin@contoso.com", "id-e", None),
            outcome(6, "password_unknown", None),
            intent(7, "2026-01-16T09:00:00Z", "frank@contoso.com", "id-f", None),
            serde_json::json!({"event": "generated", "seq": 7, "at": "2026-01-16T09:00:01Z",
                "password": "Sys-Gen-7!"}),
            outcome(7, "superseded", None),
            intent(8, "2026-01-16T09:01:00Z", "frank@contoso.com", "id-f", None),
            serde_json::json!({"event": "generated", "seq": 8, "at": "2026-01-16T09:01:01Z",
                "password": "Sys-Gen-8!"}),
            outcome(8, "applied", Some("operation succeeded")),
            intent(
                9,
                "2026-01-17T09:00:00Z",
                "gr\u{1b}[2Jace,x@contoso.com",
                "id-g",
                Some("@Grace-9!"),
            ),
            outcome(9, "applied", None),
        ],
    )
}

#[test]
fn secrets_table_of_every_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = every_outcome(dir.path());
    let r = run(offline().arg("secrets").arg("--secrets").arg(&path));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains('\u{1b}'), "{r:?}");
    let shown = r.stdout.replace(path.to_str().unwrap(), "[secrets]");
    insta::assert_snapshot!(shown);
}

#[test]
fn secrets_csv_of_every_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = every_outcome(dir.path());
    let r = run(offline()
        .args(["secrets", "--format", "csv", "--secrets"])
        .arg(&path));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r
        .stdout
        .starts_with("userPrincipalName,password,outcome,tenant,setAt,"));
    // the unknown outcomes are named on stderr, stdout stays a CSV document
    assert!(
        r.stderr.contains("2 write(s) with an unknown outcome"),
        "{r:?}"
    );
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn secrets_json_of_every_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = every_outcome(dir.path());
    let r = run(offline()
        .args(["secrets", "--format", "json", "--secrets"])
        .arg(&path));
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    // exact values in JSON: no formula guard, no escaping
    let users = v["users"].as_array().unwrap();
    let carol = users
        .iter()
        .find(|u| u["userPrincipalName"] == "carol@contoso.com")
        .unwrap();
    assert_eq!(carol["password"], "=HYPERLINK(\"x\")");
    assert_eq!(carol["outcome"], "unknown");
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn secrets_filters_by_user_and_since() {
    let dir = tempfile::tempdir().unwrap();
    let path = every_outcome(dir.path());
    let r = run(offline()
        .args([
            "secrets",
            "--format",
            "csv",
            "--user",
            "ALICE@contoso.com",
            "--secrets",
        ])
        .arg(&path));
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(
        lines[1].starts_with("alice@contoso.com,Second-Pw-2!,applied,"),
        "{r:?}"
    );

    for since in ["2026-01-16", "2026-01-16T00:00:00+00:00"] {
        let r = run(offline()
            .args(["secrets", "--format", "json", "--since", since, "--secrets"])
            .arg(&path));
        assert_eq!(r.code, 0, "{r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let names: Vec<&str> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userId"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["id-f", "id-g"], "{since}");
    }
    let r = run(offline()
        .args(["secrets", "--since", "last tuesday", "--secrets"])
        .arg(&path));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("--since last tuesday: not a date"),
        "{r:?}"
    );
}

/// The refusals: a missing file, a corrupt line (named, without its content), a missing or
/// malformed identity file, a wrong identity (no password shown). Nothing on stdout.
#[test]
fn secrets_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    let r = run(offline().arg("secrets").arg("--secrets").arg(&missing));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot read it"), "{r:?}");

    let corrupt = journal(
        dir.path(),
        &[
            intent(
                1,
                "2026-01-10T09:00:00Z",
                "a@contoso.com",
                "id-a",
                Some("Leak-Me-1!"),
            ),
            serde_json::json!({"event": "nope", "password": "Leak-Me-2!"}),
        ],
    );
    let r = run(offline().arg("secrets").arg("--secrets").arg(&corrupt));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("line 2"), "{r:?}");
    assert!(!r.stderr.contains("Leak-Me"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");

    let id = age::x25519::Identity::generate();
    let armored = pwdrift::secrets::encrypt_armored(&[id.to_public()], b"Sealed-Pw-1!").unwrap();
    let mut sealed = intent(1, "2026-01-10T09:00:00Z", "a@contoso.com", "id-a", None);
    sealed["password"] = serde_json::json!({ "age": armored });
    let path = journal(dir.path(), &[sealed]);

    let r = run(offline()
        .args(["secrets", "--identity"])
        .arg(dir.path().join("no-key.txt"))
        .arg("--secrets")
        .arg(&path));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("--identity"), "{r:?}");

    let not_a_key = write(
        dir.path(),
        "not-a-key.txt",
        "# mine\nAGE-SECRET-KEY-1NOPE\n",
    );
    let r = run(offline()
        .args(["secrets", "--identity"])
        .arg(&not_a_key)
        .arg("--secrets")
        .arg(&path));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not-a-key.txt:2: not an age identity"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("NOPE"), "{r:?}");

    let other = write(
        dir.path(),
        "other.txt",
        &format!(
            "{}\n",
            secrecy::ExposeSecret::expose_secret(&age::x25519::Identity::generate().to_string())
        ),
    );
    let r = run(offline()
        .args(["secrets", "--identity"])
        .arg(&other)
        .arg("--secrets")
        .arg(&path));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot decrypt"), "{r:?}");
    assert!(!r.stderr.contains("Sealed-Pw"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
}

fn bob_reset(dir: &Path, not_before: &str) -> PathBuf {
    write(
        dir,
        "desired.yaml",
        &format!(
            "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: bob@contoso.com\n    \
             resetPassword:\n      notBefore: {not_before}\n      password:\n        \
             generate: {{ length: 16 }}\n"
        ),
    )
}

fn apply(sb: &Sandbox, desired: &Path, secrets: &Path, extra: &[&str]) -> Run {
    let r = run(sb
        .pwdrift()
        .arg("apply")
        .arg(desired)
        .args(["--auto-approve", "--secrets-out"])
        .arg(secrets)
        .args(extra));
    assert_eq!(r.code, 0, "{r:?}");
    r
}

/// Two real applies reset Bob twice (the second with `--secrets-append`): `secrets` shows his
/// second password, applied, the one the journal recorded last.
#[test]
fn a_user_reset_twice_shows_the_last_password() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.jsonl");
    apply(
        &sb,
        &bob_reset(dir.path(), "2026-01-01T00:00:00Z"),
        &secrets,
        &[],
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    apply(
        &sb,
        &bob_reset(dir.path(), &now),
        &secrets,
        &["--secrets-append"],
    );

    let text = std::fs::read_to_string(&secrets).unwrap();
    let recorded = pwdrift::secrets::read_passwords(&text, None).unwrap();
    assert_eq!(recorded.len(), 2, "two resets recorded");
    let last = secrecy::ExposeSecret::expose_secret(&recorded[1].2).to_owned();
    let first = secrecy::ExposeSecret::expose_secret(&recorded[0].2).to_owned();

    let r = run(offline()
        .args(["secrets", "--format", "json", "--secrets"])
        .arg(&secrets));
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{r:?}");
    assert_eq!(users[0]["userPrincipalName"], "bob@contoso.com");
    assert_eq!(users[0]["userId"], BOB_ID);
    assert_eq!(users[0]["outcome"], "applied");
    assert_eq!(users[0]["password"], last.as_str());
    assert!(!r.stdout.contains(&first), "{r:?}");
    // the table shows it too; nothing on stderr carries it
    let r = run(offline().arg("secrets").arg("--secrets").arg(&secrets));
    assert!(r.stdout.contains(&last), "{r:?}");
    assert!(!r.stderr.contains(&last), "{r:?}");
}

/// Passwords encrypted with `--secrets-recipient` are not shown without `--identity`, and shown
/// with it.
#[test]
fn encrypted_passwords_need_the_identity() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.jsonl");
    let id = age::x25519::Identity::generate();
    let key = write(
        dir.path(),
        "key.txt",
        &format!(
            "# created: now\n# public key: {}\n{}\n",
            id.to_public(),
            secrecy::ExposeSecret::expose_secret(&id.to_string())
        ),
    );
    let recipient = id.to_public().to_string();
    apply(
        &sb,
        &bob_reset(dir.path(), "2026-01-01T00:00:00Z"),
        &secrets,
        &["--secrets-recipient", &recipient],
    );
    let r = run(offline()
        .args(["secrets", "--format", "csv", "--secrets"])
        .arg(&secrets));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("bob@contoso.com,(encrypted: pass --identity),applied,"),
        "{r:?}"
    );
    let r = run(offline()
        .args(["secrets", "--format", "json", "--identity"])
        .arg(&key)
        .arg("--secrets")
        .arg(&secrets));
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let pw = v["users"][0]["password"].as_str().unwrap();
    assert_eq!(pw.len(), 16, "{r:?}");
    assert_eq!(v["users"][0]["passwordState"], "shown");
}

/// `--resolve` reads the users of unknown outcomes back from Graph (the sandbox) and appends
/// what it finds: Bob's password changed after the intent (applied), Alice's did not
/// (failed, not_applied); the journal only grows.
#[test]
fn resolve_reads_unknown_outcomes_back_and_appends_them() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let state = sb.state();
    let users = state["users"]
        .as_array()
        .or_else(|| state["tenants"][0]["users"].as_array())
        .unwrap();
    let alice_id = users
        .iter()
        .find(|u| u["userPrincipalName"] == "alice@contoso.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Bob's password last changed 2025-11-20 in the seed: an intent before it landed; Alice's
    // 2026-01-10: an intent after it did not
    let path = journal(
        dir.path(),
        &[
            intent(
                1,
                "2025-11-01T00:00:00Z",
                "bob@contoso.com",
                BOB_ID,
                Some("Bob-Pw-1!aa"),
            ),
            intent(
                2,
                "2026-06-01T00:00:00Z",
                "alice@contoso.com",
                &alice_id,
                Some("Al-Pw-2!aa"),
            ),
            outcome(2, "unknown", Some("timeout")),
        ],
    );
    let before = std::fs::read_to_string(&path).unwrap();
    let r = run(sb
        .pwdrift()
        .args([
            "secrets",
            "--resolve",
            "--verify-timeout",
            "1",
            "--format",
            "csv",
            "--secrets",
        ])
        .arg(&path));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("bob@contoso.com: applied"), "{r:?}");
    assert!(r.stderr.contains("alice@contoso.com: not applied"), "{r:?}");
    assert!(
        r.stdout.contains("bob@contoso.com,Bob-Pw-1!aa,applied,"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("alice@contoso.com,Al-Pw-2!aa,failed,"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("Pw-"), "no password on stderr: {r:?}");
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.starts_with(&before), "append-only");
    assert_eq!(after.lines().count(), before.lines().count() + 2);

    // nothing left to resolve
    let r = run(sb
        .pwdrift()
        .args(["secrets", "--resolve", "--secrets"])
        .arg(&path));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("No write with an unknown outcome"),
        "{r:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), after);
}

/// `--resolve` opens the file as `apply --secrets-append` does: not while another run holds it.
#[cfg(unix)]
#[test]
fn resolve_refuses_a_file_an_apply_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal(
        dir.path(),
        &[intent(
            1,
            "2026-01-10T09:00:00Z",
            "a@contoso.com",
            "id-a",
            Some("Held-Pw-1!"),
        )],
    );
    let (_held, _) =
        pwdrift::secrets::SecretsFile::open(&path, pwdrift::secrets::OpenMode::Append, Vec::new())
            .unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let r = run(offline()
        .args(["secrets", "--resolve", "--secrets"])
        .arg(&path));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("in use by another pwdrift run (locked)"),
        "{r:?}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
}
