//! The write-ahead secrets file end to end: a pre-created file or a swapped-in symlink is refused
//! (through the binary, and a race loop against the open itself); lost write responses leave
//! every password recorded; SIGINT stops cleanly with every outcome recorded; SIGKILL at random
//! moments loses no password and a resumed run (`--secrets-append`) does exactly the remainder;
//! `--secrets-recipient` encrypts passwords that the recipient's identity opens.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pwdrift::secrets::{read_passwords, Journal, OpenMode, SecretsFile};
use secrecy::ExposeSecret;

use crate::common::{run, write, Sandbox, SandboxBuilder};

/// A generated tenant in the in-process sandbox (so that killing pwdrift never takes it
/// down), persisting to a state file in `dir` that holds each user's password hash.
fn in_proc(dir: &Path, users: usize, latency: &str, faults: Option<&str>) -> SandboxBuilder {
    let sb = Sandbox::generate(users)
        .generation_seed(7)
        .rng_seed(3)
        .state_file(&dir.join("sandbox.state.json"))
        .throttle("off")
        .latency(latency);
    match faults {
        Some(spec) => sb.faults(spec),
        None => sb,
    }
}

/// What these tests read from and write for a generated tenant.
trait GeneratedTenant {
    fn plain_users(&self, n: usize) -> Vec<String>;
    fn users_where(&self, n: usize, synced: bool) -> Vec<String>;
    fn hashes(&self) -> BTreeMap<String, Option<String>>;
    fn desired(&self, dir: &Path, users: &[String]) -> String;
    fn desired_with(&self, dir: &Path, users: &[String], system: &[String]) -> String;
}

impl GeneratedTenant for Sandbox {
    /// Cloud members whose password pwdrift manages (not synced, not privileged, no guest,
    /// no federated domain), the first `n`.
    fn plain_users(&self, n: usize) -> Vec<String> {
        self.users_where(n, false)
    }

    fn users_where(&self, n: usize, synced: bool) -> Vec<String> {
        let state = self.state();
        let users: Vec<String> = state["tenants"][0]["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| {
                (u["onPremisesSyncEnabled"] == true) == synced
                    && u["privileged"] == false
                    && u["userType"] == "Member"
                    && u["federatedDomain"] != true
                    && u["forceChangePasswordNextSignIn"] == false
            })
            .map(|u| u["userPrincipalName"].as_str().unwrap().to_owned())
            .take(n)
            .collect();
        assert_eq!(users.len(), n, "enough plain users in the generated tenant");
        users
    }

    /// UPN (lower case) -> password hash, from the state file written now.
    fn hashes(&self) -> BTreeMap<String, Option<String>> {
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.persist()).unwrap()).unwrap();
        doc["tenants"][0]["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["userPrincipalName"]
                        .as_str()
                        .unwrap()
                        .to_ascii_lowercase(),
                    u["passwordSha256"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }

    fn desired(&self, dir: &Path, users: &[String]) -> String {
        self.desired_with(dir, users, &[])
    }

    /// Generated passwords for `users`, system-generated ones for `system`.
    fn desired_with(&self, dir: &Path, users: &[String], system: &[String]) -> String {
        let mut text = format!("version: 1\ntenant: {}\nusers:\n", self.info.tenant_domain);
        for u in users {
            text.push_str(&format!(
                "  - user: {u}\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: {{ generate: {{ length: 16 }} }}\n"
            ));
        }
        for u in system {
            text.push_str(&format!(
                "  - user: {u}\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: {{ systemGenerated: true }}\n"
            ));
        }
        write(dir, "desired.yaml", &text)
            .to_str()
            .unwrap()
            .to_owned()
    }
}

/// Every user whose password changed has, in the secrets file, a password hashing to what the
/// tenant holds. Returns how many changed.
fn assert_every_changed_password_is_recorded(
    before: &BTreeMap<String, Option<String>>,
    after: &BTreeMap<String, Option<String>>,
    secrets_text: &str,
    identity: Option<&age::x25519::Identity>,
    context: &str,
) -> usize {
    let recorded: BTreeSet<(String, String)> = read_passwords(secrets_text, identity)
        .unwrap()
        .into_iter()
        .map(|(_, upn, pw)| {
            (
                upn.to_ascii_lowercase(),
                graph_sandbox::testing::password_hash(pw.expose_secret()),
            )
        })
        .collect();
    let mut changed = 0;
    for (upn, hash) in after {
        if before.get(upn) == Some(hash) {
            continue;
        }
        changed += 1;
        let hash = hash.clone().expect("a changed password has a hash");
        assert!(
            recorded.contains(&(upn.clone(), hash)),
            "{context}: {upn}'s password changed in the tenant but is not in the secrets file"
        );
    }
    changed
}

/// Waits (up to a minute) until an apply has recorded its first intent in `secrets`: a
/// password is on its way.
fn wait_for_first_intent(secrets: &Path) {
    let t0 = Instant::now();
    while !std::fs::read_to_string(secrets).is_ok_and(|t| t.contains("\"event\":\"intent\"")) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "apply did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The users a saved plan would reset.
fn planned_resets(sb: &Sandbox, dir: &Path, desired: &str) -> BTreeSet<String> {
    let out = dir.join("plan.json");
    let _ = std::fs::remove_file(&out);
    let plan = run(sb
        .pwdrift()
        .args(["plan", desired, "--out", out.to_str().unwrap()]));
    assert!(plan.code == 0, "{plan:?}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    doc["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["users"].as_array().unwrap().iter())
        .filter(|u| u["action"]["type"] == "reset_password")
        .map(|u| {
            u["user_principal_name"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()
        })
        .collect()
}

fn contoso_desired(dir: &Path) -> String {
    write(
        dir,
        "desired.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: alice@contoso.com\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: { generate: { length: 16 } }\n",
    )
    .to_str()
    .unwrap()
    .to_owned()
}

/// Through the binary: an existing file is refused without --secrets-append; another user's
/// 0600 file and a symlink are refused with it; nothing is written to the tenant.
#[cfg(unix)]
#[test]
fn precreated_secrets_file_or_symlink_is_refused_by_apply() {
    use std::os::unix::fs::PermissionsExt;
    let seed = crate::common::repo().join("examples/sandbox/contoso.seed.yaml");
    let sb = Sandbox::seed(&seed).start();
    let dir = tempfile::tempdir().unwrap();
    let desired = contoso_desired(dir.path());
    let apply = |secrets: &Path, append: bool| {
        let mut cmd = sb.pwdrift();
        cmd.args([
            "apply",
            &desired,
            "--auto-approve",
            "--secrets-out",
            secrets.to_str().unwrap(),
        ]);
        if append {
            cmd.arg("--secrets-append");
        }
        run(&mut cmd)
    };
    let patches = || {
        let stats = sb.stats();
        stats["patchesPerUser"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>())
    };

    // an attacker's pre-created file (here: ours, 0600, but not asked to be continued)
    let planted = dir.path().join("planted.jsonl");
    std::fs::write(&planted, "").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = apply(&planted, false);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("already exists"), "{r:?}");
    assert_eq!(std::fs::read(&planted).unwrap().len(), 0);

    // a symlink in its place, with or without --secrets-append
    let target = dir.path().join("attacker-target");
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for append in [false, true] {
        let r = apply(&link, append);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(!target.exists(), "the symlink's target was created");
    }
    let r = apply(&link, true);
    assert!(r.stderr.contains("symbolic link"), "{r:?}");

    // another user's 0600 file (as root: chowned to nobody)
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = dir.path().join("theirs.jsonl");
        std::fs::write(&theirs, "").unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let r = apply(&theirs, true);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("owned by uid 65534"), "{r:?}");
        assert_eq!(std::fs::read(&theirs).unwrap().len(), 0);
    }
    assert_eq!(patches(), 0, "nothing was written to the tenant");

    // a fresh path works, and the file is 0600
    let fresh = dir.path().join("fresh.jsonl");
    let r = apply(&fresh, false);
    assert_eq!(r.code, 0, "{r:?}");
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// A race loop: another thread keeps swapping the path between a symlink to a victim file and a
/// regular file of someone else's making while pwdrift opens it. The open itself refuses
/// symlinks (O_NOFOLLOW, O_EXCL) and checks the descriptor it got (fstat), so the victim is never
/// written and a file it did open is always the caller's own regular 0600 file.
#[cfg(unix)]
#[test]
fn symlink_swapped_in_during_open_never_wins() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "victim's data\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = dir.path().join("secrets.jsonl");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, path, victim, dir) = (
            stop.clone(),
            path.clone(),
            victim.clone(),
            dir.path().to_owned(),
        );
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let tmp = dir.join(format!("swap-{i}"));
                if i % 2 == 0 {
                    let _ = std::os::unix::fs::symlink(&victim, &tmp);
                } else {
                    let _ = std::fs::write(&tmp, "");
                    let _ = std::fs::set_permissions(
                        &tmp,
                        std::fs::Permissions::from_mode(if i % 3 == 0 { 0o644 } else { 0o600 }),
                    );
                }
                let _ = std::fs::rename(&tmp, &path); // atomic swap
            }
        })
    };
    let (mut opened, mut refused) = (0, 0);
    for mode in [OpenMode::Append, OpenMode::CreateNew]
        .into_iter()
        .cycle()
        .take(400)
    {
        match SecretsFile::open(&path, mode, vec![]) {
            Ok((f, _)) => {
                opened += 1;
                drop(f);
            }
            Err(_) => refused += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "victim's data\n",
        "the victim behind the symlink was never written"
    );
    let meta = std::fs::symlink_metadata(&victim).unwrap();
    assert_eq!(meta.nlink(), 1);
    assert!(refused > 0, "the swaps were refused ({opened} opened)");
    eprintln!("symlink race: {opened} opens of a safe file, {refused} refusals, 0 wins");
}

/// Password writes whose responses are lost (`lost=0.5`: applied, then 504 or a dropped
/// connection) are resolved by reading back; every password the tenant has is in the file; no
/// user needs attention; a second apply has nothing to do.
#[test]
fn lost_responses_lose_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let sb = in_proc(dir.path(), 60, "0", Some("lost=0.5")).start();
    let users = sb.plain_users(12);
    let desired = sb.desired(dir.path(), &users);
    let before = sb.hashes();
    let secrets = dir.path().join("secrets.jsonl");
    let report = dir.path().join("report.json");
    let r = run(sb.pwdrift().args([
        "apply",
        &desired,
        "--auto-approve",
        "--force",
        "--secrets-out",
        secrets.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]));
    let faults = sb.stats()["faults"].clone();
    let lost = faults["lost_504"].as_u64().unwrap() + faults["lost_dropped"].as_u64().unwrap();
    assert!(lost > 0, "responses were lost: {faults}");
    let text = std::fs::read_to_string(&secrets).unwrap();
    let changed =
        assert_every_changed_password_is_recorded(&before, &sb.hashes(), &text, None, "lost");
    assert_eq!(changed, users.len(), "{r:?}");
    assert_eq!(r.code, 0, "{r:?}");
    let journal = Journal::parse(&secrets, &text).unwrap();
    assert_eq!(journal.pending().count(), 0);
    assert!(r.stdout.contains("12 password(s) recorded in"), "{r:?}");
    assert!(planned_resets(&sb, dir.path(), &desired).is_empty());
}

/// The resetPassword path (synced users with pwdrift's password, cloud users with a
/// system-generated one), with lost answers (`lost=0.4`) and 202s without `Location`: a
/// system-generated password is recorded from the 202 body before anything else, a missing
/// `Location` is resolved by reading back, a lost 202 of a system-generated password is replaced
/// by a new reset whose password is recorded; in the end the file holds every password the tenant
/// has and nothing is pending.
#[test]
fn reset_password_api_lost_answers_and_no_location_lose_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let sb = in_proc(dir.path(), 80, "0", Some("lost=0.4"))
        .configure(|cfg| cfg.realism.reset_no_location = true)
        .start();
    let synced = sb.users_where(4, true);
    let cloud = sb.plain_users(4);
    let desired = sb.desired_with(dir.path(), &synced, &cloud);
    let before = sb.hashes();
    let secrets = dir.path().join("secrets.jsonl");
    let r = run(sb.pwdrift_delegated().args([
        "apply",
        &desired,
        "--delegated",
        "--auto-approve",
        "--force",
        "--secrets-out",
        secrets.to_str().unwrap(),
    ]));
    let faults = sb.stats()["faults"].clone();
    let text = std::fs::read_to_string(&secrets).unwrap();
    let journal = Journal::parse(&secrets, &text).unwrap();
    // The one password nobody can know: a system-generated reset whose 202 answer was lost on
    // every attempt (3 at 40%: about 6% per user, and the order of concurrent resets varies).
    // Such a user must end `unknown` (still pending: the next run with --secrets-append
    // resolves it) and be named as needing attention, failing the run; every other changed
    // password must be recorded.
    let unknown: Vec<_> = journal
        .entries()
        .filter(|e| e.outcome == Some(pwdrift::secrets::Outcome::Unknown))
        .collect();
    assert_eq!(
        journal.pending().count(),
        unknown.len(),
        "no entry without an outcome"
    );
    let unknowable: BTreeSet<String> = unknown
        .iter()
        .filter(|e| !e.has_password)
        .map(|e| e.user_principal_name.to_ascii_lowercase())
        .collect();
    let mut after = sb.hashes();
    let mut before = before;
    for e in &unknown {
        let upn = e.user_principal_name.to_ascii_lowercase();
        assert!(
            r.stdout
                .contains(&format!("{upn} (reset_password): OUTCOME UNKNOWN")),
            "{upn} is named as needing attention: {r:?}"
        );
    }
    for upn in &unknowable {
        assert!(
            cloud.iter().any(|c| c.eq_ignore_ascii_case(upn)),
            "{upn}: not system-generated"
        );
        after.remove(upn);
        before.remove(upn);
    }
    let changed = assert_every_changed_password_is_recorded(&before, &after, &text, None, "api");
    assert_eq!(changed, 8 - unknowable.len(), "{r:?}\n{faults}");
    assert_eq!(r.code, if unknown.is_empty() { 0 } else { 1 }, "{r:?}");
    assert!(text.contains("\"event\":\"generated\""), "{faults}");
    let lost = faults["lost_504"].as_u64().unwrap() + faults["lost_dropped"].as_u64().unwrap();
    assert!(lost > 0, "answers were lost: {faults}");
    eprintln!(
        "resetPassword path: {lost} lost answers, {} superseded entries, {} unknowable",
        text.matches("\"outcome\":\"superseded\"").count(),
        unknowable.len()
    );
    assert!(planned_resets(&sb, dir.path(), &desired).is_empty());
}

/// SIGINT mid-apply: no new write starts, the one in flight finishes, the summary says what was
/// done and not done, the report and the secrets file record every outcome, exit 130; the next
/// run with --secrets-append does the rest.
#[cfg(unix)]
#[test]
fn sigint_stops_new_writes_and_records_every_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let sb = in_proc(dir.path(), 60, "150", None).start();
    let users = sb.plain_users(15);
    let desired = sb.desired(dir.path(), &users);
    let before = sb.hashes();
    let secrets = dir.path().join("secrets.jsonl");
    let report = dir.path().join("report.json");
    let child = sb
        .pwdrift()
        .args([
            "apply",
            &desired,
            "--auto-approve",
            "--force",
            "--secrets-out",
            secrets.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait until a few passwords are on their way
    let t0 = Instant::now();
    loop {
        let n = std::fs::read_to_string(&secrets)
            .map(|t| t.matches("\"event\":\"intent\"").count())
            .unwrap_or(0);
        if n >= 3 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "apply did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("SIGINT: no new write starts"), "{stderr}");
    assert!(stdout.contains("Apply interrupted by SIGINT"), "{stdout}");
    assert!(stdout.contains("not started"), "{stdout}");

    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let statuses: Vec<&str> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    let verified = statuses.iter().filter(|s| **s == "verified").count();
    let not_started = statuses.iter().filter(|s| **s == "not_started").count();
    assert!(verified >= 2, "{statuses:?}");
    assert!(not_started >= 1, "{statuses:?}");
    assert_eq!(verified + not_started, users.len(), "{statuses:?}");

    let text = std::fs::read_to_string(&secrets).unwrap();
    let journal = Journal::parse(&secrets, &text).unwrap();
    assert_eq!(journal.pending().count(), 0, "every outcome recorded");
    assert_eq!(
        journal.entries().count(),
        verified,
        "no write after the signal"
    );
    let changed =
        assert_every_changed_password_is_recorded(&before, &sb.hashes(), &text, None, "sigint");
    assert_eq!(changed, verified);
    assert_eq!(planned_resets(&sb, dir.path(), &desired).len(), not_started);

    let r = run(sb.pwdrift().args([
        "apply",
        &desired,
        "--auto-approve",
        "--force",
        "--secrets-out",
        secrets.to_str().unwrap(),
        "--secrets-append",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(&secrets).unwrap();
    let changed =
        assert_every_changed_password_is_recorded(&before, &sb.hashes(), &text, None, "resumed");
    assert_eq!(changed, users.len());
}

/// A second signal exits at once (exit 143 for SIGTERM), without waiting for the writes in
/// flight; whatever was in flight stays pending in the secrets file for the next run.
#[cfg(unix)]
#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sb = in_proc(dir.path(), 40, "1500", None).start();
    let users = sb.plain_users(4);
    let desired = sb.desired(dir.path(), &users);
    let secrets = dir.path().join("secrets.jsonl");
    let child = sb
        .pwdrift()
        .args([
            "apply",
            &desired,
            "--auto-approve",
            "--force",
            "--secrets-out",
            secrets.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_first_intent(&secrets);
    // the PATCH is in flight for 1.5 s
    let signalled = Instant::now();
    // SAFETY: signals to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("Second signal: exiting now"), "{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_millis(1200),
        "did not wait for the write in flight: {:?}",
        signalled.elapsed()
    );
    // every write started was in flight (the answers take 1.5 s): all of them stay pending
    let text = std::fs::read_to_string(&secrets).unwrap();
    let journal = Journal::parse(&secrets, &text).unwrap();
    assert!(journal.pending().count() >= 1);
    assert_eq!(journal.pending().count(), journal.entries().count());
}

/// SIGKILL at deterministic pseudo-random moments, 20 times (at least 10 of them mid-run: the
/// last applies may finish first), against one sandbox that also loses
/// 30% of write responses (so kills land while a lost write is being read back): after every
/// kill the secrets file holds every password the tenant has, and the plan shows exactly the
/// users whose password did not change; resuming with --secrets-append finishes the rest.
#[cfg(unix)]
#[test]
fn sigkill_at_random_moments_loses_no_password() {
    const KILLS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let sb = in_proc(dir.path(), 160, "25", Some("lost=0.3")).start();
    let users = sb.plain_users(80);
    let desired = sb.desired(dir.path(), &users);
    let before = sb.hashes();
    let secrets = dir.path().join("secrets.jsonl");
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let apply = |cmd: &mut Command| {
        cmd.args([
            "apply",
            &desired,
            "--auto-approve",
            "--force",
            "--secrets-out",
            secrets.to_str().unwrap(),
            "--secrets-append",
            "--secrets-recipient",
            &recipient,
        ]);
    };
    let started = Instant::now();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut killed_mid_write = 0;
    let mut pending_seen = 0;
    let mut killed = 0;
    for round in 1..=KILLS {
        // xorshift: deterministic delays between 250 and 1,000 ms
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let delay = Duration::from_millis(250 + state % 750);
        let mut cmd = sb.pwdrift();
        apply(&mut cmd);
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        // a request the dead process had sent may still be in the sandbox's latency: let it land
        std::thread::sleep(Duration::from_millis(100));
        // an apply of the last few users can finish before its kill: the checks below hold
        // for it too, and enough of the others must land mid-run
        if status.code().is_none() {
            killed += 1;
        }
        let text = std::fs::read_to_string(&secrets).unwrap_or_default();
        let after = sb.hashes();
        // kills that fell between a password reaching the tenant and its outcome being recorded
        let by_seq: BTreeMap<u64, String> = read_passwords(&text, Some(&id))
            .unwrap()
            .into_iter()
            .map(|(seq, _, pw)| {
                (
                    seq,
                    graph_sandbox::testing::password_hash(pw.expose_secret()),
                )
            })
            .collect();
        if let Ok(j) = Journal::parse(&secrets, &text) {
            pending_seen += j.pending().count();
            killed_mid_write += j
                .pending()
                .filter(|e| {
                    after
                        .get(&e.user_principal_name.to_ascii_lowercase())
                        .cloned()
                        .flatten()
                        == by_seq.get(&e.seq).cloned()
                })
                .count();
        }
        let changed = assert_every_changed_password_is_recorded(
            &before,
            &after,
            &text,
            Some(&id),
            &format!("kill {round} after {delay:?}"),
        );
        let remainder: BTreeSet<String> = users
            .iter()
            .map(|u| u.to_ascii_lowercase())
            .filter(|u| before.get(u) == after.get(u))
            .collect();
        assert_eq!(remainder.len(), users.len() - changed);
        assert_eq!(
            planned_resets(&sb, dir.path(), &desired),
            remainder,
            "kill {round}: the plan shows exactly the remainder"
        );
    }
    assert!(
        killed >= KILLS / 2,
        "only {killed} of {KILLS} applies were killed mid-run: raise the user count"
    );
    let mut cmd = sb.pwdrift();
    apply(&mut cmd);
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{r:?}");
    let text = std::fs::read_to_string(&secrets).unwrap();
    assert!(
        !text.contains("\"password\":\""),
        "every password encrypted"
    );
    let changed =
        assert_every_changed_password_is_recorded(&before, &sb.hashes(), &text, Some(&id), "end");
    assert_eq!(changed, users.len());
    assert!(planned_resets(&sb, dir.path(), &desired).is_empty());
    assert_eq!(
        Journal::parse(&secrets, &text).unwrap().pending().count(),
        0
    );
    eprintln!(
        "{killed} of {KILLS} SIGKILLs mid-run: {pending_seen} entries left pending, {killed_mid_write} of them with the password already set in the tenant and no outcome recorded; no password lost; in {:?}",
        started.elapsed()
    );
}

/// --secrets-recipient: the file holds armored age messages only the identity opens, with every
/// password; the metadata stays readable; a file of recipients works too.
#[test]
fn secrets_recipient_encrypts_every_password() {
    let dir = tempfile::tempdir().unwrap();
    let sb = in_proc(dir.path(), 40, "0", None).start();
    let users = sb.plain_users(5);
    let desired = sb.desired(dir.path(), &users);
    let before = sb.hashes();
    let id = age::x25519::Identity::generate();
    let other = age::x25519::Identity::generate();
    let recipients = write(
        dir.path(),
        "recipients.txt",
        &format!("# helpdesk\n{}\n{}\n", id.to_public(), other.to_public()),
    );
    let secrets = dir.path().join("secrets.jsonl");
    let r = run(sb.pwdrift().args([
        "apply",
        &desired,
        "--auto-approve",
        "--force",
        "--secrets-out",
        secrets.to_str().unwrap(),
        "--secrets-recipient",
        recipients.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("encrypted to the age recipients"),
        "{r:?}"
    );
    let text = std::fs::read_to_string(&secrets).unwrap();
    assert!(text.contains("BEGIN AGE ENCRYPTED FILE"));
    for u in &users {
        assert!(text.contains(u.as_str()), "metadata readable: {u}");
    }
    assert!(read_passwords(&text, None).is_err());
    let changed =
        assert_every_changed_password_is_recorded(&before, &sb.hashes(), &text, Some(&id), "age");
    assert_eq!(changed, users.len());
    // the second recipient opens them too
    assert_eq!(
        read_passwords(&text, Some(&other)).unwrap().len(),
        users.len()
    );
    // a bad recipient is refused before anything is written
    let r = run(sb.pwdrift().args([
        "apply",
        &desired,
        "--auto-approve",
        "--secrets-out",
        dir.path().join("x.jsonl").to_str().unwrap(),
        "--secrets-recipient",
        "age1notarecipient",
    ]));
    assert_eq!(r.code, 1, "{r:?}");
}

/// The most requests seen in flight at once on the routes `matching` picks, from the sandbox's
/// stats.
fn peak_in_flight(sb: &Sandbox, matching: impl Fn(&str) -> bool) -> u64 {
    sb.stats()["peakInFlightByRoute"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| matching(route))
        .map(|(_, n)| n.as_u64().unwrap())
        .max()
        .unwrap_or(0)
}

/// Password resets run side by side: PATCH resets of cloud users and
/// resetPassword operations of synced users (pwdrift's password) and of cloud users
/// (system-generated), against a sandbox with 100 ms per answer. The sandbox saw more than one of
/// each in flight at once (counted, not timed); every user was written exactly once, every
/// password is in the secrets file and nothing is pending.
#[test]
fn resets_run_concurrently_and_every_password_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let sb = in_proc(dir.path(), 80, "100", None).start();
    let patched = sb.plain_users(12);
    let synced = sb.users_where(4, true);
    let system: Vec<String> = sb.plain_users(16)[12..].to_vec();
    let mut generated = patched.clone();
    generated.extend(synced.iter().cloned());
    let desired = sb.desired_with(dir.path(), &generated, &system);
    let before = sb.hashes();
    let secrets = dir.path().join("secrets.jsonl");
    let r = run(sb.pwdrift_delegated().args([
        "apply",
        &desired,
        "--delegated",
        "--auto-approve",
        "--force",
        "--secrets-out",
        secrets.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let patches = peak_in_flight(&sb, |route| route.starts_with("PATCH "));
    let resets = peak_in_flight(&sb, |route| {
        route.starts_with("POST ") && route.contains("resetPassword")
    });
    assert!(patches > 1, "PATCH resets overlapped: peak {patches}");
    assert!(resets > 1, "resetPassword calls overlapped: peak {resets}");
    let stats = sb.stats();
    for u in &patched {
        assert_eq!(stats["patchesPerUser"][u], 1, "{u} written once: {stats}");
    }
    for u in synced.iter().chain(&system) {
        assert_eq!(stats["resetsPerUser"][u], 1, "{u} reset once: {stats}");
        assert!(stats["patchesPerUser"].get(u).is_none(), "{u}: {stats}");
    }
    let text = std::fs::read_to_string(&secrets).unwrap();
    let changed =
        assert_every_changed_password_is_recorded(&before, &sb.hashes(), &text, None, "overlap");
    assert_eq!(changed, 20, "{r:?}");
    assert_eq!(
        Journal::parse(&secrets, &text).unwrap().pending().count(),
        0
    );
    assert!(r.stdout.contains("20 password(s) recorded in"), "{r:?}");
    eprintln!("peak in flight: {patches} PATCH resets, {resets} resetPassword calls");
}

/// The grace after the first signal expires with writes still in flight (every answer takes
/// 1.5 s, the grace is cut to 300 ms for the test): the report and the summary are still written
/// before the exit (143): the writes in flight as `unknown` with the hint to resume, the others
/// `not_started`; the secrets file holds an entry for exactly the writes in flight, pending.
#[cfg(unix)]
#[test]
fn an_expired_grace_still_writes_the_report_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let sb = in_proc(dir.path(), 40, "1500", None).start();
    let users = sb.plain_users(6);
    let desired = sb.desired(dir.path(), &users);
    let secrets = dir.path().join("secrets.jsonl");
    let report = dir.path().join("report.json");
    let child = sb
        .pwdrift()
        .env("PWDRIFT_SIGNAL_GRACE_MS", "300")
        .args([
            "apply",
            &desired,
            "--auto-approve",
            "--force",
            "--concurrency",
            "2",
            "--secrets-out",
            secrets.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_first_intent(&secrets);
    // the PATCHes are in flight for 1.5 s; the grace ends after 0.3 s
    std::thread::sleep(Duration::from_millis(100));
    let signalled = Instant::now();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stdout}\n{stderr}");
    assert!(
        // waiting for the writes would take their answer and a read-back: about 3 s
        signalled.elapsed() < Duration::from_millis(2500),
        "stopped at the end of the grace, not after the writes: {:?}",
        signalled.elapsed()
    );
    assert!(
        stderr.contains("Writes in flight did not finish within 0.3 s"),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&secrets).unwrap();
    let journal = Journal::parse(&secrets, &text).unwrap();
    let in_flight: BTreeSet<String> = journal
        .pending()
        .map(|e| e.user_principal_name.clone())
        .collect();
    assert_eq!(journal.entries().count(), in_flight.len(), "all pending");
    assert!(!in_flight.is_empty());

    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let rows = doc["users"].as_array().unwrap();
    assert_eq!(rows.len(), users.len(), "{doc}");
    // every user of the plan, once, in the plan's order (the plan sorts them)
    let upns: Vec<String> = rows
        .iter()
        .map(|u| u["user_principal_name"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = users.clone();
    sorted.sort();
    assert_eq!(upns, sorted);
    for row in rows {
        let upn = row["user_principal_name"].as_str().unwrap();
        if in_flight.contains(upn) {
            assert_eq!(row["status"], "unknown", "{row}");
            assert!(
                row["hint"].as_str().unwrap().contains("--secrets-append"),
                "{row}"
            );
            assert!(
                row["detail"].as_str().unwrap().contains("in flight"),
                "{row}"
            );
        } else {
            assert_eq!(row["status"], "not_started", "{row}");
        }
    }
    assert!(stdout.contains("Apply interrupted by SIGTERM"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} unknown", in_flight.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{} change(s) were not started",
            users.len() - in_flight.len()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("Needs attention (outcome unknown)"),
        "{stdout}"
    );
}

/// Tenants are applied side by side: three generated tenants, three password
/// resets each, `--concurrency 1` (one request in flight per tenant) and 100 ms per answer. The
/// sandbox saw more than one PATCH in flight at once, which only tenants overlapping can do; the
/// report lists the users in the plan's order; every password is recorded.
#[test]
fn tenants_are_applied_concurrently_in_plan_order() {
    let sb = Sandbox::generate(25)
        .tenants(3)
        .throttle("off")
        .latency("100")
        .rng_seed(9)
        .start();
    let state = sb.state();
    let dir = tempfile::tempdir().unwrap();
    let desired = dir.path().join("desired");
    std::fs::create_dir(&desired).unwrap();
    let mut users = BTreeSet::new();
    for (i, t) in state["tenants"].as_array().unwrap().iter().enumerate() {
        let mut text = format!(
            "version: 1\ntenant: {}\nusers:\n",
            t["initialDomain"].as_str().unwrap()
        );
        for u in t["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| {
                u["onPremisesSyncEnabled"] != true
                    && u["privileged"] == false
                    && u["userType"] == "Member"
                    && u["federatedDomain"] != true
            })
            .take(3)
        {
            let upn = u["userPrincipalName"].as_str().unwrap();
            users.insert(upn.to_ascii_lowercase());
            text.push_str(&format!(
                "  - user: {upn}\n    resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: {{ generate: {{ length: 16 }} }}\n"
            ));
        }
        write(&desired, &format!("t{i}.yaml"), &text);
    }
    assert_eq!(users.len(), 9);
    let plan_file = dir.path().join("plan.json");
    let r = run(sb.pwdrift().args([
        "plan",
        desired.to_str().unwrap(),
        "--out",
        plan_file.to_str().unwrap(),
    ]));
    assert!(r.code == 0 || r.code == 2, "{r:?}");
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    let plan_order: Vec<(String, String)> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            t["users"].as_array().unwrap().iter().map(|u| {
                (
                    t["tenant"].as_str().unwrap().to_owned(),
                    u["user_id"].as_str().unwrap().to_owned(),
                )
            })
        })
        .collect();
    let secrets = dir.path().join("secrets.jsonl");
    let report = dir.path().join("report.json");
    sb.call("POST", "/_sandbox/reset-stats", None);
    let r = run(sb.pwdrift().args([
        "apply",
        plan_file.to_str().unwrap(),
        "--auto-approve",
        "--force",
        "--concurrency",
        "1",
        "--secrets-out",
        secrets.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let stats = sb.stats();
    let peak = stats["peakInFlightByRoute"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(route, _)| route.starts_with("PATCH "))
        .map(|(_, n)| n.as_u64().unwrap())
        .max()
        .unwrap_or(0);
    assert!(
        peak > 1,
        "tenants overlapped: peak {peak} PATCHes in flight"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let report_order: Vec<(String, String)> = doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["tenant"].as_str().unwrap().to_owned(),
                u["user_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(report_order, plan_order);
    assert!(doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["status"] == "verified"));
    let text = std::fs::read_to_string(&secrets).unwrap();
    let recorded: BTreeSet<String> = read_passwords(&text, None)
        .unwrap()
        .into_iter()
        .map(|(_, upn, _)| upn.to_ascii_lowercase())
        .collect();
    assert_eq!(recorded, users);
}
