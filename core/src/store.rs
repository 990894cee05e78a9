//! The queue store contract (ARCHITECTURE §3): one trait, kept by every backend, checked by
//! one conformance suite (`conformance`, feature `testkit`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::error::StoreError;
use crate::job::{Job, JobId, JobState, Payload};
use crate::options::JobOptions;
use crate::schedule::Schedule;

/// A job to add: its name, payload and resolved options.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The job's name.
    pub name: String,
    /// The payload, as JSON text.
    pub data: Payload,
    /// Options with defaults filled in.
    pub options: JobOptions,
}

impl NewJob {
    /// A job with this payload and the default options.
    pub fn new(name: impl Into<String>, data: Value) -> NewJob {
        NewJob::raw(name, Payload::new(&data))
    }

    /// A job with a payload that is JSON text already.
    pub fn raw(name: impl Into<String>, data: Payload) -> NewJob {
        NewJob {
            name: name.into(),
            data,
            options: JobOptions::default(),
        }
    }

    /// The same job with other options.
    pub fn with_options(mut self, options: JobOptions) -> NewJob {
        self.options = options;
        self
    }
}

/// What `add` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddResult {
    /// The job's id.
    pub id: JobId,
    /// False when a job with this `job_id` already existed and was returned instead.
    pub created: bool,
}

/// Proof that a worker holds a job's lease; settling needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken(pub u64);

/// A job handed to a worker, with its lease.
#[derive(Debug, Clone)]
pub struct ActiveJob {
    /// The job as it was when fetched.
    pub job: Arc<Job>,
    /// The lease token to settle it with.
    pub token: LeaseToken,
}

/// What settling does with a job. Core decides it ([`Job::after_failure`] for a failed
/// attempt); every store applies it as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The processor returned this value.
    Completed(Value),
    /// The attempt failed; the job runs again after `delay_ms` (0: as soon as a worker is free).
    Retry {
        /// Why the attempt failed.
        reason: String,
        /// The backoff before the next attempt.
        delay_ms: u64,
    },
    /// The job failed for good.
    Fail {
        /// Why.
        reason: String,
    },
    /// Not finished at shutdown: back to waiting, the attempt not counted.
    Released,
}

impl Outcome {
    /// The failure reason, for a failed attempt.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Retry { reason, .. } | Outcome::Fail { reason } => Some(reason),
            _ => None,
        }
    }
}

/// One job to settle.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// The job.
    pub id: JobId,
    /// The lease token it was fetched with.
    pub token: LeaseToken,
    /// How the attempt ended.
    pub outcome: Outcome,
}

/// What settling did to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum SettleResult {
    /// Now completed.
    Completed,
    /// Failed this attempt; will run again after `delay_ms`.
    Retrying {
        /// The backoff chosen.
        delay_ms: u64,
    },
    /// Failed for good.
    Failed {
        /// The job as it ended (for alerts and events).
        job: Box<Job>,
    },
    /// Handed back to waiting.
    Released,
    /// The token did not match: the lease was lost (expired and recovered, or the job removed).
    /// The job was not touched.
    LeaseLost,
}

/// Jobs per state. While the queue is paused, ready jobs count as `paused`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Ready, FIFO.
    pub waiting: u64,
    /// Running.
    pub active: u64,
    /// Waiting for a delay or backoff.
    pub delayed: u64,
    /// Ready, by priority.
    pub prioritized: u64,
    /// Finished and kept.
    pub completed: u64,
    /// Failed for good and kept.
    pub failed: u64,
    /// Ready but held by a pause.
    pub paused: u64,
}

impl Counts {
    /// The same counts as a paused queue reports them: its ready jobs count as `paused`.
    pub fn held_by_pause(self) -> Counts {
        Counts {
            paused: self.waiting + self.prioritized,
            waiting: 0,
            prioritized: 0,
            ..self
        }
    }
}

/// What one bounded bulk call did ([`QueueStore::retry_failed`], [`QueueStore::drain`]): how
/// many jobs it moved or removed, and whether jobs it would have taken were left for another
/// call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Jobs moved or removed.
    pub count: usize,
    /// Whether some remain that another call would take.
    pub more: bool,
}

/// Checks what a store is asked to add before anything is written: a custom id the API would
/// refuse is refused here too, so an embedding app cannot store an id the store cannot hold.
pub fn check_new_jobs(jobs: &[NewJob]) -> Result<(), StoreError> {
    for (i, job) in jobs.iter().enumerate() {
        if let Some(id) = &job.options.job_id {
            crate::options::validate_job_id(id)
                .map_err(|e| StoreError::Invalid(format!("jobs[{i}].{e}")))?;
        }
    }
    Ok(())
}

/// The state a reader sees for a job stored in `state`: on a paused queue a ready job is
/// `paused`. With [`stored_states`], the one definition of the paused view.
pub fn seen_state(state: JobState, paused: bool) -> JobState {
    match state {
        JobState::Waiting | JobState::Prioritized if paused => JobState::Paused,
        other => other,
    }
}

/// Which slices of `parts` (in order, as one list) a page of `offset` and `limit` covers:
/// `(part, skip, take)` each, given how many jobs `len(part)` says each part holds.
pub fn page_plan(
    parts: &[JobState],
    len: impl Fn(JobState) -> usize,
    offset: usize,
    limit: usize,
) -> Vec<(JobState, usize, usize)> {
    let mut plan = Vec::new();
    let (mut skip, mut room) = (offset, limit);
    for &part in parts {
        if room == 0 {
            break;
        }
        let held = len(part);
        if skip >= held {
            skip -= held;
            continue;
        }
        let take = room.min(held - skip);
        plan.push((part, skip, take));
        room -= take;
        skip = 0;
    }
    plan
}

/// The stored states that make up what `state` shows on a queue that is (or is not) paused:
/// the paused view, defined once for every store. A paused queue's ready jobs (waiting, then
/// prioritized) show as `paused`, and `waiting` and `prioritized` show nothing.
pub fn stored_states(state: JobState, paused: bool) -> &'static [JobState] {
    const READY: [JobState; 2] = [JobState::Waiting, JobState::Prioritized];
    match (state, paused) {
        (JobState::Paused, true) => &READY,
        (JobState::Paused, false) | (JobState::Waiting | JobState::Prioritized, true) => &[],
        (JobState::Waiting, false) => &READY[..1],
        (JobState::Prioritized, false) => &READY[1..],
        (JobState::Delayed, _) => &[JobState::Delayed],
        (JobState::Active, _) => &[JobState::Active],
        (JobState::Completed, _) => &[JobState::Completed],
        (JobState::Failed, _) => &[JobState::Failed],
    }
}

/// What `recover_expired` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// Back to waiting (stall count + 1).
    pub requeued: Vec<Recovered>,
    /// Failed for stalling more than `max_stalled` times.
    pub failed: Vec<Recovered>,
}

/// A job whose lease ran out, as `recover_expired` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The job.
    pub id: JobId,
    /// Its name (for per-name counts).
    pub name: String,
}

/// What happened to a job, published so that others can follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// The queue.
    pub queue: String,
    /// The job.
    pub id: JobId,
    /// What happened (`event`, with its fields beside it).
    #[serde(flatten)]
    pub kind: JobEventKind,
    /// When (ms since epoch).
    pub at: u64,
    /// Its place in the queue's event history, where the store keeps one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<crate::events::EventPosition>,
}

/// The kinds of [`JobEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum JobEventKind {
    /// Added (or moved back to waiting by `retry`).
    Added,
    /// Taken by a worker.
    Active,
    /// Progress reported.
    Progress {
        /// The value reported.
        value: Value,
    },
    /// Completed.
    Completed,
    /// Failed for good.
    Failed {
        /// Why.
        reason: String,
    },
    /// Failed an attempt; will run again.
    Retrying {
        /// After this delay.
        delay_ms: u64,
    },
    /// Its lease ran out and it was recovered.
    Stalled,
    /// Removed.
    Removed,
}

/// A way for one worker to wait for work without polling.
#[async_trait]
pub trait WorkSignal: Send {
    /// Returns when work may be ready (a job added, a delay due, the queue resumed) or after
    /// `max_wait`, whichever is first. May return early; the caller just fetches again.
    async fn wait(&mut self, max_wait: Duration) -> Result<(), StoreError>;
}

/// The store of one queue. Every method is atomic on its own; see ARCHITECTURE §3.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// The queue's name.
    fn queue(&self) -> &str;

    /// Adds one job; with a `job_id` that exists already, returns that job's id (`created: false`).
    async fn add(&self, job: NewJob) -> Result<AddResult, StoreError> {
        let mut results = self.add_bulk(vec![job]).await?;
        results
            .pop()
            .ok_or_else(|| StoreError::Corrupt("add_bulk returned no result".into()))
    }

    /// Adds many jobs in one round trip, in order.
    async fn add_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<AddResult>, StoreError>;

    /// Promotes due delayed jobs, then leases up to `max` ready jobs (waiting first, then by
    /// priority), counting an attempt for each. Returns nothing while the queue is paused.
    async fn fetch(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ActiveJob>, StoreError>;

    /// A signal for one worker to wait on between fetches.
    fn work_signal(&self) -> Box<dyn WorkSignal>;

    /// Extends the leases of these jobs; `false` where the token no longer holds.
    async fn extend_leases(
        &self,
        leases: &[(JobId, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<bool>, StoreError>;

    /// Settles many jobs in one round trip; a token that does not match leaves its job alone.
    async fn settle(&self, settlements: Vec<Settlement>) -> Result<Vec<SettleResult>, StoreError>;

    /// Settles finished jobs and leases up to `max` more in one round trip where the backend
    /// can (the pool's steady state); `max` 0 only settles.
    async fn settle_and_fetch(
        &self,
        settlements: Vec<Settlement>,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<SettleResult>, Vec<ActiveJob>), StoreError> {
        let settled = self.settle(settlements).await?;
        let fetched = if max > 0 {
            self.fetch(worker, max, lease).await?
        } else {
            Vec::new()
        };
        Ok((settled, fetched))
    }

    /// Completes one job.
    async fn complete(
        &self,
        id: &str,
        token: LeaseToken,
        value: Value,
    ) -> Result<SettleResult, StoreError> {
        self.settle_one(id, token, Outcome::Completed(value)).await
    }

    /// Fails one attempt of a leased job: it retries while its budget lasts, unless
    /// `retryable` is false, which fails it for good.
    async fn fail(
        &self,
        leased: &ActiveJob,
        reason: String,
        retryable: bool,
    ) -> Result<SettleResult, StoreError> {
        let outcome = leased.job.after_failure(reason, retryable);
        self.settle_one(&leased.job.id, leased.token, outcome).await
    }

    /// Settles one job.
    async fn settle_one(
        &self,
        id: &str,
        token: LeaseToken,
        outcome: Outcome,
    ) -> Result<SettleResult, StoreError> {
        let mut results = self
            .settle(vec![Settlement {
                id: id.into(),
                token,
                outcome,
            }])
            .await?;
        results
            .pop()
            .ok_or_else(|| StoreError::Corrupt("settle returned no result".into()))
    }

    /// Puts active jobs whose lease ran out back to waiting (stall count + 1), or fails those
    /// that stalled more than `max_stalled` times.
    async fn recover_expired(&self, max_stalled: u32) -> Result<RecoverReport, StoreError>;

    /// Records progress for a job.
    async fn progress(&self, id: &str, value: Value) -> Result<(), StoreError>;

    /// Appends a log line to a job.
    async fn log(&self, id: &str, line: String) -> Result<(), StoreError>;

    /// One job, if it exists.
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError>;

    /// Jobs in one state: ready ones in run order, delayed by due time, finished newest first.
    async fn list(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;

    /// Jobs per state.
    async fn counts(&self) -> Result<Counts, StoreError>;

    /// Moves a failed job back to waiting with a fresh attempt budget.
    async fn retry(&self, id: &str) -> Result<(), StoreError>;

    /// Moves up to `limit` failed jobs back to waiting as [`QueueStore::retry`] does, those
    /// that failed first first; `more` tells whether failed jobs remain. Like `clean` and
    /// `drain`, a store may apply it in bounded steps (Redis: 1,000 jobs a script), so it is
    /// atomic per step, not as a whole.
    async fn retry_failed(&self, limit: usize) -> Result<Batch, StoreError>;

    /// Removes a job that is not active; `false` if there was none.
    async fn remove(&self, id: &str) -> Result<bool, StoreError>;

    /// Removes up to `limit` jobs in `state` that finished (or were added) more than
    /// `older_than` ago; returns how many.
    async fn clean(
        &self,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> Result<usize, StoreError>;

    /// Stops `fetch` from handing out jobs, for every worker of this queue.
    async fn pause(&self) -> Result<(), StoreError>;

    /// Lets `fetch` hand out jobs again.
    async fn resume(&self) -> Result<(), StoreError>;

    /// Whether the queue is paused.
    async fn is_paused(&self) -> Result<bool, StoreError>;

    /// Removes up to `limit` waiting and prioritized jobs (in that order), then delayed ones if
    /// asked; `more` tells whether any of those remain.
    async fn drain(&self, include_delayed: bool, limit: usize) -> Result<Batch, StoreError>;

    /// Follows this queue's job events.
    fn subscribe(&self) -> broadcast::Receiver<JobEvent>;

    /// Adds one process's per-minute figures to the queue's history (see [`crate::history`]).
    async fn record_minutes(
        &self,
        minutes: &[crate::history::MinuteStats],
    ) -> Result<(), StoreError> {
        let _ = minutes;
        Err(StoreError::Invalid("this store keeps no history".into()))
    }

    /// The queue's per-minute figures from minute `from` to `to` (both included; minutes
    /// since the epoch), for the minutes that have any.
    async fn read_minutes(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::history::MinuteStats>, StoreError> {
        let _ = (from, to);
        Err(StoreError::Invalid("this store keeps no history".into()))
    }

    /// Up to `max` events after `after`, oldest first, from the queue's event history (Redis:
    /// its capped stream; memory: the last events since someone first subscribed).
    async fn events_after(
        &self,
        after: crate::events::EventPosition,
        max: usize,
    ) -> Result<crate::events::EventPage, StoreError> {
        let _ = (after, max);
        Err(StoreError::Invalid(
            "this store keeps no event history".into(),
        ))
    }

    /// Stores a schedule of this queue. A new one is stored as given; one whose spec changed
    /// takes the given next fire (and keeps its count); one whose spec is the same is left as
    /// it is, so upserting the same schedule again is harmless.
    async fn put_schedule(&self, schedule: &Schedule) -> Result<PutSchedule, StoreError> {
        let _ = schedule;
        Err(no_schedules())
    }

    /// One schedule of this queue.
    async fn get_schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let _ = id;
        Err(no_schedules())
    }

    /// Every schedule of this queue, by id.
    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        Err(no_schedules())
    }

    /// Removes a schedule; whether it existed.
    async fn remove_schedule(&self, id: &str) -> Result<bool, StoreError> {
        let _ = id;
        Err(no_schedules())
    }

    /// Pauses a schedule (no fires), or resumes it from `next_at`; whether it existed.
    async fn pause_schedule(
        &self,
        id: &str,
        paused: bool,
        next_at: Option<u64>,
    ) -> Result<bool, StoreError> {
        let _ = (id, paused, next_at);
        Err(no_schedules())
    }

    /// The earliest next fire among this queue's active schedules.
    async fn next_schedule_at(&self) -> Result<Option<u64>, StoreError> {
        Err(no_schedules())
    }

    /// This queue's active schedules whose next fire is at or before `now`, at most `limit`.
    async fn due_schedules(&self, now: u64, limit: usize) -> Result<Vec<Schedule>, StoreError> {
        let _ = (now, limit);
        Err(no_schedules())
    }

    /// Fires a schedule, if its next fire is still `expected` and it is not paused: adds
    /// `jobs` (each with its fire's id) and stores its new next fire, last fire and count, all
    /// at once. `Ok(false)` when another caller fired it first (or it changed meanwhile).
    async fn fire_schedule(&self, fire: ScheduleFire) -> Result<bool, StoreError> {
        let _ = fire;
        Err(no_schedules())
    }
}

/// What [`QueueStore::put_schedule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutSchedule {
    /// It was new.
    Created,
    /// Its spec changed.
    Updated,
    /// The same spec was there already: nothing changed.
    Unchanged,
}

/// One fire of a schedule, as [`QueueStore::fire_schedule`] applies it.
#[derive(Debug, Clone)]
pub struct ScheduleFire {
    /// The schedule.
    pub id: String,
    /// The next fire the caller saw: the fire is applied only if it is still this.
    pub expected: u64,
    /// The jobs to add.
    pub jobs: Vec<NewJob>,
    /// The schedule's next fire after this one.
    pub next_at: Option<u64>,
    /// Its last fire, after this one.
    pub last_fire: Option<u64>,
    /// Its fire count, after this one.
    pub fires: u64,
}

fn no_schedules() -> StoreError {
    StoreError::Invalid("this store keeps no schedules".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paused_view_is_one_definition() {
        use JobState::*;
        assert_eq!(stored_states(Paused, true), [Waiting, Prioritized]);
        assert!(stored_states(Paused, false).is_empty());
        assert!(stored_states(Waiting, true).is_empty());
        assert_eq!(stored_states(Waiting, false), [Waiting]);
        assert_eq!(seen_state(Prioritized, true), Paused);
        assert_eq!(seen_state(Delayed, true), Delayed);
        assert_eq!(seen_state(Waiting, false), Waiting);
    }

    #[test]
    fn a_page_spans_parts_in_order() {
        use JobState::*;
        let len = |s: JobState| if s == Waiting { 3 } else { 5 };
        let parts = [Waiting, Prioritized];
        assert_eq!(page_plan(&parts, len, 0, 2), [(Waiting, 0, 2)]);
        assert_eq!(
            page_plan(&parts, len, 2, 4),
            [(Waiting, 2, 1), (Prioritized, 0, 3)]
        );
        assert_eq!(page_plan(&parts, len, 4, 10), [(Prioritized, 1, 4)]);
        assert!(page_plan(&parts, len, 8, 10).is_empty());
        assert!(page_plan(&parts, len, 0, 0).is_empty());
    }
}
