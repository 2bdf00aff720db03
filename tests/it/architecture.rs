//! The layering of `src/`: a module imports only from the layers below it, and clap's types
//! (`crate::cli`) reach only the command layer. Checked on the source text, so a new upward
//! import fails the suite before it becomes a cycle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules of `src/`, lowest layer first. A module may import from any lower layer,
/// never from its own layer or above.
const LAYERS: &[&[&str]] = &[
    &["escape"],
    &["graph", "password", "shard", "secrets"],
    &["cli", "config"],
    &["plan"],
    &["live"],
    &["diff"],
    &["rails", "verify"],
    &["apply", "render"],
    &["schema", "printer"],
    &["engine"],
    &["commands"],
];

/// Only these modules may name `crate::cli`.
const CLI_USERS: &[&str] = &["commands"];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source text names through `crate::NAME` or `crate::{NAME, ...}`,
/// comments excluded.
fn imports(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end].split(',').map(|s| s.trim()).collect()
            } else {
                vec![after]
            };
            for n in names {
                let name: String = n
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
            rest = after;
        }
    }
    found
}

#[test]
fn layers_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(own) = layer_of(&top) else {
            problems.insert(
                rel.display().to_string(),
                format!("module `{top}` has no layer in LAYERS"),
            );
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for name in imports(&text) {
            if name == top {
                continue;
            }
            if name == "cli" && !CLI_USERS.contains(&top.as_str()) {
                problems.insert(
                    rel.display().to_string(),
                    "names crate::cli (clap types belong to the command layer)".to_owned(),
                );
                continue;
            }
            match layer_of(&name) {
                Some(l) if l < own => {}
                Some(_) => {
                    problems.insert(
                        rel.display().to_string(),
                        format!("`{top}` imports `{name}`, which is not below it"),
                    );
                }
                None => {}
            }
        }
    }
    assert!(
        problems.is_empty(),
        "upward imports (see ARCHITECTURE.md):\n{}",
        problems
            .iter()
            .map(|(f, p)| format!("  src/{f}: {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_import_scanner_sees_paths_and_groups_not_comments() {
    let text = "use crate::graph::client::X;\nuse crate::{config, plan::Plan};\n// crate::commands\nlet x = crate::live::f(); // crate::apply\n";
    assert_eq!(imports(text), ["graph", "config", "plan", "live"]);
}
