//! Validation of one parsed file: from the spanned YAML tree ([`super::yaml::Node`]) to the typed
//! entries of [`super::model`], collecting every problem as a [`Diagnostic`].
//!
//! The checker keeps going after an error wherever it can: a bad entry is dropped but its siblings
//! are still checked, so one run reports everything. What needs several files (a user declared
//! twice across files, merging tenants) is done in [`super::load_paths`].
//!
//! Literal passwords: any key that looks like it holds a password (`password`, `newPassword`,
//! `pwd`, `secret`, ...) and has a plain value is reported as a literal password, and every scalar
//! below such a key that is not a known password *source* is marked secret in the loader's
//! [`SourceMap`] so that no rendered snippet shows it. Messages never quote them.
//!
//! One concern per file: `document` (the top level and the `users`/`groups` lists), `entries`
//! (a user or group entry), `selectors` (a selector or exclude entry), `directives` (the directives and their contradictions), `source`
//! (password sources), `keys` (recognising keys against the tables of [`super::format`]) and
//! `values` (scalars, timestamps, wrong types, masking).

mod directives;
mod document;
mod entries;
mod keys;
mod selectors;
mod source;
mod values;

use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, SourceMap};
use super::model::{
    ExcludeEntry, GroupEntry, GroupRef, Origin, SelectorEntry, TenantRef, UserEntry,
};
use super::yaml::{Node, Pos};

pub use directives::{contradictions, Contradiction, Field};

/// Format versions this build understands.
pub const SUPPORTED_VERSIONS: &[i64] = &[1];

const LITERAL_PASSWORD: &str =
    "literal passwords are not allowed; use generate, env, file or systemGenerated";
const SOURCE_HELP: &str = "write e.g. `password: { generate: { length: 20 } }`, \
    `password: { env: VAR }`, `password: { file: path }` or `password: { systemGenerated: true }`";

/// What one file declares, after validation.
#[derive(Debug)]
pub struct FileDoc {
    pub file: PathBuf,
    pub tenant: TenantRef,
    pub tenant_origin: Origin,
    pub users: Vec<UserEntry>,
    pub groups: Vec<GroupEntry>,
    pub selectors: Vec<SelectorEntry>,
    pub exclude: Vec<ExcludeEntry>,
}

struct Checker<'a> {
    /// the file checked, shared by every origin its entries carry
    file: std::sync::Arc<Path>,
    /// where secret values sit, for the diagnostics renderer
    sources: &'a mut SourceMap,
    /// where password files may lie (`None`: not checked)
    reach: Option<&'a super::reach::Reach>,
    diags: Vec<Diagnostic>,
    /// errors found, including those not kept
    errors: usize,
    /// diagnostics not kept
    dropped: usize,
}

impl<'a> Checker<'a> {
    fn at(&self, pos: Pos) -> Origin {
        pos.origin(self.file.clone())
    }

    /// Records a diagnostic; past [`super::MAX_DIAGNOSTICS_PER_FILE`] they are only counted, so
    /// that a hostile file of a million bad keys costs neither minutes nor gigabytes.
    fn push(&mut self, d: Diagnostic) {
        if d.is_error() {
            self.errors += 1;
        }
        if self.diags.len() < super::MAX_DIAGNOSTICS_PER_FILE {
            self.diags.push(d);
        } else {
            self.dropped += 1;
        }
    }

    /// True once no more diagnostics are kept and the file has an error: checking further would
    /// change neither the verdict nor what is shown. Past the cap with warnings only, checking
    /// goes on to the end (a later error must still fail the file, and every valid entry must
    /// still be loaded): the cap limits what is shown, never the verdict.
    fn full(&self) -> bool {
        self.dropped > 0 && self.errors > 0
    }

    fn error_count(&self) -> usize {
        self.errors
    }
}

/// Validates the tree of one file. Returns what it declares (None when it is unusable) and every
/// diagnostic (errors and warnings) found; marks where secret values sit in `sources`.
pub fn check_file(
    file: &Path,
    root: &Node,
    sources: &mut SourceMap,
) -> (Option<FileDoc>, Vec<Diagnostic>) {
    check_file_with(file, root, sources, None)
}

/// [`check_file`], with password files checked against `reach` ([`super::reach::Reach`]).
pub fn check_file_with(
    file: &Path,
    root: &Node,
    sources: &mut SourceMap,
    reach: Option<&super::reach::Reach>,
) -> (Option<FileDoc>, Vec<Diagnostic>) {
    let mut c = Checker {
        file: file.into(),
        sources,
        reach,
        diags: Vec::new(),
        errors: 0,
        dropped: 0,
    };
    let doc = c.document(root);
    if c.dropped > 0 {
        if c.errors > 0 {
            c.diags.push(super::too_many(file));
        } else {
            c.diags.push(super::warnings_not_shown(file, c.dropped));
        }
    }
    (doc, c.diags)
}

/// The key under which two group entries count as the same group: object ids as they are,
/// display names case-insensitively (Entra matches them so in `$filter`).
pub(crate) fn group_key(g: &GroupRef) -> String {
    match g {
        GroupRef::ObjectId(id) => id.clone(),
        GroupRef::DisplayName(n) => format!("name:{}", n.to_lowercase()),
    }
}

/// What the tests of every part of the checker share: check a text, list its errors.
#[cfg(test)]
mod testing {
    pub(super) use super::*;

    pub(super) fn check(text: &str) -> (Option<FileDoc>, Vec<Diagnostic>) {
        let path = Path::new("dir/t.yaml");
        let root = super::super::yaml::parse(path, text).expect("parses");
        check_file(path, &root, &mut SourceMap::default())
    }

    pub(super) fn errors(text: &str) -> Vec<String> {
        check(text)
            .1
            .into_iter()
            .filter(Diagnostic::is_error)
            .map(|d| d.message)
            .collect()
    }

    pub(super) const HEAD: &str = "version: 1\ntenant: contoso.onmicrosoft.com\n";
}

#[cfg(test)]
mod cap_tests {
    use super::testing::*;

    fn bare_users(n: usize) -> String {
        let mut text = format!("{HEAD}users:\n");
        for i in 0..n {
            text.push_str(&format!("  - user: u{i}@contoso.com\n"));
        }
        text
    }

    /// The per-file cap limits what is kept, never the verdict: 1,000 warnings keep the file
    /// valid, every user is loaded, and the last note says how many were not shown.
    #[test]
    fn warnings_past_the_cap_do_not_fail_the_file() {
        let (doc, diags) = check(&bare_users(1000));
        assert_eq!(doc.expect("valid").users.len(), 1000);
        assert!(diags.iter().all(|d| !d.is_error()), "{diags:#?}");
        assert_eq!(diags.len(), crate::config::MAX_DIAGNOSTICS_PER_FILE + 1);
        let last = &diags.last().unwrap().message;
        assert!(
            last.starts_with("950 more warnings in this file not shown"),
            "{last}"
        );
    }

    /// An error after the cap still fails the file.
    #[test]
    fn an_error_past_the_cap_still_fails() {
        let text = format!("{}  - user: not a user\n", bare_users(60));
        let errs = errors(&text);
        assert!(!errs.is_empty(), "the error past the cap was lost");
    }
}
