//! No decision from a stale read (live/users.rs, "No decision from an advanced query"): reads
//! with `ConsistencyLevel: eventual` (a group's transitive members, an advanced `--filter`) are
//! served from an index that can lag writes; pwdrift uses them only to select users and reads
//! the state that decides a write again without the header. The sandbox's `--eventual-lag`
//! serves advanced reads from before the last write; `--b2c` refuses advanced queries as Azure
//! AD B2C tenants do.

use std::time::Duration;

use graph_sandbox::UpnRangeFilterMode;
use pwdrift::graph::client::{ClientOptions, GraphClient};

use crate::common::{run, Sandbox};

fn client(sb: &Sandbox) -> GraphClient {
    let mut options = ClientOptions::new(sb.endpoints());
    options.base_delay = Duration::from_millis(5);
    GraphClient::new(options, sb.app_credential()).unwrap()
}

/// `lastPasswordChangeDateTime` of a user as the group's advanced member read shows it, and as
/// an ordinary read of the user does.
fn last_change_both_ways(sb: &Sandbox, group: &str, upn: &str) -> (String, String) {
    let c = client(sb);
    let t = sb.info.tenant_id.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let g = c.find_groups_by_name(&t, group).await.unwrap().remove(0);
        let member = c
            .group_user_members(&t, &g.id)
            .await
            .unwrap()
            .into_iter()
            .find(|u| u.user_principal_name.as_deref() == Some(upn))
            .unwrap();
        let direct = c.get_user_by_id(&t, &member.id).await.unwrap().unwrap();
        let ts = |u: &pwdrift::graph::model::GraphUser| {
            u.last_password_change_date_time
                .map(|d| d.to_rfc3339())
                .unwrap_or_default()
        };
        (ts(&member), ts(&direct))
    })
}

/// A group's reset, applied, is not planned again right after although the group's member read
/// (an advanced query) still shows the old `lastPasswordChangeDateTime`: the members' state is
/// read again from `/users` without `ConsistencyLevel: eventual` before the diff.
#[test]
fn a_stale_advanced_read_does_not_plan_a_reset_again() {
    let sb = Sandbox::contoso()
        .configure(|c| c.realism.eventual_lag = Duration::from_secs(600))
        .start();
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired.yaml");
    std::fs::write(
        &desired,
        "version: 1\ntenant: contoso.onmicrosoft.com\ngroups:\n  - group: Finance\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { generate: { length: 20 } }\n",
    )
    .unwrap();
    let desired = desired.to_str().unwrap();
    let secrets = dir.path().join("s.jsonl");

    let plan = run(sb.pwdrift().args(["plan", desired, "--detailed-exitcode"]));
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("frank@contoso.com"), "{plan:?}");
    let apply = run(sb.pwdrift().args([
        "apply",
        desired,
        "--auto-approve",
        "--secrets-out",
        secrets.to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(sb.stats()["patchesPerUser"]["frank@contoso.com"], 1);

    // the advanced read is stale: by it, Frank's reset would be due again
    let (advanced, ordinary) = last_change_both_ways(&sb, "Finance", "frank@contoso.com");
    assert!(advanced.as_str() < "2026-11-20", "stale: {advanced}");
    assert!(ordinary.as_str() > "2026-11-20", "current: {ordinary}");

    // ... and pwdrift does not plan it again
    let again = run(sb.pwdrift().args(["plan", desired, "--detailed-exitcode"]));
    assert_eq!(again.code, 0, "no changes after one apply: {again:?}");
    let apply = run(sb.pwdrift().args([
        "apply",
        desired,
        "--auto-approve",
        "--secrets-out",
        dir.path().join("s2.jsonl").to_str().unwrap(),
    ]));
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(
        sb.stats()["patchesPerUser"]["frank@contoso.com"],
        1,
        "reset once only"
    );
}

/// On an Azure AD B2C tenant (which supports no advanced queries) an import `--filter` that
/// needs one exits 1 saying so, the filter quoted escaped; a filter that needs none works.
#[test]
fn a_b2c_tenant_refusing_an_advanced_filter_is_named() {
    let sb = Sandbox::contoso()
        .configure(|c| {
            c.realism.b2c = true;
            // the partitioned read is not what this test is about
            c.realism.upn_range_filter = UpnRangeFilterMode::Honoured;
        })
        .start();
    let dir = tempfile::tempdir().unwrap();
    let import = |filter: &str, out: &str| {
        run(sb.pwdrift().current_dir(dir.path()).args([
            "import",
            "--tenant",
            "contoso.onmicrosoft.com",
            "--out",
            out,
            "--filter",
            filter,
        ]))
    };
    let r = import("endsWith(userPrincipalName,'@contoso.com')\u{1b}[2J", "a");
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("needs advanced queries")
            && r.stderr.contains("Azure AD B2C tenants do not support"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("endsWith(userPrincipalName,'@contoso.com')"),
        "{r:?}"
    );
    assert!(!r.stderr.contains('\u{1b}'), "quoted escaped: {r:?}");
    assert!(!dir.path().join("a").exists(), "nothing written");

    let r = import("startsWith(userPrincipalName,'frank')", "b");
    assert_eq!(r.code, 0, "{r:?}");
}
