//! Desired state: the pwdrift YAML format (version 1), its loader and its validator.
//!
//! Loading is two steps, as in cargo-deny: files are parsed into spanned YAML nodes ([`yaml`]),
//! then validated ([`check`]) into the types of [`model`], which cannot be invalid (a UPN is a UPN,
//! a timestamp has a zone, a password is never a literal). Every problem found becomes a
//! [`diag::Diagnostic`] naming file, line and column; all problems of all files are reported in
//! one run. [`load_paths`] is the entry point; [`merge::merge_directives`] is for the plan step.
//!
//! # The format (version 1)
//!
//! ```yaml
//! version: 1                                  # required; only 1 exists
//! tenant: contoso.onmicrosoft.com             # required; a domain or the tenant id (GUID)
//! users:                                      # users and groups: at least one entry in all
//!   - user: alice@contoso.com                 # UPN, object id (GUID) or on-premises SID
//!     forceChangePasswordNextSignIn: false    # literal flags: the live value must equal this
//!     forceChangePasswordNextSignInWithMfa: false
//!     requirePasswordChange:                  # one-shot: met once lastPasswordChangeDateTime >= since
//!       since: 2026-11-20T00:00:00Z           # RFC 3339 with `Z` or an offset, never a bare date
//!       withMfa: false                        # default false
//!     resetPassword:                          # one-shot: met once lastPasswordChangeDateTime >= notBefore
//!       notBefore: 2026-11-20T00:00:00Z
//!       password: { generate: { length: 20 } }  # or { env: VAR }, { file: path } (relative to
//!                                               # this file), { systemGenerated: true }
//!       forceChangeAfter: true                # default false
//!       forceChangeAfterWithMfa: false        # default false
//!     allowPrivileged: false                  # default false: users in privileged roles untouched
//! groups:
//!   - group: Finance                          # display name or object id; transitive members
//!     requirePasswordChange: { since: 2026-11-20T00:00:00Z }   # same directives as a user
//! ```
//!
//! A system-generated password is spelled `password: { systemGenerated: true }`, like the other
//! sources a one-key mapping; it is refused for users named by SID (synced users need a supplied
//! password). On a group, `env` and `file` are refused (every member would get the same
//! password). Contradictory directives are listed in [`check::contradictions`]; a literal
//! `true` flag is a warning (it re-forces the user on every run).
//!
//! Across files: several files may declare the same tenant (compared after normalisation: domains
//! and GUIDs lower-case); their entries are merged into one [`TenantDesired`]. A user (or group)
//! declared twice for one tenant is an error naming both places, whether in one file or two. A
//! user named by UPN in one place and by object id in another cannot be recognised offline: the
//! plan step, which resolves users, has to check that.
//!
//! A tenant is its id, but offline a domain cannot be resolved: `contoso.onmicrosoft.com`,
//! `contoso.com` and the tenant's GUID load as three tenants here (`validate` notes it). `plan`
//! and `apply` resolve every name to its tenant id before reading anything, join the declarations
//! of one tenant with [`merge::union`] and run the duplicate check ([`merge::duplicates`]) again
//! over all of its files.

pub mod check;
pub mod diag;
pub mod format;
pub mod ids;
pub mod merge;
pub mod model;
pub mod reach;
pub mod read;
#[cfg(test)]
mod schema_agreement;
pub mod schema_doc;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Label, Severity, SourceMap};
pub use merge::merge_directives;
pub use model::*;

/// Largest desired-state file read: 10 MiB. Larger files are refused before they are read.
pub const MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// Most diagnostics kept for one file; the rest are counted in a last note (see
/// [`check`]'s `push`). Enough to fix a file in one go, bounded for hostile input. The cap limits
/// what is kept and printed, never the verdict: a file whose diagnostics past the cap are all
/// warnings is checked to its end and stays valid.
pub const MAX_DIAGNOSTICS_PER_FILE: usize = 50;

/// The note that ends a file's diagnostics when checking stopped at the limit (the file has
/// errors: more checking would change neither the verdict nor what is shown).
fn too_many(file: &Path) -> Diagnostic {
    Diagnostic::error(format!(
        "too many problems in this file: stopped after {MAX_DIAGNOSTICS_PER_FILE}"
    ))
    .with_label(file_origin(file), "fix these and run again")
}

/// The note that ends a file's diagnostics when only warnings were past the limit: how many were
/// not shown. A warning itself, so that it changes no verdict.
fn warnings_not_shown(file: &Path, n: usize) -> Diagnostic {
    Diagnostic::warning(format!(
        "{n} more warning{} in this file not shown (the first {MAX_DIAGNOSTICS_PER_FILE} \
         diagnostics are above)",
        if n == 1 { "" } else { "s" }
    ))
    .with_label(file_origin(file), "not shown")
}

/// A successfully loaded desired state and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    pub state: DesiredState,
    pub warnings: Vec<Diagnostic>,
    /// the files' text and secret spans, for rendering these warnings and any later diagnostic
    /// that points into the files (the plan step's resolution errors)
    pub sources: SourceMap,
    /// every file read, with `sha256:` and the hex SHA-256 of its bytes as read (what a saved
    /// plan records, so that `apply` can tell whether the desired state changed since)
    pub digests: Vec<(PathBuf, String)>,
}

/// `sha256:` and the hex SHA-256 of `bytes`.
pub fn file_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A desired state that failed to load: every diagnostic (errors and warnings, in file order) and
/// the files' text and secret spans to render them with.
#[derive(Debug)]
pub struct Invalid {
    pub diagnostics: Vec<Diagnostic>,
    pub sources: SourceMap,
}

fn file_origin(file: &Path) -> Origin {
    Origin {
        file: file.into(),
        line: 0,
        column: 0,
    }
}

/// What the loader may reach beyond the desired-state files: see [`reach`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--allow-password-dir`: directories password files may lie in besides the desired-state
    /// root
    pub allow_password_dirs: Vec<PathBuf>,
}

/// [`load_paths_with`] with no `--allow-password-dir`.
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, Invalid> {
    load_paths_with(paths, &LoadOptions::default())
}

/// Loads and validates the desired state in `paths` (files, and directories searched for
/// `*.yaml`/`*.yml` below them, in sorted order, skipping hidden files and directories such as
/// `.git` and `.pwdrift-sandbox`). An empty list means the current directory.
///
/// `Err` holds every diagnostic (errors and warnings, in file order) when there is at least one
/// error. Either way the result carries the [`SourceMap`] of what was read, for
/// [`diag::render`].
///
/// Reach ([`reach`]): a file found by walking a directory that is a symlink to a file outside it
/// is refused; a password file must lie inside the desired-state root of its declaring file (the
/// directory argument it was found under, or a file argument's directory) or inside one of
/// `options.allow_password_dirs`. The lines of a file are shown in diagnostics only once it is
/// recognised as pwdrift desired state ([`SourceMap::hide_lines`]).
pub fn load_paths_with(paths: &[PathBuf], options: &LoadOptions) -> Result<Loaded, Invalid> {
    let mut diags = Vec::new();
    let mut sources = SourceMap::default();
    let files = discover(paths, &mut diags);
    if files.is_empty() && diags.is_empty() {
        let shown: Vec<String> = if paths.is_empty() {
            vec![".".to_owned()]
        } else {
            paths.iter().map(|p| p.display().to_string()).collect()
        };
        diags.push(
            Diagnostic::error(format!(
                "no desired-state file (*.yaml, *.yml) found in {}",
                shown.join(", ")
            ))
            .with_help("name a file or a directory that holds pwdrift YAML files"),
        );
    }

    let mut docs = Vec::new();
    let mut digests = Vec::new();
    for (file, root) in &files {
        let text = match read_file(file) {
            Ok((text, digest)) => {
                digests.push((file.clone(), digest));
                text
            }
            Err((d, text)) => {
                if let Some(text) = text {
                    // not UTF-8: not desired state, whatever it holds; its position only
                    sources.add_file(file, &text);
                    sources.hide_lines(file);
                }
                diags.push(d);
                continue;
            }
        };
        let reach = reach::Reach::new(root, &options.allow_password_dirs);
        docs.extend(check_text(
            file,
            &text,
            &mut sources,
            &mut diags,
            Some(&reach),
        ));
    }
    let files: Vec<PathBuf> = files.into_iter().map(|(f, _)| f).collect();
    finish(&files, docs, diags, sources).map(|mut loaded| {
        loaded.digests = digests;
        loaded
    })
}

/// Loads and validates desired state from text, as if read from the file `name`: the same
/// parser, checks and cross-file merge as [`load_paths`], without touching the disk (a
/// `password: { file: }` path is resolved against `name`, not read). Pure; used by the fuzz
/// targets and their corpus test.
pub fn load_str(name: &Path, text: &str) -> Result<Loaded, Invalid> {
    let mut diags = Vec::new();
    let mut sources = SourceMap::default();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let docs = check_text(name, text, &mut sources, &mut diags, None);
    finish(
        &[name.to_path_buf()],
        docs.into_iter().collect(),
        diags,
        sources,
    )
}

/// Parses and checks one file's text; `reach`: where its password files may lie (`None`: not
/// checked, for text that is not on disk). Its lines are shown in diagnostics only when it looks
/// like pwdrift desired state ([`looks_like_desired_state`]).
fn check_text(
    file: &Path,
    text: &str,
    sources: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
    reach: Option<&reach::Reach>,
) -> Option<check::FileDoc> {
    sources.add_file(file, text);
    let parsed = yaml::parse(file, text);
    if !looks_like_desired_state(parsed.as_ref().ok(), text) {
        sources.hide_lines(file);
    }
    let root = match parsed {
        Ok(root) => root,
        Err(errs) => {
            diags.extend(errs);
            return None;
        }
    };
    if let yaml::Node::Map { entries, pos } = &root {
        if !entries.iter().any(|e| e.key == "version") {
            // another tool's file, maybe a credentials file: its keys and values are not quoted
            // (not even in messages), one error at its start
            diags.push(
                Diagnostic::error("missing required key `version` in the top level")
                    .with_label(
                        pos.origin(file),
                        "not pwdrift desired state; not read further",
                    )
                    .with_help(
                        "a desired-state file starts with `version: 1`; move files of other tools \
                         out of the desired-state directory (the lines of a file that is not \
                         desired state are never shown)",
                    ),
            );
            return None;
        }
    }
    let (doc, found) = check::check_file_with(file, &root, sources, reach);
    diags.extend(found);
    doc
}

/// Whether a file is recognisably meant as pwdrift desired state, so that its lines may be shown
/// under diagnostics: it has a top-level `version` key (in the parsed mapping, or, when it does
/// not parse, on a line of its own at column 1). Anything else (an INI or `.env` file, a cloud
/// credentials file, YAML of another tool) gets positions and messages, never its lines.
fn looks_like_desired_state(root: Option<&yaml::Node>, text: &str) -> bool {
    match root {
        Some(yaml::Node::Map { entries, .. }) => entries.iter().any(|e| e.key == "version"),
        Some(_) => false,
        None => text.lines().any(|l| {
            ["version:", "\"version\":", "'version':"]
                .iter()
                .any(|k| l.starts_with(k))
        }),
    }
}

/// Merges the files' declarations and sorts the outcome into [`Loaded`] or [`Invalid`].
fn finish(
    files: &[PathBuf],
    docs: Vec<check::FileDoc>,
    mut diags: Vec<Diagnostic>,
    sources: SourceMap,
) -> Result<Loaded, Invalid> {
    let state = merge_files(files, docs, &mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Invalid {
            diagnostics: diags,
            sources,
        });
    }
    Ok(Loaded {
        state,
        warnings: diags,
        sources,
        digests: Vec::new(),
    })
}

/// Groups the files' declarations by tenant and finds users and groups declared twice.
fn merge_files(
    files: &[PathBuf],
    docs: Vec<check::FileDoc>,
    diags: &mut Vec<Diagnostic>,
) -> DesiredState {
    let mut tenants: Vec<TenantDesired> = Vec::new();
    for doc in docs {
        let idx = match tenants.iter().position(|t| t.tenant == doc.tenant) {
            Some(i) => i,
            None => {
                tenants.push(TenantDesired {
                    tenant: doc.tenant.clone(),
                    users: Vec::new(),
                    groups: Vec::new(),
                    selectors: Vec::new(),
                    exclude: Vec::new(),
                    files: Vec::new(),
                });
                tenants.len() - 1
            }
        };
        let t = &mut tenants[idx];
        t.files.push(doc.file.clone());
        t.users.extend(doc.users);
        t.groups.extend(doc.groups);
        t.selectors.extend(doc.selectors);
        t.exclude.extend(doc.exclude);
    }
    for t in &tenants {
        diags.extend(merge::duplicates(t));
    }
    DesiredState {
        tenants,
        files: files.to_vec(),
    }
}

/// Reads a file as UTF-8 text, refusing files over [`MAX_FILE_SIZE`] before reading them and
/// reporting the line and column of the first invalid byte; with that error comes the text read
/// (invalid bytes replaced), so that the line can be shown. `Ok`: the file's text (a leading
/// byte-order mark removed) and the [`file_digest`] of its bytes.
fn read_file(file: &Path) -> Result<(String, String), (Diagnostic, Option<String>)> {
    let io_err = |e: std::io::Error| {
        (
            Diagnostic::error(format!("cannot read {}: {e}", file.display()))
                .with_label(file_origin(file), ""),
            None,
        )
    };
    let too_large = |size: u64| {
        (
            Diagnostic::error(format!(
                "file too large: {} bytes; desired-state files may be at most {} MiB",
                size,
                MAX_FILE_SIZE / (1024 * 1024)
            ))
            .with_label(file_origin(file), "not read")
            .with_help("split the desired state into several files"),
            None,
        )
    };
    let bytes = match read::read_regular(file, MAX_FILE_SIZE) {
        Ok(b) => b,
        Err(read::ReadError::TooLarge { size, .. }) => return Err(too_large(size)),
        Err(read::ReadError::Io(e)) => return Err(io_err(e)),
        Err(e @ read::ReadError::NotRegular { .. }) => {
            return Err((
                Diagnostic::error(format!("cannot read {}: {e}", file.display()))
                    .with_label(file_origin(file), "not read")
                    .with_help("give a regular file (not a FIFO, device or socket)"),
                None,
            ))
        }
    };
    let digest = file_digest(&bytes);
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // valid_up_to is a boundary: this prefix is valid UTF-8
        let prefix = std::str::from_utf8(good).unwrap_or_default();
        let line = prefix.matches('\n').count() + 1;
        let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let diag = Diagnostic::error("the file is not valid UTF-8")
            .with_label(
                Origin {
                    file: file.into(),
                    line,
                    column,
                },
                "invalid byte",
            )
            .with_help("save the file as UTF-8");
        (
            diag,
            Some(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        )
    })?;
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_owned(),
        None => text,
    };
    Ok((text, digest))
}

/// The files to load, in order, without duplicates, each with its desired-state root (the
/// directory argument it was found under, or a file argument's directory). Problems (a path that
/// does not exist, a symlink leaving its directory) are pushed to `diags`.
fn discover(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<(PathBuf, PathBuf)> {
    let default = [PathBuf::from(".")];
    let (roots, implicit) = if paths.is_empty() {
        (&default[..], true)
    } else {
        (paths, false)
    };
    let mut files = Vec::new();
    for root in roots {
        match std::fs::metadata(root) {
            Err(e) => diags.push(
                Diagnostic::error(format!("cannot read {}: {e}", root.display()))
                    .with_label(file_origin(root), ""),
            ),
            Ok(m) if m.is_dir() => {
                let mut found = Vec::new();
                walk(root, &mut found, diags, 0);
                found.sort();
                found.retain(|f| match reach::leaves(f, root) {
                    None => true,
                    Some(target) => {
                        diags.push(
                            Diagnostic::error(format!(
                                "{} is a symlink to a file outside {}; refusing to read it",
                                f.display(),
                                root.display()
                            ))
                            .with_label(file_origin(f), format!("leads to {}", target.display()))
                            .with_help(
                                "desired state found in a directory stays in it: copy the file \
                                 in, or name it as an argument of its own",
                            ),
                        );
                        false
                    }
                });
                if implicit {
                    // `pwdrift validate` with no path: show `a.yaml`, not `./a.yaml`
                    for f in &mut found {
                        if let Ok(rest) = f.strip_prefix(".") {
                            *f = rest.to_path_buf();
                        }
                    }
                }
                files.extend(found.into_iter().map(|f| (f, root.clone())));
            }
            Ok(_) => files.push((
                root.clone(),
                root.parent().unwrap_or(Path::new("")).to_path_buf(),
            )),
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|(f, _)| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    files
}

/// Collects `*.yaml`/`*.yml` files below `dir`; hidden entries and symlinked directories are
/// skipped (no loops), and the depth is bounded.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>, depth: usize) {
    if depth > 64 {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("cannot read directory {}: {e}", dir.display()))
                    .with_label(file_origin(dir), ""),
            );
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            walk(&path, out, diags, depth + 1);
        } else if (ft.is_file() || ft.is_symlink() && path.is_file())
            && (name.ends_with(".yaml") || name.ends_with(".yml"))
        {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.yaml");
        std::fs::write(&f, b"version: 1\ntenant: co\xffntoso.com\n").unwrap();
        let (d, text) = read_file(&f).unwrap_err();
        assert_eq!(
            text.as_deref(),
            Some("version: 1\ntenant: co\u{fffd}ntoso.com\n")
        );
        assert_eq!(d.labels[0].origin.line, 2);
        assert_eq!(d.labels[0].origin.column, 11);
    }

    #[test]
    fn merges_tenants_across_files_and_finds_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("sub/b.yml");
        std::fs::create_dir_all(b.parent().unwrap()).unwrap();
        std::fs::write(&a, "version: 1\ntenant: Contoso.com\nusers:\n  - user: x@contoso.com\n    forceChangePasswordNextSignIn: false\n").unwrap();
        std::fs::write(&b, "version: 1\ntenant: contoso.com\ngroups:\n  - group: Finance\n    forceChangePasswordNextSignIn: false\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        std::fs::create_dir_all(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/x.yaml"), "garbage: [").unwrap();
        let loaded = load_paths(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(loaded.state.files, vec![a.clone(), b.clone()]);
        assert_eq!(loaded.state.tenants.len(), 1);
        assert_eq!(loaded.state.tenants[0].users.len(), 1);
        assert_eq!(loaded.state.tenants[0].groups.len(), 1);

        std::fs::write(&b, "version: 1\ntenant: contoso.com\nusers:\n  - user: X@Contoso.com\n    forceChangePasswordNextSignIn: false\n").unwrap();
        let errs = load_paths(&[dir.path().to_path_buf()])
            .unwrap_err()
            .diagnostics;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.contains("declared twice"));
        assert_eq!(errs[0].labels[0].origin.file.as_ref(), a.as_path());
        assert_eq!(errs[0].labels[1].origin.file.as_ref(), b.as_path());
    }

    #[test]
    fn nothing_found_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let errs = load_paths(&[dir.path().to_path_buf()])
            .unwrap_err()
            .diagnostics;
        assert!(errs[0].message.starts_with("no desired-state file"));
        let errs = load_paths(&[dir.path().join("missing.yaml")])
            .unwrap_err()
            .diagnostics;
        assert!(errs[0].message.starts_with("cannot read"));
    }

    #[test]
    fn diagnostics_render_from_the_loaders_source_map() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.yaml");
        std::fs::write(
            &f,
            "version: 1\ntenant: contoso.com\nusers:\n  - user: a@contoso.com\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { literal: Hunter2-x }\n",
        )
        .unwrap();
        let invalid = load_paths(std::slice::from_ref(&f)).unwrap_err();
        // the file is gone by render time: its lines come from what the loader read
        std::fs::remove_file(&f).unwrap();
        let shown = diag::render(&invalid.diagnostics, &invalid.sources, false);
        assert!(shown.contains(" | "), "{shown}");
        assert!(shown.contains("literal"), "{shown}");
        assert!(!shown.contains("Hunter2-x"), "{shown}");
    }
}
