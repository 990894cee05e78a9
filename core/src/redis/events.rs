//! Following a queue's events stream (`XREAD BLOCK` on a connection of its own) and handing
//! each event to the store's subscribers.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};
use tokio::sync::{Notify, broadcast};

use super::conn::{Conn, Target};
use crate::clock::now_ms;
use crate::events::{EventPage, EventPosition};
use crate::store::{JobEvent, JobEventKind};

fn text(fields: &HashMap<String, Value>, name: &str) -> Option<String> {
    match fields.get(name)? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// A stream entry id (`MS-SEQ`) as numbers.
fn entry_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The events of one stream entry: one job's (`id`, with the kind's fields) or many jobs' of one
/// kind (`ids`, newline-separated, as the scripts batch them). Each is placed by the entry's
/// id and its index in the entry, and dated by the entry (Redis's clock when it was written).
pub(super) fn decode(queue: &str, entry: &str, fields: &HashMap<String, Value>) -> Vec<JobEvent> {
    let ids = match (text(fields, "id"), text(fields, "ids")) {
        (Some(id), _) => vec![id],
        (None, Some(ids)) => ids.split('\n').map(str::to_string).collect(),
        (None, None) => return Vec::new(),
    };
    let Some(kind) = decode_kind(fields) else {
        return Vec::new();
    };
    let placed = entry_id(entry);
    let at = placed.map_or_else(now_ms, |(ms, _)| ms);
    ids.into_iter()
        .enumerate()
        .map(|(index, id)| JobEvent {
            queue: queue.to_string(),
            id: id.into(),
            kind: kind.clone(),
            at,
            position: placed.map(|(major, minor)| EventPosition {
                major,
                minor,
                index: u32::try_from(index).unwrap_or(u32::MAX),
            }),
        })
        .collect()
}

fn decode_kind(fields: &HashMap<String, Value>) -> Option<JobEventKind> {
    Some(match text(fields, "event")?.as_str() {
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

/// A queue's job events as this process hands them out: subscribers, and the follower's
/// wake-up when the first one arrives.
pub(super) struct EventFeed {
    sender: broadcast::Sender<JobEvent>,
    wanted: Notify,
}

impl EventFeed {
    pub(super) fn new() -> EventFeed {
        EventFeed {
            sender: broadcast::channel(16_384).0,
            wanted: Notify::new(),
        }
    }

    /// A new subscriber: it sees every event from now on (and perhaps a few from just before).
    pub(super) fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        let rx = self.sender.subscribe();
        self.wanted.notify_one();
        rx
    }

    fn followed(&self) -> bool {
        self.sender.receiver_count() > 0
    }
}

/// How often an unwatched follower notes where the stream ends.
const UNWATCHED_POLL: Duration = Duration::from_millis(200);

/// Follows `KEYS:events` from its current end (taken now if Redis answers, else at the first
/// connection), reconnecting as needed; stops when the store, the last strong reference to
/// `feed`, is dropped. While nobody subscribes it reads no events: it only notes where the
/// stream ends, before it checks that nobody subscribed, so a subscriber that arrives later
/// still gets every event after its arrival.
pub(super) async fn follow(target: &Target, keys: &str, queue: &str, feed: Weak<EventFeed>) {
    let stream = super::keys::fixed(keys, "events");
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
            let Some(this) = feed.upgrade() else {
                return;
            };
            let step = async {
                if conn.is_none() {
                    conn = Some(target.blocking().await?);
                }
                let c = conn.as_mut().expect("connected above");
                if !this.followed() {
                    let end = newest(c, &stream).await?;
                    if !this.followed() {
                        last = Some(end);
                    }
                    return Ok::<_, redis::RedisError>(None);
                }
                let from = match &last {
                    Some(id) => id.clone(),
                    None => newest(c, &stream).await?,
                };
                last = Some(from.clone());
                let reply: Option<StreamReadReply> =
                    c.xread_options(&[&stream], &[&from], &options).await?;
                Ok(reply)
            };
            let result = step.await;
            if result.is_ok() && failing {
                failing = false;
                tracing::info!(queue = %queue, "following job events again");
            }
            match result {
                Ok(Some(reply)) => {
                    for key in reply.keys {
                        for entry in key.ids {
                            if this.followed() {
                                for event in decode(&queue, &entry.id, &entry.map) {
                                    let _ = this.sender.send(event);
                                }
                            }
                            last = Some(entry.id);
                        }
                    }
                }
                Ok(None) => {
                    if !this.followed() {
                        let _ = tokio::time::timeout(UNWATCHED_POLL, this.wanted.notified()).await;
                    }
                }
                Err(err) => {
                    drop(this);
                    if !failing {
                        // The pools tell the outage; this only says what it means for events.
                        tracing::info!(queue = %queue, error = %err, "following job events paused until Redis answers; retrying every second");
                    }
                    failing = true;
                    conn = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

/// Up to `max` events after `after` in `stream`, read with `XRANGE` from the entry holding
/// `after` (its earlier events skipped), entry by entry until `max` events are found or the
/// stream ends.
pub(super) async fn after(
    conn: &mut Conn,
    stream: &str,
    queue: &str,
    after: EventPosition,
    max: usize,
) -> Result<EventPage, redis::RedisError> {
    let oldest: Vec<(String, HashMap<String, Value>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    // Entries after `after`'s were trimmed when the oldest left is younger than it.
    let trimmed = oldest
        .first()
        .and_then(|(id, _)| entry_id(id))
        .is_some_and(|oldest| oldest > (after.major, after.minor));
    let newest = newest(conn, stream).await?;
    if entry_id(&newest).is_none_or(|newest| newest < (after.major, after.minor)) {
        return Ok(EventPage {
            events: Vec::new(),
            trimmed: false,
            ahead: true,
        });
    }
    let mut events = Vec::new();
    let mut from = format!("{}-{}", after.major, after.minor);
    let mut inclusive = true;
    while events.len() < max {
        let start = if inclusive {
            from.clone()
        } else {
            format!("({from}")
        };
        let entries: Vec<(String, HashMap<String, Value>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(100)
            .query_async(conn)
            .await?;
        let Some((last, _)) = entries.last() else {
            break;
        };
        from = last.clone();
        inclusive = false;
        for (id, fields) in &entries {
            for event in decode(queue, id, fields) {
                if event.position.is_some_and(|p| p > after) && events.len() < max {
                    events.push(event);
                }
            }
        }
    }
    Ok(EventPage {
        events,
        trimmed,
        ahead: false,
    })
}
