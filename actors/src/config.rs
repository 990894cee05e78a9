//! Settings the actors take: mailbox capacities, supervision limits, pool tuning.

use std::time::Duration;

/// Mailbox capacity per actor kind (`[actors.mailbox]`). A full mailbox fails fast with
/// [`crate::QueueError::Busy`] rather than growing without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxConfig {
    /// The runtime supervisor's.
    pub supervisor: usize,
    /// Each queue actor's (job traffic from the API).
    pub queue: usize,
    /// Each processor pool's.
    pub pool: usize,
    /// The alert actor's.
    pub alert: usize,
    /// Each pub/sub message handler's; a full one drops the message (counted, alerted).
    pub handler: usize,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            supervisor: 64,
            queue: 1024,
            pool: 64,
            alert: 1024,
            handler: 1024,
        }
    }
}

/// OTP-style restart limits: at most `max_restarts` in `within`, else give up and escalate;
/// the delay before each restart grows from `min_delay` to `max_delay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisionConfig {
    /// Restarts allowed within the window.
    pub max_restarts: u32,
    /// The window.
    pub within: Duration,
    /// The first restart delay.
    pub min_delay: Duration,
    /// The longest restart delay.
    pub max_delay: Duration,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            max_restarts: 5,
            within: Duration::from_secs(10),
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// How a processor pool works its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a fetched job's lease lasts without a heartbeat.
    pub lease: Duration,
    /// How often leases are extended (well inside `lease`).
    pub heartbeat: Duration,
    /// How often expired leases are looked for.
    pub stalled_check: Duration,
    /// Stalls a job may have before it fails.
    pub max_stalled: u32,
    /// Most jobs fetched in one call.
    pub fetch_batch: usize,
    /// Longest idle wait between fetches when no signal comes.
    pub idle_wait: Duration,
    /// Fetch–run–settle loops sharing the slots: more than one keeps a remote store busy
    /// while jobs run (each loop is a separate round trip in flight).
    pub loops: usize,
}

impl PoolSettings {
    /// Defaults for a pool of `concurrency` slots: 30 s leases, heartbeats every 10 s.
    pub fn with_concurrency(concurrency: usize) -> Self {
        PoolSettings {
            concurrency: concurrency.max(1),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(10),
            stalled_check: Duration::from_secs(15),
            max_stalled: 1,
            fetch_batch: 100,
            idle_wait: Duration::from_secs(5),
            loops: 1,
        }
    }
}
