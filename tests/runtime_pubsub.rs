//! Pub/sub actors: a handler that fails or panics is alerted and restarted and the next
//! message still reaches it; a handler that falls behind has messages dropped, counted and
//! alerted; a gap reaches the handler.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use common::{Collect, eventually};
use parking_lot::Mutex;
use stagehand::actors::pubsub::{HandlerActor, MessageHandler, SubscriberActor};
use stagehand::actors::{Alert, AlertKind, QueueSpec, Runtime};
use stagehand::core::pubsub::{MemoryTransport, Metadata, PubSub, Topic};
use tokio::sync::Semaphore;

/// Records what it handles; panics on "boom", fails on "fail", waits for a permit on "slow".
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
    gaps: Mutex<Vec<String>>,
    gate: Option<Semaphore>,
}

#[async_trait]
impl MessageHandler for Recorder {
    type Message = String;

    fn name(&self) -> &str {
        "recorder"
    }

    async fn handle(&self, message: String, _: Metadata) -> Result<(), String> {
        match message.as_str() {
            "boom" => panic!("the handler blew up"),
            "fail" => return Err("the handler failed".into()),
            "slow" => {
                if let Some(gate) = &self.gate {
                    let _permit = gate.acquire().await;
                }
            }
            _ => {}
        }
        self.seen.lock().push(message);
        Ok(())
    }

    async fn gap(&self, reason: &str) {
        self.gaps.lock().push(reason.to_string());
    }
}

#[actix_web::test]
async fn a_failing_or_panicking_handler_is_restarted_and_the_next_message_arrives() {
    let alerts = Arc::new(Collect::default());
    let runtime = Runtime::builder()
        .queue(QueueSpec::new("q"))
        .alert_sink(alerts.clone())
        .start();
    let pubsub = PubSub::new(Arc::new(MemoryTransport::new()), "test");
    let recorder = Arc::new(Recorder::default());
    let (addr, stats) = HandlerActor::start(Arc::clone(&recorder), runtime.alerts(), 16);
    SubscriberActor::start(
        pubsub.clone(),
        vec![Topic::Channel("c".into())],
        &addr,
        Arc::clone(&stats),
        runtime.alerts(),
        16,
    );
    eventually("the subscription", || async {
        (pubsub.publish("c", &"hello").await.ok()?.1 > 0).then_some(())
    })
    .await;
    for message in ["boom", "after-boom", "fail", "after-fail"] {
        pubsub.publish("c", &message).await.expect("publish");
    }
    eventually("the messages after the failures", || async {
        let seen = recorder.seen.lock().clone();
        (seen.contains(&"after-boom".to_string()) && seen.contains(&"after-fail".to_string()))
            .then_some(())
    })
    .await;
    assert!(
        !recorder
            .seen
            .lock()
            .iter()
            .any(|m| m == "boom" || m == "fail")
    );
    assert_eq!(stats.failed.load(Ordering::Relaxed), 2);
    eventually("two restarts", || async {
        (stats.restarts.load(Ordering::Relaxed) == 2).then_some(())
    })
    .await;
    eventually("the failures alerted", || async {
        let alerts = alerts.0.lock();
        let failed: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.kind == AlertKind::HandlerFailed)
            .collect();
        failed
            .first()
            .map(|a| assert!(a.message.contains("recorder"), "{}", a.message))
    })
    .await;
    // A payload that is no envelope of a string is skipped, not a failure.
    pubsub
        .transport()
        .publish("c", "{not json")
        .await
        .expect("publish");
    pubsub.publish("c", &"last").await.expect("publish");
    eventually("the last message", || async {
        recorder
            .seen
            .lock()
            .contains(&"last".to_string())
            .then_some(())
    })
    .await;
    assert_eq!(stats.malformed.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failed.load(Ordering::Relaxed), 2);
}

#[actix_web::test]
async fn a_handler_that_falls_behind_has_messages_dropped_counted_and_alerted() {
    let alerts = Arc::new(Collect::default());
    let runtime = Runtime::builder()
        .queue(QueueSpec::new("q"))
        .alert_sink(alerts.clone())
        .start();
    let pubsub = PubSub::new(Arc::new(MemoryTransport::new()), "test");
    let recorder = Arc::new(Recorder {
        gate: Some(Semaphore::new(0)),
        ..Recorder::default()
    });
    // A mailbox of 2: one message held by the slow handler, two queued, the rest dropped.
    let (addr, stats) = HandlerActor::start(Arc::clone(&recorder), runtime.alerts(), 2);
    SubscriberActor::start(
        pubsub.clone(),
        vec![Topic::Channel("c".into())],
        &addr,
        Arc::clone(&stats),
        runtime.alerts(),
        64,
    );
    eventually("the subscription", || async {
        (pubsub.publish("c", &"first").await.ok()?.1 > 0).then_some(())
    })
    .await;
    eventually("the first message", || async {
        recorder
            .seen
            .lock()
            .contains(&"first".to_string())
            .then_some(())
    })
    .await;
    for _ in 0..20 {
        pubsub.publish("c", &"slow").await.expect("publish");
    }
    eventually("drops to be counted", || async {
        (stats.dropped.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    eventually("the drops alerted", || async {
        alerts
            .0
            .lock()
            .iter()
            .any(|a| a.kind == AlertKind::MessagesDropped)
            .then_some(())
    })
    .await;
    recorder.gate.as_ref().expect("gate").add_permits(100);
    let dropped = stats.dropped.load(Ordering::Relaxed);
    eventually("the queued messages handled", || async {
        let handled = recorder.seen.lock().iter().filter(|m| *m == "slow").count() as u64;
        (handled + dropped == 20).then_some(())
    })
    .await;
}
