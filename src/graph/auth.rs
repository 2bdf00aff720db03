//! Credentials and token acquisition (client secret, certificate, workload identity federation,
//! GitHub Actions OIDC, pre-acquired token, device code, username/password), with a per-tenant
//! token cache; plus the national-cloud endpoints and the loopback rule for plain `http://`.
//!
//! # Why hand-written and not `azure_identity`
//!
//! `azure_identity` (1.x, the Azure SDK for Rust) was the first candidate. It cannot serve pwdrift:
//! its `get_authority_host` rejects any authority whose scheme is not `https` ("authority host
//! doesn't use HTTPS scheme"), and the Graph sandbox, our integration-test peer and the embedded
//! default, is `http://127.0.0.1:PORT`. It also dropped the device-code and username/password
//! flows from its public credentials (pwdrift needs a delegated sign-in for `resetPassword`), and
//! it brings its own HTTP pipeline (`azure_core`/`typespec`) beside the reqwest client pwdrift
//! already has, so the TLS switch and the retry/pacing policy would have to be configured twice.
//! What pwdrift needs is small and documented: a form POST to `{authority}/{tenant}/oauth2/v2.0/token`
//! (client secret, or a JWT client assertion: certificate-signed, a federated token file, or a
//! GitHub OIDC token), the device-code endpoint, and ROPC. So it is written here, on reqwest
//! (rustls), with jsonwebtoken for the RS256 certificate assertion.
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
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha1::Digest as _;
use url::Url;

use crate::graph::model::{TokenErrorResponse, TokenResponse};

/// The audience of federated tokens exchanged for Entra tokens (workload identity, GitHub OIDC).
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Everything that can go wrong while configuring a credential or acquiring a token. The
/// `Display` text never contains a secret, a token or a password.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no Graph credential configured: {0}")]
    NotConfigured(String),
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("refusing plain http:// to {url}: http is only allowed to loopback (127.0.0.0/8, ::1, localhost); use https")]
    InsecureUrl { url: String },
    #[error("{0}")]
    Token(Box<TokenFailure>),
    #[error("token endpoint unreachable: {0}")]
    Transport(String),
    #[error("unexpected response from {what}: {message}")]
    Decode { what: String, message: String },
    #[error("certificate {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("federated token file {path}: {message}")]
    FederatedTokenFile { path: PathBuf, message: String },
    #[error("GitHub Actions OIDC token request failed: {0}")]
    GitHubOidc(String),
    #[error("device code sign-in failed: {0}")]
    DeviceCode(String),
    #[error("the pre-acquired access token (PWDRIFT_ACCESS_TOKEN) was rejected or expired; pwdrift cannot refresh it: acquire a new one")]
    AccessTokenRejected,
}

/// A refusal from the token endpoint: the OAuth `error` and `error_description` (Entra's text,
/// e.g. `AADSTS7000215: Invalid client secret provided.`; it never echoes the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFailure {
    pub tenant: String,
    pub status: u16,
    pub error: String,
    pub description: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

impl fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token request for tenant {} refused ({}): {}: {}{}",
            self.tenant,
            self.status,
            self.error,
            self.description,
            trace_suffix(&self.trace_id, &self.correlation_id)
        )
    }
}

fn trace_suffix(trace: &Option<String>, corr: &Option<String>) -> String {
    match (trace, corr) {
        (None, None) => String::new(),
        (t, c) => format!(
            " (trace_id {}, correlation_id {})",
            t.as_deref().unwrap_or("-"),
            c.as_deref().unwrap_or("-")
        ),
    }
}

/// How pwdrift authenticates. `Debug` redacts every secret.
#[derive(Clone)]
pub enum Credential {
    /// App-only, client secret (`AZURE_CLIENT_SECRET`).
    ClientSecret {
        tenant: String,
        client_id: String,
        secret: SecretString,
    },
    /// App-only, certificate (`AZURE_CLIENT_CERTIFICATE_PATH`): a PEM file with the RSA private key
    /// and the certificate; each token request carries a fresh RS256 client assertion.
    Certificate {
        tenant: String,
        client_id: String,
        pem_path: PathBuf,
    },
    /// App-only, workload identity federation (`AZURE_FEDERATED_TOKEN_FILE`). The file is re-read
    /// for every token request: it rotates.
    WorkloadIdentity {
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// App-only, GitHub Actions OIDC (`ACTIONS_ID_TOKEN_REQUEST_URL` / `..._TOKEN`).
    GitHubOidc {
        tenant: String,
        client_id: String,
        request_url: String,
        request_token: SecretString,
    },
    /// A pre-acquired access token (`PWDRIFT_ACCESS_TOKEN`), used as is and never refreshed.
    AccessToken { token: SecretString },
    /// Delegated sign-in with the device-code flow; the verification message goes to stderr.
    DeviceCode { tenant: String, client_id: String },
    /// Delegated, resource owner password credentials (used with the sandbox's seeded admin).
    UsernamePassword {
        tenant: String,
        client_id: String,
        username: String,
        password: SecretString,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const R: &str = "(sensitive)";
        match self {
            Credential::ClientSecret {
                tenant, client_id, ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("secret", &R)
                .finish(),
            Credential::Certificate {
                tenant,
                client_id,
                pem_path,
            } => f
                .debug_struct("Certificate")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("pem_path", pem_path)
                .finish(),
            Credential::WorkloadIdentity {
                tenant,
                client_id,
                token_file,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .finish(),
            Credential::GitHubOidc {
                tenant,
                client_id,
                request_url,
                ..
            } => f
                .debug_struct("GitHubOidc")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("request_url", &strip_query(request_url))
                .field("request_token", &R)
                .finish(),
            Credential::AccessToken { .. } => {
                f.debug_struct("AccessToken").field("token", &R).finish()
            }
            Credential::DeviceCode { tenant, client_id } => f
                .debug_struct("DeviceCode")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .finish(),
            Credential::UsernamePassword {
                tenant,
                client_id,
                username,
                ..
            } => f
                .debug_struct("UsernamePassword")
                .field("tenant", tenant)
                .field("client_id", client_id)
                .field("username", username)
                .field("password", &R)
                .finish(),
        }
    }
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

impl Credential {
    /// Picks the credential from the environment, in the Azure SDK conventions. Order:
    /// `PWDRIFT_ACCESS_TOKEN`; then, with `AZURE_TENANT_ID` (or `tenant_override`) and
    /// `AZURE_CLIENT_ID`: `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`,
    /// `AZURE_FEDERATED_TOKEN_FILE`, `ACTIONS_ID_TOKEN_REQUEST_URL` + `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
    /// The error lists what is missing.
    pub fn from_env(tenant_override: Option<&str>) -> Result<Credential, AuthError> {
        Self::from_lookup(tenant_override, |k| std::env::var(k).ok())
    }

    /// [`Credential::from_env`] over any variable lookup (tests pass a map).
    pub fn from_lookup(
        tenant_override: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Credential, AuthError> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        if let Some(token) = get("PWDRIFT_ACCESS_TOKEN") {
            return Ok(Credential::AccessToken {
                token: SecretString::from(token),
            });
        }
        let tenant = tenant_override
            .map(str::to_owned)
            .or_else(|| get("AZURE_TENANT_ID"));
        let client_id = get("AZURE_CLIENT_ID");
        let secret = get("AZURE_CLIENT_SECRET");
        let cert = get("AZURE_CLIENT_CERTIFICATE_PATH");
        let fed = get("AZURE_FEDERATED_TOKEN_FILE");
        let gh_url = get("ACTIONS_ID_TOKEN_REQUEST_URL");
        let gh_token = get("ACTIONS_ID_TOKEN_REQUEST_TOKEN");

        let mut missing = Vec::new();
        if tenant.is_none() {
            missing.push("AZURE_TENANT_ID (or --tenant)");
        }
        if client_id.is_none() {
            missing.push("AZURE_CLIENT_ID");
        }
        let has_secret_kind = secret.is_some()
            || cert.is_some()
            || fed.is_some()
            || (gh_url.is_some() && gh_token.is_some());
        if !has_secret_kind {
            missing.push(
                "one of AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE, \
                 ACTIONS_ID_TOKEN_REQUEST_URL + ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            );
        }
        if !missing.is_empty() {
            let partial_gh = match (&gh_url, &gh_token) {
                (Some(_), None) => " (ACTIONS_ID_TOKEN_REQUEST_URL is set but ACTIONS_ID_TOKEN_REQUEST_TOKEN is not: does the job have `permissions: id-token: write`?)",
                _ => "",
            };
            return Err(AuthError::NotConfigured(format!(
                "missing {}{partial_gh}; or set PWDRIFT_ACCESS_TOKEN to a pre-acquired Graph token, or use --sandbox SEED",
                missing.join(", ")
            )));
        }
        let (tenant, client_id) = (tenant.unwrap_or_default(), client_id.unwrap_or_default());
        Ok(if let Some(secret) = secret {
            Credential::ClientSecret {
                tenant,
                client_id,
                secret: SecretString::from(secret),
            }
        } else if let Some(path) = cert {
            Credential::Certificate {
                tenant,
                client_id,
                pem_path: PathBuf::from(path),
            }
        } else if let Some(path) = fed {
            Credential::WorkloadIdentity {
                tenant,
                client_id,
                token_file: PathBuf::from(path),
            }
        } else {
            Credential::GitHubOidc {
                tenant,
                client_id,
                request_url: gh_url.unwrap_or_default(),
                request_token: SecretString::from(gh_token.unwrap_or_default()),
            }
        })
    }

    /// The delegated device-code credential for `--delegated`, from `AZURE_TENANT_ID` (or the
    /// override) and `AZURE_CLIENT_ID`.
    pub fn delegated_from_env(tenant_override: Option<&str>) -> Result<Credential, AuthError> {
        Self::delegated_from_lookup(tenant_override, |k| std::env::var(k).ok())
    }

    /// [`Credential::delegated_from_env`] over any variable lookup.
    pub fn delegated_from_lookup(
        tenant_override: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Credential, AuthError> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let tenant = tenant_override
            .map(str::to_owned)
            .or_else(|| get("AZURE_TENANT_ID"));
        // The delegated sign-in usually goes through a public client registration, distinct from
        // the confidential app in AZURE_CLIENT_ID: PWDRIFT_DELEGATED_CLIENT_ID names it.
        let client_id = get("PWDRIFT_DELEGATED_CLIENT_ID").or_else(|| get("AZURE_CLIENT_ID"));
        match (tenant, client_id) {
            // Azure SDK convention: AZURE_USERNAME + AZURE_PASSWORD select username/password.
            (Some(tenant), Some(client_id)) => match (get("AZURE_USERNAME"), var("AZURE_PASSWORD"))
            {
                (Some(username), Some(password)) => Ok(Credential::UsernamePassword {
                    tenant,
                    client_id,
                    username,
                    password: SecretString::from(password),
                }),
                _ => Ok(Credential::DeviceCode { tenant, client_id }),
            },
            (t, c) => {
                let mut missing = Vec::new();
                if t.is_none() {
                    missing.push("AZURE_TENANT_ID (or --tenant)");
                }
                if c.is_none() {
                    missing.push(
                        "PWDRIFT_DELEGATED_CLIENT_ID or AZURE_CLIENT_ID (a public client app registration)",
                    );
                }
                Err(AuthError::NotConfigured(format!(
                    "delegated sign-in needs {}",
                    missing.join(" and ")
                )))
            }
        }
    }

    /// Short name of the kind, used in the cache key and in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::ClientSecret { .. } => "client-secret",
            Credential::Certificate { .. } => "certificate",
            Credential::WorkloadIdentity { .. } => "workload-identity",
            Credential::GitHubOidc { .. } => "github-oidc",
            Credential::AccessToken { .. } => "access-token",
            Credential::DeviceCode { .. } => "device-code",
            Credential::UsernamePassword { .. } => "username-password",
        }
    }

    /// Whether tokens from this credential act for a signed-in user (needed by resetPassword).
    /// A pre-acquired token may be either; pwdrift cannot tell, so it says `false`.
    pub fn is_delegated(&self) -> bool {
        matches!(
            self,
            Credential::DeviceCode { .. } | Credential::UsernamePassword { .. }
        )
    }

    /// The tenant the credential was configured with (`None` for a pre-acquired token).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Credential::ClientSecret { tenant, .. }
            | Credential::Certificate { tenant, .. }
            | Credential::WorkloadIdentity { tenant, .. }
            | Credential::GitHubOidc { tenant, .. }
            | Credential::DeviceCode { tenant, .. }
            | Credential::UsernamePassword { tenant, .. } => Some(tenant),
            Credential::AccessToken { .. } => None,
        }
    }

    fn client_id(&self) -> &str {
        match self {
            Credential::ClientSecret { client_id, .. }
            | Credential::Certificate { client_id, .. }
            | Credential::WorkloadIdentity { client_id, .. }
            | Credential::GitHubOidc { client_id, .. }
            | Credential::DeviceCode { client_id, .. }
            | Credential::UsernamePassword { client_id, .. } => client_id,
            Credential::AccessToken { .. } => "",
        }
    }
}

/// National clouds: Graph host and login host (graph-facts, "National clouds").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cloud {
    Global,
    UsGov,
    UsGovDod,
    China,
}

impl Cloud {
    /// `https://` root of the cloud's Microsoft Graph.
    pub fn graph_host(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// `https://` root of the cloud's identity platform.
    pub fn login_host(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
        }
    }
}

/// Where Graph and the identity platform are. `graph_url` is the service root (with or without
/// a version segment: `/v1.0` is appended by the client when the path has none); `scope` is the
/// `.default` scope of the Graph resource tokens are requested for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub graph_url: Url,
    pub authority_host: Url,
    /// `{graph_url origin}/.default`: the cloud's own Graph host unless `graph_url` is overridden.
    pub scope: String,
}

impl Endpoints {
    /// The endpoints of a national cloud.
    pub fn for_cloud(cloud: Cloud) -> Endpoints {
        Endpoints::new(cloud, None, None).expect("built-in cloud endpoints are valid https URLs")
    }

    /// The cloud's endpoints with optional `--graph-url` / `--authority-host` overrides. Plain
    /// `http://` is accepted only to a loopback host.
    pub fn new(
        cloud: Cloud,
        graph_url: Option<&str>,
        authority_host: Option<&str>,
    ) -> Result<Endpoints, AuthError> {
        let graph_url = checked_url(graph_url.unwrap_or(cloud.graph_host()))?;
        let authority_host = checked_url(authority_host.unwrap_or(cloud.login_host()))?;
        let scope = format!("{}/.default", origin(&graph_url));
        Ok(Endpoints {
            graph_url,
            authority_host,
            scope,
        })
    }

    /// `POST` target for tokens of `tenant`.
    pub fn token_url(&self, tenant: &str) -> Result<Url, AuthError> {
        self.authority_path(tenant, "oauth2/v2.0/token")
    }

    /// `POST` target for device codes of `tenant`.
    pub fn device_code_url(&self, tenant: &str) -> Result<Url, AuthError> {
        self.authority_path(tenant, "oauth2/v2.0/devicecode")
    }

    fn authority_path(&self, tenant: &str, tail: &str) -> Result<Url, AuthError> {
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(AuthError::NotConfigured(format!(
                "invalid tenant {tenant:?}: expected a tenant id (GUID) or a domain"
            )));
        }
        let mut base = self.authority_host.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(&format!("{tenant}/{tail}"))
            .map_err(|e| AuthError::InvalidUrl {
                url: self.authority_host.to_string(),
                reason: e.to_string(),
            })
    }
}

/// `scheme://host[:port]` of a URL.
pub fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// Parses a URL and applies the transport rule: `https` anywhere, `http` only to loopback.
pub fn checked_url(raw: &str) -> Result<Url, AuthError> {
    let url = Url::parse(raw).map_err(|e| AuthError::InvalidUrl {
        url: raw.to_owned(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(AuthError::InsecureUrl {
            url: strip_query(raw).to_owned(),
        }),
        other => Err(AuthError::InvalidUrl {
            url: strip_query(raw).to_owned(),
            reason: format!("scheme {other:?} is not http(s)"),
        }),
    }
}

/// `127.0.0.0/8`, `::1` or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A cached token and when to stop using it.
struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
    /// delegated device-code sign-ins: renews the token without asking the user again
    refresh_token: Option<SecretString>,
}

/// When to refresh a token that lives `lifetime`: `min(5 min, 10%)` before it expires.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    std::cmp::min(Duration::from_secs(300), lifetime / 10)
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Acquires and caches tokens, one slot per tenant, single flight per slot.
pub struct TokenProvider {
    credential: Credential,
    endpoints: Endpoints,
    http: reqwest::Client,
    slots: std::sync::Mutex<HashMap<String, Slot>>,
    token_requests: std::sync::atomic::AtomicU64,
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
    /// client's reqwest client, so the TLS settings are the same).
    pub fn new(credential: Credential, endpoints: Endpoints, http: reqwest::Client) -> Self {
        TokenProvider {
            credential,
            endpoints,
            http,
            slots: std::sync::Mutex::new(HashMap::new()),
            token_requests: std::sync::atomic::AtomicU64::new(0),
        }
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
            return Ok(token.clone());
        }
        let slot = self.slot(tenant);
        let mut guard = slot.lock().await;
        if let Some(cached) = guard.as_ref() {
            if Instant::now() < cached.refresh_at {
                return Ok(cached.token.clone());
            }
        }
        let fresh = self.acquire(tenant, guard.take()).await?;
        let token = fresh.token.clone();
        *guard = Some(fresh);
        Ok(token)
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
        if let Some(cached) = guard.as_mut() {
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
                    let (status, body) = self.post_token_form(tenant, &form).await?;
                    match parse_token_response(tenant, status, &body) {
                        Ok(token) => return Ok(token),
                        Err(e) => {
                            tracing::debug!(error = %e, "refresh token refused; signing in again");
                        }
                    }
                }
                return self.device_code_flow(tenant).await;
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

    /// POSTs a form, retrying transport errors, 429 and 5xx a few times (the token endpoint is as
    /// flaky as any other). The body is never logged.
    async fn post_form(
        &self,
        url: Url,
        form: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), AuthError> {
        let mut attempt: u32 = 0;
        loop {
            self.token_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let sent = self.http.post(url.clone()).form(form).send().await;
            let retry_after = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let ra = crate::graph::retry::parse_retry_after(
                        resp.headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok()),
                    );
                    tracing::debug!(method = "POST", url = %url.path(), status, "token endpoint");
                    let retryable = status == 429 || status >= 500;
                    match resp.bytes().await {
                        Ok(body) if !retryable || attempt >= 4 => {
                            return Ok((status, body.to_vec()))
                        }
                        Ok(_) => ra,
                        Err(e) if attempt >= 4 => {
                            return Err(AuthError::Transport(crate::graph::error_chain(e)))
                        }
                        Err(_) => None,
                    }
                }
                Err(e) if attempt >= 4 => {
                    return Err(AuthError::Transport(crate::graph::error_chain(e)))
                }
                Err(e) => {
                    tracing::debug!(url = %url.path(), error = %e.without_url(), "token endpoint transport error");
                    None
                }
            };
            attempt += 1;
            let delay = retry_after.unwrap_or_else(|| {
                crate::graph::retry::full_jitter(
                    attempt,
                    Duration::from_millis(200),
                    Duration::from_secs(5),
                )
            });
            tokio::time::sleep(delay.min(Duration::from_secs(30))).await;
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
            .map_err(|e| AuthError::GitHubOidc(crate::graph::error_chain(e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(AuthError::GitHubOidc(format!(
                "HTTP {status} from ACTIONS_ID_TOKEN_REQUEST_URL (does the job have `permissions: id-token: write`?)"
            )));
        }
        let body: GitHubTokenResponse = resp.json().await.map_err(|e| {
            AuthError::GitHubOidc(format!("no `value` in the response: {}", e.without_url()))
        })?;
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
                message: e.to_string(),
            })?;
        let message = dc.message.clone().unwrap_or_else(|| {
            format!(
                "To sign in, open {} and enter the code {}",
                dc.verification_uri
                    .as_deref()
                    .unwrap_or("the verification page"),
                dc.user_code.as_deref().unwrap_or("(none)")
            )
        });
        eprintln!("{message}");
        let deadline = Instant::now() + Duration::from_secs(dc.expires_in);
        let mut interval = Duration::from_secs(dc.interval.max(1));
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

fn push_assertion(form: &mut Vec<(&str, String)>, scope: String, assertion: String) {
    form.push(("scope", scope));
    form.push(("grant_type", "client_credentials".into()));
    form.push(("client_assertion_type", JWT_BEARER.into()));
    form.push(("client_assertion", assertion));
}

fn parse_token_response(tenant: &str, status: u16, body: &[u8]) -> Result<CachedToken, AuthError> {
    if !(200..300).contains(&status) {
        return Err(token_error(tenant, status, body));
    }
    let resp: TokenResponse = serde_json::from_slice(body).map_err(|e| AuthError::Decode {
        what: "token endpoint".into(),
        // serde_json's message names the position and the expected type, never the input.
        message: e.to_string(),
    })?;
    #[derive(Deserialize)]
    struct RefreshPart {
        #[serde(default)]
        refresh_token: Option<SecretString>,
    }
    let refresh_token = serde_json::from_slice::<RefreshPart>(body)
        .ok()
        .and_then(|r| r.refresh_token);
    let lifetime = Duration::from_secs(resp.expires_in);
    Ok(CachedToken {
        token: resp.access_token,
        refresh_at: Instant::now() + lifetime - refresh_margin(lifetime),
        refresh_token,
    })
}

fn token_error(tenant: &str, status: u16, body: &[u8]) -> AuthError {
    match serde_json::from_slice::<TokenErrorResponse>(body) {
        Ok(e) => AuthError::Token(Box::new(TokenFailure {
            tenant: tenant.to_owned(),
            status,
            error: e.error,
            description: e.error_description,
            trace_id: e.trace_id,
            correlation_id: e.correlation_id,
        })),
        Err(_) => AuthError::Token(Box::new(TokenFailure {
            tenant: tenant.to_owned(),
            status,
            error: "unexpected_response".into(),
            description: format!("HTTP {status} without an OAuth error body"),
            trace_id: None,
            correlation_id: None,
        })),
    }
}

fn read_federated_token(path: &Path) -> Result<String, AuthError> {
    let raw = std::fs::read_to_string(path).map_err(|e| AuthError::FederatedTokenFile {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(AuthError::FederatedTokenFile {
            path: path.to_owned(),
            message: "the file is empty".into(),
        });
    }
    Ok(token.to_owned())
}

/// Claims of a client assertion (RFC 7523 / Microsoft identity platform certificate credentials).
#[derive(Debug, serde::Serialize, Deserialize, PartialEq, Eq)]
pub struct AssertionClaims {
    pub aud: String,
    pub iss: String,
    pub sub: String,
    pub jti: String,
    pub nbf: i64,
    pub iat: i64,
    pub exp: i64,
}

/// Builds the RS256 client assertion for a certificate credential from a PEM file holding the
/// RSA private key (PKCS#8 or PKCS#1) and the certificate. Header `x5t` is base64url(SHA-1 of the
/// certificate DER), `x5t#S256` base64url(SHA-256); the assertion is valid for 10 minutes.
pub fn certificate_assertion(
    pem_path: &Path,
    client_id: &str,
    audience: &str,
) -> Result<String, AuthError> {
    let cert_err = |message: String| AuthError::Certificate {
        path: pem_path.to_owned(),
        message,
    };
    let text = std::fs::read(pem_path).map_err(|e| cert_err(e.to_string()))?;
    let blocks = pem::parse_many(&text).map_err(|e| cert_err(format!("not PEM: {e}")))?;
    let cert = blocks
        .iter()
        .find(|b| b.tag() == "CERTIFICATE")
        .ok_or_else(|| {
            cert_err(
                "no CERTIFICATE block (the PEM must hold the certificate and its private key)"
                    .into(),
            )
        })?;
    let key = blocks
        .iter()
        .find(|b| b.tag() == "PRIVATE KEY" || b.tag() == "RSA PRIVATE KEY")
        .ok_or_else(|| {
            cert_err("no RSA private key block (PRIVATE KEY or RSA PRIVATE KEY)".into())
        })?;
    let key_pem = pem::encode(key);
    let encoding_key = jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes())
        .map_err(|e| cert_err(format!("the private key is not a usable RSA key: {e}")))?;
    let now = chrono::Utc::now().timestamp();
    let claims = AssertionClaims {
        aud: audience.to_owned(),
        iss: client_id.to_owned(),
        sub: client_id.to_owned(),
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now,
        iat: now,
        exp: now + 600,
    };
    let header = assertion_header(cert.contents());
    jsonwebtoken::encode(&header, &claims, &encoding_key)
        .map_err(|e| cert_err(format!("signing the client assertion failed: {e}")))
}

/// The JWT header of a certificate assertion for the certificate `der`.
pub fn assertion_header(der: &[u8]) -> jsonwebtoken::Header {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.typ = Some("JWT".into());
    header.x5t = Some(b64.encode(sha1::Sha1::digest(der)));
    header.x5t_s256 = Some(b64.encode(sha2::Sha256::digest(der)));
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_selects_client_secret_over_others() {
        let c = Credential::from_lookup(
            None,
            env(&[
                ("AZURE_TENANT_ID", "t1"),
                ("AZURE_CLIENT_ID", "c1"),
                ("AZURE_CLIENT_SECRET", "Canary-Secret-9"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/tmp/x"),
            ]),
        )
        .unwrap();
        assert!(
            matches!(&c, Credential::ClientSecret { tenant, client_id, .. } if tenant == "t1" && client_id == "c1")
        );
        assert!(!format!("{c:?}").contains("Canary"));
    }

    #[test]
    fn env_access_token_wins_and_is_redacted() {
        let c = Credential::from_lookup(
            None,
            env(&[
                ("PWDRIFT_ACCESS_TOKEN", "Canary-Token"),
                ("AZURE_CLIENT_SECRET", "s"),
            ]),
        )
        .unwrap();
        assert!(matches!(c, Credential::AccessToken { .. }));
        assert!(!format!("{c:?}").contains("Canary"));
    }

    #[test]
    fn env_selects_certificate_then_federated_then_github() {
        let base = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            Credential::from_lookup(None, env(&v)).unwrap()
        };
        assert!(matches!(
            with(&[
                ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/f")
            ]),
            Credential::Certificate { .. }
        ));
        assert!(matches!(
            with(&[("AZURE_FEDERATED_TOKEN_FILE", "/f")]),
            Credential::WorkloadIdentity { token_file, .. } if token_file == Path::new("/f")
        ));
        let gh = with(&[
            ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://gh.example/x?a=1"),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "Canary-GH"),
        ]);
        assert!(matches!(gh, Credential::GitHubOidc { .. }));
        assert!(!format!("{gh:?}").contains("Canary"));
    }

    #[test]
    fn env_tenant_override_replaces_azure_tenant_id() {
        let c = Credential::from_lookup(
            Some("contoso.com"),
            env(&[("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")]),
        )
        .unwrap();
        assert_eq!(c.tenant(), Some("contoso.com"));
    }

    #[test]
    fn env_missing_lists_everything_missing() {
        let err = Credential::from_lookup(None, env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AZURE_TENANT_ID"), "{err}");
        assert!(err.contains("AZURE_CLIENT_ID"), "{err}");
        assert!(err.contains("AZURE_CLIENT_SECRET"), "{err}");
        let err = Credential::from_lookup(
            None,
            env(&[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_SECRET", "Canary-S"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("AZURE_CLIENT_ID") && !err.contains("AZURE_TENANT_ID"),
            "{err}"
        );
        assert!(!err.contains("Canary"));
        let err = Credential::from_lookup(
            None,
            env(&[
                ("AZURE_TENANT_ID", "t"),
                ("AZURE_CLIENT_ID", "c"),
                ("ACTIONS_ID_TOKEN_REQUEST_URL", "https://x"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("id-token: write"), "{err}");
    }

    #[test]
    fn delegated_from_env_needs_tenant_and_client() {
        let c = Credential::delegated_from_lookup(
            None,
            env(&[("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")]),
        )
        .unwrap();
        assert!(matches!(c, Credential::DeviceCode { .. }));
        assert!(c.is_delegated());
        let err =
            Credential::delegated_from_lookup(None, env(&[("AZURE_TENANT_ID", "t")])).unwrap_err();
        assert!(err.to_string().contains("AZURE_CLIENT_ID"));
    }

    #[test]
    fn delegated_username_password_and_public_client() {
        let c = Credential::delegated_from_lookup(
            Some("contoso.onmicrosoft.com"),
            env(&[
                ("AZURE_CLIENT_ID", "confidential"),
                ("PWDRIFT_DELEGATED_CLIENT_ID", "public"),
                ("AZURE_USERNAME", "admin@contoso.com"),
                ("AZURE_PASSWORD", "Canary-Pw-1!"),
            ]),
        )
        .unwrap();
        match &c {
            Credential::UsernamePassword {
                tenant,
                client_id,
                username,
                ..
            } => {
                assert_eq!(tenant, "contoso.onmicrosoft.com");
                assert_eq!(client_id, "public");
                assert_eq!(username, "admin@contoso.com");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{c:?}").contains("Canary"));
        // a username without a password falls back to the device code flow
        let c = Credential::delegated_from_lookup(
            Some("t"),
            env(&[("AZURE_CLIENT_ID", "c"), ("AZURE_USERNAME", "u")]),
        )
        .unwrap();
        assert!(matches!(c, Credential::DeviceCode { ref client_id, .. } if client_id == "c"));
    }

    #[test]
    fn loopback_rule() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.5.6.7/",
            "http://[::1]:9/",
            "http://localhost:1",
            "http://LOCALHOST",
            "https://example.com",
        ] {
            assert!(checked_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "http://128.0.0.1",
            "http://[::2]/",
            "http://localhost.evil.com",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(checked_url(bad).is_err(), "{bad}");
        }
        let err = checked_url("http://graph.example.com/x?secret=1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("loopback") && !err.contains("secret=1"),
            "{err}"
        );
    }

    #[test]
    fn cloud_endpoints_and_scope() {
        let e = Endpoints::for_cloud(Cloud::China);
        assert_eq!(e.scope, "https://microsoftgraph.chinacloudapi.cn/.default");
        assert_eq!(
            e.token_url("t-1").unwrap().as_str(),
            "https://login.chinacloudapi.cn/t-1/oauth2/v2.0/token"
        );
        let e = Endpoints::for_cloud(Cloud::UsGovDod);
        assert_eq!(e.scope, "https://dod-graph.microsoft.us/.default");
        assert_eq!(
            e.authority_host.as_str(),
            "https://login.microsoftonline.us/"
        );
        assert_eq!(
            Endpoints::for_cloud(Cloud::UsGov).scope,
            "https://graph.microsoft.us/.default"
        );
        let e = Endpoints::for_cloud(Cloud::Global);
        assert_eq!(e.scope, "https://graph.microsoft.com/.default");
        assert_eq!(
            e.device_code_url("contoso.com").unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.com/oauth2/v2.0/devicecode"
        );

        let e = Endpoints::new(
            Cloud::Global,
            Some("http://127.0.0.1:4000/v1.0"),
            Some("http://127.0.0.1:4000/auth"),
        )
        .unwrap();
        assert_eq!(e.scope, "http://127.0.0.1:4000/.default");
        assert_eq!(
            e.token_url("tid").unwrap().as_str(),
            "http://127.0.0.1:4000/auth/tid/oauth2/v2.0/token"
        );
        assert!(e.token_url("../x").is_err());
        assert!(Endpoints::new(Cloud::Global, Some("http://graph.example"), None).is_err());
    }

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

    #[test]
    fn certificate_assertion_with_missing_blocks_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pem");
        std::fs::write(
            &p,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = certificate_assertion(&p, "c", "aud")
            .unwrap_err()
            .to_string();
        assert!(err.contains("private key"), "{err}");
        let err = certificate_assertion(&dir.path().join("none.pem"), "c", "aud").unwrap_err();
        assert!(matches!(err, AuthError::Certificate { .. }));
    }

    #[test]
    fn federated_token_file_is_reread_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "first\n").unwrap();
        assert_eq!(read_federated_token(&p).unwrap(), "first");
        std::fs::write(&p, "second").unwrap();
        assert_eq!(read_federated_token(&p).unwrap(), "second");
        std::fs::write(&p, " \n").unwrap();
        assert!(read_federated_token(&p).is_err());
    }

    /// A certificate credential's client assertion is an RS256 JWT that verifies with the
    /// certificate's public key, with x5t = base64url(SHA-1(DER)) and the documented claims.
    #[test]
    fn certificate_assertion_verifies_with_the_certificate_key() {
        use base64::Engine as _;
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};

        let mut rng = rsa::rand_core::OsRng;
        let key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let pkcs8 = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let key_pair = rcgen::KeyPair::from_pem(&pkcs8).unwrap();
        let params = rcgen::CertificateParams::new(vec!["pwdrift-test".to_owned()]).unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        let der = cert.der().to_vec();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let expected_x5t = b64.encode(sha1::Sha1::digest(&der));

        let dir = tempfile::tempdir().unwrap();
        let pkcs1 = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        for (name, key_pem) in [
            ("pkcs8.pem", pkcs8.to_string()),
            ("pkcs1.pem", pkcs1.to_string()),
        ] {
            let path = dir.path().join(name);
            // key first, certificate second: the order in the file must not matter
            std::fs::write(&path, format!("{key_pem}{}", cert.pem())).unwrap();
            let aud = "http://127.0.0.1:9/tenant-1/oauth2/v2.0/token";
            let jwt = certificate_assertion(&path, "client-1", aud).unwrap();

            let header = jsonwebtoken::decode_header(&jwt).unwrap();
            assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
            assert_eq!(header.x5t.as_deref(), Some(expected_x5t.as_str()), "{name}");
            assert_eq!(
                header.x5t_s256,
                Some(b64.encode(sha2::Sha256::digest(&der)))
            );

            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_audience(&[aud]);
            validation.set_issuer(&["client-1"]);
            validation.validate_nbf = true;
            let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
            let data =
                jsonwebtoken::decode::<AssertionClaims>(&jwt, &decoding, &validation).unwrap();
            let c = data.claims;
            assert_eq!(
                (c.iss.as_str(), c.sub.as_str(), c.aud.as_str()),
                ("client-1", "client-1", aud)
            );
            assert_eq!(c.exp - c.nbf, 600);
            assert!(uuid::Uuid::parse_str(&c.jti).is_ok());

            // a different key does not verify it
            let other = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
            let other_pem = other
                .to_public_key()
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .unwrap();
            let wrong = jsonwebtoken::DecodingKey::from_rsa_pem(other_pem.as_bytes()).unwrap();
            assert!(jsonwebtoken::decode::<AssertionClaims>(&jwt, &wrong, &validation).is_err());
        }
    }
}
