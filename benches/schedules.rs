//! 10,000 schedules firing every second on one `redis-server`: the lag from each fire time to
//! its job being enqueued (p50, p99, max), and the Redis CPU the scheduler costs.
//!
//! `cargo bench --bench schedules` (a `redis-server` of its own on a free port). One scheduler
//! loop (what one `stagehand` process runs), for `BENCH_SECONDS` (default 10) seconds.

#![allow(missing_docs)]

#[path = "../tests/common/redis.rs"]
#[allow(dead_code)]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stagehand::core::clock::now_ms;
use stagehand::core::schedule::{Schedule, ScheduleSpec, ScheduleState, fire_due};
use stagehand::core::{JobOptions, QueueStore, RedisStore};

const SCHEDULES: usize = 10_000;

async fn cpu_seconds(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let server = redis_server::RedisServer::start();
    let store: Arc<dyn QueueStore> = Arc::new(
        RedisStore::open(&server.url(), "ticks")
            .await
            .expect("store"),
    );
    let start_at = now_ms() + 2_000;
    for i in 0..SCHEDULES {
        let spec: ScheduleSpec = serde_json::from_value(json!({
            "id": format!("s{i}"), "queue": "ticks", "name": "tick", "every_ms": 1000,
            "start_at": start_at,
            "options": {"remove_on_complete": true},
        }))
        .expect("spec");
        let schedule = Schedule {
            spec,
            state: ScheduleState {
                next_at: Some(start_at),
                created_at: start_at,
                ..Default::default()
            },
        };
        store.put_schedule(&schedule).await.expect("put");
    }
    let client = redis::Client::open(server.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let defaults = JobOptions::default();
    let cpu_before = cpu_seconds(&mut conn).await;
    let until = Instant::now() + Duration::from_secs(seconds) + Duration::from_millis(2_000);
    let mut lags: Vec<u64> = Vec::new();
    while Instant::now() < until {
        let now = now_ms();
        let report = fire_due(&store, &defaults, now).await.expect("fire");
        lags.extend(report.fired.iter().map(|f| f.lag_ms()));
        let next = store
            .next_schedule_at()
            .await
            .expect("next")
            .unwrap_or(now + 1000);
        let wait = next.saturating_sub(now_ms()).max(1);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    let cpu = cpu_seconds(&mut conn).await - cpu_before;
    lags.sort_unstable();
    let pct = |p: f64| {
        lags.get(((lags.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{SCHEDULES} schedules every second for {seconds} s: {} fires, lag p50 {} ms, p99 {} ms, max {} ms; Redis CPU {:.2} s ({:.0}% of one core)",
        lags.len(),
        pct(0.5),
        pct(0.99),
        lags.last().copied().unwrap_or(0),
        cpu,
        cpu * 100.0 / (seconds as f64 + 2.0)
    );
}
