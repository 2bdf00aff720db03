//! Graph's clock decides (issue 19, point 2): the real binary against a sandbox whose clock is a
//! year ahead of the local one, or a year behind (`SandboxConfig::clock_offset`, the `pwdrift
//! sandbox --clock-offset` switch). A reset due by Graph's clock is planned and applied once and
//! the next plan shows no change; one not yet due by Graph's clock is not planned, whatever the
//! local clock says; the plan records the time it decided by; a skew of more than five minutes
//! is warned about once (not at all without skew).

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::common::{repo, run, write, Run, Sandbox, CONTOSO_SEED};

const PASSWORD: &str = "Clock-Test-Pw-9x!q";

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The Contoso sandbox with its clock `offset` from the real one, alice's password last changed
/// 800 days before now (real clock), so that every `notBefore` of these tests is after it.
fn sandbox(dir: &std::path::Path, offset: Duration) -> Sandbox {
    let seed = std::fs::read_to_string(repo().join(CONTOSO_SEED)).unwrap();
    let alice_last = "lastPasswordChangeDateTime: 2026-01-10T09:00:00Z";
    assert!(seed.contains(alice_last), "the Contoso seed changed");
    let seed = seed.replace(
        alice_last,
        &format!(
            "lastPasswordChangeDateTime: {}",
            stamp(Utc::now() - Duration::days(800))
        ),
    );
    let path = write(dir, "contoso.seed.yaml", &seed);
    Sandbox::seed(path)
        .configure(move |c| c.clock_offset = offset)
        .start()
}

/// Desired state: alice's password reset not before `not_before`.
fn desired(dir: &std::path::Path, not_before: DateTime<Utc>) -> String {
    let text = format!(
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: alice@contoso.com\n    \
         resetPassword:\n      notBefore: {}\n      password: {{ env: CLOCK_TEST_PW }}\n",
        stamp(not_before)
    );
    write(dir, "desired.yaml", &text)
        .to_str()
        .unwrap()
        .to_owned()
}

fn plan_json(sb: &Sandbox, desired: &str) -> (Run, serde_json::Value) {
    let r = run(sb
        .pwdrift()
        .args(["plan", desired, "--format", "json", "--detailed-exitcode"]));
    let v = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    (r, v)
}

fn alice_action(plan: &serde_json::Value) -> String {
    plan["tenants"][0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_principal_name"] == "alice@contoso.com")
        .unwrap()["action"]["type"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The plan records Graph's time (within a minute of `expected`) as the time it decided by.
fn assert_decided_by_graph(plan: &serde_json::Value, expected: DateTime<Utc>) {
    let t = &plan["tenants"][0];
    assert_eq!(t["clock"], "graph", "{t}");
    let at: DateTime<Utc> = t["decided_at"].as_str().unwrap().parse().unwrap();
    assert!(
        (at - expected).abs() < Duration::minutes(1),
        "{at} vs {expected}"
    );
    let created: DateTime<Utc> = plan["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(created, at, "created_at is Graph's time too");
}

fn apply(sb: &Sandbox, desired: &str) -> Run {
    run(sb
        .pwdrift()
        .env("CLOCK_TEST_PW", PASSWORD)
        .args(["apply", desired, "--auto-approve"]))
}

/// Graph a year ahead of the local clock (a runner whose clock is behind): a reset due by
/// Graph's clock but not by the local one is planned, applied once, and then met.
#[test]
fn graph_a_year_ahead_a_due_reset_is_not_skipped_and_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox(dir.path(), Duration::days(365));
    // due by Graph's clock (now + 365 days), not by the local one
    let due = desired(dir.path(), Utc::now() + Duration::days(180));
    let (r, plan) = plan_json(&sb, &due);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(alice_action(&plan), "reset_password", "{plan}");
    assert_decided_by_graph(&plan, Utc::now() + Duration::days(365));
    assert_eq!(
        r.stderr
            .matches("Graph's clock is 365 days ahead of the local clock")
            .count(),
        1,
        "{r:?}"
    );

    let a = apply(&sb, &due);
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(sb.patches_of("alice@contoso.com"), 1, "{a:?}");
    assert_eq!(a.stderr.matches("Graph's clock is").count(), 1, "{a:?}");

    // met now: Graph stamped the change with its own clock, after notBefore
    let (r, plan) = plan_json(&sb, &due);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(alice_action(&plan), "no_change", "{plan}");
    let a = apply(&sb, &due);
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(sb.patches_of("alice@contoso.com"), 1, "no second reset");

    // not due by Graph's clock either: nothing
    let later = desired(dir.path(), Utc::now() + Duration::days(500));
    let (r, plan) = plan_json(&sb, &later);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(alice_action(&plan), "no_change", "{plan}");
}

/// Graph a year behind the local clock (a runner whose clock is ahead): a reset the local clock
/// thinks due is not due by Graph's, so it is not planned (it would be reset on every run: Graph
/// stamps the change with its time, before `notBefore`); one due by Graph's clock is applied
/// once and then met.
#[test]
fn graph_a_year_behind_no_reset_loop() {
    let dir = tempfile::tempdir().unwrap();
    let sb = sandbox(dir.path(), Duration::days(-365));
    let local_due = desired(dir.path(), Utc::now() - Duration::days(180));
    for _ in 0..2 {
        let (r, plan) = plan_json(&sb, &local_due);
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(alice_action(&plan), "no_change", "{plan}");
        assert_decided_by_graph(&plan, Utc::now() - Duration::days(365));
        assert!(
            r.stderr.contains("365 days behind the local clock"),
            "{r:?}"
        );
        let a = apply(&sb, &local_due);
        assert_eq!(a.code, 0, "{a:?}");
        assert_eq!(sb.patches_of("alice@contoso.com"), 0, "{a:?}");
    }

    // due by Graph's clock (now - 365 days): applied once, then met
    let due = desired(dir.path(), Utc::now() - Duration::days(500));
    let (r, plan) = plan_json(&sb, &due);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(alice_action(&plan), "reset_password", "{plan}");
    let a = apply(&sb, &due);
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(sb.patches_of("alice@contoso.com"), 1, "{a:?}");
    for _ in 0..2 {
        let (r, plan) = plan_json(&sb, &due);
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(alice_action(&plan), "no_change", "{plan}");
        let a = apply(&sb, &due);
        assert_eq!(a.code, 0, "{a:?}");
        assert_eq!(sb.patches_of("alice@contoso.com"), 1, "no reset loop");
    }
}

/// The skew warning: once per run, as a `::warning` with `--format github`; none without skew.
#[test]
fn skew_is_warned_once_and_only_when_there_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let skewed = sandbox(dir.path(), Duration::days(365));
    let desired = desired(dir.path(), Utc::now() + Duration::days(900));
    let r = run(skewed
        .pwdrift()
        .args(["plan", &desired, "--format", "github"]));
    assert_eq!(r.code, 0, "{r:?}");
    let warnings: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("::warning") && l.contains("Graph's clock"))
        .collect();
    assert_eq!(warnings.len(), 1, "{r:?}");
    assert!(
        warnings[0].contains("365 days ahead of the local clock"),
        "{warnings:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let exact = sandbox(dir.path(), Duration::zero());
    let desired = self::desired(dir.path(), Utc::now() + Duration::days(900));
    for format in ["text", "github"] {
        let r = run(exact.pwdrift().args(["plan", &desired, "--format", format]));
        assert_eq!(r.code, 0, "{r:?}");
        assert!(!r.stderr.contains("Graph's clock"), "{r:?}");
        assert!(!r.stderr.contains("Date header"), "{r:?}");
    }
    let a = apply(&exact, &desired);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(!a.stderr.contains("Graph's clock"), "{a:?}");
}
