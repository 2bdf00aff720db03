//! Pure parsing of what Graph answers, without I/O: the functions the client calls on a response
//! body, exposed so that the fuzz targets (`fuzz/`) and the corpus regression test
//! (`tests/it/fuzz_corpus.rs`) feed them arbitrary bytes. Whatever the bytes, they return an
//! error value; they never panic.

use std::time::Duration;

use super::error::{decode, error_from, error_from_inner};
use super::key::UserKey;
use super::GraphError;
use crate::graph::model::{
    BatchResponse, BatchResponseEnvelope, GraphUser, LongRunningOperation, Page,
};

/// A page of `GET /users` (`value`, `@odata.nextLink`).
pub fn users_page(body: &[u8]) -> Result<Page<GraphUser>, GraphError> {
    decode(body, "users")
}

/// What a `$batch` answer holds, before the inner responses are looked at.
#[derive(Debug)]
pub enum BatchEnvelope {
    /// the inner responses (a non-2xx envelope that still carries them counts: older docs)
    Responses(Vec<BatchResponse>),
    /// a 2xx whose body is not a `$batch` envelope (the decoder's message; never the body)
    Undecodable(String),
    /// a non-2xx without inner responses: an error for the whole envelope
    Failed,
}

/// Reads the envelope of a `$batch` answer with HTTP status `status`.
pub fn batch_envelope(status: u16, body: &[u8]) -> BatchEnvelope {
    match (
        status,
        serde_json::from_slice::<BatchResponseEnvelope>(body),
    ) {
        (200..=299, Ok(env)) => BatchEnvelope::Responses(env.responses),
        (_, Ok(env)) if !env.responses.is_empty() => BatchEnvelope::Responses(env.responses),
        (200..=299, Err(e)) => BatchEnvelope::Undecodable(e.to_string()),
        _ => BatchEnvelope::Failed,
    }
}

/// One inner response of a `$batch` read of the user named by `key`.
pub fn batch_user(key: &UserKey, r: BatchResponse) -> Result<GraphUser, GraphError> {
    if !(200..300).contains(&r.status) {
        return Err(error_from_inner(&r, &key.to_string()));
    }
    let body = r
        .body
        .as_deref()
        .map_or("null", serde_json::value::RawValue::get);
    let what = key.to_string();
    match key {
        UserKey::Sid(_) => {
            let page: Page<GraphUser> =
                serde_json::from_str(body).map_err(|e| GraphError::Decode {
                    what: what.clone(),
                    message: e.to_string(),
                })?;
            let mut users = page.value;
            match users.len() {
                0 => Err(GraphError::NotFound {
                    what,
                    request_id: None,
                }),
                1 => Ok(users.remove(0)),
                count => Err(GraphError::Ambiguous { what, count }),
            }
        }
        _ => serde_json::from_str(body).map_err(|e| GraphError::Decode {
            what,
            message: e.to_string(),
        }),
    }
}

/// A long-running operation's status document (`GET` on the `Location` of a password reset).
pub fn operation(body: &[u8]) -> Result<LongRunningOperation, GraphError> {
    decode(body, "operation")
}

/// A non-2xx answer as the error the client reports (parsed leniently).
pub fn error(status: u16, body: &[u8]) -> GraphError {
    error_from(status, body, None, "request")
}

/// A `Retry-After` header value (seconds or an HTTP date), as the client reads it.
pub fn retry_after(value: &str) -> Option<Duration> {
    crate::graph::retry::parse_retry_after(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_batch_response_shapes() {
        let key = UserKey::Sid("S-1".into());
        let resp = |body: serde_json::Value| BatchResponse {
            id: "0".into(),
            status: 200,
            headers: None,
            body: Some(serde_json::value::to_raw_value(&body).unwrap()),
        };
        assert!(batch_user(&key, resp(serde_json::json!({"value": []})))
            .unwrap_err()
            .is_not_found());
        let one = batch_user(&key, resp(serde_json::json!({"value": [{"id": "u1"}]}))).unwrap();
        assert_eq!(one.id, "u1");
        let two = batch_user(
            &key,
            resp(serde_json::json!({"value": [{"id": "a"}, {"id": "b"}]})),
        );
        assert!(matches!(two, Err(GraphError::Ambiguous { count: 2, .. })));
    }
}
