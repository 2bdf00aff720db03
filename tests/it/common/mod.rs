//! The integration tests' one support module: start the Graph sandbox ([`Sandbox`], in
//! `sandbox.rs`), start the scripted server ([`Scripted`], in `scripted.rs`), run the real
//! `pwdrift` binary and read what it printed, write test files, and capture the trace log.
//!
//! The one peer not here is `hostile.rs`'s raw HTTP/1.1 server: it answers bytes that no
//! well-behaved server (axum included) sends, such as a body shorter than its length or none.

mod sandbox;
mod scripted;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use sandbox::{Sandbox, SandboxBuilder, SandboxProcess, CONTOSO_SEED};
pub use scripted::{json_response, status_with, Scripted, Seen};

pub const BIN: &str = env!("CARGO_BIN_EXE_pwdrift");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
    std::fs::copy(repo().join(CONTOSO_SEED), &p).unwrap();
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
