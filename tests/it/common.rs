//! Helpers shared by the end-to-end tests: run the real `pwdrift` binary, and start the Graph
//! sandbox as a real process on a loopback port (`pwdrift sandbox ... --listen 127.0.0.1:0`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_pwdrift");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `pwdrift sandbox` process; killed on drop.
pub struct Sandbox {
    child: Child,
    pub info: serde_json::Value,
}

impl Sandbox {
    /// Starts `pwdrift sandbox` with these extra arguments and reads its first stdout line.
    pub fn start(args: &[&str]) -> Sandbox {
        let mut child = Command::new(BIN)
            .arg("sandbox")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pwdrift sandbox");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read sandbox info line");
        let info: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("sandbox info {line:?}: {e}"));
        Sandbox { child, info }
    }

    pub fn get(&self, key: &str) -> String {
        self.info[key]
            .as_str()
            .unwrap_or_else(|| panic!("sandbox info has no {key}: {}", self.info))
            .to_owned()
    }

    pub fn graph_url(&self) -> String {
        self.get("graph_url")
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
            .env("AZURE_AUTHORITY_HOST", self.get("authority_host"));
        cmd
    }

    /// An HTTP call to the sandbox's observation/simulation endpoints.
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
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The output of a finished command, as text.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run pwdrift");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Writes a desired-state file into `dir` and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Copies the shipped seed into `dir` (so the embedded sandbox keeps its state there).
pub fn seed_copy(dir: &Path) -> PathBuf {
    let p = dir.join("contoso.seed.yaml");
    std::fs::copy(repo().join("examples/sandbox/contoso.seed.yaml"), &p).unwrap();
    p
}

/// Everything logged at TRACE level by any test of this binary, from the first call on.
///
/// One global subscriber for the whole binary: a thread-local one (`set_default`) misses events
/// when other tests touch the same callsites concurrently (tracing caches callsite interest), and
/// only one global subscriber can be installed per process. The other tests' events land in it
/// too, which only widens a "no secret in the log" check.
#[derive(Clone, Default)]
pub struct TraceLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl TraceLog {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for TraceLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn trace_log() -> TraceLog {
    static LOG: std::sync::OnceLock<TraceLog> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = TraceLog::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        log
    })
    .clone()
}
