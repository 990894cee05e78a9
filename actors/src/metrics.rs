//! What the actors measure, through the [`metrics`] facade: nothing is recorded until the
//! embedding process installs a recorder (the service installs a Prometheus one), and a
//! recorded value costs an atomic add on a handle looked up once.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `stagehand_jobs_total` | counter | `queue`, `name`, `outcome` (added, completed, failed, retried, stalled) |
//! | `stagehand_job_duration_seconds` | histogram | `queue`, `name` |
//! | `stagehand_job_wait_seconds` | histogram | `queue` (ready to started) |
//! | `stagehand_pool_busy_slots` | gauge | `queue` |
//! | `stagehand_mailbox_depth` | gauge | `actor` (queue, alert, handler: messages sent and not yet taken or answered) |
//! | `stagehand_schedule_fires_total` | counter | `queue` |
//! | `stagehand_schedule_missed_total` | counter | `queue` (missed fires not run, by policy) |
//! | `stagehand_schedule_lag_seconds` | histogram | `queue` (fire time to enqueued) |
//! | `stagehand_alerts_total` | counter | `kind` |
//!
//! Job names are user data: each queue labels at most [`MAX_NAMES`] of them, and counts the
//! rest under `name="_other"`, so a client that invents names cannot grow the registry.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use parking_lot::Mutex;
use stagehand_core::RecoverReport;
use stagehand_core::schedule::Fired;

/// Jobs by outcome.
pub const JOBS: &str = "stagehand_jobs_total";
/// How long attempts ran.
pub const DURATION: &str = "stagehand_job_duration_seconds";
/// How long jobs waited between ready and started.
pub const WAIT: &str = "stagehand_job_wait_seconds";
/// Worker slots running a job.
pub const BUSY: &str = "stagehand_pool_busy_slots";
/// Messages sent to an actor and not yet answered.
pub const MAILBOX: &str = "stagehand_mailbox_depth";
/// Schedule fires enqueued.
pub const FIRES: &str = "stagehand_schedule_fires_total";
/// Missed schedule fires not run.
pub const MISSED: &str = "stagehand_schedule_missed_total";
/// From a fire's time to its job enqueued.
pub const LAG: &str = "stagehand_schedule_lag_seconds";
/// Alerts raised.
pub const ALERTS: &str = "stagehand_alerts_total";

/// The most job names one queue labels; the rest are `_other`.
pub const MAX_NAMES: usize = 100;
/// The label of names past [`MAX_NAMES`].
pub const OTHER_NAME: &str = "_other";

/// One queue's handles for one job name.
pub struct JobHandles {
    /// `outcome="added"`.
    pub added: Counter,
    /// `outcome="completed"`.
    pub completed: Counter,
    /// `outcome="failed"`.
    pub failed: Counter,
    /// `outcome="retried"`.
    pub retried: Counter,
    /// `outcome="stalled"`.
    pub stalled: Counter,
    /// Attempt durations.
    pub duration: Histogram,
}

impl JobHandles {
    fn new(queue: &str, name: &str) -> JobHandles {
        let outcome = |outcome: &'static str| counter!(JOBS, "queue" => queue.to_string(), "name" => name.to_string(), "outcome" => outcome);
        JobHandles {
            added: outcome("added"),
            completed: outcome("completed"),
            failed: outcome("failed"),
            retried: outcome("retried"),
            stalled: outcome("stalled"),
            duration: histogram!(DURATION, "queue" => queue.to_string(), "name" => name.to_string()),
        }
    }
}

/// A queue's metric handles, shared by its pool and its handle; cheap to clone.
#[derive(Clone)]
pub struct QueueMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    queue: String,
    names: Mutex<HashMap<String, Arc<JobHandles>>>,
    other: std::sync::OnceLock<Arc<JobHandles>>,
    wait: Histogram,
    busy: Gauge,
}

impl QueueMetrics {
    /// The handles of `queue` (registered with whatever recorder is installed now).
    pub fn new(queue: &str) -> QueueMetrics {
        QueueMetrics {
            inner: Arc::new(Inner {
                queue: queue.to_string(),
                names: Mutex::new(HashMap::new()),
                other: std::sync::OnceLock::new(),
                wait: histogram!(WAIT, "queue" => queue.to_string()),
                busy: gauge!(BUSY, "queue" => queue.to_string()),
            }),
        }
    }

    /// The handles for jobs called `name`.
    pub fn job(&self, name: &str) -> Arc<JobHandles> {
        let mut names = self.inner.names.lock();
        if let Some(handles) = names.get(name) {
            return Arc::clone(handles);
        }
        if names.len() >= MAX_NAMES {
            let queue = &self.inner.queue;
            return self
                .inner
                .other
                .get_or_init(|| Arc::new(JobHandles::new(queue, OTHER_NAME)))
                .clone();
        }
        let handles = Arc::new(JobHandles::new(&self.inner.queue, name));
        names.insert(name.to_string(), Arc::clone(&handles));
        handles
    }

    /// Jobs whose lease ran out: each counts as stalled, and those failed for stalling too
    /// often count as failed as well.
    pub fn recovered(&self, report: &RecoverReport) {
        for job in &report.requeued {
            self.job(&job.name).stalled.increment(1);
        }
        for job in &report.failed {
            let handles = self.job(&job.name);
            handles.stalled.increment(1);
            handles.failed.increment(1);
        }
    }

    /// A scheduler step: each fire enqueued (a fire, its lag, and its job added), and the
    /// missed fires not run.
    pub fn schedule_step(&self, fired: &[Fired], missed: u64) {
        let queue = &self.inner.queue;
        if !fired.is_empty() {
            let fires = counter!(FIRES, "queue" => queue.to_string());
            let lag = histogram!(LAG, "queue" => queue.to_string());
            for fire in fired {
                fires.increment(1);
                lag.record(fire.lag_ms() as f64 / 1000.0);
                self.job(&fire.job_name).added.increment(1);
            }
        }
        if missed > 0 {
            counter!(MISSED, "queue" => queue.to_string()).increment(missed);
        }
    }

    /// A job waited `seconds` between ready and started.
    pub fn waited(&self, seconds: f64) {
        self.inner.wait.record(seconds);
    }

    /// A worker slot took a job (`+1`) or let one go (`-1`).
    pub fn busy(&self, delta: f64) {
        self.inner.busy.increment(delta);
    }
}

/// A gauge of messages in flight to one kind of actor: up on send, down on answer.
#[derive(Clone)]
pub struct MailboxDepth(Gauge);

impl MailboxDepth {
    /// The gauge of `actor` (`queue`, `alert`, ...).
    pub fn new(actor: &'static str) -> MailboxDepth {
        MailboxDepth(gauge!(MAILBOX, "actor" => actor))
    }

    /// One message in flight until the guard drops.
    pub fn enter(&self) -> InFlight {
        self.0.increment(1.0);
        InFlight(self.0.clone())
    }
}

impl MailboxDepth {
    /// A message was sent that no answer will count down: [`MailboxDepth::taken`] does.
    pub fn sent(&self) {
        self.0.increment(1.0);
    }

    /// The actor took a message [`MailboxDepth::sent`] counted.
    pub fn taken(&self) {
        self.0.decrement(1.0);
    }
}

/// A message in flight; counted down when dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// An alert of `kind` was raised.
pub fn alert_raised(kind: &'static str) {
    counter!(ALERTS, "kind" => kind).increment(1);
}
