//! A queue's schedules in Redis: a hash per schedule (`K:s:ID`: spec, next, last, fires,
//! paused, created), the set of their ids (`K:scheds`) and the active ones by next fire
//! (`K:sched`). All in the queue's hash slot, so a fire adds its jobs in the same script.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::{RedisStore, keys, push_jobs, read_failed, scripts, write_failed};
use crate::error::StoreError;
use crate::schedule::{Schedule, ScheduleState};
use crate::store::{PutSchedule, ScheduleFire};

/// The most schedules read back in one call.
const READ_BATCH: usize = 500;

fn opt_ms(value: Option<u64>) -> String {
    value.map_or_else(String::new, |v| v.to_string())
}

fn decode(fields: HashMap<String, String>) -> Result<Option<Schedule>, StoreError> {
    let Some(spec) = fields.get("spec") else {
        return Ok(None);
    };
    let spec = serde_json::from_str(spec)
        .map_err(|e| StoreError::Corrupt(format!("a schedule's spec: {e}")))?;
    let ms = |name: &str| fields.get(name).and_then(|v| v.parse::<u64>().ok());
    Ok(Some(Schedule {
        spec,
        state: ScheduleState {
            next_at: ms("next"),
            last_fire: ms("last"),
            fires: ms("fires").unwrap_or(0),
            paused: fields.get("paused").is_some_and(|p| p == "1"),
            created_at: ms("created").unwrap_or(0),
        },
    }))
}

impl RedisStore {
    fn schedule_key(&self, id: &str) -> String {
        keys::schedule(&self.keys, id)
    }

    /// Reads the schedules `ids`, skipping any removed meanwhile; a record that does not
    /// decode is skipped too, its id returned apart (one bad record must not hide the rest).
    async fn read_schedules(
        &self,
        ids: &[String],
    ) -> Result<(Vec<Schedule>, Vec<String>), StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut corrupt = Vec::new();
        for chunk in ids.chunks(READ_BATCH) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.hgetall(self.schedule_key(id));
            }
            let all: Vec<HashMap<String, String>> = pipe
                .query_async(&mut self.conn.clone())
                .await
                .map_err(read_failed)?;
            for (id, fields) in chunk.iter().zip(all) {
                match decode(fields) {
                    Ok(found) => out.extend(found),
                    Err(err) => {
                        tracing::error!(queue = %self.queue, schedule = %id, error = %err, "a stored schedule does not decode; skipped (DELETE it, or PUT it again)");
                        corrupt.push(id.clone());
                    }
                }
            }
        }
        Ok((out, corrupt))
    }

    pub(super) async fn put_schedule_impl(
        &self,
        schedule: &Schedule,
    ) -> Result<PutSchedule, StoreError> {
        let spec = serde_json::to_string(&schedule.spec)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result: i64 = scripts::SCHED_PUT
            .key(self.schedule_key(&schedule.spec.id))
            .arg(&self.keys)
            .arg(&schedule.spec.id)
            .arg(spec)
            .arg(opt_ms(schedule.state.next_at))
            .arg(schedule.state.created_at)
            .arg(if schedule.state.paused { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        Ok(match result {
            1 => PutSchedule::Created,
            2 => PutSchedule::Updated,
            _ => PutSchedule::Unchanged,
        })
    }

    pub(super) async fn get_schedule_impl(&self, id: &str) -> Result<Option<Schedule>, StoreError> {
        let fields: HashMap<String, String> = self
            .conn
            .clone()
            .hgetall(self.schedule_key(id))
            .await
            .map_err(read_failed)?;
        decode(fields)
    }

    pub(super) async fn list_schedules_impl(&self) -> Result<Vec<Schedule>, StoreError> {
        let mut ids: Vec<String> = self
            .conn
            .clone()
            .smembers(self.key("scheds"))
            .await
            .map_err(read_failed)?;
        ids.sort();
        Ok(self.read_schedules(&ids).await?.0)
    }

    pub(super) async fn schedule_admin(
        &self,
        id: &str,
        op: &str,
        next_at: Option<u64>,
    ) -> Result<bool, StoreError> {
        let existed: i64 = scripts::SCHED_ADMIN
            .key(self.schedule_key(id))
            .arg(&self.keys)
            .arg(id)
            .arg(op)
            .arg(opt_ms(next_at))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        Ok(existed == 1)
    }

    pub(super) async fn next_schedule_at_impl(&self) -> Result<Option<u64>, StoreError> {
        let first: Vec<(String, f64)> = self
            .conn
            .clone()
            .zrange_withscores(self.key("sched"), 0, 0)
            .await
            .map_err(read_failed)?;
        Ok(first.first().map(|(_, at)| *at as u64))
    }

    pub(super) async fn due_schedules_impl(
        &self,
        now: u64,
        limit: usize,
    ) -> Result<Vec<Schedule>, StoreError> {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.key("sched"))
            .arg("-inf")
            .arg(now)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(read_failed)?;
        let (due, corrupt) = self.read_schedules(&ids).await?;
        if !corrupt.is_empty() {
            // Out of the due index, so that no scheduler spins on them; DELETE or PUT mends.
            let _: i64 = self
                .conn
                .clone()
                .zrem(self.key("sched"), &corrupt)
                .await
                .map_err(write_failed)?;
        }
        Ok(due)
    }

    pub(super) async fn fire_schedule_impl(&self, fire: ScheduleFire) -> Result<bool, StoreError> {
        let mut call = scripts::SCHED_FIRE.key(self.schedule_key(&fire.id));
        call.key(self.key("id"))
            .arg(&self.keys)
            .arg(&fire.id)
            .arg(fire.expected)
            .arg(opt_ms(fire.next_at))
            .arg(opt_ms(fire.last_fire))
            .arg(fire.fires)
            .arg(self.max_jobs.map_or(-1, |m| m.min(i64::MAX as u64) as i64));
        push_jobs(&mut call, &fire.jobs)?;
        let result: i64 = call
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(write_failed)?;
        match result {
            1 => Ok(true),
            -1 => Err(StoreError::QueueFull {
                queue: self.queue.clone(),
                max: self.max_jobs.unwrap_or(0),
            }),
            _ => Ok(false),
        }
    }
}
