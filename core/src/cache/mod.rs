//! The cache service: typed values over a strategy (memory, Redis, or both), with a
//! cache-aside that does not stampede.
//!
//! ```
//! # async fn demo() -> Result<(), stagehand_core::cache::CacheError> {
//! use std::time::Duration;
//! use stagehand_core::cache::{Cache, MemoryLimit};
//!
//! let cache = Cache::memory(MemoryLimit::Entries(10_000));
//! cache.set("user:7", &serde_json::json!({"name": "Ada"}), Some(Duration::from_secs(60))).await?;
//! let profile: Option<serde_json::Value> = cache.get("user:7").await?;
//! assert_eq!(profile.unwrap()["name"], "Ada");
//!
//! // Runs the loader once, however many callers ask at the same moment.
//! let n: u64 = cache
//!     .get_or_set("answer", Some(Duration::from_secs(60)), || async { Ok::<_, std::io::Error>(42) })
//!     .await?;
//! assert_eq!(n, 42);
//! # Ok(()) }
//! ```
//!
//! - **Values** are stored as JSON text, so other programs can read them (the seed's format);
//!   a value another program stored as plain text reads as a string.
//! - **Single flight**: `get_or_set` runs its loader once per key at a time in a process; the
//!   other callers wait for its result. On Redis, a short lease per key makes it once across
//!   processes too: the others wait for the value, and a dead holder's lease runs out.
//! - **Early refresh** (XFetch): a value close to expiry is reloaded by one caller ahead of
//!   time, with a probability that grows as expiry nears and with how long the load took, so a
//!   hot key never expires for everyone at once.
//! - **Stale on error**: with `stale_for`, a value is kept that much past its TTL and served if
//!   its loader fails.
//! - **Errors are not misses**: a store that cannot be reached is counted as an error, and
//!   `get_or_set` then loads (once per process) without the store.

mod error;
mod flight;
mod invalidation;
mod memory;
pub mod pattern;
mod redis;
mod stats;
mod tier;
mod two_tier;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::CacheError;
pub use invalidation::Invalidation;
pub use memory::{MemoryLimit, MemoryTier};
pub use redis::{RedisTier, RedisTierOptions};
pub use stats::{CacheStats, TierStats, hit_rate};
pub use tier::{CacheTier, Lease, Stored, Ttl};
pub use two_tier::{Announce, TwoTier};

pub use stagehand_macros::cacheable;

/// What `#[cacheable]`'s expansion needs, under a path the caller need not depend on.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}

use flight::{Flights, Landing, Role};
use stats::{Counters, LoadCounters};

/// The longest time to live accepted (ten years).
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The most tags one value may carry.
pub const MAX_TAGS: usize = 32;

/// How `get_or_set` behaves.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// How long one process may hold a key's load lease (Redis) before another may load it;
    /// the holder extends it while its loader runs.
    pub lease: Duration,
    /// XFetch's beta: 0 turns early refresh off, 1 is the usual choice, more refreshes earlier.
    pub early_refresh_beta: f64,
    /// How long past its TTL a value is kept, to be served if its loader fails (0: never).
    pub stale_for: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            lease: Duration::from_secs(10),
            early_refresh_beta: 1.0,
            stale_for: Duration::ZERO,
        }
    }
}

/// The cache service. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Cache {
    strategy: &'static str,
    tier: Arc<dyn CacheTier>,
    options: CacheOptions,
    flights: Flights,
    counters: Arc<Counters>,
    loads: Arc<LoadCounters>,
    /// How long each key's last load took, for early refresh.
    load_times: Arc<Mutex<HashMap<String, Duration>>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("strategy", &self.strategy)
            .field("options", &self.options)
            .finish()
    }
}

/// How many load times are remembered for early refresh.
const MAX_LOAD_TIMES: usize = 10_000;

/// A value found by a lookup, and whether it is past its TTL (kept only for `stale_for`).
struct Found {
    stored: Stored,
    stale: bool,
}

impl Cache {
    /// A cache over `tier`; `strategy` names it in the stats.
    pub fn new(strategy: &'static str, tier: Arc<dyn CacheTier>, options: CacheOptions) -> Cache {
        Cache {
            strategy,
            tier,
            options,
            flights: Flights::default(),
            counters: Arc::default(),
            loads: Arc::default(),
            load_times: Arc::default(),
        }
    }

    /// A memory cache within `limit`, with default options.
    pub fn memory(limit: MemoryLimit) -> Cache {
        Cache::new(
            "memory",
            Arc::new(MemoryTier::new(limit)),
            CacheOptions::default(),
        )
    }

    /// The tier underneath (to share it with an invalidation handler, say).
    pub fn tier(&self) -> &Arc<dyn CacheTier> {
        &self.tier
    }

    /// The value at `key`, or `None`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CacheError> {
        match self.get_stored(key).await? {
            Some(stored) => decode(key, &stored.text).map(Some),
            None => Ok(None),
        }
    }

    /// The value at `key` as stored (JSON text and time left), or `None`.
    pub async fn get_stored(&self, key: &str) -> Result<Option<Stored>, CacheError> {
        check_key(key)?;
        let with_ttl = !self.options.stale_for.is_zero();
        match self.lookup(key, with_ttl).await? {
            Some(found) if !found.stale => {
                self.counters.hit();
                Ok(Some(found.stored))
            }
            _ => {
                self.counters.miss();
                Ok(None)
            }
        }
    }

    /// Stores `value` at `key` for `ttl` (`None`: until deleted).
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.set_tagged(key, value, ttl, &[]).await
    }

    /// Stores `value` at `key` for `ttl`, tagged: [`Cache::invalidate_tag`] deletes it with
    /// every other value stored with the same tag. Storing a key again replaces its tags.
    pub async fn set_tagged<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<(), CacheError> {
        let text = encode(value)?;
        self.set_text(key, text, ttl, tags).await
    }

    /// Stores JSON text as it is (it must be valid JSON).
    pub async fn set_text(
        &self,
        key: &str,
        text: Arc<str>,
        ttl: Option<Duration>,
        tags: &[String],
    ) -> Result<(), CacheError> {
        check_key(key)?;
        check_ttl(ttl)?;
        check_tags(tags)?;
        self.counted(self.tier.set(key, text, self.kept_for(ttl), tags))
            .await
    }

    /// The value at `key`; when there is none, runs `loader` (once per key at a time, in this
    /// process and, on Redis, across processes), stores its value for `ttl` and returns it.
    pub async fn get_or_set<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
    ) -> Result<T, CacheError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        check_key(key)?;
        check_ttl(ttl)?;
        let mut loader = Some(loader);
        loop {
            let (fallback, store_down) = match self.lookup(key, true).await {
                Ok(Some(found)) if !found.stale => {
                    if !self.refresh_early(key, found.stored.ttl) {
                        self.counters.hit();
                        return decode(key, &found.stored.text);
                    }
                    LoadCounters::bump(&self.loads.early_refreshes);
                    self.counters.hit();
                    (Some(found.stored), false)
                }
                Ok(found) => {
                    self.counters.miss();
                    (found.map(|f| f.stored), false)
                }
                Err(_) => (None, true),
            };
            let refreshing = fallback.as_ref().is_some_and(|f| {
                // A fresh value being refreshed early is served to everyone but the loader.
                f.ttl.is_none_or(|t| t > self.options.stale_for)
            });
            match self.flights.join(key) {
                Role::Passenger(passenger) => {
                    if refreshing && let Some(current) = &fallback {
                        return decode(key, &current.text);
                    }
                    match flight::wait(passenger).await {
                        Some(landing) => return decode(key, &landing?),
                        // The loading caller was cancelled: look again.
                        None => continue,
                    }
                }
                Role::Pilot(pilot) => {
                    let Some(loader) = loader.take() else {
                        return Err(CacheError::Invalid("the loader was already used".into()));
                    };
                    let landing = self
                        .load(key, ttl, loader, store_down, fallback.as_ref())
                        .await;
                    pilot.land(landing.clone());
                    return decode(key, &landing?);
                }
            }
        }
    }

    /// Deletes `key`; whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        check_key(key)?;
        self.counted(self.tier.delete(key)).await
    }

    /// Deletes every key matching the glob `pattern` (`*`, `?`, `[...]`, `\`); how many.
    pub async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        check_pattern(pattern)?;
        self.counted(self.tier.delete_pattern(pattern)).await
    }

    /// Adds `by` to the integer at `key` (a missing key counts as 0), atomically.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64, CacheError> {
        check_key(key)?;
        self.counted(self.tier.increment(key, by)).await
    }

    /// Gives `key` a new time to live; whether it existed.
    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        check_key(key)?;
        check_ttl(Some(ttl))?;
        let kept = self.kept_for(Some(ttl)).unwrap_or(ttl);
        self.counted(self.tier.expire(key, kept)).await
    }

    /// How long `key` has left: missing, never expiring, or a duration.
    pub async fn ttl(&self, key: &str) -> Result<Ttl, CacheError> {
        check_key(key)?;
        let ttl = self.counted(self.tier.ttl(key)).await?;
        Ok(match ttl {
            Ttl::Expires(left) if !self.options.stale_for.is_zero() => {
                match left.checked_sub(self.options.stale_for) {
                    Some(left) if !left.is_zero() => Ttl::Expires(left),
                    _ => Ttl::Missing,
                }
            }
            other => other,
        })
    }

    /// Deletes every value stored with `tag`; how many.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        check_tags(&[tag.to_string()])?;
        self.counted(self.tier.invalidate_tag(tag)).await
    }

    /// Applies a cache-invalidation message: drops what it names from this process's memory
    /// and, unless it is `memory_only`, from the shared store, announcing nothing. How many
    /// values were deleted.
    pub async fn apply(&self, invalidation: &Invalidation) -> Result<u64, CacheError> {
        if !invalidation.is_well_formed() {
            return Err(CacheError::Invalid(
                "an invalidation names exactly one of keys (a non-empty list), pattern or tag"
                    .into(),
            ));
        }
        for key in &invalidation.keys {
            check_key(key)?;
        }
        if let Some(pattern) = &invalidation.pattern {
            check_pattern(pattern)?;
        }
        if let Some(tag) = &invalidation.tag {
            check_tags(std::slice::from_ref(tag))?;
        }
        self.counted(self.tier.apply(invalidation)).await
    }

    /// Drops every value this process holds in memory (after a possible loss of
    /// invalidation messages).
    pub async fn clear_local(&self) {
        self.tier.clear_local().await;
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let overall = self.counters.snapshot(self.strategy);
        CacheStats {
            strategy: self.strategy.to_string(),
            hits: overall.hits,
            misses: overall.misses,
            errors: overall.errors,
            loads: LoadCounters::read(&self.loads.loads),
            early_refreshes: LoadCounters::read(&self.loads.early_refreshes),
            stale_served: LoadCounters::read(&self.loads.stale_served),
            hit_rate: overall.hit_rate,
            tiers: self.tier.tier_stats(),
        }
    }

    /// Runs `call`, counting an unavailable store as an error.
    async fn counted<R>(
        &self,
        call: impl Future<Output = Result<R, CacheError>>,
    ) -> Result<R, CacheError> {
        let result = call.await;
        if let Err(err) = &result
            && err.is_unavailable()
        {
            self.counters.error();
        }
        result
    }

    /// How long the store keeps a value meant to live `ttl`: `stale_for` longer.
    fn kept_for(&self, ttl: Option<Duration>) -> Option<Duration> {
        ttl.map(|ttl| ttl.saturating_add(self.options.stale_for))
    }

    /// The value at `key`; its time left too if `with_ttl` (or if the tier has it for free).
    async fn lookup(&self, key: &str, with_ttl: bool) -> Result<Option<Found>, CacheError> {
        let stored = self.counted(self.tier.get(key, with_ttl)).await?;
        Ok(stored.map(|stored| {
            let stale = !self.options.stale_for.is_zero()
                && stored
                    .ttl
                    .is_some_and(|left| left <= self.options.stale_for);
            let ttl = stored
                .ttl
                .map(|left| left.saturating_sub(self.options.stale_for));
            Found {
                stored: Stored {
                    text: stored.text,
                    ttl,
                },
                stale,
            }
        }))
    }

    /// XFetch: whether to reload a fresh value now, given `left` before it expires and how
    /// long its last load took here.
    fn refresh_early(&self, key: &str, left: Option<Duration>) -> bool {
        let beta = self.options.early_refresh_beta;
        let Some(left) = left else { return false };
        if beta <= 0.0 {
            return false;
        }
        let Some(delta) = self.load_times.lock().get(key).copied() else {
            return false;
        };
        // -ln(u) for u in (0, 1] is exponentially distributed: usually small, now and then large.
        let draw = -(1.0 - fastrand::f64()).ln();
        left.as_secs_f64() <= delta.as_secs_f64() * beta * draw
    }

    fn remember_load_time(&self, key: &str, took: Duration) {
        let mut times = self.load_times.lock();
        if times.len() >= MAX_LOAD_TIMES && !times.contains_key(key) {
            times.clear();
        }
        times.insert(key.to_string(), took);
    }

    /// Loads `key` as the one caller in this process: takes the key's lease (so one process
    /// loads), runs `loader`, stores the value.
    async fn load<T, F, Fut, E>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        loader: F,
        store_down: bool,
        fallback: Option<&Stored>,
    ) -> Landing
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let hold = self.options.lease;
        let mut token = None;
        if !store_down {
            let waited_since = Instant::now();
            let mut pause = Duration::from_millis(2);
            loop {
                match self.tier.lease(key, hold).await {
                    Ok(Lease::Granted(granted)) => {
                        // The holder before us may have stored the value just now.
                        if fallback.is_none()
                            && let Ok(Some(found)) = self.lookup(key, true).await
                            && !found.stale
                        {
                            let _ = self.tier.release(key, &granted, None).await;
                            return Ok(found.stored.text);
                        }
                        token = Some(granted);
                        break;
                    }
                    Ok(Lease::Held) => {
                        // Someone else loads it: serve what we have, or wait for theirs.
                        if let Some(current) = fallback
                            && current.ttl.is_none_or(|t| !t.is_zero())
                        {
                            return Ok(Arc::clone(&current.text));
                        }
                        if waited_since.elapsed() > hold + Duration::from_secs(1) {
                            break;
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(100));
                        if let Ok(Some(found)) = self.lookup(key, true).await
                            && !found.stale
                        {
                            return Ok(found.stored.text);
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        LoadCounters::bump(&self.loads.loads);
        let started = Instant::now();
        let loaded = match &token {
            Some(token) => self.while_holding(key, token, loader()).await,
            None => loader().await,
        };
        self.remember_load_time(key, started.elapsed());
        let landing = match loaded {
            Ok(value) => match encode(&value) {
                Ok(text) => {
                    let stored = self
                        .tier
                        .set(key, Arc::clone(&text), self.kept_for(ttl), &[]);
                    // A store that cannot keep it does not make the value wrong.
                    let _ = self.counted(stored).await;
                    Ok(text)
                }
                Err(err) => Err(err),
            },
            Err(err) => match fallback {
                Some(stale) => {
                    LoadCounters::bump(&self.loads.stale_served);
                    tracing::warn!(key, error = %err.into(), "loader failed; serving the stale value");
                    Ok(Arc::clone(&stale.text))
                }
                None => Err(CacheError::Load {
                    key: key.to_string(),
                    source: Arc::from(err.into()),
                }),
            },
        };
        if let Some(token) = token {
            let _ = self.tier.release(key, &token, None).await;
        }
        landing
    }

    /// Runs `loading`, extending the key's lease while it runs.
    async fn while_holding<R>(
        &self,
        key: &str,
        token: &str,
        loading: impl Future<Output = R>,
    ) -> R {
        let hold = self.options.lease;
        let mut loading = std::pin::pin!(loading);
        let mut tick = tokio::time::interval(hold / 3);
        tick.tick().await;
        loop {
            tokio::select! {
                result = &mut loading => return result,
                _ = tick.tick() => {
                    let _ = self.tier.release(key, token, Some(hold)).await;
                }
            }
        }
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Arc<str>, CacheError> {
    serde_json::to_string(value)
        .map(Arc::from)
        .map_err(|e| CacheError::Encode(e.to_string()))
}

/// Decodes JSON text; text that is not JSON (a value another program stored) reads as a string.
fn decode<T: DeserializeOwned>(key: &str, text: &str) -> Result<T, CacheError> {
    serde_json::from_str(text).or_else(|err| {
        serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
            CacheError::Decode {
                key: key.to_string(),
                reason: err.to_string(),
            }
        })
    })
}

fn check_key(key: &str) -> Result<(), CacheError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CacheError::Invalid(format!(
            "a key is 1 to {MAX_KEY_BYTES} bytes (got {})",
            key.len()
        )));
    }
    Ok(())
}

fn check_pattern(pattern: &str) -> Result<(), CacheError> {
    if pattern.is_empty() || pattern.len() > MAX_KEY_BYTES {
        return Err(CacheError::Invalid(format!(
            "a pattern is 1 to {MAX_KEY_BYTES} bytes (got {})",
            pattern.len()
        )));
    }
    Ok(())
}

fn check_ttl(ttl: Option<Duration>) -> Result<(), CacheError> {
    match ttl {
        Some(ttl) if ttl < Duration::from_millis(1) || ttl > MAX_TTL => {
            Err(CacheError::Invalid(format!(
                "a TTL is 1 ms to {} ms (got {} ms); leave it out for no expiry",
                MAX_TTL.as_millis(),
                ttl.as_millis()
            )))
        }
        _ => Ok(()),
    }
}

fn check_tags(tags: &[String]) -> Result<(), CacheError> {
    if tags.len() > MAX_TAGS {
        return Err(CacheError::Invalid(format!(
            "a value carries at most {MAX_TAGS} tags (got {})",
            tags.len()
        )));
    }
    if let Some(bad) = tags
        .iter()
        .find(|t| t.is_empty() || t.len() > MAX_KEY_BYTES)
    {
        return Err(CacheError::Invalid(format!(
            "a tag is 1 to {MAX_KEY_BYTES} bytes (got {})",
            bad.len()
        )));
    }
    Ok(())
}
