//! Whether the runtime's pools reach their queue store: each pool loop reports its calls, and
//! the runtime speaks of an outage once (see [`Outage`]) however many loops see it. `/ready`
//! answers 503 while any loop is waiting for the store, so it turns 200 only once the pools
//! work again.

use std::collections::BTreeSet;

use parking_lot::Mutex;
use stagehand_core::StoreError;
use stagehand_core::outage::{Outage, OutageNote};

/// The store's health as the pools see it.
#[derive(Debug, Default)]
pub struct StoreHealth {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Pool loops (by worker id) whose last store call failed, with their queue.
    waiting: BTreeSet<(String, String)>,
    /// Other parts (the scheduler) whose last store call failed: they share the telling of
    /// an outage, but `/ready` is about the pools.
    aside: BTreeSet<String>,
    outage: Outage,
}

impl StoreHealth {
    /// A call of `worker` (a loop of `queue`'s pool) failed. Says whether this failure began
    /// an outage (so that it is alerted once, whichever pool sees it first).
    pub fn failed(&self, queue: &str, worker: &str, err: &StoreError) -> bool {
        let mut inner = self.inner.lock();
        inner
            .waiting
            .insert((queue.to_string(), worker.to_string()));
        Self::tell(&mut inner, queue, err)
    }

    /// A store call of `part` (not a pool: the scheduler, say) failed.
    pub fn failed_aside(&self, part: &str, queue: &str, err: &StoreError) {
        let mut inner = self.inner.lock();
        inner.aside.insert(part.to_string());
        Self::tell(&mut inner, queue, err);
    }

    /// A store call of `part` succeeded.
    pub fn answered_aside(&self, part: &str) {
        let mut inner = self.inner.lock();
        if inner.aside.remove(part) {
            Self::maybe_over(&mut inner);
        }
    }

    /// The outage is over once the pools work again (the other parts follow within seconds).
    fn maybe_over(inner: &mut Inner) {
        if inner.waiting.is_empty()
            && let Some(lasted) = inner.outage.answered()
        {
            tracing::info!(
                down_ms = lasted.as_millis() as u64,
                "queue store answers again; pools resume"
            );
        }
    }

    /// Logs a failure as the outage so far calls for; says whether it began the outage.
    fn tell(inner: &mut Inner, queue: &str, err: &StoreError) -> bool {
        let note = inner.outage.failed();
        match note {
            Some(OutageNote::Started) => tracing::error!(
                queue, error = %err,
                "queue store unavailable: pools wait for it and /ready answers 503; retrying"
            ),
            Some(OutageNote::StillDown(lasted)) => tracing::warn!(
                queue, error = %err, down_s = lasted.as_secs(),
                "queue store still unavailable; retrying"
            ),
            None => tracing::debug!(queue, error = %err, "queue store call failed; retrying"),
        }
        matches!(note, Some(OutageNote::Started))
    }

    /// A call of `worker` succeeded.
    pub fn answered(&self, queue: &str, worker: &str) {
        let mut inner = self.inner.lock();
        if inner
            .waiting
            .remove(&(queue.to_string(), worker.to_string()))
        {
            Self::maybe_over(&mut inner);
        }
    }

    /// The queues with a pool loop waiting for the store.
    pub fn waiting(&self) -> Vec<String> {
        let inner = self.inner.lock();
        let mut queues: Vec<String> = inner.waiting.iter().map(|(q, _)| q.clone()).collect();
        queues.dedup();
        queues
    }
}
