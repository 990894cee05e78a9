//! The memory strategy: a moka cache bounded by entries or bytes, with a time to live per
//! entry and an exact tag index.
//!
//! Each stored value carries a generation number. The tag index maps a tag to the keys stored
//! with it and the generation they were stored at; a key belongs to a tag only while its
//! current value has that generation. Invalidating a tag removes a key only if its value is
//! still that generation, and every value that leaves the cache (expired, evicted, replaced,
//! deleted) takes its index entries with it, so the index never outgrows the cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache as Moka;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use parking_lot::Mutex;

use super::error::CacheError;
use super::pattern;
use super::stats::{Counters, TierStats};
use super::tier::{CacheTier, Lease, Stored, Ttl};

/// How a memory tier is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// At most this many entries.
    Entries(u64),
    /// At most about this many bytes of keys and values (plus a fixed overhead per entry).
    Bytes(u64),
}

/// What each entry costs besides its key and value, counted against a byte limit.
const ENTRY_OVERHEAD: usize = 96;

#[derive(Debug, Clone)]
struct Entry {
    text: Arc<str>,
    expires_at: Option<Instant>,
    tags: Arc<[Arc<str>]>,
    generation: u64,
}

/// Tag -> key -> the generation the key was stored at with that tag.
type TagIndex = HashMap<Arc<str>, HashMap<String, u64>>;

struct PerEntry;

impl Expiry<String, Entry> for PerEntry {
    fn expire_after_create(&self, _: &String, entry: &Entry, now: Instant) -> Option<Duration> {
        entry.expires_at.map(|at| at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        entry.expires_at.map(|at| at.saturating_duration_since(now))
    }
}

/// The memory strategy.
#[derive(Clone)]
pub struct MemoryTier {
    cache: Moka<String, Entry>,
    tags: Arc<Mutex<TagIndex>>,
    generation: Arc<AtomicU64>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl MemoryTier {
    /// A memory tier within `limit`.
    pub fn new(limit: MemoryLimit) -> MemoryTier {
        let tags: Arc<Mutex<TagIndex>> = Arc::default();
        let index = Arc::clone(&tags);
        let mut builder = Moka::builder()
            .expire_after(PerEntry)
            // Whatever the cause, a value that leaves takes its tag memberships with it. The
            // index lock is never held while moka is called, so this cannot deadlock.
            .eviction_listener(move |key: Arc<String>, entry: Entry, _: RemovalCause| {
                if entry.tags.is_empty() {
                    return;
                }
                let mut index = index.lock();
                for tag in entry.tags.iter() {
                    if let Some(keys) = index.get_mut(tag) {
                        if keys.get(key.as_str()) == Some(&entry.generation) {
                            keys.remove(key.as_str());
                        }
                        if keys.is_empty() {
                            index.remove(tag);
                        }
                    }
                }
            });
        builder = match limit {
            MemoryLimit::Entries(n) => builder.max_capacity(n),
            MemoryLimit::Bytes(n) => builder.max_capacity(n).weigher(|k: &String, e: &Entry| {
                u32::try_from(k.len() + e.text.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            }),
        };
        MemoryTier {
            cache: builder.build(),
            tags,
            generation: Arc::new(AtomicU64::new(1)),
            counters: Arc::default(),
        }
    }

    fn entry(&self, text: Arc<str>, ttl: Option<Duration>, tags: &[String]) -> Entry {
        Entry {
            text,
            expires_at: ttl.and_then(|ttl| Instant::now().checked_add(ttl)),
            tags: tags.iter().map(|t| Arc::from(t.as_str())).collect(),
            generation: self.generation.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Stores `entry`, then records its tags.
    async fn store(&self, key: &str, entry: Entry) {
        let tags = Arc::clone(&entry.tags);
        let generation = entry.generation;
        self.cache.insert(key.to_string(), entry).await;
        if !tags.is_empty() {
            let mut index = self.tags.lock();
            for tag in tags.iter() {
                index
                    .entry(Arc::clone(tag))
                    .or_default()
                    .insert(key.to_string(), generation);
            }
        }
    }

    /// Removes `key` only if its value is still `generation`.
    async fn remove_if_generation(&self, key: String, generation: u64) -> bool {
        let result = self
            .cache
            .entry(key)
            .and_compute_with(|current| async move {
                match current {
                    Some(e) if e.value().generation == generation => Op::Remove,
                    _ => Op::Nop,
                }
            })
            .await;
        matches!(result, CompResult::Removed(_))
    }

    /// How many keys the tag index holds for `tag` (for tests of reaping).
    pub fn tag_members(&self, tag: &str) -> usize {
        self.tags.lock().get(tag).map_or(0, HashMap::len)
    }

    /// Runs moka's pending housekeeping (expirations, evictions) now.
    pub async fn sync(&self) {
        self.cache.run_pending_tasks().await;
    }
}

fn remaining(entry: &Entry) -> Option<Duration> {
    entry
        .expires_at
        .map(|at| at.saturating_duration_since(Instant::now()))
}

#[async_trait]
impl CacheTier for MemoryTier {
    async fn get(&self, key: &str, _with_ttl: bool) -> Result<Option<Stored>, CacheError> {
        let found = self.cache.get(key).await.map(|e| Stored {
            ttl: remaining(&e),
            text: e.text,
        });
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
        let entry = self.entry(text, ttl, tags);
        self.store(key, entry).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        Ok(self.cache.remove(key).await.is_some())
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let doomed: Vec<Arc<String>> = self
            .cache
            .iter()
            .filter(|(key, _)| pattern::matches(pattern, key))
            .map(|(key, _)| key)
            .collect();
        let mut deleted = 0;
        for key in doomed {
            if self.cache.remove(key.as_str()).await.is_some() {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn increment(&self, key: &str, by: i64) -> Result<i64, CacheError> {
        let fresh = self.generation.fetch_add(1, Ordering::Relaxed);
        let mut outcome = None;
        let slot = &mut outcome;
        self.cache
            .entry(key.to_string())
            .and_compute_with(|current| async move {
                let (old, expires_at, tags) = match &current {
                    Some(e) => {
                        let e = e.value();
                        (
                            e.text.trim().parse::<i64>().ok(),
                            e.expires_at,
                            Arc::clone(&e.tags),
                        )
                    }
                    None => (Some(0), None, Arc::from(Vec::new())),
                };
                match old.and_then(|old| old.checked_add(by)) {
                    Some(new) => {
                        *slot = Some(new);
                        Op::Put(Entry {
                            text: Arc::from(new.to_string()),
                            expires_at,
                            tags,
                            generation: current.map_or(fresh, |e| e.value().generation),
                        })
                    }
                    None => Op::Nop,
                }
            })
            .await;
        outcome.ok_or_else(|| CacheError::NotAnInteger(key.to_string()))
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, CacheError> {
        let result = self
            .cache
            .entry(key.to_string())
            .and_compute_with(|current| async move {
                match current {
                    Some(e) => {
                        let mut entry = e.into_value();
                        entry.expires_at = Instant::now().checked_add(ttl);
                        Op::Put(entry)
                    }
                    None => Op::Nop,
                }
            })
            .await;
        Ok(matches!(result, CompResult::ReplacedWith(_)))
    }

    async fn ttl(&self, key: &str) -> Result<Ttl, CacheError> {
        Ok(match self.cache.get(key).await {
            None => Ttl::Missing,
            Some(e) => remaining(&e).map_or(Ttl::Persistent, Ttl::Expires),
        })
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        let members = self.tags.lock().remove(tag).unwrap_or_default();
        let mut removed = 0;
        for (key, generation) in members {
            if self.remove_if_generation(key, generation).await {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn lease(&self, _key: &str, _hold: Duration) -> Result<Lease, CacheError> {
        // One process: its own single flight is the lease.
        Ok(Lease::Granted(String::new()))
    }

    async fn release(&self, _: &str, _: &str, _: Option<Duration>) -> Result<(), CacheError> {
        Ok(())
    }

    async fn clear_local(&self) {
        self.cache.invalidate_all();
    }

    fn tier_stats(&self) -> Vec<TierStats> {
        vec![self.counters.snapshot("memory")]
    }
}
