//! The memory store end to end: `add_bulk` in batches of 1,000, then a processor pool with
//! concurrency 50 running no-op jobs until the queue is empty.
//!
//! `cargo bench --bench memory_store`; throughput is in jobs (elements) per second.

#![allow(missing_docs)] // criterion_group! generates an undocumented `pub fn`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use stagehand::actors::{PoolSettings, QueueSpec, Runtime};
use stagehand::core::{
    JobContext, JobOptions, MemoryStore, NewJob, QueueStore, Retention, processor_fn,
};

const JOBS: usize = 100_000;
const BATCH: usize = 1_000;
const CONCURRENCY: usize = 50;

fn jobs() -> Vec<Vec<NewJob>> {
    let options = JobOptions {
        remove_on_complete: Retention::RemoveAll,
        ..JobOptions::default()
    };
    (0..JOBS / BATCH)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    NewJob::new("noop", json!({ "n": b * BATCH + i })).with_options(options.clone())
                })
                .collect()
        })
        .collect()
}

async fn add_all(store: &MemoryStore, batches: Vec<Vec<NewJob>>) {
    for batch in batches {
        store.add_bulk(batch).await.expect("add_bulk");
    }
}

/// Runs a pool over `store` until it is empty; returns how long that took.
async fn drain(store: Arc<MemoryStore>) -> Duration {
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
    took
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_store");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(JOBS as u64));

    group.bench_function("add_bulk_100k_in_batches_of_1000", |b| {
        b.iter_custom(|iters| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let store = MemoryStore::new("bench");
                let batches = jobs();
                let start = Instant::now();
                rt.block_on(add_all(&store, batches));
                total += start.elapsed();
            }
            total
        })
    });

    group.bench_function("process_100k_noop_concurrency_50", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let system = actix::System::new();
                total += system.block_on(async {
                    let store = Arc::new(MemoryStore::new("bench"));
                    add_all(&store, jobs()).await;
                    drain(store).await
                });
            }
            total
        })
    });

    group.bench_function("end_to_end_100k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let batches = jobs();
                let system = actix::System::new();
                total += system.block_on(async {
                    let store = Arc::new(MemoryStore::new("bench"));
                    let start = Instant::now();
                    add_all(&store, batches).await;
                    drain(store).await;
                    start.elapsed()
                });
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
