//! SIGINT and SIGTERM for `apply`, as the exit status each stands for (130, 143). Handled here,
//! in the command layer: the engine only sees their effect (its `Cancel` set, its `stop` future
//! resolved).

use crate::cli::ExitStatus;

/// SIGINT and SIGTERM, once the writes start (before that, the default: the process ends).
pub struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use anyhow::Context;
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
                term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal, as the exit status it stands for.
    pub async fn next(&mut self) -> ExitStatus {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => ExitStatus::Interrupted,
                _ = self.term.recv() => ExitStatus::Terminated,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            ExitStatus::Interrupted
        }
    }
}
