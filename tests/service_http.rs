//! The `stagehand` binary over real HTTP: the export flow, the CLI, bad input, idempotency,
//! pause/resume, retention, admin routes and SIGTERM.

mod common;

use common::{Service, eventually, refused_start};
use serde_json::{Value, json};

fn export(records: Value, key: &str) -> Value {
    json!({ "name": "report", "data": { "format": "csv", "records": records, "output_key": key } })
}

#[tokio::test]
async fn cli_enqueue_then_job_shows_the_export_completed() {
    let service = Service::start("").await;
    let data = r#"{"format":"csv","records":[{"a":1},{"a":2}],"output_key":"exports/r.csv"}"#;
    let out = service.cli(&["enqueue", "export", "report", "--data", data]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string();
    assert!(!id.is_empty());
    let job = service.api.wait_state("export", &id, "completed").await;
    assert_eq!(job["return_value"]["output_key"], "exports/r.csv");
    assert_eq!(job["progress"], 100);
    // The processor's own log lines carry the attempt's queue, job id and number.
    let log = service.log();
    let written = log
        .lines()
        .find(|l| l.contains("export written"))
        .expect("the export's log line");
    for field in ["queue=export", &format!("job_id={id}"), "attempt=1"] {
        assert!(written.contains(field), "{field} missing: {written}");
    }

    let out = service.cli(&["job", "export", &id]);
    assert!(out.status.success());
    let shown: Value = serde_json::from_slice(&out.stdout).expect("job JSON");
    assert_eq!(shown["state"], "completed");
    let csv = std::fs::read_to_string(service.data_file("exports/r.csv")).expect("the CSV");
    assert_eq!(csv, "a\n1\n2\n");

    let out = service.cli(&["stats", "export"]);
    let stats: Value = serde_json::from_slice(&out.stdout).expect("stats JSON");
    assert_eq!(stats["counts"]["completed"], 1);
}

#[tokio::test]
async fn exports_write_jsonl_and_json_and_read_input_keys() {
    let service = Service::start("").await;
    let records = json!([{"a": 1, "b": "x,y"}, {"a": 2, "c": null}]);
    let csv_id = service
        .api
        .add("export", export(records.clone(), "out/r.csv"))
        .await;
    service.api.wait_state("export", &csv_id, "completed").await;
    let csv = std::fs::read_to_string(service.data_file("out/r.csv")).expect("csv");
    assert_eq!(csv, "a,b,c\n1,\"x,y\",\n2,,\n");

    let id = service
        .api
        .add("export", json!({"name": "r", "data": {"format": "jsonl", "records": records, "output_key": "out/r.jsonl"}}))
        .await;
    service.api.wait_state("export", &id, "completed").await;
    let id = service
        .api
        .add("export", json!({"name": "r", "data": {"format": "json", "input_key": "out/r.jsonl", "output_key": "out/r.json"}}))
        .await;
    let job = service.api.wait_state("export", &id, "completed").await;
    assert_eq!(job["return_value"]["records"], 2);
    let round: Value =
        serde_json::from_slice(&std::fs::read(service.data_file("out/r.json")).expect("json"))
            .expect("parse");
    assert_eq!(round, records);
}

#[tokio::test]
async fn an_export_with_bad_data_fails_at_once_without_retrying() {
    let service = Service::start("").await;
    let id = service
        .api
        .add(
            "export",
            json!({"name": "r", "data": {"format": "xml", "records": []}}),
        )
        .await;
    let job = service.api.wait_state("export", &id, "failed").await;
    assert_eq!(job["attempts_made"], 1, "unrecoverable: no retry");
    assert!(
        job["failed_reason"]
            .as_str()
            .expect("reason")
            .contains("xml"),
        "{job}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let service = Service::start("[http]\nmax_body_bytes = 4096\n").await;
    let api = &service.api;
    let before = api.counts("email").await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"name": "x", "options": {"delay_ms": -5}}),
            400,
            "delay_ms",
        ),
        (
            json!({"name": "x", "options": {"attempts": 0}}),
            400,
            "attempts",
        ),
        (
            json!({"name": "x", "options": {"backoff": {"type": "linear", "delay_ms": 5}}}),
            400,
            "linear",
        ),
        (
            json!({"name": "x", "options": {"priority": -1}}),
            400,
            "priority",
        ),
        (
            json!({"name": "x", "options": {"job_id": "123"}}),
            400,
            "job_id",
        ),
        (
            json!({"name": "x", "options": {"colour": "red"}}),
            400,
            "colour",
        ),
        (json!({"data": {}}), 400, "name"),
        (json!({"name": ""}), 400, "name"),
    ];
    for (body, status, mentions) in cases {
        let (got, answer) = api.post("/api/queues/email/jobs", &body).await;
        assert_eq!(got, status, "{body} -> {answer}");
        assert_eq!(answer["error"], "bad_request", "{answer}");
        assert!(
            answer["detail"]
                .as_str()
                .expect("detail")
                .contains(mentions),
            "{answer}"
        );
    }
    let (status, answer) = api.post_raw("/api/queues/email/jobs", "{\"name\": ").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_request")),
        "{answer}"
    );
    assert!(
        answer["detail"]
            .as_str()
            .expect("detail")
            .contains("malformed JSON")
    );

    let big = format!("{{\"name\":\"x\",\"data\":\"{}\"}}", "a".repeat(10_000));
    let (status, answer) = api.post_raw("/api/queues/email/jobs", big).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (413, Some("payload_too_large")),
        "{answer}"
    );

    let (status, answer) = api
        .post("/api/queues/nope/jobs", &json!({"name": "x"}))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("unknown_queue")),
        "{answer}"
    );

    // One bad job in a bulk adds none of them, and says which.
    let bulk = json!({"jobs": [{"name": "ok"}, {"name": "bad", "options": {"attempts": 0}}]});
    let (status, answer) = api.post("/api/queues/email/jobs/bulk", &bulk).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .expect("detail")
            .contains("jobs[1]"),
        "{answer}"
    );

    let (status, _) = api.get("/api/queues/email/jobs?state=bogus").await;
    assert_eq!(status, 400);
    let (status, answer) = api.get("/api/queues/email/jobs/999").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (404, Some("unknown_job"))
    );
    let (status, answer) = api.get("/no/such/route").await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("not_found")));

    assert_eq!(
        api.counts("email").await,
        before,
        "bad input changed nothing"
    );
}

#[tokio::test]
async fn a_job_id_added_twice_is_one_job() {
    let service = Service::start(common::EMAIL_WAITS).await;
    let body =
        json!({"name": "welcome", "data": {"to": "a@b.c"}, "options": {"job_id": "welcome-42"}});
    let (first, a) = service.api.post("/api/queues/email/jobs", &body).await;
    let (second, b) = service.api.post("/api/queues/email/jobs", &body).await;
    assert_eq!((first, second), (201, 200));
    assert_eq!(a["id"], "welcome-42");
    assert_eq!(b, json!({"id": "welcome-42", "created": false}));
    assert_eq!(service.api.counts("email").await["waiting"], 1);

    let out = service.cli(&["enqueue", "email", "welcome", "--job-id", "welcome-42"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "welcome-42");
    assert_eq!(service.api.counts("email").await["waiting"], 1);
}

#[tokio::test]
async fn pause_holds_jobs_and_resume_runs_them() {
    let service = Service::start("").await;
    let api = &service.api;
    let (status, _) = api.post("/api/queues/export/pause", &json!({})).await;
    assert_eq!(status, 200);
    let id = api.add("export", export(json!([{"a": 1}]), "p.csv")).await;
    let job = api.job("export", &id).await;
    assert_eq!(job["state"], "paused");
    let (_, queue) = api.get("/api/queues/export").await;
    assert_eq!(queue["paused"], true);
    assert_eq!(queue["counts"]["paused"], 1);
    let (status, _) = api.post("/api/queues/export/resume", &json!({})).await;
    assert_eq!(status, 200);
    api.wait_state("export", &id, "completed").await;
}

#[tokio::test]
async fn retention_keeps_only_what_is_configured() {
    let config = "[queues.export.defaults]\nremove_on_complete = 2\n";
    let service = Service::start(config).await;
    let api = &service.api;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            api.add("export", export(json!([{"i": i}]), &format!("r{i}.csv")))
                .await,
        );
    }
    eventually("all five exports to be written", || async {
        (0..5)
            .all(|i| service.data_file(&format!("r{i}.csv")).exists())
            .then_some(())
    })
    .await;
    let counts = eventually("completed to settle at 2", || async {
        let c = api.counts("export").await;
        (c["completed"] == 2 && c["active"] == 0 && c["waiting"] == 0).then_some(c)
    })
    .await;
    assert_eq!(counts["failed"], 0);
    let (_, listed) = api.get("/api/queues/export/jobs?state=completed").await;
    assert_eq!(listed["jobs"].as_array().expect("jobs").len(), 2);
}

#[tokio::test]
async fn admin_routes_list_retry_and_remove() {
    let service = Service::start(common::EMAIL_WAITS).await;
    let api = &service.api;
    let bad = api
        .add(
            "export",
            json!({"name": "r", "data": {"format": "csv", "input_key": "missing.json"}}),
        )
        .await;
    api.wait_state("export", &bad, "failed").await;
    let (_, listed) = api
        .get("/api/queues/export/jobs?state=failed&limit=10")
        .await;
    assert_eq!(listed["jobs"][0]["id"], bad.as_str());

    let waiting = api.add("email", json!({"name": "w"})).await;
    let (status, answer) = api
        .post(
            &format!("/api/queues/email/jobs/{waiting}/retry"),
            &json!({}),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("invalid_state")),
        "only failed jobs retry"
    );

    let (status, _) = api
        .delete(&format!("/api/queues/email/jobs/{waiting}"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .delete(&format!("/api/queues/email/jobs/{waiting}"))
        .await;
    assert_eq!(status, 404);

    // Retried, the export fails again the same way (its input is still missing).
    let (status, _) = api
        .post(&format!("/api/queues/export/jobs/{bad}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let job = api.wait_state("export", &bad, "failed").await;
    assert_eq!(job["history"].as_array().expect("history").len(), 2);

    let (status, queues) = api.get("/api/queues").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = queues
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["email", "export", "image-processing", "model-processing"]
    );
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let mut service = Service::start("").await;
    let id = service
        .api
        .add("export", export(json!([{"a": 1}]), "t.csv"))
        .await;
    service.api.wait_state("export", &id, "completed").await;
    let status = service.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let log = service.log();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
}

#[test]
fn bad_settings_name_the_key_and_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[queues.email]\nconcurrency = 0\n").expect("write");
    let (code, err) = refused_start(dir.path(), &["--config", file.to_str().expect("path")], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("queues.email.concurrency"), "{err}");

    let (code, err) = refused_start(dir.path(), &[], &[("STAGEHAND_HTTP_BINDD", "x")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("STAGEHAND_HTTP_BINDD"), "{err}");

    let (code, err) = refused_start(
        dir.path(),
        &[],
        &[("STAGEHAND_QUEUES_EMAIL_CONCURRENCY", "lots")],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("queues.email.concurrency"), "{err}");

    std::fs::write(&file, "[queues.email.defaults]\nattempts = 0\n").expect("write");
    let (code, err) = refused_start(dir.path(), &["--config", file.to_str().expect("path")], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("queues.email.defaults.attempts"), "{err}");
}

#[tokio::test]
async fn sigterm_during_an_active_export_lets_it_finish_and_leaves_none_active() {
    let mut service = Service::start("").await;
    // An input large enough that exporting it takes a while.
    let rows = 200_000;
    let input: String = (0..rows)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"sku\":\"sku-{i}\",\"price\":{}.5}}\n",
                i % 97
            )
        })
        .collect();
    std::fs::create_dir_all(service.data_file("in")).expect("input dir");
    std::fs::write(service.data_file("in/rows.jsonl"), input).expect("input");
    let id = service
        .api
        .add("export", json!({"name": "big", "data": {"format": "csv", "input_key": "in/rows.jsonl", "output_key": "out/big.csv"}}))
        .await;
    service.api.wait_state("export", &id, "active").await;

    let status = service.terminate().await;
    assert!(status.success(), "exit status {status:?}");
    let log = service.log();
    assert!(
        log.contains("pool draining queue=export active=1"),
        "the export was active at SIGTERM:\n{log}"
    );
    assert!(
        log.contains("queue at shutdown queue=\"export\" active=0"),
        "{log}"
    );
    assert!(
        !log.contains("handed back"),
        "it finished within the grace period:\n{log}"
    );
    let csv =
        std::fs::read_to_string(service.data_file("out/big.csv")).expect("the export was written");
    assert_eq!(csv.lines().count(), rows + 1, "header + every row");
}

#[tokio::test]
async fn logs_are_one_json_object_per_line_when_asked() {
    let service = Service::start("[log]\nformat = \"json\"\n").await;
    service
        .api
        .add(
            "export",
            json!({"name": "r", "data": {"format": "csv", "records": [{"a": 1}]}}),
        )
        .await;
    let log = common::eventually("the export's log line", || async {
        let log = service.log();
        log.contains("export written").then_some(log)
    })
    .await;
    let mut serving = None;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["timestamp"].is_string(),
            "{line}"
        );
        if value["fields"]["message"] == "stagehand serving" {
            serving = Some(value);
        }
    }
    let serving = serving.expect("the serving line");
    assert_eq!(
        serving["fields"]["listening"],
        format!("127.0.0.1:{}", service.port)
    );
}
