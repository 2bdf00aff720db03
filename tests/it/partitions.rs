//! Partitioned user reads when Graph does not apply the `userPrincipalName` range filter
//! (graph/client/partition.rs, "A filter Graph may ignore"): the sandbox honours the range
//! (documented), refuses it with 400, or accepts and ignores it (a public docs issue reports range
//! filters on UPN not working). Every page is checked against its range; at the first stray user
//! pwdrift reads the tenant sequentially, says so once, and the plan is the same in all three.

use std::time::Duration;

use graph_sandbox::UpnRangeFilterMode;
use pwdrift::graph::client::{ClientOptions, GraphClient, ListingPath, READ_CONCURRENCY};

use crate::common::{repo, run, Sandbox};

const WARNING: &str = "Graph ignored the userPrincipalName range filter";

fn mode_name(mode: UpnRangeFilterMode) -> &'static str {
    match mode {
        UpnRangeFilterMode::Honoured => "honoured",
        UpnRangeFilterMode::Rejected => "rejected",
        UpnRangeFilterMode::Ignored => "ignored",
    }
}

/// `pwdrift plan --format json` of the example desired state, the tenant listed in partitions
/// (thresholds 0); the plan without its time and hash, and stderr.
fn plan(mode: UpnRangeFilterMode, verbose: bool) -> (serde_json::Value, String) {
    let sb = Sandbox::contoso()
        .configure(move |c| c.realism.upn_range_filter = mode)
        .start();
    let desired = repo().join("examples/desired");
    let mut cmd = sb.pwdrift();
    cmd.current_dir(repo())
        .env("PWDRIFT_LIST_ALL_THRESHOLD", "0")
        .env("PWDRIFT_PARTITION_MIN_USERS", "0");
    if verbose {
        cmd.arg("-v");
    }
    let r = run(cmd.args(["plan", desired.to_str().unwrap(), "--format", "json"]));
    assert_eq!(r.code, 0, "{}: {r:?}", mode_name(mode));
    let mut v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["created_at"] = serde_json::Value::Null;
    v["content_hash"] = serde_json::Value::Null;
    v["tenants"][0]["decided_at"] = serde_json::Value::Null;
    (v, r.stderr)
}

/// The same plan JSON whether Graph honours, refuses or ignores the range filter; the ignored
/// filter is warned about once (and `-v` says which user came back for which range), the
/// refused one only in `-v`.
#[test]
fn the_plan_is_the_same_whether_the_range_filter_is_honoured_rejected_or_ignored() {
    let (honoured, log) = plan(UpnRangeFilterMode::Honoured, true);
    assert!(log.contains("users read in parallel partitions"), "{log}");
    assert!(!log.contains(WARNING), "{log}");

    let (rejected, log) = plan(UpnRangeFilterMode::Rejected, true);
    assert!(log.contains("falling back to sequential paging"), "{log}");
    assert!(log.contains("Request_UnsupportedQuery"), "{log}");
    assert!(!log.contains(WARNING), "a refusal is not silent: {log}");

    let (ignored, log) = plan(UpnRangeFilterMode::Ignored, true);
    assert_eq!(log.matches(WARNING).count(), 1, "{log}");
    assert!(log.contains("outside its range"), "-v says why: {log}");
    assert!(!log.contains("users read in parallel partitions"), "{log}");

    assert_eq!(honoured, rejected);
    assert_eq!(honoured, ignored);

    // without -v: the warning alone
    let (quiet, log) = plan(UpnRangeFilterMode::Ignored, false);
    assert_eq!(log.matches(WARNING).count(), 1, "{log}");
    assert!(!log.contains("outside its range"), "{log}");
    assert_eq!(honoured, quiet);
}

fn client(sb: &Sandbox) -> GraphClient {
    let mut options = ClientOptions::new(sb.endpoints());
    options.base_delay = Duration::from_millis(5);
    GraphClient::new(options, sb.app_credential()).unwrap()
}

async fn user_list_requests(admin: &str) -> u64 {
    let stats: serde_json::Value = reqwest::get(format!("{admin}/_sandbox/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["requests"]["GET /v1.0/users"]
        .as_object()
        .map(|by_status| by_status.values().filter_map(|n| n.as_u64()).sum())
        .unwrap_or(0)
}

/// An ignored filter costs at most the pages in flight when the first stray user is seen on top
/// of the sequential read (not 63 whole-tenant reads), the result is the tenant once, and the
/// client does not partition that tenant again.
#[tokio::test]
async fn an_ignored_range_filter_costs_at_most_one_round_of_pages() {
    let sb = Sandbox::generate(3000)
        .generation_seed(3)
        .throttle("off")
        .configure(|c| c.realism.upn_range_filter = UpnRangeFilterMode::Ignored)
        .start_here()
        .await;
    let admin = sb.graph_url();
    let c = client(&sb);
    let t = sb.info.tenant_id.clone();

    let before = user_list_requests(&admin).await;
    let sequential = c.list_users(&t, None).await.unwrap();
    let pages = user_list_requests(&admin).await - before;
    assert_eq!(pages, 4, "3,001 users in pages of 999");

    let before = user_list_requests(&admin).await;
    let (users, path) = c.list_all_users_with(&t, 0).await.unwrap();
    let spent = user_list_requests(&admin).await - before;
    assert!(
        matches!(&path, ListingPath::FellBack(r) if r.contains("outside its range")),
        "{path:?}"
    );
    assert_eq!(users.len(), sequential.len());
    assert!(
        spent <= pages + READ_CONCURRENCY as u64,
        "{spent} list requests: more than one round of {READ_CONCURRENCY} partition pages over the {pages} sequential ones"
    );

    // remembered: the next listing of the tenant pages sequentially at once
    let before = user_list_requests(&admin).await;
    let (again, path) = c.list_all_users_with(&t, 0).await.unwrap();
    assert_eq!(path, ListingPath::SequentialAfterFallBack);
    assert_eq!(again.len(), sequential.len());
    assert_eq!(user_list_requests(&admin).await - before, pages);
}
