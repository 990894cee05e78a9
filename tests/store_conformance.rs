//! The store conformance suite, run against every store: the memory store, and the Redis
//! store on a `redis-server` each check starts for itself.

mod common;

use std::sync::Arc;

use common::redis::RedisServer;
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

mod memory_store {
    stagehand_core::conformance_tests!(super::memory);
}

mod redis_store {
    stagehand_core::conformance_tests!(super::redis);
}
