//! The binary with `[redis] cluster = [...]`: queues run on a three-master Redis Cluster.

mod common;

use common::Service;
use common::redis::RedisCluster;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_run_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let toml = format!("[redis]\ncluster = [{}]\n", nodes.join(", "));
    let service = Service::start_with(&toml, &[]).await;
    let api = &service.api;
    let mut ids = Vec::new();
    for i in 0..20 {
        let body = json!({"name": "r", "data": {"format": "json", "records": [{"i": i}], "output_key": format!("c/{i}.json")}});
        ids.push(api.add("export", body).await);
    }
    for id in &ids {
        api.wait_state("export", id, "completed").await;
    }
    // Queues hash to different slots, so to different masters; each works.
    let waiting = api.add("email", json!({"name": "welcome"})).await;
    assert_eq!(api.job("email", &waiting).await["state"], "waiting");
    assert_eq!(api.get("/ready").await.0, 200);
}
