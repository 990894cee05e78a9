//! Pub/sub on each transport, and the Redis subscriber's self-healing against a real
//! `redis-server`: restarts, killed connections, a link that stops answering.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use serde_json::{Value, json};
use stagehand_core::pubsub::{
    Delivery, Envelope, MemoryTransport, PubSub, RedisTransport, RedisTransportOptions,
    Subscription, Topic, Transport,
};
use stagehand_core::redis::Target;

/// A transport on `server` as a separate process would have it.
async fn redis_transport(server: &RedisServer) -> Arc<dyn Transport> {
    let client = redis::Client::open(server.url()).expect("client");
    let publisher = Target::single(client.clone()).shared().await.expect("conn");
    let options = RedisTransportOptions {
        ping_every: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
        ..RedisTransportOptions::default()
    };
    Arc::new(RedisTransport::new(&client, publisher, options))
}

/// The next message's payload, skipping gaps; panics after a while.
async fn next_message(sub: &mut Subscription) -> (String, Option<String>, String) {
    loop {
        match tokio::time::timeout(common::PATIENCE, sub.recv()).await {
            Ok(Some(Delivery::Message {
                channel,
                pattern,
                payload,
            })) => {
                return (channel, pattern, payload.to_string());
            }
            Ok(Some(Delivery::Gap { .. })) => continue,
            Ok(None) => panic!("the subscription ended"),
            Err(_) => panic!("no message came"),
        }
    }
}

/// Waits for a gap; panics after a while.
async fn next_gap(sub: &mut Subscription) -> String {
    loop {
        match tokio::time::timeout(common::PATIENCE, sub.recv()).await {
            Ok(Some(Delivery::Gap { reason })) => return reason,
            Ok(Some(Delivery::Message { .. })) => continue,
            Ok(None) => panic!("the subscription ended"),
            Err(_) => panic!("no gap was reported"),
        }
    }
}

/// Publishes until someone receives it (a subscription is made in the background).
async fn publish_until_received(pubsub: &PubSub, channel: &str, message: &Value) -> u64 {
    common::eventually("a subscriber to receive", || async {
        let (_, n) = pubsub.publish(channel, message).await.ok()?;
        (n > 0).then_some(n)
    })
    .await
}

async fn messages_reach_channel_and_pattern_subscribers(
    a: Arc<dyn Transport>,
    b: Arc<dyn Transport>,
) {
    let publisher = PubSub::new(a, "fashion-wallet-api");
    let subscriber = PubSub::new(b, "fashion-wallet-api");
    let mut exact = subscriber
        .subscribe(&[Topic::Channel("notifications".into())], 16)
        .await
        .expect("subscribe");
    let mut pattern = subscriber
        .subscribe(&[Topic::Pattern("cache-*".into())], 16)
        .await
        .expect("psubscribe");
    publish_until_received(&publisher, "notifications", &json!({"warm": 1})).await;
    publish_until_received(&publisher, "cache-invalidate", &json!({"warm": 2})).await;
    let (channel, _, _) = next_message(&mut exact).await;
    assert_eq!(channel, "notifications");
    let (channel, matched, _) = next_message(&mut pattern).await;
    assert_eq!(
        (channel.as_str(), matched.as_deref()),
        ("cache-invalidate", Some("cache-*"))
    );

    let (id, receivers) = publisher
        .publish("notifications", &json!({"user_id": "7"}))
        .await
        .expect("publish");
    assert_eq!(receivers, 1);
    let (_, _, payload) = next_message(&mut exact).await;
    let envelope: Envelope<Value> = Envelope::parse(&payload).expect("an envelope");
    assert_eq!(envelope.message, json!({"user_id": "7"}));
    assert_eq!(envelope.metadata.id, id);
    assert_eq!(envelope.metadata.node, publisher.node());
    assert_eq!(envelope.metadata.published_by, "fashion-wallet-api");

    drop(exact);
    common::eventually("the dropped subscription to be gone", || async {
        let (_, n) = publisher.publish("notifications", &json!(1)).await.ok()?;
        (n == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn memory_messages_reach_channel_and_pattern_subscribers() {
    let transport: Arc<dyn Transport> = Arc::new(MemoryTransport::new());
    messages_reach_channel_and_pattern_subscribers(transport.clone(), transport).await;
}

#[tokio::test]
async fn redis_messages_reach_channel_and_pattern_subscribers_in_another_process() {
    let server = RedisServer::start();
    messages_reach_channel_and_pattern_subscribers(
        redis_transport(&server).await,
        redis_transport(&server).await,
    )
    .await;
}

#[tokio::test]
async fn channels_carry_the_prefix_on_the_wire() {
    let server = RedisServer::start();
    let subscriber = PubSub::new(redis_transport(&server).await, "x");
    let mut sub = subscriber
        .subscribe(&[Topic::Channel("cache-invalidate".into())], 16)
        .await
        .expect("subscribe");
    let mut conn = server.conn().await;
    common::eventually("redis-cli PUBLISH to reach the subscriber", || {
        let mut conn = conn.clone();
        async move {
            let n: u64 = redis::cmd("PUBLISH")
                .arg("stagehand:cache-invalidate")
                .arg(r#"{"message":{"keys":["a"]}}"#)
                .query_async(&mut conn)
                .await
                .ok()?;
            (n > 0).then_some(())
        }
    })
    .await;
    let (channel, _, payload) = next_message(&mut sub).await;
    assert_eq!(channel, "cache-invalidate");
    assert_eq!(payload, r#"{"message":{"keys":["a"]}}"#);
    let n: u64 = redis::cmd("PUBLISH")
        .arg("cache-invalidate")
        .arg("x")
        .query_async(&mut conn)
        .await
        .expect("publish");
    assert_eq!(n, 0, "an unprefixed channel is another channel");
}

#[tokio::test]
async fn delivery_resumes_after_redis_restarts_and_the_gap_is_told() {
    let mut server = RedisServer::start();
    let publisher = PubSub::new(redis_transport(&server).await, "x");
    let subscriber = PubSub::new(redis_transport(&server).await, "x");
    let mut sub = subscriber
        .subscribe(&[Topic::Channel("notifications".into())], 16)
        .await
        .expect("subscribe");
    publish_until_received(&publisher, "notifications", &json!(1)).await;
    next_message(&mut sub).await;
    server.restart();
    let reason = next_gap(&mut sub).await;
    assert!(!reason.is_empty());
    publish_until_received(&publisher, "notifications", &json!("after")).await;
    let (_, _, payload) = next_message(&mut sub).await;
    assert!(payload.contains("after"), "{payload}");
}

#[tokio::test]
async fn a_killed_subscriber_connection_is_made_again() {
    let server = RedisServer::start();
    let publisher = PubSub::new(redis_transport(&server).await, "x");
    let subscriber = PubSub::new(redis_transport(&server).await, "x");
    let mut sub = subscriber
        .subscribe(&[Topic::Channel("notifications".into())], 16)
        .await
        .expect("subscribe");
    publish_until_received(&publisher, "notifications", &json!(1)).await;
    next_message(&mut sub).await;
    let mut conn = server.conn().await;
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .expect("CLIENT KILL");
    assert!(
        killed >= 1,
        "the subscriber's connection is a pubsub client"
    );
    next_gap(&mut sub).await;
    publish_until_received(&publisher, "notifications", &json!(2)).await;
    next_message(&mut sub).await;
}

#[tokio::test]
async fn a_link_that_stops_answering_is_noticed_by_the_ping() {
    let server = RedisServer::start();
    let subscriber = PubSub::new(redis_transport(&server).await, "x");
    let mut sub = subscriber
        .subscribe(&[Topic::Channel("notifications".into())], 16)
        .await
        .expect("subscribe");
    let mut conn = server.conn().await;
    // Wait until subscribed, then stop the server answering anyone for a while.
    common::eventually("the subscription", || {
        let mut conn = conn.clone();
        async move {
            let n: u64 = redis::cmd("PUBLISH")
                .arg("stagehand:notifications")
                .arg("{}")
                .query_async(&mut conn)
                .await
                .ok()?;
            (n > 0).then_some(())
        }
    })
    .await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3000)
        .arg("ALL")
        .query_async(&mut conn)
        .await
        .expect("pause");
    let reason = next_gap(&mut sub).await;
    assert!(reason.contains("PING"), "{reason}");
}

#[tokio::test]
async fn a_full_queue_drops_and_says_how_many() {
    let transport = Arc::new(MemoryTransport::new());
    let pubsub = PubSub::new(transport, "x");
    let mut sub = pubsub
        .subscribe(&[Topic::Channel("c".into())], 2)
        .await
        .expect("subscribe");
    for i in 0..10 {
        pubsub.publish("c", &i).await.expect("publish");
    }
    assert!(matches!(sub.recv().await, Some(Delivery::Message { .. })));
    assert!(matches!(sub.recv().await, Some(Delivery::Message { .. })));
    pubsub.publish("c", &10).await.expect("publish");
    match sub.recv().await {
        Some(Delivery::Gap { reason }) => {
            assert!(reason.starts_with("8 message(s) dropped"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let (_, _, payload) = next_message(&mut sub).await;
    assert!(payload.contains("10"));
}

/// A transport on `cluster` as a separate process would have it.
async fn cluster_transport(cluster: &common::redis::RedisCluster) -> Arc<dyn Transport> {
    let nodes = cluster.urls();
    let publisher = Target::cluster(&nodes)
        .expect("target")
        .shared()
        .await
        .expect("conn");
    let options = RedisTransportOptions {
        ping_every: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
        ..RedisTransportOptions::default()
    };
    Arc::new(RedisTransport::cluster(&nodes, publisher, options))
}

#[tokio::test]
async fn a_cluster_carries_sharded_messages_and_heals_a_killed_link() {
    let cluster = common::redis::RedisCluster::start();
    let publisher = PubSub::new(cluster_transport(&cluster).await, "x");
    let subscriber = PubSub::new(cluster_transport(&cluster).await, "x");
    let err = subscriber
        .subscribe(&[Topic::Pattern("cache-*".into())], 16)
        .await
        .expect_err("no patterns on sharded pub/sub");
    assert!(err.to_string().contains("pattern"), "{err}");
    // Channels in different slots, so on different nodes.
    let topics: Vec<Topic> = ["notifications", "cache-invalidate", "a", "b", "c"]
        .iter()
        .map(|c| Topic::Channel(c.to_string()))
        .collect();
    let mut sub = subscriber.subscribe(&topics, 64).await.expect("subscribe");
    for channel in ["notifications", "cache-invalidate", "a", "b", "c"] {
        publish_until_received(&publisher, channel, &json!(channel)).await;
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 5 {
        let (channel, _, _) = next_message(&mut sub).await;
        seen.insert(channel);
    }
    for port in &cluster.ports {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("conn");
        let _: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .expect("CLIENT KILL");
    }
    next_gap(&mut sub).await;
    publish_until_received(&publisher, "notifications", &json!("after")).await;
    loop {
        let (channel, _, payload) = next_message(&mut sub).await;
        if channel == "notifications" && payload.contains("after") {
            break;
        }
    }
}
