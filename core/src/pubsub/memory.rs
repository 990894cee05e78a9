//! The memory transport: channels within one process (for tests, and a service without Redis).

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{Delivery, Outlet, PubSubError, Subscription, Topic, Transport, check_name};
use crate::cache::pattern;

struct Subscriber {
    topics: Vec<Topic>,
    outlet: Outlet,
}

/// Channels within one process.
#[derive(Clone, Default)]
pub struct MemoryTransport {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

impl std::fmt::Debug for MemoryTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransport").finish_non_exhaustive()
    }
}

impl MemoryTransport {
    /// An empty transport.
    pub fn new() -> MemoryTransport {
        MemoryTransport::default()
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn publish(&self, channel: &str, payload: &str) -> Result<u64, PubSubError> {
        check_name(channel)?;
        let payload: Arc<str> = Arc::from(payload);
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|s| !s.outlet.is_closed());
        let mut received = 0;
        for subscriber in subscribers.iter() {
            for topic in &subscriber.topics {
                let pattern = match topic {
                    Topic::Channel(name) if name == channel => None,
                    Topic::Pattern(p) if pattern::matches(p, channel) => Some(p.clone()),
                    _ => continue,
                };
                subscriber.outlet.offer(Delivery::Message {
                    channel: channel.to_string(),
                    pattern,
                    payload: Arc::clone(&payload),
                });
                received += 1;
            }
        }
        Ok(received)
    }

    async fn subscribe(
        &self,
        topics: &[Topic],
        capacity: usize,
    ) -> Result<Subscription, PubSubError> {
        for topic in topics {
            let (Topic::Channel(name) | Topic::Pattern(name)) = topic;
            check_name(name)?;
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.subscribers.lock().push(Subscriber {
            topics: topics.to_vec(),
            outlet: Outlet::new(tx),
        });
        Ok(Subscription::new(rx, Box::new(())))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
