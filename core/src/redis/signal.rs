//! Waiting for work without polling: a blocking pop on the queue's signal list, on a
//! connection of its own with no response timeout, bounded by the next delayed job's due time.
//!
//! The pop runs in a task of its own, so the wait is cancel-safe: a caller that stops waiting
//! (its `select!` took another branch) leaves the pop running, and a wake it receives is kept
//! for the next wait instead of being lost with a dropped reply.

use std::time::Duration;

use async_trait::async_trait;
use redis::RedisResult;
use tokio::task::JoinHandle;

use super::conn::{Conn, Target};
use super::{read_failed, scripts};
use crate::error::StoreError;
use crate::store::WorkSignal;

/// A pop in flight: it hands its connection back with its answer.
type Pop = JoinHandle<(Conn, RedisResult<Option<(String, String)>>)>;

/// One worker's wake-up signal.
pub(super) struct RedisSignal {
    target: Target,
    conn: Conn,
    keys: String,
    blocking: Option<Conn>,
    pending: Option<Pop>,
}

impl RedisSignal {
    pub(super) fn new(target: Target, conn: Conn, keys: String) -> Self {
        RedisSignal {
            target,
            conn,
            keys,
            blocking: None,
            pending: None,
        }
    }

    /// Starts a pop that waits up to `max_wait` (or until the next delayed job is due).
    /// `None` when there is no reason to wait at all.
    async fn start_pop(&mut self, max_wait: Duration) -> Result<Option<Pop>, StoreError> {
        let due: i64 = scripts::ADMIN
            .key(super::keys::fixed(&self.keys, "id"))
            .arg(&self.keys)
            .arg("next_due")
            .invoke_async(&mut self.conn)
            .await
            .map_err(read_failed)?;
        let wait = if due >= 0 {
            max_wait.min(Duration::from_millis(due as u64))
        } else {
            max_wait
        };
        if wait.is_zero() {
            return Ok(None);
        }
        let mut conn = match self.blocking.take() {
            Some(conn) => conn,
            None => self.target.blocking().await.map_err(read_failed)?,
        };
        let key = super::keys::fixed(&self.keys, "signal");
        Ok(Some(tokio::spawn(async move {
            // BLPOP takes fractional seconds; a timeout (nil) just means "look again".
            let popped = redis::cmd("BLPOP")
                .arg(&key)
                .arg(wait.as_secs_f64().max(0.001))
                .query_async(&mut conn)
                .await;
            (conn, popped)
        })))
    }
}

impl Drop for RedisSignal {
    fn drop(&mut self) {
        if let Some(pop) = self.pending.take() {
            pop.abort();
        }
    }
}

#[async_trait]
impl WorkSignal for RedisSignal {
    async fn wait(&mut self, max_wait: Duration) -> Result<(), StoreError> {
        if self.pending.is_none() {
            match self.start_pop(max_wait).await? {
                Some(pop) => self.pending = Some(pop),
                None => return Ok(()),
            }
        }
        let Some(pop) = self.pending.as_mut() else {
            return Ok(());
        };
        // Cancel-safe: if this future is dropped here, the pop stays pending.
        let joined = pop.await;
        self.pending = None;
        match joined {
            Ok((conn, Ok(_))) => {
                self.blocking = Some(conn);
                Ok(())
            }
            // The connection is dropped with the error; the next wait opens another.
            Ok((_, Err(err))) => Err(read_failed(err)),
            Err(join) => Err(StoreError::unavailable(format!(
                "signal wait stopped: {join}"
            ))),
        }
    }
}
