//! Tests of the credential wire formats over real loopback HTTP: what each credential kind sends
//! to the token endpoint (client secret, certificate assertion, workload identity file re-read
//! per token, GitHub Actions OIDC exchange, username/password, device code with polling and
//! refresh token), and how token-endpoint errors surface.
//!
//! The peer is the scripted server (`common::Scripted`) standing in for the identity platform's
//! token endpoint (and GitHub's OIDC endpoint, which the sandbox does not emulate). It checks the
//! OAuth2 form fields only; Graph behaviour is tested against the sandbox in `client_graph.rs`.

use std::collections::HashMap;
use std::time::Duration;

use pwdrift::graph::auth::{AuthError, Cloud, Credential, Endpoints};
use pwdrift::graph::client::{ClientOptions, GraphClient, GraphError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::common::{Scripted, Seen};

const TENANT: &str = "tenant-1";

/// The scripted server; a script answers a status and a JSON body.
async fn start(respond: impl Fn(&Seen, usize) -> (u16, Value) + Send + Sync + 'static) -> Scripted {
    Scripted::start(respond).await
}

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

/// A token response; `expires_in: 0` makes every call fetch a new token.
fn token(n: usize, expires_in: u64) -> (u16, Value) {
    (
        200,
        json!({"token_type": "Bearer", "expires_in": expires_in, "access_token": format!("tok-{n}")}),
    )
}

fn client(server: &Scripted, credential: Credential) -> GraphClient {
    let endpoints = Endpoints::new(Cloud::Global, Some(&server.base), Some(&server.base)).unwrap();
    let mut options = ClientOptions::new(endpoints);
    options.base_delay = Duration::from_millis(1);
    options.max_backoff = Duration::from_millis(10);
    GraphClient::new(options, credential).unwrap()
}

fn scope(server: &Scripted) -> String {
    format!("{}/.default", server.base)
}

/// The federated token file is re-read for every token request (it rotates).
#[tokio::test]
async fn workload_identity_rereads_the_token_file() {
    let server = start(|_, n| token(n, 0)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "federated-1\n").unwrap();
    let c = client(
        &server,
        Credential::WorkloadIdentity {
            tenant: TENANT.into(),
            client_id: "client-1".into(),
            token_file: file.clone(),
        },
    );
    assert_eq!(c.token(TENANT).await.unwrap().expose_secret(), "tok-0");
    std::fs::write(&file, "federated-2").unwrap();
    assert_eq!(c.token(TENANT).await.unwrap().expose_secret(), "tok-1");
    let calls = server.seen_at(&token_path());
    assert_eq!(calls.len(), 2);
    for (call, assertion) in calls.iter().zip(["federated-1", "federated-2"]) {
        let f = &call.form;
        assert_eq!(f["grant_type"], "client_credentials");
        assert_eq!(f["client_id"], "client-1");
        assert_eq!(f["scope"], scope(&server));
        assert_eq!(
            f["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(f["client_assertion"], assertion);
        assert!(!f.contains_key("client_secret"));
    }
}

/// GitHub OIDC: GET the request URL with `&audience=api://AzureADTokenExchange` and the bearer
/// request token, then exchange `.value` as the client assertion.
#[tokio::test]
async fn github_oidc_exchanges_the_actions_token() {
    let server = start(|s, n| match s.path.as_str() {
        "/_apis/idtoken" => (200, json!({"count": 1, "value": "gh-oidc-jwt"})),
        _ => token(n, 3599),
    })
    .await;
    let c = client(
        &server,
        Credential::GitHubOidc {
            tenant: TENANT.into(),
            client_id: "client-1".into(),
            request_url: format!("{}/_apis/idtoken?api-version=2.0", server.base),
            request_token: SecretString::from("gh-request-token"),
        },
    );
    assert_eq!(c.token(TENANT).await.unwrap().expose_secret(), "tok-0");
    let gh = server.seen_at("/_apis/idtoken");
    assert_eq!(gh.len(), 1);
    assert_eq!(gh[0].authorization, "bearer gh-request-token");
    let q: HashMap<String, String> = url::form_urlencoded::parse(gh[0].query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(q["audience"], "api://AzureADTokenExchange");
    assert_eq!(q["api-version"], "2.0");
    let t = &server.seen_at(&token_path())[0].form;
    assert_eq!(t["client_assertion"], "gh-oidc-jwt");
    assert_eq!(t["grant_type"], "client_credentials");
}

/// Certificate: the client assertion is a JWT for the token endpoint, with `x5t#S256` (and no
/// SHA-1 `x5t`), signed PS256, as the current certificate-credentials page says.
#[tokio::test]
async fn certificate_sends_a_signed_assertion() {
    use rsa::pkcs8::EncodePrivateKey as _;
    let server = start(|_, n| token(n, 3599)).await;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let kp = rcgen::KeyPair::from_pem(&pem).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["pwdrift".to_owned()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, format!("{}{}", cert.pem(), pem.as_str())).unwrap();
    let c = client(
        &server,
        Credential::Certificate {
            tenant: TENANT.into(),
            client_id: "client-1".into(),
            pem_path: path,
        },
    );
    c.token(TENANT).await.unwrap();
    let f = &server.seen_at(&token_path())[0].form;
    let jwt = &f["client_assertion"];
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::PS256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert!(header.x5t_s256.is_some() && header.x5t.is_none());
    let claims: Value = jsonwebtoken::dangerous::insecure_decode(jwt)
        .unwrap()
        .claims;
    assert_eq!(claims["aud"], format!("{}{}", server.base, token_path()));
    assert_eq!(claims["iss"], "client-1");
    assert_eq!(claims["sub"], "client-1");
    assert!(!f.contains_key("client_secret"));
}

/// Username/password (ROPC): grant_type=password with the user's credentials.
#[tokio::test]
async fn username_password_uses_the_password_grant() {
    let server = start(|_, n| token(n, 3599)).await;
    let c = client(
        &server,
        Credential::UsernamePassword {
            tenant: TENANT.into(),
            client_id: "client-1".into(),
            username: "admin@contoso.com".into(),
            password: SecretString::from("Admin-Pw-1!"),
        },
    );
    assert!(c.credential().is_delegated());
    c.token(TENANT).await.unwrap();
    let f = &server.seen_at(&token_path())[0].form;
    assert_eq!(f["grant_type"], "password");
    assert_eq!(f["username"], "admin@contoso.com");
    assert_eq!(f["password"], "Admin-Pw-1!");
    assert_eq!(f["scope"], scope(&server));
}

/// Device code: one code request, polling through `authorization_pending`, then the token; when
/// it expires, the refresh token renews it without a new sign-in.
#[tokio::test]
async fn device_code_polls_then_refreshes_without_signing_in_again() {
    let server = start(|s, n| {
        if s.path.ends_with("/devicecode") {
            return (
                200,
                json!({"device_code": "dev-code-1", "user_code": "ABCD-EFGH", "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 900, "interval": 1, "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate."}),
            );
        }
        match s.form.get("grant_type").map(String::as_str) {
            Some("urn:ietf:params:oauth:grant-type:device_code") if n == 0 => (
                400,
                json!({"error": "authorization_pending", "error_description": "AADSTS70016: pending"}),
            ),
            Some("urn:ietf:params:oauth:grant-type:device_code") => (
                200,
                json!({"token_type": "Bearer", "expires_in": 0, "access_token": "tok-device", "refresh_token": "rt-1"}),
            ),
            Some("refresh_token") => (
                200,
                json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "tok-refreshed", "refresh_token": "rt-2"}),
            ),
            _ => (400, json!({"error": "invalid_request"})),
        }
    })
    .await;
    let c = client(
        &server,
        Credential::DeviceCode {
            tenant: TENANT.into(),
            client_id: "public-client".into(),
        },
    );
    assert_eq!(c.token(TENANT).await.unwrap().expose_secret(), "tok-device");
    assert_eq!(
        c.token(TENANT).await.unwrap().expose_secret(),
        "tok-refreshed"
    );
    let codes = server.seen_at(&format!("/{TENANT}/oauth2/v2.0/devicecode"));
    assert_eq!(codes.len(), 1, "signed in once");
    assert_eq!(codes[0].form["client_id"], "public-client");
    assert_eq!(
        codes[0].form["scope"],
        format!("{} offline_access", scope(&server))
    );
    let calls = server.seen_at(&token_path());
    assert_eq!(calls.len(), 3, "pending, token, refresh");
    assert_eq!(calls[0].form["device_code"], "dev-code-1");
    assert_eq!(calls[2].form["refresh_token"], "rt-1");
}

/// A refused token request surfaces Entra's error and description, never the secret, and is not
/// retried (a 400 is final).
#[tokio::test]
async fn token_errors_are_reported_without_the_secret() {
    let server = start(|_, _| {
        (
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215], "trace_id": "trace-1", "correlation_id": "corr-1"}),
        )
    })
    .await;
    let c = client(
        &server,
        Credential::ClientSecret {
            tenant: TENANT.into(),
            client_id: "client-1".into(),
            secret: SecretString::from("Canary-Secret-Zz9"),
        },
    );
    let err = c.list_users(TENANT, None).await.unwrap_err();
    let GraphError::Auth(AuthError::Token(failure)) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(failure.error, "invalid_client");
    let text = err.to_string();
    assert!(
        text.contains("AADSTS7000215") && text.contains("trace-1"),
        "{text}"
    );
    assert!(!text.contains("Canary") && !format!("{err:?}").contains("Canary"));
    assert_eq!(server.seen_at(&token_path()).len(), 1);
    assert!(
        server.seen_at("/v1.0/users").is_empty(),
        "no Graph call without a token"
    );
}

/// A pre-acquired token is used as is: no token endpoint call.
#[tokio::test]
async fn access_token_is_used_as_is() {
    let server = start(|s, _| match s.path.as_str() {
        "/v1.0/me" => (200, json!({"id": "me"})),
        _ => (500, json!({})),
    })
    .await;
    let c = client(
        &server,
        Credential::AccessToken {
            token: SecretString::from("pre-acquired"),
        },
    );
    assert_eq!(c.me(TENANT).await.unwrap().id, "me");
    assert_eq!(
        server.seen_at("/v1.0/me")[0].authorization,
        "Bearer pre-acquired"
    );
    assert!(server.seen_at(&token_path()).is_empty());
}

/// The token endpoint is retried with the Graph client's retry policy: a 503 or a 500 is
/// transient (after a full-jitter backoff), at most 4 retries; then the last answer is the error.
#[tokio::test]
async fn token_endpoint_retries_transient_failures_then_gives_up() {
    let secret = || Credential::ClientSecret {
        tenant: TENANT.into(),
        client_id: "client-1".into(),
        secret: SecretString::from("s"),
    };
    let server = start(|_, n| {
        if n < 2 {
            (503, json!({}))
        } else {
            token(n, 3599)
        }
    })
    .await;
    let c = client(&server, secret());
    assert_eq!(c.token(TENANT).await.unwrap().expose_secret(), "tok-2");
    assert_eq!(server.seen_at(&token_path()).len(), 3);
    assert_eq!(c.stats().token_requests, 3);

    let server = start(|_, _| {
        (
            500,
            json!({"error": "temporarily_unavailable", "error_description": "AADSTS50000: try again later"}),
        )
    })
    .await;
    let c = client(&server, secret());
    let err = c.token(TENANT).await.unwrap_err();
    assert!(err.to_string().contains("temporarily_unavailable"), "{err}");
    assert_eq!(
        server.seen_at(&token_path()).len(),
        5,
        "the first attempt and 4 retries"
    );
}

/// `temporarily_unavailable` is transient whatever its status (here a 400, as an OAuth error
/// answer): retried, then the token comes. A 429 is retried after its `Retry-After`.
#[tokio::test]
async fn temporarily_unavailable_and_429_are_retried() {
    let secret = || Credential::ClientSecret {
        tenant: TENANT.into(),
        client_id: "client-1".into(),
        secret: SecretString::from("s"),
    };
    let server = start(|_, n| match n {
        0 => (
            400,
            json!({"error": "temporarily_unavailable", "error_description": "AADSTS50000: busy", "error_codes": [50000]}),
        ),
        1 => (429, json!({"error": "temporarily_unavailable"})),
        _ => token(n, 3599),
    })
    .await;
    let c = client(&server, secret());
    let started = std::time::Instant::now();
    assert_eq!(c.token(TENANT).await.unwrap().expose_secret(), "tok-2");
    assert_eq!(server.seen_at(&token_path()).len(), 3);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A permanent refusal is asked once, even by many callers at once: the refusal is kept for
/// the run, and it names the AADSTS code with its meaning.
#[tokio::test]
async fn a_permanent_refusal_is_asked_once_for_all_callers() {
    let server = start(|_, _| {
        (
            401,
            json!({"error": "invalid_client", "error_description": "AADSTS7000222: The provided client secret keys for app 'client-1' are expired.", "error_codes": [7000222]}),
        )
    })
    .await;
    let c = client(
        &server,
        Credential::ClientSecret {
            tenant: TENANT.into(),
            client_id: "client-1".into(),
            secret: SecretString::from("Canary-Expired-1"),
        },
    );
    let calls = (0..8).map(|_| c.token(TENANT));
    for r in futures_util::future::join_all(calls).await {
        let err = r.unwrap_err();
        let GraphError::Auth(AuthError::Token(f)) = &err else {
            panic!("{err:?}")
        };
        assert!(!f.transient);
        let text = err.to_string();
        assert!(
            text.contains("AADSTS7000222 means the client secret has expired"),
            "{text}"
        );
        assert!(!text.contains("Canary"), "{text}");
    }
    assert_eq!(server.seen_at(&token_path()).len(), 1);
}
