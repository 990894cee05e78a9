//! The store conformance suite, run against every store: the memory store, and the Redis
//! store on a `redis-server` (and on a Redis Cluster) each check starts for itself.

mod common;

use std::sync::Arc;

use common::redis::{RedisCluster, RedisServer};
use stagehand_core::{MemoryStore, QueueStore, RedisStore};

async fn memory(queue: &str) -> (Arc<dyn QueueStore>, ()) {
    (Arc::new(MemoryStore::new(queue)), ())
}

async fn redis(queue: &str) -> (Arc<dyn QueueStore>, RedisServer) {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url(), queue)
        .await
        .expect("open the Redis store");
    (Arc::new(store), server)
}

async fn redis_cluster(queue: &str) -> (Arc<dyn QueueStore>, RedisCluster) {
    let cluster = RedisCluster::start();
    let store = RedisStore::open_cluster(&cluster.urls(), queue)
        .await
        .expect("open the Redis store on the cluster");
    (Arc::new(store), cluster)
}

mod memory_store {
    stagehand_core::conformance_tests!(super::memory);
}

mod redis_store {
    stagehand_core::conformance_tests!(super::redis);
}

/// The same suite on a three-master Redis Cluster: each queue's keys share one hash tag, so
/// every script runs on one node, whichever node owns the queue's slot.
mod redis_cluster_store {
    stagehand_core::conformance_tests!(super::redis_cluster);
}

/// Every check the suite defines is in the list `conformance_tests!` runs: a check cannot be
/// written and then forgotten.
#[test]
fn every_conformance_check_is_run() {
    let source = include_str!("../core/src/conformance.rs");
    let mut defined: Vec<&str> = source
        .lines()
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .filter_map(|l| l.split('(').next())
        .collect();
    let list = source
        .split("$crate::conformance_tests!(@each $make;")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the macro's list of checks");
    let mut listed: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    defined.sort_unstable();
    listed.sort_unstable();
    assert!(defined.len() > 20, "found the checks: {defined:?}");
    assert_eq!(
        defined, listed,
        "a check is defined but not run, or the other way"
    );
}
