//! Errors a queue store returns.

/// What went wrong in a store call, and what the caller can do about it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
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
    /// The backend could not be reached or answered with an error; the call may be retried.
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded; the data is corrupt or from another version.
    #[error("corrupt job data: {0}")]
    Corrupt(String),
}
