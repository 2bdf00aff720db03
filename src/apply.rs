//! Step 5 of the pipeline: carry out a plan through the Graph client, then verify by reading back.
//!
//! Order of work:
//! 1. For the whole plan, every password source (generate, env, file) is resolved *before*
//!    anything is written ([`ResolvedPasswords`]): a missing variable or unreadable file in any
//!    tenant fails the run with nothing changed.
//! 2. Per tenant, flag changes go out as `PATCH /users/{id}` inside `$batch` requests of 20, and
//!    cloud-user resets as single non-idempotent PATCHes; both force flags are always explicit (an
//!    omitted flag next to a password may default to true in Graph). Synced users are reset
//!    through the delegated-only resetPassword API and the long-running operation is polled
//!    through its `Location` to a terminal status.
//! 3. A reset whose response was lost (transport error) is not sent again blindly: the user's
//!    `lastPasswordChangeDateTime` is read first, and the reset is repeated only if it did not land.
//! 4. Every changed user is read back ([`crate::verify`]); only a verified change counts as done.
//!
//! Generated passwords are written only to the `--secrets-out` file the user named (created
//! 0600); nothing else ever sees them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::PasswordSource;
use crate::graph::client::{GraphClient, GraphError};
use crate::graph::model::{ForceFlags, PasswordProfile};
use crate::plan::{Action, Plan, ResetMethod, TenantPlan, UserPlan};
use crate::verify::{self, Verdict};

/// Version of the `--report` document.
pub const REPORT_FORMAT_VERSION: &str = "1";

/// Largest `password: {file: ...}` read (a password is at most 256 characters).
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// The Graph clients of one tenant: app-only for reads and PATCH, and a delegated one when the
/// run has a delegated sign-in (needed by resetPassword).
pub struct TenantClients {
    pub app: GraphClient,
    pub delegated: Option<GraphClient>,
}

/// Outcome of one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// written and read back as planned
    Verified,
    /// the write failed (Graph error), or was accepted but did not show on read-back
    Failed,
    /// blocked in the plan; nothing written
    Blocked,
    /// nothing to do
    Unchanged,
}

/// One line of the `--report` document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserResult {
    pub tenant: String,
    pub user_id: String,
    pub user_principal_name: String,
    /// `set_flags`, `reset_password`, `blocked` or `no_change`
    pub action: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The `--report` document: what happened to every user of the plan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApplyReport {
    pub format_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub users: Vec<UserResult>,
}

impl ApplyReport {
    pub fn count(&self, status: Status) -> usize {
        self.users.iter().filter(|u| u.status == status).count()
    }

    /// True when every planned change was applied and verified.
    pub fn all_verified(&self) -> bool {
        self.count(Status::Failed) == 0
    }
}

/// Errors that stop an apply before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{count} password(s) would be generated but nowhere to put them: pass --secrets-out FILE (created with mode 0600)")]
    SecretsOutRequired { count: usize },
    #[error("--secrets-out {path}: {reason}")]
    SecretsOut { path: PathBuf, reason: String },
    #[error("password for {user}: environment variable {var} is not set")]
    MissingEnv { user: String, var: String },
    #[error("password for {user}: cannot read {path}: {reason}")]
    PasswordFile {
        user: String,
        path: PathBuf,
        reason: String,
    },
    #[error("password for {user} from {source_name} does not meet Entra's rules: {weakness}")]
    WeakPassword {
        user: String,
        source_name: String,
        weakness: crate::password::Weakness,
    },
}

/// Where generated passwords go: the file the user named, opened for append with mode 0600.
pub struct SecretsSink {
    path: PathBuf,
    file: std::fs::File,
}

impl SecretsSink {
    /// Opens (or creates, 0600) the secrets file. An existing file readable or writable by group
    /// or others is refused: the secrets must not land somewhere others can read.
    pub fn open(path: &Path) -> Result<Self, ApplyError> {
        let err = |reason: String| ApplyError::SecretsOut {
            path: path.to_owned(),
            reason,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_file() {
                    return Err(err("exists and is not a regular file".into()));
                }
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(err(format!(
                        "exists with mode {mode:o}, readable by others; refusing (chmod 600 it or choose a new file)"
                    )));
                }
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(e.to_string()))?;
            Ok(SecretsSink {
                path: path.to_owned(),
                file,
            })
        }
        #[cfg(not(unix))]
        {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| err(e.to_string()))?;
            Ok(SecretsSink {
                path: path.to_owned(),
                file,
            })
        }
    }

    /// Appends one JSON line `{tenant, userId, userPrincipalName, password}`.
    fn write(
        &mut self,
        tenant: &str,
        user: &UserPlan,
        password: &SecretString,
    ) -> std::io::Result<()> {
        let line = serde_json::json!({
            "tenant": tenant,
            "userId": user.user_id,
            "userPrincipalName": user.user_principal_name,
            "password": password.expose_secret(),
        });
        writeln!(self.file, "{line}")?;
        self.file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A reset's password, resolved before anything is written. `None` = system-generated.
struct ResolvedReset {
    password: Option<SecretString>,
    generated: bool,
}

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
    Ok(match source {
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
    })
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

    fn get(&self, tenant: &TenantPlan, user: &UserPlan) -> Option<&ResolvedReset> {
        self.0.get(&(tenant.tenant.clone(), user.user_id.clone()))
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::NoChange { .. } => "no_change",
        Action::SetFlags { .. } => "set_flags",
        Action::ResetPassword { .. } => "reset_password",
        Action::Blocked { .. } => "blocked",
    }
}

fn result(t: &TenantPlan, u: &UserPlan, status: Status, detail: Option<String>) -> UserResult {
    UserResult {
        tenant: t.tenant.clone(),
        user_id: u.user_id.clone(),
        user_principal_name: u.user_principal_name.clone(),
        action: action_name(&u.action).to_owned(),
        status,
        detail,
        hint: None,
    }
}

fn profile(flags: ForceFlags, password: Option<SecretString>) -> PasswordProfile {
    PasswordProfile {
        force_change_password_next_sign_in: Some(flags.force_change_password_next_sign_in),
        force_change_password_next_sign_in_with_mfa: Some(
            flags.force_change_password_next_sign_in_with_mfa,
        ),
        password,
        odata_type: None,
    }
}

/// Progress callback: called once per user when its write finished (ok or not).
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// Applies one tenant's part of a plan and verifies it, with the passwords resolved for the whole
/// plan beforehand.
pub async fn apply_tenant(
    clients: &TenantClients,
    tenant: &TenantPlan,
    passwords: &ResolvedPasswords,
    secrets: &mut Option<SecretsSink>,
    progress: Progress<'_>,
) -> Result<Vec<UserResult>, ApplyError> {
    let started = Utc::now();
    let name = tenant.tenant.as_str();

    // Passwords were resolved before anything was written; a generated one must have somewhere
    // to go.
    let generated = tenant
        .users
        .iter()
        .filter(|u| passwords.get(tenant, u).is_some_and(|r| r.generated))
        .count();
    if generated > 0 && secrets.is_none() {
        return Err(ApplyError::SecretsOutRequired { count: generated });
    }
    let resolved = |u: &UserPlan| {
        passwords
            .get(tenant, u)
            .expect("every reset of the plan was resolved")
    };

    let mut results: Vec<UserResult> = Vec::new();
    let mut written: Vec<&UserPlan> = Vec::new();

    // 2a. PATCHes: flags, and resets of cloud users
    let mut flag_patches = Vec::new();
    let mut reset_patches: Vec<&UserPlan> = Vec::new();
    let mut api_resets: Vec<&UserPlan> = Vec::new();
    for u in &tenant.users {
        match &u.action {
            Action::NoChange { .. } => results.push(result(tenant, u, Status::Unchanged, None)),
            Action::Blocked { detail, .. } => {
                results.push(result(tenant, u, Status::Blocked, Some(detail.clone())))
            }
            Action::SetFlags { after, .. } => {
                flag_patches.push((u.user_id.clone(), profile(*after, None)))
            }
            Action::ResetPassword {
                method: ResetMethod::PatchPasswordProfile,
                ..
            } => reset_patches.push(u),
            Action::ResetPassword {
                method: ResetMethod::ResetPasswordApi,
                ..
            } => api_resets.push(u),
        }
    }
    let by_id: HashMap<&str, &UserPlan> = tenant
        .users
        .iter()
        .map(|u| (u.user_id.as_str(), u))
        .collect();

    if !flag_patches.is_empty() {
        for (id, outcome) in clients
            .app
            .patch_password_profiles(name, flag_patches)
            .await
        {
            let u = by_id[id.as_str()];
            progress(&u.user_principal_name);
            match outcome {
                Ok(()) => written.push(u),
                Err(e) => results.push(result(tenant, u, Status::Failed, Some(e.to_string()))),
            }
        }
    }

    // 2b. resets by PATCH, each checked for a lost response before any repeat
    for u in reset_patches {
        let Action::ResetPassword { after, .. } = &u.action else {
            unreachable!()
        };
        let pw = resolved(u)
            .password
            .clone()
            .expect("a PATCH reset has a password (systemGenerated goes through the API)");
        let outcome = patch_reset_once(clients, name, u, *after, pw.clone(), started).await;
        progress(&u.user_principal_name);
        match outcome {
            Ok(()) => {
                let generated = resolved(u).generated.then_some(pw);
                match store_secret(secrets, tenant, u, generated) {
                    Some(failure) => results.push(failure),
                    None => written.push(u),
                }
            }
            Err(e) => results.push(result(tenant, u, Status::Failed, Some(e.to_string()))),
        }
    }

    // 2c. resets through the delegated-only resetPassword API (synced users)
    for u in api_resets {
        progress(&u.user_principal_name);
        let Some(delegated) = clients.delegated.as_ref() else {
            results.push(result(
                tenant,
                u,
                Status::Failed,
                Some("resetPassword needs a delegated sign-in (--delegated)".into()),
            ));
            continue;
        };
        let resolved = resolved(u);
        let outcome = api_reset(delegated, name, u, resolved.password.clone()).await;
        // resetPassword itself only forces `forceChangePasswordNextSignIn`; when the plan also
        // wants the MFA variant, it goes out as a flags PATCH after the reset succeeded.
        if let (Ok(_), Action::ResetPassword { after, .. }) = (&outcome, &u.action) {
            if after.force_change_password_next_sign_in_with_mfa {
                if let Err(e) = clients
                    .app
                    .patch_password_profile_once(name, &u.user_id, profile(*after, None))
                    .await
                {
                    // The password was reset: keep going so a generated password still reaches
                    // --secrets-out; read-back verification reports the missing flag.
                    tracing::warn!(user = %u.user_principal_name, "flags after resetPassword: {e}");
                }
            }
        }
        match outcome {
            Ok(generated_by_service) => {
                let to_store = generated_by_service.or_else(|| {
                    resolved
                        .generated
                        .then(|| resolved.password.clone())
                        .flatten()
                });
                match store_secret(secrets, tenant, u, to_store) {
                    Some(failure) => results.push(failure),
                    None => written.push(u),
                }
            }
            Err(e) => results.push(result(tenant, u, Status::Failed, Some(e.to_string()))),
        }
    }

    // 3. verify by reading back
    if !written.is_empty() {
        let ids: Vec<String> = written.iter().map(|u| u.user_id.clone()).collect();
        let live = match crate::live::read_users_by_id(&clients.app, name, &ids).await {
            Ok(live) => live,
            Err(e) => {
                for u in written {
                    results.push(result(
                        tenant,
                        u,
                        Status::Failed,
                        Some(format!(
                            "written, but could not be read back to verify: {e}"
                        )),
                    ));
                }
                return Ok(sort(results, tenant));
            }
        };
        for u in written {
            match verify::check(&u.action, live.get(&u.user_id), started) {
                Verdict::Verified => results.push(result(tenant, u, Status::Verified, None)),
                Verdict::Missing => results.push(result(
                    tenant,
                    u,
                    Status::Failed,
                    Some("the user could not be read back".into()),
                )),
                Verdict::Mismatch { detail, hint } => {
                    let mut r = result(tenant, u, Status::Failed, Some(detail));
                    r.hint = Some(hint);
                    results.push(r);
                }
            }
        }
    }
    Ok(sort(results, tenant))
}

/// Writes a password that was just set (generated by pwdrift or by Microsoft) to the secrets
/// file. `Some(result)` when it could not be written: the reset happened, but the password is
/// lost, which the report must say.
fn store_secret(
    secrets: &mut Option<SecretsSink>,
    tenant: &TenantPlan,
    user: &UserPlan,
    password: Option<SecretString>,
) -> Option<UserResult> {
    let (Some(pw), Some(sink)) = (password, secrets.as_mut()) else {
        return None;
    };
    let e = sink.write(&tenant.tenant, user, &pw).err()?;
    Some(result(
        tenant,
        user,
        Status::Failed,
        Some(format!(
            "password was reset but could not be written to {}: {e}",
            sink.path().display()
        )),
    ))
}

fn sort(mut results: Vec<UserResult>, tenant: &TenantPlan) -> Vec<UserResult> {
    let order: HashMap<&str, usize> = tenant
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (u.user_id.as_str(), i))
        .collect();
    results.sort_by_key(|r| order.get(r.user_id.as_str()).copied().unwrap_or(usize::MAX));
    results
}

/// PATCHes a new password. If the response is lost (transport error after sending), reads the
/// user back and repeats the reset only when `lastPasswordChangeDateTime` shows it did not land.
async fn patch_reset_once(
    clients: &TenantClients,
    tenant: &str,
    user: &UserPlan,
    after: ForceFlags,
    password: SecretString,
    started: DateTime<Utc>,
) -> Result<(), GraphError> {
    let first = clients
        .app
        .patch_password_profile_once(
            tenant,
            &user.user_id,
            profile(after, Some(password.clone())),
        )
        .await;
    match first {
        Err(e) if e.outcome_unknown() => {
            tracing::warn!(user = %user.user_principal_name, "reset response lost; reading the user back before any repeat");
            let live = crate::live::read_users_by_id(
                &clients.app,
                tenant,
                std::slice::from_ref(&user.user_id),
            )
            .await?;
            let landed = live
                .get(&user.user_id)
                .and_then(|l| l.last_password_change)
                .is_some_and(|t| t.timestamp() >= started.timestamp());
            if landed {
                Ok(())
            } else {
                clients
                    .app
                    .patch_password_profile_once(
                        tenant,
                        &user.user_id,
                        profile(after, Some(password)),
                    )
                    .await
            }
        }
        other => other,
    }
}

/// Calls resetPassword and polls the operation to a terminal status. Returns the password the
/// service generated, if it generated one.
async fn api_reset(
    client: &GraphClient,
    tenant: &str,
    user: &UserPlan,
    password: Option<SecretString>,
) -> Result<Option<SecretString>, GraphError> {
    let outcome = client
        .reset_password(tenant, &user.user_id, password)
        .await?;
    let op = client
        .poll_operation(
            tenant,
            &outcome.location,
            std::time::Duration::from_secs(300),
        )
        .await?;
    if op.status != crate::graph::model::OperationStatus::Succeeded {
        return Err(GraphError::Http {
            status: 200,
            code: "passwordResetOperationFailed".to_owned(),
            message: format!(
                "the resetPassword operation ended {:?}{}",
                op.status,
                op.status_detail
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            request_id: None,
        });
    }
    Ok(outcome.generated_password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn secrets_file_is_created_0600_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("new.jsonl");
        SecretsSink::open(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // an existing 0600 file is reused (appended to)
        SecretsSink::open(&fresh).unwrap();

        let wide = dir.path().join("wide.jsonl");
        std::fs::write(&wide, "").unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretsSink::open(&wide).err().expect("refused");
        assert!(err.to_string().contains("644"), "{err}");
    }

    #[test]
    fn password_sources_resolve_before_writing() {
        let user = UserPlan {
            user_id: "u".into(),
            user_principal_name: "u@contoso.com".into(),
            declared_at: vec![],
            fingerprint: String::new(),
            allow_privileged: false,
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
