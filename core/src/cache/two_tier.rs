//! The two-tier strategy: a memory tier in front of Redis.
//!
//! Reads try memory first, then Redis (filling memory for at most `memory_ttl`). Writes go to
//! Redis, then to this process's memory, and then every change is announced as an
//! [`Invalidation`] so that other processes drop the key from their memory tiers (the pub/sub
//! layer carries it on the `cache-invalidate` channel). A process that may have missed
//! announcements (its subscriber reconnected) calls [`CacheTier::clear_local`]. Whatever is
//! lost, `memory_ttl` bounds how long a memory tier can serve a value Redis no longer has.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::RwLock;

use super::error::CacheError;
use super::invalidation::Invalidation;
use super::memory::{MemoryLimit, MemoryTier};
use super::redis::RedisTier;
use super::stats::TierStats;
use super::tier::{CacheTier, Lease, Stored, Ttl};

/// Where a two-tier cache announces its changes.
pub type Announce = Arc<dyn Fn(Invalidation) + Send + Sync>;

/// The two-tier strategy.
#[derive(Clone)]
pub struct TwoTier {
    memory: MemoryTier,
    redis: RedisTier,
    memory_ttl: Duration,
    announce: Arc<RwLock<Option<Announce>>>,
}

impl std::fmt::Debug for TwoTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoTier")
            .field("memory_ttl", &self.memory_ttl)
            .finish()
    }
}

impl TwoTier {
    /// Memory within `limit` in front of `redis`; memory keeps a value at most `memory_ttl`.
    pub fn new(redis: RedisTier, limit: MemoryLimit, memory_ttl: Duration) -> TwoTier {
        TwoTier {
            memory: MemoryTier::new(limit),
            redis,
            memory_ttl,
            announce: Arc::default(),
        }
    }

    /// Sets where changes are announced (the pub/sub layer's publisher).
    pub fn on_change(&self, announce: Announce) {
        *self.announce.write() = Some(announce);
    }

    /// Drops what `invalidation` names from this process's memory tier only.
    pub async fn evict_local(&self, invalidation: &Invalidation) -> Result<(), CacheError> {
        self.memory.apply(invalidation).await.map(|_| ())
    }

    fn announce(&self, invalidation: Invalidation) {
        if let Some(announce) = self.announce.read().as_ref() {
            announce(invalidation);
        }
    }

    fn front_ttl(&self, ttl: Option<Duration>) -> Duration {
        ttl.map_or(self.memory_ttl, |ttl| ttl.min(self.memory_ttl))
    }
}

#[async_trait]
impl CacheTier for TwoTier {
    async fn get(&self, key: &str, with_ttl: bool) -> Result<Option<Stored>, CacheError> {
        if let Some(found) = self.memory.get(key, with_ttl).await? {
            return Ok(Some(found));
        }
        // The copy keeps Redis's time left (or less) and the key's tags, so that a tag
        // invalidation from any process finds it.
        let Some((stored, tags)) = self.redis.get_with_tags(key).await? else {
            return Ok(None);
        };
        let front = self.front_ttl(stored.ttl);
        self.memory
            .set(key, Arc::clone(&stored.text), Some(front), &tags)
            .await?;
        Ok(Some(stored))
    }

    async fn set(
        &self,
        key: &str,
        text: Arc<str>,
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<(), CacheError> {
        self.redis.set(key, Arc::clone(&text), ttl, tags).await?;
        self.memory
            .set(key, text, Some(self.front_ttl(ttl)), tags)
            .await?;
        self.announce(Invalidation::keys(vec![key.to_string()]));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let existed = self.redis.delete(key).await?;
        self.memory.delete(key).await?;
        self.announce(Invalidation::keys(vec![key.to_string()]));
        Ok(existed)
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let deleted = self.redis.delete_pattern(pattern).await?;
        self.memory.delete_pattern(pattern).await?;
        self.announce(Invalidation {
            pattern: Some(pattern.to_string()),
            ..Invalidation::keys(Vec::new())
        });
        Ok(deleted)
    }

    async fn increment(&self, key: &str, by: i64) -> Result<i64, CacheError> {
        let value = self.redis.increment(key, by).await?;
        self.memory.delete(key).await?;
        self.announce(Invalidation::keys(vec![key.to_string()]));
        Ok(value)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let existed = self.redis.expire(key, ttl).await?;
        self.memory.delete(key).await?;
        self.announce(Invalidation::keys(vec![key.to_string()]));
        Ok(existed)
    }

    async fn ttl(&self, key: &str) -> Result<Ttl, CacheError> {
        self.redis.ttl(key).await
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        let deleted = self.redis.invalidate_tag(tag).await?;
        self.memory.invalidate_tag(tag).await?;
        self.announce(Invalidation {
            tag: Some(tag.to_string()),
            ..Invalidation::keys(Vec::new())
        });
        Ok(deleted)
    }

    async fn lease(&self, key: &str, hold: Duration) -> Result<Lease, CacheError> {
        self.redis.lease(key, hold).await
    }

    async fn release(
        &self,
        key: &str,
        token: &str,
        extend: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.redis.release(key, token, extend).await
    }

    async fn clear_local(&self) {
        self.memory.clear_local().await;
    }

    async fn apply(&self, invalidation: &Invalidation) -> Result<u64, CacheError> {
        let deleted = self.redis.apply(invalidation).await?;
        self.memory.apply(invalidation).await?;
        Ok(deleted)
    }

    fn tier_stats(&self) -> Vec<TierStats> {
        let mut stats = self.memory.tier_stats();
        stats.extend(self.redis.tier_stats());
        stats
    }
}
