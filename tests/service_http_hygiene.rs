//! HTTP hygiene over real HTTP: a wrong method is a JSON 405 with `Allow`, and a body that
//! trickles in is cut off with a JSON 408 after `http.request_timeout_ms`, while `/health`
//! keeps answering.

mod common;

use std::time::Duration;

use common::Service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_wrong_method_is_a_405_naming_the_allowed_ones() {
    let service = Service::start("").await;
    let client = reqwest::Client::new();
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/api/queues/email/jobs", "GET, POST"),
        (reqwest::Method::GET, "/api/queues/email/pause", "POST"),
        (
            reqwest::Method::POST,
            "/api/queues/email/jobs/7",
            "GET, DELETE",
        ),
    ] {
        let r = client
            .request(method.clone(), format!("{}{path}", service.api.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let body: serde_json::Value = r.json().await.expect("a JSON body");
        assert_eq!(body["error"], "method_not_allowed", "{body}");
    }
    // `bulk` is a job id like any other for GET and DELETE.
    let (status, _) = service
        .api
        .post(
            "/api/queues/email/jobs",
            &serde_json::json!({"name": "b", "options": {"job_id": "bulk"}}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, job) = service.api.get("/api/queues/email/jobs/bulk").await;
    assert_eq!((status, job["id"].as_str()), (200, Some("bulk")));
    assert_eq!(
        service.api.delete("/api/queues/email/jobs/bulk").await.0,
        200
    );
    let (status, body) = service.api.get("/no/such/route").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
}

/// Sends a request head promising a body, then the body one byte at a time, slowly, until the
/// server answers (or 30 bytes went); returns what it answered.
async fn trickle(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = "POST /api/queues/email/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    for _ in 0..30 {
        if stream.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_with_408() {
    let service = Service::start("[http]\nrequest_timeout_ms = 1000\n").await;
    let port = service.port;
    let slow: Vec<_> = (0..20).map(|_| tokio::spawn(trickle(port))).collect();
    assert_eq!(
        service.api.get("/health").await.0,
        200,
        "health answers meanwhile"
    );
    for answer in slow {
        let answer = answer.await.expect("join");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
    }
}
