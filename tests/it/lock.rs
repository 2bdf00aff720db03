//! One apply per tenant at a time, and never a reset twice: right before each password write
//! the user is read again and skipped when its password changed after the plan read it; two
//! applies started together from two directories (two checkouts) take the machine-wide lock of
//! their tenant one after the other, so that no user is reset twice and every journal entry
//! marked applied is the user's password.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pwdrift::engine::steps::apply::{self, Cancel, ResolvedPasswords, Status, TenantClients};
use pwdrift::graph::client::{ClientOptions, GraphClient};
use pwdrift::graph::model::ForceFlags;
use pwdrift::plan::{Action, Plan, ResetMethod, TenantPlan, UserPlan};
use pwdrift::secrets::{read_passwords, OpenMode, SecretsFile};

use crate::common::Sandbox;

/// A password reset by PATCH of one contoso user, as a plan that read `read` as its
/// `lastPasswordChangeDateTime`.
fn reset(id: &str, upn: &str, read: Option<&str>) -> UserPlan {
    UserPlan {
        user_id: id.into(),
        user_principal_name: upn.into(),
        declared_at: vec![],
        fingerprint: String::new(),
        allow_privileged: false,
        last_password_change: read.map(|t| t.parse().unwrap()),
        action: Action::ResetPassword {
            method: ResetMethod::PatchPasswordProfile,
            password: pwdrift::config::PasswordSource::Generate { length: 20 },
            before: ForceFlags::default(),
            after: ForceFlags::default(),
            reason: String::new(),
        },
    }
}

/// `GET /_sandbox/stats` from an async test.
async fn patches(sb: &Sandbox) -> HashMap<String, u64> {
    let stats: serde_json::Value = reqwest::get(format!("{}/_sandbox/stats", sb.graph_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["patchesPerUser"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// The plan read alice's password change at 08:00, but it is 09:00 in the tenant now (someone
/// changed it since): alice is skipped, named with both times, nothing recorded or sent for
/// her; dave, whose password is as the plan read it, is reset. Without the re-read both would be.
#[tokio::test]
async fn a_password_changed_after_the_plan_read_it_is_not_written_again() {
    let sb = Sandbox::contoso().throttle("off").start_here().await;
    let mut options = ClientOptions::new(sb.endpoints());
    options.base_delay = Duration::from_millis(5);
    let clients = TenantClients {
        app: GraphClient::new(options, sb.app_credential()).unwrap(),
        delegated: None,
        verify_timeout: Duration::from_secs(5),
    };
    let tenant = TenantPlan {
        tenant: sb.info.tenant_id.clone(),
        tenant_id: sb.info.tenant_id.clone(),
        users: vec![
            reset(
                "0b8f6b1c-3f41-4b8e-9a55-1c2d3e4f5a01",
                "alice@contoso.com",
                Some("2026-01-10T08:00:00Z"),
            ),
            reset(
                "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0",
                "dave@contoso.com",
                Some("2026-03-01T08:00:00Z"),
            ),
        ],
        notes: vec![],
    };
    let plan = Plan {
        format_version: pwdrift::plan::FORMAT_VERSION.into(),
        pwdrift_version: "test".into(),
        created_at: chrono::Utc::now(),
        made_from: Default::default(),
        tenants: vec![tenant.clone()],
        content_hash: None,
    };
    let passwords = ResolvedPasswords::resolve(&plan).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.jsonl");
    let secrets: apply::SharedSecrets = Mutex::new(Some(
        SecretsFile::open(&path, OpenMode::CreateNew, vec![])
            .unwrap()
            .0,
    ));
    let shared = apply::Shared {
        passwords: &passwords,
        secrets: &secrets,
        cancel: &Cancel::default(),
        ledger: &apply::Ledger::default(),
        progress: &|_| {},
        resets_at_once: 4,
    };
    let results = apply::apply_tenant(&clients, &tenant, &shared)
        .await
        .unwrap();
    assert_eq!(results[0].user_principal_name, "alice@contoso.com");
    assert_eq!(results[0].status, Status::Skipped, "{results:?}");
    let detail = results[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("password changed since the plan read it")
            && detail.contains("2026-01-10T09:00:00")
            && detail.contains("2026-01-10T08:00:00"),
        "{detail}"
    );
    assert_eq!(results[1].status, Status::Verified, "{results:?}");
    let patched = patches(&sb).await;
    assert_eq!(patched.get("alice@contoso.com").copied().unwrap_or(0), 0);
    assert_eq!(patched.get("dave@contoso.com").copied(), Some(1));
    drop(secrets);
    let recorded = read_passwords(&std::fs::read_to_string(&path).unwrap(), None).unwrap();
    let upns: Vec<&str> = recorded.iter().map(|(_, upn, _)| upn.as_str()).collect();
    assert_eq!(upns, ["dave@contoso.com"]);
}
