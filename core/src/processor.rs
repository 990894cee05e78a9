//! The `Processor` trait a queue's jobs run through, the context a job gets, and how one
//! attempt (with its timeout and any panic) becomes an [`Outcome`].

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::job::Job;
use crate::store::{Outcome, QueueStore};

/// Runs the jobs of one queue.
///
/// A pool runs its processors and its lease heartbeats on one thread, so a processor must not
/// hold that thread: CPU-heavy or blocking work goes to `tokio::task::spawn_blocking`. A
/// processor that holds it for longer than a lease lets its job be recovered as stalled.
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Processes one attempt of a job. `Ok` completes it with that value; a plain error
    /// retries while attempts remain; [`ProcessError::unrecoverable`] fails it at once.
    /// A panic fails the attempt with the panic message as its reason.
    async fn process(&self, job: JobContext) -> Result<Value, ProcessError>;
}

/// Why an attempt failed, and whether it is worth another.
///
/// Any `std::error::Error` converts into a retryable `ProcessError`, so `?` works in processors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    message: String,
    unrecoverable: bool,
}

impl ProcessError {
    /// A failure that retries while attempts remain.
    pub fn retry(message: impl Into<String>) -> Self {
        ProcessError {
            message: message.into(),
            unrecoverable: false,
        }
    }

    /// A failure that no retry can fix: the job fails at once.
    pub fn unrecoverable(message: impl Into<String>) -> Self {
        ProcessError {
            message: message.into(),
            unrecoverable: true,
        }
    }

    /// Whether this failure ends the job regardless of attempts left.
    pub fn is_unrecoverable(&self) -> bool {
        self.unrecoverable
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error> From<E> for ProcessError {
    fn from(err: E) -> Self {
        ProcessError::retry(err.to_string())
    }
}

/// What a processor gets for one attempt: the job, and a way to report progress and logs.
pub struct JobContext {
    job: Arc<Job>,
    store: Arc<dyn QueueStore>,
    shutdown: Option<watch::Receiver<bool>>,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("job", &self.job)
            .finish()
    }
}

impl JobContext {
    /// The context of one attempt of `job`, reporting to `store`.
    pub fn new(job: Arc<Job>, store: Arc<dyn QueueStore>) -> Self {
        JobContext {
            job,
            store,
            shutdown: None,
        }
    }

    /// The same context, told about shutdown through `signal` (true once the pool drains).
    pub fn with_shutdown(mut self, signal: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(signal);
        self
    }

    /// Whether the pool has begun shutting down: a long job may checkpoint and return early.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Resolves once the pool begins shutting down (never, outside a pool).
    pub async fn shutdown_requested(&self) {
        match &self.shutdown {
            Some(signal) => {
                let mut signal = signal.clone();
                if signal.wait_for(|draining| *draining).await.is_err() {
                    // The pool is gone: that is a shutdown too.
                }
            }
            None => std::future::pending().await,
        }
    }

    /// The job as it was when this attempt started.
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The job's id.
    pub fn id(&self) -> &str {
        &self.job.id
    }

    /// The job's name.
    pub fn name(&self) -> &str {
        &self.job.name
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> u32 {
        self.job.attempts_made
    }

    /// The payload as JSON text.
    pub fn raw_data(&self) -> &RawValue {
        &self.job.data
    }

    /// The payload as `T` (`serde_json::Value` for any JSON); data of the wrong shape is
    /// unrecoverable (no retry will fix it).
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, ProcessError> {
        serde_json::from_str(self.job.data.get())
            .map_err(|e| ProcessError::unrecoverable(format!("job data does not fit: {e}")))
    }

    /// Reports progress (a percentage or any JSON value). Best effort: a report the store
    /// cannot take (it is unreachable, say) is tried again once, then dropped and counted in
    /// [`dropped_reports`]; it never fails the job.
    pub async fn progress(&self, value: impl Into<Value>) {
        let value = value.into();
        self.report("progress", || {
            self.store.progress(&self.job.id, value.clone())
        })
        .await;
    }

    /// Appends a line to the job's log. Best effort, as [`JobContext::progress`].
    pub async fn log(&self, line: impl Into<String>) {
        let line = line.into();
        self.report("log", || self.store.log(&self.job.id, line.clone()))
            .await;
    }

    async fn report<F, Fut>(&self, what: &str, send: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), StoreError>>,
    {
        let mut result = send().await;
        if matches!(&result, Err(e) if e.is_transient()) {
            tokio::time::sleep(REPORT_RETRY_PAUSE).await;
            result = send().await;
        }
        if let Err(error) = result {
            DROPPED_REPORTS.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(job_id = %self.job.id, what, %error, "job report dropped");
        }
    }
}

/// How long a report waits before its one retry.
const REPORT_RETRY_PAUSE: Duration = Duration::from_millis(100);

static DROPPED_REPORTS: AtomicU64 = AtomicU64::new(0);

/// Progress and log reports dropped so far in this process (the store could not take them).
pub fn dropped_reports() -> u64 {
    DROPPED_REPORTS.load(Ordering::Relaxed)
}

/// A processor made of an async closure.
pub struct FnProcessor<F>(F);

/// Wraps an async closure `|ctx| async move { ... }` as a [`Processor`].
pub fn processor_fn<F, Fut>(f: F) -> FnProcessor<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ProcessError>> + Send + 'static,
{
    FnProcessor(f)
}

#[async_trait]
impl<F, Fut> Processor for FnProcessor<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, ProcessError>> + Send + 'static,
{
    async fn process(&self, job: JobContext) -> Result<Value, ProcessError> {
        (self.0)(job).await
    }
}

/// How one attempt ended, before it is settled.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    /// What to settle the job with.
    pub outcome: Outcome,
    /// The panic message, when the processor panicked.
    pub panic: Option<String>,
}

/// Runs one attempt: the processor under the job's timeout, with a panic caught and turned
/// into a failed attempt.
pub async fn run_attempt(processor: &dyn Processor, ctx: JobContext) -> AttemptResult {
    let timeout = ctx.job.options.timeout_ms.map(Duration::from_millis);
    let job = Arc::clone(&ctx.job);
    let call = AssertUnwindSafe(processor.process(ctx)).catch_unwind();
    let caught = match timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(caught) => caught,
            Err(_) => {
                return AttemptResult {
                    outcome: job
                        .after_failure(format!("timed out after {} ms", limit.as_millis()), true),
                    panic: None,
                };
            }
        },
        None => call.await,
    };
    match caught {
        Ok(Ok(value)) => AttemptResult {
            outcome: Outcome::Completed(value),
            panic: None,
        },
        Ok(Err(err)) => AttemptResult {
            outcome: job.after_failure(err.message, !err.unrecoverable),
            panic: None,
        },
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            AttemptResult {
                outcome: job.after_failure(format!("processor panicked: {message}"), true),
                panic: Some(message),
            }
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}
