//! Per-minute history of a queue, kept in its store for the dashboard's charts: jobs completed
//! and failed, and attempt durations in fixed buckets from which percentiles are read. Each
//! process adds its own figures ([`crate::store::QueueStore::record_minutes`]); the store sums
//! them and forgets minutes older than [`HISTORY_MINUTES`].
//!
//! Percentiles are read from the buckets, so each is the upper bound of the bucket it falls
//! in ([`BOUNDS_MS`], about 2 to 2.5 apart): good for a chart, not for an SLO to the
//! millisecond (Prometheus's histograms are the place for that).

use std::collections::BTreeMap;

use serde::Serialize;

/// How long minutes are kept: 14 days, as BullMQ keeps its metrics.
pub const HISTORY_MINUTES: u64 = 14 * 24 * 60;
/// The most minutes a process holds while its store does not answer; older ones are dropped.
pub const PENDING_MINUTES: usize = 60;
/// Bucket upper bounds in ms; a last bucket holds everything longer.
pub const BOUNDS_MS: [u64; 20] = [
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000,
    300_000, 600_000, 1_800_000, 3_600_000,
];
/// Buckets per minute: one per bound and one past the last.
pub const BUCKETS: usize = BOUNDS_MS.len() + 1;

/// How an attempt ended, as the history counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The job completed.
    Completed,
    /// The job failed for good.
    Failed,
    /// The attempt failed and the job runs again (its duration counts; the job is not done).
    Retried,
}

/// One minute's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinuteStats {
    /// Minutes since the epoch.
    pub minute: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Jobs failed for good.
    pub failed: u64,
    /// Attempts per duration bucket.
    pub durations: [u64; BUCKETS],
}

/// The bucket of an attempt that took `ms`.
pub fn bucket(ms: u64) -> usize {
    BOUNDS_MS.partition_point(|bound| *bound < ms)
}

impl MinuteStats {
    /// An empty minute.
    pub fn new(minute: u64) -> MinuteStats {
        MinuteStats {
            minute,
            completed: 0,
            failed: 0,
            durations: [0; BUCKETS],
        }
    }

    /// Counts one attempt that ended so, after `ms`.
    pub fn record(&mut self, ended: Ended, ms: u64) {
        match ended {
            Ended::Completed => self.completed += 1,
            Ended::Failed => self.failed += 1,
            Ended::Retried => {}
        }
        self.durations[bucket(ms)] += 1;
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &MinuteStats) {
        self.completed += other.completed;
        self.failed += other.failed;
        for (a, b) in self.durations.iter_mut().zip(other.durations) {
            *a += b;
        }
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.completed == 0 && self.failed == 0 && self.durations.iter().all(|n| *n == 0)
    }

    /// The counts as a store keeps them: `(field, count)` for each count above zero (`c`,
    /// `f`, and `b0`.. for the buckets).
    pub fn fields(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        if self.completed > 0 {
            out.push(("c".to_string(), self.completed));
        }
        if self.failed > 0 {
            out.push(("f".to_string(), self.failed));
        }
        for (i, n) in self.durations.iter().enumerate() {
            if *n > 0 {
                out.push((format!("b{i}"), *n));
            }
        }
        out
    }

    /// A minute from a store's fields; fields it does not know are ignored.
    pub fn from_fields<'a>(
        minute: u64,
        fields: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> MinuteStats {
        let mut stats = MinuteStats::new(minute);
        for (field, n) in fields {
            match field {
                "c" => stats.completed = n,
                "f" => stats.failed = n,
                _ => {
                    if let Some(i) = field
                        .strip_prefix('b')
                        .and_then(|i| i.parse::<usize>().ok())
                        && i < BUCKETS
                    {
                        stats.durations[i] = n;
                    }
                }
            }
        }
        stats
    }

    /// The duration (ms) under which a share `q` (0 to 1) of the attempts ended: the upper
    /// bound of its bucket (the last bound for the open bucket past it). None with no attempts.
    pub fn percentile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.durations.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.durations.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(BOUNDS_MS[i.min(BOUNDS_MS.len() - 1)]);
            }
        }
        BOUNDS_MS.last().copied()
    }
}

/// One process's figures not yet added to the store, by minute.
#[derive(Debug, Default)]
pub struct MinuteRecorder {
    minutes: BTreeMap<u64, MinuteStats>,
}

impl MinuteRecorder {
    /// Counts an attempt that ended at `now_ms` after `ms`.
    pub fn record(&mut self, now_ms: u64, ended: Ended, ms: u64) {
        let minute = now_ms / 60_000;
        self.minutes
            .entry(minute)
            .or_insert_with(|| MinuteStats::new(minute))
            .record(ended, ms);
    }

    /// The figures to add to the store, leaving none.
    pub fn take(&mut self) -> Vec<MinuteStats> {
        std::mem::take(&mut self.minutes).into_values().collect()
    }

    /// Puts back figures the store did not take, keeping the newest [`PENDING_MINUTES`].
    pub fn restore(&mut self, minutes: Vec<MinuteStats>) {
        for stats in minutes {
            self.minutes
                .entry(stats.minute)
                .or_insert_with(|| MinuteStats::new(stats.minute))
                .merge(&stats);
        }
        while self.minutes.len() > PENDING_MINUTES {
            self.minutes.pop_first();
        }
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }
}

/// One minute of a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinutePoint {
    /// The minute's start (ms since the epoch).
    pub at: u64,
    /// Jobs completed.
    pub completed: u64,
    /// Jobs failed for good.
    pub failed: u64,
    /// Attempts that ended (completed, failed or retried).
    pub attempts: u64,
    /// Median attempt duration (ms, a bucket bound).
    pub p50_ms: Option<u64>,
    /// 90th percentile.
    pub p90_ms: Option<u64>,
    /// 99th percentile.
    pub p99_ms: Option<u64>,
}

/// Every minute from `from` to `to` (minutes since the epoch, both included), zeros where
/// `stats` has none.
pub fn series(from: u64, to: u64, stats: &[MinuteStats]) -> Vec<MinutePoint> {
    let by_minute: BTreeMap<u64, &MinuteStats> = stats.iter().map(|s| (s.minute, s)).collect();
    (from..=to)
        .map(|minute| {
            let empty = MinuteStats::new(minute);
            let s = by_minute.get(&minute).copied().unwrap_or(&empty);
            MinutePoint {
                at: minute * 60_000,
                completed: s.completed,
                failed: s.failed,
                attempts: s.durations.iter().sum(),
                p50_ms: s.percentile(0.5),
                p90_ms: s.percentile(0.9),
                p99_ms: s.percentile(0.99),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_hold_their_bounds() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(3), 2);
        assert_eq!(bucket(1_000), 9);
        assert_eq!(bucket(3_600_000), 19);
        assert_eq!(bucket(u64::MAX), 20);
    }

    #[test]
    fn percentiles_read_the_buckets() {
        let mut m = MinuteStats::new(7);
        assert_eq!(m.percentile(0.5), None);
        for _ in 0..90 {
            m.record(Ended::Completed, 8);
        }
        for _ in 0..9 {
            m.record(Ended::Retried, 400);
        }
        m.record(Ended::Failed, 7_200_000);
        assert_eq!((m.completed, m.failed), (90, 1));
        assert_eq!(m.percentile(0.5), Some(10));
        assert_eq!(m.percentile(0.9), Some(10));
        assert_eq!(m.percentile(0.99), Some(500));
        assert_eq!(m.percentile(1.0), Some(3_600_000));
    }

    #[test]
    fn fields_round_trip() {
        let mut m = MinuteStats::new(9);
        m.record(Ended::Completed, 30);
        m.record(Ended::Failed, 70_000);
        let fields = m.fields();
        let back = MinuteStats::from_fields(9, fields.iter().map(|(f, n)| (f.as_str(), *n)));
        assert_eq!(back, m);
        let odd = MinuteStats::from_fields(9, [("b99", 5), ("zz", 1), ("bx", 2)]);
        assert!(odd.is_empty());
    }

    #[test]
    fn a_recorder_keeps_the_newest_minutes_while_the_store_is_away() {
        let mut r = MinuteRecorder::default();
        for minute in 0..100 {
            r.record(minute * 60_000, Ended::Completed, 1);
        }
        let taken = r.take();
        assert!(r.is_empty());
        r.restore(taken);
        let kept = r.take();
        assert_eq!(kept.len(), PENDING_MINUTES);
        assert_eq!(kept[0].minute, 40);
    }

    #[test]
    fn a_series_fills_the_gaps() {
        let mut m = MinuteStats::new(11);
        m.record(Ended::Completed, 3);
        let s = series(10, 12, &[m]);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].completed, 0);
        assert_eq!(s[1].at, 11 * 60_000);
        assert_eq!((s[1].completed, s[1].p50_ms), (1, Some(5)));
    }
}
