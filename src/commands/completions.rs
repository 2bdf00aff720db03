//! `pwdrift completions SHELL` and `pwdrift man`: shell completions and man pages, both generated
//! from the clap definitions in [`crate::cli`], so they cannot drift from the real options.
//! The committed pages under `doc/man/` are what `pwdrift man --dir doc/man` writes (a test
//! checks it).

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ExitStatus, ManArgs};
use crate::printer::Printer;

/// The binary name completions are registered for.
const BIN: &str = "pwdrift";

pub fn completions(args: CompletionsArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let mut script = Vec::new();
    write_completions(args.shell, &mut script);
    printer.out(&String::from_utf8(script).context("completion script is not UTF-8")?)?;
    Ok(ExitStatus::Success)
}

/// The completion script for `shell`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, BIN, out);
}

pub fn man(args: ManArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    match args.dir {
        Some(dir) => {
            write_man_pages(&dir)?;
            printer.info(&format!("wrote the man pages to {}", dir.display()));
        }
        None => {
            let mut cmd = Cli::command().disable_help_subcommand(true);
            cmd.build();
            let page = String::from_utf8(man_page(cmd)?).context("man page is not UTF-8")?;
            printer.out(&page)?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Writes `pwdrift.1` and `pwdrift-COMMAND.1` for every command into `dir` (created if needed).
pub fn write_man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // the version alone: a page that named the commit would change with every commit
    let mut cmd = Cli::command()
        .disable_help_subcommand(true)
        .long_version(None);
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    for page in pages {
        let name = format!("{}.1", page.get_display_name().unwrap_or(page.get_name()));
        let path = dir.join(name);
        std::fs::write(&path, man_page(page)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// One page, as clap_mangen renders it, except that the examples (the `after_help` text) form an
/// EXAMPLES section printed line by line (roff no-fill) instead of a filled EXTRA paragraph.
fn man_page(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .context("cannot render the man page")?;
    let text = String::from_utf8(out).context("man page is not UTF-8")?;
    let Some(start) = text.find(".SH EXTRA\n") else {
        return Ok(text.into_bytes());
    };
    let body_start = start + ".SH EXTRA\n".len();
    let body_end = text[body_start..]
        .find("\n.SH ")
        .map_or(text.len(), |i| body_start + i + 1);
    let body = text[body_start..body_end]
        .strip_prefix("Examples:\n")
        .unwrap_or(&text[body_start..body_end]);
    let mut page = String::with_capacity(text.len() + 16);
    page.push_str(&text[..start]);
    page.push_str(".SH EXAMPLES\n.nf\n");
    page.push_str(body);
    if !body.ends_with('\n') {
        page.push('\n');
    }
    page.push_str(".fi\n");
    page.push_str(&text[body_end..]);
    Ok(page.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn files(dir: &Path) -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.map(|e| {
                    let e = e.unwrap();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    )
                })
                .collect()
            })
            .unwrap_or_default()
    }

    /// `doc/man/` is exactly what `pwdrift man --dir doc/man` writes today.
    #[test]
    fn committed_man_pages_are_current() {
        let tmp = tempfile::tempdir().unwrap();
        write_man_pages(tmp.path()).unwrap();
        let fresh = files(tmp.path());
        assert!(fresh.contains_key("pwdrift.1"), "{:?}", fresh.keys());
        assert!(fresh.contains_key("pwdrift-plan.1"), "{:?}", fresh.keys());
        assert!(fresh["pwdrift-plan.1"].contains("shard"));
        assert!(
            fresh["pwdrift-plan.1"].contains(".SH EXAMPLES\n.nf\n  pwdrift plan "),
            "{}",
            fresh["pwdrift-plan.1"]
        );
        let committed = files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("doc/man"));
        assert_eq!(
            fresh.keys().collect::<Vec<_>>(),
            committed.keys().collect::<Vec<_>>(),
            "the set of man pages differs: run `cargo run -- man --dir doc/man`"
        );
        for (name, text) in &fresh {
            assert!(
                committed[name] == *text,
                "doc/man/{name} is stale: run `cargo run -- man --dir doc/man`"
            );
        }
    }

    #[test]
    fn completions_are_produced_for_every_shell() {
        for (shell, marker) in [
            (clap_complete::Shell::Bash, "complete -F"),
            (clap_complete::Shell::Zsh, "#compdef pwdrift"),
            (clap_complete::Shell::Fish, "complete -c pwdrift"),
            (
                clap_complete::Shell::PowerShell,
                "Register-ArgumentCompleter",
            ),
        ] {
            let mut out = Vec::new();
            write_completions(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains(marker), "{shell}: no `{marker}`");
            for word in [
                "validate",
                "plan",
                "apply",
                "shard",
                "format",
                "completions",
            ] {
                assert!(text.contains(word), "{shell}: no `{word}`");
            }
        }
    }
}
