//! The sandbox's switches for where real tenants differ from the happy path, over loopback
//! HTTP: reads lagging writes (`--read-lag`, also in `$batch`), writes applied with their
//! response lost (`lost=` in `--faults`, also per `$batch` member), resetPassword without
//! `Location`, with `Location` query parameters and ending `failed`, federated domains and
//! guests, UPNs starting with `$`, and the requirements of the transitive-members cast.

use std::time::Duration;

use crate::util::*;
use graph_sandbox::TransitiveMembersMode;
use reqwest::Method;
use serde_json::{json, Value};

const FLAGS_ON: &str = r#"{"passwordProfile":{"forceChangePasswordNextSignIn":true}}"#;

async fn force_flag(s: &Sbx, t: &str, path: &str) -> bool {
    let r = s.get(path, t).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let v = v.get("value").map_or(v.clone(), |a| a[0].clone());
    v["passwordProfile"]["forceChangePasswordNextSignIn"] == true
}

#[tokio::test]
async fn reads_lag_writes_exactly_by_read_lag() {
    let s = start_with(contoso_seed(), |c| {
        c.realism.read_lag = Duration::from_millis(600)
    })
    .await;
    let t = s.app_token().await;
    let one = "/v1.0/users/frank@contoso.com?$select=id,passwordProfile";
    let many = "/v1.0/users?$filter=userPrincipalName%20eq%20'frank@contoso.com'&$select=id,passwordProfile";
    assert!(!force_flag(&s, &t, one).await);
    let r = s.patch("/v1.0/users/frank@contoso.com", &t, FLAGS_ON).await;
    assert_eq!(r.status, 204);
    // the write happened (the sandbox's own view), but reads still see the old version
    assert_eq!(
        s.state_of("frank@contoso.com").await["forceChangePasswordNextSignIn"],
        true
    );
    assert!(!force_flag(&s, &t, one).await, "single read lags");
    assert!(!force_flag(&s, &t, many).await, "collection read lags");
    let batch = json!({"requests": [{"id": "1", "method": "GET", "url": "/users/frank@contoso.com?$select=id,passwordProfile"}]});
    let v = s.post("/v1.0/$batch", &t, &batch.to_string()).await.json();
    assert_eq!(
        v["responses"][0]["body"]["passwordProfile"],
        Value::Null,
        "$batch member lags"
    );
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert!(force_flag(&s, &t, one).await, "visible after the lag");
    assert!(force_flag(&s, &t, many).await);
    assert_eq!(s.state_of("frank@contoso.com").await["privileged"], false);

    // without the switch, reads are immediate
    let s = contoso().await;
    let t = s.app_token().await;
    s.patch("/v1.0/users/frank@contoso.com", &t, FLAGS_ON).await;
    assert!(force_flag(&s, &t, one).await);
}

#[tokio::test]
async fn lost_responses_are_applied_writes() {
    let s = start_with(contoso_seed(), |c| {
        c.faults = Some("lost=1".into());
        c.throttle = "off".into();
    })
    .await;
    let t = s.app_token().await;
    // reads are never lost
    assert_eq!(s.get("/v1.0/users/frank@contoso.com", &t).await.status, 200);
    let (mut timeouts, mut dropped) = (0, 0);
    for upn in [
        "frank@contoso.com",
        "grace@contoso.com",
        "alice@contoso.com",
        "dave@contoso.com",
    ] {
        let r = s
            .http
            .patch(s.url(&format!("/v1.0/users/{upn}")))
            .bearer_auth(&t)
            .header("content-type", "application/json")
            .body(FLAGS_ON)
            .send()
            .await;
        match r {
            Ok(r) => {
                assert_eq!(r.status(), 504);
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["error"]["code"], "GatewayTimeout");
                timeouts += 1;
            }
            Err(_) => dropped += 1,
        }
        assert_eq!(
            s.state_of(upn).await["forceChangePasswordNextSignIn"],
            true,
            "{upn}: applied although the response was lost"
        );
    }
    assert_eq!(timeouts + dropped, 4);
    // resetPassword is a write too: the generated password in its 202 body is lost with it,
    // yet the reset happens
    let admin = s.admin_token().await;
    let path =
        format!("/v1.0/users/{DAVE_ID}/authentication/methods/{PASSWORD_METHOD}/resetPassword");
    let r = s
        .http
        .post(s.url(&path))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 504);
    }
    let stats = s.stats().await;
    assert_eq!(stats["resetsPerUser"]["dave@contoso.com"], 1, "{stats}");
    assert_eq!(
        stats["faults"]["lost_504"].as_u64().unwrap()
            + stats["faults"]["lost_dropped"].as_u64().unwrap(),
        5,
        "four PATCHes and one resetPassword"
    );
}

#[tokio::test]
async fn lost_batch_members_are_applied_and_answered_504() {
    // Half the writes lose their response; seeded, so the sequence is reproducible. Envelopes
    // are writes too: repeat until an envelope comes back with a lost member.
    let s = start_with(contoso_seed(), |c| {
        c.faults = Some("lost=0.5".into());
        c.rng_seed = 7;
        c.throttle = "off".into();
    })
    .await;
    let t = s.app_token().await;
    let users = [
        "frank@contoso.com",
        "grace@contoso.com",
        "alice@contoso.com",
        "dave@contoso.com",
    ];
    let mut seen_lost_member = false;
    for round in 0..20 {
        let flag = round % 2 == 0;
        let requests: Vec<Value> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                json!({
                    "id": i.to_string(), "method": "PATCH", "url": format!("/users/{u}"),
                    "headers": {"Content-Type": "application/json"},
                    "body": {"passwordProfile": {"forceChangePasswordNextSignIn": flag}}
                })
            })
            .collect();
        let r = s
            .http
            .post(s.url("/v1.0/$batch"))
            .bearer_auth(&t)
            .json(&json!({ "requests": requests }))
            .send()
            .await;
        // whatever came back, every member was applied
        for u in users {
            assert_eq!(s.state_of(u).await["forceChangePasswordNextSignIn"], flag);
        }
        let Ok(r) = r else { continue };
        if r.status() != 200 {
            assert_eq!(r.status(), 504);
            continue;
        }
        let v: Value = r.json().await.unwrap();
        for m in v["responses"].as_array().unwrap() {
            if m["status"] == 504 {
                assert_eq!(m["body"]["error"]["code"], "GatewayTimeout");
                seen_lost_member = true;
            } else {
                assert_eq!(m["status"], 204);
            }
        }
    }
    assert!(seen_lost_member);
    assert!(
        s.stats().await["faults"]["lost_batch_members"]
            .as_u64()
            .unwrap()
            > 0
    );
}

fn reset_path(user: &str) -> String {
    format!("/v1.0/users/{user}/authentication/methods/{PASSWORD_METHOD}/resetPassword")
}

#[tokio::test]
async fn reset_password_switches() {
    // 202 without Location
    let s = start_with(contoso_seed(), |c| c.realism.reset_no_location = true).await;
    let t = s.admin_token().await;
    let r = s.post(&reset_path(DAVE_ID), &t, "{}").await;
    assert_eq!(r.status, 202);
    assert!(r.header("location").is_none());
    assert!(r.json()["newPassword"].is_string());

    // Location with the query parameters real tenants send; it can be polled as is
    let s = start_with(contoso_seed(), |c| {
        c.realism.reset_location_query = true;
        c.realism.reset_fail = true;
        // polled as fast as it answers: not held to the 5 requests per 10 s of resetPassword
        c.auth_method_limit = false;
    })
    .await;
    let t = s.admin_token().await;
    let r = s
        .post(&reset_path(DAVE_ID), &t, r#"{"newPassword":"Cuyo5459-x"}"#)
        .await;
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap();
    assert!(
        location.contains("?aadgdc=") && location.contains("&aadgsu="),
        "{location}"
    );
    let mut last = Value::Null;
    for _ in 0..200 {
        let r = s.http.get(&location).bearer_auth(&t).send().await.unwrap();
        assert_eq!(r.status(), 200);
        last = r.json().await.unwrap();
        if last["status"] == "failed" {
            break;
        }
        assert!(["notStarted", "running"].contains(&last["status"].as_str().unwrap()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last["status"], "failed", "--reset-fail");
    assert!(last["statusDetail"].is_string());
}

/// `GET /organization`: one object, the tenant's id and every verified domain, which is how a
/// client learns that a domain and a GUID name one tenant; it needs an organization or directory
/// read permission.
#[tokio::test]
async fn organization_lists_the_tenant_id_and_its_verified_domains() {
    // without an organization or directory read permission: 403
    let s = start_with(privileged_seed(), |_| {}).await;
    let t = s.app_token().await;
    assert_eq!(s.get("/v1.0/organization", &t).await.status, 403);

    let mut seed = privileged_seed();
    seed.tenants[0].apps[0]
        .application_permissions
        .push("Organization.Read.All".into());
    let s = start_with(seed, |_| {}).await;
    let t = s.app_token().await;
    let r = s
        .get("/v1.0/organization?$select=id,verifiedDomains", &t)
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let orgs = v["value"].as_array().unwrap();
    assert_eq!(orgs.len(), 1, "{v}");
    let org = &orgs[0];
    assert!(org.get("displayName").is_none(), "$select: {org}");
    let domains = org["verifiedDomains"].as_array().unwrap();
    let names: Vec<&str> = domains
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"northwind.onmicrosoft.com"), "{names:?}");
    assert!(names.contains(&"northwind.com"), "{names:?}");
    let initial = domains
        .iter()
        .find(|d| d["name"] == "northwind.onmicrosoft.com")
        .unwrap();
    assert_eq!(initial["isInitial"], true);
    assert_eq!(initial["type"], "Managed");
    let federated = domains
        .iter()
        .find(|d| d["name"] == "corp.northwind.com")
        .unwrap();
    assert_eq!(federated["type"], "Federated");
    // the id is the tenant id the token was issued for
    let all = s.get("/v1.0/organization", &t).await.json();
    assert_eq!(all["value"][0]["id"], org["id"]);
    assert!(all["value"][0]["displayName"].is_string());
}

#[tokio::test]
async fn domains_federated_users_and_guests() {
    let s = start_with(privileged_seed(), |_| {}).await;
    let t = s.app_token().await;
    let v = s.get("/v1.0/domains", &t).await.json();
    let domains = v["value"].as_array().unwrap();
    assert_eq!(domains.len(), 3);
    let by = |id: &str| domains.iter().find(|d| d["id"] == id).unwrap().clone();
    assert_eq!(by("corp.northwind.com")["authenticationType"], "Federated");
    assert_eq!(by("northwind.com")["authenticationType"], "Managed");
    assert_eq!(by("northwind.com")["isDefault"], true);
    assert_eq!(by("northwind.onmicrosoft.com")["isInitial"], true);
    assert!(domains.iter().all(|d| d["isVerified"] == true));
    let one = s.get("/v1.0/domains/corp.northwind.com", &t).await.json();
    assert_eq!(one["authenticationType"], "Federated");

    // federated and guest users are readable
    let g = s
        .get(
            "/v1.0/users/hiro_fabrikam.com%23EXT%23@northwind.onmicrosoft.com?$select=id,userType,creationType,externalUserState,mail",
            &t,
        )
        .await
        .json();
    assert_eq!(g["userType"], "Guest");
    assert_eq!(g["creationType"], "Invitation");
    assert_eq!(g["externalUserState"], "Accepted");
    let f = s
        .get(
            "/v1.0/users/grace@corp.northwind.com?$select=id,userType",
            &t,
        )
        .await
        .json();
    assert_eq!(f["userType"], "Member");

    // their passwords cannot be set; flags alone can
    let pw =
        r#"{"passwordProfile":{"password":"Xy7!kLm2-pQ9","forceChangePasswordNextSignIn":true}}"#;
    s.patch("/v1.0/users/grace@corp.northwind.com", &t, pw)
        .await
        .graph_error(400, "Request_BadRequest");
    s.patch(
        "/v1.0/users/hiro_fabrikam.com%23EXT%23@northwind.onmicrosoft.com",
        &t,
        pw,
    )
    .await
    .graph_error(400, "Request_BadRequest");
    let r = s
        .patch("/v1.0/users/grace@corp.northwind.com", &t, FLAGS_ON)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = s.patch("/v1.0/users/ada@northwind.com", &t, pw).await;
    assert_eq!(r.status, 204, "{}", r.text);
}

#[tokio::test]
async fn upns_starting_with_dollar_need_the_key_syntax() {
    let s = start_with(privileged_seed(), |_| {}).await;
    let t = s.app_token().await;
    s.get("/v1.0/users/$ines@northwind.com", &t)
        .await
        .graph_error(400, "BadRequest");
    s.get("/v1.0/users/%24ines@northwind.com", &t)
        .await
        .graph_error(400, "BadRequest");
    let v = s
        .get(
            "/v1.0/users('$ines@northwind.com')?$select=id,userPrincipalName",
            &t,
        )
        .await
        .json();
    assert_eq!(v["userPrincipalName"], "$ines@northwind.com");
    let r = s
        .patch("/v1.0/users('$ines@northwind.com')", &t, FLAGS_ON)
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        s.state_of("$ines@northwind.com").await["forceChangePasswordNextSignIn"],
        true
    );
    // $count is still $count
    let r = s
        .send(
            Method::GET,
            "/v1.0/users/$count",
            Some(&t),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(r.status, 200);
    // in $batch too
    let batch = json!({"requests": [
        {"id": "a", "method": "GET", "url": "/users('$ines@northwind.com')?$select=id"},
        {"id": "b", "method": "GET", "url": "/users/$ines@northwind.com?$select=id"},
    ]});
    let v = s.post("/v1.0/$batch", &t, &batch.to_string()).await.json();
    let status = |id: &str| {
        v["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("a"), 200);
    assert_eq!(status("b"), 400);
}

async fn transitive(s: &Sbx, t: &str, id: &str, advanced: bool) -> Resp {
    let (q, h): (&str, &[(&str, &str)]) = if advanced {
        ("?$count=true", &[("ConsistencyLevel", "eventual")])
    } else {
        ("", &[])
    };
    s.send(
        Method::GET,
        &format!("/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user{q}"),
        Some(t),
        None,
        h,
    )
    .await
}

async fn finance(s: &Sbx, t: &str) -> String {
    s.get(
        "/v1.0/groups?$filter=displayName%20eq%20'Finance'&$select=id",
        t,
    )
    .await
    .json()["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn transitive_members_cast_requirements_and_modes() {
    let s = contoso().await;
    let t = s.app_token().await;
    let id = finance(&s, &t).await;
    let m = transitive(&s, &t, &id, false)
        .await
        .graph_error(400, "Request_UnsupportedQuery");
    assert!(m.contains("ConsistencyLevel"), "{m}");
    let v = transitive(&s, &t, &id, true).await.json();
    assert!(v["@odata.count"].as_u64().unwrap() >= 2);
    assert!(v["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["@odata.type"] == "#microsoft.graph.user"));

    let s = start_with(contoso_seed(), |c| {
        c.realism.transitive_members = TransitiveMembersMode::Lenient
    })
    .await;
    let t = s.app_token().await;
    let id = finance(&s, &t).await;
    assert_eq!(transitive(&s, &t, &id, false).await.status, 200);

    let s = start_with(contoso_seed(), |c| {
        c.realism.transitive_members = TransitiveMembersMode::CastIgnored
    })
    .await;
    let t = s.app_token().await;
    let id = finance(&s, &t).await;
    let v = transitive(&s, &t, &id, false).await.json();
    let types: Vec<&str> = v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["@odata.type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"#microsoft.graph.group"), "{types:?}");
    assert!(types.contains(&"#microsoft.graph.user"), "{types:?}");
}
