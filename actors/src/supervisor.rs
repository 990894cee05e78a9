//! The RuntimeSupervisor: starts each queue's processor pool on its queue's arbiter, restarts a
//! pool that escalated (one_for_one, with restart intensity and a growing delay), gives up and
//! alerts past the intensity, and stops the tree top-down on shutdown.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::future::join_all;
use serde_json::json;

use crate::alert::{Alert, AlertActor, AlertKind, Severity, raise};
use crate::config::SupervisionConfig;
use crate::pool::{PoolExit, PoolExited, PoolSpec, ProcessorPool, StopPool};
use crate::supervision::{RestartDecision, RestartPolicy};

/// A pool's state as its supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    /// Working its queue.
    Running,
    /// Waiting out its restart delay.
    Restarting,
    /// Restarted too often; the supervisor gave up on it.
    GaveUp,
    /// Stopped by a shutdown.
    Stopped,
}

/// Asks for every pool's state.
#[derive(Debug, Message)]
#[rtype(result = "BTreeMap<String, PoolState>")]
pub struct GetPoolStates;

/// Stops every pool (each drains within `grace`); answers when all have stopped.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// How long active jobs may take to finish.
    pub grace: Duration,
}

struct PoolChild {
    spec: PoolSpec,
    arbiter: ArbiterHandle,
    addr: Option<Addr<ProcessorPool>>,
    policy: RestartPolicy,
    state: PoolState,
}

/// The root of the actor tree.
pub struct RuntimeSupervisor {
    alerts: Addr<AlertActor>,
    pools: BTreeMap<String, PoolChild>,
    mailbox: usize,
    shutting_down: bool,
}

impl RuntimeSupervisor {
    /// A supervisor for these pools (queue name -> spec and the arbiter to run it on).
    pub fn new(
        alerts: Addr<AlertActor>,
        pools: Vec<(String, PoolSpec, ArbiterHandle)>,
        supervision: SupervisionConfig,
        mailbox: usize,
    ) -> Self {
        let pools = pools
            .into_iter()
            .map(|(name, spec, arbiter)| {
                let child = PoolChild {
                    spec,
                    arbiter,
                    addr: None,
                    policy: RestartPolicy::new(supervision),
                    state: PoolState::Restarting,
                };
                (name, child)
            })
            .collect();
        RuntimeSupervisor {
            alerts,
            pools,
            mailbox,
            shutting_down: false,
        }
    }

    fn start_pool(&mut self, queue: &str, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let Some(child) = self.pools.get_mut(queue) else {
            return;
        };
        let spec = child.spec.clone();
        let alerts = self.alerts.clone();
        let me = ctx.address().recipient();
        child.addr = Some(ProcessorPool::start_in_arbiter(&child.arbiter, move |_| {
            ProcessorPool::new(spec, alerts, me)
        }));
        child.state = PoolState::Running;
    }
}

impl Actor for RuntimeSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for name in names {
            self.start_pool(&name, ctx);
        }
    }
}

impl Handler<PoolExited> for RuntimeSupervisor {
    type Result = ();

    fn handle(&mut self, msg: PoolExited, ctx: &mut Self::Context) {
        let shutting_down = self.shutting_down;
        let Some(child) = self.pools.get_mut(&msg.queue) else {
            return;
        };
        child.addr = None;
        if shutting_down {
            child.state = PoolState::Stopped;
            return;
        }
        let why = match msg.exit {
            PoolExit::Stopped => "stopped unasked".to_string(),
            PoolExit::IntensityExceeded { restarts, .. } => {
                format!("its slots crashed {restarts} times")
            }
        };
        match child.policy.on_failure(Instant::now()) {
            RestartDecision::Restart(delay) => {
                tracing::warn!(queue = %msg.queue, reason = %why, delay_ms = delay.as_millis() as u64, "restarting processor pool");
                child.state = PoolState::Restarting;
                let queue = msg.queue.clone();
                ctx.run_later(delay, move |act, ctx| act.start_pool(&queue, ctx));
            }
            RestartDecision::GiveUp { restarts, within } => {
                child.state = PoolState::GaveUp;
                let alert = Alert::new(
                    AlertKind::SupervisorGaveUp,
                    Severity::Critical,
                    &msg.queue,
                    format!(
                        "processor pool '{}' was restarted {restarts} times within {} s; it stays down until the service restarts (jobs keep waiting)",
                        msg.queue,
                        within.as_secs_f64()
                    ),
                )
                .details(json!({ "restarts": restarts, "within_ms": within.as_millis() as u64, "last_reason": why }));
                raise(&self.alerts, alert);
            }
        }
    }
}

impl Handler<GetPoolStates> for RuntimeSupervisor {
    type Result = MessageResult<GetPoolStates>;

    fn handle(&mut self, _: GetPoolStates, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.pools
                .iter()
                .map(|(name, child)| (name.clone(), child.state))
                .collect(),
        )
    }
}

impl Handler<Shutdown> for RuntimeSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.shutting_down = true;
        let pools: Vec<Addr<ProcessorPool>> =
            self.pools.values().filter_map(|c| c.addr.clone()).collect();
        tracing::info!(
            pools = pools.len(),
            grace_ms = msg.grace.as_millis() as u64,
            "shutting down"
        );
        let stops = join_all(
            pools
                .into_iter()
                .map(move |pool| pool.send(StopPool { grace: msg.grace })),
        );
        Box::pin(
            actix::fut::wrap_future::<_, Self>(stops).map(|_, act, _ctx| {
                for child in act.pools.values_mut() {
                    child.addr = None;
                    child.state = PoolState::Stopped;
                }
            }),
        )
    }
}
