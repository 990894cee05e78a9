//! `enqueue --file`: the jobs of a JSON Lines file, one a line (`{"name", "data", "options"}`,
//! blank lines skipped). The whole file is checked first (names, options and unknown fields as
//! the server checks them), and nothing is sent while any line is bad. It is then read again
//! and sent through the bulk route in batches of [`BATCH_JOBS`] (fewer if they would pass
//! [`BATCH_BYTES`], and halved when the server answers 413), in line order. Memory stays bounded
//! by a batch, whatever the file's size.
//!
//! If sending stops part-way (a server error, a lost connection), the error says which lines
//! were added, and which may or may not have been (an answer that never came), so the rest can
//! be sent again; lines whose jobs all carry a `job_id` are safe to send twice.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use stagehand_core::options::validate_job_name;
use stagehand_core::{JobOptions, JobOptionsInput};

use super::output::{Answer, View, count, jobs};

/// The most jobs sent in one request (the server takes up to 10,000).
const BATCH_JOBS: usize = 1000;
/// The most bytes of jobs sent in one request (the server's `http.max_body_bytes` is 1 MiB
/// unless configured otherwise; a 413 halves the batch).
const BATCH_BYTES: usize = 512 * 1024;
/// How many bad lines are listed before the rest are only counted.
const SHOWN_ERRORS: usize = 10;
/// How many times a batch is sent while the server answers that it added nothing (503).
const TRIES: u32 = 5;

/// One line of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    name: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    options: JobOptionsInput,
}

/// A checked line: its number, the job as the API takes it, and whether it has a `job_id`.
struct Checked {
    line: usize,
    json: String,
    has_id: bool,
}

/// `line`'s options over the command line's: what a line sets wins.
fn overlay(line: JobOptionsInput, cli: &JobOptionsInput) -> JobOptionsInput {
    JobOptionsInput {
        job_id: line.job_id.or_else(|| cli.job_id.clone()),
        delay_ms: line.delay_ms.or(cli.delay_ms),
        priority: line.priority.or(cli.priority),
        attempts: line.attempts.or(cli.attempts),
        backoff: line.backoff.or_else(|| cli.backoff.clone()),
        timeout_ms: line.timeout_ms.or(cli.timeout_ms),
        remove_on_complete: line.remove_on_complete.or(cli.remove_on_complete),
        remove_on_fail: line.remove_on_fail.or(cli.remove_on_fail),
        lifo: line.lifo.or(cli.lifo),
    }
}

/// Options as JSON without the unset ones.
pub(super) fn options_json(options: &JobOptionsInput) -> Result<Value, String> {
    let value = serde_json::to_value(options).map_err(|e| e.to_string())?;
    let set: Map<String, Value> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Value::Object(set))
}

/// Checks one line's text; `Ok(None)` for a blank line.
fn check(line: usize, text: &str, cli: &JobOptionsInput) -> Result<Option<Checked>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let parsed: Line = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        // The position is within the line: its column is what helps.
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(m, _)| m);
        format!("column {}: {message}", e.column())
    })?;
    validate_job_name(&parsed.name)?;
    let options = overlay(parsed.options, cli);
    options
        .resolve(&JobOptions::default())
        .map_err(|e| e.to_string())?;
    let job =
        json!({ "name": parsed.name, "data": parsed.data, "options": options_json(&options)? });
    Ok(Some(Checked {
        line,
        json: job.to_string(),
        has_id: options.job_id.is_some(),
    }))
}

/// The file, read line by line (so memory is bounded by a line, whatever its size).
struct Reader<'a> {
    path: &'a Path,
    inner: BufReader<File>,
    line: usize,
    buf: Vec<u8>,
    cli: &'a JobOptionsInput,
}

impl<'a> Reader<'a> {
    fn open(path: &'a Path, cli: &'a JobOptionsInput) -> Result<Reader<'a>, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Reader {
            path,
            inner: BufReader::new(file),
            line: 0,
            buf: Vec::new(),
            cli,
        })
    }

    /// The next job, or `Some(Err(...))` naming a bad line (one that is not UTF-8 is bad too);
    /// `None` at the end. Blank lines are skipped. `Err` when the file cannot be read.
    fn next(&mut self) -> Result<Option<Result<Checked, String>>, String> {
        loop {
            self.buf.clear();
            let n = self
                .inner
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| format!("{}: {e}", self.path.display()))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let line = self.line;
            // A byte-order mark some editors write at the file's start is not part of the JSON.
            let bytes = match self.buf.strip_prefix(b"\xEF\xBB\xBF") {
                Some(rest) if line == 1 => rest,
                _ => &self.buf[..],
            };
            let checked = std::str::from_utf8(bytes)
                .map_err(|_| "not UTF-8 text".to_string())
                .and_then(|text| check(line, text, self.cli));
            match checked {
                Ok(Some(job)) => return Ok(Some(Ok(job))),
                Ok(None) => {}
                Err(e) => return Ok(Some(Err(format!("line {line}: {e}")))),
            }
        }
    }
}

/// Why a batch was not added.
enum Refused {
    /// The server answered that it added none of it (or the request never left): worth
    /// sending again if `retry` (503, no connection).
    Nothing { message: String, retry: bool },
    /// No answer came: it may or may not have been added.
    Unknown(String),
    /// Over the server's body limit (413): nothing added.
    TooLarge(String),
}

/// Sends one batch; the number of jobs the server added.
async fn send(
    client: &reqwest::Client,
    url: &reqwest::Url,
    batch: &[Checked],
) -> Result<(usize, usize), Refused> {
    let mut body = String::from("{\"jobs\":[");
    for (i, job) in batch.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&job.json);
    }
    body.push_str("]}");
    let shown = crate::backend::redacted(url.as_str());
    let response = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            let (connect, builder) = (e.is_connect(), e.is_builder());
            let message = format!(
                "cannot reach {shown}: {} (is `stagehand serve` running? see --server)",
                e.without_url()
            );
            if connect || builder {
                Refused::Nothing {
                    message,
                    retry: connect,
                }
            } else {
                Refused::Unknown(message)
            }
        })?;
    let status = response.status();
    let answer: Value = response.json().await.map_err(|e| {
        Refused::Unknown(format!(
            "{shown} answered {status} without JSON: {}",
            e.without_url()
        ))
    })?;
    if status.is_success() {
        let sent = answer["ids"].as_array().map(Vec::len);
        return match (sent, answer["created"].as_u64()) {
            (Some(sent), Some(created)) => Ok((sent, created as usize)),
            _ => Err(Refused::Unknown(format!("unexpected answer: {answer}"))),
        };
    }
    let detail = answer["detail"].as_str().unwrap_or("");
    // `jobs[3].options...`: the batch's fourth job, named by its line.
    let detail = match detail
        .strip_prefix("jobs[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(i, rest)| Some((batch.get(i.parse::<usize>().ok()?)?, rest)))
    {
        Some((job, rest)) => format!("line {}: {}", job.line, rest.trim_start_matches('.')),
        None => detail.to_string(),
    };
    let message = format!(
        "{status}: {}: {detail}",
        answer["error"].as_str().unwrap_or("error")
    );
    Err(match status.as_u16() {
        413 => Refused::TooLarge(message),
        504 => Refused::Unknown(message),
        503 => Refused::Nothing {
            message,
            retry: true,
        },
        _ => Refused::Nothing {
            message,
            retry: false,
        },
    })
}

/// Sends batches in line order, keeping count of what was added.
struct Sender<'a> {
    client: &'a reqwest::Client,
    url: reqwest::Url,
    added: u64,
    /// Of those, the jobs that were new (a line whose `job_id` exists returns that job).
    created: u64,
    /// The last line whose job was added: every job before it was too.
    through: usize,
    progress: ProgressBar,
}

impl Sender<'_> {
    /// Sends `batch`, halving it while the server finds it too large; the error says which
    /// lines were added and which were not (or may have been).
    async fn send(&mut self, batch: Vec<Checked>) -> Result<(), String> {
        let mut pending = VecDeque::from([batch]);
        while let Some(mut part) = pending.pop_front() {
            match self.send_with_retries(&part).await {
                Ok((n, created)) => {
                    self.added += n as u64;
                    self.created += created as u64;
                    self.through = part.last().map_or(self.through, |j| j.line);
                    self.progress.inc(n as u64);
                }
                Err(Refused::TooLarge(_)) if part.len() > 1 => {
                    let back = part.split_off(part.len() / 2);
                    pending.push_front(back);
                    pending.push_front(part);
                }
                Err(refused) => return Err(self.report(&part, refused)),
            }
        }
        Ok(())
    }

    /// Sends `part` again after a growing pause while nothing was added and trying again may
    /// help, or while no answer came and every job has a `job_id` (so none is added twice).
    async fn send_with_retries(&self, part: &[Checked]) -> Result<(usize, usize), Refused> {
        let idempotent = part.iter().all(|j| j.has_id);
        let mut pause = std::time::Duration::from_millis(250);
        let mut tries = 1;
        loop {
            let again = match send(self.client, &self.url, part).await {
                Err(Refused::Nothing {
                    message,
                    retry: true,
                }) if tries < TRIES => message,
                Err(Refused::Unknown(message)) if idempotent && tries < TRIES => message,
                other => return other,
            };
            self.progress.suspend(|| {
                eprintln!(
                    "stagehand: {again}; trying again in {} ms",
                    pause.as_millis()
                );
            });
            tokio::time::sleep(pause).await;
            pause *= 2;
            tries += 1;
        }
    }

    /// What was added so far, in lines.
    fn added(&self) -> String {
        if self.added > 0 {
            format!(
                "lines 1 to {} were added ({})",
                self.through,
                jobs(self.added)
            )
        } else {
            "no job was added".to_string()
        }
    }

    fn report(&self, part: &[Checked], refused: Refused) -> String {
        self.progress.abandon();
        let first = part.first().map_or(0, |j| j.line);
        let last = part.last().map_or(0, |j| j.line);
        let before = self.added();
        match refused {
            Refused::Unknown(e) => format!(
                "{e}\n  {before}; lines {first} to {last} may or may not have been added (no answer came); the lines after {last} were not sent"
            ),
            Refused::Nothing { message, .. } | Refused::TooLarge(message) => {
                format!("{message}\n  {before}; line {first} and those after it were not added")
            }
        }
    }
}

/// Checks the whole file, then sends it; see the module's doc.
pub(super) async fn enqueue(
    client: &reqwest::Client,
    url: reqwest::Url,
    queue: &str,
    path: &Path,
    cli: &JobOptionsInput,
) -> Result<Answer, String> {
    let mut reader = Reader::open(path, cli)?;
    let (mut total, mut bad): (u64, Vec<String>) = (0, Vec::new());
    while let Some(line) = reader.next()? {
        match line {
            Ok(_) => total += 1,
            Err(e) => bad.push(e),
        }
    }
    if !bad.is_empty() {
        let mut message = format!(
            "{}: {} bad line(s), so nothing was sent:",
            path.display(),
            count(bad.len() as u64)
        );
        for line in bad.iter().take(SHOWN_ERRORS) {
            message.push_str("\n  ");
            message.push_str(line);
        }
        if bad.len() > SHOWN_ERRORS {
            message.push_str(&format!(
                "\n  and {} more",
                count((bad.len() - SHOWN_ERRORS) as u64)
            ));
        }
        return Err(message);
    }

    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{wide_bar} {human_pos}/{human_len} jobs, {eta} left")
    {
        progress.set_style(style);
    }
    let mut sender = Sender {
        client,
        url,
        added: 0,
        created: 0,
        through: 0,
        progress,
    };
    let mut reader = Reader::open(path, cli)?;
    let (mut batch, mut bytes) = (Vec::new(), 0);
    loop {
        let next = reader.next()?;
        let end = next.is_none();
        match next {
            Some(Ok(job)) => {
                bytes += job.json.len() + 1;
                batch.push(job);
            }
            // Checked a moment ago: the file changed while it was being sent.
            Some(Err(e)) => {
                sender.progress.abandon();
                return Err(format!(
                    "{}: changed while it was being sent: {e}\n  {}; the lines after were not sent",
                    path.display(),
                    sender.added()
                ));
            }
            None => {}
        }
        if !batch.is_empty() && (end || batch.len() >= BATCH_JOBS || bytes >= BATCH_BYTES) {
            sender.send(std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
        if end {
            break;
        }
    }
    sender.progress.finish_and_clear();
    let (sent, created) = (sender.added, sender.created);
    let note = if created == sent {
        format!("added {} to {queue} from {}", jobs(created), path.display())
    } else {
        format!(
            "added {} to {queue} from {}; {} named by job_id existed already",
            jobs(created),
            path.display(),
            jobs(sent - created)
        )
    };
    Ok(Answer::new(
        json!({ "queue": queue, "file": path.display().to_string(), "added": created, "existing": sent - created }),
        View::Note(note),
    ))
}
