//! `GET /api/redis`: the seed's Redis metrics for each Redis the service uses.

use actix_web::{HttpResponse, web};
use serde_json::json;
use stagehand_core::redis::Conn;
use stagehand_core::redis::info;

use super::{ApiError, ApiState};

/// A Redis the service uses, and for what.
#[derive(Clone)]
pub struct RedisEndpoint {
    /// `queues` or `cache`.
    pub role: &'static str,
    /// Its URL with any password hidden.
    pub shown: String,
    /// A connection to it.
    pub conn: Conn,
}

impl std::fmt::Debug for RedisEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEndpoint")
            .field("role", &self.role)
            .field("shown", &self.shown)
            .finish()
    }
}

/// How long `INFO` may take before the endpoint is reported unreachable.
const INFO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) async fn metrics(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(figures(&state).await))
}

/// Each Redis's role, address and INFO figures (or why they could not be read), asked at once.
pub(super) async fn figures(state: &ApiState) -> Vec<serde_json::Value> {
    futures::future::join_all(state.redis.iter().map(|endpoint| async move {
        let mut conn = endpoint.conn.clone();
        match tokio::time::timeout(INFO_TIMEOUT, info::metrics(&mut conn)).await {
            Ok(Ok(metrics)) => {
                json!({ "role": endpoint.role, "server": endpoint.shown, "metrics": metrics })
            }
            Ok(Err(err)) => {
                json!({ "role": endpoint.role, "server": endpoint.shown, "error": err.to_string() })
            }
            Err(_) => {
                json!({ "role": endpoint.role, "server": endpoint.shown, "error": "INFO timed out" })
            }
        }
    }))
    .await
}
