//! The service's pub/sub: the transport from settings, the seed's subscribers
//! (`cache-invalidate`, `notifications`), and the two-tier cache's announcements.

use std::sync::Arc;
use std::time::Duration;

use stagehand_actors::RuntimeHandle;
use stagehand_actors::pubsub::{
    CacheInvalidationHandler, HandlerActor, HandlerStats, NotificationHandler, SubscriberActor,
};
use stagehand_core::cache::{Cache, Invalidation, TwoTier};
use stagehand_core::pubsub::{
    MemoryTransport, PubSub, RedisTransport, RedisTransportOptions, Topic, Transport, channels,
};
use stagehand_core::redis::Target;
use tokio::sync::mpsc;

use crate::config::{ConfigError, Settings};

/// How many two-tier announcements may wait to be published; past it they are dropped (the
/// memory tiers' `memory_ttl` bounds what a lost one costs).
const ANNOUNCE_QUEUE: usize = 4_096;

/// Pub/sub over the queues' Redis (sharded pub/sub on a Cluster), else within this process.
pub async fn from_settings(settings: &Settings) -> Result<PubSub, ConfigError> {
    let p = &settings.pubsub;
    let options = RedisTransportOptions {
        prefix: p.prefix.clone(),
        ping_every: Duration::from_millis(p.ping_ms),
        ping_timeout: Duration::from_millis(p.ping_timeout_ms),
    };
    let timeout = Duration::from_millis(settings.redis.command_timeout_ms);
    let transport: Arc<dyn Transport> = if !settings.redis.cluster.is_empty() {
        let publisher = Target::cluster_with(&settings.redis.cluster, timeout)
            .map_err(|e| ConfigError::invalid("redis.cluster", e.to_string()))?
            .shared()
            .await
            .map_err(|e| ConfigError::invalid("redis.cluster", e.to_string()))?;
        Arc::new(RedisTransport::cluster(
            &settings.redis.cluster,
            publisher,
            options,
        ))
    } else if settings.redis.url.is_empty() {
        Arc::new(MemoryTransport::new())
    } else {
        let client = redis::Client::open(settings.redis.url.as_str())
            .map_err(|_| ConfigError::invalid("redis.url", "not a Redis URL"))?;
        let publisher = Target::single_with(client.clone(), timeout)
            .shared()
            .await
            .map_err(|e| ConfigError::invalid("redis.url", e.to_string()))?;
        Arc::new(RedisTransport::new(&client, publisher, options))
    };
    Ok(PubSub::new(transport, &p.published_by))
}

/// What the started subscribers count, by handler name.
#[derive(Debug, Clone, Default)]
pub struct Subscribers {
    /// `(handler name, its counters)`.
    pub handlers: Vec<(&'static str, Arc<HandlerStats>)>,
}

/// Starts the seed's subscribers: cache invalidation always, notifications when an `email`
/// queue exists.
pub fn start_subscribers(
    settings: &Settings,
    pubsub: &PubSub,
    cache: &Cache,
    runtime: &RuntimeHandle,
) -> Subscribers {
    let capacity = settings.actors.mailbox.handler;
    let queue = settings.pubsub.queue;
    let mut started = Subscribers::default();
    let handler = CacheInvalidationHandler::new(cache.clone(), pubsub.node());
    let (addr, stats) = HandlerActor::start(handler, runtime.alerts(), capacity);
    SubscriberActor::start(
        pubsub.clone(),
        vec![Topic::Channel(channels::CACHE_INVALIDATE.into())],
        &addr,
        Arc::clone(&stats),
        runtime.alerts(),
        queue,
    );
    started.handlers.push(("cache-invalidation", stats));
    if let Some(email) = runtime.queue("email") {
        let handler = NotificationHandler::new(email.clone());
        let (addr, stats) = HandlerActor::start(handler, runtime.alerts(), capacity);
        SubscriberActor::start(
            pubsub.clone(),
            vec![Topic::Channel(channels::NOTIFICATIONS.into())],
            &addr,
            Arc::clone(&stats),
            runtime.alerts(),
            queue,
        );
        started.handlers.push(("notification", stats));
    }
    started
}

/// Wakes the scheduler when another process changes a schedule (or such news may be lost).
struct ScheduleWake(stagehand_actors::scheduler::SchedulerHandle);

#[async_trait::async_trait]
impl stagehand_actors::pubsub::MessageHandler for ScheduleWake {
    type Message = serde_json::Value;

    fn name(&self) -> &str {
        "schedule-wake"
    }

    async fn handle(
        &self,
        _: serde_json::Value,
        _: stagehand_core::pubsub::Metadata,
    ) -> Result<(), String> {
        self.0.wake();
        Ok(())
    }

    async fn gap(&self, _reason: &str) {
        self.0.wake();
    }
}

/// Wakes `scheduler` on every `schedules` message.
pub fn wake_scheduler_on_changes(
    settings: &Settings,
    pubsub: &PubSub,
    scheduler: &stagehand_actors::scheduler::SchedulerHandle,
    runtime: &RuntimeHandle,
) {
    let handler = Arc::new(ScheduleWake(scheduler.clone()));
    let (addr, stats) =
        HandlerActor::start(handler, runtime.alerts(), settings.actors.mailbox.handler);
    SubscriberActor::start(
        pubsub.clone(),
        vec![Topic::Channel(channels::SCHEDULES.into())],
        &addr,
        stats,
        runtime.alerts(),
        settings.pubsub.queue,
    );
}

/// Publishes what the two-tier cache changes on `cache-invalidate`, so other processes drop
/// it from their memory tiers. Publishing runs in a task of its own behind a bounded queue.
pub fn announce_changes(two_tier: &TwoTier, pubsub: &PubSub) {
    let (tx, mut rx) = mpsc::channel::<Invalidation>(ANNOUNCE_QUEUE);
    let publisher = pubsub.clone();
    actix_web::rt::spawn(async move {
        while let Some(invalidation) = rx.recv().await {
            if let Err(err) = publisher
                .publish(channels::CACHE_INVALIDATE, &invalidation)
                .await
            {
                tracing::debug!(error = %err, "a cache change was not announced");
            }
        }
    });
    two_tier.on_change(Arc::new(move |invalidation| {
        if tx.try_send(invalidation).is_err() {
            tracing::debug!("cache announcements are behind: one dropped");
        }
    }));
}
