//! Performance paths against the sandbox. The partitioned listing of a large tenant
//! (graph/client/partition.rs): the partitions' union equals sequential paging, the filters are
//! ones Graph takes without advanced-query headers, an incomplete or overlapping union falls back
//! to sequential paging, and a plan read either way is the same. Write pacing (graph/retry.rs,
//! `WriteBudget`): writes paced to the quota the sandbox enforces meet (almost) no 429.

use std::time::Duration;

use pwdrift::graph::client::{
    partition_boundaries, partition_filters, ClientOptions, GraphClient, ListingPath,
};

use crate::common::{repo, run, Sandbox};

/// A generated tenant of `users` users (generator seed 3), throttling off.
async fn generated(users: usize) -> Sandbox {
    generated_with(users, "off").await
}

async fn generated_with(users: usize, throttle: &str) -> Sandbox {
    Sandbox::generate(users)
        .generation_seed(3)
        .throttle(throttle)
        .start_here()
        .await
}

fn client(sb: &Sandbox) -> GraphClient {
    client_with(sb, |_| {})
}

fn client_with(sb: &Sandbox, tweak: impl FnOnce(&mut ClientOptions)) -> GraphClient {
    let mut options = ClientOptions::new(sb.endpoints());
    options.base_delay = Duration::from_millis(5);
    tweak(&mut options);
    GraphClient::new(options, sb.app_credential()).unwrap()
}

fn ids(users: &[pwdrift::graph::model::GraphUser]) -> Vec<String> {
    let mut v: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    v.sort();
    v
}

/// Above the threshold the tenant is read in partitions whose union is exactly the paged list;
/// below it, paged.
#[tokio::test]
async fn partitions_union_equals_sequential_paging() {
    let sb = generated(2500).await;
    let c = client(&sb);
    let t = sb.info.tenant_id.clone();
    let sequential = c.list_users(&t, None).await.unwrap();
    // Partitioned (not FellBack): the sandbox took every filter without advanced-query headers
    let (parts, path) = c.list_all_users_with(&t, 1000).await.unwrap();
    assert_eq!(path, ListingPath::Partitioned(63));
    assert_eq!(ids(&parts), ids(&sequential));
    assert_eq!(parts.len(), 2501, "2,500 generated users and the admin");
    let (small, path) = c.list_all_users_with(&t, 1_000_000).await.unwrap();
    assert_eq!(path, ListingPath::Sequential);
    assert_eq!(ids(&small), ids(&sequential));
}

/// Overlapping partitions (a user twice) and missing ones (fewer than `$count`) are caught and
/// the tenant is paged sequentially instead, with the same result.
#[tokio::test]
async fn an_unproven_union_falls_back_to_sequential_paging() {
    let sb = generated(1200).await;
    let c = client(&sb);
    let t = sb.info.tenant_id.clone();
    let sequential = c.list_users(&t, None).await.unwrap();

    let mut overlapping = partition_filters(&partition_boundaries());
    overlapping.push("userPrincipalName ge 'a' and userPrincipalName le 'b'".into());
    let (users, path) = c.list_all_users_by(&t, 0, &overlapping).await.unwrap();
    assert!(
        matches!(&path, ListingPath::FellBack(r) if r.contains("two partitions")),
        "{path:?}"
    );
    assert_eq!(ids(&users), ids(&sequential));

    let missing: Vec<String> = partition_filters(&partition_boundaries())
        .into_iter()
        .filter(|f| !f.contains("ge 'b' and"))
        .collect();
    let (users, path) = c.list_all_users_by(&t, 0, &missing).await.unwrap();
    assert!(
        matches!(&path, ListingPath::FellBack(r) if r.contains("$count says 1201")),
        "{path:?}"
    );
    assert_eq!(ids(&users), ids(&sequential));
}

/// A plan read by partitions is the plan read by sequential paging; `-v` says which path ran.
#[test]
fn both_listing_paths_give_the_same_plan() {
    let sb = Sandbox::contoso().start();
    let desired = repo().join("examples/desired");
    let plan = |min: &str| {
        let r = run(sb
            .pwdrift()
            .current_dir(repo())
            .env("PWDRIFT_LIST_ALL_THRESHOLD", "0")
            .env("PWDRIFT_PARTITION_MIN_USERS", min)
            .args(["-v", "plan", desired.to_str().unwrap(), "--format", "json"]));
        assert_eq!(r.code, 0, "{r:?}");
        let mut v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        // the time of planning, and the content hash that covers it, differ between the runs
        v["created_at"] = serde_json::Value::Null;
        v["content_hash"] = serde_json::Value::Null;
        // and the time each tenant was decided (riskyUsers' 1 request per second can hold the
        // second run back)
        for t in v["tenants"].as_array_mut().unwrap() {
            t["decided_at"] = serde_json::Value::Null;
        }
        (v, r.stderr)
    };
    let (paged, log) = plan("1000000");
    assert!(!log.contains("parallel partitions"), "{log}");
    let (parted, log) = plan("0");
    assert!(log.contains("users read in parallel partitions"), "{log}");
    assert_eq!(paged, parted);
}

/// For each user, a PATCH setting `forceChangePasswordNextSignIn` (and not the MFA variant).
fn force_change_patches(
    users: &[pwdrift::graph::model::GraphUser],
) -> Vec<(String, pwdrift::graph::model::PasswordProfile)> {
    users
        .iter()
        .map(|u| {
            (
                u.id.clone(),
                pwdrift::graph::model::PasswordProfile {
                    force_change_password_next_sign_in: Some(true),
                    force_change_password_next_sign_in_with_mfa: Some(false),
                    password: None,
                    odata_type: None,
                },
            )
        })
        .collect()
}

async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn get_json_owned(url: String) -> serde_json::Value {
    get_json(&url).await
}

/// 61 writes against a write quota of 30 per 1.5 s (`scaled:100`), paced to that quota: they
/// take two windows and meet no 429 (one is tolerated: the client stamps a write when it sends
/// it and the sandbox when it arrives, and this machine is shared).
#[tokio::test]
async fn writes_paced_to_the_quota_are_not_throttled() {
    let sb = generated_with(60, "scaled:100").await;
    let c = client_with(&sb, |o| {
        o.concurrency = 8;
        o.write_quotas = o.write_quotas.iter().map(|q| q.scaled(100)).collect();
    });
    let t = sb.info.tenant_id.clone();
    let users = c.list_users(&t, None).await.unwrap();
    assert_eq!(users.len(), 61);
    let patches = force_change_patches(&users);
    let results = c.patch_password_profiles(&t, patches).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    let s = c.stats();
    assert!(s.throttled <= 1, "paced writes were throttled: {s:?}");
}

/// Graph documents `x-ms-throttle-scope` on throttled answers only, so the percentage a
/// successful answer carries from 80 % of a limit on (the sandbox's default) does not say which
/// limit it is about. 91 writes against 30 per 1.5 s (`scaled:100`): once the window is 80 %
/// full every answer says so, and the client, whose own write budget is as full, puts the
/// percentage down to it and spends the window to the end instead of slowing to one write a
/// second; the last write starts three windows after the first, not later.
#[tokio::test]
async fn an_unscoped_percentage_explained_by_the_write_budget_does_not_slow_writes() {
    let sb = generated_with(90, "scaled:100").await;
    let c = client_with(&sb, |o| {
        o.concurrency = 8;
        o.write_quotas = o.write_quotas.iter().map(|q| q.scaled(100)).collect();
        o.tenant_unit_quotas = o.tenant_unit_quotas.map(|q| q.scaled(100));
    });
    let t = sb.info.tenant_id.clone();
    let users = c.list_users(&t, None).await.unwrap();
    assert_eq!(users.len(), 91);
    let admin = sb.info.graph_url.trim_end_matches('/').to_owned();
    let stats = || get_json_owned(format!("{admin}/_sandbox/stats"));
    let results = c
        .patch_password_profiles(&t, force_change_patches(&users))
        .await;
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    let after = stats().await;
    let s = c.stats();
    assert_eq!(
        s.slowdowns, 0,
        "slowed down by its own writes' percentage: {s:?}"
    );
    assert!(s.throttled <= 1, "paced writes were throttled: {s:?}");
    // the percentage was there to be misread: answers from 80 % of the window on carry it
    // unscoped, and writes 25 to 30 of each window are among them
    let ms = |v: &serde_json::Value, k: &str| v[k].as_u64();
    let span = ms(&after, "lastWriteMs").unwrap() - ms(&after, "firstWriteMs").unwrap();
    // writes 31, 61 and 91 each wait a window (plus the client's 100 ms margin): 4.8 s
    assert!(
        span < 6_000,
        "91 writes at 30 per 1.5 s start within 4.8 s; {span} ms: slowed down"
    );
}

/// Sixteen tenants written to at once by one application: each tenant stays within its own write
/// quota (15 per 0.75 s under `scaled:200`), together they exceed the application's (350 per 1.5
/// s across tenants). The client paces to both: no 429 of the `Application` scope, and the
/// writes take at least the application quota's floor (960 writes: two more windows after the
/// first, 3 s), so that the application's limit, not the tenants', was the one that bound.
#[tokio::test]
async fn writes_to_many_tenants_are_paced_to_the_application_quota() {
    let sb = Sandbox::generate(59)
        .tenants(16)
        .generation_seed(3)
        .throttle("scaled:200")
        .latency("20")
        .start_here()
        .await;
    let c = client_with(&sb, |o| {
        o.concurrency = 8;
        o.write_quotas = o.write_quotas.iter().map(|q| q.scaled(200)).collect();
        o.tenant_unit_quotas = o.tenant_unit_quotas.map(|q| q.scaled(200));
        o.app_quotas = o.app_quotas.scaled(200);
    });
    let admin = sb.info.graph_url.trim_end_matches('/').to_owned();
    let stats = || get_json_owned(format!("{admin}/_sandbox/stats"));
    let state = get_json_owned(format!("{admin}/_sandbox/state")).await;
    let tenants: Vec<String> = state["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tenants.len(), 16);
    let mut listed = Vec::new();
    for t in &tenants {
        let users = c.list_users(t, None).await.unwrap();
        assert_eq!(users.len(), 60, "{t}");
        listed.push((t.clone(), users));
    }
    let before = stats().await;
    let writes = listed.iter().map(|(_, u)| u.len()).sum::<usize>();
    let results = futures_util::future::join_all(
        listed
            .iter()
            .map(|(t, users)| c.patch_password_profiles(t, force_change_patches(users))),
    )
    .await;
    assert!(results.iter().flatten().all(|(_, r)| r.is_ok()));
    let after = stats().await;
    let model = |v: &serde_json::Value, k: &str| v["throttleModel"][k].as_u64().unwrap_or(0);
    assert_eq!(
        model(&after, "writes_admitted") - model(&before, "writes_admitted"),
        writes as u64,
        "every write landed exactly once"
    );
    let by_scope = &after["throttleModel"]["throttled_by_scope"];
    for scope in ["Application/Write", "Application/ReadWrite"] {
        assert_eq!(
            by_scope[scope].as_u64().unwrap_or(0),
            0,
            "429s of {scope}: {by_scope}"
        );
    }
    let ms = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap();
    let span = ms(&after, "lastWriteMs") - ms(&after, "firstWriteMs");
    assert!(
        span >= 2_900,
        "960 writes within {span} ms: more than the application's 350 per 1.5 s"
    );
}

/// Other applications of the tenant have used up most of its per-tenant write quota (all apps):
/// pwdrift cannot pace for writes it does not see, so it meets 429s, and it must honour them
/// (wait out `Retry-After`, resend only the refused writes) and finish, without hammering:
/// far fewer 429s than writes, and every write lands exactly once.
#[tokio::test]
async fn writes_adapt_to_a_quota_other_apps_are_using() {
    // scaled:100: 30 writes per 1.5 s per app + tenant, 180 per 3 s per tenant (all apps).
    // 121 writes: four windows of the client's own quota, so that writes reserved for instants
    // after the 429 block and writes reserved again when it ends go out side by side.
    let sb = generated_with(120, "scaled:100").await;
    let c = client_with(&sb, |o| {
        o.concurrency = 8;
        o.write_quotas = o.write_quotas.iter().map(|q| q.scaled(100)).collect();
    });
    let t = sb.info.tenant_id.clone();
    let users = c.list_users(&t, None).await.unwrap();
    let admin = sb.info.graph_url.trim_end_matches('/').to_owned();
    let charged: serde_json::Value = reqwest::Client::new()
        .post(format!("{admin}/_sandbox/other-apps/writes"))
        .json(&serde_json::json!({"tenantId": t, "writes": 175}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(charged["charged"], 175, "{charged}");
    let before = get_json(&format!("{admin}/_sandbox/stats")).await;
    let patches = force_change_patches(&users);
    let n = patches.len();
    let results = c.patch_password_profiles(&t, patches).await;
    assert!(
        results.iter().all(|(_, r)| r.is_ok()),
        "{:?}",
        results.iter().find(|(_, r)| r.is_err())
    );
    let after = get_json(&format!("{admin}/_sandbox/stats")).await;
    let model = |v: &serde_json::Value, k: &str| v["throttleModel"][k].as_u64().unwrap_or(0);
    let throttled = model(&after, "throttled") - model(&before, "throttled");
    let admitted = model(&after, "writes_admitted") - model(&before, "writes_admitted");
    assert_eq!(admitted as usize, n, "every write landed exactly once");
    assert!(throttled >= 1, "the other apps' writes were felt");
    // Only the first burst meets the full quota: the writes the client's own budget let go
    // at once (30), less the 5 that fitted. Writes waiting for budget when the 429 came are
    // held back by it (and their reservation made again), so no second burst is refused.
    assert!(
        throttled <= 25,
        "{throttled} 429s for {n} writes: the client kept sending into a full quota ({})",
        after["throttleModel"]
    );
}

/// A desired state over several generated tenants (one multi-tenant app) is planned for every
/// tenant, and applied to every tenant, with the tenants worked on side by side.
#[test]
fn many_tenants_are_planned_and_applied() {
    let sb = Sandbox::generate(25).tenants(3).throttle("off").start();
    let state = sb.state();
    let dir = tempfile::tempdir().unwrap();
    let mut domains = Vec::new();
    for (i, t) in state["tenants"].as_array().unwrap().iter().enumerate() {
        let domain = t["initialDomain"].as_str().unwrap().to_owned();
        let mut text = format!("version: 1\ntenant: {domain}\nusers:\n");
        for u in t["users"].as_array().unwrap().iter().take(10) {
            if u["directoryRoles"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                continue;
            }
            text.push_str(&format!(
                "  - user: {}\n    requirePasswordChange: {{ since: 2026-11-22T00:00:00Z }}\n",
                u["userPrincipalName"].as_str().unwrap()
            ));
        }
        crate::common::write(dir.path(), &format!("t{i}.yaml"), &text);
        domains.push(domain);
    }
    let plan_file = dir.path().join("plan.json");
    let r = run(sb.pwdrift().args([
        "plan",
        "--synced-flags-writable",
        dir.path().to_str().unwrap(),
        "--out",
        plan_file.to_str().unwrap(),
    ]));
    assert!(r.code == 0 || r.code == 2, "{r:?}");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let planned: Vec<&str> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    for d in &domains {
        assert!(planned.contains(&d.as_str()), "{d} planned: {planned:?}");
    }
    let r = run(sb.pwdrift().args([
        "apply",
        plan_file.to_str().unwrap(),
        "--auto-approve",
        "--synced-flags-writable",
        "--force",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Apply complete"), "{r:?}");
}

/// Declares `n` users of the generated tenant (no role holders), plans, and returns the
/// sandbox's request counts by route.
fn plan_declaring(sb: &Sandbox, n: usize) -> serde_json::Value {
    let state = sb.state();
    let tenant = &state["tenants"][0];
    let mut text = format!(
        "version: 1\ntenant: {}\nusers:\n",
        tenant["initialDomain"].as_str().unwrap()
    );
    let users = tenant["users"].as_array().unwrap().iter();
    let plain = users.filter(|u| u["directoryRoles"].as_array().is_none_or(|r| r.is_empty()));
    for u in plain.take(n) {
        text.push_str(&format!(
            "  - user: {}\n    requirePasswordChange: {{ since: 2026-11-22T00:00:00Z }}\n",
            u["userPrincipalName"].as_str().unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    crate::common::write(dir.path(), "desired.yaml", &text);
    let before = sb.stats();
    let r = run(sb.pwdrift().args([
        "plan",
        "--synced-flags-writable",
        dir.path().to_str().unwrap(),
    ]));
    assert!(r.code == 0 || r.code == 2, "{r:?}");
    let after = sb.stats();
    // requests by route, then by status
    let count = |v: &serde_json::Value, route: &str| -> u64 {
        v["requests"][route].as_object().map_or(0, |by_status| {
            by_status.values().filter_map(|n| n.as_u64()).sum()
        })
    };
    let mut by_route = serde_json::Map::new();
    for route in after["requests"].as_object().unwrap().keys() {
        let n = count(&after, route) - count(&before, route);
        if n > 0 {
            by_route.insert(route.clone(), n.into());
        }
    }
    by_route.into()
}

/// Below 2,000 declared users, the tenant is listed when that is cheaper than looking the users
/// up: 300 of 400 users are one page instead of 15 `$batch` envelopes; 300 of 6,000 are looked
/// up (7 large pages would cost more); 100 are looked up without asking for the count.
#[test]
fn declared_users_are_listed_when_the_tenant_is_small_enough() {
    // `GET /users/$count` is counted as `/users/{key}`, and so is each request of a `$batch`
    let small = Sandbox::generate(400).throttle("off").start();
    let requests = plan_declaring(&small, 300);
    assert_eq!(requests["GET /v1.0/users/{key}"], 1, "{requests}");
    assert_eq!(requests["GET /v1.0/users"], 1, "{requests}");
    assert!(requests.get("POST /v1.0/$batch").is_none(), "{requests}");

    let requests = plan_declaring(&small, 100);
    assert_eq!(requests["GET /v1.0/users/{key}"], 100, "{requests}");
    assert!(requests.get("GET /v1.0/users").is_none(), "{requests}");
    assert_eq!(requests["POST /v1.0/$batch"], 5, "{requests}");

    let large = Sandbox::generate(6000).throttle("off").start();
    let requests = plan_declaring(&large, 300);
    assert_eq!(requests["GET /v1.0/users/{key}"], 301, "{requests}");
    assert!(requests.get("GET /v1.0/users").is_none(), "{requests}");
    assert_eq!(requests["POST /v1.0/$batch"], 15, "{requests}");
}
