//! Admin commands: HTTP calls to a running server (one each, but for the bulk actions, which
//! loop over bounded calls, and `enqueue --file`), printed as `output.rs` says.

use std::process::ExitCode;

use serde_json::{Value, json};
use stagehand_core::JobOptions;

use super::output::{Answer, Mode, View, count, jobs, span};
use super::{CacheCommand, Command, ScheduleCommand, jobs_file};

/// Jobs asked for per call by `retry-all`, `clean` and `drain` (the server takes up to
/// 10,000): short calls, so other requests to the queue go between them.
const BULK_STEP: u64 = 1000;

/// Runs an admin command against `server`.
pub(super) fn run(server: &str, token: Option<&str>, mode: Mode, command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("stagehand: cannot start a runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // A bare host:port means plain HTTP.
    let server = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    let client = match client(token) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("stagehand: {message}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Events {
        queues,
        job,
        types,
        after,
    } = command
    {
        let follow = super::follow::Follow {
            queues,
            job,
            types,
            after,
        };
        return match runtime.block_on(follow.run(&client, server.trim_end_matches('/'), mode)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("stagehand: {message}");
                ExitCode::FAILURE
            }
        };
    }
    let answer = runtime.block_on(call(&client, server.trim_end_matches('/'), command));
    match answer.and_then(|a| a.render(mode)) {
        Ok(output) => {
            if !output.is_empty() {
                super::output::print_out(&output);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("stagehand: {message}");
            ExitCode::FAILURE
        }
    }
}

/// An HTTP client that sends `token` as a bearer token on every request.
fn client(token: Option<&str>) -> Result<reqwest::Client, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "--token: not a valid header value".to_string())?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))
}

async fn call(client: &reqwest::Client, server: &str, command: Command) -> Result<Answer, String> {
    match command {
        Command::Enqueue {
            queue,
            name,
            data,
            file,
            options,
        } => {
            let input = options.to_input()?;
            // Checked here as the server checks it, so a bad value is told before any is sent.
            input
                .resolve(&JobOptions::default())
                .map_err(|e| e.to_string())?;
            if let Some(path) = file {
                let url = path_url(server, &["api", "queues", &queue, "jobs", "bulk"])?;
                return jobs_file::enqueue(client, url, &queue, &path, &input).await;
            }
            let name = name.ok_or("give the job's NAME, or --file")?;
            let data: Value =
                serde_json::from_str(&data).map_err(|e| format!("--data is not JSON: {e}"))?;
            // The job's id, or a key of this call's own: a retry after an answer that never
            // came (or a 503/504) then finds the job added, rather than adding it twice.
            let key = input.job_id.clone().unwrap_or_else(idempotency_key);
            let options = jobs_file::options_json(&input)?;
            let body = json!({ "name": name, "data": data, "options": options });
            let url = path_url(server, &["api", "queues", &queue, "jobs"])?;
            let answer = with_retries(url.as_str(), || {
                client
                    .post(url.clone())
                    .header("Idempotency-Key", &key)
                    .json(&body)
            })
            .await?;
            Ok(Answer::new(answer, View::Id))
        }
        Command::Job { queue, id } => {
            let url = path_url(server, &["api", "queues", &queue, "jobs", &id])?;
            Ok(Answer::new(get(client, &url).await?, View::Job))
        }
        Command::Jobs {
            queue,
            state,
            limit,
            offset,
        } => {
            let mut url = path_url(server, &["api", "queues", &queue, "jobs"])?;
            url.query_pairs_mut()
                .append_pair("state", &state)
                .append_pair("limit", &limit.to_string())
                .append_pair("offset", &offset.to_string());
            Ok(Answer::new(get(client, &url).await?, View::Jobs(queue)))
        }
        Command::Stats { queue } => Ok(match queue {
            Some(q) => {
                let url = path_url(server, &["api", "queues", &q])?;
                Answer::new(get(client, &url).await?, View::Queue)
            }
            None => {
                let url = path_url(server, &["api", "queues"])?;
                Answer::new(get(client, &url).await?, View::Queues)
            }
        }),
        Command::Retry { queue, id } => {
            let url = path_url(server, &["api", "queues", &queue, "jobs", &id, "retry"])?;
            let answer = post(client, &url, &json!({})).await?;
            let note = format!("job {id} of {queue} is waiting again, with a fresh attempt budget");
            Ok(Answer::new(answer, View::Note(note)))
        }
        Command::Rm { queue, id } => {
            let url = path_url(server, &["api", "queues", &queue, "jobs", &id])?;
            let answer = send(client.delete(url.clone()), url.as_str())
                .await
                .map_err(Failure::into_message)?;
            Ok(Answer::new(
                answer,
                View::Note(format!("removed job {id} from {queue}")),
            ))
        }
        Command::Pause { queue } => {
            let url = path_url(server, &["api", "queues", &queue, "pause"])?;
            let answer = post(client, &url, &json!({})).await?;
            let note = format!("{queue} is paused: its jobs wait until `stagehand resume {queue}`");
            Ok(Answer::new(answer, View::Note(note)))
        }
        Command::Resume { queue } => {
            let url = path_url(server, &["api", "queues", &queue, "resume"])?;
            let answer = post(client, &url, &json!({})).await?;
            Ok(Answer::new(
                answer,
                View::Note(format!("{queue} runs its jobs again")),
            ))
        }
        Command::RetryAll {
            queue,
            state: _,
            limit,
        } => {
            let cap = match limit {
                Some(n) => n,
                None => held(client, server, &queue, &["failed"]).await?,
            };
            let url = path_url(server, &["api", "queues", &queue, "retry-failed"])?;
            let (done, more) =
                bulk(client, &url, cap, "retried", |ask| json!({ "limit": ask })).await?;
            let note = format!(
                "moved {} of {queue} from failed back to waiting{}",
                jobs(done),
                if more {
                    "; more failed jobs remain"
                } else {
                    ""
                }
            );
            Ok(Answer::new(
                json!({ "queue": queue, "retried": done, "more": more }),
                View::Note(note),
            ))
        }
        Command::Clean {
            queue,
            state,
            older_than,
            limit,
        } => {
            let cap = match limit {
                Some(n) => n,
                None => held(client, server, &queue, &[state.as_str()]).await?,
            };
            let older_than_ms = u64::try_from(older_than.as_millis()).unwrap_or(u64::MAX);
            let url = path_url(server, &["api", "queues", &queue, "clean"])?;
            let (done, _) = bulk(
                client,
                &url,
                cap,
                "cleaned",
                |ask| json!({ "state": state, "older_than_ms": older_than_ms, "limit": ask }),
            )
            .await?;
            let note = format!(
                "removed {} from {queue} ({state}, older than {})",
                jobs(done),
                span(older_than_ms)
            );
            Ok(Answer::new(
                json!({ "queue": queue, "state": state, "cleaned": done }),
                View::Note(note),
            ))
        }
        Command::Drain { queue, delayed } => {
            let mut states = vec!["waiting", "prioritized", "paused"];
            if delayed {
                states.push("delayed");
            }
            let cap = held(client, server, &queue, &states).await?;
            let url = path_url(server, &["api", "queues", &queue, "drain"])?;
            let (done, more) = bulk(
                client,
                &url,
                cap,
                "drained",
                |ask| json!({ "delayed": delayed, "limit": ask }),
            )
            .await?;
            let what = if delayed {
                "ready and delayed"
            } else {
                "ready"
            };
            let note = format!(
                "removed {} from {queue} ({what}){}",
                jobs(done),
                if more {
                    "; jobs added meanwhile remain"
                } else {
                    ""
                }
            );
            Ok(Answer::new(
                json!({ "queue": queue, "drained": done, "more": more }),
                View::Note(note),
            ))
        }
        Command::Cache(command) => cache(client, server, command).await,
        Command::Schedules(command) => schedules(client, server, command).await,
        Command::Publish { channel, message } => {
            let message: Value = serde_json::from_str(&message)
                .map_err(|e| format!("the message is not JSON: {e}"))?;
            let url = path_url(server, &["api", "pubsub", &channel])?;
            let answer = post(client, &url, &message).await?;
            Ok(Answer::new(answer, View::Json))
        }
        Command::Wait { queue, id, timeout } => {
            let mut url = path_url(server, &["api", "queues", &queue, "jobs", &id, "wait"])?;
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            url.query_pairs_mut()
                .append_pair("timeout_ms", &ms.to_string());
            Ok(Answer::new(get(client, &url).await?, View::Job))
        }
        Command::Metrics {
            queue,
            since,
            prometheus,
        } => {
            if prometheus {
                let url = path_url(server, &["metrics"])?;
                return Ok(Answer::new(
                    Value::String(get_text(client, &url).await?),
                    View::Text,
                ));
            }
            match queue {
                Some(queue) => {
                    let mut url = path_url(server, &["api", "queues", &queue, "metrics"])?;
                    let now = chrono::Utc::now().timestamp_millis();
                    let back = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
                    url.query_pairs_mut()
                        .append_pair("from", &now.saturating_sub(back).max(0).to_string())
                        .append_pair("to", &now.to_string());
                    Ok(Answer::new(get(client, &url).await?, View::History))
                }
                None => {
                    let url = path_url(server, &["api", "metrics"])?;
                    Ok(Answer::new(get(client, &url).await?, View::Aggregate))
                }
            }
        }
        Command::Events { .. } => Err("events streams; it is run apart".into()),
        Command::Serve { .. } | Command::Completions { .. } => Err("not an admin command".into()),
    }
}

async fn get(client: &reqwest::Client, url: &reqwest::Url) -> Result<Value, String> {
    send(client.get(url.clone()), url.as_str())
        .await
        .map_err(Failure::into_message)
}

/// A GET whose answer is text (`/metrics`).
async fn get_text(client: &reqwest::Client, url: &reqwest::Url) -> Result<String, String> {
    let shown = crate::backend::redacted(url.as_str());
    let response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("cannot reach {shown}: {}", e.without_url()))?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{shown}: {}", e.without_url()))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(super::follow::failure(status, &body))
    }
}

async fn post(client: &reqwest::Client, url: &reqwest::Url, body: &Value) -> Result<Value, String> {
    send(client.post(url.clone()).json(body), url.as_str())
        .await
        .map_err(Failure::into_message)
}

/// How many jobs `queue` holds in `states` now: what a bulk command takes at most when it
/// is given no `--limit`, so that it ends even while jobs keep arriving.
async fn held(
    client: &reqwest::Client,
    server: &str,
    queue: &str,
    states: &[&str],
) -> Result<u64, String> {
    let url = path_url(server, &["api", "queues", queue])?;
    let shown = get(client, &url).await?;
    Ok(states
        .iter()
        .map(|s| shown["counts"][*s].as_u64().unwrap_or(0))
        .sum())
}

/// Calls a bulk route (`body(n)` asks for `n` jobs) in steps of [`BULK_STEP`] until `cap`
/// jobs are done or the server says none are left: `(done, more)`, where `more` says jobs
/// the route would take remain (or may remain).
async fn bulk(
    client: &reqwest::Client,
    url: &reqwest::Url,
    cap: u64,
    field: &str,
    body: impl Fn(u64) -> Value,
) -> Result<(u64, bool), String> {
    let mut done = 0;
    loop {
        let ask = BULK_STEP.min(cap - done);
        if ask == 0 {
            // Jobs the route would take may remain; only a call can say, and none is due.
            return Ok((done, false));
        }
        let answer = post(client, url, &body(ask)).await.map_err(|e| {
            if done > 0 {
                format!("{e} (after {} jobs were done)", count(done))
            } else {
                e
            }
        })?;
        let n = answer[field]
            .as_u64()
            .ok_or_else(|| format!("unexpected answer: {answer}"))?;
        done += n;
        // A route without `more` (clean) has more only while it fills what was asked.
        let more = answer["more"].as_bool().unwrap_or(n == ask);
        if !more || n == 0 {
            return Ok((done, false));
        }
        if done >= cap {
            return Ok((done, true));
        }
    }
}

async fn cache(
    client: &reqwest::Client,
    server: &str,
    command: CacheCommand,
) -> Result<Answer, String> {
    let answer = match command {
        CacheCommand::Get { key } => {
            let url = path_url(server, &["api", "cache", &key])?;
            send(client.get(url.clone()), url.as_str()).await
        }
        CacheCommand::Set {
            key,
            value,
            ttl,
            tags,
        } => {
            // A bare word is a string, as a shell user means it.
            let value: Value = serde_json::from_str(&value).unwrap_or(Value::String(value));
            let mut body = json!({ "value": value, "tags": tags });
            if let Some(ttl) = ttl {
                body["ttl_ms"] = json!(ttl.as_millis() as u64);
            }
            let url = path_url(server, &["api", "cache", &key])?;
            send(client.put(url.clone()).json(&body), url.as_str()).await
        }
        CacheCommand::Del { key } => {
            let url = path_url(server, &["api", "cache", &key])?;
            send(client.delete(url.clone()), url.as_str()).await
        }
        CacheCommand::Invalidate { keys, pattern, tag } => {
            let body = if !keys.is_empty() {
                json!({ "keys": keys })
            } else if let Some(pattern) = pattern {
                json!({ "pattern": pattern })
            } else if let Some(tag) = tag {
                json!({ "tag": tag })
            } else {
                return Err("give --key (repeatable), --pattern or --tag".into());
            };
            let url = path_url(server, &["api", "cache", "invalidate"])?;
            send(client.post(url.clone()).json(&body), url.as_str()).await
        }
        CacheCommand::Stats => {
            let url = path_url(server, &["api", "cache", "stats"])?;
            send(client.get(url.clone()), url.as_str()).await
        }
    };
    let answer = match answer.map_err(Failure::into_message)? {
        // A 204: nothing to print.
        Value::Null => Answer::new(Value::Null, View::Nothing),
        other => Answer::new(other, View::Json),
    };
    Ok(answer)
}

async fn schedules(
    client: &reqwest::Client,
    server: &str,
    command: ScheduleCommand,
) -> Result<Answer, String> {
    let answer = match command {
        ScheduleCommand::List => {
            let url = path_url(server, &["api", "schedules"])?;
            send(client.get(url.clone()), url.as_str()).await
        }
        ScheduleCommand::Show { id } => {
            let url = path_url(server, &["api", "schedules", &id])?;
            send(client.get(url.clone()), url.as_str()).await
        }
        ScheduleCommand::Rm { id } => {
            let url = path_url(server, &["api", "schedules", &id])?;
            send(client.delete(url.clone()), url.as_str()).await
        }
        ScheduleCommand::Add {
            id,
            queue,
            name,
            cron,
            every,
            tz,
            data,
            missed,
            start_at,
            end_at,
            limit,
        } => {
            let data: Value =
                serde_json::from_str(&data).map_err(|e| format!("--data is not JSON: {e}"))?;
            let mut body = json!({ "queue": queue, "name": name, "data": data });
            if let Some(cron) = cron {
                body["cron"] = json!(cron);
            }
            if let Some(every) = every {
                body["every_ms"] = json!(every.as_millis() as u64);
            }
            if let Some(missed) = missed {
                body["missed"] = match missed.split_once(':') {
                    Some(("catch_up", n)) => {
                        json!({ "catch_up": n.parse::<u32>().map_err(|_| format!("--missed catch_up:N takes a number, not '{n}'"))? })
                    }
                    _ => json!(missed),
                };
            }
            for (field, value) in [("tz", tz), ("start_at", start_at), ("end_at", end_at)] {
                if let Some(value) = value {
                    body[field] = json!(value);
                }
            }
            if let Some(limit) = limit {
                body["limit"] = json!(limit);
            }
            let url = path_url(server, &["api", "schedules", &id])?;
            send(client.put(url.clone()).json(&body), url.as_str()).await
        }
    };
    Ok(Answer::new(
        answer.map_err(Failure::into_message)?,
        View::Json,
    ))
}

/// `server` with `segments` appended, each percent-encoded (a key may hold `/`, `?`, `#`).
fn path_url(server: &str, segments: &[&str]) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(server)
        .map_err(|e| format!("--server takes a URL such as http://127.0.0.1:8080 ({e})"))?;
    url.path_segments_mut()
        .map_err(|_| "--server must be an http:// or https:// URL".to_string())?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// A fresh idempotency key: `cli-` and 128 random bits in hex.
fn idempotency_key() -> String {
    format!("cli-{:032x}", fastrand::u128(..))
}

/// How many times an add is sent before the CLI gives up on a server that cannot say.
const ADD_TRIES: u32 = 5;

/// Sends the request `make` builds, again after a growing pause while the server answers
/// 503 or 504 or cannot be reached, up to [`ADD_TRIES`] times. Only for idempotent requests.
async fn with_retries(
    url: &str,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Value, String> {
    let mut pause = std::time::Duration::from_millis(250);
    let mut tries = 1;
    loop {
        match send(make(), url).await {
            Err(Failure::Retryable(message)) if tries < ADD_TRIES => {
                eprintln!(
                    "stagehand: {message}; trying again in {} ms",
                    pause.as_millis()
                );
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            other => return other.map_err(Failure::into_message),
        }
    }
}

/// Why a request failed: worth another try (503, 504, no connection) or not.
enum Failure {
    Retryable(String),
    Final(String),
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Failure::Retryable(m) | Failure::Final(m) => m,
        }
    }
}

/// Sends a request; a non-2xx answer becomes its `error: detail`.
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<Value, Failure> {
    let response = request.send().await.map_err(|e| {
        let builder = e.is_builder();
        let shown = crate::backend::redacted(url);
        let message = format!(
            "cannot reach {shown}: {} (is `stagehand serve` running? see --server)",
            e.without_url()
        );
        if builder {
            Failure::Final(format!(
                "{message}; --server takes a URL such as http://127.0.0.1:8080"
            ))
        } else {
            Failure::Retryable(message)
        }
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let body: Value = response.json().await.map_err(|e| {
        Failure::Final(format!(
            "{} answered {status} without JSON: {}",
            crate::backend::redacted(url),
            e.without_url()
        ))
    })?;
    if status.is_success() {
        return Ok(body);
    }
    let message = format!(
        "{status}: {}: {}",
        body["error"].as_str().unwrap_or("error"),
        body["detail"].as_str().unwrap_or("")
    );
    Err(match status.as_u16() {
        503 | 504 => Failure::Retryable(message),
        _ => Failure::Final(message),
    })
}
