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

/// The scheduler's loop: fire what is due, then sleep until the next fire or a wake. A queue
/// whose store fails backs off on its own; the others go on firing on time.
async fn run(runtime: RuntimeHandle, wake: Arc<Notify>) {
    use std::collections::HashMap;
    // Per failing queue: when to try it again, and the pause after that.
    let mut backoff: HashMap<String, (u64, Duration)> = HashMap::new();
    let mut outage = Outage::default();
    let mut blocked_told: HashMap<String, u64> = HashMap::new();
    loop {
        let now = now_ms();
        let mut next: Option<u64> = None;
        let earliest = |at: u64, next: &mut Option<u64>| {
            *next = Some(next.map_or(at, |n: u64| n.min(at)));
        };
        let mut failed = None;
        for queue in runtime.queues() {
            let name = queue.name().to_string();
            let Some(store) = runtime.store(&name) else {
                continue;
            };
            if let Some((retry_at, _)) = backoff.get(&name)
                && *retry_at > now
            {
                earliest(*retry_at, &mut next);
                continue;
            }
            let step = async {
                let report = fire_due(&store, queue.defaults(), now).await?;
                let at = store.next_schedule_at().await?;
                Ok::<_, stagehand_core::StoreError>((report, at))
            };
            match step.await {
                Ok((report, at)) => {
                    backoff.remove(&name);
                    queue.metrics().schedule_step(&report.fired, report.skipped);
                    for fired in &report.fired {
                        tracing::debug!(queue = %name, schedule = %fired.schedule, fire_ms = fired.fire, "schedule fired");
                    }
                    for (id, why) in &report.blocked {
                        // Said (and alerted) at most once a minute per schedule.
                        let last = blocked_told.get(id).copied().unwrap_or(0);
                        if now.saturating_sub(last) >= 60_000 {
                            blocked_told.insert(id.clone(), now);
                            tracing::warn!(queue = %name, schedule = %id, reason = %why, "a schedule's fire was refused by its queue; trying again");
                            raise(
                                &runtime.alerts(),
                                Alert::new(
                                    AlertKind::ScheduleBlocked,
                                    Severity::High,
                                    &name,
                                    format!("schedule '{id}' cannot enqueue its fire: {why}"),
                                ),
                            );
                        }
                    }
                    if let Some(at) = at {
                        // A refused fire is tried again in a second, not in a spin.
                        let at = if report.blocked.is_empty() {
                            at
                        } else {
                            at.max(now + 1_000)
                        };
                        earliest(at, &mut next);
                    }
                }
                Err(err) => {
                    let pause = backoff
                        .get(&name)
                        .map_or(Duration::from_millis(250), |(_, p)| {
                            (*p * 2).min(Duration::from_secs(2))
                        });
                    let retry_at = now + pause.as_millis() as u64;
                    backoff.insert(name.clone(), (retry_at, pause));
                    earliest(retry_at, &mut next);
                    failed = Some((name, err));
                }
            }
        }
        match failed {
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
                            format!(
                                "the scheduler cannot reach the store ({err}); schedules fire late once it answers"
                            ),
                        ),
                    );
                }
            }
            None if backoff.is_empty() && outage.answered().is_some() => {
                runtime.health().answered_aside("scheduler");
            }
            None => {}
        }
        let now = now_ms();
        let sleep = match next {
            Some(at) if at <= now => MIN_SLEEP,
            Some(at) => Duration::from_millis(at - now).min(MAX_SLEEP),
            None => MAX_SLEEP,
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
        }
    }
}
