//! The cache's read path per strategy, beside `redis-benchmark -t get` on the same
//! `redis-server` at the same concurrency, and `get_or_set` under contention.
//!
//! `cargo bench --bench cache` (a `redis-server` of its own on a free port).

#![allow(missing_docs)]

#[path = "../tests/common/redis.rs"]
#[allow(dead_code)]
mod redis_server;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stagehand::core::cache::{
    Cache, CacheOptions, MemoryLimit, MemoryTier, RedisTier, RedisTierOptions, TwoTier,
};
use stagehand::core::redis::Target;

const KEYS: usize = 1_000;
const CONCURRENCY: usize = 50;
const READS: usize = 200_000;

async fn fill(cache: &Cache) {
    for i in 0..KEYS {
        cache
            .set(
                &format!("key:{i}"),
                &format!("value-{i}-{}", "x".repeat(40)),
                None,
            )
            .await
            .expect("set");
    }
}

/// Reads warm keys from `CONCURRENCY` tasks; reads per second.
async fn hits(cache: &Cache) -> f64 {
    let per_task = READS / CONCURRENCY;
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let key = format!("key:{}", (t * per_task + i) % KEYS);
                    let v: Option<String> = cache.get(&key).await.expect("get");
                    assert!(v.is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    (per_task * CONCURRENCY) as f64 / start.elapsed().as_secs_f64()
}

/// `get_or_set` on 10 hot keys that expire every 50 ms, from `CONCURRENCY` tasks: calls per
/// second and loader runs.
async fn contention(cache: &Cache) -> (f64, usize) {
    let loads = Arc::new(AtomicUsize::new(0));
    let per_task = 2_000;
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (cache, loads) = (cache.clone(), Arc::clone(&loads));
            tokio::spawn(async move {
                for i in 0..per_task {
                    let key = format!("hot:{}", (t + i) % 10);
                    let loads = Arc::clone(&loads);
                    let _: u64 = cache
                        .get_or_set(&key, Some(Duration::from_millis(50)), || async move {
                            loads.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            Ok::<_, std::io::Error>(7)
                        })
                        .await
                        .expect("get_or_set");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("join");
    }
    let calls = (per_task * CONCURRENCY) as f64 / start.elapsed().as_secs_f64();
    (calls, loads.load(Ordering::Relaxed))
}

async fn redis_tier(url: &str) -> RedisTier {
    let client = redis::Client::open(url).expect("client");
    RedisTier::new(&Target::single(client), RedisTierOptions::default())
        .await
        .expect("tier")
}

fn redis_benchmark(port: u16) -> String {
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &port.to_string(),
            "-t",
            "get",
            "-c",
            &CONCURRENCY.to_string(),
        ])
        .args(["-n", &READS.to_string(), "-d", "50", "-q"])
        .output();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("GET"))
            .map(|l| l.rsplit('\r').next().unwrap_or(l).trim().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("redis-benchmark did not run: {e}"),
    }
}

#[tokio::main]
async fn main() {
    let server = redis_server::RedisServer::start();
    let url = server.url();

    let memory = Cache::memory(MemoryLimit::Entries(100_000));
    fill(&memory).await;
    let redis = Cache::new(
        "redis",
        Arc::new(redis_tier(&url).await),
        CacheOptions::default(),
    );
    fill(&redis).await;
    let two_tier = Cache::new(
        "two-tier",
        Arc::new(TwoTier::new(
            redis_tier(&url).await,
            MemoryLimit::Entries(100_000),
            Duration::from_secs(60),
        )),
        CacheOptions::default(),
    );
    // Warm the memory tier.
    hits(&two_tier).await;

    println!("cache get hits, {CONCURRENCY} tasks, {READS} reads of {KEYS} warm keys:");
    for round in 1..=3 {
        let m = hits(&memory).await;
        let t = hits(&two_tier).await;
        let r = hits(&redis).await;
        let b = redis_benchmark(server.port);
        println!(
            "  round {round}: memory {:>10.0}/s   two-tier {:>10.0}/s   redis {:>8.0}/s   | redis-benchmark -c {CONCURRENCY}: {b}",
            m, t, r
        );
    }
    let two_tier_stats = two_tier.stats();
    println!(
        "  two-tier tiers: {}",
        two_tier_stats
            .tiers
            .iter()
            .map(|t| format!("{} {} hits", t.name, t.hits))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!(
        "get_or_set, {CONCURRENCY} tasks on 10 hot keys expiring every 50 ms (a 2 ms loader):"
    );
    let memory = Cache::new(
        "memory",
        Arc::new(MemoryTier::new(MemoryLimit::Entries(1000))),
        CacheOptions::default(),
    );
    let (calls, loads) = contention(&memory).await;
    println!("  memory: {calls:>10.0} calls/s, {loads} loads");
    let redis = Cache::new(
        "redis",
        Arc::new(redis_tier(&url).await),
        CacheOptions::default(),
    );
    let (calls, loads) = contention(&redis).await;
    println!("  redis:  {calls:>10.0} calls/s, {loads} loads");
}
