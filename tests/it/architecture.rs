//! The checks behind ARCHITECTURE.md, read from the source text: the layering of `src/` (a module
//! imports only from the layers below it, and clap's types, `crate::cli`, reach only the command
//! layer), no import circle between the files of any directory, a code map that names every file
//! under `src/`, and comments that cite nothing outside the repository.

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
    // the engine is the library's face: it runs every step and hands results back; it prints
    // nothing, so it sits below the printer, and only the command layer calls it
    &["engine", "schema"],
    &["printer"],
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

// ---------------------------------------------------------------------------------------------
// No import circle between the files of one directory module.
// ---------------------------------------------------------------------------------------------

/// Source text with comments, string literals and character literals blanked out (kept as
/// spaces, so that positions and lines stay), so that only code is scanned.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // raw string r"..." or r#"..."#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // a character literal ('x', '\n', '\u{1F}'), not a lifetime ('a)
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses a path or use tree at `s[i..]` (`a::b::{c, d::e}`); returns every full path and the
/// position after it. `as` renames and globs end a path.
fn parse_tree(s: &[char], mut i: usize, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let skip_ws = |s: &[char], mut i: usize| {
        while i < s.len() && s[i].is_whitespace() {
            i += 1;
        }
        i
    };
    let mut path = prefix.to_vec();
    loop {
        i = skip_ws(s, i);
        if s.get(i) == Some(&'{') {
            i += 1;
            loop {
                i = skip_ws(s, i);
                match s.get(i) {
                    Some('}') => return i + 1,
                    Some(',') => i += 1,
                    None => return i,
                    _ => {
                        let before = i;
                        i = parse_tree(s, i, &path, out);
                        if i == before {
                            i += 1;
                        }
                    }
                }
            }
        }
        let start = i;
        while i < s.len() && is_ident(s[i]) {
            i += 1;
        }
        if i == start {
            if path.len() > prefix.len() {
                out.push(path);
            }
            return i;
        }
        path.push(s[start..i].iter().collect());
        let j = skip_ws(s, i);
        if s.get(j) == Some(&':') && s.get(j + 1) == Some(&':') {
            i = j + 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// The module path of a file under `src/`: `graph/client/mod.rs` is `graph::client`,
/// `config/diag.rs` is `config::diag`, `lib.rs` the crate root.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !["mod", "lib", "main"].contains(&stem) {
        parts.push(stem.to_owned());
    }
    parts
}

/// Every `crate::`, `super::` and `self::` path of a file, and every path of a `use` (relative to
/// the module it is written in unless it starts with one of those), resolved to an absolute
/// module path.
/// `super` counts from the inline module (`mod tests { ... }`) it is written in.
fn resolved_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let s: Vec<char> = code_only(text).chars().collect();
    let mut found = Vec::new();
    // inline modules: (name, brace depth inside them)
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
            i += 1;
            continue;
        }
        if i > 0 && is_ident(s[i - 1]) || !is_ident(c) {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && is_ident(s[i]) {
            i += 1;
        }
        let word: String = s[start..i].iter().collect();
        if word == "mod" {
            // `mod NAME {` opens an inline module
            let mut j = i;
            while j < s.len() && s[j].is_whitespace() {
                j += 1;
            }
            let name_start = j;
            while j < s.len() && is_ident(s[j]) {
                j += 1;
            }
            let name: String = s[name_start..j].iter().collect();
            while j < s.len() && s[j].is_whitespace() {
                j += 1;
            }
            if !name.is_empty() && s.get(j) == Some(&'{') {
                depth += 1;
                inline.push((name, depth));
                i = j + 1;
            }
            continue;
        }
        let mut paths = Vec::new();
        if word == "use" {
            // `use child::Name;` names a child of this module (or an external crate)
            i = parse_tree(&s, i, &[], &mut paths);
            for p in &mut paths {
                if !["crate", "super", "self"].contains(&p[0].as_str()) {
                    p.insert(0, "self".to_owned());
                }
            }
        } else if ["crate", "super", "self"].contains(&word.as_str())
            && s.get(i) == Some(&':')
            && s.get(i + 1) == Some(&':')
        {
            i = parse_tree(&s, start, &[], &mut paths);
        } else {
            continue;
        }
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(n, _)| n.clone()))
            .collect();
        for path in paths {
            let mut base = here.clone();
            let mut rest = path.as_slice();
            if rest.first().is_some_and(|p| p == "crate") {
                base.clear();
                rest = &rest[1..];
            }
            while let Some(first) = rest.first() {
                match first.as_str() {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            found.push(base);
        }
    }
    found
}

/// For each directory module of `src/` (`graph/client`, `config/diag`, ...; the crate root is the
/// layer table's), the import graph between its child modules, and the circles in it.
fn sibling_circles(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let files: Vec<(Vec<String>, Vec<Vec<String>>, String)> = files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(src).unwrap();
            let module = module_of(rel);
            let text = std::fs::read_to_string(f).unwrap();
            (
                module.clone(),
                resolved_paths(&text, &module),
                rel.display().to_string(),
            )
        })
        .collect();
    let mut dirs = Vec::new();
    fn walk(dir: &Path, src: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push(p.strip_prefix(src).unwrap().to_path_buf());
                walk(&p, src, out);
            }
        }
    }
    walk(src, src, &mut dirs);
    dirs.sort();
    let mut circles = Vec::new();
    for dir in dirs {
        let prefix: Vec<String> = dir
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut children: Vec<String> = std::fs::read_dir(src.join(&dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "rs"))
            .map(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .filter(|n| n != "mod")
            .collect();
        children.sort();
        children.dedup();
        // names the directory's own module re-exports (`pub use child::Name;`), by child
        let mut reexported = BTreeMap::new();
        for (module, paths, _) in &files {
            if *module != prefix {
                continue;
            }
            for p in paths {
                if p.len() > prefix.len() + 1
                    && p.starts_with(&prefix)
                    && children.contains(&p[prefix.len()])
                {
                    reexported.insert(p.last().unwrap().clone(), p[prefix.len()].clone());
                }
            }
        }
        let mut edges: BTreeMap<String, std::collections::BTreeSet<String>> = children
            .iter()
            .map(|c| (c.clone(), Default::default()))
            .collect();
        for (module, paths, _) in &files {
            if module.len() <= prefix.len() || !module.starts_with(&prefix) {
                continue;
            }
            let from = &module[prefix.len()];
            for p in paths {
                if p.len() <= prefix.len() || !p.starts_with(&prefix) {
                    continue;
                }
                let name = &p[prefix.len()];
                let to = if children.contains(name) {
                    name.clone()
                } else if let Some(child) = reexported.get(name) {
                    child.clone()
                } else {
                    continue; // an item of the directory's own module
                };
                if to != *from {
                    edges.get_mut(from).unwrap().insert(to);
                }
            }
        }
        // depth-first search; a child met again while on the path closes a circle
        fn visit(
            at: &str,
            edges: &BTreeMap<String, std::collections::BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut Vec<String>,
            circles: &mut Vec<Vec<String>>,
        ) {
            if done.iter().any(|d| d == at) {
                return;
            }
            if let Some(i) = path.iter().position(|f| f == at) {
                let mut circle = path[i..].to_vec();
                circle.push(at.to_owned());
                circles.push(circle);
                return;
            }
            path.push(at.to_owned());
            for next in &edges[at] {
                visit(next, edges, path, done, circles);
            }
            path.pop();
            done.push(at.to_owned());
        }
        let mut done = Vec::new();
        let mut found = Vec::new();
        for child in &children {
            visit(child, &edges, &mut Vec::new(), &mut done, &mut found);
        }
        for circle in found {
            circles.push(format!("src/{}/: {}", dir.display(), circle.join(" -> ")));
        }
    }
    circles
}

#[test]
fn no_import_circle_between_the_files_of_a_directory() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let circles = sibling_circles(&src);
    assert!(
        circles.is_empty(),
        "import circles between sibling modules (move the shared item down, into the lower \
         module or a small new one):\n  {}",
        circles.join("\n  ")
    );
}

#[test]
fn the_circle_scanner_resolves_paths_and_skips_comments_and_strings() {
    let module: Vec<String> = vec!["graph".into(), "client".into(), "batch".into()];
    let text = "use super::{error::GraphError, api::{A, b::C}};\n\
                use crate::graph::retry::X as Y;\n\
                // super::comment\n\
                let s = \"super::string\"; let c = '{';\n\
                mod tests { use super::*; use super::super::urls::u; }\n\
                fn f() { self::g(); }\n";
    let paths: Vec<String> = resolved_paths(text, &module)
        .into_iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        paths,
        [
            "graph::client::error::GraphError",
            "graph::client::api::A",
            "graph::client::api::b::C",
            "graph::retry::X",
            "graph::client::batch",
            "graph::client::urls::u",
            "graph::client::batch::g",
        ]
        .map(String::from)
    );
}

#[test]
fn the_circle_check_names_a_circle_through_a_reexport() {
    let src = std::env::temp_dir().join(format!("pwdrift-arch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(src.join(p), t).unwrap();
    write("lib.rs", "mod a;\n");
    write("a/mod.rs", "mod b;\nmod x;\nmod y;\npub use y::Thing;\n");
    write("a/x.rs", "use super::Thing;\n");
    write("a/y.rs", "pub struct Thing;\n");
    write("a/b/mod.rs", "mod c;\n");
    write("a/b/c.rs", "use crate::a::x::f; // super::y\n");
    assert!(sibling_circles(&src).is_empty());
    write("a/y.rs", "pub struct Thing;\nuse super::b::c::g;\n");
    let circles = sibling_circles(&src);
    std::fs::remove_dir_all(&src).unwrap();
    assert_eq!(circles, ["src/a/: b -> x -> y -> b"]);
}

// ---------------------------------------------------------------------------------------------
// Comments cite Microsoft's pages or the repository's own documents, nothing outside it.
// ---------------------------------------------------------------------------------------------

/// Source files that must not cite material outside the repository: pwdrift's and the sandbox's
/// code, the tests, the examples and the fuzz harness.
#[test]
fn sources_cite_nothing_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // spelt in pieces so that this file does not match itself
    let forbidden = [
        ["graph", "-facts"].concat(),
        ["seeds", "/"].concat(),
        ["../", "shared"].concat(),
    ];
    let mut files = Vec::new();
    for dir in [
        "src",
        "crates/graph-sandbox/src",
        "tests",
        "examples",
        "fuzz",
    ] {
        source_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 100,
        "the walk finds the sources: {}",
        files.len()
    );
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not text
        };
        for (n, line) in text.lines().enumerate() {
            for word in &forbidden {
                if line.contains(word.as_str()) {
                    found.push(format!(
                        "{}:{}: `{word}`",
                        file.strip_prefix(root).unwrap().display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "cite Microsoft's documentation (title or URL) or the repository's own docs instead:\n  {}",
        found.join("\n  ")
    );
}

/// Every file under `dir` that holds code or its documentation (`.rs`, `.md`, `.py`, `.sh`,
/// `.toml`, `.yaml`, `.json`), skipping build output.
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy();
        if p.is_dir() {
            if !["target", "artifacts", "work", "corpus"].contains(&name.as_ref()) {
                source_files(&p, out);
            }
        } else if ["rs", "md", "py", "sh", "toml", "yaml", "yml", "json"]
            .iter()
            .any(|x| p.extension().is_some_and(|e| e == *x))
        {
            out.push(p);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ARCHITECTURE.md's code map names every file under src/, and only files that exist.
// ---------------------------------------------------------------------------------------------

/// The paths relative to `src/` that the "Code map" section of ARCHITECTURE.md names: every
/// backticked `….rs` path, except the ones of other directories (`tests/`, `crates/`, ...).
fn code_map_paths(doc: &str) -> Vec<String> {
    let start = doc
        .find("\n## Code map")
        .expect("ARCHITECTURE.md has a `## Code map` section");
    let section = &doc[start + 1..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut found = Vec::new();
    for (i, piece) in section.split('`').enumerate() {
        let other_dir = ["tests/", "crates/", "fuzz/", "examples/", "docs/"]
            .iter()
            .any(|d| piece.starts_with(d));
        if i % 2 == 1 && piece.ends_with(".rs") && !piece.contains(' ') && !other_dir {
            found.push(piece.trim_start_matches("src/").to_owned());
        }
    }
    found
}

#[test]
fn the_code_map_names_every_file_under_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let named = code_map_paths(&doc);
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let files: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    let missing: Vec<&String> = files.iter().filter(|f| !named.contains(f)).collect();
    let stale: Vec<&String> = named.iter().filter(|n| !files.contains(*n)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's code map is out of date:\n  not named (add one line each): {missing:?}\n  \
         named but not under src/: {stale:?}"
    );
}

#[test]
fn the_code_map_reader_takes_src_paths_only() {
    let doc = "# A\n`lib.rs`\n## Code map\n- `engine/session.rs`: x, `src/main.rs`, \
               `tests/it/main.rs`, `crates/x/src/lib.rs`, `not a.rs`\n## Invariants\n`cli.rs`\n";
    assert_eq!(code_map_paths(doc), ["engine/session.rs", "main.rs"]);
}
