//! SIGKILL a processing `stagehand` mid-run and start another: every job ends completed, none
//! is lost, and only the job in flight at the kill ran twice.

mod common;

use common::redis::RedisServer;
use common::{LONG_PATIENCE, Service, poll_until};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_loses_no_job() {
    let redis = RedisServer::start();
    let url = redis.url();
    let storage = tempfile::tempdir().expect("shared storage");
    let storage_path = storage.path().to_str().expect("path").to_string();
    let env = [
        ("STAGEHAND_REDIS_URL", url.as_str()),
        ("STAGEHAND_STORAGE_PATH", storage_path.as_str()),
    ];
    // Short leases so that the killed worker's job is recovered quickly.
    let toml = "[queues.export]\nconcurrency = 1\nlease_ms = 1000\n[queues.export.defaults]\nremove_on_complete = false\n";
    let mut first = Service::start_with(toml, &env).await;

    // A long export first, then small ones queued behind it.
    let rows = 200_000;
    let input: String = (0..rows).map(|i| format!("{{\"id\":{i}}}\n")).collect();
    std::fs::create_dir_all(storage.path().join("in")).expect("dir");
    std::fs::write(storage.path().join("in/rows.jsonl"), input).expect("input");
    // Everything is queued while the queue is paused, so the big job is leased first and is
    // surely still running (it takes seconds) when the test sees it active.
    let (status, _) = first.api.post("/api/queues/export/pause", &json!({})).await;
    assert_eq!(status, 200);
    let big = first
        .api
        .add("export", json!({"name": "big", "data": {"format": "csv", "input_key": "in/rows.jsonl", "output_key": "out/big.csv"}}))
        .await;
    let mut small = Vec::new();
    for i in 0..50 {
        let body = json!({"name": "small", "data": {"format": "json", "records": [{"i": i}], "output_key": format!("out/{i}.json")}});
        small.push(first.api.add("export", body).await);
    }
    let (status, _) = first
        .api
        .post("/api/queues/export/resume", &json!({}))
        .await;
    assert_eq!(status, 200);
    first.api.wait_state("export", &big, "active").await;
    first.kill();

    let second = Service::start_with(toml, &env).await;
    let api = &second.api;
    let done = poll_until(LONG_PATIENCE, || async {
        let c = api.counts("export").await;
        (c["completed"] == 51).then_some(())
    })
    .await;
    if done.is_none() {
        panic!(
            "not every job completed: counts {}, big job {}\nlog of the second process:\n{}",
            api.counts("export").await,
            api.job("export", &big).await,
            second.log()
        );
    }
    let big_job = api.job("export", &big).await;
    assert_eq!(big_job["stalled_count"], 1, "{big_job}");
    let outcomes = common::outcomes(&big_job);
    assert_eq!(outcomes, ["stalled", "completed"]);
    for id in &small {
        let job = api.job("export", id).await;
        assert_eq!(
            job["attempts_made"], 1,
            "only the job in flight runs twice: {job}"
        );
    }
    let csv = std::fs::read_to_string(storage.path().join("out/big.csv")).expect("big export");
    assert_eq!(csv.lines().count(), rows + 1);
    assert!(
        second.log().contains("recovered jobs whose lease expired"),
        "{}",
        second.log()
    );
    // The process that recovered the job counts it as stalled, under its name.
    let metrics = reqwest::get(format!("{}/metrics", api.base))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    let stalled: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("stagehand_jobs_total{") && l.contains("outcome=\"stalled\""))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert_eq!(
        stalled,
        [r#"stagehand_jobs_total{queue="export",name="big",outcome="stalled"} 1"#],
        "{metrics}"
    );
}
