//! Schedules in the service: the shape they take in the API and in `[[schedules]]`, checked
//! and stored in their queue's store, and shown with their next fire times.

use chrono::DateTime;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stagehand_actors::RuntimeHandle;
use stagehand_core::clock::now_ms;
use stagehand_core::schedule::{Missed, Schedule, ScheduleSpec, ScheduleState, show_time};
use stagehand_core::store::PutSchedule;
use stagehand_core::{JobOptionsInput, StoreError};

/// What a missed-fire policy looks like in the API: `"skip"`, `"run_once"` or
/// `{"catch_up": N}`.
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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// Stores `spec` (a new schedule, or a changed one, which moves to its new queue if that
/// changed); upserting the same spec again changes nothing.
pub async fn upsert(
    runtime: &RuntimeHandle,
    spec: ScheduleSpec,
) -> Result<PutSchedule, ScheduleInputError> {
    let now = now_ms();
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
    if let Some(old) = &existing
        && old.spec.queue != schedule.spec.queue
        && let Some(store) = runtime.store(&old.spec.queue)
    {
        store.remove_schedule(&old.spec.id).await?;
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
