//! Secrets are redacted from whatever a peer says (issue 19, point 6): a Graph that quotes the
//! submitted password in its 400 (the sandbox's `echo` fault) and an authority whose
//! `error_description` quotes the client secret (raw and as the URL-encoded form it received)
//! are run against the real binary at `-vvv` with `--report`; the secret, in any of its forms,
//! appears in no stdout, stderr, report or saved plan, and the masked echo (`***`) shows that the
//! peer did quote it.

use std::path::Path;

use crate::common::{run, write, Run, Sandbox, Scripted, BIN};

/// Every form a peer could quote `secret` in: raw, JSON-escaped, URL-encoded.
fn forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    vec![secret.to_owned(), json[1..json.len() - 1].to_owned(), form]
}

fn assert_nowhere(secret: &str, outputs: &[(&str, String)]) {
    for (what, text) in outputs {
        for f in forms(secret) {
            assert!(!text.contains(&f), "{f:?} leaked in {what}:\n{text}");
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A password with a quote, a slash, a plus and an ampersand: its JSON and URL forms differ.
const PASSWORD: &str = "Echo-Canary\"Pw/9+&x";

#[test]
fn a_password_graph_quotes_back_is_masked_everywhere() {
    let sb = Sandbox::contoso().faults("echo=1").start();
    let dir = tempfile::tempdir().unwrap();
    let desired = write(
        dir.path(),
        "desired.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: frank@contoso.com\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { env: ECHO_CANARY_PW }\n",
    );
    let desired = desired.to_str().unwrap();
    let saved = dir.path().join("plan.json");
    let report = dir.path().join("report.json");
    let plan = run(sb.pwdrift().env("ECHO_CANARY_PW", PASSWORD).args([
        "plan",
        desired,
        "-vvv",
        "--out",
        saved.to_str().unwrap(),
    ]));
    assert_eq!(plan.code, 0, "{plan:?}");
    let apply = run(sb
        .pwdrift()
        .env("ECHO_CANARY_PW", PASSWORD)
        .env("RUST_LOG", "trace")
        .args([
            "apply",
            desired,
            "-vvv",
            "--auto-approve",
            "--report",
            report.to_str().unwrap(),
        ]));
    assert_eq!(apply.code, 1, "every write is refused: {apply:?}");
    let report = read(&report);
    // the peer did quote the password, and the quote is masked
    assert!(
        report.contains("Invalid value specified in the request payload") && report.contains("***"),
        "{report}"
    );
    assert_nowhere(
        PASSWORD,
        &[
            ("plan stdout", plan.stdout),
            ("plan stderr", plan.stderr),
            ("apply stdout", apply.stdout),
            ("apply stderr", apply.stderr),
            ("report", report),
            ("saved plan", read(&saved)),
        ],
    );
}

/// A client secret with characters that URL-encoding and JSON change.
const CLIENT_SECRET: &str = "Echo~Secret/7+q=\"z&";

fn pwdrift_against(authority: &str, dir: &Path, args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "trace")
        .env("AZURE_CLIENT_ID", "00000000-0000-0000-0000-0000000000c1")
        .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
        .env("AZURE_TENANT_ID", "contoso.onmicrosoft.com")
        .env("AZURE_AUTHORITY_HOST", authority)
        .env("PWDRIFT_GRAPH_URL", authority)
        .current_dir(dir)
        .args(args);
    run(&mut cmd)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_secret_the_authority_quotes_back_is_masked_everywhere() {
    // The authority quotes the secret raw, and the whole form it received (URL-encoded).
    let authority = Scripted::start(|s, _| {
        (
            401,
            serde_json::json!({
                "error": "invalid_client",
                "error_description": format!(
                    "AADSTS7000215: Invalid client secret provided: '{}'. Request: {}",
                    s.form.get("client_secret").cloned().unwrap_or_default(),
                    s.body
                ),
                "error_codes": [7000215],
                "trace_id": "tr-1",
                "correlation_id": s.form.get("client_secret").cloned().unwrap_or_default(),
            }),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "desired.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: frank@contoso.com\n    forceChangePasswordNextSignIn: true\n",
    );
    let base = authority.base.clone();
    let d = dir.path().to_owned();
    let (plan, apply) = tokio::task::spawn_blocking(move || {
        let plan = pwdrift_against(
            &base,
            &d,
            &["plan", "desired.yaml", "-vvv", "--out", "plan.json"],
        );
        let apply = pwdrift_against(
            &base,
            &d,
            &[
                "apply",
                "desired.yaml",
                "-vvv",
                "--auto-approve",
                "--report",
                "report.json",
            ],
        );
        (plan, apply)
    })
    .await
    .unwrap();
    // the authority was asked, with the secret, and quoted it back
    let asked = authority.seen();
    assert!(
        asked
            .iter()
            .any(|s| s.form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)),
        "{asked:?}"
    );
    assert_eq!(plan.code, 1, "{plan:?}");
    assert_eq!(apply.code, 1, "{apply:?}");
    for r in [&plan, &apply] {
        assert!(r.stderr.contains("AADSTS7000215"), "{r:?}");
        assert!(r.stderr.contains("provided: '***'"), "{r:?}");
    }
    assert_nowhere(
        CLIENT_SECRET,
        &[
            ("plan stdout", plan.stdout),
            ("plan stderr", plan.stderr),
            ("apply stdout", apply.stdout),
            ("apply stderr", apply.stderr),
            ("report", read(&dir.path().join("report.json"))),
            ("saved plan", read(&dir.path().join("plan.json"))),
        ],
    );
}
