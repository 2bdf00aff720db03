//! Retry policy and per-tenant pacing of the Graph client: which responses are retried, how long
//! to wait (`Retry-After` or exponential backoff with full jitter, bounded), and how a tenant's
//! request rate adapts to `x-ms-throttle-limit-percentage` and to 429s.
//!
//! # Why hand-written and not `backon`
//!
//! `backon` drives one future to completion. The `$batch` case is not that: one envelope carries
//! 20 inner requests, some of which come back 429 with their own `Retry-After`, and only those
//! are re-sent, re-batched, after the longest of their delays. The schedule is also not backon's:
//! its jitter adds a random `(0, min_delay)` on top of the exponential delay, while pwdrift uses
//! "full jitter" (uniform in `[0, min(cap, base * 2^n)]`), which is what spreads many concurrent
//! writers best. With one policy ([`RetryPolicy`]) used by the single-request loop, the batch
//! loop and the token endpoint (with its own bounds, [`RetryPolicy::token_endpoint`]), the
//! behaviour is one thing to read and test.
//!
//! # Pacing
//!
//! [`Pacer`] is per tenant (Graph's limits are per app + tenant). It holds
//! - a "blocked until" instant: after any 429 every request for that tenant waits out the
//!   `Retry-After` before being sent, so that 20 concurrent writers do not each collect a 429;
//! - an adaptive in-flight limit: a semaphore of `concurrency` permits from which permits are
//!   withdrawn, AIMD-style: halved once per throttling event (the 429s of one burst count once),
//!   grown by one per round of calm responses (as many as the limit), and capped while Graph
//!   reports `x-ms-throttle-limit-percentage >= 0.8` (half at 0.8, one at 0.95) for a
//!   resource-unit limit (a percentage about a write quota is left to the write budget below,
//!   which already keeps the writes within it);
//! - an adaptive `$batch` size: 20 requests per envelope, halved after throttling and grown
//!   back by 1 per calm envelope, so that a nearly spent write quota is not hit by 20 writes at
//!   once;
//! - a spacing between request starts while the percentage is high (0 below 0.8, rising to 1 s at
//!   1.0), so that a large apply runs near the quota instead of into it;
//! - a write budget ([`WriteBudget`]): the documented write quotas kept as sliding logs on the
//!   client side, so that a write is sent only when Graph will have room for it (zero 429s by
//!   design when no one else writes); the 429 handling above still covers writes by other
//!   applications sharing the per-tenant quota.
//!
//! # Write quotas
//!
//! graph-facts: per app + tenant, 3,000 writes per 2 min 30 s; per tenant (all apps), 18,000
//! writes per 5 min ([`DOCUMENTED_WRITE_QUOTAS`]). Graph states each as "N per window", and the
//! sandbox enforces them as exact sliding logs, so the client keeps the same: a write may start
//! when fewer than N writes were started in the last window. A token bucket (rate N/window, burst
//! B) would either admit more than N in some window (B > 0 on top of the rate) or make the first
//! N writes wait for the rate (B = 0: 3,500 writes in 175 s, where the quota allows 150 s). The
//! window is lengthened by a margin ([`WriteQuota::margin`]) because the client stamps a write
//! when it sends it and Graph when it arrives: latency jitter must not make write N+1 land
//! inside the window of write 1.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use rand::Rng as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Statuses worth another attempt. 429 and 503 say the request was not processed: always
/// retried. 500, 502 and 504 leave it open whether it ran: retried only for idempotent requests
/// (GET, PATCH). A lost response inside a `$batch` surfaces as an inner 500, so without this a
/// dropped connection between Graph's front end and the workload would fail a PATCH that is safe to
/// repeat. Other 4xx are never retried.
pub fn is_retryable_status(status: u16, idempotent: bool) -> bool {
    match status {
        429 | 503 => true,
        500 | 502 | 504 => idempotent,
        _ => false,
    }
}

/// Parses `Retry-After`: delta-seconds (possibly fractional) or an HTTP-date.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let v = value?.trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(86_400.0)));
        }
        return None;
    }
    let date = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Full jitter: uniform in `[0, min(cap, base * 2^(attempt-1))]`.
pub fn full_jitter(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = backoff_ceiling(attempt, base, cap);
    if ceiling.is_zero() {
        return ceiling;
    }
    let nanos = rand::rng().random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64);
    Duration::from_nanos(nanos)
}

/// The upper bound of the jittered delay before retry number `attempt` (1-based).
pub fn backoff_ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    base.checked_mul(1u32 << exp).unwrap_or(cap).min(cap)
}

/// When and how long to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// retries after the first attempt
    pub max_retries: u32,
    /// first backoff ceiling
    pub base_delay: Duration,
    /// cap of one exponential backoff delay
    pub max_backoff: Duration,
    /// cap of a server-given `Retry-After` (a larger one is an error, not a hang)
    pub max_retry_after: Duration,
    /// give up when the time spent waiting for one request would exceed this
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 8,
            base_delay: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            max_elapsed: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based): the server's `Retry-After` when given
    /// (capped at `max_retry_after`), else full-jitter exponential backoff.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(ra) => ra.min(self.max_retry_after),
            None => full_jitter(attempt, self.base_delay, self.max_backoff),
        }
    }

    /// Whether retry number `attempt` (1-based) may happen after `waited` so far and a next wait of
    /// `next`.
    pub fn allows(&self, attempt: u32, waited: Duration, next: Duration) -> bool {
        attempt <= self.max_retries && waited + next <= self.max_elapsed
    }

    /// [`Self::delay`] and [`Self::allows`] together: the wait before retry number `attempt`
    /// (1-based), or `None` when the policy says to stop.
    pub fn next_delay(
        &self,
        attempt: u32,
        waited: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let delay = self.delay(attempt, retry_after);
        self.allows(attempt, waited, delay).then_some(delay)
    }

    /// The token endpoint's policy: 4 retries, a 200 ms first backoff ceiling capped at 5 s, a
    /// `Retry-After` honoured up to 30 s. The time budget (4 × 30 s) never binds before the
    /// retry count does.
    pub fn token_endpoint() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(4 * 30),
        }
    }
}

/// One "N writes per window" quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteQuota {
    pub writes: usize,
    pub window: Duration,
}

impl WriteQuota {
    /// Added to the window: a quarter of a percent of it (375 ms of Graph's 150 s), at least
    /// 100 ms. It covers the time from a write's reservation to its arrival at Graph, where the
    /// quota counts it: the slot is taken before the reservation, so what is left is building
    /// the request and the network (a new TLS connection at most).
    pub fn margin(&self) -> Duration {
        (self.window / 400).max(Duration::from_millis(100))
    }

    /// The quota with its window and count divided by `k` (the sandbox's `--throttle scaled:K`;
    /// count rounded up, at least 1).
    pub fn scaled(self, k: u32) -> Self {
        let k = k.max(1);
        WriteQuota {
            writes: self.writes.div_ceil(k as usize).max(1),
            window: self.window / k,
        }
    }
}

/// Microsoft Entra's documented write quotas: per app + tenant, then per tenant (all apps).
pub const DOCUMENTED_WRITE_QUOTAS: [WriteQuota; 2] = [
    WriteQuota {
        writes: 3_000,
        window: Duration::from_secs(150),
    },
    WriteQuota {
        writes: 18_000,
        window: Duration::from_secs(300),
    },
];

/// Client-side sliding logs of the writes started, one per quota (see "Write quotas" above).
/// Pure: the caller passes the clock, so the tests run on a fake one.
#[derive(Debug)]
pub struct WriteBudget {
    logs: Vec<(WriteQuota, std::collections::VecDeque<Instant>)>,
}

impl WriteBudget {
    pub fn new(quotas: &[WriteQuota]) -> Self {
        WriteBudget {
            logs: quotas
                .iter()
                .filter(|q| q.writes > 0)
                .map(|q| (*q, std::collections::VecDeque::new()))
                .collect(),
        }
    }

    /// Reserves up to `n` writes at the earliest instant, not before `now`, at which at least
    /// one fits; as many as fit then (at most `n`) are recorded. Returns the instant and how
    /// many were granted (at least 1 when `n > 0`). A `$batch` sender takes only as many writes
    /// as were granted, so that envelopes never wait for room a smaller envelope could use.
    pub fn reserve_up_to(&mut self, n: usize, now: Instant) -> (Instant, usize) {
        if n == 0 || self.logs.is_empty() {
            return (now, n);
        }
        let mut at = self.not_before(now);
        for (q, log) in &self.logs {
            let excess = (log.len() + 1).saturating_sub(q.writes);
            if excess > 0 {
                at = at.max(log[excess - 1] + q.window + q.margin());
            }
        }
        let room = self
            .logs
            .iter()
            .map(|(q, log)| {
                let horizon = q.window + q.margin();
                let gone = log.iter().take_while(|t| **t + horizon <= at).count();
                q.writes - (log.len() - gone)
            })
            .min()
            .unwrap_or(n);
        let granted = n.min(room).max(1);
        (self.reserve(granted, at), granted)
    }

    /// Gives back `n` writes reserved at `at` (by [`WriteBudget::reserve`] or
    /// [`WriteBudget::reserve_up_to`]) that were not sent.
    pub fn release(&mut self, n: usize, at: Instant) {
        for (_, log) in &mut self.logs {
            // entries are sorted; those of one reservation are equal and contiguous
            let end = log.partition_point(|t| *t <= at);
            let start = log.partition_point(|t| *t < at);
            let k = n.min(end - start);
            log.drain(end - k..end);
        }
    }

    /// Reserves `n` writes (capped at the smallest quota) at the earliest instant, not before
    /// `now`, at which every log has room for them, records them at that instant and returns it.
    /// Reservations are made in call order, so concurrent writers queue fairly.
    pub fn reserve(&mut self, n: usize, now: Instant) -> Instant {
        let n = self
            .logs
            .iter()
            .map(|(q, _)| q.writes)
            .min()
            .map_or(n, |m| n.min(m));
        if n == 0 {
            return now;
        }
        let mut at = self.not_before(now);
        for (q, log) in &self.logs {
            // the n-th oldest entry that must leave: with len entries and room for q.writes,
            // entries [0, len + n - q.writes) must be out of the window by `at`
            let excess = (log.len() + n).saturating_sub(q.writes);
            if excess > 0 {
                let leaves = log[excess - 1] + q.window + q.margin();
                at = at.max(leaves);
            }
        }
        for (q, log) in &mut self.logs {
            let horizon = q.window + q.margin();
            while log.front().is_some_and(|t| *t + horizon <= at) {
                log.pop_front();
            }
            // reservations are monotonic in time (see `not_before`): the log stays sorted
            log.extend(std::iter::repeat_n(at, n));
        }
        at
    }

    /// The earliest instant a new reservation may take: `now`, but never before the latest
    /// reservation already made. Reservations are first come, first served in time, and they
    /// must be: a reservation drops from the logs whatever has left the window by its instant,
    /// so writes reserved earlier than an existing reservation (writes given back during a 429
    /// block and reserved again when it ends, while others wait for an instant after it) would
    /// be counted against a log that no longer holds what goes out before them.
    fn not_before(&self, now: Instant) -> Instant {
        self.logs
            .iter()
            .filter_map(|(_, log)| log.back().copied())
            .fold(now, Instant::max)
    }
}

/// Graph's limit of requests in one `$batch`.
pub const MAX_BATCH_SIZE: usize = 20;

/// Per-tenant pacing state, see the module documentation.
#[derive(Debug)]
pub struct Pacer {
    semaphore: std::sync::Arc<Semaphore>,
    concurrency: usize,
    state: Mutex<PaceState>,
    writes: Mutex<WriteBudget>,
}

#[derive(Debug)]
struct PaceState {
    blocked_until: Option<Instant>,
    next_start: Instant,
    spacing: Duration,
    withheld: Vec<OwnedSemaphorePermit>,
    /// additive-increase / multiplicative-decrease limit: halved by a 429, +1 per calm response
    aimd_limit: usize,
    /// the in-flight limit last decided (withheld permits catch up with it)
    target: usize,
    /// requests per `$batch` envelope: halved by throttling, +1 per calm envelope, up to 20
    batch_size: usize,
    /// calm responses since the in-flight limit last grew
    calm: usize,
}

impl Pacer {
    /// A pacer allowing `concurrency` requests in flight, writes within the documented quotas.
    pub fn new(concurrency: usize) -> Self {
        Self::with_write_quotas(concurrency, &DOCUMENTED_WRITE_QUOTAS)
    }

    /// A pacer allowing `concurrency` requests in flight and writes within `quotas`.
    pub fn with_write_quotas(concurrency: usize, quotas: &[WriteQuota]) -> Self {
        let concurrency = concurrency.max(1);
        Pacer {
            writes: Mutex::new(WriteBudget::new(quotas)),
            semaphore: std::sync::Arc::new(Semaphore::new(concurrency)),
            concurrency,
            state: Mutex::new(PaceState {
                blocked_until: None,
                next_start: Instant::now(),
                spacing: Duration::ZERO,
                withheld: Vec::new(),
                aimd_limit: concurrency,
                target: concurrency,
                batch_size: MAX_BATCH_SIZE,
                calm: 0,
            }),
        }
    }

    /// Waits until a request may start: a free in-flight slot, past any 429 block, past the
    /// spacing slot. The returned permit is held for the duration of the request.
    pub async fn admit(&self) -> OwnedSemaphorePermit {
        loop {
            // Wait out a 429 block before taking an in-flight slot, so that slots are free
            // while blocked and a slowdown decided meanwhile can withdraw them.
            if let Some(t) = self.blocked_until() {
                tokio::time::sleep_until(t).await;
                continue;
            }
            let permit = self
                .semaphore
                .clone()
                .acquire_owned()
                .await
                .expect("pacer semaphore is never closed");
            let start = {
                let mut st = self.state.lock().expect("pacer poisoned");
                let now = Instant::now();
                if st.blocked_until.is_some_and(|b| b > now) {
                    // blocked while we waited for the slot: give it back and wait again
                    None
                } else {
                    let start = st.next_start.max(now);
                    st.next_start = start + st.spacing;
                    Some(start)
                }
            };
            let Some(start) = start else {
                drop(permit);
                continue;
            };
            if start > Instant::now() {
                tokio::time::sleep_until(start).await;
                if self.blocked_until().is_some() {
                    drop(permit);
                    continue;
                }
            }
            return permit;
        }
    }

    /// Waits until at least one of `n` writes fits the write quotas and returns how many do (at
    /// most `n`, at least 1 when `n > 0`); they are counted as started then. The caller sends
    /// only that many writes now (a `$batch` puts the rest back in its queue).
    pub async fn admit_writes_up_to(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        loop {
            // A 429 block first: budget reserved during it would go to writes that cannot be
            // sent.
            while let Some(t) = self.blocked_until() {
                tokio::time::sleep_until(t).await;
            }
            let (at, granted) = self
                .writes
                .lock()
                .expect("write budget poisoned")
                .reserve_up_to(n, Instant::now());
            if at > Instant::now() {
                tracing::debug!(
                    writes = granted,
                    wait_ms = (at - Instant::now()).as_millis() as u64,
                    "pacing writes to the quota"
                );
                tokio::time::sleep_until(at).await;
            }
            // A 429 that came while we waited (the quota is shared with other applications,
            // which the budget cannot see) holds these writes back too, instead of sending them
            // into a quota Graph just said is full; their reservation is given back and made
            // again after the block, so that the log keeps the instants writes are really sent.
            if self.blocked_until().is_none() {
                return granted;
            }
            self.writes
                .lock()
                .expect("write budget poisoned")
                .release(granted, at);
        }
    }

    /// The end of the current 429 block, if one is in force.
    fn blocked_until(&self) -> Option<Instant> {
        let st = self.state.lock().expect("pacer poisoned");
        st.blocked_until.filter(|b| *b > Instant::now())
    }

    /// Blocks the tenant for `retry_after` (after a 429).
    pub fn block_for(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut st = self.state.lock().expect("pacer poisoned");
        if st.blocked_until.is_none_or(|b| b < until) {
            st.blocked_until = Some(until);
        }
    }

    /// Adapts to a response: its `x-ms-throttle-limit-percentage` (`None`: header absent, which
    /// Graph does below 0.8) and whether it was throttled (a 429, or a `$batch` with inner
    /// 429s). A 429 halves the in-flight limit, each calm response (no 429, below 0.8) adds one
    /// back, up to `concurrency`; the percentage caps it further (see [`allowed_in_flight`]).
    /// Returns true when this response slowed the pace down.
    pub fn observe(&self, percentage: Option<f64>, throttled: bool) -> bool {
        let pct = percentage.unwrap_or(0.0).clamp(0.0, 2.0);
        let mut st = self.state.lock().expect("pacer poisoned");
        let (spacing_before, target_before, batch_before) = (st.spacing, st.target, st.batch_size);
        st.spacing = spacing_for(pct);
        // One decrease per throttling event: the responses that come back 429 together (all
        // sent before the first 429 was seen) halve the pace once, not once each.
        let already_blocked = st.blocked_until.is_some_and(|b| b > Instant::now());
        if throttled {
            if !already_blocked {
                st.aimd_limit = (st.aimd_limit / 2).max(1);
                st.batch_size = (st.batch_size / 2).max(1);
                st.calm = 0;
            }
        } else if pct < 0.8 {
            // congestion avoidance: +1 in flight per `limit` calm responses (one "round"),
            // +1 request per envelope per calm envelope
            st.calm += 1;
            if st.calm >= st.aimd_limit {
                st.calm = 0;
                st.aimd_limit = (st.aimd_limit + 1).min(self.concurrency);
            }
            st.batch_size = (st.batch_size + 1).min(MAX_BATCH_SIZE);
        }
        let target = allowed_in_flight(self.concurrency, pct).min(st.aimd_limit);
        st.target = target;
        let want_withheld = self.concurrency - target;
        while st.withheld.len() > want_withheld {
            drop(st.withheld.pop());
        }
        while st.withheld.len() < want_withheld {
            match self.semaphore.clone().try_acquire_owned() {
                Ok(p) => st.withheld.push(p),
                // all in use: withdraw on a later response
                Err(_) => break,
            }
        }
        st.spacing > spacing_before || target < target_before || st.batch_size < batch_before
    }

    /// How many requests the next `$batch` envelope may carry.
    pub fn batch_size(&self) -> usize {
        self.state.lock().expect("pacer poisoned").batch_size
    }

    /// The in-flight limit now in force. (for tests)
    #[cfg(test)]
    pub fn current_limit(&self) -> usize {
        let st = self.state.lock().expect("pacer poisoned");
        self.concurrency - st.withheld.len()
    }

    /// The spacing between request starts now in force. (for tests)
    #[cfg(test)]
    pub fn current_spacing(&self) -> Duration {
        self.state.lock().expect("pacer poisoned").spacing
    }
}

/// Spacing between request starts for a throttle percentage: none below 0.8, then linear up to
/// 1 s at 1.0 and beyond.
pub fn spacing_for(pct: f64) -> Duration {
    if pct < 0.8 {
        Duration::ZERO
    } else {
        let f = ((pct - 0.8) / 0.2).clamp(0.0, 1.0);
        Duration::from_millis(100 + (900.0 * f).round() as u64)
    }
}

/// In-flight limit for a throttle percentage: full below 0.8, half from 0.8, one from 0.95.
pub fn allowed_in_flight(concurrency: usize, pct: f64) -> usize {
    let c = concurrency.max(1);
    if pct >= 0.95 {
        1
    } else if pct >= 0.8 {
        c.div_ceil(2)
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server asking for a day's wait gets two minutes at most.
    #[test]
    fn retry_after_is_capped_by_default() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86_400))),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(Some(" 30 ")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(Some("0.5")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_retry_after(Some("")), None);
        assert_eq!(parse_retry_after(None), None);
        assert_eq!(parse_retry_after(Some("soon")), None);
        assert_eq!(parse_retry_after(Some("-3")), None);
        // an HTTP-date in the past means "now"
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let d = parse_retry_after(Some(&future)).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        assert_eq!(backoff_ceiling(1, base, cap), Duration::from_millis(100));
        assert_eq!(backoff_ceiling(2, base, cap), Duration::from_millis(200));
        assert_eq!(backoff_ceiling(4, base, cap), Duration::from_millis(800));
        assert_eq!(backoff_ceiling(5, base, cap), Duration::from_millis(1600));
        assert_eq!(backoff_ceiling(6, base, cap), cap);
        assert_eq!(backoff_ceiling(100, base, cap), cap);
        for attempt in 1..40 {
            let d = full_jitter(attempt, base, cap);
            assert!(d <= backoff_ceiling(attempt, base, cap), "{attempt}: {d:?}");
        }
        // full jitter really spreads: 200 draws at attempt 6 are not all equal
        let draws: std::collections::HashSet<_> =
            (0..200).map(|_| full_jitter(6, base, cap)).collect();
        assert!(draws.len() > 10);
    }

    #[test]
    fn policy_prefers_retry_after_and_caps_it() {
        let p = RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(100),
        };
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(7000))),
            Duration::from_secs(60)
        );
        assert!(p.delay(9, None) <= Duration::from_millis(50));
        assert!(p.allows(3, Duration::ZERO, Duration::from_secs(1)));
        assert!(!p.allows(4, Duration::ZERO, Duration::from_secs(1)));
        assert!(!p.allows(1, Duration::from_secs(99), Duration::from_secs(2)));
    }

    #[test]
    fn next_delay_is_delay_within_the_limits() {
        let p = RetryPolicy::token_endpoint();
        for attempt in 1..=4 {
            let d = p.next_delay(attempt, Duration::ZERO, None).unwrap();
            assert!(d <= backoff_ceiling(attempt, p.base_delay, p.max_backoff));
            assert!(d <= Duration::from_secs(5));
        }
        assert_eq!(
            p.next_delay(5, Duration::ZERO, None),
            None,
            "4 retries at most"
        );
        assert_eq!(
            p.next_delay(1, Duration::ZERO, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.next_delay(1, Duration::ZERO, Some(Duration::from_secs(600))),
            Some(Duration::from_secs(30)),
            "Retry-After capped at 30 s"
        );
        // the longest possible waits still fit the time budget: the count is the limit
        let mut waited = Duration::ZERO;
        for attempt in 1..=4 {
            let d = p
                .next_delay(attempt, waited, Some(Duration::from_secs(3600)))
                .unwrap();
            waited += d;
        }
        assert_eq!(waited, Duration::from_secs(120));
        let tight = RetryPolicy {
            max_elapsed: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        assert_eq!(
            tight.next_delay(1, Duration::ZERO, Some(Duration::from_secs(2))),
            None,
            "a wait beyond the time budget stops"
        );
    }

    #[test]
    fn retryable_statuses() {
        for s in [429, 503] {
            assert!(is_retryable_status(s, true) && is_retryable_status(s, false));
        }
        for s in [500, 502, 504] {
            assert!(is_retryable_status(s, true), "{s}");
            assert!(
                !is_retryable_status(s, false),
                "{s}: may have run, not idempotent"
            );
        }
        for s in [200, 202, 204, 400, 401, 403, 404, 409, 412, 424, 501] {
            assert!(!is_retryable_status(s, true), "{s}");
        }
    }

    #[test]
    fn pacing_tables() {
        assert_eq!(spacing_for(0.0), Duration::ZERO);
        assert_eq!(spacing_for(0.79), Duration::ZERO);
        assert_eq!(spacing_for(0.8), Duration::from_millis(100));
        assert_eq!(spacing_for(1.0), Duration::from_millis(1000));
        assert_eq!(spacing_for(1.5), Duration::from_millis(1000));
        assert_eq!(allowed_in_flight(8, 0.5), 8);
        assert_eq!(allowed_in_flight(8, 0.85), 4);
        assert_eq!(allowed_in_flight(5, 0.85), 3);
        assert_eq!(allowed_in_flight(8, 0.97), 1);
        assert_eq!(allowed_in_flight(0, 0.1), 1);
    }

    fn q(writes: usize, secs: u64) -> WriteQuota {
        WriteQuota {
            writes,
            window: Duration::from_secs(secs),
        }
    }

    /// The first N writes go at once; write N+1 waits until write 1 left the window (plus the
    /// margin); a batch reserves all its writes at one instant.
    #[test]
    fn write_budget_is_a_sliding_log() {
        let t0 = Instant::now();
        let quota = q(10, 100);
        let m = quota.margin();
        assert_eq!(m, Duration::from_millis(250));
        let mut b = WriteBudget::new(&[quota]);
        for i in 0..10 {
            assert_eq!(
                b.reserve(1, t0 + Duration::from_secs(i)),
                t0 + Duration::from_secs(i)
            );
        }
        // the 11th waits for the 1st (at t0) to leave
        assert_eq!(
            b.reserve(1, t0 + Duration::from_secs(10)),
            t0 + Duration::from_secs(100) + m
        );
        // 3 more: must wait for entries 2..4 (at t0+1..t0+3) to leave; the 3rd of them is t0+3
        assert_eq!(
            b.reserve(3, t0 + Duration::from_secs(10)),
            t0 + Duration::from_secs(103) + m
        );
    }

    /// Writes reserved but not sent (a 429 block began while they waited) are given back: the
    /// room is there again at once, and a reservation of other writes at the same instant is
    /// not touched.
    #[test]
    fn released_writes_free_their_room() {
        let t0 = Instant::now();
        let mut b = WriteBudget::new(&[q(10, 100)]);
        assert_eq!(b.reserve(4, t0), t0);
        let (at, granted) = b.reserve_up_to(6, t0 + Duration::from_secs(1));
        assert_eq!((at, granted), (t0 + Duration::from_secs(1), 6));
        b.release(6, at);
        let (again, granted) = b.reserve_up_to(6, t0 + Duration::from_secs(3));
        assert_eq!((again, granted), (t0 + Duration::from_secs(3), 6));
        // the 4 of t0 still count: the 11th write waits for them
        assert_eq!(
            b.reserve(1, t0 + Duration::from_secs(3)),
            t0 + Duration::from_secs(100) + q(10, 100).margin()
        );
    }

    /// A 429 block (another app filled the tenant's quota) releases the writes that waited for
    /// an instant inside it; they and the refused writes reserve again when it ends, while writes
    /// reserved for instants after the block keep theirs. Over any window, no more writes start
    /// than the quota allows. (The shape of `perf::writes_adapt_to_a_quota_other_apps_are_using`.)
    #[test]
    fn writes_reserved_again_after_a_block_stay_within_the_quota() {
        let quotas = [
            WriteQuota {
                writes: 30,
                window: Duration::from_millis(1500),
            },
            WriteQuota {
                writes: 180,
                window: Duration::from_millis(3000),
            },
        ];
        let mut b = WriteBudget::new(&quotas);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut sent: Vec<Instant> = Vec::new();
        // five envelopes reserve at once: 30 go now, the others wait for later instants
        let mut waiting = Vec::new();
        for n in [20, 10, 20, 10, 20, 10, 11] {
            let (at, granted) = b.reserve_up_to(n, t0);
            assert_eq!(granted, n);
            if at == t0 {
                sent.extend(std::iter::repeat_n(at, granted));
            } else {
                waiting.push((at, granted));
            }
        }
        // 25 of the first 30 are refused (429, Retry-After 3 s): blocked until 3,004 ms; the
        // writes waiting for an instant inside the block give their reservation back
        let block_end = ms(3004);
        let mut again = vec![25];
        waiting.retain(|&(at, n)| {
            if at < block_end {
                b.release(n, at);
                again.push(n);
                false
            } else {
                true
            }
        });
        for n in again {
            let mut left = n;
            while left > 0 {
                let (at, granted) = b.reserve_up_to(left, block_end);
                waiting.push((at, granted));
                left -= granted;
            }
        }
        for (at, n) in waiting {
            sent.extend(std::iter::repeat_n(at, n));
        }
        // the 5 admitted of the first 30 and everything after the block
        let refused = 25;
        sent.sort();
        sent.drain(5..5 + refused);
        assert_within_quotas(&sent, &quotas);
    }

    /// Over any window of each quota (sorted start instants, without margin), no more writes
    /// start than the quota allows.
    fn assert_within_quotas(starts: &[Instant], quotas: &[WriteQuota]) {
        for quota in quotas {
            for (k, t) in starts.iter().enumerate() {
                let within = starts[k..]
                    .iter()
                    .take_while(|s| **s < *t + quota.window)
                    .count();
                assert!(
                    within <= quota.writes,
                    "{within} writes within {:?} of the {k}th, over {} allowed",
                    quota.window,
                    quota.writes
                );
            }
        }
    }

    /// Over any window (without margin), no more writes start than the quota allows, for any
    /// mix of batch sizes (granted partially when only part fits); and the pace is the
    /// quota's, not slower.
    #[test]
    fn write_budget_never_exceeds_any_quota_and_keeps_up() {
        let quotas = [q(60, 10), q(1080, 60)];
        let mut b = WriteBudget::new(&quotas);
        let t0 = Instant::now();
        let mut now = t0;
        let mut starts = Vec::new();
        let sizes = [20usize, 7, 1, 13, 20, 3];
        let mut total = 0;
        let mut i = 0;
        while total < 1000 {
            let n = sizes[i % sizes.len()];
            i += 1;
            let (at, granted) = b.reserve_up_to(n, now);
            assert!(at >= now && granted >= 1 && granted <= n);
            starts.extend(std::iter::repeat_n(at, granted));
            total += granted;
            now = at;
        }
        assert_within_quotas(&starts, &quotas);
        // 1000 writes, 60 per 10 s binding (the second quota, like Graph's per-tenant one, is
        // looser): the quota minimum is 16 windows (the 961st write waits for the 1st to leave)
        let span = *starts.last().unwrap() - t0;
        assert!(span >= Duration::from_secs(16 * 10), "{span:?}");
        assert!(span <= Duration::from_secs(16 * 10) * 102 / 100, "{span:?}");
    }

    #[test]
    fn quotas_scale_like_the_sandbox() {
        let scaled = DOCUMENTED_WRITE_QUOTAS[0].scaled(60);
        assert_eq!(
            (scaled.writes, scaled.window),
            (50, Duration::from_millis(2500))
        );
        let scaled = DOCUMENTED_WRITE_QUOTAS[1].scaled(7);
        assert_eq!(scaled.writes, 2572, "rounded up");
    }

    #[tokio::test]
    async fn pacer_withdraws_and_returns_permits() {
        let p = Pacer::new(8);
        assert_eq!(p.current_limit(), 8);
        assert!(p.observe(Some(0.9), false));
        assert_eq!(p.current_limit(), 4);
        assert!(p.current_spacing() > Duration::ZERO);
        p.observe(Some(0.99), false);
        assert_eq!(p.current_limit(), 1);
        // the one remaining permit is usable
        let permit = p.admit().await;
        drop(permit);
        assert!(!p.observe(None, false));
        assert_eq!(p.current_limit(), 8);
        assert_eq!(p.current_spacing(), Duration::ZERO);
    }

    #[tokio::test]
    async fn pacer_halves_on_429_and_recovers_one_by_one() {
        let p = Pacer::new(8);
        assert!(p.observe(None, true));
        assert_eq!(p.current_limit(), 4);
        p.observe(None, true);
        p.observe(None, true);
        assert_eq!(p.current_limit(), 1);
        assert_eq!(p.batch_size(), 2, "20 halved three times (rounded down)");
        assert!(p.observe(None, true), "the batch size still shrinks");
        assert!(
            !p.observe(None, true),
            "cannot go below one in flight and one per batch"
        );
        assert_eq!(p.batch_size(), 1);
        assert_eq!(p.current_limit(), 1);
        // one more in flight per round of calm responses (a round = as many as the limit)
        for expected in 2..=8 {
            for _ in 0..expected - 1 {
                assert_eq!(p.current_limit(), expected - 1);
                assert!(!p.observe(None, false));
            }
            assert_eq!(p.current_limit(), expected);
        }
        assert_eq!(p.batch_size(), 20, "one more per calm envelope, at most 20");
        for _ in 0..8 {
            p.observe(None, false);
        }
        assert_eq!(p.current_limit(), 8, "never above concurrency");
        // a high percentage does not let the AIMD limit grow
        p.observe(None, true);
        assert_eq!(p.current_limit(), 4);
        p.observe(Some(0.85), false);
        assert_eq!(p.current_limit(), 4);
    }

    #[tokio::test]
    async fn pacer_decreases_once_per_throttling_event() {
        let p = Pacer::new(8);
        assert!(p.observe(None, true));
        p.block_for(Duration::from_secs(3600));
        // the other responses of the same burst: no further decrease, and no increase either
        for _ in 0..5 {
            assert!(!p.observe(None, true));
        }
        assert_eq!((p.current_limit(), p.batch_size()), (4, 10));
    }

    #[tokio::test]
    async fn pacer_cannot_withdraw_permits_in_use_until_later() {
        let p = Pacer::new(2);
        let a = p.admit().await;
        let b = p.admit().await;
        p.observe(Some(0.99), false);
        assert_eq!(
            p.current_limit(),
            2,
            "both permits in use: nothing to withdraw yet"
        );
        drop(a);
        drop(b);
        p.observe(Some(0.99), false);
        assert_eq!(p.current_limit(), 1);
    }

    /// Polls a future once: is it ready right away?
    async fn ready_now<F: std::future::Future>(fut: F) -> bool {
        let mut fut = Box::pin(fut);
        std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test]
    async fn pacer_block_holds_admission_back() {
        let p = Pacer::new(2);
        assert!(ready_now(p.admit()).await, "nothing blocks a fresh pacer");
        p.block_for(Duration::from_secs(3600));
        assert!(
            !ready_now(p.admit()).await,
            "a 429 block holds every request back"
        );
        let q = Pacer::new(2);
        q.observe(Some(1.0), false);
        assert!(ready_now(q.admit()).await, "the first request goes at once");
        assert!(
            !ready_now(q.admit()).await,
            "the next one waits for its spacing slot"
        );
    }
}
