//! Per-tenant pacing of the Graph client: how a tenant's request rate adapts to
//! `x-ms-throttle-limit-percentage` and to 429s.
//!
//! [`Pacer`] is per tenant (Graph's limits are per app + tenant). It holds
//! - a "blocked until" instant: after any 429 every request for that tenant waits out the
//!   `Retry-After` before being sent, so that 20 concurrent writers do not each collect a 429;
//! - an adaptive in-flight limit: a semaphore of `concurrency` permits from which permits are
//!   withdrawn, AIMD-style: halved once per throttling event (the 429s of one burst count once),
//!   grown by one per round of calm responses (as many as the limit), and capped while Graph
//!   reports `x-ms-throttle-limit-percentage >= 0.8` (half at 0.8, one at 0.95) for a
//!   resource-unit limit (a percentage about a write quota is left to the write budget,
//!   which already keeps the writes within it);
//! - an adaptive `$batch` size: 20 requests per envelope, halved after throttling and grown
//!   back by 1 per calm envelope, so that a nearly spent write quota is not hit by 20 writes at
//!   once;
//! - a spacing between request starts while the percentage is high (0 below 0.8, rising to 1 s at
//!   1.0), so that a large apply runs near the quota instead of into it;
//! - a write budget ([`WriteBudget`], in [`super::quota`]): the documented write quotas kept as
//!   sliding logs on the client side, so that a write is sent only when Graph will have room for
//!   it (zero 429s by design when no one else writes); the 429 handling still covers writes
//!   by other applications sharing the per-tenant quota.
//!
//! Two more limits sit beside the tenant's pools:
//! - resetPassword and its operation polls are admitted by a pacer of their own per tenant, whose
//!   budget is [`AUTH_METHOD_QUOTA`](super::quota::AUTH_METHOD_QUOTA) (5 per 10 s), used through
//!   [`Pacer::admit_writes_up_to`]; a 429 of theirs blocks that pacer, not the tenant's writes;
//! - [`AppPacer`]: the application's quotas across all tenants, one per application and process
//!   ([`app_pacer`]), checked when a request is sent; a 429 naming the `Application` scope blocks
//!   every tenant of the process. The same type keeps each tenant's resource units per app +
//!   tenant ([`AppPacer::of_units`]). Both stamp what they admitted again when the answer
//!   arrives ([`AppPacer::answered`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::quota::{AppLog, AppQuotas, LogEntry, WriteBudget, WriteQuota, DOCUMENTED_WRITE_QUOTAS};

/// The application's own quotas across all tenants, shared by every client of the process that
/// signs in as the same application ([`app_pacer`]).
#[derive(Debug)]
pub struct AppPacer {
    state: Mutex<AppState>,
}

#[derive(Debug)]
struct AppState {
    requests: AppLog,
    units: AppLog,
    writes: AppLog,
    blocked_until: Option<Instant>,
}

/// What an [`AppPacer`] took for one request: its entries, stamped again when the answer arrives
/// ([`AppPacer::answered`]).
#[derive(Debug, Default)]
#[must_use = "stamp it again when the answer arrives (AppPacer::answered)"]
pub struct AppTicket {
    entries: [Option<LogEntry>; 3],
}

impl AppPacer {
    pub fn new(quotas: AppQuotas) -> Self {
        AppPacer {
            state: Mutex::new(AppState {
                requests: AppLog::new(quotas.requests),
                units: AppLog::new(quotas.units),
                writes: AppLog::new(quotas.writes),
                blocked_until: None,
            }),
        }
    }

    /// A pacer of resource units only (`units` per window): the per app + tenant quota.
    pub fn of_units(units: WriteQuota) -> Self {
        let unlimited = WriteQuota {
            writes: usize::MAX >> 8,
            window: units.window,
        };
        AppPacer::new(AppQuotas {
            requests: unlimited,
            units,
            writes: unlimited,
        })
    }

    /// Keeps `units` as the resource-unit quota from now on (a tenant's size became known).
    pub fn set_units_quota(&self, units: WriteQuota) {
        self.state
            .lock()
            .expect("app pacer poisoned")
            .units
            .set_quota(units);
    }

    /// Takes `requests` requests costing `units` resource units and carrying `writes` writes if
    /// they fit the quotas now; else says when to ask again.
    pub fn try_admit(
        &self,
        requests: usize,
        units: usize,
        writes: usize,
    ) -> Result<AppTicket, Instant> {
        let mut st = self.state.lock().expect("app pacer poisoned");
        let now = Instant::now();
        if let Some(b) = st.blocked_until.filter(|b| *b > now) {
            return Err(b);
        }
        let at = [
            st.requests.wait_for(requests, now),
            st.units.wait_for(units, now),
            st.writes.wait_for(writes, now),
        ]
        .into_iter()
        .flatten()
        .max();
        match at {
            Some(at) => Err(at),
            None => Ok(AppTicket {
                entries: [
                    st.requests.take(requests, now),
                    st.units.take(units, now),
                    st.writes.take(writes, now),
                ],
            }),
        }
    }

    /// Waits until `requests` requests costing `units` resource units and carrying `writes`
    /// writes fit the quotas now, and takes them.
    pub async fn admit(&self, requests: usize, units: usize, writes: usize) -> AppTicket {
        loop {
            match self.try_admit(requests, units, writes) {
                Ok(ticket) => return ticket,
                Err(at) => {
                    tracing::debug!(
                        wait_ms = (at - Instant::now()).as_millis() as u64,
                        "pacing to the application's quotas"
                    );
                    tokio::time::sleep_until(at).await;
                }
            }
        }
    }

    /// Waits until `writes` writes would fit the quotas now, without taking them (a `$batch`
    /// sender asks before it reserves the tenant's write budget, so that the two are taken
    /// together rather than one long before the other).
    pub async fn until_writes_fit(&self, writes: usize) {
        loop {
            let wait = {
                let mut st = self.state.lock().expect("app pacer poisoned");
                let now = Instant::now();
                match st.blocked_until.filter(|b| *b > now) {
                    Some(b) => Some(b),
                    None => st.writes.wait_for(writes, now),
                }
            };
            match wait {
                None => return,
                Some(at) => tokio::time::sleep_until(at).await,
            }
        }
    }

    /// The answer to the request of `ticket` arrived: its entries count from now.
    pub fn answered(&self, ticket: AppTicket) {
        let now = Instant::now();
        let mut st = self.state.lock().expect("app pacer poisoned");
        let [requests, units, writes] = ticket.entries;
        if let Some(e) = requests {
            st.requests.restamp(e, now);
        }
        if let Some(e) = units {
            st.units.restamp(e, now);
        }
        if let Some(e) = writes {
            st.writes.restamp(e, now);
        }
    }

    /// The fullest of the quotas, as a fraction of it (as Graph's
    /// `x-ms-throttle-limit-percentage` would say).
    pub fn usage(&self) -> f64 {
        let now = Instant::now();
        let mut st = self.state.lock().expect("app pacer poisoned");
        st.requests
            .usage(now)
            .max(st.units.usage(now))
            .max(st.writes.usage(now))
    }

    /// After a 429 naming the `Application` scope: every tenant waits `retry_after`.
    pub fn block_for(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut st = self.state.lock().expect("app pacer poisoned");
        if st.blocked_until.is_none_or(|b| b < until) {
            st.blocked_until = Some(until);
        }
    }
}

/// The process's pacer of the application `app` (its client id at `origin`, the Graph host)
/// with `quotas`: every client of the process that signs in as that application shares it.
pub fn app_pacer(origin: &str, app: &str, quotas: AppQuotas) -> Arc<AppPacer> {
    type Key = (String, String, String);
    static PACERS: std::sync::OnceLock<Mutex<HashMap<Key, Arc<AppPacer>>>> =
        std::sync::OnceLock::new();
    let key = (origin.to_owned(), app.to_owned(), format!("{quotas:?}"));
    PACERS
        .get_or_init(Default::default)
        .lock()
        .expect("app pacers poisoned")
        .entry(key)
        .or_insert_with(|| Arc::new(AppPacer::new(quotas)))
        .clone()
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
        self.admit_writes_at(n).await.0
    }

    /// Gives back `n` writes admitted at `at` by [`Pacer::admit_writes_at`] and not sent.
    pub fn give_back_writes(&self, n: usize, at: Instant) {
        self.writes
            .lock()
            .expect("write budget poisoned")
            .release(n, at);
    }

    /// [`Pacer::admit_writes_up_to`], also saying the instant they were counted at (to give
    /// them back with [`Pacer::give_back_writes`]).
    pub async fn admit_writes_at(&self, n: usize) -> (usize, Instant) {
        if n == 0 {
            return (0, Instant::now());
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
                return (granted, at);
            }
            self.writes
                .lock()
                .expect("write budget poisoned")
                .release(granted, at);
        }
    }

    /// How full the tenant's write quotas are now (see [`WriteBudget::usage`]).
    pub fn write_usage(&self) -> f64 {
        self.writes
            .lock()
            .expect("write budget poisoned")
            .usage(Instant::now())
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

    /// The application's pacer lets a window's allowance go at once and holds the next back; a
    /// 429 of the `Application` scope holds every request back; one pacer per application.
    #[tokio::test]
    async fn app_pacer_spends_the_window_then_holds_back() {
        let q = |n| WriteQuota {
            writes: n,
            window: Duration::from_secs(3600),
        };
        let app = AppPacer::new(AppQuotas {
            requests: q(100),
            units: q(100),
            writes: q(3),
        });
        for _ in 0..3 {
            assert!(ready_now(app.admit(1, 1, 1)).await);
        }
        assert!(
            !ready_now(app.admit(1, 1, 1)).await,
            "the fourth write waits"
        );
        assert!(ready_now(app.admit(1, 1, 0)).await, "a read still goes");
        app.block_for(Duration::from_secs(3600));
        assert!(!ready_now(app.admit(1, 1, 0)).await, "blocked by a 429");
        let quotas = super::super::quota::DOCUMENTED_APP_QUOTAS;
        assert!(Arc::ptr_eq(
            &app_pacer("https://g", "a", quotas),
            &app_pacer("https://g", "a", quotas)
        ));
        assert!(!Arc::ptr_eq(
            &app_pacer("https://g", "a", quotas),
            &app_pacer("https://g", "b", quotas)
        ));
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
