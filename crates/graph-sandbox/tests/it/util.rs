//! Shared helpers of the sandbox integration tests: start a real sandbox in-process on
//! 127.0.0.1:0 and talk to it over loopback HTTP with reqwest.

use std::path::PathBuf;

use graph_sandbox::seed::{Seed, SeedUser};
use graph_sandbox::{start, RunningSandbox, SandboxConfig, SandboxInfo, SeedSource};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const ADMIN: &str = "admin@contoso.com";
pub const ADMIN_PASSWORD: &str = "Sandbox-Admin-2026!";
pub const PUBLIC_CLIENT: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
pub const DAVE_ID: &str = "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0";
pub const PASSWORD_METHOD: &str = "28c10230-6103-485e-b985-444c60001490";

pub fn contoso_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/sandbox/contoso.seed.yaml")
}

pub fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The Contoso example seed, parsed (to be adjusted by a test).
pub fn contoso_seed() -> Seed {
    graph_sandbox::seed::load(&contoso_path()).expect("example seed loads")
}

/// A cloud user with a password and roles, for delegated tests.
pub fn delegated_user(upn: &str, password: &str, roles: &[&str]) -> SeedUser {
    SeedUser {
        user_principal_name: upn.to_owned(),
        password: Some(password.to_owned()),
        directory_roles: roles.iter().map(|s| s.to_string()).collect(),
        ..SeedUser::default()
    }
}

pub struct Sbx {
    pub sandbox: RunningSandbox,
    pub info: SandboxInfo,
    pub http: reqwest::Client,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    /// Asserts a Graph error body with this status and code; returns the message.
    pub fn graph_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let v = self.json();
        assert_eq!(v["error"]["code"], code, "body: {}", self.text);
        let inner = &v["error"]["innerError"];
        assert!(inner["date"].is_string(), "innerError.date: {}", self.text);
        assert_eq!(
            inner["request-id"].as_str(),
            self.header("request-id").as_deref(),
            "innerError.request-id is the header"
        );
        assert!(inner["client-request-id"].is_string());
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub async fn start_with(seed: Seed, adjust: impl FnOnce(&mut SandboxConfig)) -> Sbx {
    let mut config = SandboxConfig::new(SeedSource::Seed(Box::new(seed)));
    adjust(&mut config);
    start_config(config).await
}

pub async fn start_config(config: SandboxConfig) -> Sbx {
    let sandbox = start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("sandbox starts");
    let info = sandbox.info.clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    Sbx {
        sandbox,
        info,
        http,
    }
}

pub async fn contoso() -> Sbx {
    start_with(contoso_seed(), |_| {}).await
}

impl Sbx {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.info.graph_url)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let r = rb.send().await.expect("request");
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            text: r.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(Method::GET, path, Some(token), None, &[]).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &str) -> Resp {
        self.send(Method::PATCH, path, Some(token), Some(body), &[])
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: &str) -> Resp {
        self.send(Method::POST, path, Some(token), Some(body), &[])
            .await
    }

    /// POSTs a form to the token endpoint of `tenant`.
    pub async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> Resp {
        let r = self
            .http
            .post(format!(
                "{}/{tenant}/oauth2/v2.0/token",
                self.info.authority_host
            ))
            .form(form)
            .send()
            .await
            .expect("token request");
        Resp {
            status: r.status(),
            headers: r.headers().clone(),
            text: r.text().await.expect("body"),
        }
    }

    /// An app-only token for the first app (client secret).
    pub async fn app_token(&self) -> String {
        let r = self
            .token_request(
                &self.info.tenant_id,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &self.info.client_id),
                    ("client_secret", &self.info.client_secret),
                    ("scope", "https://graph.microsoft.com/.default"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    /// A delegated token (ROPC through the public client).
    pub async fn user_token(&self, username: &str, password: &str) -> String {
        let r = self
            .token_request(
                "contoso.com",
                &[
                    ("grant_type", "password"),
                    ("client_id", PUBLIC_CLIENT),
                    ("username", username),
                    ("password", password),
                    (
                        "scope",
                        "https://graph.microsoft.com/UserAuthenticationMethod.ReadWrite.All https://graph.microsoft.com/User.ReadWrite.All https://graph.microsoft.com/User.Read.All offline_access",
                    ),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.user_token(ADMIN, ADMIN_PASSWORD).await
    }

    /// The sandbox's view of one user (`/_sandbox/state?user=`).
    pub async fn state_of(&self, user: &str) -> Value {
        let r = self
            .http
            .get(self.url("/_sandbox/state"))
            .query(&[("user", user)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let users = v["tenants"][0]["users"].as_array().unwrap().clone();
        assert_eq!(users.len(), 1, "state of {user}: {v}");
        users[0].clone()
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(self.url("/_sandbox/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The example seed with roles, eligibility, a federated domain and guests
/// (examples/sandbox/privileged.seed.yaml).
pub fn privileged_seed() -> Seed {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/sandbox/privileged.seed.yaml");
    graph_sandbox::seed::load(&p).expect("privileged seed loads")
}

impl Sbx {
    /// Follows `@odata.nextLink` from `path`; returns every item and the number of pages.
    pub async fn get_all(&self, path: &str, token: &str) -> (Vec<Value>, usize) {
        let mut url = self.url(path);
        let mut items = Vec::new();
        let mut pages = 0;
        loop {
            let r = self.http.get(&url).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200, "{url}");
            let v: Value = r.json().await.unwrap();
            pages += 1;
            items.extend(v["value"].as_array().unwrap().iter().cloned());
            match v["@odata.nextLink"].as_str() {
                Some(n) => url = n.to_owned(),
                None => return (items, pages),
            }
        }
    }
}
