//! Queue routes: list, show, pause, resume, and the bulk actions retry-failed, clean and
//! drain, each bounded per call by its `limit`.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Number, json};
use stagehand_core::JobState;
use stagehand_core::options::MAX_DURATION_MS;

use super::{ApiError, ApiState};

/// The jobs a bulk action takes when its body gives no `limit`.
const DEFAULT_LIMIT: usize = 1000;
/// The most jobs one bulk action takes.
const MAX_LIMIT: usize = 10_000;

async fn describe(state: &ApiState, name: &str) -> Result<serde_json::Value, ApiError> {
    let queue = state.queue(name)?;
    let status = queue.status().await?;
    Ok(json!({ "name": queue.name(), "paused": status.paused, "counts": status.counts }))
}

pub(super) async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    for queue in state.runtime.queues() {
        out.push(describe(&state, queue.name()).await?);
    }
    Ok(HttpResponse::Ok().json(out))
}

pub(super) async fn show(
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(describe(&state, &path).await?))
}

async fn set_paused(state: &ApiState, name: &str, paused: bool) -> Result<HttpResponse, ApiError> {
    state.queue(name)?.set_paused(paused).await?;
    Ok(HttpResponse::Ok().json(json!({ "name": name, "paused": paused })))
}

pub(super) async fn pause(
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &path, true).await
}

pub(super) async fn resume(
    state: web::Data<ApiState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &path, false).await
}

/// `number` if it is an integer from `min` to `max`, else a 400 naming `field`.
fn integer(field: &str, number: &Number, min: u64, max: u64) -> Result<u64, ApiError> {
    match number.as_u64() {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "{field}: must be an integer from {min} to {max}, got {number}"
        ))),
    }
}

/// A bulk action's `limit`: [`DEFAULT_LIMIT`] when absent, else 1 to [`MAX_LIMIT`].
fn limit(given: &Option<Number>) -> Result<usize, ApiError> {
    match given {
        None => Ok(DEFAULT_LIMIT),
        Some(n) => integer("limit", n, 1, MAX_LIMIT as u64).map(|n| n as usize),
    }
}

/// `POST /api/queues/{queue}/retry-failed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetryFailedBody {
    limit: Option<Number>,
}

/// `POST /api/queues/{queue}/clean`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CleanBody {
    state: String,
    older_than_ms: Number,
    limit: Option<Number>,
}

/// `POST /api/queues/{queue}/drain`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DrainBody {
    #[serde(default)]
    delayed: bool,
    limit: Option<Number>,
}

/// Moves up to `limit` failed jobs (those that failed first) back to waiting:
/// `{"retried", "more"}`.
pub(super) async fn retry_failed(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    body: web::Json<RetryFailedBody>,
) -> Result<HttpResponse, ApiError> {
    let queue = state.queue(&path)?;
    let limit = limit(&body.limit)?;
    let done = queue.retry_failed(limit).await?;
    Ok(HttpResponse::Ok().json(json!({ "retried": done.count, "more": done.more })))
}

/// Removes up to `limit` jobs in `state` older than `older_than_ms`: `{"cleaned"}`.
pub(super) async fn clean(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    body: web::Json<CleanBody>,
) -> Result<HttpResponse, ApiError> {
    let queue = state.queue(&path)?;
    let body = body.into_inner();
    let job_state: JobState = body
        .state
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("state: {e}")))?;
    if job_state == JobState::Active {
        return Err(ApiError::BadRequest(
            "state: active jobs are not cleaned (remove one once it settles); give completed, failed, waiting, delayed, prioritized or paused".into(),
        ));
    }
    let older_than_ms = integer("older_than_ms", &body.older_than_ms, 0, MAX_DURATION_MS)?;
    let limit = limit(&body.limit)?;
    let older_than = Duration::from_millis(older_than_ms);
    let cleaned = queue.clean(job_state, older_than, limit).await?;
    Ok(HttpResponse::Ok().json(json!({ "cleaned": cleaned })))
}

/// Removes up to `limit` waiting and prioritized jobs, then delayed ones if `delayed`:
/// `{"drained", "more"}`.
pub(super) async fn drain(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    body: web::Json<DrainBody>,
) -> Result<HttpResponse, ApiError> {
    let queue = state.queue(&path)?;
    let limit = limit(&body.limit)?;
    let done = queue.drain(body.delayed, limit).await?;
    Ok(HttpResponse::Ok().json(json!({ "drained": done.count, "more": done.more })))
}
