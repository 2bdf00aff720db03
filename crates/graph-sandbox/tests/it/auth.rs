//! The sandbox's token endpoint over loopback HTTP: client secret, certificate-signed client
//! assertions (a certificate generated at test time with rcgen; accepted, wrong key, expired,
//! unknown certificate, wrong audience), federated tokens, ROPC and the device code flow
//! (auto-approval and explicit approval), the identity platform's error shapes, and Graph's 401s
//! for missing, invalid and expired bearer tokens.

use crate::util::*;
use base64::Engine as _;
use graph_sandbox::seed::SeedFederatedCredential;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha1::Digest as _;

const APP: &str = "5f2d9c1e-8b7a-4e36-9d14-2a6b3c8e7f01";
const TENANT: &str = "7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const GH_ISSUER: &str = "https://token.actions.githubusercontent.com";
const GH_SUBJECT: &str = "repo:contoso/pwdrift:ref:refs/heads/main";

/// A self-signed certificate for the fixture key, made now; returns (PEM, DER).
fn certificate() -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::from_pem(&fixture("cert-key.pem")).expect("RSA key");
    let params = rcgen::CertificateParams::new(vec!["pwdrift-test".to_owned()]).unwrap();
    let cert = params.self_signed(&key).expect("self-signed certificate");
    (cert.pem(), cert.der().to_vec())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn sign(key_pem: &str, header: Header, claims: &Value) -> String {
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// The current form (the certificate-credentials page): PS256, `typ` JWT, `x5t#S256`.
fn assertion_header(der: &[u8]) -> Header {
    let mut h = Header::new(Algorithm::PS256);
    h.typ = Some("JWT".into());
    h.x5t_s256 =
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der)));
    h
}

/// The older documented form: RS256 with the SHA-1 `x5t`.
fn legacy_header(der: &[u8]) -> Header {
    let mut h = Header::new(Algorithm::RS256);
    h.x5t = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(der)));
    h
}

async fn sandbox_with_credentials() -> (Sbx, Vec<u8>) {
    sandbox_with_credentials_and(|_| {}).await
}

async fn sandbox_with_credentials_and(
    adjust: impl FnOnce(&mut graph_sandbox::SandboxConfig),
) -> (Sbx, Vec<u8>) {
    let (pem, der) = certificate();
    let mut seed = contoso_seed();
    let app = &mut seed.tenants[0].apps[0];
    app.certificates.push(pem);
    app.federated_credentials.push(SeedFederatedCredential {
        issuer: GH_ISSUER.to_owned(),
        subject: GH_SUBJECT.to_owned(),
        audiences: Vec::new(),
        issuer_public_key_pem: fixture("issuer-public.pem"),
    });
    (start_with(seed, adjust).await, der)
}

async fn assert_with(s: &Sbx, tenant: &str, assertion: &str, client_id: Option<&str>) -> Resp {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
        ("scope", "https://graph.microsoft.com/.default"),
    ];
    if let Some(c) = client_id {
        form.push(("client_id", c));
    }
    s.token_request(tenant, &form).await
}

fn token_error(r: &Resp, status: u16, error: &str, code: u64) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"], error, "{}", r.text);
    assert_eq!(v["error_codes"], json!([code]), "{}", r.text);
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .starts_with(&format!("AADSTS{code}: ")));
    for k in ["timestamp", "trace_id", "correlation_id"] {
        assert!(v[k].is_string(), "{k} in {}", r.text);
    }
}

#[tokio::test]
async fn certificate_assertion() {
    let (s, der) = sandbox_with_credentials().await;
    let aud = format!("{}/{TENANT}/oauth2/v2.0/token", s.info.authority_host);
    let claims = |exp: i64, aud: &str| {
        json!({"aud": aud, "iss": APP, "sub": APP, "jti": uuid::Uuid::new_v4().to_string(),
               "nbf": now() - 10, "iat": now() - 10, "exp": exp})
    };
    let key = fixture("cert-key.pem");

    // accepted, with or without client_id, on the tenant id or a domain
    let a = sign(&key, assertion_header(&der), &claims(now() + 600, &aud));
    let r = assert_with(&s, TENANT, &a, Some(APP)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["ext_expires_in"], 3599);
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/v1.0/users?$top=1", &token).await.status, 200);
    let aud_domain = format!("{}/contoso.com/oauth2/v2.0/token", s.info.authority_host);
    let a = sign(
        &key,
        assertion_header(&der),
        &claims(now() + 600, &aud_domain),
    );
    assert_eq!(assert_with(&s, "contoso.com", &a, None).await.status, 200);

    // x5t#S256 in padded standard base64
    let mut h = Header::new(Algorithm::PS256);
    h.x5t_s256 = Some(base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&der)));
    let a = sign(&key, h, &claims(now() + 600, &aud));
    assert_eq!(assert_with(&s, TENANT, &a, Some(APP)).await.status, 200);

    // the older form (RS256 with x5t), RS256 with x5t#S256, PS256 with only x5t: refused by
    // default
    let mut rs256_s256 = assertion_header(&der);
    rs256_s256.alg = Algorithm::RS256;
    let mut ps256_x5t = legacy_header(&der);
    ps256_x5t.alg = Algorithm::PS256;
    for h in [legacy_header(&der), rs256_s256, ps256_x5t] {
        let a = sign(&key, h.clone(), &claims(now() + 600, &aud));
        let r = assert_with(&s, TENANT, &a, Some(APP)).await;
        token_error(&r, 401, "invalid_client", 700027);
        assert!(
            r.text.contains("--legacy-certificate-assertions"),
            "{h:?}: {}",
            r.text
        );
    }
    // ... and accepted with --legacy-certificate-assertions, beside the current form
    let (legacy, _) =
        sandbox_with_credentials_and(|c| c.realism.legacy_certificate_assertions = true).await;
    let laud = format!("{}/{TENANT}/oauth2/v2.0/token", legacy.info.authority_host);
    for h in [legacy_header(&der), assertion_header(&der)] {
        let a = sign(&key, h.clone(), &claims(now() + 600, &laud));
        let r = assert_with(&legacy, TENANT, &a, Some(APP)).await;
        assert_eq!(r.status, 200, "{h:?}: {}", r.text);
    }
    legacy.sandbox.shutdown().await;

    // signed with another key (same x5t): signature refused
    let a = sign(
        &fixture("wrong-key.pem"),
        assertion_header(&der),
        &claims(now() + 600, &aud),
    );
    token_error(
        &assert_with(&s, TENANT, &a, Some(APP)).await,
        401,
        "invalid_client",
        700027,
    );

    // expired
    let a = sign(&key, assertion_header(&der), &claims(now() - 600, &aud));
    token_error(
        &assert_with(&s, TENANT, &a, Some(APP)).await,
        401,
        "invalid_client",
        700024,
    );

    // a certificate that is not registered
    let mut h = assertion_header(b"another certificate");
    h.typ = Some("JWT".into());
    let a = sign(&key, h, &claims(now() + 600, &aud));
    let r = assert_with(&s, TENANT, &a, Some(APP)).await;
    token_error(&r, 401, "invalid_client", 700027);
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("not registered"));

    // audience of another endpoint
    let a = sign(
        &key,
        assertion_header(&der),
        &claims(now() + 600, "https://example.com/token"),
    );
    assert_eq!(assert_with(&s, TENANT, &a, Some(APP)).await.status, 401);
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn federated_assertion() {
    let (s, _) = sandbox_with_credentials().await;
    let issuer_key = fixture("issuer-key.pem");
    let claims = |sub: &str, aud: &str| {
        json!({"iss": GH_ISSUER, "sub": sub, "aud": aud, "nbf": now() - 5, "iat": now() - 5,
               "exp": now() + 300})
    };
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("gh-key".into());

    let a = sign(
        &issuer_key,
        h.clone(),
        &claims(GH_SUBJECT, "api://AzureADTokenExchange"),
    );
    let r = assert_with(&s, "contoso.onmicrosoft.com", &a, Some(APP)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.get("/v1.0/groups", &token).await.status, 200);

    // another subject, another audience, another signer
    let a = sign(
        &issuer_key,
        h.clone(),
        &claims(
            "repo:evil/fork:ref:refs/heads/main",
            "api://AzureADTokenExchange",
        ),
    );
    token_error(
        &assert_with(&s, TENANT, &a, Some(APP)).await,
        401,
        "invalid_client",
        70021,
    );
    let a = sign(
        &issuer_key,
        h.clone(),
        &claims(GH_SUBJECT, "api://SomethingElse"),
    );
    assert_eq!(assert_with(&s, TENANT, &a, Some(APP)).await.status, 401);
    let a = sign(
        &fixture("wrong-key.pem"),
        h,
        &claims(GH_SUBJECT, "api://AzureADTokenExchange"),
    );
    assert_eq!(assert_with(&s, TENANT, &a, Some(APP)).await.status, 401);
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn client_secret_and_errors() {
    let s = contoso().await;
    let ok = [
        ("grant_type", "client_credentials"),
        ("client_id", APP),
        ("client_secret", "contoso-sandbox-secret-not-for-production"),
    ];
    // the sandbox's own Graph URL as the .default scope works too
    let own_scope = format!("{}/.default", s.info.graph_url);
    let mut form = ok.to_vec();
    form.push(("scope", &own_scope));
    assert_eq!(s.token_request(TENANT, &form).await.status, 200);

    let mut form = ok.to_vec();
    form.push(("scope", "https://graph.microsoft.com/.default"));
    token_error(
        &s.token_request("fabrikam.com", &form).await,
        400,
        "invalid_request",
        90002,
    );
    let mut bad = form.clone();
    bad[2] = ("client_secret", "wrong");
    token_error(
        &s.token_request(TENANT, &bad).await,
        401,
        "invalid_client",
        7000215,
    );
    let mut bad = form.clone();
    bad[1] = ("client_id", "00000000-0000-4000-8000-000000000000");
    token_error(
        &s.token_request(TENANT, &bad).await,
        400,
        "unauthorized_client",
        700016,
    );
    let mut bad = ok.to_vec();
    bad.push(("scope", "https://graph.microsoft.com/User.Read.All"));
    token_error(
        &s.token_request(TENANT, &bad).await,
        400,
        "invalid_scope",
        1002012,
    );
    token_error(
        &s.token_request(TENANT, &ok[1..]).await,
        400,
        "invalid_request",
        900144,
    );
    let r = s.token_request(TENANT, &ok[..2]).await;
    assert_eq!(r.status, 400);
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn delegated_ropc_and_device_code() {
    let s = contoso().await;
    // ROPC: wrong password, then right
    let r = s
        .token_request(
            "contoso.com",
            &[
                ("grant_type", "password"),
                ("client_id", PUBLIC_CLIENT),
                ("username", ADMIN),
                ("password", "nope"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    token_error(&r, 400, "invalid_grant", 50126);
    let t = s.admin_token().await;
    let me = s.get("/v1.0/me", &t).await.json();
    assert_eq!(me["userPrincipalName"], ADMIN);

    // device code: auto-approved by the seed's deviceCodeAutoApprove on the second poll
    let dc: Value = s
        .http
        .post(format!(
            "{}/contoso.com/oauth2/v2.0/devicecode",
            s.info.authority_host
        ))
        .form(&[
            ("client_id", PUBLIC_CLIENT),
            (
                "scope",
                "https://graph.microsoft.com/UserAuthenticationMethod.ReadWrite.All offline_access",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for k in [
        "device_code",
        "user_code",
        "verification_uri",
        "expires_in",
        "interval",
        "message",
    ] {
        assert!(dc.get(k).is_some(), "{k} in {dc}");
    }
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", PUBLIC_CLIENT),
        ("device_code", dc["device_code"].as_str().unwrap()),
    ];
    token_error(
        &s.token_request("contoso.com", &poll).await,
        400,
        "authorization_pending",
        70016,
    );
    let r = s.token_request("contoso.com", &poll).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = s
        .post(
            &format!(
                "/v1.0/users/{DAVE_ID}/authentication/methods/{PASSWORD_METHOD}/resetPassword"
            ),
            &t,
            r#"{"newPassword":"Cuyo5459"}"#,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    // a used device code is gone
    token_error(
        &s.token_request("contoso.com", &poll).await,
        400,
        "invalid_grant",
        70000,
    );
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn device_code_explicit_approval() {
    let mut seed = contoso_seed();
    seed.tenants[0].device_code_auto_approve = None;
    seed.tenants[0].users.push(delegated_user(
        "authadmin@contoso.com",
        "Auth-Admin-2026",
        &["Authentication Administrator"],
    ));
    let s = start_with(seed, |_| {}).await;
    let dc: Value = s
        .http
        .post(format!(
            "{}/{TENANT}/oauth2/v2.0/devicecode",
            s.info.authority_host
        ))
        .form(&[
            ("client_id", PUBLIC_CLIENT),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", PUBLIC_CLIENT),
        ("device_code", dc["device_code"].as_str().unwrap()),
    ];
    for _ in 0..3 {
        token_error(
            &s.token_request(TENANT, &poll).await,
            400,
            "authorization_pending",
            70016,
        );
    }
    let r = s
        .http
        .post(s.url("/_sandbox/devicecode/approve"))
        .json(&json!({"user_code": dc["user_code"], "username": "authadmin@contoso.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s.token_request(TENANT, &poll).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = r.json()["access_token"].as_str().unwrap().to_owned();
    let me = s.get("/v1.0/me", &t).await.json();
    assert_eq!(me["userPrincipalName"], "authadmin@contoso.com");
    s.sandbox.shutdown().await;
}

/// Bearer tokens expire: after `--token-lifetime` the same token is a 401 with Graph's body.
#[tokio::test]
async fn expired_bearer_token() {
    let s = start_with(contoso_seed(), |c| c.token_lifetime = 1).await;
    let t = s.app_token().await;
    assert_eq!(s.get("/v1.0/users?$top=1", &t).await.status, 200);
    // the lifetime is 1 s and tokens carry whole seconds: 2.1 s later it is over
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let m = s
        .get("/v1.0/users?$top=1", &t)
        .await
        .graph_error(401, "InvalidAuthenticationToken");
    assert_eq!(m, "Access token has expired or is not yet valid.");
    s.sandbox.shutdown().await;
}

/// The same multi-tenant app in two tenants: a token is for one tenant and sees its users only.
#[tokio::test]
async fn multi_tenant_app() {
    let mut seed = contoso_seed();
    let mut fabrikam = seed.tenants[0].clone();
    fabrikam.id = "9d1f0c3a-2b4e-4c6d-8e7f-a1b2c3d4e5f6".into();
    fabrikam.initial_domain = "fabrikam.onmicrosoft.com".into();
    fabrikam.domains = vec!["fabrikam.com".into()];
    fabrikam.device_code_auto_approve = None;
    fabrikam.groups.clear();
    fabrikam.risky_users.clear();
    fabrikam.users = vec![graph_sandbox::seed::SeedUser {
        user_principal_name: "zoe@fabrikam.com".into(),
        ..Default::default()
    }];
    seed.tenants.push(fabrikam);
    let s = start_with(seed, |_| {}).await;
    assert_eq!(s.info.tenants.len(), 2);
    assert_eq!(s.info.tenants[1].client_id, APP);
    let r = s
        .token_request(
            "fabrikam.com",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", "contoso-sandbox-secret-not-for-production"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = r.json()["access_token"].as_str().unwrap().to_owned();
    let v = s
        .get("/v1.0/users?$select=userPrincipalName", &t)
        .await
        .json();
    let users: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["zoe@fabrikam.com"]);
    s.get("/v1.0/users/alice@contoso.com", &t)
        .await
        .graph_error(404, "Request_ResourceNotFound");
    s.sandbox.shutdown().await;
}

/// A user who must change the password cannot get a token non-interactively (AADSTS50055).
#[tokio::test]
async fn ropc_refuses_a_forced_user() {
    let mut seed = contoso_seed();
    let bob = seed.tenants[0]
        .users
        .iter_mut()
        .find(|u| u.user_principal_name == "bob@contoso.com")
        .unwrap();
    bob.password = Some("Bob-Pass-2026".into());
    let s = start_with(seed, |_| {}).await;
    let r = s
        .token_request(
            "contoso.com",
            &[
                ("grant_type", "password"),
                ("client_id", PUBLIC_CLIENT),
                ("username", "bob@contoso.com"),
                ("password", "Bob-Pass-2026"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    token_error(&r, 400, "invalid_grant", 50055);
    // after bob changed it, he can
    let r = s
        .http
        .post(s.url("/_sandbox/users/bob@contoso.com/changePassword"))
        .json(&json!({"newPassword": "Bob-Pass-2027"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.user_token("bob@contoso.com", "Bob-Pass-2027").await;
    s.sandbox.shutdown().await;
}

/// `--faults token=ANSWER*N`: the first N token requests get ANSWER (a transient failure), the
/// next are served; `token=CODE`: every request is refused with that AADSTS code, in the
/// identity platform's error shape. Counted in `/_sandbox/stats`.
#[tokio::test]
async fn token_faults_answer_the_first_requests_then_serve() {
    async fn ask(s: &Sbx) -> Resp {
        let (id, secret) = (s.info.client_id.clone(), s.info.client_secret.clone());
        s.token_request(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await
    }
    let s = start_with(contoso_seed(), |c| c.faults = Some("token=503*2".into())).await;
    for _ in 0..2 {
        let r = ask(&s).await;
        assert_eq!(r.status, 503, "{}", r.text);
        assert_eq!(r.json()["error"], "temporarily_unavailable");
    }
    assert_eq!(ask(&s).await.status, 200);
    let stats = s.stats().await;
    assert_eq!(stats["faults"]["token_requests"], 3, "{stats}");
    assert_eq!(stats["faults"]["token_faults"], 2, "{stats}");
    s.sandbox.shutdown().await;

    let s = start_with(contoso_seed(), |c| {
        c.faults = Some("token=temporarily_unavailable*1".into())
    })
    .await;
    let r = ask(&s).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"], "temporarily_unavailable");
    assert_eq!(ask(&s).await.status, 200);
    s.sandbox.shutdown().await;

    let s = start_with(contoso_seed(), |c| c.faults = Some("token=7000222".into())).await;
    for _ in 0..2 {
        let r = ask(&s).await;
        token_error(&r, 401, "invalid_client", 7000222);
        assert!(!r.text.contains(&s.info.client_secret));
    }
    s.sandbox.shutdown().await;
    let s = start_with(contoso_seed(), |c| {
        c.faults = Some("token=AADSTS700016".into())
    })
    .await;
    token_error(&ask(&s).await, 400, "unauthorized_client", 700016);
    s.sandbox.shutdown().await;
}
