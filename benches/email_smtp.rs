//! Email messages per second through the SMTP client (a pool of 10 sessions, 10 sends at once)
//! to a local aiosmtpd (`tests/support/smtp_server.py`, Debian's `python3-aiosmtpd`). The
//! Python server is likely the slower side: this bounds what the client costs, it does not
//! measure a production MTA.
//!
//! `cargo bench --bench email_smtp`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lettre::Message;
use stagehand::processors::email::{Security, SmtpClient, SmtpConfig};

fn main() {
    let mut server = Command::new("/usr/bin/python3")
        .arg("tests/support/smtp_server.py")
        .arg("-")
        .arg("300")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("aiosmtpd");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    let port: u16 = line
        .trim()
        .trim_start_matches("PORT ")
        .parse()
        .expect("port");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let client = std::sync::Arc::new(SmtpClient::new(SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        credentials: None,
        pool_max: 10,
        idle: Duration::from_secs(60),
        timeout: Duration::from_secs(10),
    }));
    let message = Message::builder()
        .from("shop <noreply@shop.test>".parse().expect("from"))
        .to("ann@shop.test".parse().expect("to"))
        .subject("Your order")
        .body("Thanks for your order.\n".repeat(20))
        .expect("message");
    let bytes = std::sync::Arc::new(message.formatted());
    let from: lettre::Address = "noreply@shop.test".parse().expect("from");
    let to: Vec<lettre::Address> = vec!["ann@shop.test".parse().expect("to")];
    for round in 1..=3 {
        let total = 2000;
        let start = Instant::now();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..10 {
                let (client, bytes, from, to) =
                    (client.clone(), bytes.clone(), from.clone(), to.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..total / 10 {
                        client.send(Some(&from), &to, &bytes).await.expect("sent");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "round {round}: {total} messages in {secs:.2} s: {:.0} messages/s",
            total as f64 / secs
        );
    }
    let _ = server.kill();
    let _ = server.wait();
}
