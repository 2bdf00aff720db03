//! The one scripted server of the integration tests: a small axum server on 127.0.0.1:0 that
//! records every request and answers each with what the test's script returns for it (given the
//! request and how many requests to the same path came before it).
//!
//! It stands in for a peer where the test needs an exact answer (a 429 with `Retry-After`, a
//! token-endpoint error, GitHub's OIDC endpoint); it implements no Graph semantics, which the
//! tests against the Graph sandbox check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use serde_json::Value;

/// One request as the scripted server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: String,
    pub client_request_id: String,
    pub body: String,
    /// The body read as an `application/x-www-form-urlencoded` form (the token endpoint's).
    pub form: HashMap<String, String>,
    pub at: Instant,
}

/// What a script may answer: a response, or a status and a JSON body.
pub trait Reply {
    fn into_response(self) -> Response<Body>;
}

impl Reply for Response<Body> {
    fn into_response(self) -> Response<Body> {
        self
    }
}

impl Reply for (u16, Value) {
    fn into_response(self) -> Response<Body> {
        json_response(self.0, self.1)
    }
}

type Script = dyn Fn(&Seen) -> Response<Body> + Send + Sync;

/// A running scripted server; it serves until the test's runtime ends.
#[derive(Clone)]
pub struct Scripted {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    /// Starts the server; every request is answered by `script(request, nth call of its path)`.
    pub async fn start<R: Reply>(
        script: impl Fn(&Seen, usize) -> R + Send + Sync + 'static,
    ) -> Scripted {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let script: Arc<Script> = Arc::new(move |s: &Seen| {
            let nth = {
                let mut log = log.lock().unwrap();
                let nth = log.iter().filter(|x| x.path == s.path).count();
                log.push(s.clone());
                nth
            };
            script(s, nth).into_response()
        });
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
                let script = script.clone();
                async move {
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let s = Seen {
                        method: method.to_string(),
                        path: uri.path().to_owned(),
                        query: uri.query().unwrap_or("").to_owned(),
                        authorization: h("authorization"),
                        client_request_id: h("client-request-id"),
                        form: url::form_urlencoded::parse(body.as_bytes())
                            .into_owned()
                            .collect(),
                        body,
                        at: Instant::now(),
                    };
                    script(&s)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Scripted {
            base: format!("http://{addr}"),
            seen,
        }
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests to one path, in arrival order.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

/// A JSON response.
pub fn json_response(status: u16, body: Value) -> Response<Body> {
    status_with(status, &[], body)
}

/// A JSON response with extra headers.
pub fn status_with(status: u16, headers: &[(&str, &str)], body: Value) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_string())).unwrap()
}
