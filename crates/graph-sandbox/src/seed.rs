//! The sandbox seed: the tenants, apps, users and groups a sandbox starts with (YAML or JSON).
//!
//! A seed file is parsed with serde (syntax and type errors carry file, line and column) and then
//! validated into the sandbox's [`Store`](super::store::Store) (duplicates, unresolved group
//! members, unknown directory roles, unreadable certificates are reported with the file and the
//! path of the offending entry, e.g. `tenants[0].users[3].userPrincipalName`). The JSON Schema
//! `pwdrift schema sandbox-seed` is generated from these types; their doc comments are its
//! descriptions. The same format is used for the `--state` file, so a saved state is a seed.
//!
//! ```yaml
//! tenants:
//!   - id: 3f1c2d4e-0000-4000-8000-00000000c0de
//!     initialDomain: contoso.onmicrosoft.com
//!     domains: [contoso.com]
//!     apps:
//!       - clientId: 11111111-2222-4333-8444-555555555555
//!         clientSecrets: ["sandbox-secret"]
//!         applicationPermissions: [User-PasswordProfile.ReadWrite.All, User.Read.All]
//!         directoryRoles: [User Administrator]
//!     publicClients:
//!       - clientId: 14d82eec-204b-4c2f-b7e8-296a70dab67e
//!         scopes: [UserAuthenticationMethod.ReadWrite.All, User.Read.All]
//!     users:
//!       - userPrincipalName: alice@contoso.com
//!         lastPasswordChangeDateTime: 2026-01-10T09:00:00Z
//!     groups:
//!       - displayName: Finance
//!         members: [alice@contoso.com]
//! ```
//!
//! Roles, eligibility, federated domains and guests (see `examples/sandbox/privileged.seed.yaml`):
//! `federatedDomains`, `defaultDomain`, `pimLicense` on a tenant; `roleDefinitions` (custom
//! roles), `administrativeUnits`, `roleAssignments` and `roleEligibilities` (`role`, `principal`,
//! `scope`); `isMemberManagementRestricted` and `members` on an administrative unit;
//! `groupEligibilities` and `groupAssignments` (PIM for Groups: `group`, `principal`,
//! `accessId`); `isAssignableToRole` on a group; `userType`, `creationType`, `externalUserState` on
//! a user.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A sandbox seed: one or more tenants. The same multi-tenant app (client id) may be registered
/// in several tenants.
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "pwdrift sandbox seed")]
pub struct Seed {
    /// The tenants of the sandbox. The first one is the default printed at start.
    pub tenants: Vec<SeedTenant>,
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seed")
            .field("tenants", &self.tenants.len())
            .finish()
    }
}

/// One Entra ID tenant.
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedTenant {
    /// Tenant id (a GUID).
    pub id: String,
    /// The initial domain, e.g. `contoso.onmicrosoft.com`. The token endpoint accepts the tenant
    /// id, this domain and every domain of `domains`.
    pub initial_domain: String,
    /// Further verified domains, e.g. `contoso.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Display name of the organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Confidential client apps (app registrations with their service principal in this tenant).
    #[serde(default)]
    pub apps: Vec<SeedApp>,
    /// Public client apps allowed to obtain delegated tokens (ROPC and device code flow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_clients: Vec<SeedPublicClient>,
    /// User (UPN or id) who approves device-code sign-ins automatically: the first poll of a
    /// device code returns `authorization_pending`, the next one a token for this user. Without
    /// it, device codes must be approved with `POST /_sandbox/devicecode/approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_code_auto_approve: Option<String>,
    /// The users.
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// The groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<SeedGroup>,
    /// Verified domains whose authentication is federated with another identity provider
    /// (`authenticationType: Federated` in `GET /domains`): the identity provider owns the
    /// passwords of their users. Users may have UPNs in them; the token endpoint answers to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federated_domains: Vec<String>,
    /// The default domain (`isDefault` in `GET /domains`). Default: the initial domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_domain: Option<String>,
    /// Whether the tenant has a licence that includes Privileged Identity Management (Entra ID
    /// P2 or ID Governance). Default true. Without it, the eligibility endpoints answer 400
    /// `AadPremiumLicenseRequired` and `roleEligibilities` must be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pim_license: Option<bool>,
    /// Custom directory role definitions (`isBuiltIn: false`). Built-in roles are always there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_definitions: Vec<SeedRoleDefinition>,
    /// Administrative units, usable as the scope of role assignments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub administrative_units: Vec<SeedAdministrativeUnit>,
    /// Active role assignments (besides the `directoryRoles` of users and apps, which are
    /// tenant-wide active assignments of built-in roles): any role, built-in or custom, to a
    /// user, a role-assignable group or an app's service principal, tenant-wide or on an
    /// administrative unit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_assignments: Vec<SeedRoleAssignment>,
    /// PIM-eligible role assignments (`roleEligibilityScheduleInstances`), independent of the
    /// active ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_eligibilities: Vec<SeedRoleAssignment>,
    /// PIM for Groups eligibilities
    /// (`/identityGovernance/privilegedAccess/group/eligibilityScheduleInstances`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_eligibilities: Vec<SeedGroupSchedule>,
    /// PIM for Groups active assignments (`.../assignmentScheduleInstances`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_assignments: Vec<SeedGroupSchedule>,
    /// Identity Protection's risky users (`GET /identityProtection/riskyUsers`), each naming a
    /// user of this tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risky_users: Vec<SeedRiskyUser>,
    /// Whether the tenant has a licence that includes Microsoft Entra ID Protection (Entra ID
    /// P2). Default true. Without it, `GET /identityProtection/riskyUsers` answers 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_protection_license: Option<bool>,
}

/// A user Identity Protection reports (a `riskyUser`; its id is the user's object id).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRiskyUser {
    /// The user: UPN or object id.
    pub user: String,
    /// `low`, `medium`, `high`, `hidden` or `none`.
    pub risk_level: String,
    /// `none`, `confirmedSafe`, `remediated`, `dismissed`, `atRisk` or `confirmedCompromised`.
    pub risk_state: String,
    /// `riskDetail`, e.g. `none`, `adminDismissedAllRiskForUser`,
    /// `userPerformedSecuredPasswordReset`. Default `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_detail: Option<String>,
    /// `riskLastUpdatedDateTime`. Default: 2026-01-01T00:00:00Z.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_last_updated_date_time: Option<DateTime<Utc>>,
    /// `isProcessing`. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_processing: Option<bool>,
}

/// A custom directory role definition.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRoleDefinition {
    /// Role definition id (GUID). Derived from the display name when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name (unique among the tenant's roles, built-in ones included).
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_enabled: Option<bool>,
    /// `rolePermissions[0].allowedResourceActions`, e.g. `microsoft.directory/users/password/update`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_resource_actions: Vec<String>,
}

/// An administrative unit.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedAdministrativeUnit {
    /// Object id (GUID). Derived from the display name when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name (unique in the tenant).
    pub display_name: String,
    /// `isMemberManagementRestricted`: a restricted management administrative unit, whose
    /// members only administrators scoped to the unit may change (tenant-wide roles and apps
    /// get 403).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_member_management_restricted: bool,
    /// The unit's user members (userPrincipalName or id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// A PIM for Groups schedule instance: `principal` (a user) is eligible for, or assigned
/// through PIM to, membership or ownership of `group` (a group's display name or id).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedGroupSchedule {
    /// The group (display name or id).
    pub group: String,
    /// The user (userPrincipalName or id).
    pub principal: String,
    /// `member` (the default) or `owner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_id: Option<String>,
}

/// A role assignment (active) or eligibility (PIM).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRoleAssignment {
    /// Assignment id. Derived when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The role: a built-in role's display name or template id, or a custom role's display name
    /// or id.
    pub role: String,
    /// Who holds it: a user (UPN or id), a role-assignable group (display name or id) or an
    /// app (client id or service principal id).
    pub principal: String,
    /// `/` (default, tenant-wide) or an administrative unit (display name or id), which gives
    /// `directoryScopeId` `/administrativeUnits/{id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Eligibilities only: `startDateTime` (default 2024-01-01T00:00:00Z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date_time: Option<DateTime<Utc>>,
    /// Eligibilities only: `endDateTime` (default none: permanent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date_time: Option<DateTime<Utc>>,
}

/// A confidential client app registered in the tenant.
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedApp {
    /// Application (client) id, a GUID.
    pub client_id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Object id of the app's service principal in this tenant (derived when omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal_id: Option<String>,
    /// Client secrets the token endpoint accepts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_secrets: Vec<String>,
    /// Certificates (PEM, `-----BEGIN CERTIFICATE-----`, RSA keys) whose private key may sign a
    /// `client_assertion`. The assertion's `x5t` (or `x5t#S256`) header names the certificate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    /// Federated identity credentials (workload identity federation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub federated_credentials: Vec<SeedFederatedCredential>,
    /// Application permissions granted (admin-consented), e.g. `User-PasswordProfile.ReadWrite.All`,
    /// `User.Read.All`, `GroupMember.Read.All`, `RoleManagement.Read.Directory`. They appear in the
    /// token's `roles` claim.
    #[serde(default)]
    pub application_permissions: Vec<String>,
    /// Directory roles assigned to the app's service principal, e.g. `User Administrator`,
    /// `Privileged Authentication Administrator`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directory_roles: Vec<String>,
}

/// A federated identity credential: tokens from `issuer` with this `subject` are accepted as
/// `client_assertion`, signed by the issuer's key.
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedFederatedCredential {
    /// `iss` of the external token, e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// `sub` of the external token, e.g. `repo:contoso/pwdrift:ref:refs/heads/main`.
    pub subject: String,
    /// Accepted `aud` values. Default: `api://AzureADTokenExchange`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// The issuer's RSA public key (PEM: `PUBLIC KEY`, `RSA PUBLIC KEY` or a `CERTIFICATE`),
    /// standing in for the issuer's published JWKS.
    pub issuer_public_key_pem: String,
}

/// A public client allowed to sign users in (delegated tokens).
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedPublicClient {
    /// Client id, e.g. `14d82eec-204b-4c2f-b7e8-296a70dab67e` (Microsoft Graph Command Line Tools).
    pub client_id: String,
    /// Delegated scopes consented for this client, e.g. `UserAuthenticationMethod.ReadWrite.All`,
    /// `User.ReadWrite.All`. They appear in the token's `scp` claim.
    pub scopes: Vec<String>,
}

/// `passwordProfile` flags of a user.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedPasswordProfile {
    /// The user must change the password at next sign-in.
    #[serde(default)]
    pub force_change_password_next_sign_in: bool,
    /// The user must do MFA, then change the password at next sign-in.
    #[serde(default)]
    pub force_change_password_next_sign_in_with_mfa: bool,
}

/// A user.
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedUser {
    /// Object id (GUID). Derived from the UPN when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// User principal name, e.g. `alice@contoso.com`. Its domain must be one of the tenant's.
    pub user_principal_name: String,
    /// Display name (default: the part of the UPN before `@`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// Surname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    /// Mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    /// Force flags. Omitted: both false (Graph then returns `passwordProfile: null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_profile: Option<SeedPasswordProfile>,
    /// `passwordPolicies`, e.g. `DisablePasswordExpiration`, or
    /// `DisablePasswordExpiration, DisableStrongPassword`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_policies: Option<String>,
    /// When the password was last changed (RFC 3339). Default: `createdDateTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_password_change_date_time: Option<DateTime<Utc>>,
    /// Default: 2024-01-01T00:00:00Z.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time: Option<DateTime<Utc>>,
    /// True for users synchronised from on-premises AD (hybrid): their password cannot be set by
    /// PATCH, and resetPassword needs `newPassword`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_premises_sync_enabled: Option<bool>,
    /// The on-premises SID, e.g. `S-1-5-21-...-1104`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_premises_security_identifier: Option<String>,
    /// Directory roles the user holds, e.g. `Global Administrator`,
    /// `Privileged Authentication Administrator`. A user holding any role is an admin target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directory_roles: Vec<String>,
    /// Password for delegated sign-in (ROPC). Only needed for admins who sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Instead of `password`: hex SHA-256 of `pwdrift-sandbox:{password}` (written in `--state`
    /// files, so that a saved state never holds a password in clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_sha256: Option<String>,
    /// Test hook: resetPassword operations on this user end in `failed` and change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_fails: bool,
    /// `Member` (default) or `Guest`. A guest's UPN is usually `name_home.example#EXT#@` the
    /// tenant's initial domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// `creationType`, e.g. `Invitation` for B2B guests (default null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_type: Option<String>,
    /// `externalUserState`: `PendingAcceptance` or `Accepted` (default null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_state: Option<String>,
}

impl std::fmt::Debug for SeedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedUser")
            .field("userPrincipalName", &self.user_principal_name)
            .field("password", &self.password.as_ref().map(|_| "(sensitive)"))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SeedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedApp")
            .field("clientId", &self.client_id)
            .field("clientSecrets", &"(sensitive)")
            .finish_non_exhaustive()
    }
}

/// A security group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedGroup {
    /// Object id (GUID). Derived from the display name when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name (unique in the seed).
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Direct members: user UPNs or ids, and nested groups by display name or id.
    #[serde(default)]
    pub members: Vec<String>,
    /// `isAssignableToRole`: directory roles can be assigned to the group. As documented, such a
    /// group cannot have groups as members ("Group nesting isn't supported").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_assignable_to_role: bool,
}

/// Where a seed came from, for error messages.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {at}: {message}")]
    Invalid {
        path: String,
        at: String,
        message: String,
    },
}

/// Parses seed text (YAML, or JSON). `name` is used in error messages.
///
/// A JSON document (a saved state file) is read as JSON: JSON is YAML except for the characters
/// YAML does not allow raw in a stream (the C1 controls), which a display name may hold and
/// serde_json writes as they are.
pub fn parse(name: &str, text: &str) -> Result<Seed, SeedError> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str::<Seed>(text).map_err(|e| SeedError::Syntax {
            path: name.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        });
    }
    serde_yaml::from_str::<Seed>(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        SeedError::Syntax {
            path: name.to_owned(),
            line,
            column,
            message: e.to_string(),
        }
    })
}

/// Reads and parses a seed file.
pub fn load(path: &std::path::Path) -> Result<Seed, SeedError> {
    let text = std::fs::read_to_string(path).map_err(|source| SeedError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// The password hash kept in memory and in state files (never the password itself).
pub fn password_hash(password: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("pwdrift-sandbox:{password}")))
}

/// A GUID derived from a name, for ids omitted in a seed (stable across runs).
pub fn derived_guid(namespace: &str, name: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{namespace}:{}", name.to_lowercase()));
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}
