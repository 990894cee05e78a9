//! The store conformance suite: every `QueueStore` must pass it. Each check takes a fresh,
//! empty store for its own queue. `conformance_tests!` turns the checks into `#[tokio::test]`s
//! for one store factory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::StoreError;
use crate::job::{AttemptOutcome, JobState};
use crate::options::{Backoff, JobOptions, Retention};
use crate::store::{
    Batch, LeaseToken, NewJob, Outcome, QueueStore, RecoverReport, SettleResult, Settlement,
};

type Store = Arc<dyn QueueStore>;

const LEASE: Duration = Duration::from_secs(30);
/// How long a check waits for a condition before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

fn job(name: &str) -> NewJob {
    NewJob::new(name, json!({ "n": name }))
}

fn with(f: impl FnOnce(&mut JobOptions)) -> JobOptions {
    let mut o = JobOptions::default();
    f(&mut o);
    o
}

async fn fetch_names(store: &Store, max: usize) -> Vec<String> {
    let got = store.fetch("w", max, LEASE).await.expect("fetch");
    got.into_iter().map(|a| a.job.name.clone()).collect()
}

/// Fetches until something comes back or patience runs out (for delays and expiries).
async fn fetch_eventually(store: &Store, lease: Duration) -> Vec<crate::store::ActiveJob> {
    let start = Instant::now();
    let mut signal = store.work_signal();
    loop {
        let got = store.fetch("w", 10, lease).await.expect("fetch");
        if !got.is_empty() {
            return got;
        }
        assert!(start.elapsed() < PATIENCE, "nothing became ready");
        signal.wait(Duration::from_millis(50)).await.expect("wait");
    }
}

/// Reads a job until it is in `state`, or patience runs out.
async fn wait_for_state(store: &Store, id: &str, state: JobState) {
    let start = Instant::now();
    loop {
        let j = store.get(id).await.expect("get").expect("job");
        if j.state == state {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "job {id} stayed {} (waiting for {state})",
            j.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `recover_expired` until `done` holds for its report, or patience runs out.
async fn recover_until(
    store: &Store,
    what: &str,
    done: impl Fn(&RecoverReport) -> bool,
) -> RecoverReport {
    let start = Instant::now();
    let mut signal = store.work_signal();
    loop {
        let report = store.recover_expired(1).await.expect("recover");
        if done(&report) {
            return report;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        signal.wait(Duration::from_millis(10)).await.expect("wait");
    }
}

/// Jobs come out in the order they went in.
pub async fn fifo_order(store: Store) {
    for n in ["a", "b", "c"] {
        store.add(job(n)).await.expect("add");
    }
    assert_eq!(fetch_names(&store, 10).await, ["a", "b", "c"]);
}

/// `lifo` jobs jump the line.
pub async fn lifo_jumps_the_line(store: Store) {
    store.add(job("a")).await.expect("add");
    store
        .add(job("b").with_options(with(|o| o.lifo = true)))
        .await
        .expect("add");
    assert_eq!(fetch_names(&store, 10).await, ["b", "a"]);
}

/// No priority runs first, then lower numbers, FIFO within one priority.
pub async fn priority_order(store: Store) {
    let jobs = [("p5", 5), ("p1a", 1), ("none", 0), ("p1b", 1), ("p2", 2)];
    for (name, priority) in jobs {
        store
            .add(job(name).with_options(with(|o| o.priority = priority)))
            .await
            .expect("add");
    }
    assert_eq!(store.counts().await.expect("counts").prioritized, 4);
    assert_eq!(
        fetch_names(&store, 10).await,
        ["none", "p1a", "p1b", "p2", "p5"]
    );
}

/// `fetch` hands out at most `max` and leases what it hands out.
pub async fn fetch_respects_max_and_counts_attempts(store: Store) {
    let ids = store
        .add_bulk((0..5).map(|i| job(&format!("j{i}"))).collect())
        .await
        .expect("add_bulk");
    assert_eq!(ids.len(), 5);
    let got = store.fetch("w", 2, LEASE).await.expect("fetch");
    assert_eq!(got.len(), 2);
    for a in &got {
        assert_eq!(a.job.state, JobState::Active);
        assert_eq!(a.job.attempts_made, 1);
        assert_eq!(a.job.history.len(), 1);
    }
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.waiting, counts.active), (3, 2));
}

/// A delayed job is not handed out before its time, and is once it is due.
pub async fn delayed_jobs_wait_their_turn(store: Store) {
    let far = store
        .add(job("far").with_options(with(|o| o.delay_ms = 3_600_000)))
        .await
        .expect("add");
    let near = store
        .add(job("near").with_options(with(|o| o.delay_ms = 100)))
        .await
        .expect("add");
    assert!(store.fetch("w", 10, LEASE).await.expect("fetch").is_empty());
    let got = store.get(&far.id).await.expect("get").expect("far exists");
    assert_eq!(got.state, JobState::Delayed);
    let fetched = fetch_eventually(&store, LEASE).await;
    assert_eq!(fetched.len(), 1);
    let job = &fetched[0].job;
    assert_eq!(job.id, near.id);
    assert!(job.processed_at.expect("started") >= job.created_at + 100);
    assert_eq!(store.counts().await.expect("counts").delayed, 1);
}

/// Adding a `job_id` again returns the first job and adds nothing.
pub async fn job_id_is_idempotent(store: Store) {
    let opts = with(|o| o.job_id = Some("order-42".into()));
    let first = store
        .add(job("a").with_options(opts.clone()))
        .await
        .expect("add");
    let again = store.add(job("b").with_options(opts)).await.expect("add");
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(&*first.id, "order-42");
    assert_eq!(&*again.id, "order-42");
    assert_eq!(store.counts().await.expect("counts").waiting, 1);
    let kept = store.get("order-42").await.expect("get").expect("exists");
    assert_eq!(kept.name, "a");
}

/// Settling needs the lease's token; a wrong one changes nothing.
pub async fn settle_needs_the_token(store: Store) {
    store.add(job("a")).await.expect("add");
    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    let wrong = LeaseToken(a.token.0.wrapping_add(7919));
    let r = store
        .complete(&a.job.id, wrong, json!(1))
        .await
        .expect("complete");
    assert_eq!(r, SettleResult::LeaseLost);
    assert_eq!(
        store.get(&a.job.id).await.expect("get").expect("job").state,
        JobState::Active
    );
    let r = store
        .complete(&a.job.id, a.token, json!({"ok": true}))
        .await
        .expect("complete");
    assert_eq!(r, SettleResult::Completed);
    let done = store.get(&a.job.id).await.expect("get").expect("job");
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(
        done.return_value.map(|rv| rv.to_value()),
        Some(json!({"ok": true}))
    );
    assert!(done.finished_at.is_some());
    assert_eq!(done.history[0].outcome, AttemptOutcome::Completed);
    // Settling twice is a lost lease, not a second completion.
    let r = store
        .complete(&a.job.id, a.token, json!(2))
        .await
        .expect("complete");
    assert_eq!(r, SettleResult::LeaseLost);
}

/// A failed attempt with attempts left is retried after an exponential backoff; the last
/// failure is final and keeps the history.
pub async fn retries_with_exponential_backoff(store: Store) {
    let opts = with(|o| {
        o.attempts = 3;
        o.backoff = Backoff::Exponential {
            delay_ms: 300,
            jitter: 0.0,
            max_delay_ms: None,
        };
    });
    let added = store
        .add(job("flaky").with_options(opts))
        .await
        .expect("add");
    let mut delays = Vec::new();
    for attempt in 1..=3u32 {
        let a = fetch_eventually(&store, LEASE).await.remove(0);
        assert_eq!(a.job.attempts_made, attempt);
        match store
            .fail(&a, format!("boom {attempt}"), true)
            .await
            .expect("fail")
        {
            SettleResult::Retrying { delay_ms } => {
                let j = store.get(&added.id).await.expect("get").expect("job");
                assert_eq!(j.state, JobState::Delayed);
                delays.push(delay_ms);
            }
            SettleResult::Failed { job } => {
                assert_eq!(attempt, 3);
                assert_eq!(job.failed_reason.as_deref(), Some("boom 3"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delays, [300, 600]);
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.history.len(), 3);
    assert_eq!(j.history[0].retry_delay_ms, Some(300));
    for pair in j.history.windows(2) {
        let gap = pair[1].started_at - pair[0].finished_at.expect("finished");
        assert!(
            gap >= pair[0].retry_delay_ms.expect("delay"),
            "{gap} too short"
        );
    }
}

/// An unrecoverable failure ends the job whatever attempts remain.
pub async fn unrecoverable_fails_at_once(store: Store) {
    let added = store
        .add(job("bad").with_options(with(|o| o.attempts = 5)))
        .await
        .expect("add");
    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    let r = store
        .fail(&a, "bad input".into(), false)
        .await
        .expect("fail");
    assert!(matches!(r, SettleResult::Failed { .. }), "{r:?}");
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.attempts_made, 1);
    assert!(j.failed_reason.expect("reason").contains("bad input"));
}

/// Completed and failed jobs are trimmed to what their retention keeps.
pub async fn retention_trims_finished_jobs(store: Store) {
    let keep2 = with(|o| {
        o.remove_on_complete = Retention::Keep {
            count: Some(2),
            age_ms: None,
        };
        o.remove_on_fail = Retention::RemoveAll;
        o.attempts = 1;
    });
    let ids = store
        .add_bulk(
            (0..6)
                .map(|i| job(&format!("j{i}")).with_options(keep2.clone()))
                .collect(),
        )
        .await
        .expect("add_bulk");
    let active = store.fetch("w", 6, LEASE).await.expect("fetch");
    for a in &active[..5] {
        store
            .complete(&a.job.id, a.token, json!(null))
            .await
            .expect("complete");
    }
    let last = &active[5];
    store.fail(last, "x".into(), true).await.expect("fail");
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.completed, counts.failed), (2, 0));
    let kept: Vec<_> = store
        .list(JobState::Completed, 0, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(kept, [ids[4].id.clone(), ids[3].id.clone()], "newest first");
    assert!(store.get(&ids[0].id).await.expect("get").is_none());
    assert!(store.get(&ids[5].id).await.expect("get").is_none());
}

fn ids(recovered: &[crate::Recovered]) -> Vec<crate::JobId> {
    recovered.iter().map(|r| r.id.clone()).collect()
}

/// A job whose lease runs out goes back to waiting, its old token is dead, and past
/// `max_stalled` it fails.
pub async fn expired_leases_are_recovered(store: Store) {
    let added = store.add(job("sleepy")).await.expect("add");
    let short = Duration::from_millis(20);
    let first = store.fetch("w", 1, short).await.expect("fetch").remove(0);
    let report = recover_until(&store, "the lease to expire", |r| !r.requeued.is_empty()).await;
    assert_eq!(ids(&report.requeued), std::slice::from_ref(&added.id));
    assert_eq!(report.requeued[0].name, "sleepy");
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Waiting);
    assert_eq!(j.stalled_count, 1);
    assert_eq!(j.history[0].outcome, AttemptOutcome::Stalled);
    let late = store
        .complete(&added.id, first.token, json!(1))
        .await
        .expect("complete");
    assert_eq!(late, SettleResult::LeaseLost);

    store.fetch("w", 1, short).await.expect("fetch");
    let report = recover_until(&store, "the second lease to expire", |r| {
        !r.failed.is_empty()
    })
    .await;
    assert_eq!(ids(&report.failed), std::slice::from_ref(&added.id));
    assert_eq!(report.failed[0].name, "sleepy");
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Failed);
    assert!(j.failed_reason.expect("reason").contains("stalled"));
}

/// Heartbeats extend leases held by their token only: of two jobs leased for a moment, the one
/// whose lease was extended is still active once the other has been recovered.
pub async fn heartbeats_extend_held_leases(store: Store) {
    store
        .add_bulk(vec![job("kept"), job("dropped")])
        .await
        .expect("add_bulk");
    let short = Duration::from_millis(50);
    let got = store.fetch("w", 2, short).await.expect("fetch");
    let (kept, dropped) = (&got[0], &got[1]);
    let leases = [
        (kept.job.id.clone(), kept.token),
        (dropped.job.id.clone(), LeaseToken(dropped.token.0 + 1_000)),
        ("nope".into(), kept.token),
    ];
    let held = store.extend_leases(&leases, LEASE).await.expect("extend");
    assert_eq!(held, [true, false, false]);
    let report = recover_until(&store, "the unextended lease to expire", |r| {
        !r.requeued.is_empty()
    })
    .await;
    assert_eq!(ids(&report.requeued), std::slice::from_ref(&dropped.job.id));
    let j = store.get(&kept.job.id).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Active, "its lease was extended");
    assert_eq!(
        store
            .complete(&kept.job.id, kept.token, json!(1))
            .await
            .expect("complete"),
        SettleResult::Completed
    );
}

/// A paused queue hands out nothing and reports its ready jobs as paused.
pub async fn pause_and_resume(store: Store) {
    let added = store.add(job("a")).await.expect("add");
    store.pause().await.expect("pause");
    assert!(store.is_paused().await.expect("is_paused"));
    assert!(store.fetch("w", 10, LEASE).await.expect("fetch").is_empty());
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.waiting, counts.paused), (0, 1));
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Paused);
    store.resume().await.expect("resume");
    assert_eq!(fetch_names(&store, 10).await, ["a"]);
}

/// A paused queue lists its ready jobs as paused: waiting ones first, then by priority, paged.
pub async fn paused_jobs_are_listed_in_run_order(store: Store) {
    store.add(job("w1")).await.expect("add");
    store.add(job("w2")).await.expect("add");
    store
        .add(job("p1").with_options(with(|o| o.priority = 1)))
        .await
        .expect("add");
    store
        .add(job("p2").with_options(with(|o| o.priority = 2)))
        .await
        .expect("add");
    store.pause().await.expect("pause");
    let names = |jobs: Vec<crate::job::Job>| jobs.into_iter().map(|j| j.name).collect::<Vec<_>>();
    let all = store.list(JobState::Paused, 0, 10).await.expect("list");
    assert!(all.iter().all(|j| j.state == JobState::Paused));
    assert_eq!(names(all), ["w1", "w2", "p1", "p2"]);
    assert_eq!(
        names(store.list(JobState::Paused, 1, 2).await.expect("list")),
        ["w2", "p1"]
    );
    assert_eq!(
        names(store.list(JobState::Paused, 3, 10).await.expect("list")),
        ["p2"]
    );
    assert!(
        store
            .list(JobState::Waiting, 0, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

/// Retry, remove, clean and drain do what they say and refuse what they must.
pub async fn admin_operations(store: Store) {
    let one = with(|o| o.attempts = 1);
    let failed = store
        .add(job("f").with_options(one.clone()))
        .await
        .expect("add");
    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    store.fail(&a, "x".into(), true).await.expect("fail");
    assert!(matches!(
        store.retry("missing").await,
        Err(StoreError::NotFound(_))
    ));
    store.retry(&failed.id).await.expect("retry");
    let j = store.get(&failed.id).await.expect("get").expect("job");
    assert_eq!((j.state, j.attempts_made), (JobState::Waiting, 0));
    assert!(
        matches!(
            store.retry(&failed.id).await,
            Err(StoreError::InvalidState { .. })
        ),
        "a waiting job cannot be retried"
    );

    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    assert!(
        matches!(
            store.remove(&a.job.id).await,
            Err(StoreError::InvalidState { .. })
        ),
        "active jobs are not removed"
    );
    store
        .complete(&a.job.id, a.token, json!(1))
        .await
        .expect("complete");
    assert!(store.remove(&a.job.id).await.expect("remove"));
    assert!(!store.remove(&a.job.id).await.expect("remove"));

    store
        .add_bulk(vec![job("w1"), job("w2")])
        .await
        .expect("add_bulk");
    store
        .add(job("d").with_options(with(|o| o.delay_ms = 3_600_000)))
        .await
        .expect("add");
    assert_eq!(
        store
            .clean(JobState::Waiting, Duration::ZERO, 1)
            .await
            .expect("clean"),
        1
    );
    let drained = store.drain(false, 10).await.expect("drain");
    assert_eq!(
        drained,
        Batch {
            count: 1,
            more: false
        },
        "delayed jobs stay"
    );
    assert_eq!(store.counts().await.expect("counts").delayed, 1);
    let drained = store.drain(true, 10).await.expect("drain");
    assert_eq!(
        drained,
        Batch {
            count: 1,
            more: false
        }
    );
    assert_eq!(store.counts().await.expect("counts"), Default::default());
}

/// A removed waiting job is neither listed, counted nor handed out.
pub async fn removed_waiting_jobs_are_gone(store: Store) {
    let ids = store
        .add_bulk(vec![job("a"), job("b"), job("c")])
        .await
        .expect("add_bulk");
    assert!(store.remove(&ids[1].id).await.expect("remove"));
    let listed: Vec<String> = store
        .list(JobState::Waiting, 0, 10)
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(listed, ["a", "c"]);
    assert_eq!(store.counts().await.expect("counts").waiting, 2);
    assert_eq!(fetch_names(&store, 10).await, ["a", "c"]);
    assert_eq!(store.counts().await.expect("counts").waiting, 0);
}

/// Progress and logs are kept on the job.
pub async fn progress_and_logs(store: Store) {
    let added = store.add(job("a")).await.expect("add");
    store
        .progress(&added.id, json!(42))
        .await
        .expect("progress");
    store.log(&added.id, "step one".into()).await.expect("log");
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(j.progress, json!(42));
    assert_eq!(j.logs, ["step one"]);
    assert!(matches!(
        store.progress("missing", json!(1)).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A released job goes back to waiting without using an attempt.
pub async fn release_hands_back(store: Store) {
    let added = store
        .add(job("a").with_options(with(|o| o.attempts = 1)))
        .await
        .expect("add");
    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    let r = store
        .settle_one(&a.job.id, a.token, Outcome::Released)
        .await
        .expect("release");
    assert_eq!(r, SettleResult::Released);
    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    assert_eq!(a.job.id, added.id);
    // One attempt allowed, one released: this failure still retries nothing but is the first.
    let r = store.fail(&a, "x".into(), true).await.expect("fail");
    assert!(matches!(r, SettleResult::Failed { .. }));
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(j.history[0].outcome, AttemptOutcome::Released);
}

/// Followers see a job's life as events.
pub async fn events_follow_a_job(store: Store) {
    let mut events = store.subscribe();
    let added = store.add(job("a")).await.expect("add");
    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    store
        .complete(&a.job.id, a.token, json!(1))
        .await
        .expect("complete");
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let e = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("event in time")
            .expect("event");
        assert_eq!(e.id, added.id);
        kinds.push(serde_json::to_value(&e.kind).expect("json")["event"].clone());
    }
    assert_eq!(kinds, [json!("added"), json!("active"), json!("completed")]);
}

/// A bulk add publishes one `added` event per job (a store may batch them on the wire).
pub async fn events_cover_every_job_of_a_bulk(store: Store) {
    let mut events = store.subscribe();
    let added = store
        .add_bulk((0..120).map(|i| job(&i.to_string())).collect())
        .await
        .expect("add_bulk");
    let mut seen = Vec::new();
    while seen.len() < added.len() {
        let e = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("event in time")
            .expect("event");
        assert_eq!(e.kind, crate::store::JobEventKind::Added);
        seen.push(e.id);
    }
    let ids: Vec<_> = added.into_iter().map(|a| a.id).collect();
    assert_eq!(seen, ids, "one event per job, in order");
}

/// Per-minute history: what processes record for one minute adds up; minutes past the
/// history's length are not kept.
pub async fn history_sums_what_processes_record(store: Store) {
    use crate::history::{Ended, HISTORY_MINUTES, MinuteRecorder};
    let now = crate::clock::now_ms();
    let minute = now / 60_000;
    let mut a = MinuteRecorder::default();
    let mut b = MinuteRecorder::default();
    for _ in 0..3 {
        a.record(now, Ended::Completed, 7);
    }
    a.record(now - 60_000, Ended::Failed, 40);
    b.record(now, Ended::Completed, 300);
    b.record(now, Ended::Retried, 300);
    // A minute from before the history's reach.
    b.record((minute - HISTORY_MINUTES - 5) * 60_000, Ended::Completed, 1);
    store.record_minutes(&a.take()).await.expect("record a");
    store.record_minutes(&b.take()).await.expect("record b");
    let read = store
        .read_minutes(minute - HISTORY_MINUTES - 10, minute + 1)
        .await
        .expect("read");
    let minutes: Vec<u64> = read.iter().map(|m| m.minute).collect();
    assert_eq!(
        minutes,
        [minute - 1, minute],
        "only kept minutes with figures"
    );
    assert_eq!((read[0].completed, read[0].failed), (0, 1));
    assert_eq!((read[1].completed, read[1].failed), (4, 0));
    assert_eq!(read[1].durations.iter().sum::<u64>(), 5);
    assert_eq!(read[1].percentile(0.5), Some(10));
    assert_eq!(read[1].percentile(0.99), Some(500));
    assert!(
        store
            .read_minutes(minute + 1, minute)
            .await
            .expect("empty")
            .is_empty()
    );
}

/// A follower that reconnects asks for the events after the last one it saw and gets exactly
/// those, in order, even from the middle of a batched entry.
pub async fn events_resume_after_a_position(store: Store) {
    let mut live = store.subscribe();
    let added = store
        .add_bulk((0..120).map(|i| job(&i.to_string())).collect())
        .await
        .expect("add_bulk");
    let mut seen = Vec::new();
    while seen.len() < added.len() {
        let e = tokio::time::timeout(PATIENCE, live.recv())
            .await
            .expect("event in time")
            .expect("event");
        seen.push(e);
    }
    let positions: Vec<_> = seen.iter().map(|e| e.position.expect("placed")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    for cut in [0, 59, 60, 118] {
        let page = store
            .events_after(positions[cut], 1_000)
            .await
            .expect("events_after");
        assert!(!page.trimmed);
        let ids: Vec<_> = page.events.iter().map(|e| e.id.clone()).collect();
        let want: Vec<_> = seen[cut + 1..].iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids, want, "after event {cut}");
        assert_eq!(page.events[0].position, Some(positions[cut + 1]));
    }
    let page = store.events_after(positions[10], 5).await.expect("page");
    assert_eq!(page.events.len(), 5, "at most max");
    assert_eq!(page.events[0].id, seen[11].id);
    let end = store.events_after(positions[119], 10).await.expect("end");
    assert!(end.events.is_empty());
}

/// Jobs of the highest priority keep their order too (FIFO, `lifo` first), however large the
/// priority number.
pub async fn top_priority_keeps_its_order(store: Store) {
    let top = with(|o| o.priority = crate::options::MAX_PRIORITY);
    for i in 0..10 {
        store
            .add(job(&format!("t{i}")).with_options(top.clone()))
            .await
            .expect("add");
    }
    let mut lifo = top.clone();
    lifo.lifo = true;
    store
        .add(job("jumper").with_options(lifo))
        .await
        .expect("add");
    let names = fetch_names(&store, 20).await;
    let mut wanted = vec!["jumper".to_string()];
    wanted.extend((0..10).map(|i| format!("t{i}")));
    assert_eq!(names, wanted);
}

/// A waiting worker waits while there is nothing to do, and wakes when a job is added.
pub async fn work_signal_wakes_on_add(store: Store) {
    let mut signal = store.work_signal();
    let mut waiter = tokio::spawn(async move { signal.wait(Duration::from_secs(3600)).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiter)
            .await
            .is_err(),
        "the wait returned with nothing to do"
    );
    store.add(job("a")).await.expect("add");
    tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("woken by the add")
        .expect("join")
        .expect("wait");
}

/// A worker that stops waiting (its `select!` took another branch) does not lose the wake that
/// came meanwhile: the next wait returns at once.
pub async fn a_wake_is_not_lost_when_a_wait_is_dropped(store: Store) {
    let mut signal = store.work_signal();
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        signal.wait(Duration::from_secs(30)),
    )
    .await;
    assert!(dropped.is_err(), "the wait returned with nothing to do");
    store.add(job("a")).await.expect("add");
    tokio::time::timeout(PATIENCE, signal.wait(Duration::from_secs(30)))
        .await
        .expect("the add's wake was kept for the next wait")
        .expect("wait");
}

/// A paused queue's worker does not wake for a delayed job that falls due (it could not take
/// it): no loop spins on a paused queue. The job shows as paused, and runs once resumed.
pub async fn paused_queue_does_not_wake_for_due_jobs(store: Store) {
    store.pause().await.expect("pause");
    let added = store
        .add(job("due").with_options(with(|o| o.delay_ms = 100)))
        .await
        .expect("add");
    // As a pool would: nothing reads the job (a read would promote it), the delay passes,
    // and the pool's fetch hands out nothing.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(150) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.fetch("w", 10, LEASE).await.expect("fetch").is_empty());
    let mut signal = store.work_signal();
    let mut waiter = tokio::spawn(async move { signal.wait(Duration::from_secs(3600)).await });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiter)
            .await
            .is_err(),
        "a paused queue's worker woke for work it cannot take"
    );
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(
        j.state,
        JobState::Paused,
        "a due job of a paused queue reads as paused"
    );
    store.resume().await.expect("resume");
    tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("woken by the resume")
        .expect("join")
        .expect("wait");
    assert_eq!(fetch_names(&store, 10).await, ["due"]);
}

/// A delayed job whose time has passed reads as ready, in its state, the counts and the
/// lists, though no worker fetches from the queue.
pub async fn due_delayed_jobs_read_as_ready(store: Store) {
    let plain = store
        .add(job("plain").with_options(with(|o| o.delay_ms = 50)))
        .await
        .expect("add");
    let urgent = store
        .add(job("urgent").with_options(with(|o| {
            o.delay_ms = 50;
            o.priority = 3;
        })))
        .await
        .expect("add");
    wait_for_state(&store, &plain.id, JobState::Waiting).await;
    let j = store.get(&urgent.id).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Prioritized);
    let counts = store.counts().await.expect("counts");
    assert_eq!(
        (counts.delayed, counts.waiting, counts.prioritized),
        (0, 1, 1)
    );
    let waiting = store.list(JobState::Waiting, 0, 10).await.expect("list");
    assert_eq!(waiting.len(), 1);
    assert!(
        store
            .list(JobState::Delayed, 0, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

/// Settling and leasing in one call: the finished jobs are settled and up to `max` more leased;
/// `max` 0 only settles.
pub async fn settle_and_fetch_does_both(store: Store) {
    store
        .add_bulk((0..4).map(|i| job(&format!("j{i}"))).collect())
        .await
        .expect("add_bulk");
    let first = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    let done = vec![Settlement {
        id: first.job.id.clone(),
        token: first.token,
        outcome: Outcome::Completed(json!("ok")),
    }];
    let (settled, fetched) = store
        .settle_and_fetch(done, "w", 2, LEASE)
        .await
        .expect("settle_and_fetch");
    assert_eq!(settled, [SettleResult::Completed]);
    let names: Vec<_> = fetched.iter().map(|a| a.job.name.as_str()).collect();
    assert_eq!(names, ["j1", "j2"]);
    let done = fetched
        .iter()
        .map(|a| Settlement {
            id: a.job.id.clone(),
            token: a.token,
            outcome: Outcome::Released,
        })
        .collect();
    let (settled, fetched) = store
        .settle_and_fetch(done, "w", 0, LEASE)
        .await
        .expect("settle_and_fetch");
    assert_eq!(settled, [SettleResult::Released, SettleResult::Released]);
    assert!(fetched.is_empty());
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.completed, counts.waiting, counts.active), (1, 3, 0));
}

/// A retry decided by core is applied as decided: a fixed backoff waits its delay in `delayed`,
/// and the attempt's record names it.
pub async fn fixed_backoff_is_applied(store: Store) {
    let opts = with(|o| {
        o.attempts = 2;
        o.backoff = Backoff::Fixed {
            delay_ms: 3_600_000,
            jitter: 0.0,
        };
    });
    let added = store.add(job("f").with_options(opts)).await.expect("add");
    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    let r = store.fail(&a, "x".into(), true).await.expect("fail");
    assert_eq!(
        r,
        SettleResult::Retrying {
            delay_ms: 3_600_000
        }
    );
    let j = store.get(&added.id).await.expect("get").expect("job");
    assert_eq!(j.state, JobState::Delayed);
    assert_eq!(
        j.run_at,
        j.history[0].finished_at.expect("ended") + 3_600_000
    );
    assert_eq!(j.history[0].retry_delay_ms, Some(3_600_000));
    assert_eq!(j.failed_reason.as_deref(), Some("x"));
}

/// `clean(Paused)` removes the ready jobs of a paused queue (and nothing while it runs).
pub async fn clean_paused_removes_held_jobs(store: Store) {
    store
        .add_bulk(vec![
            job("w"),
            job("p").with_options(with(|o| o.priority = 2)),
            job("d").with_options(with(|o| o.delay_ms = 3_600_000)),
        ])
        .await
        .expect("add_bulk");
    assert_eq!(
        store
            .clean(JobState::Paused, Duration::ZERO, 10)
            .await
            .expect("clean"),
        0,
        "nothing is paused while the queue runs"
    );
    store.pause().await.expect("pause");
    assert_eq!(
        store
            .clean(JobState::Paused, Duration::ZERO, 10)
            .await
            .expect("clean"),
        2
    );
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.paused, counts.delayed), (0, 1));
}

/// Finished jobs older than their retention's age are removed when the next one finishes.
pub async fn age_retention_removes_old_jobs(store: Store) {
    let opts = with(|o| {
        o.remove_on_complete = Retention::Keep {
            count: None,
            age_ms: Some(50),
        };
    });
    let ids = store
        .add_bulk(vec![
            job("old").with_options(opts.clone()),
            job("new").with_options(opts),
        ])
        .await
        .expect("add_bulk");
    let old = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    store
        .complete(&old.job.id, old.token, json!(1))
        .await
        .expect("complete");
    let finished = store
        .get(&ids[0].id)
        .await
        .expect("get")
        .expect("kept while young")
        .finished_at
        .expect("finished");
    // The next completion more than 50 ms later trims the old one.
    let new = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    let start = Instant::now();
    while crate::clock::now_ms() <= finished + 50 {
        assert!(start.elapsed() < PATIENCE, "the clock did not move");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store
        .complete(&new.job.id, new.token, json!(2))
        .await
        .expect("complete");
    assert!(store.get(&ids[0].id).await.expect("get").is_none());
    assert!(store.get(&ids[1].id).await.expect("get").is_some());
}

/// Ids that look like the store's own names stay apart from every other job: a job's id
/// never names another job's keys, whatever it ends or starts with.
pub async fn job_ids_never_collide(store: Store) {
    let ids = [
        "victim",
        "victim:h",
        "victim:l",
        "victim:j",
        "h:victim",
        "j:victim",
        "wait",
        ":wait",
        "{victim}",
        "victim*",
        "*",
        "a b",
        "émoji 🎉",
        "id",
    ];
    let jobs = ids
        .iter()
        .map(|id| job(id).with_options(with(|o| o.job_id = Some((*id).into()))))
        .collect();
    let added = store.add_bulk(jobs).await.expect("add_bulk");
    assert!(added.iter().all(|a| a.created));
    store.log("victim", "a line".into()).await.expect("log");
    store.log("victim:l", "another".into()).await.expect("log");
    let got = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    assert_eq!(&*got.job.id, "victim");
    store.fail(&got, "once".into(), true).await.expect("fail");
    for id in ids {
        let j = store.get(id).await.expect("get").expect(id);
        assert_eq!(j.name, id, "{id} reads as itself");
        let lines = if id == "victim" {
            vec!["a line".to_string()]
        } else if id == "victim:l" {
            vec!["another".to_string()]
        } else {
            vec![]
        };
        assert_eq!(j.logs, lines, "{id}");
        assert_eq!(j.history.len(), usize::from(id == "victim"), "{id}");
    }
    for id in &ids[1..] {
        assert!(store.remove(id).await.expect("remove"), "{id}");
    }
    let j = store
        .get("victim")
        .await
        .expect("get")
        .expect("victim stays");
    assert_eq!((j.logs.len(), j.history.len()), (1, 1));
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.waiting + counts.delayed, 1);
}

/// A large bulk goes in whole and in order.
pub async fn large_bulk(store: Store) {
    let n = 10_000;
    let ids = store
        .add_bulk((0..n).map(|i| job(&i.to_string())).collect())
        .await
        .expect("add_bulk");
    assert_eq!(ids.len(), n);
    assert_eq!(store.counts().await.expect("counts").waiting, n as u64);
    let first = store.fetch("w", 3, LEASE).await.expect("fetch");
    let names: Vec<_> = first.iter().map(|a| a.job.name.as_str()).collect();
    assert_eq!(names, ["0", "1", "2"]);
}

/// Clean and drain reach every job of a large backlog (a store may work in bounded steps), and
/// clean stops at its limit.
pub async fn clean_and_drain_cover_a_large_backlog(store: Store) {
    let bulk = |n: usize, options: JobOptions| {
        (0..n)
            .map(|i| job(&i.to_string()).with_options(options.clone()))
            .collect::<Vec<_>>()
    };
    let keep = with(|o| o.remove_on_complete = Retention::KeepAll);
    store.add_bulk(bulk(1_500, keep)).await.expect("add_bulk");
    let leased = store.fetch("w", 1_500, LEASE).await.expect("fetch");
    assert_eq!(leased.len(), 1_500);
    let settlements = leased
        .iter()
        .map(|a| crate::store::Settlement {
            id: a.job.id.clone(),
            token: a.token,
            outcome: Outcome::Completed(json!(null)),
        })
        .collect();
    store.settle(settlements).await.expect("settle");
    assert_eq!(
        store
            .clean(JobState::Completed, Duration::ZERO, 1_200)
            .await
            .expect("clean"),
        1_200,
        "clean stops at its limit"
    );
    assert_eq!(
        store
            .clean(JobState::Completed, Duration::ZERO, 10_000)
            .await
            .expect("clean"),
        300
    );

    store
        .add_bulk(bulk(2_500, JobOptions::default()))
        .await
        .expect("add_bulk");
    store
        .add_bulk(bulk(1_200, with(|o| o.priority = 2)))
        .await
        .expect("add_bulk");
    store
        .add_bulk(bulk(1_100, with(|o| o.delay_ms = 3_600_000)))
        .await
        .expect("add_bulk");
    assert_eq!(
        store
            .clean(JobState::Waiting, Duration::ZERO, 2_100)
            .await
            .expect("clean"),
        2_100
    );
    assert_eq!(
        store
            .clean(JobState::Delayed, Duration::from_secs(3_600), 10_000)
            .await
            .expect("clean"),
        0,
        "none is that old"
    );
    // Drain stops at its limit, waiting jobs first, and says whether any are left.
    let drained = store.drain(false, 1_000).await.expect("drain");
    assert_eq!(
        drained,
        Batch {
            count: 1_000,
            more: true
        }
    );
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.waiting, counts.prioritized), (0, 600));
    let drained = store.drain(false, 10_000).await.expect("drain");
    assert_eq!(
        drained,
        Batch {
            count: 600,
            more: false
        },
        "delayed jobs are not asked for"
    );
    let counts = store.counts().await.expect("counts");
    assert_eq!(
        (counts.waiting, counts.prioritized, counts.delayed),
        (0, 0, 1_100)
    );
    let drained = store.drain(true, 10_000).await.expect("drain");
    assert_eq!(
        drained,
        Batch {
            count: 1_100,
            more: false
        }
    );
    assert_eq!(store.counts().await.expect("counts"), Default::default());
}

/// `retry_failed` moves failed jobs back as `retry` does (a fresh attempt budget, history
/// kept, an `added` event each), those that failed first first, at most `limit` per call, and
/// says whether failed jobs remain; other states are left alone.
pub async fn retry_failed_moves_failed_jobs(store: Store) {
    let mut events = store.subscribe();
    let one = with(|o| o.attempts = 1);
    let failing = store
        .add_bulk(
            (0..3)
                .map(|i| job(&format!("f{i}")).with_options(one.clone()))
                .collect(),
        )
        .await
        .expect("add_bulk");
    for _ in 0..3 {
        let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
        store.fail(&a, "boom".into(), true).await.expect("fail");
    }
    store.add(job("done")).await.expect("add");
    let a = store.fetch("w", 1, LEASE).await.expect("fetch").remove(0);
    store
        .complete(&a.job.id, a.token, json!(1))
        .await
        .expect("complete");
    store.add(job("waits")).await.expect("add");
    let ids: Vec<_> = failing.iter().map(|a| a.id.clone()).collect();

    let moved = store.retry_failed(2).await.expect("retry_failed");
    assert_eq!(
        moved,
        Batch {
            count: 2,
            more: true
        }
    );
    for id in &ids[..2] {
        let j = store.get(id).await.expect("get").expect("job");
        assert_eq!(
            (j.state, j.attempts_made, j.failed_reason, j.finished_at),
            (JobState::Waiting, 0, None, None),
            "{id}"
        );
        assert_eq!(j.history.len(), 1, "the history is kept");
    }
    let last = store.get(&ids[2]).await.expect("get").expect("job");
    assert_eq!(last.state, JobState::Failed, "it failed last");
    let moved = store.retry_failed(10).await.expect("retry_failed");
    assert_eq!(
        moved,
        Batch {
            count: 1,
            more: false
        }
    );
    let moved = store.retry_failed(10).await.expect("retry_failed");
    assert_eq!(
        moved,
        Batch {
            count: 0,
            more: false
        }
    );
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.waiting, counts.failed, counts.completed), (4, 0, 1));
    assert_eq!(fetch_names(&store, 10).await, ["waits", "f0", "f1", "f2"]);
    // Each retried job was announced as added again (after its first `added`).
    let mut added = std::collections::HashMap::new();
    while ids.iter().any(|id| added.get(id).copied().unwrap_or(0) < 2) {
        let e = tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("event in time")
            .expect("event");
        if e.kind == crate::store::JobEventKind::Added {
            *added.entry(e.id).or_insert(0) += 1;
        }
    }

    // A backlog larger than a store's bounded step: the limit still holds exactly.
    let kept = with(|o| {
        o.attempts = 1;
        o.remove_on_fail = Retention::KeepAll;
    });
    store
        .add_bulk(
            (0..1_500)
                .map(|i| job(&format!("b{i}")).with_options(kept.clone()))
                .collect(),
        )
        .await
        .expect("add_bulk");
    let leased = store.fetch("w", 1_500, LEASE).await.expect("fetch");
    let settlements = leased
        .iter()
        .map(|a| Settlement {
            id: a.job.id.clone(),
            token: a.token,
            outcome: Outcome::Fail { reason: "x".into() },
        })
        .collect();
    store.settle(settlements).await.expect("settle");
    assert_eq!(store.counts().await.expect("counts").failed, 1_500);
    let moved = store.retry_failed(1_200).await.expect("retry_failed");
    assert_eq!(
        moved,
        Batch {
            count: 1_200,
            more: true
        }
    );
    let moved = store.retry_failed(10_000).await.expect("retry_failed");
    assert_eq!(
        moved,
        Batch {
            count: 300,
            more: false
        }
    );
    let counts = store.counts().await.expect("counts");
    assert_eq!((counts.waiting, counts.failed), (1_500, 0));
}

fn schedule(id: &str, next_at: u64) -> crate::schedule::Schedule {
    let spec: crate::schedule::ScheduleSpec = serde_json::from_value(json!({
        "id": id, "queue": "q", "name": "tick", "every_ms": 1000, "data": {"from": id},
    }))
    .expect("a spec");
    crate::schedule::Schedule {
        spec,
        state: crate::schedule::ScheduleState {
            next_at: Some(next_at),
            created_at: 1,
            ..Default::default()
        },
    }
}

fn fire(id: &str, expected: u64, next_at: Option<u64>, fires: u64) -> crate::store::ScheduleFire {
    let mut job = NewJob::new("tick", json!({}));
    job.options.job_id = Some(crate::schedule::fire_job_id(id, expected));
    crate::store::ScheduleFire {
        id: id.to_string(),
        expected,
        jobs: vec![job],
        next_at,
        last_fire: Some(expected),
        fires,
    }
}

/// A new schedule is created; the same spec again changes nothing (its state is kept); a
/// changed spec takes the new next fire; removal says whether it existed.
pub async fn schedules_upsert_idempotently(store: Store) {
    use crate::store::PutSchedule::*;
    let s = schedule("daily", 5_000);
    assert_eq!(store.put_schedule(&s).await.expect("put"), Created);
    let mut again = s.clone();
    again.state.next_at = Some(9_999);
    assert_eq!(store.put_schedule(&again).await.expect("put"), Unchanged);
    assert_eq!(
        store.get_schedule("daily").await.expect("get"),
        Some(s.clone())
    );
    let mut changed = s.clone();
    changed.spec.name = "tock".into();
    changed.state.next_at = Some(7_000);
    assert_eq!(store.put_schedule(&changed).await.expect("put"), Updated);
    let got = store
        .get_schedule("daily")
        .await
        .expect("get")
        .expect("there");
    assert_eq!(
        (got.spec.name.as_str(), got.state.next_at),
        ("tock", Some(7_000))
    );
    store
        .put_schedule(&schedule("hourly", 3_000))
        .await
        .expect("put");
    let ids: Vec<String> = store
        .list_schedules()
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.spec.id)
        .collect();
    assert_eq!(ids, ["daily", "hourly"]);
    assert!(store.remove_schedule("daily").await.expect("remove"));
    assert!(!store.remove_schedule("daily").await.expect("remove"));
    assert_eq!(store.get_schedule("daily").await.expect("get"), None);
    assert_eq!(store.next_schedule_at().await.expect("next"), Some(3_000));
}

/// Two callers firing the same fire at once: one of them does, its job is added once, and
/// the schedule moves on; a late caller with the old next fire changes nothing.
pub async fn a_fire_is_claimed_once(store: Store) {
    store
        .put_schedule(&schedule("s", 10_000))
        .await
        .expect("put");
    let (a, b) = tokio::join!(
        store.fire_schedule(fire("s", 10_000, Some(11_000), 1)),
        store.fire_schedule(fire("s", 10_000, Some(11_000), 1)),
    );
    let fired = [a.expect("fire"), b.expect("fire")];
    assert_eq!(fired.iter().filter(|f| **f).count(), 1, "{fired:?}");
    assert!(
        !store
            .fire_schedule(fire("s", 10_000, Some(11_000), 1))
            .await
            .expect("fire")
    );
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.waiting, 1);
    let job = store
        .get("sched:s:10000")
        .await
        .expect("get")
        .expect("the fire's job");
    assert_eq!(job.name, "tick");
    let state = store
        .get_schedule("s")
        .await
        .expect("get")
        .expect("there")
        .state;
    assert_eq!(
        (state.next_at, state.last_fire, state.fires),
        (Some(11_000), Some(10_000), 1)
    );
    assert_eq!(store.next_schedule_at().await.expect("next"), Some(11_000));
    // A fire whose job exists already (an earlier claim that crashed after adding, say)
    // adds nothing twice.
    store
        .add(fire("s", 11_000, None, 2).jobs.remove(0))
        .await
        .expect("add");
    assert!(
        store
            .fire_schedule(fire("s", 11_000, None, 2))
            .await
            .expect("fire")
    );
    assert_eq!(store.counts().await.expect("counts").waiting, 2);
    assert_eq!(
        store.next_schedule_at().await.expect("next"),
        None,
        "no next fire"
    );
}

/// Due schedules in fire order; a paused one is neither due nor next, and fires nothing; a
/// resumed one takes the next fire it is given.
pub async fn due_and_paused_schedules(store: Store) {
    for (id, next) in [("c", 3_000), ("a", 1_000), ("b", 2_000), ("later", 99_000)] {
        store.put_schedule(&schedule(id, next)).await.expect("put");
    }
    let due: Vec<String> = store
        .due_schedules(2_500, 10)
        .await
        .expect("due")
        .into_iter()
        .map(|s| s.spec.id)
        .collect();
    assert_eq!(due, ["a", "b"]);
    assert!(store.pause_schedule("a", true, None).await.expect("pause"));
    assert_eq!(store.next_schedule_at().await.expect("next"), Some(2_000));
    assert!(
        !store
            .fire_schedule(fire("a", 1_000, Some(2_000), 1))
            .await
            .expect("fire")
    );
    assert!(
        store
            .get_schedule("a")
            .await
            .expect("get")
            .expect("there")
            .state
            .paused
    );
    assert!(
        store
            .pause_schedule("a", false, Some(50_000))
            .await
            .expect("resume")
    );
    assert_eq!(store.due_schedules(2_500, 10).await.expect("due").len(), 1);
    let a = store
        .get_schedule("a")
        .await
        .expect("get")
        .expect("there")
        .state;
    assert_eq!((a.paused, a.next_at), (false, Some(50_000)));
    assert!(
        !store
            .pause_schedule("nope", true, None)
            .await
            .expect("pause")
    );
    assert_eq!(
        store.due_schedules(100_000, 2).await.expect("due").len(),
        2,
        "at most the limit"
    );
}

/// Generates one `#[tokio::test]` per conformance check, each on a store made by `$make`: an
/// async function of the queue name returning `(Arc<dyn QueueStore>, guard)`, where the guard
/// (a server process, say) is kept alive until the check ends.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            fifo_order, lifo_jumps_the_line, priority_order,
            fetch_respects_max_and_counts_attempts, delayed_jobs_wait_their_turn,
            job_id_is_idempotent, settle_needs_the_token, retries_with_exponential_backoff,
            unrecoverable_fails_at_once, retention_trims_finished_jobs,
            expired_leases_are_recovered, heartbeats_extend_held_leases, pause_and_resume, paused_jobs_are_listed_in_run_order,
            admin_operations, removed_waiting_jobs_are_gone, progress_and_logs, release_hands_back, events_follow_a_job,
            work_signal_wakes_on_add, large_bulk, clean_and_drain_cover_a_large_backlog,
            events_cover_every_job_of_a_bulk, paused_queue_does_not_wake_for_due_jobs,
            due_delayed_jobs_read_as_ready, settle_and_fetch_does_both, fixed_backoff_is_applied,
            clean_paused_removes_held_jobs, age_retention_removes_old_jobs, job_ids_never_collide,
            top_priority_keeps_its_order, a_wake_is_not_lost_when_a_wait_is_dropped,
            schedules_upsert_idempotently, a_fire_is_claimed_once, due_and_paused_schedules,
            events_resume_after_a_position, history_sums_what_processes_record,
            retry_failed_moves_failed_jobs);
    };
    (@each $make:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _guard) = $make(stringify!($check)).await;
                $crate::conformance::$check(store).await;
            }
        )*
    };
}
