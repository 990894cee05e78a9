//! What the built-in processors share: where files are, a bounded pool for CPU work, and the
//! mapping of storage errors to retry or fail.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use stagehand_core::ProcessError;
use stagehand_core::pubsub::PubSub;
use tokio::sync::Semaphore;

use crate::config::ProcessorSettings;
use crate::storage::{Storage, StorageError};

/// Runs CPU-heavy work on blocking threads, a bounded number at once, so that neither an
/// actor's thread (and with it heartbeats and API calls) nor the whole machine is taken.
#[derive(Debug, Clone)]
pub struct CpuPool {
    permits: Arc<Semaphore>,
}

impl CpuPool {
    /// A pool running `threads` tasks at once (0 = one per core).
    pub fn new(threads: usize) -> CpuPool {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        CpuPool {
            permits: Arc::new(Semaphore::new(threads)),
        }
    }

    /// Runs `work` on a blocking thread once a slot is free. If the caller stops waiting (the
    /// attempt timed out, or the process is stopping), [`Work::check`] tells the work so, and
    /// a long step should give up its slot.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Work) -> Result<T, ProcessError> + Send + 'static,
    ) -> Result<T, ProcessError> {
        self.run_with(None, work).await
    }

    async fn run_with<T: Send + 'static>(
        &self,
        progress: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
        work: impl FnOnce(&Work) -> Result<T, ProcessError> + Send + 'static,
    ) -> Result<T, ProcessError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| ProcessError::retry("the CPU pool is closed"))?;
        let ended = Arc::new(AtomicBool::new(false));
        let _tell_when_dropped = EndOnDrop(Arc::clone(&ended));
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&Work { progress, ended })
        })
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => ProcessError::unrecoverable(format!(
                "processing panicked: {}",
                panic_text(panic.as_ref())
            )),
            Err(e) => ProcessError::retry(format!("processing stopped: {e}")),
        })?
    }
}

/// Runs `work` on `cpu`, passing on the progress it reports ([`Work::report`]) to the job
/// while it runs.
pub async fn run_reporting<T: Send + 'static>(
    ctx: &stagehand_core::JobContext,
    cpu: &CpuPool,
    work: impl FnOnce(&Work) -> Result<T, ProcessError> + Send + 'static,
) -> Result<T, ProcessError> {
    let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let running = cpu.run_with(Some(tx), work);
    tokio::pin!(running);
    loop {
        tokio::select! {
            Some(p) = reports.recv() => ctx.progress(p).await,
            done = &mut running => return done,
        }
    }
}

/// What CPU work is handed: a way to report progress, and to learn that nobody waits for it.
#[derive(Debug)]
pub struct Work {
    progress: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
    ended: Arc<AtomicBool>,
}

impl Work {
    /// Work for a test: nobody takes its progress; `ended` as if its attempt had ended.
    #[cfg(test)]
    pub(crate) fn for_test(ended: bool) -> Work {
        Work {
            progress: None,
            ended: Arc::new(AtomicBool::new(ended)),
        }
    }

    /// Reports progress to the job (when the caller passes it on).
    pub fn report(&self, progress: u64) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(progress);
        }
    }

    /// An error once the attempt that asked for this work has ended (it timed out, or the
    /// process is stopping): call it between steps, so abandoned work frees its slot.
    pub fn check(&self) -> Result<(), ProcessError> {
        if self.ended.load(Ordering::Relaxed) {
            Err(ProcessError::retry(
                "stopped: the attempt ended (timed out or shutting down) while this ran",
            ))
        } else {
            Ok(())
        }
    }
}

/// Sets its flag when dropped: the future awaiting CPU work was dropped (or finished).
struct EndOnDrop(Arc<AtomicBool>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".into()
    }
}

/// What the built-in processors are built from.
#[derive(Clone)]
pub struct Resources {
    /// The default storage (`storage.path`).
    pub storage: Storage,
    /// Named storages (`storage.buckets`).
    pub buckets: BTreeMap<String, Storage>,
    /// CPU work.
    pub cpu: CpuPool,
    /// `[processors]`.
    pub settings: ProcessorSettings,
    /// Where the export announces finished files (none: it does not).
    pub pubsub: Option<PubSub>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("storage", &self.storage)
            .field("buckets", &self.buckets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Resources {
    /// Resources over `storage` alone, with default settings.
    pub fn new(storage: Storage) -> Resources {
        let settings = ProcessorSettings::default();
        Resources {
            storage,
            buckets: BTreeMap::new(),
            cpu: CpuPool::new(settings.cpu_threads),
            settings,
            pubsub: None,
        }
    }

    /// The storage called `bucket`, or the default one for none.
    pub fn bucket(&self, bucket: Option<&str>) -> Result<&Storage, ProcessError> {
        match bucket {
            None => Ok(&self.storage),
            Some(name) => self.buckets.get(name).ok_or_else(|| {
                let known: Vec<&str> = self.buckets.keys().map(String::as_str).collect();
                ProcessError::unrecoverable(format!(
                    "no storage bucket '{name}' (configured: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            }),
        }
    }
}

/// A storage failure as a job failure: the backend failing may pass, a bad or missing key
/// will not.
pub fn storage_error(err: StorageError) -> ProcessError {
    match err {
        StorageError::Backend { .. } | StorageError::Directory { .. } => {
            tracing::warn!(error = ?err, "storage failed");
            ProcessError::retry(err.to_string())
        }
        StorageError::InvalidKey { .. }
        | StorageError::NotFound(_)
        | StorageError::TooLarge { .. } => ProcessError::unrecoverable(err.to_string()),
    }
}

/// Progress after step `done` of `total` operations: 10 to 90, as the seed reports it.
pub fn step_progress(done: usize, total: usize) -> u64 {
    10 + (80 * done / total.max(1)) as u64
}

/// A job id as one safe file name: bytes other than letters, digits, `.`, `_` and `-` as `%XX`.
pub fn file_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-') || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_becomes_one_safe_file_name() {
        assert_eq!(file_name("order-42_a.b"), "order-42_a.b");
        assert_eq!(file_name("../x/y"), "%2E.%2Fx%2Fy");
        assert_eq!(file_name("a b:é"), "a%20b%3A%C3%A9");
    }

    #[tokio::test]
    async fn a_panic_in_cpu_work_fails_the_attempt_for_good() {
        let pool = CpuPool::new(1);
        let err = pool
            .run(|_| -> Result<(), ProcessError> { panic!("bad pixel") })
            .await
            .expect_err("panicked");
        assert!(err.is_unrecoverable());
        assert!(err.message().contains("bad pixel"), "{err}");
        assert_eq!(pool.run(|_| Ok(7)).await, Ok(7), "the slot came back");
    }

    #[tokio::test]
    async fn work_nobody_waits_for_learns_it_and_frees_its_slot() {
        let pool = CpuPool::new(1);
        let (started_tx, started) = std::sync::mpsc::channel();
        let abandoned = pool.run(move |work| -> Result<(), ProcessError> {
            let _ = started_tx.send(());
            // A long computation in steps, checking between them.
            loop {
                work.check()?;
                std::thread::yield_now();
            }
        });
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), abandoned).await;
        assert!(waited.is_err(), "it never ends by itself");
        started.recv().expect("it ran");
        // The slot comes back: the next work runs.
        assert_eq!(pool.run(|_| Ok(1)).await, Ok(1));
    }
}
