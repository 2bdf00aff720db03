//! The authority's answers through the real binary against the sandbox's token endpoint
//! (`--faults token=ANSWER[*N]`): a transient answer (503, `temporarily_unavailable`) is retried
//! and the run succeeds; a permanent refusal fails the run at once with the exit code of any
//! failure (1), naming the AADSTS code and its meaning, after one token request, and never
//! showing the secret.

use crate::common::{repo, run, Sandbox};

const DESIRED: &str = "examples/desired";

fn plan(sb: &Sandbox) -> crate::common::Run {
    let desired = repo().join(DESIRED);
    run(sb.pwdrift().current_dir(repo()).args([
        "plan",
        desired.to_str().unwrap(),
        "--detailed-exitcode",
    ]))
}

#[test]
fn transient_authority_answers_are_retried_and_the_run_succeeds() {
    for spec in [
        "token=503*2",
        "token=temporarily_unavailable*2",
        "token=drop*1",
    ] {
        let sb = Sandbox::contoso().faults(spec).start();
        let r = plan(&sb);
        assert_eq!(r.code, 2, "{spec}: {r:?}");
        let faults = &sb.stats()["faults"];
        let expected_faults = if spec.ends_with("*1") { 1 } else { 2 };
        assert_eq!(faults["token_faults"], expected_faults, "{spec}: {faults}");
        assert_eq!(
            faults["token_requests"],
            expected_faults + 1,
            "{spec}: retried until served, then cached: {faults}"
        );
    }
}

#[test]
fn a_permanent_refusal_fails_at_once_naming_its_code() {
    for (spec, code, meaning) in [
        (
            "token=7000222",
            "AADSTS7000222",
            "AADSTS7000222 means the client secret has expired",
        ),
        (
            "token=7000215",
            "AADSTS7000215",
            "AADSTS7000215 means the client secret is not valid for this app",
        ),
        (
            "token=700016",
            "AADSTS700016",
            "AADSTS700016 means the application was not found in the tenant",
        ),
    ] {
        let sb = Sandbox::contoso().faults(spec).start();
        let started = std::time::Instant::now();
        let r = plan(&sb);
        assert_eq!(r.code, 1, "{spec}: {r:?}");
        assert!(r.stderr.contains(code), "{spec}: {r:?}");
        assert!(r.stderr.contains(meaning), "{spec}: {r:?}");
        assert!(!r.stderr.contains("a transient answer"), "{spec}: {r:?}");
        let secret = sb.get("client_secret");
        assert!(
            !r.stderr.contains(&secret) && !r.stdout.contains(&secret),
            "{spec}: the secret is never shown"
        );
        assert_eq!(
            sb.stats()["faults"]["token_requests"],
            1,
            "{spec}: one token request only"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{spec}: no retries"
        );
    }
}
