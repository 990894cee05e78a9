//! `GET /api/events`: job events as Server-Sent Events, and `GET
//! /api/queues/{q}/jobs/{id}/wait`: an answer when one job finishes.
//!
//! Events come from each queue's store, so they follow every process on the same Redis. Each
//! frame's `id` is a cursor (`queue:position,...`, one position per followed queue); a client
//! that reconnects with it as `Last-Event-ID` (or `?last_event_id=`) first gets what the store
//! still holds after it, then the live events, with nothing twice. When the history no longer
//! reaches back that far the stream says so with an `event: gap` frame.
//!
//! A client that does not keep up is cut off rather than buffered for: at most
//! [`OUT_BUFFER`] frames wait for it, and a follower that falls behind the store's live feed
//! ends the stream too; either way the client resumes from its last id.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use stagehand_core::events::EventPosition;
use stagehand_core::store::{JobEvent, JobEventKind};
use stagehand_core::{JobState, QueueStore};
use tokio::sync::{broadcast, mpsc, watch};

use super::{ApiError, ApiState};

/// Frames waiting for a slow client before it is cut off.
pub(super) const OUT_BUFFER: usize = 1024;
/// Events read from the store's history per call while catching up.
const PAGE: usize = 500;
/// How often an idle stream sends a comment, so proxies and clients see it alive.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The event types a filter may name.
const TYPES: [&str; 8] = [
    "added",
    "active",
    "progress",
    "completed",
    "failed",
    "retrying",
    "stalled",
    "removed",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    /// Queues, comma-separated (default: every queue).
    queue: Option<String>,
    /// Only this job's events.
    job: Option<String>,
    /// Event types, comma-separated (default: every type).
    #[serde(rename = "type")]
    types: Option<String>,
    /// A cursor to resume after, for clients that cannot set `Last-Event-ID`.
    last_event_id: Option<String>,
}

/// Positions by queue, as a frame's id carries them.
type Cursor = BTreeMap<String, EventPosition>;

fn parse_cursor(text: &str) -> Result<Cursor, ApiError> {
    let bad = |why: String| ApiError::BadRequest(format!("Last-Event-ID: {why}"));
    let mut cursor = Cursor::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (queue, position) = part
            .split_once(':')
            .ok_or_else(|| bad(format!("'{part}' is not QUEUE:POSITION")))?;
        cursor.insert(queue.to_string(), position.parse().map_err(bad)?);
    }
    Ok(cursor)
}

fn show_cursor(cursor: &Cursor) -> String {
    let parts: Vec<String> = cursor.iter().map(|(q, p)| format!("{q}:{p}")).collect();
    parts.join(",")
}

fn kind_name(kind: &JobEventKind) -> &'static str {
    match kind {
        JobEventKind::Added => "added",
        JobEventKind::Active => "active",
        JobEventKind::Progress { .. } => "progress",
        JobEventKind::Completed => "completed",
        JobEventKind::Failed { .. } => "failed",
        JobEventKind::Retrying { .. } => "retrying",
        JobEventKind::Stalled => "stalled",
        JobEventKind::Removed => "removed",
    }
}

/// What a client asked to see.
struct Filter {
    job: Option<String>,
    types: Option<Vec<String>>,
}

impl Filter {
    fn wants(&self, event: &JobEvent) -> bool {
        self.job.as_ref().is_none_or(|job| *job == *event.id)
            && self
                .types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == kind_name(&event.kind)))
    }
}

/// One client's stream: frames go out through a bounded channel; a full one cuts it off.
struct Outlet {
    tx: mpsc::Sender<Bytes>,
    cursor: Mutex<Cursor>,
    cut: watch::Sender<bool>,
}

impl Outlet {
    /// Sends `event` as a frame whose id is the cursor after it; false once the stream ended.
    fn event(&self, event: &JobEvent) -> bool {
        let data = match serde_json::to_string(event) {
            Ok(data) => data,
            Err(_) => return true,
        };
        // The cursor moves and the frame is queued under one lock, so ids go out in order.
        let mut cursor = self.cursor.lock();
        if let Some(position) = event.position {
            cursor.insert(event.queue.clone(), position);
        }
        let frame = format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            show_cursor(&cursor),
            kind_name(&event.kind)
        );
        self.send(frame)
    }

    fn send(&self, frame: String) -> bool {
        if *self.cut.borrow() {
            return false;
        }
        match self.tx.try_send(Bytes::from(frame)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::info!(
                    buffered = OUT_BUFFER,
                    "an event stream was cut off: its client does not keep up (it resumes from its last id)"
                );
                self.cut.send_replace(true);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // The client went away: every task of this stream stops.
                self.cut.send_replace(true);
                false
            }
        }
    }

    /// A last frame saying why the stream ends (if there is room for it), then the end.
    fn end(&self, why: &str) {
        if !*self.cut.borrow() {
            let frame = format!("event: error\ndata: {}\n\n", json!({ "error": why }));
            let _ = self.tx.try_send(Bytes::from(frame));
        }
        self.cut.send_replace(true);
    }
}

/// Follows one queue for one client: the history after `from` (if any), then live events.
async fn follow(
    queue: String,
    store: Arc<dyn QueueStore>,
    mut live: broadcast::Receiver<JobEvent>,
    from: Option<EventPosition>,
    filter: Arc<Filter>,
    outlet: Arc<Outlet>,
) {
    let mut cut = outlet.cut.subscribe();
    let mut last = from;
    if let Some(from) = from {
        let mut after = from;
        let mut first = true;
        loop {
            let page = match store.events_after(after, PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    outlet.end(&format!(
                        "queue '{queue}': the event history cannot be read: {err}"
                    ));
                    return;
                }
            };
            if first && page.trimmed {
                let data = json!({ "queue": queue, "after": from.to_string(), "detail": "the store's event history no longer reaches back to this position; events may be missing" });
                if !outlet.send(format!("event: gap\ndata: {data}\n\n")) {
                    return;
                }
            }
            first = false;
            let full = page.events.len() == PAGE;
            for event in page.events {
                if let Some(position) = event.position {
                    after = position;
                    last = Some(position);
                }
                if filter.wants(&event) && !outlet.event(&event) {
                    return;
                }
            }
            if !full {
                break;
            }
        }
    }
    loop {
        let received = tokio::select! {
            received = live.recv() => received,
            _ = cut.wait_for(|cut| *cut) => return,
        };
        match received {
            Ok(event) => {
                // Already sent from the history.
                if let (Some(position), Some(last)) = (event.position, last)
                    && position <= last
                {
                    continue;
                }
                if filter.wants(&event) && !outlet.event(&event) {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::info!(queue = %queue, missed, "an event stream was cut off: events went by faster than it took them (it resumes from its last id)");
                outlet.end(&format!(
                    "queue '{queue}': {missed} events went by faster than this stream could take them; resume from the last id"
                ));
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

pub(super) async fn stream(
    state: web::Data<ApiState>,
    request: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let queues: Vec<String> = match &query.queue {
        Some(list) => list
            .split(',')
            .filter(|q| !q.is_empty())
            .map(str::to_string)
            .collect(),
        None => state
            .runtime
            .queues()
            .map(|q| q.name().to_string())
            .collect(),
    };
    let mut stores = Vec::new();
    for queue in &queues {
        state.queue(queue)?;
        let store = state
            .runtime
            .store(queue)
            .ok_or_else(|| ApiError::BadRequest(format!("queue '{queue}' has no store")))?;
        stores.push((queue.clone(), store));
    }
    let types = match &query.types {
        Some(list) => {
            let types: Vec<String> = list.split(',').map(str::to_string).collect();
            if let Some(bad) = types.iter().find(|t| !TYPES.contains(&t.as_str())) {
                return Err(ApiError::BadRequest(format!(
                    "type: '{bad}' is not one of {}",
                    TYPES.join(", ")
                )));
            }
            Some(types)
        }
        None => None,
    };
    let header = request
        .headers()
        .get("Last-Event-ID")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::BadRequest("Last-Event-ID: must be visible ASCII".into()))
        })
        .transpose()?;
    let cursor = match header.or(query.last_event_id) {
        Some(text) => parse_cursor(&text)?,
        None => Cursor::new(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(OUT_BUFFER);
    let outlet = Arc::new(Outlet {
        tx,
        cursor: Mutex::new(cursor.clone()),
        cut: watch::channel(false).0,
    });
    let filter = Arc::new(Filter {
        job: query.job,
        types,
    });
    // Subscribed before the history is read, so nothing falls between the two.
    for (queue, store) in stores {
        let live = store.subscribe();
        let from = cursor.get(&queue).copied();
        actix_web::rt::spawn(follow(
            queue,
            store,
            live,
            from,
            Arc::clone(&filter),
            Arc::clone(&outlet),
        ));
    }
    let keepalive = Arc::clone(&outlet);
    let mut closing = state.closing.subscribe();
    actix_web::rt::spawn(async move {
        let mut cut = keepalive.cut.subscribe();
        let mut tick = tokio::time::interval(KEEPALIVE);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if !keepalive.send(": keepalive\n\n".into()) {
                        return;
                    }
                }
                _ = closing.wait_for(|closing| *closing) => {
                    keepalive.end("the server is shutting down; resume from the last id");
                    return;
                }
                _ = cut.wait_for(|cut| *cut) => return,
            }
        }
    });
    // The body ends once every task has let go of the outlet: when the stream is cut, the
    // client has gone, or every queue's feed closed.
    drop(outlet);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        let frame = rx.recv().await?;
        Some((Ok::<_, actix_web::Error>(frame), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// The longest a wait may ask for.
const MAX_WAIT_MS: u64 = 300_000;
/// A wait's length when it names none.
const DEFAULT_WAIT_MS: u64 = 30_000;
/// How often a wait reads the job again, whatever the events say (one may have been missed
/// while the store's feed reconnected).
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    timeout_ms: Option<u64>,
}

/// Answers with the job once it has completed or failed for good; `408` if it has not within
/// `timeout_ms`, `404` if there is no such job (or it was removed meanwhile).
pub(super) async fn wait(
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    query: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let (name, id) = path.into_inner();
    let timeout_ms = query.timeout_ms.unwrap_or(DEFAULT_WAIT_MS);
    if timeout_ms > MAX_WAIT_MS {
        return Err(ApiError::BadRequest(format!(
            "timeout_ms: must be 0 to {MAX_WAIT_MS}"
        )));
    }
    let queue = state.queue(&name)?;
    let store = state
        .runtime
        .store(&name)
        .ok_or_else(|| ApiError::BadRequest(format!("queue '{name}' has no store")))?;
    // Subscribed before the first read, so a finish between the two is not missed.
    let mut live = store.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
    loop {
        let job = queue.get(&id).await?.ok_or_else(|| ApiError::UnknownJob {
            queue: name.clone(),
            id: id.clone(),
        })?;
        if matches!(job.state, JobState::Completed | JobState::Failed) {
            return Ok(HttpResponse::Ok().json(job));
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(ApiError::Timeout(format!(
                "job '{id}' in queue '{name}' did not finish within {timeout_ms} ms; it is {}",
                serde_json::to_value(job.state).unwrap_or_default()
            )));
        }
        let until = deadline.min(now + RECHECK);
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) if *event.id == *id && matches!(
                        event.kind,
                        JobEventKind::Completed | JobEventKind::Failed { .. } | JobEventKind::Removed
                    ) => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep_until(until).await;
                        break;
                    }
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
    }
}
