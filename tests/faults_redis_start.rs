//! Redis (standalone or Cluster) unreachable at start: the service says so clearly, `/ready`
//! answers 503, and work resumes once Redis is up.

mod common;

use common::redis::{RedisCluster, RedisServer};
use common::{Service, eventually};
use serde_json::json;

/// `/ready` turns 200 and an export completes.
async fn work_resumes(api: &common::Api) {
    eventually("/ready to answer 200", || async {
        (api.get("/ready").await.0 == 200).then_some(())
    })
    .await;
    let id = api
        .add("export", json!({"name": "r", "data": {"format": "json", "records": [{"a": 1}], "output_key": "r.json"}}))
        .await;
    api.wait_state("export", &id, "completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_then_work_resumes() {
    let mut redis = RedisServer::start();
    let url = format!("redis://:hunter2@127.0.0.1:{}", redis.port);
    redis.kill();
    let service = Service::start_with("", &[("STAGEHAND_REDIS_URL", &url)]).await;
    let api = &service.api;

    eventually("the log to say Redis is unreachable", || async {
        service.log().contains("Redis is unreachable").then_some(())
    })
    .await;
    eventually("an alert that the export pool's store is down", || async {
        service
            .log()
            .contains("kind=StoreUnavailable")
            .then_some(())
    })
    .await;
    let (status, ready) = api.get("/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["error"], "redis_unavailable");
    let (status, _) = api.get("/health").await;
    assert_eq!(status, 200, "the process itself is up");
    let (status, answer) = api
        .post("/api/queues/email/jobs", &json!({"name": "early"}))
        .await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "store_unavailable", "{answer}");
    assert!(
        !service.log().contains("hunter2"),
        "the password never reaches a log"
    );

    // Redis without the password set accepts any AUTH-less client; start it requiring it.
    redis.restart_with(&["--requirepass", "hunter2"]);
    work_resumes(api).await;
    eventually("the log to say Redis is back", || async {
        service
            .log()
            .contains("Redis answers; queues resume")
            .then_some(())
    })
    .await;
    assert!(
        service.log().contains("queue store answers again"),
        "{}",
        service.log()
    );
    assert!(!service.log().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_unreachable_at_start_then_work_resumes() {
    let ports = RedisCluster::free_ports();
    let nodes = ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let service = Service::start_with("", &[("STAGEHAND_REDIS_CLUSTER", &nodes)]).await;
    let api = &service.api;
    eventually("the log to say Redis is unreachable", || async {
        service.log().contains("Redis is unreachable").then_some(())
    })
    .await;
    assert_eq!(api.get("/ready").await.0, 503);

    let _cluster = RedisCluster::start_on(ports);
    work_resumes(api).await;
}
