//! A schedule as stored, and the decisions made about it in core (ARCHITECTURE §1): when it
//! fires next within its bounds, and what a late scheduler does about the fires it missed.
//! Stores only keep schedules and apply the plans made here.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cron::CronSpec;
use crate::options::{JobOptionsInput, MAX_DURATION_MS};

/// The longest schedule id accepted, in bytes.
pub const MAX_SCHEDULE_ID_LEN: usize = 200;
/// The shortest interval accepted.
pub const MIN_EVERY_MS: u64 = 100;
/// The most missed fires `catch_up` may run.
pub const MAX_CATCH_UP: u32 = 1_000;
/// A fire this late is still on time (the scheduler's own delays are not misses).
pub const ON_TIME_MS: u64 = 1_000;

/// What a schedule does about fires it missed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "policy", deny_unknown_fields)]
pub enum Missed {
    /// Go on from the next time (the default).
    #[default]
    Skip,
    /// One job for all the missed fires (at the latest of them).
    RunOnce,
    /// A job for each missed fire, the latest `max` of them at most.
    CatchUp {
        /// At most this many.
        max: u32,
    },
}

/// A schedule as given: what to enqueue, when, and within which bounds. Read leniently (a
/// field a newer version added is ignored by an older one); the API's input is strict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Its id (unique among all schedules).
    pub id: String,
    /// The queue its jobs go to.
    pub queue: String,
    /// Its jobs' name.
    pub name: String,
    /// Its jobs' data.
    #[serde(default)]
    pub data: Value,
    /// Its jobs' options (`job_id` is the scheduler's: refused here).
    #[serde(default)]
    pub options: JobOptionsInput,
    /// A cron expression (crontab's 5 fields, 6 with seconds, or a macro)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// ...or a fixed interval, counted from `start_at` (or the schedule's creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    /// The IANA time zone the cron expression reads in (UTC by default).
    #[serde(default = "utc")]
    pub tz: String,
    /// No fire before this (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<u64>,
    /// No fire after this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<u64>,
    /// At most this many fires in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// What to do about missed fires.
    #[serde(default)]
    pub missed: Missed,
}

fn utc() -> String {
    "UTC".into()
}

/// A schedule's progress, kept beside its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Its next fire (ms since the epoch); `None` once it has none.
    pub next_at: Option<u64>,
    /// Its last fire.
    pub last_fire: Option<u64>,
    /// How many times it fired.
    pub fires: u64,
    /// Paused: no fires until resumed.
    pub paused: bool,
    /// When it was first stored (the anchor of an interval without `start_at`).
    pub created_at: u64,
}

/// A schedule with its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// What it does.
    pub spec: ScheduleSpec,
    /// Where it is.
    pub state: ScheduleState,
}

/// How a schedule's times are computed, once parsed.
#[derive(Debug, Clone)]
pub enum Timing {
    /// A cron expression in a zone.
    Cron(Box<CronSpec>),
    /// Every `every_ms` from `anchor`.
    Every {
        /// The interval.
        every_ms: u64,
        /// The first fire.
        anchor: u64,
    },
}

/// Why a schedule was refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ScheduleError {
    /// The field (`cron`, `tz`, `end_at`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> ScheduleError {
    ScheduleError {
        field,
        reason: reason.into(),
    }
}

/// The job id of a schedule's fire: derived from the schedule and the fire time, so a fire is
/// one job however many processes claim it.
pub fn fire_job_id(schedule_id: &str, fire_ms: u64) -> String {
    format!("sched:{schedule_id}:{fire_ms}")
}

impl ScheduleSpec {
    /// Checks the spec (the queue is the caller's to check) and parses its timing, anchored at
    /// `created_at` for an interval without `start_at`.
    pub fn timing(&self, created_at: u64) -> Result<Timing, ScheduleError> {
        if self.id.is_empty() || self.id.len() > MAX_SCHEDULE_ID_LEN {
            return Err(refuse("id", format!("1 to {MAX_SCHEDULE_ID_LEN} bytes")));
        }
        if self.id.chars().any(char::is_control) {
            return Err(refuse("id", "no control characters"));
        }
        if crate::options::validate_job_name(&self.name).is_err() {
            return Err(refuse(
                "name",
                format!(
                    "a job name of 1 to {} bytes, as for any job",
                    crate::options::MAX_NAME_LEN
                ),
            ));
        }
        if self.options.job_id.is_some() {
            return Err(refuse(
                "options.job_id",
                "a schedule's job ids are its own (sched:ID:FIRE_MS)",
            ));
        }
        for (field, at) in [("start_at", self.start_at), ("end_at", self.end_at)] {
            if at.is_some_and(|at| at > 253_402_300_799_000) {
                return Err(refuse(field, "after the year 9999"));
            }
        }
        if let (Some(start), Some(end)) = (self.start_at, self.end_at)
            && end < start
        {
            return Err(refuse("end_at", "before start_at"));
        }
        if self.limit == Some(0) {
            return Err(refuse("limit", "at least 1 (leave it out for no limit)"));
        }
        if let Missed::CatchUp { max } = self.missed
            && !(1..=MAX_CATCH_UP).contains(&max)
        {
            return Err(refuse("missed.max", format!("1 to {MAX_CATCH_UP}")));
        }
        let tz: Tz = self.tz.parse().map_err(|_| {
            refuse(
                "tz",
                format!(
                    "'{}' is not an IANA time zone (such as Europe/Berlin)",
                    self.tz
                ),
            )
        })?;
        match (&self.cron, self.every_ms) {
            (Some(expression), None) => CronSpec::parse(expression, tz)
                .map(|spec| Timing::Cron(Box::new(spec)))
                .map_err(|e| refuse("cron", e.reason)),
            (None, Some(every_ms)) => {
                if !(MIN_EVERY_MS..=MAX_DURATION_MS).contains(&every_ms) {
                    return Err(refuse(
                        "every_ms",
                        format!("{MIN_EVERY_MS} to {MAX_DURATION_MS}"),
                    ));
                }
                Ok(Timing::Every {
                    every_ms,
                    anchor: self.start_at.unwrap_or(created_at),
                })
            }
            _ => Err(refuse("cron", "give cron or every_ms, one of them")),
        }
    }
}

impl Timing {
    /// The first time strictly after `after` (ms), ignoring bounds.
    fn raw_next(&self, after: u64) -> Option<u64> {
        match self {
            Timing::Cron(spec) => {
                let at = Utc
                    .timestamp_millis_opt(i64::try_from(after).ok()?)
                    .single()?;
                spec.next_after(at)
                    .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
            }
            Timing::Every { every_ms, anchor } => {
                if after < *anchor {
                    return Some(*anchor);
                }
                let steps = (after - anchor) / every_ms + 1;
                anchor.checked_add(steps.checked_mul(*every_ms)?)
            }
        }
    }
}

/// What to do now about a due schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirePlan {
    /// The fire times to enqueue a job for (each job's id from [`fire_job_id`]).
    pub fires: Vec<u64>,
    /// Fire times missed and not enqueued.
    pub skipped: u64,
    /// Fire times that were due (enqueued or not).
    pub due: u64,
    /// The schedule's next fire after this, if any.
    pub next_at: Option<u64>,
    /// Its fire count after this.
    pub fires_total: u64,
}

/// The most due fires looked at in one plan (a schedule far behind is not walked for ever).
const MAX_DUE: usize = 100_000;

impl Schedule {
    /// The first fire strictly after `after`, within `start_at`, `end_at` and `limit`.
    pub fn next_fire(&self, timing: &Timing, after: u64) -> Option<u64> {
        if self.spec.limit.is_some_and(|l| self.state.fires >= l) {
            return None;
        }
        let after = match self.spec.start_at {
            Some(start) if start > 0 && after < start => start - 1,
            _ => after,
        };
        let next = timing.raw_next(after)?;
        match self.spec.end_at {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// The plan at `now` for a schedule whose next fire is due: the fires due by now, the
    /// policy for those missed (more than [`ON_TIME_MS`] late, except the latest one while it
    /// is on time), and the next fire after now.
    pub fn plan(&self, timing: &Timing, now: u64) -> FirePlan {
        let mut due = Vec::new();
        let mut at = self.state.next_at;
        let mut left = self
            .spec
            .limit
            .map_or(u64::MAX, |l| l.saturating_sub(self.state.fires));
        while let Some(fire) = at {
            if fire > now || due.len() >= MAX_DUE || left == 0 {
                break;
            }
            due.push(fire);
            left -= 1;
            at = timing
                .raw_next(fire)
                .filter(|n| self.spec.end_at.is_none_or(|end| *n <= end));
        }
        let on_time = |fire: u64| now.saturating_sub(fire) <= ON_TIME_MS;
        let (late, current): (Vec<u64>, Vec<u64>) = due.iter().partition(|f| !on_time(**f));
        let mut fires: Vec<u64> = match self.spec.missed {
            Missed::Skip => Vec::new(),
            Missed::RunOnce => late.last().copied().into_iter().collect(),
            Missed::CatchUp { max } => late[late.len().saturating_sub(max as usize)..].to_vec(),
        };
        fires.extend(current);
        let fires_total = self.state.fires + fires.len() as u64;
        let with_counts = Schedule {
            spec: self.spec.clone(),
            state: ScheduleState {
                fires: fires_total,
                ..self.state.clone()
            },
        };
        FirePlan {
            skipped: (due.len() - fires.len()) as u64,
            due: due.len() as u64,
            fires,
            next_at: with_counts.next_fire(timing, now),
            fires_total,
        }
    }
}

/// `ms` as RFC 3339 in UTC and in `tz`.
pub fn show_time(ms: u64, tz: &Tz) -> (String, String) {
    let Some(at) = i64::try_from(ms)
        .ok()
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
    else {
        return (String::new(), String::new());
    };
    let at: DateTime<Utc> = at;
    (
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        at.with_timezone(tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every(ms: u64, missed: Missed) -> (Schedule, Timing) {
        let spec: ScheduleSpec = serde_json::from_value(serde_json::json!({
            "id": "s", "queue": "q", "name": "tick", "every_ms": ms, "start_at": 1_000_000,
        }))
        .expect("a spec");
        let spec = ScheduleSpec { missed, ..spec };
        let timing = spec.timing(0).expect("valid");
        let schedule = Schedule {
            spec,
            state: ScheduleState {
                next_at: Some(1_000_000),
                ..ScheduleState::default()
            },
        };
        (schedule, timing)
    }

    #[test]
    fn an_on_time_fire_is_fired_and_the_next_follows() {
        let (s, t) = every(1_000, Missed::Skip);
        let plan = s.plan(&t, 1_000_200);
        assert_eq!(plan.fires, [1_000_000]);
        assert_eq!(
            (plan.skipped, plan.next_at, plan.fires_total),
            (0, Some(1_001_000), 1)
        );
    }

    #[test]
    fn missed_fires_follow_the_policy() {
        // Ten seconds down with a fire a second: fires at 1,000,000 .. 1,010,000 are due at
        // 1,010,300; the last one is on time.
        let now = 1_010_300;
        let (s, t) = every(1_000, Missed::Skip);
        let plan = s.plan(&t, now);
        assert_eq!(
            (plan.fires.clone(), plan.skipped, plan.due),
            (vec![1_010_000], 10, 11)
        );
        assert_eq!(plan.next_at, Some(1_011_000));
        let (s, t) = every(1_000, Missed::RunOnce);
        assert_eq!(s.plan(&t, now).fires, [1_009_000, 1_010_000]);
        let (s, t) = every(1_000, Missed::CatchUp { max: 3 });
        assert_eq!(
            s.plan(&t, now).fires,
            [1_007_000, 1_008_000, 1_009_000, 1_010_000]
        );
        let (s, t) = every(1_000, Missed::CatchUp { max: 100 });
        assert_eq!(s.plan(&t, now).fires.len(), 11);
    }

    #[test]
    fn bounds_end_a_schedule() {
        let (mut s, t) = every(1_000, Missed::CatchUp { max: 100 });
        s.spec.limit = Some(3);
        let plan = s.plan(&t, 1_010_300);
        assert_eq!(plan.fires, [1_000_000, 1_001_000, 1_002_000]);
        assert_eq!((plan.next_at, plan.fires_total), (None, 3));
        let (mut s, t) = every(1_000, Missed::Skip);
        s.spec.end_at = Some(1_001_500);
        assert_eq!(s.plan(&t, 1_000_100).next_at, Some(1_001_000));
        assert_eq!(s.next_fire(&t, 1_001_000), None);
        // Before start_at, the first fire is start_at itself.
        assert_eq!(s.next_fire(&t, 5), Some(1_000_000));
    }

    #[test]
    fn bad_specs_name_the_field() {
        let base = serde_json::json!({"id": "s", "queue": "q", "name": "n", "cron": "* * * * *"});
        let cases = [
            (serde_json::json!({"cron": "* * *"}), "cron"),
            (serde_json::json!({"tz": "Mars/Olympus"}), "tz"),
            (serde_json::json!({"start_at": 10, "end_at": 5}), "end_at"),
            (serde_json::json!({"limit": 0}), "limit"),
            (serde_json::json!({"every_ms": 1000}), "cron"),
            (serde_json::json!({"cron": null, "every_ms": 5}), "every_ms"),
            (serde_json::json!({"id": ""}), "id"),
            (serde_json::json!({"name": ""}), "name"),
            (serde_json::json!({"name": "n".repeat(257)}), "name"),
            (
                serde_json::json!({"options": {"job_id": "x"}}),
                "options.job_id",
            ),
            (
                serde_json::json!({"missed": {"policy": "catch_up", "max": 0}}),
                "missed.max",
            ),
        ];
        for (patch, field) in cases {
            let mut value = base.clone();
            for (k, v) in patch.as_object().expect("an object") {
                value[k] = v.clone();
            }
            let spec: ScheduleSpec = serde_json::from_value(value.clone()).expect("shape");
            let err = spec.timing(0).expect_err(&value.to_string());
            assert_eq!(err.field, field, "{value}: {err}");
        }
    }
}
