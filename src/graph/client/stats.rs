//! The client's counters ([`ClientStats`]) for the run summary: requests, retries, throttling,
//! token requests. Lock-free atomics, bumped by the executor and the `$batch` queue.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for the run summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent to Graph (a `$batch` envelope counts once).
    pub requests: u64,
    /// Requests carried inside `$batch` envelopes (each attempt counts).
    pub batch_inner_requests: u64,
    /// Retries: re-sent requests and re-batched inner requests.
    pub retries: u64,
    /// 429 responses seen (envelopes and inner requests).
    pub throttled: u64,
    /// Retried 5xx responses seen (envelopes and inner requests).
    pub server_errors: u64,
    /// Transport errors (connection reset, incomplete body, timeout).
    pub transport_errors: u64,
    /// 401s answered by fetching a new token.
    pub token_refreshes: u64,
    /// Requests sent to the token endpoint.
    pub token_requests: u64,
    /// Times `x-ms-throttle-limit-percentage` made the client slow down.
    pub slowdowns: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) requests: AtomicU64,
    pub(super) batch_inner_requests: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) throttled: AtomicU64,
    pub(super) server_errors: AtomicU64,
    pub(super) transport_errors: AtomicU64,
    pub(super) token_refreshes: AtomicU64,
    pub(super) slowdowns: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
