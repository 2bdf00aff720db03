//! Authentication against the Microsoft identity platform: the national-cloud endpoints and the
//! loopback rule for plain `http://` (`cloud`), the credentials pwdrift authenticates with
//! (`credential`), and token acquisition with a per-tenant cache (`token`). The token endpoint
//! is retried with the Graph client's policy (`graph::retry`).
//!
//! # Why hand-written and not `azure_identity`
//!
//! `azure_identity` (1.x, the Azure SDK for Rust) was the first candidate. It cannot serve pwdrift:
//! its `get_authority_host` rejects any authority whose scheme is not `https` ("authority host
//! doesn't use HTTPS scheme"), and the Graph sandbox, our integration-test peer and the embedded
//! default, is `http://127.0.0.1:PORT`. It also dropped the device-code and username/password
//! flows from its public credentials (pwdrift needs a delegated sign-in for `resetPassword`), and
//! it brings its own HTTP pipeline (`azure_core`/`typespec`) beside the reqwest client pwdrift
//! already has, so the TLS switch and the retry/pacing policy would have to be configured twice.
//! What pwdrift needs is small and documented: a form POST to `{authority}/{tenant}/oauth2/v2.0/token`
//! (client secret, or a JWT client assertion: certificate-signed, a federated token file, or a
//! GitHub OIDC token), the device-code endpoint, and ROPC. So it is written here, on reqwest
//! (rustls), with jsonwebtoken for the PS256 certificate assertion.
//!
//! What the token endpoint's answers mean (transient or permanent, and the well-known `AADSTS`
//! codes) is `aadsts`.

mod aadsts;
mod cloud;
mod credential;
mod token;

use std::fmt;
use std::path::PathBuf;

pub use aadsts::{is_transient, KnownCode, KNOWN_CODES};
pub(crate) use cloud::{checked_url, is_loopback, origin};
pub use cloud::{Cloud, Endpoints};
pub use credential::Credential;
pub(crate) use token::TokenProvider;
pub use token::{access_token_problem, tenant_id_from_token, token_response};

/// Everything that can go wrong while configuring a credential or acquiring a token. The
/// `Display` text never contains a secret, a token or a password.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no Graph credential configured: {0}")]
    NotConfigured(String),
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("refusing plain http:// to {url}: http is only allowed to loopback (127.0.0.0/8, ::1, localhost); use https")]
    InsecureUrl { url: String },
    #[error("{0}")]
    Token(Box<TokenFailure>),
    #[error("token endpoint unreachable: {0}")]
    Transport(String),
    #[error("unexpected response from {what}: {message}")]
    Decode { what: String, message: String },
    #[error("certificate {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("federated token file {path}: {message}")]
    FederatedTokenFile { path: PathBuf, message: String },
    #[error("GitHub Actions OIDC token request failed: {0}")]
    GitHubOidc(String),
    #[error("device code sign-in failed: {0}")]
    DeviceCode(String),
    /// Graph answered 401 to the pre-acquired token; `reason` says what is wrong with it, as far
    /// as its claims tell ([`access_token_problem`]), and what to do.
    #[error("the pre-acquired access token (PWDRIFT_ACCESS_TOKEN) was rejected by Graph{graph_said}: {reason}")]
    AccessTokenRejected { graph_said: String, reason: String },
}

/// A refusal from the token endpoint: the OAuth `error` and `error_description` (Entra's text,
/// e.g. `AADSTS7000215: Invalid client secret provided.`; it never echoes the secret), the
/// `AADSTS` codes it names, and whether it was transient (then it was retried first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFailure {
    pub tenant: String,
    pub status: u16,
    pub error: String,
    pub description: String,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
    /// the `AADSTS` codes of the answer (`error_codes`, else those in the description)
    pub codes: Vec<u64>,
    /// a transient answer (5xx, 429, `temporarily_unavailable`), still so after the retries
    pub transient: bool,
}

impl TokenFailure {
    /// The well-known `AADSTS` codes of this refusal, with their meaning and hint.
    pub fn known_codes(&self) -> Vec<&'static KnownCode> {
        self.codes
            .iter()
            .filter_map(|&c| aadsts::known(c))
            .collect()
    }
}

impl fmt::Display for TokenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::escape::Shown;
        // the authority's words (and the tenant as the user gave it) on one line, escaped
        write!(
            f,
            "token request for tenant {} refused ({}): {}: {}{}",
            Shown(&self.tenant),
            self.status,
            Shown(&self.error),
            Shown(&self.description),
            trace_suffix(&self.trace_id, &self.correlation_id)
        )?;
        if self.transient {
            write!(
                f,
                "; a transient answer (the authority is busy or unavailable), still so after the \
                 retries: try again later"
            )?;
        }
        if !self.codes.is_empty() {
            write!(f, "; {}", aadsts::explain(&self.codes))?;
        }
        Ok(())
    }
}

fn trace_suffix(trace: &Option<String>, corr: &Option<String>) -> String {
    use crate::escape::Shown;
    match (trace, corr) {
        (None, None) => String::new(),
        (t, c) => format!(
            " (trace_id {}, correlation_id {})",
            Shown(t.as_deref().unwrap_or("-")),
            Shown(c.as_deref().unwrap_or("-"))
        ),
    }
}
