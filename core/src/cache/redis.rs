//! The Redis strategy: values as JSON text under a prefix (the seed's `cache:`), each
//! multi-key change one Lua script.
//!
//! Key names, from a prefix `P:` (the trailing colon optional): a value at `P:key`, the tags a
//! key was stored with at `P-keytags:key`, a tag's index (keys scored by their expiry) at
//! `P-tag:tag`, a load lease at `P-lease:key`. Only values live under `P:`, so no key can name
//! a tag index or a lease, and `delete_pattern` sees values only. A standalone Redis (or one
//! primary): the scripts touch keys they compute, which a Cluster refuses.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::error::CacheError;
use super::invalidation::Invalidation;
use super::pattern;
use super::stats::{Counters, TierStats};
use super::tier::{CacheTier, Lease, Stored, Ttl};
use crate::redis::errors::reason;
use crate::redis::{Conn, Target};

/// The most keys a `SCAN` step or a delete script handles at once.
const BATCH: usize = 500;

/// Where the Redis strategy keeps its keys.
#[derive(Debug, Clone)]
pub struct RedisTierOptions {
    /// The prefix of every value key: `cache:` by default, as in the seed.
    pub prefix: String,
}

impl Default for RedisTierOptions {
    fn default() -> Self {
        RedisTierOptions {
            prefix: "cache:".into(),
        }
    }
}

struct Scripts {
    set: Script,
    del: Script,
    invalidate_tag: Script,
    expire: Script,
    release: Script,
}

fn script(body: &str) -> Script {
    Script::new(&format!("{}\n{body}", include_str!("scripts/lib.lua")))
}

/// The Redis strategy.
#[derive(Clone)]
pub struct RedisTier {
    conn: Conn,
    /// The prefix without its trailing colon.
    base: Arc<str>,
    scripts: Arc<Scripts>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTier")
            .field("base", &self.base)
            .finish()
    }
}

fn unavailable(err: redis::RedisError) -> CacheError {
    if err.code() == Some("ERR") && err.to_string().contains("not an integer") {
        return CacheError::NotAnInteger(String::new());
    }
    CacheError::Unavailable {
        reason: reason(&err),
        source: Some(Arc::new(err)),
    }
}

impl RedisTier {
    /// The Redis strategy on `target` (standalone: a Cluster is refused).
    pub async fn new(target: &Target, options: RedisTierOptions) -> Result<RedisTier, CacheError> {
        if matches!(target, Target::Cluster(_)) {
            return Err(CacheError::Invalid(
                "the Redis cache needs a standalone Redis (or a primary), not a Cluster".into(),
            ));
        }
        let base = options.prefix.trim_end_matches(':');
        if base.is_empty() {
            return Err(CacheError::Invalid(
                "cache.prefix must name something besides ':' (the seed's is 'cache:')".into(),
            ));
        }
        let conn = target.shared().await.map_err(unavailable)?;
        Ok(RedisTier {
            conn,
            base: Arc::from(base),
            scripts: Arc::new(Scripts {
                set: script(include_str!("scripts/set.lua")),
                del: script(include_str!("scripts/del.lua")),
                invalidate_tag: script(include_str!("scripts/invalidate_tag.lua")),
                expire: script(include_str!("scripts/expire.lua")),
                release: script(include_str!("scripts/release.lua")),
            }),
            counters: Arc::default(),
        })
    }

    fn value_key(&self, key: &str) -> String {
        format!("{}:{key}", self.base)
    }

    fn lease_key(&self, key: &str) -> String {
        format!("{}-lease:{key}", self.base)
    }

    /// The value at `key` with its time left and its tags, in one round trip (what a memory
    /// tier in front needs to hold a copy that tag invalidations can find).
    pub async fn get_with_tags(
        &self,
        key: &str,
    ) -> Result<Option<(Stored, Vec<String>)>, CacheError> {
        let name = self.value_key(key);
        let (text, left, tags): (Option<String>, i64, Vec<String>) = redis::pipe()
            .get(&name)
            .pttl(&name)
            .smembers(format!("{}-keytags:{key}", self.base))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.counted(e))?;
        match (text, time_left(left)) {
            (Some(text), Some(ttl)) => {
                self.counters.hit();
                let stored = Stored {
                    text: Arc::from(text),
                    ttl,
                };
                Ok(Some((stored, tags)))
            }
            _ => {
                self.counters.miss();
                Ok(None)
            }
        }
    }

    /// Deletes `keys` (without the prefix) in one script; how many existed.
    async fn delete_batch(&self, keys: &[String]) -> Result<u64, CacheError> {
        let mut call = self.scripts.del.prepare_invoke();
        call.arg(&*self.base);
        for key in keys {
            call.arg(key);
        }
        call.invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }
}

/// Milliseconds for Redis, at least 1.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A `PTTL` answer read beside a `GET` that found the value: `Some(None)` for no expiry,
/// `Some(Some(left))`, or `None` when the key expired between the two commands (-2): a miss,
/// never a value without expiry (which a memory tier would then keep for its whole TTL).
fn time_left(pttl: i64) -> Option<Option<Duration>> {
    match pttl {
        -1 => Some(None),
        left if left >= 0 => Some(Some(Duration::from_millis(left as u64))),
        _ => None,
    }
}

#[async_trait]
impl CacheTier for RedisTier {
    async fn get(&self, key: &str, with_ttl: bool) -> Result<Option<Stored>, CacheError> {
        let mut conn = self.conn.clone();
        let name = self.value_key(key);
        let found = if with_ttl {
            let (text, left): (Option<String>, i64) = redis::pipe()
                .get(&name)
                .pttl(&name)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.counted(e))?;
            match (text, time_left(left)) {
                (Some(text), Some(ttl)) => Some(Stored {
                    text: Arc::from(text),
                    ttl,
                }),
                _ => None,
            }
        } else {
            let text: Option<String> = conn.get(&name).await.map_err(|e| self.counted(e))?;
            text.map(|text| Stored {
                text: Arc::from(text),
                ttl: None,
            })
        };
        match found {
            Some(_) => self.counters.hit(),
            None => self.counters.miss(),
        }
        Ok(found)
    }

    async fn set(
        &self,
        key: &str,
        text: Arc<str>,
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        // One script, tags or not: a key's old tags are left in the same step (one round
        // trip, and no race with a tagged write in between).
        let mut call = self.scripts.set.prepare_invoke();
        call.arg(&*self.base)
            .arg(key)
            .arg(&*text)
            .arg(ttl.map_or(0, millis));
        for tag in tags {
            call.arg(tag);
        }
        call.invoke_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.delete_batch(&[key.to_string()]).await? > 0)
    }

    async fn delete_pattern(&self, glob: &str) -> Result<u64, CacheError> {
        let mut conn = self.conn.clone();
        let prefix = format!("{}:", self.base);
        let matching = format!("{}{glob}", pattern::escape(&prefix));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let (next, names): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&matching)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let keys: Vec<String> = names
                .iter()
                .filter_map(|n| n.strip_prefix(&prefix).map(str::to_string))
                .collect();
            if !keys.is_empty() {
                deleted += self.delete_batch(&keys).await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    async fn increment(&self, key: &str, by: i64) -> Result<i64, CacheError> {
        let mut conn = self.conn.clone();
        conn.incr(self.value_key(key), by)
            .await
            .map_err(|e| match unavailable(e) {
                CacheError::NotAnInteger(_) => CacheError::NotAnInteger(key.to_string()),
                other => other,
            })
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let done: i64 = self
            .scripts
            .expire
            .prepare_invoke()
            .arg(&*self.base)
            .arg(key)
            .arg(millis(ttl))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(done == 1)
    }

    async fn ttl(&self, key: &str) -> Result<Ttl, CacheError> {
        let left: i64 = self
            .conn
            .clone()
            .pttl(self.value_key(key))
            .await
            .map_err(unavailable)?;
        Ok(match left {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms => Ttl::Expires(Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        })
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        let mut deleted = 0;
        loop {
            let (n, left): (u64, u64) = self
                .scripts
                .invalidate_tag
                .prepare_invoke()
                .arg(&*self.base)
                .arg(tag)
                .arg(BATCH)
                .invoke_async(&mut self.conn.clone())
                .await
                .map_err(unavailable)?;
            deleted += n;
            if left == 0 {
                return Ok(deleted);
            }
        }
    }

    async fn lease(&self, key: &str, hold: Duration) -> Result<Lease, CacheError> {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let taken: Option<String> = redis::cmd("SET")
            .arg(self.lease_key(key))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(hold))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match taken {
            Some(_) => Lease::Granted(token),
            None => Lease::Held,
        })
    }

    async fn release(
        &self,
        key: &str,
        token: &str,
        extend: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.scripts
            .release
            .prepare_invoke()
            .arg(self.lease_key(key))
            .arg(token)
            .arg(extend.map_or(0, millis))
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn apply(&self, invalidation: &Invalidation) -> Result<u64, CacheError> {
        if invalidation.memory_only {
            return Ok(0);
        }
        let mut deleted = 0;
        for batch in invalidation.keys.chunks(BATCH) {
            deleted += self.delete_batch(batch).await?;
        }
        if let Some(pattern) = &invalidation.pattern {
            deleted += self.delete_pattern(pattern).await?;
        }
        if let Some(tag) = &invalidation.tag {
            deleted += self.invalidate_tag(tag).await?;
        }
        Ok(deleted)
    }

    fn tier_stats(&self) -> Vec<TierStats> {
        vec![self.counters.snapshot("redis")]
    }
}

impl RedisTier {
    /// Counts a failed read as an error (not a miss) and converts it.
    fn counted(&self, err: redis::RedisError) -> CacheError {
        self.counters.error();
        unavailable(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_that_expired_between_get_and_pttl_is_a_miss_not_a_persistent_value() {
        assert_eq!(time_left(-2), None);
        assert_eq!(time_left(-1), Some(None));
        assert_eq!(time_left(0), Some(Some(Duration::ZERO)));
        assert_eq!(time_left(80), Some(Some(Duration::from_millis(80))));
    }
}
