//! Microsoft Graph: the wire types pwdrift (de)serialises ([`model`]), the credentials it
//! authenticates with ([`auth`]), the retry and
//! pacing policy ([`retry`]) and the one client through which all Graph I/O goes ([`client`]).

pub mod auth;
pub mod client;
pub mod model;
pub mod retry;
