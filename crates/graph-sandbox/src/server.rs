//! The HTTP server: shared state, the router, the Graph request pipeline, unknown routes, and the
//! background task (resetPassword operations, `--state` persistence).
//!
//! Request pipeline, outermost first:
//!
//! ```text
//! rewrite_users_key (service level, before routing: `users('{key}')` -> `users/{key}`)
//!   -> faults::fault_middleware (latency and injected faults; Graph routes only)
//!   -> request_ids (request-id / client-request-id, task-local for error bodies)
//!   -> observe::record (counts by route template and status)
//!   -> router: /{tenant}/oauth2/v2.0/{token,devicecode}   (identity platform)
//!              /_sandbox/...                              (observation, outside Graph)
//!              /v1.0/..., /beta/...                       (Graph)
//!                 -> graph_pipeline: bearer token -> Caller -> throttle::Throttler::admit -> handler
//!              batch::batch_routes: POST /v1.0/$batch, /beta/$batch (bearer checked, then
//!                each inner request through the layered router above)
//! ```
//!
//! User keys: Graph documents that a UPN starting with `$` cannot be a path segment and must be
//! addressed as `/users('$x@contoso.com')`. The sandbox accepts the key syntax for any key (in
//! `$batch` urls too) and refuses a `/users/{key}` segment starting with `$` (raw or `%24`,
//! except `$count`) with 400 `BadRequest` "Resource not found for the segment '...'": the exact
//! answer is undocumented, this is the sandbox's guess (Graph reads `$...` as a system segment).
//!
//! Throttling sits inside the Graph routes' own middleware, after authentication, because the
//! model is per app + tenant and depends on the tenant's size; `$batch` inner requests are
//! dispatched through the same router and so are authenticated and throttled one by one.
//!
//! Locking: the store is behind a `std::sync::RwLock`; handlers take it, do synchronous work and
//! drop it before any `.await` (no lock is ever held across an await point).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::error::GraphError;
use super::observe::Stats;
use super::store::Store;

/// Settings that handlers read.
#[derive(Clone, Debug)]
pub struct Runtime {
    pub token_lifetime: u64,
    pub flag_only_patch_noop: bool,
    /// See [`crate::SandboxConfig::synced_flags_refused`].
    pub synced_flags_refused: bool,
    pub reset_operation_duration: Duration,
    pub reset_retry_after: u64,
    pub device_code_interval: u64,
    pub max_body_bytes: usize,
    pub realism: super::Realism,
    /// `--clock-offset`: the sandbox's clock minus the real one (see [`crate::clock`]).
    pub clock_offset: chrono::Duration,
}

/// State shared by every handler.
pub struct Shared {
    store: RwLock<Store>,
    pub stats: Mutex<Stats>,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// HS256 key of the access tokens, drawn at start.
    pub token_key: Vec<u8>,
    /// Binds skip tokens to this tenant set.
    pub skip_secret: String,
    pub runtime: Runtime,
    /// The documented Entra throttling model (`--throttle`).
    pub throttler: super::throttle::Throttler,
    /// Latency and fault injection (`--latency`, `--faults`); layered outermost in [`router`].
    pub faults: Arc<super::faults::FaultInjector>,
    dirty: AtomicBool,
}

pub type AppState = Arc<Shared>;

impl Shared {
    pub fn new(
        store: Store,
        base_url: String,
        runtime: Runtime,
        throttler: super::throttle::Throttler,
        faults: super::faults::FaultInjector,
    ) -> Self {
        use rand::RngCore;
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let skip_secret = store
            .tenants
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Shared {
            store: RwLock::new(store),
            stats: Mutex::new(Stats::default()),
            base_url,
            token_key: key,
            skip_secret,
            runtime,
            throttler,
            faults: Arc::new(faults),
            dirty: AtomicBool::new(false),
        }
    }
    /// Read access (a panic elsewhere never leaves the store unusable).
    pub fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }
    pub fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }
    pub fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// Something changed that `--state` should save.
    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }
    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }
    /// The sandbox's "now": the real clock shifted by `--clock-offset` (see [`crate::clock`]).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.runtime.clock_offset
    }
}

/// The Graph API version of a request path (`v1.0` or `beta`).
pub fn version(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/beta/") {
        "beta"
    } else {
        "v1.0"
    }
}

/// Request extension: the user key of this request came in the `users('{key}')` form.
#[derive(Clone, Copy, Debug)]
pub struct KeyInParens;

/// Percent-decodes a path segment (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/{version}/users('{key}')/rest` (OData key syntax, which Graph documents for UPNs starting
/// with `$`) as `/{version}/users/{key}/rest`; `None` for any other path. A `''` in the key is a
/// `'`.
pub fn users_key_syntax(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    let mut segs = path.split('/');
    segs.next()?; // leading empty
    let version = segs.next()?;
    if version != "v1.0" && version != "beta" {
        return None;
    }
    let raw = segs.next()?;
    let seg = percent_decode(raw);
    if seg.len() < "users('')".len() || !seg[..7].eq_ignore_ascii_case("users('") {
        return None;
    }
    let key = seg[7..].strip_suffix("')")?.replace("''", "'");
    let rest: Vec<&str> = segs.collect();
    let mut new_path = format!("/{version}/users/{}", percent_encode_segment(&key));
    for r in rest {
        new_path.push('/');
        new_path.push_str(r);
    }
    if let Some(q) = uri.query() {
        new_path.push('?');
        new_path.push_str(q);
    }
    new_path.parse().ok()
}

/// The service-level rewrite of `users('{key}')` paths, before routing.
pub fn rewrite_users_key(mut req: Request) -> Request {
    if let Some(uri) = users_key_syntax(req.uri()) {
        *req.uri_mut() = uri;
        req.extensions_mut().insert(KeyInParens);
    }
    req
}

/// A `/users/{key}` path segment that Graph cannot take: a key starting with `$` (other than
/// `$count`) is an OData system segment to Graph; such UPNs must use `users('{key}')`.
fn dollar_key_refused(req: &Request) -> Option<GraphError> {
    if req.extensions().get::<KeyInParens>().is_some() {
        return None;
    }
    let mut segs = req.uri().path().split('/').skip(2);
    if !segs.next()?.eq_ignore_ascii_case("users") {
        return None;
    }
    let raw = segs.next()?;
    let key = percent_decode(raw);
    (key.starts_with('$') && !key.eq_ignore_ascii_case("$count"))
        .then(|| GraphError::segment_not_found(&key))
}

/// Graph routes: authentication, then (when wired) throttling, then the handler.
async fn graph_pipeline(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(e) = dollar_key_refused(&req) {
        return e.into_response();
    }
    let caller = match super::auth::authenticate(&state, req.headers()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if state.runtime.realism.b2c && super::odata::eventual(req.headers()) {
        // Azure AD B2C supports no advanced queries ("Advanced query capabilities on Microsoft
        // Entra ID objects"); reported answers (microsoft-graph-docs #9477, #9856): this.
        return GraphError::request_bad_request("This request is not supported by the service")
            .into_response();
    }
    use super::throttle::{cost, too_many_requests_body, Admission, ThrottleKey};
    let users = state.read().tenants[caller.tenant].users.len();
    let key = ThrottleKey {
        app_id: &caller.app_id,
        tenant_id: &caller.tenant_id,
        tenant_user_count: users,
    };
    let price = cost(req.method(), req.uri().path(), req.uri().query());
    let headers = match state
        .throttler
        .admit(&key, &price, std::time::Instant::now())
    {
        Admission::Throttled { headers, .. } => {
            // the ids of this request, so that body and headers agree (observe::record counts the 429)
            let ids = super::error::current_ids();
            let date = ids.date.format("%Y-%m-%dT%H:%M:%S").to_string();
            let body = too_many_requests_body(&ids.request_id, Some(&ids.client_request_id), &date);
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            resp.headers_mut().extend(headers);
            return resp;
        }
        Admission::Allowed { headers } => headers,
    };
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    resp.headers_mut().extend(headers);
    resp
}

/// The `$batch` envelope itself needs a valid bearer token (Graph answers 401 for the whole
/// request); its inner requests are then authenticated and throttled one by one.
async fn batch_auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Err(e) = super::auth::authenticate(&state, req.headers()) {
        return e.into_response();
    }
    next.run(req).await
}

/// Known Graph route shapes (`*` = a key), to name the unknown segment of a path like Graph does.
const GRAPH_SHAPES: &[&[&str]] = &[
    &[
        "users",
        "*",
        "authentication",
        "methods",
        "*",
        "resetPassword",
    ],
    &["users", "*", "authentication", "operations", "*"],
    &["groups", "*", "transitiveMembers", "microsoft.graph.user"],
    &["me"],
    &["directoryRoles"],
    &["roleManagement", "directory", "roleDefinitions"],
    &["roleManagement", "directory", "roleAssignments"],
    &[
        "roleManagement",
        "directory",
        "roleEligibilityScheduleInstances",
    ],
    &["domains", "*"],
    &["organization"],
    &["identityProtection", "riskyUsers"],
    &["$batch"],
];

/// Unknown routes: under a Graph version, 400 "Resource not found for the segment '...'.";
/// elsewhere 400 "Invalid version" (Graph's answer to an unknown first segment), and 404 under
/// `/_sandbox`.
async fn fallback(uri: Uri) -> GraphError {
    let path = uri.path();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.first() {
        Some(&"v1.0") | Some(&"beta") => {
            let rest = &segs[1..];
            if rest.is_empty() {
                return GraphError::bad_request("Invalid request: no resource was specified.");
            }
            let mut best = 0;
            for shape in GRAPH_SHAPES {
                let n = shape
                    .iter()
                    .zip(rest)
                    .take_while(|(s, r)| **s == "*" || s.eq_ignore_ascii_case(r))
                    .count();
                best = best.max(n);
            }
            let seg = rest[best.min(rest.len() - 1)];
            GraphError::segment_not_found(seg)
        }
        Some(&"_sandbox") => GraphError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("No sandbox endpoint at '{path}'."),
        ),
        Some(first) => GraphError::bad_request(format!("Invalid version: {first}")),
        None => GraphError::bad_request("Invalid version: "),
    }
}

async fn method_not_allowed() -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
}

/// The Graph routes of both versions, with the Graph pipeline.
fn graph_routes(state: &AppState) -> Router<AppState> {
    use super::{groups, reset, roles, units, users};
    let mut r = Router::new();
    for v in ["v1.0", "beta"] {
        r = r
            .route(&format!("/{v}/users"), get(users::list))
            .route(
                &format!("/{v}/users/{{key}}"),
                get(users::get_one).patch(users::patch),
            )
            .route(&format!("/{v}/me"), get(users::me))
            .route(
                &format!("/{v}/users/{{key}}/authentication/methods/{{method}}/resetPassword"),
                post(reset::reset_password),
            )
            .route(
                &format!("/{v}/users/{{key}}/authentication/operations/{{op}}"),
                get(reset::operation),
            )
            .route(&format!("/{v}/groups"), get(groups::list))
            .route(&format!("/{v}/groups/{{id}}"), get(groups::get_one))
            .route(
                &format!("/{v}/groups/{{id}}/transitiveMembers/microsoft.graph.user"),
                get(groups::transitive_users),
            )
            .route(
                &format!("/{v}/directoryRoles"),
                get(groups::directory_roles),
            )
            .route(
                &format!("/{v}/roleManagement/directory/roleDefinitions"),
                get(roles::role_definitions),
            )
            .route(
                &format!("/{v}/roleManagement/directory/roleAssignments"),
                get(roles::role_assignments),
            )
            .route(
                &format!("/{v}/roleManagement/directory/roleEligibilityScheduleInstances"),
                get(roles::eligibility_instances),
            )
            .route(
                &format!("/{v}/directory/administrativeUnits"),
                get(units::list_units),
            )
            .route(
                &format!("/{v}/directory/administrativeUnits/{{id}}/members"),
                get(units::list_unit_members),
            )
            .route(
                &format!(
                    "/{v}/identityGovernance/privilegedAccess/group/eligibilityScheduleInstances"
                ),
                get(units::group_eligibilities),
            )
            .route(
                &format!(
                    "/{v}/identityGovernance/privilegedAccess/group/assignmentScheduleInstances"
                ),
                get(units::group_assignments),
            )
            .route(&format!("/{v}/domains"), get(roles::list_domains))
            .route(&format!("/{v}/organization"), get(roles::list_organization))
            .route(&format!("/{v}/domains/{{id}}"), get(roles::get_domain))
            .route(
                &format!("/{v}/identityProtection/riskyUsers"),
                get(super::risky::list),
            );
    }
    r.route_layer(from_fn_with_state(state.clone(), graph_pipeline))
}

/// The whole application.
pub fn router(state: AppState) -> Router {
    use super::{auth, observe};
    let app: Router<AppState> = graph_routes(&state)
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(auth::devicecode))
        .route("/_sandbox/stats", get(observe::stats))
        .route("/_sandbox/state", get(observe::state))
        .route("/_sandbox/reset-stats", post(observe::reset_stats))
        .route(
            "/_sandbox/other-apps/writes",
            post(observe::other_apps_writes),
        )
        .route(
            "/_sandbox/users/{key}/changePassword",
            post(observe::change_password),
        )
        .route(
            "/_sandbox/devicecode/approve",
            post(auth::approve_device_code),
        )
        .route("/_sandbox/devicelogin", get(observe::devicelogin))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed);
    let app: Router = app.with_state(state.clone());
    // `batch_routes` dispatches each inner request through the router it is given: the layered
    // app, so inner requests get their own request ids, stats, auth and throttling. It is merged
    // beside the unlayered routes before layering once more (it defines no fallback of its own).
    let inner = layered(state.clone(), app.clone());
    let batch =
        super::batch::batch_routes(inner).layer(from_fn_with_state(state.clone(), batch_auth));
    let app = app.merge(batch);
    // Faults and latency hit whole HTTP requests, outermost (outside `request_ids`, because the
    // fault middleware makes request ids of its own for the bodies it injects), and only on the
    // served router, not on the `inner` router of `$batch`.
    let faults = state.faults.clone();
    layered(state.clone(), app)
        .layer(axum::middleware::from_fn_with_state(
            faults,
            super::faults::fault_middleware,
        ))
        // requests in flight are counted around the latency too
        .layer(from_fn_with_state(state.clone(), super::observe::in_flight))
        // outermost: every response, injected faults too, carries the sandbox's clock
        .layer(from_fn_with_state(state, super::clock::date_header))
}

/// The outer layers: request ids (outermost), then stats.
fn layered(state: AppState, app: Router) -> Router {
    app.layer(from_fn_with_state(state, super::observe::record))
        .layer(from_fn(super::error::request_ids))
}

/// Periodic work: settle due resetPassword operations (every 25 ms) and save `--state` when
/// something changed (every `persist_every`).
pub async fn background(
    state: AppState,
    state_file: Option<std::path::PathBuf>,
    persist_every: Duration,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_save = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        settle_all(&state);
        if let Some(path) = &state_file {
            if last_save.elapsed() >= persist_every && state.take_dirty() {
                last_save = tokio::time::Instant::now();
                let st = state.clone();
                let path = path.clone();
                let res = tokio::task::spawn_blocking(move || save_state(&st, &path)).await;
                if let Ok(Err(e)) = res {
                    tracing::warn!("cannot save sandbox state: {e:#}");
                    state.mark_dirty();
                }
            }
        }
    }
}

/// Settles due operations in every tenant; marks the state dirty when a password changed.
pub fn settle_all(state: &AppState) {
    settle_all_at(state, state.now());
}

/// Settles the operations due at `now` (at shutdown: a far `now`, so that a reset accepted
/// with 202 is not lost, as it would not be by Graph).
pub fn settle_all_at(state: &AppState, now: chrono::DateTime<chrono::Utc>) {
    let pending = state
        .read()
        .tenants
        .iter()
        .any(|t| !t.pending_operations.is_empty());
    if !pending {
        return;
    }
    let mut store = state.write();
    let mut changed = false;
    let lag = state.runtime.realism.retain_lag();
    for t in &mut store.tenants {
        changed |= t.settle_operations(now, lag);
    }
    drop(store);
    if changed {
        state.mark_dirty();
    }
}

/// Writes the state file (a seed, with password hashes): to a temporary file, then renamed, with
/// owner-only permissions because it holds the apps' credentials.
///
/// Saves are serialized: the background saver and an explicit save (`RunningSandbox::persist`,
/// shutdown) share one temporary path, and each snapshot is taken under the lock, so the file
/// renamed last holds the newest state (two saves at once lost one rename: `ENOENT`).
pub fn save_state(state: &AppState, path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _saving = SAVING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let seed = state.read().to_seed();
    let json = serde_json::to_vec_pretty(&seed)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_key_syntax_rewrites_only_that_form() {
        let rw = |s: &str| users_key_syntax(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            rw("/v1.0/users('$x@contoso.com')?$select=id").as_deref(),
            Some("/v1.0/users/%24x@contoso.com?$select=id")
        );
        assert_eq!(
            rw("/beta/Users('o''brien@contoso.com')/authentication/operations/1").as_deref(),
            Some("/beta/users/o%27brien@contoso.com/authentication/operations/1")
        );
        assert_eq!(
            rw("/v1.0/users(%27%24x%40contoso.com%27)").as_deref(),
            Some("/v1.0/users/%24x@contoso.com")
        );
        assert_eq!(rw("/v1.0/users/x@contoso.com"), None);
        assert_eq!(rw("/v1.0/users('x"), None);
        assert_eq!(rw("/v2/users('x')"), None);
        assert_eq!(percent_decode("%24a%4"), "$a%4");
        assert_eq!(percent_decode("%e2%82%ac%zz"), "\u{20ac}%zz");
    }
}
