//! Waiting for work without polling: a blocking pop on the queue's signal list, on a
//! connection of its own with no response timeout, bounded by the next delayed job's due time.

use std::time::Duration;

use async_trait::async_trait;

use super::conn::{Conn, Target};
use super::read_failed;
use super::scripts;
use crate::error::StoreError;
use crate::store::WorkSignal;

/// One worker's wake-up signal.
pub(super) struct RedisSignal {
    target: Target,
    conn: Conn,
    keys: String,
    blocking: Option<Conn>,
}

impl RedisSignal {
    pub(super) fn new(target: Target, conn: Conn, keys: String) -> Self {
        RedisSignal {
            target,
            conn,
            keys,
            blocking: None,
        }
    }

    async fn blocking(&mut self) -> Result<&mut Conn, redis::RedisError> {
        let conn = match self.blocking.take() {
            Some(conn) => conn,
            None => self.target.blocking().await?,
        };
        Ok(self.blocking.insert(conn))
    }
}

#[async_trait]
impl WorkSignal for RedisSignal {
    async fn wait(&mut self, max_wait: Duration) -> Result<(), StoreError> {
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
            return Ok(());
        }
        let key = super::keys::fixed(&self.keys, "signal");
        let conn = self.blocking().await.map_err(read_failed)?;
        // BLPOP takes fractional seconds; a timeout (nil) just means "look again".
        let popped: Result<Option<(String, String)>, _> = redis::cmd("BLPOP")
            .arg(&key)
            .arg(wait.as_secs_f64().max(0.001))
            .query_async(conn)
            .await;
        if let Err(err) = popped {
            self.blocking = None;
            return Err(read_failed(err));
        }
        Ok(())
    }
}
