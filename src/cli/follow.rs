//! `stagehand events`: follows `GET /api/events` and prints each event as it comes, one line
//! each (JSON Lines with `--output json`, each object with its `cursor` for `--after`). When the
//! stream ends (the server cut a slow reader off, restarted, or the link dropped) it connects
//! again with the last id it saw, so nothing the server still holds is missed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::output::{Mode, local_time, print_out, span};

/// The longest pause between reconnects.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// What to follow.
pub(super) struct Follow {
    pub(super) queues: Vec<String>,
    pub(super) job: Option<String>,
    pub(super) types: Vec<String>,
    pub(super) after: Option<String>,
}

/// A non-2xx answer as `error: detail` when it is the API's JSON, else its status.
pub(super) fn failure(status: StatusCode, body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if v["error"].is_string() => format!(
            "{}: {}",
            v["error"].as_str().unwrap_or_default(),
            v["detail"].as_str().unwrap_or_default()
        ),
        _ => format!("the server answered {status}"),
    }
}

/// One frame of the stream: its id, event name and data.
struct Frame {
    id: Option<String>,
    event: String,
    data: String,
}

fn parse(text: &str) -> Option<Frame> {
    let mut frame = Frame {
        id: None,
        event: "message".into(),
        data: String::new(),
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            frame.id = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("event: ") {
            frame.event = v.to_string();
        } else if let Some(v) = line.strip_prefix("data: ") {
            frame.data.push_str(v);
        }
    }
    (!frame.data.is_empty()).then_some(frame)
}

/// An event as a line for a person: time, queue, job, what happened.
fn line(event: &Value) -> String {
    let kind = event["event"].as_str().unwrap_or("?");
    let detail = match kind {
        "progress" => event["value"].to_string(),
        "failed" => event["reason"].as_str().unwrap_or_default().to_string(),
        "retrying" => format!("again in {}", span(event["delay_ms"].as_u64().unwrap_or(0))),
        _ => String::new(),
    };
    format!(
        "{}  {:<18} {:<24} {:<9} {}",
        local_time(event["at"].as_u64().unwrap_or(0)),
        event["queue"].as_str().unwrap_or_default(),
        event["id"].as_str().unwrap_or_default(),
        kind,
        detail
    )
    .trim_end()
    .to_string()
}

impl Follow {
    fn url(&self, server: &str) -> Result<reqwest::Url, String> {
        let mut url = reqwest::Url::parse(&format!("{server}/api/events"))
            .map_err(|e| format!("--server takes a URL such as http://127.0.0.1:8080 ({e})"))?;
        {
            let mut query = url.query_pairs_mut();
            if !self.queues.is_empty() {
                query.append_pair("queue", &self.queues.join(","));
            }
            if let Some(job) = &self.job {
                query.append_pair("job", job);
            }
            if !self.types.is_empty() {
                query.append_pair("type", &self.types.join(","));
            }
        }
        Ok(url)
    }

    /// Follows until interrupted; an error only when the server refuses the request itself.
    pub(super) async fn run(
        mut self,
        client: &reqwest::Client,
        server: &str,
        mode: Mode,
    ) -> Result<(), String> {
        let url = self.url(server)?;
        let shown = crate::backend::redacted(url.as_str());
        let mut pause = Duration::from_millis(250);
        loop {
            let mut request = client.get(url.clone());
            if let Some(after) = &self.after {
                request = request.header("Last-Event-ID", after);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    pause = Duration::from_millis(250);
                    self.read(response, mode).await;
                    eprintln!("stagehand: the event stream ended; connecting again");
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    // A refusal is final; a server busy or restarting is waited for.
                    if status.is_client_error() {
                        return Err(failure(status, &body));
                    }
                    eprintln!(
                        "stagehand: {shown}: {}; trying again",
                        failure(status, &body)
                    );
                }
                Err(err) => {
                    eprintln!(
                        "stagehand: cannot reach {shown}: {}; trying again",
                        err.without_url()
                    );
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Prints the stream's events until it ends.
    async fn read(&mut self, mut response: reqwest::Response, mode: Mode) {
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let text: String = buffer.drain(..end + 2).collect();
                let Some(frame) = parse(&text) else { continue };
                let Ok(mut data) = serde_json::from_str::<Value>(&frame.data) else {
                    continue;
                };
                match frame.event.as_str() {
                    "gap" | "error" => {
                        let why = data["detail"].as_str().or(data["error"].as_str());
                        eprintln!("stagehand: {}: {}", frame.event, why.unwrap_or_default());
                    }
                    _ if mode.is_json() => {
                        if let Some(id) = &frame.id {
                            data["cursor"] = Value::String(id.clone());
                        }
                        print_out(&data.to_string());
                    }
                    _ => print_out(&line(&data)),
                }
                if frame.id.is_some() {
                    self.after = frame.id;
                }
            }
        }
    }
}
