//! `pwdrift show PLANFILE` (issue 21, point 4): a saved plan rendered as `plan` rendered it, in
//! every format, offline (no credentials, a Graph URL that answers nothing), after the integrity
//! check `apply` makes (a tampered or stale-format file is refused in the same words, exit 1).

use std::path::Path;
use std::process::Command;

use crate::common::*;

const DESIRED: &str = "examples/desired";

/// `pwdrift` with no credential in the environment and a Graph URL nobody listens on: anything
/// that tried to sign in or connect would fail.
fn offline() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env(
            "PWDRIFT_GRAPH_URL",
            "http://127.0.0.1:9/nothing-listens-here",
        )
        .env("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9/");
    cmd
}

/// The GitHub format's `stop-commands` token is chosen anew for every output (see
/// `render::github`): the one difference between `plan` and `show`, replaced here.
fn without_stop_token(s: &str) -> String {
    let mut out = String::new();
    let mut token = None;
    for line in s.lines() {
        if let Some(t) = line.strip_prefix("::stop-commands::") {
            token = Some(t.to_owned());
        }
        let shown = match &token {
            Some(t) => line.replace(t.as_str(), "[token]"),
            None => line.to_owned(),
        };
        out.push_str(&shown);
        out.push('\n');
    }
    out
}

/// For each format, `plan --out F --format X` and `show F --format X` print the same bytes
/// (`-v` too, for text); `show` runs with no credentials and no reachable Graph.
#[test]
fn show_prints_what_plan_printed_in_every_format() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    for (format, verbose) in [
        ("text", false),
        ("text", true),
        ("json", false),
        ("markdown", false),
        ("github", false),
    ] {
        let saved = dir.path().join(format!("plan-{format}-{verbose}.json"));
        let mut plan = sb.pwdrift();
        plan.current_dir(repo())
            .args(["plan", DESIRED, "--format", format, "--out"])
            .arg(&saved);
        if verbose {
            plan.arg("-v");
        }
        let planned = run(&mut plan);
        assert_eq!(planned.code, 0, "{planned:?}");
        let mut show = offline();
        show.args(["show", "--format", format]).arg(&saved);
        if verbose {
            show.arg("-v");
        }
        let shown = run(&mut show);
        assert_eq!(shown.code, 0, "{format}: {shown:?}");
        assert!(shown.stderr.is_empty(), "{format}: {shown:?}");
        if format == "github" {
            assert!(planned.stdout.contains("::stop-commands::"), "{planned:?}");
            assert_eq!(
                without_stop_token(&shown.stdout),
                without_stop_token(&planned.stdout),
                "{format}"
            );
        } else {
            assert_eq!(shown.stdout, planned.stdout, "{format} (verbose {verbose})");
        }
    }
}

/// A snapshot of `show`'s text for the shipped example (planned against the embedded sandbox).
#[test]
fn show_text_of_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed_copy(dir.path());
    let saved = dir.path().join("plan.json");
    let r = run(Command::new(BIN)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .args([
            "plan",
            "--sandbox",
            seed.to_str().unwrap(),
            DESIRED,
            "--out",
        ])
        .arg(&saved));
    assert_eq!(r.code, 0, "{r:?}");
    let shown = run(offline().arg("show").arg(&saved));
    assert_eq!(shown.code, 0, "{shown:?}");
    insta::assert_snapshot!(shown.stdout);
}

fn saved_example(dir: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let seed = seed_copy(dir);
    let saved = dir.join("plan.json");
    let r = run(Command::new(BIN)
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .args([
            "plan",
            "--sandbox",
            seed.to_str().unwrap(),
            DESIRED,
            "--out",
        ])
        .arg(&saved));
    assert_eq!(r.code, 0, "{r:?}");
    let v = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    (saved, v)
}

/// A plan edited after it was saved, and one of an unknown format version, are refused by `show`
/// as by `apply`: the same first line, exit 1, nothing on stdout.
#[test]
fn show_refuses_a_tampered_or_stale_plan_as_apply_does() {
    let dir = tempfile::tempdir().unwrap();
    let (saved, mut v) = saved_example(dir.path());
    let users = v["tenants"][0]["users"].as_array_mut().unwrap();
    users[0]["user_principal_name"] = "mallory@contoso.com".into();
    std::fs::write(&saved, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let shown = run(offline().arg("show").arg(&saved));
    assert_eq!(shown.code, 1, "{shown:?}");
    assert!(shown.stdout.is_empty(), "{shown:?}");
    assert!(
        shown.stderr.contains("modified after it was saved"),
        "{shown:?}"
    );
    let applied = run(offline().arg("apply").arg(&saved).arg("--auto-approve"));
    assert_eq!(applied.code, shown.code, "{applied:?}");
    assert_eq!(
        applied.stderr.lines().next(),
        shown.stderr.lines().next(),
        "{applied:?}"
    );

    v["format_version"] = "999".into();
    std::fs::write(&saved, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let shown = run(offline().arg("show").arg(&saved));
    assert_eq!(shown.code, 1, "{shown:?}");
    assert!(
        shown.stderr.contains("format_version 999 is not supported"),
        "{shown:?}"
    );
    let applied = run(offline().arg("apply").arg(&saved).arg("--auto-approve"));
    assert_eq!(applied.code, 1, "{applied:?}");
    assert_eq!(
        applied.stderr.lines().next(),
        shown.stderr.lines().next(),
        "{applied:?}"
    );
}

/// Values from the file are shown through the one display escaping, as `plan` shows them: a UPN
/// holding an escape sequence (in a plan resealed with a valid hash) does not reach the
/// terminal raw.
#[test]
fn show_escapes_values_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (saved, mut v) = saved_example(dir.path());
    let bob = v["tenants"][0]["users"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|u| u["user_principal_name"] == "bob@contoso.com")
        .unwrap();
    bob["user_principal_name"] = "al\u{1b}[2Jice@contoso.com".into();
    v.as_object_mut().unwrap().remove("content_hash");
    let plan: pwdrift::plan::Plan = serde_json::from_value(v.clone()).unwrap();
    v["content_hash"] = pwdrift::plan::content_hash(&plan).into();
    std::fs::write(&saved, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    for format in ["text", "markdown", "github"] {
        let shown = run(offline().args(["show", "--format", format]).arg(&saved));
        assert_eq!(shown.code, 0, "{format}: {shown:?}");
        assert!(!shown.stdout.contains('\u{1b}'), "{format}: {shown:?}");
        assert!(shown.stdout.contains("u{1b}"), "{format}: {shown:?}");
    }
}

/// A path that is not a regular file is refused at once, as every user-named file is.
#[test]
fn show_refuses_what_is_not_a_plan_file() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(offline().args(["show", "/dev/zero"]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not a regular file"), "{r:?}");
    let yaml = write(dir.path(), "desired.yaml", "version: 1\n");
    let r = run(offline().arg("show").arg(&yaml));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not a pwdrift plan"), "{r:?}");
}
