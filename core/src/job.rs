//! The job model: what a job is, which state it is in, and what each attempt did.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::options::JobOptions;
use crate::store::Outcome;

/// A job's id: generated ids are decimal numbers; custom ids (`job_id`) may not be.
/// Shared (`Arc<str>`), since the store, the worker and the events all hold it.
pub type JobId = Arc<str>;

/// A job's payload: its JSON text, compact, kept as text and parsed only by whoever reads it
/// (a tree of `Value`s costs many times its text in memory). Cheap to clone.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Arc<RawValue>);

impl Payload {
    /// The payload holding `value`.
    pub fn new(value: &Value) -> Payload {
        serde_json::to_string(value)
            .ok()
            .and_then(|text| Payload::from_json(text).ok())
            .unwrap_or_else(Payload::null)
    }

    /// The payload of this JSON text, if it is JSON.
    pub fn from_json(text: String) -> Result<Payload, serde_json::Error> {
        RawValue::from_string(text).map(|raw| Payload(Arc::from(raw)))
    }

    /// `null`.
    pub fn null() -> Payload {
        Payload(Arc::from(RawValue::NULL.to_owned()))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The payload as a `Value` tree.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.get()).unwrap_or(Value::Null)
    }
}

impl std::ops::Deref for Payload {
    type Target = RawValue;
    fn deref(&self) -> &RawValue {
        &self.0
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.get() == other.get()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.get())
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Payload {
        Payload::new(&value)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Ready to run, in FIFO (or LIFO) order.
    Waiting,
    /// Waiting for its delay or backoff to pass.
    Delayed,
    /// Ready to run, ordered by priority (lower runs first).
    Prioritized,
    /// Leased by a worker and running.
    Active,
    /// Finished with a result.
    Completed,
    /// Failed for good.
    Failed,
    /// Ready to run, but its queue is paused (a view of waiting/prioritized jobs).
    Paused,
}

impl JobState {
    /// Every state, in the order the API lists them.
    pub const ALL: [JobState; 7] = [
        JobState::Waiting,
        JobState::Delayed,
        JobState::Prioritized,
        JobState::Active,
        JobState::Completed,
        JobState::Failed,
        JobState::Paused,
    ];

    /// The lowercase name used in JSON and query strings.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Delayed => "delayed",
            JobState::Prioritized => "prioritized",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Paused => "paused",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown state '{s}'; expected one of waiting, delayed, prioritized, active, completed, failed, paused"
                )
            })
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// Still running.
    Running,
    /// Returned a result.
    Completed,
    /// Returned an error, panicked or timed out.
    Failed,
    /// Its lease ran out before it settled (the worker died or hung).
    Stalled,
    /// Handed back unfinished at shutdown; not counted against the attempts.
    Released,
}

/// The record of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// 1-based attempt number.
    pub attempt: u32,
    /// The worker that ran it.
    pub worker: Arc<str>,
    /// When it started (ms since epoch).
    pub started_at: u64,
    /// When it ended, if it has.
    pub finished_at: Option<u64>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The error, for a failed or stalled attempt.
    pub error: Option<String>,
    /// The backoff chosen before the next attempt, when one was scheduled.
    pub retry_delay_ms: Option<u64>,
}

/// A job and everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique within its queue.
    pub id: JobId,
    /// The queue it belongs to.
    pub queue: Arc<str>,
    /// A name the processor may dispatch on.
    pub name: String,
    /// The payload, as JSON text.
    pub data: Payload,
    /// Options with the queue's defaults filled in (shared by jobs added with the same ones).
    pub options: Arc<JobOptions>,
    /// Current state.
    pub state: JobState,
    /// Last reported progress (a number or any JSON value).
    pub progress: Value,
    /// Attempts started so far (stalled and released attempts included).
    pub attempts_made: u32,
    /// How many times its lease ran out.
    pub stalled_count: u32,
    /// Attempts handed back at shutdown.
    pub released_count: u32,
    /// The processor's result, once completed, as JSON text.
    pub return_value: Option<Payload>,
    /// Why it failed, once failed (or why the last attempt failed, while retrying).
    pub failed_reason: Option<String>,
    /// One record per attempt.
    pub history: Vec<AttemptRecord>,
    /// Lines the processor logged (the last [`Job::MAX_LOGS`]).
    pub logs: Vec<String>,
    /// When it was added (ms since epoch).
    pub created_at: u64,
    /// When it becomes ready, for a delayed job (ms since epoch).
    pub run_at: u64,
    /// When its latest attempt started.
    pub processed_at: Option<u64>,
    /// When it completed or failed for good.
    pub finished_at: Option<u64>,
}

impl Job {
    /// How many log lines a job keeps.
    pub const MAX_LOGS: usize = 100;

    /// A new job as `add` stores it, before it is placed in a state.
    pub fn new(
        id: JobId,
        queue: Arc<str>,
        name: String,
        data: Payload,
        options: Arc<JobOptions>,
        now: u64,
    ) -> Job {
        let run_at = now.saturating_add(options.delay_ms);
        Job {
            id,
            queue,
            name,
            data,
            options,
            state: JobState::Waiting,
            progress: Value::from(0),
            attempts_made: 0,
            stalled_count: 0,
            released_count: 0,
            return_value: None,
            failed_reason: None,
            history: Vec::new(),
            logs: Vec::new(),
            created_at: now,
            run_at,
            processed_at: None,
            finished_at: None,
        }
    }

    /// When the job last became ready to run: its `run_at`, or the end of its previous attempt
    /// when that is later (a retry with no delay, a stall, a hand-back).
    pub fn ready_at(&self) -> u64 {
        let current = usize::from(self.processed_at.is_some());
        let previous_end = self
            .history
            .iter()
            .rev()
            .skip(current)
            .find_map(|attempt| attempt.finished_at);
        previous_end.map_or(self.run_at, |end| end.max(self.run_at))
    }

    /// How long the running attempt waited between ready and started (ms), once started.
    pub fn waited_ms(&self) -> Option<u64> {
        Some(self.processed_at?.saturating_sub(self.ready_at()))
    }

    /// Attempts that count against `options.attempts`: stalls and releases are not the job's fault.
    pub fn failures_budget_used(&self) -> u32 {
        self.attempts_made
            .saturating_sub(self.stalled_count)
            .saturating_sub(self.released_count)
    }

    /// What a failed attempt of this job becomes, decided here once for every store: another
    /// attempt after its backoff while the budget lasts and the failure is `retryable`, else
    /// failed for good. `self` is the job as its attempt was fetched (that attempt counted).
    pub fn after_failure(&self, reason: String, retryable: bool) -> Outcome {
        let used = self.failures_budget_used();
        if retryable && used < self.options.attempts {
            Outcome::Retry {
                delay_ms: self.options.backoff.delay_ms(used),
                reason,
            }
        } else if retryable {
            Outcome::Fail { reason }
        } else {
            Outcome::Fail {
                reason: format!("unrecoverable: {reason}"),
            }
        }
    }

    /// A failed job sent back by a retry: a fresh attempt budget (its counters at zero), no
    /// failure reason or finish time, ready from `now`. Its history is kept. The Redis store's
    /// `retry_job` (admin.lua) applies the same.
    pub fn reset_for_retry(&mut self, now: u64) {
        self.attempts_made = 0;
        self.stalled_count = 0;
        self.released_count = 0;
        self.failed_reason = None;
        self.finished_at = None;
        self.run_at = now;
    }

    /// The state a ready job goes to: prioritized when it has a priority, else waiting.
    pub fn ready_state(&self) -> JobState {
        if self.options.priority > 0 {
            JobState::Prioritized
        } else {
            JobState::Waiting
        }
    }
}
