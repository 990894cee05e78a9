//! Following a queue's events stream (`XREAD BLOCK` on a connection of its own) and handing
//! each event to the store's subscribers.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig, Client, Value};
use tokio::sync::broadcast;

use crate::clock::now_ms;
use crate::error::StoreError;
use crate::store::{JobEvent, JobEventKind};

fn text(fields: &HashMap<String, Value>, name: &str) -> Option<String> {
    match fields.get(name)? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn decode(queue: &str, fields: &HashMap<String, Value>) -> Option<JobEvent> {
    let id = text(fields, "id")?;
    let kind = match text(fields, "event")?.as_str() {
        "added" => JobEventKind::Added,
        "active" => JobEventKind::Active,
        "completed" => JobEventKind::Completed,
        "stalled" => JobEventKind::Stalled,
        "removed" => JobEventKind::Removed,
        "failed" => JobEventKind::Failed {
            reason: text(fields, "reason").unwrap_or_default(),
        },
        "retrying" => JobEventKind::Retrying {
            delay_ms: text(fields, "delay_ms")?.parse::<f64>().ok()? as u64,
        },
        "progress" => JobEventKind::Progress {
            value: serde_json::from_str(&text(fields, "value")?).ok()?,
        },
        _ => return None,
    };
    Some(JobEvent {
        queue: queue.to_string(),
        id: id.into(),
        kind,
        at: now_ms(),
    })
}

/// Starts following `KEYS:events` from its current end; stops when the store (the last strong
/// reference to `events`) is dropped.
pub(super) async fn follow(
    client: &Client,
    keys: &str,
    queue: &str,
    events: Weak<broadcast::Sender<JobEvent>>,
) -> Result<(), StoreError> {
    let unavailable = |e: redis::RedisError| StoreError::Unavailable(e.to_string());
    let config = AsyncConnectionConfig::new().set_response_timeout(None);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(unavailable)?;
    let stream = format!("{keys}:events");
    // Start after the newest event now, so nothing published from here on is missed.
    let newest: Vec<(String, HashMap<String, Value>)> = redis::cmd("XREVRANGE")
        .arg(&stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .map_err(unavailable)?;
    let mut last = newest
        .first()
        .map_or_else(|| "0-0".to_string(), |(id, _)| id.clone());
    let queue = queue.to_string();
    tokio::spawn(async move {
        let options = StreamReadOptions::default().block(1000).count(500);
        loop {
            let Some(sender) = events.upgrade() else {
                return;
            };
            let reply: Result<Option<StreamReadReply>, _> =
                conn.xread_options(&[&stream], &[&last], &options).await;
            match reply {
                Ok(Some(reply)) => {
                    for key in reply.keys {
                        for entry in key.ids {
                            if sender.receiver_count() > 0
                                && let Some(event) = decode(&queue, &entry.map)
                            {
                                let _ = sender.send(event);
                            }
                            last = entry.id;
                        }
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(queue = %queue, error = %err, "reading job events failed; retrying");
                    drop(sender);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}
