//! The saved plan document (`plan --out FILE`, read by `apply FILE`): its content hash, and its
//! reader ([`parse_saved`]), which checks the version, the shape, the hash and the values that
//! the types cannot (`Plan::check_values`) before a plan is used.

use serde::Deserialize;

use super::{Action, Plan, FORMAT_VERSION};
use crate::config::PasswordSource;

/// Why a saved plan file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    /// Not JSON, or not a plan document (serde_json's message carries line and column).
    #[error("not a pwdrift plan: {0}")]
    Syntax(#[source] serde_json::Error),
    /// No `format_version` field.
    #[error("not a pwdrift plan: no `format_version` field")]
    MissingVersion,
    /// A `format_version` this pwdrift does not know.
    #[error(
        "plan format_version {found} is not supported by pwdrift {} (it reads version {FORMAT_VERSION}); \
         re-run `pwdrift plan --out FILE` with this pwdrift",
        env!("CARGO_PKG_VERSION")
    )]
    UnsupportedVersion { found: String },
    /// The right version, but the document does not match it.
    #[error("invalid pwdrift plan (format_version {FORMAT_VERSION}): {0}")]
    Invalid(#[source] serde_json::Error),
    /// No `content_hash`: not written by `plan --out`.
    #[error(
        "the plan has no content_hash, so it was not written by `pwdrift plan --out`; re-plan \
         (`pwdrift plan --out FILE`)"
    )]
    MissingHash,
    /// The content does not have the recorded hash: the plan was edited after it was saved.
    #[error(
        "the plan was modified after it was saved (content_hash {recorded} does not match the \
         content, {actual}); nothing was written: re-plan (`pwdrift plan --out FILE`), review, \
         apply the new plan"
    )]
    Modified { recorded: String, actual: String },
    /// A value outside the schema, or the same user or tenant listed twice.
    #[error("invalid pwdrift plan: {0}; re-plan (`pwdrift plan --out FILE`)")]
    OutOfSchema(PlanValueError),
}

/// A value of a saved plan that its types allow but pwdrift does not (`Plan::check_values`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanValueError {
    #[error("made_from.files is empty: the plan records no desired-state file")]
    NoDesiredFile,
    #[error("a made_from file path is empty, too long or holds control characters")]
    BadFilePath,
    #[error("desired-state file {path} is listed more than once")]
    DuplicateFile { path: String },
    #[error("the sha256 of {path} is not `sha256:` and 64 hex digits")]
    BadFileHash { path: String },
    #[error("a recorded --tenant or --target is empty, too long or holds control characters")]
    BadFilter,
    /// The recorded `--shard` does not parse (`reason` says why).
    #[error("the recorded --shard {shard:?}: {reason}")]
    BadShard { shard: String, reason: String },
    #[error("a tenant or tenant_id is empty, too long or holds control characters")]
    BadTenant,
    #[error("tenant {tenant} is listed more than once")]
    DuplicateTenant { tenant: String },
    #[error("a user_id is empty, too long or holds control characters")]
    BadUser,
    #[error("user {user_id} ({user_principal_name}) is listed more than once in tenant {tenant}")]
    DuplicateUser {
        user_id: String,
        user_principal_name: String,
        tenant: String,
    },
    #[error("the fingerprint of user {user_id} is not 64 hex digits")]
    BadFingerprint { user_id: String },
    #[error("user {user_id}: a generated password must be 8 to 256 characters, not {length}")]
    GeneratedLength { user_id: String, length: u16 },
    #[error("user {user_id}: an empty or invalid variable name")]
    BadEnvVar { user_id: String },
    #[error("user {user_id}: an empty password file path")]
    EmptyPasswordFile { user_id: String },
}

/// `sha256:<hex>` of the canonical document of `plan` (compact JSON, struct order) without its
/// `content_hash`.
pub fn content_hash(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    /// The compact JSON streamed into the digest: no 100 MB string for a large plan.
    struct Digesting(Sha256);
    impl std::io::Write for Digesting {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut digest = Digesting(Sha256::new());
    let written = if plan.content_hash.is_none() {
        serde_json::to_writer(&mut digest, plan)
    } else {
        let mut unsealed = plan.clone();
        unsealed.content_hash = None;
        serde_json::to_writer(&mut digest, &unsealed)
    };
    written.expect("a plan always serialises");
    format!("sha256:{}", hex::encode(digest.0.finalize()))
}

impl Plan {
    /// The plan with its `content_hash` set (what `plan --out` writes).
    pub fn sealed(mut self) -> Plan {
        self.content_hash = Some(content_hash(&self));
        self
    }

    /// Checks what the types do not: no tenant or user listed twice, well-formed ids and
    /// fingerprints, password sources within their bounds.
    pub(crate) fn check_values(&self) -> Result<(), PlanValueError> {
        use std::collections::HashSet;
        let mut tenants = HashSet::new();
        let mut tenant_ids = HashSet::new();
        let text_ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        let m = &self.made_from;
        if m.files.is_empty() {
            return Err(PlanValueError::NoDesiredFile);
        }
        let mut files = HashSet::new();
        for f in &m.files {
            let p = f.path.to_string_lossy();
            if p.is_empty() || p.len() > 4096 || p.chars().any(char::is_control) {
                return Err(PlanValueError::BadFilePath);
            }
            if !files.insert(f.path.clone()) {
                return Err(PlanValueError::DuplicateFile {
                    path: p.into_owned(),
                });
            }
            let hex = f.sha256.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PlanValueError::BadFileHash {
                    path: p.into_owned(),
                });
            }
        }
        if !m.tenants.iter().chain(&m.targets).all(|s| text_ok(s)) {
            return Err(PlanValueError::BadFilter);
        }
        if let Some(shard) = &m.shard {
            shard
                .parse::<crate::shard::Shard>()
                .map_err(|e| PlanValueError::BadShard {
                    shard: shard.clone(),
                    reason: e.to_string(),
                })?;
        }
        for t in &self.tenants {
            if !text_ok(&t.tenant) || !text_ok(&t.tenant_id) {
                return Err(PlanValueError::BadTenant);
            }
            if !tenants.insert(t.tenant.to_ascii_lowercase())
                || !tenant_ids.insert(t.tenant_id.to_ascii_lowercase())
            {
                return Err(PlanValueError::DuplicateTenant {
                    tenant: t.tenant.clone(),
                });
            }
            let mut users = HashSet::new();
            for u in &t.users {
                if !text_ok(&u.user_id) || u.user_principal_name.len() > 1024 {
                    return Err(PlanValueError::BadUser);
                }
                if !users.insert(u.user_id.to_ascii_lowercase()) {
                    return Err(PlanValueError::DuplicateUser {
                        user_id: u.user_id.clone(),
                        user_principal_name: u.user_principal_name.clone(),
                        tenant: t.tenant.clone(),
                    });
                }
                if u.fingerprint.len() != 64
                    || !u.fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(PlanValueError::BadFingerprint {
                        user_id: u.user_id.clone(),
                    });
                }
                if let Action::ResetPassword { password, .. } = &u.action {
                    let user_id = || u.user_id.clone();
                    match password {
                        PasswordSource::Generate { length } if !(8..=256).contains(length) => {
                            return Err(PlanValueError::GeneratedLength {
                                user_id: user_id(),
                                length: *length,
                            })
                        }
                        PasswordSource::Env { var } if !text_ok(var) => {
                            return Err(PlanValueError::BadEnvVar { user_id: user_id() })
                        }
                        PasswordSource::File { path } if path.as_os_str().is_empty() => {
                            return Err(PlanValueError::EmptyPasswordFile { user_id: user_id() })
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads a saved plan (`plan --out FILE`) for `apply FILE`. The version is checked first, so that
/// a plan of another format version gets a clear error instead of a field-level complaint; then
/// the shape (unknown fields refused), the content hash (an edited plan is refused) and the values
/// (`Plan::check_values`: duplicates, bounds). The content hash catches edits, not forgery (it
/// can be recomputed): the apply command then derives the plan again from the desired-state
/// files it records ([`super::MadeFrom`]) and live state, and applies it only if it is the same
/// ([`super::compare()`]).
pub fn parse_saved(text: &str) -> Result<Plan, PlanFileError> {
    #[derive(Deserialize)]
    struct Probe {
        format_version: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_str(text).map_err(PlanFileError::Syntax)?;
    match probe.format_version {
        None => return Err(PlanFileError::MissingVersion),
        Some(serde_json::Value::String(v)) if v == FORMAT_VERSION => {}
        Some(serde_json::Value::String(v)) => {
            return Err(PlanFileError::UnsupportedVersion { found: v })
        }
        Some(other) => {
            return Err(PlanFileError::UnsupportedVersion {
                found: other.to_string(),
            })
        }
    }
    let plan: Plan = serde_json::from_str(text).map_err(PlanFileError::Invalid)?;
    let Some(recorded) = plan.content_hash.clone() else {
        return Err(PlanFileError::MissingHash);
    };
    let actual = content_hash(&plan);
    if recorded != actual {
        return Err(PlanFileError::Modified { recorded, actual });
    }
    plan.check_values().map_err(PlanFileError::OutOfSchema)?;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed errors say what the untyped ones said, word for word.
    #[test]
    fn value_errors_keep_their_messages() {
        let cases = [
            (
                PlanValueError::DuplicateUser {
                    user_id: "id-a".into(),
                    user_principal_name: "a@contoso.com".into(),
                    tenant: "contoso.com".into(),
                },
                "user id-a (a@contoso.com) is listed more than once in tenant contoso.com",
            ),
            (
                PlanValueError::BadShard {
                    shard: "3/2".into(),
                    reason: "too big".into(),
                },
                "the recorded --shard \"3/2\": too big",
            ),
            (
                PlanValueError::BadFileHash {
                    path: "d.yaml".into(),
                },
                "the sha256 of d.yaml is not `sha256:` and 64 hex digits",
            ),
            (
                PlanValueError::GeneratedLength {
                    user_id: "id-a".into(),
                    length: 3,
                },
                "user id-a: a generated password must be 8 to 256 characters, not 3",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
        assert_eq!(
            PlanFileError::OutOfSchema(PlanValueError::NoDesiredFile).to_string(),
            "invalid pwdrift plan: made_from.files is empty: the plan records no desired-state \
             file; re-plan (`pwdrift plan --out FILE`)"
        );
    }
}
