//! Sandbox lifecycle: `--state` persistence across a restart, `--generate` determinism, paging
//! through a generated tenant of 10,000 users, seed validation errors, and the real
//! `pwdrift sandbox` binary (first stdout line is the JSON info; it serves; it refuses
//! non-loopback addresses).

use crate::util::*;
use graph_sandbox::{SandboxConfig, SeedSource};
use serde_json::Value;

#[tokio::test]
async fn state_persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let config = |path: std::path::PathBuf| {
        let mut c = SandboxConfig::new(SeedSource::File(contoso_path()));
        c.state_file = Some(path);
        c
    };
    let s = start_config(config(state_file.clone())).await;
    let t = s.app_token().await;
    let r = s
        .patch(
            "/v1.0/users/grace@contoso.com",
            &t,
            r#"{"passwordProfile":{"forceChangePasswordNextSignIn":true,"forceChangePasswordNextSignInWithMfa":true}}"#,
        )
        .await;
    assert_eq!(r.status, 204);
    let admin = s.admin_token().await;
    let r = s
        .post(
            &format!(
                "/v1.0/users/{DAVE_ID}/authentication/methods/{PASSWORD_METHOD}/resetPassword"
            ),
            &admin,
            r#"{"newPassword":"Cuyo5459"}"#,
        )
        .await;
    assert_eq!(r.status, 202);
    let dave_before = s.state_of(DAVE_ID).await;
    s.sandbox.shutdown().await; // settles the reset and saves

    let saved = std::fs::read_to_string(&state_file).unwrap();
    assert!(!saved.contains("Cuyo5459"), "no password in the state file");
    assert!(
        !saved.contains(ADMIN_PASSWORD),
        "no password in the state file"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "state file is owner-only");
    }

    let s = start_config(config(state_file.clone())).await;
    let g = s.state_of("grace@contoso.com").await;
    assert_eq!(g["forceChangePasswordNextSignIn"], true);
    assert_eq!(g["forceChangePasswordNextSignInWithMfa"], true);
    let d = s.state_of(DAVE_ID).await;
    assert_eq!(
        d["forceChangePasswordNextSignIn"], true,
        "the reset was applied"
    );
    assert_eq!(
        dave_before["lastPasswordChangeDateTime"],
        "2026-03-01T08:00:00Z"
    );
    assert_ne!(d["lastPasswordChangeDateTime"], "2026-03-01T08:00:00Z");
    // the admin still signs in (password hash kept), and the info still knows the password
    assert_eq!(s.info.delegated_password.as_deref(), Some(ADMIN_PASSWORD));
    s.admin_token().await;
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn generate_is_deterministic() {
    let a = graph_sandbox::testing::generate(500, 7);
    let b = graph_sandbox::testing::generate(500, 7);
    let c = graph_sandbox::testing::generate(500, 8);
    let ja = serde_json::to_string(&a).unwrap();
    assert_eq!(ja, serde_json::to_string(&b).unwrap());
    assert_ne!(ja, serde_json::to_string(&c).unwrap());

    // and the mix is realistic
    let t = &a.tenants[0];
    assert_eq!(t.users.len(), 501, "500 + the delegated admin");
    let synced = t
        .users
        .iter()
        .filter(|u| u.on_premises_sync_enabled == Some(true))
        .count();
    assert!((100..=200).contains(&synced), "about 30% synced: {synced}");
    assert!(t
        .users
        .iter()
        .filter(|u| u.on_premises_sync_enabled == Some(true))
        .all(|u| u.on_premises_security_identifier.is_some()));
    let forced = t
        .users
        .iter()
        .filter(|u| {
            u.password_profile
                .is_some_and(|p| p.force_change_password_next_sign_in)
        })
        .count();
    assert!((3..=40).contains(&forced), "a few % forced: {forced}");
    assert!(t.users.iter().any(|u| u
        .password_policies
        .as_deref()
        .is_some_and(|p| p.contains("DisableStrongPassword"))));
    assert_eq!(t.groups.len(), 10);
    assert!(
        t.users
            .iter()
            .filter(|u| !u.directory_roles.is_empty())
            .count()
            >= 4
    );

    // the same generated tenant serves the same state
    let s1 = start_config(SandboxConfig::new(SeedSource::Generate {
        users: 500,
        rng_seed: 7,
    }))
    .await;
    let s2 = start_config(SandboxConfig::new(SeedSource::Generate {
        users: 500,
        rng_seed: 7,
    }))
    .await;
    let st = |s: &Sbx| {
        let url = s.url("/_sandbox/state");
        let http = s.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(st(&s1).await, st(&s2).await);
    assert_eq!(s1.info.client_secret, s2.info.client_secret);
    s1.sandbox.shutdown().await;
    s2.sandbox.shutdown().await;
}

/// 10,000 users, paged by 999 with nextLink until absent: every user exactly once.
#[tokio::test]
async fn generated_10k_pages_through_all_users() {
    let s = start_config(SandboxConfig::new(SeedSource::Generate {
        users: 10_000,
        rng_seed: 42,
    }))
    .await;
    let t = s.app_token().await;
    let mut url = s.url("/v1.0/users?$top=999&$select=id,onPremisesSecurityIdentifier");
    let mut ids = std::collections::HashSet::new();
    let mut pages = 0;
    loop {
        let v: Value = s
            .http
            .get(&url)
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for u in v["value"].as_array().unwrap() {
            assert!(
                ids.insert(u["id"].as_str().unwrap().to_owned()),
                "duplicate"
            );
        }
        match v["@odata.nextLink"].as_str() {
            Some(n) => url = n.to_owned(),
            None => break,
        }
    }
    assert_eq!(ids.len(), 10_001);
    assert_eq!(pages, 11);

    // a SID lookup is served from the index
    let state: Value = s
        .http
        .get(s.url("/_sandbox/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid_user = state["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["onPremisesSecurityIdentifier"].is_string())
        .unwrap()
        .clone();
    let v = s
        .get(
            &format!(
                "/v1.0/users?$filter=onPremisesSecurityIdentifier%20eq%20'{}'",
                sid_user["onPremisesSecurityIdentifier"].as_str().unwrap()
            ),
            &t,
        )
        .await
        .json();
    assert_eq!(v["value"][0]["id"], sid_user["id"]);
    s.sandbox.shutdown().await;
}

#[tokio::test]
async fn invalid_seeds_are_refused_with_location() {
    let bad_yaml =
        "tenants:\n  - id: 7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90\n    initialDomain: [oops\n";
    let err = graph_sandbox::start(
        SandboxConfig::new(SeedSource::Text {
            name: "bad.yaml".into(),
            text: bad_yaml.into(),
        }),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .err()
    .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.starts_with("bad.yaml:"), "{msg}");

    let mut seed = contoso_seed();
    seed.tenants[0].groups[0]
        .members
        .push("nobody@contoso.com".into());
    let err = graph_sandbox::start(
        SandboxConfig::new(SeedSource::Seed(Box::new(seed))),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .err()
    .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("tenants[0].groups[0].members[2]"), "{msg}");
    assert!(msg.contains("nobody@contoso.com"), "{msg}");

    let err = graph_sandbox::start(
        SandboxConfig::new(SeedSource::File(contoso_path())),
        "192.0.2.1:0".parse().unwrap(),
    )
    .await
    .err()
    .expect("refused");
    assert!(format!("{err}").contains("loopback"));
}
