//! The cost of metrics on the hot path: 100,000 no-op jobs through a pool (memory store,
//! concurrency 50) with no recorder installed (every metric a no-op), then with the
//! Prometheus recorder the service installs, in one run. Prints jobs per second per round and
//! the medians; the difference is what recording costs per job.
//!
//! `cargo bench --bench metrics_overhead`

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stagehand::actors::{PoolSettings, QueueSpec, Runtime};
use stagehand::core::{
    JobContext, JobOptions, MemoryStore, NewJob, QueueStore, Retention, processor_fn,
};

const JOBS: usize = 100_000;
const BATCH: usize = 1_000;
const CONCURRENCY: usize = 50;
const ROUNDS: usize = 5;

async fn fill(store: &MemoryStore) {
    let options = JobOptions {
        remove_on_complete: Retention::RemoveAll,
        ..JobOptions::default()
    };
    for b in 0..JOBS / BATCH {
        let batch = (0..BATCH)
            .map(|i| {
                // Ten job names, as a real queue has a few.
                NewJob::new(format!("job{}", i % 10), json!({ "n": b * BATCH + i }))
                    .with_options(options.clone())
            })
            .collect();
        store.add_bulk(batch).await.expect("add_bulk");
    }
}

/// Jobs per second running the filled store empty.
fn round() -> f64 {
    actix::System::new().block_on(async {
        let store = Arc::new(MemoryStore::new("bench"));
        fill(&store).await;
        let noop = processor_fn(|_ctx: JobContext| async move { Ok(Value::Null) });
        let settings = PoolSettings {
            fetch_batch: CONCURRENCY,
            ..PoolSettings::with_concurrency(CONCURRENCY)
        };
        let start = Instant::now();
        let runtime = Runtime::builder()
            .queue(
                QueueSpec::new("bench")
                    .store(store.clone())
                    .settings(settings)
                    .processor(Arc::new(noop)),
            )
            .start();
        loop {
            let c = store.counts().await.expect("counts");
            if c.waiting + c.active == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let took = start.elapsed();
        runtime.shutdown(Duration::from_secs(5)).await;
        JOBS as f64 / took.as_secs_f64()
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    round(); // warm up
    let without: Vec<f64> = (0..ROUNDS).map(|_| round()).collect();
    let _exporter = stagehand::metrics::Exporter::install().expect("install the recorder");
    let with: Vec<f64> = (0..ROUNDS).map(|_| round()).collect();
    let show = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("no recorder:         {} jobs/s", show(&without));
    println!("prometheus recorder: {} jobs/s", show(&with));
    let (a, b) = (median(without), median(with));
    println!(
        "median: {a:.0} -> {b:.0} jobs/s ({:+.1}%, {:+.2} µs per job)",
        (b - a) / a * 100.0,
        (1e6 / b) - (1e6 / a)
    );
}
