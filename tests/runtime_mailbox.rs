//! A full queue mailbox answers 503 with a clear error instead of growing without bound, and
//! loses nothing it accepted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::serve_api;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use futures::poll;
use serde_json::{Value, json};
use stagehand::actors::{MailboxConfig, QueueError, QueueSpec, Runtime};
use stagehand::core::{
    ActiveJob, AddResult, Batch, Counts, Job, JobEvent, JobId, JobState, LeaseToken, MemoryStore,
    NewJob, QueueStore, RecoverReport, SettleResult, Settlement, StoreError, WorkSignal,
};
use tokio::sync::{Semaphore, broadcast};

/// A memory store whose adds wait for a permit: it stands in for a slow backend.
struct SlowAdds {
    inner: MemoryStore,
    gate: Semaphore,
    entered: AtomicUsize,
}

#[async_trait]
impl QueueStore for SlowAdds {
    fn queue(&self) -> &str {
        self.inner.queue()
    }
    async fn add_bulk(&self, jobs: Vec<NewJob>) -> Result<Vec<AddResult>, StoreError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| StoreError::unavailable(e.to_string()))?;
        self.inner.add_bulk(jobs).await
    }
    async fn fetch(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Vec<ActiveJob>, StoreError> {
        self.inner.fetch(worker, max, lease).await
    }
    fn work_signal(&self) -> Box<dyn WorkSignal> {
        self.inner.work_signal()
    }
    async fn extend_leases(
        &self,
        leases: &[(JobId, LeaseToken)],
        lease: Duration,
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.extend_leases(leases, lease).await
    }
    async fn settle(&self, s: Vec<Settlement>) -> Result<Vec<SettleResult>, StoreError> {
        self.inner.settle(s).await
    }
    async fn recover_expired(&self, max_stalled: u32) -> Result<RecoverReport, StoreError> {
        self.inner.recover_expired(max_stalled).await
    }
    async fn progress(&self, id: &str, value: Value) -> Result<(), StoreError> {
        self.inner.progress(id, value).await
    }
    async fn log(&self, id: &str, line: String) -> Result<(), StoreError> {
        self.inner.log(id, line).await
    }
    async fn get(&self, id: &str) -> Result<Option<Job>, StoreError> {
        self.inner.get(id).await
    }
    async fn list(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        self.inner.list(state, offset, limit).await
    }
    async fn counts(&self) -> Result<Counts, StoreError> {
        self.inner.counts().await
    }
    async fn retry(&self, id: &str) -> Result<(), StoreError> {
        self.inner.retry(id).await
    }
    async fn retry_failed(&self, limit: usize) -> Result<Batch, StoreError> {
        self.inner.retry_failed(limit).await
    }
    async fn remove(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.remove(id).await
    }
    async fn clean(
        &self,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.inner.clean(state, older_than, limit).await
    }
    async fn pause(&self) -> Result<(), StoreError> {
        self.inner.pause().await
    }
    async fn resume(&self) -> Result<(), StoreError> {
        self.inner.resume().await
    }
    async fn is_paused(&self) -> Result<bool, StoreError> {
        self.inner.is_paused().await
    }
    async fn drain(&self, include_delayed: bool, limit: usize) -> Result<Batch, StoreError> {
        self.inner.drain(include_delayed, limit).await
    }
    fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.subscribe()
    }
}

#[actix_web::test]
async fn a_full_mailbox_answers_503_and_loses_nothing_it_took() {
    let store = Arc::new(SlowAdds {
        inner: MemoryStore::new("q"),
        gate: Semaphore::new(0),
        entered: AtomicUsize::new(0),
    });
    let mailbox = MailboxConfig {
        queue: 2,
        ..MailboxConfig::default()
    };
    let runtime = Runtime::builder()
        .queue(QueueSpec::new("q").store(store.clone()))
        .mailbox(mailbox)
        .start();
    let (api, _server) = serve_api(runtime.clone(), 1 << 20);
    // The API's own handle: every caller through it shares one sender, as HTTP requests do.
    let queue = runtime.queue("q").expect("queue");
    let job = |i: usize| vec![NewJob::new(format!("j{i}"), json!({}))];

    // The first add occupies the actor: it waits in the store.
    let mut pending = vec![Box::pin(queue.add(job(0)))];
    assert!(poll!(&mut pending[0]).is_pending());
    common::eventually("the actor to be busy in the store", || async {
        (store.entered.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    // Then the mailbox fills: each add is either queued (pending) or refused at once.
    let mut refused = None;
    for i in 1..100 {
        let mut add = Box::pin(queue.add(job(i)));
        match poll!(&mut add) {
            Poll::Pending => pending.push(add),
            Poll::Ready(answer) => {
                refused = Some(answer);
                break;
            }
        }
    }
    let refused = refused.expect("a mailbox of 2 refuses before 100 messages");
    assert!(
        matches!(refused, Err(QueueError::Busy { capacity: 2, .. })),
        "{refused:?}"
    );
    assert!(
        pending.len() <= 4,
        "the mailbox grew past its capacity: {}",
        pending.len()
    );

    // Over HTTP the same full mailbox is a 503 with a clear error.
    let (status, body) = api
        .post("/api/queues/q/jobs", &json!({"name": "late"}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "busy");
    assert!(
        body["detail"].as_str().expect("detail").contains("mailbox"),
        "{body}"
    );

    // Open the store: everything that was accepted is added, nothing else.
    store.gate.add_permits(1000);
    let accepted = pending.len();
    for add in pending {
        add.await.expect("accepted adds succeed");
    }
    let counts = store.inner.counts().await.expect("counts");
    assert_eq!(counts.waiting as usize, accepted);
    runtime.shutdown(Duration::from_secs(5)).await;
}
