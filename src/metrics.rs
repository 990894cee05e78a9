//! Prometheus metrics: the recorder the service installs, and the figures read when scraped.
//!
//! The actors record jobs, pools, mailboxes, schedules and alerts as they happen (see
//! [`stagehand_actors::metrics`]). What lives elsewhere is read at scrape time, at most once a
//! second however many scrapers ask, so a scrape storm costs the store nothing more:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `stagehand_queue_jobs` | gauge | `queue`, `state` |
//! | `stagehand_cache_operations_total` | counter | `result` (hit, miss, error, load) |
//! | `stagehand_pubsub_messages_total` | counter | `direction` (out, in, dropped), `handler` |
//! | `stagehand_redis_up` | gauge | `role` (queues, cache) |
//! | `stagehand_redis_rtt_seconds` | gauge | `role` |

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use stagehand_actors::RuntimeHandle;
use stagehand_core::cache::Cache;
use stagehand_core::pubsub::PubSub;

use crate::http::RedisEndpoint;
use crate::pubsub::Subscribers;

/// Histogram buckets for every `*_seconds` metric: 1 ms to 5 minutes.
const BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);
/// How long figures read at scrape time are reused.
const REFRESH: Duration = Duration::from_secs(1);
/// How long a Redis may take to answer `PING` before it counts as down.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a scrape waits for a queue's counts.
const STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// The installed Prometheus recorder and the scrape-time figures it shows.
pub struct Exporter {
    handle: PrometheusHandle,
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

/// What the scrape reads besides the recorded metrics.
pub struct Sources<'a> {
    /// The queues, for their counts.
    pub runtime: &'a RuntimeHandle,
    /// The cache, for its counters.
    pub cache: Option<&'a Cache>,
    /// Pub/sub, for messages published.
    pub pubsub: Option<&'a PubSub>,
    /// The subscribers' handlers, for messages received and dropped.
    pub subscribers: &'a Subscribers,
    /// The Redis servers, pinged.
    pub redis: &'a [RedisEndpoint],
}

impl Exporter {
    /// Installs a Prometheus recorder as the process's global recorder. Do this before the
    /// runtime starts: handles made before it record nothing. Fails when the process has a
    /// recorder already (an embedding app's own).
    pub fn install() -> Result<Arc<Exporter>, String> {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
            .map_err(|e| e.to_string())?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder)
            .map_err(|_| "this process has a metrics recorder already".to_string())?;
        describe();
        // Histograms keep their samples until upkeep folds them into buckets: without it a
        // process nobody scrapes would grow by every job.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                }
            })
            .map_err(|e| format!("cannot start the metrics upkeep thread: {e}"))?;
        Ok(Arc::new(Exporter {
            handle,
            refreshed: tokio::sync::Mutex::new(None),
        }))
    }

    /// The metrics in Prometheus's text format, with the scrape-time figures at most a second
    /// old.
    pub async fn render(&self, sources: &Sources<'_>) -> String {
        {
            // One refresh at a time; those who waited for it use its figures.
            let mut refreshed = self.refreshed.lock().await;
            if refreshed.is_none_or(|at| at.elapsed() >= REFRESH) {
                refresh(sources).await;
                *refreshed = Some(Instant::now());
            }
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

async fn refresh(sources: &Sources<'_>) {
    // Everything is asked at once, and nothing is waited for past a second: a store that
    // does not answer keeps its last figures (the pools alert), and the scrape stays fast.
    let statuses = futures::future::join_all(sources.runtime.queues().map(|queue| async move {
        let status = tokio::time::timeout(STORE_TIMEOUT, queue.status()).await;
        (queue.name().to_string(), status)
    }));
    let pings = futures::future::join_all(sources.redis.iter().map(|endpoint| async move {
        let mut conn = endpoint.conn.clone();
        let started = Instant::now();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let up = matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)));
        (endpoint.role, up, started.elapsed())
    }));
    let (statuses, pings) = futures::future::join(statuses, pings).await;
    for (role, up, rtt) in pings {
        gauge!("stagehand_redis_up", "role" => role).set(if up { 1.0 } else { 0.0 });
        if up {
            gauge!("stagehand_redis_rtt_seconds", "role" => role).set(rtt.as_secs_f64());
        }
    }
    for (queue, status) in statuses {
        let Ok(Ok(status)) = status else { continue };
        let c = status.counts;
        for (state, n) in [
            ("waiting", c.waiting),
            ("prioritized", c.prioritized),
            ("paused", c.paused),
            ("delayed", c.delayed),
            ("active", c.active),
            ("completed", c.completed),
            ("failed", c.failed),
        ] {
            gauge!("stagehand_queue_jobs", "queue" => queue.clone(), "state" => state)
                .set(n as f64);
        }
    }
    if let Some(cache) = sources.cache {
        let stats = cache.stats();
        for (result, n) in [
            ("hit", stats.hits),
            ("miss", stats.misses),
            ("error", stats.errors),
            ("load", stats.loads),
        ] {
            counter!("stagehand_cache_operations_total", "result" => result).absolute(n);
        }
    }
    if let Some(pubsub) = sources.pubsub {
        counter!("stagehand_pubsub_messages_total", "direction" => "out", "handler" => "")
            .absolute(pubsub.published());
    }
    for (handler, stats) in &sources.subscribers.handlers {
        let received = stats.handled.load(Ordering::Relaxed)
            + stats.failed.load(Ordering::Relaxed)
            + stats.malformed.load(Ordering::Relaxed);
        counter!("stagehand_pubsub_messages_total", "direction" => "in", "handler" => *handler)
            .absolute(received);
        counter!("stagehand_pubsub_messages_total", "direction" => "dropped", "handler" => *handler)
            .absolute(stats.dropped.load(Ordering::Relaxed));
    }
}

/// The HELP lines.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use stagehand_actors::metrics as m;
    describe_counter!(
        m::JOBS,
        "Jobs by outcome: added, completed, failed, retried (an attempt failed and the job runs again), stalled (its lease ran out)."
    );
    describe_histogram!(
        m::DURATION,
        metrics::Unit::Seconds,
        "How long attempts ran."
    );
    describe_histogram!(
        m::WAIT,
        metrics::Unit::Seconds,
        "How long jobs waited between ready and started (queue latency)."
    );
    describe_gauge!(m::BUSY, "Worker slots running a job.");
    describe_gauge!(
        m::MAILBOX,
        "Messages sent to an actor and not yet answered, by actor kind."
    );
    describe_counter!(m::FIRES, "Schedule fires enqueued.");
    describe_counter!(
        m::MISSED,
        "Missed schedule fires not run (their missed-fire policy)."
    );
    describe_histogram!(
        m::LAG,
        metrics::Unit::Seconds,
        "From a schedule fire's time to its job enqueued."
    );
    describe_counter!(m::ALERTS, "Alerts raised, by kind.");
    describe_gauge!(
        "stagehand_queue_jobs",
        "Jobs per queue and state (read from the store at most once a second)."
    );
    describe_counter!(
        "stagehand_cache_operations_total",
        "Cache reads that hit, missed or failed, and loader runs."
    );
    describe_counter!(
        "stagehand_pubsub_messages_total",
        "Pub/sub messages published (out), received by a handler (in) and dropped by a full handler mailbox."
    );
    describe_gauge!(
        "stagehand_redis_up",
        "1 while the Redis answers PING within a second."
    );
    describe_gauge!("stagehand_redis_rtt_seconds", "The last PING's round trip.");
}
