//! The HTTP API (actix-web): a [`scope`] any actix-web app can mount. JSON everywhere; errors
//! are `{"error": "...", "detail": "..."}` with a 4xx/5xx status.

mod auth;
mod cache;
mod chunked;
mod deadline;
mod error;
mod events;
mod framing;
mod head_guard;
mod jobs;
mod metrics;
mod queues;
mod redis;
mod schedules;
pub mod server;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{HttpResponse, Scope, web};
use serde_json::json;
use stagehand_actors::RuntimeHandle;

pub use auth::{Auth, Role, Token};
pub use error::ApiError;
pub use redis::RedisEndpoint;

/// Something `/ready` checks besides the pools (the Redis connection, say).
#[async_trait::async_trait]
pub trait ReadyProbe: Send + Sync {
    /// A short name, used as the error code prefix (`redis` -> `redis_unavailable`).
    fn name(&self) -> &str;
    /// `Err` with what is wrong while the dependency cannot serve.
    async fn check(&self) -> Result<(), String>;
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    runtime: RuntimeHandle,
    max_body_bytes: usize,
    probe: Option<Arc<dyn ReadyProbe>>,
    auth: Auth,
    request_timeout: std::time::Duration,
    cache: Option<stagehand_core::cache::Cache>,
    pubsub: Option<stagehand_core::pubsub::PubSub>,
    redis: Vec<RedisEndpoint>,
    scheduler: Option<stagehand_actors::scheduler::SchedulerHandle>,
    owners: crate::schedules::Owners,
    exporter: Option<Arc<crate::metrics::Exporter>>,
    subscribers: crate::pubsub::Subscribers,
    /// Set when the server shuts down: event streams end, so they do not hold the drain.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Event streams open now.
    streams: Arc<std::sync::atomic::AtomicUsize>,
    /// The last `/api/metrics` answer and when it was made.
    aggregate: Arc<tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("runtime", &self.runtime)
            .finish()
    }
}

impl ApiState {
    /// The API over `runtime`, refusing bodies over `max_body_bytes` with 413.
    pub fn new(runtime: RuntimeHandle, max_body_bytes: usize) -> Self {
        ApiState {
            runtime,
            max_body_bytes,
            probe: None,
            auth: Auth::default(),
            request_timeout: std::time::Duration::from_secs(30),
            cache: None,
            pubsub: None,
            redis: Vec::new(),
            scheduler: None,
            owners: crate::schedules::Owners::default(),
            exporter: None,
            subscribers: crate::pubsub::Subscribers::default(),
            closing: Arc::new(tokio::sync::watch::channel(false).0),
            streams: Arc::default(),
            aggregate: Arc::default(),
        }
    }

    /// The same API, answering 408 to a request whose body takes longer than `timeout`.
    pub fn with_request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The same API, open only to these tokens (see [`Auth`]).
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// The same API, serving `cache` under `/api/cache`.
    pub fn with_cache(mut self, cache: stagehand_core::cache::Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The same API, publishing through `pubsub` (`/api/pubsub/{channel}`, and cache
    /// invalidations to every process).
    pub fn with_pubsub(mut self, pubsub: stagehand_core::pubsub::PubSub) -> Self {
        self.pubsub = Some(pubsub);
        self
    }

    /// The same API, waking `scheduler` when a schedule changes.
    pub fn with_scheduler(
        mut self,
        scheduler: stagehand_actors::scheduler::SchedulerHandle,
    ) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// The same API, keeping which queue holds each schedule id in `owners`.
    pub fn with_schedule_owners(mut self, owners: crate::schedules::Owners) -> Self {
        self.owners = owners;
        self
    }

    /// The same API, reporting these Redis servers at `/api/redis`.
    pub fn with_redis(mut self, endpoints: Vec<RedisEndpoint>) -> Self {
        self.redis = endpoints;
        self
    }

    /// The same API, serving `exporter`'s metrics at `/metrics`.
    pub fn with_metrics(mut self, exporter: Arc<crate::metrics::Exporter>) -> Self {
        self.exporter = Some(exporter);
        self
    }

    /// The same API, counting these subscribers' messages in `/metrics`.
    pub fn with_subscribers(mut self, subscribers: crate::pubsub::Subscribers) -> Self {
        self.subscribers = subscribers;
        self
    }

    /// Ends every open event stream (each client is told to resume from its last id): call
    /// it when the server begins to shut down.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// The same API, with `/ready` also asking `probe`.
    pub fn with_probe(mut self, probe: Option<Arc<dyn ReadyProbe>>) -> Self {
        self.probe = probe;
        self
    }

    fn queue(&self, name: &str) -> Result<&stagehand_actors::QueueHandle, ApiError> {
        self.runtime.queue(name).ok_or_else(|| {
            let known: Vec<&str> = self.runtime.queues().map(|q| q.name()).collect();
            ApiError::UnknownQueue {
                name: name.to_string(),
                known: known.join(", "),
            }
        })
    }
}

/// The API's routes under `path` (`""` for the root): `/api/...`, `/health`, `/ready`.
pub fn scope(
    path: &str,
    state: ApiState,
) -> Scope<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let json_config = web::JsonConfig::default()
        .limit(state.max_body_bytes)
        .error_handler(error::json_error);
    let query_config = web::QueryConfig::default().error_handler(error::query_error);
    let auth = state.auth.clone().mounted_at(path);
    let timeout = state.request_timeout;
    web::scope(path)
        .wrap(actix_web::middleware::from_fn(move |req, next| {
            auth::check(auth.clone(), req, next)
        }))
        .wrap(actix_web::middleware::from_fn(move |req, next| {
            deadline::limit(timeout, req, next)
        }))
        .app_data(web::Data::new(state))
        .app_data(json_config)
        .app_data(query_config)
        .service(
            resource("/health", "GET, HEAD")
                .route(web::get().to(health))
                .route(web::head().to(health)),
        )
        .service(
            resource("/ready", "GET, HEAD")
                .route(web::get().to(ready))
                .route(web::head().to(ready)),
        )
        .service(
            resource("/metrics", "GET, HEAD")
                .route(web::get().to(metrics::prometheus))
                .route(web::head().to(metrics::prometheus)),
        )
        .service(resource("/api/metrics", "GET").route(web::get().to(metrics::aggregate)))
        .service(resource("/api/events", "GET").route(web::get().to(events::stream)))
        .service(resource("/api/queues", "GET").route(web::get().to(queues::list)))
        .service(resource("/api/queues/{queue}", "GET").route(web::get().to(queues::show)))
        .service(
            resource("/api/queues/{queue}/metrics", "GET").route(web::get().to(metrics::history)),
        )
        .service(resource("/api/queues/{queue}/pause", "POST").route(web::post().to(queues::pause)))
        .service(
            resource("/api/queues/{queue}/resume", "POST").route(web::post().to(queues::resume)),
        )
        // Bulk actions on a queue, each bounded per call by its body's `limit`.
        .service(
            resource("/api/queues/{queue}/retry-failed", "POST")
                .route(web::post().to(queues::retry_failed)),
        )
        .service(resource("/api/queues/{queue}/clean", "POST").route(web::post().to(queues::clean)))
        .service(resource("/api/queues/{queue}/drain", "POST").route(web::post().to(queues::drain)))
        .service(
            resource("/api/queues/{queue}/jobs", "GET, POST")
                .route(web::post().to(jobs::add))
                .route(web::get().to(jobs::list)),
        )
        // `bulk` is the bulk route for POST, and a job's id like any other for GET and DELETE.
        .service(
            resource("/api/queues/{queue}/jobs/{id:bulk}", "GET, POST, DELETE")
                .route(web::post().to(jobs::add_bulk))
                .route(web::get().to(jobs::show))
                .route(web::delete().to(jobs::remove)),
        )
        .service(
            resource("/api/queues/{queue}/jobs/{id}", "GET, DELETE")
                .route(web::get().to(jobs::show))
                .route(web::delete().to(jobs::remove)),
        )
        .service(
            resource("/api/queues/{queue}/jobs/{id}/wait", "GET")
                .route(web::get().to(events::wait)),
        )
        .service(
            resource("/api/queues/{queue}/jobs/{id}/retry", "POST")
                .route(web::post().to(jobs::retry)),
        )
        // `stats` and `invalidate` are keys like any other for the methods they do not take.
        .service(
            resource("/api/cache/{key:stats}", "GET, PUT, DELETE")
                .route(web::get().to(cache::stats))
                .route(web::put().to(cache::put))
                .route(web::delete().to(cache::delete)),
        )
        .service(resource("/api/redis", "GET").route(web::get().to(redis::metrics)))
        .service(resource("/api/schedules", "GET").route(web::get().to(schedules::list)))
        .service(
            resource("/api/schedules/{id}", "GET, PUT, DELETE")
                .route(web::get().to(schedules::show))
                .route(web::put().to(schedules::put))
                .route(web::delete().to(schedules::delete)),
        )
        .service(
            resource("/api/schedules/{id}/pause", "POST").route(web::post().to(schedules::pause)),
        )
        .service(
            resource("/api/schedules/{id}/resume", "POST").route(web::post().to(schedules::resume)),
        )
        .service(
            resource("/api/schedules/{id}/trigger", "POST")
                .route(web::post().to(schedules::trigger)),
        )
        .service(
            resource("/api/cache/{key:invalidate}", "GET, POST, PUT, DELETE")
                .route(web::post().to(cache::invalidate))
                .route(web::get().to(cache::get))
                .route(web::put().to(cache::put))
                .route(web::delete().to(cache::delete)),
        )
        .service(resource("/api/pubsub/{channel}", "POST").route(web::post().to(cache::publish)))
        .service(
            resource("/api/cache/{key:.+}", "GET, PUT, DELETE")
                .route(web::get().to(cache::get))
                .route(web::put().to(cache::put))
                .route(web::delete().to(cache::delete)),
        )
}

/// A route's resource, answering `405` with `Allow: allowed` (and a JSON body) to any other
/// method.
fn resource(path: &str, allowed: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: actix_web::HttpRequest| async move {
        HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, allowed))
            .json(json!({
                "error": "method_not_allowed",
                "detail": format!("{} {} is not a route; it takes {allowed}", req.method(), req.path()),
            }))
    }))
}

/// A JSON 404 for paths no route matches (use as the app's `default_service`).
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(json!({
        "error": "not_found",
        "detail": format!("no route for {} {}", req.method(), req.path()),
    }))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready while the probe (if any) answers and no pool has been given up on.
async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let pools = state.runtime.pool_states().await;
    if let Some(probe) = &state.probe
        && let Err(detail) = probe.check().await
    {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "error": format!("{}_unavailable", probe.name()),
            "detail": detail,
            "pools": pools,
        }));
    }
    let waiting = state.runtime.waiting_for_store();
    if !waiting.is_empty() {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "error": "pools_waiting_for_store",
            "detail": format!("processor pools of {waiting:?} wait for their store to answer again"),
            "pools": pools,
        }));
    }
    let down: Vec<&String> = pools
        .iter()
        .filter(|(_, s)| **s == stagehand_actors::supervisor::PoolState::GaveUp)
        .map(|(name, _)| name)
        .collect();
    if down.is_empty() {
        HttpResponse::Ok().json(json!({ "status": "ready", "pools": pools }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "unavailable",
            "error": "pools_down",
            "detail": format!("processor pools given up on: {down:?}"),
            "pools": pools,
        }))
    }
}
