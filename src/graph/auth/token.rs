//! [`TokenProvider`]: acquires access tokens with the grant each [`Credential`] calls for
//! (client credentials with a secret or a client assertion, password, device code, refresh
//! token) and caches them per tenant.
//!
//! # Token cache
//!
//! [`TokenProvider`] keeps one slot per tenant (the key is tenant + credential kind), each behind
//! its own async mutex: concurrent callers for the same tenant queue on the mutex, the first one
//! refreshes, the others find the fresh token (single flight). A token is refreshed when less
//! than `min(5 min, 10% of its lifetime)` remains, so that short-lived sandbox tokens are not
//! refreshed on every call. A rejected token (Graph said 401) is expired with
//! [`TokenProvider::invalidate`] and the next call fetches a new one. Device-code sign-ins ask
//! for `offline_access` and renew with the refresh token, so the user signs in once per run;
//! username/password and the app-only kinds simply repeat their grant. A pre-acquired token is
//! never refreshed: a 401 for it is [`AuthError::AccessTokenRejected`]. Secrets only live in
//! [`SecretString`]s; no `Debug` or `Display` here prints one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::aadsts;
use super::cloud::{checked_url, Endpoints};
use super::credential::{certificate_assertion, read_federated_token, Credential};
use super::{AuthError, TokenFailure};
use crate::graph::error_chain;
use crate::graph::model::{TokenErrorResponse, TokenResponse};
use crate::graph::notice::{Notice, Notifier};
use crate::graph::redact::{self, redacted};
use crate::graph::retry::{parse_retry_after, RetryPolicy};

/// The audience of federated tokens exchanged for Entra tokens (workload identity, GitHub OIDC).
pub(crate) const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The longest token lifetime believed: a day (Entra issues 60 to 90 minutes). A larger
/// `expires_in` (a misbehaving or hostile endpoint; found writing the `graph_token` fuzz target:
/// `u64::MAX` overflowed the clock and panicked) is capped.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The longest device-code polling interval honoured, in seconds.
const MAX_DEVICE_CODE_INTERVAL: u64 = 60;

/// A cached token and when to stop using it.
struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
    /// delegated device-code sign-ins: renews the token without asking the user again
    refresh_token: Option<SecretString>,
}

/// When to refresh a token that lives `lifetime`: `min(5 min, 10%)` before it expires.
pub(crate) fn refresh_margin(lifetime: Duration) -> Duration {
    std::cmp::min(Duration::from_secs(300), lifetime / 10)
}

/// One tenant's cache: the token, or the permanent refusal that ended its acquisition (so that
/// the callers queued behind it fail at once instead of asking the authority again).
#[derive(Default)]
struct SlotState {
    cached: Option<CachedToken>,
    refused: Option<AuthError>,
}

type Slot = Arc<tokio::sync::Mutex<SlotState>>;

/// Acquires and caches tokens, one slot per tenant, single flight per slot.
pub(crate) struct TokenProvider {
    credential: Credential,
    endpoints: Endpoints,
    http: reqwest::Client,
    slots: std::sync::Mutex<HashMap<String, Slot>>,
    token_requests: std::sync::atomic::AtomicU64,
    notices: Notifier,
    /// the token endpoint's retry policy, its time budget within the client's request deadline
    policy: RetryPolicy,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("credential", &self.credential)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct DeviceCodeResponse {
    device_code: SecretString,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    user_code: Option<String>,
    #[serde(default)]
    verification_uri: Option<String>,
    #[serde(default = "default_device_expiry")]
    expires_in: u64,
    #[serde(default = "default_interval")]
    interval: u64,
}

fn default_device_expiry() -> u64 {
    900
}
fn default_interval() -> u64 {
    5
}

#[derive(Deserialize)]
struct GitHubTokenResponse {
    value: SecretString,
}

impl TokenProvider {
    /// A provider for `credential` against `endpoints`, sending through `http` (the Graph
    /// client's reqwest client, so the TLS settings are the same). The device-code prompt goes
    /// to `notices`.
    pub fn new(
        credential: Credential,
        endpoints: Endpoints,
        http: reqwest::Client,
        notices: Notifier,
    ) -> Self {
        TokenProvider {
            credential,
            endpoints,
            http,
            notices,
            slots: std::sync::Mutex::new(HashMap::new()),
            token_requests: std::sync::atomic::AtomicU64::new(0),
            policy: RetryPolicy::token_endpoint(),
        }
    }

    /// Bounds the waits between retries of one token request by `deadline` (the client's
    /// `request_deadline`, `--request-timeout`), as well as by the token endpoint's own policy.
    pub fn within(mut self, deadline: Duration) -> Self {
        self.policy.max_elapsed = self.policy.max_elapsed.min(deadline);
        self
    }

    /// The credential this provider uses.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// How many token requests went to the token endpoint so far.
    pub fn token_requests(&self) -> u64 {
        self.token_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn slot(&self, tenant: &str) -> Slot {
        let key = format!("{tenant}\u{0}{}", self.credential.kind());
        let mut slots = self.slots.lock().expect("token slot map poisoned");
        slots.entry(key).or_default().clone()
    }

    /// A valid access token for `tenant`, from the cache or freshly acquired.
    pub async fn token(&self, tenant: &str) -> Result<SecretString, AuthError> {
        if let Credential::AccessToken { token } = &self.credential {
            redact::remember_secret(token);
            return Ok(token.clone());
        }
        let slot = self.slot(tenant);
        let mut guard = slot.lock().await;
        if let Some(refused) = &guard.refused {
            return Err(refused.clone());
        }
        if let Some(cached) = guard.cached.as_ref() {
            if Instant::now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        let previous = guard.cached.take();
        match self.acquire(tenant, previous).await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                guard.cached = Some(fresh);
                Ok(token)
            }
            Err(e) => {
                // a permanent refusal stays the answer for this run: asking again gets it again
                if matches!(&e, AuthError::Token(f) if !f.transient) {
                    guard.refused = Some(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Expires the cached token of `tenant` if it is still `rejected` (Graph answered 401 to
    /// it), so that the next [`TokenProvider::token`] fetches a new one (keeping a refresh token). Returns whether a new token
    /// can be fetched at all (a pre-acquired token cannot).
    pub async fn invalidate(&self, tenant: &str, rejected: &SecretString) -> bool {
        if matches!(self.credential, Credential::AccessToken { .. }) {
            return false;
        }
        let slot = self.slot(tenant);
        let mut guard = slot.lock().await;
        if let Some(cached) = guard.cached.as_mut() {
            if cached.token.expose_secret() == rejected.expose_secret() {
                // expire it now, but keep a refresh token
                cached.refresh_at = Instant::now();
            }
        }
        true
    }

    async fn acquire(
        &self,
        tenant: &str,
        previous: Option<CachedToken>,
    ) -> Result<CachedToken, AuthError> {
        let scope = self.endpoints.scope.clone();
        let client_id = self.credential.client_id().to_owned();
        let mut form: Vec<(&str, String)> = vec![("client_id", client_id.clone())];
        match &self.credential {
            Credential::AccessToken { .. } => unreachable!("handled in token()"),
            Credential::ClientSecret { secret, .. } => {
                form.push(("scope", scope));
                form.push(("grant_type", "client_credentials".into()));
                form.push(("client_secret", secret.expose_secret().to_owned()));
            }
            Credential::Certificate { pem_path, .. } => {
                let aud = self.endpoints.token_url(tenant)?;
                let assertion = certificate_assertion(pem_path, &client_id, aud.as_str())?;
                push_assertion(&mut form, scope, assertion);
            }
            Credential::WorkloadIdentity { token_file, .. } => {
                let assertion = read_federated_token(token_file)?;
                push_assertion(&mut form, scope, assertion);
            }
            Credential::GitHubOidc {
                request_url,
                request_token,
                ..
            } => {
                let assertion = self.github_oidc_token(request_url, request_token).await?;
                push_assertion(&mut form, scope, assertion);
            }
            Credential::UsernamePassword {
                username, password, ..
            } => {
                form.push(("scope", scope));
                form.push(("grant_type", "password".into()));
                form.push(("username", username.clone()));
                form.push(("password", password.expose_secret().to_owned()));
            }
            Credential::DeviceCode { .. } => {
                if let Some(refresh_token) = previous.and_then(|p| p.refresh_token) {
                    let form = [
                        ("client_id", client_id.clone()),
                        ("grant_type", "refresh_token".to_owned()),
                        ("refresh_token", refresh_token.expose_secret().to_owned()),
                        ("scope", self.delegated_scope()),
                    ];
                    // every secret this request carries, masked in whatever the authority answers
                    for (key, value) in &form {
                        if SECRET_FORM_FIELDS.contains(key) {
                            redact::remember(value);
                        }
                    }
                    let (status, body) = self.post_token_form(tenant, &form).await?;
                    match parse_token_response(tenant, status, &body) {
                        Ok(token) => return Ok(token),
                        Err(e) => {
                            tracing::debug!(error = %crate::escape::Shown(&e.to_string()), "refresh token refused; signing in again");
                        }
                    }
                }
                return self.device_code_flow(tenant).await;
            }
        }
        // every secret this request carries, masked in whatever the authority answers
        for (key, value) in &form {
            if SECRET_FORM_FIELDS.contains(key) {
                redact::remember(value);
            }
        }
        let (status, body) = self.post_token_form(tenant, &form).await?;
        parse_token_response(tenant, status, &body)
    }

    async fn post_token_form(
        &self,
        tenant: &str,
        form: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), AuthError> {
        let url = self.endpoints.token_url(tenant)?;
        self.post_form(url, form).await
    }

    /// POSTs a form with the token endpoint's [`RetryPolicy::token_endpoint`] (its waits bounded
    /// by the client's request deadline, [`TokenProvider::within`]): transport errors (a refused
    /// connection, a timeout) and the transient answers of [`aadsts::is_transient`] (408, 429,
    /// 5xx, `temporarily_unavailable`; asking for a token again is harmless) are retried, after
    /// `Retry-After` or a full-jitter backoff. A permanent answer (`invalid_client`, ...) is the
    /// result at once. When the retries are spent, the last answer (or transport error) is the
    /// result. The body is never logged.
    async fn post_form(
        &self,
        url: Url,
        form: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), AuthError> {
        let policy = &self.policy;
        let mut retries: u32 = 0;
        let mut waited = Duration::ZERO;
        loop {
            self.token_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let sent = self.http.post(url.clone()).form(form).send().await;
            // the result if no retry follows, and the server's Retry-After
            let (last, retry_after) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let ra = parse_retry_after(
                        resp.headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok()),
                    );
                    tracing::debug!(method = "POST", url = %url.path(), status, "token endpoint");
                    match capped_body(resp).await {
                        Ok(body)
                            if !aadsts::is_transient(status, oauth_error(&body).as_deref()) =>
                        {
                            return Ok((status, body))
                        }
                        Ok(body) => (Ok((status, body)), ra),
                        Err(e) => (Err(e), None),
                    }
                }
                Err(e) => {
                    let message = error_chain(e);
                    tracing::debug!(url = %url.path(), error = %crate::escape::Shown(&message.to_string()), "token endpoint transport error");
                    (Err(TransportError::Transport(message)), None)
                }
            };
            retries += 1;
            match policy.next_delay(retries, waited, retry_after) {
                Some(delay) => {
                    waited += delay;
                    tokio::time::sleep(delay).await;
                }
                None => return last.map_err(|e| AuthError::Transport(e.to_string())),
            }
        }
    }

    /// The device-code scope: Graph's `.default` plus `offline_access` for a refresh token.
    fn delegated_scope(&self) -> String {
        format!("{} offline_access", self.endpoints.scope)
    }

    async fn github_oidc_token(
        &self,
        request_url: &str,
        request_token: &SecretString,
    ) -> Result<String, AuthError> {
        redact::remember_secret(request_token);
        let sep = if request_url.contains('?') { '&' } else { '?' };
        let url = checked_url(&format!("{request_url}{sep}audience={FEDERATED_AUDIENCE}"))
            .map_err(|e| AuthError::GitHubOidc(e.to_string()))?;
        let resp = self
            .http
            .get(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("bearer {}", request_token.expose_secret()),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| AuthError::GitHubOidc(error_chain(e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(AuthError::GitHubOidc(format!(
                "HTTP {status} from ACTIONS_ID_TOKEN_REQUEST_URL (does the job have `permissions: id-token: write`?)"
            )));
        }
        let body = capped_body(resp)
            .await
            .map_err(|e| AuthError::GitHubOidc(e.to_string()))?;
        let body: GitHubTokenResponse = serde_json::from_slice(&body)
            .map_err(|e| AuthError::GitHubOidc(format!("no `value` in the response: {e}")))?;
        redact::remember_secret(&body.value);
        Ok(body.value.expose_secret().to_owned())
    }

    async fn device_code_flow(&self, tenant: &str) -> Result<CachedToken, AuthError> {
        let client_id = self.credential.client_id().to_owned();
        let url = self.endpoints.device_code_url(tenant)?;
        let (status, body) = self
            .post_form(
                url,
                &[
                    ("client_id", client_id.clone()),
                    ("scope", self.delegated_scope()),
                ],
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(token_error(tenant, status, &body));
        }
        let dc: DeviceCodeResponse =
            serde_json::from_slice(&body).map_err(|e| AuthError::Decode {
                what: "device code endpoint".into(),
                message: redacted(&e.to_string()),
            })?;
        redact::remember_secret(&dc.device_code);
        self.notices.notify(device_code_notice(&dc));
        // the endpoint's numbers are believed within bounds: a huge `expires_in` would overflow
        // the clock, a huge `interval` would sleep forever
        let deadline = Instant::now() + Duration::from_secs(dc.expires_in).min(MAX_TOKEN_LIFETIME);
        let mut interval = Duration::from_secs(dc.interval.clamp(1, MAX_DEVICE_CODE_INTERVAL));
        loop {
            if Instant::now() >= deadline {
                return Err(AuthError::DeviceCode(
                    "the code expired before sign-in completed".into(),
                ));
            }
            tokio::time::sleep(interval).await;
            let (status, body) = self
                .post_token_form(
                    tenant,
                    &[
                        ("client_id", client_id.clone()),
                        ("grant_type", DEVICE_CODE_GRANT.into()),
                        ("device_code", dc.device_code.expose_secret().to_owned()),
                    ],
                )
                .await?;
            if (200..300).contains(&status) {
                return parse_token_response(tenant, status, &body);
            }
            match serde_json::from_slice::<TokenErrorResponse>(&body) {
                Ok(e) if e.error == "authorization_pending" => continue,
                Ok(e) if e.error == "slow_down" => {
                    interval += Duration::from_secs(5);
                    continue;
                }
                _ => return Err(token_error(tenant, status, &body)),
            }
        }
    }
}

/// The sign-in prompt of a device-code response: the identity platform's message, or one built
/// from the verification URI and the user code.
fn device_code_notice(dc: &DeviceCodeResponse) -> Notice {
    let message = dc.message.clone().unwrap_or_else(|| {
        format!(
            "To sign in, open {} and enter the code {}",
            dc.verification_uri
                .as_deref()
                .unwrap_or("the verification page"),
            dc.user_code.as_deref().unwrap_or("(none)")
        )
    });
    Notice::DeviceCode {
        verification_uri: dc.verification_uri.clone(),
        user_code: dc.user_code.clone(),
        message,
    }
}

/// The tenant id (`tid` claim, lower-case) an access token was issued for, read from its payload
/// without verifying it (Graph verifies it; this only learns which tenant a domain names: a token
/// asked for `contoso.com` carries the id of the tenant that owns the domain). `None` for a token
/// that is not a JWT or has no GUID `tid`.
pub fn tenant_id_from_token(token: &str) -> Option<String> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    parts.next()?;
    if payload.len() > 64 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(Deserialize)]
    struct Claims {
        tid: Option<String>,
    }
    let tid = serde_json::from_slice::<Claims>(&bytes).ok()?.tid?;
    let id = uuid::Uuid::parse_str(&tid).ok()?;
    Some(id.hyphenated().to_string())
}

/// What is wrong with a pre-acquired access token Graph refused (401), and what to do, from what
/// the token itself says: empty; not a JWT (three base64url parts separated by dots, the middle
/// one JSON: "Access tokens", <https://learn.microsoft.com/en-us/entra/identity-platform/access-tokens>);
/// expired or not yet valid by its `exp` / `nbf` claims; issued for another audience (`aud` is
/// not Microsoft Graph: its URL in this cloud, or its app id `00000003-0000-0000-c000-000000000000`).
/// The claims are read, not verified (Graph verifies); the text never quotes the token.
pub fn access_token_problem(token: &str, endpoints: &Endpoints, now_unix: i64) -> String {
    use base64::Engine;
    const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
    let again = "acquire a new one for Microsoft Graph (e.g. `az account get-access-token \
                 --resource-type ms-graph --query accessToken -o tsv`; pwdrift never refreshes a \
                 pre-acquired token), or unset PWDRIFT_ACCESS_TOKEN to sign in with the AZURE_* \
                 variables";
    let token = token.trim();
    if token.is_empty() {
        return format!("it is empty: {again}");
    }
    if token.len() > 7 && token[..7].eq_ignore_ascii_case("bearer ") {
        return "it starts with `Bearer `: set PWDRIFT_ACCESS_TOKEN to the token alone".to_owned();
    }
    #[derive(Deserialize)]
    struct Claims {
        #[serde(default)]
        aud: Option<serde_json::Value>,
        #[serde(default)]
        exp: Option<i64>,
        #[serde(default)]
        nbf: Option<i64>,
    }
    let parts: Vec<&str> = token.split('.').collect();
    let claims = (parts.len() == 3 && parts[1].len() <= 64 * 1024)
        .then(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1].trim_end_matches('='))
                .ok()
        })
        .flatten()
        .and_then(|b| serde_json::from_slice::<Claims>(&b).ok());
    let Some(claims) = claims else {
        return format!(
            "it is not a JWT (a Microsoft Graph access token is three base64url parts separated \
             by dots, {} characters here{}): was the whole token copied, without quotes? {again}",
            token.chars().count(),
            if parts.len() == 3 {
                ", but its middle part is not JSON claims".to_owned()
            } else {
                format!(", in {} part(s)", parts.len())
            }
        );
    };
    let when = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| t.to_string())
    };
    if let Some(exp) = claims.exp {
        if exp <= now_unix {
            return format!(
                "it expired at {} (its exp claim; tokens live about an hour): {again}",
                when(exp)
            );
        }
    }
    if let Some(nbf) = claims.nbf {
        if nbf > now_unix + 300 {
            return format!(
                "it is not valid before {} (its nbf claim): is this machine's clock right? {again}",
                when(nbf)
            );
        }
    }
    let graph = endpoints
        .graph_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let audiences: Vec<String> = match &claims.aud {
        Some(serde_json::Value::String(a)) => vec![a.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let for_graph = audiences.iter().any(|a| {
        let a = a.trim_end_matches('/');
        a.eq_ignore_ascii_case(&graph)
            || a.eq_ignore_ascii_case(GRAPH_APP_ID)
            || a.eq_ignore_ascii_case("https://graph.microsoft.com")
    });
    if !for_graph {
        let shown = if audiences.is_empty() {
            "no audience (aud claim)".to_owned()
        } else {
            // the token's words are shown, but never a control character
            let aud: String = audiences
                .join(", ")
                .chars()
                .map(|c| {
                    if c.is_ascii_graphic() || c == ' ' {
                        c
                    } else {
                        '?'
                    }
                })
                .take(200)
                .collect();
            format!("the audience {aud}")
        };
        return format!(
            "it was issued for {shown}, not Microsoft Graph ({graph}): acquire a token for the \
             resource {graph} (scope {graph}/.default; `az account get-access-token \
             --resource-type ms-graph`), not for another API"
        );
    }
    format!(
        "its claims look valid (audience, expiry), so Graph refused it for another reason: {again}"
    )
}

/// The token-request fields that carry a secret.
const SECRET_FORM_FIELDS: [&str; 4] = [
    "client_secret",
    "client_assertion",
    "password",
    "refresh_token",
];

fn push_assertion(form: &mut Vec<(&str, String)>, scope: String, assertion: String) {
    form.push(("scope", scope));
    form.push(("grant_type", "client_credentials".into()));
    form.push(("client_assertion_type", JWT_BEARER.into()));
    form.push(("client_assertion", assertion));
}

/// A token endpoint answer with HTTP status `status`, read as the provider reads it: how long
/// the token would be used before it is refreshed, or the error reported (which never holds the
/// token). Pure; exposed for the fuzz targets and their corpus test.
pub fn token_response(status: u16, body: &[u8]) -> Result<Duration, AuthError> {
    let cached = parse_token_response("fuzz", status, body)?;
    Ok(cached.refresh_at.saturating_duration_since(Instant::now()))
}

fn parse_token_response(tenant: &str, status: u16, body: &[u8]) -> Result<CachedToken, AuthError> {
    if !(200..300).contains(&status) {
        return Err(token_error(tenant, status, body));
    }
    let resp: TokenResponse = serde_json::from_slice(body).map_err(|e| AuthError::Decode {
        what: "token endpoint".into(),
        // serde_json's message names the position and the expected type, never the input.
        message: redacted(&e.to_string()),
    })?;
    #[derive(Deserialize)]
    struct RefreshPart {
        #[serde(default)]
        refresh_token: Option<SecretString>,
    }
    let refresh_token = serde_json::from_slice::<RefreshPart>(body)
        .ok()
        .and_then(|r| r.refresh_token);
    redact::remember_secret(&resp.access_token);
    if let Some(r) = &refresh_token {
        redact::remember_secret(r);
    }
    let lifetime = Duration::from_secs(resp.expires_in).min(MAX_TOKEN_LIFETIME);
    Ok(CachedToken {
        token: resp.access_token,
        refresh_at: Instant::now() + lifetime - refresh_margin(lifetime),
        refresh_token,
    })
}

/// The OAuth `error` of a token-endpoint answer, if it is an OAuth error body.
fn oauth_error(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ErrorPart {
        error: String,
    }
    serde_json::from_slice::<ErrorPart>(body)
        .ok()
        .map(|e| e.error)
}

fn token_error(tenant: &str, status: u16, body: &[u8]) -> AuthError {
    match serde_json::from_slice::<TokenErrorResponse>(body) {
        // the authority's words are echoed: a description quoting the client secret (or any
        // secret of the run) is masked here, where the error is built
        Ok(e) => AuthError::Token(Box::new(TokenFailure {
            tenant: tenant.to_owned(),
            status,
            codes: aadsts::codes(&e.error_codes, &e.error_description),
            transient: aadsts::is_transient(status, Some(&e.error)),
            error: redacted(&e.error),
            description: redacted(&e.error_description),
            trace_id: e.trace_id.as_deref().map(redacted),
            correlation_id: e.correlation_id.as_deref().map(redacted),
        })),
        Err(_) => AuthError::Token(Box::new(TokenFailure {
            tenant: tenant.to_owned(),
            status,
            error: "unexpected_response".into(),
            description: format!("HTTP {status} without an OAuth error body"),
            trace_id: None,
            correlation_id: None,
            codes: Vec::new(),
            transient: aadsts::is_transient(status, None),
        })),
    }
}

/// Largest token-endpoint answer read: a token response is a few kilobytes.
const MAX_TOKEN_RESPONSE_BYTES: usize = 1 << 20;

/// Why an answer (or a request) to the token endpoint or GitHub's OIDC endpoint failed below
/// HTTP: the transport, or an answer too large to read.
#[derive(Debug, thiserror::Error)]
enum TransportError {
    /// the reqwest error with its causes, without the URL ([`error_chain`])
    #[error("{0}")]
    Transport(String),
    #[error("the answer is larger than {MAX_TOKEN_RESPONSE_BYTES} bytes; refused")]
    TooLarge,
}

/// The body of a token-endpoint answer, refused past [`MAX_TOKEN_RESPONSE_BYTES`].
async fn capped_body(mut resp: reqwest::Response) -> Result<Vec<u8>, TransportError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_TOKEN_RESPONSE_BYTES as u64)
    {
        return Err(TransportError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| TransportError::Transport(error_chain(e)))?
    {
        if body.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
            return Err(TransportError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_margin_is_min_of_five_minutes_and_ten_percent() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3599)),
            Duration::from_secs(300)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(refresh_margin(Duration::from_secs(0)), Duration::ZERO);
    }

    #[test]
    fn device_code_notice_uses_the_platform_message_or_builds_one() {
        let dc: DeviceCodeResponse = serde_json::from_str(
            r#"{"device_code":"Canary-Device","user_code":"ABCD","verification_uri":"https://microsoft.com/devicelogin","message":"Open the page and enter ABCD."}"#,
        )
        .unwrap();
        let n = device_code_notice(&dc);
        assert_eq!(n.message(), "Open the page and enter ABCD.");
        assert!(matches!(
            &n,
            Notice::DeviceCode { verification_uri: Some(u), user_code: Some(c), .. }
                if u == "https://microsoft.com/devicelogin" && c == "ABCD"
        ));
        assert!(!format!("{n:?}").contains("Canary"));
        let dc: DeviceCodeResponse = serde_json::from_str(
            r#"{"device_code":"d","user_code":"WXYZ","verification_uri":"https://example.test/dl"}"#,
        )
        .unwrap();
        assert_eq!(
            device_code_notice(&dc).message(),
            "To sign in, open https://example.test/dl and enter the code WXYZ"
        );
        let dc: DeviceCodeResponse = serde_json::from_str(r#"{"device_code":"d"}"#).unwrap();
        assert_eq!(
            device_code_notice(&dc).message(),
            "To sign in, open the verification page and enter the code (none)"
        );
    }

    /// Found while writing the `graph_token` fuzz target, by reading the code it covers (the
    /// 2-minute run did not hit it); corpus: `crash-huge-expires-in.bin`.
    #[test]
    fn a_huge_expires_in_is_capped_not_a_panic() {
        let body =
            br#"{"token_type":"Bearer","expires_in":18446744073709551615,"access_token":"x"}"#;
        let refresh = token_response(200, body).unwrap();
        assert!(refresh <= MAX_TOKEN_LIFETIME, "{refresh:?}");
        assert!(refresh > Duration::from_secs(23 * 3600), "{refresh:?}");
    }

    #[test]
    fn tenant_id_is_read_from_the_tid_claim() {
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = |claims: &str| format!("{}.{}.sig", enc(r#"{"alg":"RS256"}"#), enc(claims));
        assert_eq!(
            tenant_id_from_token(&jwt(r#"{"tid":"7B3E1A52-9C4D-4F1E-A2B8-3D5C6E7F8A90"}"#))
                .as_deref(),
            Some("7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90")
        );
        assert_eq!(tenant_id_from_token(&jwt(r#"{"tid":"contoso.com"}"#)), None);
        assert_eq!(tenant_id_from_token(&jwt(r#"{"oid":"x"}"#)), None);
        assert_eq!(tenant_id_from_token("opaque-token"), None);
        assert_eq!(tenant_id_from_token("a.!!!.c"), None);
    }

    #[test]
    fn a_refused_access_token_is_told_what_is_wrong_with_it() {
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = |claims: &str| format!("{}.{}.sig", enc(r#"{"alg":"RS256"}"#), enc(claims));
        let e = Endpoints::for_cloud(super::super::Cloud::Global);
        let now = 1_800_000_000;
        let problem = |t: &str| access_token_problem(t, &e, now);
        assert!(problem("  ").starts_with("it is empty"), "{}", problem(" "));
        assert!(problem("Bearer abc").contains("`Bearer `"));
        for opaque in [
            "opaque-token",
            "a.b",
            "a.!!!.c",
            &format!("x.{}.y", enc("not json")),
        ] {
            let p = problem(opaque);
            assert!(p.starts_with("it is not a JWT"), "{opaque}: {p}");
            assert!(!p.contains(opaque), "the token is never quoted: {p}");
        }
        let p = problem(&jwt(&format!(
            r#"{{"aud":"https://graph.microsoft.com","exp":{}}}"#,
            now - 60
        )));
        assert!(p.contains("expired at 2027-01-15T07:59:00Z"), "{p}");
        let p = problem(&jwt(&format!(
            r#"{{"aud":"https://management.azure.com/","exp":{}}}"#,
            now + 600
        )));
        assert!(
            p.contains("issued for the audience https://management.azure.com/, not Microsoft Graph (https://graph.microsoft.com)"),
            "{p}"
        );
        for aud in [
            "https://graph.microsoft.com/",
            "00000003-0000-0000-c000-000000000000",
        ] {
            let p = problem(&jwt(&format!(r#"{{"aud":"{aud}","exp":{}}}"#, now + 600)));
            assert!(p.starts_with("its claims look valid"), "{aud}: {p}");
        }
    }

    #[test]
    fn token_error_is_parsed_and_carries_no_secret() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215],"trace_id":"tr","correlation_id":"co"}"#;
        let e = token_error("contoso", 401, body);
        let s = e.to_string();
        assert!(
            s.contains("invalid_client") && s.contains("AADSTS7000215") && s.contains("tr"),
            "{s}"
        );
        let e = token_error("contoso", 502, b"<html>");
        assert!(e.to_string().contains("502"));
    }

    /// A permanent refusal names its AADSTS code with the meaning and what to do; an unknown
    /// code is shown as sent, with its error page; the authority's words stay on one line.
    #[test]
    fn a_refusal_names_its_code_meaning_and_hint_on_one_line() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app 'x' are expired.\n::add-mask::y","error_codes":[7000222]}"#;
        let AuthError::Token(f) = token_error("contoso", 401, body) else {
            panic!()
        };
        assert!(!f.transient);
        assert_eq!(f.codes, vec![7000222]);
        let s = f.to_string();
        assert!(!s.contains('\n'), "{s}");
        assert!(s.contains("\\n::add-mask::y"), "{s}");
        assert!(
            s.contains(
                "AADSTS7000222 means the client secret has expired: create a new client secret"
            ),
            "{s}"
        );
        // the code from the description when error_codes is missing; an unknown one linked
        let body =
            br#"{"error":"invalid_grant","error_description":"AADSTS9999991: Something new."}"#;
        let s = token_error("contoso", 400, body).to_string();
        assert!(
            s.contains("AADSTS9999991 is not one pwdrift explains: see https://login.microsoftonline.com/error?code=9999991"),
            "{s}"
        );
        // transient: said so
        let body =
            br#"{"error":"temporarily_unavailable","error_description":"AADSTS50000: busy"}"#;
        let AuthError::Token(f) = token_error("contoso", 400, body) else {
            panic!()
        };
        assert!(f.transient);
        assert!(f.to_string().contains("a transient answer"), "{f}");
        let AuthError::Token(f) = token_error("contoso", 503, b"") else {
            panic!()
        };
        assert!(f.transient && f.codes.is_empty());
    }
}
