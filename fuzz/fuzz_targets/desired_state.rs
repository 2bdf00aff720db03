//! Fuzz target `desired_state`: see `fuzz/harness.rs`.
#![no_main]

// each target uses one body of the shared harness
#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::desired_state(data));
