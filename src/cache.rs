//! The service's cache, built from `[cache]`.

use std::sync::Arc;
use std::time::Duration;

use redis::Client;
use stagehand_core::cache::{
    Cache, CacheOptions, MemoryLimit, MemoryTier, RedisTier, RedisTierOptions, TwoTier,
};
use stagehand_core::redis::Target;

use crate::config::{ConfigError, Settings};

/// The cache the settings ask for, and its two-tier strategy when it is one (whose changes
/// the service announces). Its Redis (if any) is connected on first use, so the service
/// starts while it is down.
pub async fn from_settings(settings: &Settings) -> Result<(Cache, Option<TwoTier>), ConfigError> {
    let c = &settings.cache;
    let options = CacheOptions {
        lease: Duration::from_millis(c.lease_ms),
        early_refresh_beta: c.early_refresh_beta,
        stale_for: Duration::from_millis(c.stale_for_ms),
    };
    let limit = if c.max_bytes > 0 {
        MemoryLimit::Bytes(c.max_bytes)
    } else {
        MemoryLimit::Entries(c.max_entries)
    };
    let redis_url = redis_url(settings)?;
    let strategy = match (c.strategy.as_str(), &redis_url) {
        ("", Some(_)) => "two-tier",
        ("", None) => "memory",
        (other, _) => other,
    };
    if strategy == "memory" {
        return Ok((
            Cache::new("memory", Arc::new(MemoryTier::new(limit)), options),
            None,
        ));
    }
    let Some(client) = redis_url else {
        return Err(ConfigError::invalid(
            "cache.strategy",
            format!("'{strategy}' needs cache.url or redis.url"),
        ));
    };
    let timeout = Duration::from_millis(settings.redis.command_timeout_ms);
    let prefix = RedisTierOptions {
        prefix: c.prefix.clone(),
    };
    let redis = RedisTier::new(&Target::single_with(client, timeout), prefix)
        .await
        .map_err(|e| ConfigError::invalid("cache.url", e.to_string()))?;
    Ok(if strategy == "redis" {
        (Cache::new("redis", Arc::new(redis), options), None)
    } else {
        let memory_ttl = Duration::from_millis(c.memory_ttl_ms);
        let tier = TwoTier::new(redis, limit, memory_ttl);
        let cache = Cache::new("two-tier", Arc::new(tier.clone()), options);
        (cache, Some(tier))
    })
}

/// The cache's Redis, for `/api/redis` (`None` for the memory strategy).
pub async fn redis_endpoint(settings: &Settings) -> Option<crate::http::RedisEndpoint> {
    let strategy = settings.cache.strategy.as_str();
    if strategy == "memory" {
        return None;
    }
    let client = redis_url(settings).ok()??;
    let shown = if settings.cache.url.is_empty() {
        format!("{} (db 0)", crate::backend::redacted(&settings.redis.url))
    } else {
        crate::backend::redacted(&settings.cache.url)
    };
    let conn = Target::single(client).shared().await.ok()?;
    Some(crate::http::RedisEndpoint {
        role: "cache",
        shown,
        conn,
    })
}

/// `cache.url`, else `redis.url` on database 0 (the seed's cache database); `None` without
/// either.
fn redis_url(settings: &Settings) -> Result<Option<Client>, ConfigError> {
    if !settings.cache.url.is_empty() {
        return Client::open(settings.cache.url.as_str())
            .map(Some)
            .map_err(|_| ConfigError::invalid("cache.url", "not a Redis URL"));
    }
    if settings.redis.url.is_empty() {
        return Ok(None);
    }
    let queues = Client::open(settings.redis.url.as_str())
        .map_err(|_| ConfigError::invalid("redis.url", "not a Redis URL"))?;
    let info = queues.get_connection_info().clone();
    let db0 = info.redis_settings().clone().set_db(0);
    Client::open(info.set_redis_settings(db0))
        .map(Some)
        .map_err(|_| ConfigError::invalid("redis.url", "not a Redis URL"))
}
