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

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Origin, PasswordSource};
use crate::graph::model::ForceFlags;

/// Version of the plan document format. Bump on incompatible change.
pub const FORMAT_VERSION: &str = "3";

/// A pwdrift plan: per tenant and per managed user, what `pwdrift apply` would do and why.
/// Contains no secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "pwdrift plan")]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Version of this document format. pwdrift refuses to apply a plan whose version it does not
    /// know. Currently "3" (version 2 added `content_hash` and `allow_privileged`; version 3
    /// added `made_from`).
    #[schemars(extend("const" = FORMAT_VERSION))]
    pub format_version: String,
    /// The pwdrift version that made the plan.
    pub pwdrift_version: String,
    /// When the plan was computed (UTC). Directives that are not yet due (`since` or `notBefore`
    /// after this instant) were treated as no change.
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
    /// Every managed user of the tenant, ordered by userPrincipalName (then object id), including
    /// the users with no change.
    pub users: Vec<UserPlan>,
    /// What pwdrift could not see in this tenant or assumed about it (e.g. no licence for
    /// Privileged Identity Management, so no one can be an eligible administrator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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
    OutOfSchema(String),
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
    pub fn check_values(&self) -> Result<(), String> {
        use std::collections::HashSet;
        let mut tenants = HashSet::new();
        let mut tenant_ids = HashSet::new();
        let text_ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        let m = &self.made_from;
        if m.files.is_empty() {
            return Err("made_from.files is empty: the plan records no desired-state file".into());
        }
        let mut files = HashSet::new();
        for f in &m.files {
            let p = f.path.to_string_lossy();
            if p.is_empty() || p.len() > 4096 || p.chars().any(char::is_control) {
                return Err(
                    "a made_from file path is empty, too long or holds control characters".into(),
                );
            }
            if !files.insert(f.path.clone()) {
                return Err(format!("desired-state file {p} is listed more than once"));
            }
            let hex = f.sha256.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "the sha256 of {p} is not `sha256:` and 64 hex digits"
                ));
            }
        }
        if !m.tenants.iter().chain(&m.targets).all(|s| text_ok(s)) {
            return Err(
                "a recorded --tenant or --target is empty, too long or holds control characters"
                    .into(),
            );
        }
        if let Some(shard) = &m.shard {
            shard
                .parse::<crate::shard::Shard>()
                .map_err(|e| format!("the recorded --shard {shard:?}: {e}"))?;
        }
        for t in &self.tenants {
            if !text_ok(&t.tenant) || !text_ok(&t.tenant_id) {
                return Err(
                    "a tenant or tenant_id is empty, too long or holds control characters".into(),
                );
            }
            if !tenants.insert(t.tenant.to_ascii_lowercase())
                || !tenant_ids.insert(t.tenant_id.to_ascii_lowercase())
            {
                return Err(format!("tenant {} is listed more than once", t.tenant));
            }
            let mut users = HashSet::new();
            for u in &t.users {
                if !text_ok(&u.user_id) || u.user_principal_name.len() > 1024 {
                    return Err("a user_id is empty, too long or holds control characters".into());
                }
                if !users.insert(u.user_id.to_ascii_lowercase()) {
                    return Err(format!(
                        "user {} ({}) is listed more than once in tenant {}",
                        u.user_id, u.user_principal_name, t.tenant
                    ));
                }
                if u.fingerprint.len() != 64
                    || !u.fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return Err(format!(
                        "the fingerprint of user {} is not 64 hex digits",
                        u.user_id
                    ));
                }
                if let Action::ResetPassword { password, .. } = &u.action {
                    match password {
                        PasswordSource::Generate { length } if !(8..=256).contains(length) => {
                            return Err(format!(
                                "user {}: a generated password must be 8 to 256 characters, not {length}",
                                u.user_id
                            ))
                        }
                        PasswordSource::Env { var } if !text_ok(var) => {
                            return Err(format!("user {}: an empty or invalid variable name", u.user_id))
                        }
                        PasswordSource::File { path } if path.as_os_str().is_empty() => {
                            return Err(format!("user {}: an empty password file path", u.user_id))
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// How a saved plan differs from the plan derived again at apply time ([`compare`]), by kind;
/// each line names a user (or a tenant). Empty everywhere: the same plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// The saved plan's tenant id is not the live one (the credentials are for another tenant).
    pub other_tenant: Vec<String>,
    /// Changes in the saved plan that the safety rails block now (a privileged user without
    /// `allowPrivileged` in desired state, the caller's own account).
    pub protected: Vec<String>,
    /// Users whose live state changed since the plan was made (fingerprint).
    pub stale: Vec<String>,
    /// Anything else that differs: action, reset method, password source, flags,
    /// `allow_privileged`, users or tenants missing or extra.
    pub different: Vec<String>,
}

impl Mismatch {
    pub fn is_empty(&self) -> bool {
        self.other_tenant.is_empty()
            && self.protected.is_empty()
            && self.stale.is_empty()
            && self.different.is_empty()
    }
}

/// A short description of an action, for the lines of a [`Mismatch`] (no reason text; password
/// sources by name, never a secret).
pub fn describe_action(action: &Action) -> String {
    let flags = |f: &ForceFlags| {
        format!(
            "forceChangePasswordNextSignIn {}, forceChangePasswordNextSignInWithMfa {}",
            f.force_change_password_next_sign_in, f.force_change_password_next_sign_in_with_mfa
        )
    };
    match action {
        Action::NoChange { .. } => "no change".to_owned(),
        Action::SetFlags { after, .. } => format!("set flags ({})", flags(after)),
        Action::ResetPassword {
            method,
            password,
            after,
            ..
        } => {
            let source = match password {
                PasswordSource::Generate { length } => format!("generated, {length} characters"),
                PasswordSource::Env { var } => format!("from ${var}"),
                PasswordSource::File { path } => format!("from file {}", path.display()),
                PasswordSource::SystemGenerated => "system-generated".to_owned(),
            };
            format!(
                "reset the password ({}, {source}), then {}",
                method.label(),
                flags(after)
            )
        }
        Action::Blocked { blocker, .. } => format!("blocked ({})", blocker.label()),
    }
}

/// The deterministic content of an action: everything but its reason or detail text.
fn action_content(action: &Action) -> Action {
    let mut a = action.clone();
    match &mut a {
        Action::NoChange { reason }
        | Action::SetFlags { reason, .. }
        | Action::ResetPassword { reason, .. } => reason.clear(),
        Action::Blocked { detail, .. } => detail.clear(),
    }
    a
}

/// Compares a saved plan with the plan derived again from the same desired-state files and
/// filters against live state ([`Mismatch`]). Compared: the tenants (by name, and their ids) and,
/// per user (by object id), the fingerprint of the live state, the action with its reset method,
/// password source and flags, and `allow_privileged`. Not compared: `created_at`, reason and
/// detail texts, notes, the user's order.
pub fn compare(saved: &Plan, derived: &Plan) -> Mismatch {
    use std::collections::HashMap;
    let mut m = Mismatch::default();
    for st in &saved.tenants {
        let Some(dt) = derived
            .tenants
            .iter()
            .find(|d| d.tenant.eq_ignore_ascii_case(&st.tenant))
        else {
            m.different.push(format!(
                "tenant {}: in the saved plan, not in the plan the desired state gives now",
                st.tenant
            ));
            continue;
        };
        if !dt.tenant_id.eq_ignore_ascii_case(&st.tenant_id) {
            m.other_tenant.push(format!(
                "{}: the plan says tenant id {}, the credentials are for {}",
                st.tenant, st.tenant_id, dt.tenant_id
            ));
            continue;
        }
        let live: HashMap<String, &UserPlan> = dt
            .users
            .iter()
            .map(|u| (u.user_id.to_ascii_lowercase(), u))
            .collect();
        for su in &st.users {
            let name = format!("{} ({})", su.user_principal_name, su.user_id);
            let Some(du) = live.get(&su.user_id.to_ascii_lowercase()) else {
                m.different.push(format!(
                    "{name}: in the saved plan, not in the plan the desired state gives now"
                ));
                continue;
            };
            if du.fingerprint != su.fingerprint {
                m.stale.push(format!("{name}: changed since the plan"));
                continue;
            }
            let blocked_now = matches!(
                du.action,
                Action::Blocked {
                    blocker: Blocker::PrivilegedTarget | Blocker::CallersOwnAccount,
                    ..
                }
            );
            if su.action.is_change() && blocked_now {
                let Action::Blocked { detail, .. } = &du.action else {
                    unreachable!("matched above")
                };
                m.protected.push(format!(
                    "{name}: the saved plan says {}; desired and live state say {}: {detail}",
                    describe_action(&su.action),
                    describe_action(&du.action)
                ));
                continue;
            }
            let mut why = Vec::new();
            if action_content(&su.action) != action_content(&du.action) {
                why.push(format!(
                    "the saved plan says {}; desired and live state say {}",
                    describe_action(&su.action),
                    describe_action(&du.action)
                ));
            }
            if su.allow_privileged != du.allow_privileged {
                why.push(format!(
                    "allow_privileged is {} in the saved plan, {} in desired state",
                    su.allow_privileged, du.allow_privileged
                ));
            }
            if !why.is_empty() {
                m.different.push(format!("{name}: {}", why.join("; ")));
            }
        }
        // (a set: a saved plan may list 100,000 users, and a scan per user would be quadratic)
        let saved_ids: std::collections::HashSet<String> = st
            .users
            .iter()
            .map(|s| s.user_id.to_ascii_lowercase())
            .collect();
        for du in &dt.users {
            if !saved_ids.contains(&du.user_id.to_ascii_lowercase()) {
                m.different.push(format!(
                    "{} ({}): managed by the desired state now, not in the saved plan",
                    du.user_principal_name, du.user_id
                ));
            }
        }
    }
    for dt in &derived.tenants {
        if !saved
            .tenants
            .iter()
            .any(|s| s.tenant.eq_ignore_ascii_case(&dt.tenant))
        {
            m.different.push(format!(
                "tenant {}: in the plan the desired state gives now, not in the saved plan",
                dt.tenant
            ));
        }
    }
    m
}

/// Reads a saved plan (`plan --out FILE`) for `apply FILE`. The version is checked first, so that
/// a plan of another format version gets a clear error instead of a field-level complaint; then
/// the shape (unknown fields refused), the content hash (an edited plan is refused) and the values
/// ([`Plan::check_values`]: duplicates, bounds). The content hash catches edits, not forgery (it
/// can be recomputed): the apply command then derives the plan again from the desired-state
/// files it records ([`MadeFrom`]) and live state, and applies it only if it is the same
/// ([`compare`]).
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
