//! Desired state: the pwdrift YAML format (version 1), its loader and its validator.
//!
//! Loading is two steps, as in cargo-deny: files are parsed into spanned YAML nodes, then validated
//! into the types of [`model`], which cannot be invalid (a UPN is a UPN, a timestamp has a zone, a
//! password is never a literal). Every problem found becomes a [`diag::Diagnostic`] naming file,
//! line and column; all problems of all files are reported in one run.

pub mod model;

pub use model::*;
