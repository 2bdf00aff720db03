//! The sandbox's self-contained HTTP layers over real loopback HTTP: `$batch` (limits, ids,
//! `dependsOn`/424, out-of-order responses, per-request throttling with inner 429s, per-request
//! validation), the throttling model behind a middleware, and latency/fault injection
//! (deterministic per seed, dropped connections as transport errors).
//!
//! The Graph endpoints here are a tiny router of this file's own (echoing users, a PATCH that
//! records the order it ran in, a route that answers 429, one that fails): what is under test is
//! the layers, which the sandbox core mounts around its real endpoints.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use graph_sandbox::testing::{batch_routes, MAX_BATCH_REQUESTS};
use graph_sandbox::testing::{
    cost, too_many_requests_body, Admission, ThrottleKey, ThrottleMode, Throttler,
};
use graph_sandbox::testing::{fault_middleware, FaultInjector};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Shared state of the test endpoints.
#[derive(Default)]
struct Backend {
    /// Ids of PATCHed users, in the order the PATCHes completed.
    patched: Mutex<Vec<String>>,
    /// Every GET of a user, by id.
    fetched: Mutex<Vec<String>>,
    /// Released by `PATCH users/release`, awaited by `PATCH users/gate`.
    gate: Notify,
    /// Requests that reached a handler.
    handled: AtomicUsize,
}

fn header_str(h: &HeaderMap, name: &str) -> Value {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |s| Value::String(s.to_owned()))
}

async fn get_user(
    State(b): State<Arc<Backend>>,
    Path(id): Path<String>,
    req: Request,
) -> Json<Value> {
    b.handled.fetch_add(1, Ordering::SeqCst);
    b.fetched.lock().unwrap().push(id.clone());
    let h = req.headers();
    Json(json!({
        "id": id,
        "path": req.uri().path(),
        "authorization": header_str(h, "authorization"),
        "consistencyLevel": header_str(h, "consistencylevel"),
        "clientRequestId": header_str(h, "client-request-id"),
        "inBatch": req.extensions().get::<graph_sandbox::testing::InBatch>().map(|b| b.id.clone()),
    }))
}

async fn patch_user(
    State(b): State<Arc<Backend>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    b.handled.fetch_add(1, Ordering::SeqCst);
    if header_str(&headers, "content-type") != "application/json" {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "need json").into_response();
    }
    if serde_json::from_slice::<Value>(&body).is_err() {
        return (StatusCode::BAD_REQUEST, "bad json").into_response();
    }
    match id.as_str() {
        "gate" => b.gate.notified().await,
        "release" => b.gate.notify_one(),
        _ => {}
    }
    b.patched.lock().unwrap().push(id);
    StatusCode::NO_CONTENT.into_response()
}

async fn throttled() -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(too_many_requests_body("rid", None, "2024-01-01T00:00:00")),
    )
        .into_response();
    r.headers_mut().insert("retry-after", "7".parse().unwrap());
    r
}

async fn fail() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": {"code": "Request_ResourceNotFound", "message": "nope"}})),
    )
        .into_response()
}

/// The Graph routes of the test backend, under both versions.
fn graph_routes(backend: Arc<Backend>) -> Router {
    let mut r = Router::new();
    for v in ["/v1.0", "/beta"] {
        r = r
            .route(
                &format!("{v}/users/{{id}}"),
                get(get_user).patch(patch_user),
            )
            .route(&format!("{v}/throttled"), get(throttled))
            .route(&format!("{v}/fail"), get(fail));
    }
    r.with_state(backend)
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> reqwest::Client {
    // The timeout only turns a hang (e.g. a batch run sequentially deadlocking on the gate)
    // into a failure; no assertion depends on timing.
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A backend with `$batch` in front of it.
async fn batch_server() -> (SocketAddr, Arc<Backend>) {
    let backend = Arc::new(Backend::default());
    let inner = graph_routes(backend.clone());
    let app = inner.clone().merge(batch_routes(inner));
    (serve(app).await, backend)
}

async fn post_batch(addr: SocketAddr, version: &str, body: &Value) -> (StatusCode, Value) {
    let r = client()
        .post(format!("http://{addr}/{version}/$batch"))
        .header("authorization", "Bearer outer-token")
        .header("ConsistencyLevel", "eventual")
        .header("client-request-id", "outer-cid")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

/// Responses by id (asserting every id appears once).
fn by_id(envelope: &Value) -> std::collections::HashMap<String, Value> {
    let mut map = std::collections::HashMap::new();
    for r in envelope["responses"].as_array().expect("responses array") {
        let id = r["id"].as_str().unwrap().to_owned();
        assert!(
            map.insert(id.clone(), r.clone()).is_none(),
            "duplicate {id}"
        );
    }
    map
}

/// Twenty GETs: all 200, matched by id (the order is not the request order), each carrying the
/// outer Authorization / ConsistencyLevel / client-request-id unless it overrides them.
#[tokio::test]
async fn batch_of_twenty_runs_every_request_with_outer_headers() {
    let (addr, _) = batch_server().await;
    let mut requests: Vec<Value> = (1..=MAX_BATCH_REQUESTS)
        .map(|i| json!({"id": format!("r{i}"), "method": "GET", "url": format!("/users/u{i}?$select=id")}))
        .collect();
    requests[4]["headers"] =
        json!({"ConsistencyLevel": "session", "Authorization": "Bearer inner"});
    requests[5]["url"] = json!("users/u6"); // no leading slash
    let (status, env) = post_batch(addr, "v1.0", &json!({"requests": requests})).await;
    assert_eq!(status, 200, "{env}");
    let order: Vec<&str> = env["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let request_order: Vec<String> = (1..=20).map(|i| format!("r{i}")).collect();
    assert_ne!(
        order, request_order,
        "responses must not come back in request order"
    );
    let map = by_id(&env);
    assert_eq!(map.len(), 20);
    for i in 1..=20 {
        let r = &map[&format!("r{i}")];
        assert_eq!(r["status"], 200);
        assert_eq!(r["body"]["id"], format!("u{i}"));
        assert_eq!(r["body"]["path"], format!("/v1.0/users/u{i}"));
        assert_eq!(r["body"]["inBatch"], format!("r{i}"));
        assert_eq!(r["body"]["clientRequestId"], "outer-cid");
        let ct = r["headers"]["Content-Type"].as_str().unwrap();
        assert!(ct.starts_with("application/json"), "{ct}");
        if i == 5 {
            assert_eq!(r["body"]["consistencyLevel"], "session");
            assert_eq!(r["body"]["authorization"], "Bearer inner");
        } else {
            assert_eq!(r["body"]["consistencyLevel"], "eventual");
            assert_eq!(r["body"]["authorization"], "Bearer outer-token");
        }
    }

    // The same batch on /beta runs against the beta routes, in the same (reproducible) order.
    let (status, env2) = post_batch(addr, "beta", &json!({"requests": requests})).await;
    assert_eq!(status, 200);
    assert_eq!(by_id(&env2)["r3"]["body"]["path"], "/beta/users/u3");
    let order2: Vec<&str> = env2["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, order2);
}

/// Envelope-level errors: 21 requests, duplicate ids (case-insensitive), unknown dependsOn,
/// cycles, malformed JSON, an empty batch and an oversized body. Nothing runs.
#[tokio::test]
async fn envelope_errors_reject_the_whole_batch() {
    let (addr, backend) = batch_server().await;
    let get = |id: &str| json!({"id": id, "method": "GET", "url": "/users/x"});

    let many: Vec<Value> = (0..21).map(|i| get(&i.to_string())).collect();
    let (status, body) = post_batch(addr, "v1.0", &json!({"requests": many})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BadRequest");
    assert_eq!(
        body["error"]["message"],
        "Number of batch requests exceeds the maximum of 20."
    );
    assert_eq!(
        body["error"]["innerError"]["client-request-id"],
        "outer-cid"
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
    assert!(body["error"]["innerError"]["date"].is_string());

    let (status, body) = post_batch(
        addr,
        "v1.0",
        &json!({"requests": [get("abc"), get("x"), get("ABC")]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'ABC' is duplicated"));

    let mut dep = get("2");
    dep["dependsOn"] = json!(["nope"]);
    let (status, body) = post_batch(addr, "v1.0", &json!({"requests": [get("1"), dep]})).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'nope'"));

    let mut a = get("a");
    a["dependsOn"] = json!(["b"]);
    let mut b = get("b");
    b["dependsOn"] = json!(["A"]);
    let (status, body) = post_batch(addr, "v1.0", &json!({"requests": [a, b]})).await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().contains("cycle"));

    let (status, _) = post_batch(addr, "v1.0", &json!({"requests": []})).await;
    assert_eq!(status, 400);

    for raw in ["{not json", r#"{"requests": [{"id": "1"}]}"#, "[]"] {
        let r = client()
            .post(format!("http://{addr}/v1.0/$batch"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{raw}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["message"], "Invalid batch payload format.");
    }

    let huge = format!(r#"{{"requests": [], "pad": "{}"}}"#, "x".repeat(5 << 20));
    let r = client()
        .post(format!("http://{addr}/v1.0/$batch"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RequestEntityTooLarge");

    assert_eq!(backend.handled.load(Ordering::SeqCst), 0, "nothing may run");
}

/// `dependsOn`: a request runs only after its dependencies (the gate PATCH blocks until a
/// concurrent PATCH releases it, which also proves independent requests run concurrently);
/// a failed dependency gives 424 without running the dependant, transitively.
#[tokio::test]
async fn depends_on_orders_requests_and_fails_dependants_with_424() {
    let (addr, backend) = batch_server().await;
    let patch = |id: &str, user: &str| {
        json!({"id": id, "method": "PATCH", "url": format!("/users/{user}"),
               "headers": {"Content-Type": "application/json"},
               "body": {"passwordProfile": {"forceChangePasswordNextSignIn": true}}})
    };
    let mut after_gate = patch("3", "after");
    after_gate["dependsOn"] = json!(["1"]);
    let failing = json!({"id": "4", "method": "GET", "url": "/fail"});
    let skipped = json!({"id": "5", "method": "GET", "url": "/users/skipped", "dependsOn": ["4"]});
    let skipped_too =
        json!({"id": "6", "method": "GET", "url": "/users/skipped2", "dependsOn": ["5", "2"]});
    let requests = json!({"requests": [
        patch("1", "gate"), after_gate, patch("2", "release"), failing, skipped, skipped_too
    ]});
    let (status, env) = post_batch(addr, "v1.0", &requests).await;
    assert_eq!(status, 200, "{env}");
    let map = by_id(&env);
    assert_eq!(map["1"]["status"], 204);
    assert!(map["1"].get("body").is_none(), "204 has no body");
    assert_eq!(map["2"]["status"], 204);
    assert_eq!(map["3"]["status"], 204);
    assert_eq!(map["4"]["status"], 404);
    assert_eq!(
        map["4"]["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    for id in ["5", "6"] {
        assert_eq!(map[id]["status"], 424, "{id}");
        assert_eq!(map[id]["body"]["error"]["code"], "FailedDependency");
    }
    assert_eq!(
        *backend.patched.lock().unwrap(),
        vec!["release", "gate", "after"],
        "the dependant ran after its dependency"
    );
    assert!(
        backend.fetched.lock().unwrap().is_empty(),
        "requests with a failed dependency must not run"
    );
}

/// Per-request validation: a body without Content-Type, an absolute URL, a nested batch, an
/// unknown method, and a request depending on a rejected one. The envelope is still 200 and the
/// valid requests run.
#[tokio::test]
async fn invalid_members_fail_alone() {
    let (addr, backend) = batch_server().await;
    let requests = json!({"requests": [
        {"id": "no-ct", "method": "PATCH", "url": "/users/a", "body": {"accountEnabled": true}},
        {"id": "abs", "method": "GET", "url": "https://graph.microsoft.com/v1.0/users/b"},
        {"id": "nested", "method": "POST", "url": "/$batch", "headers": {"Content-Type": "application/json"}, "body": {"requests": []}},
        {"id": "verb", "method": "TRACE", "url": "/users/c"},
        {"id": "dep", "method": "GET", "url": "/users/d", "dependsOn": ["no-ct"]},
        {"id": "ok", "method": "GET", "url": "/users/e"},
        {"id": "inner-429", "method": "GET", "url": "/throttled"}
    ]});
    let (status, env) = post_batch(addr, "v1.0", &requests).await;
    assert_eq!(status, 200, "{env}");
    let map = by_id(&env);
    for id in ["no-ct", "abs", "nested", "verb"] {
        assert_eq!(map[id]["status"], 400, "{id}: {}", map[id]);
        assert_eq!(map[id]["body"]["error"]["code"], "BadRequest");
    }
    assert!(map["no-ct"]["body"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Content-Type"));
    assert_eq!(map["dep"]["status"], 424);
    assert_eq!(map["ok"]["status"], 200);
    // An inner 429 is that response's status, with its own Retry-After.
    assert_eq!(map["inner-429"]["status"], 429);
    assert_eq!(map["inner-429"]["headers"]["Retry-After"], "7");
    assert_eq!(map["inner-429"]["body"]["error"]["code"], "TooManyRequests");
    assert_eq!(*backend.fetched.lock().unwrap(), vec!["e"]);
    assert!(backend.patched.lock().unwrap().is_empty());
}

/// The throttler as the core will use it: a middleware admitting every Graph request. Inner
/// requests of a batch are charged one by one, so a batch larger than the remaining quota gets
/// some 429s with Retry-After and the throttle headers, and the rest succeed.
#[tokio::test]
async fn batch_members_are_throttled_individually() {
    struct Throttle {
        throttler: Throttler,
        frozen: Instant,
    }
    async fn admit(State(t): State<Arc<Throttle>>, req: Request, next: Next) -> Response {
        let c = cost(req.method(), req.uri().path(), req.uri().query());
        let key = ThrottleKey {
            app_id: "app",
            tenant_id: "tenant",
            tenant_user_count: 10,
        };
        // Time stands still in this test, so nothing frees up while it runs.
        match t.throttler.admit(&key, &c, t.frozen) {
            Admission::Allowed { headers } => {
                let mut r = next.run(req).await;
                r.headers_mut().extend(headers);
                r
            }
            Admission::Throttled { headers, .. } => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(too_many_requests_body("rid", None, "2024-01-01T00:00:00")),
                )
                    .into_response();
                r.headers_mut().extend(headers);
                r
            }
        }
    }
    // scaled:875 leaves ceil(3,500 / 875) = 4 RU per window.
    let state = Arc::new(Throttle {
        throttler: Throttler::new(ThrottleMode::Scaled(875)),
        frozen: Instant::now(),
    });
    let backend = Arc::new(Backend::default());
    let inner = graph_routes(backend.clone()).layer(from_fn_with_state(state.clone(), admit));
    let addr = serve(inner.clone().merge(batch_routes(inner))).await;

    let requests: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("g{i}"), "method": "GET", "url": format!("/users/u{i}")}))
        .collect();
    let (status, env) = post_batch(addr, "v1.0", &json!({"requests": requests})).await;
    assert_eq!(status, 200, "the envelope itself is not throttled");
    let map = by_id(&env);
    let ok: Vec<&Value> = map.values().filter(|r| r["status"] == 200).collect();
    let limited: Vec<&Value> = map.values().filter(|r| r["status"] == 429).collect();
    assert_eq!((ok.len(), limited.len()), (4, 6), "{env}");
    for r in ok {
        assert_eq!(r["headers"]["x-ms-resource-unit"], "1");
    }
    for r in limited {
        let retry: u64 = r["headers"]["Retry-After"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1);
        assert_eq!(
            r["headers"]["x-ms-throttle-scope"],
            "Tenant_Application/ReadWrite/app/tenant"
        );
        assert_eq!(
            r["headers"]["x-ms-throttle-information"],
            "ResourceUnitLimitExceeded"
        );
        assert_eq!(r["body"]["error"]["code"], "TooManyRequests");
    }
    assert_eq!(backend.fetched.lock().unwrap().len(), 4);
    let stats = state.throttler.stats();
    assert_eq!((stats.admitted, stats.throttled), (4, 6));

    // A direct request is throttled the same way.
    let r = client()
        .get(format!("http://{addr}/v1.0/users/direct"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

/// A backend behind the fault layer, plus a route outside the Graph namespace.
async fn faulty_server(
    spec: &str,
    latency: Option<&str>,
    seed: u64,
) -> (SocketAddr, Arc<Backend>, Arc<FaultInjector>) {
    let backend = Arc::new(Backend::default());
    let injector = Arc::new(FaultInjector::new(
        Some(spec.parse().unwrap()),
        latency.map(|l| l.parse().unwrap()),
        seed,
    ));
    let app = graph_routes(backend.clone())
        .route("/_sandbox/ping", get(|| async { "pong" }))
        .route("/tenant/oauth2/v2.0/token", get(|| async { "token" }))
        .layer(from_fn_with_state(injector.clone(), fault_middleware));
    (serve(app).await, backend, injector)
}

/// Same seed, same order of requests: the same statuses; the injected failures have Graph's
/// shapes; token and `/_sandbox` endpoints are never faulted.
#[tokio::test]
async fn faults_are_deterministic_per_seed_and_shaped_like_graph() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let (addr, _, inj) = faulty_server("429=0.2,500=0.2,503=0.2", Some("1+-1"), seed).await;
        let c = client();
        let mut out = Vec::new();
        for i in 0..40 {
            let r = c
                .get(format!("http://{addr}/v1.0/users/u{i}"))
                .header("client-request-id", format!("cid-{i}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = r.json().await.unwrap();
            match status {
                200 => assert_eq!(body["id"], format!("u{i}")),
                429 => {
                    assert_eq!(retry.as_deref(), Some("1"));
                    assert_eq!(body["error"]["code"], "TooManyRequests");
                    assert_eq!(body["error"]["message"], "Please retry again later.");
                    assert_eq!(
                        body["error"]["innerError"]["client-request-id"],
                        format!("cid-{i}")
                    );
                }
                500 => assert_eq!(body["error"]["code"], "InternalServerError"),
                503 => {
                    assert_eq!(retry.as_deref(), Some("1"));
                    assert_eq!(body["error"]["code"], "ServiceUnavailable");
                }
                other => panic!("unexpected status {other}"),
            }
            out.push(status);
        }
        let stats = inj.stats();
        assert_eq!(stats.requests, 40);
        let count = |s| out.iter().filter(|&&x| x == s).count() as u64;
        assert_eq!(
            (stats.injected_429, stats.injected_500, stats.injected_503),
            (count(429), count(500), count(503))
        );
        out
    }
    let first = statuses(42).await;
    assert_eq!(first, statuses(42).await);
    for s in [200, 429, 500, 503] {
        assert!(first.contains(&s), "{s} missing from {first:?}");
    }
    assert_ne!(first, statuses(43).await);

    let (addr, _, inj) = faulty_server("500=1", None, 1).await;
    let c = client();
    for path in ["_sandbox/ping", "tenant/oauth2/v2.0/token"] {
        let r = c.get(format!("http://{addr}/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = c
        .get(format!("http://{addr}/beta/users/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(inj.stats().injected_500, 1);
}

/// A dropped connection is a transport error for the client, never a status; the request was
/// processed all the same, and the server keeps serving.
#[tokio::test]
async fn dropped_connections_are_transport_errors() {
    let (addr, backend, inj) = faulty_server("drop=1", None, 7).await;
    let c = client();
    for i in 0..3 {
        let outcome = c
            .patch(format!("http://{addr}/v1.0/users/d{i}"))
            .json(&json!({"passwordProfile": {"forceChangePasswordNextSignIn": true}}))
            .send()
            .await;
        match outcome {
            Err(e) => assert!(!e.is_status(), "{e}"),
            Ok(resp) => {
                let status = resp.status();
                assert!(
                    resp.bytes().await.is_err(),
                    "a dropped response must not complete (status {status})"
                );
            }
        }
    }
    assert_eq!(*backend.patched.lock().unwrap(), vec!["d0", "d1", "d2"]);
    assert_eq!(inj.stats().dropped, 3);
    let r = c
        .get(format!("http://{addr}/_sandbox/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "pong");

    // Slow responses pass through.
    let (addr, _, inj) = faulty_server("slow=1,slow_ms=2", None, 7).await;
    let r = c
        .get(format!("http://{addr}/v1.0/users/s"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(inj.stats().slow, 1);
}
