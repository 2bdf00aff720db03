//! The validated desired state: the types the rest of the pipeline consumes.
//!
//! Nothing here can be built from unchecked input except through the validator: identifiers are
//! parsed ([`UserRef`], [`GroupRef`], [`TenantRef`]), timestamps carry a zone (they are UTC
//! instants), and passwords are only ever *sources* ([`PasswordSource`]), never literals.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where something was declared: file, 1-based line and column.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct Origin {
    /// the desired-state file, as given on the command line (or found below a given directory)
    // shared by every origin in that file: a large file declares a million users
    pub file: Arc<Path>,
    /// 1-based line
    pub line: usize,
    /// 1-based column
    pub column: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // a file name is shown escaped (a newline or an escape sequence in it)
        let file = self.file.display().to_string();
        let file = crate::escape::Shown(&file);
        write!(f, "{file}:{}:{}", self.line, self.column)
    }
}

/// A tenant: its primary/verified domain or its tenant id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum TenantRef {
    /// e.g. `contoso.onmicrosoft.com` (stored lower-case)
    Domain(String),
    /// the tenant id (a GUID, stored lower-case hyphenated)
    Id(String),
}

impl TenantRef {
    pub fn as_str(&self) -> &str {
        match self {
            TenantRef::Domain(s) | TenantRef::Id(s) => s,
        }
    }
}

impl std::fmt::Display for TenantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a user is named in desired state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum UserRef {
    /// userPrincipalName, stored lower-case (UPNs compare case-insensitively)
    Upn(String),
    /// object id, lower-case hyphenated GUID
    ObjectId(String),
    /// on-premises security identifier (`S-1-5-21-...`), upper-case `S`
    Sid(String),
}

impl UserRef {
    pub fn as_str(&self) -> &str {
        match self {
            UserRef::Upn(s) | UserRef::ObjectId(s) | UserRef::Sid(s) => s,
        }
    }
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a group is named in desired state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum GroupRef {
    /// object id, lower-case hyphenated GUID
    ObjectId(String),
    /// display name (exact; must resolve to exactly one group)
    DisplayName(String),
}

impl std::fmt::Display for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupRef::ObjectId(s) | GroupRef::DisplayName(s) => f.write_str(s),
        }
    }
}

/// One-shot: the user must change the password once, at or after `since`.
///
/// Met when `lastPasswordChangeDateTime >= since`, or when the matching force flag is already set.
/// Because Graph clears the force flags after the user changes the password, this (unlike a literal
/// `forceChangePasswordNextSignIn: true`) never forces a user who complied a second time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequirePasswordChange {
    pub since: DateTime<Utc>,
    /// use `forceChangePasswordNextSignInWithMfa` instead of `forceChangePasswordNextSignIn`
    pub with_mfa: bool,
}

/// Where the new password of a reset comes from. Never a literal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PasswordSource {
    /// Generated at apply time from the OS CSPRNG, `length` characters (8..=256).
    Generate {
        /// number of characters
        length: u16,
    },
    /// Read from this environment variable at apply time.
    Env {
        /// the variable's name (never its value)
        var: String,
    },
    /// Read from this file at apply time (trailing newline stripped); path relative to the
    /// declaring file is resolved at load time.
    File {
        /// the file's path (never its content)
        path: PathBuf,
    },
    /// Let Microsoft generate it (resetPassword API only; cloud-only users).
    SystemGenerated,
}

/// Reset the password once: met when `lastPasswordChangeDateTime >= not_before`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetPassword {
    pub not_before: DateTime<Utc>,
    pub password: PasswordSource,
    /// after the reset, require the user to change the password at next sign-in
    pub force_change_after: bool,
    /// ... and to perform MFA first (`forceChangePasswordNextSignInWithMfa`)
    pub force_change_after_with_mfa: bool,
}

/// What desired state says about one user (or every member of a group). All optional; the
/// validator has already rejected contradictory combinations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directives {
    /// literal: the live `forceChangePasswordNextSignIn` must equal this
    pub force_change_password_next_sign_in: Option<bool>,
    /// literal: the live `forceChangePasswordNextSignInWithMfa` must equal this
    pub force_change_password_next_sign_in_with_mfa: Option<bool>,
    pub require_password_change: Option<RequirePasswordChange>,
    pub reset_password: Option<ResetPassword>,
    /// permit changes to users holding privileged directory roles
    pub allow_privileged: bool,
}

impl Directives {
    /// True when no directive is set (the entry only declares the user as managed).
    pub fn is_empty(&self) -> bool {
        self.force_change_password_next_sign_in.is_none()
            && self.force_change_password_next_sign_in_with_mfa.is_none()
            && self.require_password_change.is_none()
            && self.reset_password.is_none()
    }
}

/// A user declared by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub user: UserRef,
    pub directives: Directives,
    pub origin: Origin,
}

/// A group: its directives apply to all transitive user members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub group: GroupRef,
    pub directives: Directives,
    pub origin: Origin,
}

/// An Identity Protection risk level a `riskyUsers` selector names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RiskLevel {
    High,
    Medium,
    Low,
}

impl RiskLevel {
    /// As Graph spells it (`riskLevel`).
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::High => "high",
            RiskLevel::Medium => "medium",
            RiskLevel::Low => "low",
        }
    }
}

/// Which users a selector entry selects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum Selection {
    /// `all: true`: every member user of the tenant (guests never)
    All,
    /// `filter`: an OData `$filter` on users, sent to Graph exactly as written
    Filter(String),
    /// `riskyUsers`: users Identity Protection reports at exactly this level, `atRisk`
    RiskyUsers(RiskLevel),
}

/// A selector: its directives apply to every user it selects (like a group's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectorEntry {
    pub select: Selection,
    pub directives: Directives,
    /// where the `all`, `filter` or `riskyUsers` key's value is
    pub origin: Origin,
}

/// Who an `exclude` entry names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "camelCase")]
pub enum Excluded {
    User(UserRef),
    Group(GroupRef),
}

/// An `exclude` entry: users who never get a change from any entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExcludeEntry {
    pub who: Excluded,
    pub origin: Origin,
}

/// Desired state for one tenant, merged across every file that names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDesired {
    pub tenant: TenantRef,
    pub users: Vec<UserEntry>,
    pub groups: Vec<GroupEntry>,
    /// `selectors:` entries, in file order
    #[serde(default)]
    pub selectors: Vec<SelectorEntry>,
    /// `exclude:` entries, in file order
    #[serde(default)]
    pub exclude: Vec<ExcludeEntry>,
    /// the files that declare this tenant
    pub files: Vec<PathBuf>,
}

/// The whole validated desired state: tenants in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub tenants: Vec<TenantDesired>,
    /// every file that was loaded
    pub files: Vec<PathBuf>,
}
