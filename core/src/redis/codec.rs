//! Turning a job's hash, history and logs (as the scripts return them) into a [`Job`].

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::StoreError;
use crate::job::{AttemptRecord, Job, JobState};
use crate::options::JobOptions;

/// `{ id, hash fields, history entries, log lines }`.
pub(super) type RawJob = (String, HashMap<String, String>, Vec<String>, Vec<String>);

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
    let text = |name: &str| -> Result<&str, StoreError> {
        fields
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| corrupt(&id, name, "missing"))
    };
    let number = |name: &str| -> Result<u64, StoreError> {
        match fields.get(name) {
            None => Ok(0),
            Some(v) => v
                .parse::<f64>()
                .map(|n| n as u64)
                .map_err(|e| corrupt(&id, name, e)),
        }
    };
    let optional = |name: &str| -> Result<Option<u64>, StoreError> {
        fields.get(name).map(|_| number(name)).transpose()
    };
    let state: JobState = text("state")?
        .parse()
        .map_err(|e: String| corrupt(&id, "state", e))?;
    let options: JobOptions = json(&id, "opts", text("opts")?)?;
    let history = history
        .iter()
        .map(|entry| json::<AttemptRecord>(&id, "history", entry))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Job {
        queue: queue.to_string(),
        name: text("name")?.to_string(),
        data: json(&id, "data", text("data")?)?,
        options,
        state,
        progress: fields
            .get("progress")
            .map(|p| json::<Value>(&id, "progress", p))
            .transpose()?
            .unwrap_or(Value::from(0)),
        attempts_made: number("made")? as u32,
        stalled_count: number("stall")? as u32,
        released_count: number("rel")? as u32,
        return_value: fields.get("rv").map(|rv| json(&id, "rv", rv)).transpose()?,
        failed_reason: fields.get("reason").cloned(),
        history,
        logs,
        created_at: number("created")?,
        run_at: number("run_at")?,
        processed_at: optional("proc")?,
        finished_at: optional("fin")?,
        id: id.into(),
    })
}
