//! `MemoryStore`: the whole store contract in one process, behind one mutex. The embedded
//! default: no Redis needed, nothing survives a restart.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::clock::now_ms;
use crate::error::StoreError;
use crate::job::{AttemptOutcome, AttemptRecord, Job, JobId, JobState};
use crate::options::{JobOptions, Retention};
use crate::store::{
    ActiveJob, AddResult, Counts, JobEvent, JobEventKind, LeaseToken, NewJob, Outcome, QueueStore,
    RecoverReport, SettleResult, Settlement, WorkSignal, check_new_jobs, stored_states,
};

/// Most jobs moved by one step of promotion or trimming, so no call does unbounded work.
const CHUNK: usize = 1000;
/// Events buffered per subscriber before the slowest one starts missing some.
const EVENT_BUFFER: usize = 4096;

/// The most jobs a memory store holds unless told otherwise: memory stays bounded.
pub const DEFAULT_MAX_JOBS: u64 = 1_000_000;

/// An in-memory queue store.
pub struct MemoryStore {
    queue: Arc<str>,
    shared: Arc<Shared>,
    events: broadcast::Sender<JobEvent>,
    max_jobs: Option<u64>,
}

/// What the store shares with its work signals.
struct Shared {
    inner: Mutex<Inner>,
    work: watch::Sender<u64>,
}

impl Shared {
    /// When a worker should look again for delayed work: the next due time, unless the queue
    /// is paused (a paused queue hands nothing out, so a due job is no reason to wake).
    fn next_due(&self) -> Option<u64> {
        let inner = self.inner.lock();
        if inner.paused {
            return None;
        }
        inner.delayed.keys().next().map(|(at, _)| *at)
    }
}

struct Entry {
    /// Shared with the worker running it, so a fetch hands it out without a deep copy;
    /// changed through `Arc::make_mut`, which copies only while a worker still holds it.
    job: Arc<Job>,
    /// Orders the job within its current state; set on every placement.
    seq: u64,
    lease: Option<Lease>,
    /// Progress and logs change while a worker holds `job`, so they live beside it (no copy
    /// of the job per report) and are merged in when the job is read; boxed, since most jobs
    /// never report either.
    reports: Option<Box<Reports>>,
}

/// What a job reported while it ran.
#[derive(Default)]
struct Reports {
    progress: Option<Value>,
    logs: Vec<String>,
}

impl Entry {
    fn new(job: Job) -> Entry {
        Entry {
            job: Arc::new(job),
            seq: 0,
            lease: None,
            reports: None,
        }
    }

    fn progress(&self) -> Value {
        self.reports
            .as_ref()
            .and_then(|r| r.progress.clone())
            .unwrap_or(Value::from(0))
    }

    fn logs(&self) -> Vec<String> {
        self.reports
            .as_ref()
            .map(|r| r.logs.clone())
            .unwrap_or_default()
    }

    fn reports(&mut self) -> &mut Reports {
        self.reports.get_or_insert_with(Box::default)
    }
}

#[derive(Clone, Copy)]
struct Lease {
    token: LeaseToken,
    deadline: u64,
}

#[derive(Default)]
struct Inner {
    jobs: HashMap<JobId, Entry, foldhash::fast::RandomState>,
    next_id: u64,
    next_seq: u64,
    next_token: u64,
    /// Ready jobs without a priority, in run order, as (placement seq, id). Removing one
    /// leaves its item behind as stale (its seq no longer matches); pops and reads skip those,
    /// so no removal scans the list.
    wait: VecDeque<(u64, JobId)>,
    /// Live items in `wait`.
    waiting: usize,
    /// Ready jobs with a priority, by priority then [`ready_order`].
    prioritized: BTreeMap<(u32, i64), JobId>,
    delayed: BTreeMap<(u64, u64), JobId>,
    active: HashSet<JobId, foldhash::fast::RandomState>,
    completed: BTreeMap<(u64, u64), JobId>,
    failed: BTreeMap<(u64, u64), JobId>,
    paused: bool,
    /// The options of the last job added, for the next to share if they are the same.
    last_options: Option<Arc<JobOptions>>,
}

/// Where a ready job stands among jobs of its priority: by placement order, newest first
/// for `lifo` jobs.
fn ready_order(job: &Job, seq: u64) -> i64 {
    if job.options.lifo {
        -(seq as i64)
    } else {
        seq as i64
    }
}

/// Events produced under the lock, published after it is released.
type Events = Vec<(JobId, JobEventKind)>;

impl MemoryStore {
    /// The same store, refusing adds past `max_jobs` jobs in all states (`QueueFull`); `None`:
    /// no limit. [`DEFAULT_MAX_JOBS`] unless set.
    pub fn with_max_jobs(mut self, max_jobs: Option<u64>) -> MemoryStore {
        self.max_jobs = max_jobs;
        self
    }

    /// An empty store for `queue`, holding at most [`DEFAULT_MAX_JOBS`] jobs.
    pub fn new(queue: impl Into<String>) -> MemoryStore {
        let (work, _) = watch::channel(0);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        MemoryStore {
            queue: Arc::from(queue.into()),
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                work,
            }),
            events,
            max_jobs: Some(DEFAULT_MAX_JOBS),
        }
    }

    fn wake(&self) {
        self.shared.work.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn wants_events(&self) -> bool {
        self.events.receiver_count() > 0
    }

    fn publish(&self, events: Events) {
        if events.is_empty() || !self.wants_events() {
            return;
        }
        let at = now_ms();
        for (id, kind) in events {
            // No receiver left is not an error: nobody is following.
            let _ = self.events.send(JobEvent {
                queue: self.queue.to_string(),
                id,
                kind,
                at,
            });
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.shared.inner.lock()
    }

    /// The lock, for a read: delayed jobs that fell due are promoted first, so that what is
    /// read is right when read whether or not a pool fetches from this queue.
    fn read(&self) -> parking_lot::MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        let now = now_ms();
        let mut promoted = false;
        while inner.promote_due(now) {
            promoted = true;
        }
        if promoted {
            self.wake();
        }
        inner
    }
}

impl Inner {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Puts a job where its state says, giving it a fresh order.
    fn place(&mut self, id: &str, state: JobState) {
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
    fn unplace(&mut self, id: &str) {
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

    fn delete(&mut self, id: &str) -> bool {
        self.unplace(id);
        self.jobs.remove(id).is_some()
    }

    /// Moves due delayed jobs to ready, at most [`CHUNK`] per call.
    fn promote_due(&mut self, now: u64) -> bool {
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
    fn is_live(&self, (seq, id): &(u64, JobId)) -> bool {
        self.jobs
            .get(id)
            .is_some_and(|e| e.seq == *seq && e.job.state == JobState::Waiting)
    }

    fn live_waiting(&self) -> impl Iterator<Item = &JobId> {
        self.wait
            .iter()
            .filter(|item| self.is_live(item))
            .map(|(_, id)| id)
    }

    fn pop_ready(&mut self) -> Option<JobId> {
        while let Some(item) = self.wait.pop_front() {
            if self.is_live(&item) {
                self.waiting -= 1;
                return Some(item.1);
            }
        }
        self.prioritized.pop_first().map(|(_, id)| id)
    }

    /// Applies a finished job's retention to its set (completed or failed).
    fn trim(&mut self, state: JobState, keep: Retention, now: u64) {
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
    fn end_attempt(entry: &mut Entry, now: u64, outcome: AttemptOutcome, error: Option<String>) {
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
    fn fail_for_good(&mut self, id: &str, reason: String, now: u64) -> Option<Job> {
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

    /// Puts an active job back to ready (or delayed, for a retry with backoff).
    fn requeue(&mut self, id: &str, delay_ms: u64, now: u64) -> bool {
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

    fn settle_one(
        &mut self,
        s: Settlement,
        now: u64,
        events: &mut Events,
        woke: &mut bool,
    ) -> SettleResult {
        let Some(entry) = self.jobs.get_mut(&s.id) else {
            return SettleResult::LeaseLost;
        };
        if entry.job.state != JobState::Active || entry.lease.map(|l| l.token) != Some(s.token) {
            return SettleResult::LeaseLost;
        }
        match s.outcome {
            Outcome::Completed(value) => {
                Self::end_attempt(entry, now, AttemptOutcome::Completed, None);
                let job = Arc::make_mut(&mut entry.job);
                job.return_value = Some(value);
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
    fn visible(&self, entry: &Entry) -> Job {
        let mut job = Job::clone(&entry.job);
        job.progress = entry.progress();
        job.logs = entry.logs();
        if self.paused && matches!(job.state, JobState::Waiting | JobState::Prioritized) {
            job.state = JobState::Paused;
        }
        job
    }
}

/// Wakes one worker when work may be ready.
struct MemorySignal {
    shared: Arc<Shared>,
    rx: watch::Receiver<u64>,
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

#[async_trait]
impl QueueStore for MemoryStore {
    fn queue(&self) -> &str {
        &self.queue
    }

    async fn add_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<AddResult>, StoreError> {
        check_new_jobs(&jobs)?;
        let now = now_ms();
        let mut results = Vec::with_capacity(jobs.len());
        let mut events = Events::new();
        {
            let mut inner = self.lock();
            if let Some(max) = self.max_jobs {
                // New jobs: every generated id, and each custom id once unless it exists.
                let mut custom = HashSet::new();
                let new = jobs
                    .iter()
                    .filter(|j| match j.options.job_id.as_deref() {
                        None => true,
                        Some(id) => !inner.jobs.contains_key(id) && custom.insert(id),
                    })
                    .count() as u64;
                let unfinished =
                    (inner.jobs.len() - inner.completed.len() - inner.failed.len()) as u64;
                if new > 0 && unfinished + new > max {
                    return Err(StoreError::QueueFull {
                        queue: self.queue.to_string(),
                        max,
                    });
                }
            }
            inner.jobs.reserve(jobs.len());
            for new in jobs {
                if let Some(custom) = &new.options.job_id
                    && let Some((existing, _)) = inner.jobs.get_key_value(custom.as_str())
                {
                    results.push(AddResult {
                        id: Arc::clone(existing),
                        created: false,
                    });
                    continue;
                }
                let id: JobId = match &new.options.job_id {
                    Some(custom) => custom.as_str().into(),
                    None => {
                        inner.next_id += 1;
                        inner.next_id.to_string().into()
                    }
                };
                // Jobs added with the same options (the queue's defaults, mostly) share them.
                let options = match &inner.last_options {
                    Some(last) if **last == new.options => Arc::clone(last),
                    _ => {
                        let fresh = Arc::new(new.options);
                        inner.last_options = Some(Arc::clone(&fresh));
                        fresh
                    }
                };
                let job = Job::new(
                    id.clone(),
                    Arc::clone(&self.queue),
                    new.name,
                    new.data,
                    options,
                    now,
                );
                let state = if job.options.delay_ms > 0 {
                    JobState::Delayed
                } else {
                    job.ready_state()
                };
                inner.jobs.insert(id.clone(), Entry::new(job));
                inner.place(&id, state);
                if self.wants_events() {
                    events.push((id.clone(), JobEventKind::Added));
                }
                results.push(AddResult { id, created: true });
            }
        }
        // Delayed jobs change the next due time, so waiters must look again too.
        if !results.is_empty() {
            self.wake();
        }
        self.publish(events);
        Ok(results)
    }

    async fn fetch(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ActiveJob>, StoreError> {
        let now = now_ms();
        let deadline = now + lease.as_millis() as u64;
        let mut out = Vec::new();
        let worker: Arc<str> = worker.into();
        {
            let mut inner = self.lock();
            inner.promote_due(now);
            if inner.paused {
                return Ok(out);
            }
            while out.len() < max {
                let Some(id) = inner.pop_ready() else {
                    break;
                };
                inner.next_token += 1;
                let token = LeaseToken(inner.next_token);
                let seq = inner.seq();
                let Some(entry) = inner.jobs.get_mut(&id) else {
                    continue;
                };
                entry.seq = seq;
                entry.lease = Some(Lease { token, deadline });
                let job = Arc::make_mut(&mut entry.job);
                job.state = JobState::Active;
                job.attempts_made += 1;
                job.processed_at = Some(now);
                job.history.push(AttemptRecord {
                    attempt: job.attempts_made,
                    worker: Arc::clone(&worker),
                    started_at: now,
                    finished_at: None,
                    outcome: AttemptOutcome::Running,
                    error: None,
                    retry_delay_ms: None,
                });
                out.push(ActiveJob {
                    job: Arc::clone(&entry.job),
                    token,
                });
                inner.active.insert(id);
            }
        }
        if self.wants_events() {
            self.publish(
                out.iter()
                    .map(|a| (a.job.id.clone(), JobEventKind::Active))
                    .collect(),
            );
        }
        Ok(out)
    }

    fn work_signal(&self) -> Box<dyn WorkSignal> {
        Box::new(MemorySignal {
            shared: Arc::clone(&self.shared),
            rx: self.shared.work.subscribe(),
        })
    }

    async fn extend_leases(
        &self,
        leases: &[(JobId, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        let deadline = now_ms() + lease.as_millis() as u64;
        let mut inner = self.lock();
        Ok(leases
            .iter()
            .map(|(id, token)| match inner.jobs.get_mut(id) {
                Some(Entry {
                    lease: Some(held), ..
                }) if held.token == *token => {
                    held.deadline = deadline;
                    true
                }
                _ => false,
            })
            .collect())
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<Vec<SettleResult>, StoreError> {
        let now = now_ms();
        let mut events = Events::new();
        let mut woke = false;
        let results = {
            let mut inner = self.lock();
            settlements
                .into_iter()
                .map(|s| inner.settle_one(s, now, &mut events, &mut woke))
                .collect()
        };
        if woke {
            self.wake();
        }
        self.publish(events);
        Ok(results)
    }

    async fn recover_expired(&self, max_stalled: u32) -> Result<RecoverReport, StoreError> {
        let now = now_ms();
        let mut report = RecoverReport::default();
        let mut events = Events::new();
        {
            let mut inner = self.lock();
            let expired: Vec<JobId> = inner
                .active
                .iter()
                .filter(|id| {
                    inner
                        .jobs
                        .get(*id)
                        .and_then(|e| e.lease)
                        .is_none_or(|l| l.deadline <= now)
                })
                .take(CHUNK)
                .cloned()
                .collect();
            for id in expired {
                let Some(entry) = inner.jobs.get_mut(&id) else {
                    inner.active.remove(&id);
                    continue;
                };
                Inner::end_attempt(
                    entry,
                    now,
                    AttemptOutcome::Stalled,
                    Some("lease expired".into()),
                );
                Arc::make_mut(&mut entry.job).stalled_count += 1;
                events.push((id.clone(), JobEventKind::Stalled));
                if entry.job.stalled_count > max_stalled {
                    let reason = format!(
                        "stalled more than {max_stalled} time(s): its lease expired while active (the worker died or hung)"
                    );
                    inner.fail_for_good(&id, reason.clone(), now);
                    events.push((id.clone(), JobEventKind::Failed { reason }));
                    report.failed.push(id);
                } else {
                    inner.requeue(&id, 0, now);
                    report.requeued.push(id);
                }
            }
        }
        if !report.requeued.is_empty() {
            self.wake();
        }
        self.publish(events);
        Ok(report)
    }

    async fn progress(&self, id: &str, value: Value) -> Result<(), StoreError> {
        {
            let mut inner = self.lock();
            let entry = inner
                .jobs
                .get_mut(id)
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            entry.reports().progress = Some(value.clone());
        }
        self.publish(vec![(id.into(), JobEventKind::Progress { value })]);
        Ok(())
    }

    async fn log(&self, id: &str, line: String) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let entry = inner
            .jobs
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let logs = &mut entry.reports().logs;
        if logs.len() >= Job::MAX_LOGS {
            logs.remove(0);
        }
        logs.push(line);
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let inner = self.read();
        Ok(inner.jobs.get(id).map(|e| inner.visible(e)))
    }

    async fn list(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let inner = self.read();
        let ready_paused = inner.paused;
        let ids: Vec<&JobId> = match state {
            JobState::Waiting if ready_paused => Vec::new(),
            JobState::Prioritized if ready_paused => Vec::new(),
            JobState::Waiting => inner.live_waiting().skip(offset).take(limit).collect(),
            JobState::Prioritized => inner
                .prioritized
                .values()
                .skip(offset)
                .take(limit)
                .collect(),
            JobState::Paused if ready_paused => inner
                .live_waiting()
                .chain(inner.prioritized.values())
                .skip(offset)
                .take(limit)
                .collect(),
            JobState::Paused => Vec::new(),
            JobState::Delayed => inner.delayed.values().skip(offset).take(limit).collect(),
            JobState::Completed => inner
                .completed
                .values()
                .rev()
                .skip(offset)
                .take(limit)
                .collect(),
            JobState::Failed => inner
                .failed
                .values()
                .rev()
                .skip(offset)
                .take(limit)
                .collect(),
            JobState::Active => {
                let mut active: Vec<&JobId> = inner.active.iter().collect();
                active.sort_by_key(|id| inner.jobs.get(*id).map_or(0, |e| e.seq));
                active.into_iter().skip(offset).take(limit).collect()
            }
        };
        Ok(ids
            .into_iter()
            .filter_map(|id| inner.jobs.get(id).map(|e| inner.visible(e)))
            .collect())
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let inner = self.read();
        let (waiting, prioritized) = (inner.waiting as u64, inner.prioritized.len() as u64);
        let counts = Counts {
            waiting,
            active: inner.active.len() as u64,
            delayed: inner.delayed.len() as u64,
            prioritized,
            completed: inner.completed.len() as u64,
            failed: inner.failed.len() as u64,
            paused: 0,
        };
        Ok(if inner.paused {
            counts.held_by_pause()
        } else {
            counts
        })
    }

    async fn retry(&self, id: &str) -> Result<(), StoreError> {
        {
            let mut inner = self.lock();
            let entry = inner
                .jobs
                .get(id)
                .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            if entry.job.state != JobState::Failed {
                return Err(StoreError::InvalidState {
                    id: id.to_string(),
                    state: entry.job.state.to_string(),
                    hint: "only failed jobs can be retried".into(),
                });
            }
            inner.unplace(id);
            if let Some(entry) = inner.jobs.get_mut(id) {
                let job = Arc::make_mut(&mut entry.job);
                job.attempts_made = 0;
                job.stalled_count = 0;
                job.released_count = 0;
                job.failed_reason = None;
                job.finished_at = None;
                job.run_at = now_ms();
                let ready = entry.job.ready_state();
                inner.place(id, ready);
            }
        }
        self.wake();
        self.publish(vec![(id.into(), JobEventKind::Added)]);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let removed = {
            let mut inner = self.lock();
            match inner.jobs.get(id) {
                None => false,
                Some(e) if e.job.state == JobState::Active => {
                    return Err(StoreError::InvalidState {
                        id: id.to_string(),
                        state: "active".into(),
                        hint: "an active job can be removed once it settles".into(),
                    });
                }
                Some(_) => inner.delete(id),
            }
        };
        if removed {
            self.publish(vec![(id.into(), JobEventKind::Removed)]);
        }
        Ok(removed)
    }

    async fn clean(
        &self,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let cutoff = now_ms().saturating_sub(older_than.as_millis() as u64);
        let mut inner = self.read();
        let old = |job: &Job| job.finished_at.unwrap_or(job.created_at) <= cutoff;
        let mut victims: Vec<JobId> = Vec::new();
        for &part in stored_states(state, inner.paused) {
            let room = limit - victims.len();
            match part {
                JobState::Completed | JobState::Failed => {
                    let set = if part == JobState::Completed {
                        &inner.completed
                    } else {
                        &inner.failed
                    };
                    victims.extend(
                        set.iter()
                            .take_while(|((finished, _), _)| *finished <= cutoff)
                            .take(room)
                            .map(|(_, id)| id.clone()),
                    );
                }
                JobState::Active | JobState::Paused => {}
                _ => victims.extend(
                    inner
                        .jobs
                        .values()
                        .filter(|e| e.job.state == part && old(&e.job))
                        .take(room)
                        .map(|e| e.job.id.clone()),
                ),
            }
        }
        for id in &victims {
            inner.delete(id);
        }
        Ok(victims.len())
    }

    async fn pause(&self) -> Result<(), StoreError> {
        self.lock().paused = true;
        Ok(())
    }

    async fn resume(&self) -> Result<(), StoreError> {
        self.lock().paused = false;
        self.wake();
        Ok(())
    }

    async fn is_paused(&self) -> Result<bool, StoreError> {
        Ok(self.lock().paused)
    }

    async fn drain(&self, include_delayed: bool) -> Result<usize, StoreError> {
        let mut inner = self.lock();
        let mut victims: Vec<JobId> = inner.live_waiting().cloned().collect();
        inner.wait.clear();
        inner.waiting = 0;
        victims.extend(std::mem::take(&mut inner.prioritized).into_values());
        if include_delayed {
            victims.extend(std::mem::take(&mut inner.delayed).into_values());
        }
        for id in &victims {
            inner.jobs.remove(id);
        }
        Ok(victims.len())
    }

    fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }
}
