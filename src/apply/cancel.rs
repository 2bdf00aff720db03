//! Stopping a run: a [`Cancel`] set by the first SIGINT/SIGTERM, after which no write starts,
//! and [`admit`], the wait for the tenant's pacer that a cancel cuts short.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::graph::client::{GraphClient, WriteSlot};

/// Set by the first SIGINT/SIGTERM: no new write starts (writes waiting for their turn give it
/// up at once); writes in flight finish and their outcomes are recorded.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Completes once [`Cancel::cancel`] was called.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // registered before the flag is read, so a cancel in between is not missed
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Waits for the tenant's pacer to admit one write (an in-flight slot, room in the write
/// quotas), unless the run is cancelled first (`None`: the write is not started).
pub(super) async fn admit(
    client: &GraphClient,
    tenant: &str,
    cancel: &Cancel,
) -> Option<WriteSlot> {
    unless_cancelled(cancel, client.admit_write(tenant)).await
}

/// [`admit`] of a resetPassword: its turn within the tenant's authentication-method limit (5
/// per 10 s by default) first, then the write's admission; a cancel cuts either wait short.
pub(super) async fn admit_reset(
    client: &GraphClient,
    tenant: &str,
    cancel: &Cancel,
) -> Option<WriteSlot> {
    unless_cancelled(cancel, client.admit_reset_password(tenant)).await
}

/// `admission`'s slot, or `None` when the run is (or gets) cancelled before it is admitted.
async fn unless_cancelled(
    cancel: &Cancel,
    admission: impl std::future::Future<Output = WriteSlot>,
) -> Option<WriteSlot> {
    if cancel.is_cancelled() {
        return None;
    }
    tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        slot = admission => Some(slot),
    }
}
