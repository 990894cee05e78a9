//! Queue routes: list, show, pause, resume.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::{ApiError, ApiState};

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
