//! The plan: what pwdrift would change, per user, and why. Output of [`crate::diff`], input of
//! [`crate::render`] and [`crate::apply`].
//!
//! A plan is a versioned document (`format_version`), saved with `plan --out FILE` and applied with
//! `apply FILE`. It never holds a secret: a password change records only where the password will
//! come from ([`crate::config::PasswordSource`]); generated passwords are made at apply time. Each
//! user carries the fingerprint of the live state the change was computed from, so that a stale
//! plan is refused.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Origin, PasswordSource};
use crate::graph::model::ForceFlags;

/// Version of the plan document format. Bump on incompatible change.
pub const FORMAT_VERSION: &str = "1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    /// the pwdrift version that made the plan
    pub pwdrift_version: String,
    pub created_at: DateTime<Utc>,
    pub tenants: Vec<TenantPlan>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantPlan {
    /// the tenant as named in desired state
    pub tenant: String,
    pub tenant_id: String,
    pub users: Vec<UserPlan>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserPlan {
    pub user_id: String,
    pub user_principal_name: String,
    pub declared_at: Vec<Origin>,
    /// [`crate::live::LiveUser::fingerprint`] of the state this entry was computed from
    pub fingerprint: String,
    pub action: Action,
}

/// How a password is reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetMethod {
    /// `PATCH /users/{id}` with `passwordProfile.password` (cloud-only users, app or delegated)
    PatchPasswordProfile,
    /// `POST .../authentication/methods/{id}/resetPassword` (synced users; delegated only)
    ResetPasswordApi,
}

/// Why a change cannot be made in this run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocker {
    /// resetPassword is delegated-only and no delegated credential was given
    NeedsDelegatedCredential,
    /// the user holds a privileged directory role and the directive lacks `allowPrivileged`
    PrivilegedTarget,
    /// resetPassword cannot be performed on the caller's own account
    CallersOwnAccount,
    /// the password source cannot be used for this user (e.g. system-generated for a synced user)
    UnsupportedPasswordSource,
}

/// What happens to one user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Live state already matches desired state.
    NoChange { reason: String },
    /// PATCH the two force flags (both always sent explicitly), no password.
    SetFlags {
        before: ForceFlags,
        after: ForceFlags,
        reason: String,
    },
    /// Reset the password, then leave the flags at `after`.
    ResetPassword {
        method: ResetMethod,
        password: PasswordSource,
        before: ForceFlags,
        after: ForceFlags,
        reason: String,
    },
    /// A change is wanted but cannot be made; nothing is written for this user.
    Blocked { blocker: Blocker, detail: String },
}

impl Action {
    pub fn is_change(&self) -> bool {
        matches!(self, Action::SetFlags { .. } | Action::ResetPassword { .. })
    }
}

/// Counts of a plan, for the summary line and `--detailed-exitcode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub unchanged: usize,
    pub set_flags: usize,
    pub reset_password: usize,
    pub blocked: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for u in self.tenants.iter().flat_map(|t| &t.users) {
            match u.action {
                Action::NoChange { .. } => s.unchanged += 1,
                Action::SetFlags { .. } => s.set_flags += 1,
                Action::ResetPassword { .. } => s.reset_password += 1,
                Action::Blocked { .. } => s.blocked += 1,
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.tenants
            .iter()
            .flat_map(|t| &t.users)
            .any(|u| u.action.is_change())
    }
}
