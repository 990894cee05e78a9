//! Errors the cache returns.

use std::sync::Arc;

use crate::error::BackendError;

/// What went wrong in a cache call.
#[derive(Debug, thiserror::Error, Clone)]
pub enum CacheError {
    /// The cache's store could not be reached or did not answer; counted as an error, never as
    /// a miss.
    #[error("cache store unavailable: {reason}")]
    Unavailable {
        /// A short, stable description (`connection refused`, `timed out`).
        reason: String,
        /// The backend's error.
        #[source]
        source: Option<BackendError>,
    },
    /// Input the cache refuses (an empty key, a zero TTL); nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// `increment` on a value that is not an integer, or that would overflow.
    #[error("the value at '{0}' is not an integer, or the increment would overflow")]
    NotAnInteger(String),
    /// A stored value does not decode as the type asked for.
    #[error("the value at '{key}' does not decode: {reason}")]
    Decode {
        /// The key.
        key: String,
        /// What serde said.
        reason: String,
    },
    /// A value does not encode as JSON.
    #[error("the value does not encode as JSON: {0}")]
    Encode(String),
    /// `get_or_set`'s loader failed (and no stale value could stand in).
    #[error("loading '{key}' failed: {source}")]
    Load {
        /// The key.
        key: String,
        /// The loader's error, shared with every caller that waited for it.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl CacheError {
    /// Whether the store could not serve (as opposed to bad input or a failed loader).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CacheError::Unavailable { .. })
    }
}
