//! The `export` processor through the real binary: a million records streamed in bounded
//! memory, gzip, the "export ready" notification, and no partial file on bad input.

mod common;

use std::io::{BufWriter, Read, Write};

use common::{LONG_PATIENCE, Service, eventually_within};
use serde_json::{Value, json};

const TOML: &str = r#"
[queues.export.defaults]
attempts = 1
remove_on_complete = false
remove_on_fail = false
"#;

fn write_rows(service: &Service, key: &str, rows: usize, bad_line: Option<usize>) {
    let path = service.data_file(key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    let mut out = BufWriter::new(std::fs::File::create(path).expect("input"));
    for i in 1..=rows {
        if bad_line == Some(i) {
            writeln!(out, "{{\"id\": {i}, oops").expect("write");
        } else {
            writeln!(
                out,
                "{{\"id\":{i},\"sku\":\"SKU-{i:07}\",\"price\":{}.5}}",
                i % 997
            )
            .expect("write");
        }
    }
    out.flush().expect("flush");
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a memory figure")
}

async fn wait_done(service: &Service, id: &str) -> Value {
    eventually_within(LONG_PATIENCE, "the export to finish", || async {
        let job = service.api.job("export", id).await;
        matches!(job["state"].as_str(), Some("completed" | "failed")).then_some(job)
    })
    .await
}

#[tokio::test]
async fn a_million_records_stream_through_in_bounded_memory() {
    let service = Service::start(TOML).await;
    const ROWS: usize = 1_000_000;
    write_rows(&service, "in/rows.jsonl", ROWS, None);
    let input_bytes = std::fs::metadata(service.data_file("in/rows.jsonl"))
        .expect("input")
        .len();
    let before = rss_kib(service.pid(), "VmRSS:");
    let id = service
        .api
        .add("export", json!({"name": "big", "data": {"format": "csv", "input_key": "in/rows.jsonl", "output_key": "out/rows.csv"}}))
        .await;
    let job = wait_done(&service, &id).await;
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["return_value"]["records"], ROWS);
    assert_eq!(job["progress"], 100);
    let peak = rss_kib(service.pid(), "VmHWM:");
    let grew_mib = peak.saturating_sub(before) / 1024;
    // Holding the records would take several times the input (~50 MB); streaming takes a
    // few buffers.
    assert!(
        grew_mib < 40,
        "RSS grew by {grew_mib} MiB exporting {} MiB of records",
        input_bytes / (1 << 20)
    );
    let csv = std::fs::read_to_string(service.data_file("out/rows.csv")).expect("output");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), ROWS + 1);
    assert_eq!(lines[0], "id,price,sku");
    assert_eq!(lines[1], "1,1.5,SKU-0000001");
    assert_eq!(
        lines[ROWS],
        format!("{ROWS},{}.5,SKU-{ROWS:07}", ROWS % 997)
    );
}

#[tokio::test]
async fn a_gzipped_export_is_announced_and_the_announcement_becomes_an_email() {
    let service = Service::start(TOML).await;
    write_rows(&service, "in/few.jsonl", 2500, None);
    let id = service
        .api
        .add(
            "export",
            json!({"name": "mine", "data": {
                "format": "json", "input_key": "in/few.jsonl", "gzip": true,
                "notify": {"user_id": "u-7", "email": "ann@shop.test"}
            }}),
        )
        .await;
    let job = wait_done(&service, &id).await;
    assert_eq!(job["state"], "completed", "{job}");
    let key = job["return_value"]["output_key"].as_str().expect("key");
    assert!(
        key.starts_with("exports/") && key.ends_with(".json.gz"),
        "{key}"
    );
    assert_eq!(job["return_value"]["notified"], "u-7");
    let gz = std::fs::read(service.data_file(key)).expect("gzip written");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut text)
        .expect("gunzip");
    let records: Vec<Value> = serde_json::from_str(&text).expect("a JSON array");
    assert_eq!(records.len(), 2500);
    assert_eq!(records[2499]["sku"], "SKU-0002500");
    // The notification handler turned the announcement into an email job; with no SMTP
    // configured, it is an .eml file.
    let eml = eventually_within(LONG_PATIENCE, "the notification email", || async {
        let dir = service.data_file("mail");
        let entry = std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).next()?;
        std::fs::read_to_string(entry.path()).ok()
    })
    .await;
    assert!(eml.contains("To: ann@shop.test"), "{eml}");
    assert!(eml.contains("Subject: Your export is ready"), "{eml}");
    assert!(eml.contains(key), "{eml}");
}

#[tokio::test]
async fn bad_input_fails_at_once_with_its_line_and_leaves_no_partial_file() {
    let service = Service::start(TOML).await;
    write_rows(&service, "in/bad.jsonl", 200_000, Some(150_000));
    let id = service
        .api
        .add("export", json!({"name": "bad", "data": {"format": "jsonl", "input_key": "in/bad.jsonl", "output_key": "out/bad.jsonl"}}))
        .await;
    let job = wait_done(&service, &id).await;
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["failed_reason"].as_str().expect("reason");
    assert!(reason.contains("input line 150000"), "{reason}");
    assert!(
        !service.data_file("out/bad.jsonl").exists(),
        "a partial file was left"
    );
    // A JSON array input is streamed too, and an unknown bucket is refused.
    std::fs::write(
        service.data_file("in/arr.json"),
        r#" [ {"a": 1}, {"a": 2, "b": "=x"} ] "#,
    )
    .expect("write");
    let id = service
        .api
        .add("export", json!({"name": "arr", "data": {"format": "csv", "input_key": "in/arr.json", "output_key": "out/arr.csv"}}))
        .await;
    let job = wait_done(&service, &id).await;
    assert_eq!(job["state"], "completed", "{job}");
    let csv = std::fs::read_to_string(service.data_file("out/arr.csv")).expect("csv");
    assert_eq!(csv, "a,b\n1,\n2,'=x\n");
    // One record may hold at most 16 MiB (memory holds one at a time); a byte order mark is
    // not a record.
    let big = "x".repeat(17 << 20);
    std::fs::write(
        service.data_file("in/huge-line.jsonl"),
        format!("{{\"a\": 1}}\n\"{big}\"\n"),
    )
    .expect("write");
    std::fs::write(
        service.data_file("in/huge-element.json"),
        format!("[{{\"a\": 1}}, \"{big}\"]"),
    )
    .expect("write");
    std::fs::write(service.data_file("in/bom.jsonl"), "\u{FEFF}{\"a\": 1}\n").expect("write");
    for (input, says) in [
        ("in/huge-line.jsonl", "input line 2 is longer than"),
        ("in/huge-element.json", "input record 2 is larger than"),
    ] {
        let id = service
            .api
            .add(
                "export",
                json!({"name": "big", "data": {"format": "jsonl", "input_key": input}}),
            )
            .await;
        let job = wait_done(&service, &id).await;
        let reason = job["failed_reason"].as_str().unwrap_or_default();
        assert!(reason.contains(says), "{input}: {job}");
    }
    let id = service
        .api
        .add("export", json!({"name": "bom", "data": {"format": "jsonl", "input_key": "in/bom.jsonl", "output_key": "out/bom.jsonl"}}))
        .await;
    assert_eq!(wait_done(&service, &id).await["state"], "completed");
    assert_eq!(
        std::fs::read_to_string(service.data_file("out/bom.jsonl")).expect("out"),
        "{\"a\":1}\n"
    );
    let id = service
        .api
        .add("export", json!({"name": "x", "data": {"format": "csv", "records": [{"a": 1}], "output_bucket": "nope"}}))
        .await;
    let job = wait_done(&service, &id).await;
    assert!(
        job["failed_reason"]
            .as_str()
            .expect("reason")
            .contains("no storage bucket"),
        "{job}"
    );
}
