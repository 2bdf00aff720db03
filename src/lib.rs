//! pwdrift: reconcile the password state (`passwordProfile`) of Microsoft Entra ID users from
//! desired state kept as YAML files, in the style of `terraform plan` / `terraform apply`.
//!
//! The pipeline is visible in the module tree, one module per step with data types between them:
//!
//! ```text
//! config (load desired state) -> live (read live state) -> diff (pure: desired x live -> plan)
//!   -> render (text / json / markdown) -> apply (write through the Graph client) -> verify (read back)
//! ```
//!
//! All Microsoft Graph I/O goes through [`graph::client::GraphClient`]. The Graph sandbox (the
//! `graph-sandbox` crate of this workspace, behind the default-on `sandbox` feature) is a real
//! HTTP server implementing the documented behaviour of the endpoints that pwdrift uses; it is the
//! embedded default for trying pwdrift and the peer of the integration tests. It shares no code
//! with pwdrift; only the engine (the embedded sandbox of `--sandbox`), `pwdrift sandbox` and
//! the schema export use it.

mod apply;
pub mod cli;
pub mod commands;
pub mod config;
mod diff;
pub mod engine;
mod escape;
pub mod graph;
mod live;
mod password;
pub mod plan;
mod printer;
mod rails;
pub mod render;
mod schema;
pub mod secrets;
mod shard;
mod verify;
