//! What the container image relies on, checked without building it (no image registry is
//! reachable here): the Dockerfile builds with the command CI runs, and the binary serves with
//! the image's environment and compose's settings file.

mod common;

use common::Service;

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_dockerfile_builds_with_the_command_ci_runs() {
    let dockerfile = read("Dockerfile");
    let build = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("RUN cargo build"))
        .expect("a RUN cargo build line");
    let command = format!("cargo build{build}");
    assert!(
        command.contains("--locked") && command.contains("--release"),
        "{command}"
    );
    assert!(
        read(".ci/run").lines().any(|l| l.trim() == command),
        "`.ci/run` does not run the Dockerfile's `{command}`"
    );
}

#[tokio::test]
async fn the_image_environment_and_compose_settings_serve_with_a_token() {
    let token = "compose-admin-token-0123456789";
    let service = Service::start_with(
        &read("deploy/stagehand.toml"),
        &[
            ("STAGEHAND_HTTP_BIND", "0.0.0.0:0"),
            ("STAGEHAND_LOG_FORMAT", "json"),
            ("STAGEHAND_ADMIN_TOKEN", token),
        ],
    )
    .await;
    let url = |path: &str| format!("{}{path}", service.api.base);
    let client = reqwest::Client::new();
    let health = client.get(url("/health")).send().await.expect("health");
    assert_eq!(
        health.status(),
        200,
        "the HEALTHCHECK's request needs no token"
    );
    let anonymous = client.get(url("/api/queues")).send().await.expect("queues");
    assert_eq!(anonymous.status(), 401);
    let admin = client
        .get(url("/api/queues"))
        .bearer_auth(token)
        .send()
        .await
        .expect("queues");
    assert_eq!(admin.status(), 200);
}
