//! One apply per tenant at a time, and never a reset twice: right before each password write
//! the user is read again and skipped when its password changed after the plan read it; two
//! applies started together from two directories (two checkouts) take the machine-wide lock of
//! their tenant one after the other, so that no user is reset twice and every journal entry
//! marked applied is the user's password.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use pwdrift::engine::steps::apply::{self, Cancel, ResolvedPasswords, Status, TenantClients};
use pwdrift::graph::client::{ClientOptions, GraphClient};
use pwdrift::graph::model::ForceFlags;
use pwdrift::plan::{Action, Plan, ResetMethod, TenantPlan, UserPlan};
use pwdrift::secrets::{read_passwords, Journal, OpenMode, Outcome, SecretsFile};
use secrecy::ExposeSecret;

use crate::common::{write, Run, Sandbox};

/// A password reset by PATCH of one contoso user, as a plan that read `read` as its
/// `lastPasswordChangeDateTime`.
fn reset(id: &str, upn: &str, read: Option<&str>) -> UserPlan {
    UserPlan {
        user_id: id.into(),
        user_principal_name: upn.into(),
        declared_at: vec![],
        fingerprint: String::new(),
        allow_privileged: false,
        synced: false,
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
        excluded: 0,
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
        decided_at: chrono::Utc::now(),
        clock: pwdrift::plan::ClockSource::Graph,
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

/// A generated tenant whose state file holds each user's password hash, each request slowed by
/// `latency_ms` so that two applies overlap.
pub(crate) fn tenant(dir: &Path, latency_ms: &str) -> Sandbox {
    Sandbox::generate(40)
        .generation_seed(7)
        .rng_seed(3)
        .state_file(&dir.join("sandbox.state.json"))
        .throttle("off")
        .latency(latency_ms)
        .start()
}

/// The first `n` cloud members whose password pwdrift manages.
pub(crate) fn plain_users(sb: &Sandbox, n: usize) -> Vec<String> {
    let users: Vec<String> = sb.state()["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| {
            u["onPremisesSyncEnabled"] != true
                && u["privileged"] == false
                && u["userType"] == "Member"
                && u["federatedDomain"] != true
                && u["forceChangePasswordNextSignIn"] == false
        })
        .map(|u| {
            u["userPrincipalName"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()
        })
        .take(n)
        .collect();
    assert_eq!(users.len(), n);
    users
}

/// UPN (lower case) -> password hash, from the state file written now.
fn hashes(sb: &Sandbox) -> BTreeMap<String, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.persist()).unwrap()).unwrap();
    doc["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| {
            Some((
                u["userPrincipalName"].as_str()?.to_ascii_lowercase(),
                u["passwordSha256"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// A checkout: a directory of its own with the desired state (generated passwords for
/// `users`), as a second clone of the repository would be.
pub(crate) fn checkout(root: &Path, name: &str, sb: &Sandbox, users: &[String]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("desired")).unwrap();
    let mut text = format!("version: 1\ntenant: {}\nusers:\n", sb.info.tenant_domain);
    for u in users {
        text.push_str(&format!(
            "  - user: {u}\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: {{ generate: {{ length: 16 }} }}\n"
        ));
    }
    write(&dir.join("desired"), "tenant.yaml", &text);
    dir
}

/// Starts `pwdrift apply desired/` in `dir`, its journal in `dir/secrets.jsonl`.
fn start_apply(sb: &Sandbox, dir: &Path, extra: &[&str]) -> std::process::Child {
    let mut cmd: Command = sb.pwdrift();
    cmd.current_dir(dir)
        .args([
            "apply",
            "desired",
            "--auto-approve",
            "--force",
            "--secrets-out",
            "secrets.jsonl",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

pub(crate) fn finish(child: std::process::Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Each of `users` was written exactly once (one PATCH in the tenant), and every journal entry
/// marked applied in `dirs` is the user's password now: one entry per user.
pub(crate) fn assert_each_user_written_once(sb: &Sandbox, users: &[String], dirs: &[&Path]) {
    for u in users {
        assert_eq!(sb.patches_of(u), 1, "{u}");
    }
    assert_eq!(applied_entries_are_the_passwords(sb, dirs), users.len());
}

/// Every journal entry marked applied, in both checkouts, holds the user's password now (one
/// entry per user at most, across both), and returns how many there are.
fn applied_entries_are_the_passwords(sb: &Sandbox, dirs: &[&Path]) -> usize {
    let now = hashes(sb);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for dir in dirs {
        let path = dir.join("secrets.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let journal = Journal::parse(&path, &text).unwrap();
        assert_eq!(journal.pending().count(), 0, "{}", dir.display());
        let passwords: HashMap<u64, String> = read_passwords(&text, None)
            .unwrap()
            .into_iter()
            .map(|(seq, _, pw)| {
                (
                    seq,
                    graph_sandbox::testing::password_hash(pw.expose_secret()),
                )
            })
            .collect();
        for e in journal
            .entries()
            .filter(|e| e.outcome == Some(Outcome::Applied))
        {
            let upn = e.user_principal_name.to_ascii_lowercase();
            assert_eq!(
                passwords.get(&e.seq),
                now.get(&upn),
                "{upn}: the password recorded as applied in {} is not the user's",
                dir.display()
            );
            *seen.entry(upn).or_default() += 1;
        }
    }
    assert!(seen.values().all(|n| *n == 1), "reset twice: {seen:?}");
    seen.len()
}

/// Two applies of one tenant from two checkouts, started together, fail-fast (the default
/// `--lock-timeout 0`): one writes every user once, the other fails with exit 1 naming the
/// holder (its pid and working directory) and writes nothing.
#[test]
fn two_applies_at_once_one_fails_naming_the_holder() {
    let root = tempfile::tempdir().unwrap();
    let sb = tenant(root.path(), "150");
    let users = plain_users(&sb, 6);
    let a = checkout(root.path(), "a", &sb, &users);
    let b = checkout(root.path(), "b", &sb, &users);
    let (ca, cb) = (start_apply(&sb, &a, &[]), start_apply(&sb, &b, &[]));
    let pids = [ca.id(), cb.id()];
    let runs = [finish(ca), finish(cb)];
    let winner = runs.iter().position(|r| r.code == 0);
    let Some(w) = winner else {
        panic!("neither apply succeeded: {runs:?}")
    };
    let (won, lost) = (&runs[w], &runs[1 - w]);
    let holder_dir = [&a, &b][w];
    assert_eq!(lost.code, 1, "{lost:?}");
    assert!(
        lost.stderr
            .contains("is being applied by another pwdrift run (pid ")
            && lost.stderr.contains(&format!("pid {}", pids[w]))
            && lost.stderr.contains(&holder_dir.display().to_string())
            && lost.stderr.contains("--lock-timeout"),
        "{lost:?}"
    );
    assert!(won.stdout.contains("Apply complete"), "{won:?}");
    assert_each_user_written_once(&sb, &users, &[&a, &b]);
}

/// The same with `--lock-timeout 2m`: the second waits for the first, then plans against the
/// tenant the first left and finds nothing to change; every user was written once.
#[test]
fn two_applies_at_once_with_a_lock_timeout_run_one_after_the_other() {
    let root = tempfile::tempdir().unwrap();
    let sb = tenant(root.path(), "150");
    let users = plain_users(&sb, 6);
    let a = checkout(root.path(), "a", &sb, &users);
    let b = checkout(root.path(), "b", &sb, &users);
    let wait = ["--lock-timeout", "2m"];
    let (ca, cb) = (start_apply(&sb, &a, &wait), start_apply(&sb, &b, &wait));
    let runs = [finish(ca), finish(cb)];
    assert!(runs.iter().all(|r| r.code == 0), "{runs:?}");
    let waited: Vec<&Run> = runs
        .iter()
        .filter(|r| r.stdout.contains("No changes to apply."))
        .collect();
    assert_eq!(waited.len(), 1, "{runs:?}");
    assert!(
        waited[0]
            .stderr
            .contains("is being applied by another pwdrift run (pid "),
        "{runs:?}"
    );
    assert_each_user_written_once(&sb, &users, &[&a, &b]);
}

/// A plan saved before plans recorded `last_password_change` (the field removed, the content
/// hash recomputed) is applied as before: its users are written, not skipped as changed.
#[test]
fn a_saved_plan_without_last_password_change_still_applies() {
    let root = tempfile::tempdir().unwrap();
    let sb = tenant(root.path(), "0");
    let users = plain_users(&sb, 2);
    let dir = checkout(root.path(), "a", &sb, &users);
    let plan = crate::common::run(sb.pwdrift().current_dir(&dir).args([
        "plan",
        "desired",
        "--out",
        "plan.json",
    ]));
    assert_eq!(plan.code, 0, "{plan:?}");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("plan.json")).unwrap()).unwrap();
    let mut removed = 0;
    for t in doc["tenants"].as_array_mut().unwrap() {
        for u in t["users"].as_array_mut().unwrap() {
            removed += usize::from(
                u.as_object_mut()
                    .unwrap()
                    .remove("last_password_change")
                    .is_some(),
            );
        }
    }
    assert_eq!(removed, users.len());
    doc.as_object_mut().unwrap().remove("content_hash");
    let parsed: Plan = serde_json::from_value(doc.clone()).unwrap();
    doc["content_hash"] = pwdrift::plan::content_hash(&parsed).into();
    std::fs::write(dir.join("plan.json"), doc.to_string()).unwrap();
    let r = crate::common::run(sb.pwdrift().current_dir(&dir).args([
        "apply",
        "plan.json",
        "--auto-approve",
        "--secrets-out",
        "secrets.jsonl",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stdout.contains("skipped"), "{r:?}");
    for u in &users {
        assert_eq!(sb.patches_of(u), 1, "{u}");
    }
}
