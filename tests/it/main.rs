//! pwdrift's integration tests, in one test binary (one link): the real binary and the real Graph
//! client driven over loopback HTTP against the Graph sandbox (`graph-sandbox`, a dev-dependency),
//! plus desired-state validation and the committed schemas.

#![allow(dead_code)]

mod architecture;
mod authority;
mod blob_lease;
mod ci_recipes;
mod client_auth;
mod client_graph;
mod client_retry;
mod clock;
mod colour;
mod common;
mod e2e;
mod echoes;
mod examples;
mod fuzz_corpus;
mod guards;
mod hostile;
mod hostile_names;
mod import;
mod lock;
mod odd_answers;
mod pacing;
mod partitions;
mod perf;
mod properties;
mod reach;
mod readme;
mod real_graph;
mod release;
mod sandbox_cli;
mod schemas;
mod secrets_cmd;
mod selectors;
mod show;
mod stale_reads;
mod tenant_alias;
mod tenant_check;
mod validate;
mod writeahead;
