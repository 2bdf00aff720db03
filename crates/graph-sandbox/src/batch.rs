//! JSON batching (`POST /v1.0/$batch`, `POST /beta/$batch`) for the Graph sandbox.
//!
//! [`batch_routes`] wraps the router that serves the individual Graph endpoints (`inner`) and
//! answers batch envelopes by dispatching every inner request through `inner` itself, so that
//! authentication, permission checks and throttling apply to each inner request exactly as they
//! would to a direct one: an inner request that is throttled comes back as that response's
//! `status: 429` with its own `Retry-After` in `headers`.
//!
//! # Rules (Microsoft Graph JSON batching)
//!
//! - The envelope is `{"requests":[{id, method, url, headers?, body?, dependsOn?}]}`, at most
//!   [`MAX_BATCH_REQUESTS`] (20) requests, body at most [`MAX_BATCH_BODY_BYTES`] (4 MiB: 413).
//!   Malformed JSON, more than 20 requests, none, an empty or duplicate id (ids compare
//!   case-insensitively), a `dependsOn` naming an id that is not in the batch, or a dependency
//!   cycle: 400 for the whole envelope, with Graph's error body.
//! - Otherwise the envelope is 200 and each request gets its own response. Checked per request
//!   (400 for that request only): the method (GET, POST, PATCH, PUT, DELETE), the url (relative to
//!   the version of the batch endpoint: `/users/{id}` or `users/{id}` under `/v1.0/$batch` runs as
//!   `/v1.0/users/{id}`; an absolute URL or a nested `$batch` is refused), header names and values,
//!   and a `body` without a `Content-Type` header in that request's `headers`.
//! - A request runs after everything it `dependsOn`. If a dependency failed (status >= 400,
//!   including a 424), it is not run and gets 424 `FailedDependency`. Requests whose
//!   dependencies are settled run concurrently (in waves, each wave a join of `oneshot` calls).
//! - Each inner request carries the outer request's headers (`Authorization`,
//!   `client-request-id`, `ConsistencyLevel`, `Host`, ...; not the framing headers
//!   `Content-Length`, `Content-Type`, `Transfer-Encoding`, ...) overridden by its own `headers`,
//!   and the [`InBatch`] extension (so the core can tell batch members apart, e.g. in stats).
//! - Response bodies are JSON when they parse as JSON, absent when empty (204), and otherwise
//!   base64, as Graph does for binary content.
//!
//! # Lost responses
//!
//! With `lost=RATE` in `--faults`, each `PATCH`/`POST` member draws (in the order of `requests`,
//! before any member runs): a hit is applied and then answered `504 GatewayTimeout` in its
//! response; the whole envelope can be lost too (the envelope is a `POST`).
//!
//! # Response order
//!
//! Graph documents that responses may come back in any order, and clients must match them by
//! id. To make a client that relies on order fail in tests, the responses are shuffled with a
//! generator seeded from the ids (so the order is reproducible for a given batch), and when
//! that happens to reproduce the request order of two or more requests, rotated by one.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use futures_util::StreamExt;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tower::ServiceExt;

use serde::{Deserialize, Serialize};

/// Graph's limit on requests in one batch.
pub const MAX_BATCH_REQUESTS: usize = 20;
/// Largest batch envelope accepted (413 beyond).
pub const MAX_BATCH_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Largest inner response body the batch will embed (500 beyond).
const MAX_INNER_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// One request of a `$batch` envelope, as Graph documents it ("Combine multiple requests in one
/// HTTP call using JSON batching"). The sandbox's own wire type: it shares nothing with pwdrift's.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BatchRequest {
    pub id: String,
    pub method: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default, rename = "dependsOn", skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
}

/// `{"requests": [...]}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BatchRequestEnvelope {
    pub requests: Vec<BatchRequest>,
}

/// One response of a `$batch` response envelope.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BatchResponse {
    pub id: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// `{"responses": [...]}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct BatchResponseEnvelope {
    pub responses: Vec<BatchResponse>,
}

/// Request extension on every inner request of a batch: the inner request's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InBatch {
    pub id: String,
}

/// A router serving `POST /v1.0/$batch` and `POST /beta/$batch` by dispatching the inner
/// requests through `inner` (see the module documentation). Merge it beside `inner`:
/// `inner.clone().merge(batch_routes(inner))`.
pub fn batch_routes(inner: Router) -> Router {
    let v1 = inner.clone();
    Router::new()
        .route(
            "/v1.0/$batch",
            post(move |req: Request| handle(v1.clone(), "/v1.0", req)),
        )
        .route(
            "/beta/$batch",
            post(move |req: Request| handle(inner.clone(), "/beta", req)),
        )
}

/// A Graph error body with `innerError`.
fn graph_error(
    status: StatusCode,
    code: &str,
    message: &str,
    outer: &HeaderMap,
) -> (StatusCode, serde_json::Value) {
    let mut inner = serde_json::Map::new();
    inner.insert(
        "date".into(),
        chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
            .into(),
    );
    inner.insert("request-id".into(), uuid::Uuid::new_v4().to_string().into());
    if let Some(c) = outer.get("client-request-id").and_then(|v| v.to_str().ok()) {
        inner.insert("client-request-id".into(), c.into());
    }
    (
        status,
        serde_json::json!({"error": {"code": code, "message": message, "innerError": inner}}),
    )
}

fn envelope_error(status: StatusCode, code: &str, message: &str, outer: &HeaderMap) -> Response {
    let (status, body) = graph_error(status, code, message, outer);
    (status, axum::Json(body)).into_response()
}

async fn handle(inner: Router, version: &'static str, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let outer = parts.headers;
    let bad =
        |message: &str| envelope_error(StatusCode::BAD_REQUEST, "BadRequest", message, &outer);

    let too_large = || {
        envelope_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("The batch request body exceeds the maximum of {MAX_BATCH_BODY_BYTES} bytes."),
            &outer,
        )
    };
    let declared = outer
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BATCH_BODY_BYTES as u64) {
        return too_large();
    }
    let mut raw = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) if raw.len() + bytes.len() > MAX_BATCH_BODY_BYTES => return too_large(),
            Ok(bytes) => raw.extend_from_slice(&bytes),
            Err(_) => return bad("The request body could not be read."),
        }
    }

    let envelope: BatchRequestEnvelope = match serde_json::from_slice(&raw) {
        Ok(e) => e,
        Err(_) => return bad("Invalid batch payload format."),
    };
    let requests = envelope.requests;
    if requests.is_empty() {
        return bad("The batch request must contain at least one request.");
    }
    if requests.len() > MAX_BATCH_REQUESTS {
        return bad(&format!(
            "Number of batch requests exceeds the maximum of {MAX_BATCH_REQUESTS}."
        ));
    }
    // Ids: non-empty, unique case-insensitively.
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        if r.id.trim().is_empty() {
            return bad("Every request in a batch needs a non-empty id.");
        }
        if index.insert(r.id.to_lowercase(), i).is_some() {
            return bad(&format!(
                "Batch request ids must be unique (case-insensitively); '{}' is duplicated.",
                r.id
            ));
        }
    }
    // Dependencies: known ids, no cycles.
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(requests.len());
    for r in &requests {
        let mut mine = Vec::new();
        for d in r.depends_on.iter().flatten() {
            match index.get(&d.to_lowercase()) {
                Some(&j) => mine.push(j),
                None => {
                    return bad(&format!(
                        "Request '{}' depends on '{d}', which is not in the batch.",
                        r.id
                    ))
                }
            }
        }
        deps.push(mine);
    }
    if has_cycle(&deps) {
        return bad("The dependsOn references of the batch form a cycle.");
    }

    let connect_info = parts.extensions.get::<ConnectInfo<SocketAddr>>().copied();
    // `lost` faults of members, drawn in request order before anything runs (deterministic).
    let injector = parts
        .extensions
        .get::<std::sync::Arc<super::faults::FaultInjector>>()
        .cloned();
    let lost: Vec<bool> = requests
        .iter()
        .map(|r| {
            let write = ["PATCH", "POST"].contains(&r.method.to_ascii_uppercase().as_str());
            write && injector.as_ref().is_some_and(|i| i.decide_batch_member())
        })
        .collect();
    let mut responses: Vec<Option<BatchResponse>> = vec![None; requests.len()];
    loop {
        let mut wave: Vec<(usize, Request)> = Vec::new();
        let mut settled_any = false;
        for i in 0..requests.len() {
            if responses[i].is_some() || deps[i].iter().any(|&j| responses[j].is_none()) {
                continue;
            }
            let failed = deps[i]
                .iter()
                .any(|&j| responses[j].as_ref().is_some_and(|r| r.status >= 400));
            if failed {
                let (status, body) = graph_error(
                    StatusCode::FAILED_DEPENDENCY,
                    "FailedDependency",
                    "The request was not run because a request it depends on failed.",
                    &outer,
                );
                responses[i] = Some(json_response(&requests[i].id, status, body));
                settled_any = true;
                continue;
            }
            match build_inner(&requests[i], version, &outer, connect_info.as_ref()) {
                Ok(req) => wave.push((i, req)),
                Err(message) => {
                    let (status, body) =
                        graph_error(StatusCode::BAD_REQUEST, "BadRequest", &message, &outer);
                    responses[i] = Some(json_response(&requests[i].id, status, body));
                    settled_any = true;
                }
            }
        }
        if wave.is_empty() {
            if settled_any {
                continue;
            }
            break;
        }
        let calls = wave.into_iter().map(|(i, req)| {
            let inner = inner.clone();
            let id = requests[i].id.clone();
            let outer = &outer;
            let lost = lost[i];
            async move {
                let r = dispatch(inner, id.clone(), req, outer).await;
                if lost {
                    // Applied; its response is lost.
                    let body = super::faults::gateway_timeout_body(
                        outer.get("client-request-id").and_then(|v| v.to_str().ok()),
                    );
                    drop(r);
                    return (i, json_response(&id, StatusCode::GATEWAY_TIMEOUT, body));
                }
                (i, r)
            }
        });
        for (i, response) in futures_util::future::join_all(calls).await {
            responses[i] = Some(response);
        }
    }

    let mut responses: Vec<BatchResponse> = responses
        .into_iter()
        .map(|r| r.expect("every request settles: dependencies are acyclic"))
        .collect();
    shuffle(&mut responses);
    let mut out = (
        StatusCode::OK,
        axum::Json(BatchResponseEnvelope { responses }),
    )
        .into_response();
    if let Some(c) = outer.get("client-request-id") {
        out.headers_mut().insert("client-request-id", c.clone());
    }
    out
}

fn has_cycle(deps: &[Vec<usize>]) -> bool {
    // Kahn's algorithm: repeatedly settle requests whose dependencies are settled.
    let mut settled = vec![false; deps.len()];
    let mut progress = true;
    while progress {
        progress = false;
        for i in 0..deps.len() {
            if !settled[i] && deps[i].iter().all(|&j| settled[j]) {
                settled[i] = true;
                progress = true;
            }
        }
    }
    settled.iter().any(|s| !s)
}

/// Framing and hop-by-hop headers of the outer request that must not reach inner requests.
const NOT_INHERITED: [HeaderName; 8] = [
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::EXPECT,
    header::TE,
    header::UPGRADE,
];

/// Turns one batch member into an HTTP request for `inner`, or the message of its 400.
fn build_inner(
    r: &BatchRequest,
    version: &str,
    outer: &HeaderMap,
    connect_info: Option<&ConnectInfo<SocketAddr>>,
) -> Result<Request, String> {
    let method = match r.method.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PATCH" => Method::PATCH,
        "PUT" => Method::PUT,
        "DELETE" => Method::DELETE,
        other => {
            return Err(format!(
                "Method '{other}' is not supported in a batch request."
            ))
        }
    };
    let url = r.url.trim();
    if url.contains("://") || url.starts_with("//") {
        return Err(format!(
            "The url '{url}' is absolute; batch request urls are relative to the version, e.g. '/users/{{id}}'."
        ));
    }
    let url = if url.starts_with('/') {
        url.to_owned()
    } else {
        format!("/{url}")
    };
    let path_end = url.find(['?', '#']).unwrap_or(url.len());
    if url[..path_end]
        .trim_end_matches('/')
        .eq_ignore_ascii_case("/$batch")
    {
        return Err("A batch request cannot contain another batch.".into());
    }
    let uri: Uri = format!("{version}{url}")
        .parse()
        .map_err(|_| format!("The url '{url}' is not a valid relative URL."))?;

    let mut headers = outer.clone();
    for name in NOT_INHERITED {
        headers.remove(name);
    }
    let mut content_type: Option<String> = None;
    for (name, value) in r.headers.iter().flatten() {
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => value.to_string(),
            _ => return Err(format!("The value of header '{name}' must be a string.")),
        };
        let header_name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("'{name}' is not a valid header name."))?;
        let header_value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("The value of header '{name}' is not a valid header value."))?;
        if header_name == header::CONTENT_TYPE {
            content_type = Some(value);
        }
        headers.insert(header_name, header_value);
    }

    let body = match &r.body {
        None | Some(serde_json::Value::Null) => Body::empty(),
        Some(value) => {
            let Some(ct) = &content_type else {
                return Err(
                    "A request with a body needs a Content-Type header in its headers.".into(),
                );
            };
            let bytes = match value {
                serde_json::Value::String(s) if !ct.to_ascii_lowercase().contains("json") => {
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .unwrap_or_else(|_| s.clone().into_bytes())
                }
                v => serde_json::to_vec(v).expect("a JSON value serialises"),
            };
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            Body::from(bytes)
        }
    };

    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    // `users('{key}')`, as on the served router.
    let mut req = super::server::rewrite_users_key(req);
    req.extensions_mut().insert(InBatch { id: r.id.clone() });
    if let Some(ci) = connect_info {
        req.extensions_mut().insert(*ci);
    }
    Ok(req)
}

/// Runs one inner request through `inner` and packs its response.
async fn dispatch(inner: Router, id: String, req: Request, outer: &HeaderMap) -> BatchResponse {
    let response = match inner.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_INNER_RESPONSE_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            // The inner response could not be read (e.g. an injected dropped connection).
            let (status, body) = graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "The response of this request was lost.",
                outer,
            );
            return json_response(&id, status, body);
        }
    };
    let mut headers = serde_json::Map::new();
    for (name, value) in &parts.headers {
        if matches!(
            *name,
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION
        ) {
            continue;
        }
        if let Ok(v) = value.to_str() {
            headers.insert(display_name(name).to_owned(), v.into());
        }
    }
    let body = if bytes.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            base64::engine::general_purpose::STANDARD
                .encode(&bytes)
                .into()
        }))
    };
    BatchResponse {
        id,
        status: parts.status.as_u16(),
        headers: (!headers.is_empty()).then_some(headers),
        body,
    }
}

/// The spelling Graph uses for the usual headers in batch responses; others stay lower case.
/// Clients must compare header names case-insensitively anyway.
fn display_name(name: &HeaderName) -> &str {
    match name.as_str() {
        "content-type" => "Content-Type",
        "retry-after" => "Retry-After",
        "location" => "Location",
        "cache-control" => "Cache-Control",
        "odata-version" => "OData-Version",
        "etag" => "ETag",
        "content-location" => "Content-Location",
        "preference-applied" => "Preference-Applied",
        other => other,
    }
}

fn json_response(id: &str, status: StatusCode, body: serde_json::Value) -> BatchResponse {
    let mut headers = serde_json::Map::new();
    headers.insert("Content-Type".into(), "application/json".into());
    BatchResponse {
        id: id.to_owned(),
        status: status.as_u16(),
        headers: Some(headers),
        body: Some(body),
    }
}

/// Reproducible shuffle seeded from the ids; never the request order for two or more.
fn shuffle(responses: &mut [BatchResponse]) {
    // FNV-1a over the lower-cased ids.
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for r in responses.iter() {
        for b in r.id.to_lowercase().bytes().chain([0]) {
            seed ^= u64::from(b);
            seed = seed.wrapping_mul(0x0100_0000_01b3);
        }
    }
    let original: Vec<String> = responses.iter().map(|r| r.id.clone()).collect();
    responses.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    if responses.len() > 1 && responses.iter().map(|r| &r.id).eq(original.iter()) {
        responses.rotate_left(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responses(ids: &[&str]) -> Vec<BatchResponse> {
        ids.iter()
            .map(|id| BatchResponse {
                id: (*id).to_owned(),
                status: 200,
                headers: None,
                body: None,
            })
            .collect()
    }

    #[test]
    fn shuffle_is_reproducible_and_never_the_request_order() {
        for n in 1..=MAX_BATCH_REQUESTS {
            for prefix in ["", "req-", "X"] {
                let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let mut a = responses(&ids);
                let mut b = responses(&ids);
                shuffle(&mut a);
                shuffle(&mut b);
                let order: Vec<&str> = a.iter().map(|r| r.id.as_str()).collect();
                assert_eq!(
                    order,
                    b.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
                    "reproducible"
                );
                if n > 1 {
                    assert_ne!(order, ids, "n={n}");
                }
                let mut sorted = order.clone();
                sorted.sort();
                let mut expected = ids.clone();
                expected.sort();
                assert_eq!(sorted, expected, "a permutation");
            }
        }
    }

    #[test]
    fn cycles() {
        assert!(!has_cycle(&[vec![], vec![0], vec![0, 1]]));
        assert!(
            !has_cycle(&[vec![2], vec![], vec![1]]),
            "later ids are fine"
        );
        assert!(has_cycle(&[vec![0]]), "self-dependency");
        assert!(has_cycle(&[vec![], vec![2], vec![1]]));
    }

    #[test]
    fn inner_request_building() {
        let mut outer = HeaderMap::new();
        outer.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        outer.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        outer.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        outer.insert(header::HOST, HeaderValue::from_static("127.0.0.1:1"));
        let r: BatchRequest = serde_json::from_value(serde_json::json!({
            "id": "1", "method": "patch", "url": "users/a?$select=id",
            "headers": {"Content-Type": "application/json", "If-Match": "*"},
            "body": {"x": 1}
        }))
        .unwrap();
        let req = build_inner(&r, "/beta", &outer, None).unwrap();
        assert_eq!(req.method(), Method::PATCH);
        assert_eq!(req.uri(), "/beta/users/a?$select=id");
        let h = req.headers();
        assert_eq!(h[header::AUTHORIZATION], "Bearer t");
        assert_eq!(h[header::HOST], "127.0.0.1:1");
        assert_eq!(h[header::CONTENT_LENGTH], "7");
        assert_eq!(h["if-match"], "*");
        assert_eq!(req.extensions().get::<InBatch>().unwrap().id, "1");

        let bad = |v: serde_json::Value| {
            let r: BatchRequest = serde_json::from_value(v).unwrap();
            build_inner(&r, "/v1.0", &outer, None).unwrap_err()
        };
        assert!(
            bad(serde_json::json!({"id": "1", "method": "GET", "url": "http://x/users"}))
                .contains("absolute")
        );
        assert!(
            bad(serde_json::json!({"id": "1", "method": "POST", "url": "/$batch/"}))
                .contains("another batch")
        );
        assert!(
            bad(serde_json::json!({"id": "1", "method": "GET", "url": "/users/a b"}))
                .contains("not a valid")
        );
        assert!(bad(
            serde_json::json!({"id": "1", "method": "GET", "url": "/u", "headers": {"X": {}}})
        )
        .contains("must be a string"));
        assert!(
            bad(serde_json::json!({"id": "1", "method": "POST", "url": "/u", "body": {}}))
                .contains("Content-Type")
        );
        // A body of null is no body.
        let r: BatchRequest = serde_json::from_value(
            serde_json::json!({"id": "1", "method": "POST", "url": "/u", "body": null}),
        )
        .unwrap();
        assert!(build_inner(&r, "/v1.0", &outer, None).is_ok());
    }
}
