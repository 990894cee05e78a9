//! `get_or_set` across real processes: this test runs itself three more times as child
//! processes (one cache each, on one `redis-server`), 33 callers in each, all asking for one
//! missing key at once. The loader runs once in all.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use stagehand_core::cache::{Cache, CacheOptions, RedisTier, RedisTierOptions};
use stagehand_core::redis::Target;

const CHILD: &str = "STAGEHAND_TEST_CACHE_CHILD";

/// What a child does: wait for the start signal, then 33 concurrent `get_or_set` of one key,
/// each loader run counted in Redis.
async fn child(url: &str) {
    let client = redis::Client::open(url).expect("client");
    let tier = RedisTier::new(&Target::single(client.clone()), RedisTierOptions::default())
        .await
        .expect("tier");
    let cache = Cache::new("redis", Arc::new(tier), CacheOptions::default());
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let _: () = redis::cmd("INCR")
        .arg("test:ready")
        .query_async(&mut conn)
        .await
        .expect("ready");
    // Every process starts together: a BLPOP per process on a list the parent fills.
    let _: Option<(String, String)> = redis::cmd("BLPOP")
        .arg("test:go")
        .arg(30)
        .query_async(&mut conn)
        .await
        .expect("go");
    let callers: Vec<_> = (0..33)
        .map(|_| {
            let (cache, mut conn) = (cache.clone(), conn.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set("wardrobe:7", Some(Duration::from_secs(60)), || async move {
                        let _: () = redis::cmd("INCR")
                            .arg("test:loads")
                            .query_async(&mut conn)
                            .await
                            .expect("count");
                        // A slow source: the others arrive meanwhile.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, std::io::Error>("coat".to_string())
                    })
                    .await
                    .expect("get_or_set")
            })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await.expect("join"), "coat");
    }
}

#[tokio::test]
async fn get_or_set_loads_once_across_three_processes() {
    if let Ok(url) = std::env::var(CHILD) {
        child(&url).await;
        return;
    }
    let server = RedisServer::start();
    let me = std::env::current_exe().expect("this test binary");
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&me)
                .args([
                    "--exact",
                    "get_or_set_loads_once_across_three_processes",
                    "--nocapture",
                ])
                .env(CHILD, server.url())
                .spawn()
                .expect("a child process")
        })
        .collect();
    let mut conn = server.conn().await;
    common::eventually("three processes ready", || {
        let mut conn = conn.clone();
        async move {
            let ready: Option<u64> = redis::cmd("GET")
                .arg("test:ready")
                .query_async(&mut conn)
                .await
                .ok()?;
            (ready? == 3).then_some(())
        }
    })
    .await;
    let _: () = redis::cmd("RPUSH")
        .arg("test:go")
        .arg(&["go", "go", "go"])
        .query_async(&mut conn)
        .await
        .expect("go");
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "a child failed");
    }
    let loads: u64 = redis::cmd("GET")
        .arg("test:loads")
        .query_async(&mut conn)
        .await
        .expect("loads");
    assert_eq!(
        loads, 1,
        "the loader ran once across 99 callers in three processes"
    );
}
