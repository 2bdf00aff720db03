//! Observation endpoints, outside the Graph namespace (`/_sandbox/...`), so tests and benchmarks
//! can assert what happened:
//!
//! - `GET /_sandbox/stats`: request counts by method + route template and status, the number of
//!   429s, resetPassword calls per user, PATCHes per user, and the peak number of requests in
//!   flight at once (all Graph and token requests, and per method + route template), so that a
//!   test can show that writes overlap without timing them;
//! - `POST /_sandbox/reset-stats`: zeroes them (a peak restarts from what is in flight now);
//! - `GET /_sandbox/state` (optional `?user=UPN|id`): the current directory: users with their
//!   flags, policies, `lastPasswordChangeDateTime`, SIDs, roles, `privileged` (holds a role in
//!   any way, eligible included, or is in a role-assignable group), `userType`,
//!   `federatedDomain`; groups; operations. Never a password or a hash. It is the primary's
//!   view: `--read-lag` does not apply;
//! - `POST /_sandbox/users/{id | upn}/changePassword` (`{"newPassword": ...}` optional): the user
//!   changes their own password: both force flags clear and `lastPasswordChangeDateTime` = now;
//! - `POST /_sandbox/other-apps/writes` (`{"tenantId": ..., "writes": N}`): N writes by other
//!   applications charged to the tenant's per-tenant write quota (all apps), as far as it has
//!   room; answers `{"charged": n}`. pwdrift cannot see those writes, only the 429s they cause;
//! - `GET /_sandbox/devicelogin`: what to do with a device code.
//!
//! These endpoints need no token.

use std::collections::BTreeMap;

use super::error::GraphPath;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use serde::Serialize;
use serde_json::{json, Value};

use super::error::{GraphError, GraphResult};
use super::server::AppState;

/// Request statistics.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// All requests seen.
    pub total: u64,
    /// "METHOD /route/{template}" -> status -> count
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Responses with status 429.
    pub throttled: u64,
    /// resetPassword calls accepted (202), by UPN.
    pub resets_per_user: BTreeMap<String, u64>,
    /// passwordProfile PATCHes answered 204, by UPN.
    pub patches_per_user: BTreeMap<String, u64>,
    /// The most requests in flight at once (arrived, not yet answered, added latency included),
    /// over every route.
    pub peak_in_flight: u64,
    /// The same, by "METHOD /path/{}/shape" ([`path_shape`]; a `$batch` counts as its envelope).
    pub peak_in_flight_by_route: BTreeMap<String, u64>,
    /// Milliseconds from the last `reset-stats` (or the start) to the first and to the last
    /// Graph write answered 2xx (`$batch` members included, envelopes and the token endpoint
    /// not): the span a benchmark
    /// compares with the write quotas' floor.
    pub first_write_ms: Option<u64>,
    pub last_write_ms: Option<u64>,
    #[serde(skip)]
    since: Option<std::time::Instant>,
    /// Requests in flight now (kept across `reset-stats`).
    #[serde(skip)]
    in_flight: u64,
    #[serde(skip)]
    in_flight_by_route: BTreeMap<String, u64>,
}

impl Stats {
    fn enter(&mut self, key: &str) {
        self.in_flight += 1;
        self.peak_in_flight = self.peak_in_flight.max(self.in_flight);
        let n = self.in_flight_by_route.entry(key.to_owned()).or_default();
        *n += 1;
        let n = *n;
        let peak = self
            .peak_in_flight_by_route
            .entry(key.to_owned())
            .or_default();
        *peak = (*peak).max(n);
    }

    fn leave(&mut self, key: &str) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(n) = self.in_flight_by_route.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight_by_route.remove(key);
            }
        }
    }
}

/// Counts a request out of flight when dropped: answered, or abandoned by its client.
struct InFlight {
    state: AppState,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.stats().leave(&self.key);
    }
}

/// Middleware: counts every response by route template and status.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let key = format!("{} {route}", req.method());
    let is_write = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    ) && (route.starts_with("/v1.0/") || route.starts_with("/beta/"))
        && !route.ends_with("$batch");
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let mut stats = state.stats();
    if is_write && resp.status().is_success() {
        let since = *stats.since.get_or_insert_with(std::time::Instant::now);
        let ms = since.elapsed().as_millis() as u64;
        stats.first_write_ms.get_or_insert(ms);
        stats.last_write_ms = Some(ms);
    }
    stats.total += 1;
    *stats
        .requests
        .entry(key)
        .or_default()
        .entry(status)
        .or_default() += 1;
    if status == 429 {
        stats.throttled += 1;
    }
    resp
}

/// Middleware, outermost (outside the latency and faults, so that a request's added latency
/// counts as time in flight): counts the requests in flight, over all and by method and path
/// shape ([`path_shape`]). The observation endpoints are not counted; `$batch` members are not
/// seen here (their envelope is).
pub async fn in_flight(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/_sandbox") {
        return next.run(req).await;
    }
    let key = format!("{} {}", req.method(), path_shape(path));
    state.stats().enter(&key);
    let _guard = InFlight { state, key };
    next.run(req).await
}

/// A Graph path with its identifiers replaced by `{}` (every segment after the version that
/// holds a digit, `@` or `%`): `/v1.0/users/{}/authentication/methods/{}/resetPassword`. Any
/// other path (the token endpoint) is `(token or other)`.
pub fn path_shape(path: &str) -> String {
    let mut segments = path.trim_start_matches('/').split('/');
    let version = segments.next().unwrap_or_default();
    if version != "v1.0" && version != "beta" {
        return "(token or other)".into();
    }
    let mut shape = format!("/{version}");
    for s in segments {
        shape.push('/');
        if s.chars()
            .any(|c| c.is_ascii_digit() || c == '@' || c == '%')
        {
            shape.push_str("{}");
        } else {
            shape.push_str(s);
        }
    }
    shape
}

/// `GET /_sandbox/stats`.
pub async fn stats(State(state): State<AppState>) -> Response {
    let s = state.stats().clone();
    let mut doc = serde_json::to_value(&s).unwrap_or_default();
    if let Some(obj) = doc.as_object_mut() {
        // the throttling model's and the fault injector's own counters
        obj.insert(
            "throttleModel".into(),
            serde_json::to_value(state.throttler.stats()).unwrap_or_default(),
        );
        obj.insert(
            "faults".into(),
            serde_json::to_value(state.faults.stats()).unwrap_or_default(),
        );
    }
    axum::Json(doc).into_response()
}

/// `POST /_sandbox/other-apps/writes`.
pub async fn other_apps_writes(
    State(state): State<AppState>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let (Some(tenant), Some(writes)) = (body["tenantId"].as_str(), body["writes"].as_u64()) else {
        return (
            StatusCode::BAD_REQUEST,
            "expected {\"tenantId\": string, \"writes\": number}",
        )
            .into_response();
    };
    let id = state
        .read()
        .tenants
        .iter()
        .find(|t| t.id.eq_ignore_ascii_case(tenant))
        .map(|t| t.id.clone());
    let Some(id) = id else {
        return (StatusCode::NOT_FOUND, "no such tenant").into_response();
    };
    let charged = state
        .throttler
        .charge_other_apps(&id, writes, std::time::Instant::now());
    axum::Json(json!({ "charged": charged })).into_response()
}

/// `POST /_sandbox/reset-stats`.
pub async fn reset_stats(State(state): State<AppState>) -> StatusCode {
    let mut stats = state.stats();
    let in_flight = stats.in_flight;
    let by_route = std::mem::take(&mut stats.in_flight_by_route);
    *stats = Stats {
        peak_in_flight: in_flight,
        peak_in_flight_by_route: by_route.clone(),
        in_flight,
        in_flight_by_route: by_route,
        since: Some(std::time::Instant::now()),
        ..Stats::default()
    };
    StatusCode::NO_CONTENT
}

/// `GET /_sandbox/state`.
pub async fn state(State(state): State<AppState>, uri: Uri) -> Response {
    super::server::settle_all(&state);
    let only: Option<String> = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.into_owned())
    });
    let now = state.now();
    let store = state.read();
    let tenants: Vec<Value> = store
        .tenants
        .iter()
        .map(|t| {
            let users: Vec<Value> = t
                .users
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    only.as_ref()
                        .is_none_or(|k| t.user_index(k) == Some(*i))
                })
                .map(|(i, u)| {
                    json!({
                        "id": u.id,
                        "userPrincipalName": u.upn,
                        "displayName": u.display_name,
                        "accountEnabled": u.account_enabled,
                        "forceChangePasswordNextSignIn": u.force_change,
                        "forceChangePasswordNextSignInWithMfa": u.force_change_mfa,
                        "passwordPolicies": u.password_policies,
                        "lastPasswordChangeDateTime": u.last_password_change.to_rfc3339_opts(SecondsFormat::Secs, true),
                        "onPremisesSyncEnabled": u.on_premises_sync_enabled,
                        "onPremisesSecurityIdentifier": u.on_premises_sid,
                        "directoryRoles": u.roles.iter().map(|r| r.name()).collect::<Vec<_>>(),
                        "privileged": t.is_privileged(i),
                        "userType": u.user_type.as_deref().unwrap_or("Member"),
                        "federatedDomain": t.in_federated_domain(&u.upn),
                    })
                })
                .collect();
            let groups: Vec<Value> = if only.is_some() {
                Vec::new()
            } else {
                t.groups
                    .iter()
                    .map(|g| {
                        json!({
                            "id": g.id,
                            "displayName": g.display_name,
                            "members": g.members.iter().map(|m| match *m {
                                super::store::Member::User(u) => t.users[u].id.clone(),
                                super::store::Member::Group(x) => t.groups[x].id.clone(),
                            }).collect::<Vec<_>>(),
                        })
                    })
                    .collect()
            };
            let operations: Vec<Value> = t
                .operations
                .values()
                .map(|op| {
                    json!({
                        "id": op.id,
                        "userId": t.users[op.user].id,
                        "status": op.status_at(now).as_str(),
                    })
                })
                .collect();
            json!({
                "id": t.id,
                "initialDomain": t.initial_domain,
                "domains": t.domains,
                "users": users,
                "groups": groups,
                "operations": operations,
            })
        })
        .collect();
    drop(store);
    axum::Json(json!({ "tenants": tenants })).into_response()
}

/// `POST /_sandbox/users/{id | upn}/changePassword`.
pub async fn change_password(
    State(state): State<AppState>,
    GraphPath(key): GraphPath<String>,
    body: axum::body::Body,
) -> GraphResult<StatusCode> {
    let bytes = super::error::read_body(body, state.runtime.max_body_bytes).await?;
    let new_password = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match super::error::parse_json(&bytes)? {
            Value::Object(m) => match m.get("newPassword") {
                Some(Value::String(s)) => Some(s.clone()),
                None | Some(Value::Null) => None,
                Some(_) => {
                    return Err(GraphError::bad_request(
                        "Invalid value for 'newPassword': a string is expected.",
                    ))
                }
            },
            _ => {
                return Err(GraphError::bad_request(
                    "The request payload must be a JSON object.",
                ))
            }
        }
    };
    let mut store = state.write();
    let found = store
        .tenants
        .iter()
        .enumerate()
        .find_map(|(ti, t)| t.user_index(&key).map(|u| (ti, u)));
    let Some((ti, ui)) = found else {
        return Err(GraphError::resource_not_found(&key));
    };
    if let Some(pw) = &new_password {
        let strong = store.tenants[ti].users[ui].strong_password_required();
        if !crate::password::acceptable(pw, strong) {
            return Err(GraphError::request_bad_request(super::users::WEAK_PASSWORD));
        }
    }
    store.tenants[ti].before_write(
        ui,
        std::time::Instant::now(),
        state.runtime.realism.read_lag,
    );
    let u = &mut store.tenants[ti].users[ui];
    u.password_changed(
        state.now(),
        new_password.as_deref().map(super::seed::password_hash),
    );
    // The force flags are cleared once the user has changed the password: "passwordProfile
    // resource type" says so of forceChangePasswordNextSignInWithMfa, and tenants behave the same
    // way for forceChangePasswordNextSignIn.
    u.force_change = false;
    u.force_change_mfa = false;
    drop(store);
    state.mark_dirty();
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /_sandbox/devicelogin`: instructions (the sandbox has no sign-in page).
pub async fn devicelogin() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "pwdrift sandbox: approve a device code with\n  POST /_sandbox/devicecode/approve {\"user_code\": \"...\", \"username\": \"admin@contoso.com\"}\nor name a deviceCodeAutoApprove user in the seed.\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_shapes_hide_identifiers() {
        assert_eq!(
            path_shape("/v1.0/users/alice@contoso.com/authentication/methods/28c10230-6103-485e-b985-444c60001490/resetPassword"),
            "/v1.0/users/{}/authentication/methods/{}/resetPassword"
        );
        assert_eq!(path_shape("/beta/users/u1"), "/beta/users/{}");
        assert_eq!(path_shape("/v1.0/$batch"), "/v1.0/$batch");
        assert_eq!(path_shape("/tid/oauth2/v2.0/token"), "(token or other)");
    }

    #[test]
    fn peaks_count_overlap_per_shape_and_survive_in_flight_requests() {
        let mut s = Stats::default();
        s.enter("PATCH a");
        s.enter("PATCH a");
        s.enter("GET b");
        s.leave("PATCH a");
        s.enter("PATCH a");
        s.leave("PATCH a");
        assert_eq!(s.peak_in_flight, 3);
        assert_eq!(s.peak_in_flight_by_route["PATCH a"], 2);
        assert_eq!(s.peak_in_flight_by_route["GET b"], 1);
        assert_eq!(s.in_flight, 2);
        s.leave("PATCH a");
        s.leave("GET b");
        s.leave("GET b"); // never below zero
        assert_eq!(s.in_flight, 0);
        assert!(s.in_flight_by_route.is_empty());
    }
}
