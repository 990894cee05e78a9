//! Turning a job's hash, history and logs (as the scripts return them) into a [`Job`].

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::StoreError;
use crate::job::{AttemptOutcome, AttemptRecord, Job, JobState, Payload};
use crate::options::JobOptions;

/// `{ id, hash fields (in [`FIELDS`] order), history entries, log lines }`.
pub(super) type RawJob = (String, Vec<Option<String>>, Vec<String>, Vec<String>);

/// The hash fields `read_job` (lib.lua) returns, in order (`hist` only flags that a history
/// list exists).
const FIELDS: [&str; 16] = [
    "state", "name", "data", "opts", "progress", "made", "stall", "rel", "rv", "reason", "created",
    "run_at", "proc", "fin", "a_worker", "hist",
];

fn corrupt(id: &str, what: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("job {id}: {what}: {err}"))
}

fn json<T: DeserializeOwned>(id: &str, field: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(id, field, e))
}

/// Decodes one job of `queue`.
pub(super) fn decode_job(
    queue: &str,
    (id, fields, history, logs): RawJob,
) -> Result<Job, StoreError> {
    if fields.len() != FIELDS.len() {
        return Err(corrupt(
            &id,
            "fields",
            format!("{} of {}", fields.len(), FIELDS.len()),
        ));
    }
    let get = |name: &str| -> Option<&str> {
        let i = FIELDS.iter().position(|f| *f == name)?;
        fields[i].as_deref()
    };
    let text = |name: &str| get(name).ok_or_else(|| corrupt(&id, name, "missing"));
    let optional = |name: &str| -> Result<Option<u64>, StoreError> {
        get(name)
            .map(|v| {
                v.parse::<f64>()
                    .map(|n| n as u64)
                    .map_err(|e| corrupt(&id, name, e))
            })
            .transpose()
    };
    let number = |name: &str| optional(name).map(Option::unwrap_or_default);
    let state: JobState = text("state")?
        .parse()
        .map_err(|e: String| corrupt(&id, "state", e))?;
    let mut history = history
        .iter()
        .map(|entry| json::<AttemptRecord>(&id, "history", entry))
        .collect::<Result<Vec<_>, _>>()?;
    if let (Some(started_at), Some(worker)) = (optional("proc")?, get("a_worker")) {
        history.push(AttemptRecord {
            attempt: number("made")? as u32,
            worker: worker.into(),
            started_at,
            finished_at: None,
            outcome: AttemptOutcome::Running,
            error: None,
            retry_delay_ms: None,
        });
    }
    Ok(Job {
        queue: queue.into(),
        name: text("name")?.to_string(),
        data: Payload::from_json(text("data")?.to_string()).map_err(|e| corrupt(&id, "data", e))?,
        options: std::sync::Arc::new(json::<JobOptions>(&id, "opts", text("opts")?)?),
        state,
        progress: get("progress")
            .map(|p| json::<Value>(&id, "progress", p))
            .transpose()?
            .unwrap_or(Value::from(0)),
        attempts_made: number("made")? as u32,
        stalled_count: number("stall")? as u32,
        released_count: number("rel")? as u32,
        return_value: get("rv")
            .map(|rv| Payload::from_json(rv.to_string()).map_err(|e| corrupt(&id, "rv", e)))
            .transpose()?,
        failed_reason: get("reason").map(str::to_string),
        history,
        logs,
        created_at: number("created")?,
        run_at: number("run_at")?,
        processed_at: optional("proc")?,
        finished_at: optional("fin")?,
        id: id.into(),
    })
}
