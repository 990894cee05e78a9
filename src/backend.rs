//! Where the service keeps its queues: in memory (the default), or in Redis when
//! `redis.url` is set. With Redis the service starts whether or not Redis answers: calls fail
//! (503) and pools retry until it does, and `/ready` answers 503 meanwhile.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use redis::Client;
use stagehand_core::outage::{Outage, OutageNote};
use stagehand_core::redis::{Conn, Target};
use stagehand_core::{QueueStore, RedisStore};

use crate::config::{ConfigError, Settings};
use crate::http::ReadyProbe;

/// How long `/ready` and the start-up check wait for Redis to answer a PING.
const PING_PATIENCE: Duration = Duration::from_secs(1);

/// Where queues live.
#[derive(Clone)]
pub enum Backend {
    /// In this process; nothing survives a restart.
    Memory,
    /// In Redis, shared by every process on it.
    Redis(Box<RedisBackend>),
}

/// A Redis connection shared by every queue of the service.
#[derive(Clone)]
pub struct RedisBackend {
    target: Target,
    conn: Conn,
    prefix: String,
    shown: String,
}

/// `url` with any password replaced by `***` and any query string dropped, safe for logs.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return "<redis url>".into();
    };
    let url = match url.split_once('?') {
        Some((base, _)) => base,
        None => url,
    };
    let rest = &url[scheme_end + 3..];
    match rest.rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{}{}:***@{}", &url[..scheme_end + 3], user, &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

impl Backend {
    /// The backend the settings ask for. Redis, standalone or Cluster, is connected on first
    /// use, so the service starts while it is down.
    pub async fn from_settings(settings: &Settings) -> Result<Backend, ConfigError> {
        let redis = &settings.redis;
        let timeout = Duration::from_millis(redis.command_timeout_ms);
        let (target, key, shown) = if !redis.cluster.is_empty() {
            let target = Target::cluster_with(&redis.cluster, timeout)
                .map_err(|e| ConfigError::invalid("redis.cluster", e.to_string()))?;
            let shown = redis
                .cluster
                .iter()
                .map(|u| redacted(u))
                .collect::<Vec<_>>()
                .join(",");
            (target, "redis.cluster", shown)
        } else if !redis.url.is_empty() {
            let client = Client::open(redis.url.as_str())
                .map_err(|e| ConfigError::invalid("redis.url", e.to_string()))?;
            (
                Target::single_with(client, timeout),
                "redis.url",
                redacted(&redis.url),
            )
        } else {
            return Ok(Backend::Memory);
        };
        let conn = target
            .shared()
            .await
            .map_err(|e| ConfigError::invalid(key, format!("cannot connect to {shown}: {e}")))?;
        Ok(Backend::Redis(Box::new(RedisBackend {
            target,
            conn,
            prefix: redis.prefix.clone(),
            shown,
        })))
    }

    /// `memory` or the redacted Redis URL.
    pub fn describe(&self) -> String {
        match self {
            Backend::Memory => "memory".into(),
            Backend::Redis(r) => r.shown.clone(),
        }
    }

    /// The store for `queue`, holding at most `max_jobs`; `None` means the runtime's default
    /// (memory).
    pub async fn store(&self, queue: &str, max_jobs: Option<u64>) -> Option<Arc<dyn QueueStore>> {
        match self {
            Backend::Memory => None,
            Backend::Redis(r) => {
                let store = RedisStore::new(r.target.clone(), r.conn.clone(), &r.prefix, queue)
                    .await
                    .with_max_jobs(max_jobs);
                Some(Arc::new(store))
            }
        }
    }

    /// Where schedule ids are claimed: in Redis beside the queues, else in this process.
    pub fn schedule_owners(&self) -> crate::schedules::Owners {
        match self {
            Backend::Memory => crate::schedules::Owners::default(),
            Backend::Redis(r) => crate::schedules::Owners::redis(r.conn.clone(), &r.prefix),
        }
    }

    /// The queues' Redis, for `/api/redis`.
    pub fn redis_endpoint(&self) -> Option<crate::http::RedisEndpoint> {
        match self {
            Backend::Memory => None,
            Backend::Redis(r) => Some(crate::http::RedisEndpoint {
                role: "queues",
                shown: r.shown.clone(),
                conn: r.conn.clone(),
            }),
        }
    }

    /// What `/ready` asks, for a backend that can be down.
    pub fn probe(&self) -> Option<Arc<dyn ReadyProbe>> {
        match self {
            Backend::Memory => None,
            Backend::Redis(r) => Some(Arc::new(RedisBackend::clone(r))),
        }
    }

    /// Checks Redis once at start and says what it finds; while it is unreachable, keeps
    /// checking in the background (with growing delays) and says when it answers.
    pub fn report_at_start(&self) {
        let Backend::Redis(r) = self else {
            return;
        };
        // In the background: a Redis that does not answer must not hold up serving.
        let r = RedisBackend::clone(r);
        actix_web::rt::spawn(async move {
            let mut delays = ExponentialBuilder::new()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .without_max_times()
                .build();
            let mut outage = Outage::default();
            loop {
                match r.ping().await {
                    Ok(()) => {
                        if outage.answered().is_some() {
                            tracing::info!(redis = %r.shown, "Redis answers; queues resume");
                        }
                        r.check_policy().await;
                        return;
                    }
                    Err(error) => match outage.failed() {
                        Some(OutageNote::Started) => tracing::error!(
                            redis = %r.shown, %error,
                            "Redis is unreachable: queues wait for it and /ready answers 503; retrying"
                        ),
                        Some(OutageNote::StillDown(lasted)) => tracing::warn!(
                            redis = %r.shown, %error, down_s = lasted.as_secs(),
                            "Redis is still unreachable; retrying"
                        ),
                        None => {}
                    },
                }
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(10))).await;
            }
        });
    }
}

impl RedisBackend {
    /// A PING answered within [`PING_PATIENCE`].
    async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        match tokio::time::timeout(PING_PATIENCE, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer to PING within {} ms",
                PING_PATIENCE.as_millis()
            )),
        }
    }

    /// Warns unless `maxmemory-policy` is `noeviction`: an evicting Redis can lose jobs.
    async fn check_policy(&self) {
        let answer: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut self.conn.clone())
            .await;
        match answer.as_deref() {
            Ok([_, policy]) if policy == "noeviction" => {
                tracing::info!(redis = %self.shown, "connected to Redis (maxmemory-policy noeviction)")
            }
            Ok([_, policy]) => tracing::warn!(
                redis = %self.shown, policy = %policy,
                "Redis maxmemory-policy is not noeviction: under memory pressure Redis may evict jobs; set maxmemory-policy noeviction"
            ),
            _ => {
                tracing::info!(redis = %self.shown, "connected to Redis (could not read maxmemory-policy)")
            }
        }
    }
}

#[async_trait]
impl ReadyProbe for RedisBackend {
    fn name(&self) -> &str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        self.ping().await
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_a_log() {
        assert_eq!(
            redacted("redis://:s3cret@host:6379/4"),
            "redis://:***@host:6379/4"
        );
        assert_eq!(
            redacted("rediss://user:s3cret@host"),
            "rediss://user:***@host"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/4"),
            "redis://127.0.0.1:6379/4"
        );
        assert!(!redacted("redis://u:p@ss@word@h").contains("word"));
        assert_eq!(
            redacted("redis://127.0.0.1:6379/0?password=s3cret"),
            "redis://127.0.0.1:6379/0"
        );
    }
}
