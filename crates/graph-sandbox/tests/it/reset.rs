//! resetPassword (seed 003) against the sandbox over loopback HTTP: the page's examples 1
//! (caller-given password: 202, Location, no body) and 2 (`{}`: 202 with a
//! passwordResetResponse), polling the operation to a terminal status and the effect on the user,
//! the delegated-only rule (app-only 403), scopes and roles (admin targets need the privileged
//! role), the caller's own account, hybrid users and weak passwords.

use crate::util::*;
use serde_json::Value;

/// Contoso with the authentication-method limit (5 requests per 10 s) off: these tests poll an
/// operation every 10 ms to see each of its states; the limit has tests of its own
/// (`throttle::tests::auth_method_requests_are_five_per_ten_seconds`).
async fn unpaced() -> Sbx {
    start_with(contoso_seed(), |c| c.auth_method_limit = false).await
}

fn reset_path(version: &str, user: &str) -> String {
    format!("/{version}/users/{user}/authentication/methods/{PASSWORD_METHOD}/resetPassword")
}

/// Polls an operation URL until it is terminal; returns every status seen, in order.
async fn poll_until_terminal(s: &Sbx, location: &str, token: &str) -> (Vec<String>, Value) {
    let mut statuses: Vec<String> = Vec::new();
    for _ in 0..400 {
        let r = s
            .http
            .get(location)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let st = v["status"].as_str().unwrap().to_owned();
        if statuses.last() != Some(&st) {
            statuses.push(st.clone());
        }
        if st == "succeeded" || st == "failed" {
            return (statuses, v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("operation never finished: {statuses:?}");
}

#[tokio::test]
async fn example_1_user_submitted_password() {
    let s = unpaced().await;
    let t = s.admin_token().await;
    let before = s.state_of(DAVE_ID).await;
    assert_eq!(before["forceChangePasswordNextSignIn"], false);

    let r = s
        .post(
            &reset_path("beta", DAVE_ID),
            &t,
            r#"{"newPassword": "Cuyo5459"}"#,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.text, "", "no body when the caller gave the password");
    let location = r.header("location").expect("Location header");
    assert!(
        location.starts_with(&format!(
            "{}/beta/users/{DAVE_ID}/authentication/operations/",
            s.info.graph_url
        )),
        "{location}"
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);

    let (statuses, op) = poll_until_terminal(&s, &location, &t).await;
    assert_eq!(statuses.last().unwrap(), "succeeded");
    // the states only move forward
    let order = ["notStarted", "running", "succeeded"];
    let idx: Vec<usize> = statuses
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "{statuses:?}");
    for key in [
        "id",
        "createdDateTime",
        "lastActionDateTime",
        "resourceLocation",
        "status",
        "statusDetail",
    ] {
        assert!(op.get(key).is_some(), "operation has {key}: {op}");
    }
    assert!(location.ends_with(op["id"].as_str().unwrap()));

    // the change took effect: new password date, and the user must change it at next sign-in
    let after = s.state_of(DAVE_ID).await;
    assert_eq!(after["forceChangePasswordNextSignIn"], true);
    assert_ne!(
        after["lastPasswordChangeDateTime"],
        before["lastPasswordChangeDateTime"]
    );
    assert_eq!(s.stats().await["resetsPerUser"]["dave@contoso.com"], 1);
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn example_2_system_generated_password() {
    let s = unpaced().await;
    let t = s.admin_token().await;
    let r = s.post(&reset_path("beta", DAVE_ID), &t, "{\n}").await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert!(r
        .header("location")
        .unwrap()
        .contains(&format!("/beta/users/{DAVE_ID}/authentication/operations/")));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let v = r.json();
    assert_eq!(
        v["@odata.context"],
        format!(
            "{}/beta/$metadata#microsoft.graph.passwordResetResponse",
            s.info.graph_url
        )
    );
    let generated = v["newPassword"].as_str().unwrap();
    assert!(
        graph_sandbox::testing::password_acceptable(generated, true),
        "the generated password is acceptable"
    );

    // v1.0 too, by UPN
    let r = s
        .post(&reset_path("v1.0", "frank@contoso.com"), &t, "{}")
        .await;
    assert_eq!(r.status, 202);
    assert!(r
        .header("location")
        .unwrap()
        .contains("/v1.0/users/0b8f6b1c-3f41-4b8e-9a55-1c2d3e4f5a06/authentication/operations/"));
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn failed_operation_changes_nothing() {
    let mut seed = contoso_seed();
    let grace = seed.tenants[0]
        .users
        .iter_mut()
        .find(|u| u.user_principal_name == "grace@contoso.com")
        .unwrap();
    grace.reset_fails = true;
    let s = start_with(seed, |c| c.auth_method_limit = false).await;
    let t = s.admin_token().await;
    let r = s
        .post(
            &reset_path("v1.0", "grace@contoso.com"),
            &t,
            r#"{"newPassword":"Grace-2026-x"}"#,
        )
        .await;
    assert_eq!(r.status, 202);
    let (statuses, op) = poll_until_terminal(&s, &r.header("location").unwrap(), &t).await;
    assert_eq!(statuses.last().unwrap(), "failed");
    assert!(op["statusDetail"].is_string());
    let g = s.state_of("grace@contoso.com").await;
    assert_eq!(g["forceChangePasswordNextSignIn"], false);
    assert_eq!(g["lastPasswordChangeDateTime"], "2026-01-22T16:20:00Z");
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn who_may_reset() {
    let mut seed = contoso_seed();
    seed.tenants[0].users.extend([
        delegated_user(
            "authadmin@contoso.com",
            "Auth-Admin-2026",
            &["Authentication Administrator"],
        ),
        delegated_user("nobody@contoso.com", "No-Role-2026x", &[]),
    ]);
    let s = start_with(seed, |c| c.auth_method_limit = false).await;
    let body = r#"{"newPassword":"Cuyo5459"}"#;

    // app-only: not supported
    let app = s.app_token().await;
    let r = s.post(&reset_path("v1.0", DAVE_ID), &app, body).await;
    r.graph_error(403, "accessDenied");

    // a user without a role
    let t = s.user_token("nobody@contoso.com", "No-Role-2026x").await;
    s.post(&reset_path("v1.0", DAVE_ID), &t, body)
        .await
        .graph_error(403, "accessDenied");

    // Authentication Administrator: ordinary users yes, admins (erin, GA) no
    let t = s
        .user_token("authadmin@contoso.com", "Auth-Admin-2026")
        .await;
    assert_eq!(
        s.post(&reset_path("v1.0", DAVE_ID), &t, body).await.status,
        202
    );
    s.post(&reset_path("v1.0", "erin@contoso.com"), &t, body)
        .await
        .graph_error(403, "accessDenied");
    // not on one's own account
    s.post(&reset_path("v1.0", "authadmin@contoso.com"), &t, body)
        .await
        .graph_error(403, "accessDenied");

    // the privileged admin may reset an admin
    let t = s.admin_token().await;
    assert_eq!(
        s.post(&reset_path("v1.0", "erin@contoso.com"), &t, body)
            .await
            .status,
        202
    );
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn hybrid_and_weak_passwords_and_scopes() {
    let s = unpaced().await;
    let t = s.admin_token().await;
    // carol is synced: a password must be given
    let r = s
        .post(&reset_path("v1.0", "carol@contoso.com"), &t, "{}")
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        s.post(
            &reset_path("v1.0", "carol@contoso.com"),
            &t,
            r#"{"newPassword":"Carol-2026-ok"}"#
        )
        .await
        .status,
        202
    );
    // weak password
    let m = s
        .post(
            &reset_path("v1.0", DAVE_ID),
            &t,
            r#"{"newPassword":"cuyo"}"#,
        )
        .await
        .graph_error(400, "Request_BadRequest");
    assert_eq!(m, "The specified password does not comply with password complexity requirements. Please provide a different password.");
    // unknown user, wrong method id, malformed JSON
    s.post(&reset_path("v1.0", "ghost@contoso.com"), &t, "{}")
        .await
        .graph_error(404, "Request_ResourceNotFound");
    s.post(
        &format!("/v1.0/users/{DAVE_ID}/authentication/methods/00000000-0000-0000-0000-000000000000/resetPassword"),
        &t,
        "{}",
    )
    .await
    .graph_error(404, "Request_ResourceNotFound");
    s.post(&reset_path("v1.0", DAVE_ID), &t, "{")
        .await
        .graph_error(400, "BadRequest");

    // a delegated token without UserAuthenticationMethod.ReadWrite.All
    let r = s
        .token_request(
            "contoso.com",
            &[
                ("grant_type", "password"),
                ("client_id", PUBLIC_CLIENT),
                ("username", ADMIN),
                ("password", ADMIN_PASSWORD),
                ("scope", "https://graph.microsoft.com/User.Read.All"),
            ],
        )
        .await;
    let v = r.json();
    assert_eq!(v["scope"], "https://graph.microsoft.com/User.Read.All");
    let narrow = v["access_token"].as_str().unwrap();
    s.post(&reset_path("v1.0", DAVE_ID), narrow, "{}")
        .await
        .graph_error(403, "accessDenied");
    // /me works with a delegated token
    let me = s
        .get("/v1.0/me?$select=userPrincipalName", narrow)
        .await
        .json();
    assert_eq!(me["userPrincipalName"], ADMIN);
    s.sandbox.shutdown().await;
}
