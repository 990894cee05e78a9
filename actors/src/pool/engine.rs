//! The pool's loop: fetch up to the free slots in one call, run each job in its own task,
//! settle finished jobs in batches, heartbeat leases, recover expired ones, rebuild crashed
//! slots after a growing delay, and drain on stop.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::json;
use stagehand_core::processor::run_attempt;
use stagehand_core::{
    ActiveJob, AttemptResult, JobContext, JobId, LeaseToken, Outcome, Processor, QueueStore,
    SettleResult, Settlement, StoreError,
};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, sleep_until};
use tracing::Instrument;

use super::slots::{Running, Slots};
use super::{PoolExit, PoolSpec};
use crate::alert::{Alert, AlertActor, AlertKind, Severity, raise};
use crate::config::PoolSettings;
use crate::metrics::{JobHandles, QueueMetrics};
use crate::supervision::{RestartDecision, RestartPolicy};
use stagehand_core::clock::now_ms;
use stagehand_core::history::{Ended, MinuteRecorder};

/// How long a pool that gave up waits for its other jobs before handing them back.
pub(super) const ESCALATION_GRACE: Duration = Duration::from_secs(5);

struct Finished {
    slot: usize,
    handles: Arc<JobHandles>,
    started: Instant,
    id: JobId,
    token: LeaseToken,
    attempt: u32,
    result: AttemptResult,
}

pub(super) struct Engine {
    queue: String,
    worker: String,
    store: Arc<dyn QueueStore>,
    processor: Arc<dyn Processor>,
    settings: PoolSettings,
    /// Shared by the pool's loops: the restart intensity is the pool's.
    slot_restarts: Rc<RefCell<RestartPolicy>>,
    alerts: Addr<AlertActor>,
    errors: ExponentialBackoff,
    slots: Slots,
    /// Crashed slots waiting out their restart delay; each yields its slot when done.
    restarting: FuturesUnordered<Pin<Box<dyn Future<Output = usize>>>>,
    exit: Option<PoolExit>,
    drain_by: Option<Instant>,
    draining: watch::Sender<bool>,
    /// Whether the last store call failed (an outage is alerted once).
    store_down: bool,
    health: Arc<crate::health::StoreHealth>,
    metrics: QueueMetrics,
    /// This loop's per-minute figures not yet added to the store's history.
    minutes: MinuteRecorder,
}

/// How often a loop adds its per-minute figures to the store's history.
const HISTORY_FLUSH: Duration = Duration::from_secs(5);

fn error_backoff() -> ExponentialBackoff {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

impl Engine {
    pub(super) fn new(
        spec: &PoolSpec,
        alerts: Addr<AlertActor>,
        slot_restarts: Rc<RefCell<RestartPolicy>>,
    ) -> Self {
        let queue = spec.store.queue().to_string();
        Engine {
            worker: format!("{}:{}:{:08x}", queue, std::process::id(), fastrand::u32(..)),
            queue,
            store: Arc::clone(&spec.store),
            processor: Arc::clone(&spec.processor),
            settings: spec.settings.clone(),
            slot_restarts,
            alerts,
            errors: error_backoff(),
            slots: Slots::new(spec.settings.concurrency),
            restarting: FuturesUnordered::new(),
            exit: None,
            drain_by: None,
            draining: watch::channel(false).0,
            store_down: false,
            health: Arc::clone(&spec.health),
            metrics: spec.metrics.clone(),
            minutes: MinuteRecorder::default(),
        }
    }

    pub(super) async fn run(mut self, mut stop: watch::Receiver<Option<Duration>>) -> PoolExit {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        let mut finished: Vec<Finished> = Vec::new();
        let mut signal = self.store.work_signal();
        let start = Instant::now();
        let mut heartbeat = interval_at(start + self.settings.heartbeat, self.settings.heartbeat);
        let mut stalled = interval_at(start, self.settings.stalled_check);
        let mut history = interval_at(start + HISTORY_FLUSH, HISTORY_FLUSH);
        history.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // After a busy stretch, one late tick is enough; no burst of catch-up calls.
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        stalled.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            while let Ok(f) = done_rx.try_recv() {
                finished.push(f);
            }
            if !finished.is_empty() {
                let batch = std::mem::take(&mut finished);
                if let Err((batch, err)) = self.settle(batch, &done_tx).await {
                    if self.drain_by.is_some_and(|by| Instant::now() >= by) {
                        tracing::warn!(queue = %self.queue, error = %err, unsettled = batch.len(), "grace period over with the store not answering; leases will expire and recovery will requeue");
                        return self.exit.unwrap_or(PoolExit::Stopped);
                    }
                    finished = batch;
                    self.pause_after(err, "settle").await;
                    continue;
                }
            }
            if self.drain_by.is_some() && self.slots.busy() == 0 {
                self.last_flush().await;
                return self.exit.unwrap_or(PoolExit::Stopped);
            }
            if self.drain_by.is_none() && self.slots.free() > 0 {
                let max = self.slots.free().min(self.settings.fetch_batch);
                match self
                    .store
                    .fetch(&self.worker, max, self.settings.lease)
                    .await
                {
                    Ok(jobs) => {
                        self.store_answered();
                        if !jobs.is_empty() {
                            for job in jobs {
                                self.spawn(job, &done_tx);
                            }
                            continue;
                        }
                    }
                    Err(err) => {
                        self.pause_after(err, "fetch").await;
                        continue;
                    }
                }
            }
            let can_take = self.drain_by.is_none() && self.slots.free() > 0;
            let drain_by = self
                .drain_by
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                Some(f) = done_rx.recv() => finished.push(f),
                waited = signal.wait(self.settings.idle_wait), if can_take => {
                    // A wait that fails returns at once: pause, or the loop would spin.
                    if let Err(err) = waited {
                        self.pause_after(err, "wait for work").await;
                    }
                }
                Some(slot) = self.restarting.next(), if !self.restarting.is_empty() => self.slots.release(slot),
                _ = heartbeat.tick() => self.heartbeat().await,
                _ = stalled.tick() => self.recover().await,
                _ = history.tick() => self.flush_history().await,
                changed = stop.changed(), if self.drain_by.is_none() => {
                    let grace = if changed.is_ok() { (*stop.borrow()).unwrap_or_default() } else { Duration::ZERO };
                    tracing::info!(queue = %self.queue, active = self.slots.busy(), grace_ms = grace.as_millis() as u64, "pool draining");
                    self.drain_by = Some(Instant::now() + grace);
                    self.draining.send_replace(true);
                }
                _ = sleep_until(drain_by), if self.drain_by.is_some() => {
                    while let Ok(f) = done_rx.try_recv() {
                        finished.push(f);
                    }
                    let batch = std::mem::take(&mut finished);
                    if let Err((_, err)) = self.settle(batch, &done_tx).await {
                        tracing::warn!(queue = %self.queue, error = %err, "could not settle at shutdown; leases will expire and recovery will requeue");
                    }
                    self.release_all().await;
                    self.last_flush().await;
                    return self.exit.unwrap_or(PoolExit::Stopped);
                }
            }
        }
    }

    fn spawn(&mut self, active: ActiveJob, done: &mpsc::UnboundedSender<Finished>) {
        let ActiveJob { job, token } = active;
        let Some(slot) = self.slots.reserve() else {
            // Fetch never asks for more than the free slots; hand back what cannot run.
            tracing::error!(queue = %self.queue, job_id = %job.id, "no free slot for a fetched job; its lease will expire and recovery will requeue it");
            return;
        };
        let id = job.id.clone();
        let attempt = job.attempts_made;
        if let Some(ms) = job.waited_ms() {
            self.metrics.waited(ms as f64 / 1000.0);
        }
        let handles = self.metrics.job(&job.name);
        self.metrics.busy(1.0);
        let ctx =
            JobContext::new(job, Arc::clone(&self.store)).with_shutdown(self.draining.subscribe());
        let processor = Arc::clone(&self.processor);
        let done = done.clone();
        let task_id = id.clone();
        // Every line the processor logs while it runs carries the attempt's context.
        let span = tracing::info_span!("attempt", queue = %self.queue, job_id = %id, attempt);
        let handle = tokio::spawn(
            async move {
                let started = Instant::now();
                let result = run_attempt(processor.as_ref(), ctx).await;
                // The loop only drops its receiver when it has stopped caring.
                let _ = done.send(Finished {
                    slot,
                    handles,
                    started,
                    id: task_id,
                    token,
                    attempt,
                    result,
                });
            }
            .instrument(span),
        );
        self.slots.fill(
            slot,
            Running {
                id,
                token,
                abort: handle.abort_handle(),
            },
        );
    }

    /// Settles a batch in one store call; on a store error, hands the batch back to retry.
    /// Settles a batch and, unless draining, leases as many new jobs as slots will be free,
    /// in one store call; on a store error, hands the batch back to retry.
    async fn settle(
        &mut self,
        batch: Vec<Finished>,
        done: &mpsc::UnboundedSender<Finished>,
    ) -> Result<(), (Vec<Finished>, StoreError)> {
        let settlements = batch
            .iter()
            .map(|f| Settlement {
                id: f.id.clone(),
                token: f.token,
                outcome: f.result.outcome.clone(),
            })
            .collect();
        let max = if self.drain_by.is_some() {
            0
        } else {
            let freed = batch.iter().filter(|f| f.result.panic.is_none()).count();
            (self.slots.free() + freed).min(self.settings.fetch_batch)
        };
        let (results, fetched) = match self
            .store
            .settle_and_fetch(settlements, &self.worker, max, self.settings.lease)
            .await
        {
            Ok(answer) => answer,
            Err(err) => return Err((batch, err)),
        };
        self.store_answered();
        for (f, result) in batch.into_iter().zip(results) {
            self.slots.vacate(f.slot);
            self.after_settle(&f, result);
            match &f.result.panic {
                Some(message) => self.slot_crashed(&f, message),
                None => self.slots.release(f.slot),
            }
        }
        for job in fetched {
            self.spawn(job, done);
        }
        Ok(())
    }

    fn after_settle(&mut self, f: &Finished, result: SettleResult) {
        self.metrics.busy(-1.0);
        let (ended, outcome) = match &result {
            SettleResult::Completed => (Ended::Completed, &f.handles.completed),
            SettleResult::Retrying { .. } => (Ended::Retried, &f.handles.retried),
            SettleResult::Failed { .. } => (Ended::Failed, &f.handles.failed),
            // Nothing ended: the attempt was handed back, or another worker holds the job.
            SettleResult::Released | SettleResult::LeaseLost => return self.log_settled(f, result),
        };
        outcome.increment(1);
        let took = f.started.elapsed();
        f.handles.duration.record(took.as_secs_f64());
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.minutes.record(now_ms(), ended, ms);
        self.log_settled(f, result);
    }

    /// Logs how a settled attempt ended (and alerts a critical job's failure).
    fn log_settled(&self, f: &Finished, result: SettleResult) {
        let queue = &self.queue;
        match result {
            SettleResult::Completed => {
                tracing::debug!(queue, job_id = %f.id, attempt = f.attempt, "job completed")
            }
            SettleResult::Retrying { delay_ms } => {
                tracing::info!(queue, job_id = %f.id, attempt = f.attempt, delay_ms, reason = f.result.outcome.reason().unwrap_or_default(), "job attempt failed; retrying")
            }
            SettleResult::Failed { job } => {
                let reason = job.failed_reason.clone().unwrap_or_default();
                tracing::warn!(queue, job_id = %f.id, attempt = f.attempt, reason = %reason, "job failed");
                if job.options.priority == 1 {
                    let alert = Alert::new(
                        AlertKind::JobFailed,
                        Severity::High,
                        queue,
                        format!("critical job {} ({}) failed: {reason}", job.id, job.name),
                    )
                    .job(&job.id)
                    .details(json!({ "name": job.name, "attempts": job.attempts_made, "reason": reason }));
                    raise(&self.alerts, alert);
                }
            }
            SettleResult::Released => tracing::info!(queue, job_id = %f.id, "job handed back"),
            SettleResult::LeaseLost => {
                tracing::warn!(queue, job_id = %f.id, attempt = f.attempt, "lease lost before settling; the job was recovered elsewhere and its result dropped")
            }
        }
    }

    /// A panic crashed a worker slot: alert, and rebuild the slot after a delay unless the
    /// restart intensity is exceeded, in which case the pool gives up and escalates.
    fn slot_crashed(&mut self, f: &Finished, message: &str) {
        let alert = Alert::new(
            AlertKind::ProcessorPanic,
            Severity::High,
            &self.queue,
            format!("processor panicked on job {}: {message}", f.id),
        )
        .job(&f.id)
        .details(json!({ "attempt": f.attempt, "panic": message }));
        raise(&self.alerts, alert);
        let decision = self
            .slot_restarts
            .borrow_mut()
            .on_failure(std::time::Instant::now());
        match decision {
            RestartDecision::Restart(delay) => {
                tracing::warn!(queue = %self.queue, job_id = %f.id, delay_ms = delay.as_millis() as u64, "worker slot crashed; rebuilding");
                let slot = f.slot;
                self.restarting.push(Box::pin(async move {
                    sleep(delay).await;
                    slot
                }));
            }
            RestartDecision::GiveUp { restarts, within } => {
                if self.exit.is_some() {
                    return;
                }
                let alert = Alert::new(
                    AlertKind::PoolIntensityExceeded,
                    Severity::Critical,
                    &self.queue,
                    format!(
                        "pool '{}' crashed {restarts} times within {} s; escalating to the supervisor",
                        self.queue,
                        within.as_secs_f64()
                    ),
                )
                .details(json!({ "restarts": restarts, "within_ms": within.as_millis() as u64 }));
                raise(&self.alerts, alert);
                self.exit = Some(PoolExit::IntensityExceeded { restarts, within });
                let by = Instant::now() + ESCALATION_GRACE;
                self.drain_by = Some(self.drain_by.map_or(by, |d| d.min(by)));
                self.draining.send_replace(true);
            }
        }
    }

    async fn heartbeat(&mut self) {
        if self.slots.busy() == 0 {
            return;
        }
        let leases: Vec<(JobId, LeaseToken)> = self
            .slots
            .running()
            .map(|r| (r.id.clone(), r.token))
            .collect();
        match self.store.extend_leases(&leases, self.settings.lease).await {
            Ok(held) => {
                self.store_answered();
                for ((id, _), held) in leases.iter().zip(held) {
                    if !held {
                        tracing::warn!(queue = %self.queue, job_id = %id, "lease lost while running");
                    }
                }
            }
            Err(err) => self.store_failed(&err, "heartbeat"),
        }
    }

    async fn recover(&mut self) {
        let recovered = self.store.recover_expired(self.settings.max_stalled).await;
        if recovered.is_ok() {
            self.store_answered();
        }
        match recovered {
            Ok(report) if !(report.requeued.is_empty() && report.failed.is_empty()) => {
                self.metrics.recovered(&report);
                tracing::warn!(queue = %self.queue, requeued = report.requeued.len(), failed = report.failed.len(), "recovered jobs whose lease expired");
            }
            Ok(_) => {}
            Err(err) => self.store_failed(&err, "lease recovery"),
        }
    }

    /// Adds this loop's per-minute figures to the store's history; what the store does not
    /// take is kept (the newest hour of it) for the next try.
    async fn flush_history(&mut self) {
        if self.minutes.is_empty() {
            return;
        }
        let minutes = self.minutes.take();
        if let Err(err) = self.store.record_minutes(&minutes).await {
            tracing::debug!(queue = %self.queue, error = %err, "history not recorded; kept for the next try");
            self.minutes.restore(minutes);
        }
    }

    /// The figures of a loop that is ending, given a second at most (the store may be away).
    async fn last_flush(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.flush_history()).await;
    }

    /// Aborts what is still running and hands it back to the queue.
    async fn release_all(&mut self) {
        if self.slots.busy() == 0 {
            return;
        }
        let settlements: Vec<Settlement> = self
            .slots
            .vacate_all()
            .into_iter()
            .map(|r| {
                r.abort.abort();
                Settlement {
                    id: r.id,
                    token: r.token,
                    outcome: Outcome::Released,
                }
            })
            .collect();
        let n = settlements.len();
        self.metrics.busy(-(n as f64));
        match self.store.settle(settlements).await {
            Ok(_) => {
                tracing::warn!(queue = %self.queue, released = n, "grace period over; unfinished jobs handed back")
            }
            Err(err) => {
                tracing::warn!(queue = %self.queue, error = %err, "could not hand jobs back; their leases will expire and recovery will requeue them")
            }
        }
    }

    /// A store call succeeded: reset the error delays, and say so if the store was down.
    fn store_answered(&mut self) {
        if self.store_down {
            self.store_down = false;
            self.errors = error_backoff();
            self.health.answered(&self.queue, &self.worker);
        }
    }

    /// A store call failed: tell the runtime's [`StoreHealth`], and alert when that began an
    /// outage (once per outage for all pools: they share one store).
    ///
    /// [`StoreHealth`]: crate::health::StoreHealth
    fn store_failed(&mut self, err: &StoreError, during: &str) {
        self.store_down = true;
        if self.health.failed(&self.queue, &self.worker, err) {
            let alert = Alert::new(
                AlertKind::StoreUnavailable,
                Severity::Critical,
                &self.queue,
                format!(
                    "queue store unavailable during {during}: {err}; the pool retries until it answers"
                ),
            );
            raise(&self.alerts, alert);
        }
    }

    /// A store call failed: say so (once), then wait a growing delay.
    async fn pause_after(&mut self, err: StoreError, during: &str) {
        self.store_failed(&err, during);
        let delay = self.errors.next().unwrap_or(Duration::from_secs(2));
        tracing::debug!(queue = %self.queue, error = %err, during, delay_ms = delay.as_millis() as u64, "store call failed; retrying");
        sleep(delay).await;
    }
}
