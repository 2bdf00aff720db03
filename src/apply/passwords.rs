//! The reset passwords of a plan, resolved from their sources (generate, environment variable,
//! file, system-generated) before anything is written ([`ResolvedPasswords`]): a missing
//! variable, an unreadable file or a password that breaks Entra's rules in any tenant stops the
//! whole run with nothing changed.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};

use super::ApplyError;
use crate::config::PasswordSource;
use crate::plan::{Action, Plan, TenantPlan, UserPlan};

/// Largest `password: {file: ...}` read (a password is at most 256 characters).
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// A reset's password, resolved before anything is written. `None` = system-generated.
pub(super) struct ResolvedReset {
    pub(super) password: Option<SecretString>,
    pub(super) generated: bool,
}

/// Resolves one user's password source; a password given (not generated) is checked against
/// Entra's rules first.
fn resolve_password(user: &UserPlan, source: &PasswordSource) -> Result<ResolvedReset, ApplyError> {
    let upn = user.user_principal_name.clone();
    let checked = |pw: SecretString, source_name: String| {
        // Local check with the strong rules; Graph decides in the end (banned lists, policies).
        crate::password::check(pw.expose_secret(), true)
            .map_err(|weakness| ApplyError::WeakPassword {
                user: upn.clone(),
                source_name,
                weakness,
            })
            .map(|_| pw)
    };
    let resolved = match source {
        PasswordSource::Generate { length } => ResolvedReset {
            password: Some(crate::password::generate(*length)),
            generated: true,
        },
        PasswordSource::Env { var } => {
            let value = std::env::var(var).map_err(|_| ApplyError::MissingEnv {
                user: upn.clone(),
                var: var.clone(),
            })?;
            ResolvedReset {
                password: Some(checked(SecretString::from(value), format!("${var}"))?),
                generated: false,
            }
        }
        PasswordSource::File { path } => {
            // a regular file of at most 4 KiB: no FIFO, no device (`/dev/zero`)
            let text = crate::config::read::read_regular_text(path, MAX_PASSWORD_FILE_BYTES)
                .map_err(|e| ApplyError::PasswordFile {
                    user: upn.clone(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            ResolvedReset {
                password: Some(checked(
                    SecretString::from(text.to_owned()),
                    path.display().to_string(),
                )?),
                generated: false,
            }
        }
        PasswordSource::SystemGenerated => ResolvedReset {
            password: None,
            generated: true,
        },
    };
    // every password of the run, masked in whatever a peer says
    if let Some(pw) = &resolved.password {
        crate::graph::redact::remember_secret(pw);
    }
    Ok(resolved)
}

/// Every reset password of a plan, resolved from its source before anything is written (a
/// missing variable or unreadable file in any tenant stops the whole run up front).
pub struct ResolvedPasswords(HashMap<(String, String), ResolvedReset>);

impl ResolvedPasswords {
    /// Resolves the password source of every `ResetPassword` in the plan.
    pub fn resolve(plan: &Plan) -> Result<Self, ApplyError> {
        let mut out = HashMap::new();
        for t in &plan.tenants {
            for u in &t.users {
                if let Action::ResetPassword { password, .. } = &u.action {
                    out.insert(
                        (t.tenant.clone(), u.user_id.clone()),
                        resolve_password(u, password)?,
                    );
                }
            }
        }
        Ok(ResolvedPasswords(out))
    }

    /// How many passwords will be generated (by pwdrift or by Microsoft): each must reach
    /// `--secrets-out`.
    pub fn generated_count(&self) -> usize {
        self.0.values().filter(|r| r.generated).count()
    }

    pub(super) fn get(&self, tenant: &TenantPlan, user: &UserPlan) -> Option<&ResolvedReset> {
        self.0.get(&(tenant.tenant.clone(), user.user_id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_sources_resolve_before_writing() {
        let user = UserPlan {
            user_id: "u".into(),
            user_principal_name: "u@contoso.com".into(),
            declared_at: vec![],
            fingerprint: String::new(),
            allow_privileged: false,
            synced: false,
            last_password_change: None,
            action: Action::NoChange {
                reason: String::new(),
            },
        };
        let missing = PasswordSource::Env {
            var: "PWDRIFT_TEST_SURELY_UNSET_VAR".into(),
        };
        assert!(matches!(
            resolve_password(&user, &missing),
            Err(ApplyError::MissingEnv { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let weak = dir.path().join("weak.txt");
        std::fs::write(&weak, "abc\n").unwrap();
        let err = resolve_password(&user, &PasswordSource::File { path: weak })
            .err()
            .expect("weak refused");
        assert!(
            !err.to_string().contains("abc"),
            "no password in errors: {err}"
        );
        let good = dir.path().join("good.txt");
        std::fs::write(&good, "Correct-Horse-9\n").unwrap();
        let r = resolve_password(&user, &PasswordSource::File { path: good }).unwrap();
        assert_eq!(r.password.unwrap().expose_secret(), "Correct-Horse-9");
        assert!(!r.generated);
        let g = resolve_password(&user, &PasswordSource::Generate { length: 30 }).unwrap();
        assert!(g.generated);
        assert_eq!(g.password.unwrap().expose_secret().len(), 30);
    }
}
