//! The QueueActor (one per queue: add, get, list, retry, remove, pause, counts, and the bounded
//! bulk actions retry-failed, clean and drain) and the
//! `QueueHandle` the API and embedding apps talk to it through.
//!
//! Every message carries its own reply channel and is sent with `try_send`, so a full mailbox
//! answers [`QueueError::Busy`] at once instead of queueing without bound. The actor handles
//! one message at a time (`ctx.wait`), so its mailbox is real back-pressure.

use std::future::Future;
use std::sync::Arc;

use actix::dev::SendError;
use actix::prelude::*;
use std::time::Duration;

use stagehand_core::{
    AddResult, Batch, Counts, Job, JobOptions, JobState, NewJob, QueueStore, StoreError,
};
use tokio::sync::oneshot;

use crate::metrics::{MailboxDepth, QueueMetrics};

/// The reply channel every queue message carries.
pub type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Why a queue call failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum QueueError {
    /// The queue actor's mailbox is full: the caller should back off and try again.
    #[error("queue '{queue}' is busy: its mailbox of {capacity} messages is full; retry later")]
    Busy {
        /// The queue.
        queue: String,
        /// Its mailbox capacity.
        capacity: usize,
    },
    /// The queue actor is not running (shutting down).
    #[error("queue '{queue}' is not running (the runtime is shutting down)")]
    Stopped {
        /// The queue.
        queue: String,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A queue's size and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueStatus {
    /// Whether it is paused.
    pub paused: bool,
    /// Jobs per state.
    pub counts: Counts,
}

macro_rules! queue_message {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* } -> $out:ty) => {
        $(#[$doc])*
        #[derive(Message)]
        #[rtype(result = "()")]
        pub struct $name {
            $(#[allow(missing_docs)] pub $field: $ty,)*
            /// Where the answer goes.
            pub reply: Reply<$out>,
        }
    };
}

queue_message!(/// Adds jobs (one or many) in order.
    AddJobs { jobs: Vec<NewJob> } -> Vec<AddResult>);
queue_message!(/// Reads one job.
    GetJob { id: String } -> Option<Job>);
queue_message!(/// Lists jobs in one state.
    ListJobs { state: JobState, offset: usize, limit: usize } -> Vec<Job>);
queue_message!(/// Reads the queue's counts and pause state.
    GetStatus {} -> QueueStatus);
queue_message!(/// Moves a failed job back to waiting.
    RetryJob { id: String } -> ());
queue_message!(/// Removes a job that is not active.
    RemoveJob { id: String } -> bool);
queue_message!(/// Pauses (true) or resumes (false) the queue.
    SetPaused { paused: bool } -> ());
queue_message!(/// Moves up to `limit` failed jobs back to waiting.
    RetryFailed { limit: usize } -> Batch);
queue_message!(/// Removes up to `limit` jobs in `state` older than `older_than`.
    CleanJobs { state: JobState, older_than: Duration, limit: usize } -> usize);
queue_message!(/// Removes up to `limit` ready jobs (and delayed ones if `delayed`).
    DrainJobs { delayed: bool, limit: usize } -> Batch);

/// The actor in front of one queue's store.
pub struct QueueActor {
    store: Arc<dyn QueueStore>,
    mailbox: usize,
}

impl QueueActor {
    /// An actor for `store` with this mailbox capacity.
    pub fn new(store: Arc<dyn QueueStore>, mailbox: usize) -> Self {
        QueueActor { store, mailbox }
    }

    /// Runs `work` to completion before the next message, then sends its answer.
    fn answer<T: 'static>(
        &self,
        ctx: &mut Context<Self>,
        reply: Reply<T>,
        work: impl Future<Output = Result<T, StoreError>> + 'static,
    ) {
        ctx.wait(actix::fut::wrap_future::<_, Self>(async move {
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(work.await);
        }));
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.mailbox);
    }
}

impl actix::Supervised for QueueActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(queue = self.store.queue(), "queue actor restarting");
    }
}

impl Handler<AddJobs> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: AddJobs, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(
            ctx,
            msg.reply,
            async move { store.add_bulk(msg.jobs).await },
        );
    }
}

impl Handler<GetJob> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: GetJob, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move { store.get(&msg.id).await });
    }
}

impl Handler<ListJobs> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: ListJobs, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move {
            store.list(msg.state, msg.offset, msg.limit).await
        });
    }
}

impl Handler<GetStatus> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: GetStatus, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move {
            Ok(QueueStatus {
                paused: store.is_paused().await?,
                counts: store.counts().await?,
            })
        });
    }
}

impl Handler<RetryJob> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: RetryJob, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move { store.retry(&msg.id).await });
    }
}

impl Handler<RemoveJob> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: RemoveJob, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move { store.remove(&msg.id).await });
    }
}

impl Handler<SetPaused> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: SetPaused, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move {
            if msg.paused {
                store.pause().await
            } else {
                store.resume().await
            }
        });
    }
}

impl Handler<RetryFailed> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: RetryFailed, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move {
            store.retry_failed(msg.limit).await
        });
    }
}

impl Handler<CleanJobs> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: CleanJobs, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move {
            store.clean(msg.state, msg.older_than, msg.limit).await
        });
    }
}

impl Handler<DrainJobs> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: DrainJobs, ctx: &mut Self::Context) {
        let store = Arc::clone(&self.store);
        self.answer(ctx, msg.reply, async move {
            store.drain(msg.delayed, msg.limit).await
        });
    }
}

/// A cheap, cloneable handle on one queue.
///
/// Calls through one handle share its mailbox slot: once the mailbox is full they are refused
/// with [`QueueError::Busy`]. As with any actix address, each clone may place one message past
/// the capacity before it too is refused, so the bound is the capacity plus the clones in use.
#[derive(Clone)]
pub struct QueueHandle {
    name: Arc<str>,
    defaults: Arc<JobOptions>,
    mailbox: usize,
    addr: Addr<QueueActor>,
    metrics: QueueMetrics,
    depth: MailboxDepth,
}

impl std::fmt::Debug for QueueHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueHandle")
            .field("name", &self.name)
            .finish()
    }
}

impl QueueHandle {
    pub(crate) fn new(
        name: &str,
        defaults: JobOptions,
        mailbox: usize,
        addr: Addr<QueueActor>,
        metrics: QueueMetrics,
    ) -> Self {
        QueueHandle {
            name: name.into(),
            defaults: Arc::new(defaults),
            mailbox,
            addr,
            metrics,
            depth: MailboxDepth::new("queue"),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The options a job gets where it sets none.
    pub fn defaults(&self) -> &JobOptions {
        &self.defaults
    }

    /// The queue's metric handles.
    pub(crate) fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }

    /// Sends a message and waits for its answer. A reply that never comes (the runtime stopped
    /// while the store call was in flight) is `Stopped` for a read, but of unknown outcome for
    /// a change: the store may have made it.
    async fn call<M, T>(
        &self,
        changes: bool,
        make: impl FnOnce(Reply<T>) -> M,
    ) -> Result<T, QueueError>
    where
        M: Message<Result = ()> + Send + 'static,
        QueueActor: Handler<M>,
    {
        let (tx, rx) = oneshot::channel();
        let _in_flight = self.depth.enter();
        self.addr.try_send(make(tx)).map_err(|err| match err {
            SendError::Full(_) => QueueError::Busy {
                queue: self.name.to_string(),
                capacity: self.mailbox,
            },
            SendError::Closed(_) => QueueError::Stopped {
                queue: self.name.to_string(),
            },
        })?;
        let answer = rx.await.map_err(|_| {
            if changes {
                QueueError::Store(StoreError::OutcomeUnknown {
                    reason: "the runtime stopped while the call was in flight".into(),
                    source: None,
                })
            } else {
                QueueError::Stopped {
                    queue: self.name.to_string(),
                }
            }
        })?;
        Ok(answer?)
    }

    /// Adds jobs in order; returns one result per job.
    pub async fn add(&self, jobs: Vec<NewJob>) -> Result<Vec<AddResult>, QueueError> {
        let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        let added = self.call(true, |reply| AddJobs { jobs, reply }).await?;
        for (name, result) in names.iter().zip(&added) {
            if result.created {
                self.metrics.job(name).added.increment(1);
            }
        }
        Ok(added)
    }

    /// Reads one job.
    pub async fn get(&self, id: &str) -> Result<Option<Job>, QueueError> {
        let id = id.to_string();
        self.call(false, |reply| GetJob { id, reply }).await
    }

    /// Lists jobs in one state.
    pub async fn list(
        &self,
        state: JobState,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Job>, QueueError> {
        self.call(false, |reply| ListJobs {
            state,
            offset,
            limit,
            reply,
        })
        .await
    }

    /// The queue's counts and pause state.
    pub async fn status(&self) -> Result<QueueStatus, QueueError> {
        self.call(false, |reply| GetStatus { reply }).await
    }

    /// Moves a failed job back to waiting.
    pub async fn retry(&self, id: &str) -> Result<(), QueueError> {
        let id = id.to_string();
        self.call(true, |reply| RetryJob { id, reply }).await
    }

    /// Removes a job that is not active; `false` if there was none.
    pub async fn remove(&self, id: &str) -> Result<bool, QueueError> {
        let id = id.to_string();
        self.call(true, |reply| RemoveJob { id, reply }).await
    }

    /// Pauses or resumes the queue for every worker.
    pub async fn set_paused(&self, paused: bool) -> Result<(), QueueError> {
        self.call(true, |reply| SetPaused { paused, reply }).await
    }

    /// Moves up to `limit` failed jobs (those that failed first) back to waiting, as
    /// [`QueueHandle::retry`] does each.
    pub async fn retry_failed(&self, limit: usize) -> Result<Batch, QueueError> {
        self.call(true, |reply| RetryFailed { limit, reply }).await
    }

    /// Removes up to `limit` jobs in `state` that finished (or were added) more than
    /// `older_than` ago; returns how many.
    pub async fn clean(
        &self,
        state: JobState,
        older_than: Duration,
        limit: usize,
    ) -> Result<usize, QueueError> {
        self.call(true, |reply| CleanJobs {
            state,
            older_than,
            limit,
            reply,
        })
        .await
    }

    /// Removes up to `limit` waiting and prioritized jobs, then delayed ones if `delayed`.
    pub async fn drain(&self, delayed: bool, limit: usize) -> Result<Batch, QueueError> {
        self.call(true, |reply| DrainJobs {
            delayed,
            limit,
            reply,
        })
        .await
    }
}
