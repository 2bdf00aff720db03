//! The embedded Graph sandbox of `--sandbox SEED`: started in this process on an ephemeral
//! loopback port, with its own credentials, its state kept in `.pwdrift-sandbox/` beside the
//! seed so that `import`, `plan`, `apply`, `plan` see each other's writes (the last one shows
//! "No changes"). Without the `sandbox` feature, `--sandbox` is refused.

use std::path::{Path, PathBuf};

#[cfg(feature = "sandbox")]
use crate::graph::auth::Credential;
#[cfg(feature = "sandbox")]
use crate::graph::client::{ClientOptions, GraphClient};
#[cfg(feature = "sandbox")]
use crate::graph::notice::Notifier;

use super::error::{Context, EngineError};

#[cfg(feature = "sandbox")]
pub type EmbeddedSandbox = graph_sandbox::RunningSandbox;
#[cfg(not(feature = "sandbox"))]
pub type EmbeddedSandbox = std::convert::Infallible;

/// Largest sandbox seed read.
pub const MAX_SEED_BYTES: u64 = 256 << 20;

/// A seed must be a regular file of at most [`MAX_SEED_BYTES`] (a FIFO would hang the sandbox).
pub fn check_seed(seed: &Path) -> Result<(), EngineError> {
    crate::config::read::open_regular(seed, MAX_SEED_BYTES)
        .map(drop)
        .context_with(|| format!("cannot read the sandbox seed {}", seed.display()))
}

/// The state file of the embedded sandbox for a seed: `.pwdrift-sandbox/<seed name>.state.json`
/// beside the seed.
pub fn sandbox_state_path(seed: &Path) -> PathBuf {
    let dir = seed
        .parent()
        .unwrap_or(Path::new("."))
        .join(".pwdrift-sandbox");
    let name = seed
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "seed".into());
    dir.join(format!("{name}.state.json"))
}

/// Starts the embedded sandbox seeded from `seed`, its state kept in [`sandbox_state_path`].
#[cfg(feature = "sandbox")]
pub async fn start_embedded_sandbox(seed: &Path) -> Result<EmbeddedSandbox, EngineError> {
    use graph_sandbox::{SandboxConfig, SeedSource};
    check_seed(seed)?;
    let state = sandbox_state_path(seed);
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).context_with(|| format!("cannot create {}", dir.display()))?;
    }
    let mut config = SandboxConfig::new(SeedSource::File(seed.to_path_buf()));
    config.state_file = Some(state);
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let running = graph_sandbox::start(config, listen)
        .await
        .map_err(|e| EngineError::Foreign(super::error::Foreign::new(e)))?;
    tracing::info!(graph_url = %running.info.graph_url, "embedded Graph sandbox started");
    Ok(running)
}

/// Without the `sandbox` feature, `--sandbox` is refused.
#[cfg(not(feature = "sandbox"))]
pub async fn start_embedded_sandbox(_seed: &Path) -> Result<EmbeddedSandbox, EngineError> {
    Err(EngineError::refused(
        "--sandbox: this pwdrift was built without the `sandbox` feature",
    ))
}

/// Client options that reach the embedded sandbox (its Graph URL and authority); the Graph
/// library's notices go to `notices`.
#[cfg(feature = "sandbox")]
pub fn embedded_sandbox_options(
    running: &EmbeddedSandbox,
    notices: Notifier,
) -> Result<ClientOptions, EngineError> {
    use crate::graph::auth::Endpoints;
    let info = &running.info;
    let endpoints = Endpoints::new(
        crate::graph::auth::Cloud::Global,
        Some(&info.graph_url),
        Some(&info.authority_host),
    )?;
    let mut options = ClientOptions::new(endpoints);
    options.notices = notices;
    Ok(options)
}

/// The embedded sandbox's application client for `tenant` (client credentials it issued itself).
#[cfg(feature = "sandbox")]
pub fn embedded_sandbox_app(
    running: &EmbeddedSandbox,
    options: ClientOptions,
    tenant: &str,
) -> Result<GraphClient, EngineError> {
    let info = &running.info;
    Ok(GraphClient::new(
        options,
        Credential::ClientSecret {
            tenant: tenant.to_owned(),
            client_id: info.client_id.clone(),
            secret: info.client_secret.clone().into(),
        },
    )?)
}

/// The embedded sandbox's delegated client for `tenant`, when the seed has a delegated user.
#[cfg(feature = "sandbox")]
pub fn embedded_sandbox_delegated(
    running: &EmbeddedSandbox,
    options: ClientOptions,
    tenant: &str,
) -> Result<Option<GraphClient>, EngineError> {
    let info = &running.info;
    Ok(
        match (
            &info.delegated_client_id,
            &info.delegated_username,
            &info.delegated_password,
        ) {
            (Some(public_client), Some(user), Some(pw)) => Some(GraphClient::new(
                options,
                Credential::UsernamePassword {
                    tenant: tenant.to_owned(),
                    client_id: public_client.clone(),
                    username: user.clone(),
                    password: pw.clone().into(),
                },
            )?),
            _ => None,
        },
    )
}

/// Stops the embedded sandbox, persisting its state.
pub async fn stop_embedded_sandbox(running: EmbeddedSandbox) {
    #[cfg(feature = "sandbox")]
    running.shutdown().await;
    #[cfg(not(feature = "sandbox"))]
    match running {}
}
