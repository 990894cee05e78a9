//! Bearer tokens over real HTTP: no token 401, a read token 403 on a change, an admin token
//! 2xx; `/health` open; no token in any log line; the CLI sends `--token`; without tokens the
//! service serves a loopback address only, unless told otherwise.

mod common;

use common::{Service, refused_start};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "reader-token-fedcba9876543210";

const CONFIG: &str = r#"
[[http.tokens]]
name = "ops"
role = "admin"
token = "admin-token-0123456789abcdef"

[[http.tokens]]
name = "dashboard"
role = "read"
token_env = "STAGEHAND_TOKEN_DASHBOARD"
"#;

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_decide_who_may_read_and_who_may_change() {
    let service = Service::start_with(CONFIG, &[("STAGEHAND_TOKEN_DASHBOARD", READER)]).await;
    let base = service.api.base.as_str();
    let add = || Some(json!({"name": "hello"}));
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let (status, body) = call(base, get.clone(), "/api/queues", None, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    let (status, body) = call(
        base,
        get.clone(),
        "/api/queues",
        Some("not-a-token-at-all"),
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(base, post.clone(), "/api/queues/email/jobs", None, add()).await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = call(base, get.clone(), "/api/queues", Some(READER), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        base,
        post.clone(),
        "/api/queues/email/jobs",
        Some(READER),
        add(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    let (status, body) = call(
        base,
        post.clone(),
        "/api/queues/email/pause",
        Some(READER),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");

    let (status, body) = call(
        base,
        post.clone(),
        "/api/queues/email/jobs",
        Some(ADMIN),
        add(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let (status, _) = call(
        base,
        get.clone(),
        &format!("/api/queues/email/jobs/{id}"),
        Some(READER),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        base,
        reqwest::Method::DELETE,
        &format!("/api/queues/email/jobs/{id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);

    assert_eq!(call(base, get.clone(), "/health", None, None).await.0, 200);
    assert_eq!(call(base, get.clone(), "/ready", None, None).await.0, 200);
    assert_eq!(
        call(base, reqwest::Method::HEAD, "/health", None, None)
            .await
            .0,
        200
    );
    // Only those exact paths are open: a job whose id is `health` or `ready` is not.
    let (status, _) = call(
        base,
        post.clone(),
        "/api/queues/email/jobs",
        Some(ADMIN),
        Some(json!({"name": "h", "options": {"job_id": "health"}})),
    )
    .await;
    assert_eq!(status, 201);
    for path in [
        "/api/queues/email/jobs/health",
        "/api/queues/email/jobs/ready",
        "/api/queues/health",
        "/health/",
    ] {
        let (status, body) = call(base, get.clone(), path, None, None).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, _) = call(
        base,
        reqwest::Method::DELETE,
        "/api/queues/email/jobs/health",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    // The scheme's name is case-insensitive.
    let lower = reqwest::Client::new()
        .get(format!("{base}/api/queues"))
        .header("Authorization", format!("bearer {READER}"))
        .send()
        .await
        .expect("request");
    assert_eq!(lower.status().as_u16(), 200);

    // The CLI sends --token (or STAGEHAND_TOKEN).
    let out = service.cli(&["stats", "email"]);
    assert!(!out.status.success(), "no token, no stats");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = service.cli(&["--token", READER, "stats", "email"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = service.cli(&["--token", ADMIN, "enqueue", "email", "via-cli"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let log = service.log();
    assert!(log.contains("stagehand serving"), "{log}");
    for secret in [ADMIN, READER] {
        assert!(!log.contains(secret), "a token reached the log:\n{log}");
    }
}

#[tokio::test]
async fn without_tokens_only_a_loopback_address_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, err) = refused_start(dir.path(), &["--bind", "0.0.0.0:0"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("http.tokens"), "{err}");
    assert!(err.contains("allow_unauthenticated"), "{err}");

    let (code, err) = refused_start(
        dir.path(),
        &[],
        &[
            ("STAGEHAND_HTTP_TOKENS", ""),
            ("STAGEHAND_HTTP_BIND", "0.0.0.0:0"),
        ],
    );
    assert_eq!(code, Some(2), "{err}");

    let open = Service::start_with(
        "[http]\nallow_unauthenticated = true\n",
        &[("STAGEHAND_HTTP_BIND", "0.0.0.0:0")],
    )
    .await;
    let log = open.log();
    assert!(log.contains("serving without tokens"), "{log}");
    assert_eq!(open.api.get("/api/queues").await.0, 200);
}

#[tokio::test]
async fn bad_token_settings_stop_the_service_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.toml");
    let cases = [
        (
            "[[http.tokens]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"short\"\n",
            "http.tokens[0].token",
        ),
        (
            "[[http.tokens]]\nname = \"a\"\nrole = \"admin\"\ntoken_env = \"STAGEHAND_TOKEN_NOT_SET_ANYWHERE\"\n",
            "http.tokens[0].token_env",
        ),
        (
            "[[http.tokens]]\nname = \"a\"\nrole = \"root\"\ntoken = \"0123456789abcdefg\"\n",
            "root",
        ),
        (
            "[[http.tokens]]\nname = \"a\"\nrole = \"admin\"\n",
            "http.tokens[0]",
        ),
    ];
    for (toml, named) in cases {
        std::fs::write(&file, toml).expect("write");
        let (code, err) =
            refused_start(dir.path(), &["--config", file.to_str().expect("path")], &[]);
        assert_eq!(code, Some(2), "{toml}: {err}");
        assert!(err.contains(named), "{toml}: {err}");
        assert!(!err.contains("short\""), "{err}");
    }

    // An error that would quote a token does not.
    for toml in [
        "[[http.tokens]]\nname = \"a\"\nrole = \"admin\"\ntoken = \"SECRETSECRETSECRET1\" x\n",
        "[http]\ntokens = \"SECRETSECRETSECRET1\"\n",
    ] {
        std::fs::write(&file, toml).expect("write");
        let (code, err) =
            refused_start(dir.path(), &["--config", file.to_str().expect("path")], &[]);
        assert_eq!(code, Some(2), "{toml}: {err}");
        assert!(
            !err.contains("SECRETSECRETSECRET1"),
            "the token was quoted: {err}"
        );
    }
}

#[tokio::test]
async fn a_token_env_named_like_a_token_is_not_read_as_a_setting() {
    let toml = "[[http.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken_env = \"STAGEHAND_ADMIN_TOKEN\"\n";
    let service = Service::start_with(toml, &[("STAGEHAND_ADMIN_TOKEN", ADMIN)]).await;
    let base = service.api.base.as_str();
    let (status, _) = call(base, reqwest::Method::GET, "/api/queues", Some(ADMIN), None).await;
    assert_eq!(status, 200);
}
