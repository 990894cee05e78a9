//! Hit, miss, error and load counters.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters of one tier (or of the cache as a whole).
#[derive(Debug, Default)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot, named `name`.
    pub fn snapshot(&self, name: &str) -> TierStats {
        let hits = self.hits.load(Ordering::Relaxed);
        let misses = self.misses.load(Ordering::Relaxed);
        TierStats {
            name: name.to_string(),
            hits,
            misses,
            errors: self.errors.load(Ordering::Relaxed),
            hit_rate: hit_rate(hits, misses),
        }
    }
}

/// A tier's counters at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStats {
    /// `memory` or `redis`.
    pub name: String,
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
    /// Reads that failed (the store unavailable): not misses.
    pub errors: u64,
    /// `hits / (hits + misses)` in percent, as the seed computes it (0 with no reads).
    pub hit_rate: f64,
}

/// The cache's counters at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheStats {
    /// The strategy: `memory`, `redis` or `two-tier`.
    pub strategy: String,
    /// Reads (`get`, and `get_or_set`'s lookups) that found a fresh value.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
    /// Reads and writes that failed because the store was unavailable.
    pub errors: u64,
    /// Loader runs of `get_or_set`.
    pub loads: u64,
    /// Loads started early, before the value expired (XFetch).
    pub early_refreshes: u64,
    /// Stale values served because a loader failed.
    pub stale_served: u64,
    /// `hits / (hits + misses)` in percent.
    pub hit_rate: f64,
    /// Per tier, for `two-tier` (one entry otherwise).
    pub tiers: Vec<TierStats>,
}

/// The seed's hit rate: a percentage, 0 when nothing was read.
pub fn hit_rate(hits: u64, misses: u64) -> f64 {
    let total = hits + misses;
    if total == 0 {
        0.0
    } else {
        hits as f64 * 100.0 / total as f64
    }
}

/// Counters the cache keeps besides its tiers'.
#[derive(Debug, Default)]
pub(crate) struct LoadCounters {
    pub loads: AtomicU64,
    pub early_refreshes: AtomicU64,
    pub stale_served: AtomicU64,
}

impl LoadCounters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
