//! The seed's handlers: cache invalidation, and notifications that become email jobs.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stagehand_core::NewJob;
use stagehand_core::cache::{Cache, Invalidation};
use stagehand_core::pubsub::Metadata;

use super::MessageHandler;
use crate::queue::QueueHandle;

/// Applies `cache-invalidate` messages to this process's cache.
///
/// A `memory_only` message (what a process announces after changing the shared store) drops
/// the keys from this process's memory tier, and is skipped when this process sent it; any
/// other (the seed's handler, `redis-cli PUBLISH`, `POST /api/pubsub/cache-invalidate`)
/// deletes them from the cache, store included. A gap (messages possibly lost) clears the
/// memory tier.
pub struct CacheInvalidationHandler {
    cache: Cache,
    node: String,
}

impl CacheInvalidationHandler {
    /// A handler for `cache`, skipping messages from `node` (this process's).
    pub fn new(cache: Cache, node: &str) -> Arc<Self> {
        Arc::new(CacheInvalidationHandler {
            cache,
            node: node.to_string(),
        })
    }
}

#[async_trait]
impl MessageHandler for CacheInvalidationHandler {
    type Message = Invalidation;

    fn name(&self) -> &str {
        "cache-invalidation"
    }

    async fn handle(&self, message: Invalidation, metadata: Metadata) -> Result<(), String> {
        // This process applied its own changes when it made them.
        if message.memory_only && metadata.node == self.node {
            return Ok(());
        }
        match self.cache.apply(&message).await {
            Ok(_) => Ok(()),
            // Bad input is the sender's problem, not a reason to restart the handler.
            Err(err @ stagehand_core::cache::CacheError::Invalid(_)) => {
                tracing::warn!(error = %err, "cache invalidation skipped");
                Ok(())
            }
            Err(err) => Err(err.to_string()),
        }
    }

    async fn gap(&self, reason: &str) {
        tracing::info!(
            reason,
            "invalidations may have been lost: clearing the memory tier"
        );
        self.cache.clear_local().await;
    }
}

/// A notification to send by email, as published on `notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// The user it is for.
    pub user_id: String,
    /// Where to send it.
    pub email: String,
    /// The subject line.
    pub subject: String,
    /// A plain-text body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// An HTML body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// A template to render instead of a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The template's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
}

/// Turns each `notifications` message into an `email` job. The job's id derives from the
/// message's id, so a message delivered twice is sent once.
pub struct NotificationHandler {
    email: QueueHandle,
}

impl NotificationHandler {
    /// A handler adding jobs to `email`.
    pub fn new(email: QueueHandle) -> Arc<Self> {
        Arc::new(NotificationHandler { email })
    }
}

#[async_trait]
impl MessageHandler for NotificationHandler {
    type Message = Notification;

    fn name(&self) -> &str {
        "notification"
    }

    async fn handle(&self, message: Notification, metadata: Metadata) -> Result<(), String> {
        if message.text.is_none() && message.html.is_none() && message.template.is_none() {
            tracing::warn!(user_id = %message.user_id, "notification skipped: no text, html or template");
            return Ok(());
        }
        let data = json!({
            "to": [message.email],
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "template": message.template,
            "context": message.context,
            "user_id": message.user_id,
        });
        let mut job = NewJob::new("notification", data);
        job.options = self.email.defaults().clone();
        // Without a message id, the content and its timestamp stand in for one (every process
        // subscribed receives the message: they must agree on one job).
        let id = if metadata.id.is_empty() {
            let seen = format!("{}|{}", metadata.timestamp, job.data.get());
            format!("{:016x}", fnv1a(&seen))
        } else {
            metadata.id
        };
        job.options.job_id = Some(format!("notification:{id}"));
        self.email
            .add(vec![job])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// A stable 64-bit hash (FNV-1a) of `text`.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
