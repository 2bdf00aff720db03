//! Wire types of the Microsoft Graph resources pwdrift reads and writes.
//!
//! These are the types the Graph client (de)serialises, and [`PasswordProfile`] is also the source
//! of the exported `microsoft.graph.passwordProfile` JSON Schema (`pwdrift schema password-profile`),
//! which must equal the schema Microsoft publishes key for key. Graph returns properties only when
//! they are named in `$select` and sends `passwordProfile: null` unless a force flag is set, so every
//! field is optional and unknown fields are ignored.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// The `$id` Microsoft publishes for the passwordProfile schema.
pub const PASSWORD_PROFILE_SCHEMA_ID: &str = "#/components/schemas/microsoft.graph.passwordProfile";

// `microsoft.graph.passwordProfile`: the password profile associated with a user.
//
// `password` is write-only in Graph (never returned on read). In pwdrift it is a
// [`SecretString`]: it is serialised only into the body of a PATCH and its `Debug` is redacted.
// (Plain comments, not doc comments: schemars would turn a doc comment into a `description`
// that the published schema does not have.)
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[schemars(title = "passwordProfile", extend("$id" = PASSWORD_PROFILE_SCHEMA_ID))]
pub struct PasswordProfile {
    /// true if the user must change their password on the next sign-in; otherwise false.
    #[serde(
        rename = "forceChangePasswordNextSignIn",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "bool", extend("nullable" = true))]
    pub force_change_password_next_sign_in: Option<bool>,

    /// If true, at next sign-in, the user must perform a multifactor authentication (MFA) before being forced to change their password. The behavior is identical to forceChangePasswordNextSignIn except that the user is required to first perform a multifactor authentication before password change. After a password change, this property will be automatically reset to false. If not set, default is false.
    #[serde(
        rename = "forceChangePasswordNextSignInWithMfa",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "bool", extend("nullable" = true))]
    pub force_change_password_next_sign_in_with_mfa: Option<bool>,

    /// The password for the user. This property is required when a user is created. It can be updated, but the user will be required to change the password on the next sign-in. The password must satisfy minimum requirements as specified by the user's passwordPolicies property. By default, a strong password is required.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_secret"
    )]
    #[schemars(with = "String", extend("nullable" = true))]
    pub password: Option<SecretString>,

    // No `default`: schemars would then leave it out of `required`. serde still reads a missing
    // `Option` field as `None`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub odata_type: Option<String>,
}

impl PartialEq for PasswordProfile {
    fn eq(&self, other: &Self) -> bool {
        self.force_change_password_next_sign_in == other.force_change_password_next_sign_in
            && self.force_change_password_next_sign_in_with_mfa
                == other.force_change_password_next_sign_in_with_mfa
            && self.password.as_ref().map(|p| p.expose_secret().to_owned())
                == other
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
            && self.odata_type == other.odata_type
    }
}

fn serialize_secret<S: Serializer>(value: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(secret) => s.serialize_str(secret.expose_secret()),
        None => s.serialize_none(),
    }
}

/// schemars orders keywords its own way; Microsoft's published document orders them
/// `$schema, $id, title, required, type, properties` at the top and `type, description, nullable`
/// in each property. This pass reorders (it never adds, drops or changes a keyword) so that the
/// export equals the published file byte for byte. Run it on the finished root schema.
pub fn published_key_order(schema: &mut schemars::Schema) {
    fn reorder(obj: &mut serde_json::Map<String, serde_json::Value>, order: &[&str]) {
        let mut reordered = serde_json::Map::new();
        for key in order {
            if let Some(v) = obj.remove(*key) {
                reordered.insert((*key).to_owned(), v);
            }
        }
        reordered.append(obj);
        *obj = reordered;
    }
    if let Some(obj) = schema.as_object_mut() {
        reorder(
            obj,
            &["$schema", "$id", "title", "required", "type", "properties"],
        );
        if let Some(serde_json::Value::Object(props)) = obj.get_mut("properties") {
            for prop in props.values_mut() {
                if let serde_json::Value::Object(p) = prop {
                    reorder(p, &["type", "description", "nullable"]);
                }
            }
        }
    }
}

/// The two force flags of a password profile, as pwdrift compares them. Graph's `null`
/// passwordProfile reads as both flags false.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForceFlags {
    /// `forceChangePasswordNextSignIn`: the user must change the password at next sign-in
    pub force_change_password_next_sign_in: bool,
    /// `forceChangePasswordNextSignInWithMfa`: the user must perform MFA, then change the
    /// password, at next sign-in
    pub force_change_password_next_sign_in_with_mfa: bool,
}

impl ForceFlags {
    /// Flags as read from Graph, where `null` (or an absent field) means false.
    pub fn from_profile(profile: Option<&PasswordProfile>) -> Self {
        let p = profile.cloned().unwrap_or_default();
        ForceFlags {
            force_change_password_next_sign_in: p
                .force_change_password_next_sign_in
                .unwrap_or(false),
            force_change_password_next_sign_in_with_mfa: p
                .force_change_password_next_sign_in_with_mfa
                .unwrap_or(false),
        }
    }
}

/// The properties of `microsoft.graph.user` that pwdrift selects. Every field is optional: Graph
/// returns only what `$select` names.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphUser {
    /// `@odata.type`, where Graph names it (in mixed directory-object collections such as
    /// transitive members): `#microsoft.graph.user` for a user.
    #[serde(
        default,
        rename = "@odata.type",
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_type: Option<String>,
    pub id: String,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    #[serde(default)]
    pub password_profile: Option<PasswordProfile>,
    /// Comma-separated: `None`, `DisablePasswordExpiration`, `DisableStrongPassword`, ...
    #[serde(default)]
    pub password_policies: Option<String>,
    #[serde(default)]
    pub last_password_change_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub on_premises_sync_enabled: Option<bool>,
    #[serde(default)]
    pub on_premises_security_identifier: Option<String>,
    /// Only read by `pwdrift import` ([`IMPORT_USER_SELECT`]), for the comment beside each user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `Member` or `Guest` (absent on older objects: a member)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
}

impl GraphUser {
    /// False only for an object that says it is something else (a group or device in a member
    /// list whose type cast Graph ignored); an object without `@odata.type` came back from a user
    /// endpoint or a user cast.
    pub fn is_user(&self) -> bool {
        self.odata_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("#microsoft.graph.user"))
    }
}

/// `$top` of every user listing: the most Graph returns per page.
pub const PAGE_SIZE: usize = 999;

/// The exact `$select` pwdrift reads users with.
pub const USER_SELECT: &str = "id,userPrincipalName,passwordProfile,passwordPolicies,lastPasswordChangeDateTime,onPremisesSyncEnabled,onPremisesSecurityIdentifier,userType";

/// `microsoft.graph.unifiedRoleAssignment` or `unifiedRoleEligibilityScheduleInstance` (the
/// fields pwdrift reads are the same), with `principal` when `$expand=principal` was asked.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    #[serde(default)]
    pub id: String,
    pub principal_id: String,
    pub role_definition_id: String,
    #[serde(default)]
    pub directory_scope_id: Option<String>,
    #[serde(default)]
    pub principal: Option<RolePrincipal>,
}

/// The `principal` of a role assignment: a user, a group or a service principal.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolePrincipal {
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `microsoft.graph.administrativeUnit`, the fields pwdrift reads ("administrativeUnit resource
/// type", <https://learn.microsoft.com/en-us/graph/api/resources/administrativeunit>).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AdministrativeUnit {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub is_member_management_restricted: Option<bool>,
}

/// A member of an administrative unit (a user, group or device): its id and type.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DirectoryObjectRef {
    pub id: String,
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
}

/// A PIM for Groups schedule instance, eligible or active: `privilegedAccessGroupEligibilityScheduleInstance`
/// / `privilegedAccessGroupAssignmentScheduleInstance` ("privilegedAccessGroupEligibilityScheduleInstance
/// resource type",
/// <https://learn.microsoft.com/en-us/graph/api/resources/privilegedaccessgroupeligibilityscheduleinstance>).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupScheduleInstance {
    #[serde(default)]
    pub id: String,
    pub principal_id: String,
    pub group_id: String,
    /// `member` or `owner`
    #[serde(default)]
    pub access_id: Option<String>,
}

/// `microsoft.graph.unifiedRoleDefinition` (built-in or custom).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub is_built_in: Option<bool>,
    #[serde(default)]
    pub template_id: Option<String>,
}

/// `microsoft.graph.domain`: who authenticates its users.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    pub id: String,
    /// `Managed` or `Federated`
    #[serde(default)]
    pub authentication_type: Option<String>,
}

/// `microsoft.graph.organization`, as pwdrift reads it (`$select=id,verifiedDomains`): which
/// tenant Graph answers for ("organization resource type",
/// <https://learn.microsoft.com/en-us/graph/api/resources/organization>).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// the tenant id (GUID)
    pub id: String,
    #[serde(default)]
    pub verified_domains: Vec<VerifiedDomain>,
}

/// `microsoft.graph.verifiedDomain`: a domain the tenant owns.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedDomain {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub is_initial: Option<bool>,
    #[serde(default)]
    pub is_default: Option<bool>,
}

/// What `pwdrift import` reads users with: [`USER_SELECT`] and `displayName` (for the comment
/// beside each imported user). `plan` and `apply` keep reading exactly [`USER_SELECT`].
pub const IMPORT_USER_SELECT: &str = "id,userPrincipalName,passwordProfile,passwordPolicies,lastPasswordChangeDateTime,onPremisesSyncEnabled,onPremisesSecurityIdentifier,displayName";

/// Splits Graph's comma-separated `passwordPolicies` string (`null`, `None`,
/// `DisablePasswordExpiration, DisableStrongPassword`) into its trimmed, non-empty parts.
pub fn password_policies(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "None")
        .map(str::to_owned)
        .collect()
}

/// `microsoft.graph.group` as pwdrift reads it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphGroup {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `microsoft.graph.riskyUser` (Identity Protection, "List riskyUsers",
/// <https://learn.microsoft.com/en-us/graph/api/riskdetection-list-riskyusers>): the user's id
/// and how Identity Protection judges them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RiskyUser {
    pub id: String,
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// `low`, `medium`, `high`, `hidden`, `none`
    #[serde(default)]
    pub risk_level: Option<String>,
    /// `atRisk`, `confirmedCompromised`, `remediated`, `dismissed`, `confirmedSafe`, `none`
    #[serde(default)]
    pub risk_state: Option<String>,
}

/// A page of a Graph collection.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(
        rename = "@odata.nextLink",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub next_link: Option<String>,
    #[serde(
        rename = "@odata.count",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub count: Option<u64>,
}

/// The id of the password authentication method: always this GUID ("authenticationMethod: resetPassword",
/// <https://learn.microsoft.com/en-us/graph/api/authenticationmethod-resetpassword>).
pub const PASSWORD_METHOD_ID: &str = "28c10230-6103-485e-b985-444c60001490";

/// Body of `POST .../authentication/methods/{passwordMethods-id}/resetPassword`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetPasswordRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_secret"
    )]
    pub new_password: Option<SecretString>,
}

/// `microsoft.graph.passwordResetResponse`: the body of a 202 when the system generated the password.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordResetResponse {
    #[serde(
        rename = "@odata.context",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub odata_context: Option<String>,
    #[serde(serialize_with = "serialize_secret_str")]
    pub new_password: SecretString,
}

fn serialize_secret_str<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose_secret())
}

/// Status of a `longRunningOperation` (`passwordResetOperation`). Parsed case-insensitively
/// (`Succeeded`, `succeeded`, `SUCCEEDED`); any other value is `UnknownFutureValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OperationStatus {
    NotStarted,
    Running,
    Succeeded,
    Failed,
    #[serde(other)]
    UnknownFutureValue,
}

impl<'de> Deserialize<'de> for OperationStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "notstarted" => OperationStatus::NotStarted,
            "running" => OperationStatus::Running,
            "succeeded" => OperationStatus::Succeeded,
            "failed" => OperationStatus::Failed,
            _ => OperationStatus::UnknownFutureValue,
        })
    }
}

impl OperationStatus {
    /// `succeeded` and `failed` are terminal.
    pub fn is_terminal(self) -> bool {
        matches!(self, OperationStatus::Succeeded | OperationStatus::Failed)
    }
}

/// `microsoft.graph.longRunningOperation` as returned by `GET .../authentication/operations/{id}`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LongRunningOperation {
    pub id: String,
    #[serde(default)]
    pub created_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_action_date_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub resource_location: Option<String>,
    pub status: OperationStatus,
    #[serde(default)]
    pub status_detail: Option<String>,
}

/// Graph's error body: `{"error":{"code","message","innerError":{...}}}`. Parsed leniently.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct GraphErrorBody {
    pub error: GraphErrorDetail,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GraphErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(
        rename = "innerError",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub inner_error: Option<InnerError>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct InnerError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(
        rename = "request-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub request_id: Option<String>,
    #[serde(
        rename = "client-request-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_request_id: Option<String>,
}

/// One request inside a `$batch` envelope.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRequest {
    pub id: String,
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BatchRequestEnvelope {
    pub requests: Vec<BatchRequest>,
}

/// One response inside a `$batch` response envelope; responses may come out of order.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BatchResponse {
    pub id: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    /// kept as the JSON text it came as, decoded once into what the caller expects (a user,
    /// an error): a tree of values per user first cost more than the rest of a `$batch` read
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<serde_json::value::RawValue>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BatchResponseEnvelope {
    pub responses: Vec<BatchResponse>,
}

/// Successful OAuth 2.0 token response. `Debug` redacts the token (a [`SecretString`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct TokenResponse {
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_expires_in: Option<u64>,
    #[serde(serialize_with = "serialize_secret_str")]
    pub access_token: SecretString,
}

/// OAuth 2.0 error response of the Microsoft identity platform.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TokenErrorResponse {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub error_codes: Vec<u64>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_profile_reads_as_both_flags_false() {
        let u: GraphUser = serde_json::from_str(r#"{"id":"x","passwordProfile":null}"#).unwrap();
        assert_eq!(
            ForceFlags::from_profile(u.password_profile.as_ref()),
            ForceFlags::default()
        );
        let u: GraphUser = serde_json::from_str(
            r#"{"id":"x","passwordProfile":{"forceChangePasswordNextSignIn":true,"password":null,"extra":1}}"#,
        )
        .unwrap();
        let flags = ForceFlags::from_profile(u.password_profile.as_ref());
        assert!(flags.force_change_password_next_sign_in);
        assert!(!flags.force_change_password_next_sign_in_with_mfa);
    }

    #[test]
    fn password_policies_split_and_trim() {
        assert!(password_policies(None).is_empty());
        assert!(password_policies(Some("None")).is_empty());
        assert_eq!(
            password_policies(Some("DisablePasswordExpiration, DisableStrongPassword")),
            vec!["DisablePasswordExpiration", "DisableStrongPassword"]
        );
    }

    #[test]
    fn debug_never_shows_password() {
        let p = PasswordProfile {
            password: Some(SecretString::from("Canary-Secret-123")),
            ..Default::default()
        };
        assert!(!format!("{p:?}").contains("Canary"));
        let r = ResetPasswordRequest {
            new_password: Some(SecretString::from("Canary-Secret-123")),
        };
        assert!(!format!("{r:?}").contains("Canary"));
        let g: PasswordResetResponse =
            serde_json::from_str(r#"{"newPassword":"Canary-Generated-1"}"#).unwrap();
        assert!(!format!("{g:?}").contains("Canary"));
        let t: TokenResponse = serde_json::from_str(
            r#"{"token_type":"Bearer","expires_in":3599,"access_token":"Canary-Token-1"}"#,
        )
        .unwrap();
        assert!(!format!("{t:?}").contains("Canary"));
        // but the PATCH body carries it
        assert!(serde_json::to_string(&p)
            .unwrap()
            .contains("Canary-Secret-123"));
    }

    #[test]
    fn operation_status_terminal() {
        let s: OperationStatus = serde_json::from_str("\"somethingNew\"").unwrap();
        assert_eq!(s, OperationStatus::UnknownFutureValue);
        for (raw, want) in [
            ("\"Succeeded\"", OperationStatus::Succeeded),
            ("\"FAILED\"", OperationStatus::Failed),
            ("\"notStarted\"", OperationStatus::NotStarted),
            (
                "\"unknownFutureValue\"",
                OperationStatus::UnknownFutureValue,
            ),
        ] {
            assert_eq!(serde_json::from_str::<OperationStatus>(raw).unwrap(), want);
        }
        assert!(OperationStatus::Succeeded.is_terminal());
        assert!(!OperationStatus::Running.is_terminal());
    }
}
