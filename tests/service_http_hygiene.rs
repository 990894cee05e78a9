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

/// Sends `request` on a new connection and reads until the server closes it.
async fn exchange(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // The server may refuse before reading everything; its answer is what matters.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and the JSON body of the last response in `answer`.
fn last_response(answer: &str) -> (u16, serde_json::Value) {
    // A response starts the answer or follows a JSON body.
    let (start, _) = answer
        .match_indices("HTTP/1.1 ")
        .filter(|(i, _)| *i == 0 || answer[..*i].ends_with('}'))
        .last()
        .expect("a response");
    let last = &answer[start..];
    let status = last[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("no status in {answer:?}"));
    let body = &last[last.find("\r\n\r\n").expect("a head") + 4..];
    (status, serde_json::from_str(body).expect("a JSON body"))
}

#[tokio::test]
async fn a_refused_request_head_is_answered_in_json() {
    let service = Service::start("").await;
    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "A: b\r\n".repeat(100)
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(20_000));
    let cases: [(&[u8], u16, &str); 6] = [
        (huge_header.as_bytes(), 431, "header_too_large"),
        (many_headers.as_bytes(), 431, "header_too_large"),
        (long_uri.as_bytes(), 414, "uri_too_long"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
        (b"GET /health HTTP/1.1\r\n\r\n", 400, "bad_request"),
        (
            b"POST /api/queues/email/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
            400,
            "bad_request",
        ),
    ];
    for (request, status, error) in cases {
        let answer = exchange(service.port, request).await;
        let (got, body) = last_response(&answer);
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{answer}"
        );
        assert!(!body["detail"].as_str().unwrap_or("").is_empty(), "{body}");
    }
    assert_eq!(service.api.get("/health").await.0, 200);
    assert_eq!(
        service.api.get("/api/queues/email").await.1["counts"]["waiting"],
        0
    );
}

#[tokio::test]
async fn requests_before_a_refused_head_on_one_connection_are_answered() {
    let service = Service::start(common::EMAIL_WAITS).await;
    let job = r#"{"name":"n","data":{}}"#;
    let chunked = format!(
        "POST /api/queues/email/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{job}\r\n0\r\n\r\n",
        job.len()
    );
    let sized = format!(
        "POST /api/queues/email/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{job}",
        job.len()
    );
    let request = format!(
        "{chunked}{sized}GET /health HTTP/1.1\r\nHost: x\r\n\r\nBAD\x01 / HTTP/1.1\r\n\r\n"
    );
    let answer = exchange(service.port, request.as_bytes()).await;
    assert_eq!(answer.matches("HTTP/1.1 201").count(), 2, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 1, "{answer}");
    let (status, body) = last_response(&answer);
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    assert_eq!(
        service.api.get("/api/queues/email").await.1["counts"]["waiting"],
        2
    );
}

#[tokio::test]
async fn a_head_that_trickles_in_is_cut_off_with_408() {
    let service = Service::start("[http]\nrequest_timeout_ms = 1000\n").await;
    let mut stream = TcpStream::connect(("127.0.0.1", service.port))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .expect("part of a head");
    // The server answers and closes by itself; the client sends nothing more.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let (status, body) = last_response(&String::from_utf8_lossy(&answer));
    assert_eq!(
        (status, body["error"].as_str()),
        (408, Some("request_timeout")),
        "{body}"
    );
    assert_eq!(service.api.get("/health").await.0, 200);
}

/// Sends `request`, then reads until the server closes, failing the test if it never does.
async fn exchange_closed(port: u16, request: &[u8]) -> String {
    tokio::time::timeout(common::PATIENCE, exchange(port, request))
        .await
        .expect("the server closed the connection")
}

/// The status codes of every response in `answer`, in order.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter(|(i, _)| {
            *i == 0 || answer[..*i].ends_with('}') || answer[..*i].ends_with("\r\n\r\n")
        })
        .filter_map(|(i, _)| answer.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn no_request_slips_past_the_guard_inside_another() {
    let service = Service::start("").await;
    let job = br#"{"name":"x","data":{}}"#;
    let long_uri = format!(
        "GET /health?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(20_000)
    );
    // A bare LF after the last chunk starts a trailer for actix-http, which runs to the next
    // empty line: the "request" inside it is trailer, and what follows is judged.
    let mut trailer = b"POST /api/queues/email/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    trailer.extend_from_slice(format!("{:x}\r\n", job.len()).as_bytes());
    trailer.extend_from_slice(job);
    trailer.extend_from_slice(
        b"\r\n0\r\n\nPOST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
    );
    trailer.extend_from_slice(long_uri.as_bytes());
    // `websocket` followed by a non-ASCII space is no upgrade for actix-http.
    let mut upgrade =
        b"GET /health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\xc2\xa0\r\n\r\n".to_vec();
    upgrade.extend_from_slice(long_uri.as_bytes());
    for (request, expected) in [(trailer, vec![201, 414]), (upgrade, vec![200, 414])] {
        let answer = exchange_closed(service.port, &request).await;
        assert_eq!(
            statuses(&answer),
            expected,
            "{}",
            &answer[..answer.len().min(600)]
        );
    }
}

#[tokio::test]
async fn connections_end_when_a_body_or_a_refused_client_lingers() {
    let service = Service::start("[http]\nrequest_timeout_ms = 1000\n").await;
    // A chunked body the route never reads, left unfinished.
    for path in ["/health", "/nope", "/api/queues/email/jobs"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n"
        );
        exchange_closed(service.port, request.as_bytes()).await;
    }
    // Blank lines alone, first on a connection: they start a head, which never comes.
    exchange_closed(service.port, b"\r\n").await;
    // A refused client that keeps sending.
    let mut stream = TcpStream::connect(("127.0.0.1", service.port))
        .await
        .expect("connect");
    stream
        .write_all(b"GARBAGE\x01\r\n\r\n")
        .await
        .expect("send");
    let trickle = async {
        loop {
            if stream.write_all(b"x").await.is_err() {
                return;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(common::PATIENCE, trickle)
        .await
        .expect("the server closed on the trickling client");
}

#[tokio::test]
async fn garbage_is_refused_at_once_and_a_cut_head_is_a_400() {
    // A timeout no test waits for: a refusal must not depend on it.
    let service = Service::start("[http]\nrequest_timeout_ms = 600000\n").await;
    let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    let answer = exchange_closed(service.port, tls_hello).await;
    let (status, body) = last_response(&answer);
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));

    let mut stream = TcpStream::connect(("127.0.0.1", service.port))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("part of a head");
    stream.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    tokio::time::timeout(common::PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .expect("read");
    let (status, body) = last_response(&String::from_utf8_lossy(&answer));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("before the request head was complete")
    );
}

#[tokio::test]
async fn connections_past_the_limit_wait_their_turn() {
    let service = Service::start("[http]\nworkers = 1\nmax_connections = 1\n").await;
    // One connection takes the only place (its head half sent, so it stays).
    let mut first = TcpStream::connect(("127.0.0.1", service.port))
        .await
        .expect("connect");
    first
        .write_all(b"GET /health HTTP/1.1\r\nHo")
        .await
        .expect("send");
    let port = service.port;
    let mut second = tokio::spawn(async move {
        exchange(
            port,
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
    });
    // It cannot be served while the first holds the place.
    let early = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
    assert!(early.is_err(), "served past the limit");
    first
        .write_all(b"st: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("the rest");
    let mut answer = Vec::new();
    first.read_to_end(&mut answer).await.expect("read");
    let answer = tokio::time::timeout(common::PATIENCE, second)
        .await
        .expect("served once a place is free")
        .expect("join");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
