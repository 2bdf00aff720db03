//! `pwdrift sandbox`: runs the Graph sandbox until SIGINT/SIGTERM.
//!
//! The first line on stdout is one JSON object ([`crate::sandbox::SandboxInfo`]) with the URLs and
//! the app-only credentials the sandbox accepts, flushed at once so scripts can read it; nothing
//! else is written to stdout. Logs go to stderr. On SIGINT/SIGTERM the server stops and `--state`
//! is saved.

use std::net::SocketAddr;

use anyhow::Context;

use crate::cli::{ExitStatus, SandboxArgs};
use crate::printer::Printer;
use crate::sandbox::{start, SandboxConfig};

pub fn run(args: SandboxArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    let listen: SocketAddr = args.listen.parse().with_context(|| {
        format!(
            "--listen {}: expected ADDRESS:PORT, e.g. 127.0.0.1:0",
            args.listen
        )
    })?;
    if !listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {listen}: the sandbox listens on loopback addresses only (127.0.0.1 or ::1)"
        );
    }
    let config = SandboxConfig::from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let sandbox = start(config, listen).await?;
        printer.outln(&serde_json::to_string(&sandbox.info)?)?;
        tracing::info!("sandbox listening on {}", sandbox.info.graph_url);
        wait_for_signal().await;
        sandbox.shutdown().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitStatus::Success)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
