//! The one Graph client: all Microsoft Graph I/O of pwdrift goes through [`GraphClient`].
//!
//! It owns the reqwest client (rustls), the `TokenProvider`, one `Pacer` per tenant and the
//! counters of [`ClientStats`]. Every request goes through `GraphClient::execute`: admission by
//! the tenant's pacer, a bearer token, a fresh `client-request-id`, then the retry policy of
//! `graph::retry`: 429 and 503 always, 500/502/504 and transport errors only for
//! idempotent requests; `Retry-After` first, else full-jitter backoff; bounded in count and in
//! time. A 401 expires the cached token and retries once with a new one. `$batch` envelopes go
//! through the same path; `GraphClient::run_batches` re-queues the inner requests that came
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
//!
//! # Layout
//!
//! `options` (what the client is built with), `error` (`GraphError`, the mapping of Graph's
//! error answers, the escaping of the peer's words in messages), `key` (`UserKey`), `parse`
//! (pure parsers of Graph's answers), `execute` (pools, pacing admission, token, retry loop),
//! `partition` (large tenants listed in parallel ranges), `batch` (the `$batch` work queue),
//! `api` (the endpoint catalogue), `urls` (API root, same-origin rule, percent-encoding,
//! loggable URLs) and `stats` (counters). This file holds [`GraphClient`] itself: its shared
//! state and accessors; the other files add to it with `impl GraphClient` blocks.
//!
//! The files import one another without a circle (lowest first: `stats`, `options`, `key`,
//! `error`, `urls`, `parse`, `execute`, `partition`, `batch`, `api`); a test below reads their
//! imports and fails on a circle.

mod api;
mod batch;
mod error;
mod execute;
mod key;
mod options;
pub mod parse;
mod partition;
mod stats;
mod urls;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub use api::{is_advanced_query_refusal, needs_advanced_query, ResetOutcome};
pub use error::{escape_for_message, GraphError};
pub use execute::{WriteSlot, READ_CONCURRENCY};
pub use key::UserKey;
pub use options::ClientOptions;
pub use partition::{partition_boundaries, partition_filters, ListingPath, PARTITION_MIN_USERS};
pub use stats::ClientStats;
pub use urls::resolve_same_origin;

use crate::graph::auth::{self, Credential, TokenProvider};
use crate::graph::notice::Notice;
use crate::graph::retry::{app_pacer, AppPacer, Pacer, RetryPolicy};
use stats::Counters;
use urls::api_base;

/// What `--insecure-skip-tls-verify` warns about, every time a client is built with it.
const INSECURE_TLS_WARNING: &str = "WARNING: --insecure-skip-tls-verify: TLS certificates are \
     NOT verified. Anyone on the network path can read and change Graph traffic, including \
     tokens and passwords. Never use this against Microsoft Graph.";

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
    pacers: Mutex<HashMap<String, Arc<Pacer>>>,
    /// the application's quotas across tenants, shared with the process's other clients of it
    app: Arc<AppPacer>,
    /// per tenant, its resource units per app + tenant ([`GraphClient::unit_pacer`])
    tenant_units: Mutex<HashMap<String, Arc<AppPacer>>>,
    /// per tenant, the resetPassword operations that may be in progress ([`GraphClient::reset_gate`])
    reset_gates: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    counters: Counters,
    /// Graph's clock as last seen: the `Date` of the latest response and the local instant it
    /// arrived (see [`GraphClient::to_graph_clock`])
    graph_clock: Mutex<Option<(DateTime<Utc>, DateTime<Utc>)>>,
    /// tenants whose partitioned user read failed (a range filter ignored or refused): listed
    /// sequentially from then on (`partition.rs`)
    unpartitioned: Mutex<std::collections::HashSet<String>>,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("api_base", &self.inner.api_base.as_str())
            .field("credential", self.inner.tokens.credential())
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// Builds the client. With `insecure_skip_tls_verify`, warns in the log and through
    /// `options.notices` ([`Notice::InsecureTls`]).
    pub fn new(options: ClientOptions, credential: Credential) -> Result<Self, GraphError> {
        if options.insecure_skip_tls_verify {
            tracing::warn!("{INSECURE_TLS_WARNING}");
            options.notices.notify(Notice::InsecureTls {
                message: INSECURE_TLS_WARNING.to_owned(),
            });
        }
        let http = shared_http(&options)?;
        // Re-check overrides built by hand rather than through Endpoints::new.
        auth::checked_url(options.endpoints.graph_url.as_str())?;
        auth::checked_url(options.endpoints.authority_host.as_str())?;
        let api_base = api_base(&options.endpoints.graph_url);
        let app = app_pacer(
            options
                .endpoints
                .graph_url
                .origin()
                .ascii_serialization()
                .as_str(),
            credential.client_id(),
            options.app_quotas,
        );
        let tokens = TokenProvider::new(
            credential,
            options.endpoints.clone(),
            http.clone(),
            options.notices.clone(),
        )
        .within(options.request_deadline);
        Ok(GraphClient {
            inner: Arc::new(Inner {
                http,
                policy: options.policy(),
                options,
                tokens,
                api_base,
                pacers: Mutex::new(HashMap::new()),
                app,
                tenant_units: Mutex::new(HashMap::new()),
                reset_gates: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                graph_clock: Mutex::new(None),
                unpartitioned: Mutex::new(std::collections::HashSet::new()),
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

    /// The credential in use.
    pub fn credential(&self) -> &Credential {
        self.inner.tokens.credential()
    }

    /// A token for `tenant` (from the cache), e.g. to check credentials before a run.
    pub async fn token(&self, tenant: &str) -> Result<SecretString, GraphError> {
        Ok(self.inner.tokens.token(tenant).await?)
    }

    /// Records the `Date` header of a response (any response: a write's, a `$batch` envelope's,
    /// resetPassword's 202): Graph's clock at that moment.
    pub(super) fn observe_date(&self, date: Option<&str>) {
        let Some(server) = date.and_then(parse_http_date) else {
            return;
        };
        *self.inner.graph_clock.lock().expect("clock lock") = Some((server, Utc::now()));
    }

    /// The `Date` of the latest response Graph sent this client, if any had one.
    pub fn last_server_date(&self) -> Option<DateTime<Utc>> {
        self.inner
            .graph_clock
            .lock()
            .expect("clock lock")
            .map(|(server, _)| server)
    }

    /// The latest `Date` Graph sent this client and the local instant it arrived, if any
    /// response had one: what the engine decides Graph's "now" from.
    pub fn clock_sample(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        *self.inner.graph_clock.lock().expect("clock lock")
    }

    /// A local instant on Graph's clock, by the offset seen in the latest response's `Date`
    /// (whole seconds, so the result is at most about a second early: safe as a lower bound).
    /// Without any `Date` seen, `local` unchanged. Timestamps Graph writes
    /// (`lastPasswordChangeDateTime`) are compared with this, not with the local clock.
    pub fn to_graph_clock(&self, local: DateTime<Utc>) -> DateTime<Utc> {
        match *self.inner.graph_clock.lock().expect("clock lock") {
            Some((server, arrived)) => local + (server - arrived),
            None => local,
        }
    }

    /// The id of the tenant `tenant` (a domain or an id) names, as the identity platform sees it:
    /// the `tid` claim of the token issued for it. `None` when the token does not say (not a JWT).
    pub async fn tenant_id(&self, tenant: &str) -> Result<Option<String>, GraphError> {
        let token = self.token(tenant).await?;
        Ok(crate::graph::auth::tenant_id_from_token(
            token.expose_secret(),
        ))
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
}

/// An HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`), leniently.
fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// The reqwest client for these options, built once per process and shared (a clone shares the
/// connection pool). Building one loads the TLS root store, which costs megabytes and
/// milliseconds: a run over many tenants (one `GraphClient` each) would pay it per tenant.
fn shared_http(options: &ClientOptions) -> Result<reqwest::Client, GraphError> {
    type Key = (
        bool,
        String,
        std::time::Duration,
        std::time::Duration,
        std::time::Duration,
    );
    static CLIENTS: std::sync::OnceLock<Mutex<HashMap<Key, reqwest::Client>>> =
        std::sync::OnceLock::new();
    let key: Key = (
        options.insecure_skip_tls_verify,
        options.user_agent.clone(),
        options.request_timeout.min(options.request_deadline),
        options.connect_timeout,
        options.read_timeout,
    );
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .expect("HTTP client cache poisoned");
    if let Some(c) = clients.get(&key) {
        return Ok(c.clone());
    }
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(options.insecure_skip_tls_verify)
        .user_agent(options.user_agent.clone())
        .timeout(options.request_timeout.min(options.request_deadline))
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.read_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| GraphError::InvalidRequest(format!("cannot build the HTTP client: {e}")))?;
    clients.insert(key, http.clone());
    Ok(http)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_clock_follows_the_date_header() {
        let c = GraphClient::new(
            ClientOptions::new(crate::graph::auth::Endpoints::for_cloud(
                crate::graph::auth::Cloud::Global,
            )),
            Credential::AccessToken {
                token: SecretString::from("t"),
            },
        )
        .unwrap();
        let now = Utc::now();
        assert_eq!(c.to_graph_clock(now), now, "no Date seen yet");
        c.observe_date(Some("not a date"));
        assert_eq!(c.last_server_date(), None);
        // Graph's clock 2 minutes behind ours
        let behind = (now - chrono::Duration::minutes(2)).to_rfc2822();
        c.observe_date(Some(&behind));
        let shifted = c.to_graph_clock(now);
        let off = (now - shifted).num_seconds();
        assert!((119..=121).contains(&off), "{off}");
        assert!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").is_some());
    }
    use crate::graph::auth::{Cloud, Endpoints};
    use crate::graph::notice::Notifier;

    /// The insecure-TLS warning is handed to the notifier (not printed), once per client built.
    #[tokio::test]
    async fn insecure_tls_warning_goes_to_the_notifier() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut options = ClientOptions::new(Endpoints::for_cloud(Cloud::Global));
        options.notices = Notifier::new(move |n| sink.lock().unwrap().push(n));
        let credential = Credential::AccessToken {
            token: SecretString::from("t"),
        };
        GraphClient::new(options.clone(), credential.clone()).unwrap();
        assert!(
            seen.lock().unwrap().is_empty(),
            "no warning without the flag"
        );
        options.insecure_skip_tls_verify = true;
        GraphClient::new(options, credential).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.as_slice(),
            [Notice::InsecureTls {
                message: "WARNING: --insecure-skip-tls-verify: TLS certificates are NOT verified. \
                          Anyone on the network path can read and change Graph traffic, including \
                          tokens and passwords. Never use this against Microsoft Graph."
                    .into()
            }]
        );
    }

    /// The files of the client import one another without a circle. Read from their source:
    /// every `super::NAME` (or `crate::graph::client::NAME`) path outside comments names a
    /// sibling file either directly or through a `pub use` of this file; [`GraphClient`], which
    /// this file defines and the others extend, is the common parent and not an edge.
    #[test]
    fn client_files_import_one_another_without_a_circle() {
        const FILES: &[(&str, &str)] = &[
            ("api", include_str!("api.rs")),
            ("batch", include_str!("batch.rs")),
            ("error", include_str!("error.rs")),
            ("execute", include_str!("execute.rs")),
            ("key", include_str!("key.rs")),
            ("options", include_str!("options.rs")),
            ("parse", include_str!("parse.rs")),
            ("partition", include_str!("partition.rs")),
            ("stats", include_str!("stats.rs")),
            ("urls", include_str!("urls.rs")),
        ];
        fn code(text: &str) -> String {
            text.lines()
                .map(|l| l.find("//").map_or(l, |i| &l[..i]))
                .collect::<Vec<_>>()
                .join("\n")
        }
        fn ident(s: &str) -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        }
        // the names this file re-exports, by the sibling that defines them
        let own = code(include_str!("mod.rs"));
        let own = &own[..own.find("\nmod tests {").unwrap()];
        let mut reexported = HashMap::new();
        for stmt in own.split("pub use ").skip(1) {
            let stmt = &stmt[..stmt.find(';').unwrap()];
            let (module, names) = stmt.split_once("::").unwrap();
            for name in names.split(|c| "{},".contains(c)).map(|n| ident(n.trim())) {
                if !name.is_empty() {
                    reexported.insert(name, module.trim().to_owned());
                }
            }
        }
        let siblings: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        let resolve = |name: &str| -> Option<String> {
            if siblings.contains(&name) {
                Some(name.to_owned())
            } else {
                reexported.get(name).cloned()
            }
        };
        let mut edges: HashMap<&str, Vec<String>> = HashMap::new();
        for (file, text) in FILES {
            let text = code(text);
            let mut names = Vec::new();
            for prefix in ["super::", "crate::graph::client::"] {
                let mut rest = text.as_str();
                while let Some(at) = rest.find(prefix) {
                    rest = &rest[at + prefix.len()..];
                    let after = rest.trim_start_matches("super::");
                    match after.strip_prefix('{') {
                        Some(group) => {
                            let group = &group[..group.find('}').unwrap()];
                            names.extend(group.split(',').map(|n| ident(n.trim())));
                        }
                        None => names.push(ident(after)),
                    }
                }
            }
            let targets = edges.entry(file).or_default();
            for target in names.iter().filter_map(|n| resolve(n)) {
                if target != *file && !targets.contains(&target) {
                    targets.push(target);
                }
            }
        }
        assert!(
            edges["api"].contains(&"parse".to_owned())
                && edges["parse"].contains(&"key".to_owned()),
            "the scanner sees imports: {edges:?}"
        );
        // depth-first search; a file met again while on the path closes a circle
        fn visit<'a>(
            file: &'a str,
            edges: &'a HashMap<&str, Vec<String>>,
            path: &mut Vec<&'a str>,
            done: &mut Vec<&'a str>,
        ) {
            if done.contains(&file) {
                return;
            }
            if let Some(i) = path.iter().position(|f| *f == file) {
                panic!(
                    "import circle in src/graph/client: {} -> {file}",
                    path[i..].join(" -> ")
                );
            }
            path.push(file);
            for next in &edges[file] {
                visit(next, edges, path, done);
            }
            path.pop();
            done.push(file);
        }
        let mut done = Vec::new();
        for (file, _) in FILES {
            visit(file, &edges, &mut Vec::new(), &mut done);
        }
    }
}
