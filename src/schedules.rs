//! Schedules in the service: the shape they take in the API and in `[[schedules]]`, checked
//! and stored in their queue's store, and shown with their next fire times.

use chrono::DateTime;
use chrono_tz::Tz;
use std::sync::Arc;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stagehand_actors::RuntimeHandle;
use stagehand_core::clock::now_ms;
use stagehand_core::redis::{Conn, read_failed, write_failed};
use stagehand_core::schedule::{Missed, Schedule, ScheduleSpec, ScheduleState, show_time};
use stagehand_core::store::PutSchedule;
use stagehand_core::{JobOptionsInput, StoreError};

/// What a missed-fire policy looks like in the API: `"skip"`, `"run_once"` or
/// `{"catch_up": N}`; or as a schedule shows it (`{"policy": "catch_up", "max": N}`), so that
/// what GET shows can be PUT back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MissedBody {
    /// `"skip"` or `"run_once"`.
    Named(String),
    /// `{"catch_up": N}`.
    CatchUp {
        /// At most this many missed fires run.
        catch_up: u32,
    },
    /// As shown.
    Shown(Missed),
}

/// A schedule as the API and `[[schedules]]` give it (times as RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// Its id (in `[[schedules]]`; the API takes it from the path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The queue its jobs go to.
    pub queue: String,
    /// Its jobs' name.
    pub name: String,
    /// Its jobs' data (`{}` unless given).
    #[serde(default = "empty_object")]
    pub data: Value,
    /// Its jobs' options.
    #[serde(default)]
    pub options: JobOptionsInput,
    /// A cron expression...
    #[serde(default)]
    pub cron: Option<String>,
    /// ...or an interval.
    #[serde(default)]
    pub every_ms: Option<u64>,
    /// The IANA time zone (UTC by default).
    #[serde(default)]
    pub tz: Option<String>,
    /// No fire before this (RFC 3339).
    #[serde(default)]
    pub start_at: Option<String>,
    /// No fire after this (RFC 3339).
    #[serde(default)]
    pub end_at: Option<String>,
    /// At most this many fires.
    #[serde(default)]
    pub limit: Option<u64>,
    /// What to do about missed fires (`skip` by default).
    #[serde(default)]
    pub missed: Option<MissedBody>,
}

fn empty_object() -> Value {
    json!({})
}

/// Why a schedule was refused, naming the field; or the store's error.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleInputError {
    /// A field that does not fit.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The id is another queue's schedule.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which queue holds each schedule id, so that an id is one schedule in one queue whatever
/// processes race to create it (a schedule lives in its queue's store, for its fires to be
/// atomic with their jobs; the owner record keeps two queues from both taking an id).
#[derive(Clone)]
pub enum Owners {
    /// Within this process (the memory store).
    Memory(Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>),
    /// A Redis hash shared by every process.
    Redis {
        /// The connection.
        conn: Conn,
        /// `PREFIX:schedule-owners`.
        key: String,
    },
}

impl Default for Owners {
    fn default() -> Self {
        Owners::Memory(Arc::default())
    }
}

impl std::fmt::Debug for Owners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Owners::Memory(_) => "Owners::Memory",
            Owners::Redis { .. } => "Owners::Redis",
        })
    }
}

impl Owners {
    /// Owners kept in Redis beside the queues (`PREFIX:schedule-owners`).
    pub fn redis(conn: Conn, prefix: &str) -> Owners {
        Owners::Redis {
            conn,
            key: format!("{prefix}:schedule-owners"),
        }
    }

    /// Claims `id` for `queue`; the other queue that holds it, if any.
    async fn claim(&self, id: &str, queue: &str) -> Result<Option<String>, StoreError> {
        match self {
            Owners::Memory(map) => {
                let mut map = map
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let owner = map
                    .entry(id.to_string())
                    .or_insert_with(|| queue.to_string());
                Ok((owner != queue).then(|| owner.clone()))
            }
            Owners::Redis { conn, key } => {
                let mut conn = conn.clone();
                let set: bool = conn.hset_nx(key, id, queue).await.map_err(write_failed)?;
                if set {
                    return Ok(None);
                }
                let owner: Option<String> = conn.hget(key, id).await.map_err(read_failed)?;
                Ok(owner.filter(|o| o != queue))
            }
        }
    }

    /// Gives `id` up.
    pub async fn release(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Owners::Memory(map) => {
                map.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(id);
                Ok(())
            }
            Owners::Redis { conn, key } => conn.clone().hdel(key, id).await.map_err(write_failed),
        }
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ScheduleInputError {
    ScheduleInputError::Invalid {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn rfc3339(field: &str, text: &Option<String>) -> Result<Option<u64>, ScheduleInputError> {
    let Some(text) = text else { return Ok(None) };
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| invalid(field, format!("'{text}' is not an RFC 3339 time: {e}")))?;
    u64::try_from(at.timestamp_millis())
        .map(Some)
        .map_err(|_| invalid(field, "before 1970"))
}

impl ScheduleBody {
    /// The spec this body describes, checked against the runtime's queues.
    pub fn spec(
        &self,
        id: &str,
        runtime: &RuntimeHandle,
    ) -> Result<ScheduleSpec, ScheduleInputError> {
        let Some(queue) = runtime.queue(&self.queue) else {
            let known: Vec<&str> = runtime.queues().map(|q| q.name()).collect();
            return Err(invalid(
                "queue",
                format!(
                    "no queue named '{}'; queues: {}",
                    self.queue,
                    known.join(", ")
                ),
            ));
        };
        self.options
            .resolve(queue.defaults())
            .map_err(|e| invalid("options", e.to_string()))?;
        let missed = match &self.missed {
            None => Missed::Skip,
            Some(MissedBody::Named(name)) if name == "skip" => Missed::Skip,
            Some(MissedBody::Named(name)) if name == "run_once" => Missed::RunOnce,
            Some(MissedBody::Named(name)) => {
                return Err(invalid(
                    "missed",
                    format!("'{name}': expected \"skip\", \"run_once\" or {{\"catch_up\": N}}"),
                ));
            }
            Some(MissedBody::CatchUp { catch_up }) => Missed::CatchUp { max: *catch_up },
            Some(MissedBody::Shown(missed)) => *missed,
        };
        let spec = ScheduleSpec {
            id: id.to_string(),
            queue: self.queue.clone(),
            name: self.name.clone(),
            data: self.data.clone(),
            options: self.options.clone(),
            cron: self.cron.clone(),
            every_ms: self.every_ms,
            tz: self.tz.clone().unwrap_or_else(|| "UTC".into()),
            start_at: rfc3339("start_at", &self.start_at)?,
            end_at: rfc3339("end_at", &self.end_at)?,
            limit: self.limit,
            missed,
        };
        spec.timing(0).map_err(|e| invalid(e.field, e.reason))?;
        Ok(spec)
    }
}

/// Finds the schedule `id` in any queue.
pub async fn find(runtime: &RuntimeHandle, id: &str) -> Result<Option<Schedule>, StoreError> {
    for queue in runtime.queues() {
        if let Some(store) = runtime.store(queue.name())
            && let Some(schedule) = store.get_schedule(id).await?
        {
            return Ok(Some(schedule));
        }
    }
    Ok(None)
}

/// Stores `spec` (a new schedule, or a changed one); upserting the same spec again changes
/// nothing. An id another queue holds is a conflict: delete it there to move it.
pub async fn upsert(
    runtime: &RuntimeHandle,
    owners: &Owners,
    spec: ScheduleSpec,
) -> Result<PutSchedule, ScheduleInputError> {
    let now = now_ms();
    // Another queue's claim stands, even while its schedule is being stored (taking it over
    // then would make two); DELETE gives an id up, dangling claims included.
    if let Some(owner) = owners.claim(&spec.id, &spec.queue).await? {
        return Err(ScheduleInputError::Conflict(format!(
            "schedule '{}' belongs to queue '{owner}': DELETE it first to move it",
            spec.id
        )));
    }
    let existing = find(runtime, &spec.id).await?;
    let created_at = existing.as_ref().map_or(now, |s| s.state.created_at);
    let timing = spec
        .timing(created_at)
        .map_err(|e| invalid(e.field, e.reason))?;
    let mut schedule = Schedule {
        spec,
        state: ScheduleState {
            created_at,
            fires: existing.as_ref().map_or(0, |s| s.state.fires),
            paused: existing.as_ref().is_some_and(|s| s.state.paused),
            ..ScheduleState::default()
        },
    };
    schedule.state.next_at = schedule.next_fire(&timing, now);
    if schedule.state.next_at.is_none() && existing.is_none() {
        owners.release(&schedule.spec.id).await?;
        let field = if schedule.spec.end_at.is_some() {
            "end_at"
        } else if schedule.spec.cron.is_some() {
            "cron"
        } else {
            "every_ms"
        };
        return Err(invalid(
            field,
            "the schedule would never fire: no fire time after now within start_at, end_at and limit (cron times end in 2099)",
        ));
    }
    let store = runtime
        .store(&schedule.spec.queue)
        .ok_or_else(|| invalid("queue", "no such queue"))?;
    let put = store.put_schedule(&schedule).await?;
    Ok(match (existing.is_some(), put) {
        (true, PutSchedule::Created) => PutSchedule::Updated,
        (_, put) => put,
    })
}

/// A schedule as the API shows it: its spec, its state, and its next five fires in UTC and
/// in its zone.
pub fn view(schedule: &Schedule) -> Value {
    let tz: Tz = schedule.spec.tz.parse().unwrap_or(chrono_tz::UTC);
    let time = |ms: u64| {
        let (utc, local) = show_time(ms, &tz);
        json!({ "ms": ms, "utc": utc, "local": local })
    };
    let mut upcoming = Vec::new();
    if !schedule.state.paused
        && let Ok(timing) = schedule.spec.timing(schedule.state.created_at)
        && let Some(first) = schedule.state.next_at
    {
        let mut shadow = schedule.clone();
        let mut at = Some(first);
        while let Some(fire) = at {
            if upcoming.len() == 5 {
                break;
            }
            upcoming.push(time(fire));
            shadow.state.fires += 1;
            at = shadow.next_fire(&timing, fire);
        }
    }
    let s = &schedule.spec;
    json!({
        "id": s.id,
        "queue": s.queue,
        "name": s.name,
        "data": s.data,
        "options": s.options,
        "cron": s.cron,
        "every_ms": s.every_ms,
        "tz": s.tz,
        "start_at": s.start_at.map(time),
        "end_at": s.end_at.map(time),
        "limit": s.limit,
        "missed": s.missed,
        "paused": schedule.state.paused,
        "fires": schedule.state.fires,
        "last_fire": schedule.state.last_fire.map(time),
        "next": upcoming,
    })
}
