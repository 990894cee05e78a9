//! The `email` processor through the real binary against a real SMTP server (aiosmtpd, in
//! `tests/support/smtp_server.py`): what arrives, 4xx and 5xx replies, a server that drops
//! idle sessions, templates, and `.eml` files when no SMTP server is configured.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use common::{Service, eventually, python};
use serde_json::{Value, json};

/// A running aiosmtpd with the test's scripted behaviours.
struct Smtp {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Smtp {
    /// Starts the server; it closes a session idle for `idle_secs`.
    fn start(idle_secs: f64) -> Smtp {
        let dir = tempfile::tempdir().expect("dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(dir.path())
            .arg(idle_secs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd (apt-get install python3-aiosmtpd)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start: '{line}'"));
        Smtp { child, dir, port }
    }

    fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.path().join(n)).expect("message");
                serde_json::from_str(&text).expect("json")
            })
            .collect()
    }

    fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("events"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn toml(&self) -> String {
        format!(
            r#"
[processors.email]
smtp_url = "smtp://127.0.0.1:{port}"
tls = "none"
from = "Fashion Wallet <noreply@fashion.example>"

[processors.email.templates.welcome]
subject = "Welcome, {{{{ name }}}}"
text = "Hi {{{{ name }}}}, your wallet has {{{{ items | length }}}} looks."
html = "<p>Hi {{{{ name }}}}</p><ul>{{% for i in items %}}<li>{{{{ i }}}}</li>{{% endfor %}}</ul>"

[queues.email.defaults]
attempts = 3
backoff = {{ type = "fixed", delay_ms = 10 }}
remove_on_complete = false
remove_on_fail = false
"#,
            port = self.port
        )
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(service: &Service, data: Value, state: &str) -> Value {
    let id = service
        .api
        .add("email", json!({"name": "mail", "data": data}))
        .await;
    service.api.wait_state("email", &id, state).await
}

fn part<'a>(message: &'a Value, content_type: &str) -> &'a Value {
    message["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .find(|p| p["content_type"] == content_type)
        .unwrap_or_else(|| panic!("no {content_type} part in {message}"))
}

fn decoded(part: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(part["payload_b64"].as_str().expect("payload"))
        .expect("base64")
}

#[tokio::test]
async fn a_message_arrives_with_its_headers_bodies_and_attachments() {
    let smtp = Smtp::start(300.0);
    let service = Service::start(&smtp.toml()).await;
    let pdf = b"%PDF-1.4 an invoice\x00\xff\xfe binary".to_vec();
    let path = service.data_file("invoices/0042.pdf");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(&path, &pdf).expect("attachment");
    let job = send(
        &service,
        json!({
            "to": ["Ann Smith <ann@shop.test>"],
            "cc": "cc@shop.test",
            "bcc": ["audit@shop.test"],
            "reply_to": "help@fashion.example",
            "subject": "Your order",
            "text": "Thanks for your order.",
            "html": "<p>Thanks for your <b>order</b>.</p>",
            "attachments": [{"key": "invoices/0042.pdf", "filename": "Invoice 42.pdf"}],
            "headers": {"X-Campaign": "spring"}
        }),
        "completed",
    )
    .await;
    assert_eq!(job["progress"], 100);
    let result = &job["return_value"];
    assert_eq!(result["transport"], "smtp");
    assert_eq!(
        result["accepted"],
        json!(["ann@shop.test", "cc@shop.test", "audit@shop.test"])
    );
    assert_eq!(result["refused"], json!([]));
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["mail_from"], "noreply@fashion.example");
    assert_eq!(
        m["rcpt_tos"],
        json!(["ann@shop.test", "cc@shop.test", "audit@shop.test"])
    );
    let h = &m["headers"];
    assert_eq!(h["subject"], "Your order");
    assert_eq!(h["to"], "Ann Smith <ann@shop.test>");
    assert_eq!(h["cc"], "cc@shop.test");
    assert_eq!(h["reply-to"], "help@fashion.example");
    assert_eq!(h["x-campaign"], "spring");
    assert_eq!(h["message-id"], result["message_id"]);
    assert!(h.get("bcc").is_none(), "bcc leaked into the headers: {h}");
    assert_eq!(
        String::from_utf8(decoded(part(m, "text/plain")))
            .expect("utf-8")
            .trim_end(),
        "Thanks for your order."
    );
    assert_eq!(
        String::from_utf8(decoded(part(m, "text/html")))
            .expect("utf-8")
            .trim_end(),
        "<p>Thanks for your <b>order</b>.</p>"
    );
    let attached = part(m, "application/pdf");
    assert_eq!(attached["filename"], "Invoice 42.pdf");
    assert_eq!(decoded(attached), pdf);
}

#[tokio::test]
async fn a_4xx_is_retried_a_5xx_is_not_and_a_refused_address_spares_the_others() {
    let smtp = Smtp::start(300.0);
    let service = Service::start(&smtp.toml()).await;
    let deferred = send(
        &service,
        json!({"to": "tempfail@shop.test", "subject": "s", "text": "t"}),
        "completed",
    )
    .await;
    assert_eq!(deferred["attempts_made"], 2, "{deferred}");
    let first = deferred["history"][0]["error"]
        .as_str()
        .expect("first error");
    assert!(first.contains("451"), "{first}");
    assert_eq!(smtp.messages().len(), 1, "sent once, when accepted");

    let refused = send(
        &service,
        json!({"to": "reject@shop.test", "subject": "s", "text": "t"}),
        "failed",
    )
    .await;
    assert_eq!(
        refused["attempts_made"], 1,
        "a 5xx is not retried: {refused}"
    );
    let reason = refused["failed_reason"].as_str().expect("reason");
    assert!(
        reason.contains("550") && reason.contains("reject@shop.test"),
        "{reason}"
    );

    let mixed = send(
        &service,
        json!({"to": ["ok@shop.test", "reject-2@shop.test"], "subject": "s", "text": "t"}),
        "completed",
    )
    .await;
    let result = &mixed["return_value"];
    assert_eq!(result["accepted"], json!(["ok@shop.test"]));
    assert_eq!(result["refused"][0]["address"], "reject-2@shop.test");
    assert_eq!(result["refused"][0]["code"], "550");
    let messages = smtp.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["rcpt_tos"], json!(["ok@shop.test"]));
}

#[tokio::test]
async fn a_session_the_server_closed_while_idle_is_replaced_without_failing_a_job() {
    let smtp = Smtp::start(0.5);
    let service = Service::start(&smtp.toml()).await;
    let data = json!({"to": "ann@shop.test", "subject": "one", "text": "t"});
    send(&service, data, "completed").await;
    // The server closes the pooled session once it has been idle for half a second.
    eventually("the server to drop the idle session", || async {
        smtp.events().iter().any(|e| e == "lost").then_some(())
    })
    .await;
    let job = send(
        &service,
        json!({"to": "ann@shop.test", "subject": "two", "text": "t"}),
        "completed",
    )
    .await;
    assert_eq!(
        job["attempts_made"], 1,
        "the dead session cost an attempt: {job}"
    );
    assert_eq!(smtp.messages().len(), 2);
}

#[tokio::test]
async fn a_pooled_session_that_dies_at_its_first_command_is_replaced_without_failing_a_job() {
    // The server ends a reused session just as the next message starts (after the client's
    // check that it is alive): cut without a word, or with 421.
    let smtp = Smtp::start(300.0);
    let service = Service::start(&smtp.toml()).await;
    for sender in ["vanish@fashion.example", "bye@fashion.example"] {
        for n in 0..2 {
            let data = json!({"from": sender, "to": "ann@shop.test", "subject": format!("{n}"), "text": "t"});
            let job = send(&service, data, "completed").await;
            assert_eq!(job["attempts_made"], 1, "{sender} #{n}: {job}");
        }
    }
    assert_eq!(smtp.messages().len(), 4);
}

#[tokio::test]
async fn templates_render_with_html_escaped_and_a_bad_template_fails_at_once() {
    let smtp = Smtp::start(300.0);
    let service = Service::start(&smtp.toml()).await;
    let job = send(
        &service,
        json!({"to": "ann@shop.test", "template": "welcome", "context": {"name": "<Ann & co>", "items": ["coat", "<script>"]}}),
        "completed",
    )
    .await;
    assert_eq!(job["return_value"]["accepted"], json!(["ann@shop.test"]));
    let m = &smtp.messages()[0];
    assert_eq!(m["headers"]["subject"], "Welcome, <Ann & co>");
    let text = String::from_utf8(decoded(part(m, "text/plain"))).expect("utf-8");
    assert_eq!(text.trim_end(), "Hi <Ann & co>, your wallet has 2 looks.");
    let html = String::from_utf8(decoded(part(m, "text/html"))).expect("utf-8");
    assert_eq!(
        html.trim_end(),
        "<p>Hi &lt;Ann &amp; co&gt;</p><ul><li>coat</li><li>&lt;script&gt;</li></ul>"
    );
    // A template from storage.
    let dir = service.data_file("templates/email");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("shipped.subject"), "Order {{ order }} shipped").expect("subject");
    std::fs::write(dir.join("shipped.txt"), "On its way: {{ order }}").expect("text");
    send(
        &service,
        json!({"to": "ann@shop.test", "template": "shipped", "context": {"order": 42}}),
        "completed",
    )
    .await;
    let m = &smtp.messages()[1];
    assert_eq!(m["headers"]["subject"], "Order 42 shipped");
    for (data, says) in [
        (
            json!({"to": "a@shop.test", "template": "nope"}),
            "no template 'nope'",
        ),
        (
            json!({"to": "a@shop.test", "template": "welcome", "context": {"name": "x"}}),
            "items",
        ),
        (
            json!({"to": "a@shop.test", "template": "../../secret"}),
            "template name",
        ),
        (
            json!({"to": "not an address", "subject": "s", "text": "t"}),
            "not an email address",
        ),
        (json!({"to": "a@shop.test", "subject": "s"}), "no body"),
        (
            json!({"to": "a@shop.test", "subject": "s", "text": "t", "headers": {"Bcc": "x@y.z"}}),
            "Bcc",
        ),
    ] {
        let job = send(&service, data.clone(), "failed").await;
        assert_eq!(job["attempts_made"], 1, "{data}: {job}");
        let reason = job["failed_reason"].as_str().expect("reason");
        assert!(
            reason.contains(says),
            "{data}: '{reason}' does not say '{says}'"
        );
    }
    assert_eq!(smtp.messages().len(), 2, "nothing sent for the bad ones");
}

#[tokio::test]
async fn without_smtp_each_message_is_an_eml_file_under_mail() {
    let service = Service::start("").await;
    let job = send(
        &service,
        json!({"to": "ann@shop.test", "subject": "Hello", "text": "First run"}),
        "completed",
    )
    .await;
    let result = &job["return_value"];
    assert_eq!(result["transport"], "file");
    let key = result["key"].as_str().expect("key");
    assert!(key.starts_with("mail/") && key.ends_with(".eml"), "{key}");
    let eml = std::fs::read_to_string(service.data_file(key)).expect("eml written");
    assert!(eml.contains("Subject: Hello\r\n"), "{eml}");
    assert!(eml.contains("To: ann@shop.test\r\n"), "{eml}");
    let id = result["message_id"].as_str().expect("message id");
    assert!(eml.contains(&format!("Message-ID: {id}\r\n")), "{eml}");
    assert!(eml.contains("First run"), "{eml}");
}

/// A server without SMTPUTF8 (aiosmtpd's default) still takes an internationalized domain,
/// sent in its ASCII form; a non-ASCII local part, which has no ASCII form, fails at once.
#[tokio::test]
async fn an_internationalized_domain_is_delivered_in_its_ascii_form() {
    let smtp = Smtp::start(300.0);
    let service = Service::start(&smtp.toml()).await;
    let job = send(
        &service,
        json!({"to": "Zoë <zoe@Bücher.test>", "subject": "s", "text": "t"}),
        "completed",
    )
    .await;
    assert_eq!(
        job["return_value"]["accepted"],
        json!(["zoe@xn--bcher-kva.test"])
    );
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["rcpt_tos"], json!(["zoe@xn--bcher-kva.test"]));
    assert_eq!(messages[0]["headers"]["to"], "Zoë <zoe@xn--bcher-kva.test>");

    let job = send(
        &service,
        json!({"to": "zoë@bücher.test", "subject": "s", "text": "t"}),
        "failed",
    )
    .await;
    assert_eq!(job["attempts_made"], 1, "unrecoverable: {job}");
    let reason = job["failed_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("SMTPUTF8"), "{reason}");
    // Only in a header (Reply-To), the same.
    let job = send(
        &service,
        json!({"to": "t@shop.test", "reply_to": "zoë@bücher.test", "subject": "s", "text": "t"}),
        "failed",
    )
    .await;
    assert_eq!(job["attempts_made"], 1, "unrecoverable: {job}");
    let reason = job["failed_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("SMTPUTF8"), "{reason}");
    assert_eq!(smtp.messages().len(), 1);
}
