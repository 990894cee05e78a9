//! stagehand-actors: the actix actors of the runtime and the supervisor tree that runs them
//! (ARCHITECTURE §2). The logic that is not about actors lives in `stagehand-core`.

pub mod alert;
pub mod config;
pub mod health;
pub mod metrics;
pub mod pool;
pub mod pubsub;
pub mod queue;
pub mod runtime;
pub mod scheduler;
pub mod supervision;
pub mod supervisor;

pub use alert::{Alert, AlertActor, AlertKind, AlertSink, RecentAlerts, Severity};
pub use config::{MailboxConfig, PoolSettings, SupervisionConfig};
pub use health::StoreHealth;
pub use queue::{QueueError, QueueHandle};
pub use runtime::{QueueSpec, Runtime, RuntimeBuilder, RuntimeHandle};
