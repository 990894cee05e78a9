//! Shutdown is bounded whatever the store's state: SIGTERM with Redis down, or with a Redis
//! that refuses the password, exits within the grace period plus a few seconds.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{Service, eventually};
use nix::sys::signal::Signal;

const GRACE_MS: &str = "1000";
/// The grace period plus the 5 s the service may take beyond it.
const BOUND: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_redis_down_exits_within_grace() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let mut service = Service::start_with(
        "",
        &[
            ("STAGEHAND_REDIS_URL", url.as_str()),
            ("STAGEHAND_SHUTDOWN_GRACE_MS", GRACE_MS),
        ],
    )
    .await;
    eventually("/ready to answer 200", || async {
        (service.api.get("/ready").await.0 == 200).then_some(())
    })
    .await;
    // Work in flight when Redis goes: pools retry their calls while shutdown begins.
    for i in 0..20 {
        service
            .api
            .add("email", serde_json::json!({"name": format!("e{i}")}))
            .await;
    }
    redis.kill();
    let status = service.signal_and_wait(Signal::SIGTERM, BOUND).await;
    assert!(
        status.is_some(),
        "still running {BOUND:?} after SIGTERM with Redis down:\n{}",
        service.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_wrong_redis_password_exits_within_grace() {
    let mut redis = RedisServer::start();
    redis.restart_with(&["--requirepass", "right"]);
    let url = format!("redis://:wr0ng-pw-7731@127.0.0.1:{}", redis.port);
    let mut service = Service::start_with(
        "",
        &[
            ("STAGEHAND_REDIS_URL", url.as_str()),
            ("STAGEHAND_SHUTDOWN_GRACE_MS", GRACE_MS),
        ],
    )
    .await;
    eventually("the log to say Redis is unreachable", || async {
        service.log().contains("Redis is unreachable").then_some(())
    })
    .await;
    let status = service.signal_and_wait(Signal::SIGINT, BOUND).await;
    assert!(
        status.is_some(),
        "still running {BOUND:?} after SIGINT with a wrong password:\n{}",
        service.log()
    );
    assert!(
        !service.log().contains("wr0ng-pw-7731"),
        "the password never reaches a log"
    );
}
