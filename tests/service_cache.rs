//! The cache over HTTP, on the real binary: the memory strategy by default, and two-tier on a
//! `redis-server` shared by two processes.

mod common;

use common::Service;
use common::redis::RedisServer;
use serde_json::json;

#[tokio::test]
async fn cache_routes_read_write_delete_and_count() {
    let service = Service::start("").await;
    let api = &service.api;
    let (status, _) = api
        .put(
            "/api/cache/user:7/profile",
            &json!({"value": {"name": "Ada", "sizes": [38]}, "ttl_ms": 60000, "tags": ["user:7"]}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = api.get("/api/cache/user:7/profile").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key"], "user:7/profile");
    assert_eq!(body["value"], json!({"name": "Ada", "sizes": [38]}));
    let ttl = body["ttl_ms"].as_u64().expect("a ttl");
    assert!(ttl > 0 && ttl <= 60_000, "{body}");
    api.put("/api/cache/forever", &json!({"value": "x"})).await;
    assert_eq!(api.get("/api/cache/forever").await.1["ttl_ms"], json!(null));
    // Percent-encoded keys decode.
    api.put("/api/cache/a%20b", &json!({"value": 1})).await;
    assert_eq!(api.get("/api/cache/a b").await.1["value"], 1);

    let (status, body) = api.get("/api/cache/missing").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("unknown_key")));
    assert_eq!(
        api.delete("/api/cache/forever").await.1,
        json!({"deleted": true})
    );
    assert_eq!(
        api.delete("/api/cache/forever").await.1,
        json!({"deleted": false})
    );

    let (status, body) = api
        .post("/api/cache/invalidate", &json!({"tag": "user:7"}))
        .await;
    assert_eq!((status, body["deleted"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(api.get("/api/cache/user:7/profile").await.0, 404);
    api.put("/api/cache/p:1", &json!({"value": 1})).await;
    api.put("/api/cache/p:2", &json!({"value": 2})).await;
    let (_, body) = api
        .post("/api/cache/invalidate", &json!({"pattern": "p:*"}))
        .await;
    assert_eq!(body["deleted"], 2);
    let (_, body) = api
        .post("/api/cache/invalidate", &json!({"keys": ["a b", "nope"]}))
        .await;
    assert_eq!(body["deleted"], 1);

    let (status, stats) = api.get("/api/cache/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["strategy"], "memory");
    assert_eq!(
        (stats["hits"].as_u64(), stats["misses"].as_u64()),
        (Some(3), Some(2)),
        "{stats}"
    );
}

#[tokio::test]
async fn bad_cache_input_is_a_400_and_changes_nothing() {
    let service = Service::start("").await;
    let api = &service.api;
    for body in [
        json!({"value": 1, "ttl_ms": 0}),
        json!({"value": 1, "ttl_ms": 1e15 as u64}),
        json!({"value": 1, "zzz": 1}),
        json!({"ttl_ms": 5}),
        json!({"value": 1, "tags": [""]}),
    ] {
        let (status, answer) = api.put("/api/cache/k", &body).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("bad_request")),
            "{body} -> {answer}"
        );
    }
    // A key that is not UTF-8 once decoded would collide with others: refused.
    assert_eq!(
        api.put("/api/cache/bad%FF", &json!({"value": 1})).await.0,
        400
    );
    assert_eq!(api.get("/api/cache/bad%FE").await.0, 400);
    // `stats` and `invalidate` are keys for the methods their routes do not take.
    assert_eq!(
        api.put("/api/cache/stats", &json!({"value": "s"})).await.0,
        204
    );
    assert_eq!(
        api.put("/api/cache/invalidate", &json!({"value": "i"}))
            .await
            .0,
        204
    );
    assert_eq!(api.get("/api/cache/invalidate").await.1["value"], "i");
    assert_eq!(api.delete("/api/cache/stats").await.1["deleted"], true);
    let long = "k".repeat(2000);
    assert_eq!(
        api.put(&format!("/api/cache/{long}"), &json!({"value": 1}))
            .await
            .0,
        400
    );
    assert_eq!(api.get("/api/cache/k").await.0, 404);
    for body in [
        json!({}),
        json!({"keys": []}),
        json!({"keys": ["a"], "tag": "t"}),
        json!({"pattern": ""}),
    ] {
        let (status, answer) = api.post("/api/cache/invalidate", &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
    }
}

#[tokio::test]
async fn two_processes_share_a_two_tier_cache_on_redis() {
    let redis = RedisServer::start();
    let config = format!("[redis]\nurl = \"{}/3\"\n", redis.url());
    let a = Service::start(&config).await;
    let b = Service::start(&config).await;
    assert_eq!(
        a.api.get("/api/cache/stats").await.1["strategy"],
        "two-tier"
    );
    a.api
        .put("/api/cache/look:1", &json!({"value": {"coat": "red"}}))
        .await;
    assert_eq!(
        b.api.get("/api/cache/look:1").await.1["value"],
        json!({"coat": "red"})
    );
    // The seed's layout: db 0, `cache:` prefix, plain JSON, whatever the queues' db.
    let mut conn = redis.conn().await;
    let raw: String = redis::cmd("GET")
        .arg("cache:look:1")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(raw, r#"{"coat":"red"}"#);
    let tiers = b.api.get("/api/cache/stats").await.1["tiers"].clone();
    assert_eq!(tiers[0]["name"], "memory");
    assert_eq!(tiers[1]["name"], "redis");
}
