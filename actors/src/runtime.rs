//! Building and running the actor tree: `Runtime::builder()` -> queues, processors, limits ->
//! `start()` -> a [`RuntimeHandle`] to reach the queues and shut down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::Mutex;
use stagehand_core::{JobOptions, MemoryStore, Processor, QueueStore};

use crate::alert::{Alert, AlertActor, AlertSink, RecentAlerts};
use crate::config::{MailboxConfig, PoolSettings, SupervisionConfig};
use crate::health::StoreHealth;
use crate::pool::PoolSpec;
use crate::queue::{QueueActor, QueueHandle};
use crate::supervisor::{GetPoolStates, PoolState, RuntimeSupervisor, Shutdown};

/// One queue of the runtime.
#[derive(Clone)]
pub struct QueueSpec {
    name: String,
    store: Option<Arc<dyn QueueStore>>,
    processor: Option<Arc<dyn Processor>>,
    settings: PoolSettings,
    defaults: JobOptions,
    max_jobs: Option<u64>,
}

impl QueueSpec {
    /// A queue with an in-memory store, concurrency 1, the default job options and no
    /// processor (jobs wait until one is set).
    pub fn new(name: impl Into<String>) -> Self {
        QueueSpec {
            name: name.into(),
            store: None,
            processor: None,
            settings: PoolSettings::with_concurrency(1),
            defaults: JobOptions::default(),
            max_jobs: Some(stagehand_core::memory::DEFAULT_MAX_JOBS),
        }
    }

    /// Runs its jobs through `processor`.
    pub fn processor(mut self, processor: Arc<dyn Processor>) -> Self {
        self.processor = Some(processor);
        self
    }

    /// Keeps its jobs in `store` rather than in memory.
    pub fn store(mut self, store: Arc<dyn QueueStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Runs up to `n` jobs at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// Sets every pool setting.
    pub fn settings(mut self, settings: PoolSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The options a job gets where it sets none.
    pub fn defaults(mut self, defaults: JobOptions) -> Self {
        self.defaults = defaults;
        self
    }

    /// For the in-memory store: the most jobs it holds (`None`: no limit). A store given with
    /// [`QueueSpec::store`] keeps its own limit.
    pub fn max_jobs(mut self, max_jobs: Option<u64>) -> Self {
        self.max_jobs = max_jobs;
        self
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Entry point: `Runtime::builder()`.
#[derive(Debug)]
pub struct Runtime;

impl Runtime {
    /// A builder with no queues and default limits.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }
}

/// Collects the runtime's queues and limits.
#[derive(Default)]
pub struct RuntimeBuilder {
    queues: Vec<QueueSpec>,
    mailbox: MailboxConfig,
    supervision: SupervisionConfig,
    sinks: Vec<Arc<dyn AlertSink>>,
    dedup_window: Duration,
}

impl RuntimeBuilder {
    /// Adds a queue.
    pub fn queue(mut self, spec: QueueSpec) -> Self {
        self.queues.push(spec);
        self
    }

    /// Mailbox capacities per actor kind.
    pub fn mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = mailbox;
        self
    }

    /// Restart intensity and delays, for pools and their worker slots.
    pub fn supervision(mut self, supervision: SupervisionConfig) -> Self {
        self.supervision = supervision;
        self
    }

    /// Adds somewhere alerts go.
    pub fn alert_sink(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Drops repeats of an alert (same kind, queue and job) within this window.
    pub fn alert_dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Starts the tree. Call from inside an actix `System` (as `#[actix_web::main]` gives):
    /// each queue gets an arbiter (a thread) for its queue actor and pool.
    pub fn start(self) -> RuntimeHandle {
        let (sinks, window, capacity) = (self.sinks, self.dedup_window, self.mailbox.alert);
        // Restarted in place (same address) should it ever stop.
        let alerts =
            actix::Supervisor::start(move |_| AlertActor::new(sinks.clone(), window, capacity));
        let health = Arc::new(StoreHealth::default());
        let mut queues = BTreeMap::new();
        let mut stores = BTreeMap::new();
        let mut pools = Vec::new();
        let mut arbiters = Vec::new();
        for spec in self.queues {
            let arbiter = Arbiter::new();
            let store = spec.store.clone().unwrap_or_else(|| {
                Arc::new(MemoryStore::new(spec.name.clone()).with_max_jobs(spec.max_jobs))
            });
            let capacity = self.mailbox.queue;
            let actor_store = Arc::clone(&store);
            let addr = actix::Supervisor::start_in_arbiter(&arbiter.handle(), move |_| {
                QueueActor::new(actor_store, capacity)
            });
            let metrics = crate::metrics::QueueMetrics::new(&spec.name);
            queues.insert(
                spec.name.clone(),
                QueueHandle::new(&spec.name, spec.defaults, capacity, addr, metrics.clone()),
            );
            if let Some(processor) = spec.processor {
                let pool = PoolSpec {
                    store: Arc::clone(&store),
                    processor,
                    settings: spec.settings,
                    supervision: self.supervision,
                    mailbox: self.mailbox.pool,
                    health: Arc::clone(&health),
                    metrics,
                };
                pools.push((spec.name.clone(), pool, arbiter.handle()));
            }
            stores.insert(spec.name, store);
            arbiters.push(arbiter);
        }
        let supervisor = RuntimeSupervisor::new(
            alerts.clone(),
            pools,
            self.supervision,
            self.mailbox.supervisor,
        )
        .start();
        RuntimeHandle {
            inner: Arc::new(Inner {
                queues,
                stores,
                supervisor,
                alerts,
                health,
                arbiters: Mutex::new(arbiters),
            }),
        }
    }
}

struct Inner {
    queues: BTreeMap<String, QueueHandle>,
    stores: BTreeMap<String, Arc<dyn QueueStore>>,
    supervisor: Addr<RuntimeSupervisor>,
    alerts: Addr<AlertActor>,
    health: Arc<StoreHealth>,
    arbiters: Mutex<Vec<Arbiter>>,
}

/// A cheap, cloneable handle on a running runtime.
#[derive(Clone)]
pub struct RuntimeHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("queues", &self.inner.queues.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl RuntimeHandle {
    /// The queue with this name.
    pub fn queue(&self, name: &str) -> Option<&QueueHandle> {
        self.inner.queues.get(name)
    }

    /// Every queue, by name.
    pub fn queues(&self) -> impl Iterator<Item = &QueueHandle> {
        self.inner.queues.values()
    }

    /// A queue's store, for reading or administering it directly (bypassing its actor).
    pub fn store(&self, name: &str) -> Option<Arc<dyn QueueStore>> {
        self.inner.stores.get(name).cloned()
    }

    /// Each pool's state as its supervisor sees it.
    pub async fn pool_states(&self) -> BTreeMap<String, PoolState> {
        self.inner
            .supervisor
            .send(GetPoolStates)
            .await
            .unwrap_or_default()
    }

    /// The queues whose pool waits for its store (its last call failed); empty when every
    /// pool works.
    pub fn waiting_for_store(&self) -> Vec<String> {
        self.inner.health.waiting()
    }

    /// The store health every loop reports to (the scheduler's too).
    pub(crate) fn health(&self) -> &Arc<StoreHealth> {
        &self.inner.health
    }

    /// The alert actor, for actors started beside the runtime (pub/sub subscribers).
    pub fn alerts(&self) -> Addr<AlertActor> {
        self.inner.alerts.clone()
    }

    /// The latest alerts, newest last.
    pub async fn recent_alerts(&self) -> Vec<Alert> {
        self.inner
            .alerts
            .send(RecentAlerts)
            .await
            .unwrap_or_default()
    }

    /// Stops fetching, lets active jobs finish within `grace`, hands back what did not, then
    /// stops the queues' arbiters. Returns once every pool has drained.
    pub async fn shutdown(&self, grace: Duration) {
        // A closed mailbox means the supervisor is already gone: nothing left to drain.
        let _ = self.inner.supervisor.send(Shutdown { grace }).await;
        for arbiter in self.inner.arbiters.lock().drain(..) {
            arbiter.stop();
        }
    }
}
