//! Schedules: repeat jobs on a cron expression or a fixed interval, in a time zone.

pub mod cron;

pub use cron::{CronError, CronSpec};
