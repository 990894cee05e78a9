//! The Redis store end to end, on a `redis-server` of its own (or the one at `REDIS_URL`):
//!
//! 1. throughput: add 20,000 no-op jobs with `add_bulk` in batches of 1,000, then process them
//!    with a pool of concurrency 50 (5 rounds, median and range);
//! 2. latency: enqueue-to-start p50/p99 while adding one job every millisecond (1,000 jobs/s).
//!
//! `cargo bench --bench redis_store` (`benches/compare.sh` runs BullMQ on the same server first).

#![allow(missing_docs)]

#[path = "../tests/common/redis.rs"]
#[allow(dead_code)]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};
use stagehand::actors::{PoolSettings, QueueSpec, Runtime};
use stagehand::core::{
    JobContext, JobOptions, NewJob, QueueStore, RedisStore, Retention, processor_fn,
};

const JOBS: usize = 20_000;
const BATCH: usize = 1_000;
const CONCURRENCY: usize = 50;
const RATE_SECONDS: u64 = 5;
/// Throughput rounds, each on a fresh queue; the median is reported (`BENCH_ROUNDS` overrides,
/// e.g. 1 under a profiler).
const ROUNDS: usize = 5;

fn round_count() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(ROUNDS)
}
/// Fetch–run–settle loops in the pool, as the service runs by default.
const LOOPS: usize = 2;

fn options() -> JobOptions {
    JobOptions {
        remove_on_complete: Retention::RemoveAll,
        ..JobOptions::default()
    }
}

fn micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn empty(store: &RedisStore) {
    loop {
        let c = store.counts().await.expect("counts");
        if c.waiting + c.active + c.delayed + c.prioritized == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// One round on a fresh queue: (added, processed) in jobs/s.
async fn throughput_round(url: &str, queue: &str) -> (f64, f64) {
    let store = Arc::new(RedisStore::open(url, queue).await.expect("open"));
    let start = Instant::now();
    for b in 0..JOBS / BATCH {
        let batch = (0..BATCH)
            .map(|i| NewJob::new("noop", json!({ "n": b * BATCH + i })).with_options(options()))
            .collect();
        store.add_bulk(batch).await.expect("add_bulk");
    }
    let added = start.elapsed();
    let noop = processor_fn(|_ctx: JobContext| async move { Ok(Value::Null) });
    let settings = PoolSettings {
        fetch_batch: CONCURRENCY,
        loops: LOOPS,
        ..PoolSettings::with_concurrency(CONCURRENCY)
    };
    let start = Instant::now();
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new(queue)
                .store(store.clone())
                .settings(settings)
                .processor(Arc::new(noop)),
        )
        .start();
    empty(&store).await;
    let processed = start.elapsed();
    runtime.shutdown(Duration::from_secs(5)).await;
    (
        JOBS as f64 / added.as_secs_f64(),
        JOBS as f64 / processed.as_secs_f64(),
    )
}

/// The median of `rates`, with their range.
fn median_and_range(mut rates: Vec<f64>) -> String {
    rates.sort_by(f64::total_cmp);
    format!(
        "{:>8.0} jobs/s median of {} ({:.1}k..{:.1}k)",
        rates[rates.len() / 2],
        rates.len(),
        rates[0] / 1e3,
        rates[rates.len() - 1] / 1e3
    )
}

/// [`ROUNDS`] rounds: one takes about a second, short enough for the machine's noise to move
/// it, so the median is what counts.
async fn throughput(url: &str) {
    let mut rounds = Vec::new();
    for r in 0..round_count() {
        rounds.push(throughput_round(url, &format!("bench-throughput-{r}")).await);
    }
    println!(
        "stagehand add_bulk: {}, {JOBS} jobs in batches of {BATCH}",
        median_and_range(rounds.iter().map(|r| r.0).collect())
    );
    println!(
        "stagehand process:  {}, concurrency {CONCURRENCY}",
        median_and_range(rounds.iter().map(|r| r.1).collect())
    );
}

async fn latency(url: &str) {
    let store = Arc::new(RedisStore::open(url, "bench-latency").await.expect("open"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let processor = processor_fn(move |ctx: JobContext| {
        let record = Arc::clone(&record);
        async move {
            let sent = ctx
                .data::<serde_json::Value>()
                .ok()
                .and_then(|v| v["t"].as_u64())
                .unwrap_or(0);
            record.lock().push(micros().saturating_sub(sent));
            Ok(Value::Null)
        }
    });
    let settings = PoolSettings {
        fetch_batch: CONCURRENCY,
        loops: LOOPS,
        ..PoolSettings::with_concurrency(CONCURRENCY)
    };
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new("bench-latency")
                .store(store.clone())
                .settings(settings)
                .processor(Arc::new(processor)),
        )
        .start();
    let total = (RATE_SECONDS * 1000) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for _ in 0..total {
        tick.tick().await;
        let job = NewJob::new("ping", json!({ "t": micros() })).with_options(options());
        store.add(job).await.expect("add");
    }
    empty(&store).await;
    runtime.shutdown(Duration::from_secs(5)).await;
    let mut lat = seen.lock().clone();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    println!(
        "stagehand latency:  p50 {:.2} ms, p99 {:.2} ms ({} jobs at 1,000/s)",
        pct(0.50),
        pct(0.99),
        lat.len()
    );
}

fn main() {
    // `cargo bench` passes flags such as --bench; this harness takes none.
    let own = std::env::var("REDIS_URL")
        .is_err()
        .then(redis_server::RedisServer::start);
    let url = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| own.as_ref().map(|r| r.url()).unwrap_or_default());
    let system = actix::System::new();
    // BENCH_ONLY=throughput or =latency runs one part (to profile it alone).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    system.block_on(async {
        if only != "latency" {
            throughput(&url).await;
        }
        if only != "throughput" {
            latency(&url).await;
        }
    });
}
