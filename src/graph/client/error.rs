//! [`GraphError`], the client's error type, and the mapping of Graph's error answers (a status
//! and an `error` body, plain or inside a `$batch`) onto it. No `Display` carries a secret, and
//! the peer's words reach a message only through [`crate::graph::redact`] (every secret of the
//! run masked, before any cut) and [`escape_for_message`].

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::graph::auth::AuthError;
use crate::graph::model::{BatchResponse, GraphErrorBody};
use crate::graph::redact::{redact, redacted};

/// A Graph failure. `Display` never contains a secret, a token or a request body.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GraphError {
    #[error("Graph returned HTTP {status} {code}: {message}{}", rid(.request_id))]
    Http {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("not found: {what}{}", rid(.request_id))]
    NotFound {
        what: String,
        request_id: Option<String>,
    },
    #[error("{what}: matches {count} users, expected one")]
    Ambiguous { what: String, count: usize },
    #[error("Graph kept throttling (HTTP 429) after {attempts} attempts; try again later or lower --concurrency{}", rid(.request_id))]
    Throttled {
        attempts: u32,
        request_id: Option<String>,
    },
    #[error("transport error talking to Graph after {attempts} attempts: {message}{}", if *.maybe_applied { " (the request may have been applied: re-read before retrying)" } else { "" })]
    Transport {
        attempts: u32,
        message: String,
        maybe_applied: bool,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("unexpected response from Graph ({what}): {message}")]
    Decode { what: String, message: String },
    #[error("refusing to follow {url}: it is not on the Graph origin {origin}")]
    ForeignUrl { url: String, origin: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("operation {location} did not finish within {timeout:?} (last status: {last_status})")]
    OperationTimeout {
        location: String,
        timeout: Duration,
        last_status: String,
    },
}

fn rid(request_id: &Option<String>) -> String {
    request_id
        .as_deref()
        .map(|r| format!(" (request-id {r})"))
        .unwrap_or_default()
}

impl GraphError {
    /// The HTTP status, when the error is a Graph answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            GraphError::Http { status, .. } => Some(*status),
            GraphError::NotFound { .. } => Some(404),
            GraphError::Throttled { .. } => Some(429),
            _ => None,
        }
    }

    /// Graph's error code (`Authorization_RequestDenied`, `Request_BadRequest`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            GraphError::Http { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, GraphError::NotFound { .. })
    }

    /// True when a write may or may not have been applied (its response was lost).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            GraphError::Transport {
                maybe_applied: true,
                ..
            }
        )
    }
}

pub(super) fn decode<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, GraphError> {
    serde_json::from_slice(body).map_err(|e| GraphError::Decode {
        what: what.to_owned(),
        message: redacted(&e.to_string()),
    })
}

/// Maps a non-2xx Graph answer to an error (404 to `NotFound`), parsing the error body leniently.
pub(super) fn error_from(
    status: u16,
    body: &[u8],
    request_id: Option<String>,
    what: &str,
) -> GraphError {
    let parsed = serde_json::from_slice::<GraphErrorBody>(body).ok();
    error_from_parts(status, parsed, request_id, what)
}

fn error_from_parts(
    status: u16,
    parsed: Option<GraphErrorBody>,
    request_id: Option<String>,
    what: &str,
) -> GraphError {
    let request_id = request_id.or_else(|| {
        parsed
            .as_ref()
            .and_then(|b| b.error.inner_error.as_ref())
            .and_then(|i| i.request_id.clone())
    });
    if status == 404 {
        return GraphError::NotFound {
            what: what.to_owned(),
            request_id,
        };
    }
    if status == 429 {
        return GraphError::Throttled {
            attempts: 1,
            request_id,
        };
    }
    let (code, message) = match parsed {
        Some(b) => (b.error.code, b.error.message),
        None => (String::new(), format!("no Graph error body ({what})")),
    };
    // the peer's words are echoed: mask every secret of the run (a password it quotes), escape
    // controls (a terminal escape sequence), cap the length
    GraphError::Http {
        status,
        code: escape_for_message(&redact(&code), 200),
        message: escape_for_message(&redact(&message), 1000),
        request_id: request_id.map(|r| escape_for_message(&redact(&r), 200)),
    }
}

pub(super) fn error_from_inner(resp: &BatchResponse, what: &str) -> GraphError {
    let parsed = resp
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str::<GraphErrorBody>(b.get()).ok());
    error_from_parts(resp.status, parsed, inner_header(resp, "request-id"), what)
}

/// A header of an inner `$batch` response (names are case-insensitive; values string or number).
pub(super) fn inner_header(resp: &BatchResponse, name: &str) -> Option<String> {
    let headers = resp.headers.as_ref()?;
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// `s` as it may appear in a message: control characters and other invisible characters
/// escaped (`\u{1b}`), at most `max` characters (then `...`).
pub fn escape_for_message(s: &str, max: usize) -> String {
    crate::escape::value_capped(s, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_escape_controls_and_truncate() {
        assert_eq!(escape_for_message("a\u{1b}[31mb", 100), "a\\u{1b}[31mb");
        assert_eq!(escape_for_message("abcdef", 3), "abc...");
    }

    #[test]
    fn errors_map_statuses_and_codes() {
        let body = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{"request-id":"r-1"}}}"#;
        let e = error_from(403, body, None, "x");
        assert_eq!(e.status(), Some(403));
        assert_eq!(e.code(), Some("Authorization_RequestDenied"));
        assert!(e.to_string().contains("r-1"));
        assert!(error_from(404, b"", None, "user bob").is_not_found());
        assert!(matches!(
            error_from(500, b"garbage", None, "x"),
            GraphError::Http { status: 500, .. }
        ));
    }

    /// Graph's words are echoed: an escape sequence in them is shown escaped, and a huge message
    /// is cut.
    #[test]
    fn graph_error_messages_are_escaped_and_capped() {
        let long = "y".repeat(10_000);
        let body = serde_json::json!({"error": {"code": "Bad\u{1b}[31m", "message": format!("x\u{1b}]0;t\u{7}{long}")}});
        let e = error_from(400, body.to_string().as_bytes(), None, "x").to_string();
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
        assert!(e.contains("x\\u{1b}]0;t\\u{7}yyy"), "{e}");
        assert!(e.len() < 1_200, "{}", e.len());
    }
}
