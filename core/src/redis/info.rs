//! The seed's Redis metrics (`CacheQueueMetricsService.getRedisMetrics`), read from `INFO`.

use serde::Serialize;

use super::Conn;

/// A Redis server's figures, as the seed reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RedisMetrics {
    /// `redis_version`.
    pub version: String,
    /// `uptime_in_seconds`.
    pub uptime_seconds: u64,
    /// `connected_clients`.
    pub connected_clients: u64,
    /// `used_memory`, in bytes.
    pub used_memory: u64,
    /// `used_memory_human` (`1.04M`).
    pub used_memory_human: String,
    /// `total_commands_processed`.
    pub total_commands_processed: u64,
    /// `keyspace_hits`.
    pub keyspace_hits: u64,
    /// `keyspace_misses`.
    pub keyspace_misses: u64,
    /// Hits over hits and misses, in percent (0 with neither).
    pub hit_rate: f64,
}

/// Reads the figures from `INFO`'s text.
pub fn parse_info(text: &str) -> RedisMetrics {
    let mut m = RedisMetrics::default();
    for line in text.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        let number = || value.parse::<u64>().unwrap_or(0);
        match name {
            "redis_version" => m.version = value.to_string(),
            "uptime_in_seconds" => m.uptime_seconds = number(),
            "connected_clients" => m.connected_clients = number(),
            "used_memory" => m.used_memory = number(),
            "used_memory_human" => m.used_memory_human = value.to_string(),
            "total_commands_processed" => m.total_commands_processed = number(),
            "keyspace_hits" => m.keyspace_hits = number(),
            "keyspace_misses" => m.keyspace_misses = number(),
            _ => {}
        }
    }
    m.hit_rate = crate::cache::hit_rate(m.keyspace_hits, m.keyspace_misses);
    m
}

/// The server's figures, asked now.
pub async fn metrics(conn: &mut Conn) -> redis::RedisResult<RedisMetrics> {
    let text: String = redis::cmd("INFO").query_async(conn).await?;
    Ok(parse_info(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_text_becomes_the_seeds_figures() {
        let info = "# Server\r\nredis_version:7.0.15\r\nuptime_in_seconds:42\r\n# Clients\r\nconnected_clients:3\r\n# Memory\r\nused_memory:1089784\r\nused_memory_human:1.04M\r\n# Stats\r\ntotal_commands_processed:99\r\nkeyspace_hits:3\r\nkeyspace_misses:1\r\n";
        let m = parse_info(info);
        assert_eq!(m.version, "7.0.15");
        assert_eq!(
            (m.uptime_seconds, m.connected_clients, m.used_memory),
            (42, 3, 1_089_784)
        );
        assert_eq!(m.used_memory_human, "1.04M");
        assert_eq!(
            (
                m.total_commands_processed,
                m.keyspace_hits,
                m.keyspace_misses
            ),
            (99, 3, 1)
        );
        assert_eq!(m.hit_rate, 75.0);
    }
}
