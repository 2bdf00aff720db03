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

use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, SecretExtent, SourceMap};
use super::ids;
use super::model::{
    Directives, GroupEntry, GroupRef, Origin, PasswordSource, RequirePasswordChange, ResetPassword,
    TenantRef, UserEntry, UserRef,
};
use super::yaml::{is_bool, Entry, Node, Pos, Style};

/// Format versions this build understands.
pub const SUPPORTED_VERSIONS: &[i64] = &[1];

const TOP_KEYS: &[&str] = &["version", "tenant", "users", "groups"];
const DIRECTIVE_KEYS: &[&str] = &[
    "forceChangePasswordNextSignIn",
    "forceChangePasswordNextSignInWithMfa",
    "requirePasswordChange",
    "resetPassword",
    "allowPrivileged",
];
const REQUIRE_KEYS: &[&str] = &["since", "withMfa"];
const RESET_KEYS: &[&str] = &[
    "notBefore",
    "password",
    "forceChangeAfter",
    "forceChangeAfterWithMfa",
];
const SOURCE_KEYS: &[&str] = &["generate", "env", "file", "systemGenerated"];
const GENERATE_KEYS: &[&str] = &["length"];

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

/// The directives one can name in a contradiction: the literal flags, and the one-shot
/// directives with their relevant sub-fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    ForceChange,
    ForceChangeWithMfa,
    RequirePasswordChange,
    ResetPassword,
}

impl Field {
    /// What a label under this directive says in a contradiction.
    fn role(self) -> &'static str {
        match self {
            Field::ForceChange | Field::ForceChangeWithMfa => "literal flag",
            Field::RequirePasswordChange => "one-shot change",
            Field::ResetPassword => "one-shot reset",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Field::ForceChange => "forceChangePasswordNextSignIn",
            Field::ForceChangeWithMfa => "forceChangePasswordNextSignInWithMfa",
            Field::RequirePasswordChange => "requirePasswordChange",
            Field::ResetPassword => "resetPassword",
        }
    }
}

/// Two directives of one entry (or of one user's merged entries) that cannot both hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contradiction {
    pub message: String,
    pub fields: (Field, Field),
    pub help: &'static str,
}

/// Finds the contradictions among a set of directives. The full table (F = literal
/// `forceChangePasswordNextSignIn`, M = literal `forceChangePasswordNextSignInWithMfa`,
/// R = `requirePasswordChange`, P = `resetPassword`):
///
/// | combination                       | why it is refused                                            |
/// |-----------------------------------|--------------------------------------------------------------|
/// | R and P                           | two one-shot changes with their own dates; P with `forceChangeAfter: true` already makes the user change the new password |
/// | F (any value) and R without MFA   | R drives F (true until the user complied, then Graph clears it): F false forbids that, F true re-forces forever and makes R pointless |
/// | M (any value) and R with MFA      | the same, for the MFA flag                                   |
/// | F and P, F != P.forceChangeAfter  | the reset sets F to `forceChangeAfter`; the literal asks for the other value |
/// | M and P, M != P.forceChangeAfterWithMfa | the same, for the MFA flag                             |
///
/// Not contradictions: F false with R *with* MFA (R then drives only M), and F and M with
/// different values (they are separate flags in Graph).
pub fn contradictions(d: &Directives) -> Vec<Contradiction> {
    let mut out = Vec::new();
    let f = d.force_change_password_next_sign_in;
    let m = d.force_change_password_next_sign_in_with_mfa;
    if let (Some(_), Some(_)) = (&d.require_password_change, &d.reset_password) {
        out.push(Contradiction {
            message: "`requirePasswordChange` and `resetPassword` cannot both be declared for one user".into(),
            fields: (Field::RequirePasswordChange, Field::ResetPassword),
            help: "to reset the password and make the user change it, keep `resetPassword` with `forceChangeAfter: true`",
        });
    }
    if let Some(r) = &d.require_password_change {
        let (lit, field, flag) = if r.with_mfa {
            (
                m,
                Field::ForceChangeWithMfa,
                "forceChangePasswordNextSignInWithMfa",
            )
        } else {
            (f, Field::ForceChange, "forceChangePasswordNextSignIn")
        };
        if let Some(v) = lit {
            let message = if v {
                format!("`{flag}: true` and `requirePasswordChange` both ask for the same change; the literal `true` would force the user again on every run")
            } else {
                format!("`{flag}: false` contradicts `requirePasswordChange`, which sets `{flag}` to true until the user has changed the password")
            };
            out.push(Contradiction {
                message,
                fields: (field, Field::RequirePasswordChange),
                help: "keep only `requirePasswordChange`",
            });
        }
    }
    if let Some(p) = &d.reset_password {
        for (lit, after, field, flag, sub) in [
            (
                f,
                p.force_change_after,
                Field::ForceChange,
                "forceChangePasswordNextSignIn",
                "forceChangeAfter",
            ),
            (
                m,
                p.force_change_after_with_mfa,
                Field::ForceChangeWithMfa,
                "forceChangePasswordNextSignInWithMfa",
                "forceChangeAfterWithMfa",
            ),
        ] {
            if let Some(v) = lit {
                if v != after {
                    out.push(Contradiction {
                        message: format!("`{flag}: {v}` contradicts `resetPassword.{sub}: {after}`, which sets that flag to {after} when the password is reset"),
                        fields: (field, Field::ResetPassword),
                        help: "remove the literal flag and let `resetPassword` set it",
                    });
                }
            }
        }
    }
    out
}

/// Where each directive of an entry was written (for labels).
#[derive(Default, Clone, Copy)]
struct FieldPos {
    force: Option<Pos>,
    force_mfa: Option<Pos>,
    require: Option<Pos>,
    reset: Option<Pos>,
}

impl FieldPos {
    fn of(&self, f: Field) -> Option<Pos> {
        match f {
            Field::ForceChange => self.force,
            Field::ForceChangeWithMfa => self.force_mfa,
            Field::RequirePasswordChange => self.require,
            Field::ResetPassword => self.reset,
        }
    }
}

/// Key names that suggest a password or other secret.
fn is_secretish(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.starts_with("password")
        || ["password", "passwd", "pwd", "secret", "passphrase"]
            .iter()
            .any(|s| k.ends_with(s))
}

/// The closest known key, for "did you mean" (Jaro-Winkler, case-insensitive, at least 0.8).
fn suggest(key: &str, known: &[&str]) -> Option<String> {
    let key = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(&key, &k.to_ascii_lowercase()), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_owned())
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

    /// Marks every scalar below `node` as secret.
    fn mask(&mut self, node: &Node) {
        match node {
            Node::Scalar { value, style, pos } => match style {
                // single-line plain scalar: its source text is its value
                Style::Plain if !value.contains('\n') && !value.contains(' ') => {
                    self.sources
                        .mark_secret(&self.at(*pos), SecretExtent::Chars(value.chars().count()));
                }
                Style::SingleQuoted | Style::DoubleQuoted => {
                    self.sources
                        .mark_secret(&self.at(*pos), SecretExtent::Quoted);
                }
                // block scalars (and anything that may span lines): whole lines
                _ => {
                    self.sources
                        .mark_secret(&self.at(*pos), SecretExtent::RestOfLine);
                    for extra in 1..value.lines().count().max(1) {
                        let line = Pos {
                            line: pos.line + extra,
                            col: 1,
                        };
                        self.sources
                            .mark_secret(&self.at(line), SecretExtent::RestOfLine);
                    }
                }
            },
            Node::Seq { items, .. } => items.iter().for_each(|n| self.mask(n)),
            Node::Map { entries, .. } => entries.iter().for_each(|e| self.mask(&e.value)),
        }
    }

    fn wrong_type(&mut self, node: &Node, expected: &str, secret: bool) {
        if secret {
            self.mask(node);
        }
        let found = node.kind_name();
        let mut d = Diagnostic::error(format!("expected {expected}, found {found}"))
            .with_label(self.at(node.pos()), format!("expected {expected}"));
        if let Node::Scalar { value, style, .. } = node {
            if expected == "true or false" {
                if *style != Style::Plain && is_bool(value).is_some() {
                    d = d.with_help("remove the quotes: a quoted value is a string");
                } else if matches!(
                    value.to_ascii_lowercase().as_str(),
                    "yes" | "no" | "on" | "off" | "y" | "n"
                ) {
                    d = d.with_help(
                        "write `true` or `false` (YAML 1.1 yes/no/on/off are not booleans here)",
                    );
                }
            } else if expected == "an integer" && *style != Style::Plain {
                d = d.with_help("remove the quotes: a quoted value is a string");
            }
        }
        self.push(d);
    }

    /// Checks the keys of a mapping against `known`; reports unknown ones (with a suggestion, or
    /// as a literal password when the key looks like one). Returns the known entries.
    fn known_entries<'n>(
        &mut self,
        entries: &'n [Entry],
        known: &[&str],
        where_: &str,
        in_secret: bool,
    ) -> Vec<&'n Entry> {
        let mut out = Vec::new();
        for e in entries {
            if self.full() {
                break;
            }
            if known.contains(&e.key.as_str()) {
                out.push(e);
                continue;
            }
            let secretish = in_secret || is_secretish(&e.key);
            if secretish {
                self.mask(&e.value);
            }
            // A string under a password-like key, or any string where a password source goes
            // (`password: { literal: ... }`), is a literal password; `x: 1` there is just unknown.
            let string_value = match &e.value {
                Node::Scalar { value, style, .. } => {
                    !e.value.is_null()
                        && (*style != Style::Plain
                            || (is_bool(value).is_none() && value.parse::<f64>().is_err()))
                }
                _ => false,
            };
            if (is_secretish(&e.key)
                && matches!(e.value, Node::Scalar { .. })
                && !e.value.is_null())
                || (in_secret && string_value)
            {
                let help = if where_ == "a user entry" || where_ == "a group entry" {
                    format!("a password is only ever set by `resetPassword`; {SOURCE_HELP}")
                } else {
                    SOURCE_HELP.to_owned()
                };
                self.push(
                    Diagnostic::error(LITERAL_PASSWORD)
                        .with_label(self.at(e.value.pos()), "literal password")
                        .with_help(help),
                );
                continue;
            }
            let mut d = Diagnostic::error(format!("unknown key `{}` in {where_}", e.key))
                .with_label(self.at(e.key_pos), "unknown key");
            d = match suggest(&e.key, known) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("known keys here: {}", known.join(", "))),
            };
            self.push(d);
        }
        out
    }

    fn mapping<'n>(&mut self, node: &'n Node, expected: &str) -> Option<&'n [Entry]> {
        match node {
            Node::Map { entries, .. } => Some(entries),
            _ => {
                self.wrong_type(node, expected, false);
                None
            }
        }
    }

    fn bool(&mut self, node: &Node) -> Option<bool> {
        match node {
            Node::Scalar {
                value,
                style: Style::Plain,
                ..
            } if is_bool(value).is_some() => is_bool(value),
            _ => {
                self.wrong_type(node, "true or false", false);
                None
            }
        }
    }

    fn string<'n>(&mut self, node: &'n Node, expected: &str, secret: bool) -> Option<&'n str> {
        match node {
            Node::Scalar { value, style, .. }
                if !(node.is_null() || *style == Style::Plain && is_bool(value).is_some()) =>
            {
                Some(value)
            }
            _ => {
                self.wrong_type(node, expected, secret);
                None
            }
        }
    }

    fn timestamp(&mut self, node: &Node) -> Option<chrono::DateTime<chrono::Utc>> {
        let s = self.string(node, "an RFC 3339 timestamp", false)?;
        match ids::parse_timestamp(s) {
            Ok(t) => Some(t),
            Err(e) => {
                let d =
                    Diagnostic::error(e.to_string()).with_label(self.at(node.pos()), "timestamp");
                self.push(d);
                None
            }
        }
    }

    /// Reports a missing required key, unless an unknown key already reported is its misspelling.
    fn missing(&mut self, pos: Pos, key: &str, where_: &str, entries: &[Entry], known: &[&str]) {
        if entries.iter().any(|e| {
            !known.contains(&e.key.as_str()) && suggest(&e.key, known).as_deref() == Some(key)
        }) {
            return;
        }
        self.push(
            Diagnostic::error(format!("missing required key `{key}` in {where_}"))
                .with_label(self.at(pos), format!("`{key}` missing in this mapping")),
        );
    }

    fn document(&mut self, root: &Node) -> Option<FileDoc> {
        let entries = match root {
            Node::Map { entries, .. } => entries,
            other => {
                self.wrong_type(
                    other,
                    "a mapping with `version`, `tenant`, `users`, `groups`",
                    false,
                );
                return None;
            }
        };
        // The version decides what the other keys mean: check it first.
        match entries.iter().find(|e| e.key == "version") {
            None => self.missing(root.pos(), "version", "the top level", entries, TOP_KEYS),
            Some(e) => match &e.value {
                Node::Scalar {
                    value,
                    style: Style::Plain,
                    ..
                } if value.parse::<i64>().is_ok() => {
                    let v: i64 = value.parse().unwrap_or_default();
                    if !SUPPORTED_VERSIONS.contains(&v) {
                        let supported: Vec<String> =
                            SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect();
                        self.push(
                            Diagnostic::error(format!(
                                "unsupported format version {v}; this pwdrift supports version {}",
                                supported.join(", ")
                            ))
                            .with_label(self.at(e.value.pos()), "unknown version")
                            .with_help("write `version: 1`, or upgrade pwdrift"),
                        );
                        // Other keys may mean something else in another version: stop here.
                        return None;
                    }
                }
                other => self.wrong_type(other, "an integer", false),
            },
        }
        let known = self.known_entries(entries, TOP_KEYS, "the top level", false);
        let get = |k: &str| known.iter().find(|e| e.key == k).copied();

        let tenant = match get("tenant") {
            None => {
                self.missing(root.pos(), "tenant", "the top level", entries, TOP_KEYS);
                None
            }
            Some(e) => self
                .string(&e.value, "a tenant domain or id", false)
                .and_then(|s| match ids::parse_tenant(s) {
                    Ok(t) => Some((t, self.at(e.value.pos()))),
                    Err(err) => {
                        let d = Diagnostic::error(err.to_string())
                            .with_label(self.at(e.value.pos()), "malformed tenant");
                        self.push(d);
                        None
                    }
                }),
        };

        let users = self.list(get("users"), "user", |c, entries, pos| {
            c.user_entry(entries, pos)
        });
        let groups = self.list(get("groups"), "group", |c, entries, pos| {
            c.group_entry(entries, pos)
        });
        if users.1 == 0 && groups.1 == 0 {
            let at = get("users")
                .or(get("groups"))
                .map_or(root.pos(), |e| e.key_pos);
            self.push(
                Diagnostic::error(
                    "nothing is declared: `users` and `groups` are both absent or empty",
                )
                .with_label(self.at(at), "no users or groups")
                .with_help(
                    "add `users:` entries (`- user: alice@contoso.com`) or `groups:` entries",
                ),
            );
        }
        let (tenant, tenant_origin) = tenant?;
        Some(FileDoc {
            file: self.file.to_path_buf(),
            tenant,
            tenant_origin,
            users: users.0,
            groups: groups.0,
        })
    }

    /// Reads `users:` or `groups:`: a list of mappings. Returns the valid entries and how many
    /// entries were written (valid or not).
    fn list<T>(
        &mut self,
        entry: Option<&Entry>,
        what: &str,
        mut item: impl FnMut(&mut Self, &[Entry], Pos) -> Option<T>,
    ) -> (Vec<T>, usize) {
        let Some(entry) = entry else {
            return (Vec::new(), 0);
        };
        let items = match &entry.value {
            n if n.is_null() => return (Vec::new(), 0),
            Node::Seq { items, .. } => items,
            other => {
                self.wrong_type(other, &format!("a list of {what} entries"), false);
                return (Vec::new(), 1);
            }
        };
        let mut out = Vec::new();
        for node in items {
            if self.full() {
                break;
            }
            match node {
                Node::Map { entries, pos } => {
                    if let Some(t) = item(self, entries, *pos) {
                        out.push(t);
                    }
                }
                other => self.wrong_type(
                    other,
                    &format!("a {what} entry (a mapping with `{what}:`)"),
                    false,
                ),
            }
        }
        (out, items.len())
    }

    fn user_entry(&mut self, entries: &[Entry], pos: Pos) -> Option<UserEntry> {
        let mut keys = vec!["user"];
        keys.extend_from_slice(DIRECTIVE_KEYS);
        let known = self.known_entries(entries, &keys, "a user entry", false);
        let user = match known.iter().find(|e| e.key == "user") {
            None => {
                self.missing(pos, "user", "a user entry", entries, &keys);
                None
            }
            Some(e) => self
                .string(&e.value, "a user principal name, object id or SID", false)
                .and_then(|s| match ids::parse_user_ref(s) {
                    Ok(u) => Some((u, self.at(e.value.pos()))),
                    Err(err) => {
                        let msg = err.to_string();
                        let label = if msg.contains("GUID") {
                            "malformed object id"
                        } else if msg.contains("SID") && s.to_ascii_uppercase().starts_with("S-") {
                            "malformed SID"
                        } else {
                            "malformed user principal name"
                        };
                        let d = Diagnostic::error(msg).with_label(self.at(e.value.pos()), label);
                        self.push(d);
                        None
                    }
                }),
        };
        let directives = self.directives(&known, false, user.as_ref().map(|u| &u.0));
        let (user, origin) = user?;
        let directives = directives?;
        // Only when nothing else is written: an entry whose other keys were refused has been
        // reported already.
        if directives.is_empty() && entries.len() == 1 {
            self.push(
                Diagnostic::warning(format!("user `{user}` declares no directive; nothing will be checked for it"))
                    .with_label(origin.clone(), "no directive")
                    .with_help("add e.g. `forceChangePasswordNextSignIn: false`, `requirePasswordChange` or `resetPassword`"),
            );
        }
        Some(UserEntry {
            user,
            directives,
            origin,
        })
    }

    fn group_entry(&mut self, entries: &[Entry], pos: Pos) -> Option<GroupEntry> {
        let mut keys = vec!["group"];
        keys.extend_from_slice(DIRECTIVE_KEYS);
        let known = self.known_entries(entries, &keys, "a group entry", false);
        let group = match known.iter().find(|e| e.key == "group") {
            None => {
                self.missing(pos, "group", "a group entry", entries, &keys);
                None
            }
            Some(e) => self
                .string(&e.value, "a group display name or object id", false)
                .and_then(|s| match ids::parse_group_ref(s) {
                    Ok(g) => Some((g, self.at(e.value.pos()))),
                    Err(err) => {
                        let d = Diagnostic::error(err.to_string())
                            .with_label(self.at(e.value.pos()), "malformed group");
                        self.push(d);
                        None
                    }
                }),
        };
        let directives = self.directives(&known, true, None);
        let (group, origin) = group?;
        let directives = directives?;
        // Only when nothing else is written: an entry whose other keys were refused has been
        // reported already.
        if directives.is_empty() && entries.len() == 1 {
            self.push(
                Diagnostic::warning(format!("group `{group}` declares no directive; nothing will be checked for its members"))
                    .with_label(origin.clone(), "no directive"),
            );
        }
        Some(GroupEntry {
            group,
            directives,
            origin,
        })
    }

    /// Reads the directive keys of an entry, checks contradictions, warns about literal `true`.
    /// `None` when anything in them was invalid.
    fn directives(
        &mut self,
        known: &[&Entry],
        is_group: bool,
        user: Option<&UserRef>,
    ) -> Option<Directives> {
        let before = self.error_count();
        let mut d = Directives::default();
        let mut at = FieldPos::default();
        for e in known {
            match e.key.as_str() {
                "forceChangePasswordNextSignIn" => {
                    d.force_change_password_next_sign_in = self.bool(&e.value);
                    at.force = Some(e.key_pos);
                }
                "forceChangePasswordNextSignInWithMfa" => {
                    d.force_change_password_next_sign_in_with_mfa = self.bool(&e.value);
                    at.force_mfa = Some(e.key_pos);
                }
                "allowPrivileged" => d.allow_privileged = self.bool(&e.value).unwrap_or(false),
                "requirePasswordChange" => {
                    d.require_password_change = self.require(&e.value);
                    at.require = Some(e.key_pos);
                }
                "resetPassword" => {
                    d.reset_password = self.reset(&e.value, is_group, user);
                    at.reset = Some(e.key_pos);
                }
                _ => {}
            }
        }
        if self.error_count() > before {
            return None;
        }
        let found = contradictions(&d);
        for c in &found {
            let mut diag = Diagnostic::error(c.message.clone()).with_help(c.help);
            for f in [c.fields.0, c.fields.1] {
                if let Some(p) = at.of(f) {
                    diag = diag.with_label(self.at(p), f.role());
                }
            }
            self.push(diag);
        }
        if !found.is_empty() {
            return None;
        }
        for (value, field) in [
            (d.force_change_password_next_sign_in, Field::ForceChange),
            (
                d.force_change_password_next_sign_in_with_mfa,
                Field::ForceChangeWithMfa,
            ),
        ] {
            if value == Some(true) {
                let flag = field.key();
                let mut w = Diagnostic::warning(format!(
                    "literal `{flag}: true` forces a password change on every run"
                ))
                .with_help(
                    "Graph clears the flag once the user has changed the password, so the next run would set it again \
                     and the user would have to change the password again and again; for a one-time change write \
                     `requirePasswordChange: { since: <now, e.g. 2026-11-20T00:00:00Z> }`",
                );
                if let Some(p) = at.of(field) {
                    w = w.with_label(self.at(p), "re-forced on every run");
                }
                self.push(w);
            }
        }
        Some(d)
    }

    /// True once no more diagnostics are kept: checking further is wasted work.
    fn full(&self) -> bool {
        self.dropped > 0
    }

    fn error_count(&self) -> usize {
        self.errors
    }

    fn require(&mut self, node: &Node) -> Option<RequirePasswordChange> {
        let entries = self.mapping(node, "a mapping with `since` (and `withMfa`)")?;
        let known = self.known_entries(entries, REQUIRE_KEYS, "`requirePasswordChange`", false);
        let mut since = None;
        let mut with_mfa = Some(false);
        for e in &known {
            match e.key.as_str() {
                "since" => since = Some(self.timestamp(&e.value)),
                "withMfa" => with_mfa = self.bool(&e.value),
                _ => {}
            }
        }
        let Some(since) = since else {
            self.missing(
                node.pos(),
                "since",
                "`requirePasswordChange`",
                entries,
                REQUIRE_KEYS,
            );
            return None;
        };
        Some(RequirePasswordChange {
            since: since?,
            with_mfa: with_mfa?,
        })
    }

    fn reset(
        &mut self,
        node: &Node,
        is_group: bool,
        user: Option<&UserRef>,
    ) -> Option<ResetPassword> {
        let entries = self.mapping(node, "a mapping with `notBefore` and `password`")?;
        let known = self.known_entries(entries, RESET_KEYS, "`resetPassword`", false);
        let mut not_before = None;
        let mut password = None;
        let mut after = Some(false);
        let mut after_mfa = Some(false);
        for e in &known {
            match e.key.as_str() {
                "notBefore" => not_before = Some(self.timestamp(&e.value)),
                "password" => password = Some(self.source(&e.value, is_group, user)),
                "forceChangeAfter" => after = self.bool(&e.value),
                "forceChangeAfterWithMfa" => after_mfa = self.bool(&e.value),
                _ => {}
            }
        }
        if not_before.is_none() {
            self.missing(
                node.pos(),
                "notBefore",
                "`resetPassword`",
                entries,
                RESET_KEYS,
            );
        }
        if password.is_none() {
            self.missing(
                node.pos(),
                "password",
                "`resetPassword`",
                entries,
                RESET_KEYS,
            );
        }
        Some(ResetPassword {
            not_before: not_before??,
            password: password??,
            force_change_after: after?,
            force_change_after_with_mfa: after_mfa?,
        })
    }

    /// A password source: `{ generate: { length: N } }`, `{ env: VAR }`, `{ file: PATH }` or
    /// `{ systemGenerated: true }`. Never a literal.
    fn source(
        &mut self,
        node: &Node,
        is_group: bool,
        user: Option<&UserRef>,
    ) -> Option<PasswordSource> {
        let entries = match node {
            Node::Map { entries, .. } => entries,
            Node::Scalar { value, .. } if value == "systemGenerated" => {
                self.push(
                    Diagnostic::error("a password source is a mapping")
                        .with_label(self.at(node.pos()), "not a mapping")
                        .with_help("write `password: { systemGenerated: true }`"),
                );
                return None;
            }
            Node::Scalar { .. } => {
                self.mask(node);
                self.push(
                    Diagnostic::error(LITERAL_PASSWORD)
                        .with_label(self.at(node.pos()), "literal password")
                        .with_help(SOURCE_HELP),
                );
                return None;
            }
            Node::Seq { .. } => {
                self.mask(node);
                self.wrong_type(
                    node,
                    "a password source (generate, env, file or systemGenerated)",
                    true,
                );
                return None;
            }
        };
        let known = self.known_entries(entries, SOURCE_KEYS, "a password source", true);
        if known.len() != 1 {
            if known.len() > 1 {
                let mut d = Diagnostic::error(
                    "a password source names exactly one of generate, env, file, systemGenerated",
                );
                for e in &known {
                    d = d.with_label(self.at(e.key_pos), "source");
                }
                self.push(d);
            } else if entries.is_empty() {
                self.push(
                    Diagnostic::error("empty password source")
                        .with_label(self.at(node.pos()), "no source")
                        .with_help(SOURCE_HELP),
                );
            }
            return None;
        }
        let e = known[0];
        match e.key.as_str() {
            "generate" => {
                let g = self.mapping(&e.value, "a mapping with `length`")?;
                let known = self.known_entries(g, GENERATE_KEYS, "`generate`", false);
                let Some(len) = known.first() else {
                    self.missing(e.value.pos(), "length", "`generate`", g, GENERATE_KEYS);
                    return None;
                };
                let n = match &len.value {
                    Node::Scalar {
                        value,
                        style: Style::Plain,
                        ..
                    } if value.parse::<i64>().is_ok() => value.parse::<i64>().unwrap_or_default(),
                    other => {
                        self.wrong_type(other, "an integer", false);
                        return None;
                    }
                };
                let range = crate::password::MIN_LENGTH as i64..=crate::password::MAX_LENGTH as i64;
                if !range.contains(&n) {
                    self.push(
                        Diagnostic::error(format!(
                            "password length {n} is out of range: Entra accepts {} to {} characters",
                            range.start(),
                            range.end()
                        ))
                        .with_label(self.at(len.value.pos()), "length"),
                    );
                    return None;
                }
                Some(PasswordSource::Generate { length: n as u16 })
            }
            "env" => {
                let var = self.string(&e.value, "an environment variable name", true)?;
                let valid = var
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    // It may be a password written where the variable name goes: mask it.
                    self.mask(&e.value);
                    self.push(
                        Diagnostic::error("not an environment variable name (letters, digits and `_`, not starting with a digit)")
                            .with_label(self.at(e.value.pos()), "the variable's name goes here, not its value"),
                    );
                    return None;
                }
                if is_group {
                    self.group_shared_password(e);
                    return None;
                }
                Some(PasswordSource::Env {
                    var: var.to_owned(),
                })
            }
            "file" => {
                let path = self.string(&e.value, "a file path", true)?;
                if is_group {
                    self.group_shared_password(e);
                    return None;
                }
                let path = Path::new(path);
                let resolved = if path.is_absolute() {
                    path.to_path_buf()
                } else {
                    self.file.parent().unwrap_or(Path::new("")).join(path)
                };
                Some(PasswordSource::File { path: resolved })
            }
            "systemGenerated" => match self.bool(&e.value)? {
                false => {
                    self.push(
                        Diagnostic::error("`systemGenerated: false` names no password source")
                            .with_label(self.at(e.value.pos()), "false")
                            .with_help(SOURCE_HELP),
                    );
                    None
                }
                true => {
                    if let Some(UserRef::Sid(_)) = user {
                        self.push(
                                Diagnostic::error("`systemGenerated` works only for cloud-only users, and a SID names a synced (on-premises) user")
                                    .with_label(self.at(e.key_pos), "system-generated password")
                                    .with_help("Microsoft requires the new password of a synced user to be supplied: use generate, env or file"),
                            );
                        return None;
                    }
                    Some(PasswordSource::SystemGenerated)
                }
            },
            _ => None,
        }
    }

    fn group_shared_password(&mut self, e: &Entry) {
        self.push(
            Diagnostic::error(format!(
                "`{}` on a group would give every member the same password",
                e.key
            ))
            .with_label(self.at(e.key_pos), "one password for all members")
            .with_help("use `generate` (one password per user) or `systemGenerated` for groups"),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (Option<FileDoc>, Vec<Diagnostic>) {
        let path = Path::new("dir/t.yaml");
        let root = super::super::yaml::parse(path, text).expect("parses");
        check_file(path, &root, &mut SourceMap::default())
    }

    fn errors(text: &str) -> Vec<String> {
        check(text)
            .1
            .into_iter()
            .filter(Diagnostic::is_error)
            .map(|d| d.message)
            .collect()
    }

    const HEAD: &str = "version: 1\ntenant: contoso.onmicrosoft.com\n";

    #[test]
    fn valid_file_maps_into_the_model() {
        let (doc, diags) = check(&format!(
            "{HEAD}users:\n  - user: Alice@Contoso.com\n    forceChangePasswordNextSignIn: false\n  - user: S-1-5-21-1-2-3-1104\n    resetPassword:\n      notBefore: 2026-11-20T01:00:00+01:00\n      password: {{ file: secrets/carol.txt }}\n      forceChangeAfter: true\ngroups:\n  - group: Finance\n    requirePasswordChange: {{ since: 2026-11-20T00:00:00Z, withMfa: true }}\n    allowPrivileged: true\n"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        let doc = doc.unwrap();
        assert_eq!(
            doc.tenant,
            TenantRef::Domain("contoso.onmicrosoft.com".into())
        );
        assert_eq!(doc.users[0].user, UserRef::Upn("alice@contoso.com".into()));
        assert_eq!(doc.users[0].origin.line, 4);
        assert_eq!(doc.users[0].origin.column, 11);
        let reset = doc.users[1].directives.reset_password.as_ref().unwrap();
        assert_eq!(
            reset.password,
            PasswordSource::File {
                path: PathBuf::from("dir/secrets/carol.txt")
            }
        );
        assert_eq!(reset.not_before.to_rfc3339(), "2026-11-20T00:00:00+00:00");
        assert!(reset.force_change_after && !reset.force_change_after_with_mfa);
        let g = &doc.groups[0];
        assert!(g.directives.allow_privileged);
        assert!(
            g.directives
                .require_password_change
                .as_ref()
                .unwrap()
                .with_mfa
        );
    }

    #[test]
    fn every_error_in_a_file_is_reported() {
        let errs = errors(&format!(
            "{HEAD}users:\n  - user: bad\n  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: \"yes\"\n  - user: bob@contoso.com\n    requirePasswordChange: {{ since: 2026-11-20 }}\n  - forceChangePasswordNextSignIn: false\n"
        ));
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].contains("not a user principal name"));
        assert!(errs[1].contains("expected true or false, found a string"));
        assert!(errs[2].contains("date without a time"));
        assert!(errs[3].contains("missing required key `user`"));
    }

    #[test]
    fn contradiction_table() {
        let t = |s: &str| errors(&format!("{HEAD}users:\n  - user: a@contoso.com\n{s}"));
        let rpc = "    requirePasswordChange: { since: 2026-11-20T00:00:00Z }\n";
        let rpc_mfa = "    requirePasswordChange: { since: 2026-11-20T00:00:00Z, withMfa: true }\n";
        let reset = |after: bool| {
            format!("    resetPassword: {{ notBefore: 2026-11-20T00:00:00Z, password: {{ generate: {{ length: 20 }} }}, forceChangeAfter: {after} }}\n")
        };
        assert_eq!(
            t(&format!("    forceChangePasswordNextSignIn: false\n{rpc}")).len(),
            1
        );
        assert_eq!(
            t(&format!("    forceChangePasswordNextSignIn: true\n{rpc}")).len(),
            1
        );
        assert_eq!(
            t(&format!(
                "    forceChangePasswordNextSignIn: false\n{rpc_mfa}"
            ))
            .len(),
            0
        );
        assert_eq!(
            t(&format!(
                "    forceChangePasswordNextSignInWithMfa: false\n{rpc_mfa}"
            ))
            .len(),
            1
        );
        assert_eq!(
            t(&format!(
                "    forceChangePasswordNextSignInWithMfa: false\n{rpc}"
            ))
            .len(),
            0
        );
        assert_eq!(t(&format!("{rpc}{}", reset(true))).len(), 1);
        assert_eq!(
            t(&format!(
                "    forceChangePasswordNextSignIn: false\n{}",
                reset(true)
            ))
            .len(),
            1
        );
        assert_eq!(
            t(&format!(
                "    forceChangePasswordNextSignIn: false\n{}",
                reset(false)
            ))
            .len(),
            0
        );
        assert_eq!(
            t(&format!(
                "    forceChangePasswordNextSignInWithMfa: true\n{}",
                reset(false)
            ))
            .len(),
            1
        );
    }

    #[test]
    fn literal_true_warns_and_is_valid() {
        let (doc, diags) = check(&format!(
            "{HEAD}users:\n  - user: a@contoso.com\n    forceChangePasswordNextSignIn: true\n"
        ));
        assert!(doc.is_some());
        assert_eq!(diags.len(), 1);
        assert!(!diags[0].is_error());
        assert!(diags[0]
            .help
            .as_deref()
            .unwrap()
            .contains("Graph clears the flag"));
    }

    #[test]
    fn passwords_are_never_literal() {
        let lit = |s: &str| errors(&format!("{HEAD}users:\n  - user: a@contoso.com\n{s}"));
        assert_eq!(lit("    password: \"Secret1!\"\n"), vec![LITERAL_PASSWORD]);
        assert_eq!(lit("    newPassword: Secret1!\n"), vec![LITERAL_PASSWORD]);
        assert_eq!(
            lit("    resetPassword: { notBefore: 2026-11-20T00:00:00Z, password: Secret1! }\n"),
            vec![LITERAL_PASSWORD]
        );
        assert_eq!(
            lit("    resetPassword: { notBefore: 2026-11-20T00:00:00Z, password: { literal: Secret1! } }\n"),
            vec![LITERAL_PASSWORD]
        );
        let errs = lit(
            "    resetPassword: { notBefore: 2026-11-20T00:00:00Z, password: { env: Secret1! } }\n",
        );
        assert!(
            errs[0].contains("not an environment variable name"),
            "{errs:?}"
        );
        for e in errs {
            assert!(!e.contains("Secret1!"));
        }
    }

    #[test]
    fn source_rules() {
        let src = |s: &str, who: &str| {
            errors(&format!(
                "{HEAD}users:\n  - user: {who}\n    resetPassword: {{ notBefore: 2026-11-20T00:00:00Z, password: {s} }}\n"
            ))
        };
        assert!(src("{ generate: { length: 7 } }", "a@contoso.com")[0].contains("out of range"));
        assert!(src("{ generate: { length: 257 } }", "a@contoso.com")[0].contains("out of range"));
        assert!(src("{ generate: { length: 8 } }", "a@contoso.com").is_empty());
        assert!(src("{ systemGenerated: true }", "a@contoso.com").is_empty());
        assert!(src("{ systemGenerated: true }", "S-1-5-21-1-2-3-4")[0].contains("cloud-only"));
        assert!(src("{ env: A, file: b }", "a@contoso.com")[0].contains("exactly one"));
        let g = errors(&format!(
            "{HEAD}groups:\n  - group: Finance\n    resetPassword: {{ notBefore: 2026-11-20T00:00:00Z, password: {{ env: PW }} }}\n"
        ));
        assert!(g[0].contains("same password"), "{g:?}");
    }

    #[test]
    fn unknown_keys_suggest_the_closest() {
        let (_, diags) = check(&format!(
            "{HEAD}users:\n  - user: a@contoso.com\n    forceChangePasswordNextSignon: false\n"
        ));
        assert_eq!(
            diags[0].help.as_deref(),
            Some("did you mean `forceChangePasswordNextSignIn`?")
        );
        let (_, diags) = check(
            "verison: 1\ntenant: contoso.com\nusers: [{user: a@b.com, allowPrivileged: false}]\n",
        );
        assert_eq!(diags[0].help.as_deref(), Some("did you mean `version`?"));
    }

    #[test]
    fn unknown_version_stops_and_names_the_supported_ones() {
        let errs = errors("version: 2\ntenant: x\nfoo: 1\n");
        assert_eq!(
            errs,
            vec!["unsupported format version 2; this pwdrift supports version 1"]
        );
    }

    #[test]
    fn nothing_declared() {
        assert!(errors(&format!("{HEAD}users: []\n"))[0].starts_with("nothing is declared"));
        assert!(errors(HEAD)[0].starts_with("nothing is declared"));
    }
}
