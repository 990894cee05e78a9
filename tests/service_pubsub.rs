//! Pub/sub and the two-tier cache across real `stagehand` processes on one `redis-server`:
//! evictions travel, a lost link clears the memory tier, a `redis-cli PUBLISH` in the seed's
//! envelope invalidates, a notification becomes one email job, the CLI drives it all.

mod common;

use common::redis::RedisServer;
use common::{Service, eventually};
use serde_json::{Value, json};

/// Two processes on `redis`, whose memory tiers keep values ten minutes (so only an eviction
/// can make them see a change within a test).
async fn two_processes(redis: &RedisServer) -> (Service, Service) {
    let config = format!(
        "[redis]\nurl = \"{}\"\n[cache]\nmemory_ttl_ms = 600000\n[pubsub]\nping_ms = 200\nping_timeout_ms = 500\n[queues.email]\nprocessor = \"none\"\n",
        redis.url()
    );
    (Service::start(&config).await, Service::start(&config).await)
}

async fn value(service: &Service, key: &str) -> Value {
    service.api.get(&format!("/api/cache/{key}")).await.1["value"].clone()
}

/// Waits until every process's subscriber to `cache-invalidate` is in place.
async fn subscribed(redis: &RedisServer, processes: u64) {
    let mut conn = redis.conn().await;
    eventually("the subscribers", || {
        let mut conn = conn.clone();
        async move {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("stagehand:cache-invalidate")
                .query_async(&mut conn)
                .await
                .ok()?;
            (counts.first()?.1 >= processes).then_some(())
        }
    })
    .await;
    let _ = &mut conn;
}

#[tokio::test]
async fn a_write_in_one_process_evicts_the_key_from_the_others_memory() {
    let redis = RedisServer::start();
    let (a, b) = two_processes(&redis).await;
    subscribed(&redis, 2).await;
    a.api.put("/api/cache/look", &json!({"value": "v1"})).await;
    assert_eq!(value(&b, "look").await, "v1");
    a.api.put("/api/cache/look", &json!({"value": "v2"})).await;
    eventually("B to see A's write", || async {
        (value(&b, "look").await == "v2").then_some(())
    })
    .await;
    a.api.delete("/api/cache/look").await;
    eventually("B to see A's delete", || async {
        (b.api.get("/api/cache/look").await.0 == 404).then_some(())
    })
    .await;
    let (_, answer) = a
        .api
        .post("/api/cache/invalidate", &json!({"keys": ["x"]}))
        .await;
    assert_eq!(answer["receivers"], 2, "{answer}");
}

#[tokio::test]
async fn a_subscriber_that_lost_its_link_serves_nothing_stale() {
    let redis = RedisServer::start();
    let (a, b) = two_processes(&redis).await;
    subscribed(&redis, 2).await;
    a.api.put("/api/cache/look", &json!({"value": "v1"})).await;
    assert_eq!(value(&b, "look").await, "v1");
    // A change that no message announces (as one lost while the link was down would be).
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("SET")
        .arg("cache:look")
        .arg("\"v2\"")
        .query_async(&mut conn)
        .await
        .expect("SET");
    assert_eq!(
        value(&b, "look").await,
        "v1",
        "B's memory tier serves what it read"
    );
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    assert!(
        killed >= 2,
        "both subscribers were pub/sub clients ({killed})"
    );
    eventually(
        "B to clear its memory tier once subscribed again",
        || async { (value(&b, "look").await == "v2").then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn an_invalidation_published_by_another_program_removes_the_keys() {
    let redis = RedisServer::start();
    let (a, b) = two_processes(&redis).await;
    subscribed(&redis, 2).await;
    for key in ["user:1", "user:2", "keep"] {
        a.api
            .put(&format!("/api/cache/{key}"), &json!({"value": 1}))
            .await;
        assert_eq!(value(&b, key).await, 1);
    }
    let mut conn = redis.conn().await;
    let envelope = json!({
        "message": {"keys": ["user:1", "user:2"]},
        "metadata": {"timestamp": "2026-11-26T00:00:00Z", "publishedBy": "fashion-wallet-api"}
    });
    let receivers: u64 = redis::cmd("PUBLISH")
        .arg("stagehand:cache-invalidate")
        .arg(envelope.to_string())
        .query_async(&mut conn)
        .await
        .expect("PUBLISH");
    assert_eq!(receivers, 2);
    for service in [&a, &b] {
        eventually("the keys to go", || async {
            (service.api.get("/api/cache/user:1").await.0 == 404
                && service.api.get("/api/cache/user:2").await.0 == 404)
                .then_some(())
        })
        .await;
        assert_eq!(value(service, "keep").await, 1);
    }
    let exists: u64 = redis::cmd("EXISTS")
        .arg("cache:user:1")
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert_eq!(exists, 0, "gone from Redis too");
    // A message that is not an invalidation is skipped, and the handler goes on.
    let _: u64 = redis::cmd("PUBLISH")
        .arg("stagehand:cache-invalidate")
        .arg("not json")
        .query_async(&mut conn)
        .await
        .expect("PUBLISH");
    let _: u64 = redis::cmd("PUBLISH")
        .arg("stagehand:cache-invalidate")
        .arg(json!({"message": {"keys": ["keep"]}}).to_string())
        .query_async(&mut conn)
        .await
        .expect("PUBLISH");
    eventually("the next message to be applied", || async {
        (a.api.get("/api/cache/keep").await.0 == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_notification_becomes_one_email_job() {
    let redis = RedisServer::start();
    let (a, _b) = two_processes(&redis).await;
    let mut conn = redis.conn().await;
    eventually("the notification subscribers", || {
        let mut conn = conn.clone();
        async move {
            let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("stagehand:notifications")
                .query_async(&mut conn)
                .await
                .ok()?;
            (counts.first()?.1 >= 2).then_some(())
        }
    })
    .await;
    let envelope = json!({
        "message": {"user_id": "7", "email": "ada@example.com", "subject": "Your look is ready", "text": "Hi"},
        "metadata": {"id": "n-1", "timestamp": "2026-11-26T00:00:00Z", "published_by": "api"}
    });
    // Delivered to both processes, and twice: one job.
    for _ in 0..2 {
        let _: u64 = redis::cmd("PUBLISH")
            .arg("stagehand:notifications")
            .arg(envelope.to_string())
            .query_async(&mut conn)
            .await
            .expect("PUBLISH");
    }
    let job = a
        .api
        .wait_state("email", "notification:n-1", "waiting")
        .await;
    assert_eq!(job["data"]["to"], json!(["ada@example.com"]));
    assert_eq!(job["data"]["subject"], "Your look is ready");
    // Published through the API: a fresh id, its own job.
    let (status, published) = a
        .api
        .post(
            "/api/pubsub/notifications",
            &json!({"user_id": "8", "email": "b@example.com", "subject": "s", "text": "t"}),
        )
        .await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["receivers"], 2);
    let id = format!("notification:{}", published["id"].as_str().expect("an id"));
    a.api.wait_state("email", &id, "waiting").await;
    eventually("exactly two email jobs", || async {
        (a.api.counts("email").await["waiting"] == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_cli_drives_the_cache_and_publishes() {
    let redis = RedisServer::start();
    let (a, b) = two_processes(&redis).await;
    subscribed(&redis, 2).await;
    let out = a.cli(&[
        "cache",
        "set",
        "greeting/en",
        "\"hello\"",
        "--ttl",
        "1h",
        "--tag",
        "words",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = b.cli(&["cache", "get", "greeting/en"]);
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (shown["key"].as_str(), shown["value"].as_str()),
        (Some("greeting/en"), Some("hello"))
    );
    let out = a.cli(&["cache", "invalidate", "--tag", "words"]);
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["deleted"], 1);
    // Applied in A at once, in B when the message arrives.
    let out = a.cli(&["cache", "get", "greeting/en"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_key"));
    eventually("B to drop the key", || async {
        let out = b.cli(&["cache", "get", "greeting/en"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown_key")
            .then_some(())
    })
    .await;
    let out = a.cli(&["publish", "cache-invalidate", "{\"pattern\": \"x*\"}"]);
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["receivers"], 2);
    let out = a.cli(&["cache", "stats"]);
    let stats: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(stats["strategy"], "two-tier");
    let (status, metrics) = a.api.get("/api/redis").await;
    assert_eq!(status, 200);
    let roles: Vec<&str> = metrics
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["queues", "cache"]);
    assert!(
        metrics[0]["metrics"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{metrics}"
    );
    assert!(
        metrics[1]["metrics"]["keyspace_hits"].as_u64().is_some(),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_invalidation_does_not_take_later_writes_with_it() {
    let redis = RedisServer::start();
    let (a, b) = two_processes(&redis).await;
    subscribed(&redis, 2).await;
    // Many keys, so that applying the pattern again in Redis would take B a while.
    let mut conn = redis.conn().await;
    let mut fill = redis::pipe();
    for i in 0..20_000 {
        fill.set(format!("cache:pat{i}"), "\"old\"").ignore();
    }
    let _: () = fill.query_async(&mut conn).await.expect("fill");
    a.api.put("/api/cache/marker", &json!({"value": 1})).await;
    assert_eq!(value(&b, "marker").await, 1);
    // Listen to what the others are told (after the marker's own announcement).
    let mut listener = redis::Client::open(redis.url())
        .expect("client")
        .get_async_pubsub()
        .await
        .expect("pubsub");
    listener
        .subscribe("stagehand:cache-invalidate")
        .await
        .expect("subscribe");
    let (_, answer) = a
        .api
        .post("/api/cache/invalidate", &json!({"pattern": "pat*"}))
        .await;
    assert_eq!(answer["deleted"], 20_000);
    // Told: drop memory copies only, the store has the change.
    let mut told = listener.on_message();
    let pattern = loop {
        let message = futures::StreamExt::next(&mut told)
            .await
            .expect("a message");
        let text: String = message.get_payload().expect("text");
        let envelope: Value = serde_json::from_str(&text).expect("JSON");
        if envelope["message"]["pattern"] == "pat*" {
            break envelope["message"].clone();
        }
    };
    assert_eq!(pattern, json!({"pattern": "pat*", "memory_only": true}));
    drop(told);
    // Written after the invalidation: it must stay, whenever the others apply it.
    a.api.put("/api/cache/pat7", &json!({"value": "new"})).await;
    a.api
        .post("/api/cache/invalidate", &json!({"keys": ["marker"]}))
        .await;
    // Messages arrive in order: once B dropped the marker, it has applied the pattern too.
    eventually("B to apply both invalidations", || async {
        (b.api.get("/api/cache/marker").await.0 == 404).then_some(())
    })
    .await;
    assert_eq!(value(&b, "pat7").await, "new");
    assert_eq!(value(&a, "pat7").await, "new");
    // A message published raw on the channel applies everywhere, its sender included.
    a.api.put("/api/cache/self1", &json!({"value": 1})).await;
    let (status, _) = a
        .api
        .post("/api/pubsub/cache-invalidate", &json!({"keys": ["self1"]}))
        .await;
    assert_eq!(status, 200);
    for service in [&a, &b] {
        eventually("the key to go everywhere", || async {
            (service.api.get("/api/cache/self1").await.0 == 404).then_some(())
        })
        .await;
    }
}
