//! The service: the runtime built from settings, served over HTTP until SIGTERM or Ctrl-C,
//! then shut down gracefully.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use stagehand_actors::{QueueSpec, Runtime, RuntimeBuilder, RuntimeHandle};

use crate::alerts::WebhookSink;
use crate::backend::Backend;
use crate::config::{ConfigError, Settings};
use crate::http::{self, ApiState};
use crate::processors;
use crate::storage::Storage;

/// A runtime builder with every configured queue (its store on `backend`), its built-in
/// processor (if any), the configured limits and alert sinks. Add queues or processors of your
/// own before `start()`.
pub async fn runtime_builder(
    settings: &Settings,
    storage: &Storage,
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
        if let Some(store) = backend.store(name).await {
            spec = spec.store(store);
        }
        match settings
            .processor_of(name, queue)
            .and_then(|p| processors::builtin(p, storage))
        {
            Some(processor) => spec = spec.processor(processor),
            None => {
                tracing::info!(queue = %name, "no processor for this queue yet: its jobs will wait")
            }
        }
        builder = builder.queue(spec);
    }
    Ok(builder)
}

/// Runs the service until SIGTERM or Ctrl-C. Call inside an actix `System`.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let storage = Storage::local(&settings.storage.path).context("storage.path")?;
    let backend = Backend::from_settings(&settings).await?;
    backend.report_at_start().await;
    let runtime = runtime_builder(&settings, &storage, &backend)
        .await?
        .start();
    let state =
        ApiState::new(runtime.clone(), settings.http.max_body_bytes).with_probe(backend.probe());
    let mut server = HttpServer::new(move || {
        App::new()
            .service(http::scope("", state.clone()))
            .default_service(web::to(http::not_found))
    })
    .disable_signals()
    .shutdown_timeout(5);
    if settings.http.workers > 0 {
        server = server.workers(settings.http.workers);
    }
    let server = server
        .bind(&settings.http.bind)
        .with_context(|| format!("http.bind: cannot listen on {}", settings.http.bind))?;
    // The bound address, which differs from http.bind when that asks for port 0.
    let listening: Vec<String> = server.addrs().iter().map(|a| a.to_string()).collect();
    let server = server.run();
    let handle = server.handle();
    tracing::info!(listening = %listening.join(","), store = %backend.describe(), "stagehand serving");
    let serving = actix_web::rt::spawn(server);
    let signal = wait_for_signal().await;
    tracing::info!(
        signal,
        grace_ms = settings.shutdown.grace_ms,
        "shutting down"
    );
    handle.stop(true).await;
    drain(&runtime, settings.grace()).await;
    let _ = serving.await;
    tracing::info!("shutdown complete");
    Ok(())
}

async fn drain(runtime: &RuntimeHandle, grace: Duration) {
    runtime.shutdown(grace).await;
    for queue in runtime.queues() {
        if let Some(store) = runtime.store(queue.name())
            && let Ok(counts) = store.counts().await
        {
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
