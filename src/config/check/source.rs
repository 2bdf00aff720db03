//! Password sources (`{ generate: { length: N } }`, `{ env: VAR }`, `{ file: PATH }`,
//! `{ systemGenerated: true }`): never a literal, never one password shared by a group's members.

use std::path::Path;

use super::super::diag::Diagnostic;
use super::super::format;
use super::super::model::{PasswordSource, UserRef};
use super::super::reach::Refusal;
use super::super::yaml::{Entry, Node, Style};
use super::{Checker, LITERAL_PASSWORD, SOURCE_HELP};

impl Checker<'_> {
    /// A password source: `{ generate: { length: N } }`, `{ env: VAR }`, `{ file: PATH }` or
    /// `{ systemGenerated: true }`. Never a literal.
    pub(super) fn source(
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
        let known = self.known_entries(entries, &format::SOURCE, true);
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
                let known = self.known_entries(g, &format::GENERATE, false);
                let Some(len) = known.first() else {
                    self.missing(e.value.pos(), "length", &format::GENERATE, g);
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
                if super::super::reach::is_credential_var(var) {
                    self.push(
                        Diagnostic::error(format!(
                            "`{var}` holds credentials pwdrift or the CI platform reads; a password \
                             source may not name it"
                        ))
                        .with_label(self.at(e.value.pos()), "a credential variable")
                        .with_help(
                            "AZURE_*, PWDRIFT_*, AWS_*, ARM_*, IDENTITY_*, MSI_*, CI identity \
                             tokens (ACTIONS_ID_TOKEN_REQUEST_*, ACTIONS_RUNTIME_TOKEN, \
                             GITHUB_TOKEN, SYSTEM_ACCESSTOKEN, SYSTEM_OIDCREQUESTURI, CI_JOB_JWT*, \
                             CI_JOB_TOKEN, *_ID_TOKEN) are refused: put the password in a \
                             variable of its own",
                        ),
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
                if let Some(reach) = self.reach {
                    let refused = match reach.check(&resolved) {
                        Ok(()) => None,
                        Err(Refusal::NotRegular(why)) => Some(
                            Diagnostic::error(format!(
                                "password file {}: {why}",
                                resolved.display()
                            ))
                            .with_label(self.at(e.value.pos()), "not a regular file")
                            .with_help("name a regular file holding the password"),
                        ),
                        Err(Refusal::Outside(to)) => Some(
                            Diagnostic::error(format!(
                                "password file {} is outside the desired-state directory",
                                resolved.display()
                            ))
                            .with_label(
                                self.at(e.value.pos()),
                                format!("resolves to {}", to.display()),
                            )
                            .with_help(
                                "keep password files inside the directory of the desired state, \
                                 or allow their directory with --allow-password-dir DIR",
                            ),
                        ),
                    };
                    if let Some(d) = refused {
                        self.push(d);
                        return None;
                    }
                }
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

    pub(super) fn group_shared_password(&mut self, e: &Entry) {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;

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
    fn credential_variables_are_refused() {
        for var in [
            "AZURE_CLIENT_SECRET",
            "PWDRIFT_X",
            "actions_id_token_request_token",
        ] {
            let errs = errors(&format!(
                "{HEAD}users:\n  - user: a@contoso.com\n    resetPassword: {{ notBefore: 2026-11-20T00:00:00Z, password: {{ env: {var} }} }}\n"
            ));
            assert_eq!(errs.len(), 1, "{var}: {errs:?}");
            assert!(errs[0].contains("holds credentials"), "{errs:?}");
        }
    }
}
