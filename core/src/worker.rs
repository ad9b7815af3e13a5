//! A farm worker (`workz-build worker`): takes jobs from the queue up to its concurrency, runs
//! each as an in-process build of its engine, renews the job's lease while it runs, and
//! publishes (cache entry, release, events, result, acknowledgement) only while it holds it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::context::{BuildRequest, Fence};
use crate::engine::Engine;
use crate::error::{Error, FarmError, Result};
use crate::events::{EventCallback, EventEmitter, EventRecord};
use crate::farm::{
    Claimed, Delivered, Delivery, FarmClient, FarmQueue, Job, Taken, WorkerInfo, choose, materialize_source,
    performance_score,
};
use crate::process::{CommandSpec, ProcessRunner};
use crate::result::{BuildResult, Placement};

/// How long a slot waits on the queue before looking for stalled jobs again.
const BLOCK: Duration = Duration::from_secs(1);
/// How long `queue.scaleCommand` may take.
const SCALE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a slot looks for jobs it may take over (stalled, or offered and not taken).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Who the worker is and how much it takes on.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub name: String,
    pub concurrency: usize,
}

/// A build's right to publish: its job's token still holds.
struct LeaseFence {
    queue: FarmQueue,
    id: String,
    token: u64,
}

#[async_trait]
impl Fence for LeaseFence {
    async fn check(&self) -> Result<()> {
        if self.queue.holds(&self.id, self.token).await? {
            Ok(())
        } else {
            Err(FarmError::LeaseLost(self.id.clone()).into())
        }
    }
}

/// What a worker knows of itself and of its peers, shared by its slots and its heartbeat.
struct WorkerState {
    options: WorkerOptions,
    monitoring: crate::config::MonitoringConfig,
    capabilities: Vec<String>,
    tools: BTreeMap<String, String>,
    mine: std::sync::Mutex<Mine>,
    peers: std::sync::Mutex<Vec<WorkerInfo>>,
    /// Wakes the heartbeat so that a slot taking or ending a job shows at once.
    changed: tokio::sync::Notify,
}

#[derive(Default)]
struct Mine {
    running: Vec<String>,
    /// Dependency locks this worker installed (latest last), at most [`HELD_DEPENDENCIES`].
    dependencies: VecDeque<String>,
    /// `(capability, seconds)` of its latest builds that ran, at most [`RECENT_BUILDS`].
    recent: VecDeque<(String, f64)>,
    draining: bool,
}

const HELD_DEPENDENCIES: usize = 64;
const RECENT_BUILDS: usize = 20;

impl WorkerState {
    fn mine(&self) -> std::sync::MutexGuard<'_, Mine> {
        self.mine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn info(&self) -> WorkerInfo {
        let mine = self.mine();
        let concurrency = self.options.concurrency.max(1);
        let recent: Vec<(String, f64)> = mine.recent.iter().cloned().collect();
        WorkerInfo {
            name: self.options.name.clone(),
            concurrency,
            running: mine.running.clone(),
            load: (100 * mine.running.len() / concurrency) as u32,
            capabilities: self.capabilities.clone(),
            version: crate::VERSION.to_string(),
            tools: self.tools.clone(),
            dependencies: mine.dependencies.iter().cloned().collect(),
            performance: performance_score(&recent, &self.monitoring),
            accepting: !mine.draining,
        }
    }

    fn peers(&self) -> Vec<WorkerInfo> {
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// What a finished build tells about this worker: its dependencies are installed here, and
    /// how fast it builds.
    fn learn(&self, job: &Job, result: &BuildResult) {
        if !result.succeeded() || result.cache.hit {
            return;
        }
        let mut mine = self.mine();
        if let Some(lock) = &job.dependencies {
            mine.dependencies.retain(|d| d != lock);
            mine.dependencies.push_back(lock.clone());
            if mine.dependencies.len() > HELD_DEPENDENCIES {
                mine.dependencies.pop_front();
            }
        }
        mine.recent.push_back((job.capability.clone(), result.duration));
        if mine.recent.len() > RECENT_BUILDS {
            mine.recent.pop_front();
        }
    }
}

/// Run a worker until `stop` is cancelled; then it takes no new job, finishes those it holds
/// and deregisters.
pub async fn run_worker(engine: Engine, options: WorkerOptions, stop: CancellationToken) -> Result<()> {
    let farm = engine.farm().await?.clone();
    let tools = crate::doctor::tool_versions(engine.config()).await;
    // Flutter builds of every target run the SDK: without it (the probe runs the configured
    // program), this worker takes none, whatever the host could otherwise do.
    let capabilities = engine
        .buildable_targets()
        .into_iter()
        .filter(|c| !c.starts_with("flutter:") || tools.contains_key("flutter"))
        .collect();
    let state = Arc::new(WorkerState {
        monitoring: engine.config().monitoring.clone(),
        capabilities,
        tools,
        options: options.clone(),
        mine: Default::default(),
        peers: Default::default(),
        changed: tokio::sync::Notify::new(),
    });
    let streams = Arc::new(farm.queue.streams_for(&options.name, &state.capabilities));
    farm.queue.ensure_groups(&streams).await?;
    farm.queue.register(&state.info()).await?;
    let slots_done = CancellationToken::new();
    let heartbeat =
        tokio::spawn(heartbeat(engine.clone(), farm.queue.clone(), state.clone(), stop.clone(), slots_done.clone()));
    let slots: Vec<_> = (0..options.concurrency.max(1))
        .map(|_| {
            let (engine, farm, state, stop, streams) =
                (engine.clone(), farm.clone(), state.clone(), stop.clone(), streams.clone());
            tokio::spawn(async move { slot(engine, farm, &streams, state, stop).await })
        })
        .collect();
    for slot in slots {
        let _ = slot.await;
    }
    slots_done.cancel();
    let _ = heartbeat.await;
    farm.queue.deregister(&options.name).await?;
    Ok(())
}

/// Keep the registration fresh (and at once when a slot's work changes), learn the peers,
/// turn a `farm drain NAME` from anywhere into the same as SIGTERM here, and (one worker of the
/// farm at a time) run `queue.scaleCommand` when the desired worker count changes.
async fn heartbeat(
    engine: Engine,
    queue: FarmQueue,
    state: Arc<WorkerState>,
    stop: CancellationToken,
    slots_done: CancellationToken,
) {
    let every = (queue.lease / 3).clamp(Duration::from_millis(500), Duration::from_secs(2));
    loop {
        if let Err(e) = scale(&engine, &queue, &state.options.name, every * 3).await {
            tracing::warn!("worker {}: scaling: {e}", state.options.name);
        }
        if stop.is_cancelled() {
            state.mine().draining = true;
        }
        if let Err(e) = queue.register(&state.info()).await {
            tracing::warn!("worker heartbeat failed: {e}");
        }
        match queue.workers().await {
            Ok(workers) => {
                *state.peers.lock().unwrap_or_else(|p| p.into_inner()) =
                    workers.into_iter().filter(|w| w.name != state.options.name).collect()
            }
            Err(e) => tracing::warn!("worker heartbeat failed: {e}"),
        }
        if matches!(queue.drain_requested(&state.options.name).await, Ok(true)) {
            stop.cancel();
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = state.changed.notified() => {}
            _ = stop.cancelled(), if !state.mine().draining => {}
            _ = slots_done.cancelled() => break,
        }
    }
}

/// Run `queue.scaleCommand` with the desired worker count appended when the count differs from
/// the one last run, if this worker leads the scaling (a lease of `lead` in Redis).
async fn scale(engine: &Engine, queue: &FarmQueue, name: &str, lead: Duration) -> Result<()> {
    let config = &engine.config().queue;
    let Some(argv) = &config.scale_command else { return Ok(()) };
    if !queue.lead("scaler", name, lead).await? {
        return Ok(());
    }
    let status = queue.farm_status(config.min_workers, config.max_workers).await?;
    let desired = status.desired_workers;
    if queue.last_scaled().await? == Some(desired) {
        return Ok(());
    }
    let dir = engine.dirs().work.join("scale");
    std::fs::create_dir_all(&dir).map_err(|e| Error::internal(format!("{}: {e}", dir.display())))?;
    let env = BTreeMap::from([
        ("WORKZ_DESIRED_WORKERS".to_string(), desired.to_string()),
        ("WORKZ_ACTIVE_WORKERS".to_string(), status.workers.len().to_string()),
        ("WORKZ_QUEUED".to_string(), status.queued_total().to_string()),
    ]);
    let runner = ProcessRunner::new(
        dir.clone(),
        &[],
        env,
        EventEmitter::new(format!("scale-{desired}"), None, None, None),
        CancellationToken::new(),
        engine.config().limits.max_log_bytes,
        // The operator's own command, not an app's: it runs as configured.
        std::sync::Arc::new(crate::sandbox::Sandbox::off()),
    );
    let spec = CommandSpec {
        program: argv[0].clone(),
        args: argv[1..].iter().cloned().chain([desired.to_string()]).collect(),
        cwd: dir,
        env: BTreeMap::new(),
        timeout: Some(SCALE_TIMEOUT),
        network: true,
        writable: Vec::new(),
    };
    runner.run(&spec).await?;
    tracing::info!("worker {name}: scaled to {desired} workers");
    queue.scaled(desired).await?;
    Ok(())
}

/// One job at a time, until `stop`.
async fn slot(
    engine: Engine,
    farm: FarmClient,
    streams: &[Vec<String>],
    state: Arc<WorkerState>,
    stop: CancellationToken,
) {
    let name = state.options.name.clone();
    let mut blocking = None;
    let mut last_sweep: Option<Instant> = None;
    while !stop.is_cancelled() {
        let next = match next_entry(&farm.queue, &state, streams, &mut blocking, &mut last_sweep, &stop).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!("worker {name}: {e}");
                blocking = None;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => {}
                }
                // Redis may have come back without the groups (no persistence): make them again.
                let _ = farm.queue.ensure_groups(streams).await;
                continue;
            }
        };
        let Some((delivered, taken)) = next else { continue };
        let id = delivered.id.clone();
        let taken = match taken {
            // Read and taken at once: no free peer could have scored higher.
            Some(Taken::Run(mut claimed)) => {
                let me = state.info();
                claimed.placement = Some(choose(&me, &[], delivered.capability(), delivered.dependencies.as_deref()));
                Ok(Taken::Run(claimed))
            }
            Some(taken) => Ok(taken),
            None => {
                let Some(placement) = place(&farm.queue, &state, &delivered).await else { continue };
                farm.queue.take(&name, &delivered, placement.as_ref()).await
            }
        };
        let claimed = match taken {
            Ok(Taken::Run(claimed)) => *claimed,
            Ok(Taken::Dropped) => continue,
            Ok(Taken::Invalid(e)) => {
                let result = BuildResult::rejected(id.clone(), &Error::from(e));
                if let Err(e) = farm.queue.dead_letter(&id, &delivered.stream, &delivered.entry, &result).await {
                    tracing::warn!("worker {name}: {e}");
                }
                continue;
            }
            Err(e) => {
                tracing::warn!("worker {name}: {e}");
                continue;
            }
        };
        state.mine().running.push(id.clone());
        state.changed.notify_one();
        let job = claimed.job.clone();
        if let Some(result) = run_job(&engine, &farm, &name, claimed).await {
            state.learn(&job, &result);
        }
        state.mine().running.retain(|r| *r != id);
        state.changed.notify_one();
    }
}

/// Where a job this worker got should run. `None`: handed to a better free worker. For a job
/// offered here, the offer already recorded why.
async fn place(queue: &FarmQueue, state: &WorkerState, delivered: &Delivered) -> Option<Option<Placement>> {
    let name = &state.options.name;
    let only_me = |reason: String| Placement { worker: name.clone(), reason, scores: Default::default() };
    match &delivered.how {
        Delivery::Offered { .. } => Some(None),
        Delivery::Reclaimed { from } => Some(Some(only_me(format!("reclaimed: {from} stopped renewing its lease")))),
        Delivery::Unaccepted { offered_to } => Some(Some(only_me(format!(
            "offered to {offered_to}, not taken within {} s",
            queue.offer_grace().as_secs_f64()
        )))),
        Delivery::New => {
            let peers = state.peers();
            let mut placement =
                choose(&state.info(), &peers, delivered.capability(), delivered.dependencies.as_deref());
            if placement.worker == *name {
                return Some(Some(placement));
            }
            let to = peers.iter().find(|p| p.name == placement.worker)?;
            match queue.offer(delivered, to, &placement).await {
                Ok(true) => None,
                Ok(false) => {
                    placement.reason = format!("{} was busy", placement.worker);
                    placement.worker = name.clone();
                    Some(Some(placement))
                }
                Err(e) => {
                    tracing::warn!("worker {name}: {e}");
                    placement.reason = format!("{} could not be offered the job", placement.worker);
                    placement.worker = name.clone();
                    Some(Some(placement))
                }
            }
        }
    }
}

/// A stalled or unaccepted job first (looked for at most once a second), else the next one
/// offered here or queued (taken at once when no free peer could score higher), else wait.
async fn next_entry(
    queue: &FarmQueue,
    state: &WorkerState,
    streams: &[Vec<String>],
    blocking: &mut Option<redis::aio::MultiplexedConnection>,
    last_sweep: &mut Option<Instant>,
    stop: &CancellationToken,
) -> Result<Option<(Delivered, Option<Taken>)>> {
    let name = &state.options.name;
    if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
        *last_sweep = Some(Instant::now());
        // The first list is this worker's offers: the queue's streams follow.
        if let Some(found) = queue.sweep(name, &streams[1..].concat()).await? {
            return Ok(Some((found, None)));
        }
    }
    let keep = !state.peers().iter().any(|p| p.free() && state.capabilities.iter().any(|c| p.can_build(c)));
    if let Some(found) = queue.poll(name, streams, keep).await? {
        return Ok(Some(found));
    }
    if blocking.is_none() {
        *blocking = Some(queue.blocking_connection(BLOCK).await?);
    }
    let connection = blocking.as_mut().expect("made above");
    tokio::select! {
        next = queue.wait_entry(name, streams, connection, BLOCK) => Ok(next?.map(|d| (d, None))),
        _ = stop.cancelled() => Ok(None),
    }
}

/// Run one job to its end and publish its result, while the lease holds; the result of a
/// build that ran.
async fn run_job(engine: &Engine, farm: &FarmClient, name: &str, claimed: Claimed) -> Option<BuildResult> {
    let queue = &farm.queue;
    let id = claimed.job.id.clone();
    let retry_attempts = u64::from(engine.config().build_system.retry_attempts);
    if claimed.deliveries > retry_attempts + 1 {
        let error = Error::Internal(format!(
            "the job was taken {} times and never finished (its worker died or stalled each time); dead-lettered",
            claimed.deliveries - 1
        ));
        let result = BuildResult::rejected(id.clone(), &error);
        if let Err(e) = queue.dead_letter(&id, &claimed.stream, &claimed.entry, &result).await {
            tracing::warn!("worker {name}: {e}");
        }
        return None;
    }
    let dir = engine.dirs().work.join("farm").join(format!("{id}-{}", claimed.token));
    let source = dir.join("src");
    let materialized =
        materialize_source(&id, &claimed.job.source, farm.content.as_ref(), &source, &engine.config().limits).await;
    let mut result = match materialized {
        Err(e) => BuildResult::rejected(id.clone(), &Error::from(e)),
        Ok(()) => build(engine, queue, name, &claimed, &source).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    result.worker = Some(name.to_string());
    result.placement = claimed.placement.clone();
    // Redis may be restarting: try for a while before leaving the job to be taken again.
    for attempt in 0..20 {
        match queue.complete(&claimed, &result).await {
            Ok(true) => break,
            Ok(false) => {
                tracing::warn!("worker {name}: {}", FarmError::LeaseLost(id));
                break;
            }
            Err(e) if attempt == 19 => tracing::warn!("worker {name}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Some(result)
}

/// The build itself, its events sent to the farm in order, its lease renewed meanwhile.
async fn build(
    engine: &Engine,
    queue: &FarmQueue,
    name: &str,
    claimed: &Claimed,
    source: &std::path::Path,
) -> BuildResult {
    let job = &claimed.job;
    let request = BuildRequest {
        source: crate::source::SourceSpec::Directory(source.to_path_buf()),
        app_config: job.app_config.clone(),
        target: job.target.clone(),
        priority: job.priority,
        force: job.force,
        timeout: job.timeout,
        list_files: job.list_files,
        idempotency_key: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<EventRecord>();
    let on_event: EventCallback = Arc::new(move |record: &EventRecord| {
        let _ = tx.send(record.clone());
    });
    let fence = Arc::new(LeaseFence { queue: queue.clone(), id: job.id.clone(), token: claimed.token });
    let handle = engine.submit_as(job.id.clone(), request, Some(on_event), Some(fence));
    let cancel = handle.cancel_token();

    let forward = {
        let (queue, id, token) = (queue.clone(), job.id.clone(), claimed.token);
        tokio::spawn(async move {
            while let Some(record) = rx.recv().await {
                if !matches!(queue.emit(&id, token, &record).await, Ok(true)) {
                    // Lost the lease (or Redis): the events are another attempt's now.
                    while rx.recv().await.is_some() {}
                }
            }
        })
    };
    let done = CancellationToken::new();
    let renew = {
        let (queue, name, claimed, done, cancel) =
            (queue.clone(), name.to_string(), claimed.clone(), done.clone(), cancel.clone());
        tokio::spawn(async move {
            let every = (queue.lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = done.cancelled() => return,
                }
                match queue.renew(&name, &claimed).await {
                    Ok((true, false)) => {}
                    Ok((true, true)) => cancel.cancel(),
                    Ok((false, _)) => {
                        tracing::warn!("worker {name}: {}", FarmError::LeaseLost(claimed.job.id.clone()));
                        cancel.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!("worker {name}: {e}"),
                }
            }
        })
    };
    let result = handle.wait().await;
    done.cancel();
    let _ = renew.await;
    let _ = tokio::time::timeout(Duration::from_secs(10), forward).await;
    result
}
