//! `pwdrift validate`, driven through the real binary: every rejection of the desired-state
//! format has a fixture under `tests/fixtures/config/invalid/` (or is written at test time when it
//! must be hostile: deep nesting, invalid UTF-8, an oversized file) and a snapshot of the rendered
//! errors; valid input exits 0 with a one-line summary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `pwdrift validate ARGS` from the crate root (so fixture paths in messages are relative).
fn validate_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pwdrift"))
        .arg("validate")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("runs pwdrift")
}

fn validate(args: &[&str]) -> Output {
    validate_in(root(), args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("output is UTF-8")
}

/// Asserts a failed run (exit 1, nothing on stdout) and returns stderr.
fn failed(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert_eq!(text(&out.stdout), "", "nothing on stdout when invalid");
    assert!(
        stderr.trim_end().ends_with("; nothing was changed"),
        "last line counts the errors:\n{stderr}"
    );
    stderr
}

fn fixture(name: &str) -> String {
    format!("tests/fixtures/config/invalid/{name}")
}

macro_rules! rejects {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            let stderr = failed(&validate(&[&fixture($file)]));
            insta::assert_snapshot!(stringify!($test), stderr);
        }
    )*};
}

rejects! {
    unknown_key_with_suggestion => "unknown_key.yaml",
    wrong_types => "wrong_type.yaml",
    missing_required_keys => "missing_key.yaml",
    duplicate_user_in_one_file => "duplicate_user.yaml",
    duplicate_user_across_files => "dup_across",
    malformed_upn => "malformed_upn.yaml",
    malformed_guid => "malformed_guid.yaml",
    malformed_sid => "malformed_sid.yaml",
    malformed_tenant => "malformed_tenant.yaml",
    multi_tenant_alias => "multi_tenant_alias.yaml",
    timestamps_without_zone => "timestamp_without_zone.yaml",
    unknown_version => "unknown_version.yaml",
    contradictions => "contradiction.yaml",
    empty_file => "empty.yaml",
    only_comments => "only_comments.yaml",
    nothing_declared => "nothing_declared.yaml",
    duplicate_key => "duplicate_key.yaml",
    alias_bomb => "alias_bomb.yaml",
    yaml_tag => "tag.yaml",
    two_documents => "two_documents.yaml",
    generate_length_out_of_range => "generate_length.yaml",
}

/// A literal password is refused, and its value appears nowhere in the output, not even in the
/// source line shown under the error.
#[test]
fn literal_password_is_refused_and_never_echoed() {
    let stderr = failed(&validate(&[&fixture("literal_password.yaml")]));
    assert!(!stderr.contains("Hunter2"), "the literal leaked:\n{stderr}");
    assert!(stderr
        .contains("literal passwords are not allowed; use generate, env, file or systemGenerated"));
    insta::assert_snapshot!("literal_password", stderr);
}

/// Every way of writing a password where a source belongs is refused, and none is echoed: not a
/// block scalar, not a value under an unknown key, not one written where a variable name goes.
#[test]
fn literal_password_forms_are_refused_and_never_echoed() {
    let stderr = failed(&validate(&[&fixture("literal_password_forms.yaml")]));
    assert!(!stderr.contains("Hunter2"), "a literal leaked:\n{stderr}");
    insta::assert_snapshot!("literal_password_forms", stderr);
}

/// One run reports every error of every file in a directory, not only the first.
#[test]
fn a_directory_of_bad_files_reports_all_of_them() {
    let stderr = failed(&validate(&[&fixture("several")]));
    for f in ["one.yaml", "two.yaml", "three.yml"] {
        assert!(
            stderr.contains(&format!("several/{f}:")),
            "{f} missing:\n{stderr}"
        );
    }
    assert!(stderr.contains("error: 4 errors in 3 files; nothing was changed"));
    insta::assert_snapshot!("several_files", stderr);
}

/// All fixtures at once: every file is reported in one run.
#[test]
fn all_invalid_fixtures_in_one_run() {
    let stderr = failed(&validate(&["tests/fixtures/config/invalid"]));
    let last = stderr.trim_end().lines().last().unwrap().to_owned();
    // 27 files under invalid/ (incl. subdirectories), each with at least one error
    assert!(last.contains(" in 27 files;"), "{last}");
}

/// Writes `bytes` to a file in a fresh temp dir; returns the dir (kept alive) and the file name.
fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    (dir, PathBuf::from(name))
}

/// 100 000 opening brackets: refused at the nesting limit, not a stack overflow or a hang.
#[test]
fn deep_nesting_is_refused() {
    let (dir, file) = temp_file("deep.yaml", "[".repeat(100_000).as_bytes());
    let stderr = failed(&validate_in(dir.path(), &[file.to_str().unwrap()]));
    assert!(stderr.contains("nesting deeper than 32 levels is not supported"));
    insta::assert_snapshot!("deep_nesting", stderr);
}

/// Invalid UTF-8 is reported at the first bad byte.
#[test]
fn invalid_utf8_is_located() {
    let (dir, file) = temp_file(
        "latin1.yaml",
        b"version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: j\xf6rg@contoso.com\n",
    );
    let stderr = failed(&validate_in(dir.path(), &[file.to_str().unwrap()]));
    assert!(stderr.contains("latin1.yaml:4:12"), "{stderr}");
    insta::assert_snapshot!("invalid_utf8", stderr);
}

/// An 11 MiB file is refused from its size, before it is read.
#[test]
fn oversized_file_is_refused() {
    let line = "# padding padding padding padding padding padding padding padding padding pad\n";
    let size = 11 * 1024 * 1024;
    let body: String = line.repeat(size / line.len() + 1)[..size].to_owned();
    let (dir, file) = temp_file("huge.yaml", body.as_bytes());
    let stderr = failed(&validate_in(dir.path(), &[file.to_str().unwrap()]));
    assert!(
        stderr.contains("file too large: 11534336 bytes"),
        "{stderr}"
    );
    insta::assert_snapshot!("oversized_file", stderr);
}

/// A path that does not exist, and a directory without YAML files.
#[test]
fn missing_paths_and_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = failed(&validate_in(dir.path(), &["nope.yaml"]));
    assert!(stderr.contains("cannot read nope.yaml"), "{stderr}");
    let stderr = failed(&validate_in(dir.path(), &[]));
    assert!(
        stderr.contains("no desired-state file (*.yaml, *.yml) found in ."),
        "{stderr}"
    );
}

/// The shipped example is valid: exit 0, nothing on stderr, one summary line on stdout.
#[test]
fn example_desired_state_is_valid() {
    let out = validate(&["examples/desired"]);
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("example_summary", text(&out.stdout));
}

/// Without a path, the current directory is searched.
#[test]
fn default_path_is_the_current_directory() {
    let out = validate_in(&root().join("examples/desired"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ok: 1 file, 1 tenant, 5 users, 1 group\n"
    );
}

/// A literal `forceChangePasswordNextSignIn: true` is valid but warned about, with the reason.
#[test]
fn literal_true_is_a_warning() {
    let out = validate(&["tests/fixtures/config/valid/literal_true.yaml"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "ok: 1 file, 1 tenant, 1 user, 0 groups (1 warning)\n"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Graph clears the flag"));
    insta::assert_snapshot!("literal_true_warning", stderr);
}

/// A file with thousands of problems gets the first 50 and a note, not thousands of snippets.
#[test]
fn problems_per_file_are_capped() {
    let mut body = String::from("version: 1\ntenant: contoso.onmicrosoft.com\n");
    for i in 0..5000 {
        body.push_str(&format!("key{i}: 1\n"));
    }
    let (dir, file) = temp_file("many.yaml", body.as_bytes());
    let stderr = failed(&validate_in(dir.path(), &[file.to_str().unwrap()]));
    let errors = stderr.lines().filter(|l| l.starts_with("error: ")).count();
    // 50 kept + the note + the summary line
    assert_eq!(errors, 52, "{stderr}");
    assert!(stderr.contains("error: too many problems in this file: stopped after 50"));
}

/// `--format json`: one document on stdout with every diagnostic's position, and the same exit
/// code; the literal passwords of the fixtures appear nowhere.
#[test]
fn json_format_lists_every_diagnostic_and_no_secret() {
    for name in ["literal_password.yaml", "literal_password_forms.yaml"] {
        let out = validate(&["--format", "json", &fixture(name)]);
        assert_eq!(out.status.code(), Some(1));
        let stdout = text(&out.stdout);
        assert!(!stdout.contains("Hunter2"), "a literal leaked:\n{stdout}");
        let doc: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
        assert_eq!(doc["valid"], false);
        let diags = doc["diagnostics"].as_array().unwrap();
        assert!(!diags.is_empty());
        assert_eq!(
            doc["summary"]["errors"].as_u64().unwrap() as usize,
            diags.len()
        );
        for d in diags {
            assert_eq!(d["severity"], "error");
            assert!(d["file"].as_str().unwrap().ends_with(name), "{d}");
            assert!(d["line"].as_u64().unwrap() > 0, "{d}");
            assert!(d["column"].as_u64().unwrap() > 0, "{d}");
        }
    }
    let out = validate(&["--format", "json", &fixture("unknown_key.yaml")]);
    let stdout = text(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    insta::assert_json_snapshot!("json_unknown_key", doc);
}

#[test]
fn json_format_of_a_valid_state_counts_it() {
    let out = validate(&["--format", "json", "examples/desired"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["summary"]["errors"], 0);
    assert_eq!(doc["summary"]["files"], 1);
    assert_eq!(doc["summary"]["tenants"], 1);
}

/// `--format github`: workflow commands at file, line and column, then the failure line.
#[test]
fn github_format_prints_annotations() {
    let out = validate(&["--format", "github", &fixture("unknown_key.yaml")]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout
        .lines()
        .next()
        .unwrap()
        .starts_with("::error file=tests/fixtures/config/invalid/unknown_key.yaml,line="));
    insta::assert_snapshot!("github_unknown_key", stdout);
    let out = validate(&[
        "--format",
        "github",
        &fixture("literal_password_forms.yaml"),
    ]);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("Hunter2"), "a literal leaked:\n{stdout}");
    assert!(stdout.lines().filter(|l| l.starts_with("::error ")).count() > 1);
}
