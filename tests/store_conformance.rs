//! The store conformance suite, run against every store.

use std::sync::Arc;

use stagehand_core::{MemoryStore, QueueStore};

async fn memory(queue: &str) -> Arc<dyn QueueStore> {
    Arc::new(MemoryStore::new(queue))
}

mod memory_store {
    stagehand_core::conformance_tests!(super::memory);
}
