//! stagehand-core: the job model, the queue store contract and its in-memory store,
//! the `Processor` trait and the pieces of the worker loop that know nothing of actors.
//!
//! Dependencies point one way: `stagehand` -> `stagehand-actors` -> `stagehand-core`.

pub mod cache;
pub mod clock;
pub mod error;
pub mod events;
pub mod history;
pub mod job;
pub mod memory;
pub mod options;
pub mod outage;
pub mod processor;
pub mod pubsub;
pub mod redis;
pub mod schedule;
pub mod store;

#[cfg(feature = "testkit")]
pub mod conformance;

pub use error::StoreError;
pub use job::{AttemptOutcome, AttemptRecord, Job, JobId, JobState, Payload};
pub use memory::MemoryStore;
pub use options::{Backoff, JobOptions, JobOptionsInput, OptionsError, Retention};
pub use processor::{
    AttemptResult, JobContext, ProcessError, Processor, processor_fn, run_attempt,
};
pub use redis::RedisStore;
pub use store::{
    ActiveJob, AddResult, Batch, Counts, JobEvent, JobEventKind, LeaseToken, NewJob, Outcome,
    QueueStore, RecoverReport, Recovered, SettleResult, Settlement, WorkSignal,
};
