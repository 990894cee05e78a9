//! The pool's worker slots: each runs one job at a time. A slot is free, running a job, or
//! (after its job panicked) waiting out its restart delay before it is free again.

use stagehand_core::{JobId, LeaseToken};
use tokio::task::AbortHandle;

/// The job a slot is running.
pub(super) struct Running {
    pub(super) id: JobId,
    pub(super) token: LeaseToken,
    pub(super) abort: AbortHandle,
}

/// A fixed set of slots, addressed by index, so finishing a job needs no lookup by id.
pub(super) struct Slots {
    slots: Vec<Option<Running>>,
    free: Vec<usize>,
    busy: usize,
}

impl Slots {
    /// `n` free slots.
    pub(super) fn new(n: usize) -> Self {
        Slots {
            slots: (0..n).map(|_| None).collect(),
            free: (0..n).rev().collect(),
            busy: 0,
        }
    }

    /// Slots ready for a job.
    pub(super) fn free(&self) -> usize {
        self.free.len()
    }

    /// Slots running a job.
    pub(super) fn busy(&self) -> usize {
        self.busy
    }

    /// Takes a free slot, if there is one.
    pub(super) fn reserve(&mut self) -> Option<usize> {
        self.free.pop()
    }

    /// Records the job a reserved slot runs.
    pub(super) fn fill(&mut self, slot: usize, running: Running) {
        self.slots[slot] = Some(running);
        self.busy += 1;
    }

    /// Empties a slot whose job finished; the caller frees it now or after a restart delay.
    pub(super) fn vacate(&mut self, slot: usize) -> Option<Running> {
        let running = self.slots.get_mut(slot)?.take();
        if running.is_some() {
            self.busy -= 1;
        }
        running
    }

    /// Makes an empty slot free for the next job.
    pub(super) fn release(&mut self, slot: usize) {
        self.free.push(slot);
    }

    /// The jobs running now.
    pub(super) fn running(&self) -> impl Iterator<Item = &Running> {
        self.slots.iter().flatten()
    }

    /// Empties every busy slot, returning their jobs; the slots become free.
    pub(super) fn vacate_all(&mut self) -> Vec<Running> {
        let mut out = Vec::with_capacity(self.busy);
        for slot in 0..self.slots.len() {
            if let Some(running) = self.vacate(slot) {
                out.push(running);
                self.release(slot);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(id: &str) -> Running {
        let handle = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .spawn(async {});
        Running {
            id: id.into(),
            token: LeaseToken(1),
            abort: handle.abort_handle(),
        }
    }

    #[test]
    fn slots_are_reserved_filled_vacated_and_released() {
        let mut slots = Slots::new(2);
        let a = slots.reserve().expect("first");
        let b = slots.reserve().expect("second");
        assert!(slots.reserve().is_none());
        slots.fill(a, running("a"));
        slots.fill(b, running("b"));
        assert_eq!((slots.free(), slots.busy()), (0, 2));
        assert_eq!(slots.vacate(a).map(|r| r.id), Some("a".into()));
        assert_eq!(
            (slots.free(), slots.busy()),
            (0, 1),
            "vacated is not yet free"
        );
        slots.release(a);
        assert_eq!(slots.free(), 1);
        let rest: Vec<_> = slots.vacate_all().into_iter().map(|r| r.id).collect();
        assert_eq!(rest, ["b".into()] as [JobId; 1]);
        assert_eq!((slots.free(), slots.busy()), (2, 0));
    }
}
