//! A misbehaving Graph and hostile inputs: the token never leaves the Graph origin, every read
//! of a peer is bounded (body size, pages, a repeated next link, one deadline per request), and
//! the binary refuses hostile files (FIFOs, devices, huge diagnostics, escape sequences) quickly
//! and clearly. Each test here backs a row of docs/bad-inputs.md.
//!
//! The peers are raw HTTP/1.1 servers on 127.0.0.1:0 written with tokio (not the Graph sandbox):
//! they answer exactly the bytes a test needs (a next link to another host, an endless body, no
//! answer at all), which a well-behaved server cannot.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pwdrift::graph::auth::{Cloud, Credential, Endpoints};
use pwdrift::graph::client::{ClientOptions, GraphClient, GraphError};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TENANT: &str = "tenant-1";

/// What the raw server does with one request (its request line and headers).
type Handler = Arc<dyn Fn(String, TcpStream) -> futures::BoxFuture + Send + Sync>;

mod futures {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// A raw HTTP server on loopback: reads each request head and hands it with the socket to
/// `handler`. Returns its base URL and the number of connections accepted.
async fn raw_server(handler: Handler) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            tokio::spawn(async move {
                // one request per connection is enough for these tests
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                handler(String::from_utf8_lossy(&head).into_owned(), sock).await;
            });
        }
    });
    (format!("http://{addr}"), connections)
}

/// A Graph whose every answer is an empty users page linking on to `link`.
fn listing_linking_to(link: &str) -> Handler {
    let link = serde_json::to_string(link).unwrap();
    Arc::new(move |_, sock| {
        let body = format!(r#"{{"value": [], "@odata.nextLink": {link}}}"#);
        Box::pin(async move {
            respond(
                sock,
                "200 OK",
                &[("content-type", "application/json".into())],
                &body,
            )
            .await
        })
    })
}

/// A server that counts connections and answers none: the "other host".
async fn other_host() -> (String, Arc<AtomicUsize>) {
    raw_server(Arc::new(|_, _| Box::pin(async {}))).await
}

fn request_path(head: &str) -> String {
    head.split_whitespace().nth(1).unwrap_or("").to_owned()
}

async fn respond(mut sock: TcpStream, status: &str, headers: &[(&str, String)], body: &str) {
    let mut s = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(body);
    let _ = sock.write_all(s.as_bytes()).await;
    let _ = sock.shutdown().await;
}

fn client(base: &str, tune: impl FnOnce(&mut ClientOptions)) -> GraphClient {
    let endpoints = Endpoints::new(Cloud::Global, Some(base), Some(base)).unwrap();
    let mut options = ClientOptions::new(endpoints);
    options.max_retries = 1;
    options.base_delay = Duration::from_millis(1);
    tune(&mut options);
    GraphClient::new(
        options,
        Credential::AccessToken {
            token: SecretString::from("the-bearer-token"),
        },
    )
    .unwrap()
}

/// The forms of a next link / `Location` that point to `other` (host:port on loopback).
fn foreign_forms(other: &str) -> Vec<String> {
    let port = other.rsplit(':').next().unwrap();
    vec![
        format!("//{other}/v1.0/users?page=2"),
        format!("/\\{other}/v1.0/users?page=2"),
        format!("\\\\{other}/v1.0/users?page=2"),
        format!("/\t/{other}/v1.0/users?page=2"),
        format!("\\/{other}/v1.0/users?page=2"),
        format!("///{other}/v1.0/users?page=2"),
        format!(" //{other}/v1.0/users"),
        format!("http://{other}/v1.0/users?page=2"),
        format!("http://localhost:{port}/v1.0/users"),
        format!("http://127.0.0.1@{other}/v1.0/users"),
        format!("https://{other}/v1.0/users"),
        format!("HTTP://{other}/v1.0/users"),
    ]
}

/// Every form of `@odata.nextLink` that once carried the token to another host is refused, and
/// the other host receives no connection at all.
#[tokio::test]
async fn next_links_to_another_host_are_refused_before_any_request() {
    let (other, other_connections) = other_host().await;
    let other = other.trim_start_matches("http://").to_owned();
    for form in foreign_forms(&other) {
        let (graph, _) = raw_server(listing_linking_to(&form)).await;
        let err = client(&graph, |_| {})
            .list_users(TENANT, None)
            .await
            .expect_err(&format!("{form:?} must be refused"));
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                GraphError::ForeignUrl { .. } | GraphError::InvalidRequest(_)
            ),
            "{form:?}: {err:?}"
        );
        assert!(
            msg.contains("refusing to follow") || msg.contains("bad URL"),
            "{msg}"
        );
        assert!(!msg.contains('\t'), "{msg:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(other_connections.load(Ordering::SeqCst), 0);
}

/// The `Location` of a resetPassword is checked the same way before it is polled.
#[tokio::test]
async fn reset_password_locations_to_another_host_are_refused() {
    let (other, other_connections) = other_host().await;
    let other = other.trim_start_matches("http://").to_owned();
    for form in foreign_forms(&other) {
        let handler: Handler = Arc::new(move |_, sock| {
            let form = form.replace('\t', "%09");
            Box::pin(async move { respond(sock, "202 Accepted", &[("location", form)], "").await })
        });
        let (graph, _) = raw_server(handler).await;
        let c = client(&graph, |_| {});
        match c.reset_password(TENANT, "u1", None).await {
            Err(e) => assert!(
                matches!(
                    e,
                    GraphError::ForeignUrl { .. } | GraphError::InvalidRequest(_)
                ),
                "{e:?}"
            ),
            // the 202 is handed back (its body may hold the only copy of a generated password),
            // with the foreign Location refused; a form that the header encoding made harmless
            // must still resolve to the Graph host
            Ok(outcome) => match outcome.location {
                Err(e) => assert!(
                    matches!(
                        e,
                        GraphError::ForeignUrl { .. } | GraphError::InvalidRequest(_)
                    ),
                    "{e:?}"
                ),
                Ok(location) => {
                    let graph_origin = graph.clone() + "/";
                    assert!(location.starts_with(&graph_origin), "{location}");
                }
            },
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(other_connections.load(Ordering::SeqCst), 0);
}

/// A next link that points back to a page already read is an error, not an endless listing.
#[tokio::test]
async fn a_looping_next_link_is_an_error() {
    let handler: Handler = Arc::new(|head, sock| {
        let path = request_path(&head);
        Box::pin(async move {
            // page 1 links to page 2, page 2 links back to page 1
            let next = if path.contains("page=2") {
                "/v1.0/users?page=1"
            } else {
                "/v1.0/users?page=2"
            };
            let body = format!(r#"{{"value": [], "@odata.nextLink": "{next}"}}"#);
            respond(
                sock,
                "200 OK",
                &[("content-type", "application/json".into())],
                &body,
            )
            .await
        })
    });
    let (graph, connections) = raw_server(handler).await;
    let started = Instant::now();
    let err = client(&graph, |_| {})
        .list_users(TENANT, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already read"), "{err}");
    assert!(connections.load(Ordering::SeqCst) <= 4);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A listing that never ends stops at the page cap.
#[tokio::test]
async fn pages_per_listing_are_capped() {
    let n = Arc::new(AtomicUsize::new(0));
    let handler: Handler = Arc::new(move |_, sock| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            let body = format!(r#"{{"value": [], "@odata.nextLink": "/v1.0/users?page={i}"}}"#);
            respond(
                sock,
                "200 OK",
                &[("content-type", "application/json".into())],
                &body,
            )
            .await
        })
    });
    let (graph, connections) = raw_server(handler).await;
    let err = client(&graph, |o| o.max_pages = 5)
        .list_users(TENANT, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("more than 5 pages"), "{err}");
    assert_eq!(connections.load(Ordering::SeqCst), 5);
}

/// A body claiming 2 GiB is refused before it is read; an endless chunked body is cut off at
/// the cap. Neither is buffered whole.
#[tokio::test]
async fn huge_and_endless_bodies_are_cut_off() {
    for claim in [true, false] {
        let sent = Arc::new(AtomicUsize::new(0));
        let sent2 = sent.clone();
        let handler: Handler = Arc::new(move |_, mut sock| {
            let sent = sent2.clone();
            Box::pin(async move {
                let head = if claim {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2147483648\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                };
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let framed = [
                    format!("{:x}\r\n", chunk.len()).into_bytes(),
                    chunk.clone(),
                    b"\r\n".to_vec(),
                ]
                .concat();
                // bounded: at most 256 MiB, far above the cap of this test
                for _ in 0..4096 {
                    let bytes = if claim { &chunk } else { &framed };
                    if sock.write_all(bytes).await.is_err() {
                        return;
                    }
                    sent.fetch_add(bytes.len(), Ordering::SeqCst);
                }
            })
        });
        let (graph, _) = raw_server(handler).await;
        let started = Instant::now();
        let err = client(&graph, |o| o.max_response_bytes = 1 << 20)
            .list_users(TENANT, None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("larger than 1048576 bytes"),
            "claim={claim}: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
        // the client stopped reading: the server could not push much beyond the cap (socket
        // buffers on loopback hold a few MiB)
        assert!(
            sent.load(Ordering::SeqCst) < 64 << 20,
            "claim={claim}: {}",
            sent.load(Ordering::SeqCst)
        );
    }
}

/// A server that accepts and never answers fails the request within the overall deadline,
/// retries included (without it one attempt alone would wait 100 s).
#[tokio::test]
async fn a_stalled_server_fails_within_the_deadline() {
    let handler: Handler = Arc::new(|_, sock| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(sock);
        })
    });
    let (graph, _) = raw_server(handler).await;
    let started = Instant::now();
    let err = client(&graph, |o| {
        o.max_retries = 8;
        o.request_deadline = Duration::from_secs(2);
    })
    .list_users(TENANT, None)
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(err.to_string().contains("request deadline of 2 s"), "{err}");

    // each attempt also ends after a silence of `read_timeout`, well before the deadline
    let started = Instant::now();
    let err = client(&graph, |o| {
        o.max_retries = 0;
        o.read_timeout = Duration::from_millis(500);
        o.request_deadline = Duration::from_secs(30);
    })
    .list_users(TENANT, None)
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(matches!(err, GraphError::Transport { .. }), "{err:?}");
}

// ---- the binary against hostile files ----

use crate::common::{repo, run, seed_copy, write, Run, BIN};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `cmd` with a deadline: a hang is a test failure, not a stuck test run.
fn run_within(cmd: &mut Command, limit: Duration) -> (Run, Duration) {
    let started = Instant::now();
    let child = cmd
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // only the child this test started, by its id
            unsafe { libc::kill(id as i32, libc::SIGKILL) };
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    };
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (r, started.elapsed())
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

fn pwdrift() -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(repo());
    c
}

/// A FIFO named as a desired-state file is refused at once (it used to block forever).
#[test]
fn fifo_as_desired_state_file_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("desired.yaml");
    mkfifo(&fifo);
    let (r, took) = run_within(
        pwdrift().arg("validate").arg(&fifo),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not a regular file (a FIFO)"), "{r:?}");
    assert!(took < Duration::from_secs(10));
}

/// A FIFO as the sandbox seed (`plan --sandbox`, `pwdrift sandbox --seed`) is refused at once.
#[test]
fn fifo_as_sandbox_seed_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("seed.yaml");
    mkfifo(&fifo);
    let (r, _) = run_within(
        pwdrift()
            .args(["plan", "examples/desired", "--sandbox"])
            .arg(&fifo),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("cannot read the sandbox seed"), "{r:?}");
    assert!(r.stderr.contains("not a regular file (a FIFO)"), "{r:?}");
    let (r, _) = run_within(
        pwdrift()
            .args(["sandbox", "--listen", "127.0.0.1:0", "--seed"])
            .arg(&fifo),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not a regular file (a FIFO)"), "{r:?}");
}

/// `password: {file: ...}` naming a FIFO or `/dev/zero` is refused before anything is written
/// (`/dev/zero` used to grow to gigabytes).
#[test]
fn fifo_and_dev_zero_as_password_file_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pw");
    mkfifo(&fifo);
    for (source, expect) in [
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/zero", "a character device"),
    ] {
        let seed = seed_copy(dir.path());
        let desired = write(
            dir.path(),
            "desired.yaml",
            &format!(
                "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: alice@contoso.com\n    \
                 resetPassword:\n      notBefore: 2026-11-20T00:00:00Z\n      password: {{ file: {source} }}\n"
            ),
        );
        let (r, took) = run_within(
            pwdrift()
                .args(["apply", "--auto-approve", "--sandbox"])
                .arg(&seed)
                .arg(&desired),
            Duration::from_secs(60),
        );
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains(expect), "{source}: {r:?}");
        assert!(r.stderr.contains("not a regular file"), "{source}: {r:?}");
        assert!(!r.stdout.contains("Apply complete"), "{r:?}");
        assert!(took < Duration::from_secs(40), "{took:?}");
    }
}

/// 100,000 duplicate users give at most 200 diagnostics and a count of the rest, not 40 MB.
#[test]
fn many_duplicate_users_give_bounded_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n");
    for _ in 0..100_000 {
        text.push_str("  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: false\n");
    }
    let desired = write(dir.path(), "desired.yaml", &text);
    let (r, took) = run_within(
        pwdrift().arg("validate").arg(&desired),
        Duration::from_secs(120),
    );
    assert_eq!(r.code, 1, "{}", &r.stderr[..r.stderr.len().min(2000)]);
    assert!(
        r.stderr.len() < 512 * 1024,
        "{} bytes of diagnostics",
        r.stderr.len()
    );
    assert!(
        r.stderr.contains("more diagnostics not shown"),
        "{}",
        &r.stderr[r.stderr.len().saturating_sub(2000)..]
    );
    assert!(took < Duration::from_secs(90), "{took:?}");
    // the GitHub format is capped the same way
    let (r, _) = run_within(
        pwdrift()
            .args(["validate", "--format", "github"])
            .arg(&desired),
        Duration::from_secs(120),
    );
    assert!(r.stdout.len() + r.stderr.len() < 512 * 1024);
    assert!((r.stdout.clone() + &r.stderr).contains("more diagnostics not shown"));
}

/// An escape sequence in a desired-state value is shown escaped, never sent to the terminal.
#[test]
fn an_escape_sequence_in_a_upn_is_escaped_in_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let desired = write(
        dir.path(),
        "desired.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: \"al\\e[2J\\e]0;pwned\\u0007ice@contoso.com\"\n",
    );
    let (r, _) = run_within(
        pwdrift().arg("validate").arg(&desired),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 1, "{r:?}");
    let all = r.stdout.clone() + &r.stderr;
    assert!(!all.contains('\u{1b}'), "raw ESC in output: {all:?}");
    assert!(!all.contains('\u{7}'), "raw BEL in output: {all:?}");
    assert!(all.contains("\\u{1b}[2J"), "{all}");
}

/// A long value is truncated in the message that echoes it.
#[test]
fn long_values_are_truncated_in_messages() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(5000);
    let desired = write(
        dir.path(),
        "desired.yaml",
        &format!("version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: \"{long}\"\n"),
    );
    let r = run(pwdrift().env("NO_COLOR", "1").arg("validate").arg(&desired));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.len() < 4000,
        "{} bytes: {}",
        r.stderr.len(),
        r.stderr
    );
    assert!(r.stderr.contains("..."), "{}", r.stderr);
}

// ---- saved plans re-checked at apply time ----

use crate::common::Sandbox;

/// Plans a desired state where Erin (Global Administrator) is blocked and Bob gets a flag change;
/// returns the saved plan as JSON.
fn saved_plan(sb: &Sandbox, dir: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let desired = write(
        dir,
        "desired.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: erin@contoso.com\n    \
         forceChangePasswordNextSignIn: true\n  - user: bob@contoso.com\n    \
         forceChangePasswordNextSignIn: false\n",
    );
    let saved = dir.join("plan.json");
    let r = run(sb
        .pwdrift()
        .arg("plan")
        .arg(&desired)
        .arg("--out")
        .arg(&saved));
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    (saved, v)
}

fn user_mut<'a>(v: &'a mut serde_json::Value, upn: &str) -> &'a mut serde_json::Value {
    v["tenants"][0]["users"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|u| u["user_principal_name"] == upn)
        .unwrap()
}

/// Recomputes the content hash, as a forger would.
fn reseal(v: &mut serde_json::Value) {
    v.as_object_mut().unwrap().remove("content_hash");
    let plan: pwdrift::plan::Plan = serde_json::from_value(v.clone()).unwrap();
    v["content_hash"] = pwdrift::plan::content_hash(&plan).into();
}

fn apply_saved(sb: &Sandbox, saved: &Path, v: &serde_json::Value, extra: &[&str]) -> Run {
    std::fs::write(saved, serde_json::to_string_pretty(v).unwrap()).unwrap();
    run(sb
        .pwdrift()
        .arg("apply")
        .arg(saved)
        .arg("--auto-approve")
        .args(extra))
}

/// Every write the sandbox received (PATCHes and resetPassword calls).
fn writes(sb: &Sandbox) -> u64 {
    let stats = sb.stats();
    ["patchesPerUser", "resetsPerUser"]
        .iter()
        .filter_map(|k| stats[k].as_object())
        .flat_map(|m| m.values().filter_map(|v| v.as_u64()))
        .sum()
}

/// A hand-edited plan that turns a blocked Global Administrator into a password reset is refused:
/// by its content hash, and, when the hash was recomputed, because the plan derived again from
/// its desired state and live state blocks her (the privileged-role rail). Nothing is written
/// either way.
#[test]
fn edited_plan_resetting_a_blocked_global_admin_is_refused() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let (saved, mut v) = saved_plan(&sb, dir.path());
    let pw = write(dir.path(), "pw.txt", "Known-Passw0rd-2026!\n");
    let erin = user_mut(&mut v, "erin@contoso.com");
    assert_eq!(erin["action"]["type"], "blocked", "{erin}");
    erin["action"] = serde_json::json!({
        "type": "reset_password",
        "method": "patch_password_profile",
        "password": {"file": {"path": pw}},
        "before": {"forceChangePasswordNextSignIn": false, "forceChangePasswordNextSignInWithMfa": false},
        "after": {"forceChangePasswordNextSignIn": false, "forceChangePasswordNextSignInWithMfa": false},
        "reason": "edited"
    });
    let r = apply_saved(&sb, &saved, &v, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("modified after it was saved"), "{r:?}");
    assert!(r.stderr.contains("re-plan"), "{r:?}");

    reseal(&mut v);
    let r = apply_saved(&sb, &saved, &v, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("safety rails protect"), "{r:?}");
    assert!(r.stderr.contains("erin@contoso.com"), "{r:?}");
    assert!(r.stderr.contains("Global Administrator"), "{r:?}");

    // and with allow_privileged forged too, still nothing without the hash: the rail names it
    user_mut(&mut v, "erin@contoso.com")["allow_privileged"] = true.into();
    let r = apply_saved(&sb, &saved, &v, &[]);
    assert!(r.stderr.contains("modified after it was saved"), "{r:?}");
    assert_eq!(sb.total_patches(), 0, "nothing was written");
}

/// A forged plan with a recomputed hash that sets `allow_privileged` on the Global Administrator
/// (alone, or with her action turned into a flags change) is refused: the desired state does not
/// say `allowPrivileged`. Nothing is written.
#[test]
fn forged_allow_privileged_on_an_admin_is_refused() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let (saved, mut v) = saved_plan(&sb, dir.path());
    user_mut(&mut v, "erin@contoso.com")["allow_privileged"] = true.into();
    reseal(&mut v);
    let r = apply_saved(&sb, &saved, &v, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not the plan its desired state gives"),
        "{r:?}"
    );
    assert!(r.stderr.contains("erin@contoso.com"), "{r:?}");
    assert!(
        r.stderr
            .contains("allow_privileged is true in the saved plan, false in desired state"),
        "{r:?}"
    );
    assert!(
        !r.stderr.contains("bob@contoso.com"),
        "only erin differs: {r:?}"
    );

    let erin = user_mut(&mut v, "erin@contoso.com");
    let before = serde_json::json!({"forceChangePasswordNextSignIn": false, "forceChangePasswordNextSignInWithMfa": false});
    erin["action"] = serde_json::json!({
        "type": "set_flags",
        "before": before,
        "after": {"forceChangePasswordNextSignIn": true, "forceChangePasswordNextSignInWithMfa": false},
        "reason": "forged"
    });
    reseal(&mut v);
    let r = apply_saved(&sb, &saved, &v, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("safety rails protect"), "{r:?}");
    assert!(r.stderr.contains("erin@contoso.com"), "{r:?}");
    assert!(r.stderr.contains("Nothing was written"), "{r:?}");
    assert_eq!(writes(&sb), 0, "nothing was written");
}

/// A forged plan (hash recomputed) that turns a user the desired state only asks a flag of into
/// a password reset with a password from a file the forger controls is refused, naming the user.
#[test]
fn forged_reset_of_a_user_without_a_reset_directive_is_refused() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let (saved, mut v) = saved_plan(&sb, dir.path());
    let pw = write(dir.path(), "pw.txt", "Known-Passw0rd-2026!\n");
    let bob = user_mut(&mut v, "bob@contoso.com");
    assert_eq!(bob["action"]["type"], "set_flags", "{bob}");
    let before = bob["action"]["before"].clone();
    bob["action"] = serde_json::json!({
        "type": "reset_password",
        "method": "patch_password_profile",
        "password": {"file": {"path": pw}},
        "before": before,
        "after": {"forceChangePasswordNextSignIn": false, "forceChangePasswordNextSignInWithMfa": false},
        "reason": "forged"
    });
    reseal(&mut v);
    let r = apply_saved(&sb, &saved, &v, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not the plan its desired state gives"),
        "{r:?}"
    );
    assert!(r.stderr.contains("bob@contoso.com"), "{r:?}");
    assert!(r.stderr.contains("reset the password"), "{r:?}");
    assert!(r.stderr.contains("set flags"), "{r:?}");
    assert!(!r.stderr.contains("Known-Passw0rd"), "no secret: {r:?}");
    assert_eq!(writes(&sb), 0, "nothing was written");
}

/// A desired-state file edited (or removed, or the apply run from another directory) after the
/// plan was made: the saved plan is refused, "re-plan", and nothing is written. Paths are
/// relative to the directory plan ran in, as in a CI checkout.
#[test]
fn desired_state_edited_after_the_plan_is_refused() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "desired.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: bob@contoso.com\n    \
         forceChangePasswordNextSignIn: false\n",
    );
    let r = run(sb.pwdrift().current_dir(dir.path()).args([
        "plan",
        "desired.yaml",
        "--out",
        "plan.json",
    ]));
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap())
            .unwrap();
    assert_eq!(v["made_from"]["files"][0]["path"], "desired.yaml", "{v}");
    assert!(
        v["made_from"]["files"][0]["sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{v}"
    );

    // from another directory the file is not there
    let elsewhere = tempfile::tempdir().unwrap();
    let r = run(sb
        .pwdrift()
        .current_dir(elsewhere.path())
        .arg("apply")
        .arg(dir.path().join("plan.json"))
        .arg("--auto-approve"));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("the desired state changed since the plan was made: re-plan"),
        "{r:?}"
    );
    assert!(r.stderr.contains("desired.yaml: missing"), "{r:?}");

    // an edit, even one that would give the same plan (a comment)
    let original = std::fs::read_to_string(dir.path().join("desired.yaml")).unwrap();
    std::fs::write(
        dir.path().join("desired.yaml"),
        format!("{original}# edited\n"),
    )
    .unwrap();
    let apply = || {
        run(sb
            .pwdrift()
            .current_dir(dir.path())
            .args(["apply", "plan.json", "--auto-approve"]))
    };
    let r = apply();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("the desired state changed since the plan was made: re-plan"),
        "{r:?}"
    );
    assert!(r.stderr.contains("desired.yaml: changed"), "{r:?}");
    assert_eq!(writes(&sb), 0, "nothing was written");

    // put back as it was: the plan applies
    std::fs::write(dir.path().join("desired.yaml"), original).unwrap();
    let r = apply();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("1 changed and verified"), "{r:?}");
}

/// An honest saved plan, made with `--target` and `--shard`, is derived again with the same
/// filters (they are recorded in it) and applied: only the targeted user is written.
#[test]
fn honest_saved_plan_with_filters_is_applied() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let desired = write(
        dir.path(),
        "desired.yaml",
        "version: 1\ntenant: contoso.onmicrosoft.com\nusers:\n  - user: bob@contoso.com\n    \
         forceChangePasswordNextSignIn: false\n  - user: alice@contoso.com\n    \
         forceChangePasswordNextSignInWithMfa: true\n",
    );
    let saved = dir.path().join("plan.json");
    let r = run(sb
        .pwdrift()
        .arg("plan")
        .arg(&desired)
        .args(["--target", "bob@contoso.com", "--shard", "1/1", "--out"])
        .arg(&saved));
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(
        v["made_from"]["targets"],
        serde_json::json!(["bob@contoso.com"]),
        "{v}"
    );
    assert_eq!(v["made_from"]["shard"], "1/1", "{v}");
    assert_eq!(v["tenants"][0]["users"].as_array().unwrap().len(), 1, "{v}");

    // --target given to apply too, but another one: refused
    let r = run(sb.pwdrift().arg("apply").arg(&saved).args([
        "--auto-approve",
        "--target",
        "alice@contoso.com",
    ]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("applied as it was made"), "{r:?}");

    let r = run(sb.pwdrift().arg("apply").arg(&saved).arg("--auto-approve"));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("1 changed and verified"), "{r:?}");
    assert!(r.stderr.contains("gives against live state now"), "{r:?}");
    let stats = sb.stats();
    assert_eq!(stats["patchesPerUser"]["bob@contoso.com"], 1, "{stats}");
    assert!(
        stats["patchesPerUser"]["alice@contoso.com"].is_null(),
        "{stats}"
    );
}

/// A user listed twice, an unknown field, a value outside the schema, another tenant's id: each
/// is refused before anything is written.
#[test]
fn tampered_saved_plans_are_refused_before_any_write() {
    let sb = Sandbox::contoso().start();
    let dir = tempfile::tempdir().unwrap();
    let (saved, v) = saved_plan(&sb, dir.path());

    let mut dup = v.clone();
    let bob = user_mut(&mut dup, "bob@contoso.com").clone();
    for _ in 0..2 {
        dup["tenants"][0]["users"]
            .as_array_mut()
            .unwrap()
            .push(bob.clone());
    }
    reseal(&mut dup);
    let r = apply_saved(&sb, &saved, &dup, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("listed more than once"), "{r:?}");

    let mut unknown = v.clone();
    user_mut(&mut unknown, "bob@contoso.com")["also_reset"] = true.into();
    let r = apply_saved(&sb, &saved, &unknown, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("unknown field `also_reset`"), "{r:?}");

    let mut outside = v.clone();
    user_mut(&mut outside, "bob@contoso.com")["fingerprint"] = "x".into();
    reseal(&mut outside);
    let r = apply_saved(&sb, &saved, &outside, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("64 hex digits"), "{r:?}");

    let mut other_tenant = v.clone();
    other_tenant["tenants"][0]["tenant_id"] = "00000000-0000-4000-8000-000000000bad".into();
    reseal(&mut other_tenant);
    let r = apply_saved(&sb, &saved, &other_tenant, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("for another tenant"), "{r:?}");

    // --max-changes is evaluated at apply time, on the plan as saved
    let r = apply_saved(&sb, &saved, &v, &["--max-changes", "0"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("more than --max-changes 0"), "{r:?}");

    assert_eq!(sb.total_patches(), 0, "nothing was written");
    // the untouched plan still applies
    let r = apply_saved(&sb, &saved, &v, &[]);
    assert_eq!(r.code, 1, "erin stays blocked: {r:?}");
    assert!(r.stdout.contains("1 changed and verified"), "{r:?}");
}

/// The binary, pointed at a Graph whose every listing links to another host: `plan` fails with
/// the refusal (exit 1), and the other host sees no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_refuses_a_foreign_next_link() {
    let (other, other_connections) = other_host().await;
    let other = other.trim_start_matches("http://").to_owned();
    let (graph, _) = raw_server(listing_linking_to(&format!("/\\{other}/v1.0/users?page=2"))).await;
    let dir = tempfile::tempdir().unwrap();
    let desired = write(
        dir.path(),
        "desired.yaml",
        "version: 1\ntenant: 7b3e1a52-9c4d-4f1e-a2b8-3d5c6e7f8a90\nusers:\n  - user: alice@contoso.com\n    forceChangePasswordNextSignIn: false\n",
    );
    let r = tokio::task::spawn_blocking(move || {
        run_within(
            Command::new(BIN)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("PWDRIFT_ACCESS_TOKEN", "the-bearer-token")
                .env("PWDRIFT_LIST_ALL_THRESHOLD", "0")
                .args(["plan", "--graph-url", &graph, "--authority-host", &graph])
                .arg(&desired),
            Duration::from_secs(30),
        )
        .0
    })
    .await
    .unwrap();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("refusing to follow"), "{r:?}");
    assert!(!r.stderr.contains("the-bearer-token"), "{r:?}");
    assert_eq!(other_connections.load(Ordering::SeqCst), 0);
}

/// Every row of docs/bad-inputs.md names tests, and every test it names exists: an
/// integration test (`fn name` in tests/it, or `file::name`) or a unit test (`module::...::name`
/// as a `fn name` in src/ or the sandbox crate).
#[test]
fn every_bad_input_row_names_tests_that_exist() {
    fn sources(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut code = String::new();
    for d in ["src", "tests/it", "crates/graph-sandbox/src"] {
        sources(&repo().join(d), &mut code);
    }
    let doc = std::fs::read_to_string(repo().join("docs/bad-inputs.md")).unwrap();
    let mut rows = 0;
    for line in doc
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Input") && !l.starts_with("| ---"))
    {
        let test_cell = line
            .trim_end()
            .trim_end_matches('|')
            .rsplit('|')
            .next()
            .unwrap();
        let names: Vec<&str> = test_cell
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| !n.trim().is_empty())
            .collect();
        assert!(!names.is_empty(), "a row without a test: {line}");
        for name in names {
            let last = name.rsplit("::").next().unwrap();
            assert!(
                code.contains(&format!("fn {last}(")),
                "docs/bad-inputs.md names `{name}`, which is not a test: {line}"
            );
        }
        rows += 1;
    }
    assert!(rows >= 35, "the table was read: {rows} rows");
}
