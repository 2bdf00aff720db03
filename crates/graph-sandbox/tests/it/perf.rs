//! What the performance work relies on: `--latency-per-item` charges the objects a response
//! returns (counted in `/_sandbox/stats`), and the user-list filters pwdrift partitions with
//! (`ge`/`le`/`startswith` on `userPrincipalName`, no advanced-query headers) and `$count` with
//! `ConsistencyLevel: eventual` behave as documented.

use graph_sandbox::{SandboxConfig, SeedSource};
use serde_json::Value;

use crate::util::{start_config, Sbx};

async fn generated(users: usize, per_item: f64) -> Sbx {
    let mut c = SandboxConfig::new(SeedSource::Generate { users, rng_seed: 9 });
    c.throttle = "off".into();
    c.latency_per_item = per_item;
    start_config(c).await
}

async fn costed(sb: &Sbx) -> u64 {
    let stats: Value = sb
        .http
        .get(sb.url("/_sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["faults"]["costed_objects"].as_u64().unwrap()
}

#[tokio::test]
async fn per_item_latency_charges_page_items_single_objects_and_batch_members() {
    let sb = generated(150, 0.01).await;
    let token = sb.app_token().await;
    assert_eq!(costed(&sb).await, 0);
    let page = sb.get("/v1.0/users?$top=100&$select=id", &token).await;
    assert_eq!(page.status, 200);
    assert_eq!(costed(&sb).await, 100);
    let id = page.json()["value"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        sb.get(&format!("/v1.0/users/{id}"), &token).await.status,
        200
    );
    assert_eq!(costed(&sb).await, 101);
    let batch = format!(
        r#"{{"requests":[{{"id":"1","method":"GET","url":"/users/{id}"}},{{"id":"2","method":"GET","url":"/users?$top=3&$select=id"}}]}}"#
    );
    assert_eq!(sb.post("/v1.0/$batch", &token, &batch).await.status, 200);
    assert_eq!(costed(&sb).await, 101 + 1 + 3);
    // an error costs nothing per item
    assert_eq!(
        sb.get("/v1.0/users/nobody@nowhere", &token).await.status,
        404
    );
    assert_eq!(costed(&sb).await, 105);
}

#[tokio::test]
async fn without_per_item_latency_nothing_is_charged() {
    let sb = generated(20, 0.0).await;
    let token = sb.app_token().await;
    assert_eq!(sb.get("/v1.0/users", &token).await.status, 200);
    assert_eq!(costed(&sb).await, 0);
}

/// `ge`/`le` ranges and `startswith` on userPrincipalName need no advanced-query headers; their
/// union over a cover of the key space is every user once; `/users/$count` needs the header.
#[tokio::test]
async fn upn_range_filters_partition_the_users_and_count_needs_eventual() {
    let sb = generated(400, 0.0).await;
    let token = sb.app_token().await;
    let no_header = sb.get("/v1.0/users/$count", &token).await;
    assert_eq!(no_header.status, 400);
    let count = sb
        .send(
            reqwest::Method::GET,
            "/v1.0/users/$count",
            Some(&token),
            None,
            &[("ConsistencyLevel", "eventual")],
        )
        .await;
    assert_eq!(count.status, 200);
    assert_eq!(count.text.trim(), "401");

    let mut all = Vec::new();
    all.extend(list(&sb, &token, "userPrincipalName le 'g'").await);
    all.extend(
        list(
            &sb,
            &token,
            "userPrincipalName ge 'g' and userPrincipalName le 'n'",
        )
        .await,
    );
    all.extend(list(&sb, &token, "userPrincipalName ge 'n'").await);
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "no user in two ranges");
    assert_eq!(all.len(), 401);
    let a = list(&sb, &token, "startswith(userPrincipalName,'a')").await;
    assert!(!a.is_empty() && a.iter().all(|u| u.starts_with('a')));
    let a_range = list(
        &sb,
        &token,
        "userPrincipalName ge 'a' and userPrincipalName le 'b'",
    )
    .await;
    assert_eq!(a.len(), a_range.len());
}

async fn list(sb: &Sbx, token: &str, filter: &str) -> Vec<String> {
    let path = format!(
        "/v1.0/users?$top=999&$select=id,userPrincipalName&$filter={}",
        filter.replace(' ', "%20").replace('\'', "%27")
    );
    let r = sb.get(&path, token).await;
    assert_eq!(r.status, 200, "{filter}: {}", r.text);
    r.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
        .collect()
}

/// `--generate-tenants K`: K tenants with distinct domains and users, one app credential that
/// signs in to each of them and reads that tenant's users only.
#[tokio::test]
async fn generated_tenants_share_one_multi_tenant_app() {
    let c = SandboxConfig::new(SeedSource::GenerateTenants {
        tenants: 3,
        users: 30,
        rng_seed: 7,
    });
    let sb = start_config(c).await;
    let state: Value = sb
        .http
        .get(sb.url("/_sandbox/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenants = state["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 3);
    let mut domains = std::collections::HashSet::new();
    for t in tenants {
        let domain = t["initialDomain"].as_str().unwrap().to_owned();
        assert!(domains.insert(domain.clone()), "distinct domains");
        let r = sb
            .token_request(
                &domain,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &sb.info.client_id),
                    ("client_secret", &sb.info.client_secret),
                    ("scope", "https://graph.microsoft.com/.default"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{domain}: {}", r.text);
        let token = r.json()["access_token"].as_str().unwrap().to_owned();
        let users = sb
            .get("/v1.0/users?$select=userPrincipalName", &token)
            .await;
        assert_eq!(users.status, 200);
        let upns = users.json()["value"].as_array().unwrap().clone();
        assert_eq!(upns.len(), 31);
        assert!(upns
            .iter()
            .all(|u| u["userPrincipalName"].as_str().unwrap().ends_with(&domain)));
    }
}
