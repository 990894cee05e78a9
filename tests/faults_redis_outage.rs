//! A Redis outage while serving: `/ready` answers 503 through it and 200 only once the pools
//! work again; the log tells the outage once when it starts and once when it ends, not once per
//! retry.

mod common;

use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{Service, eventually};

/// The service's log lines at WARN or ERROR.
fn loud_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains("ERROR"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_the_pools_and_an_outage_is_told_once() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let service = Service::start_with(
        "",
        &[
            ("STAGEHAND_REDIS_URL", url.as_str()),
            common::EMAIL_WAITS_ENV,
        ],
    )
    .await;
    let api = &service.api;
    eventually("/ready to answer 200", || async {
        (api.get("/ready").await.0 == 200).then_some(())
    })
    .await;
    let before = loud_lines(&service.log()).len();

    redis.kill();
    eventually("/ready to answer 503", || async {
        (api.get("/ready").await.0 == 503).then_some(())
    })
    .await;
    // Some seconds of outage: the pools retry many times meanwhile.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(4) {
        let (status, _) = api.get("/api/queues/export").await;
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.restart();
    let ready = eventually("/ready to answer 200 again", || async {
        let (status, body) = api.get("/ready").await;
        (status == 200).then_some(body)
    })
    .await;
    let log = service.log();
    assert!(
        log.contains("queue store answers again"),
        "/ready said {ready} before the pools worked again:\n{log}"
    );
    let loud = loud_lines(&log);
    let outage: Vec<&&str> = loud[before..].iter().collect();
    // One line that the store is unavailable, one alert, one line per queue's event
    // follower: no line per retry.
    assert!(
        outage.len() <= 2 + 4,
        "{} loud lines for one outage:\n{outage:#?}",
        outage.len()
    );
    let errors = outage.iter().filter(|l| l.contains("ERROR")).count();
    assert!(errors <= 2, "{errors} ERROR lines:\n{outage:#?}");
}
