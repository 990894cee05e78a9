//! An in-process runtime with processors of the test's own, over its real HTTP API:
//! retries and backoff, unrecoverable errors, timeouts, priority and delay order, leases.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, serve_api};
use parking_lot::Mutex;
use serde_json::{Value, json};
use stagehand::actors::{PoolSettings, QueueSpec, Runtime};
use stagehand::core::{JobContext, MemoryStore, NewJob, ProcessError, QueueStore, processor_fn};

const LIMIT: usize = 1 << 20;

#[actix_web::test]
async fn a_job_that_fails_twice_completes_on_attempt_three_with_growing_delays() {
    let flaky = processor_fn(|ctx: JobContext| async move {
        if ctx.attempt() < 3 {
            Err(ProcessError::retry(format!(
                "flaky on attempt {}",
                ctx.attempt()
            )))
        } else {
            Ok(json!({ "attempt": ctx.attempt() }))
        }
    });
    let runtime = Runtime::builder()
        .queue(QueueSpec::new("q").processor(Arc::new(flaky)))
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let options = json!({"attempts": 3, "backoff": {"type": "exponential", "delay_ms": 100}});
    let id = api
        .add("q", json!({"name": "flaky", "options": options}))
        .await;
    let job = api.wait_state("q", &id, "completed").await;
    assert_eq!(job["attempts_made"], 3);
    assert_eq!(job["return_value"], json!({"attempt": 3}));
    let history = job["history"].as_array().expect("history");
    let outcomes: Vec<&str> = history
        .iter()
        .map(|h| h["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "completed"]);
    let delays: Vec<u64> = history[..2]
        .iter()
        .map(|h| h["retry_delay_ms"].as_u64().expect("delay"))
        .collect();
    assert_eq!(delays, [100, 200], "exponential: each delay doubles");
    for pair in history.windows(2) {
        let gap = pair[1]["started_at"].as_u64().expect("start")
            - pair[0]["finished_at"].as_u64().expect("end");
        assert!(
            gap >= pair[0]["retry_delay_ms"].as_u64().expect("delay"),
            "retried before its backoff: {gap}"
        );
    }
    assert_eq!(history[0]["error"], "flaky on attempt 1");
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[actix_web::test]
async fn an_unrecoverable_error_fails_at_once() {
    let bad =
        processor_fn(
            |_ctx: JobContext| async move { Err(ProcessError::unrecoverable("no such user")) },
        );
    let runtime = Runtime::builder()
        .queue(QueueSpec::new("q").processor(Arc::new(bad)))
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let id = api
        .add("q", json!({"name": "x", "options": {"attempts": 5}}))
        .await;
    let job = api.wait_state("q", &id, "failed").await;
    assert_eq!(job["attempts_made"], 1);
    assert!(
        job["failed_reason"]
            .as_str()
            .expect("reason")
            .contains("no such user")
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[actix_web::test]
async fn an_attempt_past_its_timeout_fails() {
    let stuck = processor_fn(|_ctx: JobContext| async move {
        std::future::pending::<()>().await;
        Ok(Value::Null)
    });
    let runtime = Runtime::builder()
        .queue(QueueSpec::new("q").processor(Arc::new(stuck)))
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let id = api
        .add(
            "q",
            json!({"name": "x", "options": {"attempts": 1, "timeout_ms": 50}}),
        )
        .await;
    let job = api.wait_state("q", &id, "failed").await;
    assert!(
        job["failed_reason"]
            .as_str()
            .expect("reason")
            .contains("timed out"),
        "{job}"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

/// A processor that records the names of the jobs it runs, in order.
fn recorder() -> (Arc<Mutex<Vec<String>>>, impl stagehand::core::Processor) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let processor = processor_fn(move |ctx: JobContext| {
        let log = Arc::clone(&log);
        async move {
            log.lock().push(ctx.name().to_string());
            Ok(Value::Null)
        }
    });
    (seen, processor)
}

/// A runtime with one queue `q` that runs one job at a time through a [`recorder`].
fn one_at_a_time() -> (Arc<Mutex<Vec<String>>>, stagehand::actors::RuntimeHandle) {
    let (seen, processor) = recorder();
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new("q")
                .concurrency(1)
                .processor(Arc::new(processor)),
        )
        .start();
    (seen, runtime)
}

#[actix_web::test]
async fn jobs_run_by_priority_then_in_order() {
    let (seen, runtime) = one_at_a_time();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    api.post("/api/queues/q/pause", &json!({})).await;
    let jobs = [
        ("p3", 3),
        ("p1-a", 1),
        ("plain-a", 0),
        ("p1-b", 1),
        ("plain-b", 0),
        ("p2", 2),
    ];
    let bulk: Vec<Value> = jobs
        .iter()
        .map(|(name, p)| json!({"name": name, "options": {"priority": p}}))
        .collect();
    let (status, _) = api
        .post("/api/queues/q/jobs/bulk", &json!({ "jobs": bulk }))
        .await;
    assert_eq!(status, 201);
    let (_, lifo) = api
        .post(
            "/api/queues/q/jobs",
            &json!({"name": "lifo", "options": {"lifo": true}}),
        )
        .await;
    assert!(lifo["id"].is_string());
    api.post("/api/queues/q/resume", &json!({})).await;
    eventually("all jobs to run", || async {
        (seen.lock().len() == 7).then_some(())
    })
    .await;
    assert_eq!(
        *seen.lock(),
        ["lifo", "plain-a", "plain-b", "p1-a", "p1-b", "p2", "p3"]
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[actix_web::test]
async fn a_delayed_job_runs_after_its_delay() {
    let (seen, runtime) = one_at_a_time();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let late = api
        .add("q", json!({"name": "late", "options": {"delay_ms": 300}}))
        .await;
    assert_eq!(api.job("q", &late).await["state"], "delayed");
    let now = api.add("q", json!({"name": "now"})).await;
    api.wait_state("q", &now, "completed").await;
    let job = api.wait_state("q", &late, "completed").await;
    let created = job["created_at"].as_u64().expect("created");
    assert!(job["processed_at"].as_u64().expect("processed") >= created + 300);
    assert_eq!(*seen.lock(), ["now", "late"]);
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[actix_web::test]
async fn a_lease_that_expires_puts_the_job_back_and_a_pool_finishes_it() {
    let store = Arc::new(MemoryStore::new("q"));
    let added = store
        .add(NewJob::new("orphan", json!({})))
        .await
        .expect("add");
    // A worker that takes the job and dies: it never heartbeats or settles.
    let dead = store
        .fetch("dead-worker", 1, Duration::from_millis(200))
        .await
        .expect("fetch");
    assert_eq!(dead.len(), 1);

    let (seen, processor) = recorder();
    let settings = PoolSettings {
        stalled_check: Duration::from_millis(50),
        ..PoolSettings::with_concurrency(2)
    };
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new("q")
                .store(store.clone())
                .settings(settings)
                .processor(Arc::new(processor)),
        )
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let job = api.wait_state("q", &added.id, "completed").await;
    assert_eq!(job["stalled_count"], 1);
    let outcomes = common::outcomes(&job);
    assert_eq!(outcomes, ["stalled", "completed"]);
    assert_eq!(*seen.lock(), ["orphan"]);
    let late = store
        .complete(&added.id, dead[0].token, json!("late"))
        .await
        .expect("complete");
    assert_eq!(
        late,
        stagehand::core::SettleResult::LeaseLost,
        "the dead worker's token is void"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}
