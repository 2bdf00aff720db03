//! The sandbox's users, groups and directory roles endpoints and its passwordProfile PATCH, over
//! loopback HTTP: `$select` defaults, `$top` bounds with Graph's exact error, paging with
//! `@odata.nextLink` until absent, `$count` and `ConsistencyLevel`, filters, the passwordProfile
//! update example, permission and role checks, password complexity, synced users, read-only
//! properties, malformed JSON, unknown routes, body limits, the flag-only-PATCH switch and the
//! user changing their own password.

use crate::util::*;
use reqwest::Method;
use serde_json::Value;

fn upns(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn default_properties_and_select() {
    let s = contoso().await;
    let t = s.app_token().await;
    let r = s.get("/v1.0/users/alice@contoso.com", &t).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["userPrincipalName"], "alice@contoso.com");
    assert!(v.get("businessPhones").is_some());
    for hidden in [
        "passwordProfile",
        "passwordPolicies",
        "lastPasswordChangeDateTime",
        "onPremisesSecurityIdentifier",
        "onPremisesSyncEnabled",
    ] {
        assert!(
            v.get(hidden).is_none(),
            "{hidden} is not a default property"
        );
    }

    // $select: only what was asked (plus id), passwordProfile null when no flag is set
    let r = s
        .get(
            "/beta/users/CAROL@contoso.com?$select=passwordProfile,onPremisesSecurityIdentifier,lastPasswordChangeDateTime",
            &t,
        )
        .await;
    let v = r.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "@odata.context",
            "passwordProfile",
            "onPremisesSecurityIdentifier",
            "lastPasswordChangeDateTime",
            "id"
        ]
    );
    assert!(v["@odata.context"]
        .as_str()
        .unwrap()
        .ends_with("/beta/$metadata#users(passwordProfile,onPremisesSecurityIdentifier,lastPasswordChangeDateTime)/$entity"));
    assert_eq!(v["passwordProfile"], Value::Null);
    assert_eq!(
        v["onPremisesSecurityIdentifier"],
        "S-1-5-21-1004336348-1177238915-682003330-1104"
    );
    assert_eq!(v["lastPasswordChangeDateTime"], "2025-12-01T10:00:00Z");

    // bob has the flag: an object, without the password
    let v = s
        .get("/v1.0/users/bob@contoso.com?$select=passwordProfile", &t)
        .await
        .json();
    assert_eq!(v["passwordProfile"]["forceChangePasswordNextSignIn"], true);
    assert_eq!(
        v["passwordProfile"]["forceChangePasswordNextSignInWithMfa"],
        false
    );
    assert_eq!(v["passwordProfile"]["password"], Value::Null);

    // by id
    let v = s.get(&format!("/v1.0/users/{DAVE_ID}"), &t).await.json();
    assert_eq!(v["userPrincipalName"], "dave@contoso.com");

    // unknown property / unknown user
    let m = s
        .get("/v1.0/users?$select=id,nope", &t)
        .await
        .graph_error(400, "BadRequest");
    assert_eq!(
        m,
        "Could not find a property named 'nope' on type 'microsoft.graph.user'."
    );
    let m = s
        .get("/v1.0/users/nobody@contoso.com", &t)
        .await
        .graph_error(404, "Request_ResourceNotFound");
    assert_eq!(m, "Resource 'nobody@contoso.com' does not exist or one of its queried reference-property objects are not present.");
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn top_bounds_paging_and_count() {
    let s = contoso().await;
    let t = s.app_token().await;
    let m = s
        .get("/v1.0/users?$top=1000", &t)
        .await
        .graph_error(400, "Request_BadRequest");
    assert_eq!(
        m,
        "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    );
    s.get("/v1.0/users?$top=0", &t)
        .await
        .graph_error(400, "Request_BadRequest");
    s.get("/v1.0/users?$top=999", &t).await; // accepted
    assert_eq!(s.get("/v1.0/users?$top=999", &t).await.status, 200);

    // paging: 8 users in pages of 3, following nextLink verbatim until absent
    let mut url = s.url("/v1.0/users?$top=3&$select=userPrincipalName");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = s.http.get(&url).bearer_auth(&t).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        pages += 1;
        let page = upns(&v);
        assert!(page.len() <= 3);
        seen.extend(page);
        match v.get("@odata.nextLink").and_then(Value::as_str) {
            Some(next) => {
                assert!(next.contains("$skiptoken="));
                assert!(next.contains("$select=userPrincipalName"));
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 8, "no user twice");

    // a tampered skip token, and a token reused with another query
    let first = s.get("/v1.0/users?$top=3", &t).await.json()["@odata.nextLink"]
        .as_str()
        .unwrap()
        .to_owned();
    let tampered = first.replace("$skiptoken=", "$skiptoken=x");
    let r = s.http.get(&tampered).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let other = first.replace("$top=3", "$top=4");
    let r = s.http.get(&other).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), 400);

    // $count needs ConsistencyLevel: eventual
    let m = s
        .get("/v1.0/users?$count=true", &t)
        .await
        .graph_error(400, "Request_BadRequest");
    assert_eq!(m, "$count is not currently supported.");
    let r = s
        .send(
            Method::GET,
            "/v1.0/users?$count=true&$top=2",
            Some(&t),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["@odata.count"], 8);
    assert_eq!(v["value"].as_array().unwrap().len(), 2);
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn filters() {
    let s = contoso().await;
    let t = s.app_token().await;
    let q = |f: &str| {
        format!(
            "/v1.0/users?$select=userPrincipalName&$filter={}",
            urlenc(f)
        )
    };
    let cases: &[(&str, &[&str])] = &[
        ("userPrincipalName eq 'ALICE@contoso.com'", &["alice@contoso.com"]),
        (
            "id eq '6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0'",
            &["dave@contoso.com"],
        ),
        (
            "onPremisesSecurityIdentifier eq 'S-1-5-21-1004336348-1177238915-682003330-1104'",
            &["carol@contoso.com"],
        ),
        (
            "userPrincipalName in ('frank@contoso.com','alice@contoso.com','ghost@contoso.com')",
            &["alice@contoso.com", "frank@contoso.com"],
        ),
        (
            "id in ('6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0')",
            &["dave@contoso.com"],
        ),
        ("startsWith(userPrincipalName,'gr')", &["grace@contoso.com"]),
        (
            "passwordProfile/forceChangePasswordNextSignIn eq true",
            &["bob@contoso.com"],
        ),
        (
            "startsWith(userPrincipalName,'b') and passwordProfile/forceChangePasswordNextSignIn eq true",
            &["bob@contoso.com"],
        ),
        (
            "userPrincipalName eq 'alice@contoso.com' and passwordProfile/forceChangePasswordNextSignIn eq true",
            &[],
        ),
        ("userPrincipalName eq 'ghost@contoso.com'", &[]),
        ("onPremisesSyncEnabled eq true", &["carol@contoso.com"]),
        // cloud-only users have null here, which equals neither true nor false
        ("onPremisesSyncEnabled eq false", &[]),
    ];
    for (f, want) in cases {
        let r = s.get(&q(f), &t).await;
        assert_eq!(r.status, 200, "{f}: {}", r.text);
        assert_eq!(upns(&r.json()), *want, "{f}");
    }
    // unsupported: SID with startsWith, unknown property, syntax error
    let m = s
        .get(&q("startsWith(onPremisesSecurityIdentifier,'S-1')"), &t)
        .await
        .graph_error(400, "Request_UnsupportedQuery");
    assert!(m.contains("onPremisesSecurityIdentifier"), "{m}");
    s.get(&q("jobTitle eq 'x'"), &t)
        .await
        .graph_error(400, "Request_UnsupportedQuery");
    s.get(&q("userPrincipalName eq"), &t)
        .await
        .graph_error(400, "BadRequest");
    // at most 15 values in an `in` (or clauses under an `or`) outside advanced queries
    let many: Vec<String> = (0..16).map(|i| format!("'u{i}@contoso.com'")).collect();
    let sixteen = format!(
        "userPrincipalName in ('alice@contoso.com',{})",
        many[1..].join(",")
    );
    let m = s
        .get(&q(&sixteen), &t)
        .await
        .graph_error(400, "Request_UnsupportedQuery");
    assert_eq!(m, "Too many child clauses specified in search filter expression containing 'OR' operators: 16. Max allowed: 15.");
    let r = s
        .send(
            Method::GET,
            &format!("{}&$count=true", q(&sixteen)),
            Some(&t),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(upns(&r.json()), ["alice@contoso.com"]);
    // endsWith is an advanced query: refused without ConsistencyLevel + $count
    s.get(&q("endsWith(userPrincipalName,'@contoso.com')"), &t)
        .await
        .graph_error(400, "Request_UnsupportedQuery");
    let r = s
        .send(
            Method::GET,
            &format!(
                "{}&$count=true",
                q("endsWith(userPrincipalName,'e@contoso.com')")
            ),
            Some(&t),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        upns(&r.json()),
        ["alice@contoso.com", "dave@contoso.com", "grace@contoso.com"]
    );
    s.sandbox.shutdown().await;
}

fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn groups_and_roles() {
    let s = contoso().await;
    let t = s.app_token().await;
    let v = s
        .get(
            "/v1.0/groups?$filter=displayName%20eq%20'Finance'&$select=id,displayName",
            &t,
        )
        .await
        .json();
    let groups = v["value"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    let id = groups[0]["id"].as_str().unwrap().to_owned();

    // transitive members resolve the nested group; paging over them (the OData cast needs the
    // advanced-query parameters, as documented)
    let r = s
        .send(
            reqwest::Method::GET,
            &format!(
                "/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user?$select=id,userPrincipalName&$top=1&$count=true"
            ),
            Some(&t),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    let v = r.json();
    assert_eq!(upns(&v), ["frank@contoso.com"]);
    let next = v["@odata.nextLink"].as_str().unwrap();
    let v: Value = s
        .http
        .get(next)
        .bearer_auth(&t)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(upns(&v), ["grace@contoso.com"]);
    assert!(v.get("@odata.nextLink").is_none());

    s.send(
        reqwest::Method::GET,
        "/v1.0/groups/00000000-0000-4000-8000-000000000000/transitiveMembers/microsoft.graph.user?$count=true",
        Some(&t),
        None,
        &[("ConsistencyLevel", "eventual")],
    )
    .await
    .graph_error(404, "Request_ResourceNotFound");

    // directory roles with members
    let v = s
        .get("/v1.0/directoryRoles?$expand=members", &t)
        .await
        .json();
    let roles = v["value"].as_array().unwrap();
    let pa = roles
        .iter()
        .find(|r| r["displayName"] == "Privileged Authentication Administrator")
        .expect("PAA is activated");
    assert_eq!(pa["roleTemplateId"], "7be44c8a-adaf-4e2a-84d6-ab2649e08a13");
    let members = pa["members"].as_array().unwrap();
    assert!(members
        .iter()
        .any(|m| m["@odata.type"] == "#microsoft.graph.user"
            && m["id"] == "0b8f6b1c-3f41-4b8e-9a55-1c2d3e4f5a08"));
    assert!(members
        .iter()
        .any(|m| m["@odata.type"] == "#microsoft.graph.servicePrincipal"));
    let ga = roles
        .iter()
        .find(|r| r["displayName"] == "Global Administrator")
        .unwrap();
    assert_eq!(
        ga["members"][0]["id"],
        "0b8f6b1c-3f41-4b8e-9a55-1c2d3e4f5a05"
    );
    s.sandbox.shutdown().await;
}

/// The passwordProfile update example: PATCH 204, then the flags read back with $select.
#[tokio::test]
async fn patch_password_profile_example_and_rules() {
    let s = contoso().await;
    let t = s.app_token().await;
    let r = s
        .patch(
            "/v1.0/users/alice@contoso.com",
            &t,
            r#"{"passwordProfile":{"forceChangePasswordNextSignIn":true,"forceChangePasswordNextSignInWithMfa":false,"password":"xWwvJ]6NMw+bWH-d"}}"#,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(r.text, "");
    let v = s
        .get(
            "/v1.0/users/alice@contoso.com?$select=passwordProfile,lastPasswordChangeDateTime",
            &t,
        )
        .await
        .json();
    assert_eq!(v["passwordProfile"]["forceChangePasswordNextSignIn"], true);
    assert_eq!(v["passwordProfile"]["password"], Value::Null);
    assert_ne!(
        v["lastPasswordChangeDateTime"], "2026-01-10T09:00:00Z",
        "setting a password updates lastPasswordChangeDateTime"
    );

    // a password with the flag omitted: the flag defaults to true
    let r = s
        .patch(
            "/v1.0/users/frank@contoso.com",
            &t,
            r#"{"passwordProfile":{"password":"Frank-Pass-2026"}}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        s.state_of("frank@contoso.com").await["forceChangePasswordNextSignIn"],
        true
    );

    // flags alone are applied (without the disputed-behaviour switch)
    let r = s
        .patch(
            "/beta/users/bob@contoso.com",
            &t,
            r#"{"passwordProfile":{"forceChangePasswordNextSignIn":false,"forceChangePasswordNextSignInWithMfa":false}}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    let v = s
        .get("/v1.0/users/bob@contoso.com?$select=passwordProfile", &t)
        .await
        .json();
    assert_eq!(v["passwordProfile"], Value::Null);

    // weak password
    let m = s
        .patch(
            "/v1.0/users/grace@contoso.com",
            &t,
            r#"{"passwordProfile":{"password":"password","forceChangePasswordNextSignIn":true}}"#,
        )
        .await
        .graph_error(400, "Request_BadRequest");
    assert_eq!(m, "The specified password does not comply with password complexity requirements. Please provide a different password.");

    // synced user: the password cannot be set by PATCH
    let m = s
        .patch(
            "/v1.0/users/carol@contoso.com",
            &t,
            r#"{"passwordProfile":{"password":"Carol-Pass-2026","forceChangePasswordNextSignIn":true}}"#,
        )
        .await
        .graph_error(400, "Request_BadRequest");
    assert!(m.contains("on-premises"), "{m}");

    // read-only property
    let m = s
        .patch(
            "/v1.0/users/grace@contoso.com",
            &t,
            r#"{"lastPasswordChangeDateTime":"2020-01-01T00:00:00Z"}"#,
        )
        .await
        .graph_error(400, "Request_BadRequest");
    assert!(m.contains("lastPasswordChangeDateTime"), "{m}");

    // malformed JSON, unknown user
    s.patch(
        "/v1.0/users/grace@contoso.com",
        &t,
        r#"{"passwordProfile":"#,
    )
    .await
    .graph_error(400, "BadRequest");
    s.patch(
        "/v1.0/users/ghost@contoso.com",
        &t,
        r#"{"passwordProfile":{"forceChangePasswordNextSignIn":true}}"#,
    )
    .await
    .graph_error(404, "Request_ResourceNotFound");

    // nothing of the refused writes changed grace
    let g = s.state_of("grace@contoso.com").await;
    assert_eq!(g["forceChangePasswordNextSignIn"], false);
    assert_eq!(g["lastPasswordChangeDateTime"], "2026-01-22T16:20:00Z");

    let stats = s.stats().await;
    assert_eq!(stats["patchesPerUser"]["alice@contoso.com"], 1);
    assert_eq!(stats["patchesPerUser"]["frank@contoso.com"], 1);
    assert!(stats["patchesPerUser"].get("grace@contoso.com").is_none());
    assert_eq!(stats["requests"]["PATCH /v1.0/users/{key}"]["400"], 4);
    s.sandbox.shutdown().await;
}

/// Permissions and directory roles: 403 Authorization_RequestDenied with Graph's message.
#[tokio::test]
async fn patch_permission_and_role_checks() {
    let mut seed = contoso_seed();
    let tenant = &mut seed.tenants[0];
    // an app with the permission but without a directory role, one with a role but read-only
    // permissions, and one with User Administrator only (not enough for admin targets)
    let mut no_role = tenant.apps[0].clone();
    no_role.client_id = "aaaaaaaa-0000-4000-8000-000000000001".into();
    no_role.client_secrets = vec!["no-role".into()];
    no_role.directory_roles.clear();
    let mut read_only = tenant.apps[0].clone();
    read_only.client_id = "aaaaaaaa-0000-4000-8000-000000000002".into();
    read_only.client_secrets = vec!["read-only".into()];
    read_only.application_permissions = vec!["User.Read.All".into()];
    let mut user_admin = tenant.apps[0].clone();
    user_admin.client_id = "aaaaaaaa-0000-4000-8000-000000000003".into();
    user_admin.client_secrets = vec!["user-admin".into()];
    user_admin.directory_roles = vec!["User Administrator".into()];
    tenant.apps.extend([no_role, read_only, user_admin]);
    let s = start_with(seed, |_| {}).await;
    let token = |id: &'static str, secret: &'static str| {
        let s = &s;
        async move {
            let r = s
                .token_request(
                    "contoso.onmicrosoft.com",
                    &[
                        ("grant_type", "client_credentials"),
                        ("client_id", id),
                        ("client_secret", secret),
                        ("scope", "https://graph.microsoft.com/.default"),
                    ],
                )
                .await;
            r.json()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let body = r#"{"passwordProfile":{"forceChangePasswordNextSignIn":true,"forceChangePasswordNextSignInWithMfa":false}}"#;
    let exact = "Insufficient privileges to complete the operation.";

    let t = token("aaaaaaaa-0000-4000-8000-000000000001", "no-role").await;
    let m = s
        .patch("/v1.0/users/grace@contoso.com", &t, body)
        .await
        .graph_error(403, "Authorization_RequestDenied");
    assert_eq!(m, exact);

    let t = token("aaaaaaaa-0000-4000-8000-000000000002", "read-only").await;
    s.patch("/v1.0/users/grace@contoso.com", &t, body)
        .await
        .graph_error(403, "Authorization_RequestDenied");
    // the read permission still reads; a missing read permission is a 403 too
    assert_eq!(s.get("/v1.0/users", &t).await.status, 200);
    s.get("/v1.0/directoryRoles", &t)
        .await
        .graph_error(403, "Authorization_RequestDenied");

    let t = token("aaaaaaaa-0000-4000-8000-000000000003", "user-admin").await;
    assert_eq!(
        s.patch("/v1.0/users/grace@contoso.com", &t, body)
            .await
            .status,
        204
    );
    // erin is a Global Administrator: an admin target needs Privileged Authentication Administrator
    let m = s
        .patch("/v1.0/users/erin@contoso.com", &t, body)
        .await
        .graph_error(403, "Authorization_RequestDenied");
    assert_eq!(m, exact);
    // the Contoso app has it
    let t = s.app_token().await;
    assert_eq!(
        s.patch("/v1.0/users/erin@contoso.com", &t, body)
            .await
            .status,
        204
    );
    s.sandbox.shutdown().await;
}

/// `--flag-only-patch-noop`: a flags-only PATCH answers 204 and changes nothing; with a
/// password it still works.
#[tokio::test]
async fn flag_only_patch_noop_switch() {
    let s = start_with(contoso_seed(), |c| c.flag_only_patch_noop = true).await;
    let t = s.app_token().await;
    let r = s
        .patch(
            "/v1.0/users/grace@contoso.com",
            &t,
            r#"{"passwordProfile":{"forceChangePasswordNextSignIn":true,"forceChangePasswordNextSignInWithMfa":false}}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    let v = s
        .get("/v1.0/users/grace@contoso.com?$select=passwordProfile", &t)
        .await
        .json();
    assert_eq!(v["passwordProfile"], Value::Null, "nothing changed");
    let r = s
        .patch(
            "/v1.0/users/grace@contoso.com",
            &t,
            r#"{"passwordProfile":{"forceChangePasswordNextSignIn":true,"password":"Grace-Pass-2026"}}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        s.state_of("grace@contoso.com").await["forceChangePasswordNextSignIn"],
        true
    );
    s.sandbox.shutdown().await;
}

/// The user changes their own password: both flags clear, lastPasswordChangeDateTime moves.
#[tokio::test]
async fn change_password_clears_flags() {
    let s = contoso().await;
    let before = s.state_of("bob@contoso.com").await;
    assert_eq!(before["forceChangePasswordNextSignIn"], true);
    let r = s
        .http
        .post(s.url("/_sandbox/users/bob@contoso.com/changePassword"))
        .json(&serde_json::json!({"newPassword": "Bob-New-Pass-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let after = s.state_of("bob@contoso.com").await;
    assert_eq!(after["forceChangePasswordNextSignIn"], false);
    assert_eq!(after["forceChangePasswordNextSignInWithMfa"], false);
    assert_ne!(
        after["lastPasswordChangeDateTime"],
        before["lastPasswordChangeDateTime"]
    );
    // weak new password refused; the state never shows a password
    let r = s
        .http
        .post(s.url("/_sandbox/users/bob@contoso.com/changePassword"))
        .json(&serde_json::json!({"newPassword": "weak"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let all = s
        .http
        .get(s.url("/_sandbox/state"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let admin_hash = graph_sandbox::testing::password_hash("Sandbox-Admin-2026!");
    let bob_hash = graph_sandbox::testing::password_hash("Bob-New-Pass-1");
    for secret in [
        "Bob-New-Pass-1",
        "Sandbox-Admin-2026!",
        &admin_hash,
        &bob_hash,
        "\"password\"",
        "passwordSha256",
    ] {
        assert!(!all.contains(secret), "state shows {secret}");
    }
    s.sandbox.shutdown().await;
}

/// Routing errors and request hygiene: unknown segments, wrong method, body limit,
/// client-request-id echo, 401 without a token.
#[tokio::test]
async fn errors_everywhere() {
    let s = contoso().await;
    let t = s.app_token().await;
    let m = s
        .get("/v1.0/usres", &t)
        .await
        .graph_error(400, "BadRequest");
    assert_eq!(m, "Resource not found for the segment 'usres'.");
    let m = s
        .get("/v1.0/users/alice@contoso.com/nope", &t)
        .await
        .graph_error(400, "BadRequest");
    assert_eq!(m, "Resource not found for the segment 'nope'.");
    s.send(Method::DELETE, "/v1.0/users", Some(&t), None, &[])
        .await
        .graph_error(405, "Request_BadRequest");

    // body too large (2 MiB > 1 MiB)
    let big = format!(
        r#"{{"passwordProfile":{{"forceChangePasswordNextSignIn":true}},"displayName":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    s.patch("/v1.0/users/grace@contoso.com", &t, &big)
        .await
        .graph_error(413, "RequestEntityTooLarge");

    // client-request-id is echoed, request-id is set
    let r = s
        .send(
            Method::GET,
            "/v1.0/users/nobody@contoso.com",
            Some(&t),
            None,
            &[("client-request-id", "my-correlation-1")],
        )
        .await;
    assert_eq!(
        r.header("client-request-id").as_deref(),
        Some("my-correlation-1")
    );
    assert_eq!(
        r.json()["error"]["innerError"]["client-request-id"],
        "my-correlation-1"
    );
    assert!(r.header("request-id").is_some());

    // no token / garbage token
    let m = s
        .send(Method::GET, "/v1.0/users", None, None, &[])
        .await
        .graph_error(401, "InvalidAuthenticationToken");
    assert_eq!(m, "Access token is empty.");
    let r = s.get("/v1.0/users", "not.a.token").await;
    r.graph_error(401, "InvalidAuthenticationToken");
    assert!(r.header("www-authenticate").is_some());
    // /me is for delegated tokens
    s.get("/v1.0/me", &t).await.graph_error(400, "BadRequest");

    let stats = s.stats().await;
    assert_eq!(stats["requests"]["GET /v1.0/users"]["401"], 2);
    assert_eq!(stats["requests"]["GET (unmatched)"]["400"], 2);
    s.sandbox.shutdown().await;
}

/// Hostile or odd input gets a 4xx with Graph's body, and the server keeps serving.
#[tokio::test]
async fn hostile_input_never_breaks_the_server() {
    let s = contoso().await;
    let t = s.app_token().await;
    let paths = [
        "/v1.0/users?$filter=%FF%FE",
        "/v1.0/users?$filter=(((((",
        "/v1.0/users?$filter=not",
        "/v1.0/users?$filter=id%20in%20()",
        "/v1.0/users?$filter=startsWith(userPrincipalName)",
        "/v1.0/users?$top=-1",
        "/v1.0/users?$top=99999999999999999999",
        "/v1.0/users?$select=,",
        "/v1.0/users?$skiptoken=",
        "/v1.0/users?$skiptoken=....",
        "/v1.0/users?$count=maybe",
        "/v1.0/users?$orderby=displayName",
        "/v1.0/users?$foo=1",
        "/v1.0/users?$top=1&$top=2",
        "/v1.0/users/%FF",
        "/v1.0/groups/x/transitiveMembers/microsoft.graph.user",
        "/v1.0/directoryRoles?$expand=owners",
        "/beta/",
        "/nope",
    ];
    for p in paths {
        let r = s.get(p, &t).await;
        assert!(r.status.is_client_error(), "{p}: {} {}", r.status, r.text);
        let v = r.json();
        assert!(v["error"]["code"].is_string(), "{p}: {}", r.text);
    }
    for body in [
        "",
        "[]",
        "null",
        "\"x\"",
        "{\"passwordProfile\": 5}",
        "{\"passwordProfile\": {\"password\": 5}}",
        "{\"unknownProp\": 1}",
    ] {
        let r = s.patch("/v1.0/users/grace@contoso.com", &t, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    // still up
    assert_eq!(s.get("/v1.0/users?$top=1", &t).await.status, 200);
    s.sandbox.shutdown().await;
}

/// Many concurrent reads and writes complete (no lock is held across an await).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests() {
    let s = contoso().await;
    let t = s.app_token().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = s.http.clone();
        let base = s.info.graph_url.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            if i % 4 == 0 {
                let body = format!(
                    r#"{{"passwordProfile":{{"forceChangePasswordNextSignIn":{},"forceChangePasswordNextSignInWithMfa":false}}}}"#,
                    i % 8 == 0
                );
                http.patch(format!("{base}/v1.0/users/grace@contoso.com"))
                    .bearer_auth(&t)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .status()
            } else {
                http.get(format!("{base}/v1.0/users?$top=3"))
                    .bearer_auth(&t)
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_success());
    }
    let stats = s.stats().await;
    assert_eq!(stats["patchesPerUser"]["grace@contoso.com"], 50);
    assert_eq!(stats["requests"]["GET /v1.0/users"]["200"], 150);
    s.sandbox.shutdown().await;
}
