//! `RedisStore`: the store contract on Redis. Every state change is one Lua script (the
//! `.lua` files beside this one, run by SHA with a NOSCRIPT fallback); every key of a queue
//! shares the hash tag `{queue}`; the clock is Redis's. See ARCHITECTURE §4.

mod codec;
mod conn;
pub(crate) mod errors;
mod events;
pub mod info;
pub mod keys;
mod schedules;
mod scripts;
mod signal;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Client;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::error::StoreError;
use crate::job::{Job, JobId, JobState};
use crate::options::Retention;
use crate::schedule::Schedule;
use crate::store::{
    ActiveJob, AddResult, Batch, Counts, JobEvent, LeaseToken, NewJob, Outcome, PutSchedule,
    QueueStore, RecoverReport, Recovered, ScheduleFire, SettleResult, Settlement, WorkSignal,
    check_new_jobs, page_plan, seen_state, stored_states,
};
use codec::{RawJob, decode_job};
pub use conn::{Conn, DEFAULT_COMMAND_TIMEOUT, SingleClient, Target};

/// The key prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "stagehand";

/// The admin operations that only read (whatever they tidy on the way, such as promoting due
/// jobs): a failed read changed nothing a caller can see.
const READS: [&str; 5] = ["get", "counts", "list", "paused", "next_due"];

/// A queue store on Redis, shared by every process that opens the same queue.
pub struct RedisStore {
    queue: String,
    /// `PREFIX:{queue}`: the prefix of every key of this queue.
    keys: String,
    target: Target,
    conn: Conn,
    events: Arc<events::EventFeed>,
    /// The most jobs the queue may hold; none: no limit.
    max_jobs: Option<u64>,
}

/// A failed call that changes nothing (a read): the store is unavailable.
pub fn read_failed(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable {
        reason: errors::reason(&err),
        source: Some(Arc::new(err)),
    }
}

/// A failed call that changes state: unavailable when Redis surely did not run it, else of
/// unknown outcome.
pub fn write_failed(err: redis::RedisError) -> StoreError {
    errors::classify_write(err)
}

/// Appends the 9 arguments per job that `add_jobs` (lib.lua) reads.
fn push_jobs(call: &mut redis::ScriptInvocation<'_>, jobs: &[NewJob]) -> Result<(), StoreError> {
    for job in jobs {
        let o = &job.options;
        let opts = serde_json::to_string(o).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let data = job.data.get();
        // The `cfg` field: what only the rarer paths of the scripts read (lib.lua `settings`).
        let cfg = format!(
            "{} {} {}",
            o.priority,
            u8::from(o.lifo),
            retention(o.remove_on_fail)
        );
        call.arg(o.job_id.as_deref().unwrap_or(""))
            .arg(&job.name)
            .arg(data)
            .arg(opts)
            .arg(o.priority)
            .arg(if o.lifo { "1" } else { "0" })
            .arg(o.delay_ms)
            .arg(cfg)
            .arg(retention(o.remove_on_complete));
    }
    Ok(())
}

/// Appends the 5 arguments per job that `settle_items` (lib.lua) reads: the outcome as core
/// decided it, which the script applies.
fn push_settlements(
    call: &mut redis::ScriptInvocation<'_>,
    settlements: &[Settlement],
) -> Result<(), StoreError> {
    for s in settlements {
        let (kind, payload, delay_ms) = match &s.outcome {
            Outcome::Completed(value) => (
                "completed",
                serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                0,
            ),
            Outcome::Retry { reason, delay_ms } => ("retry", reason.clone(), *delay_ms),
            Outcome::Fail { reason } => ("fail", reason.clone(), 0),
            Outcome::Released => ("released", String::new(), 0),
        };
        call.arg(&*s.id)
            .arg(s.token.0)
            .arg(kind)
            .arg(payload)
            .arg(delay_ms);
    }
    Ok(())
}

/// The error of a call made in bounded steps, once `done` jobs were changed by earlier steps:
/// "nothing changed" is then no longer true, so it is reported as of unknown outcome.
fn after_steps(err: StoreError, done: usize) -> StoreError {
    match err {
        StoreError::Unavailable { reason, source } if done > 0 => StoreError::OutcomeUnknown {
            reason: format!("{reason}, after {done} job(s) were changed"),
            source,
        },
        other => other,
    }
}

fn retention(keep: Retention) -> String {
    match keep {
        Retention::KeepAll => "all".into(),
        Retention::RemoveAll => "remove".into(),
        Retention::Keep { count, age_ms } => format!(
            "{}:{}",
            count.map_or(-1, |c| c as i64),
            age_ms.map_or(-1, |a| a as i64)
        ),
    }
}

impl RedisStore {
    /// Opens `queue` on the Redis at `url` with the default prefix.
    pub async fn open(url: &str, queue: &str) -> Result<RedisStore, StoreError> {
        let target = Target::single(Client::open(url).map_err(read_failed)?);
        let conn = target.shared().await.map_err(read_failed)?;
        Ok(RedisStore::new(target, conn, DEFAULT_PREFIX, queue).await)
    }

    /// Opens `queue` on the Redis Cluster reached through `nodes`, with the default prefix.
    pub async fn open_cluster(nodes: &[String], queue: &str) -> Result<RedisStore, StoreError> {
        let target = Target::cluster(nodes).map_err(read_failed)?;
        let conn = target.shared().await.map_err(read_failed)?;
        Ok(RedisStore::new(target, conn, DEFAULT_PREFIX, queue).await)
    }

    /// A store for `queue` over a shared connection (`target.shared()`); `target` also opens the
    /// dedicated connections that blocking reads need. Calls fail with
    /// [`StoreError::Unavailable`] while Redis does not answer.
    pub async fn new(target: Target, conn: Conn, prefix: &str, queue: &str) -> RedisStore {
        let keys = keys::queue_prefix(prefix, queue);
        let events = Arc::new(events::EventFeed::new());
        events::follow(&target, &keys, queue, Arc::downgrade(&events)).await;
        RedisStore {
            queue: queue.to_string(),
            keys,
            target,
            conn,
            events,
            max_jobs: None,
        }
    }

    /// The same store, refusing adds past `max_jobs` unfinished jobs (`QueueFull`); `None`:
    /// no limit.
    pub fn with_max_jobs(mut self, max_jobs: Option<u64>) -> RedisStore {
        self.max_jobs = max_jobs;
        self
    }

    fn key(&self, name: &str) -> String {
        keys::fixed(&self.keys, name)
    }

    /// Runs the admin step `op`, which does a bounded part per call and answers `(done,
    /// left)`, until `limit` jobs are done or none are left; `args(wanted)` are its arguments.
    async fn in_steps(
        &self,
        op: &str,
        limit: usize,
        args: impl Fn(usize) -> Vec<String>,
    ) -> Result<Batch, StoreError> {
        let mut done = Batch::default();
        loop {
            let (n, left): (usize, u8) = self
                .admin(op, &args(limit - done.count))
                .await
                .map_err(|e| after_steps(e, done.count))?;
            done.count += n;
            done.more = left == 1;
            if !done.more || n == 0 || done.count >= limit {
                return Ok(done);
            }
        }
    }

    async fn admin<T: redis::FromRedisValue>(
        &self,
        op: &str,
        args: &[String],
    ) -> Result<T, StoreError> {
        let mut call = scripts::ADMIN.key(self.key("id"));
        call.arg(&self.keys).arg(op);
        for a in args {
            call.arg(a);
        }
        call.invoke_async(&mut self.conn.clone())
            .await
            .map_err(|e| {
                if READS.contains(&op) {
                    read_failed(e)
                } else {
                    write_failed(e)
                }
            })
    }

    fn decode(&self, raw: RawJob, paused: bool) -> Result<Job, StoreError> {
        let mut job = decode_job(&self.queue, raw)?;
        job.state = seen_state(job.state, paused);
        Ok(job)
    }

    /// Jobs a fetch leased, with their tokens.
    fn leased(&self, raw: Vec<(u64, RawJob)>) -> Result<Vec<ActiveJob>, StoreError> {
        raw.into_iter()
            .map(|(token, raw)| {
                Ok(ActiveJob {
                    job: Arc::new(decode_job(&self.queue, raw)?),
                    token: LeaseToken(token),
                })
            })
            .collect()
    }

    /// What a settle script answered, per job.
    fn settled(
        &self,
        answers: Vec<(String, Option<RawJob>)>,
    ) -> Result<Vec<SettleResult>, StoreError> {
        answers
            .into_iter()
            .map(|(answer, ended)| match (answer.as_str(), ended) {
                ("completed", _) => Ok(SettleResult::Completed),
                ("released", _) => Ok(SettleResult::Released),
                ("lost", _) => Ok(SettleResult::LeaseLost),
                ("failed", Some(raw)) => Ok(SettleResult::Failed {
                    job: Box::new(decode_job(&self.queue, raw)?),
                }),
                (other, _) => match other
                    .strip_prefix("retrying:")
                    .and_then(|d| d.parse::<f64>().ok())
                {
                    Some(delay) => Ok(SettleResult::Retrying {
                        delay_ms: delay as u64,
                    }),
                    None => Err(StoreError::Corrupt(format!("settle answered '{other}'"))),
                },
            })
            .collect()
    }

    async fn list_raw(
        &self,
        state: &str,
        offset: usize,
        limit: usize,
    ) -> Result<(bool, Vec<Job>), StoreError> {
        let (paused, raw): (bool, Vec<RawJob>) = self
            .admin(
                "list",
                &[state.to_string(), offset.to_string(), limit.to_string()],
            )
            .await?;
        let jobs = raw
            .into_iter()
            .map(|r| self.decode(r, paused))
            .collect::<Result<_, _>>()?;
        Ok((paused, jobs))
    }
}

#[async_trait]
impl QueueStore for RedisStore {
    fn queue(&self) -> &str {
        &self.queue
    }

    async fn add_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<AddResult>, StoreError> {
        check_new_jobs(&jobs)?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = scripts::ADD.key(self.key("id"));
        call.arg(&self.keys)
            .arg(self.max_jobs.map_or(-1, |m| m.min(i64::MAX as u64) as i64));
        push_jobs(&mut call, &jobs)?;
        let flat: Vec<(String, u64)> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        if let Some((id, max)) = flat.first()
            && id.is_empty()
        {
            return Err(StoreError::QueueFull {
                queue: self.queue.clone(),
                max: *max,
            });
        }
        Ok(flat
            .into_iter()
            .map(|(id, created)| AddResult {
                id: id.into(),
                created: created == 1,
            })
            .collect())
    }

    async fn fetch(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ActiveJob>, StoreError> {
        let raw: Vec<(u64, RawJob)> = scripts::FETCH
            .key(self.key("tok"))
            .arg(&self.keys)
            .arg(worker)
            .arg(max)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        self.leased(raw)
    }

    fn work_signal(&self) -> Box<dyn WorkSignal> {
        Box::new(signal::RedisSignal::new(
            self.target.clone(),
            self.conn.clone(),
            self.keys.clone(),
        ))
    }

    async fn extend_leases(
        &self,
        leases: &[(JobId, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = scripts::EXTEND.key(self.key("active"));
        call.arg(&self.keys).arg(lease.as_millis() as u64);
        for (id, token) in leases {
            call.arg(&**id).arg(token.0);
        }
        let held: Vec<u8> = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    async fn settle(&self, settlements: Vec<Settlement>) -> Result<Vec<SettleResult>, StoreError> {
        if settlements.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = scripts::SETTLE.key(self.key("active"));
        call.arg(&self.keys);
        push_settlements(&mut call, &settlements)?;
        let answers = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        self.settled(answers)
    }

    async fn settle_and_fetch(
        &self,
        settlements: Vec<Settlement>,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<SettleResult>, Vec<ActiveJob>), StoreError> {
        let mut call = scripts::SETTLE_FETCH.key(self.key("active"));
        call.key(self.key("tok"))
            .arg(&self.keys)
            .arg(worker)
            .arg(max)
            .arg(lease.as_millis() as u64);
        push_settlements(&mut call, &settlements)?;
        let (answers, fetched): (Vec<(String, Option<RawJob>)>, Vec<(u64, RawJob)>) = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        Ok((self.settled(answers)?, self.leased(fetched)?))
    }

    async fn recover_expired(&self, max_stalled: u32) -> Result<RecoverReport, StoreError> {
        let (requeued, failed): (Vec<String>, Vec<String>) = scripts::RECOVER
            .key(self.key("active"))
            .arg(&self.keys)
            .arg(max_stalled)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        // Each list is id, name, id, name, ...
        let pairs = |flat: Vec<String>| -> Vec<Recovered> {
            let mut flat = flat.into_iter();
            std::iter::from_fn(|| {
                Some(Recovered {
                    id: flat.next()?.into(),
                    name: flat.next().unwrap_or_default(),
                })
            })
            .collect()
        };
        Ok(RecoverReport {
            requeued: pairs(requeued),
            failed: pairs(failed),
        })
    }

    async fn progress(&self, id: &str, value: Value) -> Result<(), StoreError> {
        let found: u8 = self
            .admin("progress", &[id.to_string(), value.to_string()])
            .await?;
        if found == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(id.to_string()))
        }
    }

    async fn log(&self, id: &str, line: String) -> Result<(), StoreError> {
        let found: u8 = self
            .admin("log", &[id.to_string(), line, Job::MAX_LOGS.to_string()])
            .await?;
        if found == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(id.to_string()))
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let (paused, raw): (bool, Option<RawJob>) = self.admin("get", &[id.to_string()]).await?;
        raw.map(|r| self.decode(r, paused)).transpose()
    }

    async fn list(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        if state != JobState::Paused {
            // One stored state at most: the pause flag read with it says whether it shows.
            let (paused, jobs) = self.list_raw(state.as_str(), offset, limit).await?;
            let shown = !stored_states(state, paused).is_empty();
            return Ok(if shown { jobs } else { Vec::new() });
        }
        // The paused view spans two stored states: page through them by their counts.
        // Raw counts: [waiting, active, delayed, prioritized, completed, failed, paused].
        let c: Vec<u64> = self.admin("counts", &[]).await?;
        if c.len() != 7 {
            return Err(StoreError::Corrupt(format!("counts answered {c:?}")));
        }
        let held = |part: JobState| -> usize {
            let n = match part {
                JobState::Waiting => c[0],
                JobState::Active => c[1],
                JobState::Delayed => c[2],
                JobState::Prioritized => c[3],
                JobState::Completed => c[4],
                JobState::Failed => c[5],
                JobState::Paused => 0,
            };
            n as usize
        };
        let mut jobs = Vec::new();
        for (part, skip, take) in page_plan(stored_states(state, c[6] == 1), held, offset, limit) {
            let (_, more) = self.list_raw(part.as_str(), skip, take).await?;
            jobs.extend(more);
        }
        Ok(jobs)
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        let c: Vec<u64> = self.admin("counts", &[]).await?;
        let [
            waiting,
            active,
            delayed,
            prioritized,
            completed,
            failed,
            paused,
        ] = c[..]
        else {
            return Err(StoreError::Corrupt(format!("counts answered {c:?}")));
        };
        let counts = Counts {
            waiting,
            active,
            delayed,
            prioritized,
            completed,
            failed,
            paused: 0,
        };
        Ok(if paused == 1 {
            counts.held_by_pause()
        } else {
            counts
        })
    }

    async fn retry(&self, id: &str) -> Result<(), StoreError> {
        let answer: String = self.admin("retry", &[id.to_string()]).await?;
        match answer.as_str() {
            "ok" => Ok(()),
            "missing" => Err(StoreError::NotFound(id.to_string())),
            state => Err(StoreError::InvalidState {
                id: id.to_string(),
                state: state.to_string(),
                hint: "only failed jobs can be retried".into(),
            }),
        }
    }

    async fn retry_failed(&self, limit: usize) -> Result<Batch, StoreError> {
        self.in_steps("retry_failed", limit, |left| vec![left.to_string()])
            .await
    }

    async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        let answer: String = self.admin("remove", &[id.to_string()]).await?;
        match answer.as_str() {
            "ok" => Ok(true),
            "missing" => Ok(false),
            state => Err(StoreError::InvalidState {
                id: id.to_string(),
                state: state.to_string(),
                hint: "an active job can be removed once it settles".into(),
            }),
        }
    }

    async fn clean(
        &self,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> Result<usize, StoreError> {
        // Only the ready states depend on the pause; the others need no round trip for it.
        let paused = matches!(
            state,
            JobState::Waiting | JobState::Prioritized | JobState::Paused
        ) && self.is_paused().await?;
        let mut removed = 0;
        for part in stored_states(state, paused) {
            // The script works in bounded steps; each says where the next one starts.
            let mut cursor: i64 = 0;
            while removed < limit && cursor >= 0 {
                let (n, next): (usize, i64) = self
                    .admin(
                        "clean",
                        &[
                            part.as_str().to_string(),
                            (older_than.as_millis() as u64).to_string(),
                            (limit - removed).to_string(),
                            cursor.to_string(),
                        ],
                    )
                    .await
                    .map_err(|e| after_steps(e, removed))?;
                removed += n;
                cursor = next;
            }
        }
        Ok(removed)
    }

    async fn pause(&self) -> Result<(), StoreError> {
        self.admin::<u8>("pause", &[]).await.map(|_| ())
    }

    async fn resume(&self) -> Result<(), StoreError> {
        self.admin::<u8>("resume", &[]).await.map(|_| ())
    }

    async fn is_paused(&self) -> Result<bool, StoreError> {
        self.admin::<u8>("paused", &[]).await.map(|p| p == 1)
    }

    async fn drain(&self, include_delayed: bool, limit: usize) -> Result<Batch, StoreError> {
        // The script removes a bounded step per call; this loops to `limit`.
        let delayed = if include_delayed { "1" } else { "0" };
        self.in_steps("drain", limit, |left| {
            vec![delayed.to_string(), left.to_string()]
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    async fn record_minutes(
        &self,
        minutes: &[crate::history::MinuteStats],
    ) -> Result<(), StoreError> {
        let mut call = scripts::HISTORY.key(self.key("id"));
        call.arg(&self.keys)
            .arg(crate::history::HISTORY_MINUTES * 60_000);
        let mut any = false;
        for stats in minutes {
            let fields = stats.fields();
            if fields.is_empty() {
                continue;
            }
            any = true;
            call.arg(stats.minute).arg(fields.len());
            for (field, n) in fields {
                call.arg(field).arg(n);
            }
        }
        if !any {
            return Ok(());
        }
        let _: u64 = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        Ok(())
    }

    async fn read_minutes(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<crate::history::MinuteStats>, StoreError> {
        let mut out = Vec::new();
        let mut minute = from;
        // Pipelined a day at a time, so no reply grows past a day's figures.
        while minute <= to {
            let last = to.min(minute.saturating_add(1_439));
            let mut pipe = redis::pipe();
            for m in minute..=last {
                pipe.cmd("HGETALL").arg(keys::minute(&self.keys, m));
            }
            let days: Vec<std::collections::HashMap<String, u64>> = pipe
                .query_async(&mut self.conn.clone())
                .await
                .map_err(read_failed)?;
            for (m, fields) in (minute..=last).zip(days) {
                if !fields.is_empty() {
                    out.push(crate::history::MinuteStats::from_fields(
                        m,
                        fields.iter().map(|(f, n)| (f.as_str(), *n)),
                    ));
                }
            }
            if last == u64::MAX {
                break;
            }
            minute = last + 1;
        }
        Ok(out)
    }

    async fn events_after(
        &self,
        after: crate::events::EventPosition,
        max: usize,
    ) -> Result<crate::events::EventPage, StoreError> {
        events::after(
            &mut self.conn.clone(),
            &self.key("events"),
            &self.queue,
            after,
            max,
        )
        .await
        .map_err(read_failed)
    }

    async fn put_schedule(&self, schedule: &Schedule) -> Result<PutSchedule, StoreError> {
        self.put_schedule_impl(schedule).await
    }

    async fn get_schedule(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        self.get_schedule_impl(id).await
    }

    async fn list_schedules(&self) -> Result<Vec<Schedule>, StoreError> {
        self.list_schedules_impl().await
    }

    async fn remove_schedule(&self, id: &str) -> Result<bool, StoreError> {
        self.schedule_admin(id, "remove", None).await
    }

    async fn pause_schedule(
        &self,
        id: &str,
        paused: bool,
        next_at: Option<u64>,
    ) -> Result<bool, StoreError> {
        let op = if paused { "pause" } else { "resume" };
        self.schedule_admin(id, op, next_at).await
    }

    async fn next_schedule_at(&self) -> Result<Option<u64>, StoreError> {
        self.next_schedule_at_impl().await
    }

    async fn due_schedules(&self, now: u64, limit: usize) -> Result<Vec<Schedule>, StoreError> {
        self.due_schedules_impl(now, limit).await
    }

    async fn fire_schedule(&self, fire: ScheduleFire) -> Result<bool, StoreError> {
        self.fire_schedule_impl(fire).await
    }
}
