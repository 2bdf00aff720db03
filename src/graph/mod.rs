//! Microsoft Graph: the wire types pwdrift (de)serialises ([`model`]), the credentials it
//! authenticates with ([`auth`]), the retry and pacing policy (`retry`), the one client
//! through which all Graph I/O goes ([`client`]), and the notices it returns instead of
//! printing ([`notice`]). Nothing here imports from the layers above (commands, cli).

pub mod auth;
pub mod client;
pub mod model;
pub mod notice;
pub(crate) mod retry;

/// A reqwest error with its causes (`error sending request: connection reset ...`), without the
/// URL.
pub(crate) fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}
