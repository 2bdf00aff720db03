//! `apply --lock-blob`: applies on different machines take a lease per tenant on a blob in Azure
//! Blob Storage, tested against Azurite (the storage emulator Microsoft publishes on the npm
//! registry), as two checkouts with machine locks of their own (`PWDRIFT_LOCK_DIR`) would.
//!
//! Azurite is `$PWDRIFT_AZURITE` (the path of `azurite-blob`; `.ci/run` installs it and sets it),
//! else `azurite-blob` on `PATH`, else `${TMPDIR:-/tmp}/pwdrift-azurite/node_modules/.bin/azurite-blob`
//! (where `.ci/run` installs it). Without it, under `CI=true` these tests fail (CI must run
//! them); elsewhere each prints "skipped: Azurite not installed (npm install azurite)" to stderr
//! and passes, so that `cargo test` on a machine without npm packages still passes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use pwdrift::engine::lease::shared_key;

use crate::common::{Run, Sandbox};
use crate::lock::{assert_each_user_written_once, checkout, finish, plain_users, tenant};

/// Azurite's well-known development account and key (published in its README).
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const CONTAINER: &str = "pwdrift-locks";

/// A running `azurite-blob` on a free loopback port, killed on drop.
struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn azurite_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PWDRIFT_AZURITE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("azurite-blob"))
        .find(|p| p.is_file());
    on_path.or_else(|| {
        let p = std::env::temp_dir().join("pwdrift-azurite/node_modules/.bin/azurite-blob");
        p.is_file().then_some(p)
    })
}

/// Starts Azurite and creates the container, or `None` (after saying so) when it is not
/// installed outside CI.
fn azurite() -> Option<Azurite> {
    let Some(bin) = azurite_bin() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Azurite not installed: CI must run the --lock-blob tests (set PWDRIFT_AZURITE; .ci/run installs it)"
        );
        eprintln!("skipped: Azurite not installed (npm install azurite)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(&bin)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args([
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    let az = Azurite {
        child,
        port,
        _dir: dir,
    };
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "Azurite did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let created = az.signed("PUT", "", &[("restype", "container")], &[]);
    assert_eq!(created.0, 201, "create the container: {created:?}");
    Some(az)
}

impl Azurite {
    fn container_url(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}/{CONTAINER}", self.port)
    }

    /// A request signed with the development key (`blob` empty: the container itself):
    /// (status, headers).
    fn signed(
        &self,
        verb: &str,
        blob: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap) {
        let path = if blob.is_empty() {
            format!("/{ACCOUNT}/{CONTAINER}")
        } else {
            format!("/{ACCOUNT}/{CONTAINER}/{blob}")
        };
        let mut headers: Vec<(String, String)> = vec![
            (
                "x-ms-date".into(),
                chrono::Utc::now()
                    .format("%a, %d %b %Y %H:%M:%S GMT")
                    .to_string(),
            ),
            ("x-ms-version".into(), "2021-12-02".into()),
        ];
        headers.extend(extra.iter().map(|(n, v)| ((*n).into(), (*v).into())));
        let q: Vec<(String, String)> = query
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect();
        let key = base64::engine::general_purpose::STANDARD
            .decode(KEY)
            .unwrap();
        let s = shared_key::string_to_sign(&shared_key::Signed {
            verb,
            headers: &headers,
            account: ACCOUNT,
            path: &path,
            query: &q,
        });
        let auth = shared_key::authorization(ACCOUNT, &key, &s);
        let url = format!(
            "http://127.0.0.1:{}{path}{}",
            self.port,
            query
                .iter()
                .enumerate()
                .map(|(i, (n, v))| format!("{}{n}={v}", if i == 0 { '?' } else { '&' }))
                .collect::<String>()
        );
        let client = reqwest::Client::new();
        let mut req = client
            .request(verb.parse().unwrap(), url)
            .header("Authorization", auth);
        for (n, v) in &headers {
            req = req.header(n.as_str(), v.as_str());
        }
        if verb == "PUT" {
            req = req.body(Vec::new());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(req.send()).unwrap();
        (r.status().as_u16(), r.headers().clone())
    }
}

/// `pwdrift apply desired --lock-blob ...` in `dir`, with a machine lock directory of its own
/// (another machine) and `key` as `AZURE_STORAGE_KEY`.
fn start(sb: &Sandbox, az: &Azurite, dir: &Path, key: &str, extra: &[&str]) -> Child {
    let mut cmd = sb.pwdrift();
    cmd.current_dir(dir)
        .env("PWDRIFT_LOCK_DIR", dir.join("machine-locks"))
        .env("AZURE_STORAGE_KEY", key)
        .args(["apply", "desired", "--auto-approve", "--force"])
        .args(["--secrets-out", "secrets.jsonl", "--lock-blob"])
        .arg(az.container_url())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// The lease state of the tenant's blob (`available`, `leased`, ...).
fn lease_state(az: &Azurite, sb: &Sandbox) -> String {
    let blob = format!("{}.lock", sb.info.tenant_id.to_ascii_lowercase());
    let (status, headers) = az.signed("HEAD", &blob, &[], &[]);
    assert_eq!(status, 200, "HEAD {blob}");
    headers["x-ms-lease-state"].to_str().unwrap().to_owned()
}

/// (a) Two applies at once from two "machines" (machine locks of their own, one container):
/// one fails with exit 1 naming the holder (its pid and directory) and the blob, every user is
/// written once, every journal entry marked applied is the user's password. (b) The lease is
/// released when the apply ends: a third apply takes it at once and finds nothing to change.
#[test]
fn two_applies_on_two_machines_one_fails_naming_the_holder_and_the_lease_is_released() {
    let Some(az) = azurite() else { return };
    let root = tempfile::tempdir().unwrap();
    let sb = tenant(root.path(), "150");
    let users = plain_users(&sb, 6);
    let a = checkout(root.path(), "a", &sb, &users);
    let b = checkout(root.path(), "b", &sb, &users);
    let (ca, cb) = (start(&sb, &az, &a, KEY, &[]), start(&sb, &az, &b, KEY, &[]));
    let pids = [ca.id(), cb.id()];
    let runs: [Run; 2] = [finish(ca), finish(cb)];
    let Some(w) = runs.iter().position(|r| r.code == 0) else {
        panic!("neither apply succeeded: {runs:?}")
    };
    let (won, lost) = (&runs[w], &runs[1 - w]);
    assert_eq!(lost.code, 1, "{lost:?}");
    assert!(
        lost.stderr
            .contains("is being applied by another pwdrift run (pid ")
            && lost.stderr.contains(&format!("pid {}", pids[w]))
            && lost.stderr.contains(&[&a, &b][w].display().to_string())
            && lost.stderr.contains("lease on blob http://127.0.0.1:")
            && lost.stderr.contains("--lock-timeout"),
        "{lost:?}"
    );
    assert!(won.stdout.contains("Apply complete"), "{won:?}");
    assert_each_user_written_once(&sb, &users, &[&a, &b]);
    for r in &runs {
        assert!(!r.stderr.contains(KEY) && !r.stdout.contains(KEY), "{r:?}");
    }

    // (b) released at the end: taken at once by a third run, which finds nothing to change
    assert_eq!(lease_state(&az, &sb), "available");
    let c = checkout(root.path(), "c", &sb, &users);
    let t0 = Instant::now();
    let third = finish(start(&sb, &az, &c, KEY, &[]));
    assert_eq!(third.code, 0, "{third:?}");
    assert!(third.stdout.contains("No changes to apply."), "{third:?}");
    assert!(t0.elapsed() < Duration::from_secs(30), "it did not wait");
    assert_eq!(lease_state(&az, &sb), "available");
}

/// With `--lock-timeout`, the second waits for the lease (saying who holds it), then plans
/// against the tenant the first left and finds nothing to change.
#[test]
fn with_a_lock_timeout_the_second_machine_waits_for_the_lease() {
    let Some(az) = azurite() else { return };
    let root = tempfile::tempdir().unwrap();
    let sb = tenant(root.path(), "150");
    let users = plain_users(&sb, 6);
    let a = checkout(root.path(), "a", &sb, &users);
    let b = checkout(root.path(), "b", &sb, &users);
    let wait = ["--lock-timeout", "2m"];
    let (ca, cb) = (
        start(&sb, &az, &a, KEY, &wait),
        start(&sb, &az, &b, KEY, &wait),
    );
    let runs = [finish(ca), finish(cb)];
    assert!(runs.iter().all(|r| r.code == 0), "{runs:?}");
    let waited: Vec<&Run> = runs
        .iter()
        .filter(|r| r.stdout.contains("No changes to apply."))
        .collect();
    assert_eq!(waited.len(), 1, "{runs:?}");
    assert!(
        waited[0].stderr.contains("lease on blob")
            && waited[0].stderr.contains("waiting up to 2 min"),
        "{runs:?}"
    );
    assert_each_user_written_once(&sb, &users, &[&a, &b]);
}

/// (c) A wrong account key is refused with a clear error (exit 1) before anything is written:
/// no secrets file, no write to the tenant, and neither key is shown.
#[test]
fn a_wrong_storage_key_is_refused_and_nothing_is_written() {
    let Some(az) = azurite() else { return };
    let root = tempfile::tempdir().unwrap();
    let sb = tenant(root.path(), "0");
    let users = plain_users(&sb, 2);
    let a = checkout(root.path(), "a", &sb, &users);
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    let r = finish(start(&sb, &az, &a, &wrong, &[]));
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("answered 403")
            && r.stderr
                .contains("refused the credential: check AZURE_STORAGE_KEY")
            && r.stderr.contains("nothing was written"),
        "{r:?}"
    );
    assert!(
        !r.stderr.contains(&wrong) && !r.stderr.contains(KEY),
        "{r:?}"
    );
    assert!(!a.join("secrets.jsonl").exists());
    assert_eq!(sb.total_patches(), 0);

    // without any key (and no SAS token): refused before anything is sent
    let mut cmd = sb.pwdrift();
    cmd.current_dir(&a)
        .args(["apply", "desired", "--auto-approve", "--lock-blob"])
        .arg(az.container_url());
    let r = crate::common::run(&mut cmd);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("no credential: set AZURE_STORAGE_KEY"),
        "{r:?}"
    );
}

/// A container that does not exist: the storage account answers 404 `ContainerNotFound`, and
/// the apply says to create it, writes nothing and takes no lease.
#[test]
fn a_container_that_does_not_exist_is_named_and_nothing_is_written() {
    let Some(az) = azurite() else { return };
    let root = tempfile::tempdir().unwrap();
    let sb = tenant(root.path(), "0");
    let users = plain_users(&sb, 2);
    let a = checkout(root.path(), "a", &sb, &users);
    let mut cmd = sb.pwdrift();
    cmd.current_dir(&a)
        .env("PWDRIFT_LOCK_DIR", a.join("machine-locks"))
        .env("AZURE_STORAGE_KEY", KEY)
        .args(["apply", "desired", "--auto-approve", "--force"])
        .args(["--secrets-out", "secrets.jsonl", "--lock-blob"])
        .arg(format!(
            "http://127.0.0.1:{}/{ACCOUNT}/no-such-container",
            az.port
        ));
    let r = crate::common::run(&mut cmd);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("404 ContainerNotFound")
            && r.stderr.contains("create the container first")
            && r.stderr.contains("nothing was written"),
        "{r:?}"
    );
    assert!(!r.stderr.contains(KEY), "{r:?}");
    assert!(!a.join("secrets.jsonl").exists());
    assert_eq!(sb.total_patches(), 0);
}
