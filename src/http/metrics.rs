//! `GET /metrics` (Prometheus text) and `GET /api/metrics` (the seed's aggregate: every
//! queue's counts, each Redis's figures, the cache's hit rate).

use actix_web::{HttpResponse, web};
use serde_json::{Map, json};

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

/// The seed's `QueueMetrics`: `waiting` counts every ready job (prioritized and paused ones
/// too) and `total` is waiting + active + delayed, as the seed adds them.
pub(super) async fn aggregate(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut queues = Map::new();
    for queue in state.runtime.queues() {
        let c = queue.status().await?.counts;
        let waiting = c.waiting + c.prioritized + c.paused;
        queues.insert(
            queue.name().to_string(),
            json!({
                "waiting": waiting,
                "active": c.active,
                "completed": c.completed,
                "failed": c.failed,
                "delayed": c.delayed,
                "total": waiting + c.active + c.delayed,
            }),
        );
    }
    let redis = super::redis::figures(&state).await;
    let cache = state.cache.as_ref().map(|cache| cache.stats());
    Ok(HttpResponse::Ok().json(json!({ "queues": queues, "redis": redis, "cache": cache })))
}
