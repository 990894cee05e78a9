//! The ProcessorPool: one per queue, supervised by the RuntimeSupervisor. It owns the
//! [`engine`] loop that fetches jobs, runs them in worker slots and settles them.

mod engine;
mod slots;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use stagehand_core::{Processor, QueueStore};
use tokio::sync::watch;

use crate::alert::AlertActor;
use crate::config::{PoolSettings, SupervisionConfig};
use engine::Engine;

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
}

/// The processor pool actor.
pub struct ProcessorPool {
    spec: PoolSpec,
    alerts: Addr<AlertActor>,
    supervisor: Recipient<PoolExited>,
    stop: watch::Sender<Option<Duration>>,
    finished: watch::Sender<bool>,
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
        }
    }
}

impl Actor for ProcessorPool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.spec.mailbox);
        let engine = Engine::new(&self.spec, self.alerts.clone());
        let queue = self.spec.store.queue().to_string();
        tracing::info!(queue = %queue, concurrency = self.spec.settings.concurrency, "processor pool started");
        let stop = self.stop.subscribe();
        ctx.spawn(actix::fut::wrap_future::<_, Self>(engine.run(stop)).map(
            move |exit, act, ctx| {
                tracing::info!(queue = %queue, ?exit, "processor pool stopped");
                act.finished.send_replace(true);
                act.supervisor.do_send(PoolExited { queue, exit });
                ctx.stop();
            },
        ));
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
