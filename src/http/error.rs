//! API errors and their status codes.

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde_json::json;
use stagehand_actors::QueueError;
use stagehand_core::StoreError;

/// An error the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a body or parameter that does not fit.
    #[error("{0}")]
    BadRequest(String),
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
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::UnknownQueue { .. } => "unknown_queue",
            ApiError::UnknownJob { .. } => "unknown_job",
            ApiError::Queue(QueueError::Busy { .. }) => "busy",
            ApiError::Queue(QueueError::Stopped { .. }) => "stopped",
            ApiError::Queue(QueueError::Store(e)) => match e {
                StoreError::NotFound(_) => "unknown_job",
                StoreError::InvalidState { .. } => "invalid_state",
                StoreError::Unavailable(_) => "store_unavailable",
                StoreError::Corrupt(_) => "corrupt",
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnknownQueue { .. } | ApiError::UnknownJob { .. } => StatusCode::NOT_FOUND,
            ApiError::Queue(QueueError::Busy { .. } | QueueError::Stopped { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Queue(QueueError::Store(e)) => match e {
                StoreError::NotFound(_) => StatusCode::NOT_FOUND,
                StoreError::InvalidState { .. } => StatusCode::CONFLICT,
                StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                StoreError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "1"));
        }
        response.json(json!({ "error": self.code(), "detail": self.to_string() }))
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
        other => ApiError::BadRequest(format!("could not read the body: {other}")),
    };
    api.into()
}

/// Turns a query string error into 400.
pub(super) fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query: {err}")).into()
}
