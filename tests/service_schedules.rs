//! Schedules over HTTP on the real binary: the routes, bad input, and fires that become
//! exactly one job each, across processes on one Redis (one of them killed mid-run).

mod common;

use common::redis::RedisServer;
use common::{LONG_PATIENCE, Service, eventually, eventually_within};
use serde_json::{Value, json};

/// The fire times of schedule `id` that have a job in `queue` (up to 1,000 listed).
async fn fires(service: &Service, queue: &str, id: &str) -> Vec<u64> {
    let prefix = format!("sched:{id}:");
    let mut out: Vec<u64> = Vec::new();
    for state in [
        "waiting",
        "paused",
        "delayed",
        "prioritized",
        "active",
        "completed",
        "failed",
    ] {
        let (_, jobs) = service
            .api
            .get(&format!(
                "/api/queues/{queue}/jobs?state={state}&limit=1000"
            ))
            .await;
        for job in jobs["jobs"].as_array().cloned().unwrap_or_default() {
            if let Some(ms) = job["id"]
                .as_str()
                .and_then(|i| i.strip_prefix(&prefix))
                .and_then(|m| m.parse().ok())
            {
                out.push(ms);
            }
        }
    }
    out.sort_unstable();
    out
}

#[tokio::test]
async fn schedule_routes_and_bad_input() {
    let service = Service::start("").await;
    let api = &service.api;
    let body = json!({"queue": "model-processing", "name": "lod", "data": {"model": 7}, "every_ms": 500, "tz": "Europe/Berlin"});
    let (status, shown) = api.put("/api/schedules/lods", &body).await;
    assert_eq!(status, 201, "{shown}");
    assert_eq!(shown["next"].as_array().map(Vec::len), Some(5));
    assert!(
        shown["next"][0]["local"]
            .as_str()
            .is_some_and(|t| t.ends_with("+01:00") || t.ends_with("+02:00")),
        "{shown}"
    );
    let (status, _) = api.put("/api/schedules/lods", &body).await;
    assert_eq!(status, 200, "the same schedule again");
    // It fires: jobs with the fire's id.
    let got = eventually("two fires", || async {
        let f = fires(&service, "model-processing", "lods").await;
        (f.len() >= 2).then_some(f)
    })
    .await;
    assert_eq!(got[1] - got[0], 500);
    let (_, job) = api
        .get(&format!(
            "/api/queues/model-processing/jobs/sched:lods:{}",
            got[0]
        ))
        .await;
    assert_eq!(
        (job["name"].as_str(), &job["data"]),
        (Some("lod"), &json!({"model": 7}))
    );
    // Pause, resume, trigger, list, delete.
    let (_, paused) = api.post("/api/schedules/lods/pause", &json!({})).await;
    assert_eq!(
        (
            paused["paused"].as_bool(),
            paused["next"].as_array().map(Vec::len)
        ),
        (Some(true), Some(0))
    );
    let (_, resumed) = api.post("/api/schedules/lods/resume", &json!({})).await;
    assert_eq!(resumed["paused"], false);
    let (status, triggered) = api.post("/api/schedules/lods/trigger", &json!({})).await;
    assert_eq!(status, 201);
    assert!(
        triggered["job_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("sched:lods:trigger-"))
    );
    let (_, list) = api.get("/api/schedules").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(
        api.delete("/api/schedules/lods").await.1,
        json!({"deleted": true})
    );
    assert_eq!(api.get("/api/schedules/lods").await.0, 404);

    let cases = [
        (
            json!({"queue": "model-processing", "name": "x", "cron": "61 * * * *"}),
            "cron: minute",
        ),
        (
            json!({"queue": "model-processing", "name": "x", "cron": "* * * * 8"}),
            "cron: day of week",
        ),
        (
            json!({"queue": "model-processing", "name": "x", "cron": "@daily", "tz": "Mars/Olympus"}),
            "tz:",
        ),
        (
            json!({"queue": "nope", "name": "x", "cron": "@daily"}),
            "queue:",
        ),
        (
            json!({"queue": "model-processing", "name": "x", "cron": "@daily", "start_at": "2027-01-02T00:00:00Z", "end_at": "2027-01-01T00:00:00Z"}),
            "end_at:",
        ),
        (
            json!({"queue": "model-processing", "name": "x", "cron": "@daily", "start_at": "tomorrow"}),
            "start_at:",
        ),
        (json!({"queue": "model-processing", "name": "x"}), "cron:"),
        (
            json!({"queue": "model-processing", "name": "x", "every_ms": 10}),
            "every_ms:",
        ),
        (
            json!({"queue": "model-processing", "name": "x", "cron": "@daily", "missed": "later"}),
            "missed:",
        ),
        (
            json!({"queue": "model-processing", "name": "x", "cron": "@daily", "options": {"attempts": 0}}),
            "options:",
        ),
    ];
    for (body, words) in cases {
        let (status, answer) = api.put("/api/schedules/bad", &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let detail = answer["detail"].as_str().unwrap_or("");
        assert!(detail.contains(words), "{body} -> {detail}");
    }
    assert_eq!(
        api.get("/api/schedules/bad").await.0,
        404,
        "nothing was stored"
    );
}

/// Three processes on one Redis, a schedule every second: every fire is one job, none is
/// missing, while one process is killed and started again mid-run.
#[tokio::test]
async fn three_processes_fire_each_second_once_through_a_kill() {
    let redis = RedisServer::start();
    let config = format!("[redis]\nurl = \"{}\"\n", redis.url());
    let a = Service::start(&config).await;
    let mut b = Service::start(&config).await;
    let c = Service::start(&config).await;
    // All three upsert it at once (as three processes with it in their config would).
    let body = json!({"queue": "model-processing", "name": "tick", "every_ms": 1000});
    let (ra, rb, rc) = tokio::join!(
        a.api.put("/api/schedules/tick", &body),
        b.api.put("/api/schedules/tick", &body),
        c.api.put("/api/schedules/tick", &body),
    );
    let mut statuses = [ra.0, rb.0, rc.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 201], "one created it");
    let wait = |n: usize| {
        let a = &a;
        async move {
            eventually_within(LONG_PATIENCE, "fires", || async {
                let f = fires(a, "model-processing", "tick").await;
                (f.len() >= n).then_some(f)
            })
            .await
        }
    };
    wait(7).await;
    b.kill();
    wait(12).await;
    let b2 = Service::start(&config).await;
    let all = wait(20).await;
    for pair in all.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            1000,
            "a fire missing or doubled: {all:?}"
        );
    }
    let (_, schedule) = b2.api.get("/api/schedules/tick").await;
    assert!(schedule["fires"].as_u64().unwrap_or(0) >= 20, "{schedule}");
    let _: Value = schedule;
}
