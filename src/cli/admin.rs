//! Admin commands: each one HTTP call to a running server, its JSON printed.

use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::Command;

/// Runs an admin command against `server`.
pub(super) fn run(server: &str, command: Command) -> ExitCode {
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
    match runtime.block_on(call(server.trim_end_matches('/'), command)) {
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

async fn call(server: &str, command: Command) -> Result<String, String> {
    let client = reqwest::Client::new();
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
            if let Some(id) = job_id {
                options.insert("job_id".into(), json!(id));
            }
            let body = json!({ "name": name, "data": data, "options": options });
            let url = format!("{server}/api/queues/{queue}/jobs");
            let answer = send(client.post(&url).json(&body), &url).await?;
            answer["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("unexpected answer: {answer}"))
        }
        Command::Job { queue, id } => {
            let url = format!("{server}/api/queues/{queue}/jobs/{id}");
            pretty(send(client.get(&url), &url).await?)
        }
        Command::Stats { queue } => {
            let url = match queue {
                Some(q) => format!("{server}/api/queues/{q}"),
                None => format!("{server}/api/queues"),
            };
            pretty(send(client.get(&url), &url).await?)
        }
        Command::Serve { .. } => Err("serve is not an admin command".into()),
    }
}

fn pretty(value: Value) -> Result<String, String> {
    serde_json::to_string_pretty(&value).map_err(|e| e.to_string())
}

/// Sends a request; a non-2xx answer becomes its `error: detail`.
async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| {
        format!("cannot reach {url}: {e} (is `stagehand serve` running? see --server)")
    })?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} without JSON: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{status}: {}: {}",
            body["error"].as_str().unwrap_or("error"),
            body["detail"].as_str().unwrap_or("")
        ))
    }
}
