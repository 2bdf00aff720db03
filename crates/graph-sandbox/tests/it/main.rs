//! Integration tests of the Graph sandbox over loopback HTTP, in one test binary (one link).
//! Each module pins down one area of the documented behaviour; `util` starts sandboxes and signs
//! in.

#![allow(dead_code)]

mod auth;
mod layers;
mod perf;
mod realism;
mod reset;
mod roles;
mod snapshots;
mod state;
mod users;
mod util;
