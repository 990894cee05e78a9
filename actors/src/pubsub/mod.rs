//! Pub/sub as supervised actors: a [`SubscriberActor`] per subscription hands each message to
//! a [`HandlerActor`] with a bounded mailbox.
//!
//! - A handler that fails or panics is reported to the AlertActor and restarted by its
//!   supervisor (same address, same mailbox), so the messages after it are still handled.
//! - A full handler mailbox drops the message, counts the drop, and raises an alert: pub/sub
//!   is at most once anyway, and a slow handler must not grow memory without bound.
//! - A subscriber whose stream ends (its transport gone) is restarted and subscribes again.
//! - A possible loss (reconnection, drops) reaches the handler as [`MessageHandler::gap`].

mod handlers;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix::prelude::*;
use async_trait::async_trait;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use stagehand_core::pubsub::{Delivery, Envelope, Metadata, PubSub, Topic};

pub use handlers::{CacheInvalidationHandler, Notification, NotificationHandler};

use crate::alert::{Alert, AlertActor, AlertKind, Severity, raise};

/// Handles the messages of one subscription, typed.
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// What the messages hold.
    type Message: DeserializeOwned + Send + 'static;
    /// A name for logs and alerts.
    fn name(&self) -> &str;
    /// Handles one message. An error is reported, and the handler restarted.
    async fn handle(&self, message: Self::Message, metadata: Metadata) -> Result<(), String>;
    /// Messages may have been lost just before this (a reconnection, drops).
    async fn gap(&self, _reason: &str) {}
}

/// One message for a handler.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The channel it came on.
    pub channel: String,
    /// Its payload (an envelope in JSON).
    pub payload: Arc<str>,
}

/// Messages may have been lost.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Gap {
    /// Why.
    pub reason: String,
}

/// Counters a handler shares with whoever watches it.
#[derive(Debug, Default)]
pub struct HandlerStats {
    /// Messages handled without error.
    pub handled: AtomicU64,
    /// Messages whose handling failed or panicked.
    pub failed: AtomicU64,
    /// Payloads that were not a valid envelope of the handler's message type.
    pub malformed: AtomicU64,
    /// Messages dropped because the handler's mailbox was full.
    pub dropped: AtomicU64,
    /// Gaps reported.
    pub gaps: AtomicU64,
    /// Restarts after a failure.
    pub restarts: AtomicU64,
}

/// Runs a [`MessageHandler`], one message at a time.
pub struct HandlerActor<H: MessageHandler> {
    handler: Arc<H>,
    alerts: Addr<AlertActor>,
    stats: Arc<HandlerStats>,
    depth: crate::metrics::MailboxDepth,
    capacity: usize,
    /// When a skipped (malformed) message was last logged: at most one line a minute.
    malformed_logged: Option<std::time::Instant>,
}

impl<H: MessageHandler> HandlerActor<H> {
    /// Starts `handler` under a supervisor with a mailbox of `capacity`.
    pub fn start(
        handler: Arc<H>,
        alerts: Addr<AlertActor>,
        capacity: usize,
    ) -> (Addr<HandlerActor<H>>, Arc<HandlerStats>) {
        let stats = Arc::new(HandlerStats::default());
        let shared = Arc::clone(&stats);
        let addr = Supervisor::start(move |_| HandlerActor {
            handler,
            alerts,
            stats: shared,
            depth: crate::metrics::MailboxDepth::new("handler"),
            capacity,
            malformed_logged: None,
        });
        (addr, stats)
    }

    fn failed(&self, ctx: &mut Context<Self>, channel: &str, what: String) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(handler = self.handler.name(), channel, error = %what, "message handler failed; restarting it");
        raise(
            &self.alerts,
            Alert::new(
                AlertKind::HandlerFailed,
                Severity::High,
                self.handler.name(),
                format!(
                    "handler '{}' failed on a message from '{channel}': {what}",
                    self.handler.name()
                ),
            ),
        );
        ctx.stop();
    }
}

impl<H: MessageHandler> Actor for HandlerActor<H> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.capacity);
    }
}

impl<H: MessageHandler> Supervised for HandlerActor<H> {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(handler = self.handler.name(), "message handler restarted");
    }
}

impl<H: MessageHandler> Handler<Deliver> for HandlerActor<H> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Deliver, _ctx: &mut Self::Context) -> Self::Result {
        self.depth.taken();
        let envelope: Envelope<H::Message> = match Envelope::parse(&msg.payload) {
            Ok(envelope) => envelope,
            Err(reason) => {
                let skipped = self.stats.malformed.fetch_add(1, Ordering::Relaxed) + 1;
                let quiet = self
                    .malformed_logged
                    .is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(60));
                if !quiet {
                    self.malformed_logged = Some(std::time::Instant::now());
                    tracing::warn!(handler = self.handler.name(), channel = %msg.channel, %reason, skipped_so_far = skipped, "message skipped (at most one such line a minute)");
                }
                return AtomicResponse::new(Box::pin(actix::fut::ready(())));
            }
        };
        let handler = Arc::clone(&self.handler);
        let stats = Arc::clone(&self.stats);
        let channel = msg.channel;
        let work = async move {
            match AssertUnwindSafe(handler.handle(envelope.message, envelope.metadata))
                .catch_unwind()
                .await
            {
                Ok(Ok(())) => {
                    stats.handled.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Ok(Err(err)) => Err(err),
                Err(panic) => Err(panic_message(&panic)),
            }
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |outcome, act, ctx| {
                if let Err(what) = outcome {
                    act.failed(ctx, &channel, what);
                }
            },
        )))
    }
}

impl<H: MessageHandler> Handler<Gap> for HandlerActor<H> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: Gap, _ctx: &mut Self::Context) -> Self::Result {
        self.stats.gaps.fetch_add(1, Ordering::Relaxed);
        let handler = Arc::clone(&self.handler);
        let work = async move {
            let _ = AssertUnwindSafe(handler.gap(&msg.reason))
                .catch_unwind()
                .await;
        };
        AtomicResponse::new(Box::pin(work.into_actor(self)))
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    format!("panicked: {text}")
}

/// Subscribes to topics and hands every delivery to a handler.
pub struct SubscriberActor {
    pubsub: PubSub,
    topics: Vec<Topic>,
    deliver: Recipient<Deliver>,
    gap: Recipient<Gap>,
    alerts: Addr<AlertActor>,
    stats: Arc<HandlerStats>,
    depth: crate::metrics::MailboxDepth,
    name: String,
    /// Deliveries the transport may queue before dropping.
    queue: usize,
}

impl SubscriberActor {
    /// Starts a supervised subscriber of `topics` feeding `handler`.
    pub fn start<H: MessageHandler>(
        pubsub: PubSub,
        topics: Vec<Topic>,
        handler: &Addr<HandlerActor<H>>,
        stats: Arc<HandlerStats>,
        alerts: Addr<AlertActor>,
        queue: usize,
    ) -> Addr<SubscriberActor> {
        let name = format!("{:?}", topics);
        let deliver = handler.clone().recipient();
        let gap = handler.clone().recipient();
        Supervisor::start(move |_| SubscriberActor {
            pubsub,
            topics,
            deliver,
            gap,
            alerts,
            stats,
            depth: crate::metrics::MailboxDepth::new("handler"),
            name,
            queue,
        })
    }
}

impl Actor for SubscriberActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let pubsub = self.pubsub.clone();
        let topics = self.topics.clone();
        let queue = self.queue;
        async move { pubsub.subscribe(&topics, queue).await }
            .into_actor(self)
            .map(|subscribed, act, ctx| match subscribed {
                Ok(subscription) => {
                    ctx.add_stream(subscription);
                }
                Err(err) => {
                    tracing::error!(topics = %act.name, error = %err, "cannot subscribe");
                    raise(
                        &act.alerts,
                        Alert::new(
                            AlertKind::HandlerFailed,
                            Severity::Critical,
                            &act.name,
                            format!("cannot subscribe to {}: {err}", act.name),
                        ),
                    );
                }
            })
            .wait(ctx);
    }
}

impl Supervised for SubscriberActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::info!(topics = %self.name, "subscriber restarted");
    }
}

impl StreamHandler<Delivery> for SubscriberActor {
    fn handle(&mut self, item: Delivery, _ctx: &mut Self::Context) {
        match item {
            Delivery::Message {
                channel, payload, ..
            } => {
                self.depth.sent();
                if self.deliver.try_send(Deliver { channel, payload }).is_err() {
                    self.depth.taken();
                    let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    raise(
                        &self.alerts,
                        Alert::new(
                            AlertKind::MessagesDropped,
                            Severity::Warning,
                            &self.name,
                            format!(
                                "a handler of {} is behind: {dropped} message(s) dropped so far",
                                self.name
                            ),
                        ),
                    );
                }
            }
            // Rare (one per reconnection), and a handler must hear of every one.
            Delivery::Gap { reason } => self.gap.do_send(Gap { reason }),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The transport is gone: the supervisor starts this actor again, which subscribes again.
        ctx.stop();
    }
}
