//! Schedules: repeat jobs on a cron expression or a fixed interval, in a time zone.
//!
//! Core decides (ARCHITECTURE §1): [`CronSpec`] computes fire times with crontab's and ISC
//! cron's rules, and [`Schedule::plan`] what a scheduler does at a given moment (which fires to
//! enqueue, which were missed, the next one). A fire's job id derives from the schedule and
//! the fire time ([`fire_job_id`]), so a fire is one job whichever process claims it.

pub mod cron;
mod fire;
mod model;

pub use cron::{CronError, CronSpec};
pub use fire::{FireReport, Fired, fire_due, fire_jobs};
pub use model::{
    FirePlan, MAX_CATCH_UP, MAX_SCHEDULE_ID_LEN, MIN_EVERY_MS, Missed, ON_TIME_MS, Schedule,
    ScheduleError, ScheduleSpec, ScheduleState, Timing, fire_job_id, show_time,
};
