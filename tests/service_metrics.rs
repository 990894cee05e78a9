//! `/metrics` and `/api/metrics` through the real binary: after a known workload the
//! Prometheus text parses with Prometheus's own Python client parser and holds the exact
//! counts.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Service, eventually, python};
use serde_json::{Value, json};

/// One sample: its name and labels as `name{k="v",...}` (labels sorted), and its value.
type Samples = BTreeMap<String, f64>;

/// Parses `text` with `prometheus_client.parser`; panics when it does not parse.
fn parse(text: &str) -> Samples {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/parse_prometheus.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the text does not parse: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut samples = Samples::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let sample: Value = serde_json::from_str(line).expect("a JSON line");
        let labels: BTreeMap<String, String> =
            serde_json::from_value(sample["labels"].clone()).expect("labels");
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let key = format!(
            "{}{{{}}}",
            sample["name"].as_str().expect("name"),
            labels.join(",")
        );
        samples.insert(key, sample["value"].as_f64().expect("value"));
    }
    samples
}

async fn scrape(service: &Service) -> (String, Samples) {
    let response = reqwest::get(format!("{}/metrics", service.api.base))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    let samples = parse(&text);
    (text, samples)
}

fn value(samples: &Samples, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
}

/// A loopback port nothing listens on (bound, then let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port()
}

#[tokio::test]
async fn a_known_workload_shows_its_exact_counts() {
    let config = format!(
        r#"
[processors.email]
smtp_url = "smtp://127.0.0.1:{}"
tls = "none"
timeout_ms = 2000

[queues.email.defaults]
attempts = 3
backoff = {{ type = "fixed", delay_ms = 0 }}
"#,
        dead_port()
    );
    let service = Service::start(&config).await;
    let api = &service.api;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let job = json!({"name": "ok", "data": {"format": "csv", "records": [{"a": 1}]}});
        ids.push(("export", api.add("export", job).await, "completed"));
    }
    // Bad data fails at once; the critical one (priority 1) alerts.
    for priority in [0, 1] {
        let job = json!({"name": "bad", "data": {"format": "csv", "nope": 1}, "options": {"priority": priority}});
        ids.push(("export", api.add("export", job).await, "failed"));
    }
    // Nothing listens for SMTP: each attempt fails as transient, two retries, then failed.
    for _ in 0..2 {
        let job = json!({"name": "mail", "data": {"to": ["a@fashion.example"], "subject": "s", "text": "t"}});
        ids.push(("email", api.add("email", job).await, "failed"));
    }
    for (queue, id, state) in &ids {
        api.wait_state(queue, id, state).await;
    }
    // A cache miss, then a hit; a message out on a channel nobody handles.
    assert_eq!(api.get("/api/cache/k").await.0, 404);
    assert_eq!(api.put("/api/cache/k", &json!({"value": 1})).await.0, 204);
    assert_eq!(api.get("/api/cache/k").await.0, 200);
    assert_eq!(
        api.post("/api/pubsub/elsewhere", &json!({"m": 1})).await.0,
        200
    );

    // Store figures are reused for up to a second: wait until they show the workload.
    let (text, samples) = eventually("the store's counts in /metrics", || async {
        let (text, samples) = scrape(&service).await;
        let key = r#"stagehand_queue_jobs{queue="email",state="failed"}"#;
        (samples.get(key) == Some(&2.0)).then_some((text, samples))
    })
    .await;
    let expect = [
        (
            r#"stagehand_jobs_total{name="ok",outcome="added",queue="export"}"#,
            5.0,
        ),
        (
            r#"stagehand_jobs_total{name="ok",outcome="completed",queue="export"}"#,
            5.0,
        ),
        (
            r#"stagehand_jobs_total{name="ok",outcome="failed",queue="export"}"#,
            0.0,
        ),
        (
            r#"stagehand_jobs_total{name="bad",outcome="added",queue="export"}"#,
            2.0,
        ),
        (
            r#"stagehand_jobs_total{name="bad",outcome="failed",queue="export"}"#,
            2.0,
        ),
        (
            r#"stagehand_jobs_total{name="bad",outcome="retried",queue="export"}"#,
            0.0,
        ),
        (
            r#"stagehand_jobs_total{name="mail",outcome="added",queue="email"}"#,
            2.0,
        ),
        (
            r#"stagehand_jobs_total{name="mail",outcome="retried",queue="email"}"#,
            4.0,
        ),
        (
            r#"stagehand_jobs_total{name="mail",outcome="failed",queue="email"}"#,
            2.0,
        ),
        (
            r#"stagehand_jobs_total{name="mail",outcome="completed",queue="email"}"#,
            0.0,
        ),
        (
            r#"stagehand_job_duration_seconds_count{name="ok",queue="export"}"#,
            5.0,
        ),
        (
            r#"stagehand_job_duration_seconds_count{name="mail",queue="email"}"#,
            6.0,
        ),
        (r#"stagehand_job_wait_seconds_count{queue="export"}"#, 7.0),
        (r#"stagehand_job_wait_seconds_count{queue="email"}"#, 6.0),
        (r#"stagehand_pool_busy_slots{queue="export"}"#, 0.0),
        (r#"stagehand_pool_busy_slots{queue="email"}"#, 0.0),
        (
            r#"stagehand_queue_jobs{queue="export",state="completed"}"#,
            5.0,
        ),
        (
            r#"stagehand_queue_jobs{queue="export",state="failed"}"#,
            2.0,
        ),
        (
            r#"stagehand_queue_jobs{queue="export",state="waiting"}"#,
            0.0,
        ),
        (r#"stagehand_alerts_total{kind="job_failed"}"#, 1.0),
        (r#"stagehand_mailbox_depth{actor="queue"}"#, 0.0),
        (r#"stagehand_mailbox_depth{actor="alert"}"#, 0.0),
        (r#"stagehand_cache_operations_total{result="hit"}"#, 1.0),
        (r#"stagehand_cache_operations_total{result="miss"}"#, 1.0),
        (
            r#"stagehand_pubsub_messages_total{direction="out",handler=""}"#,
            1.0,
        ),
    ];
    for (key, want) in expect {
        assert_eq!(value(&samples, key), want, "{key}\n{text}");
    }
    // Histograms are Prometheus histograms (buckets), not summaries.
    assert!(
        samples.contains_key(
            r#"stagehand_job_duration_seconds_bucket{le="+Inf",name="ok",queue="export"}"#
        ),
        "{text}"
    );
    assert!(text.contains("# HELP stagehand_jobs_total"), "{text}");

    // The seed's aggregate.
    let (status, aggregate) = api.get("/api/metrics").await;
    assert_eq!(status, 200, "{aggregate}");
    assert_eq!(
        aggregate["queues"]["export"],
        json!({"waiting": 0, "active": 0, "completed": 5, "failed": 2, "delayed": 0, "total": 0})
    );
    assert_eq!(aggregate["cache"]["hits"], 1);
    assert_eq!(aggregate["cache"]["hit_rate"], 50.0);

    // The per-minute history, once the pools have added their figures to the store.
    let history = eventually("the history to hold the workload", || async {
        let (_, email) = api.get("/api/queues/email/metrics").await;
        let (_, export) = api.get("/api/queues/export/metrics").await;
        (email["failed"] == 2 && export["completed"] == 5 && export["failed"] == 2)
            .then_some((email, export))
    })
    .await;
    let (email, export) = history;
    let minutes = export["minutes"].as_array().expect("minutes");
    assert_eq!(minutes.len(), 61, "every minute of the last hour: {export}");
    let attempts: u64 = email["minutes"]
        .as_array()
        .expect("minutes")
        .iter()
        .map(|m| m["attempts"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(attempts, 6, "every attempt's duration: {email}");
    let busy = minutes
        .iter()
        .find(|m| m["completed"].as_u64() > Some(0))
        .expect("a minute");
    assert!(busy["p50_ms"].is_u64() && busy["p99_ms"].is_u64(), "{busy}");
    for bad in [
        "/api/queues/export/metrics?from=2000&to=1000",
        "/api/queues/export/metrics?from=0",
        "/api/queues/export/metrics?from=yesterday",
        "/api/queues/export/metrics?step=5",
    ] {
        let (status, body) = api.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = api
        .get("/api/queues/export/metrics?from=2026-11-26T00:00:00Z&to=2026-11-26T00:09:59Z")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["minutes"].as_array().map(Vec::len), Some(10));
    assert_eq!(api.get("/api/queues/nope/metrics").await.0, 404);
}

/// Job names are user data: past a hundred per queue they share one label, so a client that
/// invents names cannot grow the scrape without bound.
#[tokio::test]
async fn invented_job_names_share_one_label_past_a_hundred() {
    let service = Service::start("[queues.export]\nprocessor = \"none\"\n").await;
    let jobs: Vec<Value> = (0..150).map(|i| json!({"name": format!("n{i}")})).collect();
    let (status, body) = service
        .api
        .post("/api/queues/export/jobs/bulk", &json!({ "jobs": jobs }))
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, samples) = scrape(&service).await;
    let names: std::collections::BTreeSet<&str> = samples
        .keys()
        .filter(|k| k.starts_with("stagehand_jobs_total{") && k.contains("outcome=\"added\""))
        .filter_map(|k| k.split("name=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(names.len(), 101, "{names:?}");
    assert_eq!(
        value(
            &samples,
            r#"stagehand_jobs_total{name="_other",outcome="added",queue="export"}"#
        ),
        50.0
    );
}
