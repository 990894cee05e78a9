//! How admin commands print: for a person on a terminal, tables and sentences with times as
//! local dates and durations; otherwise (or with `--output json`) the server's JSON.

use std::io::IsTerminal;

use comfy_table::{CellAlignment, LineStyle, Table, TableStyle};
use serde_json::Value;

use super::OutputFormat;

/// The output chosen for this run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mode {
    format: OutputFormat,
    /// Whether `--output` asked for it (rather than stdout being, or not being, a terminal).
    explicit: bool,
}

impl Mode {
    /// `given` if any, else tables on a terminal and JSON elsewhere.
    pub(super) fn new(given: Option<OutputFormat>) -> Mode {
        match given {
            Some(format) => Mode {
                format,
                explicit: true,
            },
            None if std::io::stdout().is_terminal() => Mode {
                format: OutputFormat::Table,
                explicit: false,
            },
            None => Mode {
                format: OutputFormat::Json,
                explicit: false,
            },
        }
    }
}

impl Mode {
    /// Whether this run prints JSON.
    pub(super) fn is_json(self) -> bool {
        self.format == OutputFormat::Json
    }
}

/// Writes `text` and a newline to stdout. A reader that went away (`stagehand jobs q | head`)
/// ends the program quietly, as a pipe's writer should; no panic.
pub(super) fn print_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(err) = written {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("stagehand: cannot write the output: {err}");
        std::process::exit(1);
    }
}

/// How a person reads an answer.
pub(super) enum View {
    /// JSON either way (cache values, schedules, publish).
    Json,
    /// The job id alone (`enqueue`), so that `id=$(stagehand enqueue ...)` works; JSON only
    /// when `--output json` asks for it.
    Id,
    /// `{"state", "jobs": [...]}` of this queue as a table.
    Jobs(String),
    /// One job, field by field, with its attempts and logs.
    Job,
    /// One queue's counts.
    Queue,
    /// Every queue's counts.
    Queues,
    /// A sentence saying what was done.
    Note(String),
    /// Nothing (an answer without a body).
    Nothing,
    /// Text as it came (a JSON string), in every mode.
    Text,
    /// `/api/metrics`: every queue's counts, the cache and each Redis.
    Aggregate,
    /// A queue's per-minute history.
    History,
}

/// A command's answer: its JSON and how a person reads it.
pub(super) struct Answer {
    pub(super) json: Value,
    pub(super) view: View,
}

impl Answer {
    pub(super) fn new(json: Value, view: View) -> Answer {
        Answer { json, view }
    }

    /// The text to print in `mode`.
    pub(super) fn render(&self, mode: Mode) -> Result<String, String> {
        let json_asked = mode.explicit && mode.format == OutputFormat::Json;
        match (&self.view, mode.format) {
            (View::Nothing, _) => Ok(String::new()),
            (View::Text, _) => Ok(self.json.as_str().unwrap_or_default().to_string()),
            (View::Id, _) if !json_asked => self.json["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("unexpected answer: {}", self.json)),
            (View::Json, _) | (_, OutputFormat::Json) | (View::Id, _) => {
                serde_json::to_string_pretty(&self.json).map_err(|e| e.to_string())
            }
            (View::Jobs(queue), OutputFormat::Table) => Ok(jobs_table(queue, &self.json)),
            (View::Job, OutputFormat::Table) => Ok(job(&self.json)),
            (View::Queue, OutputFormat::Table) => Ok(queues(std::slice::from_ref(&self.json))),
            (View::Queues, OutputFormat::Table) => Ok(queues(
                self.json.as_array().map(Vec::as_slice).unwrap_or_default(),
            )),
            (View::Note(note), OutputFormat::Table) => Ok(note.clone()),
            (View::Aggregate, OutputFormat::Table) => Ok(aggregate(&self.json)),
            (View::History, OutputFormat::Table) => Ok(history(&self.json)),
        }
    }
}

/// Columns apart, a line under the header, nothing else.
const STYLE: TableStyle =
    TableStyle::new().header_separator(LineStyle::none().fill('─').junction('─'));

fn table() -> Table {
    let mut table = Table::new();
    table.load_style(STYLE);
    table
}

/// Now, in ms since the epoch (this machine's clock).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A time in ms since the epoch as a local time of day with milliseconds.
pub(super) fn local_time(ms: u64) -> String {
    local_as(ms, "%H:%M:%S%.3f")
}

/// A time in ms since the epoch as a local date and time.
pub(super) fn local(ms: u64) -> String {
    local_as(ms, "%Y-%m-%d %H:%M:%S")
}

/// A time in ms since the epoch in local time, by `format` (the number itself if out of range).
fn local_as(ms: u64, format: &str) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.with_timezone(&chrono::Local).format(format).to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A span in ms, in its two largest units: `250ms`, `4.2s`, `3m 20s`, `2h 5m`, `3d 4h`.
pub(super) fn span(ms: u64) -> String {
    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    match ms {
        0..S => format!("{ms}ms"),
        S..M => format!("{:.1}s", ms as f64 / S as f64),
        M..H => format!("{}m {}s", ms / M, ms % M / S),
        H..D => format!("{}h {}m", ms / H, ms % H / M),
        _ => format!("{}d {}h", ms / D, ms % D / H),
    }
}

/// How far `ms` is from now: `5m 3s ago` or `in 10.0s`.
pub(super) fn relative(ms: u64) -> String {
    let now = now_ms();
    let at = i64::try_from(ms).unwrap_or(i64::MAX);
    if at <= now {
        format!("{} ago", span(now.abs_diff(at)))
    } else {
        format!("in {}", span(at.abs_diff(now)))
    }
}

/// A count with thousands separators: `100,000`.
pub(super) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 job`, `2 jobs`, `100,000 jobs`.
pub(super) fn jobs(n: u64) -> String {
    format!("{} job{}", count(n), if n == 1 { "" } else { "s" })
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn ms(value: &Value) -> Option<u64> {
    value.as_u64()
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Where a job stands, in words: `ready 3m ago`, `runs in 5m`, `took 1.2s, 2m ago`...
fn status(job: &Value) -> String {
    let started = ms(&job["processed_at"]);
    let finished = ms(&job["finished_at"]);
    match job["state"].as_str().unwrap_or("") {
        "delayed" => {
            ms(&job["run_at"]).map_or_else(String::new, |t| format!("runs {}", relative(t)))
        }
        "active" => started.map_or_else(String::new, |t| {
            format!(
                "running {}",
                span(now_ms().abs_diff(i64::try_from(t).unwrap_or(0)))
            )
        }),
        "completed" => match (started, finished) {
            (Some(s), Some(f)) => format!("took {}, {}", span(f.saturating_sub(s)), relative(f)),
            (_, Some(f)) => relative(f),
            _ => String::new(),
        },
        "failed" => finished.map_or_else(String::new, |f| format!("failed {}", relative(f))),
        _ => ms(&job["run_at"]).map_or_else(String::new, |t| format!("ready {}", relative(t))),
    }
}

fn attempts(job: &Value) -> String {
    format!(
        "{}/{}",
        text(&job["attempts_made"]),
        text(&job["options"]["attempts"])
    )
}

/// A list of jobs (`{"state", "jobs": [...]}`) as a table.
fn jobs_table(queue: &str, answer: &Value) -> String {
    let list = answer["jobs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if list.is_empty() {
        return format!("no {} jobs in {queue}", text(&answer["state"]));
    }
    let reasons = list.iter().any(|j| j["failed_reason"].is_string());
    let mut t = table();
    let mut header = vec!["ID", "NAME", "STATE", "ATTEMPTS", "CREATED", "STATUS"];
    if reasons {
        header.push("REASON");
    }
    t.set_header(header);
    for job in list {
        let mut row = vec![
            text(&job["id"]),
            clip(&text(&job["name"]), 40),
            text(&job["state"]),
            attempts(job),
            ms(&job["created_at"]).map(local).unwrap_or_default(),
            status(job),
        ];
        if reasons {
            row.push(clip(&text(&job["failed_reason"]), 60));
        }
        t.add_row(row);
    }
    let shown = list.len() as u64;
    let offset = answer["offset"].as_u64().unwrap_or(0);
    let mut out = t.to_string();
    if answer["limit"].as_u64() == Some(shown) {
        out.push_str(&format!(
            "\n(jobs {} to {}; there may be more: --offset {})",
            count(offset + 1),
            count(offset + shown),
            offset + shown
        ));
    }
    out
}

/// What to keep of finished jobs (see `Retention`), in words.
fn keep(retention: &Value) -> String {
    match retention {
        Value::Bool(true) => "none".into(),
        Value::Bool(false) => "all".into(),
        Value::Number(n) => format!("the last {n}"),
        other => {
            let mut parts = Vec::new();
            if let Some(n) = other["count"].as_u64() {
                parts.push(format!("the last {n}"));
            }
            if let Some(age) = other["age_ms"].as_u64() {
                parts.push(format!("none older than {}", span(age)));
            }
            parts.join(", ")
        }
    }
}

/// A job's options in words: `3 attempts, exponential backoff from 1.0s, ...`.
fn options(o: &Value) -> String {
    let mut parts = vec![format!("{} attempts", text(&o["attempts"]))];
    let backoff = &o["backoff"];
    if let Some(delay) = ms(&backoff["delay_ms"]) {
        let mut b = format!("{} backoff from {}", text(&backoff["type"]), span(delay));
        if let Some(max) = ms(&backoff["max_delay_ms"]) {
            b.push_str(&format!(" up to {}", span(max)));
        }
        if backoff["jitter"].as_f64().is_some_and(|j| j > 0.0) {
            b.push_str(&format!(", jitter {}", text(&backoff["jitter"])));
        }
        parts.push(b);
    }
    if o["priority"].as_u64().is_some_and(|p| p > 0) {
        parts.push(format!("priority {}", text(&o["priority"])));
    }
    if let Some(delay) = ms(&o["delay_ms"]).filter(|d| *d > 0) {
        parts.push(format!("delay {}", span(delay)));
    }
    if let Some(timeout) = ms(&o["timeout_ms"]) {
        parts.push(format!("timeout {}", span(timeout)));
    }
    if o["lifo"] == true {
        parts.push("lifo".into());
    }
    parts.push(format!(
        "keeps {} completed",
        keep(&o["remove_on_complete"])
    ));
    parts.push(format!("{} failed", keep(&o["remove_on_fail"])));
    parts.join(", ")
}

/// One job: its fields, then a table of its attempts, then its logs.
fn job(job: &Value) -> String {
    let mut t = table();
    let when = |key: &str| ms(&job[key]).map(|t| format!("{} ({})", local(t), relative(t)));
    let mut rows: Vec<(&str, String)> = vec![
        ("id", text(&job["id"])),
        ("queue", text(&job["queue"])),
        ("name", text(&job["name"])),
        ("state", text(&job["state"])),
        ("status", status(job)),
        ("attempts", attempts(job)),
    ];
    for (key, label) in [("stalled_count", "stalled"), ("released_count", "released")] {
        if job[key].as_u64().is_some_and(|n| n > 0) {
            rows.push((label, text(&job[key])));
        }
    }
    if job["progress"] != 0 {
        rows.push(("progress", text(&job["progress"])));
    }
    rows.extend(when("created_at").map(|t| ("created", t)));
    if job["run_at"] != job["created_at"] {
        rows.extend(when("run_at").map(|t| ("ready at", t)));
    }
    rows.extend(when("processed_at").map(|t| ("started", t)));
    rows.extend(when("finished_at").map(|t| ("finished", t)));
    if let Some(reason) = job["failed_reason"].as_str() {
        rows.push(("failed reason", reason.to_string()));
    }
    rows.push(("data", clip(&job["data"].to_string(), 500)));
    if !job["return_value"].is_null() {
        rows.push(("return value", clip(&job["return_value"].to_string(), 500)));
    }
    rows.push(("options", options(&job["options"])));
    for (label, value) in rows {
        t.add_row(vec![label.to_string(), value]);
    }
    let mut out = t.to_string();

    let history = job["history"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !history.is_empty() {
        let mut h = table();
        h.set_header(vec![
            "ATTEMPT", "WORKER", "STARTED", "TOOK", "OUTCOME", "ERROR",
        ]);
        for a in history {
            let started = ms(&a["started_at"]);
            let took = match (started, ms(&a["finished_at"])) {
                (Some(s), Some(f)) => span(f.saturating_sub(s)),
                _ => String::new(),
            };
            let mut outcome = text(&a["outcome"]);
            if let Some(delay) = ms(&a["retry_delay_ms"]) {
                outcome.push_str(&format!(", retry after {}", span(delay)));
            }
            h.add_row(vec![
                text(&a["attempt"]),
                text(&a["worker"]),
                started.map(local).unwrap_or_default(),
                took,
                outcome,
                clip(&text(&a["error"]), 80),
            ]);
        }
        out.push_str("\n\n");
        out.push_str(&h.to_string());
    }
    let logs = job["logs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !logs.is_empty() {
        out.push_str("\n\nlogs:");
        for line in logs {
            out.push_str("\n  ");
            out.push_str(&text(line));
        }
    }
    out
}

/// Queues (`{"name", "paused", "counts"}` each) as a table of their counts.
fn queues(list: &[Value]) -> String {
    const STATES: [&str; 7] = [
        "waiting",
        "prioritized",
        "delayed",
        "active",
        "paused",
        "completed",
        "failed",
    ];
    let mut t = table();
    let mut header = vec!["QUEUE".to_string(), "STATUS".to_string()];
    header.extend(STATES.iter().map(|s| s.to_uppercase()));
    t.set_header(header);
    for queue in list {
        let mut row = vec![
            text(&queue["name"]),
            if queue["paused"] == true {
                "paused".to_string()
            } else {
                "running".to_string()
            },
        ];
        row.extend(
            STATES
                .iter()
                .map(|s| queue["counts"][s].as_u64().map(count).unwrap_or_default()),
        );
        t.add_row(row);
    }
    for i in 2..2 + STATES.len() {
        if let Some(column) = t.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    t.to_string()
}

/// `/api/metrics` as a table of queues, then the cache and each Redis in a sentence.
fn aggregate(answer: &Value) -> String {
    const COLUMNS: [&str; 6] = [
        "waiting",
        "active",
        "delayed",
        "completed",
        "failed",
        "total",
    ];
    let mut t = table();
    let mut header = vec!["QUEUE".to_string()];
    header.extend(COLUMNS.iter().map(|c| c.to_uppercase()));
    t.set_header(header);
    if let Some(queues) = answer["queues"].as_object() {
        for (name, counts) in queues {
            let mut row = vec![name.clone()];
            row.extend(
                COLUMNS
                    .iter()
                    .map(|c| counts[c].as_u64().map(count).unwrap_or_default()),
            );
            t.add_row(row);
        }
    }
    for i in 1..=COLUMNS.len() {
        if let Some(column) = t.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = t.to_string();
    let cache = &answer["cache"];
    if cache.is_object() {
        out.push_str(&format!(
            "\n\ncache ({}): {} hits, {} misses, {} errors, hit rate {:.1}%",
            text(&cache["strategy"]),
            count(cache["hits"].as_u64().unwrap_or(0)),
            count(cache["misses"].as_u64().unwrap_or(0)),
            count(cache["errors"].as_u64().unwrap_or(0)),
            cache["hit_rate"].as_f64().unwrap_or(0.0)
        ));
    }
    for redis in answer["redis"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let m = &redis["metrics"];
        out.push_str(&format!(
            "\nredis {} at {}: ",
            text(&redis["role"]),
            text(&redis["server"])
        ));
        if m.is_object() {
            out.push_str(&format!(
                "version {}, up {}, {} clients, {} used",
                text(&m["version"]),
                span(
                    m["uptime_seconds"]
                        .as_u64()
                        .unwrap_or(0)
                        .saturating_mul(1000)
                ),
                text(&m["connected_clients"]),
                text(&m["used_memory_human"])
            ));
        } else {
            out.push_str(&text(&redis["error"]));
        }
    }
    out
}

/// A queue's per-minute history: the minutes in which something ended, and the totals.
fn history(answer: &Value) -> String {
    let minutes = answer["minutes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut t = table();
    t.set_header([
        "MINUTE",
        "COMPLETED",
        "FAILED",
        "ATTEMPTS",
        "P50",
        "P90",
        "P99",
    ]);
    let quantile = |v: &Value| v.as_u64().map(span).unwrap_or_default();
    let mut shown = 0;
    for m in minutes
        .iter()
        .filter(|m| m["attempts"].as_u64().unwrap_or(0) > 0)
    {
        shown += 1;
        t.add_row([
            local(m["at"].as_u64().unwrap_or(0)),
            count(m["completed"].as_u64().unwrap_or(0)),
            count(m["failed"].as_u64().unwrap_or(0)),
            count(m["attempts"].as_u64().unwrap_or(0)),
            quantile(&m["p50_ms"]),
            quantile(&m["p90_ms"]),
            quantile(&m["p99_ms"]),
        ]);
    }
    for i in 1..=6 {
        if let Some(column) = t.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let summary = format!(
        "{}: {} completed, {} failed from {} to {}",
        text(&answer["queue"]),
        jobs(answer["completed"].as_u64().unwrap_or(0)),
        count(answer["failed"].as_u64().unwrap_or(0)),
        local(answer["from"].as_u64().unwrap_or(0)),
        local(answer["to"].as_u64().unwrap_or(0)),
    );
    if shown == 0 {
        format!("{summary}; no job ended in that time")
    } else {
        format!("{t}\n{summary}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_in_their_two_largest_units() {
        assert_eq!(span(250), "250ms");
        assert_eq!(span(4_200), "4.2s");
        assert_eq!(span(200_000), "3m 20s");
        assert_eq!(span(7_500_000), "2h 5m");
        assert_eq!(span(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
    }

    #[test]
    fn counts_have_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(count(100_000), "100,000");
        assert_eq!(count(12_345_678), "12,345,678");
    }

    #[test]
    fn clipping_keeps_short_text_and_marks_a_cut() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a longer text", 5), "a lo…");
    }
}
