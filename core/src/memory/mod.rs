//! `MemoryStore`: the whole store contract in one process, behind one mutex. The embedded
//! default: no Redis needed, nothing survives a restart.
//!
//! Shaped like `redis/`: this file is the contract's implementation, `state.rs` the state
//! behind the mutex and its moves, `signal.rs` the wait for work.

mod signal;
mod state;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::clock::now_ms;
use crate::error::StoreError;
use crate::events::{EventPage, EventPosition};
use crate::history::{HISTORY_MINUTES, MinuteStats};
use crate::job::{AttemptOutcome, AttemptRecord, Job, JobId, JobState};
use signal::{MemorySignal, Shared};
use state::{Entry, Events, Inner, Lease};

use crate::schedule::Schedule;
use crate::store::{
    ActiveJob, AddResult, Batch, Counts, JobEvent, JobEventKind, LeaseToken, NewJob, PutSchedule,
    QueueStore, RecoverReport, Recovered, ScheduleFire, SettleResult, Settlement, WorkSignal,
    check_new_jobs, page_plan, stored_states,
};

/// Most jobs moved by one step of promotion or trimming, so no call does unbounded work.
pub(crate) const CHUNK: usize = 1000;
/// Events buffered per subscriber before the slowest one starts missing some.
const EVENT_BUFFER: usize = 16_384;

/// Events kept for followers who reconnect ([`QueueStore::events_after`]), once someone
/// has subscribed.
const EVENT_HISTORY: usize = 50_000;

/// The last events, numbered, once someone has followed them. Positions are (number, epoch):
/// the epoch (when the store was made) tells this store's positions from an earlier run's.
#[derive(Default)]
struct History {
    epoch: u64,
    /// Set by the first subscriber: until then nothing is kept.
    enabled: std::sync::atomic::AtomicBool,
    ring: Mutex<(u64, std::collections::VecDeque<JobEvent>)>,
}

/// The most jobs a memory store holds unless told otherwise: memory stays bounded.
pub const DEFAULT_MAX_JOBS: u64 = 1_000_000;

/// An in-memory queue store.
pub struct MemoryStore {
    queue: Arc<str>,
    shared: Arc<Shared>,
    events: broadcast::Sender<JobEvent>,
    history: Arc<History>,
    minutes: Arc<Mutex<std::collections::BTreeMap<u64, MinuteStats>>>,
    max_jobs: Option<u64>,
}

impl MemoryStore {
    /// The same store, refusing adds past `max_jobs` unfinished jobs (`QueueFull`); `None`:
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
            history: Arc::new(History {
                epoch: now_ms(),
                ..History::default()
            }),
            minutes: Arc::default(),
            max_jobs: Some(DEFAULT_MAX_JOBS),
        }
    }

    fn wake(&self) {
        self.shared.work.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn wants_events(&self) -> bool {
        self.events.receiver_count() > 0
            || self
                .history
                .enabled
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn publish(&self, events: Events) {
        if events.is_empty() || !self.wants_events() {
            return;
        }
        let at = now_ms();
        // Numbered, kept and sent under one lock, so the history and the live order agree.
        let mut ring = self.history.ring.lock();
        for (id, kind) in events {
            ring.0 += 1;
            let event = JobEvent {
                queue: self.queue.to_string(),
                id,
                kind,
                at,
                position: Some(EventPosition {
                    major: ring.0,
                    minor: self.history.epoch,
                    index: 0,
                }),
            };
            if ring.1.len() >= EVENT_HISTORY {
                ring.1.pop_front();
            }
            ring.1.push_back(event.clone());
            // No receiver left is not an error: nobody is following.
            let _ = self.events.send(event);
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

impl MemoryStore {
    /// Adds `jobs` under the lock (the caller holds it), noting their events in `events`.
    fn add_locked(
        &self,
        inner: &mut Inner,
        jobs: Vec<NewJob>,
        now: u64,
        events: &mut Events,
    ) -> Result<Vec<AddResult>, StoreError> {
        let mut results = Vec::with_capacity(jobs.len());
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
            let unfinished = (inner.jobs.len() - inner.completed.len() - inner.failed.len()) as u64;
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
        Ok(results)
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
        let mut events = Events::new();
        let results = {
            let mut inner = self.lock();
            self.add_locked(&mut inner, jobs, now, &mut events)?
        };
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
                entry.lease = Lease::new(token, deadline);
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
                }) if held.held_by(*token) => {
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
                let name = entry.job.name.clone();
                events.push((id.clone(), JobEventKind::Stalled));
                if entry.job.stalled_count > max_stalled {
                    let reason = format!(
                        "stalled more than {max_stalled} time(s): its lease expired while active (the worker died or hung)"
                    );
                    inner.fail_for_good(&id, reason.clone(), now);
                    events.push((id.clone(), JobEventKind::Failed { reason }));
                    report.failed.push(Recovered { id, name });
                } else {
                    inner.requeue(&id, 0, now);
                    report.requeued.push(Recovered { id, name });
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
        let parts = stored_states(state, inner.paused);
        let ids: Vec<JobId> = page_plan(parts, |part| inner.held(part), offset, limit)
            .into_iter()
            .flat_map(|(part, skip, take)| inner.ids_in(part, skip, take))
            .collect();
        Ok(ids
            .iter()
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
            inner.retry_job(id, now_ms());
        }
        self.wake();
        self.publish(vec![(id.into(), JobEventKind::Added)]);
        Ok(())
    }

    async fn retry_failed(&self, limit: usize) -> Result<Batch, StoreError> {
        let now = now_ms();
        let (ids, more) = {
            let mut inner = self.lock();
            let ids: Vec<JobId> = inner.failed.values().take(limit).cloned().collect();
            for id in &ids {
                inner.retry_job(id, now);
            }
            (ids, !inner.failed.is_empty())
        };
        let count = ids.len();
        if count > 0 {
            self.wake();
        }
        self.publish(
            ids.into_iter()
                .map(|id| (id, JobEventKind::Added))
                .collect(),
        );
        Ok(Batch { count, more })
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

    async fn drain(&self, include_delayed: bool, limit: usize) -> Result<Batch, StoreError> {
        let mut inner = self.lock();
        let mut victims: Vec<JobId> = Vec::new();
        while victims.len() < limit {
            let Some(id) = inner.pop_ready() else {
                break;
            };
            victims.push(id);
        }
        while include_delayed && victims.len() < limit {
            let Some((_, id)) = inner.delayed.pop_first() else {
                break;
            };
            victims.push(id);
        }
        for id in &victims {
            inner.jobs.remove(id);
        }
        let more = inner.waiting > 0
            || !inner.prioritized.is_empty()
            || (include_delayed && !inner.delayed.is_empty());
        Ok(Batch {
            count: victims.len(),
            more,
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.history
            .enabled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.events.subscribe()
    }

    async fn record_minutes(&self, minutes: &[MinuteStats]) -> Result<(), StoreError> {
        let mut kept = self.minutes.lock();
        for stats in minutes {
            kept.entry(stats.minute)
                .or_insert_with(|| MinuteStats::new(stats.minute))
                .merge(stats);
        }
        // Forget what is past the history's length.
        let oldest = (now_ms() / 60_000).saturating_sub(HISTORY_MINUTES);
        while kept.first_key_value().is_some_and(|(m, _)| *m < oldest) {
            kept.pop_first();
        }
        Ok(())
    }

    async fn read_minutes(&self, from: u64, to: u64) -> Result<Vec<MinuteStats>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        Ok(self
            .minutes
            .lock()
            .range(from..=to)
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn events_after(
        &self,
        after: EventPosition,
        max: usize,
    ) -> Result<EventPage, StoreError> {
        let ring = self.history.ring.lock();
        let newest = ring.0;
        if after.minor != self.history.epoch {
            // Another run's position: all this run holds may follow it.
            return Ok(EventPage {
                events: ring.1.iter().take(max).cloned().collect(),
                trimmed: true,
                ahead: false,
            });
        }
        if after.major > newest {
            return Ok(EventPage {
                ahead: true,
                ..EventPage::default()
            });
        }
        let Some(first) = ring.1.front().and_then(|e| e.position) else {
            return Ok(EventPage::default());
        };
        // Numbers are consecutive: the event after `after` sits at this offset.
        let skip = after.major.saturating_add(1).saturating_sub(first.major);
        Ok(EventPage {
            events: ring
                .1
                .iter()
                .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                .take(max)
                .cloned()
                .collect(),
            trimmed: first.major > after.major.saturating_add(1),
            ahead: false,
        })
    }

    async fn put_schedule(&self, schedule: &Schedule) -> Result<PutSchedule, StoreError> {
        let mut inner = self.lock();
        let put = match inner.schedules.get_mut(&schedule.spec.id) {
            None => {
                inner
                    .schedules
                    .insert(schedule.spec.id.clone(), schedule.clone());
                PutSchedule::Created
            }
            Some(existing) if existing.spec == schedule.spec => PutSchedule::Unchanged,
            Some(existing) => {
                existing.spec = schedule.spec.clone();
                existing.state.next_at = schedule.state.next_at;
                PutSchedule::Updated
            }
        };
        Ok(put)
    }

    async fn get_schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        Ok(self.lock().schedules.get(id).cloned())
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn remove_schedule(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().schedules.remove(id).is_some())
    }

    async fn pause_schedule(
        &self,
        id: &str,
        paused: bool,
        next_at: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(schedule) = inner.schedules.get_mut(id) else {
            return Ok(false);
        };
        schedule.state.paused = paused;
        if !paused {
            schedule.state.next_at = next_at;
        }
        Ok(true)
    }

    async fn next_schedule_at(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .lock()
            .schedules
            .values()
            .filter(|s| !s.state.paused)
            .filter_map(|s| s.state.next_at)
            .min())
    }

    async fn due_schedules(&self, now: u64, limit: usize) -> Result<Vec<Schedule>, StoreError> {
        let inner = self.lock();
        let mut due: Vec<Schedule> = inner
            .schedules
            .values()
            .filter(|s| !s.state.paused && s.state.next_at.is_some_and(|n| n <= now))
            .cloned()
            .collect();
        due.sort_by_key(|s| s.state.next_at);
        due.truncate(limit);
        Ok(due)
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> Result<bool, StoreError> {
        check_new_jobs(&fire.jobs)?;
        let now = now_ms();
        let mut events = Events::new();
        {
            let mut inner = self.lock();
            match inner.schedules.get(&fire.id) {
                Some(s) if !s.state.paused && s.state.next_at == Some(fire.expected) => {}
                _ => return Ok(false),
            }
            self.add_locked(&mut inner, fire.jobs, now, &mut events)?;
            if let Some(schedule) = inner.schedules.get_mut(&fire.id) {
                schedule.state.next_at = fire.next_at;
                schedule.state.last_fire = fire.last_fire;
                schedule.state.fires = fire.fires;
            }
        }
        self.wake();
        self.publish(events);
        Ok(true)
    }
}
