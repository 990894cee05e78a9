//! The AlertActor: where every failure ends. It logs each alert, drops repeats inside a dedup
//! window, keeps the latest for inspection, and hands each to the configured sinks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Warning,
    /// Needs attention.
    High,
    /// Something stopped working.
    Critical,
}

/// What the alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A critical job (priority 1) failed for good.
    JobFailed,
    /// A processor panicked while running a job.
    ProcessorPanic,
    /// A pool's worker slots crashed more often than its restart intensity allows.
    PoolIntensityExceeded,
    /// The supervisor restarted a pool too often and gave up on it.
    SupervisorGaveUp,
    /// A pool's queue store (Redis) does not answer; the pool retries until it does.
    StoreUnavailable,
    /// A pub/sub message handler failed or panicked; it was restarted.
    HandlerFailed,
    /// A pub/sub handler's mailbox was full: messages were dropped.
    MessagesDropped,
    /// A schedule's fire was refused by its queue (full, say); it is tried again.
    ScheduleBlocked,
}

impl AlertKind {
    /// Its name, as it is serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::JobFailed => "job_failed",
            AlertKind::ProcessorPanic => "processor_panic",
            AlertKind::PoolIntensityExceeded => "pool_intensity_exceeded",
            AlertKind::SupervisorGaveUp => "supervisor_gave_up",
            AlertKind::StoreUnavailable => "store_unavailable",
            AlertKind::HandlerFailed => "handler_failed",
            AlertKind::MessagesDropped => "messages_dropped",
            AlertKind::ScheduleBlocked => "schedule_blocked",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Message)]
#[rtype(result = "()")]
pub struct Alert {
    /// What it is about.
    pub kind: AlertKind,
    /// How bad.
    pub severity: Severity,
    /// The queue concerned.
    pub queue: String,
    /// The job concerned, if any.
    pub job_id: Option<String>,
    /// One line for a human.
    pub message: String,
    /// Anything else worth knowing.
    pub details: Value,
    /// When (ms since epoch).
    pub at: u64,
    /// Alerts of the same kind and subject dropped by the dedup window before this one.
    pub suppressed: u64,
}

impl Alert {
    /// A new alert stamped now.
    pub fn new(kind: AlertKind, severity: Severity, queue: &str, message: String) -> Alert {
        Alert {
            kind,
            severity,
            queue: queue.to_string(),
            job_id: None,
            message,
            details: Value::Null,
            at: stagehand_core::clock::now_ms(),
            suppressed: 0,
        }
    }

    /// The same alert about one job.
    pub fn job(mut self, id: &str) -> Alert {
        self.job_id = Some(id.to_string());
        self
    }

    /// The same alert with details.
    pub fn details(mut self, details: Value) -> Alert {
        self.details = details;
        self
    }

    fn dedup_key(&self) -> (AlertKind, String, Option<String>) {
        (self.kind, self.queue.clone(), self.job_id.clone())
    }
}

/// Somewhere alerts go (a webhook, a mail queue, a pager).
#[async_trait]
pub trait AlertSink: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &str;
    /// Delivers one alert; an error is logged and the alert is not retried.
    async fn deliver(&self, alert: &Alert) -> Result<(), String>;
}

/// Asks for the latest alerts, newest last.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Alert>")]
pub struct RecentAlerts;

/// The alert actor.
pub struct AlertActor {
    sinks: Vec<Arc<dyn AlertSink>>,
    dedup_window: Duration,
    mailbox: usize,
    last_sent: HashMap<(AlertKind, String, Option<String>), (Instant, u64)>,
    recent: VecDeque<Alert>,
}

/// How many alerts the actor keeps for [`RecentAlerts`].
const KEEP_RECENT: usize = 200;

impl AlertActor {
    /// An alert actor with these sinks, dropping repeats within `dedup_window`.
    pub fn new(sinks: Vec<Arc<dyn AlertSink>>, dedup_window: Duration, mailbox: usize) -> Self {
        AlertActor {
            sinks,
            dedup_window,
            mailbox,
            last_sent: HashMap::new(),
            recent: VecDeque::new(),
        }
    }
}

impl Actor for AlertActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl actix::Supervised for AlertActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!("alert actor restarting");
    }
}

impl Handler<Alert> for AlertActor {
    type Result = ();

    fn handle(&mut self, mut alert: Alert, _ctx: &mut Self::Context) {
        crate::metrics::MailboxDepth::new("alert").taken();
        let now = Instant::now();
        if !self.dedup_window.is_zero() {
            let key = alert.dedup_key();
            if let Some((sent, dropped)) = self.last_sent.get_mut(&key)
                && now.duration_since(*sent) < self.dedup_window
            {
                *dropped += 1;
                return;
            }
            let dropped = self.last_sent.insert(key, (now, 0)).map_or(0, |(_, d)| d);
            alert.suppressed = dropped;
            if self.last_sent.len() > 10_000 {
                let window = self.dedup_window;
                self.last_sent
                    .retain(|_, (sent, _)| now.duration_since(*sent) < window);
            }
        }
        match alert.severity {
            Severity::Warning => tracing::warn!(
                kind = ?alert.kind, queue = %alert.queue, job_id = ?alert.job_id,
                message = %alert.message, "alert"
            ),
            Severity::High | Severity::Critical => tracing::error!(
                kind = ?alert.kind, severity = ?alert.severity, queue = %alert.queue,
                job_id = ?alert.job_id, message = %alert.message, "alert"
            ),
        }
        if self.recent.len() >= KEEP_RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(alert.clone());
        for sink in &self.sinks {
            let sink = Arc::clone(sink);
            let alert = alert.clone();
            actix::spawn(async move {
                if let Err(error) = sink.deliver(&alert).await {
                    tracing::warn!(sink = sink.name(), %error, kind = ?alert.kind, "alert delivery failed");
                }
            });
        }
    }
}

impl Handler<RecentAlerts> for AlertActor {
    type Result = MessageResult<RecentAlerts>;

    fn handle(&mut self, _: RecentAlerts, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.recent.iter().cloned().collect())
    }
}

/// Sends an alert without waiting; a full alert mailbox drops it with a warning rather than
/// blocking the sender.
pub fn raise(alerts: &Addr<AlertActor>, alert: Alert) {
    crate::metrics::alert_raised(alert.kind.as_str());
    let depth = crate::metrics::MailboxDepth::new("alert");
    depth.sent();
    if let Err(err) = alerts.try_send(alert) {
        depth.taken();
        tracing::warn!(error = %err, "alert mailbox full or closed; alert dropped");
    }
}

#[cfg(test)]
mod kind_names {
    use super::AlertKind;

    #[test]
    fn as_str_is_the_serialized_name() {
        use AlertKind::*;
        for kind in [
            JobFailed,
            ProcessorPanic,
            PoolIntensityExceeded,
            SupervisorGaveUp,
            StoreUnavailable,
            HandlerFailed,
            MessagesDropped,
            ScheduleBlocked,
        ] {
            assert_eq!(
                serde_json::to_value(kind).expect("serializes"),
                kind.as_str()
            );
        }
    }
}
