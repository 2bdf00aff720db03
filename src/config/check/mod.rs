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
//! (a user or group entry), `directives` (the directives and their contradictions), `source`
//! (password sources), `keys` (recognising keys against the tables of [`super::format`]) and
//! `values` (scalars, timestamps, wrong types, masking).

mod directives;
mod document;
mod entries;
mod keys;
mod source;
mod values;

use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, SourceMap};
use super::model::{GroupEntry, GroupRef, Origin, TenantRef, UserEntry};
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
}

struct Checker<'a> {
    /// the file checked, shared by every origin its entries carry
    file: std::sync::Arc<Path>,
    /// where secret values sit, for the diagnostics renderer
    sources: &'a mut SourceMap,
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

    /// True once no more diagnostics are kept: checking further is wasted work.
    fn full(&self) -> bool {
        self.dropped > 0
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
    let mut c = Checker {
        file: file.into(),
        sources,
        diags: Vec::new(),
        errors: 0,
        dropped: 0,
    };
    let doc = c.document(root);
    if c.dropped > 0 {
        c.diags.push(super::too_many(file));
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
