//! Schedules over HTTP on the real binary: the routes, bad input, and fires that become
//! exactly one job each, across processes on one Redis (one of them killed mid-run).

mod common;

use common::redis::RedisServer;
use common::{LONG_PATIENCE, Service, eventually, eventually_within};
use serde_json::{Value, json};

/// No queue runs a processor: the fires are what these tests look at, and jobs that run (and
/// fail, having no real data) would only add load.
const HOLD: &str = "[queues.email]\nprocessor = \"none\"\n[queues.image-processing]\nprocessor = \"none\"\n[queues.model-processing]\nprocessor = \"none\"\n[queues.export]\nprocessor = \"none\"\n";

/// The fire times of schedule `id` that have a job in `queue` (up to 1,000 listed).
async fn fires(service: &Service, queue: &str, id: &str) -> Vec<u64> {
    let records = fire_records(service, queue, id).await;
    records.into_iter().map(|(fire, _)| fire).collect()
}

/// `(fire time, when its job was added)` for each fire of schedule `id` in `queue`.
async fn fire_records(service: &Service, queue: &str, id: &str) -> Vec<(u64, u64)> {
    let prefix = format!("sched:{id}:");
    let mut out = Vec::new();
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
            let fire = job["id"]
                .as_str()
                .and_then(|i| i.strip_prefix(&prefix))
                .and_then(|m| m.parse().ok());
            if let (Some(fire), Some(added)) = (fire, job["created_at"].as_u64()) {
                out.push((fire, added));
            }
        }
    }
    out.sort_unstable();
    out
}

#[tokio::test]
async fn schedule_routes_and_bad_input() {
    let service = Service::start(HOLD).await;
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
            json!({"queue": "model-processing", "name": "n".repeat(257), "every_ms": 1000}),
            "name: a job name of 1 to 256 bytes",
        ),
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
    let config = format!("[redis]\nurl = \"{}\"\n{HOLD}", redis.url());
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

/// Two processes upserting one schedule at the same moment, fifty times over: it never ends
/// up without a next fire, and it keeps firing.
#[tokio::test]
async fn concurrent_upserts_leave_a_schedule_firing() {
    let redis = RedisServer::start();
    let config = format!("[redis]\nurl = \"{}\"\n{HOLD}", redis.url());
    let a = Service::start(&config).await;
    let b = Service::start(&config).await;
    for round in 0..50 {
        // Every other round changes the spec, so both the same and a changed spec race.
        let body = json!({"queue": "model-processing", "name": format!("tick{}", round / 2), "every_ms": 200});
        let (ra, rb) = tokio::join!(
            a.api.put("/api/schedules/race", &body),
            b.api.put("/api/schedules/race", &body)
        );
        assert!(
            matches!(ra.0, 200 | 201) && matches!(rb.0, 200 | 201),
            "{ra:?} {rb:?}"
        );
        let (_, shown) = a.api.get("/api/schedules/race").await;
        assert_eq!(
            shown["next"].as_array().map(Vec::len),
            Some(5),
            "round {round}: {shown}"
        );
    }
    let before = fires(&a, "model-processing", "race").await.len();
    eventually("it keeps firing", || async {
        (fires(&a, "model-processing", "race").await.len() >= before + 3).then_some(())
    })
    .await;
}

/// A stop of the only process: each missed-fire policy does what it says once it is back.
#[tokio::test]
async fn missed_fires_follow_their_policy_after_a_stop() {
    let redis = RedisServer::start();
    let config = format!("[redis]\nurl = \"{}\"\n{HOLD}", redis.url());
    let mut service = Service::start(&config).await;
    for (id, missed) in [
        ("skip", json!("skip")),
        ("once", json!("run_once")),
        ("two", json!({"catch_up": 2})),
    ] {
        let body =
            json!({"queue": "model-processing", "name": id, "every_ms": 300, "missed": missed});
        assert_eq!(
            service
                .api
                .put(&format!("/api/schedules/{id}"), &body)
                .await
                .0,
            201
        );
    }
    eventually("a first fire of each", || async {
        for id in ["skip", "once", "two"] {
            if fires(&service, "model-processing", id).await.is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    service.terminate().await;
    let stopped = stagehand_core::clock::now_ms();
    // Let ten fires or more go by with no scheduler running.
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let service = Service::start(&config).await;
    let restarted = stagehand_core::clock::now_ms();
    eventually("fires after the restart", || async {
        for id in ["skip", "once", "two"] {
            let f = fires(&service, "model-processing", id).await;
            if !f.iter().any(|t| *t > restarted + 300) {
                return None;
            }
        }
        Some(())
    })
    .await;
    // The scheduler's first step after the restart decided every fire due by then: it ran
    // those its policy names plus those still on time (at most ON_TIME_MS late). How late a
    // fire was is read from its job: when it was added less its fire time. The step's own
    // clock read precedes the add by a little (SLACK), so the counts are bounded from both
    // sides rather than read at a wall-clock edge that a slow start moves.
    const ON_TIME_MS: u64 = 1_000;
    const SLACK: u64 = 200;
    for (id, policy_runs) in [("skip", 0), ("once", 1), ("two", 2)] {
        let records = fire_records(&service, "model-processing", id).await;
        let after: Vec<(u64, u64)> = records.into_iter().filter(|(f, _)| *f > stopped).collect();
        let first_step = after.iter().map(|(_, added)| *added).min().expect("fires");
        let step: Vec<u64> = after
            .iter()
            .filter(|(f, _)| *f <= first_step)
            .map(|(f, added)| added - f)
            .collect();
        let late = |beyond: u64| step.iter().filter(|lateness| **lateness > beyond).count();
        assert!(
            late(ON_TIME_MS + SLACK) <= policy_runs && policy_runs <= late(ON_TIME_MS),
            "{id}: {policy_runs} missed fires run; lateness of the first step's fires: {step:?}"
        );
        // Fires were missed: the earliest run after the stop leaves a hole behind it.
        let ran = after.iter().filter(|(f, _)| *f <= first_step).count();
        assert!(
            (first_step - stopped) / 300 > ran as u64,
            "{id}: nothing was missed? {after:?}"
        );
    }
    let log = service.log();
    assert!(log.contains("fires missed"), "the log says what was missed");
}

/// Redis killed and started again (its AOF reloaded): the schedule is still there and fires on.
#[tokio::test]
async fn a_schedule_survives_a_redis_restart() {
    let mut redis = RedisServer::start();
    let config = format!("[redis]\nurl = \"{}\"\n{HOLD}", redis.url());
    let service = Service::start(&config).await;
    let body = json!({"queue": "model-processing", "name": "tick", "every_ms": 300});
    assert_eq!(service.api.put("/api/schedules/tick", &body).await.0, 201);
    eventually("a fire", || async {
        (!fires(&service, "model-processing", "tick").await.is_empty()).then_some(())
    })
    .await;
    redis.restart();
    let back = stagehand_core::clock::now_ms();
    eventually_within(LONG_PATIENCE, "fires after the restart", || async {
        let f = fires(&service, "model-processing", "tick").await;
        (f.iter().filter(|t| **t > back).count() >= 2).then_some(())
    })
    .await;
    let (_, shown) = service.api.get("/api/schedules/tick").await;
    assert_eq!(shown["next"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn the_cli_adds_shows_lists_and_removes_schedules() {
    let service = Service::start(HOLD).await;
    let out = service.cli(&[
        "schedules",
        "add",
        "weekdays",
        "--queue",
        "model-processing",
        "--name",
        "report",
        "--cron",
        "0 9 * * 1-5",
        "--tz",
        "America/New_York",
        "--missed",
        "catch_up:3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value =
        serde_json::from_slice(&service.cli(&["schedules", "show", "weekdays"]).stdout)
            .expect("JSON");
    assert_eq!(shown["missed"], json!({"policy": "catch_up", "max": 3}));
    let first = shown["next"][0]["local"].as_str().expect("a next fire");
    assert!(first.contains("T09:00:00"), "{first}");
    let listed: Value =
        serde_json::from_slice(&service.cli(&["schedules", "list"]).stdout).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    let out = service.cli(&[
        "schedules",
        "add",
        "bad",
        "--queue",
        "model-processing",
        "--name",
        "x",
        "--cron",
        "* * * * 9",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("day of week"));
    let removed: Value =
        serde_json::from_slice(&service.cli(&["schedules", "rm", "weekdays"]).stdout)
            .expect("JSON");
    assert_eq!(removed["deleted"], true);
}

#[tokio::test]
async fn configured_schedules_are_upserted_at_start_and_a_bad_one_stops_it() {
    let config = "[[schedules]]\nid = \"nightly\"\nqueue = \"model-processing\"\nname = \"lods\"\ncron = \"0 3 * * *\"\ntz = \"Europe/Berlin\"\nmissed = \"run_once\"\n";
    let service = Service::start(config).await;
    let (status, shown) = service.api.get("/api/schedules/nightly").await;
    assert_eq!(status, 200, "{shown}");
    assert!(
        shown["next"][0]["local"]
            .as_str()
            .is_some_and(|t| t.contains("T03:00:00")),
        "{shown}"
    );
    assert_eq!(shown["missed"], json!({"policy": "run_once"}));

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[[schedules]]\nid = \"x\"\nqueue = \"model-processing\"\nname = \"n\"\ncron = \"0 3 * * 9\"\n").expect("write");
    let (code, stderr) = common::refused_start(
        dir.path(),
        &[
            "--config",
            file.to_str().expect("path"),
            "--bind",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("schedules[0] (x)") && stderr.contains("day of week"),
        "{stderr}"
    );
}

/// An id is one schedule in one queue, however processes race; moving it takes a DELETE.
#[tokio::test]
async fn an_id_belongs_to_one_queue() {
    let redis = RedisServer::start();
    let config = format!("[redis]\nurl = \"{}\"\n{HOLD}", redis.url());
    let a = Service::start(&config).await;
    let b = Service::start(&config).await;
    for round in 0..10 {
        let id = format!("/api/schedules/race{round}");
        let body = |q: &str| json!({"queue": q, "name": "n", "every_ms": 60000});
        let (to_email, to_images) = (body("email"), body("image-processing"));
        let (ra, rb) = tokio::join!(a.api.put(&id, &to_email), b.api.put(&id, &to_images));
        let mut statuses = [ra.0, rb.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {ra:?} {rb:?}");
    }
    let (_, list) = a.api.get("/api/schedules").await;
    assert_eq!(list.as_array().map(Vec::len), Some(10), "{list}");
    let (status, answer) = a
        .api
        .put(
            "/api/schedules/race0",
            &json!({"queue": "model-processing", "name": "n", "every_ms": 60000}),
        )
        .await;
    assert_eq!((status, answer["error"].as_str()), (409, Some("conflict")));
    assert_eq!(a.api.delete("/api/schedules/race0").await.0, 200);
    assert_eq!(
        a.api
            .put(
                "/api/schedules/race0",
                &json!({"queue": "model-processing", "name": "n", "every_ms": 60000})
            )
            .await
            .0,
        201
    );
    assert_eq!(a.api.delete("/api/schedules/nope").await.0, 404);
    // What GET shows can be PUT back.
    let (_, shown) = a.api.get("/api/schedules/race0").await;
    let back = json!({"queue": shown["queue"], "name": shown["name"], "every_ms": shown["every_ms"], "missed": shown["missed"]});
    assert_eq!(a.api.put("/api/schedules/race0", &back).await.0, 200);
    // A schedule that would never fire is refused.
    let (status, answer) = a
        .api
        .put(
            "/api/schedules/never",
            &json!({"queue": "email", "name": "n", "cron": "0 0 30 2 *"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
}

/// A queue that refuses fires (full) holds up no other queue's schedules, and a stored
/// schedule that no longer decodes hides nothing else and can be deleted.
#[tokio::test]
async fn one_bad_queue_or_record_does_not_stop_the_others() {
    let redis = RedisServer::start();
    let config = format!(
        "[redis]\nurl = \"{}\"\n[queues.email]\nmax_jobs = 2\nprocessor = \"none\"\n[queues.image-processing]\nprocessor = \"none\"\n[queues.model-processing]\nprocessor = \"none\"\n",
        redis.url()
    );
    let service = Service::start(&config).await;
    for (id, queue) in [
        ("full", "email"),
        ("fine", "model-processing"),
        ("broken", "image-processing"),
        ("next", "image-processing"),
    ] {
        let body = json!({"queue": queue, "name": id, "every_ms": 300});
        assert_eq!(
            service
                .api
                .put(&format!("/api/schedules/{id}"), &body)
                .await
                .0,
            201
        );
    }
    let mut conn = redis.conn().await;
    let _: () = redis::cmd("HSET")
        .arg("stagehand:{image-processing}:s:broken")
        .arg("spec")
        .arg("{\"garbage\":1}")
        .query_async(&mut conn)
        .await
        .expect("HSET");
    let fine = eventually_within(LONG_PATIENCE, "ten fires of the fine schedule", || async {
        let f = fires(&service, "model-processing", "fine").await;
        (f.len() >= 10).then_some(f)
    })
    .await;
    for pair in fine.windows(2) {
        assert_eq!(pair[1] - pair[0], 300, "a fire missed: {fine:?}");
    }
    assert_eq!(
        fires(&service, "email", "full").await.len(),
        2,
        "the full queue took what it could"
    );
    eventually(
        "the next schedule beside the broken one to fire",
        || async { (fires(&service, "image-processing", "next").await.len() >= 3).then_some(()) },
    )
    .await;
    let (status, list) = service.api.get("/api/schedules").await;
    assert_eq!(status, 200);
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(3),
        "the broken record is skipped: {list}"
    );
    assert_eq!(service.api.delete("/api/schedules/broken").await.0, 200);
}

/// Each fire counts in `/metrics` as a fire and as a job added under the schedule's job name.
#[tokio::test]
async fn fires_count_as_jobs_added_in_metrics() {
    let service = Service::start(HOLD).await;
    let api = &service.api;
    let body = json!({"queue": "model-processing", "name": "tick", "every_ms": 1000});
    assert_eq!(api.put("/api/schedules/tick", &body).await.0, 201);
    eventually("two fires", || async {
        (fires(&service, "model-processing", "tick").await.len() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        api.post("/api/schedules/tick/pause", &json!({})).await.0,
        200
    );
    let fired = fires(&service, "model-processing", "tick").await.len();
    let sample = |text: &str, key: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
    };
    let (added, total) = eventually("the fires in /metrics", || async {
        let text = reqwest::get(format!("{}/metrics", api.base))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let added = sample(
            &text,
            r#"stagehand_jobs_total{queue="model-processing",name="tick",outcome="added"}"#,
        )?;
        let total = sample(
            &text,
            r#"stagehand_schedule_fires_total{queue="model-processing"}"#,
        )?;
        (added == fired as u64).then_some((added, total))
    })
    .await;
    assert_eq!((added, total), (fired as u64, fired as u64));
}
