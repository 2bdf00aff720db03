//! Latency and fault injection for the Graph sandbox (`--latency MS[+-JITTER]`, `--faults SPEC`).
//!
//! [`fault_middleware`] is an axum middleware (`axum::middleware::from_fn_with_state`) that
//! delays requests and, at the rates of a [`FaultSpec`], answers them with the failure shapes a
//! Graph client meets in the wild: a 429 `TooManyRequests` that no throttling limit explains
//! ("429 can happen below the limits"), a 500 `InternalServerError`, a 503 `ServiceUnavailable`,
//! a slow response, or a connection that is cut with no response at all.
//!
//! # What is affected
//!
//! - Latency applies to every request except the sandbox's own `/_sandbox/...` endpoints, token
//!   requests included (a real sign-in takes time too).
//! - Faults apply only to Graph routes, i.e. paths under `/v1.0/` and `/beta/` (a `$batch`
//!   envelope counts as one request). The token endpoint gets only the faults of the `token=`
//!   key ("Authority answers" below), never the rates. `/_sandbox/...` never gets latency or
//!   faults, so tests can always observe.
//!
//! # Authority answers
//!
//! `token=ANSWER` or `token=ANSWER*N` answers every token request (or the first N, counted
//! from the sandbox's start) with ANSWER instead of serving it, deterministically: transient
//! ones, `503` (with `Retry-After: 1` and the OAuth error `temporarily_unavailable`), `500`,
//! `502`, `504` (OAuth error `server_error`), `429` (with `Retry-After: 1`),
//! `temporarily_unavailable` (a 400 with that OAuth error, as the "Microsoft Entra
//! authentication and authorization error codes" page lists it: "The server is temporarily too
//! busy to handle the request. Retry the request."), `drop` (the connection cut); or a permanent
//! refusal named by its AADSTS code (`7000215` invalid secret, `7000222` expired secret,
//! `700016` app not found, `90002` tenant not found, `700027` bad assertion signature, `50034`
//! user not found, `53003` blocked by Conditional Access, `7000112` app disabled), in the
//! identity platform's error shape (see the `auth` module). The bodies of the transient answers
//! are the sandbox's choice: Microsoft documents no body for a 5xx of the token endpoint.
//!
//! # Cost per returned object (`--latency-per-item MS`)
//!
//! A fixed latency per request hides what makes a large page slow on Graph: the objects in it.
//! With `--latency-per-item MS` (fractional, default 0: no cost), a successful response to a
//! Graph route is held back, after it was produced, by `MS` per object it returns: the items of
//! `value` in a collection page (users of a page, members of a group), 1 for a single object,
//! and for a `$batch` the inner responses counted as their own requests (each inner response
//! costs the objects it returns, at least 1). The base `--latency` still applies once per HTTP
//! request. The sandbox has no default for either: the values the benchmark uses, 60 ms per
//! request and 0.4 ms per object (a full page of 999 users in about 460 ms), are an
//! *assumption*: that a full 999-user page takes on the order of half a second on Graph
//! (`docs/performance.md`); Microsoft documents no latency figures.
//!
//! # Determinism
//!
//! One ChaCha8 generator, seeded with `--rng-seed`, sits behind a mutex. Each affected request
//! draws from it once, synchronously, when it enters the middleware: a jitter draw (when the
//! latency has jitter) and then a fault draw (Graph routes, when faults are on). The same seed and
//! the same order of arriving requests therefore give the same delays and the same faults.
//!
//! # Lost responses
//!
//! `lost=RATE` hits writes only (see [`FaultSpec`]): the write is applied and its response is
//! replaced by a 504 or a dropped connection, deterministically with `--rng-seed`; `$batch`
//! members draw in the order of the envelope's `requests`, before any of them runs.
//!
//! # Odd resetPassword answers
//!
//! `reset_answer=empty|no_password|text_plain` (not a rate: every time) makes every
//! resetPassword 202 that carries a system-generated password misbehave. The reset itself is
//! applied as usual (the user's password changes to the generated one, which the sandbox keeps);
//! only the answer loses the password: `empty` answers the 202 with no body, `no_password` with
//! the `passwordResetResponse` minus `newPassword` (`{"@odata.context": ...}`), `text_plain` with
//! `Content-Type: text/plain` and the text `Accepted`. The reference page ("authenticationMethod:
//! resetPassword", <https://learn.microsoft.com/en-us/graph/api/authenticationmethod-resetpassword>)
//! documents a `passwordResetResponse` with `newPassword` for a reset without `newPassword`: these
//! model a misbehaving answer (a proxy, a gateway, a changed service), so that a client's handling
//! of a password it never received can be tested.
//!
//! # Echoed request bodies
//!
//! `echo=RATE` answers that share of password writes (a single `PATCH`, a resetPassword `POST`;
//! never a `$batch` envelope, which also carries reads) on Graph routes with `400 Request_BadRequest` whose message quotes the request body as it was
//! received (`Invalid value specified in the request payload: {...}`), without applying it. Graph's
//! error messages do quote values they refuse ("Invalid value specified for property
//! 'mailNickname' of resource 'User'." names the property; other services quote the value): this
//! models a peer that quotes everything, a submitted password included, so that a client's
//! masking of what a peer says can be tested. Drawn separately from the other faults, after them.
//!
//! # Dropped connections
//!
//! A dropped request is processed normally (its effects happen: a PATCH is applied) and its
//! response is then replaced by one whose body fails before yielding a byte, with a
//! `Content-Length` it never fulfils; hyper aborts the connection, so the client sees a transport
//! error instead of a status. This is the case a client must survive: it cannot know whether a
//! write it sent was applied, and must read back rather than assume.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::throttle::{too_many_requests_body, INFORMATION_HEADER, SCOPE_HEADER};

/// Added latency per request, in milliseconds: `50` or `50+-10` (uniform in 40..=60 ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    pub base: Duration,
    pub jitter: Duration,
}

/// A `--latency` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid latency '{input}': {reason}; expected MS or MS+-JITTER in whole milliseconds, e.g. '50' or '50+-10'")]
pub struct LatencyError {
    input: String,
    reason: String,
}

impl FromStr for Latency {
    type Err = LatencyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| LatencyError {
            input: s.to_owned(),
            reason,
        };
        let ms = |part: &str, what: &str| {
            part.trim()
                .parse::<u64>()
                .map_err(|_| err(format!("{what} '{}' is not a whole number", part.trim())))
        };
        let (base, jitter) = match s.split_once("+-") {
            Some((b, j)) => (ms(b, "base")?, ms(j, "jitter")?),
            None => (ms(s, "base")?, 0),
        };
        if jitter > base {
            return Err(err(format!(
                "jitter {jitter} ms is larger than the base {base} ms"
            )));
        }
        Ok(Latency {
            base: Duration::from_millis(base),
            jitter: Duration::from_millis(jitter),
        })
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.base.as_millis())?;
        if !self.jitter.is_zero() {
            write!(f, "+-{}", self.jitter.as_millis())?;
        }
        Ok(())
    }
}

/// Fault rates (each a probability per Graph request; together at most 1) and the delay of a
/// slow response. Parsed from
/// `429=0.05,500=0.01,503=0.01,drop=0.01,slow=0.02,lost=0.05[,slow_ms=2000]`; every key is
/// optional (rate 0), `slow_ms` defaults to 2,000.
///
/// `lost` applies to writes only (`PATCH` and `POST`, a `$batch` envelope included): the request
/// is applied, then its response is lost: half of the band answers 504 `GatewayTimeout`, the
/// other half drops the connection. Inside a `$batch` envelope, every `PATCH`/`POST` member draws
/// too (in the order of the `requests` array): a hit applies it and answers that member 504.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultSpec {
    pub p429: f64,
    pub p500: f64,
    pub p503: f64,
    pub drop: f64,
    pub slow: f64,
    pub lost: f64,
    pub slow_delay: Duration,
    /// `echo=RATE`: writes refused with a message quoting their body (see "Echoed request
    /// bodies" in the module documentation).
    pub echo: f64,
    /// `reset_answer=...`: every resetPassword 202 with a generated password misbehaves (see
    /// "Odd resetPassword answers" in the module documentation).
    pub reset_answer: Option<OddResetAnswer>,
    /// `token=ANSWER[*N]`: token requests answered with ANSWER (see "Authority answers").
    pub token: Option<TokenFault>,
}

/// What the token endpoint answers instead of serving a token request (`token=ANSWER`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAnswer {
    /// a transient HTTP status: 429, 500, 502, 503 or 504
    Status(u16),
    /// 400 with the OAuth error `temporarily_unavailable`
    TemporarilyUnavailable,
    /// the connection cut, no answer
    Drop,
    /// a permanent refusal with this AADSTS code (one of the `auth` module's `REFUSAL_CODES`)
    Refuse(u64),
}

/// `token=ANSWER[*N]`: the answer, and to how many of the first token requests (all: `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenFault {
    pub answer: TokenAnswer,
    pub first: Option<u64>,
}

impl FromStr for TokenFault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (answer, first) = match s.split_once('*') {
            Some((a, n)) => {
                let n = n
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("token count '{}' is not a whole number above 0", n.trim())
                    })?;
                (a.trim(), Some(n))
            }
            None => (s.trim(), None),
        };
        let answer = match answer.to_ascii_lowercase().trim_start_matches("aadsts") {
            "temporarily_unavailable" => TokenAnswer::TemporarilyUnavailable,
            "drop" => TokenAnswer::Drop,
            a @ ("429" | "500" | "502" | "503" | "504") => {
                TokenAnswer::Status(a.parse().expect("digits"))
            }
            a => match a.parse::<u64>() {
                Ok(code) if crate::auth::REFUSAL_CODES.contains(&code) => TokenAnswer::Refuse(code),
                _ => {
                    return Err(format!(
                        "token answer '{answer}' is not one of 429, 500, 502, 503, 504, \
                         temporarily_unavailable, drop, or the AADSTS codes {}",
                        crate::auth::REFUSAL_CODES.map(|c| c.to_string()).join(", ")
                    ))
                }
            },
        };
        Ok(TokenFault { answer, first })
    }
}

/// How a resetPassword 202 that should carry the generated password misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OddResetAnswer {
    /// no body at all
    Empty,
    /// the `passwordResetResponse` without `newPassword`
    NoPassword,
    /// `Content-Type: text/plain`, body `Accepted`
    TextPlain,
}

impl FromStr for OddResetAnswer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "empty" => Ok(Self::Empty),
            "no_password" => Ok(Self::NoPassword),
            "text_plain" => Ok(Self::TextPlain),
            other => Err(format!(
                "reset_answer '{other}' is not one of empty, no_password, text_plain"
            )),
        }
    }
}

impl Default for FaultSpec {
    fn default() -> Self {
        FaultSpec {
            p429: 0.0,
            p500: 0.0,
            p503: 0.0,
            drop: 0.0,
            slow: 0.0,
            lost: 0.0,
            slow_delay: Duration::from_millis(2_000),
            reset_answer: None,
            echo: 0.0,
            token: None,
        }
    }
}

/// A `--faults` value that does not parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault spec '{input}': {reason}; expected comma-separated KEY=VALUE with keys 429, 500, 503, drop, slow, lost (rates between 0 and 1, summing to at most 1), slow_ms (milliseconds), echo (a rate of writes answered 400 quoting their body), reset_answer (empty, no_password or text_plain) and token (ANSWER or ANSWER*N: the token endpoint's answer to every or the first N token requests), e.g. '429=0.05,500=0.01,drop=0.01' or 'token=503*2'")]
pub struct FaultSpecError {
    input: String,
    reason: String,
}

const FAULT_KEYS: [&str; 10] = [
    "429",
    "500",
    "503",
    "drop",
    "slow",
    "lost",
    "slow_ms",
    "reset_answer",
    "echo",
    "token",
];

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| FaultSpecError {
            input: s.to_owned(),
            reason,
        };
        let mut spec = FaultSpec::default();
        let mut seen: Vec<&str> = Vec::new();
        if s.trim().is_empty() {
            return Err(err("it is empty".into()));
        }
        for item in s.split(',') {
            let item = item.trim();
            let Some((key, value)) = item.split_once('=') else {
                return Err(err(format!("'{item}' is not KEY=VALUE")));
            };
            let (key, value) = (key.trim(), value.trim());
            let Some(known) = FAULT_KEYS.iter().find(|k| **k == key) else {
                let hint = FAULT_KEYS
                    .iter()
                    .max_by(|a, b| {
                        strsim::jaro_winkler(a, key).total_cmp(&strsim::jaro_winkler(b, key))
                    })
                    .filter(|k| strsim::jaro_winkler(k, key) > 0.7)
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                return Err(err(format!("unknown key '{key}'{hint}")));
            };
            if seen.contains(known) {
                return Err(err(format!("key '{key}' is given twice")));
            }
            seen.push(known);
            if *known == "token" {
                spec.token = Some(value.parse().map_err(err)?);
                continue;
            }
            if *known == "reset_answer" {
                spec.reset_answer = Some(value.parse().map_err(err)?);
                continue;
            }
            if *known == "slow_ms" {
                let ms = value
                    .parse::<u64>()
                    .map_err(|_| err(format!("slow_ms '{value}' is not a whole number")))?;
                spec.slow_delay = Duration::from_millis(ms);
                continue;
            }
            let rate = value
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    err(format!(
                        "rate of '{key}' ('{value}') is not between 0 and 1"
                    ))
                })?;
            match *known {
                "429" => spec.p429 = rate,
                "500" => spec.p500 = rate,
                "503" => spec.p503 = rate,
                "drop" => spec.drop = rate,
                "lost" => spec.lost = rate,
                "echo" => spec.echo = rate,
                _ => spec.slow = rate,
            }
        }
        let total = spec.p429 + spec.p500 + spec.p503 + spec.drop + spec.slow + spec.lost;
        if total > 1.0 + 1e-9 {
            return Err(err(format!("the rates add up to {total}, more than 1")));
        }
        Ok(spec)
    }
}

/// What the injector does to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Nothing: the request goes through (after the latency, if any).
    None,
    TooManyRequests,
    InternalServerError,
    ServiceUnavailable,
    /// Processed, then the connection is cut.
    Drop,
    /// Delayed by the spec's `slow_delay`, then passed through.
    Slow,
    /// A write applied, then answered 504 `GatewayTimeout`.
    LostGatewayTimeout,
    /// A write applied, then the connection is cut.
    LostDropped,
}

/// The decision for one request: how long to wait first, then which fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub delay: Duration,
    pub fault: Fault,
}

/// Fault and latency counters for `/_sandbox/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FaultStats {
    /// Requests that went through the injector (everything but `/_sandbox/...`).
    pub requests: u64,
    /// Requests that were given a non-zero latency.
    pub delayed: u64,
    pub injected_429: u64,
    pub injected_500: u64,
    pub injected_503: u64,
    pub dropped: u64,
    pub slow: u64,
    /// Writes applied and answered 504 (`lost`).
    pub lost_504: u64,
    /// Writes applied and their connection cut (`lost`).
    pub lost_dropped: u64,
    /// `$batch` members applied and answered 504 (`lost`).
    pub lost_batch_members: u64,
    /// Objects charged `--latency-per-item` (see [`returned_objects`]).
    pub costed_objects: u64,
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// Token requests answered by `token=` instead of served.
    pub token_faults: u64,
}

/// The seeded injector shared by the middleware (wrap it in an `Arc`).
#[derive(Debug)]
pub struct FaultInjector {
    spec: Option<FaultSpec>,
    latency: Option<Latency>,
    per_item: Duration,
    rng: Mutex<ChaCha8Rng>,
    stats: Mutex<FaultStats>,
}

/// Whether `path` is a Graph route (faults apply) rather than a token or sandbox endpoint.
fn is_graph_path(path: &str) -> bool {
    ["/v1.0", "/beta"].iter().any(|v| {
        path.strip_prefix(v)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

impl FaultInjector {
    /// `spec: None` injects no faults; `latency: None` adds no delay; `seed` is `--rng-seed`.
    pub fn new(spec: Option<FaultSpec>, latency: Option<Latency>, seed: u64) -> Self {
        FaultInjector {
            spec,
            latency,
            per_item: Duration::ZERO,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            stats: Mutex::new(FaultStats::default()),
        }
    }

    /// Adds `per_item` of latency per object a response returns (see the module documentation).
    pub fn with_latency_per_item(mut self, per_item: Duration) -> Self {
        self.per_item = per_item;
        self
    }

    /// Decides (and counts) what happens to the next request on `path`, as a read.
    pub fn decide(&self, path: &str) -> Decision {
        self.decide_request(false, path)
    }

    /// Decides (and counts) what happens to the next request on `path`; `write` (PATCH or POST)
    /// makes it eligible for `lost`. The middleware calls this once per request, in arrival
    /// order. Without `lost` in the spec, the draws are those of [`FaultInjector::decide`].
    pub fn decide_request(&self, write: bool, path: &str) -> Decision {
        if path.starts_with("/_sandbox") {
            return Decision {
                delay: Duration::ZERO,
                fault: Fault::None,
            };
        }
        let (delay, fault) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            let delay = match self.latency {
                None => Duration::ZERO,
                Some(l) if l.jitter.is_zero() => l.base,
                Some(l) => {
                    let j = l.jitter.as_micros() as u64;
                    let offset = rng.random_range(0..=2 * j);
                    (l.base + Duration::from_micros(offset)).saturating_sub(l.jitter)
                }
            };
            let fault = match self.spec {
                Some(spec) if is_graph_path(path) => {
                    let roll: f64 = rng.random();
                    let bands = [
                        (spec.p429, Fault::TooManyRequests),
                        (spec.p500, Fault::InternalServerError),
                        (spec.p503, Fault::ServiceUnavailable),
                        (spec.drop, Fault::Drop),
                        (spec.slow, Fault::Slow),
                        (spec.lost / 2.0, Fault::LostGatewayTimeout),
                        (spec.lost / 2.0, Fault::LostDropped),
                    ];
                    let mut edge = 0.0;
                    match bands
                        .iter()
                        .find(|(p, _)| {
                            edge += p;
                            roll < edge
                        })
                        .map_or(Fault::None, |(_, f)| *f)
                    {
                        Fault::LostGatewayTimeout | Fault::LostDropped if !write => Fault::None,
                        f => f,
                    }
                }
                _ => Fault::None,
            };
            (delay, fault)
        };
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.requests += 1;
        stats.delayed += u64::from(!delay.is_zero());
        match fault {
            Fault::None => {}
            Fault::TooManyRequests => stats.injected_429 += 1,
            Fault::InternalServerError => stats.injected_500 += 1,
            Fault::ServiceUnavailable => stats.injected_503 += 1,
            Fault::Drop => stats.dropped += 1,
            Fault::Slow => stats.slow += 1,
            Fault::LostGatewayTimeout => stats.lost_504 += 1,
            Fault::LostDropped => stats.lost_dropped += 1,
        }
        Decision { delay, fault }
    }

    /// Whether the response of one `PATCH`/`POST` member of a `$batch` envelope is lost (it is
    /// applied, then answered 504). Draws only when the spec has a `lost` rate.
    pub fn decide_batch_member(&self) -> bool {
        let Some(spec) = self.spec.filter(|s| s.lost > 0.0) else {
            return false;
        };
        let roll: f64 = self.rng.lock().unwrap_or_else(|e| e.into_inner()).random();
        let lost = roll < spec.lost;
        if lost {
            self.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .lost_batch_members += 1;
        }
        lost
    }

    /// Counts a token request and says whether `token=` answers it (see "Authority answers").
    pub fn decide_token(&self) -> Option<TokenAnswer> {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let n = stats.token_requests;
        stats.token_requests += 1;
        let fault = self.spec.and_then(|s| s.token)?;
        if fault.first.is_some_and(|first| n >= first) {
            return None;
        }
        stats.token_faults += 1;
        Some(fault.answer)
    }

    pub fn stats(&self) -> FaultStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether this write is answered with its body echoed (`echo`); draws only when the spec
    /// has an `echo` rate.
    fn echo(&self) -> bool {
        let Some(spec) = self.spec.filter(|s| s.echo > 0.0) else {
            return false;
        };
        let roll: f64 = self.rng.lock().unwrap_or_else(|e| e.into_inner()).random();
        roll < spec.echo
    }

    fn slow_delay(&self) -> Duration {
        self.spec.map_or(Duration::ZERO, |s| s.slow_delay)
    }
}

/// The middleware: `Router::layer(axum::middleware::from_fn_with_state(injector, fault_middleware))`.
pub async fn fault_middleware(
    State(inj): State<Arc<FaultInjector>>,
    mut req: Request,
    next: Next,
) -> Response {
    let write = matches!(
        *req.method(),
        axum::http::Method::PATCH | axum::http::Method::POST
    );
    let decision = inj.decide_request(write, req.uri().path());
    // `$batch` draws for its members from the same injector.
    req.extensions_mut().insert(inj.clone());
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let costed = !inj.per_item.is_zero() && is_graph_path(req.uri().path());
    let odd = inj
        .spec
        .and_then(|s| s.reset_answer)
        .filter(|_| *req.method() == axum::http::Method::POST && is_reset_path(req.uri().path()));
    let password_write =
        *req.method() == axum::http::Method::PATCH || is_reset_path(req.uri().path());
    if decision.fault == Fault::None
        && write
        && password_write
        && is_graph_path(req.uri().path())
        && inj.echo()
    {
        return echo_response(req).await;
    }
    if let (Fault::None, Some(odd)) = (decision.fault, odd) {
        let resp = next.run(req).await;
        return odd_reset_answer(resp, odd).await;
    }
    match decision.fault {
        Fault::None if costed => {
            let resp = next.run(req).await;
            charge_per_item(resp, &inj).await
        }
        Fault::None => next.run(req).await,
        Fault::Slow => {
            tokio::time::sleep(inj.slow_delay()).await;
            next.run(req).await
        }
        Fault::TooManyRequests => {
            let mut extra = vec![
                (header::RETRY_AFTER, HeaderValue::from_static("1")),
                (
                    INFORMATION_HEADER,
                    HeaderValue::from_static("CPULimitExceeded"),
                ),
            ];
            if let Some(scope) = token_scope(req.headers()) {
                extra.push((SCOPE_HEADER, scope));
            }
            let ids = RequestIds::new(req.headers());
            let body = too_many_requests_body(&ids.request_id, ids.client.as_deref(), &ids.date);
            error_response(StatusCode::TOO_MANY_REQUESTS, body, &ids, extra)
        }
        Fault::InternalServerError => {
            let ids = RequestIds::new(req.headers());
            let body = ids.error_body(
                "InternalServerError",
                "An internal server error occurred. Please retry the request.",
            );
            error_response(StatusCode::INTERNAL_SERVER_ERROR, body, &ids, vec![])
        }
        Fault::ServiceUnavailable => {
            let ids = RequestIds::new(req.headers());
            let body = ids.error_body(
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please retry later.",
            );
            let extra = vec![(header::RETRY_AFTER, HeaderValue::from_static("1"))];
            error_response(StatusCode::SERVICE_UNAVAILABLE, body, &ids, extra)
        }
        Fault::Drop | Fault::LostDropped => {
            // Let the request take effect, then lose its response.
            let processed = next.run(req).await;
            drop(processed);
            dropped_connection()
        }
        Fault::LostGatewayTimeout => {
            let ids = RequestIds::new(req.headers());
            let processed = next.run(req).await;
            drop(processed);
            gateway_timeout(&ids)
        }
    }
}

/// A write refused with `400 Request_BadRequest` quoting its body (`echo`); nothing applied.
async fn echo_response(req: Request) -> Response {
    let ids = RequestIds::new(req.headers());
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let quoted = String::from_utf8_lossy(&body);
    let body = ids.error_body(
        "Request_BadRequest",
        &format!("Invalid value specified in the request payload: {quoted}"),
    );
    error_response(StatusCode::BAD_REQUEST, body, &ids, vec![])
}

/// Whether `path` is a resetPassword action (`.../authentication/methods/{id}/resetPassword`).
fn is_reset_path(path: &str) -> bool {
    is_graph_path(path)
        && path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.eq_ignore_ascii_case("resetPassword"))
}

/// A resetPassword 202 that carries a generated password, answered the `odd` way instead (the
/// reset itself already happened). Any other answer passes unchanged.
async fn odd_reset_answer(resp: Response, odd: OddResetAnswer) -> Response {
    if resp.status() != StatusCode::ACCEPTED {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return dropped_connection();
    };
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice(&bytes) else {
        // no generated password in it (a reset with `newPassword`): nothing to lose
        return Response::from_parts(parts, Body::from(bytes));
    };
    if !fields.contains_key("newPassword") {
        return Response::from_parts(parts, Body::from(bytes));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = match odd {
        OddResetAnswer::Empty => {
            parts.headers.remove(header::CONTENT_TYPE);
            Body::empty()
        }
        OddResetAnswer::NoPassword => {
            fields.remove("newPassword");
            Body::from(serde_json::Value::Object(fields).to_string())
        }
        OddResetAnswer::TextPlain => {
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Body::from("Accepted")
        }
    };
    Response::from_parts(parts, body)
}

/// Holds a successful response back by `per_item` per object it returns.
async fn charge_per_item(resp: Response, inj: &FaultInjector) -> Response {
    if !resp.status().is_success() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return dropped_connection();
    };
    let n = returned_objects(&bytes);
    inj.stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .costed_objects += n;
    if n > 0 {
        tokio::time::sleep(inj.per_item.saturating_mul(n.min(u32::MAX as u64) as u32)).await;
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The objects a response body returns: the items of `value`, 1 for a single object (one with
/// an `id`), and for a `$batch` envelope the sum over its inner responses (at least 1 each).
/// Not JSON (a `$count`, an empty 204): 1 if there is a body, else 0.
pub fn returned_objects(body: &[u8]) -> u64 {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Shape {
        #[serde(default)]
        value: Option<Vec<IgnoredAny>>,
        #[serde(default)]
        responses: Option<Vec<Inner>>,
        #[serde(default)]
        id: Option<IgnoredAny>,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(default)]
        body: Option<Shape>,
    }
    fn count(s: &Shape) -> u64 {
        if let Some(v) = &s.value {
            v.len() as u64
        } else if let Some(r) = &s.responses {
            r.iter()
                .map(|i| i.body.as_ref().map_or(1, count).max(1))
                .sum()
        } else {
            u64::from(s.id.is_some())
        }
    }
    if body.is_empty() {
        return 0;
    }
    match serde_json::from_slice::<Shape>(body) {
        Ok(s) => count(&s),
        Err(_) => 1,
    }
}

/// The 504 of a lost response. Graph's gateway-timeout body is not documented: this shape (code
/// `GatewayTimeout`) is the sandbox's guess.
pub fn gateway_timeout_body(ids_client: Option<&str>) -> serde_json::Value {
    let ids = RequestIds {
        request_id: uuid::Uuid::new_v4().to_string(),
        client: ids_client.map(str::to_owned),
        date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
    };
    ids.error_body(
        "GatewayTimeout",
        "The operation timed out before the service answered.",
    )
}

fn gateway_timeout(ids: &RequestIds) -> Response {
    let body = ids.error_body(
        "GatewayTimeout",
        "The operation timed out before the service answered.",
    );
    error_response(StatusCode::GATEWAY_TIMEOUT, body, ids, vec![])
}

/// A response hyper cannot complete: a `Content-Length` it never gets and a body whose first
/// poll fails, so the connection is aborted.
pub(crate) fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault injection: connection dropped",
        ))
    });
    let mut response = Response::new(Body::from_stream(failing));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("4096"));
    response
}

/// `request-id`, `client-request-id` and `date` of a Graph error.
struct RequestIds {
    request_id: String,
    client: Option<String>,
    date: String,
}

impl RequestIds {
    fn new(headers: &HeaderMap) -> Self {
        RequestIds {
            request_id: uuid::Uuid::new_v4().to_string(),
            client: headers
                .get("client-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            date: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        }
    }

    fn error_body(&self, code: &str, message: &str) -> serde_json::Value {
        let mut inner = serde_json::Map::new();
        inner.insert("date".into(), self.date.clone().into());
        inner.insert("request-id".into(), self.request_id.clone().into());
        if let Some(c) = &self.client {
            inner.insert("client-request-id".into(), c.clone().into());
        }
        serde_json::json!({"error": {"code": code, "message": message, "innerError": inner}})
    }
}

fn error_response(
    status: StatusCode,
    body: serde_json::Value,
    ids: &RequestIds,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::try_from(ids.request_id.as_str()) {
        headers.insert("request-id", v);
    }
    if let Some(v) = ids
        .client
        .as_deref()
        .and_then(|c| HeaderValue::try_from(c).ok())
    {
        headers.insert("client-request-id", v);
    }
    for (name, value) in extra {
        headers.insert(name, value);
    }
    response
}

/// `x-ms-throttle-scope` of an injected 429, when the bearer token is a JWT whose payload names
/// the app (`appid` or `azp`) and tenant (`tid`). The signature is not checked: this only labels
/// a fault, authentication is the server's business.
fn token_scope(headers: &HeaderMap) -> Option<HeaderValue> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let app = claims
        .get("appid")
        .or_else(|| claims.get("azp"))?
        .as_str()?;
    let tenant = claims.get("tid")?.as_str()?;
    HeaderValue::try_from(format!("Tenant_Application/ReadWrite/{app}/{tenant}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_returned_by_pages_singles_and_batches() {
        assert_eq!(
            returned_objects(br#"{"value":[{"id":"a"},{"id":"b"}],"@odata.nextLink":"x"}"#),
            2
        );
        assert_eq!(returned_objects(br#"{"value":[]}"#), 0);
        assert_eq!(
            returned_objects(br#"{"id":"a","passwordProfile":{"x":1}}"#),
            1
        );
        assert_eq!(returned_objects(b""), 0);
        assert_eq!(returned_objects(b"12345"), 1);
        let batch = br#"{"responses":[{"id":"1","status":200,"body":{"id":"u"}},{"id":"2","status":204},{"id":"3","status":200,"body":{"value":[{"id":"a"},{"id":"b"},{"id":"c"}]}}]}"#;
        assert_eq!(returned_objects(batch), 1 + 1 + 3);
    }

    #[test]
    fn latency_parsing() {
        assert_eq!(
            "50".parse::<Latency>(),
            Ok(Latency {
                base: Duration::from_millis(50),
                jitter: Duration::ZERO
            })
        );
        assert_eq!(
            " 50 +- 10 ".parse::<Latency>(),
            Ok(Latency {
                base: Duration::from_millis(50),
                jitter: Duration::from_millis(10)
            })
        );
        assert_eq!("0".parse::<Latency>().unwrap().base, Duration::ZERO);
        let e = "fast".parse::<Latency>().unwrap_err().to_string();
        assert!(
            e.contains("'fast'") && e.contains("not a whole number"),
            "{e}"
        );
        let e = "10+-20".parse::<Latency>().unwrap_err().to_string();
        assert!(
            e.contains("jitter 20 ms is larger than the base 10 ms"),
            "{e}"
        );
        assert!("-5".parse::<Latency>().is_err());
        assert!("5+-".parse::<Latency>().is_err());
        assert!("5.5".parse::<Latency>().is_err());
        assert_eq!("50+-10".parse::<Latency>().unwrap().to_string(), "50+-10");
        assert_eq!("50".parse::<Latency>().unwrap().to_string(), "50");
    }

    #[test]
    fn fault_spec_parsing() {
        let s: FaultSpec = "429=0.05,500=0.01,503=0.01,drop=0.01,slow=0.02,slow_ms=1500"
            .parse()
            .unwrap();
        assert_eq!(
            s,
            FaultSpec {
                p429: 0.05,
                p500: 0.01,
                p503: 0.01,
                drop: 0.01,
                slow: 0.02,
                lost: 0.0,
                slow_delay: Duration::from_millis(1500),
                reset_answer: None,
                echo: 0.0,
                token: None,
            }
        );
        let s: FaultSpec = "reset_answer=text_plain".parse().unwrap();
        assert_eq!(s.reset_answer, Some(OddResetAnswer::TextPlain));
        assert!("reset_answer=weird".parse::<FaultSpec>().is_err());
        assert_eq!("echo=1".parse::<FaultSpec>().unwrap().echo, 1.0);
        let s: FaultSpec = " drop = 0.5 ".parse().unwrap();
        assert_eq!((s.drop, s.p429), (0.5, 0.0));
        assert_eq!(s.slow_delay, Duration::from_millis(2000));
        let s: FaultSpec = "429=0.5,503=0.5".parse().unwrap();
        assert_eq!(s.p429 + s.p503, 1.0);

        let err = |s: &str| s.parse::<FaultSpec>().unwrap_err().to_string();
        assert!(
            err("429=0.6,500=0.6").contains("add up to"),
            "{}",
            err("429=0.6,500=0.6")
        );
        assert!(err("429=1.5").contains("not between 0 and 1"));
        assert!(err("429=-0.1").contains("not between 0 and 1"));
        assert!(err("429=NaN").contains("not between 0 and 1"));
        assert!(err("429=abc").contains("not between 0 and 1"));
        assert!(err("dorp=0.1").contains("unknown key 'dorp' (did you mean 'drop'?)"));
        assert!(err("404=0.1").contains("unknown key '404'"));
        assert!(err("429=0.1,429=0.2").contains("given twice"));
        assert!(err("429").contains("not KEY=VALUE"));
        assert!(err("").contains("empty"));
        assert!(err("slow_ms=fast").contains("not a whole number"));
        assert!(err("429=0.1,").contains("not KEY=VALUE"));
    }

    #[test]
    fn same_seed_same_decisions_and_rates_roughly_honoured() {
        let spec: FaultSpec = "429=0.1,500=0.1,503=0.1,drop=0.1,slow=0.1".parse().unwrap();
        let latency: Latency = "20+-10".parse().unwrap();
        let run = |seed| {
            let inj = FaultInjector::new(Some(spec), Some(latency), seed);
            (0..2_000)
                .map(|i| {
                    inj.decide(if i % 2 == 0 {
                        "/v1.0/users"
                    } else {
                        "/beta/$batch"
                    })
                })
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        for kind in [
            Fault::TooManyRequests,
            Fault::InternalServerError,
            Fault::ServiceUnavailable,
            Fault::Drop,
            Fault::Slow,
        ] {
            let n = a.iter().filter(|d| d.fault == kind).count();
            assert!((120..=280).contains(&n), "{kind:?}: {n} of 2000");
        }
        let none = a.iter().filter(|d| d.fault == Fault::None).count();
        assert!((850..=1150).contains(&none), "{none}");
        assert!(a
            .iter()
            .all(|d| d.delay >= Duration::from_millis(10) && d.delay <= Duration::from_millis(30)));
        let distinct: std::collections::BTreeSet<_> = a.iter().map(|d| d.delay).collect();
        assert!(
            distinct.len() > 100,
            "jitter should vary: {}",
            distinct.len()
        );
    }

    #[test]
    fn scope_of_faults_and_latency() {
        let spec: FaultSpec = "500=1".parse().unwrap();
        let inj = FaultInjector::new(Some(spec), Some("5".parse().unwrap()), 1);
        for path in ["/v1.0/users", "/beta/users/x", "/v1.0", "/v1.0/$batch"] {
            assert_eq!(
                inj.decide(path),
                Decision {
                    delay: Duration::from_millis(5),
                    fault: Fault::InternalServerError
                },
                "{path}"
            );
        }
        // Token endpoint: latency, no fault; look-alike prefixes are not Graph routes.
        for path in ["/tenant/oauth2/v2.0/token", "/v1.0x/users", "/betas"] {
            assert_eq!(
                inj.decide(path),
                Decision {
                    delay: Duration::from_millis(5),
                    fault: Fault::None
                },
                "{path}"
            );
        }
        // Sandbox endpoints: nothing, and not counted.
        assert_eq!(
            inj.decide("/_sandbox/stats"),
            Decision {
                delay: Duration::ZERO,
                fault: Fault::None
            }
        );
        let s = inj.stats();
        assert_eq!((s.requests, s.delayed, s.injected_500), (7, 7, 4));
    }

    #[test]
    fn no_spec_no_faults() {
        let inj = FaultInjector::new(None, None, 1);
        for _ in 0..100 {
            assert_eq!(inj.decide("/v1.0/users").fault, Fault::None);
        }
        assert_eq!(inj.stats().delayed, 0);
    }

    #[test]
    fn scope_from_jwt_claims() {
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"appid":"app-1","tid":"tenant-1"}"#);
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::try_from(format!("Bearer eyJhbGciOiJub25lIn0.{claims}.sig")).unwrap(),
        );
        assert_eq!(
            token_scope(&h).unwrap(),
            "Tenant_Application/ReadWrite/app-1/tenant-1"
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer opaque"),
        );
        assert!(token_scope(&h).is_none());
    }

    #[test]
    fn token_answers_parse() {
        let spec: FaultSpec = "token=503*2".parse().unwrap();
        assert_eq!(
            spec.token,
            Some(TokenFault {
                answer: TokenAnswer::Status(503),
                first: Some(2)
            })
        );
        let spec: FaultSpec = "429=0.1,token=AADSTS7000222".parse().unwrap();
        assert_eq!(
            spec.token,
            Some(TokenFault {
                answer: TokenAnswer::Refuse(7000222),
                first: None
            })
        );
        for ok in ["token=temporarily_unavailable*1", "token=drop", "token=500"] {
            assert!(ok.parse::<FaultSpec>().is_ok(), "{ok}");
        }
        for bad in ["token=418", "token=503*0", "token=1234", "token=503*x"] {
            let e = bad.parse::<FaultSpec>().unwrap_err().to_string();
            assert!(e.contains("token"), "{bad}: {e}");
        }
    }
}
