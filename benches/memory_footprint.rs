//! What 200,000 queued jobs cost the memory store: resident memory before and after adding
//! them (a 69-byte JSON body each, in bulks of 1,000), per job and beyond the body.
//!
//! `cargo bench --bench memory_footprint`

use std::time::Instant;

use serde_json::json;
use stagehand_core::{MemoryStore, NewJob, QueueStore};

const JOBS: usize = 200_000;

/// Resident memory of this process, in bytes (Linux `/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body =
        json!({"format": "csv", "records": [{"sku": "A-1", "qty": 2}], "output_key": "x.csv"});
    let body_len = serde_json::to_string(&body).expect("json").len();
    let store = MemoryStore::new("footprint");
    let before = rss();
    let start = Instant::now();
    runtime.block_on(async {
        for _ in 0..JOBS / 1000 {
            let jobs = (0..1000)
                .map(|_| NewJob::new("export", body.clone()))
                .collect();
            store.add_bulk(jobs).await.expect("add_bulk");
        }
    });
    let took = start.elapsed();
    let after = rss();
    let per_job = (after.saturating_sub(before)) as f64 / JOBS as f64;
    println!(
        "{JOBS} jobs with a {body_len}-byte body: RSS {:.1} MB -> {:.1} MB, {:.0} bytes a job ({:.0} beyond the body), added in {:.2?}",
        before as f64 / 1e6,
        after as f64 / 1e6,
        per_job,
        per_job - body_len as f64,
        took
    );
    drop(store);
}
