//! The real binary on a real `redis-server`: two processes work one queue together.

mod common;

use std::collections::HashSet;

use common::redis::RedisServer;
use common::{LONG_PATIENCE, Service, eventually_within};
use serde_json::{Value, json};

const JOBS: usize = 10_000;
const BULK: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_redis_complete_every_job_exactly_once() {
    let redis = RedisServer::start();
    let url = redis.url();
    let toml =
        "[queues.export]\nconcurrency = 8\n[queues.export.defaults]\nremove_on_complete = false\n";
    let a = Service::start_with(toml, &[("STAGEHAND_REDIS_URL", &url)]).await;
    let b = Service::start_with(toml, &[("STAGEHAND_REDIS_URL", &url)]).await;
    assert!(a.log().contains("connected to Redis"), "{}", a.log());

    for (n, chunk) in (0..JOBS).collect::<Vec<_>>().chunks(BULK).enumerate() {
        let jobs: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"name": "row", "data": {"format": "jsonl", "records": [{"n": i}], "output_key": format!("rows/{i}.jsonl")}}))
            .collect();
        let api = if n % 2 == 0 { &a.api } else { &b.api };
        let (status, answer) = api
            .post("/api/queues/export/jobs/bulk", &json!({ "jobs": jobs }))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    eventually_within(LONG_PATIENCE, "every job to complete", || async {
        let c = a.api.counts("export").await;
        (c["completed"] == JOBS).then_some(())
    })
    .await;

    let mut workers = HashSet::new();
    let mut seen = HashSet::new();
    for page in 0..JOBS / 1000 {
        let (status, list) = b
            .api
            .get(&format!(
                "/api/queues/export/jobs?state=completed&limit=1000&offset={}",
                page * 1000
            ))
            .await;
        assert_eq!(status, 200);
        for job in list["jobs"].as_array().expect("jobs") {
            assert_eq!(job["attempts_made"], 1, "ran more than once: {job}");
            let history = job["history"].as_array().expect("history");
            assert_eq!(history.len(), 1, "{job}");
            let worker = history[0]["worker"].as_str().expect("worker");
            workers.insert(worker.split(':').nth(1).expect("pid").to_string());
            assert!(seen.insert(job["id"].as_str().expect("id").to_string()));
        }
    }
    assert_eq!(seen.len(), JOBS);
    assert_eq!(
        workers.len(),
        2,
        "both processes worked the queue: {workers:?}"
    );
}
