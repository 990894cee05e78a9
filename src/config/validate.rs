//! Checks that go beyond types, each naming its key.

use std::net::SocketAddr;
use std::time::Duration;

use stagehand_core::{JobOptions, JobOptionsInput};

use super::load::ConfigError;
use super::{QueueSettings, Settings};
use crate::http::{Auth, Token};
use crate::processors::BUILTIN;

/// The processor name that runs nothing: the queue's jobs wait for a worker elsewhere.
pub const NO_PROCESSOR: &str = "none";

/// The shortest token accepted.
const MIN_TOKEN_LEN: usize = 16;

/// The longest queue name accepted.
pub const MAX_QUEUE_NAME: usize = 64;

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(())
}

fn resolve(
    key: &str,
    input: &JobOptionsInput,
    base: &JobOptions,
) -> Result<JobOptions, ConfigError> {
    input
        .resolve(base)
        .map_err(|e| ConfigError::invalid(format!("{key}.{}", e.field), e.problem))
}

/// Checks a queue name: 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn check_queue_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "queue names are 1 to {MAX_QUEUE_NAME} characters of A-Z, a-z, 0-9, '_' and '-'"
        ))
    }
}

impl Settings {
    /// The job options every queue starts from.
    pub fn base_options(&self) -> Result<JobOptions, ConfigError> {
        resolve("defaults", &self.defaults, &JobOptions::default())
    }

    /// The processor a queue runs, if any.
    pub fn processor_of<'a>(&self, name: &'a str, queue: &'a QueueSettings) -> Option<&'a str> {
        if queue.processor == NO_PROCESSOR {
            None
        } else if !queue.processor.is_empty() {
            Some(queue.processor.as_str())
        } else {
            BUILTIN.contains(&name).then_some(name)
        }
    }

    /// The API's bearer tokens, each read from its `token` or its `token_env` variable.
    pub fn auth(&self) -> Result<Auth, ConfigError> {
        let mut tokens = Vec::new();
        for (i, t) in self.http.tokens.iter().enumerate() {
            let key = format!("http.tokens[{i}]");
            if t.name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "must not be empty",
                ));
            }
            if self.http.tokens[..i].iter().any(|o| o.name == t.name) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("'{}' names two tokens", t.name),
                ));
            }
            let secret = match (&t.token, &t.token_env) {
                (Some(token), None) => token.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    ConfigError::invalid(
                        format!("{key}.token_env"),
                        format!("the variable {var} is not set (or not UTF-8)"),
                    )
                })?,
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        "give exactly one of token and token_env",
                    ));
                }
            };
            if secret.trim().len() < MIN_TOKEN_LEN || secret.trim() != secret {
                return Err(ConfigError::invalid(
                    format!("{key}.token"),
                    format!(
                        "a token must be at least {MIN_TOKEN_LEN} characters with no surrounding spaces"
                    ),
                ));
            }
            if tokens.iter().any(|other: &Token| other.secret == secret) {
                return Err(ConfigError::invalid(
                    format!("{key}.token"),
                    "the same token is given twice; each token needs its own secret",
                ));
            }
            tokens.push(Token {
                name: t.name.clone(),
                role: t.role,
                secret,
            });
        }
        Ok(Auth::new(tokens, self.http.ready_public))
    }

    fn validate_cache(&self) -> Result<(), ConfigError> {
        let cache = &self.cache;
        if !matches!(
            cache.strategy.as_str(),
            "" | "memory" | "redis" | "two-tier"
        ) {
            return Err(ConfigError::invalid(
                "cache.strategy",
                format!("'{}' is not one of memory, redis, two-tier", cache.strategy),
            ));
        }
        if matches!(cache.strategy.as_str(), "redis" | "two-tier")
            && cache.url.is_empty()
            && self.redis.url.is_empty()
        {
            return Err(ConfigError::invalid(
                "cache.strategy",
                format!(
                    "'{}' needs cache.url or redis.url (the cache needs a standalone Redis, not a Cluster)",
                    cache.strategy
                ),
            ));
        }
        if !cache.url.is_empty() && redis::Client::open(cache.url.as_str()).is_err() {
            return Err(ConfigError::invalid(
                "cache.url",
                "not a Redis URL; expected redis://[:password@]host[:port][/db] or rediss://...",
            ));
        }
        if cache.prefix.trim_end_matches(':').is_empty() {
            return Err(ConfigError::invalid(
                "cache.prefix",
                "must name something besides ':' (the default is 'cache:')",
            ));
        }
        positive("cache.max_entries", cache.max_entries)?;
        positive("pubsub.ping_ms", self.pubsub.ping_ms)?;
        positive("pubsub.ping_timeout_ms", self.pubsub.ping_timeout_ms)?;
        positive("pubsub.queue", self.pubsub.queue as u64)?;
        positive("cache.memory_ttl_ms", cache.memory_ttl_ms)?;
        if cache.lease_ms < 100 {
            return Err(ConfigError::invalid(
                "cache.lease_ms",
                "must be at least 100",
            ));
        }
        if !(0.0..=1e6).contains(&cache.early_refresh_beta) {
            return Err(ConfigError::invalid(
                "cache.early_refresh_beta",
                "must be from 0 (off) to 1000000; 1 is usual",
            ));
        }
        if Duration::from_millis(cache.stale_for_ms) > stagehand_core::cache::MAX_TTL {
            return Err(ConfigError::invalid(
                "cache.stale_for_ms",
                "must be at most ten years",
            ));
        }
        Ok(())
    }

    /// Checks every value, naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bind = self.http.bind.parse::<SocketAddr>().map_err(|e| {
            ConfigError::invalid(
                "http.bind",
                format!("'{}' is not an address: {e}", self.http.bind),
            )
        })?;
        let auth = self.auth()?;
        if !auth.enabled() && !bind.ip().is_loopback() && !self.http.allow_unauthenticated {
            return Err(ConfigError::invalid(
                "http.bind",
                format!(
                    "serving on {bind} without [[http.tokens]] would let anyone who reaches it add, retry, delete and pause jobs; configure tokens, bind a loopback address, or set http.allow_unauthenticated = true"
                ),
            ));
        }
        positive("http.request_timeout_ms", self.http.request_timeout_ms)?;
        positive("http.max_connections", self.http.max_connections as u64)?;
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "http.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if !self.redis.url.is_empty() && redis::Client::open(self.redis.url.as_str()).is_err() {
            // The URL may hold a password: say what is wrong without echoing it.
            return Err(ConfigError::invalid(
                "redis.url",
                "not a Redis URL; expected redis://[:password@]host[:port][/db] or rediss://...",
            ));
        }
        for url in std::iter::once(&self.redis.url).chain(&self.redis.cluster) {
            if let Some((_, query)) = url.split_once('?')
                && query.split('&').any(|p| {
                    let name = p.split('=').next().unwrap_or("");
                    matches!(name, "password" | "pass" | "user" | "username")
                })
            {
                return Err(ConfigError::invalid(
                    "redis.url",
                    "credentials go before the host (redis://[user]:PASSWORD@host:port), not in ?password= or ?user=, which Redis clients ignore",
                ));
            }
        }
        positive("redis.command_timeout_ms", self.redis.command_timeout_ms)?;
        if !self.redis.url.is_empty() && !self.redis.cluster.is_empty() {
            return Err(ConfigError::invalid(
                "redis.cluster",
                "give redis.url or redis.cluster, not both",
            ));
        }
        if self
            .redis
            .cluster
            .iter()
            .any(|node| redis::Client::open(node.as_str()).is_err())
        {
            return Err(ConfigError::invalid(
                "redis.cluster",
                "each node must be a Redis URL such as redis://127.0.0.1:7000",
            ));
        }
        let prefix = &self.redis.prefix;
        if prefix.is_empty() || prefix.contains(['{', '}']) {
            return Err(ConfigError::invalid(
                "redis.prefix",
                "must be non-empty and free of braces",
            ));
        }
        self.validate_cache()?;
        let from = &self.processors.email.from;
        if let Err(e) = from.parse::<lettre::message::Mailbox>() {
            return Err(ConfigError::invalid(
                "processors.email.from",
                format!("'{from}' is not an email address: {e}"),
            ));
        }
        let base = self.base_options()?;
        if self.queues.is_empty() {
            return Err(ConfigError::invalid(
                "queues",
                "at least one queue is needed",
            ));
        }
        for (name, queue) in &self.queues {
            let key = format!("queues.{name}");
            check_queue_name(name).map_err(|p| ConfigError::invalid(&key, p))?;
            positive(&format!("{key}.concurrency"), queue.concurrency as u64)?;
            if queue.concurrency > 10_000 {
                return Err(ConfigError::invalid(
                    format!("{key}.concurrency"),
                    "must be at most 10000",
                ));
            }
            if queue.loops == 0 || queue.loops > 64 {
                return Err(ConfigError::invalid(
                    format!("{key}.loops"),
                    "must be 1 to 64",
                ));
            }
            if queue.lease_ms < 100 {
                return Err(ConfigError::invalid(
                    format!("{key}.lease_ms"),
                    "must be at least 100",
                ));
            }
            resolve(&format!("{key}.defaults"), &queue.defaults, &base)?;
            let named = queue.processor.as_str();
            if !named.is_empty() && named != NO_PROCESSOR && !BUILTIN.contains(&named) {
                return Err(ConfigError::invalid(
                    format!("{key}.processor"),
                    format!(
                        "unknown processor '{}'; built in: {} (or \"none\": jobs wait for a worker elsewhere)",
                        queue.processor,
                        BUILTIN.join(", ")
                    ),
                ));
            }
        }
        let m = &self.actors.mailbox;
        for (key, value) in [
            ("actors.mailbox.supervisor", m.supervisor),
            ("actors.mailbox.queue", m.queue),
            ("actors.mailbox.pool", m.pool),
            ("actors.mailbox.alert", m.alert),
        ] {
            positive(key, value as u64)?;
        }
        let s = &self.supervision;
        positive("supervision.within_ms", s.within_ms)?;
        if s.max_delay_ms < s.min_delay_ms {
            return Err(ConfigError::invalid(
                "supervision.max_delay_ms",
                "must not be less than supervision.min_delay_ms",
            ));
        }
        let url = &self.alerts.webhook_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "alerts.webhook_url",
                "must start with http:// or https://",
            ));
        }
        Ok(())
    }
}
