//! "Nothing changed" is true: an add answered `503 store_unavailable` created no job, one whose
//! command was sent without an answer is `504 outcome_unknown` (and a retry with the same
//! `job_id` adds nothing twice), and no job fails because a connection did.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{Api, LONG_PATIENCE, Service, eventually, eventually_within};
use serde_json::{Value, json};

/// A service on `redis` whose Redis commands time out after 1 s.
async fn service_on(redis: &RedisServer, env: &[(&str, &str)]) -> Service {
    let url = redis.url();
    let mut all = vec![
        ("STAGEHAND_REDIS_URL", url.as_str()),
        ("STAGEHAND_REDIS_COMMAND_TIMEOUT_MS", "1000"),
        common::EMAIL_WAITS_ENV,
    ];
    all.extend_from_slice(env);
    let service = Service::start_with("", &all).await;
    eventually("/ready to answer 200", || async {
        (service.api.get("/ready").await.0 == 200).then_some(())
    })
    .await;
    service
}

async fn redis_command(url: &str, args: &[&str]) -> redis::RedisResult<Value> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let answer: redis::Value = cmd.query_async(&mut conn).await?;
    Ok(json!(format!("{answer:?}")))
}

async fn add(api: &Api, queue: &str, body: &Value) -> (u16, Value) {
    api.post(&format!("/api/queues/{queue}/jobs"), body).await
}

/// Asserts what every answer says: a 503 added nothing; a 504 says a retry with the job id is
/// safe. Then retries every add that did not succeed until it does.
async fn check_and_complete(api: &Api, queue: &str, answers: &[(String, u16, Value)]) {
    for (id, status, body) in answers {
        match status {
            200 | 201 => {}
            503 => {
                let (found, job) = api.get(&format!("/api/queues/{queue}/jobs/{id}")).await;
                assert_eq!(found, 404, "a 503 answer created job {id}: {job}");
            }
            504 => {
                assert_eq!(body["error"], "outcome_unknown", "{body}");
                assert!(
                    body["detail"].as_str().unwrap_or("").contains("job_id"),
                    "{body}"
                );
            }
            other => panic!("add of {id} answered {other}: {body}"),
        }
    }
    for (id, status, _) in answers {
        if *status == 200 || *status == 201 {
            continue;
        }
        let body = json!({"name": "n", "data": job_data(id), "options": {"job_id": id, "attempts": 1, "remove_on_complete": false}});
        eventually(&format!("the retried add of {id}"), || async {
            let (status, _) = add(api, queue, &body).await;
            (status == 200 || status == 201).then_some(())
        })
        .await;
    }
}

fn job_data(id: &str) -> Value {
    json!({"format": "json", "records": [{"id": id}], "output_key": format!("out/{id}.json")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_answers_504_and_a_retry_adds_nothing_twice() {
    let redis = RedisServer::start();
    let service = service_on(&redis, &[]).await;
    let api = &service.api;
    // Longer than the command timeout: commands are sent, and answered only after it.
    redis_command(&redis.url(), &["CLIENT", "PAUSE", "3000", "ALL"])
        .await
        .expect("CLIENT PAUSE");
    let adds = (0..3).map(|i| {
        let id = format!("paused-{i}");
        async move {
            let body = json!({"name": "n", "data": job_data(&id), "options": {"job_id": id, "attempts": 1, "remove_on_complete": false}});
            let (status, answer) = add(api, "email", &body).await;
            (id, status, answer)
        }
    });
    let answers = futures::future::join_all(adds).await;
    assert!(
        answers.iter().any(|(_, status, _)| *status == 504),
        "no add ran into the pause: {answers:?}"
    );
    eventually("Redis to answer again", || async {
        (api.get("/ready").await.0 == 200).then_some(())
    })
    .await;
    check_and_complete(api, "email", &answers).await;
    let counts = api.counts("email").await;
    assert_eq!(counts["waiting"], 3, "each job once: {counts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_under_load_create_nothing_on_503_and_fail_no_job() {
    let redis = RedisServer::start();
    let service = service_on(
        &redis,
        &[
            ("STAGEHAND_QUEUES_EXPORT_LEASE_MS", "2000"),
            ("STAGEHAND_QUEUES_EXPORT_MAX_STALLED", "10"),
        ],
    )
    .await;
    let api = &service.api;
    let url = redis.url();
    let killer = tokio::spawn(async move {
        for _ in 0..60 {
            // Every client connection but this one; errors while Redis is busy are fine.
            let _ =
                redis_command(&url, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut answers = Vec::new();
    let mut i = 0;
    while !killer.is_finished() || i < 100 {
        let id = format!("k-{i}");
        let body = json!({"name": "n", "data": job_data(&id), "options": {"job_id": id, "attempts": 1, "remove_on_complete": false}});
        let (status, answer) = add(api, "export", &body).await;
        answers.push((id, status, answer));
        i += 1;
        assert!(i < 5_000, "the killer never finished");
    }
    killer.await.expect("killer");
    let total = answers.len() as u64;
    let mut by_status = std::collections::BTreeMap::new();
    for (_, status, _) in &answers {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    eprintln!("answers by status: {by_status:?}");
    eventually("Redis to answer again", || async {
        (api.get("/ready").await.0 == 200).then_some(())
    })
    .await;
    check_and_complete(api, "export", &answers).await;
    let counts = eventually_within(LONG_PATIENCE, "every export to finish", || async {
        let c = api.counts("export").await;
        let done = c["completed"].as_u64()? + c["failed"].as_u64()?;
        (done == total).then_some(c)
    })
    .await;
    if counts["failed"] != 0 {
        let (_, failed) = api
            .get("/api/queues/export/jobs?state=failed&limit=5")
            .await;
        panic!("jobs failed for a connection error: {counts}\n{failed}");
    }
}
