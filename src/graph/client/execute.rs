//! The executor: every Graph request goes through [`GraphClient::execute`], which admits it
//! through the tenant's [`Pacer`], attaches a bearer token and a fresh `client-request-id`, and
//! applies the retry policy of [`crate::graph::retry`] (429 and 503 always, 500/502/504 and
//! transport errors only for idempotent requests; `Retry-After` first, else full-jitter backoff;
//! a 401 expires the token and retries once). Also the GET helpers (one JSON document, every
//! page of a collection) the endpoint catalogue is written with.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::sync::OwnedSemaphorePermit;
use url::Url;

use super::error::{decode, error_from};
use super::stats::bump;
use super::urls::loggable_url;
use super::{GraphClient, GraphError};
use crate::graph::auth::AuthError;
use crate::graph::error_chain;
use crate::graph::model::Page;
use crate::graph::quota::{resource_units, tenant_unit_quota};
use crate::graph::retry::{is_retryable_status, parse_retry_after, AppPacer, AppTicket, Pacer};

/// One HTTP request as the retry loop sees it.
pub(super) struct Req {
    pub(super) method: Method,
    pub(super) url: Url,
    /// JSON body; may hold a password: never logged
    pub(super) body: Option<Vec<u8>>,
    pub(super) headers: Vec<(&'static str, &'static str)>,
    /// retry after a transport error / 504 even though the request may have run
    pub(super) idempotent: bool,
    /// the caller reports the outcome to the pacer (a `$batch`: its inner statuses count)
    pub(super) paced_by_caller: bool,
    /// which of the tenant's in-flight pools admits it
    pub(super) pool: Pool,
    /// the Graph requests it stands for (a `$batch`: its inner requests), counted against the
    /// application's request quota
    pub(super) weight: usize,
    /// what it costs in resource units (a `$batch`: the sum of its inner requests'); `None`:
    /// priced from its method and URL ([`resource_units`])
    pub(super) units: Option<usize>,
    /// resetPassword or an operation poll: held to the tenant's authentication-method limit
    pub(super) auth_method: bool,
}

/// How far below Graph's percentage the client's own log may be and still explain it (Graph
/// truncates to hundredths and counts a request when it reaches it, the client when it is sent).
const EXPLAINED_BY_OWN_LOG: f64 = 0.05;

/// Pages in flight at most while reading partitions (the pool `Pool::ListPages`).
pub const READ_CONCURRENCY: usize = 16;

/// The in-flight pools of a tenant. Each has its own slots and adapts to 429s on its own, so
/// that one kind of request never holds the slots another needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pool {
    /// writes, `$batch` envelopes and single reads: `--concurrency` slots, writes paced to the
    /// write quotas
    Requests,
    /// pages of a partitioned listing
    ListPages,
    /// polls of resetPassword operations: a poll is a one-object read that would otherwise hold
    /// a slot a paced write is waiting for
    Polls,
}

/// What a request's first attempt was admitted with beforehand: an in-flight slot, its resource
/// units and requests (the tenant's and the application's logs), and the application's ticket of
/// its writes when the caller reserved them (a `$batch` envelope, [`GraphClient::admit_write`]).
/// The quotas that are stamped again at the answer are taken first, the tenant's write budget
/// (stamped once) last, right before the request goes out.
pub(super) struct Admitted {
    pub(super) permit: OwnedSemaphorePermit,
    /// the tenant's and the application's tickets ([`GraphClient::admit_units`])
    pub(super) units: (AppTicket, AppTicket),
    /// the application's ticket of the writes reserved (empty when there are none)
    pub(super) writes: AppTicket,
}

/// A single write admitted by its tenant's pacer ([`GraphClient::admit_write`]): the in-flight
/// slot is held until the write is sent (or the slot is dropped, unused).
pub struct WriteSlot {
    admitted: Admitted,
    /// admitted by the authentication-method limit too ([`GraphClient::admit_reset_password`])
    rated: bool,
}

/// A complete HTTP response.
pub(super) struct Resp {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
    pub(super) request_id: Option<String>,
}

impl GraphClient {
    /// The tenant's pool of requests, writes and `$batch` envelopes ([`Pool::Requests`]).
    pub(super) fn pacer(&self, tenant: &str) -> Arc<Pacer> {
        self.pool_pacer(tenant, Pool::Requests)
    }

    /// The pacer of one of the tenant's in-flight pools, made on first use: `--concurrency`
    /// slots and the write quotas for requests; [`READ_CONCURRENCY`] slots for partition pages;
    /// `--concurrency` slots and no write quota (a poll is a read) for operation polls.
    pub(super) fn pool_pacer(&self, tenant: &str, pool: Pool) -> Arc<Pacer> {
        let key = match pool {
            Pool::Requests => tenant.to_owned(),
            Pool::ListPages => format!("{tenant}\u{0}read"),
            Pool::Polls => format!("{tenant}\u{0}poll"),
        };
        let options = &self.inner.options;
        let mut pacers = self.inner.pacers.lock().expect("pacer map poisoned");
        pacers
            .entry(key)
            .or_insert_with(|| {
                Arc::new(match pool {
                    Pool::Requests => {
                        Pacer::with_write_quotas(options.concurrency, &options.write_quotas)
                    }
                    Pool::ListPages => Pacer::new(READ_CONCURRENCY),
                    Pool::Polls => Pacer::with_write_quotas(options.concurrency, &[]),
                })
            })
            .clone()
    }

    /// The tenant's resource units per app + tenant: a log of what its requests cost
    /// ([`resource_units`]), kept to the quota of the tenant's size once known
    /// ([`Self::note_tenant_users`]), the smallest until then.
    pub(super) fn unit_pacer(&self, tenant: &str) -> Arc<AppPacer> {
        let quotas = &self.inner.options.tenant_unit_quotas;
        let mut pacers = self
            .inner
            .tenant_units
            .lock()
            .expect("unit pacers poisoned");
        pacers
            .entry(tenant.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(AppPacer::of_units(tenant_unit_quota(quotas, None))))
            .clone()
    }

    /// The tenant has `users` users: its resource-unit quota is the one of its size.
    pub(super) fn note_tenant_users(&self, tenant: &str, users: usize) {
        let quota = tenant_unit_quota(&self.inner.options.tenant_unit_quotas, Some(users));
        self.unit_pacer(tenant).set_units_quota(quota);
    }

    /// The `x-ms-throttle-limit-percentage` of an answer (`pct`, with its `x-ms-throttle-scope`
    /// when Graph sent one) if it is a reason to slow down: not when it is about a limit the
    /// client keeps itself ([`is_budgeted_scope`]), and not when the client's own logs of the
    /// limits it may be about are as full as it says. Graph documents the scope on throttled
    /// answers only, so the percentage of a successful answer usually comes alone: it is then
    /// put down to the fullest of the tenant's write quotas, its resource units and the
    /// application's quotas. A window pwdrift fills itself is spent to the end; a percentage
    /// above what pwdrift has sent (another process of the same application, a cost priced
    /// higher than the table says) slows it down.
    pub(super) fn percentage_to_heed(
        &self,
        tenant: &str,
        pct: Option<&str>,
        scope: Option<&str>,
    ) -> Option<f64> {
        let pct = throttle_percentage(pct, scope)?;
        let own = match scope_and_limit(scope) {
            ("", _) => self
                .pacer(tenant)
                .write_usage()
                .max(self.unit_pacer(tenant).usage())
                .max(self.inner.app.usage()),
            (scope, limit)
                if scope.eq_ignore_ascii_case("Tenant_Application")
                    && limit.to_ascii_lowercase().starts_with("read") =>
            {
                self.unit_pacer(tenant).usage()
            }
            _ => 0.0,
        };
        (own + EXPLAINED_BY_OWN_LOG < pct).then_some(pct)
    }

    /// The tenant's pacer of resetPassword and operation polls: no in-flight limit of its own,
    /// its budget the authentication-method quota (5 per 10 s by default).
    pub(super) fn method_pacer(&self, tenant: &str) -> Arc<Pacer> {
        let options = &self.inner.options;
        let mut pacers = self.inner.pacers.lock().expect("pacer map poisoned");
        pacers
            .entry(format!("{tenant}\u{0}authentication"))
            .or_insert_with(|| {
                Arc::new(Pacer::with_write_quotas(
                    usize::MAX >> 4,
                    &[options.auth_method_quota],
                ))
            })
            .clone()
    }

    /// How many resetPassword operations of `tenant` may be in progress at once (sent and not yet
    /// polled to their end): as many as the authentication-method quota allows per window, so
    /// that a reset's polls get their turns before further resets take them all and every
    /// wait for a turn stays within a window or two (a request's deadline covers its waits).
    pub fn reset_gate(&self, tenant: &str) -> Arc<tokio::sync::Semaphore> {
        let mut gates = self.inner.reset_gates.lock().expect("reset gates poisoned");
        gates
            .entry(tenant.to_owned())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Semaphore::new(
                    self.inner.options.auth_method_quota.writes.max(1),
                ))
            })
            .clone()
    }

    /// Waits for the turn of one operation poll within the tenant's authentication-method limit
    /// (before the poll's deadline starts: see [`Self::execute_rated`]).
    pub(super) async fn admit_method_request(&self, tenant: &str) {
        self.method_pacer(tenant).admit_writes_up_to(1).await;
    }

    /// [`Self::execute`] of a request whose first turn within the authentication-method limit was
    /// taken by [`Self::admit_method_request`].
    pub(super) async fn execute_rated(&self, tenant: &str, req: &Req) -> Result<Resp, GraphError> {
        self.within_deadline(req, self.attempts_rated(tenant, req, None, true))
            .await
    }

    /// Sends one request through pacing, auth and the retry policy, and returns the final
    /// response whatever its status (after retries). Errors are transport/auth failures and
    /// exhausted retries.
    pub(super) async fn execute(&self, tenant: &str, req: &Req) -> Result<Resp, GraphError> {
        self.execute_admitted(tenant, req, None).await
    }

    /// [`Self::execute`] where the first attempt may use a permit the caller already holds
    /// (the `$batch` workers admit before they decide how many requests to send).
    ///
    /// The whole of it (admission, attempts, waits between them) is bounded by the one deadline
    /// `request_deadline`; when it passes, the request is abandoned (a write may have run:
    /// `maybe_applied` for a non-idempotent request).
    pub(super) async fn execute_admitted(
        &self,
        tenant: &str,
        req: &Req,
        admitted: Option<Admitted>,
    ) -> Result<Resp, GraphError> {
        self.within_deadline(req, self.attempts_rated(tenant, req, admitted, false))
            .await
    }

    /// [`Self::execute`] of a single write whose first attempt may have been admitted beforehand
    /// by [`GraphClient::admit_write`] (an in-flight slot and room in the write quotas): then it
    /// is sent at once. Retries (after a 429 or 503) are admitted again as usual.
    pub(super) async fn execute_write(
        &self,
        tenant: &str,
        req: &Req,
        slot: Option<WriteSlot>,
    ) -> Result<Resp, GraphError> {
        let rated = slot.as_ref().is_some_and(|s| s.rated);
        let attempts = self.attempts_rated(tenant, req, slot.map(|s| s.admitted), rated);
        self.within_deadline(req, attempts).await
    }

    async fn within_deadline(
        &self,
        req: &Req,
        attempts: impl std::future::Future<Output = Result<Resp, GraphError>>,
    ) -> Result<Resp, GraphError> {
        let deadline = self.inner.options.request_deadline;
        match tokio::time::timeout(deadline, attempts).await {
            Ok(r) => r,
            Err(_) => {
                bump(&self.inner.counters.transport_errors);
                Err(GraphError::Transport {
                    attempts: 0,
                    message: format!(
                        "no complete answer to {} {} within the request deadline of {} s \
                         (--request-timeout)",
                        req.method,
                        loggable_url(&req.url),
                        deadline.as_secs_f64()
                    ),
                    maybe_applied: !req.idempotent,
                })
            }
        }
    }

    /// Admits one single write to `tenant` before it is built and sent: waits for an in-flight
    /// slot and for room in the write quotas, exactly as [`Self::execute`] would for its first
    /// attempt. A caller that must do something durable right before a write goes out (record
    /// a password in the write-ahead journal) admits first, then records, then sends with the
    /// returned slot, so that nothing recorded waits behind the quota unsent.
    pub async fn admit_write(&self, tenant: &str) -> WriteSlot {
        let pacer = self.pacer(tenant);
        let permit = pacer.admit().await;
        // a single write costs 1 resource unit
        let units = self.admit_units(tenant, 1, 1).await;
        let writes = self.admit_writes_with_app(&pacer, 1).await.1;
        WriteSlot {
            admitted: Admitted {
                permit,
                units,
                writes,
            },
            rated: false,
        }
    }

    /// [`Self::admit_write`] of a resetPassword: first its turn within the tenant's
    /// authentication-method limit (holding no in-flight slot while it waits), then the write's
    /// admission. Sent with [`GraphClient::reset_password_in`].
    pub async fn admit_reset_password(&self, tenant: &str) -> WriteSlot {
        self.method_pacer(tenant).admit_writes_up_to(1).await;
        let mut slot = self.admit_write(tenant).await;
        slot.rated = true;
        slot
    }

    /// `requests` requests costing `units` resource units admitted by the tenant's log of
    /// resource units and the application's quotas: their tickets, to stamp again at the answer.
    pub(super) async fn admit_units(
        &self,
        tenant: &str,
        requests: usize,
        units: usize,
    ) -> (AppTicket, AppTicket) {
        let of_tenant = self.unit_pacer(tenant).admit(0, units, 0).await;
        let of_app = self.inner.app.admit(requests, units, 0).await;
        (of_tenant, of_app)
    }

    /// The answer to a request admitted with these tickets arrived: Graph counted it by now.
    fn answered(
        &self,
        tenant: &str,
        (of_tenant, of_app): (AppTicket, AppTicket),
        writes: AppTicket,
    ) {
        self.unit_pacer(tenant).answered(of_tenant);
        self.inner.app.answered(of_app);
        self.inner.app.answered(writes);
    }

    /// Up to `n` writes admitted by the tenant's write budget and the application's write
    /// quota together: the application's quota is waited for first (without taking it), then
    /// the tenant's budget, then the application's is taken; when it filled up meanwhile, the
    /// tenant's reservation is given back and both are asked again. Neither log is stamped long
    /// before the writes go out. Returns how many were granted and the application's ticket.
    pub(super) async fn admit_writes_with_app(
        &self,
        pacer: &Pacer,
        n: usize,
    ) -> (usize, AppTicket) {
        if n == 0 {
            return (0, AppTicket::default());
        }
        loop {
            self.inner.app.until_writes_fit(n).await;
            let (granted, at) = pacer.admit_writes_at(n).await;
            match self.inner.app.try_admit(0, 0, granted) {
                Ok(ticket) => return (granted, ticket),
                Err(_) => pacer.give_back_writes(granted, at),
            }
        }
    }

    async fn attempts_rated(
        &self,
        tenant: &str,
        req: &Req,
        mut admitted: Option<Admitted>,
        mut rated: bool,
    ) -> Result<Resp, GraphError> {
        let inner = &self.inner;
        let pacer = self.pool_pacer(tenant, req.pool);
        let units = req.units.unwrap_or_else(|| {
            resource_units(req.method.as_str(), req.url.path(), req.url.query())
        });
        let methods = req.auth_method.then(|| self.method_pacer(tenant));
        let mut attempt: u32 = 0;
        let mut waited = Duration::ZERO;
        let mut refreshed = false;
        loop {
            if let Some(methods) = &methods {
                if !rated {
                    // its turn within the authentication-method limit, before a slot is held
                    methods.admit_writes_up_to(1).await;
                }
            }
            rated = false;
            let Admitted {
                permit,
                units: unit_tickets,
                writes: write_ticket,
            } = match admitted.take() {
                Some(a) => a,
                None => {
                    let permit = pacer.admit().await;
                    // resource units and requests first (stamped again at the answer), the
                    // write budget last (stamped once), right before sending
                    let units = self.admit_units(tenant, req.weight, units).await;
                    // a single write (a `$batch` sender reserves its writes itself)
                    let writes = if req.method != Method::GET && !req.paced_by_caller {
                        self.admit_writes_with_app(&pacer, 1).await.1
                    } else {
                        AppTicket::default()
                    };
                    Admitted {
                        permit,
                        units,
                        writes,
                    }
                }
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
                    match read_capped(resp, inner.options.max_response_bytes).await {
                        Ok(body) => Ok((status, headers, body)),
                        Err(BodyError::TooLarge(n)) => {
                            return Err(GraphError::Decode {
                                what: loggable_url(&req.url),
                                message: format!(
                                    "the response body is larger than {n} bytes; refused"
                                ),
                            })
                        }
                        // the server answered, then the body broke: the request ran
                        Err(BodyError::Transport(e)) => Err((error_chain(e), true)),
                    }
                }
                Err(e) => {
                    let maybe_sent = !e.is_connect();
                    Err((error_chain(e), maybe_sent))
                }
            };
            drop(permit);
            // the latest instant Graph can have counted the request at
            self.answered(tenant, unit_tickets, write_ticket);
            attempt += 1;
            match outcome {
                Ok((status, headers, body)) => {
                    self.observe_date(header_str(&headers, "date").as_deref());
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
                    let scope = header_str(&headers, "x-ms-throttle-scope");
                    let blame = blame(scope.as_deref(), req.auth_method);
                    let pct = self.percentage_to_heed(
                        tenant,
                        header_str(&headers, "x-ms-throttle-limit-percentage").as_deref(),
                        scope.as_deref(),
                    );
                    if (throttled || !req.paced_by_caller)
                        && pacer.observe(pct, throttled && blame == Blame::Tenant)
                    {
                        bump(&inner.counters.slowdowns);
                    }
                    if status == 401 && !refreshed {
                        if !inner.tokens.invalidate(tenant, &token).await {
                            // a pre-acquired token: say what is wrong with it
                            let graph_said =
                                match error_from(status, &body, None, &loggable_url(&req.url)) {
                                    GraphError::Http { code, message, .. } if !code.is_empty() => {
                                        format!(" (401 {code}: {message})")
                                    }
                                    _ => " (401)".to_owned(),
                                };
                            return Err(GraphError::Auth(AuthError::AccessTokenRejected {
                                graph_said,
                                reason: crate::graph::auth::access_token_problem(
                                    token.expose_secret(),
                                    &inner.options.endpoints,
                                    chrono::Utc::now().timestamp(),
                                ),
                            }));
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
                        // every request held to the same limit waits it out, not only this one
                        match (blame, &methods) {
                            (Blame::Application, _) => inner.app.block_for(delay),
                            (Blame::AuthMethod, Some(methods)) => methods.block_for(delay),
                            _ => pacer.block_for(delay),
                        }
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
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        tenant: &str,
        url: Url,
    ) -> Result<T, GraphError> {
        self.get_json_with(tenant, url, Vec::new()).await
    }

    pub(super) async fn get_json_with<T: DeserializeOwned>(
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
            pool: Pool::Requests,
            weight: 1,
            units: None,
            auth_method: false,
        };
        let resp = self.execute(tenant, &req).await?;
        if !(200..300).contains(&resp.status) {
            return Err(error_from(resp.status, &resp.body, resp.request_id, &what));
        }
        decode(&resp.body, &what)
    }

    /// GETs every page of a collection, following `@odata.nextLink` until absent.
    pub(super) async fn get_paged<T: DeserializeOwned>(
        &self,
        tenant: &str,
        first: Url,
    ) -> Result<Vec<T>, GraphError> {
        self.get_paged_with(tenant, first, Vec::new()).await
    }

    pub(super) async fn get_paged_with<T: DeserializeOwned>(
        &self,
        tenant: &str,
        first: Url,
        headers: Vec<(&'static str, &'static str)>,
    ) -> Result<Vec<T>, GraphError> {
        let max_pages = self.inner.options.max_pages;
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut pages = 0usize;
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let what = url.path().to_owned();
            if !seen.insert(url.to_string()) {
                return Err(GraphError::Decode {
                    what,
                    message: "@odata.nextLink points to a page already read (a loop); stopped"
                        .into(),
                });
            }
            if pages == max_pages {
                return Err(GraphError::Decode {
                    what,
                    message: format!("more than {max_pages} pages in one listing; stopped"),
                });
            }
            pages += 1;
            let page: Page<T> = self.get_json_with(tenant, url, headers.clone()).await?;
            out.extend(page.value);
            if let Some(link) = page.next_link {
                next = Some(self.same_origin_url(&link)?);
            }
        }
        Ok(out)
    }
}

enum BodyError {
    TooLarge(usize),
    Transport(reqwest::Error),
}

/// Reads a response body chunk by chunk, refusing it as soon as it passes `max` bytes (whatever
/// `Content-Length` claims: an announced size above `max` is refused before reading).
async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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

pub(super) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `x-ms-throttle-limit-percentage`: a fraction (`0.8`); a value above 2 is read as percent.
pub(super) fn parse_percentage(v: &str) -> Option<f64> {
    let p: f64 = v.trim().parse().ok()?;
    if !p.is_finite() || p < 0.0 {
        return None;
    }
    Some(if p > 2.0 { p / 100.0 } else { p })
}

/// An `x-ms-throttle-limit-percentage` (`pct`) unless its `x-ms-throttle-scope` names a limit
/// the client keeps itself ([`is_budgeted_scope`]).
fn throttle_percentage(pct: Option<&str>, scope: Option<&str>) -> Option<f64> {
    let pct = parse_percentage(pct?)?;
    (!is_budgeted_scope(scope)).then_some(pct)
}

/// The `<Scope>` and `<Limit>` of an `x-ms-throttle-scope`
/// (`<Scope>/<Limit>/<ApplicationId>/<TenantId>`), trimmed; empty when absent.
fn scope_and_limit(scope: Option<&str>) -> (&str, &str) {
    let mut parts = scope.unwrap_or("").split('/').map(str::trim);
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

/// Whether an `x-ms-throttle-scope` (`<Scope>/<Limit>/<ApplicationId>/<TenantId>`) names a
/// limit the client keeps itself and sends within: a write quota (`Tenant_Application/Write`,
/// `Tenant/Write`, [`crate::graph::quota::WriteBudget`]), one of the application's quotas
/// across tenants (`Application/...`, [`crate::graph::retry::AppPacer`]) or the
/// authentication-method limit (`.../AuthenticationMethod/...`). A percentage about them is no
/// reason to slow down: at the quota's pace the window stays nearly full, and slowing to one
/// request a second would leave most of the quota unused. A percentage about the tenant's
/// resource units (`Tenant_Application/ReadWrite`) slows the client down when its own log of
/// them does not explain it ([`GraphClient::percentage_to_heed`]), and a 429 of any scope is
/// still honoured.
pub(super) fn is_budgeted_scope(scope: Option<&str>) -> bool {
    let (scope, limit) = scope_and_limit(scope);
    limit.eq_ignore_ascii_case("Write")
        || limit.eq_ignore_ascii_case("AuthenticationMethod")
        || scope.eq_ignore_ascii_case("Application")
}

/// Which requests a 429 holds back, by its `x-ms-throttle-scope`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Blame {
    /// the application across tenants (`Application/...`): every tenant of the process
    Application,
    /// resetPassword and operation polls of the tenant: a 429 of theirs that names no users'
    /// quota (`Tenant_Application/...`, `Tenant/...`), the scope absent included
    AuthMethod,
    /// the tenant's pool the request went through
    Tenant,
}

pub(super) fn blame(scope: Option<&str>, auth_method: bool) -> Blame {
    let (first, limit) = scope_and_limit(scope);
    if first.eq_ignore_ascii_case("Application") {
        Blame::Application
    } else if auth_method
        && !(limit.eq_ignore_ascii_case("Write") || limit.eq_ignore_ascii_case("ReadWrite"))
    {
        Blame::AuthMethod
    } else {
        Blame::Tenant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle_percentage(h: &HeaderMap) -> Option<f64> {
        super::throttle_percentage(
            header_str(h, "x-ms-throttle-limit-percentage").as_deref(),
            header_str(h, "x-ms-throttle-scope").as_deref(),
        )
    }

    #[test]
    fn write_quota_percentages_are_left_to_the_write_budget() {
        let mut h = HeaderMap::new();
        h.insert("x-ms-throttle-limit-percentage", "0.96".parse().unwrap());
        assert_eq!(throttle_percentage(&h), Some(0.96), "no scope: slow down");
        h.insert(
            "x-ms-throttle-scope",
            "Tenant_Application/ReadWrite/app/tenant".parse().unwrap(),
        );
        assert_eq!(
            throttle_percentage(&h),
            Some(0.96),
            "resource units: slow down"
        );
        for scope in [
            "Tenant_Application/Write/app/tenant",
            "Tenant/write/app/tenant",
        ] {
            h.insert("x-ms-throttle-scope", scope.parse().unwrap());
            assert_eq!(throttle_percentage(&h), None, "{scope}");
        }
    }

    #[test]
    fn a_429_blames_the_limit_its_scope_names() {
        assert_eq!(
            blame(Some("Application/Write/a/t"), false),
            Blame::Application
        );
        assert_eq!(
            blame(Some("Application/ReadWrite/a/t"), true),
            Blame::Application
        );
        assert_eq!(
            blame(Some("Tenant_Application/AuthenticationMethod/a/t"), true),
            Blame::AuthMethod
        );
        assert_eq!(blame(None, true), Blame::AuthMethod);
        assert_eq!(
            blame(Some("Tenant_Application/Write/a/t"), true),
            Blame::Tenant
        );
        assert_eq!(blame(None, false), Blame::Tenant);
        for scope in [
            "Application/ReadWrite/a/t",
            "Tenant_Application/AuthenticationMethod/a/t",
        ] {
            assert!(is_budgeted_scope(Some(scope)), "{scope}");
        }
        assert!(!is_budgeted_scope(Some("Tenant_Application/ReadWrite/a/t")));
    }

    #[test]
    fn percentage_parsing() {
        assert_eq!(parse_percentage("0.85"), Some(0.85));
        assert_eq!(parse_percentage("85"), Some(0.85));
        assert_eq!(parse_percentage("x"), None);
        assert_eq!(parse_percentage("-1"), None);
    }
}
