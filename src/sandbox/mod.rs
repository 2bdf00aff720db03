//! The Graph sandbox: a real HTTP server on loopback implementing the documented behaviour of the
//! Microsoft Graph endpoints pwdrift uses (auth, users, groups, passwordProfile PATCH,
//! resetPassword, $batch), with the documented throttling model, fault injection and an
//! observation endpoint outside the Graph namespace.

pub mod batch;
pub mod faults;
pub mod throttle;
