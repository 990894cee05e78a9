//! Panics, restart intensity, the supervisor giving up, and alerts reaching their sinks
//! (a sink of the test's own, and the webhook sink over real HTTP).

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use common::{Collect, eventually, serve_api};
use parking_lot::Mutex;
use serde_json::{Value, json};
use stagehand::actors::{AlertKind, PoolSettings, QueueSpec, Runtime, SupervisionConfig};
use stagehand::alerts::WebhookSink;
use stagehand::core::{JobContext, ProcessError, processor_fn};

const LIMIT: usize = 1 << 20;

/// Panics on jobs named "panic", completes the rest.
fn panicky() -> impl stagehand::core::Processor {
    processor_fn(|ctx: JobContext| async move {
        if ctx.name() == "panic" {
            panic!("bad pixel in {}", ctx.id());
        }
        Ok(json!("ok"))
    })
}

fn supervision(max_restarts: u32) -> SupervisionConfig {
    SupervisionConfig {
        max_restarts,
        within: Duration::from_secs(60),
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

#[actix_web::test]
async fn a_panic_fails_the_attempt_and_the_pool_keeps_serving() {
    let sink = Arc::new(Collect::default());
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new("img")
                .concurrency(2)
                .processor(Arc::new(panicky())),
        )
        .supervision(supervision(5))
        .alert_sink(sink.clone())
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let bad = api
        .add("img", json!({"name": "panic", "options": {"attempts": 1}}))
        .await;
    let job = api.wait_state("img", &bad, "failed").await;
    let reason = job["failed_reason"].as_str().expect("reason");
    assert!(
        reason.contains("panicked") && reason.contains("bad pixel"),
        "{reason}"
    );
    for i in 0..4 {
        let ok = api.add("img", json!({"name": format!("fine-{i}")})).await;
        api.wait_state("img", &ok, "completed").await;
    }
    eventually("the panic alert", || async {
        sink.kinds()
            .contains(&AlertKind::ProcessorPanic)
            .then_some(())
    })
    .await;
    let alert = sink
        .0
        .lock()
        .iter()
        .find(|a| a.kind == AlertKind::ProcessorPanic)
        .cloned()
        .expect("alert");
    assert_eq!(alert.job_id.as_deref(), Some(bad.as_str()));
    assert!(
        !sink.kinds().contains(&AlertKind::PoolIntensityExceeded),
        "one panic is within the intensity"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[actix_web::test]
async fn panics_past_the_intensity_escalate_then_the_supervisor_gives_up() {
    let sink = Arc::new(Collect::default());
    // Two loops share the pool's slots and its restart intensity.
    let settings = PoolSettings {
        loops: 2,
        ..PoolSettings::with_concurrency(2)
    };
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new("img")
                .settings(settings)
                .processor(Arc::new(panicky())),
        )
        .supervision(supervision(1))
        .alert_sink(sink.clone())
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let (status, _) = api.get("/ready").await;
    assert_eq!(status, 200);

    // Two panics exceed a pool intensity of one restart: the pool escalates, and the
    // supervisor restarts it (its first restart is within its own intensity).
    let panic = || json!({"name": "panic", "options": {"attempts": 1}});
    for _ in 0..2 {
        let id = api.add("img", panic()).await;
        api.wait_state("img", &id, "failed").await;
    }
    eventually("the pool's escalation", || async {
        sink.kinds()
            .contains(&AlertKind::PoolIntensityExceeded)
            .then_some(())
    })
    .await;
    let ok = api.add("img", json!({"name": "fine"})).await;
    api.wait_state("img", &ok, "completed").await;

    // Two more: the restarted pool escalates again, past the supervisor's intensity.
    for _ in 0..2 {
        let id = api.add("img", panic()).await;
        api.wait_state("img", &id, "failed").await;
    }
    eventually("the supervisor to give up", || async {
        sink.kinds()
            .contains(&AlertKind::SupervisorGaveUp)
            .then_some(())
    })
    .await;
    let (status, ready) = api.get("/ready").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["pools"]["img"], "gave_up");
    // The queue still takes jobs; they wait for a pool.
    let waiting = api.add("img", json!({"name": "fine"})).await;
    assert_eq!(api.job("img", &waiting).await["state"], "waiting");
    let recent: Vec<AlertKind> = runtime
        .recent_alerts()
        .await
        .iter()
        .map(|a| a.kind)
        .collect();
    assert!(recent.contains(&AlertKind::SupervisorGaveUp));
    runtime.shutdown(Duration::from_secs(5)).await;
}

#[actix_web::test]
async fn a_critical_job_that_fails_for_good_reaches_the_webhook() {
    let received: web::Data<Mutex<Vec<Value>>> = web::Data::new(Mutex::new(Vec::new()));
    let store = received.clone();
    let hook = HttpServer::new(move || {
        App::new().app_data(store.clone()).route(
            "/hook",
            web::post().to(
                |body: web::Json<Value>, seen: web::Data<Mutex<Vec<Value>>>| async move {
                    seen.lock().push(body.into_inner());
                    HttpResponse::NoContent().finish()
                },
            ),
        )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind");
    let url = format!("http://{}/hook", hook.addrs()[0]);
    actix_web::rt::spawn(hook.run());

    let failing =
        processor_fn(|_ctx: JobContext| async move { Err(ProcessError::retry("smtp down")) });
    let sink = WebhookSink::new(&url, Duration::from_secs(5)).expect("sink");
    let runtime = Runtime::builder()
        .queue(QueueSpec::new("email").processor(Arc::new(failing)))
        .alert_sink(Arc::new(sink))
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let routine = api
        .add(
            "email",
            json!({"name": "digest", "options": {"attempts": 1, "priority": 5}}),
        )
        .await;
    api.wait_state("email", &routine, "failed").await;
    let critical = api
        .add(
            "email",
            json!({"name": "reset", "options": {"attempts": 1, "priority": 1}}),
        )
        .await;
    api.wait_state("email", &critical, "failed").await;
    let alert = eventually("the webhook to receive the alert", || async {
        received.lock().first().cloned()
    })
    .await;
    assert_eq!(alert["kind"], "job_failed");
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["queue"], "email");
    assert_eq!(alert["job_id"], critical.as_str());
    assert!(
        alert["message"]
            .as_str()
            .expect("message")
            .contains("smtp down")
    );
    assert_eq!(
        received.lock().len(),
        1,
        "only the critical (priority 1) job alerts"
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}
