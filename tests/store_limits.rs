//! A queue's `max_jobs`: a full queue (in unfinished jobs) refuses an add (`QueueFull`) and
//! changes nothing; an add of a `job_id` it holds still returns that job; room comes back as
//! jobs go or finish. On the memory
//! store and on Redis; and over HTTP, `503 queue_full`.

mod common;

use std::sync::Arc;

use common::Service;
use common::redis::RedisServer;
use serde_json::json;
use stagehand_core::{JobOptions, MemoryStore, NewJob, QueueStore, RedisStore, StoreError};

fn job(id: Option<&str>) -> NewJob {
    let options = JobOptions {
        job_id: id.map(str::to_string),
        ..JobOptions::default()
    };
    NewJob::new("j", json!({})).with_options(options)
}

async fn a_full_queue_refuses_adds(store: Arc<dyn QueueStore>) {
    store
        .add_bulk(vec![job(None), job(Some("kept")), job(None)])
        .await
        .expect("add 3 of 4");
    let refused = store.add_bulk(vec![job(None), job(None)]).await;
    assert!(
        matches!(refused, Err(StoreError::QueueFull { max: 4, .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.counts().await.expect("counts").waiting,
        3,
        "nothing added"
    );
    let again = store.add(job(Some("kept"))).await.expect("an existing id");
    assert!(!again.created);
    store.add(job(None)).await.expect("the fourth");
    assert!(matches!(
        store.add(job(Some("new"))).await,
        Err(StoreError::QueueFull { .. })
    ));
    assert!(store.remove("kept").await.expect("remove"));
    // One id twice in a bulk is one job.
    store
        .add_bulk(vec![job(Some("new")), job(Some("new"))])
        .await
        .expect("room again");
    // Finished jobs do not count: their retention bounds them.
    let leased = store
        .fetch("w", 1, std::time::Duration::from_secs(30))
        .await
        .expect("fetch")
        .remove(0);
    store
        .complete(&leased.job.id, leased.token, json!(1))
        .await
        .expect("complete");
    store.add(job(None)).await.expect("room after a completion");
}

#[tokio::test]
async fn a_full_memory_queue_refuses_adds() {
    a_full_queue_refuses_adds(Arc::new(MemoryStore::new("limits").with_max_jobs(Some(4)))).await;
}

#[tokio::test]
async fn a_full_redis_queue_refuses_adds() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(), "limits")
        .await
        .expect("open")
        .with_max_jobs(Some(4));
    a_full_queue_refuses_adds(Arc::new(store)).await;
}

#[tokio::test]
async fn a_full_queue_answers_503_queue_full_over_http() {
    let service = Service::start_with(
        "",
        &[
            ("STAGEHAND_QUEUES_EMAIL_MAX_JOBS", "2"),
            common::EMAIL_WAITS_ENV,
        ],
    )
    .await;
    let api = &service.api;
    for _ in 0..2 {
        api.add("email", json!({"name": "n"})).await;
    }
    let (status, body) = api
        .post("/api/queues/email/jobs", &json!({"name": "n"}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "queue_full", "{body}");
    assert_eq!(api.counts("email").await["waiting"], 2);
}
