//! The one Graph client: all Microsoft Graph I/O of pwdrift goes through [`GraphClient`].
//!
//! It owns the reqwest client (rustls), the [`TokenProvider`], one [`Pacer`] per tenant and the
//! counters of [`ClientStats`]. Every request goes through `GraphClient::execute`: admission by
//! the tenant's pacer, a bearer token, a fresh `client-request-id`, then the retry policy of
//! [`crate::graph::retry`]: 429 and 503 always, 500/502/504 and transport errors only for
//! idempotent requests; `Retry-After` first, else full-jitter backoff; bounded in count and in
//! time. A 401 expires the cached token and retries once with a new one. `$batch` envelopes go
//! through the same path; [`GraphClient::run_batches`] re-queues the inner requests that came
//! back retryable and re-batches them, after their own `Retry-After`.
//!
//! # What is logged
//!
//! One `debug` event per HTTP exchange: method, path and query (opaque paging tokens elided),
//! status, `request-id`, `client-request-id`, attempt. Never a request body (PATCH bodies carry
//! passwords), never a header value of `Authorization`, never a response body.
//!
//! # Non-idempotent requests
//!
//! `resetPassword` is a POST whose effect is not idempotent (with `{}` the service generates a
//! new password each time). It is retried only when the request provably did not run: 429, 503
//! or a connection that was never established. A transport error after the request was sent
//! (or a 500/502/504) is returned as [`GraphError::Transport`] with `maybe_applied: true`: the
//! caller must re-read `lastPasswordChangeDateTime` before trying again.
//!
//! # Token audience and URLs
//!
//! The bearer token is only ever sent to the origin of `graph_url`: an `@odata.nextLink` or a
//! `Location` pointing elsewhere is an error, not a request.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::sync::OwnedSemaphorePermit;
use url::Url;

use crate::graph::auth::{self, AuthError, Credential, Endpoints, TokenProvider};
use crate::graph::model::{
    BatchRequest, BatchRequestEnvelope, BatchResponse, BatchResponseEnvelope, DirectoryRole,
    GraphErrorBody, GraphGroup, GraphUser, LongRunningOperation, Page, PasswordProfile,
    PasswordResetResponse, ResetPasswordRequest, PASSWORD_METHOD_ID, USER_SELECT,
};
use crate::graph::retry::{is_retryable_status, parse_retry_after, Pacer, RetryPolicy};

/// At most this many requests in one `$batch` (a Graph limit).
pub const BATCH_SIZE: usize = crate::graph::retry::MAX_BATCH_SIZE;

/// How the client connects and how hard it retries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub endpoints: Endpoints,
    /// Accept any TLS certificate. Warned about loudly on construction.
    pub insecure_skip_tls_verify: bool,
    /// Retries after the first attempt (per request, and per inner request of a `$batch`).
    pub max_retries: u32,
    /// Cap of one exponential-backoff delay.
    pub max_backoff: Duration,
    /// First backoff ceiling (doubles per retry, full jitter).
    pub base_delay: Duration,
    /// Cap of a server-given `Retry-After`.
    pub max_retry_after: Duration,
    /// Total time one request may spend waiting between retries.
    pub max_elapsed: Duration,
    /// `$batch` requests (or plain requests) in flight per tenant, before adaptive pacing.
    pub concurrency: usize,
    pub user_agent: String,
    /// Timeout of one HTTP exchange.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl ClientOptions {
    /// Defaults: 8 retries, 250 ms base, 30 s backoff cap, 4 in flight.
    pub fn new(endpoints: Endpoints) -> Self {
        let p = RetryPolicy::default();
        ClientOptions {
            endpoints,
            insecure_skip_tls_verify: false,
            max_retries: p.max_retries,
            max_backoff: p.max_backoff,
            base_delay: p.base_delay,
            max_retry_after: p.max_retry_after,
            max_elapsed: p.max_elapsed,
            concurrency: 4,
            user_agent: format!("pwdrift/{}", env!("CARGO_PKG_VERSION")),
            request_timeout: Duration::from_secs(100),
            connect_timeout: Duration::from_secs(10),
        }
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            base_delay: self.base_delay,
            max_backoff: self.max_backoff,
            max_retry_after: self.max_retry_after,
            max_elapsed: self.max_elapsed,
        }
    }
}

/// Counters for the run summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent to Graph (a `$batch` envelope counts once).
    pub requests: u64,
    /// Requests carried inside `$batch` envelopes (each attempt counts).
    pub batch_inner_requests: u64,
    /// Retries: re-sent requests and re-batched inner requests.
    pub retries: u64,
    /// 429 responses seen (envelopes and inner requests).
    pub throttled: u64,
    /// Retried 5xx responses seen (envelopes and inner requests).
    pub server_errors: u64,
    /// Transport errors (connection reset, incomplete body, timeout).
    pub transport_errors: u64,
    /// 401s answered by fetching a new token.
    pub token_refreshes: u64,
    /// Requests sent to the token endpoint.
    pub token_requests: u64,
    /// Times `x-ms-throttle-limit-percentage` made the client slow down.
    pub slowdowns: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    batch_inner_requests: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
    token_refreshes: AtomicU64,
    slowdowns: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A Graph failure. `Display` never contains a secret, a token or a request body.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GraphError {
    #[error("Graph returned HTTP {status} {code}: {message}{}", rid(.request_id))]
    Http {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("not found: {what}{}", rid(.request_id))]
    NotFound {
        what: String,
        request_id: Option<String>,
    },
    #[error("{what}: matches {count} users, expected one")]
    Ambiguous { what: String, count: usize },
    #[error("Graph kept throttling (HTTP 429) after {attempts} attempts; try again later or lower --concurrency{}", rid(.request_id))]
    Throttled {
        attempts: u32,
        request_id: Option<String>,
    },
    #[error("transport error talking to Graph after {attempts} attempts: {message}{}", if *.maybe_applied { " (the request may have been applied: re-read before retrying)" } else { "" })]
    Transport {
        attempts: u32,
        message: String,
        maybe_applied: bool,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("unexpected response from Graph ({what}): {message}")]
    Decode { what: String, message: String },
    #[error("refusing to follow {url}: it is not on the Graph origin {origin}")]
    ForeignUrl { url: String, origin: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("operation {location} did not finish within {timeout:?} (last status: {last_status})")]
    OperationTimeout {
        location: String,
        timeout: Duration,
        last_status: String,
    },
}

fn rid(request_id: &Option<String>) -> String {
    request_id
        .as_deref()
        .map(|r| format!(" (request-id {r})"))
        .unwrap_or_default()
}

impl GraphError {
    /// The HTTP status, when the error is a Graph answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Http { status, .. } => Some(*status),
            GraphError::NotFound { .. } => Some(404),
            GraphError::Throttled { .. } => Some(429),
            _ => None,
        }
    }

    /// Graph's error code (`Authorization_RequestDenied`, `Request_BadRequest`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Http { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, GraphError::NotFound { .. })
    }

    /// True when a write may or may not have been applied (its response was lost).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            GraphError::Transport {
                maybe_applied: true,
                ..
            }
        )
    }
}

/// How a user is looked up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserKey {
    /// object id
    Id(String),
    /// userPrincipalName
    Upn(String),
    /// onPremisesSecurityIdentifier
    Sid(String),
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserKey::Id(s) => write!(f, "user id {s}"),
            UserKey::Upn(s) => write!(f, "user {s}"),
            UserKey::Sid(s) => write!(f, "user with onPremisesSecurityIdentifier {s}"),
        }
    }
}

/// The answer to a resetPassword: where to poll, and the generated password if the service made
/// one. `Debug` redacts the password (a [`SecretString`]).
#[derive(Clone, Debug)]
pub struct ResetOutcome {
    /// `Location` of the `passwordResetOperation` (absolute URL).
    pub location: String,
    pub retry_after: Option<Duration>,
    pub generated_password: Option<SecretString>,
}

/// The Graph client. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    options: ClientOptions,
    policy: RetryPolicy,
    tokens: TokenProvider,
    /// `graph_url` with a version segment, ending in `/`
    api_base: Url,
    graph_origin: String,
    pacers: Mutex<HashMap<String, Arc<Pacer>>>,
    counters: Counters,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("api_base", &self.inner.api_base.as_str())
            .field("credential", self.inner.tokens.credential())
            .finish_non_exhaustive()
    }
}

/// One inner request waiting in a [`GraphClient::run_batches`] queue.
struct PendingRequest {
    req: BatchRequest,
    /// retries so far
    retries: u32,
    /// time spent waiting between its attempts
    waited: Duration,
}

/// The shared state of one [`GraphClient::run_batches`] call.
struct BatchWork {
    queue: Mutex<std::collections::VecDeque<PendingRequest>>,
    /// requests without a final result yet
    outstanding: std::sync::atomic::AtomicUsize,
    results: Mutex<HashMap<String, Result<BatchResponse, GraphError>>>,
    /// requests were re-queued, or the last one finished
    changed: tokio::sync::Notify,
}

impl BatchWork {
    fn finish(&self, id: String, result: Result<BatchResponse, GraphError>) {
        self.results
            .lock()
            .expect("batch results poisoned")
            .insert(id, result);
        if self.outstanding.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.changed.notify_waiters();
        }
    }
}

/// One HTTP request as the retry loop sees it.
struct Req {
    method: Method,
    url: Url,
    /// JSON body; may hold a password: never logged
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, &'static str)>,
    /// retry after a transport error / 504 even though the request may have run
    idempotent: bool,
    /// the caller reports the outcome to the pacer (a `$batch`: its inner statuses count)
    paced_by_caller: bool,
}

/// A complete HTTP response.
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
    request_id: Option<String>,
}

impl GraphClient {
    /// Builds the client. With `insecure_skip_tls_verify`, warns on stderr and in the log.
    pub fn new(options: ClientOptions, credential: Credential) -> Result<Self, GraphError> {
        if options.insecure_skip_tls_verify {
            let msg = "WARNING: --insecure-skip-tls-verify: TLS certificates are NOT verified. \
                       Anyone on the network path can read and change Graph traffic, including \
                       tokens and passwords. Never use this against Microsoft Graph.";
            tracing::warn!("{msg}");
            eprintln!("{msg}");
        }
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .danger_accept_invalid_certs(options.insecure_skip_tls_verify)
            .user_agent(options.user_agent.clone())
            .timeout(options.request_timeout)
            .connect_timeout(options.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                GraphError::InvalidRequest(format!("cannot build the HTTP client: {e}"))
            })?;
        // Re-check overrides built by hand rather than through Endpoints::new.
        auth::checked_url(options.endpoints.graph_url.as_str())?;
        auth::checked_url(options.endpoints.authority_host.as_str())?;
        let api_base = api_base(&options.endpoints.graph_url);
        let graph_origin = auth::origin(&options.endpoints.graph_url);
        let tokens = TokenProvider::new(credential, options.endpoints.clone(), http.clone());
        Ok(GraphClient {
            inner: Arc::new(Inner {
                http,
                policy: options.policy(),
                options,
                tokens,
                api_base,
                graph_origin,
                pacers: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        })
    }

    /// The versioned API root requests are made under (ends in `/`).
    pub fn api_base(&self) -> &Url {
        &self.inner.api_base
    }

    /// The options the client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The tenant the credential was configured with (`None` for a pre-acquired token).
    pub fn default_tenant(&self) -> Option<&str> {
        self.credential().tenant()
    }

    /// The credential in use.
    pub fn credential(&self) -> &Credential {
        self.inner.tokens.credential()
    }

    /// A token for `tenant` (from the cache), e.g. to check credentials before a run.
    pub async fn token(&self, tenant: &str) -> Result<SecretString, GraphError> {
        Ok(self.inner.tokens.token(tenant).await?)
    }

    /// Counters so far.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            requests: l(&c.requests),
            batch_inner_requests: l(&c.batch_inner_requests),
            retries: l(&c.retries),
            throttled: l(&c.throttled),
            server_errors: l(&c.server_errors),
            transport_errors: l(&c.transport_errors),
            token_refreshes: l(&c.token_refreshes),
            token_requests: self.inner.tokens.token_requests(),
            slowdowns: l(&c.slowdowns),
        }
    }

    fn pacer(&self, tenant: &str) -> Arc<Pacer> {
        let mut pacers = self.inner.pacers.lock().expect("pacer map poisoned");
        pacers
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Pacer::new(self.inner.options.concurrency)))
            .clone()
    }

    /// `{api_base}{relative}` where `relative` is e.g. `users?$select=...` (no leading slash
    /// needed; one is tolerated).
    fn url(&self, relative: &str) -> Result<Url, GraphError> {
        self.inner
            .api_base
            .join(relative.trim_start_matches('/'))
            .map_err(|e| GraphError::InvalidRequest(format!("bad Graph path: {e}")))
    }

    /// Accepts an absolute URL on the Graph origin, or a path relative to the API root.
    fn same_origin_url(&self, raw: &str) -> Result<Url, GraphError> {
        match Url::parse(raw) {
            Ok(u) => {
                if auth::origin(&u) == self.inner.graph_origin {
                    Ok(u)
                } else {
                    Err(GraphError::ForeignUrl {
                        url: format!("{}{}", auth::origin(&u), loggable_url(&u)),
                        origin: self.inner.graph_origin.clone(),
                    })
                }
            }
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                if raw.starts_with('/') {
                    // absolute path on the Graph origin
                    let base = Url::parse(&self.inner.graph_origin).expect("origin parses");
                    base.join(raw)
                        .map_err(|e| GraphError::InvalidRequest(format!("bad URL: {e}")))
                } else {
                    self.url(raw)
                }
            }
            Err(e) => Err(GraphError::InvalidRequest(format!("bad URL: {e}"))),
        }
    }

    /// Sends one request through pacing, auth and the retry policy, and returns the final
    /// response whatever its status (after retries). Errors are transport/auth failures and
    /// exhausted retries.
    async fn execute(&self, tenant: &str, req: &Req) -> Result<Resp, GraphError> {
        self.execute_admitted(tenant, req, None).await
    }

    /// [`Self::execute`] where the first attempt may use a permit the caller already holds
    /// (the `$batch` workers admit before they decide how many requests to send).
    async fn execute_admitted(
        &self,
        tenant: &str,
        req: &Req,
        mut admitted: Option<OwnedSemaphorePermit>,
    ) -> Result<Resp, GraphError> {
        let inner = &self.inner;
        let pacer = self.pacer(tenant);
        let mut attempt: u32 = 0;
        let mut waited = Duration::ZERO;
        let mut refreshed = false;
        loop {
            let permit = match admitted.take() {
                Some(p) => p,
                None => pacer.admit().await,
            };
            let token = inner.tokens.token(tenant).await?;
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let mut rb = inner
                .http
                .request(req.method.clone(), req.url.clone())
                .header(AUTHORIZATION, bearer(&token)?)
                .header("client-request-id", &client_request_id)
                .header("return-client-request-id", "true");
            for (k, v) in &req.headers {
                rb = rb.header(*k, *v);
            }
            if let Some(body) = &req.body {
                rb = rb
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            bump(&inner.counters.requests);
            let outcome = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => Ok((status, headers, body.to_vec())),
                        // the server answered, then the body broke: the request ran
                        Err(e) => Err((error_chain(e), true)),
                    }
                }
                Err(e) => {
                    let maybe_sent = !e.is_connect();
                    Err((error_chain(e), maybe_sent))
                }
            };
            drop(permit);
            attempt += 1;
            match outcome {
                Ok((status, headers, body)) => {
                    let request_id = header_str(&headers, "request-id");
                    tracing::debug!(
                        method = %req.method,
                        url = %loggable_url(&req.url),
                        status,
                        request_id = request_id.as_deref().unwrap_or("-"),
                        client_request_id = %client_request_id,
                        attempt,
                        "graph"
                    );
                    let throttled = status == 429;
                    if (throttled || !req.paced_by_caller)
                        && pacer.observe(throttle_percentage(&headers), throttled)
                    {
                        bump(&inner.counters.slowdowns);
                    }
                    if status == 401 && !refreshed {
                        if !inner.tokens.invalidate(tenant, &token).await {
                            return Err(GraphError::Auth(AuthError::AccessTokenRejected));
                        }
                        refreshed = true;
                        bump(&inner.counters.token_refreshes);
                        continue;
                    }
                    let retryable = is_retryable_status(status, req.idempotent);
                    if !retryable {
                        return Ok(Resp {
                            status,
                            headers,
                            body,
                            request_id,
                        });
                    }
                    let retry_after =
                        parse_retry_after(header_str(&headers, "retry-after").as_deref());
                    if status == 429 {
                        bump(&inner.counters.throttled);
                    } else {
                        bump(&inner.counters.server_errors);
                    }
                    let delay = inner.policy.delay(attempt, retry_after);
                    if !inner.policy.allows(attempt, waited, delay) {
                        return Ok(Resp {
                            status,
                            headers,
                            body,
                            request_id,
                        });
                    }
                    bump(&inner.counters.retries);
                    tracing::debug!(
                        status,
                        delay_ms = delay.as_millis() as u64,
                        retry_after = retry_after.is_some(),
                        "graph: retrying"
                    );
                    waited += delay;
                    if status == 429 {
                        // every request of this tenant waits it out, not only this one
                        pacer.block_for(delay);
                    } else {
                        tokio::time::sleep(delay).await;
                    }
                }
                Err((message, maybe_sent)) => {
                    bump(&inner.counters.transport_errors);
                    tracing::debug!(
                        method = %req.method,
                        url = %loggable_url(&req.url),
                        client_request_id = %client_request_id,
                        attempt,
                        error = %message,
                        "graph transport error"
                    );
                    let delay = inner.policy.delay(attempt, None);
                    let may_retry = req.idempotent || !maybe_sent;
                    if !may_retry || !inner.policy.allows(attempt, waited, delay) {
                        return Err(GraphError::Transport {
                            attempts: attempt,
                            message,
                            maybe_applied: maybe_sent && !req.idempotent,
                        });
                    }
                    bump(&inner.counters.retries);
                    waited += delay;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// GET a JSON document; non-2xx becomes an error.
    async fn get_json<T: DeserializeOwned>(&self, tenant: &str, url: Url) -> Result<T, GraphError> {
        self.get_json_with(tenant, url, Vec::new()).await
    }

    async fn get_json_with<T: DeserializeOwned>(
        &self,
        tenant: &str,
        url: Url,
        headers: Vec<(&'static str, &'static str)>,
    ) -> Result<T, GraphError> {
        let what = url.path().to_owned();
        let req = Req {
            method: Method::GET,
            url,
            body: None,
            headers,
            idempotent: true,
            paced_by_caller: false,
        };
        let resp = self.execute(tenant, &req).await?;
        if !(200..300).contains(&resp.status) {
            return Err(error_from(resp.status, &resp.body, resp.request_id, &what));
        }
        decode(&resp.body, &what)
    }

    /// GETs every page of a collection, following `@odata.nextLink` until absent.
    async fn get_paged<T: DeserializeOwned>(
        &self,
        tenant: &str,
        first: Url,
    ) -> Result<Vec<T>, GraphError> {
        self.get_paged_with(tenant, first, Vec::new()).await
    }

    async fn get_paged_with<T: DeserializeOwned>(
        &self,
        tenant: &str,
        first: Url,
        headers: Vec<(&'static str, &'static str)>,
    ) -> Result<Vec<T>, GraphError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page: Page<T> = self.get_json_with(tenant, url, headers.clone()).await?;
            out.extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.same_origin_url(&link)?);
            }
        }
        Ok(out)
    }

    /// Every user (or those matching the OData `filter`), with exactly [`USER_SELECT`], 999 per page.
    pub async fn list_users(
        &self,
        tenant: &str,
        filter: Option<&str>,
    ) -> Result<Vec<GraphUser>, GraphError> {
        let mut q = format!("users?$select={USER_SELECT}&$top=999");
        let mut headers = Vec::new();
        if let Some(f) = filter {
            q.push_str("&$filter=");
            q.push_str(&encode_query_value(f));
            if needs_advanced_query(f) {
                // `ne`, `not` and `endsWith` on users are advanced queries (graph-facts)
                q.push_str("&$count=true");
                headers.push(("ConsistencyLevel", "eventual"));
            }
        }
        self.get_paged_with(tenant, self.url(&q)?, headers).await
    }

    /// Reads the given users by `$batch` (20 per envelope): by id or UPN with `GET /users/{key}`,
    /// by SID with a `$filter` on `onPremisesSecurityIdentifier`. Results are in the order of
    /// `keys`; a missing user is `Err(NotFound)` for its key. The outer error is for failures
    /// that are not about one user (authentication).
    pub async fn get_users_by_batch(
        &self,
        tenant: &str,
        keys: &[UserKey],
    ) -> Result<Vec<(UserKey, Result<GraphUser, GraphError>)>, GraphError> {
        let requests: Vec<BatchRequest> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| BatchRequest {
                id: i.to_string(),
                method: "GET".into(),
                url: user_lookup_url(key),
                headers: None,
                body: None,
                depends_on: None,
            })
            .collect();
        let mut responses = self.run_batches(tenant, requests).await;
        let mut out = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let result = match responses.remove(&i.to_string()) {
                None => Err(GraphError::Decode {
                    what: "$batch".into(),
                    message: format!("no response for {key}"),
                }),
                Some(Err(e)) => Err(e),
                Some(Ok(r)) => user_from_batch_response(key, r),
            };
            if let Err(GraphError::Auth(e)) = &result {
                return Err(GraphError::Auth(e.clone()));
            }
            out.push((key.clone(), result));
        }
        Ok(out)
    }

    /// Groups whose `displayName` equals `display_name`.
    pub async fn find_groups_by_name(
        &self,
        tenant: &str,
        display_name: &str,
    ) -> Result<Vec<GraphGroup>, GraphError> {
        let filter = format!("displayName eq '{}'", odata_quote(display_name));
        let q = format!(
            "groups?$filter={}&$select=id,displayName",
            encode_query_value(&filter)
        );
        self.get_paged(tenant, self.url(&q)?).await
    }

    /// The users among a group's transitive members (nested groups expanded), paged.
    pub async fn group_user_members(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<Vec<GraphUser>, GraphError> {
        let q = format!(
            "groups/{}/transitiveMembers/microsoft.graph.user?$select={USER_SELECT}&$top=999",
            encode_segment(group_id)
        );
        self.get_paged(tenant, self.url(&q)?).await
    }

    /// Activated directory roles with their member ids. `$expand=members` rather than
    /// `members($select=id)`: Graph accepts both, the sandbox only the plain form, and only the
    /// ids are parsed ([`crate::graph::model::DirectoryObjectRef`]).
    pub async fn directory_roles(&self, tenant: &str) -> Result<Vec<DirectoryRole>, GraphError> {
        let url = self.url("directoryRoles?$expand=members")?;
        self.get_paged(tenant, url).await
    }

    /// The signed-in user (delegated credentials only).
    pub async fn me(&self, tenant: &str) -> Result<GraphUser, GraphError> {
        let url = self.url(&format!("me?$select={USER_SELECT}"))?;
        self.get_json(tenant, url).await
    }

    /// PATCHes `passwordProfile` of each user by `$batch` (20 per envelope, `concurrency`
    /// envelopes in flight). Both force flags must be set in every profile: Graph may default an
    /// omitted one (graph-facts). Results are in input order.
    pub async fn patch_password_profiles(
        &self,
        tenant: &str,
        patches: Vec<(String, PasswordProfile)>,
    ) -> Vec<(String, Result<(), GraphError>)> {
        let mut out: Vec<(String, Option<Result<(), GraphError>>)> =
            Vec::with_capacity(patches.len());
        let mut requests = Vec::with_capacity(patches.len());
        for (i, (user_id, profile)) in patches.into_iter().enumerate() {
            let complete = profile.force_change_password_next_sign_in.is_some()
                && profile
                    .force_change_password_next_sign_in_with_mfa
                    .is_some();
            debug_assert!(complete, "passwordProfile PATCH without both force flags");
            if !complete {
                out.push((
                    user_id,
                    Some(Err(GraphError::InvalidRequest(
                        "a passwordProfile PATCH must set both force flags".into(),
                    ))),
                ));
                continue;
            }
            let mut headers = serde_json::Map::new();
            headers.insert("Content-Type".into(), "application/json".into());
            requests.push(BatchRequest {
                id: i.to_string(),
                method: "PATCH".into(),
                url: format!("/users/{}", encode_segment(&user_id)),
                headers: Some(headers),
                body: Some(serde_json::json!({ "passwordProfile": profile })),
                depends_on: None,
            });
            out.push((user_id, None));
        }
        let mut responses = self.run_batches(tenant, requests).await;
        out.into_iter()
            .enumerate()
            .map(|(i, (user_id, done))| {
                let result = done.unwrap_or_else(|| match responses.remove(&i.to_string()) {
                    None => Err(GraphError::Decode {
                        what: "$batch".into(),
                        message: format!("no response for the PATCH of user {user_id}"),
                    }),
                    Some(Err(e)) => Err(e),
                    Some(Ok(r)) if (200..300).contains(&r.status) => Ok(()),
                    Some(Ok(r)) => Err(error_from_inner(&r, &format!("user {user_id}"))),
                });
                (user_id, result)
            })
            .collect()
    }

    /// PATCHes one user's `passwordProfile` outside `$batch`, as a non-idempotent request: it is
    /// retried only when it provably did not run (429, 503, no connection). A lost response comes
    /// back as [`GraphError::Transport`] with `maybe_applied: true` ([`GraphError::outcome_unknown`])
    /// so that a password reset is never repeated blindly: the caller re-reads
    /// `lastPasswordChangeDateTime` first.
    pub async fn patch_password_profile_once(
        &self,
        tenant: &str,
        user_id: &str,
        profile: PasswordProfile,
    ) -> Result<(), GraphError> {
        if profile.force_change_password_next_sign_in.is_none()
            || profile
                .force_change_password_next_sign_in_with_mfa
                .is_none()
        {
            return Err(GraphError::InvalidRequest(
                "a passwordProfile PATCH must set both force flags".into(),
            ));
        }
        let url = self.url(&format!("users/{}", encode_segment(user_id)))?;
        let body = serde_json::to_vec(&serde_json::json!({ "passwordProfile": profile }))
            .map_err(|e| GraphError::InvalidRequest(e.to_string()))?;
        let req = Req {
            method: Method::PATCH,
            url,
            body: Some(body),
            headers: Vec::new(),
            idempotent: false,
            paced_by_caller: false,
        };
        let resp = self.execute(tenant, &req).await?;
        match resp.status {
            200..=299 => Ok(()),
            504 => Err(GraphError::Transport {
                attempts: 1,
                message: "gateway timeout (HTTP 504)".into(),
                maybe_applied: true,
            }),
            status => Err(error_from(
                status,
                &resp.body,
                resp.request_id,
                &format!("user {user_id}"),
            )),
        }
    }

    /// Resets a password through the password authentication method (delegated only). With
    /// `None` the service generates the password and returns it.
    pub async fn reset_password(
        &self,
        tenant: &str,
        user_id: &str,
        new_password: Option<SecretString>,
    ) -> Result<ResetOutcome, GraphError> {
        let url = self.url(&format!(
            "users/{}/authentication/methods/{PASSWORD_METHOD_ID}/resetPassword",
            encode_segment(user_id)
        ))?;
        let body = serde_json::to_vec(&ResetPasswordRequest { new_password })
            .map_err(|e| GraphError::InvalidRequest(e.to_string()))?;
        let req = Req {
            method: Method::POST,
            url,
            body: Some(body),
            headers: Vec::new(),
            idempotent: false,
            paced_by_caller: false,
        };
        let what = format!("resetPassword of user {user_id}");
        let resp = self.execute(tenant, &req).await?;
        if !(200..300).contains(&resp.status) {
            if matches!(resp.status, 500 | 502 | 504) {
                return Err(GraphError::Transport {
                    attempts: 1,
                    message: format!(
                        "HTTP {} from Graph: the reset may or may not have happened",
                        resp.status
                    ),
                    maybe_applied: true,
                });
            }
            return Err(error_from(resp.status, &resp.body, resp.request_id, &what));
        }
        let location = header_str(&resp.headers, "location").ok_or_else(|| GraphError::Decode {
            what: what.clone(),
            message: format!("HTTP {} without a Location header", resp.status),
        })?;
        let location = self.same_origin_url(&location)?.to_string();
        let retry_after = parse_retry_after(header_str(&resp.headers, "retry-after").as_deref());
        let generated_password = if resp.body.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            match serde_json::from_slice::<PasswordResetResponse>(&resp.body) {
                Ok(r) => Some(r.new_password),
                // a body without newPassword (e.g. `{}`) is not an error
                Err(_) => None,
            }
        };
        Ok(ResetOutcome {
            location,
            retry_after,
            generated_password,
        })
    }

    /// Polls a `passwordResetOperation` until `succeeded` or `failed`, waiting `Retry-After`
    /// (default 1 s) between polls, at most `timeout` in total.
    pub async fn poll_operation(
        &self,
        tenant: &str,
        location: &str,
        timeout: Duration,
    ) -> Result<LongRunningOperation, GraphError> {
        let url = self.same_origin_url(location)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let what = url.path().to_owned();
        loop {
            let req = Req {
                method: Method::GET,
                url: url.clone(),
                body: None,
                headers: Vec::new(),
                idempotent: true,
                paced_by_caller: false,
            };
            let resp = self.execute(tenant, &req).await?;
            if !(200..300).contains(&resp.status) {
                return Err(error_from(resp.status, &resp.body, resp.request_id, &what));
            }
            let op: LongRunningOperation = decode(&resp.body, &what)?;
            if op.status.is_terminal() {
                return Ok(op);
            }
            let wait = parse_retry_after(header_str(&resp.headers, "retry-after").as_deref())
                .unwrap_or(Duration::from_secs(1))
                .min(self.inner.policy.max_retry_after);
            let now = tokio::time::Instant::now();
            if now + wait > deadline {
                return Err(GraphError::OperationTimeout {
                    location: what,
                    timeout,
                    last_status: format!("{:?}", op.status),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Runs any number of `$batch` requests (ids unique across all of them) and returns the
    /// final response (or error) per request id.
    ///
    /// The requests go into one queue per call. `concurrency` workers take envelopes from it, as
    /// many requests as the tenant's pacer allows per envelope (20, halved after throttling, grown
    /// back by 2 per calm envelope), and send them through [`Self::execute`] (which holds the
    /// pacer's in-flight permit). Inner requests that come back retryable (429, and 5xx for
    /// idempotent requests) go back to the front of the queue after the longest of their
    /// `Retry-After`s (a 429 blocks the whole tenant for that long) or a backoff, so they are
    /// re-batched with whatever is left; each request has its own retry budget.
    pub async fn run_batches(
        &self,
        tenant: &str,
        requests: Vec<BatchRequest>,
    ) -> HashMap<String, Result<BatchResponse, GraphError>> {
        let n = requests.len();
        if n == 0 {
            return HashMap::new();
        }
        let work = Arc::new(BatchWork {
            queue: Mutex::new(
                requests
                    .into_iter()
                    .map(|req| PendingRequest {
                        req,
                        retries: 0,
                        waited: Duration::ZERO,
                    })
                    .collect(),
            ),
            outstanding: std::sync::atomic::AtomicUsize::new(n),
            results: Mutex::new(HashMap::with_capacity(n)),
            changed: tokio::sync::Notify::new(),
        });
        let workers = self.inner.options.concurrency.max(1).min(n);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let client = self.clone();
            let tenant = tenant.to_owned();
            let work = work.clone();
            set.spawn(async move { client.batch_worker(&tenant, &work).await });
        }
        while let Some(joined) = set.join_next().await {
            if let Err(e) = joined {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        let results = std::mem::take(&mut *work.results.lock().expect("batch results poisoned"));
        results
    }

    async fn batch_worker(&self, tenant: &str, work: &BatchWork) {
        let pacer = self.pacer(tenant);
        loop {
            // registered before looking at the queue, so that no push is missed
            let notified = work.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if work.outstanding.load(Ordering::SeqCst) == 0 {
                return;
            }
            if work.queue.lock().expect("batch queue poisoned").is_empty() {
                notified.await;
                continue;
            }
            // Admission first (in-flight slot, 429 block, spacing), then the size: what the
            // pacer learnt while we waited decides how many requests go into this envelope.
            let permit = pacer.admit().await;
            let batch: Vec<PendingRequest> = {
                let mut queue = work.queue.lock().expect("batch queue poisoned");
                let take = pacer.batch_size().min(queue.len());
                queue.drain(..take).collect()
            };
            if batch.is_empty() {
                continue;
            }
            self.batch_round(tenant, &pacer, work, batch, permit).await;
        }
    }

    /// Sends one envelope and sorts its inner responses into final results and retries.
    async fn batch_round(
        &self,
        tenant: &str,
        pacer: &Pacer,
        work: &BatchWork,
        batch: Vec<PendingRequest>,
        permit: OwnedSemaphorePermit,
    ) {
        let inner = &self.inner;
        let requests: Vec<BatchRequest> = batch.iter().map(|p| p.req.clone()).collect();
        let (responses, envelope_pct) = match self.send_envelope(tenant, &requests, permit).await {
            Ok(r) => r,
            Err(e) => {
                for p in batch {
                    work.finish(p.req.id, Err(e.clone()));
                }
                return;
            }
        };
        let mut by_id: HashMap<String, BatchResponse> = responses
            .into_iter()
            .map(|r| (r.id.to_ascii_lowercase(), r))
            .collect();
        let mut retry: Vec<(PendingRequest, Option<BatchResponse>)> = Vec::new();
        let mut longest: Option<Duration> = None;
        let mut any_429 = false;
        let mut pct: Option<f64> = envelope_pct;
        for p in batch {
            let resp = by_id.remove(&p.req.id.to_ascii_lowercase());
            tracing::debug!(
                id = %p.req.id,
                method = %p.req.method,
                url = %loggable_relative(&p.req.url),
                status = resp.as_ref().map_or(0, |r| r.status),
                request_id = resp.as_ref().and_then(|r| inner_header(r, "request-id")).as_deref().unwrap_or("-"),
                attempt = p.retries + 1,
                "graph batch item"
            );
            match resp {
                Some(resp) if is_retryable_status(resp.status, p.req.method != "POST") => {
                    if resp.status == 429 {
                        bump(&inner.counters.throttled);
                        any_429 = true;
                    } else {
                        bump(&inner.counters.server_errors);
                    }
                    if let Some(ra) =
                        inner_header(&resp, "retry-after").and_then(|v| parse_retry_after(Some(&v)))
                    {
                        longest = Some(longest.map_or(ra, |l| l.max(ra)));
                    }
                    retry.push((p, Some(resp)));
                }
                Some(resp) => {
                    if let Some(v) = inner_header(&resp, "x-ms-throttle-limit-percentage")
                        .and_then(|v| parse_percentage(&v))
                    {
                        pct = Some(pct.map_or(v, |q: f64| q.max(v)));
                    }
                    work.finish(p.req.id.clone(), Ok(resp));
                }
                // no answer for it: ask again
                None => retry.push((p, None)),
            }
        }
        if pacer.observe(pct, any_429) {
            bump(&inner.counters.slowdowns);
        }
        if retry.is_empty() {
            return;
        }
        let most_retries = retry.iter().map(|(p, _)| p.retries + 1).max().unwrap_or(1);
        let delay = inner.policy.delay(most_retries, longest);
        let mut requeue = Vec::with_capacity(retry.len());
        for (mut p, last) in retry {
            let retry_no = p.retries + 1;
            if !inner.policy.allows(retry_no, p.waited, delay) {
                let err = match last {
                    Some(r) if r.status == 429 => GraphError::Throttled {
                        attempts: retry_no,
                        request_id: inner_header(&r, "request-id"),
                    },
                    Some(r) => error_from_inner(&r, &p.req.url),
                    None => GraphError::Decode {
                        what: "$batch".into(),
                        message: format!("no response for request {}", p.req.id),
                    },
                };
                work.finish(p.req.id, Err(err));
                continue;
            }
            p.retries = retry_no;
            p.waited += delay;
            requeue.push(p);
        }
        if requeue.is_empty() {
            return;
        }
        tracing::debug!(
            retrying = requeue.len(),
            delay_ms = delay.as_millis() as u64,
            throttled = any_429,
            "graph batch: re-queueing throttled or failed inner requests"
        );
        inner
            .counters
            .retries
            .fetch_add(requeue.len() as u64, Ordering::Relaxed);
        if any_429 {
            // every request of this tenant waits it out (in `execute`), not only these
            pacer.block_for(delay);
        } else {
            tokio::time::sleep(delay).await;
        }
        {
            let mut queue = work.queue.lock().expect("batch queue poisoned");
            for p in requeue.into_iter().rev() {
                queue.push_front(p);
            }
        }
        work.changed.notify_waiters();
    }

    /// POSTs one `$batch` envelope (envelope-level retries inside [`Self::execute`]).
    async fn send_envelope(
        &self,
        tenant: &str,
        requests: &[BatchRequest],
        permit: OwnedSemaphorePermit,
    ) -> Result<(Vec<BatchResponse>, Option<f64>), GraphError> {
        let envelope = BatchRequestEnvelope {
            requests: requests.to_vec(),
        };
        let body =
            serde_json::to_vec(&envelope).map_err(|e| GraphError::InvalidRequest(e.to_string()))?;
        self.inner
            .counters
            .batch_inner_requests
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        let req = Req {
            method: Method::POST,
            url: self.url("$batch")?,
            body: Some(body),
            headers: Vec::new(),
            // a $batch of GETs and PATCHes may be re-sent as a whole
            idempotent: true,
            paced_by_caller: true,
        };
        let resp = self.execute_admitted(tenant, &req, Some(permit)).await?;
        let pct = throttle_percentage(&resp.headers);
        let parsed = serde_json::from_slice::<BatchResponseEnvelope>(&resp.body);
        match (resp.status, parsed) {
            (200..=299, Ok(env)) => Ok((env.responses, pct)),
            // older docs: the envelope itself may be 424 while carrying the inner responses
            (_, Ok(env)) if !env.responses.is_empty() => Ok((env.responses, pct)),
            (200..=299, Err(e)) => Err(GraphError::Decode {
                what: "$batch".into(),
                message: e.to_string(),
            }),
            (429, _) => Err(GraphError::Throttled {
                attempts: self.inner.policy.max_retries + 1,
                request_id: resp.request_id,
            }),
            (status, _) => Err(error_from(status, &resp.body, resp.request_id, "$batch")),
        }
    }
}

/// A reqwest error with its causes (`error sending request: connection reset ...`), without the
/// URL.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}

fn bearer(token: &SecretString) -> Result<HeaderValue, GraphError> {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).map_err(|_| {
            GraphError::Auth(AuthError::Decode {
                what: "token endpoint".into(),
                message: "the access token is not a valid header value".into(),
            })
        })?;
    v.set_sensitive(true);
    Ok(v)
}

/// `graph_url` with `/v1.0/` appended unless its path already ends in a version segment.
fn api_base(graph_url: &Url) -> Url {
    let mut u = graph_url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let path = u.path().trim_end_matches('/').to_owned();
    let last = path.rsplit('/').next().unwrap_or("");
    let path = if last == "v1.0" || last == "beta" {
        format!("{path}/")
    } else {
        format!("{path}/v1.0/")
    };
    u.set_path(&path);
    u
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A header of an inner `$batch` response (names are case-insensitive; values string or number).
fn inner_header(resp: &BatchResponse, name: &str) -> Option<String> {
    let headers = resp.headers.as_ref()?;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// `x-ms-throttle-limit-percentage`: a fraction (`0.8`); a value above 2 is read as percent.
fn parse_percentage(v: &str) -> Option<f64> {
    let p: f64 = v.trim().parse().ok()?;
    if !p.is_finite() || p < 0.0 {
        return None;
    }
    Some(if p > 2.0 { p / 100.0 } else { p })
}

fn throttle_percentage(headers: &HeaderMap) -> Option<f64> {
    header_str(headers, "x-ms-throttle-limit-percentage").and_then(|v| parse_percentage(&v))
}

fn decode<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, GraphError> {
    serde_json::from_slice(body).map_err(|e| GraphError::Decode {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

/// Maps a non-2xx Graph answer to an error (404 to `NotFound`), parsing the error body leniently.
fn error_from(status: u16, body: &[u8], request_id: Option<String>, what: &str) -> GraphError {
    let parsed = serde_json::from_slice::<GraphErrorBody>(body).ok();
    error_from_parts(status, parsed, request_id, what)
}

fn error_from_parts(
    status: u16,
    parsed: Option<GraphErrorBody>,
    request_id: Option<String>,
    what: &str,
) -> GraphError {
    let request_id = request_id.or_else(|| {
        parsed
            .as_ref()
            .and_then(|b| b.error.inner_error.as_ref())
            .and_then(|i| i.request_id.clone())
    });
    if status == 404 {
        return GraphError::NotFound {
            what: what.to_owned(),
            request_id,
        };
    }
    if status == 429 {
        return GraphError::Throttled {
            attempts: 1,
            request_id,
        };
    }
    let (code, message) = match parsed {
        Some(b) => (b.error.code, b.error.message),
        None => (String::new(), format!("no Graph error body ({what})")),
    };
    GraphError::Http {
        status,
        code,
        message,
        request_id,
    }
}

fn error_from_inner(resp: &BatchResponse, what: &str) -> GraphError {
    let parsed = resp
        .body
        .clone()
        .and_then(|b| serde_json::from_value::<GraphErrorBody>(b).ok());
    error_from_parts(resp.status, parsed, inner_header(resp, "request-id"), what)
}

fn user_from_batch_response(key: &UserKey, r: BatchResponse) -> Result<GraphUser, GraphError> {
    if !(200..300).contains(&r.status) {
        return Err(error_from_inner(&r, &key.to_string()));
    }
    let body = r.body.unwrap_or(serde_json::Value::Null);
    let what = key.to_string();
    match key {
        UserKey::Sid(_) => {
            let page: Page<GraphUser> =
                serde_json::from_value(body).map_err(|e| GraphError::Decode {
                    what: what.clone(),
                    message: e.to_string(),
                })?;
            let mut users = page.value;
            match users.len() {
                0 => Err(GraphError::NotFound {
                    what,
                    request_id: None,
                }),
                1 => Ok(users.remove(0)),
                count => Err(GraphError::Ambiguous { what, count }),
            }
        }
        _ => serde_json::from_value(body).map_err(|e| GraphError::Decode {
            what,
            message: e.to_string(),
        }),
    }
}

/// The relative `$batch` URL that reads one user with [`USER_SELECT`].
pub fn user_lookup_url(key: &UserKey) -> String {
    match key {
        UserKey::Id(id) => format!("/users/{}?$select={USER_SELECT}", encode_segment(id)),
        UserKey::Upn(upn) => format!("/users/{}?$select={USER_SELECT}", encode_segment(upn)),
        UserKey::Sid(sid) => {
            let filter = format!("onPremisesSecurityIdentifier eq '{}'", odata_quote(sid));
            format!(
                "/users?$filter={}&$select={USER_SELECT}",
                encode_query_value(&filter)
            )
        }
    }
}

/// Whether a `$filter` on users uses an operator that needs `ConsistencyLevel: eventual`.
fn needs_advanced_query(filter: &str) -> bool {
    let f = filter.to_ascii_lowercase();
    f.contains(" ne ") || f.contains("not(") || f.contains("not ") || f.contains("endswith(")
}

/// OData string literal escaping: `'` doubles.
fn odata_quote(s: &str) -> String {
    s.replace('\'', "''")
}

/// What a path segment keeps unencoded: RFC 3986 unreserved characters and `@`.
const SEGMENT_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// What a query value keeps unencoded: [`SEGMENT_KEEP`] plus the characters OData expressions
/// use (`'(),/:$`), so that filters stay readable in logs.
const QUERY_VALUE_KEEP: &AsciiSet = &SEGMENT_KEEP
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b',')
    .remove(b'/')
    .remove(b':')
    .remove(b'$');

/// Percent-encodes a path segment (everything but RFC 3986 unreserved characters and `@`).
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT_KEEP).to_string()
}

/// Percent-encodes a query value, keeping the characters OData expressions use readable.
pub fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE_KEEP).to_string()
}

/// A relative `$batch` URL as it may be logged (see [`loggable_url`]).
fn loggable_relative(relative: &str) -> String {
    let base = Url::parse("http://graph.invalid/").expect("static URL parses");
    match base.join(relative.trim_start_matches('/')) {
        Ok(u) => loggable_url(&u),
        Err(_) => "(unparsable)".into(),
    }
}

/// The URL as it may be logged: path and query, with opaque paging tokens elided.
pub fn loggable_url(url: &Url) -> String {
    let mut s = url.path().to_owned();
    if let Some(q) = url.query() {
        let parts: Vec<String> = q
            .split('&')
            .map(|pair| {
                let key = pair.split('=').next().unwrap_or("");
                let lower = key.to_ascii_lowercase();
                if ["token", "secret", "password", "code", "sig", "key"]
                    .iter()
                    .any(|w| lower.contains(w))
                {
                    format!("{key}=(elided)")
                } else {
                    pair.to_owned()
                }
            })
            .collect();
        s.push('?');
        s.push_str(&parts.join("&"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_appends_version_once() {
        let u = |s: &str| api_base(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            u("https://graph.microsoft.com"),
            "https://graph.microsoft.com/v1.0/"
        );
        assert_eq!(
            u("https://graph.microsoft.com/"),
            "https://graph.microsoft.com/v1.0/"
        );
        assert_eq!(u("http://127.0.0.1:9/v1.0"), "http://127.0.0.1:9/v1.0/");
        assert_eq!(u("http://127.0.0.1:9/v1.0/"), "http://127.0.0.1:9/v1.0/");
        assert_eq!(
            u("http://127.0.0.1:9/graph/beta"),
            "http://127.0.0.1:9/graph/beta/"
        );
        assert_eq!(
            u("http://127.0.0.1:9/graph"),
            "http://127.0.0.1:9/graph/v1.0/"
        );
    }

    #[test]
    fn lookup_urls() {
        assert_eq!(
            user_lookup_url(&UserKey::Upn("ext_user#EXT#@contoso.com".into())),
            format!("/users/ext_user%23EXT%23@contoso.com?$select={USER_SELECT}")
        );
        assert_eq!(
            user_lookup_url(&UserKey::Sid("S-1-5-21-1-2-3-1104".into())),
            format!("/users?$filter=onPremisesSecurityIdentifier%20eq%20'S-1-5-21-1-2-3-1104'&$select={USER_SELECT}")
        );
        assert_eq!(odata_quote("O'Brien"), "O''Brien");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            encode_query_value("displayName eq 'A&B'"),
            "displayName%20eq%20'A%26B'"
        );
    }

    /// The `percent-encoding` sets give what the hand-written encoder they replaced gave:
    /// uppercase hex, every byte of a non-ASCII character, and only the listed ASCII kept.
    #[test]
    fn percent_encoding_keeps_exactly_the_listed_characters() {
        let reference = |s: &str, keep: &[u8]| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || keep.contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        let all_ascii: String = (0x20u8..0x7f).map(char::from).collect();
        for s in [
            all_ascii.as_str(),
            "ext_user#EXT#@contoso.com",
            "Zoë Ångström/ü?&=+%",
            "\u{1F600} \t\n",
            "",
        ] {
            assert_eq!(encode_segment(s), reference(s, b"-._~@"), "{s:?}");
            assert_eq!(
                encode_query_value(s),
                reference(s, b"-._~@'(),/:$"),
                "{s:?}"
            );
        }
        assert_eq!(encode_segment("zoë"), "zo%C3%AB");
    }

    #[test]
    fn loggable_url_elides_tokens() {
        let u =
            Url::parse("http://127.0.0.1/v1.0/users?$select=id&$skiptoken=abc123&code=x").unwrap();
        let s = loggable_url(&u);
        assert_eq!(
            s,
            "/v1.0/users?$select=id&$skiptoken=(elided)&code=(elided)"
        );
    }

    #[test]
    fn errors_map_statuses_and_codes() {
        let body = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{"request-id":"r-1"}}}"#;
        let e = error_from(403, body, None, "x");
        assert_eq!(e.status(), Some(403));
        assert_eq!(e.code(), Some("Authorization_RequestDenied"));
        assert!(e.to_string().contains("r-1"));
        assert!(error_from(404, b"", None, "user bob").is_not_found());
        assert!(matches!(
            error_from(500, b"garbage", None, "x"),
            GraphError::Http { status: 500, .. }
        ));
    }

    #[test]
    fn advanced_query_detection() {
        assert!(needs_advanced_query("userPrincipalName ne 'a'"));
        assert!(needs_advanced_query(
            "endsWith(userPrincipalName,'@contoso.com')"
        ));
        assert!(needs_advanced_query(
            "not(startsWith(userPrincipalName,'a'))"
        ));
        assert!(!needs_advanced_query(
            "passwordProfile/forceChangePasswordNextSignIn eq true"
        ));
        assert!(!needs_advanced_query("startsWith(displayName,'Anne')"));
    }

    #[test]
    fn percentage_parsing() {
        assert_eq!(parse_percentage("0.85"), Some(0.85));
        assert_eq!(parse_percentage("85"), Some(0.85));
        assert_eq!(parse_percentage("x"), None);
        assert_eq!(parse_percentage("-1"), None);
    }

    #[test]
    fn sid_batch_response_shapes() {
        let key = UserKey::Sid("S-1".into());
        let resp = |body: serde_json::Value| BatchResponse {
            id: "0".into(),
            status: 200,
            headers: None,
            body: Some(body),
        };
        assert!(
            user_from_batch_response(&key, resp(serde_json::json!({"value": []})))
                .unwrap_err()
                .is_not_found()
        );
        let one =
            user_from_batch_response(&key, resp(serde_json::json!({"value": [{"id": "u1"}]})))
                .unwrap();
        assert_eq!(one.id, "u1");
        let two = user_from_batch_response(
            &key,
            resp(serde_json::json!({"value": [{"id": "a"}, {"id": "b"}]})),
        );
        assert!(matches!(two, Err(GraphError::Ambiguous { count: 2, .. })));
    }

    #[test]
    fn reset_outcome_debug_redacts() {
        let o = ResetOutcome {
            location: "l".into(),
            retry_after: None,
            generated_password: Some(SecretString::from("Canary-Pw-1")),
        };
        assert!(!format!("{o:?}").contains("Canary"));
    }
}
