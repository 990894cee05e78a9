//! Pub/sub: messages in the seed's envelope on named channels, over Redis or in memory.
//!
//! - **At most once.** Redis pub/sub keeps nothing: a message published while a subscriber is
//!   disconnected, or that arrives when its queue is full, is lost. Instead of hiding that, a
//!   subscription reports each moment a loss may have happened as a [`Delivery::Gap`] (a
//!   reconnection, a dropped message), so a consumer can resynchronise (the two-tier cache
//!   clears its memory tier).
//! - **Self-healing.** The Redis subscriber reconnects and resubscribes by itself, and PINGs
//!   its connection so a half-open link is noticed within the ping interval.
//! - **Prefixed channels.** Redis channels are not scoped by database, so every channel name
//!   carries a prefix (`stagehand:` by default): `cache-invalidate` is
//!   `stagehand:cache-invalidate` on the wire.

mod envelope;
mod memory;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;

pub use envelope::{Envelope, Metadata, new_id};
pub use memory::MemoryTransport;
pub use redis::{RedisTransport, RedisTransportOptions};

use crate::error::BackendError;

/// The seed's channels.
pub mod channels {
    /// Cache invalidations: `{keys}`, `{pattern}` or `{tag}`.
    pub const CACHE_INVALIDATE: &str = "cache-invalidate";
    /// Notifications to send by email.
    pub const NOTIFICATIONS: &str = "notifications";
    /// A schedule changed: schedulers look again.
    pub const SCHEDULES: &str = "schedules";
}

/// What a pub/sub call can fail with.
#[derive(Debug, thiserror::Error, Clone)]
pub enum PubSubError {
    /// The transport could not be reached.
    #[error("pub/sub unavailable: {reason}")]
    Unavailable {
        /// A short, stable description.
        reason: String,
        /// The backend's error.
        #[source]
        source: Option<BackendError>,
    },
    /// A channel name or message the transport refuses.
    #[error("{0}")]
    Invalid(String),
}

/// What a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// One channel.
    Channel(String),
    /// Every channel matching a glob pattern.
    Pattern(String),
}

/// What a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message on `channel` (matched by `pattern`, for a pattern subscription).
    Message {
        /// The channel, without the prefix.
        channel: String,
        /// The pattern that matched, without the prefix.
        pattern: Option<String>,
        /// The payload (normally an [`Envelope`] in JSON).
        payload: Arc<str>,
    },
    /// Messages may have been lost here: the connection dropped (and was made again), or
    /// messages were dropped because the subscription's queue was full.
    Gap {
        /// Why.
        reason: String,
    },
}

/// A live subscription; dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::Receiver<Delivery>,
    _guard: Box<dyn Send + Sync>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl futures::Stream for Subscription {
    type Item = Delivery;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Delivery>> {
        self.rx.poll_recv(cx)
    }
}

impl Subscription {
    pub(crate) fn new(rx: mpsc::Receiver<Delivery>, guard: Box<dyn Send + Sync>) -> Self {
        Subscription { rx, _guard: guard }
    }

    /// The next delivery; `None` once the transport is gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

/// A pub/sub transport: Redis or memory.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes `payload` on `channel`; how many subscribers received it.
    async fn publish(&self, channel: &str, payload: &str) -> Result<u64, PubSubError>;
    /// Subscribes to `topics`; deliveries queue up to `capacity`, past which they are dropped
    /// (and a gap reported).
    async fn subscribe(
        &self,
        topics: &[Topic],
        capacity: usize,
    ) -> Result<Subscription, PubSubError>;
    /// `redis` or `memory`.
    fn kind(&self) -> &'static str;
}

/// Publishing and subscribing in the seed's envelope.
#[derive(Clone)]
pub struct PubSub {
    transport: Arc<dyn Transport>,
    published_by: String,
    node: String,
    published: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("transport", &self.transport.kind())
            .field("node", &self.node)
            .finish()
    }
}

impl PubSub {
    /// Pub/sub over `transport`, publishing as `published_by` from a node with a fresh id.
    pub fn new(transport: Arc<dyn Transport>, published_by: &str) -> PubSub {
        PubSub {
            transport,
            published_by: published_by.to_string(),
            node: new_id(),
            published: Arc::default(),
        }
    }

    /// Messages published through this value and its clones.
    pub fn published(&self) -> u64 {
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This process's node id (in every envelope it publishes).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The transport underneath.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Publishes `message` on `channel` in an envelope; returns the envelope's id and how many
    /// subscribers received it.
    pub async fn publish<T: Serialize>(
        &self,
        channel: &str,
        message: &T,
    ) -> Result<(String, u64), PubSubError> {
        let envelope = Envelope {
            message,
            metadata: Metadata::now(&self.published_by, &self.node),
        };
        let payload = serde_json::to_string(&envelope)
            .map_err(|e| PubSubError::Invalid(format!("the message does not encode: {e}")))?;
        let receivers = self.transport.publish(channel, &payload).await?;
        self.published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok((envelope.metadata.id, receivers))
    }

    /// Subscribes to `topics`, queueing up to `capacity` deliveries.
    pub async fn subscribe(
        &self,
        topics: &[Topic],
        capacity: usize,
    ) -> Result<Subscription, PubSubError> {
        self.transport.subscribe(topics, capacity).await
    }
}

/// Checks a channel name or pattern: 1 to 256 bytes.
pub(crate) fn check_name(name: &str) -> Result<(), PubSubError> {
    if name.is_empty() || name.len() > 256 {
        return Err(PubSubError::Invalid(format!(
            "a channel name is 1 to 256 bytes (got {})",
            name.len()
        )));
    }
    Ok(())
}

/// Delivers into a bounded queue; a delivery that does not fit is dropped and the next one
/// that fits is preceded by a gap.
#[derive(Clone)]
pub(crate) struct Outlet {
    tx: mpsc::Sender<Delivery>,
    lost: Arc<std::sync::atomic::AtomicU64>,
}

impl Outlet {
    pub(crate) fn new(tx: mpsc::Sender<Delivery>) -> Outlet {
        Outlet {
            tx,
            lost: Arc::default(),
        }
    }

    /// Offers `delivery`; false once the subscription is gone.
    pub(crate) fn offer(&self, delivery: Delivery) -> bool {
        use std::sync::atomic::Ordering;
        let lost = self.lost.load(Ordering::Relaxed);
        if lost > 0 {
            let gap = Delivery::Gap {
                reason: format!("{lost} message(s) dropped: the subscriber's queue was full"),
            };
            match self.tx.try_send(gap) {
                Ok(()) => {
                    self.lost.fetch_sub(lost, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.lost.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        match self.tx.try_send(delivery) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves once the subscription is dropped.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }
}
