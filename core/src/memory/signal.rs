//! Waiting for work: a watch channel bumped on every change that may make work ready, bounded
//! by the next delayed job's due time (none while the queue is paused).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::state::Inner;
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::store::WorkSignal;

/// What the store shares with its work signals.
pub(super) struct Shared {
    pub(super) inner: Mutex<Inner>,
    pub(super) work: watch::Sender<u64>,
}

impl Shared {
    /// When a worker should look again for delayed work: the next due time, unless the queue
    /// is paused (a paused queue hands nothing out, so a due job is no reason to wake).
    pub(super) fn next_due(&self) -> Option<u64> {
        let inner = self.inner.lock();
        if inner.paused {
            return None;
        }
        inner.delayed.keys().next().map(|(at, _)| *at)
    }
}

/// Wakes one worker when work may be ready.
pub(super) struct MemorySignal {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: watch::Receiver<u64>,
}

#[async_trait]
impl WorkSignal for MemorySignal {
    async fn wait(&mut self, max_wait: Duration) -> Result<(), StoreError> {
        let wait = match self.shared.next_due() {
            Some(due) => max_wait.min(Duration::from_millis(due.saturating_sub(now_ms()))),
            None => max_wait,
        };
        if wait.is_zero() {
            return Ok(());
        }
        // A timeout or a closed channel both just mean "look again".
        let _ = tokio::time::timeout(wait, self.rx.changed()).await;
        Ok(())
    }
}
