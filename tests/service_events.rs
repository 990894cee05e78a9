//! `GET /api/events` (Server-Sent Events) and `GET .../jobs/{id}/wait` through the real
//! binary: every event of a thousand jobs run by two processes on one Redis, in order per job;
//! a reconnect with `Last-Event-ID` that misses nothing; filters; bad input.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::redis::RedisServer;
use common::{Service, eventually_within};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// One SSE frame: its id (if any), event name and data.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: Option<String>,
    event: String,
    data: Value,
}

fn parse_frame(text: &str) -> Option<Frame> {
    let mut frame = Frame {
        id: None,
        event: "message".into(),
        data: Value::Null,
    };
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            frame.id = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("event: ") {
            frame.event = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        }
    }
    if data.is_empty() {
        return None; // a comment (keepalive)
    }
    frame.data = serde_json::from_str(&data).expect("data is JSON");
    Some(frame)
}

/// Reads `path` as an event stream into `frames` until the server ends it; returns how it ended.
async fn read_stream(base: &str, path: &str, last_id: Option<&str>, frames: &Mutex<Vec<Frame>>) {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{base}{path}"));
    if let Some(id) = last_id {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.expect("connect");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let text: String = buffer.drain(..end + 2).collect();
            if let Some(frame) = parse_frame(&text) {
                frames.lock().push(frame);
            }
        }
    }
}

/// Follows `path` for good, as a browser's EventSource does: when the stream ends it
/// reconnects with the last id it saw. Returns the frames seen so far and the reconnect count.
fn follow(base: String, path: String) -> (Arc<Mutex<Vec<Frame>>>, Arc<Mutex<u32>>) {
    let frames = Arc::new(Mutex::new(Vec::new()));
    let reconnects = Arc::new(Mutex::new(0));
    let (f, r) = (Arc::clone(&frames), Arc::clone(&reconnects));
    tokio::spawn(async move {
        loop {
            let last = f.lock().iter().rev().find_map(|fr: &Frame| fr.id.clone());
            read_stream(&base, &path, last.as_deref(), &f).await;
            *r.lock() += 1;
        }
    });
    (frames, reconnects)
}

fn job_events(frames: &[Frame]) -> HashMap<String, Vec<String>> {
    let mut per_job: HashMap<String, Vec<String>> = HashMap::new();
    for frame in frames {
        let Some(id) = frame.data["id"].as_str() else {
            continue;
        };
        let mut kind = frame.event.clone();
        if kind == "progress" {
            kind = format!("progress:{}", frame.data["value"]);
        }
        per_job.entry(id.to_string()).or_default().push(kind);
    }
    per_job
}

#[tokio::test]
async fn every_event_of_a_thousand_jobs_on_two_processes_in_order_and_resumable() {
    let redis = RedisServer::start();
    let config = format!(
        "[redis]\nurl = \"{}\"\n[queues.export]\nconcurrency = 8\n[queues.export.defaults]\nremove_on_complete = false\n",
        redis.url()
    );
    let a = Service::start(&config).await;
    let b = Service::start(&config).await;
    let (frames, reconnects) = follow(a.api.base.clone(), "/api/events?queue=export".into());
    // The stream is open once its first keepalive-free frame can arrive: add a probe job and
    // wait for its events, so none of the thousand can come before the subscription.
    let probe = a
        .api
        .add(
            "export",
            json!({"name": "probe", "data": {"format": "csv", "records": [{"a": 1}]}}),
        )
        .await;
    eventually_within(
        std::time::Duration::from_secs(30),
        "the probe's events",
        || async {
            job_events(&frames.lock())
                .contains_key(&probe)
                .then_some(())
        },
    )
    .await;
    // Five hundred through each process, in bulks of a hundred.
    let mut ids = Vec::new();
    for (i, service) in [&a, &b, &a, &b, &a, &b, &a, &b, &a, &b].iter().enumerate() {
        let jobs: Vec<Value> = (0..100)
            .map(|j| json!({"name": "row", "data": {"format": "csv", "records": [{"i": i * 100 + j}]}}))
            .collect();
        let (status, body) = service
            .api
            .post("/api/queues/export/jobs/bulk", &json!({ "jobs": jobs }))
            .await;
        assert_eq!(status, 201, "{body}");
        ids.extend(
            body["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_str().expect("id").to_string()),
        );
    }
    eventually_within(
        std::time::Duration::from_secs(120),
        "every job's completed event",
        || async {
            let per_job = job_events(&frames.lock());
            ids.iter()
                .all(|id| {
                    per_job
                        .get(id)
                        .is_some_and(|k| k.last().map(String::as_str) == Some("completed"))
                })
                .then_some(())
        },
    )
    .await;
    let seen = frames.lock().clone();
    let per_job = job_events(&seen);
    let expected = [
        "added",
        "active",
        "progress:0",
        "progress:10",
        "progress:90",
        "progress:100",
        "completed",
    ];
    for id in &ids {
        assert_eq!(per_job[id], expected, "job {id}");
    }
    // Both processes ran jobs (the events are not one process's own).
    let mut by_worker = HashMap::new();
    for id in ids.iter().take(200) {
        let job = a.api.job("export", id).await;
        let worker = job["history"][0]["worker"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let pid = worker.split(':').nth(1).unwrap_or("").to_string();
        *by_worker.entry(pid).or_insert(0) += 1;
    }
    assert_eq!(by_worker.len(), 2, "{by_worker:?}");

    // A reconnect from the middle gets exactly what followed, from the store's history.
    let cut = seen.len() / 2;
    let from = seen[cut].id.clone().expect("an id");
    let last = seen.last().and_then(|f| f.id.clone()).expect("an id");
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let resumed = Arc::clone(&resumed);
        let base = a.api.base.clone();
        tokio::spawn(async move {
            read_stream(&base, "/api/events?queue=export", Some(&from), &resumed).await;
        })
    };
    eventually_within(
        std::time::Duration::from_secs(30),
        "the resumed stream to reach the end",
        || async {
            resumed
                .lock()
                .iter()
                .any(|f| f.id.as_deref() == Some(last.as_str()))
                .then_some(())
        },
    )
    .await;
    reader.abort();
    let resumed = resumed.lock().clone();
    assert_eq!(resumed.len(), seen.len() - cut - 1);
    assert_eq!(resumed[..], seen[cut + 1..]);
    println!("reconnects while following: {}", reconnects.lock());
}

#[tokio::test]
async fn filters_wait_and_bad_input() {
    let service = Service::start("").await;
    let api = &service.api;
    let (frames, _) = follow(
        api.base.clone(),
        "/api/events?queue=export&type=completed,failed".into(),
    );
    let ok = api
        .add(
            "export",
            json!({"name": "ok", "data": {"format": "csv", "records": [{"a": 1}]}}),
        )
        .await;
    let bad = api
        .add(
            "export",
            json!({"name": "bad", "data": {"format": "csv", "nope": 1}}),
        )
        .await;
    // wait answers with the finished job.
    let (status, job) = api
        .get(&format!(
            "/api/queues/export/jobs/{ok}/wait?timeout_ms=30000"
        ))
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "completed");
    let (status, job) = api
        .get(&format!(
            "/api/queues/export/jobs/{bad}/wait?timeout_ms=30000"
        ))
        .await;
    assert_eq!(
        (status, job["state"].as_str()),
        (200, Some("failed")),
        "{job}"
    );
    eventually_within(
        std::time::Duration::from_secs(30),
        "both outcomes streamed",
        || async { (frames.lock().len() >= 2).then_some(()) },
    )
    .await;
    let mut kinds: Vec<(String, String)> = frames
        .lock()
        .iter()
        .map(|f| {
            (
                f.event.clone(),
                f.data["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [("completed".into(), ok), ("failed".into(), bad)],
        "only the types asked for"
    );

    // A job that cannot finish (its queue has no worker here): 408 after the timeout.
    let held = Service::start("[queues.export]\nprocessor = \"none\"\n").await;
    let id = held.api.add("export", json!({"name": "x"})).await;
    let (status, body) = held
        .api
        .get(&format!("/api/queues/export/jobs/{id}/wait?timeout_ms=50"))
        .await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(
        held.api.get("/api/queues/export/jobs/nope/wait").await.0,
        404
    );
    for bad in [
        "/api/queues/export/jobs/1/wait?timeout_ms=999999999",
        "/api/queues/export/jobs/1/wait?timeout=5",
        "/api/events?type=exploded",
        "/api/events?bogus=1",
    ] {
        let (status, body) = api.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(api.get("/api/events?queue=nope").await.0, 404);
    let response = reqwest::Client::new()
        .get(format!("{}/api/events", api.base))
        .header("Last-Event-ID", "export:not-a-position")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
}

/// A client that stops reading is cut off once its frames fill the server's bounded buffer:
/// the stream ends rather than growing, and the server serves on.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    use std::io::{Read, Write};
    let service = Service::start("[queues.export]\nprocessor = \"none\"\n").await;
    let addr = service.api.base.trim_start_matches("http://").to_string();
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let target: std::net::SocketAddr = addr.parse().expect("address");
    socket.connect(&target.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    write!(
        stream,
        "GET /api/events?queue=export HTTP/1.1\r\nHost: {addr}\r\n\r\n"
    )
    .expect("request");
    // The stream is open once the headers come back.
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).expect("headers");
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    // Sixty thousand events (about 9 MB of frames) while the client reads nothing.
    for _ in 0..6 {
        let jobs: Vec<Value> = (0..10_000).map(|_| json!({"name": "x"})).collect();
        let (status, body) = service
            .api
            .post("/api/queues/export/jobs/bulk", &json!({ "jobs": jobs }))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // The server gives up on it (its buffer full and no frame taken for a while)...
    eventually_within(
        std::time::Duration::from_secs(60),
        "the client cut off",
        || async { service.log().contains("cut off").then_some(()) },
    )
    .await;
    // ...so what was buffered arrives, then the end: far less than everything.
    let read = tokio::task::spawn_blocking(move || {
        let mut all = Vec::new();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .expect("timeout");
        stream.read_to_end(&mut all).map(|_| all.len())
    })
    .await
    .expect("join");
    let bytes = read.expect("the server ended the stream");
    assert!(
        bytes < 6_000_000,
        "{bytes} bytes: the slow client was not cut off"
    );
    assert_eq!(service.api.get("/health").await.0, 200);
}

/// Reads frames from `path` on `service` until `done` says so (or the stream ends).
async fn frames_until(
    base: &str,
    path: &str,
    last_id: Option<&str>,
    done: impl Fn(&[Frame]) -> bool + Send + 'static,
) -> Vec<Frame> {
    let frames = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let (frames, base, path, last_id) = (
            Arc::clone(&frames),
            base.to_string(),
            path.to_string(),
            last_id.map(str::to_string),
        );
        tokio::spawn(async move { read_stream(&base, &path, last_id.as_deref(), &frames).await })
    };
    eventually_within(std::time::Duration::from_secs(60), "the frames", || async {
        done(&frames.lock()).then_some(())
    })
    .await;
    reader.abort();
    frames.lock().clone()
}

/// Filters are checked: a queue named twice is followed once, an empty filter is refused, and
/// a cursor names queues that exist (only the followed ones are kept in the ids).
#[tokio::test]
async fn filters_and_cursors_are_checked() {
    let service = Service::start("[queues.export]\nprocessor = \"none\"\n").await;
    let api = &service.api;
    for bad in [
        "/api/events?queue=",
        "/api/events?queue=,",
        "/api/events?job=",
    ] {
        assert_eq!(api.get(bad).await.0, 400, "{bad}");
    }
    let response = reqwest::Client::new()
        .get(format!("{}/api/events?queue=export", api.base))
        .header("Last-Event-ID", "nosuch:1-0.0")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 404);
    let base = api.base.clone();
    let reader = tokio::spawn(async move {
        frames_until(&base, "/api/events?queue=export,export", None, |f| {
            f.len() >= 2
        })
        .await
    });
    // Added until the stream has subscribed and seen two.
    let mut frames = None;
    for _ in 0..50 {
        api.add("export", json!({"name": "x"})).await;
        if reader.is_finished() {
            frames = Some(reader.await.expect("reader"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let frames = frames.expect("two frames");
    let ids: Vec<&str> = frames
        .iter()
        .map(|f| f.data["id"].as_str().unwrap_or(""))
        .collect();
    assert_ne!(ids[0], ids[1], "each event once: {frames:?}");
}

/// A burst of ten thousand events reaches a client that reads, whole and once; a reconnect
/// ten thousand events back gets them all (read back from the history at the client's pace).
#[tokio::test]
async fn a_burst_and_a_long_resume_reach_a_reading_client_whole() {
    let service = Service::start("[queues.export]\nprocessor = \"none\"\n").await;
    let api = &service.api;
    // A first job, to know the stream is open (the probe's frame is awaited).
    let base = api.base.clone();
    let reader = tokio::spawn(async move {
        frames_until(&base, "/api/events?queue=export", None, |f| {
            f.len() >= 10_001
        })
        .await
    });
    let mut probes = 0;
    while probes < 100 {
        api.add("export", json!({"name": "probe"})).await;
        probes += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if probes >= 3 {
            break;
        }
    }
    let jobs: Vec<Value> = (0..10_000).map(|_| json!({"name": "x"})).collect();
    let (status, _) = api
        .post("/api/queues/export/jobs/bulk", &json!({ "jobs": jobs }))
        .await;
    assert_eq!(status, 201);
    let frames = reader.await.expect("reader");
    assert!(frames.iter().all(|f| f.event == "added"), "no error frame");
    let ids: std::collections::HashSet<&str> = frames
        .iter()
        .map(|f| f.data["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids.len(), frames.len(), "each once");
    // Resume from the first frame: everything after it, in order.
    let first = frames[0].id.clone().expect("id");
    let want = frames.len() - 1;
    let resumed = frames_until(
        &api.base,
        "/api/events?queue=export",
        Some(&first),
        move |f| f.len() >= want,
    )
    .await;
    assert_eq!(resumed[..want], frames[1..=want]);
}

/// A cursor the store has never reached (from before a restart of a memory store, or made up)
/// is told with a gap, and the stream then follows from now.
#[tokio::test]
async fn a_cursor_from_another_run_is_told_as_a_gap() {
    let service = Service::start("[queues.export]\nprocessor = \"none\"\n").await;
    let api = &service.api;
    for cursor in ["export:99999999-0.0", "export:1-1.0"] {
        let base = api.base.clone();
        let cursor = cursor.to_string();
        let reader = tokio::spawn(async move {
            frames_until(&base, "/api/events?queue=export", Some(&cursor), |f| {
                f.iter().any(|f| f.event == "added")
            })
            .await
        });
        let mut frames = None;
        for _ in 0..50 {
            api.add("export", json!({"name": "x"})).await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if reader.is_finished() {
                frames = Some(reader.await.expect("reader"));
                break;
            }
        }
        let frames = frames.expect("frames");
        assert_eq!(frames[0].event, "gap", "{frames:?}");
        assert!(frames.iter().any(|f| f.event == "added"));
    }
}

/// A job removed as it finishes (its retention) is still answered by `wait`, from its event.
#[tokio::test]
async fn wait_answers_for_a_job_removed_as_it_finished() {
    let service = Service::start("").await;
    let api = &service.api;
    for (data, state) in [
        (json!({"format": "csv", "records": [{"a": 1}]}), "completed"),
        (json!({"format": "csv", "nope": 1}), "failed"),
    ] {
        let id = api
            .add(
                "export",
                json!({"name": "w", "data": data, "options": {"delay_ms": 300, "remove_on_complete": true, "remove_on_fail": true}}),
            )
            .await;
        let (status, body) = api
            .get(&format!(
                "/api/queues/export/jobs/{id}/wait?timeout_ms=30000"
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], state, "{body}");
        assert_eq!(body["removed"], true, "{body}");
    }
}
