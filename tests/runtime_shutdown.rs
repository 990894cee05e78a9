//! Graceful shutdown: active jobs finish within the grace period and none stay active;
//! past the grace period unfinished jobs are handed back, their attempt not counted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, serve_api};
use serde_json::{Value, json};
use stagehand::actors::{QueueSpec, Runtime};
use stagehand::core::{JobContext, JobState, processor_fn};

const LIMIT: usize = 1 << 20;

#[actix_web::test]
async fn active_jobs_finish_within_the_grace_period_and_none_stay_active() {
    // Each job runs until the pool starts draining, then finishes its work.
    let polite = processor_fn(|ctx: JobContext| async move {
        ctx.shutdown_requested().await;
        Ok(json!({ "finished_after_shutdown_began": ctx.is_shutting_down() }))
    });
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new("q")
                .concurrency(3)
                .processor(Arc::new(polite)),
        )
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(api.add("q", json!({"name": format!("j{i}")})).await);
    }
    eventually("three jobs active", || async {
        let c = api.counts("q").await;
        (c["active"] == 3 && c["waiting"] == 1).then_some(())
    })
    .await;

    runtime.shutdown(Duration::from_secs(30)).await;

    let store = runtime.store("q").expect("store");
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.active, 0, "none left active");
    assert_eq!(counts.completed, 3, "the active ones finished");
    assert_eq!(counts.waiting, 1, "nothing new was fetched while draining");
    for job in store.list(JobState::Completed, 0, 10).await.expect("list") {
        assert_eq!(
            job.return_value.map(|rv| rv.to_value()),
            Some(json!({ "finished_after_shutdown_began": true }))
        );
    }
}

#[actix_web::test]
async fn jobs_still_running_after_the_grace_period_are_handed_back() {
    let stubborn = processor_fn(|_ctx: JobContext| async move {
        std::future::pending::<()>().await;
        Ok(Value::Null)
    });
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new("q")
                .concurrency(2)
                .processor(Arc::new(stubborn)),
        )
        .start();
    let (api, _server) = serve_api(runtime.clone(), LIMIT);
    let a = api
        .add("q", json!({"name": "a", "options": {"attempts": 1}}))
        .await;
    let b = api
        .add("q", json!({"name": "b", "options": {"attempts": 1}}))
        .await;
    eventually("both active", || async {
        (api.counts("q").await["active"] == 2).then_some(())
    })
    .await;

    runtime.shutdown(Duration::from_millis(100)).await;

    let store = runtime.store("q").expect("store");
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.active, counts.waiting), (0, 2));
    for id in [a, b] {
        let job = store.get(&id).await.expect("get").expect("job");
        assert_eq!(job.state, JobState::Waiting);
        assert_eq!(job.released_count, 1);
        assert_eq!(
            job.failures_budget_used(),
            0,
            "a handed-back attempt is not counted"
        );
    }
}
