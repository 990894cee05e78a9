//! One scheduler step for one queue: fire what is due, by the plans core makes, through the
//! store's atomic fire. Any number of processes may run it at once: a fire is applied only by
//! the caller that still sees the schedule's next fire as it was, and each fire's job id is
//! its own, so a fire is one job.

use std::sync::Arc;

use futures::StreamExt;

use super::model::{FirePlan, Schedule, fire_job_id};
use crate::error::StoreError;
use crate::options::JobOptions;
use crate::store::{NewJob, QueueStore, ScheduleFire};

/// The most due schedules one step reads from a queue at a time.
const DUE_BATCH: usize = 500;
/// Fires in flight at once (one connection pipelines them).
const IN_FLIGHT: usize = 32;

/// What a step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FireReport {
    /// Fires this caller applied, one job enqueued each.
    pub fired: Vec<Fired>,
    /// Fires missed and not enqueued (the skip, run_once and catch_up policies).
    pub skipped: u64,
    /// Schedules another caller fired first.
    pub lost_races: u64,
    /// Schedules whose spec no longer parses (paused, said in the log).
    pub broken: Vec<String>,
    /// Schedules whose fire the queue refused (full, or input it will not take): tried again
    /// at the next step, by (schedule id, why).
    pub blocked: Vec<(String, String)>,
}

/// One fire applied: its job was enqueued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The schedule.
    pub schedule: String,
    /// The name of the job it enqueued.
    pub job_name: String,
    /// The fire time (ms since the epoch).
    pub fire: u64,
    /// When the fire was applied.
    pub at: u64,
}

impl Fired {
    /// How late the fire was applied, in ms.
    pub fn lag_ms(&self) -> u64 {
        self.at.saturating_sub(self.fire)
    }
}

/// The jobs of `plan` for `schedule`, with the queue's `defaults` under the schedule's options.
pub fn fire_jobs(schedule: &Schedule, plan: &FirePlan, defaults: &JobOptions) -> Vec<NewJob> {
    let options = schedule
        .spec
        .options
        .resolve(defaults)
        .unwrap_or_else(|_| defaults.clone());
    plan.fires
        .iter()
        .map(|&fire| {
            let mut job = NewJob::new(schedule.spec.name.clone(), schedule.spec.data.clone());
            job.options = options.clone();
            job.options.job_id = Some(fire_job_id(&schedule.spec.id, fire));
            job
        })
        .collect()
}

/// Fires every schedule of `store` due at `now`.
pub async fn fire_due(
    store: &Arc<dyn QueueStore>,
    defaults: &JobOptions,
    now: u64,
) -> Result<FireReport, StoreError> {
    let mut report = FireReport::default();
    loop {
        let due = store.due_schedules(now, DUE_BATCH).await?;
        let full = due.len() == DUE_BATCH;
        let mut progressed = false;
        let mut steps = Vec::with_capacity(due.len());
        for schedule in due {
            let Some(expected) = schedule.state.next_at else {
                continue;
            };
            let timing = match schedule.spec.timing(schedule.state.created_at) {
                Ok(timing) => timing,
                Err(err) => {
                    // Paused, so that it is not due again at once (no loop may spin on it).
                    tracing::error!(schedule = %schedule.spec.id, error = %err, "a stored schedule no longer parses; it is paused");
                    store.pause_schedule(&schedule.spec.id, true, None).await?;
                    report.broken.push(schedule.spec.id.clone());
                    continue;
                }
            };
            let plan = schedule.plan(&timing, now);
            steps.push((schedule, expected, plan));
        }
        type Applied = (Schedule, FirePlan, Result<bool, StoreError>, u64);
        let applied: Vec<Result<Applied, StoreError>> = futures::stream::iter(
            steps
                .into_iter()
                .map(|(schedule, expected, plan)| async move {
                    let fire = ScheduleFire {
                        id: schedule.spec.id.clone(),
                        expected,
                        jobs: fire_jobs(&schedule, &plan, defaults),
                        next_at: plan.next_at,
                        last_fire: plan.fires.last().copied().or(schedule.state.last_fire),
                        fires: plan.fires_total,
                    };
                    let fired = store.fire_schedule(fire).await;
                    Ok((schedule, plan, fired, crate::clock::now_ms()))
                }),
        )
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
        for result in applied {
            let (schedule, plan, fired, at) = result?;
            let fired = match fired {
                Ok(fired) => fired,
                // The queue refused this fire (full, say): the others go on.
                Err(err @ (StoreError::QueueFull { .. } | StoreError::Invalid(_))) => {
                    report
                        .blocked
                        .push((schedule.spec.id.clone(), err.to_string()));
                    continue;
                }
                Err(err) => return Err(err),
            };
            if !fired {
                report.lost_races += 1;
                continue;
            }
            progressed = true;
            if plan.skipped > 0 {
                tracing::warn!(
                    schedule = %schedule.spec.id,
                    missed = plan.skipped,
                    policy = ?schedule.spec.missed,
                    "fires missed: none could be enqueued in time (every scheduler stopped, or the store unreachable)"
                );
            }
            report.skipped += plan.skipped;
            report.fired.extend(plan.fires.iter().map(|&fire| Fired {
                schedule: schedule.spec.id.clone(),
                job_name: schedule.spec.name.clone(),
                fire,
                at,
            }));
        }
        if !full || !progressed {
            return Ok(report);
        }
    }
}
