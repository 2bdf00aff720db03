//! Every `pwdrift ...` command that README.md and the guides under `docs/` show in a shell block
//! (```` ```sh ````, `bash`, `shell` or `console`) exists and runs as the page says.
//!
//! - Every shown command is first parsed by the real binary's clap definition: the command as
//!   shown, up to its first redirection or pipe, with `--help` appended, must exit 0 (a
//!   subcommand or a flag that does not exist, or a bad value, fails; `--help` only skips the
//!   checks of required arguments, which the run below covers).
//! - Then each page's commands run, in order, in a temporary copy of `examples/` (seeds, desired
//!   state, CI recipes; no sandbox state) and `schemas/` of its own, with the binary under test
//!   first on `PATH`, no colour, and exit as the page says: 0, or the code named by an `(exit N)`
//!   in the line's trailing comment. A command with `--sandbox SEED` runs against the embedded
//!   sandbox as shown. Any other command stands for a real tenant: it runs with the credentials
//!   and endpoints of one Graph sandbox (seeded with `examples/sandbox/contoso.seed.yaml`, started
//!   once for every page) in the environment, as the Azure SDK conventions name them, in place
//!   of the tenant's.
//! - A command that cannot run here is listed in [`CANNOT_RUN`] with the reason; it is only
//!   parsed. An entry that no page shows any more fails the test, so the list stays short.
//!
//! - Every relative link of the pages (`[text](docs/ci.md#shards)`) leads to a file of the
//!   repository and, with a `#fragment`, to a heading of that page (GitHub's anchors).
//!
//! Conventions the pages follow: in a shell block, lines that are not a `pwdrift` command
//! (`cargo ...`, `bash ...`, `export ...`, `openssl ...`) are not run (they build this
//! repository, or prepare a real tenant's credentials, which the sandbox's replace); backslash
//! continuations are joined, and a command may redirect or pipe (it runs under `sh -c`). There
//! is no "do not run" marker: a ```` ```sh no-run ```` block fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{repo, Sandbox, BIN};

/// Commands shown in the pages that cannot run in a test, with the reason. Each is only parsed
/// (with `--help` appended). `(page, command as shown without its comment, reason)`.
const CANNOT_RUN: &[(&str, &str, &str)] = &[
    (
        // a server: it prints its connection line and serves until it is stopped
        "docs/sandbox.md",
        "pwdrift sandbox --seed examples/sandbox/contoso.seed.yaml --listen 127.0.0.1:0",
        "runs until stopped; this test starts its sandbox the same way (common::Sandbox::start)",
    ),
    (
        // the device-code flow prints a code and waits for an administrator to enter it
        "docs/real-tenant.md",
        "pwdrift plan desired/ --delegated",
        "the device-code sign-in waits for a person",
    ),
];

/// Pages that show no `pwdrift` command; every other page must show at least one.
const WITHOUT_COMMANDS: &[&str] = &[
    "docs/bad-inputs.md",
    "docs/performance.md",
    "docs/graph-behaviour.md",
];

/// How long one shown command may take.
const COMMAND_TIME_LIMIT: Duration = Duration::from_secs(10);

/// One command of a shell block.
#[derive(Debug)]
struct Shown {
    /// the line of the page the command starts on
    line: usize,
    command: String,
    expected: i32,
}

/// The `pwdrift` commands of the runnable shell blocks of `text`, and the number of `no-run`
/// blocks.
fn commands(text: &str) -> (Vec<Shown>, usize) {
    let (shown, skipped, _) = all_commands(text);
    (shown, skipped)
}

/// A fenced block of a page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    /// ```` ```sh ```` (or `bash`, `shell`, `console`)
    Run,
    /// ```` ```sh no-run ````: no longer allowed, counted so that the test can say so
    NoRun,
    /// any other language
    Other,
}

fn all_commands(text: &str) -> (Vec<Shown>, usize, Vec<Shown>) {
    let mut run = Vec::new();
    let mut not_run = Vec::new();
    let mut skipped_blocks = 0;
    let mut block: Option<Block> = None;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        if let Some(info) = raw.trim_start().strip_prefix("```") {
            block = match block {
                Some(_) => None,
                None => {
                    let words: Vec<&str> = info.split_whitespace().collect();
                    Some(match words.as_slice() {
                        ["sh" | "bash" | "shell" | "console"] => Block::Run,
                        ["sh" | "bash" | "shell" | "console", "no-run"] => {
                            skipped_blocks += 1;
                            Block::NoRun
                        }
                        _ => Block::Other,
                    })
                }
            };
            continue;
        }
        let into = match block {
            Some(Block::Run) => &mut run,
            Some(Block::NoRun) => &mut not_run,
            _ => continue,
        };
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(head) = raw.trim_end().strip_suffix('\\') {
            joined.push_str(head);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(raw.trim_end());
        let (code, comment) = split_comment(&joined);
        let code = code.trim();
        let code = code.strip_prefix("$ ").unwrap_or(code);
        if !code.starts_with("pwdrift ") {
            continue;
        }
        let expected = comment
            .and_then(|c| c.split("(exit ").nth(1))
            .and_then(|rest| rest.split(')').next())
            .map(|n| n.trim().parse().expect("(exit N) with a number"))
            .unwrap_or(0);
        into.push(Shown {
            line: start,
            command: code.to_owned(),
            expected,
        });
    }
    (run, skipped_blocks, not_run)
}

/// Splits a shell line at its trailing comment: a `#` at the start of a word, outside quotes.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return (&line[..i], Some(&line[i..])),
            None => {}
        }
        prev = c;
    }
    (line, None)
}

/// The pwdrift invocation of a shell command: everything before its first redirection, pipe or
/// command separator outside quotes.
fn invocation(command: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in command.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if "|&;<>".contains(c) => {
                // `2>` belongs to the redirection
                let head = command[..i].trim_end();
                return head.strip_suffix(" 2").unwrap_or(head).trim_end();
            }
            None => {}
        }
    }
    command.trim_end()
}

/// README.md and every `docs/*.md`, as paths relative to the repository, in a fixed order.
fn pages() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    std::iter::once("README.md".to_owned())
        .chain(docs)
        .collect()
}

/// Every page with its commands; fails on a `no-run` block.
fn shown_commands() -> Vec<(String, Vec<Shown>)> {
    pages()
        .into_iter()
        .map(|page| {
            let text = std::fs::read_to_string(repo().join(&page)).unwrap();
            let (shown, no_run) = commands(&text);
            assert_eq!(
                no_run, 0,
                "{page}: a ```sh no-run block; every command runs, or is listed in CANNOT_RUN \
                 (tests/it/readme.rs) with the reason"
            );
            (page, shown)
        })
        .collect()
}

fn cannot_run(page: &str, command: &str) -> bool {
    CANNOT_RUN
        .iter()
        .any(|(p, c, _)| *p == page && *c == command)
}

/// Copies `from` into `to`, skipping hidden entries (the sandbox's state directory).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// `PATH` with the binary under test first.
fn path_with_bin() -> std::ffi::OsString {
    let bin_dir = Path::new(BIN).parent().unwrap();
    std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap()
}

/// `sh -c COMMAND` in `dir`, with nothing from the test's environment but `PATH`.
fn shell(dir: &Path, command: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", command])
        .current_dir(dir)
        .env_clear()
        .env("PATH", path_with_bin())
        .env("NO_COLOR", "1")
        .env("HOME", dir);
    cmd
}

/// A page's working directory: a copy of `examples/` and `schemas/`, and the quickstart's output
/// directory, as `examples/quickstart.sh` creates it.
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    copy_tree(&repo().join("examples"), &path.join("examples"));
    copy_tree(&repo().join("schemas"), &path.join("schemas"));
    std::fs::create_dir_all(path.join("target/quickstart")).unwrap();
    (dir, path)
}

#[test]
fn comments_and_exit_codes_are_read_from_the_shown_lines() {
    let (shown, skipped) = commands(
        "```sh\npwdrift plan a \\\n  --detailed-exitcode   # changes (exit 2)\ncargo test\n\
         pwdrift validate \"x # y\"\n```\n```sh no-run\npwdrift plan real/\n```\n```yaml\npwdrift: no\n```\n",
    );
    assert_eq!(skipped, 1);
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert_eq!(shown[0].line, 2);
    assert_eq!(shown[0].command, "pwdrift plan a    --detailed-exitcode");
    assert_eq!(shown[0].expected, 2);
    assert_eq!(shown[1].command, "pwdrift validate \"x # y\"");
    assert_eq!(shown[1].expected, 0);
}

#[test]
fn the_invocation_ends_at_a_redirection_or_a_pipe() {
    assert_eq!(
        invocation("pwdrift man --dir man/"),
        "pwdrift man --dir man/"
    );
    assert_eq!(
        invocation("pwdrift completions bash > pwdrift.bash"),
        "pwdrift completions bash"
    );
    assert_eq!(invocation("pwdrift plan x 2>/dev/null"), "pwdrift plan x");
    assert_eq!(invocation("pwdrift plan x | head -1"), "pwdrift plan x");
    assert_eq!(
        invocation("pwdrift import --filter \"a > b\" && ls"),
        "pwdrift import --filter \"a > b\""
    );
}

/// Every page shows commands (or is known not to), and every entry of [`CANNOT_RUN`] is still
/// shown where it says.
#[test]
fn every_page_shows_commands_and_the_exceptions_are_current() {
    let all = shown_commands();
    for (page, shown) in &all {
        if WITHOUT_COMMANDS.contains(&page.as_str()) {
            assert!(
                shown.is_empty(),
                "{page} shows commands: take it off WITHOUT_COMMANDS {shown:#?}"
            );
        } else {
            assert!(!shown.is_empty(), "{page} shows no `pwdrift` command");
        }
    }
    for needed in WITHOUT_COMMANDS {
        assert!(
            all.iter().any(|(page, _)| page == needed),
            "WITHOUT_COMMANDS names {needed}, which does not exist"
        );
    }
    let readme = &all[0].1;
    assert!(
        readme.len() >= 12,
        "only {} commands in README.md: {readme:#?}",
        readme.len()
    );
    for needed in ["pwdrift import ", "pwdrift apply ", "pwdrift validate "] {
        assert!(
            readme.iter().any(|s| s.command.starts_with(needed)),
            "no `{needed}...` in README.md"
        );
    }
    for (page, command, reason) in CANNOT_RUN {
        assert!(
            all.iter()
                .any(|(p, shown)| p == page && shown.iter().any(|s| s.command == *command)),
            "CANNOT_RUN: {page} no longer shows `{command}` ({reason}): remove the entry"
        );
    }
}

/// Every shown command parses: its subcommand, flags and values exist (clap, through the real
/// binary, with `--help` appended).
#[test]
fn every_shown_command_parses() {
    let dir = tempfile::tempdir().unwrap();
    for (page, shown) in shown_commands() {
        for s in shown {
            let parse = format!("{} --help", invocation(&s.command));
            let out = shell(dir.path(), &parse).output().unwrap();
            assert!(
                out.status.success(),
                "{page}:{}: `{}` does not parse: `{parse}` exited {:?}\n{}",
                s.line,
                s.command,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn every_shown_command_runs_against_the_sandbox() {
    let tenant = Sandbox::contoso().start();
    // the environment of a real tenant (Azure SDK conventions), pointing at the sandbox
    let connection = [
        ("AZURE_TENANT_ID", tenant.get("tenant_id")),
        ("AZURE_CLIENT_ID", tenant.get("client_id")),
        ("AZURE_CLIENT_SECRET", tenant.get("client_secret")),
        ("PWDRIFT_GRAPH_URL", tenant.graph_url()),
        ("AZURE_AUTHORITY_HOST", tenant.get("authority_host")),
    ];
    for (page, shown) in shown_commands() {
        let (_keep, dir) = workdir();
        for s in shown {
            if cannot_run(&page, &s.command) {
                continue;
            }
            let mut cmd = shell(&dir, &s.command);
            if !s.command.contains("--sandbox") {
                cmd.envs(connection.iter().map(|(k, v)| (k, v)));
            }
            let started = Instant::now();
            let out = cmd.output().unwrap();
            let code = out.status.code().unwrap_or(-1);
            assert_eq!(
                code,
                s.expected,
                "{page}:{}: `{}` exited {code}, the page says {}\n--- stdout\n{}\n--- stderr\n{}",
                s.line,
                s.command,
                s.expected,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                started.elapsed() < COMMAND_TIME_LIMIT,
                "{page}:{}: `{}` took {:?}",
                s.line,
                s.command,
                started.elapsed()
            );
        }
    }
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown page's headings (outside fenced blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of a page, with their line.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((i + 1, after[..end].to_owned()));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(
        anchor(" Output: quiet, colour and a closed stdout"),
        "output-quiet-colour-and-a-closed-stdout"
    );
    assert_eq!(anchor("Import"), "import");
    assert_eq!(
        links("see [a](docs/ci.md#shards) and [b](https://x.test/) [c](#x)"),
        [
            (1, "docs/ci.md#shards".to_owned()),
            (1, "https://x.test/".to_owned()),
            (1, "#x".to_owned())
        ]
    );
}

/// Content moved between pages leaves no dead link behind.
#[test]
fn every_relative_link_of_the_pages_leads_somewhere() {
    for page in pages() {
        let text = std::fs::read_to_string(repo().join(&page)).unwrap();
        let dir = repo().join(&page).parent().unwrap().to_path_buf();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                repo().join(&page)
            } else {
                dir.join(file)
            };
            assert!(
                path.exists(),
                "{page}:{line}: the link `{target}` leads to no file"
            );
            if let Some(fragment) = fragment {
                let linked = std::fs::read_to_string(&path).unwrap();
                assert!(
                    anchors(&linked).iter().any(|a| a == fragment),
                    "{page}:{line}: the link `{target}` names no heading of {}",
                    path.display()
                );
            }
        }
    }
}
