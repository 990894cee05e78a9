//! The admin CLI against the real binary serving on a free port: every command's exact
//! outcome, `enqueue --file` (100,000 jobs; a bad line sends nothing; a refused batch says
//! which lines were added), JSON and table output, completions, and the server's errors.
//!
//! The CLI's stdout is a pipe here, so it prints JSON unless `--output table` is given.

mod common;

use std::io::Write;
use std::process::Output;

use common::{Service, eventually, eventually_within};
use serde_json::{Value, json};

/// `email` and `image-processing` hold their jobs; `export` runs (and fails `xml` jobs at once).
const CONFIG: &str =
    "[queues.email]\nprocessor = \"none\"\n[queues.image-processing]\nprocessor = \"none\"\n";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI, expecting success; its stdout as JSON.
fn json_of(service: &Service, args: &[&str]) -> Value {
    let out = service.cli(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
}

/// Runs the CLI, expecting it to fail with exit code `code`; its stderr.
fn failure(service: &Service, args: &[&str], code: i32) -> String {
    let out = service.cli(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

fn failing(i: usize) -> Value {
    json!({"name": format!("bad-{i}"), "data": {"format": "xml", "records": []}, "options": {"remove_on_fail": false}})
}

async fn bulk(service: &Service, queue: &str, jobs: Vec<Value>) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in jobs.chunks(10_000) {
        let (status, answer) = service
            .api
            .post(
                &format!("/api/queues/{queue}/jobs/bulk"),
                &json!({ "jobs": chunk }),
            )
            .await;
        assert_eq!(status, 201, "{answer}");
        ids.extend(
            answer["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| id.as_str().expect("id").to_string()),
        );
    }
    ids
}

async fn wait_count(service: &Service, queue: &str, state: &str, n: u64) {
    eventually_within(
        common::LONG_PATIENCE,
        &format!("{n} {state} jobs in {queue}"),
        || async { (service.api.counts(queue).await[state] == n).then_some(()) },
    )
    .await;
}

/// The sum of a queue's counts.
async fn total(service: &Service, queue: &str) -> u64 {
    let counts = service.api.counts(queue).await;
    counts
        .as_object()
        .expect("counts")
        .values()
        .map(|v| v.as_u64().expect("a count"))
        .sum()
}

#[tokio::test]
async fn cli_jobs_lists_one_state_up_to_its_limit() {
    let service = Service::start(CONFIG).await;
    let jobs = (0..3).map(|i| json!({"name": format!("j{i}")})).collect();
    let ids = bulk(&service, "email", jobs).await;
    service
        .api
        .add(
            "email",
            json!({"name": "later", "options": {"delay_ms": 3_600_000}}),
        )
        .await;

    let listed = json_of(&service, &["jobs", "email", "--limit", "2"]);
    assert_eq!(listed["state"], "waiting");
    let names: Vec<&str> = listed["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["j0", "j1"]);
    let listed = json_of(&service, &["jobs", "email", "--offset", "2"]);
    assert_eq!(listed["jobs"][0]["id"], ids[2].as_str());
    let listed = json_of(&service, &["jobs", "email", "--state", "delayed"]);
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1));
    let listed = json_of(&service, &["jobs", "email", "--state", "failed"]);
    assert_eq!(listed["jobs"], json!([]));

    // The server's limit, told by the server.
    let err = failure(&service, &["jobs", "email", "--limit", "5000"], 1);
    assert!(err.contains("limit: must be 1 to 1000"), "{err}");
    // A state no job has is refused before any call.
    let err = failure(&service, &["jobs", "email", "--state", "bogus"], 2);
    assert!(err.contains("possible values"), "{err}");
}

#[tokio::test]
async fn cli_retry_rm_pause_and_resume_do_what_they_say() {
    let service = Service::start(CONFIG).await;
    let api = &service.api;
    let id = bulk(&service, "export", vec![failing(0)]).await.remove(0);
    api.wait_state("export", &id, "failed").await;

    let answer = json_of(&service, &["retry", "export", &id]);
    assert_eq!(answer, json!({"id": id, "state": "waiting"}));
    // It runs again, and fails again: two attempts.
    eventually("the retried job's second attempt", || async {
        let job = api.job("export", &id).await;
        (job["state"] == "failed" && common::outcomes(&job).len() == 2).then_some(())
    })
    .await;
    let err = failure(&service, &["retry", "export", "no-such-job"], 1);
    assert!(err.contains("not found"), "{err}");

    let answer = json_of(&service, &["rm", "export", &id]);
    assert_eq!(answer, json!({"id": id, "removed": true}));
    let (status, _) = api.get(&format!("/api/queues/export/jobs/{id}")).await;
    assert_eq!(status, 404);
    let err = failure(&service, &["rm", "export", &id], 1);
    assert!(
        err.contains(&format!("no job '{id}' in queue 'export'")),
        "{err}"
    );

    let answer = json_of(&service, &["pause", "email"]);
    assert_eq!(answer, json!({"name": "email", "paused": true}));
    let (_, queue) = api.get("/api/queues/email").await;
    assert_eq!(queue["paused"], true);
    let answer = json_of(&service, &["resume", "email"]);
    assert_eq!(answer, json!({"name": "email", "paused": false}));
    let (_, queue) = api.get("/api/queues/email").await;
    assert_eq!(queue["paused"], false);

    let err = failure(&service, &["pause", "nope"], 1);
    assert!(err.contains("no queue named 'nope'"), "{err}");
}

#[tokio::test]
async fn cli_retry_all_moves_failed_jobs_in_bounded_calls() {
    let service = Service::start(CONFIG).await;
    bulk(&service, "export", (0..1_500).map(failing).collect()).await;
    wait_count(&service, "export", "failed", 1_500).await;
    // Paused, the retried jobs stay where retry puts them, to be counted.
    json_of(&service, &["pause", "export"]);

    let answer = json_of(
        &service,
        &[
            "retry-all",
            "export",
            "--state",
            "failed",
            "--limit",
            "1200",
        ],
    );
    assert_eq!(
        answer,
        json!({"queue": "export", "retried": 1_200, "more": true})
    );
    let counts = service.api.counts("export").await;
    assert_eq!(
        (counts["paused"].as_u64(), counts["failed"].as_u64()),
        (Some(1_200), Some(300))
    );
    let answer = json_of(&service, &["retry-all", "export"]);
    assert_eq!(
        answer,
        json!({"queue": "export", "retried": 300, "more": false})
    );
    let counts = service.api.counts("export").await;
    assert_eq!(
        (counts["paused"].as_u64(), counts["failed"].as_u64()),
        (Some(1_500), Some(0))
    );
    let err = failure(
        &service,
        &["retry-all", "export", "--state", "completed"],
        2,
    );
    assert!(err.contains("possible values: failed"), "{err}");
}

#[tokio::test]
async fn cli_clean_removes_old_jobs_of_one_state() {
    let service = Service::start(CONFIG).await;
    let jobs = (0..3)
        .map(|i| json!({"name": "ok", "data": {"format": "csv", "records": [], "output_key": format!("ok-{i}.csv")}}))
        .collect();
    bulk(&service, "export", jobs).await;
    wait_count(&service, "export", "completed", 3).await;

    let clean = |older: &str, limit: Option<&str>| {
        let mut args = vec![
            "clean",
            "export",
            "--state",
            "completed",
            "--older-than",
            older,
        ];
        if let Some(limit) = limit {
            args.extend(["--limit", limit]);
        }
        json_of(&service, &args)["cleaned"].clone()
    };
    assert_eq!(clean("1h", None), 0, "none is that old");
    assert_eq!(clean("0s", Some("2")), 2);
    assert_eq!(clean("0s", None), 1);
    assert_eq!(service.api.counts("export").await["completed"], 0);

    let err = failure(
        &service,
        &["clean", "export", "--state", "active", "--older-than", "0s"],
        2,
    );
    assert!(err.contains("possible values"), "{err}");
    let err = failure(
        &service,
        &[
            "clean",
            "export",
            "--state",
            "failed",
            "--older-than",
            "soon",
        ],
        2,
    );
    assert!(err.contains("not a duration"), "{err}");
}

#[tokio::test]
async fn cli_drain_removes_ready_jobs_and_delayed_ones_with_the_flag() {
    let service = Service::start(CONFIG).await;
    let ready = (0..1_500).map(|i| json!({"name": format!("w{i}")}));
    let later =
        (0..2).map(|i| json!({"name": format!("d{i}"), "options": {"delay_ms": 3_600_000}}));
    let prioritized = json!({"name": "p", "options": {"priority": 2}});
    bulk(
        &service,
        "email",
        ready.chain(later).chain([prioritized]).collect(),
    )
    .await;

    let answer = json_of(&service, &["drain", "email"]);
    assert_eq!(
        answer,
        json!({"queue": "email", "drained": 1_501, "more": false})
    );
    let counts = service.api.counts("email").await;
    assert_eq!(
        (counts["waiting"].as_u64(), counts["delayed"].as_u64()),
        (Some(0), Some(2))
    );
    let answer = json_of(&service, &["drain", "email", "--delayed"]);
    assert_eq!(
        answer,
        json!({"queue": "email", "drained": 2, "more": false})
    );
    assert_eq!(total(&service, "email").await, 0);
}

#[tokio::test]
async fn cli_enqueue_takes_every_job_option() {
    let service = Service::start(CONFIG).await;
    let out = service.cli(&[
        "enqueue",
        "email",
        "welcome",
        "--data",
        r#"{"to": "a@b.c"}"#,
        "--delay",
        "1h",
        "--priority",
        "5",
        "--attempts",
        "7",
        "--backoff",
        "exponential:2s",
        "--backoff-max",
        "1m",
        "--backoff-jitter",
        "0.5",
        "--timeout",
        "30s",
        "--remove-on-complete",
        "count=10,age=1d",
        "--remove-on-fail",
        "true",
        "--lifo",
        "--job-id",
        "welcome-7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "welcome-7", "the bare id");
    let job = service.api.job("email", "welcome-7").await;
    assert_eq!(job["data"], json!({"to": "a@b.c"}));
    assert_eq!(
        job["options"],
        json!({
            "job_id": "welcome-7",
            "delay_ms": 3_600_000,
            "priority": 5,
            "attempts": 7,
            "backoff": {"type": "exponential", "delay_ms": 2_000, "jitter": 0.5, "max_delay_ms": 60_000},
            "timeout_ms": 30_000,
            "remove_on_complete": {"count": 10, "age_ms": 86_400_000},
            "remove_on_fail": true,
            "lifo": true,
        })
    );
    let fixed = json_of(
        &service,
        &[
            "enqueue",
            "email",
            "again",
            "--backoff",
            "fixed:5s",
            "--remove-on-fail",
            "20",
            "--output",
            "json",
        ],
    );
    assert_eq!(fixed["created"], true);
    let id = fixed["id"].as_str().expect("id");
    let job = service.api.job("email", id).await;
    assert_eq!(
        job["options"]["backoff"],
        json!({"type": "fixed", "delay_ms": 5_000, "jitter": 0.0})
    );
    assert_eq!(job["options"]["remove_on_fail"], 20);

    // A bad value is told as the server tells it, and nothing is sent.
    let before = service.api.counts("email").await;
    let err = failure(&service, &["enqueue", "email", "x", "--priority", "-1"], 1);
    assert!(err.contains("options.priority"), "{err}");
    let err = failure(
        &service,
        &[
            "enqueue",
            "email",
            "x",
            "--backoff",
            "fixed:1s",
            "--backoff-max",
            "1m",
        ],
        1,
    );
    assert!(err.contains("--backoff-max"), "{err}");
    let err = failure(
        &service,
        &["enqueue", "email", "x", "--backoff", "linear:1s"],
        2,
    );
    assert!(err.contains("fixed or exponential"), "{err}");
    assert_eq!(service.api.counts("email").await, before);
}

#[tokio::test]
async fn cli_enqueue_file_adds_100000_jobs() {
    let service = Service::start(CONFIG).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobs.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for i in 0..100_000 {
        // Every thousandth line sets its own attempts; the others take the command line's.
        let line = if i % 1_000 == 0 {
            json!({"name": "welcome", "data": {"user": i}, "options": {"attempts": 5}})
        } else {
            json!({"name": "welcome", "data": {"user": i}})
        };
        writeln!(file, "{line}").expect("write");
        if i == 50_000 {
            writeln!(file).expect("a blank line is skipped");
        }
    }
    file.flush().expect("flush");
    drop(file);
    let path = path.to_str().expect("a UTF-8 path");

    let answer = json_of(
        &service,
        &["enqueue", "email", "--file", path, "--attempts", "2"],
    );
    assert_eq!(
        answer,
        json!({"queue": "email", "file": path, "added": 100_000, "existing": 0})
    );
    let counts = service.api.counts("email").await;
    assert_eq!(counts["waiting"], 100_000, "{counts}");
    assert_eq!(total(&service, "email").await, 100_000);
    // In line order, each with its own options over the command line's.
    let first = service.api.job("email", "1").await;
    assert_eq!(
        (&first["data"], &first["options"]["attempts"]),
        (&json!({"user": 0}), &json!(5))
    );
    let second = service.api.job("email", "2").await;
    assert_eq!(
        (&second["data"], &second["options"]["attempts"]),
        (&json!({"user": 1}), &json!(2))
    );
    let last = service.api.job("email", "100000").await;
    assert_eq!(last["data"], json!({"user": 99_999}));
}

#[tokio::test]
async fn cli_enqueue_file_with_bad_lines_sends_nothing() {
    let service = Service::start(CONFIG).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobs.jsonl");
    let mut text = String::new();
    for i in 1..=5_000 {
        let line = match i {
            4_321 => json!({"name": "x", "colour": "red"}).to_string(),
            4_500 => json!({"name": "x", "options": {"attempts": 0}}).to_string(),
            4_999 => "{not json".to_string(),
            _ => json!({"name": "ok", "data": {"i": i}}).to_string(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write");
    let path = path.to_str().expect("a UTF-8 path");

    let err = failure(&service, &["enqueue", "email", "--file", path], 1);
    assert!(err.contains("3 bad line(s), so nothing was sent"), "{err}");
    assert!(err.contains("line 4321: column"), "{err}");
    assert!(err.contains("unknown field `colour`"), "{err}");
    assert!(err.contains("line 4500: options.attempts"), "{err}");
    assert!(err.contains("line 4999: column"), "{err}");
    assert_eq!(total(&service, "email").await, 0, "nothing was sent");

    let err = failure(
        &service,
        &["enqueue", "email", "--file", "/no/such/file.jsonl"],
        1,
    );
    assert!(err.contains("/no/such/file.jsonl"), "{err}");
    // A name and a file are one too many.
    let err = failure(&service, &["enqueue", "email", "x", "--file", path], 2);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[tokio::test]
async fn cli_enqueue_file_says_which_lines_were_added_when_the_server_refuses_one() {
    // A small body limit: batches are halved until they fit, and line 301 never fits.
    let service = Service::start(&format!("{CONFIG}[http]\nmax_body_bytes = 4096\n")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobs.jsonl");
    let mut text = String::new();
    for i in 1..=400 {
        let data = if i == 301 {
            "x".repeat(5_000)
        } else {
            i.to_string()
        };
        text.push_str(&json!({"name": "j", "data": data}).to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write");
    let path = path.to_str().expect("a UTF-8 path");

    let err = failure(&service, &["enqueue", "email", "--file", path], 1);
    assert!(err.contains("413"), "{err}");
    assert!(
        err.contains(
            "lines 1 to 300 were added (300 jobs); line 301 and those after it were not added"
        ),
        "{err}"
    );
    let counts = service.api.counts("email").await;
    assert_eq!(counts["waiting"], 300, "{counts}");
    let last = service.api.job("email", "300").await;
    assert_eq!(last["data"], "300");
}

#[tokio::test]
async fn cli_prints_json_off_a_terminal_and_tables_when_asked() {
    let service = Service::start(CONFIG).await;
    let id = service.api.add("email", json!({"name": "welcome"})).await;
    let job = service.api.job("email", &id).await;
    let created = job["created_at"].as_u64().expect("created_at").to_string();

    for args in [
        vec!["stats"],
        vec!["stats", "email"],
        vec!["job", "email", &id],
        vec!["jobs", "email"],
    ] {
        let shown = json_of(&service, &args);
        assert!(shown.is_object() || shown.is_array(), "{args:?}: {shown}");
        let mut explicit = args.clone();
        explicit.extend(["--output", "json"]);
        assert_eq!(json_of(&service, &explicit), shown, "{args:?}");
    }
    assert_eq!(
        json_of(&service, &["job", "email", &id])["created_at"],
        job["created_at"]
    );

    // Tables: local dates, never epoch milliseconds.
    let out = service.cli(&["jobs", "email", "--output", "table"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("CREATED") && table.contains("welcome"),
        "{table}"
    );
    assert!(!table.contains(&created), "{table}");
    assert!(serde_json::from_str::<Value>(&table).is_err(), "{table}");
    let out = service.cli(&["job", "email", &id, "-o", "table"]);
    let table = stdout(&out);
    let date = chrono_like_date(&table);
    assert!(date, "a local date in:\n{table}");
    assert!(!table.contains(&created), "{table}");
    let out = service.cli(&["stats", "-o", "table"]);
    let table = stdout(&out);
    assert!(
        table.contains("QUEUE") && table.contains("email"),
        "{table}"
    );
    let out = service.cli(&["drain", "email", "-o", "table"]);
    assert_eq!(stdout(&out).trim(), "removed 1 job from email (ready)");
}

/// Whether `text` holds a date and time such as `2025-03-01 14:03:07`.
fn chrono_like_date(text: &str) -> bool {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| {
            let (d, t) = (w[0].as_bytes(), w[1].as_bytes());
            d.len() == 10
                && d[4] == b'-'
                && d[7] == b'-'
                && t.len() == 8
                && t[2] == b':'
                && t[5] == b':'
        })
}

#[test]
fn cli_completions_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(common::binary())
            .args(["completions", shell])
            .output()
            .expect("run the CLI");
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        for command in [
            "enqueue",
            "retry-all",
            "clean",
            "drain",
            "jobs",
            "completions",
        ] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
    let out = std::process::Command::new(common::binary())
        .args(["completions", "tcsh"])
        .output()
        .expect("run the CLI");
    assert_eq!(out.status.code(), Some(2));
}

/// `wait` shows the job once it finished; `metrics` shows the seed's aggregate, a queue's
/// history and the Prometheus text.
#[tokio::test]
async fn cli_wait_and_metrics_show_what_happened() {
    let service = Service::start(CONFIG).await;
    let id = service
        .api
        .add(
            "export",
            json!({"name": "r", "data": {"format": "csv", "records": [{"a": 1}]}}),
        )
        .await;
    let job = json_of(&service, &["wait", "export", &id, "--timeout", "30s"]);
    assert_eq!(job["state"], "completed", "{job}");
    // A job nothing runs: the wait runs out, and says so.
    let held = service.api.add("email", json!({"name": "x"})).await;
    let said = failure(&service, &["wait", "email", &held, "--timeout", "50ms"], 1);
    assert!(said.contains("did not finish"), "{said}");

    let aggregate = json_of(&service, &["metrics"]);
    assert_eq!(aggregate["queues"]["email"]["waiting"], 1, "{aggregate}");
    assert_eq!(aggregate["queues"]["export"]["completed"], 1, "{aggregate}");
    let table = service.cli(&["metrics", "--output", "table"]);
    assert!(stdout(&table).contains("COMPLETED"), "{}", stdout(&table));
    let history = eventually("the history to show the job", || async {
        let h = json_of(&service, &["metrics", "export", "--since", "10m"]);
        (h["completed"] == 1).then_some(h)
    })
    .await;
    assert_eq!(history["minutes"].as_array().map(Vec::len), Some(11));
    let prometheus = service.cli(&["metrics", "--prometheus"]);
    assert!(
        stdout(&prometheus)
            .contains("stagehand_jobs_total{queue=\"export\",name=\"r\",outcome=\"completed\"} 1"),
        "{}",
        stdout(&prometheus)
    );
    let bad = failure(&service, &["metrics", "nope"], 1);
    assert!(bad.contains("unknown_queue"), "{bad}");
}

/// `events` prints each event as a JSON line with its cursor, and `--after` that cursor
/// starts right after it.
#[tokio::test]
async fn cli_events_follows_and_resumes_after_a_cursor() {
    use std::io::{BufRead, BufReader};
    let service = Service::start(CONFIG).await;
    let mut child = std::process::Command::new(common::binary())
        .args([
            "events",
            "--queue",
            "export",
            "--type",
            "completed",
            "--output",
            "json",
        ])
        .env("STAGEHAND_SERVER", &service.api.base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run events");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    // Jobs are added until the follower has seen one: it subscribes at its own pace.
    let mut seen = Vec::new();
    let mut ids = Vec::new();
    while seen.len() < 3 {
        ids.push(
            service
                .api
                .add(
                    "export",
                    json!({"name": "r", "data": {"format": "csv", "records": [{"a": 1}]}}),
                )
                .await,
        );
        let patience = std::time::Duration::from_secs(if seen.is_empty() { 1 } else { 30 });
        if let Ok(Some(v)) = tokio::time::timeout(patience, rx.recv()).await {
            seen.push(v);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.iter().all(|e| e["event"] == "completed"), "{seen:?}");
    let cursor = seen[1]["cursor"].as_str().expect("a cursor").to_string();
    let mut again = std::process::Command::new(common::binary())
        .args([
            "events",
            "--queue",
            "export",
            "--type",
            "completed",
            "--output",
            "json",
            "--after",
            &cursor,
        ])
        .env("STAGEHAND_SERVER", &service.api.base)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run events --after");
    let mut lines = BufReader::new(again.stdout.take().expect("stdout")).lines();
    let next: Value =
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("JSON");
    let _ = again.kill();
    let _ = again.wait();
    assert_eq!(
        next["id"], seen[2]["id"],
        "the first event after the cursor"
    );
    let refused = failure(&service, &["events", "--type", "exploded"], 1);
    assert!(refused.contains("bad_request"), "{refused}");
}

/// A file whose lines name one `job_id` thrice adds one job, and says the others existed; a
/// reader that goes away early ends the CLI quietly.
#[tokio::test]
async fn cli_file_counts_existing_jobs_and_a_closed_pipe_is_quiet() {
    let service = Service::start(CONFIG).await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("dup.jsonl");
    let line = r#"{"name": "x", "options": {"job_id": "dup1"}}"#;
    std::fs::write(&path, format!("\u{feff}{line}\n{line}\n{line}\n")).expect("write");
    let answer = json_of(
        &service,
        &[
            "enqueue",
            "email",
            "--file",
            path.to_str().expect("path"),
            "--output",
            "json",
        ],
    );
    assert_eq!(
        (answer["added"].as_u64(), answer["existing"].as_u64()),
        (Some(1), Some(2)),
        "{answer}"
    );
    assert_eq!(service.api.counts("email").await["waiting"], 1);

    let mut child = std::process::Command::new(common::binary())
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!said.contains("panicked"), "{said}");
    assert_eq!(out.status.code(), Some(0), "{said}");
}
