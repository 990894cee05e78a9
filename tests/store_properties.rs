//! Properties of every store, over generated input: any job id is either refused at the edge
//! (and by the store) or lives as itself, apart from every other job, and leaves nothing
//! behind once removed; any option values are either refused or stored unchanged, readable
//! and listable. Run on the memory store, a standalone Redis and a Redis Cluster.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::{RedisCluster, RedisServer};
use futures::StreamExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use stagehand_core::options::{MAX_JOB_ID_LEN, validate_job_id};
use stagehand_core::{
    JobOptions, JobOptionsInput, JobState, MemoryStore, NewJob, QueueStore, RedisStore, StoreError,
};

const LEASE: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Ids of every kind: the store's own separators and wildcards, braces, spaces, NUL and other
/// control characters, unicode, digits only, up to 512 bytes; and families of ids made from one
/// base with the store's separators and kind letters around it (`x`, `x:h`, `h:x`, `j:x:l`),
/// the ids most likely to name each other's keys.
fn ids() -> impl Strategy<Value = Vec<String>> {
    let id = prop_oneof![
        "[a-c:{}* \u{0}\n\u{e9}\u{1f389}hjl]{1,24}",
        "[0-9]{1,6}",
        "[a:]{200,300}",
        any::<String>(),
    ]
    .prop_filter("1 to 512 bytes", |s| (1..=512).contains(&s.len()));
    let family = ("[a-z{}*]{1,8}", prop::collection::vec(0usize..6, 1..5)).prop_map(
        |(base, decorations)| {
            let mut ids = vec![base.clone()];
            for d in decorations {
                ids.push(match d {
                    0 => format!("{base}:h"),
                    1 => format!("{base}:l"),
                    2 => format!("h:{base}"),
                    3 => format!("j:{base}"),
                    4 => format!("j:{base}:l"),
                    _ => format!("{base}:j:{base}"),
                });
            }
            ids
        },
    );
    prop_oneof![prop::collection::vec(id, 1..6), family]
}

/// The job keys Redis holds for `queue` (hash, history, logs), by SCAN.
async fn job_keys(url: Option<&str>, queue: &str) -> Vec<String> {
    let Some(url) = url else {
        return Vec::new();
    };
    let client = redis::Client::open(url).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let found: Vec<redis::RedisResult<String>> = redis::AsyncCommands::scan_match::<_, String>(
        &mut conn,
        format!("stagehand:{{{queue}}}:[jhl]:*"),
    )
    .await
    .expect("SCAN")
    .collect()
    .await;
    found.into_iter().filter_map(Result::ok).collect()
}

/// Adds, reads, lists, logs and removes jobs with these ids; `scan` is a standalone Redis to
/// SCAN for leftovers (none for the memory store and the Cluster).
async fn ids_live_apart(store: &dyn QueueStore, scan: Option<&str>, ids: Vec<String>) {
    let defaults = JobOptions::default();
    let mut valid = Vec::new();
    for id in ids {
        let input = JobOptionsInput {
            job_id: Some(id.clone()),
            ..Default::default()
        };
        match input.resolve(&defaults) {
            Ok(options) => {
                if !valid.iter().any(|(v, _): &(String, _)| *v == id) {
                    valid.push((id, options));
                }
            }
            Err(err) => {
                assert_eq!(err.field, "job_id");
                let breaks_a_rule = id.len() > MAX_JOB_ID_LEN
                    || id.bytes().all(|b| b.is_ascii_digit())
                    || id.chars().any(char::is_control);
                assert!(breaks_a_rule, "{id:?} refused: {err}");
                let mut options = defaults.clone();
                options.job_id = Some(id.clone());
                let refused = store
                    .add(NewJob::new("x", Value::Null).with_options(options))
                    .await;
                assert!(
                    matches!(refused, Err(StoreError::Invalid(_))),
                    "the store took {id:?}: {refused:?}"
                );
            }
        }
    }
    let jobs = valid
        .iter()
        .map(|(id, o)| NewJob::new("job", json!({ "id": id })).with_options(o.clone()))
        .collect();
    let added = store.add_bulk(jobs).await.expect("add_bulk");
    assert!(added.iter().all(|a| a.created));
    for (id, _) in &valid {
        store.log(id, format!("line of {id}")).await.expect("log");
        let job = store.get(id).await.expect("get").expect("the job");
        assert_eq!(job.data.to_value(), json!({ "id": id }));
        assert_eq!(job.logs, [format!("line of {id}")]);
        assert_eq!(&*job.id, id.as_str());
    }
    let listed: Vec<String> = store
        .list(JobState::Waiting, 0, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.id.to_string())
        .collect();
    let wanted: Vec<String> = valid.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(listed, wanted);
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.waiting, valid.len() as u64);
    for (id, _) in &valid {
        assert!(store.remove(id).await.expect("remove"), "{id:?}");
    }
    assert_eq!(store.counts().await.expect("counts"), Default::default());
    let left = job_keys(scan, store.queue()).await;
    assert!(left.is_empty(), "keys left behind: {left:?}");
}

fn run_ids(store: Arc<dyn QueueStore>, scan: Option<String>, cases: u32) {
    let rt = runtime();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&ids(), |ids| {
            rt.block_on(ids_live_apart(store.as_ref(), scan.as_deref(), ids));
            Ok(())
        })
        .expect("every id lives apart");
}

#[test]
fn ids_live_apart_on_memory() {
    run_ids(Arc::new(MemoryStore::new("props")), None, 256);
}

#[test]
fn ids_live_apart_on_redis() {
    let server = RedisServer::start();
    let store = runtime()
        .block_on(RedisStore::open(&server.url(), "props"))
        .expect("open");
    run_ids(Arc::new(store), Some(server.url()), 96);
}

#[test]
fn ids_live_apart_on_a_cluster() {
    let cluster = RedisCluster::start();
    let store = runtime()
        .block_on(RedisStore::open_cluster(&cluster.urls(), "props"))
        .expect("open");
    run_ids(Arc::new(store), None, 48);
}

/// Option values of every size, in range and out of it, as JSON a client might send; each
/// option is left out half the time.
fn options() -> impl Strategy<Value = Value> {
    // Mostly in the field's range, sometimes just past it, sometimes anything.
    let number = |max: u64| {
        prop_oneof![
            8 => (0..=max).prop_map(Value::from),
            1 => (max..=max.saturating_add(2)).prop_map(Value::from),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
        ]
        .boxed()
    };
    let duration = number(315_360_000_000);
    let jitter = prop_oneof![(-0.5f64..1.5).prop_map(Value::from), Just(json!(0.0))];
    let backoff = (
        prop::bool::ANY,
        duration.clone(),
        jitter,
        prop::option::of(duration.clone()),
    )
        .prop_map(|(fixed, delay, jitter, max)| {
            let mut b = json!({ "type": if fixed { "fixed" } else { "exponential" }, "delay_ms": delay, "jitter": jitter });
            if let (false, Some(max)) = (fixed, max) {
                b["max_delay_ms"] = max;
            }
            b
        });
    let retention = prop_oneof![
        prop::bool::ANY.prop_map(Value::from),
        number(1_000_000_000),
        (
            prop::option::of(number(1_000_000_000)),
            prop::option::of(duration.clone())
        )
            .prop_map(|(count, age)| json!({ "count": count, "age_ms": age })),
    ];
    let some = |s: BoxedStrategy<Value>| prop::option::of(s);
    (
        some(duration.clone()),
        some(number(2_097_152)),
        some(number(10_000)),
        some(backoff.boxed()),
        some(duration),
        some(retention.clone().boxed()),
        some(retention.boxed()),
        some(prop::bool::ANY.prop_map(Value::from).boxed()),
    )
        .prop_map(
            |(delay, priority, attempts, backoff, timeout, roc, rof, lifo)| {
                let fields = [
                    ("delay_ms", delay),
                    ("priority", priority),
                    ("attempts", attempts),
                    ("backoff", backoff),
                    ("timeout_ms", timeout),
                    ("remove_on_complete", roc),
                    ("remove_on_fail", rof),
                    ("lifo", lifo),
                ];
                Value::Object(
                    fields
                        .into_iter()
                        .filter_map(|(k, v)| Some((k.to_string(), v?)))
                        .collect(),
                )
            },
        )
}

/// Each option set is refused, or stored as given and readable, listable and settleable.
async fn options_round_trip(store: &dyn QueueStore, options: Value) -> bool {
    let Ok(input) = serde_json::from_value::<JobOptionsInput>(options.clone()) else {
        return false; // a 400 at the edge: not a number the field takes
    };
    let Ok(resolved) = input.resolve(&JobOptions::default()) else {
        return false; // a 400 at the edge: out of range
    };
    let added = store
        .add(NewJob::new("opts", options.clone()).with_options(resolved.clone()))
        .await
        .expect("an accepted job is stored");
    let job = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(*job.options, resolved, "options changed in the store");
    // A job may fall due between two reads, so it is looked for in the state just read; it
    // moves at most once (delayed to ready) while no worker takes it.
    let mut listed = false;
    for _ in 0..3 {
        let now = store.get(&added.id).await.expect("get").expect("job");
        let page = store.list(now.state, 0, 1000).await.expect("list");
        if page.iter().any(|j| j.id == added.id) {
            listed = true;
            break;
        }
    }
    assert!(listed, "not listed in its state");
    if job.state != JobState::Delayed {
        let leased = store.fetch("w", 1, LEASE).await.expect("fetch");
        let leased = leased.first().expect("a ready job is handed out");
        store
            .fail(leased, "boom".into(), true)
            .await
            .expect("a failure settles");
        let after = store.get(&added.id).await.expect("get");
        if let Some(after) = after {
            assert_eq!(*after.options, resolved);
            store.list(after.state, 0, 1000).await.expect("list");
            if after.state == JobState::Active {
                panic!("still active after settling");
            }
        }
    }
    store.remove(&added.id).await.expect("remove");
    true
}

fn run_options(store: Arc<dyn QueueStore>, cases: u32) {
    let rt = runtime();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&options(), |options| {
            if rt.block_on(options_round_trip(store.as_ref(), options)) {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(())
        })
        .expect("every option set round-trips or is refused");
    let accepted = accepted.into_inner();
    assert!(
        accepted >= cases / 6,
        "only {accepted} of {cases} option sets were accepted: the property tested little"
    );
}

#[test]
fn options_round_trip_on_memory() {
    run_options(Arc::new(MemoryStore::new("opts")), 512);
}

#[test]
fn options_round_trip_on_redis() {
    let server = RedisServer::start();
    let store = runtime()
        .block_on(RedisStore::open(&server.url(), "opts"))
        .expect("open");
    run_options(Arc::new(store), 192);
}

#[test]
fn options_round_trip_on_a_cluster() {
    let cluster = RedisCluster::start();
    let store = runtime()
        .block_on(RedisStore::open_cluster(&cluster.urls(), "opts"))
        .expect("open");
    run_options(Arc::new(store), 64);
}

#[test]
fn job_id_rule_is_what_the_property_expects() {
    assert!(validate_job_id("a:h").is_ok());
    assert!(validate_job_id("a\u{0}").is_err());
}
