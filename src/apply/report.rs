//! What an apply says happened: each user's [`Status`] and [`UserResult`], the `--report`
//! document ([`ApplyReport`]), and the helpers that build a user's result from its plan.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::{Action, TenantPlan, UserPlan};

/// Version of the `--report` document.
pub const REPORT_FORMAT_VERSION: &str = "1";

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
    /// the write was sent but whether it took effect could not be told (its entry in the secrets
    /// file stays pending: the next run with `--secrets-append` resolves it); needs attention
    Unknown,
    /// not written: the run was interrupted (SIGINT/SIGTERM) before this change was started
    NotStarted,
    /// the password was reset, but the success answer did not carry the system-generated
    /// password: the user has a password nobody knows (recorded `password_unknown` in the secrets
    /// file); needs a new reset
    PasswordUnknown,
    /// not written: re-read right before its password write, the user's password had changed
    /// after the plan read it (another run, or someone else, changed it); not a failure: plan
    /// again to see whether a change is still wanted
    Skipped,
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
}

/// The hint of a user whose write's outcome is unknown.
pub(super) const UNKNOWN_HINT: &str =
    "run apply again with --secrets-append and the same --secrets-out \
     file: it resolves this entry (reads the user back) before planning anything else";

/// The hint of a user whose reset left a password nobody knows.
pub(super) const PASSWORD_UNKNOWN_HINT: &str =
    "reset the user again with a password pwdrift generates and records before sending \
     (`password: { generate: { length: 20 } }`, and a later `notBefore`)";

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::NoChange { .. } => "no_change",
        Action::SetFlags { .. } => "set_flags",
        Action::ResetPassword { .. } => "reset_password",
        Action::Blocked { .. } => "blocked",
    }
}

/// The result of user `u` of tenant `t` (no hint; the caller adds one where it helps).
pub(super) fn result(
    t: &TenantPlan,
    u: &UserPlan,
    status: Status,
    detail: Option<String>,
) -> UserResult {
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

/// A change the run did not start because it was interrupted first.
pub(super) fn not_started(tenant: &TenantPlan, u: &UserPlan) -> UserResult {
    result(
        tenant,
        u,
        Status::NotStarted,
        Some("not written: the run was interrupted".into()),
    )
}
