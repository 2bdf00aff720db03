//! Graph's error body, and the per-request ids every Graph response carries.
//!
//! Every error the sandbox returns on a Graph route has Graph's shape:
//! `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`, and every
//! response carries `request-id` and `client-request-id` headers (the client's own
//! `client-request-id` is echoed; without one, the request id is used, as Graph does).
//!
//! Design: the ids are created by [`request_ids`] (a middleware) and kept in a tokio task-local for
//! the duration of the request, so that [`GraphError`] can render a complete body from any handler
//! without threading the ids through every function. A `$batch` inner request passes through the
//! same middleware again and so gets ids of its own.

use std::borrow::Cow;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};

/// Ids of one request, as echoed in headers and in `innerError`.
#[derive(Clone, Debug)]
pub struct RequestIds {
    pub request_id: String,
    pub client_request_id: String,
    pub date: DateTime<Utc>,
}

impl RequestIds {
    fn fresh(client_request_id: Option<String>) -> Self {
        let request_id = uuid::Uuid::new_v4().to_string();
        RequestIds {
            client_request_id: client_request_id.unwrap_or_else(|| request_id.clone()),
            request_id,
            date: Utc::now(),
        }
    }
}

tokio::task_local! {
    static REQUEST_IDS: RequestIds;
}

/// The ids of the request being served (fresh ones outside a request).
pub fn current_ids() -> RequestIds {
    REQUEST_IDS
        .try_with(|ids| ids.clone())
        .unwrap_or_else(|_| RequestIds::fresh(None))
}

/// Middleware: assigns the request ids and sets the `request-id` / `client-request-id` headers.
pub async fn request_ids(req: Request, next: Next) -> Response {
    let client = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned);
    let ids = RequestIds::fresh(client);
    let mut resp = REQUEST_IDS.scope(ids.clone(), next.run(req)).await;
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        headers.insert(HeaderName::from_static("request-id"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&ids.client_request_id) {
        headers.insert(HeaderName::from_static("client-request-id"), v);
    }
    resp
}

/// The exact message of a 403 for a missing permission or directory role.
pub const INSUFFICIENT_PRIVILEGES: &str = "Insufficient privileges to complete the operation.";

/// An error response with Graph's body.
#[derive(Debug, Clone)]
pub struct GraphError {
    pub status: StatusCode,
    pub code: Cow<'static, str>,
    pub message: String,
    pub headers: Vec<(HeaderName, String)>,
}

impl GraphError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        GraphError {
            status,
            code: code.into(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 `BadRequest` (generic OData errors: malformed JSON, unknown segment, bad query option).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 400 `Request_BadRequest` (directory-level validation errors).
    pub fn request_bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// 400 `Request_UnsupportedQuery`.
    pub fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    /// 403 `Authorization_RequestDenied` with Graph's exact message.
    pub fn insufficient_privileges() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            INSUFFICIENT_PRIVILEGES,
        )
    }

    /// 404 `Request_ResourceNotFound` for a directory object addressed by id or UPN.
    pub fn resource_not_found(key: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// 400 `BadRequest` "Resource not found for the segment '...'." (unknown path segment).
    pub fn segment_not_found(segment: &str) -> Self {
        Self::bad_request(format!("Resource not found for the segment '{segment}'."))
    }

    /// 401 `InvalidAuthenticationToken`.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
        )
    }

    /// 413 for a request body above the sandbox's limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("The request body is larger than the maximum of {limit} bytes."),
        )
    }

    /// The JSON body, with the ids of the current request.
    pub fn body(&self) -> serde_json::Value {
        let ids = current_ids();
        serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": ids.date.to_rfc3339_opts(SecondsFormat::Secs, true).trim_end_matches('Z'),
                    "request-id": ids.request_id,
                    "client-request-id": ids.client_request_id,
                }
            }
        })
    }
}

impl std::fmt::Display for GraphError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for GraphError {}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().append(name, v);
            }
        }
        resp
    }
}

/// Result type of Graph handlers.
pub type GraphResult<T> = Result<T, GraphError>;

/// Reads a request body: 413 above `limit` bytes.
///
/// Bodies up to 8 x `limit` are read to the end before being refused, so that the client, which
/// is still sending, reads the 413 instead of a reset connection; beyond that the connection is
/// given up.
pub async fn read_body(body: axum::body::Body, limit: usize) -> GraphResult<axum::body::Bytes> {
    let bytes = axum::body::to_bytes(body, limit.saturating_mul(8))
        .await
        .map_err(|err| {
            let text = format!("{err:?}");
            if text.contains("LengthLimit") || text.contains("length limit") {
                GraphError::too_large(limit)
            } else {
                GraphError::bad_request("The request body could not be read.")
            }
        })?;
    if bytes.len() > limit {
        return Err(GraphError::too_large(limit));
    }
    Ok(bytes)
}

/// Parses a JSON request body: malformed JSON is Graph's 400 `BadRequest`.
pub fn parse_json(bytes: &[u8]) -> GraphResult<serde_json::Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GraphError::bad_request(
            "Empty Payload. JSON content expected.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        GraphError::bad_request(format!(
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format. ({e})"
        ))
    })
}

/// `axum::extract::Path` whose rejection (e.g. a segment that is not UTF-8) is Graph's 400 body
/// instead of axum's plain text.
pub struct GraphPath<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for GraphPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = GraphError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(GraphPath(v)),
            Err(e) => Err(GraphError::bad_request(format!(
                "Invalid request URL: {}",
                e.body_text()
            ))),
        }
    }
}
