//! Embedding stagehand in an actix-web app: the app registers a processor of its own, starts
//! the runtime inside its actix system, and mounts the job API under `/jobs`.
//!
//! ```text
//! cargo run --example embed_actix_web
//! curl -XPOST localhost:8090/jobs/api/queues/greetings/jobs -H 'content-type: application/json' \
//!      -d '{"name": "hello", "data": {"who": "world"}}'
//! curl localhost:8090/jobs/api/queues/greetings/jobs/1
//! ```

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use stagehand::actors::{QueueSpec, Runtime};
use stagehand::core::{JobContext, ProcessError, Processor};
use stagehand::http::{ApiState, scope};

/// The app's own processor: greets whoever the job names.
struct Greeter;

#[derive(Deserialize)]
struct Greeting {
    who: String,
}

#[async_trait]
impl Processor for Greeter {
    async fn process(&self, job: JobContext) -> Result<Value, ProcessError> {
        let greeting: Greeting = job.data()?;
        if greeting.who.is_empty() {
            return Err(ProcessError::unrecoverable("nobody to greet"));
        }
        job.progress(50).await;
        job.log(format!("greeting {}", greeting.who)).await;
        Ok(json!({ "greeting": format!("hello, {}", greeting.who) }))
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    // The runtime logs through `tracing`; without a subscriber it prints nothing.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = Runtime::builder()
        .queue(
            QueueSpec::new("greetings")
                .concurrency(4)
                .processor(Arc::new(Greeter)),
        )
        .start();
    let api = ApiState::new(runtime.clone(), 1 << 20);
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/",
                web::get()
                    .to(|| async { HttpResponse::Ok().body("my app, with jobs under /jobs") }),
            )
            .service(scope("/jobs", api.clone()))
    })
    .bind(("127.0.0.1", 8090))?
    .run();
    println!("listening on http://127.0.0.1:8090 (Ctrl-C to stop)");
    server.await?;
    // actix-web stops on Ctrl-C; then let running jobs finish.
    runtime.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
