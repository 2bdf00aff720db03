//! The directives of an entry (the literal flags, `requirePasswordChange`, `resetPassword`,
//! `allowPrivileged`), the contradictions among them, and the warning about a literal `true`.

use super::super::diag::Diagnostic;
use super::super::format;
use super::super::model::{Directives, RequirePasswordChange, ResetPassword, UserRef};
use super::super::yaml::{Entry, Node, Pos};
use super::Checker;

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

impl Checker<'_> {
    /// Reads the directive keys of an entry, checks contradictions, warns about literal `true`.
    /// `None` when anything in them was invalid.
    pub(super) fn directives(
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

    pub(super) fn require(&mut self, node: &Node) -> Option<RequirePasswordChange> {
        let entries = self.mapping(node, "a mapping with `since` (and `withMfa`)")?;
        let known = self.known_entries(entries, &format::REQUIRE_CHANGE, false);
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
            self.missing(node.pos(), "since", &format::REQUIRE_CHANGE, entries);
            return None;
        };
        Some(RequirePasswordChange {
            since: since?,
            with_mfa: with_mfa?,
        })
    }

    pub(super) fn reset(
        &mut self,
        node: &Node,
        is_group: bool,
        user: Option<&UserRef>,
    ) -> Option<ResetPassword> {
        let entries = self.mapping(node, "a mapping with `notBefore` and `password`")?;
        let known = self.known_entries(entries, &format::RESET_PASSWORD, false);
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
            self.missing(node.pos(), "notBefore", &format::RESET_PASSWORD, entries);
        }
        if password.is_none() {
            self.missing(node.pos(), "password", &format::RESET_PASSWORD, entries);
        }
        Some(ResetPassword {
            not_before: not_before??,
            password: password??,
            force_change_after: after?,
            force_change_after_with_mfa: after_mfa?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

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
}
