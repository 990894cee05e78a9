//! Job routes: add, add in bulk, show, list, retry, remove.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use stagehand_core::options::{validate_job_id, validate_job_name};
use stagehand_core::{JobId, JobOptions, JobOptionsInput, JobState, NewJob};

use super::{ApiError, ApiState};

/// Most jobs in one bulk request.
const MAX_BULK: usize = 10_000;
/// Most jobs one list request returns.
const MAX_LIST: usize = 1000;
/// The furthest a list may page.
const MAX_OFFSET: usize = 1_000_000_000;

/// A job to add, as the API takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobRequest {
    name: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    options: JobOptionsInput,
}

impl JobRequest {
    fn into_job(self, defaults: &JobOptions, at: &str) -> Result<NewJob, ApiError> {
        validate_job_name(&self.name).map_err(|e| ApiError::BadRequest(format!("{at}{e}")))?;
        let options = self
            .options
            .resolve(defaults)
            .map_err(|e| ApiError::BadRequest(format!("{at}{e}")))?;
        Ok(NewJob {
            name: self.name,
            data: self.data.into(),
            options,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkRequest {
    jobs: Vec<JobRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    state: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// The header whose value is the job's id when the body gives none: a client retrying an add
/// whose outcome it did not learn sends the same key and gets the job it added.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

pub(super) async fn add(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    request: actix_web::HttpRequest,
    body: web::Json<JobRequest>,
) -> Result<HttpResponse, ApiError> {
    let queue = state.queue(&path)?;
    let mut body = body.into_inner();
    if request.headers().get_all(IDEMPOTENCY_KEY).count() > 1 {
        return Err(ApiError::BadRequest(format!(
            "{IDEMPOTENCY_KEY}: give it once"
        )));
    }
    if let Some(key) = request.headers().get(IDEMPOTENCY_KEY) {
        let key = key.to_str().map_err(|_| {
            ApiError::BadRequest(format!("{IDEMPOTENCY_KEY}: must be visible ASCII"))
        })?;
        match &body.options.job_id {
            None => {
                validate_job_id(key).map_err(|e| {
                    ApiError::BadRequest(format!("{IDEMPOTENCY_KEY}: {}", e.problem))
                })?;
                body.options.job_id = Some(key.to_string());
            }
            Some(id) if id == key => {}
            Some(id) => {
                return Err(ApiError::BadRequest(format!(
                    "{IDEMPOTENCY_KEY} '{key}' differs from options.job_id '{id}'; give one, or the same in both"
                )));
            }
        }
    }
    let job = body.into_job(queue.defaults(), "")?;
    let added = queue
        .add(vec![job])
        .await?
        .pop()
        .ok_or_else(|| ApiError::BadRequest("nothing was added".into()))?;
    let body = json!({ "id": added.id, "created": added.created });
    Ok(if added.created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

pub(super) async fn add_bulk(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    body: web::Json<BulkRequest>,
) -> Result<HttpResponse, ApiError> {
    let queue = state.queue(&path.0)?;
    let requests = body.into_inner().jobs;
    if requests.is_empty() || requests.len() > MAX_BULK {
        return Err(ApiError::BadRequest(format!(
            "jobs: give 1 to {MAX_BULK} jobs"
        )));
    }
    let jobs = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.into_job(queue.defaults(), &format!("jobs[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let added = queue.add(jobs).await?;
    // `created` counts the new jobs: an id given that exists already returns that job.
    let created = added.iter().filter(|a| a.created).count();
    let ids: Vec<JobId> = added.into_iter().map(|a| a.id).collect();
    Ok(HttpResponse::Created().json(json!({ "ids": ids, "created": created })))
}

pub(super) async fn show(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = path.into_inner();
    match state.queue(&name)?.get(&id).await? {
        Some(job) => Ok(HttpResponse::Ok().json(job)),
        None => Err(ApiError::UnknownJob { queue: name, id }),
    }
}

pub(super) async fn list(
    state: web::Data<ApiState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let queue = state.queue(&path)?;
    let query = query.into_inner();
    let job_state: JobState = query
        .state
        .as_deref()
        .ok_or_else(|| ApiError::BadRequest("state: required (waiting, delayed, prioritized, active, completed, failed, paused)".into()))?
        .parse()
        .map_err(ApiError::BadRequest)?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::BadRequest(format!(
            "limit: must be 1 to {MAX_LIST}"
        )));
    }
    if query.offset > MAX_OFFSET {
        return Err(ApiError::BadRequest(format!(
            "offset: must be 0 to {MAX_OFFSET}"
        )));
    }
    let jobs = queue.list(job_state, query.offset, limit).await?;
    Ok(HttpResponse::Ok().json(json!({
        "state": job_state, "offset": query.offset, "limit": limit, "jobs": jobs,
    })))
}

pub(super) async fn retry(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = path.into_inner();
    state.queue(&name)?.retry(&id).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id, "state": "waiting" })))
}

pub(super) async fn remove(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = path.into_inner();
    if state.queue(&name)?.remove(&id).await? {
        Ok(HttpResponse::Ok().json(json!({ "id": id, "removed": true })))
    } else {
        Err(ApiError::UnknownJob { queue: name, id })
    }
}
