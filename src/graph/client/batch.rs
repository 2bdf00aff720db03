//! The `$batch` work queue: [`GraphClient::run_batches`] sends any number of inner requests in
//! envelopes of up to 20 (fewer while the tenant is throttled), re-queues the inner requests that
//! came back retryable after their own `Retry-After`, and re-batches them with what is left.
//! Each inner request has its own retry budget; the envelope goes through the executor.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;

use super::error::{error_from, error_from_inner, inner_header};
use super::execute::{header_str, Admitted, Pool, Req};
use super::stats::bump;
use super::urls::loggable_relative;
use super::{GraphClient, GraphError};
use crate::graph::model::{BatchRequest, BatchRequestEnvelope, BatchResponse};
use crate::graph::quota::resource_units;
use crate::graph::retry::{is_retryable_status, parse_retry_after, AppTicket, Pacer};

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

impl GraphClient {
    /// Runs any number of `$batch` requests (ids unique across all of them) and returns the
    /// final response (or error) per request id.
    ///
    /// The requests go into one queue per call. `concurrency` workers take envelopes from it, as
    /// many requests as the tenant's pacer allows per envelope (20, halved after throttling, grown
    /// back by 1 per calm envelope), and send them through [`Self::execute`] (which holds the
    /// pacer's in-flight permit). Inner requests that come back retryable (429 and 503, and
    /// 500/502/504 for requests other than POST) go back to the front of the queue after the longest of their
    /// `Retry-After`s (a 429 blocks the whole tenant for that long) or a backoff, so they are
    /// re-batched with whatever is left; each request has its own retry budget.
    pub(crate) async fn run_batches(
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
            // resource units and requests first (stamped again at the answer), then the write
            // budget, right before the envelope goes out
            let requests: Vec<&BatchRequest> = batch.iter().map(|p| &p.req).collect();
            let units = self
                .admit_units(tenant, requests.len(), batch_units(&requests))
                .await;
            let (batch, writes) = self.within_write_quota(&pacer, work, batch).await;
            let admitted = Admitted {
                permit,
                units,
                writes,
            };
            self.batch_round(tenant, &pacer, work, batch, admitted)
                .await;
        }
    }

    /// Waits until the envelope's writes fit the write quotas (`Pacer::admit_writes_up_to`);
    /// when only some fit, the envelope is cut after the last write granted and the rest goes
    /// back to the front of the queue.
    async fn within_write_quota(
        &self,
        pacer: &Pacer,
        work: &BatchWork,
        mut batch: Vec<PendingRequest>,
    ) -> (Vec<PendingRequest>, AppTicket) {
        let is_write = |p: &PendingRequest| !p.req.method.eq_ignore_ascii_case("GET");
        let writes = batch.iter().filter(|p| is_write(p)).count();
        let (granted, ticket) = self.admit_writes_with_app(pacer, writes).await;
        if granted < writes {
            let mut seen = 0;
            let cut = batch
                .iter()
                .position(|p| {
                    seen += usize::from(is_write(p));
                    seen > granted
                })
                .unwrap_or(batch.len());
            let rest = batch.split_off(cut);
            let mut queue = work.queue.lock().expect("batch queue poisoned");
            for p in rest.into_iter().rev() {
                queue.push_front(p);
            }
            drop(queue);
            work.changed.notify_waiters();
        }
        (batch, ticket)
    }

    /// Sends one envelope and sorts its inner responses into final results and retries.
    async fn batch_round(
        &self,
        tenant: &str,
        pacer: &Pacer,
        work: &BatchWork,
        batch: Vec<PendingRequest>,
        admitted: Admitted,
    ) {
        let inner = &self.inner;
        let requests: Vec<BatchRequest> = batch.iter().map(|p| p.req.clone()).collect();
        let (responses, envelope_pct) = match self.send_envelope(tenant, &requests, admitted).await
        {
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
        let mut app_429 = false;
        let mut pct: Option<f64> = envelope_pct;
        for p in batch {
            let resp = by_id.remove(&p.req.id.to_ascii_lowercase());
            tracing::debug!(
                id = %p.req.id,
                method = %p.req.method,
                url = %loggable_relative(&p.req.url),
                status = resp.as_ref().map_or(0, |r| r.status),
                request_id = resp.as_ref().and_then(|r| inner_header(r, "request-id")).as_deref().unwrap_or("-"),
                retry_after = resp.as_ref().and_then(|r| inner_header(r, "retry-after")).as_deref().unwrap_or("-"),
                scope = resp.as_ref().and_then(|r| inner_header(r, "x-ms-throttle-scope")).as_deref().unwrap_or("-"),
                attempt = p.retries + 1,
                "graph batch item"
            );
            match resp {
                Some(resp) if is_retryable_status(resp.status, p.req.method != "POST") => {
                    if resp.status == 429 {
                        bump(&inner.counters.throttled);
                        any_429 = true;
                        app_429 |= inner_header(&resp, "x-ms-throttle-scope").is_some_and(|s| {
                            super::execute::blame(Some(&s), false)
                                == super::execute::Blame::Application
                        });
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
                    if let Some(v) = self.percentage_to_heed(
                        tenant,
                        inner_header(&resp, "x-ms-throttle-limit-percentage").as_deref(),
                        inner_header(&resp, "x-ms-throttle-scope").as_deref(),
                    ) {
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
        if app_429 {
            // every tenant of the process waits it out (the application's quota)
            inner.app.block_for(delay);
        } else if any_429 {
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
        admitted: Admitted,
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
            pool: Pool::Requests,
            weight: requests.len(),
            units: Some(batch_units(&requests.iter().collect::<Vec<_>>())),
            auth_method: false,
        };
        let resp = self.execute_admitted(tenant, &req, Some(admitted)).await?;
        let pct = self.percentage_to_heed(
            tenant,
            header_str(&resp.headers, "x-ms-throttle-limit-percentage").as_deref(),
            header_str(&resp.headers, "x-ms-throttle-scope").as_deref(),
        );
        match super::parse::batch_envelope(resp.status, &resp.body) {
            super::parse::BatchEnvelope::Responses(r) => Ok((r, pct)),
            super::parse::BatchEnvelope::Undecodable(message) => Err(GraphError::Decode {
                what: "$batch".into(),
                message,
            }),
            super::parse::BatchEnvelope::Failed if resp.status == 429 => {
                Err(GraphError::Throttled {
                    attempts: self.inner.policy.max_retries + 1,
                    request_id: resp.request_id,
                })
            }
            super::parse::BatchEnvelope::Failed => Err(error_from(
                resp.status,
                &resp.body,
                resp.request_id,
                "$batch",
            )),
        }
    }
}

/// What the inner requests of an envelope cost in resource units ([`resource_units`]).
fn batch_units(requests: &[&BatchRequest]) -> usize {
    requests
        .iter()
        .map(|r| {
            let (path, query) = match r.url.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (r.url.as_str(), None),
            };
            resource_units(&r.method, path, query)
        })
        .sum()
}
