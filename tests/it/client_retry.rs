//! Tests of the Graph client's HTTP retry layer over real loopback HTTP.
//!
//! The peer here is the scripted server (`common::Scripted`), answering with chosen statuses
//! (429 with `Retry-After`, 503, a dropped body, a `$batch` with inner 429s, a 401 for a stale
//! token). It exists ONLY to pin down the retry, backoff, pacing and token-refresh behaviour of
//! `GraphClient` now; it is not a Graph implementation and not a substitute for the end-to-end
//! tests against the Graph sandbox (`client_graph.rs`), which check Graph semantics.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Response;
use pwdrift::graph::auth::{Cloud, Credential, Endpoints};
use pwdrift::graph::client::{ClientOptions, GraphClient, GraphError, UserKey};
use pwdrift::graph::model::PasswordProfile;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::common::{json_response, status_with, Scripted, Seen};

const TENANT: &str = "tenant-1";
const CANARY_SECRET: &str = "Canary-Client-Secret-7f3a";
const CANARY_PASSWORD: &str = "Canary-Password-91xQ!";

/// The scripted server with the token endpoint built in (it issues `tok-1`, `tok-2`, ...); every
/// other request goes to `respond(request, nth call of that path)`.
async fn start(
    respond: impl Fn(&Seen, usize) -> Response<Body> + Send + Sync + 'static,
) -> Scripted {
    Scripted::start(move |s, nth| {
        if s.path == format!("/{TENANT}/oauth2/v2.0/token") {
            // the nth call of the token path issues the (nth + 1)th token
            return json_response(
                200,
                json!({"token_type": "Bearer", "expires_in": 3599, "access_token": format!("tok-{}", nth + 1)}),
            );
        }
        respond(s, nth)
    })
    .await
}

/// A response that promises more body than it sends: the client sees an incomplete message.
fn truncated() -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("content-length", "1000")
        .body(Body::from("{\"value\":"))
        .unwrap()
}

fn throttled_body() -> Value {
    json!({"error": {"code": "TooManyRequests", "message": "Please retry again later."}})
}

fn client(server: &Scripted, tweak: impl FnOnce(&mut ClientOptions)) -> GraphClient {
    let endpoints = Endpoints::new(Cloud::Global, Some(&server.base), Some(&server.base)).unwrap();
    let mut options = ClientOptions::new(endpoints);
    options.base_delay = Duration::from_millis(1);
    options.max_backoff = Duration::from_millis(20);
    options.max_retries = 4;
    tweak(&mut options);
    let credential = Credential::ClientSecret {
        tenant: TENANT.into(),
        client_id: "client-1".into(),
        secret: SecretString::from(CANARY_SECRET),
    };
    GraphClient::new(options, credential).unwrap()
}

fn user(id: &str) -> Value {
    json!({"id": id, "userPrincipalName": format!("{id}@contoso.com"), "passwordProfile": null})
}

/// A 429 with `Retry-After: 1` is retried, not before the second it asked for; then paging
/// follows `@odata.nextLink` to the end. Every request carries a fresh client-request-id and
/// the bearer token; the token endpoint got the client-credentials form.
#[tokio::test]
async fn throttled_list_is_retried_after_retry_after_then_paged() {
    let server = start(|s, nth| match (s.path.as_str(), nth) {
        ("/v1.0/users", 0) => status_with(429, &[("Retry-After", "1")], throttled_body()),
        ("/v1.0/users", _) if s.query.contains("skiptoken") => {
            json_response(200, json!({"value": [user("c")]}))
        }
        ("/v1.0/users", _) => json_response(
            200,
            json!({"value": [user("a"), user("b")], "@odata.nextLink": "/v1.0/users?$select=id&$skiptoken=page2"}),
        ),
        _ => json_response(404, json!({})),
    })
    .await;
    let c = client(&server, |_| {});
    let users = c.list_users(TENANT, None).await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let calls = server.seen_at("/v1.0/users");
    assert_eq!(calls.len(), 3, "429, page 1, page 2");
    assert!(calls[0].query.contains("$top=999"), "{}", calls[0].query);
    assert!(calls[0]
        .query
        .contains("$select=id,userPrincipalName,passwordProfile"));
    // Retry-After honoured: a lower bound only, which cannot flake
    assert!(calls[1].at.duration_since(calls[0].at) >= Duration::from_secs(1));
    let ids: std::collections::HashSet<_> =
        calls.iter().map(|c| c.client_request_id.clone()).collect();
    assert_eq!(ids.len(), 3, "a fresh client-request-id per request");
    assert!(calls
        .iter()
        .all(|c| uuid::Uuid::parse_str(&c.client_request_id).is_ok()));
    assert!(calls.iter().all(|c| c.authorization == "Bearer tok-1"));
    let token_calls = server.seen_at(&format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(token_calls.len(), 1, "one token for all requests");
    let form: HashMap<String, String> = url::form_urlencoded::parse(token_calls[0].body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "client-1");
    assert_eq!(form["client_secret"], CANARY_SECRET);
    assert_eq!(form["scope"], format!("{}/.default", server.base));
    let stats = c.stats();
    assert_eq!((stats.throttled, stats.retries, stats.requests), (1, 1, 3));
}

/// 503 and 504 are retried with backoff; a dropped body (transport error) is retried for a GET.
#[tokio::test]
async fn server_errors_and_transport_errors_are_retried_for_reads() {
    let server = start(|s, nth| match (s.path.as_str(), nth) {
        (p, 0) if p.starts_with("/v1.0/me") => status_with(503, &[], json!({})),
        (p, 1) if p.starts_with("/v1.0/me") => status_with(504, &[], json!({})),
        (p, 2) if p.starts_with("/v1.0/me") => truncated(),
        (p, _) if p.starts_with("/v1.0/me") => json_response(200, user("me")),
        _ => json_response(404, json!({})),
    })
    .await;
    let c = client(&server, |_| {});
    let me = c.me(TENANT).await.unwrap();
    assert_eq!(me.id, "me");
    assert_eq!(server.seen_at("/v1.0/me").len(), 4);
    let s = c.stats();
    assert_eq!(s.server_errors, 2);
    assert_eq!(s.transport_errors, 1);
    assert_eq!(s.retries, 3);
}

/// Retries are bounded: a server that always answers 503 gets 1 + max_retries requests, and the
/// error carries Graph's status; 4xx other than 429 are never retried.
#[tokio::test]
async fn retries_are_bounded_and_4xx_not_retried() {
    let server = start(|s, _| match s.path.as_str() {
        "/v1.0/me" => status_with(503, &[], json!({"error": {"code": "serviceNotAvailable", "message": "down"}})),
        "/v1.0/domains" => status_with(
            403,
            &[("request-id", "rid-403")],
            json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}}),
        ),
        _ => status_with(400, &[], json!({"error": {"code": "Request_BadRequest", "message": "bad"}})),
    })
    .await;
    let c = client(&server, |o| o.max_retries = 3);
    let err = c.me(TENANT).await.unwrap_err();
    assert!(
        matches!(err, GraphError::Http { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(server.seen_at("/v1.0/me").len(), 4, "1 + max_retries");

    let err = c.domains(TENANT).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.code(), Some("Authorization_RequestDenied"));
    assert!(err.to_string().contains("rid-403"));
    assert_eq!(
        server.seen_at("/v1.0/domains").len(),
        1,
        "403 is not retried"
    );

    let err = c.list_users(TENANT, Some("bad filter")).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(server.seen_at("/v1.0/users").len(), 1, "400 is not retried");
}

/// Inside a `$batch`, only the inner requests that got 429 (or 503/504) are re-sent, re-batched,
/// after their own Retry-After; the others are final. Bodies carry both flags and the password.
#[tokio::test]
async fn batch_retries_only_throttled_inner_requests() {
    let server = start(|s, nth| {
        if s.path != "/v1.0/$batch" {
            return json_response(404, json!({}));
        }
        let env: Value = serde_json::from_str(&s.body).unwrap();
        let responses: Vec<Value> = env["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let id = r["id"].as_str().unwrap();
                let n: usize = id.parse().unwrap();
                if nth == 0 && n % 3 == 0 {
                    json!({"id": id, "status": 429, "headers": {"Retry-After": "1"}, "body": throttled_body()})
                } else if nth == 0 && n == 4 {
                    json!({"id": id, "status": 503, "headers": {}, "body": {}})
                } else if nth == 0 && n == 10 {
                    // a lost inner response: a PATCH is idempotent, so it is retried
                    json!({"id": id, "status": 500, "body": {"error": {"code": "InternalServerError", "message": "The response of this request was lost."}}})
                } else if n == 5 {
                    json!({"id": id, "status": 400, "body": {"error": {"code": "Request_BadRequest", "message": "The specified password does not comply with password complexity requirements. Please provide a different password."}}})
                } else {
                    json!({"id": id, "status": 204})
                }
            })
            .rev() // out of order, as Graph may answer
            .collect();
        json_response(200, json!({"responses": responses}))
    })
    .await;
    let c = client(&server, |_| {});
    let patches: Vec<(String, PasswordProfile)> = (0..12)
        .map(|i| {
            (
                format!("user-{i}"),
                PasswordProfile {
                    force_change_password_next_sign_in: Some(true),
                    force_change_password_next_sign_in_with_mfa: Some(false),
                    password: (i == 1).then(|| SecretString::from(CANARY_PASSWORD)),
                    odata_type: None,
                },
            )
        })
        .collect();
    let results = c.patch_password_profiles(TENANT, patches).await;
    assert_eq!(results.len(), 12);
    for (i, (user_id, r)) in results.iter().enumerate() {
        assert_eq!(user_id, &format!("user-{i}"), "input order kept");
        if i == 5 {
            let e = r.as_ref().unwrap_err();
            assert_eq!(
                (e.status(), e.code()),
                (Some(400), Some("Request_BadRequest"))
            );
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    let batches = server.seen_at("/v1.0/$batch");
    assert_eq!(batches.len(), 2);
    assert!(batches.iter().all(|b| b.method == "POST"));
    let first: Value = serde_json::from_str(&batches[0].body).unwrap();
    let second: Value = serde_json::from_str(&batches[1].body).unwrap();
    let ids = |v: &Value| {
        let mut ids: Vec<u32> = v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().parse().unwrap())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&first), (0..12).collect::<Vec<_>>());
    assert_eq!(
        ids(&second),
        [0, 3, 4, 6, 9, 10],
        "only the 429s, the 503 and the 500 again"
    );
    assert!(batches[1].at.duration_since(batches[0].at) >= Duration::from_secs(1));
    let r0 = &first["requests"][0];
    assert_eq!(r0["method"], "PATCH");
    assert_eq!(r0["url"], "/users/user-0");
    assert_eq!(r0["headers"]["Content-Type"], "application/json");
    assert_eq!(
        r0["body"],
        json!({"passwordProfile": {"forceChangePasswordNextSignIn": true, "forceChangePasswordNextSignInWithMfa": false}})
    );
    assert_eq!(
        first["requests"][1]["body"]["passwordProfile"]["password"],
        CANARY_PASSWORD
    );
    let s = c.stats();
    assert_eq!(
        (s.throttled, s.server_errors, s.retries, s.requests),
        (4, 2, 6, 2)
    );
    assert_eq!(s.batch_inner_requests, 18);
}

/// An inner request that stays throttled ends as `Throttled` after max_retries; more than 20
/// requests are split into envelopes of 20.
#[tokio::test]
async fn batch_throttling_is_bounded_and_envelopes_hold_twenty() {
    let server = start(|s, _| {
        let env: Value = serde_json::from_str(&s.body).unwrap();
        let responses: Vec<Value> = env["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let id = r["id"].as_str().unwrap();
                if id == "7" {
                    json!({"id": id, "status": 429, "headers": {"retry-after": 0}, "body": throttled_body()})
                } else if id == "8" {
                    json!({"id": id, "status": 404, "body": {"error": {"code": "Request_ResourceNotFound", "message": "nope"}}})
                } else if r["url"].as_str().unwrap().starts_with("/users?$filter=") {
                    json!({"id": id, "status": 200, "body": {"value": [user(&format!("sid-{id}"))]}})
                } else {
                    json!({"id": id, "status": 200, "body": user(&format!("u-{id}"))})
                }
            })
            .collect();
        json_response(200, json!({"responses": responses}))
    })
    .await;
    let c = client(&server, |o| o.max_retries = 2);
    let keys: Vec<UserKey> = (0..45)
        .map(|i| match i % 3 {
            0 => UserKey::Id(format!("id-{i}")),
            1 => UserKey::Upn(format!("u{i}@contoso.com")),
            _ => UserKey::Sid(format!("S-1-5-21-{i}")),
        })
        .collect();
    let results = c.get_users_by_batch(TENANT, &keys).await.unwrap();
    assert_eq!(results.len(), 45);
    assert!(
        matches!(results[7].1, Err(GraphError::Throttled { attempts: 3, .. })),
        "{:?}",
        results[7].1
    );
    assert!(results[8].1.as_ref().unwrap_err().is_not_found());
    assert_eq!(results[0].1.as_ref().unwrap().id, "u-0");
    assert_eq!(results[2].1.as_ref().unwrap().id, "sid-2");
    assert_eq!(results[44].0, keys[44]);
    let batches = server.seen_at("/v1.0/$batch");
    let sizes: Vec<usize> = batches
        .iter()
        .map(|b| {
            serde_json::from_str::<Value>(&b.body).unwrap()["requests"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    let mut big: Vec<_> = sizes.iter().copied().filter(|n| *n > 1).collect();
    big.sort();
    assert_eq!(big, [5, 20, 20], "45 requests in envelopes of at most 20");
    assert_eq!(
        sizes.iter().filter(|n| **n == 1).count(),
        2,
        "request 7 re-sent alone, twice"
    );
}

/// A 401 drops the cached token and retries once with a fresh one.
#[tokio::test]
async fn unauthorized_refreshes_the_token_once() {
    let server = start(|s, _| {
        if s.authorization == "Bearer tok-1" {
            status_with(401, &[], json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}}))
        } else {
            json_response(200, user("me"))
        }
    })
    .await;
    let c = client(&server, |_| {});
    assert_eq!(c.me(TENANT).await.unwrap().id, "me");
    let s = c.stats();
    assert_eq!((s.token_refreshes, s.token_requests), (1, 2));
    // and the new token is cached
    c.me(TENANT).await.unwrap();
    assert_eq!(c.stats().token_requests, 2);

    // a server that rejects every token: one refresh, then the 401 is the answer
    let server = start(|_, _| {
        status_with(
            401,
            &[],
            json!({"error": {"code": "InvalidAuthenticationToken", "message": "no"}}),
        )
    })
    .await;
    let c = client(&server, |_| {});
    assert_eq!(c.me(TENANT).await.unwrap_err().status(), Some(401));
    assert_eq!(server.seen_at("/v1.0/me").len(), 2);
}

/// Concurrent first calls share one token request (single flight).
#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let server = start(|_, _| json_response(200, user("me"))).await;
    let c = client(&server, |o| o.concurrency = 8);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let c = c.clone();
        set.spawn(async move { c.me(TENANT).await.map(|u| u.id) });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap().unwrap(), "me");
    }
    assert_eq!(
        server
            .seen_at(&format!("/{TENANT}/oauth2/v2.0/token"))
            .len(),
        1
    );
}

/// resetPassword: 202 + Location + generated password; polling honours Retry-After until a
/// terminal status. A dropped response is NOT retried (the reset may have happened).
#[tokio::test]
async fn reset_password_and_poll() {
    let server = start(|s, nth| {
        let reset = format!(
            "/v1.0/users/u-1/authentication/methods/{}/resetPassword",
            pwdrift::graph::model::PASSWORD_METHOD_ID
        );
        if s.path == reset {
            return status_with(
                202,
                &[("Location", "/v1.0/users/u-1/authentication/operations/op-1"), ("Retry-After", "0")],
                json!({"@odata.context": "x#microsoft.graph.passwordResetResponse", "newPassword": CANARY_PASSWORD}),
            );
        }
        if s.path == "/v1.0/users/u-1/authentication/operations/op-1" {
            let status = if nth < 2 { "running" } else { "succeeded" };
            return status_with(200, &[("Retry-After", "0")], json!({"id": "op-1", "status": status}));
        }
        if s.path.starts_with("/v1.0/users/u-2/") {
            return truncated();
        }
        if s.path.starts_with("/v1.0/users/u-3/") {
            return status_with(500, &[], json!({"error": {"code": "InternalServerError", "message": "x"}}));
        }
        json_response(404, json!({}))
    })
    .await;
    let c = client(&server, |_| {});
    let out = c.reset_password(TENANT, "u-1", None).await.unwrap();
    assert_eq!(
        out.generated_password.as_ref().unwrap().expose_secret(),
        CANARY_PASSWORD
    );
    assert_eq!(
        out.location.as_deref().unwrap(),
        format!(
            "{}/v1.0/users/u-1/authentication/operations/op-1",
            server.base
        )
    );
    assert_eq!(out.retry_after, Some(Duration::ZERO));
    assert!(!format!("{out:?}").contains(CANARY_PASSWORD));
    let op = c
        .poll_operation(
            TENANT,
            out.location.as_deref().unwrap(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(op.status, pwdrift::graph::model::OperationStatus::Succeeded);
    assert_eq!(
        server
            .seen_at("/v1.0/users/u-1/authentication/operations/op-1")
            .len(),
        3
    );

    let err = c
        .reset_password(TENANT, "u-2", Some(SecretString::from(CANARY_PASSWORD)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::Transport {
                maybe_applied: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains(CANARY_PASSWORD));
    let u2: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/v1.0/users/u-2/"))
        .collect();
    assert_eq!(u2.len(), 1, "not blindly repeated");
    assert_eq!(
        u2[0].body,
        format!("{{\"newPassword\":\"{CANARY_PASSWORD}\"}}")
    );

    // a 500 leaves open whether the reset ran: reported, not repeated
    let err = c.reset_password(TENANT, "u-3", None).await.unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::Transport {
                maybe_applied: true,
                ..
            }
        ),
        "{err:?}"
    );
    let u3 = server
        .seen()
        .into_iter()
        .filter(|s| s.path.starts_with("/v1.0/users/u-3/"))
        .count();
    assert_eq!(u3, 1);
}

/// A nextLink or Location on another origin is refused: the token never leaves the Graph origin.
#[tokio::test]
async fn foreign_links_are_refused() {
    let server = start(|_, _| {
        json_response(
            200,
            json!({"value": [], "@odata.nextLink": "https://evil.example/v1.0/users?$skiptoken=x"}),
        )
    })
    .await;
    let c = client(&server, |_| {});
    let err = c.list_users(TENANT, None).await.unwrap_err();
    assert!(matches!(err, GraphError::ForeignUrl { .. }), "{err:?}");
    assert!(
        err.to_string().contains("https://evil.example/v1.0/users"),
        "{err}"
    );
    assert!(!err.to_string().contains("skiptoken=x"), "{err}");
    let err = c
        .poll_operation(TENANT, "http://127.0.0.2:1/op", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::ForeignUrl { .. }), "{err:?}");
}

/// `x-ms-throttle-limit-percentage` >= 0.8 slows the client down (counted in stats).
#[tokio::test]
async fn throttle_percentage_slows_down() {
    let server = start(|_, nth| {
        let pct = if nth < 2 { "0.9" } else { "0.1" };
        status_with(200, &[("x-ms-throttle-limit-percentage", pct)], user("me"))
    })
    .await;
    let c = client(&server, |_| {});
    for _ in 0..4 {
        c.me(TENANT).await.unwrap();
    }
    assert_eq!(
        c.stats().slowdowns,
        1,
        "slowed down once at 0.9, back to normal at 0.1"
    );
}

/// At the most verbose log level, no secret, password or token appears in the log, while the
/// requests themselves are logged.
#[tokio::test]
async fn logs_never_contain_secrets() {
    let sink = crate::common::trace_log();

    let server = start(|s, nth| {
        if s.path == "/v1.0/$batch" {
            let env: Value = serde_json::from_str(&s.body).unwrap();
            let responses: Vec<Value> = env["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let status = if nth == 0 { 429 } else { 204 };
                    json!({"id": r["id"], "status": status, "headers": {"Retry-After": "0"}})
                })
                .collect();
            return json_response(200, json!({"responses": responses}));
        }
        if s.path.ends_with("/resetPassword") {
            return status_with(
                202,
                &[("Location", "/v1.0/op/1")],
                json!({"newPassword": CANARY_PASSWORD}),
            );
        }
        json_response(200, user("me"))
    })
    .await;
    let c = client(&server, |_| {});
    let profile = PasswordProfile {
        force_change_password_next_sign_in: Some(true),
        force_change_password_next_sign_in_with_mfa: Some(false),
        password: Some(SecretString::from(CANARY_PASSWORD)),
        odata_type: None,
    };
    let r = c
        .patch_password_profiles(TENANT, vec![("u-1".into(), profile)])
        .await;
    assert!(r[0].1.is_ok());
    let out = c.reset_password(TENANT, "u-1", None).await.unwrap();
    let _ = out;
    c.me(TENANT).await.unwrap();
    let _ = std::io::stderr().flush();
    let log = sink.contents();
    assert!(log.contains("/v1.0/$batch"), "{log}");
    assert!(
        log.contains("url=/users/u-1 status=429"),
        "inner statuses are logged: {log}"
    );
    for secret in [CANARY_SECRET, CANARY_PASSWORD, "tok-1"] {
        assert!(
            !log.contains(secret),
            "{secret} leaked into the log:\n{log}"
        );
    }
    assert!(!format!("{c:?}").contains(CANARY_SECRET));
}

/// After a 429 the whole tenant waits out its Retry-After: a request that was not itself
/// throttled, started after the 429, is not sent before the second is over.
#[tokio::test]
async fn a_429_holds_back_the_other_requests_of_the_tenant() {
    let server = start(|s, nth| match (s.path.as_str(), nth) {
        ("/v1.0/me", 0) => status_with(429, &[("Retry-After", "1")], throttled_body()),
        ("/v1.0/me", _) => json_response(200, user("me")),
        ("/v1.0/domains", _) => json_response(200, json!({"value": []})),
        _ => json_response(404, json!({})),
    })
    .await;
    let c = client(&server, |_| {});
    let first = {
        let c = c.clone();
        tokio::spawn(async move { c.me(TENANT).await })
    };
    // the 429 has been seen (the block is set in the same step, with no await in between)
    while c.stats().throttled == 0 {
        tokio::task::yield_now().await;
    }
    c.domains(TENANT).await.unwrap();
    first.await.unwrap().unwrap();
    let throttled_at = server.seen_at("/v1.0/me")[0].at;
    let other_at = server.seen_at("/v1.0/domains")[0].at;
    assert!(other_at.duration_since(throttled_at) >= Duration::from_secs(1));
}

/// A password PATCH whose answer is lost (504) and whose user cannot be read back (every read
/// 500s): the password was recorded before sending, the outcome is `unknown` (status Unknown, a
/// hint to resume), never a new password; the entry stays pending and the next run resolves it
/// by reading the user back once Graph answers again.
#[tokio::test]
async fn lost_reset_that_cannot_be_read_back_is_unknown_and_resolved_next_run() {
    use pwdrift::engine::steps::apply::{self, Cancel, ResolvedPasswords, Status, TenantClients};
    use pwdrift::graph::model::ForceFlags;
    use pwdrift::plan::{Action, Plan, ResetMethod, TenantPlan, UserPlan};
    use pwdrift::secrets::{read_passwords, Journal, OpenMode, SecretsFile};
    use std::sync::atomic::{AtomicBool, Ordering};

    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    // the user as the plan read it, until the first PATCH (the read right before the write)
    let patched = Arc::new(AtomicBool::new(false));
    let server = start(move |s, _| {
        if s.method == "GET" && s.path == "/v1.0/users/u-1" && !patched.load(Ordering::SeqCst) {
            return json_response(200, user("u-1"));
        }
        if s.method == "PATCH" && s.path == "/v1.0/users/u-1" {
            patched.store(true, Ordering::SeqCst);
            return status_with(
                504,
                &[],
                json!({"error": {"code": "GatewayTimeout", "message": "x"}}),
            );
        }
        if s.path == "/v1.0/$batch" && h.load(Ordering::SeqCst) {
            let mut u = user("u-1");
            u["lastPasswordChangeDateTime"] = json!(chrono::Utc::now().to_rfc3339());
            return json_response(
                200,
                json!({"responses": [{"id": "0", "status": 200, "body": u}]}),
            );
        }
        json_response(
            500,
            json!({"error": {"code": "InternalServerError", "message": "x"}}),
        )
    })
    .await;
    let clients = TenantClients {
        app: client(&server, |_| {}),
        delegated: None,
        verify_timeout: std::time::Duration::from_secs(2),
    };
    let flags = ForceFlags {
        force_change_password_next_sign_in: true,
        force_change_password_next_sign_in_with_mfa: false,
    };
    let tenant = TenantPlan {
        excluded: 0,
        tenant: TENANT.into(),
        tenant_id: TENANT.into(),
        decided_at: chrono::Utc::now(),
        clock: pwdrift::plan::ClockSource::Graph,
        users: vec![UserPlan {
            user_id: "u-1".into(),
            user_principal_name: "u-1@contoso.com".into(),
            allow_privileged: false,
            synced: false,
            last_password_change: None,
            declared_at: vec![],
            fingerprint: String::new(),
            action: Action::ResetPassword {
                method: ResetMethod::PatchPasswordProfile,
                password: pwdrift::config::PasswordSource::Generate { length: 20 },
                before: ForceFlags::default(),
                after: flags,
                reason: String::new(),
            },
        }],
        notes: vec![],
    };
    let plan = Plan {
        format_version: pwdrift::plan::FORMAT_VERSION.into(),
        pwdrift_version: "test".into(),
        created_at: chrono::Utc::now(),
        made_from: Default::default(),
        tenants: vec![tenant.clone()],
        content_hash: None,
    };
    let passwords = ResolvedPasswords::resolve(&plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.jsonl");
    let secrets: apply::SharedSecrets = Mutex::new(Some(
        SecretsFile::open(&path, OpenMode::CreateNew, vec![])
            .unwrap()
            .0,
    ));
    let shared = apply::Shared {
        passwords: &passwords,
        secrets: &secrets,
        cancel: &Cancel::default(),
        ledger: &apply::Ledger::default(),
        progress: &|_| {},
        resets_at_once: 4,
    };
    let results = apply::apply_tenant(&clients, &tenant, &shared)
        .await
        .unwrap();
    assert_eq!(results[0].status, Status::Unknown, "{results:?}");
    assert!(results[0]
        .hint
        .as_deref()
        .unwrap()
        .contains("--secrets-append"));
    drop(secrets);
    let text = std::fs::read_to_string(&path).unwrap();
    // one password, recorded before the first PATCH, sent as is on every attempt
    let pws = read_passwords(&text, None).unwrap();
    assert_eq!(pws.len(), 1);
    let pw = pws[0].2.expose_secret().to_owned();
    // the PATCHes (the read right before the write is a GET of the same path)
    let patches: Vec<_> = server
        .seen_at("/v1.0/users/u-1")
        .into_iter()
        .filter(|p| p.method == "PATCH")
        .collect();
    assert!(!patches.is_empty());
    assert!(
        patches.iter().all(|p| p.body.contains(&pw)),
        "the same password every time"
    );
    assert!(!format!("{results:?}").contains(&pw));
    let journal = Journal::parse(&path, &text).unwrap();
    let pending: Vec<_> = journal.pending().cloned().collect();
    assert_eq!(pending.len(), 1);

    // the next run: Graph answers again and shows the change
    healthy.store(true, Ordering::SeqCst);
    let (mut file, journal) = SecretsFile::open(&path, OpenMode::Append, vec![]).unwrap();
    let pending: Vec<_> = journal.pending().cloned().collect();
    let lines = apply::resolve_pending(|_| Some(&clients), &mut file, &pending)
        .await
        .unwrap();
    assert!(lines[0].contains("applied"), "{lines:?}");
    drop(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(Journal::parse(&path, &text).unwrap().pending().count(), 0);
}

/// After a successful resetPassword, a flags PATCH follows exactly when the planned flags differ
/// from what resetPassword leaves (forceChangePasswordNextSignIn true, the MFA variant false):
/// `after` = both false gets a PATCH setting both false; both true gets one too, and when Graph
/// refuses it the user fails with that reason (the password is recorded and `applied`); the
/// resetPassword defaults get none.
#[tokio::test]
async fn flags_follow_reset_password_when_the_plan_wants_other_flags() {
    use pwdrift::engine::steps::apply::{self, Cancel, ResolvedPasswords, Status, TenantClients};
    use pwdrift::graph::model::ForceFlags;
    use pwdrift::plan::{Action, Plan, ResetMethod, TenantPlan, UserPlan};
    use pwdrift::secrets::{Journal, OpenMode, Outcome, SecretsFile};

    let flags = |f: bool, m: bool| ForceFlags {
        force_change_password_next_sign_in: f,
        force_change_password_next_sign_in_with_mfa: m,
    };
    // what each user is planned to end with
    let planned: Vec<(&str, ForceFlags)> = vec![
        ("u-1", flags(false, false)),
        ("u-2", flags(true, true)),
        ("u-3", flags(true, false)),
    ];
    let wanted: HashMap<String, ForceFlags> =
        planned.iter().map(|(id, f)| (id.to_string(), *f)).collect();
    // the users whose password was reset: the others show as the plan read them (the read
    // right before the write)
    let reset: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let server = start(move |s, _| {
        let segments: Vec<&str> = s.path.split('/').collect();
        if s.method == "POST" && s.path.ends_with("/resetPassword") {
            let id = segments[3];
            reset.lock().unwrap().insert(id.to_owned());
            let location = format!("/v1.0/users/{id}/authentication/operations/op-{id}");
            return status_with(
                202,
                &[("Location", location.as_str()), ("Retry-After", "0")],
                json!({"newPassword": CANARY_PASSWORD}),
            );
        }
        if s.path.contains("/authentication/operations/") {
            return status_with(200, &[], json!({"id": "op", "status": "succeeded"}));
        }
        if s.method == "PATCH" && s.path == "/v1.0/users/u-2" {
            return status_with(
                403,
                &[],
                json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}}),
            );
        }
        if s.method == "PATCH" {
            return Response::builder().status(204).body(Body::empty()).unwrap();
        }
        // the read right before a password write: the user as the plan read it
        if s.method == "GET" {
            if let Some(id) = s.path.strip_prefix("/v1.0/users/") {
                if !reset.lock().unwrap().contains(id) {
                    return json_response(200, user(id));
                }
            }
        }
        if s.path == "/v1.0/$batch" {
            let body: Value = serde_json::from_str(&s.body).unwrap();
            let responses: Vec<Value> = body["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let url = r["url"].as_str().unwrap();
                    let id = url.trim_start_matches("/users/").split('?').next().unwrap();
                    // what Graph shows after the writes: the planned flags, except u-2's
                    let f = if id == "u-2" { flags(true, false) } else { wanted[id] };
                    let mut u = user(id);
                    if !reset.lock().unwrap().contains(id) {
                        return json!({"id": r["id"], "status": 200, "body": u});
                    }
                    u["lastPasswordChangeDateTime"] = json!(chrono::Utc::now().to_rfc3339());
                    u["passwordProfile"] = json!({
                        "forceChangePasswordNextSignIn": f.force_change_password_next_sign_in,
                        "forceChangePasswordNextSignInWithMfa": f.force_change_password_next_sign_in_with_mfa,
                    });
                    json!({"id": r["id"], "status": 200, "body": u})
                })
                .collect();
            return json_response(200, json!({ "responses": responses }));
        }
        json_response(404, json!({}))
    })
    .await;
    let clients = TenantClients {
        app: client(&server, |_| {}),
        delegated: Some(client(&server, |_| {})),
        verify_timeout: Duration::from_secs(2),
    };
    let tenant = TenantPlan {
        excluded: 0,
        tenant: TENANT.into(),
        tenant_id: TENANT.into(),
        decided_at: chrono::Utc::now(),
        clock: pwdrift::plan::ClockSource::Graph,
        users: planned
            .iter()
            .map(|(id, after)| UserPlan {
                user_id: id.to_string(),
                user_principal_name: format!("{id}@contoso.com"),
                allow_privileged: false,
                synced: false,
                last_password_change: None,
                declared_at: vec![],
                fingerprint: String::new(),
                action: Action::ResetPassword {
                    method: ResetMethod::ResetPasswordApi,
                    password: pwdrift::config::PasswordSource::SystemGenerated,
                    before: ForceFlags::default(),
                    after: *after,
                    reason: String::new(),
                },
            })
            .collect(),
        notes: vec![],
    };
    let plan = Plan {
        format_version: "2".into(),
        pwdrift_version: "test".into(),
        created_at: chrono::Utc::now(),
        tenants: vec![tenant.clone()],
        content_hash: None,
        made_from: Default::default(),
    };
    let passwords = ResolvedPasswords::resolve(&plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.jsonl");
    let secrets: apply::SharedSecrets = Mutex::new(Some(
        SecretsFile::open(&path, OpenMode::CreateNew, vec![])
            .unwrap()
            .0,
    ));
    let shared = apply::Shared {
        passwords: &passwords,
        secrets: &secrets,
        cancel: &Cancel::default(),
        ledger: &apply::Ledger::default(),
        progress: &|_| {},
        resets_at_once: 4,
    };
    let results = apply::apply_tenant(&clients, &tenant, &shared)
        .await
        .unwrap();
    let status: Vec<(&str, Status)> = results
        .iter()
        .map(|r| (r.user_id.as_str(), r.status))
        .collect();
    assert_eq!(
        status,
        [
            ("u-1", Status::Verified),
            ("u-2", Status::Failed),
            ("u-3", Status::Verified)
        ],
        "{results:?}"
    );
    let detail = results[1].detail.as_deref().unwrap();
    assert!(detail.contains("flags PATCH"), "{detail}");
    assert!(detail.contains("Insufficient privileges"), "{detail}");

    let patches = |id: &str| -> Vec<Value> {
        server
            .seen_at(&format!("/v1.0/users/{id}"))
            .iter()
            .filter(|s| s.method == "PATCH")
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect()
    };
    assert_eq!(
        patches("u-1"),
        [json!({"passwordProfile": {
            "forceChangePasswordNextSignIn": false,
            "forceChangePasswordNextSignInWithMfa": false
        }})]
    );
    assert_eq!(patches("u-2").len(), 1);
    assert!(
        patches("u-3").is_empty(),
        "resetPassword's own flags: no PATCH"
    );

    // every password recorded, every reset `applied` (u-2's password did change)
    drop(secrets);
    let text = std::fs::read_to_string(&path).unwrap();
    let journal = Journal::parse(&path, &text).unwrap();
    assert_eq!(journal.entries().count(), 3);
    assert!(journal
        .entries()
        .all(|e| e.has_password && e.outcome == Some(Outcome::Applied)));
}

/// A pending system-generated reset (its 202, and with it the only copy of the password, was
/// lost: no password recorded) that the next run finds took effect is recorded
/// `password_unknown`, not `applied`, and the line names it: the user has a password nobody
/// knows until it is reset again.
#[tokio::test]
async fn a_pending_system_generated_reset_that_landed_is_password_unknown() {
    use pwdrift::engine::steps::apply::{self, TenantClients};
    use pwdrift::secrets::{Journal, Method, OpenMode, Outcome, SecretsFile};

    let server = start(|s, _| {
        if s.path == "/v1.0/$batch" {
            let mut u = user("u-1");
            // changed after the intent was recorded (whole seconds, so a clear margin)
            u["lastPasswordChangeDateTime"] =
                json!((chrono::Utc::now() + chrono::Duration::seconds(5)).to_rfc3339());
            return json_response(
                200,
                json!({"responses": [{"id": "0", "status": 200, "body": u}]}),
            );
        }
        json_response(404, json!({}))
    })
    .await;
    let clients = TenantClients {
        app: client(&server, |_| {}),
        delegated: None,
        verify_timeout: Duration::from_secs(2),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.jsonl");
    {
        let (mut file, _) = SecretsFile::open(&path, OpenMode::CreateNew, vec![]).unwrap();
        file.intent(
            TENANT,
            "u-1",
            "u-1@contoso.com",
            Method::ResetPasswordApi,
            None,
        )
        .unwrap();
    }
    let (mut file, journal) = SecretsFile::open(&path, OpenMode::Append, vec![]).unwrap();
    let pending: Vec<_> = journal.pending().cloned().collect();
    assert_eq!(pending.len(), 1);
    assert!(!pending[0].has_password);
    let lines = apply::resolve_pending(|_| Some(&clients), &mut file, &pending)
        .await
        .unwrap();
    assert!(
        lines[0].contains("PASSWORD UNKNOWN") && lines[0].contains("reset it again"),
        "{lines:?}"
    );
    drop(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let journal = Journal::parse(&path, &text).unwrap();
    assert_eq!(journal.pending().count(), 0);
    assert!(journal
        .entries()
        .all(|e| e.outcome == Some(Outcome::PasswordUnknown)));
}

/// A peer whose `x-ms-throttle-limit-percentage` is absurd (1e308, NaN, negative, not a number,
/// percent instead of a fraction) beside a scope that follows no format: the listing still
/// completes, every page read once; a percentage pwdrift's own logs cannot explain slows it down
/// (clamped, so at most a second between requests), and values that are not percentages are
/// ignored.
#[tokio::test]
async fn absurd_throttle_percentages_are_bounded() {
    const PCTS: [&str; 5] = ["1e308", "NaN", "-3", "not-a-number", "180"];
    let server = start(|s, _| {
        let page: usize = s
            .query
            .split("$skiptoken=p")
            .nth(1)
            .and_then(|k| k.parse().ok())
            .unwrap_or(0);
        let mut body = json!({"value": [user(&format!("u{page}"))]});
        if page + 1 < PCTS.len() {
            body["@odata.nextLink"] = json!(format!("/v1.0/users?$skiptoken=p{}", page + 1));
        }
        let mut resp = json_response(200, body);
        let h = resp.headers_mut();
        h.insert(
            "x-ms-throttle-limit-percentage",
            PCTS[page].parse().unwrap(),
        );
        h.insert(
            "x-ms-throttle-scope",
            "not/a//scope/at/all".parse().unwrap(),
        );
        resp
    })
    .await;
    let c = client(&server, |_| {});
    let users = c.list_users(TENANT, None).await.unwrap();
    assert_eq!(users.len(), PCTS.len());
    assert_eq!(server.seen_at("/v1.0/users").len(), PCTS.len());
    let stats = c.stats();
    assert!(
        stats.slowdowns >= 1,
        "1e308 and 180 (1.8) are heeded: {stats:?}"
    );
    assert_eq!((stats.throttled, stats.retries), (0, 0), "{stats:?}");
}
