//! The engine's error type. The command layer turns it into an `anyhow::Error` (its chain of
//! causes is kept: a wrapped error's `Display` and `source` are its own), so that what the user
//! reads is the same whichever layer a failure comes from.

use std::error::Error as StdError;
use std::fmt;

use crate::apply::ApplyError;
use crate::graph::auth::AuthError;
use crate::graph::client::GraphError;
use crate::live::LiveError;
use crate::secrets::SecretsError;

/// Desired state that names one tenant several ways (its initial domain, a verified domain, its
/// id) and, across those files, declares a user or group twice. Found once the tenants are
/// resolved, before anything is read or written; the diagnostics name both places.
#[derive(Debug)]
pub struct AliasConflict(pub Vec<crate::config::Diagnostic>);

impl std::fmt::Display for AliasConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "desired state declares {} user(s) or group(s) twice for one tenant written several ways",
            self.0.len()
        )
    }
}

impl std::error::Error for AliasConflict {}

/// What can stop an engine call. Problems the user fixes in the desired state (diagnostics with
/// file, line and column) are not errors but outcomes (see [`super::Rejected`]).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error(transparent)]
    Rails(#[from] crate::rails::Refusal),
    #[error(transparent)]
    AliasConflict(#[from] AliasConflict),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// an error of a library that reports through `anyhow` (the sandbox crate), kept as it was
    #[error(transparent)]
    Foreign(Foreign),
    /// a failure, said in the words of what was being done, with its cause
    #[error("{what}")]
    Context {
        what: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// a request pwdrift refuses (a flag that does not fit, a value that is not one)
    #[error("{0}")]
    Refused(String),
}

impl EngineError {
    /// A refusal worded by the caller.
    pub fn refused(message: impl Into<String>) -> Self {
        EngineError::Refused(message.into())
    }
}

/// An error that carries its own chain of causes (from `anyhow`, through `Box<dyn Error>`),
/// shown as it was.
#[derive(Debug)]
pub struct Foreign(Box<dyn StdError + Send + Sync>);

impl Foreign {
    pub fn new(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Foreign(e.into())
    }
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Foreign {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// `.context(...)` for the engine: wraps an error as [`EngineError::Context`].
pub trait Context<T> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T, EngineError>;
}

impl<T, E: StdError + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn context_with(self, what: impl FnOnce() -> String) -> Result<T, EngineError> {
        self.map_err(|e| EngineError::Context {
            what: what(),
            source: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages of a chain, as the command layer prints them.
    fn chain(e: &EngineError) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut cur = e.source();
        while let Some(c) = cur {
            out.push(c.to_string());
            cur = c.source();
        }
        out
    }

    #[test]
    fn wrapped_errors_keep_their_chain() {
        let foreign = anyhow::anyhow!("root cause").context("cannot start");
        let e = EngineError::Foreign(Foreign::new(foreign));
        assert_eq!(chain(&e), ["cannot start", "root cause"]);
        let io: Result<(), _> = Err(std::io::Error::other("disk full"));
        let e = io.context_with(|| "cannot write x".to_owned()).unwrap_err();
        assert_eq!(chain(&e), ["cannot write x", "disk full"]);
        assert_eq!(chain(&EngineError::refused("no")), ["no"]);
    }
}
