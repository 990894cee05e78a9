//! Bearer tokens with two roles: `read` (GET and HEAD) and `admin` (everything). `/health` is
//! always open, `/ready` unless configured otherwise. Tokens are compared in constant time and
//! never logged.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: GET and HEAD.
    Read,
    /// Everything.
    Admin,
}

/// One accepted token.
#[derive(Clone)]
pub struct Token {
    /// A name for logs (the token itself never is).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The secret.
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("secret", &"***")
            .finish()
    }
}

/// Who may call the API. With no tokens, everyone may (the service then serves on a loopback
/// address only, unless told otherwise).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Arc<Vec<Token>>,
    /// Whether `/ready` answers without a token.
    pub ready_public: bool,
    /// Where the API is mounted (`""` at the root): the open paths are exactly
    /// `{prefix}/health` and `{prefix}/ready`.
    prefix: String,
}

impl Auth {
    /// Checks requests against `tokens`; `/ready` stays open if `ready_public`.
    pub fn new(tokens: Vec<Token>, ready_public: bool) -> Auth {
        Auth {
            tokens: Arc::new(tokens),
            ready_public,
            prefix: String::new(),
        }
    }

    /// The same rules for an API mounted under `prefix`.
    pub(super) fn mounted_at(mut self, prefix: &str) -> Auth {
        self.prefix = prefix.trim_end_matches('/').to_string();
        self
    }

    /// Whether `path` is open to all: exactly the health check, and the readiness check
    /// when it is public.
    fn is_open(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(self.prefix.as_str()) else {
            return false;
        };
        rest == "/health" || (self.ready_public && rest == "/ready")
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The role of the token presented, if it is one of ours. Every configured token is
    /// compared, in constant time, whatever matches.
    fn role_of(&self, presented: &str) -> Option<Role> {
        let mut found = None;
        for token in self.tokens.iter() {
            if constant_time_eq(presented.as_bytes(), token.secret.as_bytes()) {
                found = Some(token.role);
            }
        }
        found
    }

    /// What a request may do: `Ok` to go on, or the 401/403 answer.
    fn decide(&self, req: &ServiceRequest) -> Result<(), Box<HttpResponse>> {
        if !self.enabled() {
            return Ok(());
        }
        let path = req.path();
        if self.is_open(path) {
            return Ok(());
        }
        // The scheme's name is case-insensitive (RFC 7235).
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(presented) = presented else {
            return Err(unauthorized(
                "send Authorization: Bearer <token> (http.tokens)",
            ));
        };
        let Some(role) = self.role_of(presented) else {
            return Err(unauthorized("the token is not one of http.tokens"));
        };
        let reads = matches!(*req.method(), Method::GET | Method::HEAD);
        if role == Role::Read && !reads {
            return Err(Box::new(HttpResponse::Forbidden().json(json!({
                "error": "forbidden",
                "detail": format!("a read token cannot {} {}; it needs an admin token", req.method(), path),
            }))));
        }
        Ok(())
    }
}

fn unauthorized(detail: &str) -> Box<HttpResponse> {
    Box::new(
        HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
            .json(json!({ "error": "unauthorized", "detail": detail })),
    )
}

/// Equal bytes, compared without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// The middleware: lets through what `auth` allows, answers the rest with 401 or 403.
pub(super) async fn check(
    auth: Auth,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    match auth.decide(&req) {
        Ok(()) => Ok(next.call(req).await?.map_into_left_body()),
        Err(answer) => Ok(req.into_response(*answer).map_into_right_body()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_health_and_ready_paths_are_open() {
        let auth = Auth::new(Vec::new(), true).mounted_at("/jobs");
        assert!(auth.is_open("/jobs/health"));
        assert!(auth.is_open("/jobs/ready"));
        for path in [
            "/jobs/api/queues/email/jobs/health",
            "/jobs/api/queues/health",
            "/health",
            "/jobs/health/",
            "/jobs/ready/x",
            "/jobsx/health",
        ] {
            assert!(!auth.is_open(path), "{path}");
        }
        let closed_ready = Auth::new(Vec::new(), false);
        assert!(closed_ready.is_open("/health"));
        assert!(!closed_ready.is_open("/ready"));
    }

    #[test]
    fn tokens_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokeN"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
