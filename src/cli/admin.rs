//! Admin commands: each one HTTP call to a running server, its JSON printed.

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::{CacheCommand, Command, ScheduleCommand};

/// Runs an admin command against `server`.
pub(super) fn run(server: &str, token: Option<&str>, command: Command) -> ExitCode {
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
    match runtime.block_on(call(&client, server.trim_end_matches('/'), command)) {
        Ok(output) => {
            println!("{output}");
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

async fn call(client: &reqwest::Client, server: &str, command: Command) -> Result<String, String> {
    match command {
        Command::Enqueue {
            queue,
            name,
            data,
            delay,
            priority,
            attempts,
            job_id,
        } => {
            let data: Value =
                serde_json::from_str(&data).map_err(|e| format!("--data is not JSON: {e}"))?;
            let mut options = Map::new();
            if let Some(d) = delay {
                options.insert("delay_ms".into(), json!(d.as_millis() as u64));
            }
            if let Some(p) = priority {
                options.insert("priority".into(), json!(p));
            }
            if let Some(a) = attempts {
                options.insert("attempts".into(), json!(a));
            }
            // The job's id, or a key of this call's own: a retry after an answer that never
            // came (or a 503/504) then finds the job added, rather than adding it twice.
            let key = job_id.clone().unwrap_or_else(idempotency_key);
            if let Some(id) = job_id {
                options.insert("job_id".into(), json!(id));
            }
            let body = json!({ "name": name, "data": data, "options": options });
            let url = format!("{server}/api/queues/{queue}/jobs");
            let answer = with_retries(&url, || {
                client
                    .post(&url)
                    .header("Idempotency-Key", &key)
                    .json(&body)
            })
            .await?;
            answer["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("unexpected answer: {answer}"))
        }
        Command::Job { queue, id } => {
            let url = format!("{server}/api/queues/{queue}/jobs/{id}");
            pretty(
                send(client.get(&url), &url)
                    .await
                    .map_err(Failure::into_message)?,
            )
        }
        Command::Stats { queue } => {
            let url = match queue {
                Some(q) => format!("{server}/api/queues/{q}"),
                None => format!("{server}/api/queues"),
            };
            pretty(
                send(client.get(&url), &url)
                    .await
                    .map_err(Failure::into_message)?,
            )
        }
        Command::Cache(command) => cache(client, server, command).await,
        Command::Schedules(command) => schedules(client, server, command).await,
        Command::Publish { channel, message } => {
            let message: Value = serde_json::from_str(&message)
                .map_err(|e| format!("the message is not JSON: {e}"))?;
            let url = path_url(server, &["api", "pubsub", &channel])?;
            let answer = send(client.post(url.clone()).json(&message), url.as_str())
                .await
                .map_err(Failure::into_message)?;
            pretty(answer)
        }
        Command::Serve { .. } => Err("serve is not an admin command".into()),
    }
}

async fn cache(
    client: &reqwest::Client,
    server: &str,
    command: CacheCommand,
) -> Result<String, String> {
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
    match answer.map_err(Failure::into_message)? {
        Value::Null => Ok(String::new()),
        other => pretty(other),
    }
}

async fn schedules(
    client: &reqwest::Client,
    server: &str,
    command: ScheduleCommand,
) -> Result<String, String> {
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
    pretty(answer.map_err(Failure::into_message)?)
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

fn pretty(value: Value) -> Result<String, String> {
    serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
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
