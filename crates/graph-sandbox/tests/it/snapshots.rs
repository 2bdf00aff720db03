//! Snapshots of what the sandbox puts on the wire, for review against Graph's documented shapes:
//! a users page with the password-state properties and a next link, the directory roles with
//! members, Graph's error body, the identity platform's error body, the resetPassword 202 body
//! and a finished operation. Run-specific values (port, ids of requests and operations, times,
//! skip tokens, generated passwords) are filtered. Also: the committed seed schema is not stale.

use crate::util::*;
use serde_json::Value;

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (r"127\.0\.0\.1:\d+", "[sandbox]"),
        (
            r#""(request-id|client-request-id|trace_id|correlation_id)": "[^"]+""#,
            r#""$1": "[id]""#,
        ),
        (
            r#""(date|timestamp|createdDateTime|lastActionDateTime)": "[^"]+""#,
            r#""$1": "[time]""#,
        ),
        (
            r#"Trace ID: \S+ Correlation ID: \S+ Timestamp: [^"]+"#,
            "Trace ID: [id] Correlation ID: [id] Timestamp: [time]",
        ),
        (r"\$skiptoken=[A-Za-z0-9_.\-]+", "$$skiptoken=[token]"),
        (r"operations/[0-9a-f\-]{36}", "operations/[operation]"),
        (
            r#""newPassword": "[^"]+""#,
            r#""newPassword": "[generated]""#,
        ),
    ]
}

#[tokio::test]
async fn wire_shapes() {
    // the operation is polled every 10 ms: not held to resetPassword's 5 requests per 10 s
    let s = start_with(contoso_seed(), |c| c.auth_method_limit = false).await;
    let t = s.app_token().await;
    let admin = s.admin_token().await;
    let users = s
        .get(
            "/v1.0/users?$top=4&$select=id,userPrincipalName,passwordProfile,passwordPolicies,lastPasswordChangeDateTime,onPremisesSyncEnabled,onPremisesSecurityIdentifier",
            &t,
        )
        .await
        .json();
    let roles = s
        .get("/v1.0/directoryRoles?$expand=members", &t)
        .await
        .json();
    let error = s.get("/v1.0/users?$top=1000", &t).await.json();
    let token_error = s
        .token_request(
            "contoso.com",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &s.info.client_id),
                ("client_secret", "wrong"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await
        .json();
    let reset = s
        .post(
            &format!(
                "/beta/users/{DAVE_ID}/authentication/methods/{PASSWORD_METHOD}/resetPassword"
            ),
            &admin,
            "{}",
        )
        .await;
    let location = reset.header("location").unwrap();
    let reset_body = reset.json();
    // wait for the terminal state (polling; no timing asserted)
    let mut op = Value::Null;
    for _ in 0..400 {
        op = s
            .http
            .get(&location)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if op["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(op["status"], "succeeded");
    assert!(location.ends_with(op["id"].as_str().unwrap()));
    op["id"] = Value::String("[operation]".into());

    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("users_page", pretty(&users));
        insta::assert_snapshot!("directory_roles", pretty(&roles));
        insta::assert_snapshot!("graph_error", pretty(&error));
        insta::assert_snapshot!("token_error", pretty(&token_error));
        insta::assert_snapshot!("reset_password_202_body", format!("Location: {location}\n{}", pretty(&reset_body)));
        insta::assert_snapshot!("operation_succeeded", pretty(&op));
    });
    s.sandbox.shutdown().await;
}
