//! Restart `redis-server` (AOF on) under load: the pools reconnect by themselves and every
//! job completes.

mod common;

use common::redis::RedisServer;
use common::{LONG_PATIENCE, Service, eventually_within};
use serde_json::{Value, json};

const JOBS: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_reconnect_after_a_redis_restart_and_every_job_completes() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    // A fetch whose answer is lost in the restart leaves its job leased to nobody until the
    // lease runs out; a short lease keeps that recovery quick.
    let toml = "[queues.export]\nconcurrency = 4\nlease_ms = 2000\n[queues.export.defaults]\nremove_on_complete = false\n";
    let service = Service::start_with(toml, &[("STAGEHAND_REDIS_URL", &url)]).await;
    let api = &service.api;
    for start in (0..JOBS).step_by(500) {
        let jobs: Vec<Value> = (start..start + 500)
            .map(|i| json!({"name": "row", "data": {"format": "json", "records": [{"n": i}], "output_key": format!("rows/{i}.json")}}))
            .collect();
        let (status, answer) = api
            .post("/api/queues/export/jobs/bulk", &json!({ "jobs": jobs }))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    eventually_within(LONG_PATIENCE, "work to be under way", || async {
        let c = api.counts("export").await;
        (c["completed"].as_u64().unwrap_or(0) >= 200).then_some(())
    })
    .await;

    redis.stop();
    redis.restart();

    eventually_within(
        LONG_PATIENCE,
        "every job to complete after the restart",
        || async {
            let (status, queue) = api.get("/api/queues/export").await;
            (status == 200 && queue["counts"]["completed"] == JOBS).then_some(())
        },
    )
    .await;
    let (status, counts) = api.get("/api/queues/export").await;
    assert_eq!(status, 200);
    assert_eq!(counts["counts"]["waiting"], 0);
    assert_eq!(counts["counts"]["active"], 0);
    assert_eq!(counts["counts"]["failed"], 0, "{counts}");
    // Ready once every pool loop has had an answer again (a loop may still be waiting out its
    // retry delay when the others finish the work).
    common::eventually("/ready to answer 200", || async {
        (api.get("/ready").await.0 == 200).then_some(())
    })
    .await;
}
