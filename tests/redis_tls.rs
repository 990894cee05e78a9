//! `rediss://` with a password: the Redis store over TLS to a `redis-server` with a
//! self-signed certificate (`#insecure` skips verification of that test certificate).

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use stagehand_core::{NewJob, QueueStore, RedisStore, SettleResult};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_store_works_over_tls_with_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl could not make a test certificate");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let _server = Server(
        Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--tls-port",
                &port.to_string(),
                "--tls-auth-clients",
                "no",
                "--requirepass",
                "s3cret",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server"),
    );
    let url = format!("rediss://:s3cret@127.0.0.1:{port}/#insecure");
    let store = RedisStore::open(&url, "tls").await.expect("open");
    let start = Instant::now();
    let added = loop {
        match store
            .add(NewJob::new("secure", json!({"over": "tls"})))
            .await
        {
            Ok(added) => break added,
            Err(err) => {
                assert!(start.elapsed() < common::PATIENCE, "no TLS answer: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let active = store
        .fetch("w", 1, Duration::from_secs(30))
        .await
        .expect("fetch");
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].job.data.to_value(), json!({"over": "tls"}));
    let done = store
        .complete(&added.id, active[0].token, json!("ok"))
        .await
        .expect("complete");
    assert_eq!(done, SettleResult::Completed);

    let wrong = RedisStore::open(&format!("rediss://:nope@127.0.0.1:{port}/#insecure"), "tls")
        .await
        .expect("open is lazy");
    let refused = wrong
        .counts()
        .await
        .expect_err("a wrong password is refused");
    assert!(
        !refused.to_string().contains("nope"),
        "the password is not echoed: {refused}"
    );
}
