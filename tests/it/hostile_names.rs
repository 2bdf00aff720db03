//! Output cannot be forged: a tenant whose users and groups carry hostile names (escape
//! sequences, a C1 CSI, bidirectional overrides, line and paragraph separators, newlines followed
//! by `::add-mask::`, `::set-output::`, `%0A`, Markdown and HTML) and desired-state files with
//! hostile group names, keys and file names, through every command and format: `plan` (text,
//! `-v`, JSON, Markdown, GitHub, `-vvv` logs), `apply` (its output and `--report`), `validate`
//! (text, JSON, GitHub) and `import` (then `validate` of what it wrote).
//!
//! Checked on every text output (stdout and stderr): no raw control character but newline, no
//! bidirectional control, no line or paragraph separator; no line that starts with `::` unless it
//! is one of pwdrift's own workflow commands in `--format github`. JSON carries the exact values.
//! The predicate here is written from the issue, not taken from pwdrift.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{repo, run, Run, BIN};

const SEED: &str = "tests/fixtures/hostile/hostile.seed.yaml";
const DESIRED: &str = "tests/fixtures/hostile/hostile.desired.yaml";

/// The hostile users' UPNs as seeded (what Graph returns), and the plain one.
const UPNS: [&str; 9] = [
    "esc\u{1b}[2Jclear@contoso.com",
    "csi\u{9b}31m@contoso.com",
    "rlo\u{202e}fdp.exe@contoso.com",
    "sep\u{2028}line@contoso.com",
    "nl\n::add-mask::x@contoso.com",
    "::set-output name=a::b@contoso.com",
    "pct%0A%0D%25@contoso.com",
    "tab\tdel\u{7f}@contoso.com",
    "plain@contoso.com",
];

/// A character that must never reach a terminal or a log raw.
fn forbidden(c: char) -> bool {
    let code = c as u32;
    (code < 0x20 && c != '\n')
        || (0x7f..=0x9f).contains(&code)
        || matches!(
            code,
            0x061c | 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069 | 0x2028 | 0x2029
        )
}

/// No forbidden character anywhere in `text`.
fn assert_no_raw(what: &str, text: &str) {
    if let Some((i, c)) = text.char_indices().find(|(_, c)| forbidden(*c)) {
        let from = text[..i].char_indices().rev().nth(60).map_or(0, |(j, _)| j);
        panic!(
            "{what}: raw U+{:04X} in {:?}\n--- whole output\n{text}",
            c as u32,
            &text[from..(i + c.len_utf8())]
        );
    }
}

/// No forbidden character, and no line starting with `::` (outside `--format github`).
fn assert_clean(what: &str, text: &str) {
    assert_no_raw(what, text);
    for line in text.lines() {
        assert!(
            !line.starts_with("::"),
            "{what}: a line starts with `::`: {line}"
        );
    }
}

/// GitHub output: no forbidden character, and every line starting with `::` is one of
/// pwdrift's own commands (`::stop-commands::TOKEN` … `::TOKEN::` around plain text, in which
/// no line starts with `::`).
fn assert_github(what: &str, text: &str) {
    assert_no_raw(what, text);
    let own = [
        "::error ",
        "::error::",
        "::warning ",
        "::warning::",
        "::notice ",
        "::notice::",
        "::group::",
        "::endgroup::",
        "::debug::",
    ];
    let mut stop: Option<String> = None;
    for line in text.lines() {
        if let Some(token) = &stop {
            if line == format!("::{token}::") {
                stop = None;
            } else {
                assert!(!line.starts_with("::"), "{what}: forged command: {line}");
            }
        } else if let Some(token) = line.strip_prefix("::stop-commands::") {
            assert!(token.len() >= 32, "{what}: a guessable stop token: {line}");
            stop = Some(token.to_owned());
        } else if line.starts_with("::") {
            assert!(
                own.iter().any(|p| line.starts_with(p)),
                "{what}: not one of pwdrift's commands: {line}"
            );
        }
    }
    assert!(stop.is_none(), "{what}: commands never resumed");
}

fn pwdrift(dir: &Path, args: &[&str]) -> Run {
    run(Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .args(args))
}

/// A copy of the hostile seed (the embedded sandbox keeps its state in it) and the desired state.
fn workspace() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("hostile.seed.yaml");
    std::fs::copy(repo().join(SEED), &seed).unwrap();
    let desired = dir.path().join("hostile.desired.yaml");
    std::fs::copy(repo().join(DESIRED), &desired).unwrap();
    let s = |p: PathBuf| p.to_str().unwrap().to_owned();
    (dir, s(seed), s(desired))
}

#[test]
fn plan_in_every_format_shows_hostile_names_escaped() {
    let (dir, seed, desired) = workspace();
    let d = dir.path();
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", "--sandbox", &seed, &desired];
        args.extend_from_slice(extra);
        let r = pwdrift(d, &args);
        assert!(r.code == 0 || r.code == 2, "{r:?}");
        r
    };

    let text = plan(&[]);
    assert_clean("plan stdout", &text.stdout);
    assert_clean("plan stderr", &text.stderr);
    // the value is there, escaped, on the line of its user
    assert!(
        text.stdout
            .contains("~ user nl\\n::add-mask::x@contoso.com (0b8f6b1c-3f41-4b8e-9a55-00000000e005) will be updated"),
        "{text:?}"
    );
    assert!(
        text.stdout.contains("user esc\\u{1b}[2Jclear@contoso.com"),
        "{text:?}"
    );
    assert!(
        text.stdout.contains("user rlo\\u{202e}fdp.exe@contoso.com"),
        "{text:?}"
    );

    let verbose = plan(&["-v"]);
    assert_clean("plan -v stdout", &verbose.stdout);
    assert_clean("plan -v stderr", &verbose.stderr);
    assert!(
        verbose.stdout.contains("user plain@contoso.com"),
        "{verbose:?}"
    );

    let logs = plan(&["-vvv"]);
    assert_clean("plan -vvv stdout", &logs.stdout);
    assert_clean("plan -vvv stderr (logs)", &logs.stderr);
    assert!(logs.stderr.contains("DEBUG"), "{logs:?}");

    let markdown = plan(&["--format", "markdown"]);
    assert_clean("markdown", &markdown.stdout);
    assert_clean("markdown stderr", &markdown.stderr);
    // no raw markup from a value in a table row: `<script>` never reaches the comment as HTML
    let rows: Vec<&str> = (markdown.stdout.lines())
        .filter(|l| l.starts_with("| `"))
        .collect();
    assert!(!rows.is_empty(), "{markdown:?}");
    assert!(!markdown.stdout.contains("<script>"), "{markdown:?}");

    let github = plan(&["--format", "github"]);
    assert_github("plan --format github", &github.stdout);
    assert_clean("github stderr", &github.stderr);
    assert!(
        github.stdout.contains("::warning "),
        "the blocked admin: {github:?}"
    );

    // JSON: exactly the values Graph sent
    let json = plan(&["--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let mut upns: Vec<String> = doc["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_principal_name"].as_str().unwrap().to_owned())
        .collect();
    upns.sort();
    let mut want: Vec<String> = UPNS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(upns, want);
}

#[test]
fn apply_output_and_report_show_hostile_names_escaped() {
    let (dir, seed, desired) = workspace();
    let d = dir.path();
    let report = d.join("report.json");
    let apply = pwdrift(
        d,
        &[
            "apply",
            "--sandbox",
            &seed,
            &desired,
            "--auto-approve",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    // the privileged user is blocked: the run is incomplete
    assert_eq!(apply.code, 1, "{apply:?}");
    assert_clean("apply stdout", &apply.stdout);
    assert_clean("apply stderr", &apply.stderr);
    assert!(
        apply.stdout.contains("  ! csi\\u{9b}31m@contoso.com ("),
        "{apply:?}"
    );
    assert!(apply.stdout.contains("7 changed and verified"), "{apply:?}");
    // the report is JSON: the exact values
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let mut upns: Vec<&str> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_principal_name"].as_str().unwrap())
        .collect();
    upns.sort();
    let mut want: Vec<&str> = UPNS.to_vec();
    want.sort();
    assert_eq!(upns, want, "{doc}");
}

#[test]
fn validate_shows_hostile_group_names_keys_and_file_names_escaped() {
    let (dir, _, desired) = workspace();
    let d = dir.path();
    // valid: group names with a right-to-left override and a line separator
    for format in ["text", "json", "github"] {
        let r = pwdrift(d, &["validate", &desired, "--format", format]);
        assert_eq!(r.code, 0, "{r:?}");
        assert_clean(&format!("validate {format} stderr"), &r.stderr);
        if format == "github" {
            assert_github("validate github", &r.stdout);
        } else {
            assert_clean(&format!("validate {format}"), &r.stdout);
        }
    }

    // invalid: a file whose name forges a line and a command, a group name with an escape
    // sequence, a key and a tenant with controls in them
    let bad_dir = d.join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let name = "evil\u{1b}[2J\n::warning file=x::forged\u{202e}.yaml";
    std::fs::write(
        bad_dir.join(name),
        "version: 1\n\
         tenant: \"contoso\\e[2J\\n::add-mask::t.com\"\n\
         groups:\n\
         \x20 - group: \"Esc \\e[2J\\n::add-mask::g\\u009b\"\n\
         \x20   forceChangePasswordNextSignIn: false\n\
         \x20 - group: Ops\n\
         \x20   \"key\\e]8;;http://x\\a\\u202e\\u2028::error::k\": 1\n",
    )
    .unwrap();
    let bad = bad_dir.to_str().unwrap();
    for format in ["text", "json", "github"] {
        let r = pwdrift(d, &["validate", bad, "--format", format]);
        assert_eq!(r.code, 1, "{r:?}");
        assert_clean(&format!("invalid validate {format} stderr"), &r.stderr);
        match format {
            "github" => {
                assert_github("invalid validate github", &r.stdout);
                assert!(
                    r.stdout
                        .contains("/evil\\u{1b}[2J\\n%3A%3Awarning file=x%3A%3Aforged"),
                    "{r:?}"
                );
            }
            "json" => {
                // JSON: a document, whatever it quotes
                let _: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
            }
            _ => {
                assert_clean("invalid validate text stdout", &r.stdout);
                assert!(r.stderr.contains("evil\\u{1b}[2J\\n::warning"), "{r:?}");
            }
        }
    }
}

#[test]
fn import_writes_hostile_names_escaped_and_its_files_validate() {
    let (dir, seed, _) = workspace();
    let d = dir.path();
    let import = pwdrift(
        d,
        &[
            "import",
            "--sandbox",
            &seed,
            "--tenant",
            "contoso.onmicrosoft.com",
            "--out",
            "out",
        ],
    );
    assert_eq!(import.code, 0, "{import:?}");
    assert_clean("import stdout", &import.stdout);
    assert_clean("import stderr", &import.stderr);
    let split = pwdrift(
        d,
        &[
            "import",
            "--sandbox",
            &seed,
            "--tenant",
            "contoso.onmicrosoft.com",
            "--out",
            "split",
            "--group",
            "Hostile",
            "--group",
            "Ops \u{202e}evil\u{2028}::warning::x",
            "--split-by-group",
        ],
    );
    assert_eq!(split.code, 0, "{split:?}");
    assert_clean("import --split-by-group stderr", &split.stderr);

    let mut files = Vec::new();
    for out in ["out", "split"] {
        for e in walk(&d.join(out)) {
            let text = std::fs::read_to_string(&e).unwrap();
            let shown = e.display().to_string();
            assert_clean(&shown, &text);
            // a value never starts a line: every line is a comment, a key or an entry
            for line in text.lines() {
                assert!(
                    line.is_empty()
                        || line.starts_with('#')
                        || line.starts_with("  ")
                        || ["version:", "tenant:", "users:"]
                            .iter()
                            .any(|k| line.starts_with(k)),
                    "{shown}: {line:?}"
                );
            }
            files.push((e, text));
        }
        let validate = pwdrift(d, &["validate", out]);
        assert_eq!(validate.code, 0, "{validate:?}");
        assert_clean("validate of the imported files", &validate.stderr);
    }
    // the hostile users are written by object id, their names escaped in the comment
    let whole = &files
        .iter()
        .find(|(p, _)| p.ends_with("out/contoso.onmicrosoft.com.yaml"))
        .expect("the tenant's file")
        .1;
    assert!(
        whole.contains(
            "  - user: 0b8f6b1c-3f41-4b8e-9a55-00000000e001  # Eve \\u{1b}]8;;http://x\\u{7}link"
        ),
        "{whole}"
    );
    assert!(
        whole.contains("<rlo\\u{202e}fdp.exe@contoso.com>"),
        "{whole}"
    );
    let groups: String = files.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        groups.contains("group Ops \\u{202e}evil\\u{2028}::warning::x"),
        "{groups}"
    );
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Values the user passes in flags and that an error quotes (`--tenant`, `--group`) are shown
/// escaped: a newline in one cannot start a line of its own, so no error forges a workflow
/// command.
#[test]
fn flag_values_quoted_in_errors_cannot_start_a_line() {
    let (dir, seed, desired) = workspace();
    let forged = "x\n::add-mask::y\u{1b}[2J";
    let runs = [
        pwdrift(
            dir.path(),
            &["plan", &desired, "--sandbox", &seed, "--tenant", forged],
        ),
        pwdrift(
            dir.path(),
            &[
                "import",
                "--sandbox",
                &seed,
                "--tenant",
                forged,
                "--out",
                "out",
            ],
        ),
        pwdrift(
            dir.path(),
            &[
                "import",
                "--sandbox",
                &seed,
                "--tenant",
                "contoso.onmicrosoft.com",
                "--out",
                "out",
                "--group",
                forged,
            ],
        ),
    ];
    for r in &runs {
        assert_eq!(r.code, 1, "{r:?}");
        assert_clean("error", &r.stderr);
        assert!(r.stderr.contains("x\\n::add-mask::y"), "{r:?}");
    }
    assert!(!dir.path().join("out").exists());
}
