//! Cache routes: read, write and delete a key, invalidate keys, a pattern or a tag, and the
//! counters. A key is the rest of the path, percent-decoded (`/api/cache/user:7/profile`).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use stagehand_core::cache::{Cache, Invalidation, Ttl};
use stagehand_core::pubsub::channels;

use super::{ApiError, ApiState};

fn cache(state: &ApiState) -> Result<&Cache, ApiError> {
    state.cache.as_ref().ok_or(ApiError::NoCache)
}

/// The key in the path. A percent-encoded key that is not UTF-8 is refused: decoded with
/// replacement characters, different keys would become the same one.
fn key(req: &HttpRequest, key: web::Path<String>) -> Result<String, ApiError> {
    let key = key.into_inner();
    if key.contains('\u{FFFD}') {
        let raw = req.uri().path();
        let encoded = raw.to_ascii_uppercase().contains("%EF%BF%BD") || raw.contains('\u{FFFD}');
        if !encoded {
            return Err(ApiError::BadRequest(
                "the key is not UTF-8 once percent-decoded".into(),
            ));
        }
    }
    Ok(key)
}

pub(super) async fn get(
    state: web::Data<ApiState>,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = self::key(&req, key)?;
    let cache = cache(&state)?;
    let stored = cache
        .get_stored(&key)
        .await?
        .ok_or_else(|| ApiError::UnknownKey(key.to_string()))?;
    // A value another program stored as plain text is shown as a string.
    let value = match RawValue::from_string(stored.text.to_string()) {
        Ok(raw) => serde_json::to_value(raw).unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::String(stored.text.to_string()),
    };
    let ttl_ms = match cache.ttl(&key).await? {
        Ttl::Expires(left) => Some(left.as_millis() as u64),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(json!({ "key": key.as_str(), "value": value, "ttl_ms": ttl_ms })))
}

/// `PUT /api/cache/{key}`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PutBody {
    value: Box<RawValue>,
    #[serde(default)]
    ttl_ms: Option<u64>,
    #[serde(default)]
    tags: Vec<String>,
}

pub(super) async fn put(
    state: web::Data<ApiState>,
    req: HttpRequest,
    key: web::Path<String>,
    body: web::Json<PutBody>,
) -> Result<HttpResponse, ApiError> {
    let key = self::key(&req, key)?;
    let body = body.into_inner();
    let text: Arc<str> = Arc::from(body.value.get());
    let ttl = body.ttl_ms.map(Duration::from_millis);
    cache(&state)?.set_text(&key, text, ttl, &body.tags).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(super) async fn delete(
    state: web::Data<ApiState>,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = self::key(&req, key)?;
    let deleted = cache(&state)?.delete(&key).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": deleted })))
}

/// Deletes what the seed's invalidation message names (`{keys}`, `{pattern}` or `{tag}`)
/// here, then publishes it on `cache-invalidate` so every other process applies it too.
pub(super) async fn invalidate(
    state: web::Data<ApiState>,
    body: web::Json<Invalidation>,
) -> Result<HttpResponse, ApiError> {
    let cache = cache(&state)?;
    let mut inv = body.into_inner();
    inv.memory_only = false;
    if !inv.is_well_formed() {
        return Err(ApiError::BadRequest(
            "give exactly one of keys (a non-empty list), pattern or tag".into(),
        ));
    }
    let deleted = cache.apply(&inv).await?;
    // The shared store has the change now: the others only drop their memory copies (were
    // they to apply it to the store again, later, they would delete writes made since).
    inv.memory_only = true;
    let Some(pubsub) = &state.pubsub else {
        return Ok(HttpResponse::Ok().json(json!({ "deleted": deleted, "receivers": 0 })));
    };
    // Done here already: a failed publish is reported, not turned into an error that would
    // say nothing changed.
    Ok(HttpResponse::Ok().json(
        match pubsub.publish(channels::CACHE_INVALIDATE, &inv).await {
            Ok((_, receivers)) => json!({ "deleted": deleted, "receivers": receivers }),
            Err(err) => json!({
                "deleted": deleted,
                "receivers": null,
                "published": false,
                "detail": format!("applied in this process only: {err}"),
            }),
        },
    ))
}

/// Publishes the body, in the seed's envelope, on `channel`.
pub(super) async fn publish(
    state: web::Data<ApiState>,
    channel: web::Path<String>,
    body: web::Json<Box<RawValue>>,
) -> Result<HttpResponse, ApiError> {
    let pubsub = state.pubsub.as_ref().ok_or(ApiError::NoPubSub)?;
    let (id, receivers) = pubsub.publish(&channel, &body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id, "receivers": receivers })))
}

pub(super) async fn stats(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(cache(&state)?.stats()))
}
