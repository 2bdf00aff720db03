//! The CI recipes under `examples/ci/` only use pwdrift commands and flags that exist: every
//! `pwdrift SUBCOMMAND --flag ...` in their scripts is looked up in the clap definition
//! (`pwdrift::cli::Cli::command()`). Their syntax is linted by `.ci/run` (actionlint,
//! check-jsonschema).

use std::path::Path;

use clap::CommandFactory;

const RECIPES: [&str; 3] = ["github-actions.yml", "gitlab-ci.yml", "azure-pipelines.yml"];

/// Every string scalar of a YAML document (scripts, `run:` blocks, list items).
fn strings(v: &serde_yaml::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::String(s) => out.push(s.clone()),
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| strings(i, out)),
        serde_yaml::Value::Mapping(m) => m.values().for_each(|i| strings(i, out)),
        serde_yaml::Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

/// Shell lines with backslash continuations joined.
fn logical_lines(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in script.lines() {
        let trimmed = line.trim_end();
        if let Some(head) = trimmed.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(trimmed);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One pwdrift invocation: the subcommand and the flags given to it.
#[derive(Debug)]
struct Invocation {
    subcommand: String,
    flags: Vec<String>,
}

/// `pwdrift SUB ...` invocations of a shell line; the command ends at `|`, `;`, `&&`, `||`, `>`,
/// `<` or a `)`.
fn invocations(line: &str) -> Vec<Invocation> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let t = t.trim_start_matches(['(', '`', '"', '\'']);
        if t != "pwdrift" && !t.ends_with("/pwdrift") {
            continue;
        }
        // `cargo install ... pwdrift` names the package, not a command
        let Some(sub) = tokens.get(i + 1) else {
            continue;
        };
        if !sub.chars().all(|c| c.is_ascii_lowercase()) {
            continue;
        }
        let mut flags = Vec::new();
        for t in &tokens[i + 2..] {
            if ["|", ";", "&&", "||", ")"].contains(t)
                || t.starts_with('>')
                || t.starts_with('<')
                || t.starts_with("2>")
            {
                break;
            }
            if t.starts_with('-') && *t != "-" {
                flags.push(t.split('=').next().unwrap().to_owned());
            }
        }
        out.push(Invocation {
            subcommand: (*sub).to_owned(),
            flags,
        });
    }
    out
}

#[test]
fn recipes_use_only_existing_commands_and_flags() {
    let cli = pwdrift::cli::Cli::command();
    let globals: Vec<clap::Arg> = cli.get_arguments().cloned().collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    let mut problems = Vec::new();
    for recipe in RECIPES {
        let text = std::fs::read_to_string(dir.join(recipe)).unwrap();
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{recipe} is not YAML: {e}"));
        let mut scripts = Vec::new();
        strings(&doc, &mut scripts);
        let found: Vec<Invocation> = scripts
            .iter()
            .flat_map(|s| logical_lines(s))
            .flat_map(|l| invocations(&l))
            .collect();
        let used: Vec<&str> = found.iter().map(|i| i.subcommand.as_str()).collect();
        for needed in ["validate", "plan", "apply"] {
            assert!(
                used.contains(&needed),
                "{recipe} never runs `pwdrift {needed}`: {used:?}"
            );
        }
        for inv in &found {
            let Some(sub) = cli.find_subcommand(&inv.subcommand) else {
                problems.push(format!("{recipe}: no command `pwdrift {}`", inv.subcommand));
                continue;
            };
            for flag in &inv.flags {
                let known = sub.get_arguments().chain(&globals).any(|a| {
                    if let Some(long) = flag.strip_prefix("--") {
                        a.get_long() == Some(long)
                    } else {
                        let short = flag.trim_start_matches('-');
                        short.chars().all(|c| a.get_short() == Some(c))
                    }
                });
                if !known && flag != "--help" && flag != "-h" {
                    problems.push(format!(
                        "{recipe}: `pwdrift {}` has no option {flag}",
                        inv.subcommand
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The scanner itself: it finds commands and flags, and stops at the end of a command.
#[test]
fn scanner_finds_flags_and_stops_at_redirections() {
    let lines = logical_lines("pwdrift plan desired --shard \"$S/4\" \\\n  --out p.json --format=markdown > p.md || status=$?\ncargo install --locked pwdrift");
    let found: Vec<Invocation> = lines.iter().flat_map(|l| invocations(l)).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].subcommand, "plan");
    assert_eq!(found[0].flags, ["--shard", "--out", "--format"]);
    assert!(pwdrift::cli::Cli::command()
        .find_subcommand("nosuch")
        .is_none());
}

/// Whether a YAML value holds, anywhere, a string with `needle`.
fn mentions(v: &serde_yaml::Value, needle: &str) -> bool {
    let mut all = Vec::new();
    strings(v, &mut all);
    all.iter().any(|s| s.contains(needle))
}

/// Every `steps:` list of a document.
fn step_lists<'a>(v: &'a serde_yaml::Value, out: &mut Vec<&'a Vec<serde_yaml::Value>>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, child) in m {
                if let (Some("steps"), serde_yaml::Value::Sequence(steps)) = (k.as_str(), child) {
                    out.push(steps);
                }
                step_lists(child, out);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|c| step_lists(c, out)),
        _ => {}
    }
}

/// `pwdrift apply PLAN.json` derives the plan again from the desired-state files the plan
/// records (relative to the repository's root), so a job that applies a saved plan must have
/// the repository checked out first: in GitHub Actions an `actions/checkout` step, in an Azure
/// Pipelines deployment job (which checks out nothing by default) `checkout: self`; in GitLab
/// CI (which checks out by default) no `GIT_STRATEGY: none`.
#[test]
fn jobs_that_apply_a_saved_plan_check_out_the_desired_state_first() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    let mut applying = 0;
    for recipe in RECIPES {
        let text = std::fs::read_to_string(dir.join(recipe)).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let mut lists = Vec::new();
        step_lists(&doc, &mut lists);
        for steps in lists {
            let Some(at) = steps.iter().position(|s| mentions(s, "pwdrift apply")) else {
                continue;
            };
            applying += 1;
            let checked_out = steps[..at].iter().any(|s| {
                s.get("uses")
                    .and_then(|u| u.as_str())
                    .is_some_and(|u| u.starts_with("actions/checkout@"))
                    || s.get("checkout").and_then(|c| c.as_str()) == Some("self")
            });
            assert!(
                checked_out,
                "{recipe}: a job runs `pwdrift apply` without checking out the repository first"
            );
        }
        if recipe == "gitlab-ci.yml" {
            assert!(mentions(&doc, "pwdrift apply"), "{recipe}");
            assert!(
                !text.contains("GIT_STRATEGY: none"),
                "{recipe}: the apply job needs the checkout"
            );
        }
    }
    assert_eq!(
        applying, 2,
        "GitHub Actions and Azure Pipelines each apply in one job"
    );
}

/// Whether a GitHub Actions step's script has a line that runs `pwdrift`.
fn runs_pwdrift(step: &serde_yaml::Value) -> bool {
    step.get("run")
        .and_then(|r| r.as_str())
        .is_some_and(|r| r.lines().any(|l| l.trim_start().starts_with("pwdrift ")))
}

/// The recipes install the released binary, not a build from source: GitHub Actions through
/// pwdrift's action pinned by a commit (`uses: OWNER/pwdrift@<40 hex> # vX.Y.Z`, the comment's
/// version the one the step installs), GitLab CI and Azure Pipelines by downloading the release
/// archive and checking it with `sha256sum -c` before unpacking it. None runs `cargo install`.
#[test]
fn recipes_install_the_released_binary_checked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci");
    for recipe in RECIPES {
        let text = std::fs::read_to_string(dir.join(recipe)).unwrap();
        assert!(
            !text.contains("cargo install"),
            "{recipe} still builds pwdrift from source"
        );
    }

    let text = std::fs::read_to_string(dir.join("github-actions.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let mut lists = Vec::new();
    step_lists(&doc, &mut lists);
    let mut installs = 0;
    for steps in lists {
        let any_runs = steps.iter().any(runs_pwdrift);
        let install = steps.iter().position(|s| {
            s.get("uses")
                .and_then(|u| u.as_str())
                .is_some_and(|u| u.starts_with("OWNER/pwdrift@"))
        });
        if !any_runs {
            continue;
        }
        let at = install.expect("a job that runs pwdrift installs it through the action first");
        let first_run = steps.iter().position(runs_pwdrift).unwrap();
        assert!(at < first_run, "the action comes before pwdrift runs");
        let uses = steps[at]["uses"].as_str().unwrap();
        let commit = uses.strip_prefix("OWNER/pwdrift@").unwrap();
        assert!(
            commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "pinned by a commit, not a tag or branch: {uses}"
        );
        let version = steps[at]["with"]["version"]
            .as_str()
            .expect("with: version")
            .to_owned();
        // the line of the step, with its `# vX.Y.Z` comment
        let line = text
            .lines()
            .find(|l| l.contains(uses))
            .expect("the uses line");
        assert!(
            line.trim_end().ends_with(&format!("# v{version}")),
            "`{line}`: the comment names the version the step installs ({version})"
        );
        installs += 1;
    }
    assert_eq!(installs, 3, "validate, plan and apply each install pwdrift");

    for recipe in ["gitlab-ci.yml", "azure-pipelines.yml"] {
        let text = std::fs::read_to_string(dir.join(recipe)).unwrap();
        let download = text
            .find("releases/download")
            .unwrap_or_else(|| panic!("{recipe}: no release download"));
        let checked = text[download..]
            .find("sha256sum -c \"$archive.sha256\"")
            .unwrap_or_else(|| panic!("{recipe}: the archive's checksum is not checked"));
        let unpacked = text[download..]
            .find("tar -xzf")
            .unwrap_or_else(|| panic!("{recipe}: the archive is not unpacked"));
        assert!(
            checked < unpacked,
            "{recipe}: checked before it is unpacked"
        );
        assert!(
            text.contains("pwdrift-$PWDRIFT_VERSION-x86_64-unknown-linux-gnu.tar.gz"),
            "{recipe}: the release workflow's archive name"
        );
    }
}
