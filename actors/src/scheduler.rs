//! The SchedulerActor: turns due schedules into jobs, in any number of processes at once.
//!
//! It sleeps until the earliest next fire of any queue's schedules, or until woken: a change
//! to a schedule in this process, or in another one (the service forwards the `schedules`
//! pub/sub channel, and a possible loss on it, to [`SchedulerHandle::wake`]). As a guard
//! against a lost wake it never sleeps longer than a minute. A store that cannot be reached
//! delays fires, never drops them: the step is tried again with growing pauses, the outage
//! told once, and an alert raised.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use stagehand_core::clock::now_ms;
use stagehand_core::outage::{Outage, OutageNote};
use stagehand_core::schedule::fire_due;
use tokio::sync::Notify;

use crate::alert::{Alert, AlertKind, Severity, raise};
use crate::runtime::RuntimeHandle;

/// The longest sleep between two looks at the schedules.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The shortest: a schedule still due after a step (whatever the reason) is looked at again
/// after this, not in a spin.
const MIN_SLEEP: Duration = Duration::from_millis(20);

/// Wakes the scheduler.
#[derive(Clone, Default)]
pub struct SchedulerHandle {
    wake: Arc<Notify>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle").finish_non_exhaustive()
    }
}

impl SchedulerHandle {
    /// A schedule changed: look again now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Fires due schedules of every queue of a runtime.
pub struct SchedulerActor {
    runtime: RuntimeHandle,
    wake: Arc<Notify>,
}

impl SchedulerActor {
    /// Starts the scheduler under a supervisor (restarted if it ever stops).
    pub fn start(runtime: RuntimeHandle) -> (Addr<SchedulerActor>, SchedulerHandle) {
        let handle = SchedulerHandle::default();
        let wake = Arc::clone(&handle.wake);
        let addr = Supervisor::start(move |_| SchedulerActor {
            runtime: runtime.clone(),
            wake: Arc::clone(&wake),
        });
        (addr, handle)
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let runtime = self.runtime.clone();
        let wake = Arc::clone(&self.wake);
        ctx.spawn(
            run(runtime, wake)
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        );
    }
}

impl Supervised for SchedulerActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!("scheduler restarted");
    }
}

/// The scheduler's loop: fire what is due, then sleep until the next fire or a wake.
async fn run(runtime: RuntimeHandle, wake: Arc<Notify>) {
    let mut outage = Outage::default();
    let mut pause = Duration::from_millis(250);
    loop {
        let now = now_ms();
        let mut next: Option<u64> = None;
        let mut failed = None;
        for queue in runtime.queues() {
            let Some(store) = runtime.store(queue.name()) else {
                continue;
            };
            match fire_due(&store, queue.defaults(), now).await {
                Ok(report) => {
                    for (id, fire, _) in &report.fired {
                        tracing::debug!(queue = queue.name(), schedule = %id, fire_ms = fire, "schedule fired");
                    }
                }
                Err(err) => {
                    failed = Some((queue.name().to_string(), err));
                    continue;
                }
            }
            match store.next_schedule_at().await {
                Ok(at) => {
                    next = match (next, at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                }
                Err(err) => failed = Some((queue.name().to_string(), err)),
            }
        }
        let sleep = match failed {
            Some((queue, err)) => {
                // Told once for the whole process (pools and scheduler alike); alerted here
                // only when no pool is telling it already.
                let told = !runtime.waiting_for_store().is_empty();
                runtime.health().failed_aside("scheduler", &queue, &err);
                if outage.failed() == Some(OutageNote::Started) && !told {
                    raise(
                        &runtime.alerts(),
                        Alert::new(
                            AlertKind::StoreUnavailable,
                            Severity::Critical,
                            &queue,
                            format!("the scheduler cannot reach the store ({err}); schedules fire late once it answers"),
                        ),
                    );
                }
                let this = pause;
                pause = (pause * 2).min(Duration::from_secs(2));
                this
            }
            None => {
                if let Some(lasted) = outage.answered() {
                    tracing::info!(
                        lasted_ms = lasted.as_millis() as u64,
                        "scheduler reaches the store again"
                    );
                }
                pause = Duration::from_millis(250);
                let now = now_ms();
                match next {
                    Some(at) if at <= now => MIN_SLEEP,
                    Some(at) => Duration::from_millis(at - now).min(MAX_SLEEP),
                    None => MAX_SLEEP,
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
        }
    }
}
