//! The retry policy of the Graph client, shared by Graph requests and the token endpoint: which
//! responses are retried, and how long to wait (`Retry-After` or exponential backoff with full
//! jitter, bounded). Pacing (the per-tenant [`Pacer`]) lives in [`super::pacing`], the write
//! quotas ([`WriteQuota`], [`WriteBudget`](super::quota::WriteBudget)) in [`super::quota`]; the
//! names other modules use are re-exported here, so that `crate::graph::retry::X` keeps naming
//! them.
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

use std::time::Duration;

use rand::Rng as _;

pub use super::pacing::{app_pacer, AppPacer, AppTicket};
pub use super::pacing::{Pacer, MAX_BATCH_SIZE};
pub use super::quota::{
    AppQuotas, WriteQuota, AUTH_METHOD_QUOTA, DOCUMENTED_APP_QUOTAS, DOCUMENTED_TENANT_UNIT_QUOTAS,
    DOCUMENTED_WRITE_QUOTAS,
};

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
}
