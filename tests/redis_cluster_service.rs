//! The binary on a three-master Redis Cluster, named by `[redis] cluster = [...]` or by
//! `STAGEHAND_REDIS_CLUSTER`: queues run on it.

mod common;

use common::Service;
use common::redis::RedisCluster;
use serde_json::json;

/// Exports complete, and a queue on another slot (so another master) takes jobs too.
async fn queues_work(service: &Service, jobs: usize) {
    let api = &service.api;
    let mut ids = Vec::new();
    for i in 0..jobs {
        let body = json!({"name": "r", "data": {"format": "json", "records": [{"i": i}], "output_key": format!("c/{i}.json")}});
        ids.push(api.add("export", body).await);
    }
    for id in &ids {
        api.wait_state("export", id, "completed").await;
    }
    let waiting = api.add("email", json!({"name": "welcome"})).await;
    assert_eq!(api.job("email", &waiting).await["state"], "waiting");
    assert_eq!(api.get("/ready").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_run_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let toml = format!(
        "[redis]\ncluster = [{}]\n{}",
        nodes.join(", "),
        common::EMAIL_WAITS
    );
    let service = Service::start_with(&toml, &[]).await;
    queues_work(&service, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_names_the_cluster_nodes() {
    let cluster = RedisCluster::start();
    let nodes = cluster.urls().join(",");
    let service = Service::start_with(
        "",
        &[
            ("STAGEHAND_REDIS_CLUSTER", nodes.as_str()),
            common::EMAIL_WAITS_ENV,
        ],
    )
    .await;
    // Without the variable the service would keep its queues in memory; it names the nodes.
    let connected = format!("connected to Redis (maxmemory-policy noeviction) redis={nodes}");
    assert!(service.log().contains(&connected), "{}", service.log());
    queues_work(&service, 3).await;
}
