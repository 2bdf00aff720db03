//! The one way the integration tests start the Graph sandbox: [`Sandbox::contoso`],
//! [`Sandbox::seed`] or [`Sandbox::generate`], then the options the tests use (throttle, latency,
//! faults, rng seed, state file, any other `SandboxConfig` field), then [`SandboxBuilder::start`].
//!
//! The sandbox runs in this process (`graph_sandbox::start` on 127.0.0.1:0). `start` gives it a
//! runtime of its own: a test that kills the `pwdrift` binary never takes the sandbox down, a
//! synchronous test needs no runtime, and the sandbox's state (password hashes, the state file)
//! stays reachable. `start_here` runs it on the calling test's runtime instead (the client tests,
//! which drive `GraphClient` in the same runtime). The options mean what the `pwdrift sandbox`
//! flags of the same names mean, with the same defaults. [`SandboxProcess`] starts the
//! `pwdrift sandbox` process, for the tests of that command only.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use graph_sandbox::{RunningSandbox, SandboxConfig, SandboxInfo, SeedSource};
use pwdrift::graph::auth::{Cloud, Credential, Endpoints};
use secrecy::SecretString;

use super::{repo, BIN};

/// The shipped example tenant (`contoso.onmicrosoft.com`).
pub const CONTOSO_SEED: &str = "examples/sandbox/contoso.seed.yaml";

/// What a sandbox is seeded from.
enum Seed {
    File(PathBuf),
    /// `--generate USERS [--generate-tenants TENANTS]`; the generator's seed is `--rng-seed`
    /// unless given apart.
    Generate {
        users: usize,
        tenants: usize,
        rng_seed: Option<u64>,
    },
}

/// A change to the configuration, applied after the options.
type Tweak = Box<dyn FnOnce(&mut SandboxConfig)>;

/// The options of one sandbox; see [`Sandbox`].
#[must_use]
pub struct SandboxBuilder {
    seed: Seed,
    rng_seed: u64,
    throttle: Option<String>,
    latency: Option<String>,
    faults: Option<String>,
    state_file: Option<PathBuf>,
    tweaks: Vec<Tweak>,
}

impl SandboxBuilder {
    fn new(seed: Seed) -> Self {
        SandboxBuilder {
            seed,
            rng_seed: 1,
            throttle: None,
            latency: None,
            faults: None,
            state_file: None,
            tweaks: Vec::new(),
        }
    }

    /// `--generate-tenants K`: K generated tenants (one multi-tenant app).
    pub fn tenants(mut self, tenants: usize) -> Self {
        match &mut self.seed {
            Seed::Generate { tenants: t, .. } => *t = tenants,
            Seed::File(_) => panic!("tenants() needs a generated sandbox"),
        }
        self
    }

    /// `--rng-seed S`: the seed of fault injection (and of the generator, unless
    /// [`Self::generation_seed`] says otherwise).
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = seed;
        self
    }

    /// The generator's seed alone, apart from the fault injection's.
    pub fn generation_seed(mut self, seed: u64) -> Self {
        match &mut self.seed {
            Seed::Generate { rng_seed, .. } => *rng_seed = Some(seed),
            Seed::File(_) => panic!("generation_seed() needs a generated sandbox"),
        }
        self
    }

    /// `--throttle real|off|scaled:K` (default `real`).
    pub fn throttle(mut self, mode: &str) -> Self {
        self.throttle = Some(mode.to_owned());
        self
    }

    /// `--latency MS[+-JITTER]`.
    pub fn latency(mut self, latency: &str) -> Self {
        self.latency = Some(latency.to_owned());
        self
    }

    /// `--faults SPEC`.
    pub fn faults(mut self, spec: &str) -> Self {
        self.faults = Some(spec.to_owned());
        self
    }

    /// `--state FILE`: the sandbox persists there (and on drop, after a clean shutdown).
    pub fn state_file(mut self, path: &Path) -> Self {
        self.state_file = Some(path.to_owned());
        self
    }

    /// `--flag-only-patch-noop`.
    pub fn flag_only_patch_noop(self) -> Self {
        self.configure(|c| c.flag_only_patch_noop = true)
    }

    /// `--read-lag MS`.
    pub fn read_lag(self, lag: Duration) -> Self {
        self.configure(move |c| c.realism.read_lag = lag)
    }

    /// Any other setting of the sandbox, applied last.
    pub fn configure(mut self, tweak: impl FnOnce(&mut SandboxConfig) + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// The sandbox's configuration, as `pwdrift sandbox` builds it from the same flags.
    pub fn config(self) -> SandboxConfig {
        let seed = match self.seed {
            Seed::File(path) => SeedSource::File(path),
            Seed::Generate {
                users,
                tenants,
                rng_seed,
            } => {
                let rng_seed = rng_seed.unwrap_or(self.rng_seed);
                if tenants > 1 {
                    SeedSource::GenerateTenants {
                        tenants,
                        users,
                        rng_seed,
                    }
                } else {
                    SeedSource::Generate { users, rng_seed }
                }
            }
        };
        let mut c = SandboxConfig::new(seed);
        c.rng_seed = self.rng_seed;
        if let Some(t) = self.throttle {
            c.throttle = t;
        }
        c.latency = self.latency;
        c.faults = self.faults;
        c.state_file = self.state_file;
        for tweak in self.tweaks {
            tweak(&mut c);
        }
        c
    }

    /// Starts the sandbox on a runtime of its own (from a synchronous or an asynchronous test).
    pub fn start(self) -> Sandbox {
        let config = self.config();
        let state_file = config.state_file.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let running = off_runtime(|| {
            runtime.block_on(graph_sandbox::start(config, "127.0.0.1:0".parse().unwrap()))
        })
        .expect("sandbox starts");
        Sandbox::new(running, Some(runtime), state_file)
    }

    /// Starts the sandbox on the calling test's runtime.
    pub async fn start_here(self) -> Sandbox {
        let config = self.config();
        let state_file = config.state_file.clone();
        let running = graph_sandbox::start(config, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("sandbox starts");
        Sandbox::new(running, None, state_file)
    }
}

/// Runs `f` on a thread of its own when this thread is inside a Tokio runtime (where blocking on
/// another runtime is not allowed), else here.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(f).join().unwrap())
    } else {
        f()
    }
}

/// A Graph sandbox on a loopback port; stopped on drop (a configured state file is saved then).
pub struct Sandbox {
    running: Option<RunningSandbox>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The configured state file (saved by a clean shutdown on drop).
    state_file: Option<PathBuf>,
    /// The connection info (what `pwdrift sandbox` prints).
    pub info: SandboxInfo,
    /// The same, as JSON.
    json: serde_json::Value,
}

impl Sandbox {
    fn new(
        running: RunningSandbox,
        runtime: Option<tokio::runtime::Runtime>,
        state_file: Option<PathBuf>,
    ) -> Sandbox {
        let info = running.info.clone();
        let json = serde_json::to_value(&info).unwrap();
        Sandbox {
            running: Some(running),
            runtime,
            state_file,
            info,
            json,
        }
    }

    /// A sandbox seeded from a file.
    pub fn seed(path: impl AsRef<Path>) -> SandboxBuilder {
        SandboxBuilder::new(Seed::File(path.as_ref().to_owned()))
    }

    /// A sandbox of the shipped example tenant.
    pub fn contoso() -> SandboxBuilder {
        Self::seed(repo().join(CONTOSO_SEED))
    }

    /// A generated tenant of `users` users (and its admin).
    pub fn generate(users: usize) -> SandboxBuilder {
        SandboxBuilder::new(Seed::Generate {
            users,
            tenants: 1,
            rng_seed: None,
        })
    }

    /// A string field of the connection info, by its JSON name.
    pub fn get(&self, key: &str) -> String {
        self.json[key]
            .as_str()
            .unwrap_or_else(|| panic!("sandbox info has no {key}: {}", self.json))
            .to_owned()
    }

    pub fn graph_url(&self) -> String {
        self.get("graph_url")
    }

    /// Saves the state file now and returns its path.
    pub fn persist(&self) -> &Path {
        self.running.as_ref().unwrap().persist().unwrap();
        self.state_file
            .as_deref()
            .expect("a sandbox started with a state file")
    }

    /// The client's endpoints for this sandbox (Graph and the authority on its port).
    pub fn endpoints(&self) -> Endpoints {
        let i = &self.info;
        Endpoints::new(
            Cloud::Global,
            Some(i.graph_url.as_str()),
            Some(i.authority_host.as_str()),
        )
        .expect("loopback endpoints are accepted")
    }

    /// The seeded app's client-secret credential (app-only).
    pub fn app_credential(&self) -> Credential {
        let i = &self.info;
        Credential::ClientSecret {
            tenant: i.tenant_id.clone(),
            client_id: i.client_id.clone(),
            secret: SecretString::from(i.client_secret.clone()),
        }
    }

    /// ROPC as the seeded admin, through the seeded public client.
    pub fn delegated_credential(&self) -> Credential {
        let i = &self.info;
        Credential::UsernamePassword {
            tenant: i.tenant_id.clone(),
            client_id: i
                .delegated_client_id
                .clone()
                .expect("a public client in the seed"),
            username: i
                .delegated_username
                .clone()
                .expect("a delegated admin in the seed"),
            password: SecretString::from(
                i.delegated_password
                    .clone()
                    .expect("the admin's password in the seed"),
            ),
        }
    }

    /// `pwdrift` with the environment and flags that point it at this sandbox with app-only
    /// credentials (Azure SDK environment conventions).
    pub fn pwdrift(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("AZURE_CLIENT_ID", self.get("client_id"))
            .env("AZURE_CLIENT_SECRET", self.get("client_secret"))
            .env("AZURE_TENANT_ID", self.get("tenant_id"))
            .env("PWDRIFT_GRAPH_URL", self.graph_url())
            .env("AZURE_AUTHORITY_HOST", self.get("authority_host"))
            .env("PWDRIFT_LOCK_DIR", self.lock_dir());
        cmd
    }

    /// The tenant-lock directory of the runs against this sandbox (`PWDRIFT_LOCK_DIR`): one per
    /// sandbox, so that tests of one seed (one tenant id) running side by side do not wait for
    /// each other's locks, while every run against this sandbox shares it.
    pub fn lock_dir(&self) -> PathBuf {
        let port: String = self
            .graph_url()
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tenant-locks-{port}"))
    }

    /// [`Self::pwdrift`] with a delegated sign-in too (ROPC as the seeded admin).
    pub fn pwdrift_delegated(&self) -> Command {
        let i = &self.info;
        let mut cmd = self.pwdrift();
        cmd.env("AZURE_USERNAME", i.delegated_username.clone().unwrap())
            .env("AZURE_PASSWORD", i.delegated_password.clone().unwrap())
            .env(
                "PWDRIFT_DELEGATED_CLIENT_ID",
                i.delegated_client_id.clone().unwrap(),
            );
        cmd
    }

    /// An HTTP call to the sandbox's observation/simulation endpoints (from a synchronous test).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let client = reqwest::Client::new();
            let url = format!("{}{}", self.graph_url(), path);
            let mut req = client.request(method.parse().unwrap(), &url);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.expect("sandbox call");
            let status = resp.status();
            let text = resp.text().await.unwrap();
            assert!(status.is_success(), "{method} {path}: {status} {text}");
            if text.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(&text).unwrap()
            }
        })
    }

    /// `GET /_sandbox/stats`.
    pub fn stats(&self) -> serde_json::Value {
        self.call("GET", "/_sandbox/stats", None)
    }

    /// `GET /_sandbox/state`.
    pub fn state(&self) -> serde_json::Value {
        self.call("GET", "/_sandbox/state", None)
    }

    /// The PATCHes the sandbox received for one user.
    pub fn patches_of(&self, upn: &str) -> u64 {
        self.stats()["patchesPerUser"][upn].as_u64().unwrap_or(0)
    }

    /// The PATCHes the sandbox received, all users together.
    pub fn total_patches(&self) -> u64 {
        self.stats()["patchesPerUser"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let (Some(running), Some(runtime)) = (self.running.take(), self.runtime.take()) else {
            // started on the test's runtime: dropped like any value of the test
            return;
        };
        if self.state_file.is_some() {
            // settle and save the state file, as `pwdrift sandbox` does on SIGTERM
            off_runtime(|| runtime.block_on(running.shutdown()));
        } else {
            drop(running);
        }
        runtime.shutdown_background();
    }
}

/// The `pwdrift sandbox` process, for the tests of that command; killed on drop.
pub struct SandboxProcess {
    pub child: Child,
    /// The first line it printed.
    pub line: String,
}

impl SandboxProcess {
    /// Starts `pwdrift sandbox ARGS` (stdout piped, stderr discarded) and reads its first line.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> SandboxProcess {
        let mut child = Command::new(BIN)
            .arg("sandbox")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pwdrift sandbox");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read sandbox info line");
        SandboxProcess { child, line }
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
