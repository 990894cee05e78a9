//! What the Redis store leaves behind: a job removed on completion takes every key of its own
//! with it (hash, history, logs), whatever happened to it before: logs, a failed attempt, a
//! hand-back, a stall, a manual retry.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use serde_json::json;
use stagehand_core::{
    ActiveJob, Backoff, JobOptions, NewJob, Outcome, QueueStore, RedisStore, Retention,
    SettleResult, Settlement,
};

const LEASE: Duration = Duration::from_secs(30);

async fn one(store: &RedisStore, lease: Duration) -> ActiveJob {
    let mut got = store.fetch("w", 1, lease).await.expect("fetch");
    assert_eq!(got.len(), 1, "one job ready");
    got.remove(0)
}

async fn settle(store: &RedisStore, a: &ActiveJob, outcome: Outcome) -> SettleResult {
    store
        .settle(vec![Settlement {
            id: a.job.id.clone(),
            token: a.token,
            outcome,
        }])
        .await
        .expect("settle")
        .remove(0)
}

/// The keys of the queue's jobs (`...:j:ID`, `...:h:ID`, `...:l:ID`), by SCAN.
async fn job_keys(url: &str, queue: &str) -> Vec<String> {
    use futures::StreamExt;
    use redis::AsyncCommands;
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let found: Vec<redis::RedisResult<String>> = conn
        .scan_match::<_, String>(format!("stagehand:{{{queue}}}:[jhl]:*"))
        .await
        .expect("SCAN")
        .collect()
        .await;
    let mut keys = found
        .into_iter()
        .collect::<redis::RedisResult<Vec<_>>>()
        .expect("SCAN");
    keys.sort();
    keys
}

#[tokio::test]
async fn a_job_removed_on_completion_leaves_no_key_whatever_it_went_through() {
    let server = RedisServer::start();
    let url = server.url();
    let store = RedisStore::open(&url, "q").await.expect("open");
    let options = JobOptions {
        remove_on_complete: Retention::RemoveAll,
        attempts: 2,
        backoff: Backoff::Fixed {
            delay_ms: 0,
            jitter: 0.0,
        },
        ..JobOptions::default()
    };
    let add = |name: &str| NewJob::new(name, json!({})).with_options(options.clone());

    // Logs, then completes.
    store.add(add("logs")).await.expect("add");
    let a = one(&store, LEASE).await;
    store.log(&a.job.id, "a line".into()).await.expect("log");
    assert_eq!(
        settle(&store, &a, Outcome::Completed(json!(1))).await,
        SettleResult::Completed
    );

    // Fails once, then completes.
    store.add(add("retries")).await.expect("add");
    let a = one(&store, LEASE).await;
    let failed = a.job.after_failure("once".into(), true);
    assert!(matches!(
        settle(&store, &a, failed).await,
        SettleResult::Retrying { .. }
    ));
    let a = one(&store, LEASE).await;
    assert_eq!(a.job.history.len(), 2, "the failed attempt and this one");
    settle(&store, &a, Outcome::Completed(json!(2))).await;

    // Handed back, then completes.
    store.add(add("released")).await.expect("add");
    let a = one(&store, LEASE).await;
    assert_eq!(
        settle(&store, &a, Outcome::Released).await,
        SettleResult::Released
    );
    let a = one(&store, LEASE).await;
    settle(&store, &a, Outcome::Completed(json!(3))).await;

    // Stalls (its lease runs out), then completes.
    store.add(add("stalls")).await.expect("add");
    let stalled = one(&store, Duration::from_millis(1)).await;
    common::eventually("the lease to be recovered", || async {
        let report = store.recover_expired(5).await.expect("recover");
        (!report.requeued.is_empty()).then_some(())
    })
    .await;
    let a = one(&store, LEASE).await;
    assert_eq!(a.job.id, stalled.job.id);
    settle(&store, &a, Outcome::Completed(json!(4))).await;

    // Fails for good, is retried by hand, then completes.
    store.add(add("retried by hand")).await.expect("add");
    let a = one(&store, LEASE).await;
    let fatal = a.job.after_failure("fatal".into(), false);
    assert!(matches!(
        settle(&store, &a, fatal).await,
        SettleResult::Failed { .. }
    ));
    store.retry(&a.job.id).await.expect("retry");
    let a = one(&store, LEASE).await;
    assert_eq!(
        a.job.history.len(),
        2,
        "the failed attempt (kept by the retry) and this one"
    );
    settle(&store, &a, Outcome::Completed(json!(5))).await;

    assert_eq!(store.counts().await.expect("counts").completed, 0);
    assert_eq!(job_keys(&url, "q").await, Vec::<String>::new());
}
