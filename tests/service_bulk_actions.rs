//! The bulk actions over real HTTP: retry-failed, clean and drain, each bounded by its
//! `limit`, and the 4xx every bad body gets (changing nothing).

mod common;

use common::{EMAIL_WAITS, Service, eventually};
use serde_json::{Value, json};

/// An export job that fails at once (unrecoverable: an unknown format).
fn failing(i: usize) -> Value {
    json!({"name": format!("bad-{i}"), "data": {"format": "xml", "records": []}})
}

/// An export job that completes.
fn completing(i: usize) -> Value {
    json!({"name": format!("ok-{i}"), "data": {"format": "csv", "records": [], "output_key": format!("ok-{i}.csv")}})
}

async fn wait_counts(service: &Service, queue: &str, state: &str, n: u64) {
    eventually(&format!("{n} {state} jobs in {queue}"), || async {
        (service.api.counts(queue).await[state] == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn retry_failed_moves_failed_jobs_back_in_bounded_calls() {
    let service = Service::start("").await;
    let api = &service.api;
    let jobs: Vec<Value> = (0..5).map(failing).collect();
    let (status, added) = api
        .post("/api/queues/export/jobs/bulk", &json!({ "jobs": jobs }))
        .await;
    assert_eq!(status, 201, "{added}");
    let first = added["ids"][0].as_str().expect("id").to_string();
    wait_counts(&service, "export", "failed", 5).await;

    // Paused, the retried jobs stay where retry puts them, to be counted.
    let (status, _) = api.post("/api/queues/export/pause", &json!({})).await;
    assert_eq!(status, 200);
    let (status, answer) = api
        .post("/api/queues/export/retry-failed", &json!({"limit": 2}))
        .await;
    assert_eq!((status, answer), (200, json!({"retried": 2, "more": true})));
    let counts = api.counts("export").await;
    assert_eq!(
        (counts["paused"].clone(), counts["failed"].clone()),
        (json!(2), json!(3))
    );
    let job = api.job("export", &first).await;
    assert_eq!(job["state"], "paused", "the first to fail goes first");
    assert_eq!(job["attempts_made"], 0, "a fresh attempt budget");
    assert_eq!(job["failed_reason"], Value::Null);

    let (status, answer) = api
        .post("/api/queues/export/retry-failed", &json!({}))
        .await;
    assert_eq!(
        (status, answer),
        (200, json!({"retried": 3, "more": false}))
    );
    let (_, answer) = api
        .post("/api/queues/export/retry-failed", &json!({}))
        .await;
    assert_eq!(answer, json!({"retried": 0, "more": false}));

    // Resumed, each runs again (and fails again): a second attempt in its history.
    let (status, _) = api.post("/api/queues/export/resume", &json!({})).await;
    assert_eq!(status, 200);
    wait_counts(&service, "export", "failed", 5).await;
    let job = api.job("export", &first).await;
    assert_eq!(common::outcomes(&job), ["failed", "failed"]);
}

#[tokio::test]
async fn clean_removes_old_jobs_of_one_state_up_to_its_limit() {
    let service = Service::start(EMAIL_WAITS).await;
    let api = &service.api;
    let jobs: Vec<Value> = (0..3).map(completing).collect();
    let (status, _) = api
        .post("/api/queues/export/jobs/bulk", &json!({ "jobs": jobs }))
        .await;
    assert_eq!(status, 201);
    wait_counts(&service, "export", "completed", 3).await;

    let clean = |body: Value| async move { api.post("/api/queues/export/clean", &body).await };
    let (status, answer) = clean(json!({"state": "completed", "older_than_ms": 3_600_000})).await;
    assert_eq!(
        (status, answer),
        (200, json!({"cleaned": 0})),
        "none is that old"
    );
    let (status, answer) =
        clean(json!({"state": "completed", "older_than_ms": 0, "limit": 2})).await;
    assert_eq!((status, answer), (200, json!({"cleaned": 2})));
    let (_, answer) = clean(json!({"state": "completed", "older_than_ms": 0})).await;
    assert_eq!(answer, json!({"cleaned": 1}));
    assert_eq!(api.counts("export").await["completed"], 0);

    // Waiting jobs by age too, and only the state asked for.
    for i in 0..2 {
        api.add("email", json!({"name": format!("w{i}")})).await;
    }
    api.add(
        "email",
        json!({"name": "later", "options": {"delay_ms": 3_600_000}}),
    )
    .await;
    let (status, answer) = api
        .post(
            "/api/queues/email/clean",
            &json!({"state": "waiting", "older_than_ms": 0, "limit": 10}),
        )
        .await;
    assert_eq!((status, answer), (200, json!({"cleaned": 2})));
    let counts = api.counts("email").await;
    assert_eq!(
        (counts["waiting"].clone(), counts["delayed"].clone()),
        (json!(0), json!(1))
    );
}

#[tokio::test]
async fn drain_removes_ready_jobs_and_delayed_ones_when_asked() {
    let service = Service::start(EMAIL_WAITS).await;
    let api = &service.api;
    let jobs: Vec<Value> = (0..3)
        .map(|i| json!({"name": format!("w{i}")}))
        .chain([json!({"name": "p", "options": {"priority": 3}})])
        .chain((0..2).map(|i| json!({"name": format!("d{i}"), "options": {"delay_ms": 3_600_000}})))
        .collect();
    let (status, _) = api
        .post("/api/queues/email/jobs/bulk", &json!({ "jobs": jobs }))
        .await;
    assert_eq!(status, 201);

    let drain = |body: Value| async move { api.post("/api/queues/email/drain", &body).await };
    let (status, answer) = drain(json!({"limit": 3})).await;
    assert_eq!((status, answer), (200, json!({"drained": 3, "more": true})));
    let counts = api.counts("email").await;
    assert_eq!(
        (counts["waiting"].clone(), counts["prioritized"].clone()),
        (json!(0), json!(1)),
        "waiting jobs go first"
    );
    let (_, answer) = drain(json!({})).await;
    assert_eq!(answer, json!({"drained": 1, "more": false}));
    assert_eq!(api.counts("email").await["delayed"], 2, "not asked for");
    let (_, answer) = drain(json!({"delayed": true})).await;
    assert_eq!(answer, json!({"drained": 2, "more": false}));
    let counts = api.counts("email").await;
    let total: u64 = counts
        .as_object()
        .expect("counts")
        .values()
        .map(|v| v.as_u64().expect("a count"))
        .sum();
    assert_eq!(total, 0, "{counts}");
}

#[tokio::test]
async fn bulk_actions_refuse_bad_bodies_and_change_nothing() {
    let service = Service::start(EMAIL_WAITS).await;
    let api = &service.api;
    api.add("email", json!({"name": "stays"})).await;
    api.add(
        "email",
        json!({"name": "stays-too", "options": {"delay_ms": 3_600_000}}),
    )
    .await;
    let before = api.counts("email").await;

    let cases: Vec<(&str, Value, &str)> = vec![
        ("retry-failed", json!({"limit": 0}), "limit"),
        ("retry-failed", json!({"limit": 10_001}), "limit"),
        ("retry-failed", json!({"limit": -1}), "limit"),
        ("retry-failed", json!({"limit": 1.5}), "limit"),
        (
            "retry-failed",
            json!({"limit": 5, "state": "failed"}),
            "state",
        ),
        ("retry-failed", json!([]), "invalid"),
        ("clean", json!({"state": "waiting"}), "older_than_ms"),
        (
            "clean",
            json!({"state": "active", "older_than_ms": 0}),
            "active",
        ),
        (
            "clean",
            json!({"state": "bogus", "older_than_ms": 0}),
            "bogus",
        ),
        (
            "clean",
            json!({"state": "waiting", "older_than_ms": -1}),
            "older_than_ms",
        ),
        (
            "clean",
            json!({"state": "waiting", "older_than_ms": 315_360_000_001_u64}),
            "older_than_ms",
        ),
        (
            "clean",
            json!({"state": "waiting", "older_than_ms": 0, "limit": 10_001}),
            "limit",
        ),
        (
            "clean",
            json!({"state": "waiting", "older_than_ms": 0, "grace": 5}),
            "grace",
        ),
        ("drain", json!({"delayed": "yes"}), "boolean"),
        (
            "drain",
            json!({"delayed": true, "everything": true}),
            "everything",
        ),
        ("drain", json!({"limit": 10_001}), "limit"),
        ("drain", json!({"limit": 0}), "limit"),
    ];
    for (action, body, named) in cases {
        let (status, answer) = api
            .post(&format!("/api/queues/email/{action}"), &body)
            .await;
        assert_eq!(status, 400, "{action} {body}: {answer}");
        assert_eq!(answer["error"], "bad_request", "{action} {body}: {answer}");
        let detail = answer["detail"].as_str().expect("detail");
        assert!(detail.contains(named), "{action} {body}: {detail}");
    }

    // Not JSON at all, an unknown queue, a method the route does not take.
    let (status, answer) = api.post_raw("/api/queues/email/drain", "nope").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, answer) = api.post("/api/queues/nope/drain", &json!({})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("unknown_queue"))
    );
    let (status, answer) = api.get("/api/queues/email/retry-failed").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (405, Some("method_not_allowed"))
    );

    assert_eq!(
        api.counts("email").await,
        before,
        "bad input changed nothing"
    );
}
