//! The tenant is checked before anything is read or written (issue 19, point 1): whatever signs
//! in (a pre-acquired token, a client secret, a certificate, the delegated sign-in) and however
//! it ends up in another tenant (a token acquired for it, an authority that issues tokens for it),
//! `plan`, `apply` and `import` refuse with exit 1, naming the tenant desired state names and the
//! tenant Graph answered for, and the sandbox saw no user read and no write. A saved plan is
//! refused when the tenant it records is not the one the credentials talk to now. The token errors
//! of a pre-acquired token name what is wrong with it (point 8).
//!
//! Two tenants in one sandbox: Contoso (desired state's) and Fabrikam (the other one). Fabrikam
//! has an app that may read `/organization` and one that may not (the check falls back to the
//! token's `tid` claim).

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::common::*;

const CONTOSO: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const FABRIKAM: &str = "bbbbbbbb-0000-4000-8000-00000000000b";
const FABRIKAM_APP: &str = "b0000000-0000-4000-8000-0000000000b1";
const FABRIKAM_NO_ORG_APP: &str = "b0000000-0000-4000-8000-0000000000b3";
const FABRIKAM_PUBLIC: &str = "b0000000-0000-4000-8000-0000000000b2";

fn tenant_yaml(id: &str, name: &str, app_prefix: &str) -> String {
    format!(
        r#"  - id: {id}
    initialDomain: {name}.onmicrosoft.com
    domains: [{name}.com]
    displayName: {name}
    apps:
      - clientId: {app_prefix}1
        displayName: pwdrift
        clientSecrets: ["{name}-secret"]
        applicationPermissions: [User-PasswordProfile.ReadWrite.All, User.Read.All, GroupMember.Read.All, RoleManagement.Read.Directory, AdministrativeUnit.Read.All, PrivilegedEligibilitySchedule.Read.AzureADGroup, PrivilegedAssignmentSchedule.Read.AzureADGroup, Domain.Read.All, Organization.Read.All]
        directoryRoles: [User Administrator]
      - clientId: {app_prefix}3
        displayName: pwdrift without Organization.Read.All
        clientSecrets: ["{name}-secret-no-org"]
        applicationPermissions: [User-PasswordProfile.ReadWrite.All, User.Read.All, GroupMember.Read.All, RoleManagement.Read.Directory, AdministrativeUnit.Read.All, PrivilegedEligibilitySchedule.Read.AzureADGroup, PrivilegedAssignmentSchedule.Read.AzureADGroup, Domain.Read.All]
        directoryRoles: [User Administrator]
    publicClients:
      - clientId: {app_prefix}2
        scopes: [User.Read, UserAuthenticationMethod.ReadWrite.All, User.ReadWrite.All, User.Read.All, GroupMember.Read.All, RoleManagement.Read.Directory, AdministrativeUnit.Read.All, PrivilegedEligibilitySchedule.Read.AzureADGroup, PrivilegedAssignmentSchedule.Read.AzureADGroup]
    users:
      - id: {id_users}01
        userPrincipalName: alice@{name}.com
        lastPasswordChangeDateTime: 2026-01-10T09:00:00Z
      - id: {id_users}02
        userPrincipalName: admin@{name}.com
        directoryRoles: [Privileged Authentication Administrator]
        password: "Sandbox-Admin-2026!"
"#,
        id_users = &id[..id.len() - 2],
    )
}

/// Contoso and Fabrikam in one sandbox (or, with `contoso_id`, Contoso's domains under another id).
fn sandbox_with(contoso_id: &str) -> (Sandbox, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let seed = format!(
        "tenants:\n{}{}",
        tenant_yaml(contoso_id, "contoso", "a0000000-0000-4000-8000-0000000000a"),
        tenant_yaml(FABRIKAM, "fabrikam", "b0000000-0000-4000-8000-0000000000b"),
    );
    let path = write(dir.path(), "two.seed.yaml", &seed);
    (Sandbox::seed(path).start(), dir)
}

fn sandbox() -> (Sandbox, tempfile::TempDir) {
    sandbox_with(CONTOSO)
}

/// Desired state for Contoso, named `name`, that would set alice's flag.
fn desired(dir: &std::path::Path, name: &str) -> String {
    write(
        dir,
        "contoso.yaml",
        &format!(
            "version: 1\ntenant: {name}\nusers:\n  - user: alice@contoso.com\n    requirePasswordChange: {{ since: 2026-06-01T00:00:00Z }}\n"
        ),
    )
    .to_str()
    .unwrap()
    .to_owned()
}

/// A form POST from a thread of its own (also from inside a scripted server's answer).
fn post_form(url: String, form: Vec<(String, String)>) -> (u16, Value) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let resp = reqwest::Client::new()
                    .post(&url)
                    .form(&form)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                (status, resp.json().await.unwrap_or(Value::Null))
            })
    })
    .join()
    .unwrap()
}

/// A token for Fabrikam's app `client_id`, from the sandbox's token endpoint.
fn fabrikam_token(sb: &Sandbox, client_id: &str, secret: &str) -> String {
    let (status, body) = post_form(
        format!("{}/{FABRIKAM}/oauth2/v2.0/token", sb.info.authority_host),
        vec![
            ("client_id".into(), client_id.into()),
            ("client_secret".into(), secret.into()),
            ("grant_type".into(), "client_credentials".into()),
            ("scope".into(), format!("{}/.default", sb.graph_url())),
        ],
    );
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `pwdrift` pointed at the sandbox's Graph, with no credential variable set.
fn bare(sb: &Sandbox) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("PWDRIFT_GRAPH_URL", sb.graph_url())
        .env("AZURE_AUTHORITY_HOST", sb.get("authority_host"));
    cmd
}

/// The sandbox answered nothing but which tenant it is (and its domains): no user read, no write.
fn assert_nothing_read_or_written(sb: &Sandbox) {
    // from a thread of its own: the async tests call this inside their runtime
    let stats = std::thread::scope(|s| s.spawn(|| sb.stats()).join().unwrap());
    for key in stats["requests"].as_object().unwrap().keys() {
        if key.contains("/v1.0") || key.contains("/beta") {
            assert!(
                key == "GET /v1.0/organization" || key == "GET /v1.0/domains",
                "the sandbox was asked {key}: {stats}"
            );
        }
    }
    for writes in ["patchesPerUser", "resetsPerUser"] {
        assert!(
            stats[writes].as_object().is_none_or(|m| m.is_empty()),
            "{writes}: {stats}"
        );
    }
}

/// Exit 1, both tenants named (Fabrikam by its id, and its initial domain when Graph said it).
fn assert_refused(out: &Run, desired_name: &str, with_domain: bool) {
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("wrong tenant"), "{out:?}");
    assert!(out.stderr.contains(desired_name), "{out:?}");
    assert!(out.stderr.contains(FABRIKAM), "{out:?}");
    if with_domain {
        assert!(out.stderr.contains("fabrikam.onmicrosoft.com"), "{out:?}");
    }
    assert!(
        out.stderr.contains("nothing was read or written"),
        "{out:?}"
    );
}

#[test]
fn a_pre_acquired_token_of_another_tenant_is_refused_by_plan_apply_and_import() {
    let (sb, _seed) = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let token = fabrikam_token(&sb, FABRIKAM_APP, "fabrikam-secret");
    for name in ["contoso.onmicrosoft.com", CONTOSO, "contoso.com"] {
        let desired = desired(dir.path(), name);
        for cmd in [&["plan"][..], &["apply", "--auto-approve"][..]] {
            let out = run(bare(&sb)
                .env("PWDRIFT_ACCESS_TOKEN", &token)
                .args(cmd)
                .arg(&desired));
            assert_refused(&out, name, true);
            assert!(out.stderr.contains("PWDRIFT_ACCESS_TOKEN"), "{out:?}");
        }
    }
    let out = run(bare(&sb)
        .env("PWDRIFT_ACCESS_TOKEN", &token)
        .args(["import", "--tenant", "contoso.onmicrosoft.com", "--out"])
        .arg(dir.path().join("imported")));
    assert_refused(&out, "contoso.onmicrosoft.com", true);
    assert!(
        !dir.path().join("imported").exists(),
        "import wrote nothing"
    );
    assert_nothing_read_or_written(&sb);
}

/// Without `Organization.Read.All` (403 on `/organization`) the token's `tid` decides: still
/// refused, by id and by domain (looked up among the token tenant's `/domains`).
#[test]
fn without_organization_read_the_tid_claim_decides() {
    let (sb, _seed) = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let token = fabrikam_token(&sb, FABRIKAM_NO_ORG_APP, "fabrikam-secret-no-org");
    for name in [CONTOSO, "contoso.com"] {
        let out = run(bare(&sb)
            .env("PWDRIFT_ACCESS_TOKEN", &token)
            .args(["plan", &desired(dir.path(), name)]));
        assert_refused(&out, name, false);
    }
    assert_nothing_read_or_written(&sb);
    // the right tenant still passes without the permission
    let (sb, _seed) = sandbox();
    let (status, body) = post_form(
        format!("{}/{CONTOSO}/oauth2/v2.0/token", sb.info.authority_host),
        vec![
            (
                "client_id".into(),
                "a0000000-0000-4000-8000-0000000000a3".into(),
            ),
            ("client_secret".into(), "contoso-secret-no-org".into()),
            ("grant_type".into(), "client_credentials".into()),
            ("scope".into(), format!("{}/.default", sb.graph_url())),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let out = run(bare(&sb)
        .env(
            "PWDRIFT_ACCESS_TOKEN",
            body["access_token"].as_str().unwrap(),
        )
        .args(["plan", &desired(dir.path(), "contoso.com")]));
    assert_eq!(out.code, 0, "{out:?}");
}

/// An authority that hands out Fabrikam's tokens whatever tenant it is asked for: the
/// client-credentials and password grants are forwarded to Fabrikam's token endpoint (with the
/// client's own secret or password), or, with `app_honest`, client credentials go to the tenant
/// asked for and only the password grant is misdirected.
async fn misdirecting_authority(sb: &Sandbox, app_honest: bool) -> Scripted {
    let authority = sb.info.authority_host.clone();
    Scripted::start(move |seen: &Seen, _| {
        let asked = seen.path.trim_start_matches('/').split('/').next().unwrap();
        let grant = seen.form.get("grant_type").cloned().unwrap_or_default();
        let to = if app_honest && grant == "client_credentials" {
            asked.to_owned()
        } else {
            FABRIKAM.to_owned()
        };
        let mut form: HashMap<String, String> = seen.form.clone();
        if grant == "password" {
            form.insert("client_id".into(), FABRIKAM_PUBLIC.into());
            form.insert("username".into(), "admin@fabrikam.com".into());
        }
        post_form(
            format!("{authority}/{to}/oauth2/v2.0/token"),
            form.into_iter().collect(),
        )
    })
    .await
}

fn run_off_runtime(mut cmd: std::process::Command) -> tokio::task::JoinHandle<Run> {
    tokio::task::spawn_blocking(move || run(&mut cmd))
}

/// A client secret whose authority issues the token for another tenant (a misconfigured or
/// hostile `--authority-host`): refused, naming the authority to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_secret_that_gets_a_token_for_another_tenant_is_refused() {
    let (sb, _seed) = sandbox();
    let authority = misdirecting_authority(&sb, false).await;
    let dir = tempfile::tempdir().unwrap();
    let desired = desired(dir.path(), "contoso.onmicrosoft.com");
    for cmd in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let mut c = bare(&sb);
        c.env("AZURE_AUTHORITY_HOST", &authority.base)
            .env("AZURE_CLIENT_ID", FABRIKAM_APP)
            .env("AZURE_CLIENT_SECRET", "fabrikam-secret")
            .env("AZURE_TENANT_ID", CONTOSO)
            .args(cmd)
            .arg(&desired);
        let out = run_off_runtime(c).await.unwrap();
        assert_refused(&out, "contoso.onmicrosoft.com", true);
        assert!(out.stderr.contains("client-secret"), "{out:?}");
        assert!(out.stderr.contains("AZURE_AUTHORITY_HOST"), "{out:?}");
    }
    assert!(!authority.seen().is_empty(), "the authority was asked");
    assert_nothing_read_or_written(&sb);
}

/// A certificate credential whose authority answers with a token of another tenant: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_credential_whose_authority_issues_another_tenants_token_is_refused() {
    use rsa::pkcs8::EncodePrivateKey as _;
    let (sb, _seed) = sandbox();
    let token = fabrikam_token(&sb, FABRIKAM_APP, "fabrikam-secret");
    let authority = Scripted::start(move |_: &Seen, _| {
        (
            200,
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token}),
        )
    })
    .await;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let kp = rcgen::KeyPair::from_pem(&pem).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["pwdrift".to_owned()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pem_path = write(
        dir.path(),
        "cert.pem",
        &format!("{}{}", cert.pem(), pem.as_str()),
    );
    let mut c = bare(&sb);
    c.env("AZURE_AUTHORITY_HOST", &authority.base)
        .env("AZURE_CLIENT_ID", FABRIKAM_APP)
        .env("AZURE_CLIENT_CERTIFICATE_PATH", &pem_path)
        .env("AZURE_TENANT_ID", CONTOSO)
        .args(["apply", "--auto-approve", &desired(dir.path(), CONTOSO)]);
    let out = run_off_runtime(c).await.unwrap();
    assert_refused(&out, CONTOSO, true);
    assert!(out.stderr.contains("certificate"), "{out:?}");
    let asked = authority.seen();
    assert!(
        asked
            .iter()
            .any(|s| s.form.contains_key("client_assertion")),
        "a signed assertion was sent: {asked:?}"
    );
    assert_nothing_read_or_written(&sb);
}

/// The delegated client is checked too: the app signs in to Contoso, the delegated sign-in is
/// issued Fabrikam's token; refused, naming the delegated sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_sign_in_to_another_tenant_is_refused() {
    let (sb, _seed) = sandbox();
    let authority = misdirecting_authority(&sb, true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = bare(&sb);
    c.env("AZURE_AUTHORITY_HOST", &authority.base)
        .env("AZURE_CLIENT_ID", "a0000000-0000-4000-8000-0000000000a1")
        .env("AZURE_CLIENT_SECRET", "contoso-secret")
        .env("AZURE_TENANT_ID", CONTOSO)
        .env(
            "PWDRIFT_DELEGATED_CLIENT_ID",
            "a0000000-0000-4000-8000-0000000000a2",
        )
        .env("AZURE_USERNAME", "admin@contoso.com")
        .env("AZURE_PASSWORD", "Sandbox-Admin-2026!")
        .args([
            "apply",
            "--delegated",
            "--auto-approve",
            &desired(dir.path(), "contoso.com"),
        ]);
    let out = run_off_runtime(c).await.unwrap();
    assert_refused(&out, "contoso.com", true);
    assert!(out.stderr.contains("delegated sign-in"), "{out:?}");
    let grants: Vec<String> = authority
        .seen()
        .iter()
        .filter_map(|s| s.form.get("grant_type").cloned())
        .collect();
    assert!(grants.contains(&"password".to_owned()), "{grants:?}");
    assert_nothing_read_or_written(&sb);
}

/// A saved plan records the tenant id it was made for: applied where the same domain names a
/// tenant of another id (another sandbox: a test tenant and a production one both calling
/// themselves contoso.com), it is refused before anything is read.
#[test]
fn a_saved_plan_for_another_tenant_id_is_refused() {
    let (made, _seed) = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired(dir.path(), "contoso.com");
    let saved = dir.path().join("plan.json");
    let contoso_app = |sb: &Sandbox, cmd: &mut std::process::Command| {
        let _ = sb;
        cmd.env("AZURE_CLIENT_ID", "a0000000-0000-4000-8000-0000000000a1")
            .env("AZURE_CLIENT_SECRET", "contoso-secret")
            .env("AZURE_TENANT_ID", "contoso.com");
    };
    let mut c = bare(&made);
    contoso_app(&made, &mut c);
    let out = run(c.args(["plan", &desired, "--out", saved.to_str().unwrap()]));
    assert_eq!(out.code, 0, "{out:?}");

    const OTHER_CONTOSO: &str = "cccccccc-0000-4000-8000-00000000000c";
    let (other, _seed2) = sandbox_with(OTHER_CONTOSO);
    let mut c = bare(&other);
    contoso_app(&other, &mut c);
    let out = run(c.args(["apply", saved.to_str().unwrap(), "--auto-approve"]));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("wrong tenant"), "{out:?}");
    assert!(out.stderr.contains(CONTOSO), "{out:?}");
    assert!(out.stderr.contains(OTHER_CONTOSO), "{out:?}");
    assert_nothing_read_or_written(&other);
}

/// Point 8: a pre-acquired token Graph refuses (401 InvalidAuthenticationToken) is told what is
/// wrong with it: empty, not a JWT, expired (its `exp`), for another audience (its `aud`).
#[test]
fn token_errors_name_the_real_cause() {
    use base64::Engine;
    let (sb, _seed) = sandbox();
    let dir = tempfile::tempdir().unwrap();
    let desired = desired(dir.path(), CONTOSO);
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let jwt = |claims: String| {
        format!(
            "{}.{}.c2ln",
            enc(r#"{"alg":"HS256","typ":"JWT"}"#),
            enc(&claims)
        )
    };
    let now = chrono::Utc::now().timestamp();
    let graph = sb.graph_url();
    let cases = [
        (" ".to_owned(), "PWDRIFT_ACCESS_TOKEN is set but empty"),
        ("not-a-token".to_owned(), "it is not a JWT"),
        (
            jwt(format!(
                r#"{{"aud":"{graph}","tid":"{CONTOSO}","exp":{}}}"#,
                now - 7200
            )),
            "it expired at",
        ),
        (
            jwt(format!(
                r#"{{"aud":"https://management.azure.com/","tid":"{CONTOSO}","exp":{}}}"#,
                now + 3600
            )),
            "issued for the audience https://management.azure.com/, not Microsoft Graph",
        ),
    ];
    for (token, says) in cases {
        let out = run(bare(&sb)
            .env("PWDRIFT_ACCESS_TOKEN", &token)
            .args(["plan", &desired]));
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains(says), "{says}: {out:?}");
        if !token.trim().is_empty() {
            assert!(out.stderr.contains("InvalidAuthenticationToken"), "{out:?}");
            assert!(
                !out.stderr.contains(&token),
                "the token is never printed: {out:?}"
            );
            assert!(
                !out.stderr.contains("AZURE_CLIENT_SECRET"),
                "no advice about the wrong thing: {out:?}"
            );
        }
    }
    assert_nothing_read_or_written(&sb);
}

/// A Graph that answers for another tenant than the token was issued for (a `--graph-url`
/// pointing elsewhere), and a Graph that refuses `/organization` to an opaque token: both refused
/// after that one read, naming what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_for_another_tenant_and_an_unknowable_tenant_are_refused() {
    use base64::Engine;
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let contoso_token = format!(
        "{}.{}.c2ln",
        enc(r#"{"alg":"RS256"}"#),
        enc(&format!(
            r#"{{"tid":"{CONTOSO}","aud":"https://graph.microsoft.com"}}"#
        ))
    );
    let graph = Scripted::start(|seen: &Seen, _| {
        if seen.authorization.contains('.') {
            (
                200,
                json!({"value": [{"id": FABRIKAM, "verifiedDomains": [
                    {"name": "fabrikam.onmicrosoft.com", "isInitial": true, "isDefault": true}
                ]}]}),
            )
        } else {
            (
                403,
                json!({"error": {"code": "Authorization_RequestDenied",
                    "message": "Insufficient privileges to complete the operation."}}),
            )
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let desired = desired(dir.path(), CONTOSO);
    let pwdrift = |token: &str| {
        let mut c = std::process::Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("PWDRIFT_ACCESS_TOKEN", token)
            .args([
                "plan",
                "--graph-url",
                &graph.base,
                "--authority-host",
                &graph.base,
            ])
            .arg(&desired);
        c
    };
    let out = run_off_runtime(pwdrift(&contoso_token)).await.unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "the token of the access-token credential was issued for tenant {CONTOSO}, but Graph at {} answers for tenant {FABRIKAM} (fabrikam.onmicrosoft.com)",
            graph.base
        )),
        "{out:?}"
    );
    assert!(out.stderr.contains("PWDRIFT_GRAPH_URL"), "{out:?}");

    let out = run_off_runtime(pwdrift("opaque-token")).await.unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("cannot tell which tenant the access-token credential talks to"),
        "{out:?}"
    );
    assert!(out.stderr.contains("Organization.Read.All"), "{out:?}");
    assert!(!out.stderr.contains("opaque-token"), "{out:?}");
    let paths: Vec<String> = graph.seen().iter().map(|s| s.path.clone()).collect();
    assert!(
        paths.iter().all(|p| p == "/v1.0/organization"),
        "nothing but the organization was read: {paths:?}"
    );
}
