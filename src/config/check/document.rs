//! The top level of a file (`version`, `tenant`) and the `users` and `groups` lists.

use super::super::diag::Diagnostic;
use super::super::format;
use super::super::ids;
use super::super::yaml::{Entry, Node, Pos, Style};
use super::{Checker, FileDoc, SUPPORTED_VERSIONS};

impl Checker<'_> {
    pub(super) fn document(&mut self, root: &Node) -> Option<FileDoc> {
        let entries = match root {
            Node::Map { entries, .. } => entries,
            other => {
                self.wrong_type(
                    other,
                    "a mapping with `version`, `tenant`, `users`, `groups`, `selectors`, `exclude`",
                    false,
                );
                return None;
            }
        };
        // The version decides what the other keys mean: check it first.
        match entries.iter().find(|e| e.key == "version") {
            None => self.missing(root.pos(), "version", &format::TOP, entries),
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
        let known = self.known_entries(entries, &format::TOP, false);
        let get = |k: &str| known.iter().find(|e| e.key == k).copied();

        let tenant = match get("tenant") {
            None => {
                self.missing(root.pos(), "tenant", &format::TOP, entries);
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
        let selectors = self.list(get("selectors"), "selector", |c, entries, pos| {
            c.selector_entry(entries, pos)
        });
        let exclude = self.list(get("exclude"), "exclude", |c, entries, pos| {
            c.exclude_entry(entries, pos)
        });
        if users.1 == 0 && groups.1 == 0 && selectors.1 == 0 {
            let at = get("users")
                .or(get("groups"))
                .or(get("selectors"))
                .map_or(root.pos(), |e| e.key_pos);
            self.push(
                Diagnostic::error(
                    "nothing is declared: `users`, `groups` and `selectors` are all absent or empty",
                )
                .with_label(self.at(at), "no users, groups or selectors")
                .with_help(
                    "add `users:` entries (`- user: alice@contoso.com`), `groups:` or `selectors:` entries",
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
            selectors: selectors.0,
            exclude: exclude.0,
        })
    }

    /// Reads `users:` or `groups:`: a list of mappings. Returns the valid entries and how many
    /// entries were written (valid or not).
    pub(super) fn list<T>(
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
}

#[cfg(test)]
mod tests {
    use super::super::super::model::{PasswordSource, TenantRef, UserRef};
    use super::super::testing::*;
    use std::path::PathBuf;

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
