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
use serde::Deserialize;
use serde_json::json;
use stagehand_core::events::EventPosition;
use stagehand_core::store::{JobEvent, JobEventKind};
use stagehand_core::{JobState, QueueStore};
use tokio::sync::{broadcast, mpsc, watch};

use super::{ApiError, ApiState};

/// Frames waiting for a client at most.
pub(super) const OUT_BUFFER: usize = 1024;
/// How long a client may leave a full buffer untaken before it is cut off.
const SLOW_CLIENT: Duration = Duration::from_secs(10);
/// Event streams open at once, at most.
const MAX_STREAMS: usize = 1_000;
/// Events read from the store's history per call while catching up.
const PAGE: usize = 500;
/// How often an idle stream sends a comment, so proxies and clients see it alive (and a client
/// that went away is noticed).
const KEEPALIVE: Duration = Duration::from_secs(5);
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

/// One client's stream: frames go out through a bounded channel. A client that does not take
/// a frame within [`SLOW_CLIENT`] once the channel is full is cut off.
struct Outlet {
    tx: mpsc::Sender<Bytes>,
    /// Held across a frame's send, so frames (and their cursors) go out in order.
    cursor: tokio::sync::Mutex<Cursor>,
    cut: watch::Sender<bool>,
}

impl Outlet {
    /// Sends `event` as a frame whose id is the cursor after it; false once the stream ended.
    async fn event(&self, event: &JobEvent) -> bool {
        let Ok(data) = serde_json::to_string(event) else {
            return true;
        };
        let mut cursor = self.cursor.lock().await;
        if let Some(position) = event.position {
            cursor.insert(event.queue.clone(), position);
        }
        let frame = format!(
            "id: {}\nevent: {}\ndata: {data}\n\n",
            show_cursor(&cursor),
            kind_name(&event.kind)
        );
        self.send(frame).await
    }

    /// Queues `frame`, waiting up to [`SLOW_CLIENT`] for room; false once the stream ended.
    async fn send(&self, frame: String) -> bool {
        if *self.cut.borrow() {
            return false;
        }
        match tokio::time::timeout(SLOW_CLIENT, self.tx.send(Bytes::from(frame))).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                // The client went away: every task of this stream stops.
                self.cut.send_replace(true);
                false
            }
            Err(_) => {
                tracing::info!(
                    buffered = OUT_BUFFER,
                    "an event stream was cut off: its client took no frame for {} s (it resumes from its last id)",
                    SLOW_CLIENT.as_secs()
                );
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

/// One queue followed for one client.
struct Follower {
    queue: String,
    store: Arc<dyn QueueStore>,
    filter: Arc<Filter>,
    outlet: Arc<Outlet>,
    /// The last event dealt with (sent, or passed over by the filter).
    last: Option<EventPosition>,
}

impl Follower {
    /// Sends what the store's history holds after `self.last`; false once the stream ended.
    /// A history that no longer reaches back that far, or a position the store has never
    /// reached (a cursor from before a restart, say), is told with an `event: gap` frame.
    async fn catch_up(&mut self) -> bool {
        let Some(mut after) = self.last else {
            return true;
        };
        let mut first = true;
        loop {
            let page = match self.store.events_after(after, PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    self.outlet.end(&format!(
                        "queue '{}': the event history cannot be read: {err}",
                        self.queue
                    ));
                    return false;
                }
            };
            if first && (page.trimmed || page.ahead) {
                // The cursor no longer compares with what follows: the page's events set it.
                self.last = None;
                let detail = if page.ahead {
                    "the cursor is past the store's newest event (the store was reset or the cursor is not its own); following from now"
                } else {
                    "the store's event history no longer reaches back to the cursor; events may be missing"
                };
                let data =
                    json!({ "queue": self.queue, "after": after.to_string(), "detail": detail });
                if !self
                    .outlet
                    .send(format!("event: gap\ndata: {data}\n\n"))
                    .await
                {
                    return false;
                }
                if page.ahead {
                    return true;
                }
            }
            first = false;
            let full = page.events.len() == PAGE;
            for event in page.events {
                if let Some(position) = event.position {
                    after = position;
                    self.last = Some(position);
                }
                if self.filter.wants(&event) && !self.outlet.event(&event).await {
                    return false;
                }
            }
            if !full {
                return true;
            }
        }
    }

    /// The history after the cursor (if any), then live events; a stretch the live feed
    /// went too fast for is read back from the history.
    async fn run(mut self, mut live: broadcast::Receiver<JobEvent>) {
        let mut cut = self.outlet.cut.subscribe();
        if !self.catch_up().await {
            return;
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                _ = cut.wait_for(|cut| *cut) => return,
            };
            match received {
                Ok(event) => {
                    if let (Some(position), Some(last)) = (event.position, self.last)
                        && position <= last
                    {
                        continue; // sent from the history already
                    }
                    if event.position.is_some() {
                        self.last = event.position;
                    }
                    if self.filter.wants(&event) && !self.outlet.event(&event).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    if self.last.is_none() {
                        tracing::info!(queue = %self.queue, missed, "an event stream was cut off: events went by faster than it took them, and there is no position to read them back from");
                        self.outlet.end(&format!(
                            "queue '{}': {missed} events went by faster than this stream took them; resume from the last id",
                            self.queue
                        ));
                        return;
                    }
                    if !self.catch_up().await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Counts open event streams; one is let go when its body is dropped.
struct StreamSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(super) async fn stream(
    state: web::Data<ApiState>,
    request: HttpRequest,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let queues: std::collections::BTreeSet<String> = match &query.queue {
        Some(list) => {
            let named: std::collections::BTreeSet<String> = list
                .split(',')
                .filter(|q| !q.is_empty())
                .map(str::to_string)
                .collect();
            if named.is_empty() {
                return Err(ApiError::BadRequest(
                    "queue: name one or more queues (comma-separated), or leave it out for every queue".into(),
                ));
            }
            named
        }
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
    if query.job.as_deref() == Some("") {
        return Err(ApiError::BadRequest(
            "job: give a job id, or leave it out for every job".into(),
        ));
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
    let mut cursor = match header.or(query.last_event_id) {
        Some(text) => parse_cursor(&text)?,
        None => Cursor::new(),
    };
    // A cursor names queues that exist; only the followed ones are kept (and echoed).
    for queue in cursor.keys() {
        state.queue(queue)?;
    }
    cursor.retain(|queue, _| queues.contains(queue));
    let open = state
        .streams
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let slot = StreamSlot(Arc::clone(&state.streams));
    if open >= MAX_STREAMS {
        return Err(ApiError::TooManyStreams(format!(
            "{MAX_STREAMS} event streams are open; try again later"
        )));
    }
    let (tx, rx) = mpsc::channel::<Bytes>(OUT_BUFFER);
    let outlet = Arc::new(Outlet {
        tx,
        cursor: tokio::sync::Mutex::new(cursor.clone()),
        cut: watch::channel(false).0,
    });
    let filter = Arc::new(Filter {
        job: query.job,
        types,
    });
    for (queue, store) in stores {
        // Subscribed before the history is read, so nothing falls between the two.
        let live = store.subscribe();
        let follower = Follower {
            last: cursor.get(&queue).copied(),
            queue,
            store,
            filter: Arc::clone(&filter),
            outlet: Arc::clone(&outlet),
        };
        actix_web::rt::spawn(follower.run(live));
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
                    // Frames waiting already show the client the stream is alive.
                    if let Err(mpsc::error::TrySendError::Closed(_)) =
                        keepalive.tx.try_send(Bytes::from_static(b": keepalive\n\n"))
                    {
                        keepalive.cut.send_replace(true);
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
    let body = futures::stream::unfold((rx, slot), |(mut rx, slot)| async move {
        let frame = rx.recv().await?;
        Some((Ok::<_, actix_web::Error>(frame), (rx, slot)))
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
/// `timeout_ms`, `404` if there is no such job. A job removed as it finished (its retention)
/// is answered from its event: `{"id", "queue", "state", "removed": true}`. A store that does
/// not answer is asked again until the time is up.
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
    // How the job ended, when its event said so.
    let mut ended: Option<&'static str> = None;
    loop {
        let job = match queue.get(&id).await {
            Ok(job) => job,
            // The store away: asked again until the time is up, then its error.
            Err(err) if tokio::time::Instant::now() + RECHECK >= deadline => return Err(err.into()),
            Err(_) => {
                tokio::time::sleep(RECHECK).await;
                continue;
            }
        };
        match job {
            Some(job) if matches!(job.state, JobState::Completed | JobState::Failed) => {
                return Ok(HttpResponse::Ok().json(job));
            }
            None => match ended {
                Some(state) => {
                    return Ok(HttpResponse::Ok().json(
                        json!({ "id": id, "queue": name, "state": state, "removed": true }),
                    ));
                }
                None => {
                    return Err(ApiError::UnknownJob {
                        queue: name.clone(),
                        id: id.clone(),
                    });
                }
            },
            Some(job) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ApiError::NotFinished(format!(
                        "job '{id}' in queue '{name}' did not finish within {timeout_ms} ms; it is {}",
                        job.state
                    )));
                }
            }
        }
        let until = deadline.min(tokio::time::Instant::now() + RECHECK);
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(event) if *event.id == *id => match event.kind {
                        JobEventKind::Completed => { ended = Some("completed"); break; }
                        JobEventKind::Failed { .. } => { ended = Some("failed"); break; }
                        JobEventKind::Removed => break,
                        _ => {}
                    },
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
