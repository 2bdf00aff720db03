//! The identity platform side of the sandbox: `POST /{tenant}/oauth2/v2.0/token`,
//! `POST /{tenant}/oauth2/v2.0/devicecode`, and validation of the bearer tokens it issues.
//!
//! Grants:
//! - `client_credentials` with `client_secret`, or with `client_assertion` (type
//!   `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`) that is either a certificate-signed
//!   JWT or a federated token (signed by the registered issuer key, RS256 or PS256; `iss`/`sub`
//!   match a federated credential; `aud` one of its audiences, default `api://AzureADTokenExchange`).
//!   A certificate assertion follows the current "Microsoft identity platform certificate
//!   credentials" page (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>):
//!   `alg` PS256 (RSASSA-PSS, SHA-256; the signature verified against the registered
//!   certificate's public key), the `x5t#S256` header naming a registered certificate by its
//!   SHA-256 thumbprint; `aud` is the token endpoint or the tenant's v2 issuer; `iss` = `sub` =
//!   client id; `exp`/`nbf` checked with 60 s of clock skew. An RS256 assertion or one naming its
//!   certificate only by the SHA-1 `x5t` (the form older versions of that page describe) is
//!   refused with `invalid_client` AADSTS700027 unless `Realism::legacy_certificate_assertions`
//!   (`--legacy-certificate-assertions`) accepts it too; what Entra answers to the older form is
//!   not documented (the refusal is the sandbox's, so that a client's use of the current form
//!   is tested).
//!   `scope` must be `{graph_url}/.default` (`https://graph.microsoft.com/.default` and
//!   `00000003-0000-0000-c000-000000000000/.default` are accepted too).
//! - `password` (ROPC) for a seeded user with a password, through a seeded public client (a user
//!   who must change the password gets `invalid_grant` AADSTS50055, as from Entra).
//! - `urn:ietf:params:oauth:grant-type:device_code`: the device code from `/devicecode` is polled;
//!   it is approved either by `POST /_sandbox/devicecode/approve` (`{"user_code","username"}`) or,
//!   when the tenant names a `deviceCodeAutoApprove` user, automatically: the first poll answers
//!   `authorization_pending` (so clients exercise that path) and the next one issues the token.
//!
//! With `--faults token=ANSWER[*N]` ([`crate::faults`], "Authority answers") the endpoint answers
//! token requests with a transient failure or a permanent refusal ([`REFUSAL_CODES`]) instead.
//!
//! Responses have the identity platform's shapes: `{"token_type":"Bearer","expires_in",
//! "ext_expires_in","access_token"}`, and errors `{"error","error_description" (AADSTS code and
//! text),"error_codes","timestamp","trace_id","correlation_id","error_uri"}`, 401 for
//! `invalid_client` and 400 otherwise.
//!
//! Access tokens are JWTs signed HS256 with a key drawn at start (tokens do not survive a restart,
//! as a client must cope with anyway). They carry `tid`, `appid`, `oid`, `idtyp`, and `roles`
//! (app permissions) or `scp` (delegated scopes), like Entra's. Permissions are fixed in the token
//! at issue; directory roles are looked up live, as Graph does.

use super::error::GraphPath;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::error::GraphError;
use super::server::AppState;
use super::store::{App, Role, Tenant};

pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
pub const PUBLIC_GRAPH: &str = "https://graph.microsoft.com";
pub(crate) const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Claims of an access token issued by the sandbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub aud: String,
    pub iss: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub tid: String,
    pub appid: String,
    pub oid: String,
    pub sub: String,
    /// "app" or "user"
    pub idtyp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    pub uti: String,
}

/// Who is calling a Graph route (inserted as a request extension by the Graph pipeline).
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant: usize,
    pub tenant_id: String,
    pub app_id: String,
    pub kind: CallerKind,
}

#[derive(Clone, Debug)]
pub enum CallerKind {
    /// App-only: the app's permissions (`roles` claim).
    App { permissions: Vec<String> },
    /// Delegated: the signed-in user and the scopes (`scp` claim).
    Delegated { user: usize, scopes: Vec<String> },
}

impl Caller {
    /// Holds one of these permissions (app) or scopes (delegated).
    pub fn has_any(&self, wanted: &[&str]) -> bool {
        let have = match &self.kind {
            CallerKind::App { permissions } => permissions,
            CallerKind::Delegated { scopes, .. } => scopes,
        };
        have.iter()
            .any(|h| wanted.iter().any(|w| w.eq_ignore_ascii_case(h)))
    }
    pub fn is_app(&self) -> bool {
        matches!(self.kind, CallerKind::App { .. })
    }
    /// The directory roles of the caller (the app's service principal, or the signed-in user).
    pub fn roles(&self, tenant: &Tenant) -> Vec<Role> {
        match &self.kind {
            CallerKind::App { .. } => tenant
                .app(&self.app_id)
                .map(|a| a.roles.clone())
                .unwrap_or_default(),
            CallerKind::Delegated { user, .. } => tenant
                .users
                .get(*user)
                .map(|u| u.roles.clone())
                .unwrap_or_default(),
        }
    }
}

/// Validates a bearer token from an `Authorization` header into a [`Caller`].
pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, GraphError> {
    let raw = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let token = match raw.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        _ if raw.is_empty() => "",
        _ => {
            return Err(GraphError::invalid_token(
                "Access token validation failure. Invalid audience.",
            ))
        }
    };
    if token.is_empty() {
        return Err(GraphError::invalid_token("Access token is empty."));
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.set_audience(&[state.base_url.as_str(), PUBLIC_GRAPH, GRAPH_APP_ID]);
    validation.set_required_spec_claims(&["exp", "nbf", "aud"]);
    // `exp` and `nbf` are checked below against the sandbox's clock (`--clock-offset`), which
    // issued the token, not against the real one
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let data = jsonwebtoken::decode::<AccessClaims>(
        token,
        &DecodingKey::from_secret(&state.token_key),
        &validation,
    )
    .map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
                GraphError::invalid_token("Access token has expired or is not yet valid.")
            }
            ErrorKind::InvalidAudience => {
                GraphError::invalid_token("Access token validation failure. Invalid audience.")
            }
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) => {
                GraphError::invalid_token("IDX14100: JWT is not well formed.")
            }
            _ => GraphError::invalid_token("Access token validation failure."),
        }
    })?;
    let claims = data.claims;
    let now = state.now().timestamp();
    if claims.exp <= now || claims.nbf > now {
        return Err(GraphError::invalid_token(
            "Access token has expired or is not yet valid.",
        ));
    }
    let store = state.read();
    let Some(tenant) = store.tenant_index(&claims.tid) else {
        return Err(GraphError::invalid_token(
            "Access token validation failure.",
        ));
    };
    let kind = if claims.idtyp == "user" {
        let Some(user) = store.tenants[tenant].user_by_id(&claims.oid) else {
            return Err(GraphError::invalid_token(
                "Access token validation failure.",
            ));
        };
        CallerKind::Delegated {
            user,
            scopes: claims
                .scp
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        }
    } else {
        CallerKind::App {
            permissions: claims.roles.unwrap_or_default(),
        }
    };
    Ok(Caller {
        tenant,
        tenant_id: store.tenants[tenant].id.clone(),
        app_id: claims.appid,
        kind,
    })
}

/// An identity-platform error.
#[derive(Debug)]
pub struct TokenError {
    pub error: &'static str,
    pub code: u64,
    pub description: String,
}

impl TokenError {
    fn new(error: &'static str, code: u64, description: impl Into<String>) -> Self {
        TokenError {
            error,
            code,
            description: description.into(),
        }
    }
    fn missing(param: &str) -> Self {
        Self::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{param}'."),
        )
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let now = Utc::now();
        let trace = uuid::Uuid::new_v4().to_string();
        let correlation = uuid::Uuid::new_v4().to_string();
        let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
        let status = if self.error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        let body = serde_json::json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}",
                self.code, self.description
            ),
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        (status, axum::Json(body)).into_response()
    }
}

fn tenant_not_found(key: &str) -> TokenError {
    TokenError::new(
        "invalid_request",
        90002,
        format!("Tenant '{key}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."),
    )
}

fn app_not_found(client_id: &str, tenant: &str) -> TokenError {
    TokenError::new(
        "unauthorized_client",
        700016,
        format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
    )
}

/// The AADSTS codes `--faults token=CODE` can answer with (see [`refusal`]).
pub const REFUSAL_CODES: [u64; 8] = [
    7000215, 7000222, 700016, 90002, 700027, 50034, 53003, 7000112,
];

/// The permanent refusal `code` (one of [`REFUSAL_CODES`]), in Entra's words as the
/// "Microsoft Entra authentication and authorization error codes" page and Entra's answers
/// phrase them, for the app `client_id` in the tenant `tenant_key`.
fn refusal(code: u64, client_id: &str, tenant_key: &str) -> TokenError {
    match code {
        7000215 => TokenError::new(
            "invalid_client",
            7000215,
            format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
        ),
        7000222 => TokenError::new(
            "invalid_client",
            7000222,
            format!("The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."),
        ),
        700016 => app_not_found(client_id, tenant_key),
        90002 => tenant_not_found(tenant_key),
        700027 => TokenError::new(
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        ),
        50034 => TokenError::new(
            "invalid_grant",
            50034,
            format!("The user account does not exist in the {tenant_key} directory. To sign into this application, the account must be added to the directory."),
        ),
        53003 => TokenError::new(
            "invalid_grant",
            53003,
            "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        ),
        _ => TokenError::new(
            "unauthorized_client",
            7000112,
            format!("Application '{client_id}' is disabled."),
        ),
    }
}

/// The answer of `--faults token=ANSWER` to one token request.
fn fault_answer(answer: super::faults::TokenAnswer, client_id: &str, tenant_key: &str) -> Response {
    use super::faults::TokenAnswer;
    let transient = |status: StatusCode, error: &str, description: &str, retry_after: bool| {
        let body = serde_json::json!({
            "error": error,
            "error_description": description,
            "error_codes": [],
            "timestamp": Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
            "trace_id": uuid::Uuid::new_v4().to_string(),
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    };
    const BUSY: &str =
        "The server is temporarily too busy to handle the request. Retry the request.";
    match answer {
        TokenAnswer::Drop => super::faults::dropped_connection(),
        TokenAnswer::TemporarilyUnavailable => transient(
            StatusCode::BAD_REQUEST,
            "temporarily_unavailable",
            BUSY,
            false,
        ),
        TokenAnswer::Status(429) => transient(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            BUSY,
            true,
        ),
        TokenAnswer::Status(503) => transient(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            BUSY,
            true,
        ),
        TokenAnswer::Status(s) => transient(
            StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "server_error",
            "The server encountered an unexpected error. Retry the request.",
            false,
        ),
        TokenAnswer::Refuse(code) => refusal(code, client_id, tenant_key).into_response(),
    }
}

fn parse_form(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn content_is_form(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(state): State<AppState>,
    GraphPath(tenant_key): GraphPath<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let limit = state.runtime.max_body_bytes;
    let bytes = match super::error::read_body(body, limit).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if !content_is_form(&headers) {
        return TokenError::new(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        )
        .into_response();
    }
    let form = parse_form(&bytes);
    if let Some(answer) = state.faults.decide_token() {
        let client_id = form.get("client_id").map(String::as_str).unwrap_or("");
        return fault_answer(answer, client_id, &tenant_key);
    }
    match issue(&state, &tenant_key, &form) {
        Ok(body) => (
            [(axum::http::header::CACHE_CONTROL, "no-store, no-cache")],
            axum::Json(body),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn issue(
    state: &AppState,
    tenant_key: &str,
    form: &std::collections::HashMap<String, String>,
) -> Result<serde_json::Value, TokenError> {
    let grant = form
        .get("grant_type")
        .ok_or_else(|| TokenError::missing("grant_type"))?;
    match grant.as_str() {
        "client_credentials" => client_credentials(state, tenant_key, form),
        "password" => ropc(state, tenant_key, form),
        DEVICE_CODE_GRANT => device_code_poll(state, tenant_key, form),
        other => Err(TokenError::new(
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

/// The audiences a certificate-signed client assertion may carry for this tenant.
fn assertion_audiences(state: &AppState, tenant: &Tenant) -> Vec<String> {
    let mut keys = vec![tenant.id.clone(), tenant.initial_domain.clone()];
    keys.extend(tenant.domains.iter().cloned());
    let mut out = Vec::new();
    for authority in [state.base_url.as_str(), "https://login.microsoftonline.com"] {
        for k in &keys {
            out.push(format!("{authority}/{k}/oauth2/v2.0/token"));
            out.push(format!("{authority}/{k}/v2.0"));
            out.push(format!("{authority}/{k}/v2.0/"));
        }
    }
    out
}

fn graph_scope_ok(state: &AppState, scope: &str) -> Result<(), TokenError> {
    let accepted = [
        format!("{}/.default", state.base_url),
        format!("{}/.default", state.base_url.trim_end_matches('/')),
        format!("{PUBLIC_GRAPH}/.default"),
        format!("{PUBLIC_GRAPH}//.default"),
        format!("{GRAPH_APP_ID}/.default"),
    ];
    let scope = scope.trim();
    if accepted.iter().any(|a| a.eq_ignore_ascii_case(scope)) {
        return Ok(());
    }
    if let Some(resource) = scope.strip_suffix("/.default") {
        return Err(TokenError::new(
            "invalid_resource",
            500011,
            format!("The resource principal named {resource} was not found in the tenant. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."),
        ));
    }
    Err(TokenError::new(
        "invalid_scope",
        1002012,
        format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."),
    ))
}

fn client_credentials(
    state: &AppState,
    tenant_key: &str,
    form: &std::collections::HashMap<String, String>,
) -> Result<serde_json::Value, TokenError> {
    let store = state.read();
    let ti = store
        .tenant_index(tenant_key)
        .ok_or_else(|| tenant_not_found(tenant_key))?;
    let tenant = &store.tenants[ti];
    let scope = form
        .get("scope")
        .ok_or_else(|| TokenError::missing("scope"))?;
    let client_id = form.get("client_id").map(|s| s.trim().to_lowercase());

    let app: &App = if let Some(secret) = form.get("client_secret") {
        let client_id = client_id.ok_or_else(|| TokenError::missing("client_id"))?;
        let app = tenant
            .app(&client_id)
            .ok_or_else(|| app_not_found(&client_id, &tenant.id))?;
        if !app.secrets.iter().any(|s| constant_time_eq(s, secret)) {
            return Err(TokenError::new(
                "invalid_client",
                7000215,
                format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.", app.client_id),
            ));
        }
        app
    } else if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
            return Err(TokenError::new(
                "invalid_request",
                50027,
                format!("Invalid client_assertion_type: the only supported value is '{ASSERTION_TYPE}'."),
            ));
        }
        verify_assertion(state, tenant, client_id.as_deref(), assertion)?
    } else {
        if let Some(id) = &client_id {
            if tenant.app(id).is_none() {
                return Err(app_not_found(id, &tenant.id));
            }
        }
        return Err(TokenError::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    graph_scope_ok(state, scope)?;
    let now = state.now().timestamp();
    let claims = AccessClaims {
        aud: state.base_url.clone(),
        iss: format!("https://sts.windows.net/{}/", tenant.id),
        iat: now,
        nbf: now,
        exp: now + state.runtime.token_lifetime as i64,
        tid: tenant.id.clone(),
        appid: app.client_id.clone(),
        oid: app.service_principal_id.clone(),
        sub: app.service_principal_id.clone(),
        idtyp: "app".into(),
        roles: Some(app.permissions.clone()),
        scp: None,
        upn: None,
        uti: uuid::Uuid::new_v4().simple().to_string(),
    };
    Ok(token_body(state, &claims))
}

fn token_body(state: &AppState, claims: &AccessClaims) -> serde_json::Value {
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&state.token_key),
    )
    .unwrap_or_default();
    let lifetime = state.runtime.token_lifetime;
    serde_json::json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    })
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Decodes base64 or base64url, padded or not.
fn lenient_b64(s: &str) -> Option<Vec<u8>> {
    let normalised: String = s
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(normalised)
        .ok()
}

fn map_jwt_error(e: &jsonwebtoken::errors::Error, federated: bool) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => TokenError::new(
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}.",
                Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
            ),
        ),
        ErrorKind::InvalidAudience if federated => TokenError::new(
            "invalid_client",
            700212,
            "No matching federated identity record found for presented assertion audience.",
        ),
        ErrorKind::InvalidAudience => TokenError::new(
            "invalid_client",
            50027,
            "JWT token is invalid or malformed. [Reason - The audience claim of the client assertion is not the token endpoint of this tenant.]",
        ),
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm if federated => {
            TokenError::new(
                "invalid_client",
                50013,
                "Assertion failed signature validation.",
            )
        }
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => TokenError::new(
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        ),
        ErrorKind::MissingRequiredClaim(c) => TokenError::new(
            "invalid_client",
            50027,
            format!("JWT token is invalid or malformed. [Reason - missing claim '{c}'.]"),
        ),
        _ => TokenError::new(
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        ),
    }
}

/// Verifies a `client_assertion` (certificate-signed or federated) and returns the app.
fn verify_assertion<'t>(
    state: &AppState,
    tenant: &'t Tenant,
    client_id: Option<&str>,
    assertion: &str,
) -> Result<&'t App, TokenError> {
    let malformed = || {
        TokenError::new(
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        )
    };
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| malformed())?;
    let unverified: serde_json::Value = jsonwebtoken::dangerous::insecure_decode(assertion)
        .map(|d| d.claims)
        .map_err(|_| malformed())?;
    let claim = |name: &str| {
        unverified
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };
    let algorithms = vec![Algorithm::RS256, Algorithm::PS256];
    let legacy = state.runtime.realism.legacy_certificate_assertions;
    if !algorithms.contains(&header.alg) {
        return Err(TokenError::new(
            "invalid_client",
            700027,
            format!("Client assertion contains an invalid signature. [Reason - The algorithm '{:?}' is not supported.]", header.alg),
        ));
    }

    if header.x5t.is_some() || header.x5t_s256.is_some() {
        // Certificate credential: sub = iss = client id. The current form is PS256 with
        // x5t#S256; the older one (RS256, SHA-1 x5t) only with the legacy switch.
        if !legacy && (header.alg != Algorithm::PS256 || header.x5t_s256.is_none()) {
            return Err(TokenError::new(
                "invalid_client",
                700027,
                format!("Client assertion contains an invalid signature. [Reason - The certificate assertion must be signed PS256 and name its certificate by 'x5t#S256' (found alg '{:?}'{}); the sandbox accepts the older RS256/x5t form only with --legacy-certificate-assertions.]", header.alg, if header.x5t_s256.is_none() { " and no 'x5t#S256'" } else { "" }),
            ));
        }
        let app_id = client_id
            .map(str::to_owned)
            .unwrap_or_else(|| claim("sub").to_lowercase());
        let app = tenant
            .app(&app_id)
            .ok_or_else(|| app_not_found(&app_id, &tenant.id))?;
        // Thumbprints compared as bytes: clients differ on padding and on base64 vs base64url.
        let x5t = header
            .x5t
            .as_deref()
            .filter(|_| legacy)
            .and_then(lenient_b64);
        let x5t_s256 = header.x5t_s256.as_deref().and_then(lenient_b64);
        let cert = app.certificates.iter().find(|c| {
            x5t.as_deref() == Some(c.sha1.as_slice())
                || x5t_s256.as_deref() == Some(c.sha256.as_slice())
        });
        let Some(cert) = cert else {
            let thumb = header
                .x5t
                .as_deref()
                .or(header.x5t_s256.as_deref())
                .and_then(|t| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(t)
                        .ok()
                })
                .map(hex::encode_upper)
                .unwrap_or_default();
            return Err(TokenError::new(
                "invalid_client",
                700027,
                format!("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{thumb}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{}'.]", app.client_id),
            ));
        };
        let mut v = Validation::new(Algorithm::PS256);
        v.algorithms = if legacy {
            algorithms
        } else {
            vec![Algorithm::PS256]
        };
        v.leeway = 60;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        v.set_audience(&assertion_audiences(state, tenant));
        v.set_issuer(&[
            app.client_id.as_str(),
            app.client_id.to_uppercase().as_str(),
        ]);
        let data = jsonwebtoken::decode::<serde_json::Value>(assertion, &cert.key, &v)
            .map_err(|e| map_jwt_error(&e, false))?;
        let sub = data
            .claims
            .get("sub")
            .and_then(|s| s.as_str())
            .unwrap_or("");
        if !sub.eq_ignore_ascii_case(&app.client_id) {
            return Err(TokenError::new(
                "invalid_client",
                50027,
                "JWT token is invalid or malformed. [Reason - The 'sub' claim of the client assertion must be the client id.]",
            ));
        }
        return Ok(app);
    }

    // Federated credential: the external token's iss/sub select the credential.
    let client_id = client_id.ok_or_else(|| TokenError::missing("client_id"))?;
    let app = tenant
        .app(client_id)
        .ok_or_else(|| app_not_found(client_id, &tenant.id))?;
    let (iss, sub) = (claim("iss"), claim("sub"));
    let Some(cred) = app
        .federated
        .iter()
        .find(|f| f.issuer == iss && f.subject == sub)
    else {
        return Err(TokenError::new(
            "invalid_client",
            70021,
            format!("No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'."),
        ));
    };
    let mut v = Validation::new(Algorithm::RS256);
    v.algorithms = algorithms;
    v.leeway = 60;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    v.set_audience(&cred.audiences);
    v.set_issuer(&[cred.issuer.as_str()]);
    jsonwebtoken::decode::<serde_json::Value>(assertion, &cred.key, &v)
        .map_err(|e| map_jwt_error(&e, true))?;
    Ok(app)
}

/// Scopes requested by a delegated flow, checked against the public client's consented scopes.
fn delegated_scopes(
    requested: Option<&String>,
    client: &super::store::PublicClient,
    client_id: &str,
) -> Result<Vec<String>, TokenError> {
    let requested = requested.map(String::as_str).unwrap_or("");
    let mut out = Vec::new();
    let mut any_default = false;
    for s in requested.split_whitespace() {
        let bare = s.rsplit_once('/').map(|(_, b)| b).unwrap_or(s);
        if matches!(
            bare.to_ascii_lowercase().as_str(),
            "openid" | "profile" | "offline_access" | "email"
        ) {
            continue;
        }
        if bare == ".default" {
            any_default = true;
            continue;
        }
        match client.scopes.iter().find(|c| c.eq_ignore_ascii_case(bare)) {
            Some(c) => out.push(c.clone()),
            None => {
                return Err(TokenError::new(
                    "invalid_grant",
                    65001,
                    format!("The user or administrator has not consented to use the application with ID '{client_id}'. Send an interactive authorization request for this user and resource."),
                ))
            }
        }
    }
    if any_default || out.is_empty() {
        out = client.scopes.clone();
    }
    Ok(out)
}

fn public_client<'t>(
    tenant: &'t Tenant,
    client_id: &str,
) -> Result<&'t super::store::PublicClient, TokenError> {
    tenant
        .public_clients
        .iter()
        .find(|p| p.client_id.eq_ignore_ascii_case(client_id))
        .ok_or_else(|| {
            if tenant.app(client_id).is_some() {
                // a confidential client without its credential
                TokenError::new(
                    "invalid_client",
                    7000218,
                    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
                )
            } else {
                app_not_found(client_id, &tenant.id)
            }
        })
}

fn delegated_token(
    state: &AppState,
    tenant: &Tenant,
    user: usize,
    client_id: &str,
    scopes: &[String],
) -> serde_json::Value {
    let u = &tenant.users[user];
    let now = state.now().timestamp();
    let claims = AccessClaims {
        aud: state.base_url.clone(),
        iss: format!("https://sts.windows.net/{}/", tenant.id),
        iat: now,
        nbf: now,
        exp: now + state.runtime.token_lifetime as i64,
        tid: tenant.id.clone(),
        appid: client_id.to_owned(),
        oid: u.id.clone(),
        sub: u.id.clone(),
        idtyp: "user".into(),
        roles: None,
        scp: Some(scopes.join(" ")),
        upn: Some(u.upn.clone()),
        uti: uuid::Uuid::new_v4().simple().to_string(),
    };
    let mut body = token_body(state, &claims);
    body["scope"] = serde_json::Value::String(
        scopes
            .iter()
            .map(|s| format!("{PUBLIC_GRAPH}/{s}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    body
}

fn ropc(
    state: &AppState,
    tenant_key: &str,
    form: &std::collections::HashMap<String, String>,
) -> Result<serde_json::Value, TokenError> {
    let store = state.read();
    let ti = store
        .tenant_index(tenant_key)
        .ok_or_else(|| tenant_not_found(tenant_key))?;
    let tenant = &store.tenants[ti];
    let client_id = form
        .get("client_id")
        .ok_or_else(|| TokenError::missing("client_id"))?;
    let client = public_client(tenant, client_id)?;
    let username = form
        .get("username")
        .ok_or_else(|| TokenError::missing("username"))?;
    let password = form
        .get("password")
        .ok_or_else(|| TokenError::missing("password"))?;
    let bad = || {
        TokenError::new(
            "invalid_grant",
            50126,
            "Error validating credentials due to invalid username or password.",
        )
    };
    let user = tenant.user_by_upn(username).ok_or_else(bad)?;
    let u = &tenant.users[user];
    match &u.password_sha256 {
        Some(h) if constant_time_eq(h, &super::seed::password_hash(password)) => {}
        _ => return Err(bad()),
    }
    if !u.account_enabled {
        return Err(TokenError::new(
            "invalid_grant",
            50057,
            "The user account is disabled.",
        ));
    }
    // A user who must change the password cannot sign in non-interactively.
    if u.force_change || u.force_change_mfa {
        return Err(TokenError::new(
            "invalid_grant",
            50055,
            "The password is expired.",
        ));
    }
    let scopes = delegated_scopes(form.get("scope"), client, client_id)?;
    Ok(delegated_token(state, tenant, user, client_id, &scopes))
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub async fn devicecode(
    State(state): State<AppState>,
    GraphPath(tenant_key): GraphPath<String>,
    body: axum::body::Body,
) -> Response {
    let bytes = match super::error::read_body(body, state.runtime.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let form = parse_form(&bytes);
    let mut store = state.write();
    let Some(ti) = store.tenant_index(&tenant_key) else {
        return tenant_not_found(&tenant_key).into_response();
    };
    let tenant = &mut store.tenants[ti];
    let Some(client_id) = form.get("client_id") else {
        return TokenError::missing("client_id").into_response();
    };
    let scopes = match public_client(tenant, client_id)
        .and_then(|c| delegated_scopes(form.get("scope"), c, client_id))
    {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let now = Utc::now();
    tenant.device_codes.retain(|_, d| d.expires > now);
    let device_code = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let user_code: String = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_uppercase()
        .chars()
        .take(9)
        .collect();
    let expires_in = 900;
    tenant.device_codes.insert(
        device_code.clone(),
        super::store::DeviceCode {
            user_code: user_code.clone(),
            client_id: client_id.to_lowercase(),
            scopes,
            expires: now + chrono::Duration::seconds(expires_in),
            approved_user: None,
            polls: 0,
        },
    );
    let uri = format!("{}/_sandbox/devicelogin", state.base_url);
    axum::Json(serde_json::json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": uri,
        "expires_in": expires_in,
        "interval": state.runtime.device_code_interval,
        "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
    }))
    .into_response()
}

fn device_code_poll(
    state: &AppState,
    tenant_key: &str,
    form: &std::collections::HashMap<String, String>,
) -> Result<serde_json::Value, TokenError> {
    let mut store = state.write();
    let ti = store
        .tenant_index(tenant_key)
        .ok_or_else(|| tenant_not_found(tenant_key))?;
    let tenant = &mut store.tenants[ti];
    let code = form
        .get("device_code")
        .ok_or_else(|| TokenError::missing("device_code"))?;
    let auto = tenant.device_code_auto_approve;
    let Some(dc) = tenant.device_codes.get_mut(code) else {
        return Err(TokenError::new(
            "invalid_grant",
            70000,
            "The provided value for the 'device_code' is not valid.",
        ));
    };
    if let Some(client_id) = form.get("client_id") {
        if !client_id.eq_ignore_ascii_case(&dc.client_id) {
            return Err(TokenError::new(
                "invalid_grant",
                70000,
                "The provided value for the 'device_code' was issued to another client.",
            ));
        }
    }
    if dc.expires <= Utc::now() {
        tenant.device_codes.remove(code);
        return Err(TokenError::new(
            "expired_token",
            70020,
            "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
        ));
    }
    dc.polls += 1;
    if dc.approved_user.is_none() && dc.polls > 1 {
        dc.approved_user = auto;
    }
    let Some(user) = dc.approved_user else {
        return Err(TokenError::new(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ));
    };
    let dc = dc.clone();
    tenant.device_codes.remove(code);
    let tenant = &store.tenants[ti];
    Ok(delegated_token(
        state,
        tenant,
        user,
        &dc.client_id,
        &dc.scopes,
    ))
}

/// `POST /_sandbox/devicecode/approve` `{"user_code": "...", "username": "upn"}`: approves a
/// pending device-code sign-in as that user (any tenant).
pub async fn approve_device_code(
    State(state): State<AppState>,
    body: axum::body::Body,
) -> Result<StatusCode, GraphError> {
    let bytes = super::error::read_body(body, state.runtime.max_body_bytes).await?;
    let v = super::error::parse_json(&bytes)?;
    let user_code = v.get("user_code").and_then(|x| x.as_str()).unwrap_or("");
    let username = v.get("username").and_then(|x| x.as_str()).unwrap_or("");
    let mut store = state.write();
    for tenant in &mut store.tenants {
        let Some(user) = tenant.user_by_upn(username) else {
            continue;
        };
        if let Some(dc) = tenant
            .device_codes
            .values_mut()
            .find(|d| d.user_code.eq_ignore_ascii_case(user_code))
        {
            dc.approved_user = Some(user);
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    Err(GraphError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "No pending device code with this user_code for a user of that name.",
    ))
}
