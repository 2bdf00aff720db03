//! Pacing to Graph's limits beyond the users' quotas, with the real client against the sandbox:
//! resetPassword and its operation polls share the tenant's authentication-method limit (5
//! requests per 10 s per app and tenant; here scaled by 10, as `--throttle scaled:10` scales the
//! sandbox's), so that a run of resets meets no 429 and takes the limit's time, not less.

use std::time::{Duration, Instant};

use pwdrift::graph::client::{ClientOptions, GraphClient};

use crate::common::Sandbox;

#[tokio::test]
async fn resets_and_their_polls_are_paced_to_the_authentication_method_limit() {
    // scaled:10: 1 request per second for resetPassword and its polls together
    let sb = Sandbox::contoso().throttle("scaled:10").start_here().await;
    let t = sb.info.tenant_id.clone();
    let mut options = ClientOptions::new(sb.endpoints());
    options.auth_method_quota = options.auth_method_quota.scaled(10);
    options.write_quotas = options.write_quotas.iter().map(|q| q.scaled(10)).collect();
    let delegated = GraphClient::new(options, sb.delegated_credential()).expect("client");
    let me = delegated.me(&t).await.unwrap();
    let users = delegated.list_users(&t, None).await.unwrap();
    let user = users
        .iter()
        .find(|u| u.on_premises_sync_enabled != Some(true) && u.id != me.id)
        .unwrap()
        .id
        .clone();
    let started = Instant::now();
    // three resets side by side, each polled to its end: six requests
    let resets = (0..3).map(|_| {
        let (c, t, user) = (delegated.clone(), t.clone(), user.clone());
        async move {
            let slot = c.admit_reset_password(&t).await;
            let out = c.reset_password_in(&t, &user, None, Some(slot)).await?;
            let location = out.location.expect("a Location");
            c.poll_operation_after(&t, &location, out.retry_after, Duration::from_secs(60))
                .await
        }
    });
    for op in futures_util::future::join_all(resets).await {
        assert!(op.is_ok(), "{op:?}");
    }
    let elapsed = started.elapsed();
    // the sixth request may start 5 windows of 1 s after the first (each plus its margin)
    assert!(elapsed >= Duration::from_secs(5), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(12), "{elapsed:?}");
    let stats = reqwest::get(format!("{}/_sandbox/stats", sb.info.graph_url))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(stats["throttled"], 0, "no 429: {stats}");
    assert_eq!(delegated.stats().throttled, 0);
}

/// With the client paced far faster than the sandbox allows, the sandbox refuses with 429
/// (`Tenant_Application/AuthenticationMethod`), and the client still completes every reset,
/// holding back only the resets and polls while it waits.
#[tokio::test]
async fn a_429_of_the_authentication_method_limit_is_waited_out() {
    let sb = Sandbox::contoso().throttle("scaled:10").start_here().await;
    let t = sb.info.tenant_id.clone();
    let mut options = ClientOptions::new(sb.endpoints());
    options.auth_method_quota.writes = 1_000;
    options.base_delay = Duration::from_millis(5);
    let delegated = GraphClient::new(options, sb.delegated_credential()).expect("client");
    let me = delegated.me(&t).await.unwrap();
    let users = delegated.list_users(&t, None).await.unwrap();
    let user = users
        .iter()
        .find(|u| u.on_premises_sync_enabled != Some(true) && u.id != me.id)
        .unwrap()
        .id
        .clone();
    for _ in 0..3 {
        delegated.reset_password(&t, &user, None).await.unwrap();
    }
    let stats = reqwest::get(format!("{}/_sandbox/stats", sb.info.graph_url))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let by_scope = &stats["throttleModel"]["throttled_by_scope"];
    assert!(
        by_scope["Tenant_Application/AuthenticationMethod"].as_u64() >= Some(1),
        "{stats}"
    );
    assert!(delegated.stats().throttled >= 1);
}
