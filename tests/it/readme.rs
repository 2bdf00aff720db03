//! Every `pwdrift ...` command the README shows in a ```` ```sh ```` block runs, in order, in a
//! temporary copy of `examples/` (seeds, desired state, CI recipes; no sandbox state) and
//! `schemas/`, with the binary under test first on `PATH`, no credentials and no colour, and
//! exits as the README says: 0, or the code named by an `(exit N)` in the line's trailing comment.
//!
//! Conventions the README follows: a block fenced ```` ```sh no-run ```` needs a real tenant,
//! Azure or a long-running server and is not run; in a runnable block, lines that are not a
//! `pwdrift` command (`cargo ...`, `bash ...`) are not run either (they build or test this
//! repository); backslash continuations are joined, and a command may redirect or pipe (it runs
//! under `sh -c`). Commands that reach Graph must use `--sandbox`: without credentials anything
//! else fails, so a README command that would need a real tenant fails this test until its block
//! is marked `no-run`.

use std::path::Path;
use std::process::Command;

use crate::common::{repo, BIN};

/// One command of a runnable block.
#[derive(Debug)]
struct Shown {
    /// the README line the command starts on
    line: usize,
    command: String,
    expected: i32,
}

/// The `pwdrift` commands of the runnable ```` ```sh ```` blocks of `text`, and the number of
/// `no-run` blocks.
fn commands(text: &str) -> (Vec<Shown>, usize) {
    let (shown, skipped, _) = all_commands(text);
    (shown, skipped)
}

/// The `pwdrift` commands of the `no-run` blocks.
fn not_run(text: &str) -> Vec<Shown> {
    all_commands(text).2
}

/// A fenced block of the README.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    /// ```` ```sh ````
    Run,
    /// ```` ```sh no-run ````
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
                        ["sh"] => Block::Run,
                        ["sh", "no-run"] => {
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

/// The commands that are not run still parse: every subcommand and flag they use exists.
#[test]
fn commands_not_run_use_existing_flags() {
    use clap::Parser as _;
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let shown = not_run(&readme);
    assert!(shown.len() >= 3, "{shown:#?}");
    for s in shown {
        let words: Vec<&str> = s.command.split_whitespace().collect();
        match pwdrift::cli::Cli::try_parse_from(&words) {
            Ok(_) => {}
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => {}
            Err(e) => panic!("README.md:{}: `{}`: {e}", s.line, s.command),
        }
    }
}

#[test]
fn every_command_in_the_readme_runs_against_the_sandbox() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let (shown, skipped) = commands(&readme);
    assert!(
        shown.len() >= 12,
        "only {} runnable commands found: {shown:#?}",
        shown.len()
    );
    assert!(skipped >= 2, "the real-tenant blocks are marked no-run");
    for needed in ["pwdrift import ", "pwdrift apply ", "pwdrift validate "] {
        assert!(
            shown.iter().any(|s| s.command.starts_with(needed)),
            "no `{needed}...` in the README's runnable blocks"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("examples"), &dir.path().join("examples"));
    copy_tree(&repo().join("schemas"), &dir.path().join("schemas"));
    // the quickstart's output directory, as examples/quickstart.sh creates it
    std::fs::create_dir_all(dir.path().join("target/quickstart")).unwrap();

    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    for s in &shown {
        let started = std::time::Instant::now();
        let out = Command::new("sh")
            .args(["-c", &s.command])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let code = out.status.code().unwrap_or(-1);
        assert_eq!(
            code,
            s.expected,
            "README.md:{}: `{}` exited {code}, the README says {}\n--- stdout\n{}\n--- stderr\n{}",
            s.line,
            s.command,
            s.expected,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "README.md:{}: `{}` took {:?}",
            s.line,
            s.command,
            started.elapsed()
        );
    }
}
