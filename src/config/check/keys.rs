//! Recognising the keys of a mapping against its table in [`super::super::format`]: unknown keys
//! (with "did you mean"), keys that look like they hold a literal password, and missing required
//! keys.

use super::super::diag::Diagnostic;
use super::super::format::Mapping;
use super::super::yaml::{is_bool, Entry, Node, Pos, Style};
use super::{Checker, LITERAL_PASSWORD, SOURCE_HELP};

/// Key names that suggest a password or other secret.
pub(super) fn is_secretish(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.starts_with("password")
        || ["password", "passwd", "pwd", "secret", "passphrase"]
            .iter()
            .any(|s| k.ends_with(s))
}

/// The closest known key, for "did you mean" (Jaro-Winkler, case-insensitive, at least 0.8).
pub(super) fn suggest(key: &str, known: &Mapping) -> Option<String> {
    let key = key.to_ascii_lowercase();
    known
        .names()
        .map(|k| (strsim::jaro_winkler(&key, &k.to_ascii_lowercase()), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_owned())
}

impl Checker<'_> {
    /// Checks the keys of a mapping against its table `known`; reports unknown ones (with a
    /// suggestion, or as a literal password when the key looks like one). Returns the known
    /// entries.
    pub(super) fn known_entries<'n>(
        &mut self,
        entries: &'n [Entry],
        known: &Mapping,
        in_secret: bool,
    ) -> Vec<&'n Entry> {
        let where_ = known.place;
        let mut out = Vec::new();
        for e in entries {
            if self.full() {
                break;
            }
            if known.key(&e.key).is_some() {
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
                None => d.with_help(format!("known keys here: {}", known.list())),
            };
            self.push(d);
        }
        out
    }

    /// Reports a missing required key, unless an unknown key already reported is its misspelling.
    pub(super) fn missing(&mut self, pos: Pos, key: &str, known: &Mapping, entries: &[Entry]) {
        let where_ = known.place;
        if entries
            .iter()
            .any(|e| known.key(&e.key).is_none() && suggest(&e.key, known).as_deref() == Some(key))
        {
            return;
        }
        self.push(
            Diagnostic::error(format!("missing required key `{key}` in {where_}"))
                .with_label(self.at(pos), format!("`{key}` missing in this mapping")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

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
}
