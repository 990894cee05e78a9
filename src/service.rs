//! The service: the runtime built from settings, served over HTTP until SIGTERM or Ctrl-C,
//! then shut down gracefully.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use stagehand_actors::{QueueSpec, Runtime, RuntimeBuilder, RuntimeHandle};
use stagehand_core::pubsub::PubSub;

use crate::alerts::WebhookSink;
use crate::backend::Backend;
use crate::config::{ConfigError, Settings};
use crate::http::{self, ApiState};
use crate::processors::{self, CpuPool, Resources};
use crate::storage::Storage;

/// A runtime builder with every configured queue (its store on `backend`), its built-in
/// processor (if any), the configured limits and alert sinks. Add queues or processors of your
/// own before `start()`.
pub async fn runtime_builder(
    settings: &Settings,
    resources: &Resources,
    backend: &Backend,
) -> Result<RuntimeBuilder, ConfigError> {
    let base = settings.base_options()?;
    let mut builder = Runtime::builder()
        .mailbox(settings.mailbox())
        .supervision(settings.supervision())
        .alert_dedup_window(Duration::from_millis(settings.alerts.dedup_window_ms));
    if !settings.alerts.webhook_url.is_empty() {
        let sink = WebhookSink::new(&settings.alerts.webhook_url, Duration::from_secs(5))
            .map_err(|e| ConfigError::invalid("alerts.webhook_url", e.to_string()))?;
        builder = builder.alert_sink(Arc::new(sink));
    }
    for (name, queue) in &settings.queues {
        let defaults = queue.defaults.resolve(&base).map_err(|e| {
            ConfigError::invalid(format!("queues.{name}.defaults.{}", e.field), e.problem)
        })?;
        let mut spec = QueueSpec::new(name.clone())
            .settings(queue.pool())
            .defaults(defaults);
        match backend.store(name, queue.max_jobs).await {
            Some(store) => spec = spec.store(store),
            None => {
                spec = spec.max_jobs(Some(
                    queue
                        .max_jobs
                        .unwrap_or(stagehand_core::memory::DEFAULT_MAX_JOBS),
                ))
            }
        }
        let processor = match settings.processor_of(name, queue) {
            Some(p) => processors::builtin(p, resources)
                .map_err(|e| ConfigError::invalid(format!("queues.{name}.processor"), e))?,
            None => None,
        };
        match processor {
            Some(processor) => spec = spec.processor(processor),
            None => {
                tracing::info!(queue = %name, "no processor for this queue yet: its jobs will wait")
            }
        }
        builder = builder.queue(spec);
    }
    Ok(builder)
}

/// What the built-in processors work with: the storages, a CPU pool, their settings and
/// (for export notices) pub/sub.
pub fn resources(settings: &Settings, pubsub: Option<PubSub>) -> anyhow::Result<Resources> {
    let storage = Storage::local(&settings.storage.path).context("storage.path")?;
    let mut buckets = std::collections::BTreeMap::new();
    for (name, path) in &settings.storage.buckets {
        let bucket = Storage::local(path).with_context(|| format!("storage.buckets.{name}"))?;
        buckets.insert(name.clone(), bucket);
    }
    Ok(Resources {
        storage,
        buckets,
        cpu: CpuPool::new(settings.processors.cpu_threads),
        settings: settings.processors.clone(),
        pubsub,
    })
}

/// Runs the service until SIGTERM or Ctrl-C. Call inside an actix `System`.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Before the runtime, whose handles register with the recorder installed when made.
    let exporter = crate::metrics::Exporter::install().map_err(|e| anyhow::anyhow!(e))?;
    let backend = Backend::from_settings(&settings).await?;
    backend.report_at_start();
    let pubsub = crate::pubsub::from_settings(&settings).await?;
    let resources = resources(&settings, Some(pubsub.clone()))?;
    let runtime = runtime_builder(&settings, &resources, &backend)
        .await?
        .start();
    let auth = settings.auth()?;
    let (cache, two_tier) = crate::cache::from_settings(&settings).await?;
    if let Some(two_tier) = &two_tier {
        crate::pubsub::announce_changes(two_tier, &pubsub);
    }
    let subscribers = crate::pubsub::start_subscribers(&settings, &pubsub, &cache, &runtime);
    let owners = backend.schedule_owners();
    upsert_configured_schedules(&settings, &runtime, &owners).await?;
    let (_scheduler, scheduler) =
        stagehand_actors::scheduler::SchedulerActor::start(runtime.clone());
    crate::pubsub::wake_scheduler_on_changes(&settings, &pubsub, &scheduler, &runtime);
    tracing::info!(cache = %cache.stats().strategy, pubsub = pubsub.transport().kind(), "cache and pub/sub ready");
    let state = ApiState::new(runtime.clone(), settings.http.max_body_bytes)
        .with_cache(cache)
        .with_metrics(exporter)
        .with_subscribers(subscribers)
        .with_scheduler(scheduler)
        .with_schedule_owners(owners)
        .with_pubsub(pubsub)
        .with_redis(
            backend
                .redis_endpoint()
                .into_iter()
                .chain(crate::cache::redis_endpoint(&settings).await)
                .collect(),
        )
        .with_probe(backend.probe())
        .with_auth(auth.clone())
        .with_request_timeout(Duration::from_millis(settings.http.request_timeout_ms));
    let options = http::server::ServerOptions {
        request_timeout: Duration::from_millis(settings.http.request_timeout_ms),
        workers: settings.http.workers,
        drain: HTTP_DRAIN,
        max_connections: settings.http.max_connections,
    };
    let addr = settings.http.bind.parse().context("http.bind")?;
    let streams = state.clone();
    let bound = http::server::bind(addr, state, &options).with_context(|| {
        format!(
            "http.bind: cannot listen on {} (another process may hold it: pick another with --bind 127.0.0.1:PORT or STAGEHAND_HTTP_BIND)",
            settings.http.bind
        )
    })?;
    // The bound address, which differs from http.bind when that asks for port 0.
    let listening: Vec<String> = bound.addrs().iter().map(|a| a.to_string()).collect();
    let server = bound.run();
    let handle = server.handle();
    tracing::info!(listening = %listening.join(","), store = %backend.describe(), tokens = settings.http.tokens.len(), "stagehand serving");
    if !auth.enabled() && settings.http.allow_unauthenticated {
        tracing::warn!(listening = %listening.join(","), "serving without tokens (http.allow_unauthenticated): anyone who reaches this address can add, retry, delete and pause jobs");
    }
    let serving = actix_web::rt::spawn(server);
    let signal = wait_for_signal().await;
    let grace = settings.grace();
    tracing::info!(
        signal,
        grace_ms = grace.as_millis() as u64,
        "shutting down (a second signal exits at once)"
    );
    exit_on_second_signal();
    arm_watchdog(grace + SHUTDOWN_SLACK);
    // Whatever the store's state, shutdown ends within the grace period and a little more:
    // what could not be settled by then is left to lease recovery.
    // HTTP first, so that requests in flight get their store's answer; then the runtime.
    let stopping = async {
        streams.close_streams();
        handle.stop(true).await;
        drain(&runtime, grace).await;
    };
    // Requests in flight get HTTP_DRAIN, active jobs the grace period, and the rest a second.
    if tokio::time::timeout(grace + HTTP_DRAIN + Duration::from_secs(1), stopping)
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown did not finish within the grace period; unsettled jobs are left to lease recovery"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), serving).await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// Upserts the schedules of `[[schedules]]` (the same spec again changes nothing). A schedule
/// that does not fit stops the start, naming it.
async fn upsert_configured_schedules(
    settings: &Settings,
    runtime: &RuntimeHandle,
    owners: &crate::schedules::Owners,
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, body) in settings.schedules.iter().enumerate() {
        let Some(id) = &body.id else {
            anyhow::bail!("schedules[{i}]: an id is needed");
        };
        if !seen.insert(id) {
            anyhow::bail!("schedules[{i}]: the id '{id}' is given twice");
        }
        let spec = body
            .spec(id, runtime)
            .map_err(|e| anyhow::anyhow!("schedules[{i}] ({id}): {e}"))?;
        match crate::schedules::upsert(runtime, owners, spec).await {
            Ok(put) => {
                tracing::info!(schedule = %id, result = ?put, "configured schedule upserted")
            }
            // A store that is down at start must not stop the service: the schedule is
            // upserted at the next start (or through the API).
            Err(crate::schedules::ScheduleInputError::Store(err)) => {
                tracing::warn!(schedule = %id, error = %err, "configured schedule not upserted: the store did not answer")
            }
            Err(err) => anyhow::bail!("schedules[{i}] ({id}): {err}"),
        }
    }
    Ok(())
}

/// How long requests in flight get to finish at shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(2);

/// How long past the grace period shutdown may take before the process exits regardless.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(4);
const _: () = assert!(HTTP_DRAIN.as_secs() + 1 < SHUTDOWN_SLACK.as_secs());

/// A thread of its own that ends the process once `limit` has passed, should shutdown hang
/// (on a store that does not answer, say) or the async runtime be stuck.
fn arm_watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        tracing::error!(
            limit_ms = limit.as_millis() as u64,
            "shutdown took too long; exiting now (jobs still leased are recovered when their leases expire)"
        );
        std::process::exit(1);
    });
}

/// A second SIGTERM or SIGINT during shutdown exits at once.
fn exit_on_second_signal() {
    actix_web::rt::spawn(async {
        let signal = wait_for_signal().await;
        tracing::warn!(signal, "second signal: exiting now");
        std::process::exit(130);
    });
}

async fn drain(runtime: &RuntimeHandle, grace: Duration) {
    runtime.shutdown(grace).await;
    for queue in runtime.queues() {
        let Some(store) = runtime.store(queue.name()) else {
            continue;
        };
        // A last look, for the log; not worth waiting on a store that does not answer.
        if let Ok(Ok(counts)) = tokio::time::timeout(Duration::from_secs(1), store.counts()).await {
            tracing::info!(
                queue = queue.name(),
                active = counts.active,
                waiting = counts.waiting,
                "queue at shutdown"
            );
        }
    }
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
