//! The ProcessorPool: one per queue, supervised by the RuntimeSupervisor. It owns the
//! [`engine`] loop that fetches jobs, runs them in worker slots and settles them.

mod engine;
mod slots;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use stagehand_core::{Processor, QueueStore};
use tokio::sync::watch;

use crate::alert::AlertActor;
use crate::config::{PoolSettings, SupervisionConfig};
use crate::supervision::RestartPolicy;
use engine::{ESCALATION_GRACE, Engine};

/// Why a pool stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolExit {
    /// It was asked to stop and has drained.
    Stopped,
    /// Its worker slots crashed more often than its restart intensity allows.
    IntensityExceeded {
        /// Slot restarts seen in the window.
        restarts: u32,
        /// The window.
        within: Duration,
    },
}

/// Told to the supervisor when a pool's loop ends.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PoolExited {
    /// The pool's queue.
    pub queue: String,
    /// Why.
    pub exit: PoolExit,
}

/// Asks a pool to stop fetching, let its active jobs finish within `grace`, and hand back
/// what did not; answers once the pool has drained.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopPool {
    /// How long active jobs may take to finish.
    pub grace: Duration,
}

/// Everything a pool needs to run.
#[derive(Clone)]
pub struct PoolSpec {
    /// The queue's store.
    pub store: Arc<dyn QueueStore>,
    /// What runs its jobs.
    pub processor: Arc<dyn Processor>,
    /// Concurrency, leases and the like.
    pub settings: PoolSettings,
    /// Restart limits for its worker slots.
    pub supervision: SupervisionConfig,
    /// Mailbox capacity.
    pub mailbox: usize,
    /// Where its loops report whether the store answers.
    pub health: Arc<crate::health::StoreHealth>,
    /// Its jobs' counters and histograms.
    pub metrics: crate::metrics::QueueMetrics,
}

/// The processor pool actor.
pub struct ProcessorPool {
    spec: PoolSpec,
    alerts: Addr<AlertActor>,
    supervisor: Recipient<PoolExited>,
    stop: watch::Sender<Option<Duration>>,
    finished: watch::Sender<bool>,
    /// Engine loops still running.
    running: usize,
    /// The first escalation among the loops.
    exit: Option<PoolExit>,
}

impl ProcessorPool {
    /// A pool that reports its exit to `supervisor` and its failures to `alerts`.
    pub fn new(
        spec: PoolSpec,
        alerts: Addr<AlertActor>,
        supervisor: Recipient<PoolExited>,
    ) -> Self {
        ProcessorPool {
            spec,
            alerts,
            supervisor,
            stop: watch::channel(None).0,
            finished: watch::channel(false).0,
            running: 0,
            exit: None,
        }
    }
}

impl Actor for ProcessorPool {
    type Context = Context<Self>;

    /// Starts `settings.loops` engine loops sharing the pool's slots between them. While one
    /// loop waits on the store, another runs its jobs, so the store is kept busy. The pool
    /// stops when every loop has; one loop escalating stops the others.
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.spec.mailbox);
        let settings = &self.spec.settings;
        let loops = settings.loops.clamp(1, settings.concurrency);
        tracing::info!(
            queue = self.spec.store.queue(),
            concurrency = settings.concurrency,
            loops,
            "processor pool started"
        );
        self.running = loops;
        let slot_restarts = Rc::new(RefCell::new(RestartPolicy::new(self.spec.supervision)));
        for n in 0..loops {
            let mut spec = self.spec.clone();
            let share =
                settings.concurrency / loops + usize::from(n < settings.concurrency % loops);
            spec.settings.concurrency = share;
            let engine = Engine::new(&spec, self.alerts.clone(), Rc::clone(&slot_restarts));
            let stop = self.stop.subscribe();
            ctx.spawn(
                actix::fut::wrap_future::<_, Self>(engine.run(stop))
                    .map(|exit, act, ctx| act.loop_stopped(exit, ctx)),
            );
        }
    }
}

impl ProcessorPool {
    fn loop_stopped(&mut self, exit: PoolExit, ctx: &mut Context<Self>) {
        self.running -= 1;
        if let PoolExit::IntensityExceeded { .. } = exit {
            if self.exit.is_none() && self.running > 0 {
                // The others drain as they would for an escalation of their own.
                self.stop.send_replace(Some(ESCALATION_GRACE));
            }
            self.exit.get_or_insert(exit);
        }
        if self.running > 0 {
            return;
        }
        let queue = self.spec.store.queue().to_string();
        let exit = self.exit.unwrap_or(PoolExit::Stopped);
        tracing::info!(queue = %queue, ?exit, "processor pool stopped");
        self.finished.send_replace(true);
        self.supervisor.do_send(PoolExited { queue, exit });
        ctx.stop();
    }
}

impl Handler<StopPool> for ProcessorPool {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: StopPool, _ctx: &mut Self::Context) -> Self::Result {
        self.stop.send_replace(Some(msg.grace));
        let mut finished = self.finished.subscribe();
        Box::pin(async move {
            // An error means the pool is gone, which is what we wait for anyway.
            let _ = finished.wait_for(|done| *done).await;
        })
    }
}
