//! `GET /metrics` (Prometheus text) and `GET /api/metrics` (the seed's aggregate: every
//! queue's counts, each Redis's figures, the cache's hit rate).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, json};
use stagehand_core::history::{HISTORY_MINUTES, series};

use super::{ApiError, ApiState};
use crate::metrics::Sources;

pub(super) async fn prometheus(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let Some(exporter) = &state.exporter else {
        return Err(ApiError::NoMetrics);
    };
    let sources = Sources {
        runtime: &state.runtime,
        cache: state.cache.as_ref(),
        pubsub: state.pubsub.as_ref(),
        subscribers: &state.subscribers,
        redis: &state.redis,
    };
    let text = exporter.render(&sources).await;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// How long the aggregate waits for one queue's counts; a queue past it shows its error.
const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// How long an aggregate is reused: a burst of callers costs the stores one read.
const AGGREGATE_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// The seed's `QueueMetrics`: `waiting` counts every ready job (prioritized and paused ones
/// too) and `total` is waiting + active + delayed, as the seed adds them. A queue whose store
/// does not answer within two seconds shows `{"error"}` in its place, and so does a Redis;
/// the answer is reused for a second.
pub(super) async fn aggregate(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut cached = state.aggregate.lock().await;
    if let Some((at, answer)) = cached.as_ref()
        && at.elapsed() < AGGREGATE_FRESH
    {
        return Ok(HttpResponse::Ok().json(answer));
    }
    let counts = futures::future::join_all(state.runtime.queues().map(|queue| async move {
        let status = tokio::time::timeout(QUEUE_TIMEOUT, queue.status()).await;
        let entry = match status {
            Ok(Ok(status)) => {
                let c = status.counts;
                let waiting = c.waiting + c.prioritized + c.paused;
                json!({
                    "waiting": waiting,
                    "active": c.active,
                    "completed": c.completed,
                    "failed": c.failed,
                    "delayed": c.delayed,
                    "total": waiting + c.active + c.delayed,
                })
            }
            Ok(Err(err)) => json!({ "error": err.to_string() }),
            Err(_) => json!({ "error": "the queue's store did not answer in time" }),
        };
        (queue.name().to_string(), entry)
    }));
    let (counts, redis) = futures::future::join(counts, super::redis::figures(&state)).await;
    let queues: Map<String, serde_json::Value> = counts.into_iter().collect();
    let cache = state.cache.as_ref().map(|cache| cache.stats());
    let answer = json!({ "queues": queues, "redis": redis, "cache": cache });
    *cached = Some((std::time::Instant::now(), answer.clone()));
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
}

/// A time as ms since the epoch or RFC 3339.
fn parse_time(field: &str, text: &str) -> Result<u64, ApiError> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let time = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| {
        ApiError::BadRequest(format!(
            "{field}: '{text}' is neither ms since the epoch nor an RFC 3339 time"
        ))
    })?;
    u64::try_from(time.timestamp_millis()).map_err(|_| {
        ApiError::BadRequest(format!(
            "{field}: '{text}' is before 1970, which no history holds"
        ))
    })
}

/// `GET /api/queues/{q}/metrics?from=&to=`: the queue's per-minute history (every minute of
/// the range, zeros where nothing ended), from the store; the last hour by default, 14 days
/// at most.
pub(super) async fn history(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    state.queue(&name)?;
    let store = state
        .runtime
        .store(&name)
        .ok_or_else(|| ApiError::BadRequest(format!("queue '{name}' has no store")))?;
    let to = match &query.to {
        Some(text) => parse_time("to", text)?,
        None => stagehand_core::clock::now_ms(),
    };
    let from = match &query.from {
        Some(text) => parse_time("from", text)?,
        None => to.saturating_sub(3_600_000),
    };
    let (first, last) = (from / 60_000, to / 60_000);
    if from > to {
        return Err(ApiError::BadRequest("from: must not be after to".into()));
    }
    if last - first > HISTORY_MINUTES {
        return Err(ApiError::BadRequest(format!(
            "from, to: at most {} days apart (the history's length)",
            HISTORY_MINUTES / 1440
        )));
    }
    let stats = store
        .read_minutes(first, last)
        .await
        .map_err(|e| ApiError::Queue(e.into()))?;
    let minutes = series(first, last, &stats);
    let completed: u64 = minutes.iter().map(|m| m.completed).sum();
    let failed: u64 = minutes.iter().map(|m| m.failed).sum();
    Ok(HttpResponse::Ok().json(json!({
        "queue": name,
        "from": first * 60_000,
        "to": last * 60_000,
        "completed": completed,
        "failed": failed,
        "minutes": minutes,
    })))
}
