//! API errors and their status codes.

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::json;
use stagehand_actors::QueueError;
use stagehand_core::StoreError;
use stagehand_core::cache::CacheError;
use stagehand_core::pubsub::PubSubError;

/// An error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a body or parameter that does not fit.
    #[error("{0}")]
    BadRequest(String),
    /// 408: the body did not arrive within `http.request_timeout_ms`.
    #[error("{0}")]
    Timeout(String),
    /// 413: a body over the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// 404: no such queue.
    #[error("no queue named '{name}'; queues: {known}")]
    UnknownQueue {
        /// The name asked for.
        name: String,
        /// The queues there are.
        known: String,
    },
    /// 404: no such job.
    #[error("no job '{id}' in queue '{queue}'")]
    UnknownJob {
        /// The queue.
        queue: String,
        /// The id asked for.
        id: String,
    },
    /// From the queue: busy (503), stopped (503), or the store's answer.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// 409: the request conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// 404: no such schedule.
    #[error("no schedule '{0}'")]
    UnknownSchedule(String),
    /// 404: no such cache key.
    #[error("no cache key '{0}'")]
    UnknownKey(String),
    /// 404: this service runs no cache.
    #[error("this service has no cache configured")]
    NoCache,
    /// 408: a waited-for job did not finish in time (the connection stays open).
    #[error("{0}")]
    NotFinished(String),
    /// 503: too many event streams are open.
    #[error("{0}")]
    TooManyStreams(String),
    /// 404: this process installed no Prometheus recorder.
    #[error(
        "this process has no Prometheus recorder (an embedding app installs one with stagehand::metrics::Exporter::install)"
    )]
    NoMetrics,
    /// 404: this service runs no pub/sub.
    #[error("this service has no pub/sub configured")]
    NoPubSub,
    /// From pub/sub: a bad channel name (400), unavailable (503).
    #[error(transparent)]
    PubSub(#[from] stagehand_core::pubsub::PubSubError),
    /// From the cache: bad input (400), not an integer (409), unavailable (503).
    #[error(transparent)]
    Cache(#[from] stagehand_core::cache::CacheError),
}

impl ApiError {
    /// What the client is told: the error's own message, and for an unknown outcome what a
    /// retry does.
    fn detail(&self) -> String {
        match self {
            ApiError::Queue(QueueError::Store(StoreError::OutcomeUnknown { .. })) => format!(
                "{self}. An add may have happened: retrying it with the same job_id (or \
                 Idempotency-Key header) is safe and returns the job if it exists"
            ),
            _ => self.to_string(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownKey(_) => "unknown_key",
            ApiError::UnknownSchedule(_) => "unknown_schedule",
            ApiError::Conflict(_) => "conflict",
            ApiError::NoCache => "no_cache",
            ApiError::NoPubSub => "no_pubsub",
            ApiError::NoMetrics => "no_metrics",
            ApiError::NotFinished(_) => "wait_timeout",
            ApiError::TooManyStreams(_) => "too_many_streams",
            ApiError::PubSub(PubSubError::Invalid(_)) => "bad_request",
            ApiError::PubSub(PubSubError::Unavailable { .. }) => "pubsub_unavailable",
            ApiError::Cache(e) => match e {
                CacheError::Unavailable { .. } => "cache_unavailable",
                CacheError::Invalid(_) | CacheError::Encode(_) => "bad_request",
                CacheError::NotAnInteger(_) => "not_an_integer",
                CacheError::Decode { .. } => "corrupt",
                CacheError::Load { .. } => "load_failed",
            },
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::Timeout(_) => "request_timeout",
            ApiError::UnknownQueue { .. } => "unknown_queue",
            ApiError::UnknownJob { .. } => "unknown_job",
            ApiError::Queue(QueueError::Busy { .. }) => "busy",
            ApiError::Queue(QueueError::Stopped { .. }) => "stopped",
            ApiError::Queue(QueueError::Store(e)) => match e {
                StoreError::NotFound(_) => "unknown_job",
                StoreError::InvalidState { .. } => "invalid_state",
                StoreError::Unavailable { .. } => "store_unavailable",
                StoreError::OutcomeUnknown { .. } => "outcome_unknown",
                StoreError::Corrupt(_) => "corrupt",
                StoreError::Invalid(_) => "bad_request",
                StoreError::QueueFull { .. } => "queue_full",
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout(_) | ApiError::NotFinished(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyStreams(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnknownQueue { .. }
            | ApiError::UnknownJob { .. }
            | ApiError::UnknownKey(_)
            | ApiError::UnknownSchedule(_)
            | ApiError::NoCache
            | ApiError::NoPubSub
            | ApiError::NoMetrics => StatusCode::NOT_FOUND,
            ApiError::PubSub(PubSubError::Invalid(_)) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PubSub(PubSubError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Cache(e) => match e {
                CacheError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                CacheError::Invalid(_) | CacheError::Encode(_) => StatusCode::BAD_REQUEST,
                CacheError::NotAnInteger(_) => StatusCode::CONFLICT,
                CacheError::Decode { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                CacheError::Load { .. } => StatusCode::BAD_GATEWAY,
            },
            ApiError::Queue(QueueError::Busy { .. } | QueueError::Stopped { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Queue(QueueError::Store(e)) => match e {
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                StoreError::InvalidState { .. } => StatusCode::CONFLICT,
                StoreError::Unavailable { .. } | StoreError::QueueFull { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                StoreError::OutcomeUnknown { .. } => StatusCode::GATEWAY_TIMEOUT,
                StoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
                StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::GATEWAY_TIMEOUT {
            response.insert_header(("Retry-After", "1"));
        }
        if matches!(self, ApiError::Timeout(_)) {
            // The rest of a slow body is not worth waiting for.
            response.insert_header(("Connection", "close"));
        }
        // The full story, backend errors included, goes to the log only (an outage is told
        // once by the pools, not once per request).
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(status = status.as_u16(), error = %self.code(), cause = ?std::error::Error::source(self), "request failed: {self}");
        } else if status.is_server_error() {
            tracing::debug!(status = status.as_u16(), error = %self.code(), cause = ?std::error::Error::source(self), "request failed: {self}");
        }
        response.json(json!({ "error": self.code(), "detail": self.detail() }))
    }
}

/// Turns a JSON body error into 413 (too large) or 400 (anything else).
pub(super) fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::Overflow { limit } => ApiError::TooLarge(format!(
            "request body is over the limit of {limit} bytes (http.max_body_bytes)"
        )),
        JsonPayloadError::OverflowKnownLength { length, limit } => ApiError::TooLarge(format!(
            "request body is {length} bytes; the limit is {limit} (http.max_body_bytes)"
        )),
        JsonPayloadError::ContentType => {
            ApiError::BadRequest("expected a JSON body with Content-Type: application/json".into())
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::BadRequest(format!("invalid request: {e}"))
        }
        JsonPayloadError::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON: {e}")),
        JsonPayloadError::Payload(actix_web::error::PayloadError::Io(e))
            if e.kind() == std::io::ErrorKind::TimedOut =>
        {
            ApiError::Timeout(format!(
                "{} (http.request_timeout_ms); send the whole body at once",
                super::deadline::TIMED_OUT
            ))
        }
        other => ApiError::BadRequest(format!("could not read the body: {other}")),
    };
    api.into()
}

/// Turns a query string error into 400.
pub(super) fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query: {err}")).into()
}
