//! Schedule routes: put (201 created, 200 updated), list, show (with the next five fires),
//! delete, pause, resume, trigger.

use actix_web::{HttpResponse, web};
use serde_json::json;
use stagehand_core::clock::now_ms;
use stagehand_core::pubsub::channels;
use stagehand_core::schedule::{FirePlan, Schedule, fire_jobs};
use stagehand_core::store::PutSchedule;

use super::{ApiError, ApiState};
use crate::schedules::{ScheduleBody, ScheduleInputError, find, upsert, view};

impl From<ScheduleInputError> for ApiError {
    fn from(err: ScheduleInputError) -> Self {
        match err {
            ScheduleInputError::Invalid { field, reason } => {
                ApiError::BadRequest(format!("{field}: {reason}"))
            }
            ScheduleInputError::Conflict(detail) => ApiError::Conflict(detail),
            ScheduleInputError::Store(e) => ApiError::Queue(e.into()),
        }
    }
}

/// Tells this process's scheduler, and every other one, that schedules changed.
async fn changed(state: &ApiState) {
    if let Some(scheduler) = &state.scheduler {
        scheduler.wake();
    }
    if let Some(pubsub) = &state.pubsub
        && let Err(err) = pubsub
            .publish(channels::SCHEDULES, &json!({"changed": true}))
            .await
    {
        // Other schedulers look again within a minute anyway.
        tracing::debug!(error = %err, "schedule change not announced");
    }
}

async fn found(state: &ApiState, id: &str) -> Result<Schedule, ApiError> {
    find(&state.runtime, id)
        .await
        .map_err(|e| ApiError::Queue(e.into()))?
        .ok_or_else(|| ApiError::UnknownSchedule(id.to_string()))
}

pub(super) async fn put(
    state: web::Data<ApiState>,
    id: web::Path<String>,
    body: web::Json<ScheduleBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if body.id.as_ref().is_some_and(|b| *b != *id) {
        return Err(ApiError::BadRequest(
            "id: the body's id differs from the path's".into(),
        ));
    }
    let spec = body.spec(&id, &state.runtime)?;
    let put = upsert(&state.runtime, &state.owners, spec).await?;
    if put != PutSchedule::Unchanged {
        changed(&state).await;
    }
    let schedule = found(&state, &id).await?;
    let mut answer = if put == PutSchedule::Created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(answer.json(view(&schedule)))
}

pub(super) async fn list(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let mut out = Vec::new();
    for queue in state.runtime.queues() {
        if let Some(store) = state.runtime.store(queue.name()) {
            let schedules = store
                .list_schedules()
                .await
                .map_err(|e| ApiError::Queue(e.into()))?;
            out.extend(schedules.iter().map(view));
        }
    }
    Ok(HttpResponse::Ok().json(out))
}

pub(super) async fn show(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(&found(&state, &id).await?)))
}

pub(super) async fn delete(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Removed without reading it first: a record that no longer decodes can still go.
    let mut deleted = false;
    for queue in state.runtime.queues() {
        if let Some(store) = state.runtime.store(queue.name()) {
            deleted |= store
                .remove_schedule(&id)
                .await
                .map_err(|e| ApiError::Queue(e.into()))?;
        }
    }
    // The claim goes too (a dangling one, of a schedule lost some other way, included).
    state
        .owners
        .release(&id)
        .await
        .map_err(|e| ApiError::Queue(e.into()))?;
    if !deleted {
        return Err(ApiError::UnknownSchedule(id.to_string()));
    }
    changed(&state).await;
    Ok(HttpResponse::Ok().json(json!({ "deleted": true })))
}

async fn set_paused(state: &ApiState, id: &str, paused: bool) -> Result<HttpResponse, ApiError> {
    let schedule = found(state, id).await?;
    let store = state
        .runtime
        .store(&schedule.spec.queue)
        .ok_or_else(|| ApiError::UnknownSchedule(id.to_string()))?;
    // Resumed, it goes on from the next time: fires due while paused are not run.
    let next_at = if paused {
        None
    } else {
        let timing = schedule
            .spec
            .timing(schedule.state.created_at)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        schedule.next_fire(&timing, now_ms())
    };
    store
        .pause_schedule(id, paused, next_at)
        .await
        .map_err(|e| ApiError::Queue(e.into()))?;
    changed(state).await;
    Ok(HttpResponse::Ok().json(view(&found(state, id).await?)))
}

pub(super) async fn pause(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &id, true).await
}

pub(super) async fn resume(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &id, false).await
}

/// One fire now, with an id of its own (`sched:ID:trigger-MS`); the schedule's own fires are
/// untouched.
pub(super) async fn trigger(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let schedule = found(&state, &id).await?;
    let queue = state.queue(&schedule.spec.queue)?;
    let now = now_ms();
    let plan = FirePlan {
        fires: vec![now],
        skipped: 0,
        due: 1,
        next_at: None,
        fires_total: 0,
    };
    let mut jobs = fire_jobs(&schedule, &plan, queue.defaults());
    // Its own id however many triggers land in one millisecond.
    let job_id = format!(
        "sched:{}:trigger-{now}-{:08x}",
        schedule.spec.id,
        fastrand::u32(..)
    );
    jobs[0].options.job_id = Some(job_id.clone());
    let added = queue.add(jobs).await?;
    let id = added.first().map(|a| a.id.to_string()).unwrap_or(job_id);
    Ok(HttpResponse::Created().json(json!({ "job_id": id, "queue": schedule.spec.queue })))
}
