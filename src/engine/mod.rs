//! The engine: what a run of pwdrift does, callable without the command line. Load desired
//! state ([`load_desired`]), connect ([`Session::open`], from [`settings`] resolved once by the
//! caller), plan ([`plan()`], deciding by the clock it is given), re-check a saved plan against
//! live state ([`recheck()`]), apply and verify ([`apply`]), report ([`report`]), import a tenant
//! into desired state ([`import`]).
//!
//! The engine prints nothing: it returns values, and hands what the user should see on the way
//! (notes, warnings of the desired state) to an [`Observer`]. Problems the user fixes in the
//! desired state are returned as [`Rejected`] (with the diagnostics to show), failures as
//! [`EngineError`]. It does not know clap: the command layer turns the flags into
//! [`settings`] types.

pub mod apply;
pub mod clock;
pub mod error;
pub mod files;
pub mod import;
pub mod lease;
pub mod lock;
pub mod plan;
pub mod recheck;
pub mod report;
pub mod sandbox;
pub mod secrets_view;
pub mod session;
pub mod settings;
pub mod show;
pub mod steps;
pub mod tenant_check;

use futures_util::StreamExt;

use crate::config::{self, Diagnostic, SourceMap};

pub use error::EngineError;
pub use plan::{made_from, plan};
pub use recheck::{recheck, saved_plan};
pub use session::{AliasConflict, Session, TenantSession};
pub use settings::{ApplySettings, ConnectSettings, ImportSettings, TargetSettings};

/// Where the engine hands what the user should see while it works.
pub trait Observer {
    /// An informational line (a note, what is being resolved).
    fn info(&self, text: &str);
    /// Warnings of desired state loaded on the way (the lines shown come from `sources`).
    fn warnings(&self, diagnostics: &[Diagnostic], sources: &SourceMap);
    /// A warning about the run (one line without a `warning:` prefix, e.g. the local clock far
    /// from Graph's).
    fn warning(&self, text: &str) {
        self.info(text);
    }
}

/// Why a run stops before writing anything, for a reason the user fixes (the desired state, or
/// a saved plan that no longer holds). Nothing was written.
#[derive(Debug)]
pub enum Rejected {
    /// desired state is invalid
    Invalid(config::Invalid),
    /// desired state is invalid once its tenants are resolved (one tenant written several ways
    /// declares a user or group twice)
    AliasConflict {
        diagnostics: Vec<Diagnostic>,
        sources: SourceMap,
    },
    /// desired state does not match the tenant (a user that does not exist, ...)
    Mismatch {
        diagnostics: Vec<Diagnostic>,
        sources: SourceMap,
    },
    /// the desired-state files a saved plan records are missing or changed
    Changed(Vec<String>),
    /// a saved plan is not the plan its desired state gives against live state now
    Differs(crate::plan::Mismatch),
}

/// Loads desired state: the files' source map (for the diagnostics of later steps) and digests
/// (for a saved plan) come with it. `allow_password_dirs`: `--allow-password-dir`.
pub fn load_desired(
    paths: &[std::path::PathBuf],
    allow_password_dirs: &[std::path::PathBuf],
) -> Result<config::Loaded, config::Invalid> {
    config::load_paths_with(
        paths,
        &config::LoadOptions {
            allow_password_dirs: allow_password_dirs.to_vec(),
        },
    )
}

/// Tenants worked on at once (opening, reading, applying). Each tenant has its own client
/// pacing (Graph's limits are per app + tenant), so tenants do not slow each other down on the
/// Graph side; the bound keeps the number of connections and of tenants' data in memory sane.
pub const TENANT_CONCURRENCY: usize = 32;

/// Runs tenant futures, [`TENANT_CONCURRENCY`] at a time, results in input order; the first
/// error (in input order) wins.
pub async fn all_tenants<T, E, F>(futures: Vec<F>) -> Result<Vec<T>, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let results: Vec<Result<T, E>> = futures_util::stream::iter(futures)
        .buffered(TENANT_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Lets a large value go without freeing it, when the command is about to end and the process
/// with it: freeing a plan of 1,000,000 users one allocation at a time (several million of them,
/// with the allocator coalescing as it goes) costs more than the OS reclaiming the pages at
/// once. Only for values whose `Drop` does nothing but free memory (no secret to zeroize, no
/// file or connection to close): the desired state and the plan hold neither.
pub fn leak_at_exit<T>(value: T) {
    std::mem::forget(value);
}
