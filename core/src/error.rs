//! Errors a queue store returns.
//!
//! A store that could not be reached says whether the call surely changed nothing
//! ([`StoreError::Unavailable`]: retry freely) or was sent without an answer coming back
//! ([`StoreError::OutcomeUnknown`]: it may have taken effect; retry only what is idempotent,
//! such as an add with a `job_id`). The backend's own error is kept as the source, for logs;
//! the messages themselves name no internals (no script hashes, no paths).

use std::sync::Arc;

/// The backend's own error, kept for logs.
pub type BackendError = Arc<dyn std::error::Error + Send + Sync>;

/// What went wrong in a store call, and what the caller can do about it.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StoreError {
    /// No job with this id in this queue.
    #[error("job '{0}' not found")]
    NotFound(String),
    /// The job is in a state that does not allow the operation.
    #[error("job '{id}' is {state}: {hint}")]
    InvalidState {
        /// The job's id.
        id: String,
        /// Its current state.
        state: String,
        /// What the caller can do.
        hint: String,
    },
    /// The store could not be reached and the call surely changed nothing: retry it.
    #[error("queue store unavailable: {reason}")]
    Unavailable {
        /// A short, stable description (`connection refused`, `OOM`).
        reason: String,
        /// The backend's error.
        #[source]
        source: Option<BackendError>,
    },
    /// The call was sent and no answer came back: it may or may not have taken effect.
    #[error("queue store did not answer ({reason}): the call may or may not have taken effect")]
    OutcomeUnknown {
        /// A short, stable description (`timed out`, `broken pipe`).
        reason: String,
        /// The backend's error.
        #[source]
        source: Option<BackendError>,
    },
    /// A stored value could not be decoded; the data is corrupt or from another version.
    #[error("corrupt job data: {0}")]
    Corrupt(String),
    /// Input the store refuses (a job id it cannot hold, say); nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The queue holds `max_jobs` unfinished jobs already; nothing was added.
    #[error(
        "queue '{queue}' is full: it holds its maximum of {max} unfinished jobs (queues.{queue}.max_jobs)"
    )]
    QueueFull {
        /// The queue.
        queue: String,
        /// Its `max_jobs`.
        max: u64,
    },
}

impl StoreError {
    /// An `Unavailable` with no backend error behind it.
    pub fn unavailable(reason: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            reason: reason.into(),
            source: None,
        }
    }

    /// Whether the store could not be reached (whatever the outcome): worth retrying later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::OutcomeUnknown { .. }
        )
    }
}

impl PartialEq for StoreError {
    /// Equal when of the same kind with the same description (backend errors aside).
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
            && std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}
