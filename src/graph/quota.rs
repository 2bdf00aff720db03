//! The write budget: Entra's documented write quotas kept as sliding logs on the client side, so
//! that a write is sent only when Graph will have room for it (zero 429s by design when no one
//! else writes). The [`Pacer`](super::pacing::Pacer) holds one per tenant.
//!
//! # Write quotas
//!
//! Microsoft documents them in "Microsoft Graph service-specific throttling limits" (identity and
//! access service limits, <https://learn.microsoft.com/en-us/graph/throttling-limits>): per app +
//! tenant, 3,000 writes per 2 min 30 s; per tenant (all apps), 18,000 writes per 5 min
//! ([`DOCUMENTED_WRITE_QUOTAS`]). Graph states each as "N per window", and the sandbox enforces
//! them as exact sliding logs, so the client keeps the same: a write may start when fewer than N
//! writes were started in the last window. A token bucket (rate N/window, burst B) would either
//! admit more than N in some window (B > 0 on top of the rate) or make the first N writes wait for
//! the rate (B = 0: 3,500 writes in 175 s, where the quota allows 150 s). The window is lengthened
//! by a margin ([`WriteQuota::margin`]) because the client stamps a write when it sends it and
//! Graph when it arrives: latency jitter must not make write N+1 land inside the window of write 1.
//!
//! # The same logs for the other limits
//!
//! The same page lists limits beyond the users' quotas, kept with the same sliding logs:
//! - resetPassword and its operation polls: the "identity and access reports" limit, 5 requests
//!   per 10 s per app and tenant, names the `authenticationMethod` resource
//!   ([`AUTH_METHOD_QUOTA`]; `PWDRIFT_RESET_RATE=N/SECONDS` changes it). Whether it covers
//!   resetPassword is not stated plainly: pwdrift paces to it and still honours any 429.
//! - the application's own quotas across all tenants ([`AppQuotas`]): 150,000 resource units per
//!   20 s and 70,000 writes per 5 min (identity and access, per application), 130,000 requests
//!   per 10 s (global, per application). A process applying to twenty tenants at once meets them
//!   while each tenant is within its own. They are kept by one [`AppLog`] per quota, shared by
//!   every client of the process ([`super::pacing::AppPacer`]); `--shard I/N` gives each shard
//!   1/N of them ([`AppQuotas::shared_by`]).
//! - resource units per app + tenant, 3,500 / 5,000 / 8,000 per 10 s by the tenant's size
//!   ([`DOCUMENTED_TENANT_UNIT_QUOTAS`], [`tenant_unit_quota`]), kept by an [`AppLog`] per
//!   tenant; what a request costs is priced by the same page's table ([`resource_units`]).
//!
//! The [`AppLog`]s stamp an entry twice: when the request is admitted and when its answer
//! arrives ([`AppLog::restamp`]). Graph counts a request somewhere in between, so the answer's
//! instant bounds it from above, whatever the network and Graph's processing of a `$batch` did.

use std::time::Duration;

use tokio::time::Instant;

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

impl WriteQuota {
    /// The quota with its count divided by `n` (one of `n` processes sharing it: `--shard I/N`;
    /// rounded down, at least 1), its window unchanged.
    pub fn shared_by(self, n: u32) -> Self {
        WriteQuota {
            writes: (self.writes / n.max(1) as usize).max(1),
            window: self.window,
        }
    }
}

/// resetPassword and its operation polls: 5 requests per 10 s per app and tenant (the identity
/// and access reports limit of <https://learn.microsoft.com/en-us/graph/throttling-limits>,
/// which lists `authenticationMethod`). `writes` counts requests here.
pub const AUTH_METHOD_QUOTA: WriteQuota = WriteQuota {
    writes: 5,
    window: Duration::from_secs(10),
};

/// The application's own quotas, across all tenants (`writes` of each counts what it limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppQuotas {
    /// 130,000 requests per 10 s (the global limit per app)
    pub requests: WriteQuota,
    /// 150,000 resource units per 20 s (identity and access, per app)
    pub units: WriteQuota,
    /// 70,000 writes per 5 min (identity and access, per app)
    pub writes: WriteQuota,
}

/// The documented per-application quotas (Microsoft Graph throttling limits, identity and
/// access service limits and the global limit).
pub const DOCUMENTED_APP_QUOTAS: AppQuotas = AppQuotas {
    requests: WriteQuota {
        writes: 130_000,
        window: Duration::from_secs(10),
    },
    units: WriteQuota {
        writes: 150_000,
        window: Duration::from_secs(20),
    },
    writes: WriteQuota {
        writes: 70_000,
        window: Duration::from_secs(300),
    },
};

impl AppQuotas {
    /// Each quota scaled like the sandbox's `--throttle scaled:K`.
    pub fn scaled(self, k: u32) -> Self {
        AppQuotas {
            requests: self.requests.scaled(k),
            units: self.units.scaled(k),
            writes: self.writes.scaled(k),
        }
    }

    /// Each quota's count divided by `n` (`--shard I/N`: N processes share the application).
    pub fn shared_by(self, n: u32) -> Self {
        AppQuotas {
            requests: self.requests.shared_by(n),
            units: self.units.shared_by(n),
            writes: self.writes.shared_by(n),
        }
    }
}

/// A sliding log checked at the moment of sending: an amount is taken only when it fits the
/// last window (plus the margin) *now*. Unlike [`WriteBudget`], it reserves nothing ahead: it is
/// shared by every tenant of the process, and a reservation ahead by one tenant waiting for its
/// own quota would hold every other tenant back behind it.
///
/// An entry is stamped when its request is admitted, and stamped again when the answer arrives
/// ([`AppLog::restamp`]): Graph counts a request when it reaches it, which is somewhere between
/// the two (for the inner requests of a `$batch`, whenever Graph gets to each of them), so the
/// answer's instant is the latest Graph can have counted it at, and the entry leaves the log
/// only when Graph's has surely left Graph's window too.
#[derive(Debug)]
pub struct AppLog {
    quota: WriteQuota,
    entries: std::collections::BTreeMap<(Instant, u64), usize>,
    used: usize,
    next: u64,
}

/// One entry of an [`AppLog`], to stamp again when its answer arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEntry {
    at: Instant,
    seq: u64,
    n: usize,
}

impl AppLog {
    pub fn new(quota: WriteQuota) -> Self {
        AppLog {
            quota,
            entries: std::collections::BTreeMap::new(),
            used: 0,
            next: 0,
        }
    }

    /// Keeps `quota` from now on (what is logged stays).
    pub fn set_quota(&mut self, quota: WriteQuota) {
        self.quota = quota;
    }

    fn horizon(&self) -> Duration {
        self.quota.window + self.quota.margin()
    }

    fn expire(&mut self, now: Instant) {
        let horizon = self.horizon();
        while let Some(entry) = self.entries.first_entry() {
            if entry.key().0 + horizon > now {
                break;
            }
            self.used -= entry.remove();
        }
    }

    /// How much of the quota the last window holds, as a fraction (what Graph's
    /// `x-ms-throttle-limit-percentage` would say of the same log).
    pub fn usage(&mut self, now: Instant) -> f64 {
        self.expire(now);
        self.used as f64 / self.quota.writes.max(1) as f64
    }

    /// `None` when `n` (capped at the quota) fits now; else the instant it will.
    pub fn wait_for(&mut self, n: usize, now: Instant) -> Option<Instant> {
        self.expire(now);
        let n = n.min(self.quota.writes);
        if self.used + n <= self.quota.writes {
            return None;
        }
        let mut remaining = self.used;
        for (&(t, _), &k) in &self.entries {
            remaining -= k;
            if remaining + n <= self.quota.writes {
                return Some(t + self.horizon());
            }
        }
        Some(now + self.horizon())
    }

    /// Records `n` (capped at the quota) at `now`; call after [`AppLog::wait_for`] said it fits.
    /// Returns the entry, to [`restamp`](AppLog::restamp) when the answer arrives.
    pub fn take(&mut self, n: usize, now: Instant) -> Option<LogEntry> {
        let n = n.min(self.quota.writes);
        if n == 0 {
            return None;
        }
        let entry = LogEntry {
            at: now,
            seq: self.next,
            n,
        };
        self.next += 1;
        self.entries.insert((now, entry.seq), n);
        self.used += n;
        Some(entry)
    }

    /// Moves `entry` to `now` (its answer arrived): it counts for a whole window from then. An
    /// entry that already left the log is logged again, which errs on the side of Graph.
    pub fn restamp(&mut self, entry: LogEntry, now: Instant) {
        if now <= entry.at {
            return;
        }
        match self.entries.remove(&(entry.at, entry.seq)) {
            Some(n) => {
                self.entries.insert((now, entry.seq), n);
            }
            None => {
                self.entries.insert((now, entry.seq), entry.n);
                self.used += entry.n;
            }
        }
    }
}

/// Resource units per app + tenant, by the tenant's size: 3,500, 5,000 and 8,000 per 10 s for
/// tenants of fewer than 50, 50 to 500, and more than 500 users (identity and access service
/// limits of <https://learn.microsoft.com/en-us/graph/throttling-limits>).
pub const DOCUMENTED_TENANT_UNIT_QUOTAS: [WriteQuota; 3] = [
    WriteQuota {
        writes: 3_500,
        window: Duration::from_secs(10),
    },
    WriteQuota {
        writes: 5_000,
        window: Duration::from_secs(10),
    },
    WriteQuota {
        writes: 8_000,
        window: Duration::from_secs(10),
    },
];

/// Which of the [`DOCUMENTED_TENANT_UNIT_QUOTAS`] a tenant of `users` users has (`None`: not
/// known yet, the smallest).
pub fn tenant_unit_quota(quotas: &[WriteQuota; 3], users: Option<usize>) -> WriteQuota {
    match users {
        Some(0..50) | None => quotas[0],
        Some(50..=500) => quotas[1],
        Some(_) => quotas[2],
    }
}

/// What a request costs in resource units, by the identity and access table of
/// <https://learn.microsoft.com/en-us/graph/throttling-limits>: a GET of the `users` collection
/// 2, of a group's `members` 3 and `transitiveMembers` 5, of `memberOf`/`transitiveMemberOf` 2,
/// any other GET 1; `$select` takes 1 off, `$expand` adds 1, a `$top` below 20 takes 1 off,
/// never below 1; a POST, PATCH, PUT or DELETE costs 1 (and a write). `path` is the URL's path,
/// with or without the version segment; `query` its query string (percent-encoded or not).
pub fn resource_units(method: &str, path: &str, query: Option<&str>) -> usize {
    if !method.eq_ignore_ascii_case("GET") {
        return 1;
    }
    let mut segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if segments.first().is_some_and(|v| v == "v1.0" || v == "beta") {
        segments.remove(0);
    }
    if segments.len() > 1
        && segments
            .last()
            .is_some_and(|s| s.starts_with("microsoft.graph."))
    {
        segments.pop();
    }
    let base: i64 = match segments.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["users"] => 2,
        ["groups", _, "members"] => 3,
        ["groups", _, "transitivemembers"] => 5,
        ["me" | "users", .., "memberof" | "transitivememberof"] => 2,
        _ => 1,
    };
    let (mut select, mut expand, mut small_top) = (false, false, false);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.trim_start_matches('$').to_ascii_lowercase().as_str() {
            "select" => select = true,
            "expand" => expand = true,
            "top" => small_top |= value.trim().parse::<u64>().is_ok_and(|t| t < 20),
            _ => {}
        }
    }
    (base - i64::from(select) + i64::from(expand) - i64::from(small_top)).max(1) as usize
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

/// Client-side sliding logs of the writes started, one per quota (see "Write quotas" in the module documentation).
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
        (self.reserve_from(granted, at, now), granted)
    }

    /// How full the fullest quota is at `now`: writes started in its last window (reservations
    /// for later instants not counted), as a fraction of it.
    pub fn usage(&self, now: Instant) -> f64 {
        self.logs
            .iter()
            .map(|(q, log)| {
                let started = log.partition_point(|t| *t <= now);
                let gone = log.partition_point(|t| *t + q.window <= now).min(started);
                (started - gone) as f64 / q.writes.max(1) as f64
            })
            .fold(0.0, f64::max)
    }

    /// Gives back `n` writes reserved at `at` (by [`WriteBudget::reserve_up_to`]) that were not
    /// sent.
    pub fn release(&mut self, n: usize, at: Instant) {
        for (_, log) in &mut self.logs {
            // entries are sorted; those of one reservation are equal and contiguous
            let end = log.partition_point(|t| *t <= at);
            let start = log.partition_point(|t| *t < at);
            let k = n.min(end - start);
            log.drain(end - k..end);
        }
    }

    /// Reserves `n` writes at the earliest instant, not before `now`, at which every log has room
    /// for them (the tests' way in; pwdrift reserves through [`WriteBudget::reserve_up_to`]).
    #[cfg(test)]
    pub fn reserve(&mut self, n: usize, now: Instant) -> Instant {
        self.reserve_from(n, now, now)
    }

    /// Reserves `n` writes (capped at the smallest quota) at the earliest instant, not before
    /// `from` (nor `now`, the present), at which every log has room for them, records them at
    /// that instant and returns it. Reservations are made in call order, so concurrent writers
    /// queue fairly. Only what left the windows by `now` is dropped: until a reservation's
    /// instant comes, [`WriteBudget::usage`] still sees the writes of the window running now.
    fn reserve_from(&mut self, n: usize, from: Instant, now: Instant) -> Instant {
        let n = self
            .logs
            .iter()
            .map(|(q, _)| q.writes)
            .min()
            .map_or(n, |m| n.min(m));
        if n == 0 {
            return from.max(now);
        }
        let mut at = self.not_before(from.max(now));
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
            // what left the window by now goes (not by `at`: until `at`, [`Self::usage`] must
            // still see the writes of the window now running)
            let horizon = q.window + q.margin();
            while log.front().is_some_and(|t| *t + horizon <= now) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The usage Graph's percentage is compared with: the writes started in the window running
    /// now, whatever has been reserved for later instants (a reservation for the next window
    /// must not drop this window's writes from the count).
    #[test]
    fn usage_counts_the_window_running_now() {
        let t0 = Instant::now();
        let quota = q(10, 100);
        let mut b = WriteBudget::new(&[quota, q(60, 300)]);
        let (at, granted) = b.reserve_up_to(8, t0);
        assert_eq!((at, granted), (t0, 8));
        assert!((b.usage(t0) - 0.8).abs() < 1e-9);
        let (at, granted) = b.reserve_up_to(5, t0 + Duration::from_secs(1));
        assert_eq!(granted, 2, "only 2 more fit this window");
        assert_eq!(at, t0 + Duration::from_secs(1));
        // the next envelope waits for the next window, reserved now
        let (later, granted) = b.reserve_up_to(3, t0 + Duration::from_secs(2));
        assert_eq!(later, t0 + Duration::from_secs(100) + quota.margin());
        assert_eq!(granted, 3);
        assert!((b.usage(t0 + Duration::from_secs(2)) - 1.0).abs() < 1e-9);
        // when they go: the 2 of t0 + 1 s are still in Graph's window, with the 3, of 10
        assert!((b.usage(later) - 0.5).abs() < 1e-9);
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

    /// The application's log lets a window's allowance go at once, then one more per entry that
    /// leaves; shards divide the counts.
    #[test]
    fn app_log_spends_the_window_then_waits_for_it() {
        let t0 = Instant::now();
        let quota = q(10, 100);
        let mut log = AppLog::new(quota);
        assert_eq!(log.wait_for(10, t0), None);
        let entry = log.take(10, t0).unwrap();
        let at = log.wait_for(1, t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(at, t0 + Duration::from_secs(100) + quota.margin());
        assert_eq!(log.wait_for(1, at), None);
        // answered 2 s after it was sent: the entry counts from its answer
        log.restamp(entry, t0 + Duration::from_secs(2));
        assert_eq!(
            log.wait_for(1, at),
            Some(t0 + Duration::from_secs(102) + quota.margin())
        );
        assert!((log.usage(at) - 1.0).abs() < 1e-9);
        assert_eq!(log.wait_for(1, t0 + Duration::from_secs(103)), None);
        assert_eq!(log.usage(t0 + Duration::from_secs(103)), 0.0);
        let shared = DOCUMENTED_APP_QUOTAS.shared_by(4);
        assert_eq!(shared.writes.writes, 17_500);
        assert_eq!(shared.writes.window, Duration::from_secs(300));
        assert_eq!(DOCUMENTED_APP_QUOTAS.scaled(10).units.writes, 15_000);
        assert_eq!(AUTH_METHOD_QUOTA.shared_by(0), AUTH_METHOD_QUOTA);
    }

    /// Prices of the requests pwdrift makes, by Microsoft's table.
    #[test]
    fn resource_units_follow_the_documented_table() {
        let cases = [
            (
                "GET",
                "/v1.0/users",
                Some("$select=id,userPrincipalName&$top=999"),
                1,
            ),
            ("GET", "/v1.0/users", None, 2),
            ("GET", "/v1.0/users/$count", None, 1),
            ("GET", "/users/abc", Some("%24select=id"), 1),
            ("GET", "/v1.0/users/abc", Some("$expand=manager"), 2),
            (
                "GET",
                "/v1.0/groups/g/transitiveMembers/microsoft.graph.user",
                Some("$select=id&$count=true"),
                4,
            ),
            ("GET", "/beta/groups/g/members", None, 3),
            ("GET", "/v1.0/users/u/memberOf", Some("$top=5"), 1),
            ("GET", "/v1.0/users", Some("$top=5&$select=id"), 1),
            ("PATCH", "/v1.0/users/abc", None, 1),
            (
                "POST",
                "/v1.0/users/u/authentication/methods/m/resetPassword",
                None,
                1,
            ),
        ];
        for (method, path, query, units) in cases {
            assert_eq!(
                resource_units(method, path, query),
                units,
                "{method} {path} {query:?}"
            );
        }
        let q = DOCUMENTED_TENANT_UNIT_QUOTAS;
        assert_eq!(tenant_unit_quota(&q, None).writes, 3_500);
        assert_eq!(tenant_unit_quota(&q, Some(49)).writes, 3_500);
        assert_eq!(tenant_unit_quota(&q, Some(50)).writes, 5_000);
        assert_eq!(tenant_unit_quota(&q, Some(500)).writes, 5_000);
        assert_eq!(tenant_unit_quota(&q, Some(501)).writes, 8_000);
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
}
