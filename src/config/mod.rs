//! The service's settings: one TOML file plus `STAGEHAND_*` environment overrides, typed with
//! serde and validated at start with errors that name the key. With no file at all the
//! defaults run: memory store, HTTP on 127.0.0.1:8080, the seed's four queues.

mod env;
mod load;
mod processors;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stagehand_actors::{MailboxConfig, PoolSettings, SupervisionConfig};
use stagehand_core::{Backoff, JobOptionsInput, Retention};

pub use load::{ConfigError, load};
pub use processors::{
    EmailSettings, EmailTemplate, ImageSettings, ModelSettings, ProcessorSettings,
};

/// Everything the service can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The HTTP API.
    pub http: HttpSettings,
    /// Redis: where queues keep their jobs when a URL is set (else in memory).
    pub redis: RedisSettings,
    /// Where processors read and write files.
    pub storage: StorageSettings,
    /// Job options every queue starts from.
    pub defaults: JobOptionsInput,
    /// The queues, by name.
    pub queues: BTreeMap<String, QueueSettings>,
    /// Actor tuning.
    pub actors: ActorSettings,
    /// Restart limits for pools and their worker slots.
    pub supervision: SupervisionSettings,
    /// Where alerts go.
    pub alerts: AlertSettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
    /// Logging.
    pub log: LogSettings,
    /// The cache service.
    pub cache: CacheSettings,
    /// Pub/sub.
    pub pubsub: PubSubSettings,
    /// Schedules upserted at start (`[[schedules]]`, each with an `id`).
    pub schedules: Vec<crate::schedules::ScheduleBody>,
    /// The built-in processors.
    pub processors: ProcessorSettings,
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on.
    pub bind: String,
    /// Largest request body accepted, in bytes (larger answers 413).
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Bearer tokens (`[[http.tokens]]`); with none, the API is open and served on a loopback
    /// address only.
    pub tokens: Vec<TokenSettings>,
    /// Serve without tokens on an address other than loopback (warned about at start).
    pub allow_unauthenticated: bool,
    /// Whether `/ready` answers without a token (`/health` always does).
    pub ready_public: bool,
    /// A request whose headers and body have not arrived within this long is answered 408.
    pub request_timeout_ms: u64,
    /// Connections open at once, at most; past it, new ones wait to be accepted (so a flood
    /// of idle connections cannot exhaust file descriptors).
    pub max_connections: usize,
}

/// `[[http.tokens]]`: one bearer token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// A name for logs.
    pub name: String,
    /// `read` (GET and HEAD) or `admin` (everything).
    pub role: crate::http::Role,
    /// The token itself; or
    #[serde(default)]
    pub token: Option<String>,
    /// the environment variable holding it (a name starting `STAGEHAND_TOKEN` or ending
    /// `_TOKEN` is not read as a setting).
    #[serde(default)]
    pub token_env: Option<String>,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("token_env", &self.token_env)
            .finish()
    }
}

/// `[redis]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[:password@]host[:port][/db]` or `rediss://...`; empty keeps queues in memory.
    pub url: String,
    /// A Redis Cluster's nodes (`redis://host:port` each); instead of `url`.
    pub cluster: Vec<String>,
    /// The first part of every key (`PREFIX:{queue}:...`).
    pub prefix: String,
    /// How long a command may go unanswered before it fails (an add then answers 504
    /// `outcome_unknown`: it may have happened).
    pub command_timeout_ms: u64,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// The local directory processors read from and write to.
    pub path: PathBuf,
    /// More named storages (`[storage.buckets] name = "dir"`), for a job's `output_bucket`.
    pub buckets: BTreeMap<String, PathBuf>,
}

/// `[queues.NAME]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Jobs run at once.
    pub concurrency: usize,
    /// The built-in processor that runs its jobs; empty = the one named like the queue, if any;
    /// `none` = no processor. A queue with no processor accepts jobs and keeps them waiting
    /// (for a worker elsewhere, or one added when embedding).
    pub processor: String,
    /// Job options for this queue, over `[defaults]`.
    pub defaults: JobOptionsInput,
    /// Lease length; a job whose worker stops heartbeating is recovered after it.
    pub lease_ms: u64,
    /// Stalls a job may have before it fails.
    pub max_stalled: u32,
    /// Fetch–run–settle loops sharing the slots; 2 keeps Redis busy while jobs run.
    pub loops: usize,
    /// The most unfinished jobs (waiting, delayed, prioritized, active) the queue holds; a full
    /// queue refuses adds (503 `queue_full`). Finished jobs are bounded by their retention.
    /// Unset: 1,000,000 on the memory store, no limit on Redis.
    pub max_jobs: Option<u64>,
}

/// `[actors]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ActorSettings {
    /// `[actors.mailbox]`: mailbox capacity per actor kind.
    pub mailbox: MailboxSettings,
}

/// `[actors.mailbox]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxSettings {
    /// The runtime supervisor's.
    pub supervisor: usize,
    /// Each queue actor's; a full one answers 503.
    pub queue: usize,
    /// Each processor pool's.
    pub pool: usize,
    /// The alert actor's.
    pub alert: usize,
    /// Each pub/sub message handler's; a full one drops the message (counted, alerted).
    pub handler: usize,
}

/// `[supervision]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionSettings {
    /// Restarts allowed within `within_ms` before giving up.
    pub max_restarts: u32,
    /// The intensity window.
    pub within_ms: u64,
    /// First restart delay.
    pub min_delay_ms: u64,
    /// Longest restart delay.
    pub max_delay_ms: u64,
}

/// `[alerts]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// POST each alert as JSON here (empty = no webhook).
    pub webhook_url: String,
    /// Drop repeats of an alert (same kind, queue, job) within this window.
    pub dedup_window_ms: u64,
}

/// `[shutdown]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// How long active jobs may take to finish after SIGTERM before they are handed back.
    pub grace_ms: u64,
}

/// `[cache]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// `memory`, `redis` or `two-tier`; empty: `two-tier` when Redis is configured (by
    /// `cache.url` or `redis.url`), else `memory`.
    pub strategy: String,
    /// The cache's Redis; empty: the queues' Redis (`redis.url`) with database 0.
    pub url: String,
    /// The prefix of every cache key in Redis (the seed's `cache:`).
    pub prefix: String,
    /// The memory tier's bound in entries, used when `max_bytes` is 0.
    pub max_entries: u64,
    /// The memory tier's bound in bytes of keys and values (256 MiB); 0: bound by
    /// `max_entries` instead.
    pub max_bytes: u64,
    /// How long the two-tier strategy's memory keeps a value at most (bounds staleness when
    /// an invalidation message is lost).
    pub memory_ttl_ms: u64,
    /// How long one process may hold a key's load lease before another may load it.
    pub lease_ms: u64,
    /// XFetch's beta for early refresh: 0 off, 1 usual.
    pub early_refresh_beta: f64,
    /// How long past its TTL a value is kept to be served when its loader fails; 0 never.
    pub stale_for_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            strategy: String::new(),
            url: String::new(),
            prefix: "cache:".into(),
            max_entries: 100_000,
            max_bytes: 256 * 1024 * 1024,
            memory_ttl_ms: 30_000,
            lease_ms: 10_000,
            early_refresh_beta: 1.0,
            stale_for_ms: 0,
        }
    }
}

/// `[pubsub]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PubSubSettings {
    /// Put before every channel name on Redis (channels ignore the database number).
    pub prefix: String,
    /// How often a subscription PINGs its Redis connection (a half-open link is noticed
    /// within about this long, plus the timeout).
    pub ping_ms: u64,
    /// How long a PING may go unanswered before the connection is made again.
    pub ping_timeout_ms: u64,
    /// Deliveries a subscription queues before dropping (and reporting a gap).
    pub queue: usize,
    /// The `published_by` of every envelope this service publishes.
    pub published_by: String,
}

impl Default for PubSubSettings {
    fn default() -> Self {
        PubSubSettings {
            prefix: "stagehand:".into(),
            ping_ms: 2_000,
            ping_timeout_ms: 2_000,
            queue: 1_024,
            published_by: "stagehand".into(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `stagehand=debug,info` (`RUST_LOG` wins).
    pub filter: String,
    /// `text` (for people) or `json` (one object per line, for log shippers).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-11-26T10:00:00Z  INFO message key=value`.
    #[default]
    Text,
    /// `{"timestamp":...,"level":"INFO","fields":{"message":...,"key":...}}` per line.
    Json,
}

/// The seed's queues and their concurrency.
pub const SEED_QUEUES: [(&str, usize); 4] = [
    ("email", 5),
    ("image-processing", 3),
    ("model-processing", 2),
    ("export", 3),
];

impl Default for Settings {
    fn default() -> Self {
        Settings {
            http: HttpSettings::default(),
            redis: RedisSettings::default(),
            storage: StorageSettings::default(),
            defaults: JobOptionsInput {
                attempts: Some(3),
                backoff: Some(Backoff::Exponential {
                    delay_ms: 1000,
                    jitter: 0.0,
                    max_delay_ms: None,
                }),
                remove_on_complete: Some(Retention::Keep {
                    count: Some(100),
                    age_ms: None,
                }),
                remove_on_fail: Some(Retention::Keep {
                    count: Some(1000),
                    age_ms: None,
                }),
                ..JobOptionsInput::default()
            },
            queues: SEED_QUEUES
                .iter()
                .map(|(name, concurrency)| {
                    let queue = QueueSettings {
                        concurrency: *concurrency,
                        ..QueueSettings::default()
                    };
                    (name.to_string(), queue)
                })
                .collect(),
            actors: ActorSettings::default(),
            supervision: SupervisionSettings::default(),
            alerts: AlertSettings::default(),
            shutdown: ShutdownSettings::default(),
            log: LogSettings::default(),
            cache: CacheSettings::default(),
            pubsub: PubSubSettings::default(),
            schedules: Vec::new(),
            processors: ProcessorSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            workers: 0,
            tokens: Vec::new(),
            allow_unauthenticated: false,
            ready_public: true,
            request_timeout_ms: 30_000,
            max_connections: 10_000,
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: String::new(),
            cluster: Vec::new(),
            prefix: stagehand_core::redis::DEFAULT_PREFIX.into(),
            command_timeout_ms: 10_000,
        }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            path: PathBuf::from("./data"),
            buckets: BTreeMap::new(),
        }
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            concurrency: 1,
            processor: String::new(),
            defaults: JobOptionsInput::default(),
            lease_ms: 30_000,
            max_stalled: 1,
            loops: 2,
            max_jobs: None,
        }
    }
}

impl Default for MailboxSettings {
    fn default() -> Self {
        let d = MailboxConfig::default();
        MailboxSettings {
            supervisor: d.supervisor,
            queue: d.queue,
            pool: d.pool,
            alert: d.alert,
            handler: d.handler,
        }
    }
}

impl Default for SupervisionSettings {
    fn default() -> Self {
        let d = SupervisionConfig::default();
        SupervisionSettings {
            max_restarts: d.max_restarts,
            within_ms: d.within.as_millis() as u64,
            min_delay_ms: d.min_delay.as_millis() as u64,
            max_delay_ms: d.max_delay.as_millis() as u64,
        }
    }
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            webhook_url: String::new(),
            dedup_window_ms: 60_000,
        }
    }
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings { grace_ms: 30_000 }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Settings {
    /// Mailbox capacities for the actors.
    pub fn mailbox(&self) -> MailboxConfig {
        let m = &self.actors.mailbox;
        MailboxConfig {
            supervisor: m.supervisor,
            queue: m.queue,
            pool: m.pool,
            alert: m.alert,
            handler: m.handler,
        }
    }

    /// Restart limits for the actors.
    pub fn supervision(&self) -> SupervisionConfig {
        let s = &self.supervision;
        SupervisionConfig {
            max_restarts: s.max_restarts,
            within: Duration::from_millis(s.within_ms),
            min_delay: Duration::from_millis(s.min_delay_ms),
            max_delay: Duration::from_millis(s.max_delay_ms),
        }
    }

    /// The shutdown grace period.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.shutdown.grace_ms)
    }
}

impl QueueSettings {
    /// Pool settings for this queue.
    pub fn pool(&self) -> PoolSettings {
        let lease = Duration::from_millis(self.lease_ms);
        PoolSettings {
            lease,
            heartbeat: lease / 3,
            stalled_check: lease / 2,
            max_stalled: self.max_stalled,
            loops: self.loops,
            ..PoolSettings::with_concurrency(self.concurrency)
        }
    }
}
