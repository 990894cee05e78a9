//! The store's state behind its mutex: every job's entry, the structures that order jobs by
//! state, and the moves between them (placing, promoting, settling, trimming).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::num::NonZeroU64;
use std::sync::Arc;

use serde_json::Value;

use super::CHUNK;
use crate::job::{AttemptOutcome, Job, JobId, JobState, Payload};
use crate::options::{JobOptions, Retention};
use crate::store::{JobEventKind, LeaseToken, Outcome, SettleResult, Settlement, seen_state};

pub(super) struct Entry {
    /// Shared with the worker running it, so a fetch hands it out without a deep copy;
    /// changed through `Arc::make_mut`, which copies only while a worker still holds it.
    pub(super) job: Arc<Job>,
    /// Orders the job within its current state; set on every placement.
    pub(super) seq: u64,
    pub(super) lease: Option<Lease>,
    /// Progress and logs change while a worker holds `job`, so they live beside it (no copy
    /// of the job per report) and are merged in when the job is read; boxed, since most jobs
    /// never report either.
    pub(super) reports: Option<Box<Reports>>,
}

/// What a job reported while it ran.
#[derive(Default)]
pub(super) struct Reports {
    pub(super) progress: Option<Value>,
    pub(super) logs: Vec<String>,
}

impl Entry {
    pub(super) fn new(job: Job) -> Entry {
        Entry {
            job: Arc::new(job),
            seq: 0,
            lease: None,
            reports: None,
        }
    }

    pub(super) fn progress(&self) -> Value {
        self.reports
            .as_ref()
            .and_then(|r| r.progress.clone())
            .unwrap_or(Value::from(0))
    }

    pub(super) fn logs(&self) -> Vec<String> {
        self.reports
            .as_ref()
            .map(|r| r.logs.clone())
            .unwrap_or_default()
    }

    pub(super) fn reports(&mut self) -> &mut Reports {
        self.reports.get_or_insert_with(Box::default)
    }
}

#[derive(Clone, Copy)]
pub(super) struct Lease {
    /// Never zero (tokens count from 1), which lets `Option<Lease>` take no more room.
    pub(super) token: NonZeroU64,
    pub(super) deadline: u64,
}

impl Lease {
    pub(super) fn new(token: LeaseToken, deadline: u64) -> Option<Lease> {
        NonZeroU64::new(token.0).map(|token| Lease { token, deadline })
    }

    pub(super) fn held_by(&self, token: LeaseToken) -> bool {
        self.token.get() == token.0
    }
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) jobs: HashMap<JobId, Entry, foldhash::fast::RandomState>,
    pub(super) next_id: u64,
    pub(super) next_seq: u64,
    pub(super) next_token: u64,
    /// Ready jobs without a priority, in run order, as (placement seq, id). Removing one
    /// leaves its item behind as stale (its seq no longer matches); pops and reads skip those,
    /// so no removal scans the list.
    pub(super) wait: VecDeque<(u64, JobId)>,
    /// Live items in `wait`.
    pub(super) waiting: usize,
    /// Ready jobs with a priority, by priority then [`ready_order`].
    pub(super) prioritized: BTreeMap<(u32, i64), JobId>,
    pub(super) delayed: BTreeMap<(u64, u64), JobId>,
    pub(super) active: HashSet<JobId, foldhash::fast::RandomState>,
    pub(super) completed: BTreeMap<(u64, u64), JobId>,
    pub(super) failed: BTreeMap<(u64, u64), JobId>,
    pub(super) paused: bool,
    /// The options of the last job added, for the next to share if they are the same.
    pub(super) last_options: Option<Arc<JobOptions>>,
    /// The queue's schedules, by id.
    pub(super) schedules: BTreeMap<String, crate::schedule::Schedule>,
}

/// Where a ready job stands among jobs of its priority: by placement order, newest first
/// for `lifo` jobs.
pub(super) fn ready_order(job: &Job, seq: u64) -> i64 {
    if job.options.lifo {
        -(seq as i64)
    } else {
        seq as i64
    }
}

/// Events produced under the lock, published after it is released.
pub(super) type Events = Vec<(JobId, JobEventKind)>;

impl Inner {
    pub(super) fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Puts a job where its state says, giving it a fresh order.
    pub(super) fn place(&mut self, id: &str, state: JobState) {
        let seq = self.seq();
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        entry.seq = seq;
        Arc::make_mut(&mut entry.job).state = state;
        let id = Arc::clone(&entry.job.id);
        match state {
            JobState::Waiting => {
                if entry.job.options.lifo {
                    self.wait.push_front((seq, id));
                } else {
                    self.wait.push_back((seq, id));
                }
                self.waiting += 1;
            }
            JobState::Prioritized => {
                let key = (entry.job.options.priority, ready_order(&entry.job, seq));
                self.prioritized.insert(key, id);
            }
            JobState::Delayed => {
                self.delayed.insert((entry.job.run_at, seq), id);
            }
            JobState::Active => {
                self.active.insert(id);
            }
            JobState::Completed => {
                let at = entry.job.finished_at.unwrap_or(0);
                self.completed.insert((at, seq), id);
            }
            JobState::Failed => {
                let at = entry.job.finished_at.unwrap_or(0);
                self.failed.insert((at, seq), id);
            }
            JobState::Paused => {}
        }
    }

    /// Takes a job out of the structure its state keeps it in.
    pub(super) fn unplace(&mut self, id: &str) {
        let Some(entry) = self.jobs.get(id) else {
            return;
        };
        let seq = entry.seq;
        match entry.job.state {
            JobState::Waiting | JobState::Paused => {
                // Its item in `wait` is stale from now on.
                self.waiting -= 1;
            }
            JobState::Prioritized => {
                let key = (entry.job.options.priority, ready_order(&entry.job, seq));
                self.prioritized.remove(&key);
            }
            JobState::Delayed => {
                self.delayed.remove(&(entry.job.run_at, seq));
            }
            JobState::Active => {
                self.active.remove(id);
            }
            JobState::Completed => {
                self.completed
                    .remove(&(entry.job.finished_at.unwrap_or(0), seq));
            }
            JobState::Failed => {
                self.failed
                    .remove(&(entry.job.finished_at.unwrap_or(0), seq));
            }
        }
    }

    pub(super) fn delete(&mut self, id: &str) -> bool {
        self.unplace(id);
        self.jobs.remove(id).is_some()
    }

    /// Moves due delayed jobs to ready, at most [`CHUNK`] per call.
    pub(super) fn promote_due(&mut self, now: u64) -> bool {
        let mut moved = false;
        for _ in 0..CHUNK {
            let Some(entry) = self.delayed.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            let state = match self.jobs.get(&id) {
                Some(e) => e.job.ready_state(),
                None => continue,
            };
            self.place(&id, state);
            moved = true;
        }
        moved
    }

    /// Whether an item of `wait` still stands for a waiting job.
    pub(super) fn is_live(&self, (seq, id): &(u64, JobId)) -> bool {
        self.jobs
            .get(id)
            .is_some_and(|e| e.seq == *seq && e.job.state == JobState::Waiting)
    }

    pub(super) fn live_waiting(&self) -> impl Iterator<Item = &JobId> {
        self.wait
            .iter()
            .filter(|item| self.is_live(item))
            .map(|(_, id)| id)
    }

    pub(super) fn pop_ready(&mut self) -> Option<JobId> {
        while let Some(item) = self.wait.pop_front() {
            if self.is_live(&item) {
                self.waiting -= 1;
                return Some(item.1);
            }
        }
        self.prioritized.pop_first().map(|(_, id)| id)
    }

    /// Applies a finished job's retention to its set (completed or failed).
    pub(super) fn trim(&mut self, state: JobState, keep: Retention, now: u64) {
        let Retention::Keep { count, age_ms } = keep else {
            return;
        };
        for _ in 0..CHUNK {
            let set = if state == JobState::Completed {
                &mut self.completed
            } else {
                &mut self.failed
            };
            let Some((&(finished, _), _)) = set.first_key_value() else {
                break;
            };
            let over_count = count.is_some_and(|c| set.len() as u64 > c);
            let too_old = age_ms.is_some_and(|age| finished.saturating_add(age) < now);
            if !(over_count || too_old) {
                break;
            }
            if let Some((_, id)) = set.pop_first() {
                self.jobs.remove(&id);
            }
        }
    }

    /// Ends the running attempt of an active job.
    pub(super) fn end_attempt(
        entry: &mut Entry,
        now: u64,
        outcome: AttemptOutcome,
        error: Option<String>,
    ) {
        entry.lease = None;
        if let Some(last) = Arc::make_mut(&mut entry.job).history.last_mut()
            && last.outcome == AttemptOutcome::Running
        {
            last.finished_at = Some(now);
            last.outcome = outcome;
            last.error = error;
        }
    }

    /// Fails an active job for good and applies its retention.
    pub(super) fn fail_for_good(&mut self, id: &str, reason: String, now: u64) -> Option<Job> {
        self.unplace(id);
        let entry = self.jobs.get_mut(id)?;
        let job = Arc::make_mut(&mut entry.job);
        job.failed_reason = Some(reason);
        job.finished_at = Some(now);
        let keep = entry.job.options.remove_on_fail;
        let mut ended = Job::clone(&entry.job);
        ended.state = JobState::Failed;
        ended.progress = entry.progress();
        if keep == Retention::RemoveAll {
            self.jobs.remove(id);
        } else {
            self.place(id, JobState::Failed);
            self.trim(JobState::Failed, keep, now);
        }
        Some(ended)
    }

    /// Sends a failed job back to ready ([`Job::reset_for_retry`]).
    pub(super) fn retry_job(&mut self, id: &str, now: u64) {
        self.unplace(id);
        let Some(entry) = self.jobs.get_mut(id) else {
            return;
        };
        Arc::make_mut(&mut entry.job).reset_for_retry(now);
        let ready = entry.job.ready_state();
        self.place(id, ready);
    }

    /// Puts an active job back to ready (or delayed, for a retry with backoff).
    pub(super) fn requeue(&mut self, id: &str, delay_ms: u64, now: u64) -> bool {
        self.unplace(id);
        let Some(entry) = self.jobs.get_mut(id) else {
            return false;
        };
        let state = if delay_ms > 0 {
            Arc::make_mut(&mut entry.job).run_at = now.saturating_add(delay_ms);
            JobState::Delayed
        } else {
            entry.job.ready_state()
        };
        self.place(id, state);
        delay_ms == 0
    }

    pub(super) fn settle_one(
        &mut self,
        s: Settlement,
        now: u64,
        events: &mut Events,
        woke: &mut bool,
    ) -> SettleResult {
        let Some(entry) = self.jobs.get_mut(&s.id) else {
            return SettleResult::LeaseLost;
        };
        if entry.job.state != JobState::Active || !entry.lease.is_some_and(|l| l.held_by(s.token)) {
            return SettleResult::LeaseLost;
        }
        match s.outcome {
            Outcome::Completed(value) => {
                Self::end_attempt(entry, now, AttemptOutcome::Completed, None);
                let job = Arc::make_mut(&mut entry.job);
                job.return_value = Some(Payload::new(&value));
                job.finished_at = Some(now);
                job.failed_reason = None;
                let keep = entry.job.options.remove_on_complete;
                self.unplace(&s.id);
                if keep == Retention::RemoveAll {
                    self.jobs.remove(&s.id);
                } else {
                    self.place(&s.id, JobState::Completed);
                    self.trim(JobState::Completed, keep, now);
                }
                events.push((s.id, JobEventKind::Completed));
                SettleResult::Completed
            }
            Outcome::Retry { reason, delay_ms } => {
                Self::end_attempt(entry, now, AttemptOutcome::Failed, Some(reason.clone()));
                let job = Arc::make_mut(&mut entry.job);
                job.failed_reason = Some(reason);
                if let Some(last) = job.history.last_mut() {
                    last.retry_delay_ms = Some(delay_ms);
                }
                *woke |= self.requeue(&s.id, delay_ms, now);
                events.push((s.id, JobEventKind::Retrying { delay_ms }));
                SettleResult::Retrying { delay_ms }
            }
            Outcome::Fail { reason } => {
                Self::end_attempt(entry, now, AttemptOutcome::Failed, Some(reason.clone()));
                match self.fail_for_good(&s.id, reason.clone(), now) {
                    Some(job) => {
                        events.push((s.id, JobEventKind::Failed { reason }));
                        SettleResult::Failed { job: Box::new(job) }
                    }
                    None => SettleResult::LeaseLost,
                }
            }
            Outcome::Released => {
                Self::end_attempt(entry, now, AttemptOutcome::Released, None);
                Arc::make_mut(&mut entry.job).released_count += 1;
                *woke |= self.requeue(&s.id, 0, now);
                SettleResult::Released
            }
        }
    }

    /// The state a reader sees: ready jobs of a paused queue show as paused.
    /// How many jobs are stored in `state`.
    pub(super) fn held(&self, state: JobState) -> usize {
        match state {
            JobState::Waiting => self.waiting,
            JobState::Prioritized => self.prioritized.len(),
            JobState::Delayed => self.delayed.len(),
            JobState::Active => self.active.len(),
            JobState::Completed => self.completed.len(),
            JobState::Failed => self.failed.len(),
            JobState::Paused => 0,
        }
    }

    /// Up to `take` ids stored in `state` after the first `skip`, in list order: ready ones in
    /// run order, delayed by due time, active by when they started, finished newest first.
    pub(super) fn ids_in(&self, state: JobState, skip: usize, take: usize) -> Vec<JobId> {
        let ids: Box<dyn Iterator<Item = &JobId>> = match state {
            JobState::Waiting => Box::new(self.live_waiting()),
            JobState::Prioritized => Box::new(self.prioritized.values()),
            JobState::Delayed => Box::new(self.delayed.values()),
            JobState::Completed => Box::new(self.completed.values().rev()),
            JobState::Failed => Box::new(self.failed.values().rev()),
            JobState::Active => {
                let mut active: Vec<&JobId> = self.active.iter().collect();
                active.sort_by_key(|id| self.jobs.get(*id).map_or(0, |e| e.seq));
                return active.into_iter().skip(skip).take(take).cloned().collect();
            }
            JobState::Paused => Box::new(std::iter::empty()),
        };
        ids.skip(skip).take(take).cloned().collect()
    }

    pub(super) fn visible(&self, entry: &Entry) -> Job {
        let mut job = Job::clone(&entry.job);
        job.progress = entry.progress();
        job.logs = entry.logs();
        job.state = seen_state(job.state, self.paused);
        job
    }
}
