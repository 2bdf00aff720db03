//! End-to-end tests of the Graph client against the Graph sandbox over loopback HTTP.
//!
//! The sandbox is started through `common::Sandbox` (in this test's runtime).
//!
//! Seed facts used (examples/sandbox/contoso.seed.yaml): carol is synced with a SID; admin is a
//! Privileged Authentication Administrator with a known password (ROPC) through the seeded
//! public client; Finance = frank + Finance Contractors (grace).
//!
//! What is pinned down: paging through `@odata.nextLink` with `$top=999`, `$batch` reads by id,
//! UPN and SID (404 per key), transitive group expansion, PATCH of passwordProfile read back,
//! resetPassword with a delegated (ROPC) token and polling to a terminal status, the
//! delegated-only refusal for app tokens, token refresh, convergence under the sandbox's
//! throttling model and injected faults with the exact final state, and no secret in the logs.

use std::collections::{BTreeMap, HashSet};

use std::time::Duration;

use pwdrift::graph::auth::Credential;
use pwdrift::graph::client::{ClientOptions, GraphClient, GraphError, UserKey};
use pwdrift::graph::model::{ForceFlags, OperationStatus, PasswordProfile};
use secrecy::{ExposeSecret, SecretString};

use crate::common::{Sandbox, SandboxBuilder};

const CANARY_PASSWORD: &str = "Canary-Pw-8d2K!x";

/// The example tenant, throttling off.
fn contoso() -> SandboxBuilder {
    Sandbox::contoso().throttle("off")
}

/// A generated tenant of `users` users, throttling off.
fn generated(users: usize, rng_seed: u64) -> SandboxBuilder {
    Sandbox::generate(users).rng_seed(rng_seed).throttle("off")
}

fn client_with(
    sb: &Sandbox,
    credential: Credential,
    tweak: impl FnOnce(&mut ClientOptions),
) -> GraphClient {
    let mut options = ClientOptions::new(sb.endpoints());
    options.base_delay = Duration::from_millis(5);
    options.max_backoff = Duration::from_millis(200);
    tweak(&mut options);
    GraphClient::new(options, credential).expect("client")
}

fn app_client(sb: &Sandbox) -> GraphClient {
    client_with(sb, sb.app_credential(), |_| {})
}

fn tenant(sb: &Sandbox) -> String {
    sb.info.tenant_id.clone()
}

fn flags(force: bool, mfa: bool) -> PasswordProfile {
    PasswordProfile {
        force_change_password_next_sign_in: Some(force),
        force_change_password_next_sign_in_with_mfa: Some(mfa),
        password: None,
        odata_type: None,
    }
}

/// A generated tenant larger than one page is read completely through `@odata.nextLink`.
#[tokio::test]
async fn list_users_follows_next_links_through_all_pages() {
    let sb = generated(2100, 1).start_here().await;
    let c = app_client(&sb);
    let users = c.list_users(&tenant(&sb), None).await.unwrap();
    let ids: HashSet<_> = users.iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids.len(), users.len(), "no user twice");
    assert!(users.len() >= 2100, "{}", users.len());
    assert!(
        c.stats().requests >= 3,
        "2100 users at $top=999 take three pages"
    );
    assert!(
        users.iter().all(|u| u.user_principal_name.is_some()),
        "$select honoured"
    );
}

/// A smaller generated tenant (250) is one page; the filter form works too.
#[tokio::test]
async fn list_users_of_250_and_filtered() {
    let sb = generated(250, 1).start_here().await;
    let c = app_client(&sb);
    let all = c.list_users(&tenant(&sb), None).await.unwrap();
    assert!(all.len() >= 250);
    let forced = c
        .list_users(
            &tenant(&sb),
            Some("passwordProfile/forceChangePasswordNextSignIn eq true"),
        )
        .await
        .unwrap();
    assert!(forced.len() < all.len());
    assert!(forced
        .iter()
        .all(|u| ForceFlags::from_profile(u.password_profile.as_ref())
            .force_change_password_next_sign_in));
}

/// `$batch` reads by id, UPN and SID resolve to the same users; unknown keys are NotFound.
#[tokio::test]
async fn batch_reads_by_id_upn_and_sid() {
    let sb = contoso().start_here().await;
    let t = tenant(&sb);
    let c = app_client(&sb);
    let all = c.list_users(&t, None).await.unwrap();
    let alice = all
        .iter()
        .find(|u| u.user_principal_name.as_deref() == Some("alice@contoso.com"))
        .expect("alice is seeded");
    let synced = all
        .iter()
        .find(|u| u.on_premises_security_identifier.is_some())
        .expect("the seed has a synced user with a SID");
    let keys = vec![
        UserKey::Id(alice.id.clone()),
        UserKey::Upn("bob@contoso.com".into()),
        UserKey::Sid(synced.on_premises_security_identifier.clone().unwrap()),
        UserKey::Upn("nobody@contoso.com".into()),
        UserKey::Id("00000000-0000-0000-0000-000000000000".into()),
        UserKey::Sid("S-1-5-21-0-0-0-99999".into()),
    ];
    let results = c.get_users_by_batch(&t, &keys).await.unwrap();
    assert_eq!(results.len(), keys.len());
    assert_eq!(results[0].1.as_ref().unwrap().id, alice.id);
    assert_eq!(
        results[1]
            .1
            .as_ref()
            .unwrap()
            .user_principal_name
            .as_deref(),
        Some("bob@contoso.com")
    );
    assert_eq!(results[2].1.as_ref().unwrap().id, synced.id);
    for r in &results[3..] {
        assert!(r.1.as_ref().unwrap_err().is_not_found(), "{:?}", r);
    }
    // one envelope for six keys
    assert_eq!(c.stats().batch_inner_requests, 6);
}

/// Group expansion is transitive: Finance includes the members of Finance Contractors.
#[tokio::test]
async fn group_members_are_transitive() {
    let sb = contoso().start_here().await;
    let t = tenant(&sb);
    let c = app_client(&sb);
    let finance = c.find_groups_by_name(&t, "Finance").await.unwrap();
    assert_eq!(finance.len(), 1, "exact displayName match, not a prefix");
    let contractors = c
        .find_groups_by_name(&t, "Finance Contractors")
        .await
        .unwrap();
    assert_eq!(contractors.len(), 1);
    assert!(c
        .find_groups_by_name(&t, "No Such Group")
        .await
        .unwrap()
        .is_empty());
    let all: HashSet<_> = c
        .group_user_members(&t, &finance[0].id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    let nested: HashSet<_> = c
        .group_user_members(&t, &contractors[0].id)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert!(!nested.is_empty());
    assert!(
        nested.is_subset(&all),
        "nested members are transitive members"
    );
    assert!(all.len() > nested.len(), "Finance has direct members too");
}

/// Role assignments are read with their principal, every page followed (the sandbox pages by 5).
#[tokio::test]
async fn role_assignments_list_principals() {
    let sb = contoso().start_here().await;
    let t = tenant(&sb);
    let c = app_client(&sb);
    let assignments = c.role_assignments(&t).await.unwrap();
    let admin = c
        .list_users(&t, Some("userPrincipalName eq 'admin@contoso.com'"))
        .await
        .unwrap()
        .remove(0);
    assert!(assignments
        .iter()
        .any(|a| a.principal_id == admin.id
            && a.principal.as_ref().is_some_and(|p| p.id == admin.id)));
    let definitions = c.role_definitions(&t).await.unwrap();
    assert!(definitions.len() > 5, "more than one page of definitions");
}

/// PATCH of both flags, then read back: the live state is what was written; then back again.
#[tokio::test]
async fn patch_password_profile_and_read_back() {
    let sb = contoso().start_here().await;
    let t = tenant(&sb);
    let c = app_client(&sb);
    let keys = [
        UserKey::Upn("alice@contoso.com".into()),
        UserKey::Upn("bob@contoso.com".into()),
    ];
    let users: Vec<_> = c
        .get_users_by_batch(&t, &keys)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, u)| u.unwrap())
        .collect();
    let results = c
        .patch_password_profiles(
            &t,
            vec![
                (users[0].id.clone(), flags(true, false)),
                (users[1].id.clone(), flags(false, true)),
            ],
        )
        .await;
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    let back = c.get_users_by_batch(&t, &keys).await.unwrap();
    let f =
        |i: usize| ForceFlags::from_profile(back[i].1.as_ref().unwrap().password_profile.as_ref());
    assert_eq!(
        f(0),
        ForceFlags {
            force_change_password_next_sign_in: true,
            force_change_password_next_sign_in_with_mfa: false
        }
    );
    assert_eq!(
        f(1),
        ForceFlags {
            force_change_password_next_sign_in: false,
            force_change_password_next_sign_in_with_mfa: true
        }
    );

    // a password with the PATCH moves lastPasswordChangeDateTime
    let before = users[0].last_password_change_date_time;
    let mut p = flags(false, false);
    p.password = Some(SecretString::from(CANARY_PASSWORD));
    let r = c
        .patch_password_profiles(&t, vec![(users[0].id.clone(), p)])
        .await;
    assert!(r[0].1.is_ok(), "{:?}", r[0].1);
    let after = c
        .get_users_by_batch(&t, &keys[..1])
        .await
        .unwrap()
        .remove(0)
        .1
        .unwrap();
    assert!(after.last_password_change_date_time > before);
}

/// A weak password is refused per user with Graph's code; the others in the batch succeed.
#[tokio::test]
async fn weak_password_fails_only_its_user() {
    let sb = contoso().start_here().await;
    let t = tenant(&sb);
    let c = app_client(&sb);
    let users = c.list_users(&t, None).await.unwrap();
    let cloud: Vec<_> = users
        .iter()
        .filter(|u| u.on_premises_sync_enabled != Some(true))
        .take(2)
        .collect();
    let mut weak = flags(false, false);
    weak.password = Some(SecretString::from("abc"));
    let r = c
        .patch_password_profiles(
            &t,
            vec![
                (cloud[0].id.clone(), weak),
                (cloud[1].id.clone(), flags(true, false)),
            ],
        )
        .await;
    assert_eq!(
        r[0].1.as_ref().unwrap_err().code(),
        Some("Request_BadRequest")
    );
    assert!(r[1].1.is_ok());
}

/// resetPassword needs a delegated token: with ROPC it returns 202 + Location, polling reaches
/// `succeeded`, and the password change shows in lastPasswordChangeDateTime. With an app token it
/// is refused. The caller's own account is refused.
#[tokio::test]
async fn reset_password_delegated_and_polled() {
    let sb = contoso().start_here().await;
    let t = tenant(&sb);
    let app = app_client(&sb);
    let delegated = client_with(&sb, sb.delegated_credential(), |_| {});
    let users = app.list_users(&t, None).await.unwrap();
    let synced = users
        .iter()
        .find(|u| u.on_premises_sync_enabled == Some(true))
        .expect("a synced user in the seed");

    let err = app
        .reset_password(&t, &synced.id, Some(SecretString::from(CANARY_PASSWORD)))
        .await
        .unwrap_err();
    assert!(
        matches!(err.status(), Some(401) | Some(403)),
        "app-only is refused: {err}"
    );

    let me = delegated.me(&t).await.unwrap();
    assert_eq!(me.user_principal_name, sb.info.delegated_username);
    let err = delegated
        .reset_password(&t, &me.id, Some(SecretString::from(CANARY_PASSWORD)))
        .await
        .unwrap_err();
    assert!(
        err.status().is_some_and(|s| (400..500).contains(&s)),
        "own account refused: {err}"
    );

    let out = delegated
        .reset_password(&t, &synced.id, Some(SecretString::from(CANARY_PASSWORD)))
        .await
        .unwrap();
    assert!(
        out.generated_password.is_none(),
        "a given password is not echoed"
    );
    let op = delegated
        .poll_operation(
            &t,
            out.location.as_deref().unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(op.status, OperationStatus::Succeeded);
    let after = app
        .list_users(&t, Some(&format!("id eq '{}'", synced.id)))
        .await
        .unwrap()
        .remove(0);
    assert!(after.last_password_change_date_time > synced.last_password_change_date_time);
    // the change is dated on Graph's clock: the 202's `Date` (whole seconds) is not before it
    let accepted = out.server_date.expect("the 202 carries a Date");
    let changed = after.last_password_change_date_time.unwrap();
    assert!(
        (changed - accepted).num_seconds().abs() <= 2,
        "{changed} vs {accepted}"
    );
    assert!(delegated.last_server_date().is_some());

    // a cloud user with `{}`: the service generates the password
    let cloud = users
        .iter()
        .find(|u| u.on_premises_sync_enabled != Some(true) && u.id != me.id)
        .unwrap();
    let out = delegated.reset_password(&t, &cloud.id, None).await.unwrap();
    let generated = out
        .generated_password
        .expect("system-generated password returned");
    assert!(generated.expose_secret().len() >= 8);
    let op = delegated
        .poll_operation(
            &t,
            out.location.as_deref().unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(op.status.is_terminal());
}

/// An operation poll never waits for a request slot: with one slot (`--concurrency 1`) held by
/// a write admitted and not yet sent, the poll of an operation started before still completes
/// (it has a pool of its own). Started with its 202's `Retry-After`, the first poll waits for it
/// and, the operation (200 ms) being over by then, it is the only poll.
#[tokio::test]
async fn operation_polls_wait_for_retry_after_and_take_no_write_slot() {
    let sb = contoso()
        .configure(|c| c.reset_retry_after = 1)
        .start_here()
        .await;
    let t = tenant(&sb);
    let app = app_client(&sb);
    let delegated = client_with(&sb, sb.delegated_credential(), |o| o.concurrency = 1);
    let me = delegated.me(&t).await.unwrap();
    let users = app.list_users(&t, None).await.unwrap();
    let cloud = users
        .iter()
        .find(|u| u.on_premises_sync_enabled != Some(true) && u.id != me.id)
        .unwrap();
    let out = delegated.reset_password(&t, &cloud.id, None).await.unwrap();
    assert_eq!(out.retry_after, Some(Duration::from_secs(1)));
    let location = out.location.clone().unwrap();

    let held = delegated.admit_write(&t).await; // the only slot
    let started = std::time::Instant::now();
    let op = tokio::time::timeout(
        Duration::from_secs(10),
        delegated.poll_operation_after(&t, &location, out.retry_after, Duration::from_secs(30)),
    )
    .await
    .expect("the poll does not wait for the held slot")
    .unwrap();
    drop(held);
    assert_eq!(op.status, OperationStatus::Succeeded);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the first poll waited for Retry-After: {:?}",
        started.elapsed()
    );
    let stats = reqwest::get(format!("{}/_sandbox/stats", sb.info.graph_url))
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let polls: u64 = stats["requests"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.starts_with("GET ") && route.contains("/operations/"))
        .flat_map(|(_, by_status)| by_status.as_object().unwrap().values())
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(polls, 1, "polled once, after the operation ended: {stats}");
}

/// The device-code sign-in works against the sandbox's device code endpoint (the seed's
/// `deviceCodeAutoApprove` admin approves on the second poll): the token acts as that admin.
#[tokio::test]
async fn device_code_sign_in() {
    let sb = contoso().start_here().await;
    let t = tenant(&sb);
    let c = client_with(
        &sb,
        Credential::DeviceCode {
            tenant: t.clone(),
            client_id: sb
                .info
                .delegated_client_id
                .clone()
                .expect("a public client in the seed"),
        },
        |_| {},
    );
    let me = c.me(&t).await.unwrap();
    assert_eq!(me.user_principal_name.as_deref(), Some("admin@contoso.com"));
    assert!(c.stats().token_requests >= 2, "device code, then polling");
}

/// Tokens are refreshed before they expire (lifetime 2 s: the second call gets a new token),
/// and a rejected pre-acquired token is an auth error, not a retry loop.
#[tokio::test]
async fn tokens_refresh_and_bad_token_is_refused() {
    let sb = contoso()
        .configure(|c| c.token_lifetime = 2)
        .start_here()
        .await;
    let t = tenant(&sb);
    let c = app_client(&sb);
    any_read(&c, &t).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    any_read(&c, &t).await;
    assert_eq!(c.stats().token_requests, 2, "expired token replaced");

    let bad = client_with(
        &sb,
        Credential::AccessToken {
            token: SecretString::from("not-a-token"),
        },
        |_| {},
    );
    let err = bad.list_users(&t, None).await.unwrap_err();
    assert!(matches!(err, GraphError::Auth(_)), "{err:?}");
}

async fn any_read(c: &GraphClient, tenant: &str) {
    c.find_groups_by_name(tenant, "Finance").await.unwrap();
}

/// Writes every user of a generated tenant and checks the exact final state by reading back.
/// Returns the number of users.
async fn write_all_and_verify(c: &GraphClient, t: &str) -> usize {
    let users = c.list_users(t, None).await.unwrap();
    let want: BTreeMap<String, ForceFlags> = users
        .iter()
        .enumerate()
        .map(|(i, u)| {
            (
                u.id.clone(),
                ForceFlags {
                    force_change_password_next_sign_in: i % 2 == 0,
                    force_change_password_next_sign_in_with_mfa: i % 3 == 0,
                },
            )
        })
        .collect();
    let patches = want
        .iter()
        .map(|(id, f)| {
            (
                id.clone(),
                flags(
                    f.force_change_password_next_sign_in,
                    f.force_change_password_next_sign_in_with_mfa,
                ),
            )
        })
        .collect();
    let results = c.patch_password_profiles(t, patches).await;
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "all writes converge: {} failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let keys: Vec<UserKey> = want.keys().map(|id| UserKey::Id(id.clone())).collect();
    let back = c.get_users_by_batch(t, &keys).await.unwrap();
    for (key, user) in back {
        let user = user.unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(
            ForceFlags::from_profile(user.password_profile.as_ref()),
            want[&user.id],
            "{}",
            user.id
        );
    }
    want.len()
}

/// Under the sandbox's throttling model (scaled down) a large apply converges: every write
/// lands, the state is exact, and the client was throttled without giving up.
#[tokio::test]
async fn throttling_converges() {
    let sb = generated(150, 1).throttle("scaled:100").start_here().await;
    let c = client_with(&sb, sb.app_credential(), |o| {
        o.concurrency = 8;
        o.max_retries = 20;
    });
    let users = write_all_and_verify(&c, &tenant(&sb)).await as u64;
    let s = c.stats();
    assert!(
        s.throttled > 0 || s.slowdowns > 0,
        "the scaled model pushed back: {s:?}"
    );
    // No storm: one PATCH and one GET per user; the adaptive pacing keeps the throttled inner
    // requests well below twice that (without it: several times as many 429s as operations).
    assert!(
        s.throttled <= 4 * users,
        "too many 429s for {} operations: {s:?}",
        2 * users
    );
}

/// Injected faults (429, 503, dropped connections) are absorbed by the retries, the final state
/// is exact.
#[tokio::test]
async fn faults_converge_with_exact_final_state() {
    let sb = generated(40, 7)
        .faults("429=0.2,503=0.1,drop=0.05")
        .start_here()
        .await;
    let c = client_with(&sb, sb.app_credential(), |o| {
        o.max_retries = 15;
        o.concurrency = 4;
    });
    write_all_and_verify(&c, &tenant(&sb)).await;
    let s = c.stats();
    assert!(
        s.retries > 0 && s.throttled > 0,
        "faults were injected and retried: {s:?}"
    );
}

/// At TRACE level nothing secret reaches the log: client secret, delegated password, passwords
/// written, generated passwords, tokens.
#[tokio::test]
async fn no_secret_in_logs() {
    let sink = crate::common::trace_log();

    let sb = contoso().faults("429=0.2,503=0.1").start_here().await;
    let t = tenant(&sb);
    let app = client_with(&sb, sb.app_credential(), |o| o.max_retries = 15);
    let delegated = client_with(&sb, sb.delegated_credential(), |o| o.max_retries = 15);
    let users = app.list_users(&t, None).await.unwrap();
    let alice = users
        .iter()
        .find(|u| u.user_principal_name.as_deref() == Some("alice@contoso.com"))
        .unwrap();
    let mut p = flags(true, false);
    p.password = Some(SecretString::from(CANARY_PASSWORD));
    let r = app
        .patch_password_profiles(&t, vec![(alice.id.clone(), p)])
        .await;
    assert!(r[0].1.is_ok());
    let bob = users
        .iter()
        .find(|u| u.user_principal_name.as_deref() == Some("bob@contoso.com"))
        .unwrap();
    let out = delegated.reset_password(&t, &bob.id, None).await.unwrap();
    let generated = out.generated_password.clone().unwrap();
    let app_token = app.token(&t).await.unwrap();
    let delegated_token = delegated.token(&t).await.unwrap();

    let log = sink.contents();
    assert!(log.contains("$batch"), "requests are logged");
    for secret in [
        CANARY_PASSWORD.to_owned(),
        sb.info.client_secret.clone(),
        sb.info.delegated_password.clone().unwrap(),
        generated.expose_secret().to_owned(),
        app_token.expose_secret().to_owned(),
        delegated_token.expose_secret().to_owned(),
    ] {
        assert!(!log.contains(&secret), "a secret leaked into the log");
    }
}

/// A read-back confirms a password write by a change at or after the write started, and, once
/// a change was put down to an earlier write of the same user, only by a later change: Graph
/// gives `lastPasswordChangeDateTime` in whole seconds, so a second write in the same second
/// could not be told from the first.
#[tokio::test]
async fn a_password_change_already_seen_does_not_confirm_a_later_write() {
    let sb = contoso().start_here().await;
    let t = tenant(&sb);
    let c = app_client(&sb);
    let alice = c
        .get_users_by_batch(&t, &[UserKey::Upn("alice@contoso.com".into())])
        .await
        .unwrap()
        .remove(0)
        .1
        .unwrap()
        .id;
    let write = || async {
        let mut p = flags(false, false);
        p.password = Some(SecretString::from(CANARY_PASSWORD));
        let r = c
            .patch_password_profiles(&t, vec![(alice.clone(), p)])
            .await;
        assert!(r[0].1.is_ok(), "{:?}", r[0].1);
    };
    let since = |started, seen| {
        pwdrift::engine::steps::password_change_since(
            &c,
            &t,
            &alice,
            started,
            seen,
            Duration::from_millis(800),
        )
    };
    let started = chrono::Utc::now();
    write().await;
    let seen = since(started, None)
        .await
        .unwrap()
        .expect("the write shows");
    assert!(
        seen >= started - chrono::Duration::seconds(1),
        "{seen} {started}"
    );

    // nothing new: the change already seen does not confirm a second write, whenever it began
    assert_eq!(since(started, Some(seen)).await.unwrap(), None);
    assert_eq!(since(chrono::Utc::now(), Some(seen)).await.unwrap(), None);

    // a second write in a later second is confirmed, by its own change
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = chrono::Utc::now();
    write().await;
    let second = since(started, Some(seen))
        .await
        .unwrap()
        .expect("the second write shows");
    assert!(second > seen, "{second} > {seen}");
}
