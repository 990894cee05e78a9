//! The command line: `stagehand serve`, and admin commands that talk to a running server.

mod admin;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
    /// Add a job; prints its id.
    Enqueue {
        /// The queue.
        queue: String,
        /// The job's name.
        name: String,
        /// The job's data, as JSON.
        #[arg(long, default_value = "{}")]
        data: String,
        /// Run it after this long (e.g. 5s, 1m, 250ms).
        #[arg(long, value_parser = parse_duration)]
        delay: Option<Duration>,
        /// Its priority (lower runs first; 0 = none).
        #[arg(long, allow_negative_numbers = true)]
        priority: Option<i64>,
        /// Attempts in all.
        #[arg(long, allow_negative_numbers = true)]
        attempts: Option<i64>,
        /// A job id of your own (adding it again returns the same job).
        #[arg(long)]
        job_id: Option<String>,
    },
    /// Print a job as JSON.
    Job {
        /// The queue.
        queue: String,
        /// The job's id.
        id: String,
    },
    /// Print the counts of every queue, or of one.
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration such as 5s, 1m or 250ms: {e}"))
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, bind } => serve(config, bind),
        command => admin::run(&cli.server, cli.token.as_deref(), command),
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
