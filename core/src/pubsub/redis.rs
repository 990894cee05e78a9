//! The Redis transport: `PUBLISH` on the shared connection; each subscription on a RESP3
//! connection of its own that it PINGs, remakes when lost, and resubscribes, reporting a gap
//! each time. On a Cluster, sharded pub/sub: `SPUBLISH` and `SSUBSCRIBE`, each channel on the
//! node that owns its slot (so a message crosses no other node); a subscription checks each
//! of its nodes with a keyed command instead of a PING. Sharded pub/sub has no patterns.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::{Delivery, Outlet, PubSubError, Subscription, Topic, Transport, check_name};
use crate::cache::pattern;
use crate::outage::{Outage, OutageNote};
use crate::redis::Conn;
use crate::redis::errors::reason;

/// How the Redis transport names channels and watches its connections.
#[derive(Debug, Clone)]
pub struct RedisTransportOptions {
    /// Put before every channel name (`stagehand:` by default).
    pub prefix: String,
    /// How often a subscription PINGs its connection.
    pub ping_every: Duration,
    /// How long a PING (or a subscribe) may go unanswered before the connection is remade.
    pub ping_timeout: Duration,
}

impl Default for RedisTransportOptions {
    fn default() -> Self {
        RedisTransportOptions {
            prefix: "stagehand:".into(),
            ping_every: Duration::from_secs(2),
            ping_timeout: Duration::from_secs(2),
        }
    }
}

/// Where subscriptions connect.
#[derive(Clone)]
enum Source {
    /// One server (a RESP3 client).
    Single(Box<Client>),
    /// A Cluster's nodes.
    Cluster(Vec<String>),
}

/// Pub/sub on one Redis server or a Cluster.
#[derive(Clone)]
pub struct RedisTransport {
    source: Source,
    publisher: Conn,
    options: Arc<RedisTransportOptions>,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("prefix", &self.options.prefix)
            .finish()
    }
}

fn unavailable(err: redis::RedisError) -> PubSubError {
    PubSubError::Unavailable {
        reason: reason(&err),
        source: Some(Arc::new(err)),
    }
}

impl RedisTransport {
    /// Pub/sub on the server `client` points at, publishing on `publisher`.
    pub fn new(client: &Client, publisher: Conn, options: RedisTransportOptions) -> RedisTransport {
        // Subscriptions use RESP3, where pushes and replies share one connection.
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client =
            Client::open(info.set_redis_settings(resp3)).unwrap_or_else(|_| client.clone());
        RedisTransport {
            source: Source::Single(Box::new(client)),
            publisher,
            options: Arc::new(options),
        }
    }

    /// Sharded pub/sub on the Cluster of `nodes`, publishing on `publisher` (a connection to
    /// the same Cluster).
    pub fn cluster(
        nodes: &[String],
        publisher: Conn,
        options: RedisTransportOptions,
    ) -> RedisTransport {
        RedisTransport {
            source: Source::Cluster(nodes.to_vec()),
            publisher,
            options: Arc::new(options),
        }
    }

    fn wire(&self, name: &str) -> String {
        format!("{}{name}", self.options.prefix)
    }
}

#[async_trait]
impl Transport for RedisTransport {
    async fn publish(&self, channel: &str, payload: &str) -> Result<u64, PubSubError> {
        check_name(channel)?;
        let mut conn = self.publisher.clone();
        let command = match self.source {
            Source::Single(_) => "PUBLISH",
            Source::Cluster(_) => "SPUBLISH",
        };
        redis::cmd(command)
            .arg(self.wire(channel))
            .arg(payload)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn subscribe(
        &self,
        topics: &[Topic],
        capacity: usize,
    ) -> Result<Subscription, PubSubError> {
        for topic in topics {
            let (Topic::Channel(name) | Topic::Pattern(name)) = topic;
            check_name(name)?;
            if matches!(
                (topic, &self.source),
                (Topic::Pattern(_), Source::Cluster(_))
            ) {
                return Err(PubSubError::Invalid(
                    "a Redis Cluster's sharded pub/sub has no pattern subscriptions".into(),
                ));
            }
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let outlet = Outlet::new(tx);
        let listener = Listener {
            source: self.source.clone(),
            options: Arc::clone(&self.options),
            topics: topics.to_vec(),
        };
        let task = tokio::spawn(listener.run(outlet));
        Ok(Subscription::new(rx, Box::new(AbortOnDrop(task))))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One subscription's connection loop.
struct Listener {
    source: Source,
    options: Arc<RedisTransportOptions>,
    topics: Vec<Topic>,
}

/// A subscription's own connection.
enum SubConn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Listener {
    async fn run(self, outlet: Outlet) {
        let mut subscribed_before = false;
        let mut pause = Duration::from_millis(100);
        // An outage is told once, then at a falling rate, and once when it ends.
        let mut outage = Outage::default();
        loop {
            match self.connect().await {
                Ok((conn, pushes)) => {
                    if let Some(lasted) = outage.answered() {
                        tracing::info!(topics = ?self.topics, lasted_ms = lasted.as_millis() as u64, "pub/sub subscribed again");
                    }
                    if subscribed_before
                        && !outlet.offer(gap("resubscribed after the connection was lost"))
                    {
                        return;
                    }
                    subscribed_before = true;
                    pause = Duration::from_millis(100);
                    match self.pump(conn, pushes, &outlet).await {
                        None => return,
                        Some(why) => {
                            // Self-healing: said quietly unless it lasts (the store's own outage,
                            // if that is the cause, is told by the pools).
                            if outage.failed() == Some(OutageNote::Started) {
                                tracing::info!(topics = ?self.topics, reason = %why, "pub/sub connection lost; making it again");
                            }
                            if !outlet.offer(gap(&why)) {
                                return;
                            }
                        }
                    }
                }
                Err(err) => {
                    match outage.failed() {
                        Some(OutageNote::Started) => {
                            tracing::info!(topics = ?self.topics, error = %reason(&err), "pub/sub cannot subscribe; trying again");
                        }
                        Some(OutageNote::StillDown(lasted)) => {
                            tracing::warn!(topics = ?self.topics, error = %reason(&err), down_s = lasted.as_secs(), "pub/sub still cannot subscribe");
                        }
                        None => {}
                    }
                    // A first subscription that failed has lost messages too.
                    subscribed_before = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = outlet.closed() => return,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// A fresh connection subscribed to every topic, and its pushes.
    async fn connect(&self) -> redis::RedisResult<(SubConn, mpsc::UnboundedReceiver<PushInfo>)> {
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let channels: Vec<String> = self
            .topics
            .iter()
            .filter_map(|t| match t {
                Topic::Channel(c) => Some(format!("{}{c}", self.options.prefix)),
                Topic::Pattern(_) => None,
            })
            .collect();
        let patterns: Vec<String> = self
            .topics
            .iter()
            .filter_map(|t| match t {
                Topic::Pattern(p) => Some(format!("{}{p}", pattern::escape(&self.options.prefix))),
                Topic::Channel(_) => None,
            })
            .collect();
        match &self.source {
            Source::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_push_sender(push_tx)
                    .set_connection_timeout(Some(self.options.ping_timeout))
                    .set_response_timeout(Some(self.options.ping_timeout));
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                if !channels.is_empty() {
                    conn.subscribe(&channels).await?;
                }
                if !patterns.is_empty() {
                    conn.psubscribe(&patterns).await?;
                }
                Ok((SubConn::Single(conn), pushes))
            }
            Source::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(push_tx)
                    .connection_timeout(self.options.ping_timeout)
                    .response_timeout(self.options.ping_timeout)
                    .build()?;
                let mut conn = client.get_async_connection().await?;
                for channel in &channels {
                    conn.ssubscribe(channel).await?;
                }
                Ok((SubConn::Cluster(conn), pushes))
            }
        }
    }

    /// Checks each connection the subscription stands on: a PING on one server; on a Cluster,
    /// a keyed command per channel, which goes to the node that owns the channel's slot.
    async fn check(&self, conn: &mut SubConn) -> redis::RedisResult<()> {
        match conn {
            SubConn::Single(c) => redis::cmd("PING").query_async::<Value>(c).await.map(|_| ()),
            SubConn::Cluster(c) => {
                for topic in &self.topics {
                    if let Topic::Channel(name) = topic {
                        redis::cmd("EXISTS")
                            .arg(format!("{}{name}", self.options.prefix))
                            .query_async::<Value>(c)
                            .await?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Passes pushes on until the connection is lost (`Some(why)`) or the subscription is
    /// dropped (`None`).
    async fn pump(
        &self,
        mut conn: SubConn,
        mut pushes: mpsc::UnboundedReceiver<PushInfo>,
        outlet: &Outlet,
    ) -> Option<String> {
        let mut ping = tokio::time::interval(self.options.ping_every);
        ping.tick().await;
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else {
                        return Some("the connection closed".into());
                    };
                    if push.kind == PushKind::Disconnection {
                        return Some("the connection closed".into());
                    }
                    if let Some(delivery) = self.delivery(push)
                        && !outlet.offer(delivery)
                    {
                        return None;
                    }
                }
                _ = ping.tick() => {
                    if let Err(err) = self.check(&mut conn).await {
                        return Some(format!("PING failed: {}", reason(&err)));
                    }
                }
                _ = outlet.closed() => return None,
            }
        }
    }

    fn delivery(&self, push: PushInfo) -> Option<Delivery> {
        let text = |v: &Value| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        };
        let strip = |name: String| {
            name.strip_prefix(&self.options.prefix)
                .map(str::to_string)
                .unwrap_or(name)
        };
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let [channel, payload] = push.data.as_slice() else {
                    return None;
                };
                Some(Delivery::Message {
                    channel: strip(text(channel)?),
                    pattern: None,
                    payload: Arc::from(text(payload)?),
                })
            }
            PushKind::PMessage => {
                let [pattern, channel, payload] = push.data.as_slice() else {
                    return None;
                };
                let pattern = text(pattern)?;
                let escaped = pattern::escape(&self.options.prefix);
                Some(Delivery::Message {
                    channel: strip(text(channel)?),
                    pattern: Some(
                        pattern
                            .strip_prefix(&escaped)
                            .map(str::to_string)
                            .unwrap_or(pattern),
                    ),
                    payload: Arc::from(text(payload)?),
                })
            }
            _ => None,
        }
    }
}

fn gap(reason: &str) -> Delivery {
    Delivery::Gap {
        reason: reason.to_string(),
    }
}
