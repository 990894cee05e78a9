//! The command line: `stagehand serve`, and admin commands that talk to a running server.
//!
//! Admin commands print tables for a person on a terminal and JSON otherwise (or with
//! `--output json`); see `output.rs`.

mod admin;
mod follow;
mod jobs_file;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use stagehand_core::options::Backoff;
use stagehand_core::{JobOptionsInput, Retention};

use crate::config;

/// An actor-based job runtime: durable queues, processor pools, supervision.
#[derive(Debug, Parser)]
#[command(name = "stagehand", version, about)]
pub struct Cli {
    /// The server admin commands talk to.
    #[arg(
        long,
        global = true,
        env = "STAGEHAND_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The bearer token admin commands send (one of the server's `http.tokens`).
    #[arg(long, global = true, env = "STAGEHAND_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How admin commands print: tables, or JSON (the default when stdout is not a terminal).
    #[arg(long, short, global = true, value_enum)]
    pub output: Option<OutputFormat>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (memory store and HTTP on 127.0.0.1:8080 unless configured otherwise).
    Serve {
        /// A TOML settings file.
        #[arg(long, env = "STAGEHAND_CONFIG")]
        config: Option<PathBuf>,
        /// Listen here instead of `http.bind`.
        #[arg(long)]
        bind: Option<String>,
    },
    /// Add a job and print its id; or add every job of a JSON Lines file (`--file`).
    Enqueue {
        /// The queue.
        queue: String,
        /// The job's name (not with `--file`, whose lines name their jobs).
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        name: Option<String>,
        /// The job's data, as JSON.
        #[arg(long, default_value = "{}", conflicts_with = "file")]
        data: String,
        /// A JSON Lines file, one job a line: `{"name": ..., "data": ..., "options": ...}`.
        /// Every line is checked before any is sent; the options given here apply to each job
        /// whose line does not set them.
        #[arg(long, conflicts_with = "job_id")]
        file: Option<PathBuf>,
        /// The job options.
        #[command(flatten)]
        options: JobFlags,
    },
    /// List the jobs of a queue in one state.
    Jobs {
        /// The queue.
        queue: String,
        /// The state.
        #[arg(long, default_value = "waiting", value_parser = STATES)]
        state: String,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many first.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Move a failed job back to waiting, with a fresh attempt budget.
    Retry {
        /// The queue.
        queue: String,
        /// The job's id.
        id: String,
    },
    /// Remove a job that is not active.
    Rm {
        /// The queue.
        queue: String,
        /// The job's id.
        id: String,
    },
    /// Stop a queue from handing out jobs (for every worker).
    Pause {
        /// The queue.
        queue: String,
    },
    /// Let a paused queue hand out jobs again.
    Resume {
        /// The queue.
        queue: String,
    },
    /// Move every failed job (or the first --limit) back to waiting, in calls of 1,000.
    RetryAll {
        /// The queue.
        queue: String,
        /// The state whose jobs to retry (only failed jobs can be).
        #[arg(long, default_value = "failed", value_parser = ["failed"])]
        state: String,
        /// At most this many in all (default: as many as were failed when the command began).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Remove the jobs of one state that finished (or were added) longer ago than --older-than.
    Clean {
        /// The queue.
        queue: String,
        /// The state.
        #[arg(long, value_parser = CLEANABLE)]
        state: String,
        /// Only jobs older than this (e.g. 1h, 7d; 0s for all; ten years at most).
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
        /// At most this many in all (default: as many as the state held when the command began).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
    },
    /// Remove every waiting and prioritized job (and delayed ones with --delayed).
    Drain {
        /// The queue.
        queue: String,
        /// Remove delayed jobs too.
        #[arg(long)]
        delayed: bool,
    },
    /// Show a job: its state, times, attempts, data and logs.
    Job {
        /// The queue.
        queue: String,
        /// The job's id.
        id: String,
    },
    /// Show the counts of every queue, or of one.
    Stats {
        /// Only this queue.
        queue: Option<String>,
    },
    /// Read and change the cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// List, show, add and remove schedules (repeat jobs).
    #[command(subcommand)]
    Schedules(ScheduleCommand),
    /// Publish a message (JSON) on a channel; prints its id and how many received it.
    Publish {
        /// The channel (without the server's prefix), e.g. `notifications`.
        channel: String,
        /// The message, as JSON.
        message: String,
    },
    /// Print a shell completion script: `stagehand completions bash > /etc/bash_completion.d/stagehand`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Wait for a job to finish (completed or failed) and show it; fails after --timeout.
    Wait {
        /// The queue.
        queue: String,
        /// The job's id.
        id: String,
        /// How long to wait (at most 5m).
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        timeout: Duration,
    },
    /// Follow job events as they happen (Ctrl-C to stop); reconnects where it left off.
    Events {
        /// Only these queues (repeatable; default every queue).
        #[arg(long = "queue")]
        queues: Vec<String>,
        /// Only this job's events.
        #[arg(long)]
        job: Option<String>,
        /// Only these types (repeatable): added, active, progress, completed, failed,
        /// retrying, stalled, removed.
        #[arg(long = "type")]
        types: Vec<String>,
        /// Start after this cursor (the `cursor` of an event an earlier run printed with
        /// --output json).
        #[arg(long)]
        after: Option<String>,
    },
    /// Show every queue's counts with the Redis and cache figures; with a queue, its
    /// per-minute history; with --prometheus, the server's /metrics text.
    Metrics {
        /// Show this queue's per-minute history.
        queue: Option<String>,
        /// How far back the history goes (at most 14d).
        #[arg(long, value_parser = parse_duration, default_value = "1h")]
        since: Duration,
        /// Print the Prometheus text of /metrics as it is.
        #[arg(long, conflicts_with = "queue")]
        prometheus: bool,
    },
}

/// The states jobs are listed by.
const STATES: [&str; 7] = [
    "waiting",
    "delayed",
    "prioritized",
    "active",
    "completed",
    "failed",
    "paused",
];
/// The states `clean` takes: all but active (an active job is removed once it settles).
const CLEANABLE: [&str; 6] = [
    "completed",
    "failed",
    "waiting",
    "delayed",
    "prioritized",
    "paused",
];

/// How admin commands print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Tables and sentences, times as local dates and durations.
    Table,
    /// The server's JSON, pretty-printed.
    Json,
}

/// The job options `enqueue` takes, as the HTTP API does (see `JobOptionsInput`).
#[derive(Debug, Clone, Default, Args)]
pub struct JobFlags {
    /// Run it after this long (e.g. 5s, 1m, 250ms).
    #[arg(long, value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Its priority (lower runs first; 0 = none).
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i64>,
    /// Attempts in all.
    #[arg(long, allow_negative_numbers = true)]
    pub attempts: Option<i64>,
    /// The delay before each retry: `fixed:5s`, or `exponential:1s` (doubling each time).
    #[arg(long, value_parser = parse_backoff)]
    pub backoff: Option<(String, Duration)>,
    /// With an exponential --backoff: no delay longer than this.
    #[arg(long, value_parser = parse_duration, requires = "backoff")]
    pub backoff_max: Option<Duration>,
    /// With --backoff: take up to this fraction (0 to 1) off each delay at random.
    #[arg(long, requires = "backoff")]
    pub backoff_jitter: Option<f64>,
    /// An attempt running longer than this fails.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// What to keep once completed: true (remove it), false (keep all), N (the last N), or
    /// count=N,age=7d.
    #[arg(long, value_parser = parse_retention)]
    pub remove_on_complete: Option<Retention>,
    /// What to keep once failed, as --remove-on-complete.
    #[arg(long, value_parser = parse_retention)]
    pub remove_on_fail: Option<Retention>,
    /// Run it before the jobs already waiting.
    #[arg(long)]
    pub lifo: bool,
    /// A job id of your own (adding it again returns the same job).
    #[arg(long)]
    pub job_id: Option<String>,
}

impl JobFlags {
    /// The options these flags give, as the API takes them (unset flags stay unset).
    pub fn to_input(&self) -> Result<JobOptionsInput, String> {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let backoff = match &self.backoff {
            None => None,
            Some((kind, delay)) => {
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                let jitter = self.backoff_jitter.unwrap_or(0.0);
                Some(match kind.as_str() {
                    "fixed" if self.backoff_max.is_some() => {
                        return Err("--backoff-max goes with an exponential --backoff".into());
                    }
                    "fixed" => Backoff::Fixed { delay_ms, jitter },
                    _ => Backoff::Exponential {
                        delay_ms,
                        jitter,
                        max_delay_ms: self
                            .backoff_max
                            .map(|m| u64::try_from(m.as_millis()).unwrap_or(u64::MAX)),
                    },
                })
            }
        };
        Ok(JobOptionsInput {
            job_id: self.job_id.clone(),
            delay_ms: self.delay.map(ms),
            priority: self.priority,
            attempts: self.attempts,
            backoff,
            timeout_ms: self.timeout.map(ms),
            remove_on_complete: self.remove_on_complete,
            remove_on_fail: self.remove_on_fail,
            lifo: self.lifo.then_some(true),
        })
    }
}

/// `fixed:5s` or `exponential:1s`.
fn parse_backoff(s: &str) -> Result<(String, Duration), String> {
    let (kind, delay) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not a backoff such as fixed:5s or exponential:1s"))?;
    if kind != "fixed" && kind != "exponential" {
        return Err(format!(
            "'{kind}' is not a backoff type; use fixed or exponential"
        ));
    }
    Ok((kind.to_string(), parse_duration(delay)?))
}

/// `true`, `false`, `N`, or `count=N`, `age=DURATION`, or both joined by a comma.
fn parse_retention(s: &str) -> Result<Retention, String> {
    match s {
        "true" => return Ok(Retention::RemoveAll),
        "false" => return Ok(Retention::KeepAll),
        _ => {}
    }
    if let Ok(count) = s.parse::<u64>() {
        return Ok(Retention::Keep {
            count: Some(count),
            age_ms: None,
        });
    }
    let (mut count, mut age_ms) = (None, None);
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("count", n)) => {
                count = Some(
                    n.parse::<u64>()
                        .map_err(|_| format!("count={n}: not a number"))?,
                );
            }
            Some(("age", d)) => {
                age_ms = Some(u64::try_from(parse_duration(d)?.as_millis()).unwrap_or(u64::MAX));
            }
            _ => {
                return Err(format!(
                    "'{s}' is not a retention: true (remove), false (keep all), N (keep the last N), or count=N,age=7d"
                ));
            }
        }
    }
    Ok(Retention::Keep { count, age_ms })
}

/// `stagehand schedules ...`
#[derive(Debug, Subcommand)]
// Parsed once per run: the size of `Add` costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum ScheduleCommand {
    /// Every schedule, with its next fires.
    List,
    /// One schedule, with its next five fires in UTC and in its zone.
    Show {
        /// The schedule's id.
        id: String,
    },
    /// Adds a schedule (or changes the one with this id).
    Add {
        /// The schedule's id.
        id: String,
        /// The queue its jobs go to.
        #[arg(long)]
        queue: String,
        /// Its jobs' name.
        #[arg(long)]
        name: String,
        /// A cron expression (`"0 9 * * 1-5"`, `@daily`)...
        #[arg(long, conflicts_with = "every", required_unless_present = "every")]
        cron: Option<String>,
        /// ...or an interval (`30s`, `5m`).
        #[arg(long, value_parser = parse_duration)]
        every: Option<Duration>,
        /// The time zone the cron expression reads in (IANA, e.g. Europe/Berlin).
        #[arg(long)]
        tz: Option<String>,
        /// Its jobs' data, as JSON.
        #[arg(long, default_value = "{}")]
        data: String,
        /// Missed fires: skip, run_once, or catch_up:N.
        #[arg(long)]
        missed: Option<String>,
        /// No fire before this (RFC 3339).
        #[arg(long)]
        start_at: Option<String>,
        /// No fire after this (RFC 3339).
        #[arg(long)]
        end_at: Option<String>,
        /// At most this many fires.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Removes a schedule.
    Rm {
        /// The schedule's id.
        id: String,
    },
}

/// `stagehand cache ...`
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print a key's value and time left as JSON.
    Get {
        /// The key.
        key: String,
    },
    /// Store a value (JSON).
    Set {
        /// The key.
        key: String,
        /// The value, as JSON (a bare word is taken as a string).
        value: String,
        /// How long it lives (e.g. 90s, 1h); without it, until deleted.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// A tag (repeatable): `cache invalidate --tag` deletes every key stored with it.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Delete a key.
    Del {
        /// The key.
        key: String,
    },
    /// Delete keys, a glob pattern or a tag in every process's cache.
    Invalidate {
        /// A key (repeatable).
        #[arg(long = "key", conflicts_with_all = ["pattern", "tag"])]
        keys: Vec<String>,
        /// A glob pattern (`user:*`).
        #[arg(long, conflicts_with = "tag")]
        pattern: Option<String>,
        /// A tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Print the hit, miss, error and load counters.
    Stats,
}

/// An age for `clean`: a duration of ten years at most, as the server takes.
fn parse_age(s: &str) -> Result<Duration, String> {
    const TEN_YEARS: Duration = Duration::from_secs(10 * 365 * 86_400);
    let age = parse_duration(s)?;
    if age > TEN_YEARS {
        return Err(format!("'{s}' is more than ten years"));
    }
    Ok(age)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration such as 5s, 1m or 250ms: {e}"))
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, bind } => serve(config, bind),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "stagehand", &mut script);
            output::print_out(String::from_utf8_lossy(&script).trim_end_matches('\n'));
            ExitCode::SUCCESS
        }
        command => admin::run(
            &cli.server,
            cli.token.as_deref(),
            output::Mode::new(cli.output),
            command,
        ),
    }
}

fn serve(file: Option<PathBuf>, bind: Option<String>) -> ExitCode {
    let mut settings = match config::load(file.as_deref(), std::env::vars()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("stagehand: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(bind) = bind {
        settings.http.bind = bind;
        if let Err(err) = settings.validate() {
            eprintln!("stagehand: --bind: {err}");
            return ExitCode::from(2);
        }
    }
    init_tracing(&settings.log.filter, settings.log.format);
    let system = actix_web::rt::System::new();
    match system.block_on(crate::service::serve(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "stagehand stopped");
            eprintln!("stagehand: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str, format: crate::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    match format {
        crate::config::LogFormat::Json => builder.json().init(),
        crate::config::LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).init()
        }
    }
}
