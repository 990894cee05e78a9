//! Redis errors as store errors: what a caller may be told (a short reason with no script
//! hash or line), and whether a failed write surely changed nothing.

use std::sync::Arc;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::error::StoreError;

/// A short, stable description of `err`: the I/O failure, or the server's error code.
pub(crate) fn reason(err: &RedisError) -> String {
    if err.is_timeout() {
        return "timed out".into();
    }
    if err.is_connection_refusal() {
        return "connection refused".into();
    }
    match err.kind() {
        ErrorKind::Io => "connection lost".into(),
        ErrorKind::AuthenticationFailed => "authentication failed".into(),
        ErrorKind::Server(_) | ErrorKind::Extension => {
            format!("Redis answered {}", err.code().unwrap_or("an error"))
        }
        ErrorKind::ClusterConnectionNotFound => "no connection to the cluster node".into(),
        _ => err.category().to_string(),
    }
}

/// Whether Redis surely did not run the call that failed with `err`: it could not be reached,
/// refused us, or rejected the call before running it.
fn surely_not_run(err: &RedisError) -> bool {
    if err.is_connection_refusal() {
        return true;
    }
    match err.kind() {
        ErrorKind::AuthenticationFailed
        | ErrorKind::InvalidClientConfig
        | ErrorKind::ClusterConnectionNotFound => true,
        ErrorKind::Server(kind) => {
            matches!(
                kind,
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::NoScript
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::CrossSlot
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::NoPerm
            ) || matches!(err.code(), Some("OOM" | "NOAUTH" | "BUSY" | "WRONGPASS"))
        }
        _ => false,
    }
}

/// A failed write as a store error.
pub(super) fn classify_write(err: RedisError) -> StoreError {
    let reason = reason(&err);
    if surely_not_run(&err) {
        StoreError::Unavailable {
            reason,
            source: Some(Arc::new(err)),
        }
    } else {
        StoreError::OutcomeUnknown {
            reason,
            source: Some(Arc::new(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn a_script_error_shows_its_code_and_nothing_of_the_script() {
        let err = RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            "An error was signalled by the server",
            "Error running script (call to f_0123456789abcdef0123456789abcdef01234567): @user_script:42: WRONGTYPE".to_string(),
        ));
        let shown = classify_write(err).to_string();
        assert!(!shown.contains("f_0123"), "{shown}");
        assert!(!shown.contains("user_script"), "{shown}");
        assert!(
            shown.contains("did not answer"),
            "a script that failed part way: {shown}"
        );
    }

    #[test]
    fn a_refused_connection_surely_ran_nothing_and_a_lost_one_may_have() {
        let refused = RedisError::from(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(matches!(
            classify_write(refused),
            StoreError::Unavailable { .. }
        ));
        let lost = RedisError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(matches!(
            classify_write(lost),
            StoreError::OutcomeUnknown { .. }
        ));
        let timed_out = RedisError::from(io::Error::from(io::ErrorKind::TimedOut));
        assert!(matches!(
            classify_write(timed_out),
            StoreError::OutcomeUnknown { .. }
        ));
    }
}
