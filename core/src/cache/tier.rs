//! What a cache strategy stores: JSON text under string keys, with an optional expiry and tags.
//! [`Cache`](super::Cache) types values on top and adds single flight, early refresh and stale
//! serving; a tier only stores.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::error::CacheError;
use super::invalidation::Invalidation;
use super::stats::TierStats;

/// How long a key has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// No such key.
    Missing,
    /// The key never expires.
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

/// A value as stored: its JSON text and how long it has left (`None`: no expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The value's JSON text (or, for a value another program wrote, its raw text).
    pub text: Arc<str>,
    /// How long the value has left, if it expires.
    pub ttl: Option<Duration>,
}

/// The answer to a request for a key's load lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This caller loads the key; pass the token back to release the lease.
    Granted(String),
    /// Another process loads the key right now.
    Held,
}

/// A cache strategy: memory, Redis, or both.
#[async_trait]
pub trait CacheTier: Send + Sync + 'static {
    /// The value at `key`, with how long it has left when `with_ttl` (a tier that knows it
    /// for free may always tell).
    async fn get(&self, key: &str, with_ttl: bool) -> Result<Option<Stored>, CacheError>;
    /// Stores `text` at `key` for `ttl` (`None`: no expiry), replacing the key's tags with
    /// `tags`.
    async fn set(
        &self,
        key: &str,
        text: Arc<str>,
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<(), CacheError>;
    /// Deletes `key`; whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, CacheError>;
    /// Deletes every key matching the glob `pattern` (Redis's `*`, `?`, `[...]`, `\`), in
    /// bounded batches; how many were deleted.
    async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError>;
    /// Adds `by` to the integer at `key` (a missing key counts as 0) and returns the result.
    async fn increment(&self, key: &str, by: i64) -> Result<i64, CacheError>;
    /// Gives `key` a new time to live; whether the key existed.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError>;
    /// How long `key` has left.
    async fn ttl(&self, key: &str) -> Result<Ttl, CacheError>;
    /// Deletes every key stored with `tag` (and not re-stored without it since); how many.
    async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError>;
    /// Asks to be the one process that loads `key`, for at most `hold`.
    async fn lease(&self, key: &str, hold: Duration) -> Result<Lease, CacheError>;
    /// Gives a lease back (or, with `extend`, holds it `extend` longer).
    async fn release(
        &self,
        key: &str,
        token: &str,
        extend: Option<Duration>,
    ) -> Result<(), CacheError>;
    /// Drops every value this process holds in memory (a no-op for a tier that holds none).
    async fn clear_local(&self) {}
    /// Drops what `invalidation` names from this process's memory and, unless it is
    /// `memory_only`, from the shared store. Announces nothing (it is how an announcement is
    /// received). How many values were deleted.
    async fn apply(&self, invalidation: &Invalidation) -> Result<u64, CacheError> {
        let mut deleted = 0;
        for key in &invalidation.keys {
            deleted += u64::from(self.delete(key).await?);
        }
        if let Some(pattern) = &invalidation.pattern {
            deleted += self.delete_pattern(pattern).await?;
        }
        if let Some(tag) = &invalidation.tag {
            deleted += self.invalidate_tag(tag).await?;
        }
        Ok(deleted)
    }
    /// Counters per tier.
    fn tier_stats(&self) -> Vec<TierStats>;
}
