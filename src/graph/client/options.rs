//! [`ClientOptions`]: where the Graph client connects, how it authenticates its TLS peer, how
//! hard it retries and how many requests it keeps in flight.

use std::time::Duration;

use crate::graph::auth::Endpoints;
use crate::graph::notice::Notifier;
use crate::graph::retry::{
    AppQuotas, RetryPolicy, WriteQuota, AUTH_METHOD_QUOTA, DOCUMENTED_APP_QUOTAS,
    DOCUMENTED_TENANT_UNIT_QUOTAS, DOCUMENTED_WRITE_QUOTAS,
};

/// How the client connects and how hard it retries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub endpoints: Endpoints,
    /// Accept any TLS certificate. Warned about loudly on construction (a
    /// [`crate::graph::notice::Notice::InsecureTls`] to `notices`, and the log).
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
    /// Timeout of one HTTP exchange (one attempt: connect, send, the whole answer).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Longest silence while reading one answer (no byte for this long ends the attempt).
    pub read_timeout: Duration,
    /// One overall deadline per request, retries and their waits included (`--request-timeout`).
    pub request_deadline: Duration,
    /// Largest response body read (streamed; a longer one is cut off with an error).
    pub max_response_bytes: usize,
    /// Most pages read for one listing (`@odata.nextLink` followed this many times at most).
    pub max_pages: usize,
    /// Where the device-code prompt and the insecure-TLS warning go (default: nowhere).
    pub notices: Notifier,
    /// The write quotas writes are paced to, per tenant (default: Graph's documented ones; a
    /// sandbox run with `--throttle scaled:K` wants them `scaled(K)`).
    pub write_quotas: Vec<WriteQuota>,
    /// resetPassword and its operation polls per tenant (default: 5 per 10 s, the identity and
    /// access reports limit; `PWDRIFT_RESET_RATE`).
    pub auth_method_quota: WriteQuota,
    /// The application's quotas across tenants, shared by every client of the process signed in
    /// as the same application (default: the documented ones; `--shard I/N` divides them).
    pub app_quotas: AppQuotas,
    /// Resource units per app + tenant for tenants of < 50, 50-500 and > 500 users (default:
    /// the documented ones; a tenant is in one shard only, so `--shard` leaves them whole).
    pub tenant_unit_quotas: [WriteQuota; 3],
}

impl ClientOptions {
    /// Defaults: 8 retries, 250 ms base, 30 s backoff cap, `Retry-After` capped at 120 s, 4 in
    /// flight, 300 s per request in all, 64 MiB per response, 10,000 pages per listing.
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
            read_timeout: Duration::from_secs(60),
            request_deadline: Duration::from_secs(300),
            max_response_bytes: 64 << 20,
            max_pages: 10_000,
            notices: Notifier::default(),
            write_quotas: DOCUMENTED_WRITE_QUOTAS.to_vec(),
            auth_method_quota: AUTH_METHOD_QUOTA,
            app_quotas: DOCUMENTED_APP_QUOTAS,
            tenant_unit_quotas: DOCUMENTED_TENANT_UNIT_QUOTAS,
        }
    }

    pub(super) fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            base_delay: self.base_delay,
            max_backoff: self.max_backoff,
            max_retry_after: self.max_retry_after,
            max_elapsed: self.max_elapsed,
        }
    }
}
