//! The documented Microsoft Entra ("identity and access") throttling model of the Graph sandbox.
//!
//! [`cost`] prices a request in resource units (RU) and writes, following Microsoft's
//! "identity and access service limits" table; [`Throttler::admit`] checks it against the four
//! limits that apply to the user and group endpoints pwdrift calls, and either admits it (with the
//! `x-ms-resource-unit` and, from 80 % of a limit, `x-ms-throttle-limit-percentage` headers) or
//! refuses it with the `Retry-After`, `x-ms-throttle-scope` and `x-ms-throttle-information` headers
//! of a real 429. [`too_many_requests_body`] is the matching Graph error body.
//!
//! | limit (scope in `x-ms-throttle-scope`) | quota | window |
//! | --- | --- | --- |
//! | RU per app + tenant (`Tenant_Application/ReadWrite`) | 3,500 / 5,000 / 8,000 RU for tenants of < 50 / 50-500 / > 500 users | 10 s |
//! | writes per app + tenant (`Tenant_Application/Write`) | 3,000 writes | 2 min 30 s |
//! | writes per tenant, all apps (`Tenant/Write`) | 18,000 writes | 5 min |
//! | requests per app, all tenants (`Application/ReadWrite`) | 130,000 requests | 10 s |
//! | RU per app, all tenants (`Application/ReadWrite`) | 150,000 RU | 20 s |
//! | writes per app, all tenants (`Application/Write`) | 70,000 writes | 5 min |
//! | resetPassword and its operation polls per app + tenant (`Tenant_Application/AuthenticationMethod`) | 5 requests | 10 s |
//!
//! The application-wide rows are the "per application across all tenants" limits of
//! <https://learn.microsoft.com/en-us/graph/throttling-limits> (identity and access service
//! limits, and the global limit): one application applying to many tenants at once meets them
//! while every tenant is within its own quotas. The last row is the "identity and access reports"
//! limit of the same page (5 requests per 10 s per app and tenant), whose list of resources names
//! `authenticationMethod`; the page does not say plainly that resetPassword and its operations
//! count, so it is a switch ([`Throttler::with_auth_method_limit`], `pwdrift sandbox
//! --auth-method-limit on|off`, on by default). Its `<Limit>` segment, `AuthenticationMethod`,
//! is the sandbox's own label: Microsoft documents the header's format, not this value.
//!
//! # Sliding logs, not token buckets
//!
//! Microsoft states every limit as "N per window". Each limit is therefore kept as an exact
//! sliding log: the admitted requests of the last window, with their timestamps and costs. A
//! request is admitted when everything admitted in the half-open interval `(now - window, now]`
//! plus its own cost fits the quota; a refused request consumes nothing (Graph does say that
//! throttled requests still count, but then a client that honours `Retry-After` could never
//! recover in a model this exact, so we do not model that). `Retry-After` is the time until the
//! oldest entries have left the window so that the request fits, i.e. the earliest instant at
//! which the same request would be admitted if nothing else arrived. A token bucket would admit
//! bursts the documented "N per window" statement does not allow and make `Retry-After` an
//! approximation, so it was not used.
//!
//! Memory stays bounded: every log entry costs at least one unit, so a log never holds more
//! entries than its quota, and logs that fell empty are dropped by a periodic sweep, so the number
//! of keys is bounded by the app/tenant pairs active within the longest window (5 minutes).
//!
//! # Modes
//!
//! [`ThrottleMode::Scaled`]`(K)` divides every window AND every quota by K (quotas rounded up, at
//! least 1): the rates stay the documented ones, but a benchmark reaches the same throttling
//! shape K times sooner. `scaled:60` gives 59 RU per 166.7 ms (< 50 users), 50 writes per 2.5 s
//! per app + tenant, 300 writes per 5 s per tenant and 2,167 requests per 166.7 ms per app. A
//! request never costs more than a whole quota (its cost is capped at the quota), so an extreme K
//! cannot make a request impossible. `Retry-After` is whole seconds (HTTP has nothing finer) and
//! at least 1, so under a large K a client may wait longer than the exact
//! [`Admission::Throttled::retry_after`], which is reported unrounded.
//! [`ThrottleMode::Off`] admits everything and still sends `x-ms-resource-unit`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue, Method};
use serde::Serialize;

/// `x-ms-resource-unit`: the RU cost of the request (every Graph response on these endpoints).
pub const RESOURCE_UNIT_HEADER: HeaderName = HeaderName::from_static("x-ms-resource-unit");
/// `x-ms-throttle-limit-percentage`: sent from 80 % usage of a limit on, e.g. `0.85`.
pub const LIMIT_PERCENTAGE_HEADER: HeaderName =
    HeaderName::from_static("x-ms-throttle-limit-percentage");
/// `x-ms-throttle-scope`: `<Scope>/<Limit>/<ApplicationId>/<TenantId>`.
pub const SCOPE_HEADER: HeaderName = HeaderName::from_static("x-ms-throttle-scope");
/// `x-ms-throttle-information`: why the request was throttled (`ResourceUnitLimitExceeded`, ...).
pub const INFORMATION_HEADER: HeaderName = HeaderName::from_static("x-ms-throttle-information");

/// How the sandbox throttles (`--throttle real|off|scaled:K`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleMode {
    /// The documented limits and windows.
    Real,
    /// Never throttle (responses still carry `x-ms-resource-unit`).
    Off,
    /// Every window and every quota divided by K (K >= 1; quotas rounded up, at least 1).
    Scaled(u32),
}

/// A `--throttle` value that is not `real`, `off` or `scaled:K`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid throttle mode '{input}': {reason}; expected 'real', 'off' or 'scaled:K' with K a whole number >= 1 (e.g. 'scaled:60')")]
pub struct ThrottleModeError {
    input: String,
    reason: &'static str,
}

impl FromStr for ThrottleMode {
    type Err = ThrottleModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ThrottleModeError {
            input: s.to_owned(),
            reason,
        };
        match s.trim() {
            "real" => Ok(ThrottleMode::Real),
            "off" => Ok(ThrottleMode::Off),
            other => match other.strip_prefix("scaled:") {
                Some(k) => match k.trim().parse::<u32>() {
                    Ok(0) => Err(err("K must be at least 1")),
                    Ok(k) => Ok(ThrottleMode::Scaled(k)),
                    Err(_) => Err(err("K is not a whole number")),
                },
                None if other == "scaled" => Err(err("scaled needs a factor")),
                None => Err(err("unknown mode")),
            },
        }
    }
}

impl fmt::Display for ThrottleMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThrottleMode::Real => f.write_str("real"),
            ThrottleMode::Off => f.write_str("off"),
            ThrottleMode::Scaled(k) => write!(f, "scaled:{k}"),
        }
    }
}

/// What a request costs against the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestCost {
    /// Resource units (always >= 1).
    pub resource_units: u32,
    /// Whether the request also counts against the write quotas (one write).
    pub is_write: bool,
    /// Whether the request is on a user's `authentication` methods or operations (resetPassword
    /// and its operation polls): the 5 requests per 10 s limit.
    pub auth_method: bool,
}

/// Base costs of Microsoft's table that differ from the defaults (GET 1 RU; POST, PATCH, PUT,
/// DELETE 1 RU + 1 write). Paths are relative to the version, lower case, `{}` matching any one
/// segment. `me/...` rows also apply to `users/{}/...`, as the table's note says. The POST rows
/// are reads in a POST's clothing: they cost no write.
const BASE_COSTS: &[(&str, &str, u32)] = &[
    ("GET", "applications", 2),
    ("GET", "applications/{}/extensionproperties", 2),
    ("GET", "contracts", 3),
    ("POST", "directoryobjects/getbyids", 5),
    ("GET", "domains/{}/domainnamereferences", 4),
    ("POST", "getobjectsbyid", 5),
    ("GET", "groups/{}/members", 3),
    ("GET", "groups/{}/transitivemembers", 5),
    ("POST", "ismemberof", 4),
    ("POST", "me/checkmembergroups", 4),
    ("POST", "me/checkmemberobjects", 4),
    ("POST", "me/getmembergroups", 2),
    ("POST", "me/getmemberobjects", 2),
    ("GET", "me/licensedetails", 2),
    ("GET", "me/memberof", 2),
    ("GET", "me/ownedobjects", 2),
    ("GET", "me/transitivememberof", 2),
    ("GET", "oauth2permissiongrants", 2),
    ("GET", "oauth2permissiongrants/{}", 2),
    ("GET", "serviceprincipals/{}/approleassignments", 2),
    ("GET", "subscribedskus", 3),
    ("GET", "users", 2),
];

/// Prices a request per Microsoft's identity-and-access table: `GET /users` (the collection)
/// costs 2 RU and other GETs 1 (a few other collections cost more, see the table), `$select`
/// takes 1 off, `$expand` adds 1, `$top` below 20 takes 1 off, never below 1; POST, PATCH, PUT
/// and DELETE cost 1 RU and 1 write. `path` is the request path with its version
/// (`/v1.0/users`, `/beta/users/{id}`); a trailing OData type cast
/// (`.../transitiveMembers/microsoft.graph.user`) prices like the collection it casts.
/// Query keys are matched with or without `$` and case-insensitively, after percent-decoding.
pub fn cost(method: &Method, path: &str, query: Option<&str>) -> RequestCost {
    let rel = path
        .trim_start_matches('/')
        .split_once('/')
        .map(|(version, rest)| {
            if version.eq_ignore_ascii_case("v1.0") || version.eq_ignore_ascii_case("beta") {
                rest
            } else {
                path.trim_start_matches('/')
            }
        })
        .unwrap_or_else(|| path.trim_start_matches('/'));
    let mut segments: Vec<String> = rel
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if segments.len() > 1
        && segments
            .last()
            .is_some_and(|s| s.starts_with("microsoft.graph."))
    {
        segments.pop();
    }
    // `users/{id}/memberOf` prices like `me/memberOf`.
    if segments.len() > 2 && segments[0] == "users" {
        segments.splice(0..2, ["me".to_owned()]);
    }

    let is_read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let table_method = if is_read { "GET" } else { method.as_str() };
    let listed = BASE_COSTS.iter().find(|(m, pattern, _)| {
        *m == table_method && {
            let parts: Vec<&str> = pattern.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| *p == "{}" || *p == s)
        }
    });
    let (base, is_write) = match listed {
        Some((_, _, units)) => (*units as i64, false),
        None => (1, !is_read),
    };

    // Each option adjusts the cost once, however often it is repeated.
    let (mut select, mut expand, mut small_top) = (false, false, false);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.trim_start_matches('$').to_ascii_lowercase().as_str() {
            "select" => select = true,
            "expand" => expand = true,
            "top" => small_top |= value.trim().parse::<u64>().is_ok_and(|top| top < 20),
            _ => {}
        }
    }
    let units = base - i64::from(select) + i64::from(expand) - i64::from(small_top);
    // `users/{id}/authentication/...` became `me/authentication/...` above
    let auth_method = segments.len() > 1 && segments[0] == "me" && segments[1] == "authentication";
    RequestCost {
        resource_units: units.max(1) as u32,
        is_write,
        auth_method,
    }
}

/// Who a request is charged to.
#[derive(Clone, Copy, Debug)]
pub struct ThrottleKey<'a> {
    /// The calling application's client id (`appid` of the token).
    pub app_id: &'a str,
    /// The tenant the request is made in.
    pub tenant_id: &'a str,
    /// Number of users in that tenant now (selects the 3,500 / 5,000 / 8,000 RU tier).
    pub tenant_user_count: usize,
}

/// The outcome of [`Throttler::admit`].
#[derive(Clone, Debug)]
pub enum Admission {
    /// Go ahead; add `headers` to the response (`x-ms-resource-unit`; from 80 % of a limit also
    /// `x-ms-throttle-limit-percentage` of the fullest limit, with its `x-ms-throttle-scope`
    /// only [`with_scope_on_success`](Throttler::with_scope_on_success)).
    Allowed {
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Answer 429 with [`too_many_requests_body`] and `headers` (`Retry-After` in whole seconds,
    /// rounded up, at least 1; `x-ms-throttle-scope`; `x-ms-throttle-information`).
    /// `retry_after` is the exact time until the request would fit, unrounded.
    Throttled {
        retry_after: Duration,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
}

/// Throttling counters for `/_sandbox/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ThrottleStats {
    /// `real`, `off` or `scaled:K`.
    pub mode: String,
    /// Requests admitted.
    pub admitted: u64,
    /// Requests refused with 429.
    pub throttled: u64,
    /// Refusals by the limit that refused them: `Tenant_Application/ReadWrite` (RU per app +
    /// tenant), `Tenant_Application/Write`, `Tenant/Write`, `Application/ReadWrite` (requests per
    /// app across tenants).
    pub throttled_by_scope: BTreeMap<String, u64>,
    /// Resource units of the admitted requests.
    pub resource_units_admitted: u64,
    /// Writes among the admitted requests.
    pub writes_admitted: u64,
}

/// The limits, in the order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Limit {
    AppTenantUnits,
    AppTenantWrites,
    TenantWrites,
    AppRequests,
    AppUnits,
    AppWrites,
    AuthMethod,
}

impl Limit {
    /// `<Scope>/<Limit>` of `x-ms-throttle-scope`.
    fn scope(self) -> &'static str {
        match self {
            Limit::AppTenantUnits => "Tenant_Application/ReadWrite",
            Limit::AppTenantWrites => "Tenant_Application/Write",
            Limit::TenantWrites => "Tenant/Write",
            Limit::AppRequests | Limit::AppUnits => "Application/ReadWrite",
            Limit::AppWrites => "Application/Write",
            Limit::AuthMethod => "Tenant_Application/AuthenticationMethod",
        }
    }

    fn information(self) -> &'static str {
        match self {
            Limit::AppTenantUnits | Limit::AppUnits => "ResourceUnitLimitExceeded",
            Limit::AppTenantWrites | Limit::TenantWrites | Limit::AppWrites => "WriteLimitExceeded",
            Limit::AppRequests | Limit::AuthMethod => "RequestLimitExceeded",
        }
    }

    /// The documented (unscaled) quota and window.
    fn documented(self, tenant_user_count: usize) -> (u64, Duration) {
        match self {
            Limit::AppTenantUnits => {
                let quota = match tenant_user_count {
                    0..50 => 3_500,
                    50..=500 => 5_000,
                    _ => 8_000,
                };
                (quota, Duration::from_secs(10))
            }
            Limit::AppTenantWrites => (3_000, Duration::from_secs(150)),
            Limit::TenantWrites => (18_000, Duration::from_secs(300)),
            Limit::AppRequests => (130_000, Duration::from_secs(10)),
            Limit::AppUnits => (150_000, Duration::from_secs(20)),
            Limit::AppWrites => (70_000, Duration::from_secs(300)),
            Limit::AuthMethod => (5, Duration::from_secs(10)),
        }
    }
}

/// One sliding log: admitted (timestamp, units) in time order, and their sum.
#[derive(Debug, Default)]
struct SlidingLog {
    entries: VecDeque<(Instant, u64)>,
    used: u64,
}

impl SlidingLog {
    /// Drops entries that have left the window: an entry at `t` counts while `now < t + window`.
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(t, units)) = self.entries.front() {
            if t + window <= now {
                self.entries.pop_front();
                self.used -= units;
            } else {
                break;
            }
        }
    }

    /// `None` if `units` fits now; otherwise how long until it fits (call after `expire`).
    fn wait_for(&self, units: u64, quota: u64, now: Instant, window: Duration) -> Option<Duration> {
        if self.used + units <= quota {
            return None;
        }
        let mut remaining = self.used;
        for &(t, u) in &self.entries {
            remaining -= u;
            if remaining + units <= quota {
                return Some((t + window).saturating_duration_since(now));
            }
        }
        // Unreachable while units <= quota; a whole window is the honest upper bound.
        Some(window)
    }

    fn record(&mut self, now: Instant, units: u64) {
        // Callers racing on `Instant::now()` (or tests) may arrive slightly out of order: insert
        // in time order (almost always at the back) so that expiry and `wait_for` stay exact.
        let at = self.entries.partition_point(|&(t, _)| t <= now);
        self.entries.insert(at, (now, units));
        self.used += units;
    }
}

#[derive(Debug, Default)]
struct State {
    app_tenant_units: HashMap<(String, String), SlidingLog>,
    app_tenant_writes: HashMap<(String, String), SlidingLog>,
    tenant_writes: HashMap<String, SlidingLog>,
    app_requests: HashMap<String, SlidingLog>,
    app_units: HashMap<String, SlidingLog>,
    app_writes: HashMap<String, SlidingLog>,
    auth_method: HashMap<(String, String), SlidingLog>,
    stats: ThrottleStats,
    admissions_since_sweep: u64,
}

/// How many admissions between sweeps of emptied logs.
const SWEEP_EVERY: u64 = 1024;

/// The sandbox's throttling state: one sliding log per limit and key, behind a mutex (the work
/// under the lock is a few deque operations).
#[derive(Debug)]
pub struct Throttler {
    mode: ThrottleMode,
    /// whether resetPassword and its operation polls are held to 5 requests per 10 s
    auth_method_limit: bool,
    /// whether a successful answer's percentage comes with the scope of its limit
    scope_on_success: bool,
    state: Mutex<State>,
}

impl Throttler {
    pub fn new(mode: ThrottleMode) -> Self {
        Throttler {
            mode,
            auth_method_limit: true,
            scope_on_success: false,
            state: Mutex::new(State {
                stats: ThrottleStats {
                    mode: mode.to_string(),
                    ..ThrottleStats::default()
                },
                ..State::default()
            }),
        }
    }

    /// With `on` false, resetPassword and its operation polls are held to the users' limits
    /// only, not to the 5 requests per 10 s of the identity and access reports limit (`pwdrift
    /// sandbox --auth-method-limit off`).
    pub fn with_auth_method_limit(mut self, on: bool) -> Self {
        self.auth_method_limit = on;
        self
    }

    /// With `on`, a successful answer's `x-ms-throttle-limit-percentage` comes with the
    /// `x-ms-throttle-scope` of the fullest limit (`pwdrift sandbox
    /// --throttle-scope-on-success`). Off by default: the throttling page lists the scope among
    /// the headers of throttled answers only ("Throttled responses requests"), so a client must
    /// not count on knowing which limit a percentage is about.
    pub fn with_scope_on_success(mut self, on: bool) -> Self {
        self.scope_on_success = on;
        self
    }

    pub fn mode(&self) -> ThrottleMode {
        self.mode
    }

    /// Quota and window of `limit` in this mode.
    fn limit(&self, limit: Limit, tenant_user_count: usize) -> (u64, Duration) {
        let (quota, window) = limit.documented(tenant_user_count);
        match self.mode {
            ThrottleMode::Real | ThrottleMode::Off => (quota, window),
            ThrottleMode::Scaled(k) => {
                let k = k.max(1);
                (quota.div_ceil(u64::from(k)).max(1), window / k)
            }
        }
    }

    /// Charges `cost` to `key` at `now` if every limit has room, and says how to answer.
    /// A refused request is not charged. Pass `Instant::now()` in the server; tests pass
    /// constructed instants.
    pub fn admit(&self, key: &ThrottleKey, cost: &RequestCost, now: Instant) -> Admission {
        let ru_header = (RESOURCE_UNIT_HEADER, HeaderValue::from(cost.resource_units));
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.mode == ThrottleMode::Off {
            state.stats.admitted += 1;
            state.stats.resource_units_admitted += u64::from(cost.resource_units);
            state.stats.writes_admitted += u64::from(cost.is_write);
            return Admission::Allowed {
                headers: vec![ru_header],
            };
        }

        let app_tenant = (key.app_id.to_owned(), key.tenant_id.to_owned());
        let mut checks: Vec<(Limit, u64)> = vec![
            (Limit::AppTenantUnits, u64::from(cost.resource_units)),
            (Limit::AppRequests, 1),
            (Limit::AppUnits, u64::from(cost.resource_units)),
        ];
        if cost.is_write {
            checks.push((Limit::AppTenantWrites, 1));
            checks.push((Limit::TenantWrites, 1));
            checks.push((Limit::AppWrites, 1));
        }
        if cost.auth_method && self.auth_method_limit {
            checks.push((Limit::AuthMethod, 1));
        }

        // First pass: expire and find the longest wait among the limits that are full.
        let mut worst: Option<(Limit, Duration)> = None;
        for &(limit, units) in &checks {
            let (quota, window) = self.limit(limit, key.tenant_user_count);
            let log = state.log(limit, &app_tenant);
            log.expire(now, window);
            if let Some(wait) = log.wait_for(units.min(quota), quota, now, window) {
                if worst.is_none_or(|(_, w)| wait > w) {
                    worst = Some((limit, wait));
                }
            }
        }

        if let Some((limit, wait)) = worst {
            state.stats.throttled += 1;
            *state
                .stats
                .throttled_by_scope
                .entry(limit.scope().to_owned())
                .or_default() += 1;
            let seconds = wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64;
            return Admission::Throttled {
                retry_after: wait,
                headers: vec![
                    (axum::http::header::RETRY_AFTER, HeaderValue::from(seconds)),
                    (SCOPE_HEADER, scope_value(limit, key)),
                    (
                        INFORMATION_HEADER,
                        HeaderValue::from_static(limit.information()),
                    ),
                ],
            };
        }

        // Second pass: charge every limit and find the fullest (usage as used / quota).
        let mut fullest: Option<(Limit, u64, u64)> = None;
        for &(limit, units) in &checks {
            let (quota, _) = self.limit(limit, key.tenant_user_count);
            let log = state.log(limit, &app_tenant);
            log.record(now, units.min(quota));
            let used = log.used;
            if fullest.is_none_or(|(_, u, q)| {
                u128::from(used) * u128::from(q) > u128::from(u) * u128::from(quota)
            }) {
                fullest = Some((limit, used, quota));
            }
        }
        state.stats.admitted += 1;
        state.stats.resource_units_admitted += u64::from(cost.resource_units);
        state.stats.writes_admitted += u64::from(cost.is_write);
        state.admissions_since_sweep += 1;
        if state.admissions_since_sweep >= SWEEP_EVERY {
            state.sweep(now, |limit, users| self.limit(limit, users).1);
        }

        let mut headers = vec![ru_header];
        if let Some((limit, used, quota)) = fullest {
            if used * 10 >= quota * 8 {
                // Integer hundredths, truncated, so that the header never claims more than is
                // used: 2,976 of 3,500 is "0.85".
                let hundredths = used * 100 / quota;
                headers.push((
                    LIMIT_PERCENTAGE_HEADER,
                    HeaderValue::try_from(format!("{}.{:02}", hundredths / 100, hundredths % 100))
                        .expect("a formatted number is a valid header value"),
                ));
                if self.scope_on_success {
                    headers.push((SCOPE_HEADER, scope_value(limit, key)));
                }
            }
        }
        Admission::Allowed { headers }
    }

    /// Charges `writes` writes by other applications to the per-tenant write quota (all apps,
    /// `Tenant/Write`) of `tenant_id` at `now`, as far as the quota has room; returns how many
    /// were charged. Models what pwdrift cannot see or pace: other apps of a customer's tenant
    /// writing at the same time, so that pwdrift's own writes meet 429s it must honour.
    pub fn charge_other_apps(&self, tenant_id: &str, writes: u64, now: Instant) -> u64 {
        if self.mode == ThrottleMode::Off {
            return 0;
        }
        let (quota, window) = self.limit(Limit::TenantWrites, 0);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let log = state.log(Limit::TenantWrites, &(String::new(), tenant_id.to_owned()));
        log.expire(now, window);
        let room = quota.saturating_sub(log.used);
        let charged = writes.min(room);
        for _ in 0..charged {
            log.record(now, 1);
        }
        charged
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ThrottleStats {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
            .clone()
    }

    /// Number of sliding logs currently held (for tests of the memory bound).
    pub fn tracked_keys(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.app_tenant_units.len()
            + s.app_tenant_writes.len()
            + s.tenant_writes.len()
            + s.app_requests.len()
            + s.app_units.len()
            + s.app_writes.len()
            + s.auth_method.len()
    }

    /// Expires every log and drops the empty ones (also done every 1,024 admissions).
    pub fn prune(&self, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.sweep(now, |limit, users| self.limit(limit, users).1);
    }
}

impl State {
    fn log(&mut self, limit: Limit, app_tenant: &(String, String)) -> &mut SlidingLog {
        match limit {
            Limit::AppTenantUnits => self.app_tenant_units.entry(app_tenant.clone()).or_default(),
            Limit::AppTenantWrites => self
                .app_tenant_writes
                .entry(app_tenant.clone())
                .or_default(),
            Limit::TenantWrites => self.tenant_writes.entry(app_tenant.1.clone()).or_default(),
            Limit::AppRequests => self.app_requests.entry(app_tenant.0.clone()).or_default(),
            Limit::AppUnits => self.app_units.entry(app_tenant.0.clone()).or_default(),
            Limit::AppWrites => self.app_writes.entry(app_tenant.0.clone()).or_default(),
            Limit::AuthMethod => self.auth_method.entry(app_tenant.clone()).or_default(),
        }
    }

    /// Expires every log and drops the empty ones. The RU window does not depend on the tenant
    /// size, so the window is looked up with a size of 0.
    fn sweep(&mut self, now: Instant, window: impl Fn(Limit, usize) -> Duration) {
        fn sweep_map<K>(map: &mut HashMap<K, SlidingLog>, now: Instant, window: Duration) {
            map.retain(|_, log| {
                log.expire(now, window);
                !log.entries.is_empty()
            });
        }
        sweep_map(
            &mut self.app_tenant_units,
            now,
            window(Limit::AppTenantUnits, 0),
        );
        sweep_map(
            &mut self.app_tenant_writes,
            now,
            window(Limit::AppTenantWrites, 0),
        );
        sweep_map(&mut self.tenant_writes, now, window(Limit::TenantWrites, 0));
        sweep_map(&mut self.app_requests, now, window(Limit::AppRequests, 0));
        sweep_map(&mut self.app_units, now, window(Limit::AppUnits, 0));
        sweep_map(&mut self.app_writes, now, window(Limit::AppWrites, 0));
        sweep_map(&mut self.auth_method, now, window(Limit::AuthMethod, 0));
        self.admissions_since_sweep = 0;
    }
}

fn scope_value(limit: Limit, key: &ThrottleKey) -> HeaderValue {
    HeaderValue::try_from(format!(
        "{}/{}/{}",
        limit.scope(),
        key.app_id,
        key.tenant_id
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(limit.scope()))
}

/// Graph's 429 body: `{"error":{"code":"TooManyRequests","message":"Please retry again later.",
/// "innerError":{"date","request-id","client-request-id"}}}` (`client-request-id` only when the
/// client sent one). `date` is Graph's `2024-01-31T12:00:00` form.
pub fn too_many_requests_body(
    request_id: &str,
    client_request_id: Option<&str>,
    date: &str,
) -> serde_json::Value {
    let mut inner = serde_json::Map::new();
    inner.insert("date".into(), date.into());
    inner.insert("request-id".into(), request_id.into());
    if let Some(c) = client_request_id {
        inner.insert("client-request-id".into(), c.into());
    }
    serde_json::json!({
        "error": {
            "code": "TooManyRequests",
            "message": "Please retry again later.",
            "innerError": inner,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "11111111-1111-1111-1111-111111111111";
    const TENANT: &str = "22222222-2222-2222-2222-222222222222";

    fn key(users: usize) -> ThrottleKey<'static> {
        ThrottleKey {
            app_id: APP,
            tenant_id: TENANT,
            tenant_user_count: users,
        }
    }

    const READ1: RequestCost = RequestCost {
        resource_units: 1,
        is_write: false,
        auth_method: false,
    };
    const WRITE: RequestCost = RequestCost {
        resource_units: 1,
        is_write: true,
        auth_method: false,
    };

    fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.to_str().unwrap())
    }

    fn allowed(a: Admission) -> Vec<(HeaderName, HeaderValue)> {
        match a {
            Admission::Allowed { headers } => headers,
            Admission::Throttled { .. } => panic!("expected Allowed, got {a:?}"),
        }
    }

    fn throttled(a: Admission) -> (Duration, Vec<(HeaderName, HeaderValue)>) {
        match a {
            Admission::Throttled {
                retry_after,
                headers,
            } => (retry_after, headers),
            Admission::Allowed { .. } => panic!("expected Throttled, got {a:?}"),
        }
    }

    #[test]
    fn mode_parsing() {
        assert_eq!("real".parse::<ThrottleMode>(), Ok(ThrottleMode::Real));
        assert_eq!("off".parse::<ThrottleMode>(), Ok(ThrottleMode::Off));
        assert_eq!(
            "scaled:60".parse::<ThrottleMode>(),
            Ok(ThrottleMode::Scaled(60))
        );
        assert_eq!(
            "scaled:1".parse::<ThrottleMode>(),
            Ok(ThrottleMode::Scaled(1))
        );
        let e = "scaled:0".parse::<ThrottleMode>().unwrap_err().to_string();
        assert!(e.contains("'scaled:0'") && e.contains("at least 1"), "{e}");
        let e = "scaled:x".parse::<ThrottleMode>().unwrap_err().to_string();
        assert!(e.contains("not a whole number"), "{e}");
        let e = "scaled".parse::<ThrottleMode>().unwrap_err().to_string();
        assert!(e.contains("needs a factor"), "{e}");
        let e = "fast".parse::<ThrottleMode>().unwrap_err().to_string();
        assert!(e.contains("'real', 'off' or 'scaled:K'"), "{e}");
        assert!("scaled:-3".parse::<ThrottleMode>().is_err());
        for m in ["real", "off", "scaled:7"] {
            assert_eq!(m.parse::<ThrottleMode>().unwrap().to_string(), m);
        }
    }

    #[test]
    fn cost_table() {
        let c = |m: Method, p: &str, q: Option<&str>| {
            let c = cost(&m, p, q);
            (c.resource_units, c.is_write)
        };
        // The collection costs 2, a single user 1.
        assert_eq!(c(Method::GET, "/v1.0/users", None), (2, false));
        assert_eq!(c(Method::GET, "/beta/users", None), (2, false));
        assert_eq!(c(Method::GET, "/v1.0/users/", None), (2, false));
        assert_eq!(c(Method::GET, "/v1.0/Users", None), (2, false));
        assert_eq!(c(Method::GET, "/v1.0/users/abc", None), (1, false));
        assert_eq!(c(Method::GET, "/v1.0/groups", None), (1, false));
        // $select -1, $expand +1, $top < 20 -1, never below 1.
        assert_eq!(
            c(Method::GET, "/v1.0/users", Some("$select=id")),
            (1, false)
        );
        assert_eq!(
            c(Method::GET, "/v1.0/users", Some("%24select=id")),
            (1, false)
        );
        assert_eq!(
            c(Method::GET, "/v1.0/users", Some("$expand=manager")),
            (3, false)
        );
        assert_eq!(c(Method::GET, "/v1.0/users", Some("$top=19")), (1, false));
        assert_eq!(c(Method::GET, "/v1.0/users", Some("$top=20")), (2, false));
        assert_eq!(c(Method::GET, "/v1.0/users", Some("$top=999")), (2, false));
        assert_eq!(
            c(Method::GET, "/v1.0/users", Some("$select=id&$top=5")),
            (1, false)
        );
        assert_eq!(
            c(
                Method::GET,
                "/v1.0/users",
                Some("$select=id&$expand=memberOf&$top=999&$count=true")
            ),
            (2, false)
        );
        assert_eq!(
            c(Method::GET, "/v1.0/users/abc", Some("$select=id")),
            (1, false)
        );
        // Other rows of Microsoft's table, type casts and the me/ <-> users/{id}/ equivalence.
        assert_eq!(
            c(
                Method::GET,
                "/v1.0/groups/g1/transitiveMembers/microsoft.graph.user",
                None
            ),
            (5, false)
        );
        assert_eq!(c(Method::GET, "/v1.0/groups/g1/members", None), (3, false));
        assert_eq!(c(Method::GET, "/v1.0/users/u1/memberOf", None), (2, false));
        assert_eq!(c(Method::GET, "/v1.0/subscribedSkus", None), (3, false));
        assert_eq!(
            c(Method::POST, "/v1.0/directoryObjects/getByIds", None),
            (5, false)
        );
        assert_eq!(
            c(
                Method::POST,
                "/v1.0/directoryObjects/getByIds",
                Some("$select=id")
            ),
            (4, false)
        );
        // Writes: 1 RU + 1 write.
        assert_eq!(c(Method::PATCH, "/v1.0/users/abc", None), (1, true));
        assert_eq!(
            c(
                Method::POST,
                "/beta/users/abc/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword",
                None
            ),
            (1, true)
        );
        assert_eq!(c(Method::DELETE, "/v1.0/users/abc", None), (1, true));
        assert_eq!(c(Method::POST, "/v1.0/users", None), (1, true));
    }

    /// Admits `n` requests at `now`, asserting each is allowed.
    fn fill(t: &Throttler, key: &ThrottleKey, cost: &RequestCost, n: u64, now: Instant) {
        for i in 0..n {
            if let Admission::Throttled { .. } = t.admit(key, cost, now) {
                panic!("request {i} of {n} throttled");
            }
        }
    }

    #[test]
    fn resource_unit_tiers_by_tenant_size() {
        for (users, quota) in [
            (0, 3_500),
            (49, 3_500),
            (50, 5_000),
            (500, 5_000),
            (501, 8_000),
        ] {
            let t = Throttler::new(ThrottleMode::Real);
            let k = key(users);
            let now = Instant::now();
            fill(&t, &k, &READ1, quota, now);
            let (_, headers) = throttled(t.admit(&k, &READ1, now));
            assert_eq!(
                header(&headers, "x-ms-throttle-scope"),
                Some(format!("Tenant_Application/ReadWrite/{APP}/{TENANT}").as_str()),
                "users={users}"
            );
            assert_eq!(
                header(&headers, "x-ms-throttle-information"),
                Some("ResourceUnitLimitExceeded")
            );
            assert_eq!(
                t.stats().throttled_by_scope["Tenant_Application/ReadWrite"],
                1
            );
        }
    }

    #[test]
    fn refused_requests_consume_nothing_and_retry_after_is_exact() {
        let t = Throttler::new(ThrottleMode::Real);
        let k = key(10);
        let t0 = Instant::now();
        let two = RequestCost {
            resource_units: 2,
            is_write: false,
            auth_method: false,
        };
        // 1,000 RU at t0, 2,499 at t0+3s: 3,499 used, one left.
        for _ in 0..500 {
            allowed(t.admit(&k, &two, t0));
        }
        fill(&t, &k, &READ1, 2_499, t0 + Duration::from_secs(3));
        let at = t0 + Duration::from_millis(4_200);
        // A 2 RU request does not fit; the t0 entries leave the window at t0+10s.
        let (wait, headers) = throttled(t.admit(&k, &two, at));
        assert_eq!(wait, Duration::from_millis(5_800));
        assert_eq!(header(&headers, "retry-after"), Some("6"));
        // Refusals consumed nothing: the last single RU still fits, then nothing does.
        for _ in 0..3 {
            throttled(t.admit(&k, &two, at));
        }
        allowed(t.admit(&k, &READ1, at));
        let (wait, _) = throttled(t.admit(&k, &READ1, at));
        assert_eq!(wait, Duration::from_millis(5_800));
        // Just before the window slides, still refused; at the exact instant, admitted.
        throttled(t.admit(&k, &READ1, t0 + Duration::from_millis(9_999)));
        allowed(t.admit(&k, &READ1, t0 + Duration::from_secs(10)));
        // The t0+3s entries are the next to free: 1,000 RU freed at t0+10s, 999 left after
        // the one just admitted; fill them and the next wait points at t0+13s.
        let t10 = t0 + Duration::from_secs(10);
        fill(&t, &k, &READ1, 999, t10);
        let (wait, headers) = throttled(t.admit(&k, &READ1, t10));
        assert_eq!(wait, Duration::from_secs(3));
        assert_eq!(header(&headers, "retry-after"), Some("3"));
        let stats = t.stats();
        assert_eq!(stats.throttled, 7);
        assert_eq!(stats.admitted, 500 + 2_499 + 1 + 1 + 999);
        assert_eq!(stats.resource_units_admitted, 1_000 + 2_499 + 1 + 1 + 999);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        let t = Throttler::new(ThrottleMode::Real);
        let k = key(10);
        let t0 = Instant::now();
        fill(&t, &k, &READ1, 3_500, t0);
        let (wait, h) = throttled(t.admit(&k, &READ1, t0 + Duration::from_millis(9_999)));
        assert_eq!(wait, Duration::from_millis(1));
        assert_eq!(header(&h, "retry-after"), Some("1"));
        let (wait, h) = throttled(t.admit(&k, &READ1, t0 + Duration::from_millis(1)));
        assert_eq!(wait, Duration::from_millis(9_999));
        assert_eq!(header(&h, "retry-after"), Some("10"));
    }

    #[test]
    fn writes_per_app_and_tenant() {
        let t = Throttler::new(ThrottleMode::Real);
        let k = key(1_000);
        let t0 = Instant::now();
        // 3,000 writes spread over 150 s (20 per second) stay under the RU limit.
        for s in 0..150u64 {
            fill(&t, &k, &WRITE, 20, t0 + Duration::from_secs(s));
        }
        let at = t0 + Duration::from_secs(150) - Duration::from_millis(1);
        let (wait, headers) = throttled(t.admit(&k, &WRITE, at));
        assert_eq!(wait, Duration::from_millis(1));
        assert_eq!(
            header(&headers, "x-ms-throttle-scope"),
            Some(format!("Tenant_Application/Write/{APP}/{TENANT}").as_str())
        );
        assert_eq!(
            header(&headers, "x-ms-throttle-information"),
            Some("WriteLimitExceeded")
        );
        // Reads are still admitted while writes are throttled.
        allowed(t.admit(&k, &READ1, at));
        // Another app in the same tenant has its own write quota.
        let other = ThrottleKey {
            app_id: "other-app",
            ..k
        };
        allowed(t.admit(&other, &WRITE, at));
        // The first second's writes leave the window at t0 + 150 s.
        fill(&t, &k, &WRITE, 20, t0 + Duration::from_secs(150));
        throttled(t.admit(&k, &WRITE, t0 + Duration::from_secs(150)));
    }

    #[test]
    fn writes_per_tenant_across_apps() {
        let t = Throttler::new(ThrottleMode::Real);
        let t0 = Instant::now();
        let apps: Vec<String> = (0..7).map(|i| format!("app-{i}")).collect();
        // Six apps each write 3,000 at 25 per second within their own limits: 18,000 in total.
        for app in &apps[..6] {
            let k = ThrottleKey {
                app_id: app,
                tenant_id: TENANT,
                tenant_user_count: 1_000,
            };
            for s in 0..120u64 {
                fill(&t, &k, &WRITE, 25, t0 + Duration::from_secs(s));
            }
        }
        let seventh = ThrottleKey {
            app_id: &apps[6],
            tenant_id: TENANT,
            tenant_user_count: 1_000,
        };
        let at = t0 + Duration::from_secs(200);
        let (wait, headers) = throttled(t.admit(&seventh, &WRITE, at));
        // The oldest writes (t0) leave the 5-minute window at t0 + 300 s.
        assert_eq!(wait, Duration::from_secs(100));
        assert_eq!(header(&headers, "retry-after"), Some("100"));
        assert_eq!(
            header(&headers, "x-ms-throttle-scope"),
            Some(format!("Tenant/Write/{}/{TENANT}", apps[6]).as_str())
        );
        // A different tenant is unaffected; reads in this tenant are unaffected.
        let elsewhere = ThrottleKey {
            tenant_id: "another-tenant",
            ..seventh
        };
        allowed(t.admit(&elsewhere, &WRITE, at));
        allowed(t.admit(&seventh, &READ1, at));
        assert_eq!(t.stats().throttled_by_scope["Tenant/Write"], 1);
    }

    #[test]
    fn requests_per_app_across_tenants() {
        let t = Throttler::new(ThrottleMode::Real);
        let t0 = Instant::now();
        // 130,000 requests from one app spread over 40 tenants (3,250 each, under 3,500 RU).
        let tenants: Vec<String> = (0..41).map(|i| format!("tenant-{i}")).collect();
        for tenant in &tenants[..40] {
            let k = ThrottleKey {
                app_id: APP,
                tenant_id: tenant,
                tenant_user_count: 10,
            };
            fill(&t, &k, &READ1, 3_250, t0);
        }
        let fresh = ThrottleKey {
            app_id: APP,
            tenant_id: &tenants[40],
            tenant_user_count: 10,
        };
        let (wait, headers) = throttled(t.admit(&fresh, &READ1, t0 + Duration::from_secs(1)));
        assert_eq!(wait, Duration::from_secs(9));
        assert_eq!(
            header(&headers, "x-ms-throttle-scope"),
            Some(format!("Application/ReadWrite/{APP}/{}", tenants[40]).as_str())
        );
        // Another app is not affected.
        let other = ThrottleKey {
            app_id: "other-app",
            ..fresh
        };
        allowed(t.admit(&other, &READ1, t0 + Duration::from_secs(1)));
        assert_eq!(t.stats().throttled_by_scope["Application/ReadWrite"], 1);
    }

    /// One application writing to many tenants, each within its own quotas, meets the
    /// application's write quota (70,000 per 5 min across tenants): 429 naming the
    /// `Application` scope, with the `Retry-After` until the oldest write leaves.
    #[test]
    fn writes_per_app_across_tenants() {
        let t = Throttler::new(ThrottleMode::Real);
        let t0 = Instant::now();
        // 24 tenants x 2,900 writes = 69,600, then 400 more in a 25th: 70,000, every tenant
        // under its 3,000 per 150 s
        let names: Vec<String> = (0..26).map(|i| format!("tenant-{i}")).collect();
        fn k(tenant: &str) -> ThrottleKey<'_> {
            ThrottleKey {
                app_id: APP,
                tenant_id: tenant,
                tenant_user_count: 1_000,
            }
        }
        // spread over 20 s so that the RU limits (8,000 per 10 s per tenant; 150,000 per 20 s
        // per app) do not bind first
        for (i, tenant) in names[..24].iter().enumerate() {
            for step in 0..10u64 {
                fill(
                    &t,
                    &k(tenant),
                    &WRITE,
                    290,
                    t0 + Duration::from_millis(2_000 * step + i as u64),
                );
            }
        }
        fill(
            &t,
            &k(&names[24]),
            &WRITE,
            400,
            t0 + Duration::from_secs(21),
        );
        let (wait, headers) =
            throttled(t.admit(&k(&names[25]), &WRITE, t0 + Duration::from_secs(22)));
        assert_eq!(
            header(&headers, "x-ms-throttle-scope"),
            Some(format!("Application/Write/{APP}/{}", names[25]).as_str())
        );
        assert_eq!(
            header(&headers, "x-ms-throttle-information"),
            Some("WriteLimitExceeded")
        );
        // the first write (t0) leaves at t0 + 300 s
        assert_eq!(wait, Duration::from_secs(278));
        // a read is still admitted: only the write quota is full
        allowed(t.admit(&k(&names[25]), &READ1, t0 + Duration::from_secs(22)));
        assert_eq!(t.stats().throttled_by_scope["Application/Write"], 1);
    }

    /// Resource units per application across tenants: 150,000 per 20 s.
    #[test]
    fn resource_units_per_app_across_tenants() {
        let t = Throttler::new(ThrottleMode::Real);
        let t0 = Instant::now();
        let names: Vec<String> = (0..20).map(|i| format!("tenant-{i}")).collect();
        // 19 tenants x 7,900 RU within 10 s each (under their 8,000), twice: 300,200 > 150,000
        let five = RequestCost {
            resource_units: 5,
            is_write: false,
            auth_method: false,
        };
        for tenant in &names[..19] {
            let k = ThrottleKey {
                app_id: APP,
                tenant_id: tenant,
                tenant_user_count: 1_000,
            };
            fill(&t, &k, &five, 1_578, t0);
        }
        let k = ThrottleKey {
            app_id: APP,
            tenant_id: &names[19],
            tenant_user_count: 1_000,
        };
        // 19 x 7,890 = 149,910 RU: 90 left
        fill(&t, &k, &five, 18, t0 + Duration::from_secs(1));
        let (wait, headers) = throttled(t.admit(&k, &five, t0 + Duration::from_secs(2)));
        assert_eq!(wait, Duration::from_secs(18));
        assert_eq!(
            header(&headers, "x-ms-throttle-scope"),
            Some(format!("Application/ReadWrite/{APP}/{}", names[19]).as_str())
        );
        assert_eq!(
            header(&headers, "x-ms-throttle-information"),
            Some("ResourceUnitLimitExceeded")
        );
    }

    /// resetPassword and its operation polls share 5 requests per 10 s per app and tenant (on by
    /// default); other tenants and the users' endpoints are not affected; off with the switch.
    #[test]
    fn auth_method_requests_are_five_per_ten_seconds() {
        let reset = cost(
            &Method::POST,
            "/v1.0/users/u1/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword",
            None,
        );
        let poll = cost(
            &Method::GET,
            "/v1.0/users/u1/authentication/operations/op1",
            None,
        );
        assert!(reset.auth_method && reset.is_write && poll.auth_method && !poll.is_write);
        assert!(!cost(&Method::PATCH, "/v1.0/users/u1", None).auth_method);
        let t = Throttler::new(ThrottleMode::Real);
        let k = key(10);
        let t0 = Instant::now();
        for i in 0..5u64 {
            let c = if i % 2 == 0 { &reset } else { &poll };
            allowed(t.admit(&k, c, t0 + Duration::from_secs(i)));
        }
        let (wait, headers) = throttled(t.admit(&k, &poll, t0 + Duration::from_secs(5)));
        assert_eq!(wait, Duration::from_secs(5));
        assert_eq!(header(&headers, "retry-after"), Some("5"));
        assert_eq!(
            header(&headers, "x-ms-throttle-scope"),
            Some(format!("Tenant_Application/AuthenticationMethod/{APP}/{TENANT}").as_str())
        );
        // a PATCH of the same app and tenant goes through; another tenant's reset too
        allowed(t.admit(&k, &WRITE, t0 + Duration::from_secs(5)));
        let other = ThrottleKey {
            tenant_id: "another",
            ..k
        };
        allowed(t.admit(&other, &reset, t0 + Duration::from_secs(5)));
        allowed(t.admit(&k, &reset, t0 + Duration::from_secs(10)));
        // switched off: only the users' limits
        let t = Throttler::new(ThrottleMode::Real).with_auth_method_limit(false);
        for i in 0..50u64 {
            allowed(t.admit(&k, &poll, t0 + Duration::from_millis(i)));
        }
    }

    #[test]
    fn percentage_header_from_eighty_percent() {
        let t = Throttler::new(ThrottleMode::Real);
        let k = key(10);
        let now = Instant::now();
        // 2,799 of 3,500 used after this request: 0.7997, no header.
        fill(&t, &k, &READ1, 2_798, now);
        let h = allowed(t.admit(&k, &READ1, now));
        assert_eq!(header(&h, "x-ms-resource-unit"), Some("1"));
        assert_eq!(header(&h, "x-ms-throttle-limit-percentage"), None);
        assert_eq!(header(&h, "x-ms-throttle-scope"), None);
        // The 2,800th: exactly 0.80, without a scope (documented on 429s only).
        let h = allowed(t.admit(&k, &READ1, now));
        assert_eq!(header(&h, "x-ms-throttle-limit-percentage"), Some("0.80"));
        assert_eq!(header(&h, "x-ms-throttle-scope"), None);
        // 2,974 is 0.8497: still "0.84"; 2,975 is 0.85.
        fill(&t, &k, &READ1, 173, now);
        let h = allowed(t.admit(&k, &READ1, now));
        assert_eq!(header(&h, "x-ms-throttle-limit-percentage"), Some("0.84"));
        let h = allowed(t.admit(&k, &READ1, now));
        assert_eq!(header(&h, "x-ms-throttle-limit-percentage"), Some("0.85"));
        // The last one: 1.00.
        fill(&t, &k, &READ1, 524, now);
        let h = allowed(t.admit(&k, &READ1, now));
        assert_eq!(header(&h, "x-ms-throttle-limit-percentage"), Some("1.00"));
    }

    #[test]
    fn percentage_header_names_the_write_limit_when_it_is_fullest() {
        let t = Throttler::new(ThrottleMode::Real).with_scope_on_success(true);
        let k = key(1_000);
        let t0 = Instant::now();
        for s in 0..120u64 {
            fill(&t, &k, &WRITE, 20, t0 + Duration::from_secs(s));
        }
        // 2,401 of 3,000 writes: 0.80; RU usage is tiny.
        let h = allowed(t.admit(&k, &WRITE, t0 + Duration::from_secs(120)));
        assert_eq!(header(&h, "x-ms-throttle-limit-percentage"), Some("0.80"));
        assert_eq!(
            header(&h, "x-ms-throttle-scope"),
            Some(format!("Tenant_Application/Write/{APP}/{TENANT}").as_str())
        );
    }

    #[test]
    fn scaled_mode_divides_windows_and_quotas() {
        let t = Throttler::new(ThrottleMode::Scaled(60));
        let k = key(10);
        let t0 = Instant::now();
        // RU: ceil(3,500 / 60) = 59 per 10 s / 60 = 166.666666 ms.
        fill(&t, &k, &READ1, 59, t0);
        let (wait, headers) = throttled(t.admit(&k, &READ1, t0));
        assert_eq!(wait, Duration::from_nanos(166_666_666));
        assert_eq!(header(&headers, "retry-after"), Some("1"));
        allowed(t.admit(&k, &READ1, t0 + Duration::from_nanos(166_666_666)));

        // Writes: 3,000 / 60 = 50 per 2.5 s (10 per 100 ms stays under 59 RU per 166 ms).
        let t = Throttler::new(ThrottleMode::Scaled(60));
        for i in 0..5u64 {
            fill(&t, &k, &WRITE, 10, t0 + Duration::from_millis(100 * i));
        }
        let at = t0 + Duration::from_millis(1_000);
        let (wait, headers) = throttled(t.admit(&k, &WRITE, at));
        assert_eq!(wait, Duration::from_millis(1_500));
        assert_eq!(header(&headers, "retry-after"), Some("2"));
        assert_eq!(
            header(&headers, "x-ms-throttle-information"),
            Some("WriteLimitExceeded")
        );
        allowed(t.admit(&k, &WRITE, t0 + Duration::from_millis(2_500)));

        // Tenant writes: 18,000 / 60 = 300 per 5 s, across apps (6 apps x 50).
        let t = Throttler::new(ThrottleMode::Scaled(60));
        let names: Vec<String> = (0..7).map(|i| format!("a{i}")).collect();
        for (n, name) in names[..6].iter().enumerate() {
            let k = ThrottleKey {
                app_id: name,
                tenant_id: TENANT,
                tenant_user_count: 10,
            };
            for i in 0..5u64 {
                fill(
                    &t,
                    &k,
                    &WRITE,
                    10,
                    t0 + Duration::from_millis(200 * i + n as u64),
                );
            }
        }
        let k7 = ThrottleKey {
            app_id: &names[6],
            tenant_id: TENANT,
            tenant_user_count: 10,
        };
        let (wait, headers) = throttled(t.admit(&k7, &WRITE, t0 + Duration::from_secs(2)));
        assert_eq!(wait, Duration::from_secs(3));
        assert!(header(&headers, "x-ms-throttle-scope")
            .unwrap()
            .starts_with("Tenant/Write/"));
    }

    #[test]
    fn scaled_quotas_round_up_to_at_least_one_and_cap_costs() {
        // 3,500 / 100,000 rounds up to 1 RU per 100 us; a 2 RU request still gets through alone.
        let t = Throttler::new(ThrottleMode::Scaled(100_000));
        let k = key(10);
        let t0 = Instant::now();
        let two = RequestCost {
            resource_units: 2,
            is_write: false,
            auth_method: false,
        };
        let h = allowed(t.admit(&k, &two, t0));
        assert_eq!(header(&h, "x-ms-resource-unit"), Some("2"));
        // the application's 150,000 RU per 20 s rounds up to 2 per 200 us: full too, and longer
        let (wait, _) = throttled(t.admit(&k, &READ1, t0));
        assert_eq!(wait, Duration::from_micros(200));
        allowed(t.admit(&k, &READ1, t0 + Duration::from_micros(200)));
    }

    #[test]
    fn off_mode_admits_everything_with_the_unit_header() {
        let t = Throttler::new(ThrottleMode::Off);
        let k = key(10);
        let now = Instant::now();
        let five = RequestCost {
            resource_units: 5,
            is_write: true,
            auth_method: false,
        };
        for _ in 0..20_000 {
            let h = allowed(t.admit(&k, &five, now));
            assert_eq!(h.len(), 1);
            assert_eq!(header(&h, "x-ms-resource-unit"), Some("5"));
        }
        let s = t.stats();
        assert_eq!((s.admitted, s.throttled), (20_000, 0));
        assert_eq!(s.mode, "off");
        assert_eq!(t.tracked_keys(), 0);
    }

    #[test]
    fn idle_keys_are_pruned() {
        let t = Throttler::new(ThrottleMode::Real);
        let t0 = Instant::now();
        let tenants: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
        for tenant in &tenants {
            let k = ThrottleKey {
                app_id: APP,
                tenant_id: tenant,
                tenant_user_count: 1,
            };
            allowed(t.admit(&k, &WRITE, t0));
        }
        // RU + app-tenant writes + tenant writes per tenant; the app's requests, RU and writes.
        assert_eq!(t.tracked_keys(), 3 * 100 + 3);
        // The periodic sweep runs by itself: after the longest window (5 min), 1,024 more
        // admissions leave only the logs of the key still in use (its RU log, the app's
        // requests and RU).
        fill(&t, &key(10), &READ1, 1_024, t0 + Duration::from_secs(300));
        assert_eq!(t.tracked_keys(), 3);
        // An explicit prune after the app's RU window (20 s) drops those too.
        t.prune(t0 + Duration::from_secs(320));
        assert_eq!(t.tracked_keys(), 0);
    }

    #[test]
    fn body_shape() {
        let b = too_many_requests_body("rid", Some("cid"), "2024-01-31T12:00:00");
        assert_eq!(
            b,
            serde_json::json!({"error": {"code": "TooManyRequests", "message": "Please retry again later.",
                "innerError": {"date": "2024-01-31T12:00:00", "request-id": "rid", "client-request-id": "cid"}}})
        );
        let b = too_many_requests_body("rid", None, "d");
        assert!(b["error"]["innerError"].get("client-request-id").is_none());
    }
}
