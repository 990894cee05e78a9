//! Following a queue's events stream (`XREAD BLOCK` on a connection of its own) and handing
//! each event to the store's subscribers.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};
use tokio::sync::broadcast;

use super::conn::{Conn, Target};
use crate::clock::now_ms;
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

/// The id of the newest event in `stream`, or `0-0` for an empty stream.
async fn newest(conn: &mut Conn, stream: &str) -> Result<String, redis::RedisError> {
    let newest: Vec<(String, HashMap<String, Value>)> = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(newest
        .first()
        .map_or_else(|| "0-0".to_string(), |(id, _)| id.clone()))
}

/// Follows `KEYS:events` from its current end (taken now if Redis answers, else at the first
/// connection), reconnecting as needed; stops when the store, the last strong reference to
/// `events`, is dropped.
pub(super) async fn follow(
    target: &Target,
    keys: &str,
    queue: &str,
    events: Weak<broadcast::Sender<JobEvent>>,
) {
    let stream = format!("{keys}:events");
    let mut conn = target.blocking().await.ok();
    let mut last = match conn.as_mut() {
        Some(c) => newest(c, &stream).await.ok(),
        None => None,
    };
    let target = target.clone();
    let queue = queue.to_string();
    tokio::spawn(async move {
        let options = StreamReadOptions::default().block(1000).count(500);
        let mut failing = false;
        loop {
            if events.strong_count() == 0 {
                return;
            }
            let step = async {
                if conn.is_none() {
                    conn = Some(target.blocking().await?);
                }
                let c = conn.as_mut().expect("connected above");
                let from = match &last {
                    Some(id) => id.clone(),
                    None => newest(c, &stream).await?,
                };
                last = Some(from.clone());
                let reply: Option<StreamReadReply> =
                    c.xread_options(&[&stream], &[&from], &options).await?;
                Ok::<_, redis::RedisError>(reply)
            };
            let result = step.await;
            if result.is_ok() && failing {
                failing = false;
                tracing::info!(queue = %queue, "following job events again");
            }
            match result {
                Ok(Some(reply)) => {
                    let Some(sender) = events.upgrade() else {
                        return;
                    };
                    for key in reply.keys {
                        for entry in key.ids {
                            if sender.receiver_count() > 0
                                && let Some(event) = decode(&queue, &entry.map)
                            {
                                let _ = sender.send(event);
                            }
                            last = Some(entry.id);
                        }
                    }
                }
                Ok(None) => {}
                Err(err) => {
                    if !failing {
                        tracing::warn!(queue = %queue, error = %err, "following job events failed; retrying every second");
                    }
                    failing = true;
                    conn = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}
