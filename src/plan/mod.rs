//! The plan: what pwdrift would change, per user, and why. Output of [`crate::diff`], input of
//! [`crate::render`] and [`crate::apply`].
//!
//! A plan is a versioned document (`format_version`), saved with `plan --out FILE` and applied with
//! `apply FILE`. It never holds a secret: a password change records only where the password will
//! come from ([`crate::config::PasswordSource`]); generated passwords are made at apply time. Each
//! user carries the fingerprint of the live state the change was computed from, so that a stale
//! plan is refused.
//!
//! The JSON Schema of the document (`pwdrift schema plan`, `schemas/pwdrift-plan.schema.json`) is
//! generated from these types; their doc comments are its descriptions, so they are written for
//! the reader of a saved plan, not only for Rust callers.
//!
//! This module holds the types; `saved` reads a saved plan back (version, shape, content hash,
//! values) and computes its content hash; `compare` tells how a saved plan differs from the plan
//! derived again at apply time.

mod compare;
mod saved;

pub use compare::{compare, Mismatch};
pub use saved::{content_hash, parse_saved, PlanFileError, PlanValueError};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Origin, PasswordSource};
use crate::graph::model::ForceFlags;

/// Version of the plan document format. Bump on incompatible change.
pub const FORMAT_VERSION: &str = "4";

/// A pwdrift plan: per tenant and per managed user, what `pwdrift apply` would do and why.
/// Contains no secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "pwdrift plan")]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Version of this document format. pwdrift refuses to apply a plan whose version it does not
    /// know. Currently "4" (version 2 added `content_hash` and `allow_privileged`; version 3
    /// added `made_from`; version 4 added each tenant's `decided_at` and `clock`).
    #[schemars(extend("const" = FORMAT_VERSION))]
    pub format_version: String,
    /// The pwdrift version that made the plan.
    pub pwdrift_version: String,
    /// When the plan was computed (UTC), on Graph's clock: the latest `decided_at` of its
    /// tenants (the local clock only when Graph's answers carried no `Date` header, or the plan
    /// has no tenant). Each tenant's directives were decided by its own `decided_at`.
    pub created_at: DateTime<Utc>,
    /// What the plan was made from: the desired-state files (with their SHA-256) and the
    /// filters. `pwdrift apply FILE` re-loads these files, refuses if any is missing or changed,
    /// plans again against live state with the same filters, and refuses unless it gets the same
    /// plan: the reviewed desired state, not this document, is what is trusted.
    pub made_from: MadeFrom,
    /// One entry per tenant, in the order the tenants were given.
    pub tenants: Vec<TenantPlan>,
    /// `sha256:` and the hex SHA-256 of this document as pwdrift writes it (compact JSON, keys
    /// in this order) without this field. Written by `plan --out` and `--format json`;
    /// `pwdrift apply FILE` refuses a plan whose content no longer has this hash (it was edited:
    /// re-plan instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
}

/// The inputs of a plan, recorded so that `pwdrift apply FILE` can derive the plan again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MadeFrom {
    /// Every desired-state file loaded, in load order. A relative path is relative to the
    /// directory `pwdrift plan` ran in; `pwdrift apply FILE` must run in the same directory (the
    /// same checkout).
    pub files: Vec<DesiredFile>,
    /// The `--tenant` values given to `pwdrift plan` (none: every tenant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// The `--target` values given to `pwdrift plan` (none: every user).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// The `--shard I/N` given to `pwdrift plan`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

/// One desired-state file a plan was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DesiredFile {
    /// The path as it was loaded (relative to the directory `pwdrift plan` ran in, unless
    /// absolute).
    pub path: std::path::PathBuf,
    /// `sha256:` and the hex SHA-256 of the file's bytes when the plan was made.
    pub sha256: String,
}

/// The plan for one tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPlan {
    /// The tenant as named in desired state (domain or tenant id).
    pub tenant: String,
    /// The resolved tenant id (GUID).
    pub tenant_id: String,
    /// The instant every date of this tenant's directives was decided by (UTC): directives not
    /// yet due (`since` or `notBefore` after it) were treated as no change. Graph's time, taken
    /// from the `Date` header of its answers while live state was read (see `clock`), never
    /// the clock of the machine that made the plan.
    pub decided_at: DateTime<Utc>,
    /// Whose clock `decided_at` is: `graph` (the `Date` header of Graph's answers) or `local`
    /// (Graph's answers carried no `Date` header, so the local clock was used, with a warning).
    pub clock: ClockSource,
    /// Every managed user of the tenant, ordered by userPrincipalName (then object id), including
    /// the users with no change.
    pub users: Vec<UserPlan>,
    /// What pwdrift could not see in this tenant or assumed about it (e.g. no licence for
    /// Privileged Identity Management, so no one can be an eligible administrator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// How many users an entry reached that `exclude` took out of the plan (they get no change
    /// and are not listed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub excluded: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Whose clock a tenant's plan was decided by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClockSource {
    /// Graph's: the `Date` header of its answers while live state was read.
    Graph,
    /// The local clock of the machine that made the plan: Graph's answers carried no `Date`
    /// header.
    Local,
}

/// The plan for one managed user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPlan {
    /// Object id of the user in Entra ID.
    pub user_id: String,
    /// The user's userPrincipalName as read from Graph.
    pub user_principal_name: String,
    /// Every place in desired state that applies to this user (its own entry and the entries of
    /// the groups it is a transitive member of).
    pub declared_at: Vec<Origin>,
    /// SHA-256 (hex) of the live state this entry was computed from. `pwdrift apply FILE`
    /// refuses the plan ("stale plan") when a user's live state no longer has this fingerprint.
    pub fingerprint: String,
    /// Whether the desired state declared `allowPrivileged` for this user. `pwdrift apply FILE`
    /// re-reads the user's directory roles and refuses any change to a user who now holds a
    /// privileged role unless this is true.
    #[serde(default)]
    pub allow_privileged: bool,
    /// The user is synced from on-premises Active Directory (`onPremisesSyncEnabled`): where
    /// the tenant is declared to accept its flag changes, `pwdrift apply` stops sending them
    /// after the first refusal. Absent: a cloud user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub synced: bool,
    /// The user's `lastPasswordChangeDateTime` as read from Graph when this entry was computed
    /// (absent: Graph gave none). Right before a password write, `pwdrift apply` reads the user
    /// again and skips the write when the password changed after this (another run, or someone
    /// else, changed it since the plan read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_password_change: Option<DateTime<Utc>>,
    /// What happens to the user.
    pub action: Action,
}

/// How a password is reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetMethod {
    /// `PATCH /users/{id}` with `passwordProfile.password` and both force flags (cloud-only
    /// users, application or delegated caller).
    PatchPasswordProfile,
    /// `POST /users/{id}/authentication/methods/{passwordMethodId}/resetPassword` (synced users,
    /// and system-generated passwords; delegated credential only). Always makes the user change
    /// the password at next sign-in; other flags are set by a PATCH after it (see `after`).
    ResetPasswordApi,
}

impl ResetMethod {
    /// Short name, for tables.
    pub fn label(self) -> &'static str {
        match self {
            ResetMethod::PatchPasswordProfile => "PATCH passwordProfile",
            ResetMethod::ResetPasswordApi => "resetPassword API",
        }
    }

    /// The request, for humans.
    pub fn describe(self) -> &'static str {
        match self {
            ResetMethod::PatchPasswordProfile => "PATCH /users/{id} passwordProfile",
            ResetMethod::ResetPasswordApi => {
                "POST /users/{id}/authentication/methods/{passwordMethodId}/resetPassword"
            }
        }
    }
}

/// Why a change cannot be made in this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Blocker {
    /// The reset needs the resetPassword API, which is delegated-only, and no delegated
    /// credential was given.
    NeedsDelegatedCredential,
    /// The user holds a privileged directory role and the directives lack `allowPrivileged`.
    PrivilegedTarget,
    /// A password reset of the account pwdrift itself is signed in as.
    CallersOwnAccount,
    /// The password source cannot be used for this user (system-generated for a synced user).
    UnsupportedPasswordSource,
    /// The directives that apply to the user contradict each other (e.g. `requirePasswordChange`
    /// needs a force flag that a literal declares `false`).
    ConflictingDirectives,
    /// Entra ID does not manage the user's password: a guest or other external identity (its
    /// home tenant or identity provider owns it), or a user of a federated domain.
    PasswordNotManagedByEntra,
    /// The user is synced from on-premises Active Directory and Graph refuses flag changes of
    /// on-premises mastered users (unless the tenant is declared to accept them).
    SyncedUserFlags,
    /// The user is a member of a restricted management administrative unit that the credential
    /// is not scoped to: only administrators scoped to that unit may change it.
    RestrictedAdministrativeUnit,
}

impl Blocker {
    /// Short label, for tables.
    pub fn label(self) -> &'static str {
        match self {
            Blocker::NeedsDelegatedCredential => "needs a delegated credential",
            Blocker::PrivilegedTarget => "privileged user",
            Blocker::CallersOwnAccount => "caller's own account",
            Blocker::UnsupportedPasswordSource => "unsupported password source",
            Blocker::ConflictingDirectives => "conflicting directives",
            Blocker::PasswordNotManagedByEntra => "password not managed by Entra ID",
            Blocker::SyncedUserFlags => "flags mastered on-premises",
            Blocker::RestrictedAdministrativeUnit => "restricted administrative unit",
        }
    }

    /// What the operator can do about it.
    pub fn remedy(self) -> &'static str {
        match self {
            Blocker::NeedsDelegatedCredential => {
                "run with --delegated (sign in as an Authentication Administrator) to use resetPassword"
            }
            Blocker::PrivilegedTarget => {
                "if this is intended, add `allowPrivileged: true` to the user's entry in desired state"
            }
            Blocker::CallersOwnAccount => {
                "sign in as another administrator, or change your own password yourself"
            }
            Blocker::UnsupportedPasswordSource => {
                "use `generate`, `env` or `file` as the password source for synced users"
            }
            Blocker::ConflictingDirectives => {
                "fix the desired state so that the directives for this user agree"
            }
            Blocker::PasswordNotManagedByEntra => {
                "change the password where it is managed (the home tenant or identity provider), \
                 and remove the user from desired state"
            }
            Blocker::SyncedUserFlags => {
                "set \"User must change password at next logon\" in Active Directory (Entra \
                 Connect syncs it), or pass --synced-flags-writable if this tenant accepts flag \
                 changes for synced users"
            }
            Blocker::RestrictedAdministrativeUnit => {
                "change the user with a credential scoped to that administrative unit, and name \
                 the unit with --admin-unit"
            }
        }
    }
}

/// What happens to one user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Live state already matches desired state (or the directives are not due yet).
    NoChange {
        /// Why nothing changes, with the data compared.
        reason: String,
    },
    /// PATCH the two force flags (both always sent explicitly), no password.
    SetFlags {
        /// The flags as read from Graph.
        before: ForceFlags,
        /// The flags after the change.
        after: ForceFlags,
        /// Why, with the data compared.
        reason: String,
    },
    /// Reset the password, then leave the flags at `after`.
    ResetPassword {
        /// Which Graph request resets the password.
        method: ResetMethod,
        /// Where the new password comes from at apply time (never the password itself).
        password: PasswordSource,
        /// The flags as read from Graph.
        before: ForceFlags,
        /// The flags expected after the reset. With `reset_password_api`, the API leaves
        /// `forceChangePasswordNextSignIn` true and `forceChangePasswordNextSignInWithMfa` false;
        /// a flag declared otherwise in desired state (a literal, or the MFA variant) is set by a
        /// flags PATCH sent after the reset succeeded, so `after` is what desired state declares.
        after: ForceFlags,
        /// Why, with the data compared.
        reason: String,
    },
    /// A change is wanted but cannot be made; nothing is written for this user.
    Blocked {
        /// The kind of obstacle.
        blocker: Blocker,
        /// What was wanted and why it cannot be done, with the data.
        detail: String,
    },
}

impl Action {
    pub fn is_change(&self) -> bool {
        matches!(self, Action::SetFlags { .. } | Action::ResetPassword { .. })
    }
}

/// Counts of a plan, for the summary line and `--detailed-exitcode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub unchanged: usize,
    pub set_flags: usize,
    pub reset_password: usize,
    pub blocked: usize,
}

impl Summary {
    /// All users counted.
    pub fn total(&self) -> usize {
        self.unchanged + self.set_flags + self.reset_password + self.blocked
    }
}

impl Summary {
    fn count(mut self, users: &[UserPlan]) -> Summary {
        for u in users {
            match u.action {
                Action::NoChange { .. } => self.unchanged += 1,
                Action::SetFlags { .. } => self.set_flags += 1,
                Action::ResetPassword { .. } => self.reset_password += 1,
                Action::Blocked { .. } => self.blocked += 1,
            }
        }
        self
    }
}

impl TenantPlan {
    /// The counts of this tenant alone.
    pub fn summary(&self) -> Summary {
        Summary::default().count(&self.users)
    }
}

impl Plan {
    pub fn summary(&self) -> Summary {
        self.tenants
            .iter()
            .fold(Summary::default(), |s, t| s.count(&t.users))
    }

    pub fn has_changes(&self) -> bool {
        self.tenants
            .iter()
            .flat_map(|t| &t.users)
            .any(|u| u.action.is_change())
    }
}

/// The JSON Schema of the plan document (`pwdrift schema plan`), with the document-level keywords
/// (`$schema`, `title`, `description`) first for the human reader.
pub fn plan_schema() -> schemars::Schema {
    let mut schema = schemars::schema_for!(Plan);
    if let Some(obj) = schema.as_object_mut() {
        let mut ordered = serde_json::Map::new();
        for key in ["$schema", "title", "description"] {
            if let Some(v) = obj.remove(key) {
                ordered.insert(key.to_owned(), v);
            }
        }
        ordered.append(obj);
        *obj = ordered;
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every property of the document is described (doc comments become descriptions).
    #[test]
    fn plan_schema_documents_every_property() {
        let schema = plan_schema();
        let mut undocumented = Vec::new();
        fn walk(path: &str, v: &serde_json::Value, out: &mut Vec<String>) {
            if let Some(obj) = v.as_object() {
                if let Some(serde_json::Value::Object(props)) = obj.get("properties") {
                    // an externally tagged enum variant `{"generate": {...}}` is described
                    // on the wrapping object
                    let wrapper = props.len() == 1 && obj.get("description").is_some();
                    for (name, prop) in props {
                        let described = wrapper
                            || prop.get("description").is_some()
                            || prop.get("$ref").is_some()
                            || name == "type";
                        if !described {
                            out.push(format!("{path}.{name}"));
                        }
                    }
                }
                for (k, child) in obj {
                    walk(&format!("{path}/{k}"), child, out);
                }
            } else if let Some(arr) = v.as_array() {
                for (i, child) in arr.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), child, out);
                }
            }
        }
        walk("", schema.as_value(), &mut undocumented);
        assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
    }

    #[test]
    fn action_tags_are_snake_case() {
        let a = Action::Blocked {
            blocker: Blocker::NeedsDelegatedCredential,
            detail: "d".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"type": "blocked", "blocker": "needs_delegated_credential", "detail": "d"})
        );
    }
}
