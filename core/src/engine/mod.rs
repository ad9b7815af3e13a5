//! The engine: a queue of builds in front of the pipeline.
//!
//! Builds submitted to an [`Engine`] wait in an in-process priority queue; at most
//! `maxConcurrentBuilds` run at once. Each build runs the pipeline under its
//! timeout (a warning at the warning time, a hard stop at the limit) and its
//! cancellation token; when it ends, its scratch directories are removed, it is
//! recorded in the build history and a `finished` event is sent.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cache::{CacheBackend, PruneReport, TierStats, TierUsage, compile_pattern};
use crate::config::EngineConfig;
use crate::context::{BuildContext, BuildRequest, Fence, Services};
use crate::farm::FarmClient;

mod farm;
use crate::context::{PlatformBuilder, PlatformRegistry};
use crate::error::{Error, Result};
use crate::events::{BuildEvent, EventCallback, EventEmitter, EventRecord};
use crate::explain::Explanation;
use crate::history::{BuildHistory, BuildRecord};
use crate::pipeline::Pipeline;
use crate::queue::PriorityGate;
pub use crate::queue::QueueStatus;
use crate::result::{AppRef, ArtifactRef, Artifacts, BuildResult, BuildStatus, CacheOutcome};
use crate::store::{ArtifactStore, LocalArtifactStore};

/// Which runtime [`runtime`] starts, chosen once per process before it is first used.
static ONE_THREAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Run the engine's async work on the thread that calls [`block_on`] instead of on a pool of
/// workers. For a host that blocks on every build it starts (the CLI): builds still run side
/// by side (their heavy work is on blocking threads and the core's pools), and a cache hit
/// starts no runtime threads. Must be called before the runtime is first used; has no effect
/// after.
pub fn run_on_calling_thread() {
    ONE_THREAD.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The process-wide tokio runtime used when the caller is not inside one (bindings, CLI).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut builder = if ONE_THREAD.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        };
        builder.enable_all().thread_name("workz-build").build().expect("the process can start a tokio runtime")
    })
}

fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.spawn(fut),
        Err(_) => runtime().spawn(fut),
    }
}

/// Resolved locations of the engine's directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineDirs {
    pub cache: PathBuf,
    pub artifacts: PathBuf,
    pub work: PathBuf,
}

impl EngineDirs {
    /// Config first, then `WORKZ_CACHE_DIR` / `WORKZ_ARTIFACTS_DIR`, then the user's cache and data dirs.
    pub fn resolve(config: &EngineConfig) -> EngineDirs {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute()).unwrap_or_else(|| home.join(fallback))
        };
        let env_dir = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache = config
            .cache
            .dir
            .clone()
            .or_else(|| env_dir("WORKZ_CACHE_DIR"))
            .unwrap_or_else(|| xdg("XDG_CACHE_HOME", ".cache").join("workz-build"));
        let artifacts = config
            .storage
            .artifacts_dir
            .clone()
            .or_else(|| env_dir("WORKZ_ARTIFACTS_DIR"))
            .unwrap_or_else(|| xdg("XDG_DATA_HOME", ".local/share").join("workz-build/artifacts"));
        let work = config.storage.work_dir.clone().unwrap_or_else(|| cache.join("work"));
        EngineDirs { cache, artifacts, work }
    }
}

/// Cache statistics: live counters of this process and what each tier holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    pub tiers: Vec<TierStats>,
    pub usage: Vec<TierUsage>,
}

struct Shared {
    services: Services,
    dirs: EngineDirs,
    pipeline: Pipeline,
    history: BuildHistory,
    gate: Arc<PriorityGate>,
    events: broadcast::Sender<EventRecord>,
    /// Parent of every build's token: cancelled when the last `Engine` handle goes.
    root_cancel: CancellationToken,
    farm: tokio::sync::OnceCell<FarmClient>,
    metrics: crate::monitor::BuildMetrics,
    notifier: Arc<crate::notify::Notifier>,
}

/// Cancels the engine's builds when the last [`Engine`] handle is dropped.
struct Owner(CancellationToken);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The build engine. Cheap to clone; dropping the last clone cancels its queued and
/// running builds (their handles then report `cancelled`).
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    _owner: Arc<Owner>,
}

/// Sets up an [`Engine`] with custom builders, cache, store or stages.
pub struct EngineSetup {
    config: EngineConfig,
    platforms: PlatformRegistry,
    cache: Option<Option<Arc<dyn CacheBackend>>>,
    store: Option<Arc<dyn ArtifactStore>>,
    pipeline: Pipeline,
}

impl EngineSetup {
    /// Add or replace the builder for an app type.
    pub fn platform(mut self, builder: Arc<dyn PlatformBuilder>) -> Self {
        self.platforms.register(builder);
        self
    }

    /// Use this cache instead of the one the config describes (`None`: no cache).
    pub fn cache(mut self, cache: Option<Arc<dyn CacheBackend>>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn store(mut self, store: Arc<dyn ArtifactStore>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn pipeline(mut self, pipeline: Pipeline) -> Self {
        self.pipeline = pipeline;
        self
    }

    pub fn build(self) -> Result<Engine> {
        let config = Arc::new(self.config);
        config.validate("engine config")?;
        let dirs = EngineDirs::resolve(&config);
        farm::check_buckets(&config, &dirs)?;
        let io = |what: &str, path: &Path, e: std::io::Error| {
            Error::Store(crate::store::StoreError::Io {
                op: "create",
                path: path.to_path_buf(),
                source: std::io::Error::new(e.kind(), format!("{what}: {e}")),
            })
        };
        std::fs::create_dir_all(&dirs.work).map_err(|e| io("work dir", &dirs.work, e))?;
        let history_dir = dirs.cache.join("history");
        let history = BuildHistory::open(&history_dir).map_err(|e| io("history", &history_dir, e))?;
        let cache = match self.cache {
            Some(cache) => cache,
            None => crate::cache::from_config(&config, &dirs.cache)?,
        };
        let store: Arc<dyn ArtifactStore> = match self.store {
            Some(store) => store,
            None => Arc::new(LocalArtifactStore::open(&dirs.artifacts)?),
        };
        let (events, _) = broadcast::channel(1024);
        let root_cancel = CancellationToken::new();
        let notifier = crate::notify::Notifier::new(&config.notifications, &dirs.cache);
        let shared = Arc::new(Shared {
            services: Services {
                config: config.clone(),
                cache,
                store,
                destinations: crate::store::Destination::all(&config).into(),
                platforms: Arc::new(self.platforms),
                work_root: dirs.work.clone(),
                state_dir: dirs.cache.clone(),
                sandbox: Arc::new(crate::sandbox::Sandbox::new(
                    &config.sandbox,
                    crate::config::SandboxMode::Auto,
                    config.platforms.sdk_paths(),
                    config.platforms.flutter.sdk_path.iter().map(|sdk| sdk.join("bin/cache")).collect(),
                )),
            },
            dirs,
            pipeline: self.pipeline,
            history,
            gate: Arc::new(PriorityGate::new(config.build_system.max_concurrent_builds)),
            events,
            root_cancel: root_cancel.clone(),
            farm: tokio::sync::OnceCell::new(),
            metrics: Default::default(),
            notifier,
        });
        Ok(Engine { shared, _owner: Arc::new(Owner(root_cancel)) })
    }
}

/// A submitted build.
pub struct BuildHandle {
    build_id: String,
    events: Option<mpsc::UnboundedReceiver<EventRecord>>,
    cancel: CancellationToken,
    result: oneshot::Receiver<BuildResult>,
}

impl BuildHandle {
    pub fn build_id(&self) -> &str {
        &self.build_id
    }

    /// Cancel the build (queued or running).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A token that cancels the build, to hand to another task.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The build's events, in order, ending after `finished` (once; later calls get `None`).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<EventRecord>> {
        self.events.take()
    }

    /// The next event, waiting for it; `None` after `finished` (or once the events were taken).
    pub async fn next_event(&mut self) -> Option<EventRecord> {
        self.events.as_mut()?.recv().await
    }

    /// The next event if one has arrived, without waiting.
    pub fn try_next_event(&mut self) -> Option<EventRecord> {
        self.events.as_mut()?.try_recv().ok()
    }

    /// The result if the build has ended, without waiting (`None` while it runs).
    pub fn try_wait(&mut self) -> Option<BuildResult> {
        match self.result.try_recv() {
            Ok(result) => Some(result),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(self.lost()),
        }
    }

    /// Wait for the result.
    pub async fn wait(mut self) -> BuildResult {
        self.result().await
    }

    /// Wait for the result, keeping the handle (call once: the result is handed over).
    pub async fn result(&mut self) -> BuildResult {
        match (&mut self.result).await {
            Ok(result) => result,
            Err(_) => self.lost(),
        }
    }

    fn lost(&self) -> BuildResult {
        BuildResult::rejected(self.build_id.clone(), &Error::internal("the build task ended without a result"))
    }
}

impl Engine {
    /// An engine with the built-in builders and the cache and store the config describes.
    pub fn new(config: EngineConfig) -> Result<Engine> {
        Engine::setup(config).build()
    }

    pub fn setup(config: EngineConfig) -> EngineSetup {
        EngineSetup {
            config,
            platforms: PlatformRegistry::with_defaults(),
            cache: None,
            store: None,
            pipeline: Pipeline::standard(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.services.config
    }

    pub fn dirs(&self) -> &EngineDirs {
        &self.shared.dirs
    }

    pub fn history(&self) -> &BuildHistory {
        &self.shared.history
    }

    /// Every `appType:target` this engine has a builder for and whose host requirements this
    /// machine meets (what a farm worker says it can take).
    pub fn buildable_targets(&self) -> Vec<String> {
        let mut targets = Vec::new();
        for builder in self.shared.services.platforms.all() {
            for target in builder.supported_targets() {
                if builder.host_requirements(target).iter().all(|r| r.check().is_ok()) {
                    targets.push(format!("{}:{target}", builder.app_type()));
                }
            }
        }
        targets
    }

    pub(crate) fn services(&self) -> &Services {
        &self.shared.services
    }

    /// This engine's build metrics (builds, durations, stage durations, cache hits by tier),
    /// as Prometheus (OpenMetrics) text.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.encode()
    }

    /// Every event of every build of this engine (lossy for slow receivers).
    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.shared.events.subscribe()
    }

    pub fn queue_status(&self) -> QueueStatus {
        self.shared.gate.status()
    }

    /// Where this engine's submitted builds wait and run.
    pub fn job_queue(&self) -> JobQueue {
        match self.config().queue.redis {
            Some(_) => JobQueue::Redis,
            None => JobQueue::InProcess,
        }
    }

    /// Queue a build on the engine's [`JobQueue`]. `on_event` is called for each of its events
    /// on the thread that runs it; the handle's events, cancel and result are the same either way.
    pub fn submit(&self, request: BuildRequest, on_event: Option<EventCallback>) -> BuildHandle {
        match self.job_queue() {
            JobQueue::Redis => self.submit_to_farm(request, on_event),
            JobQueue::InProcess => self.submit_local(request, on_event),
        }
    }

    /// Queue a build in this process, whatever the config says of a farm (a person's
    /// `workz-build build`, a farm worker's builds).
    pub fn submit_local(&self, request: BuildRequest, on_event: Option<EventCallback>) -> BuildHandle {
        self.submit_as(new_build_id(), request, on_event, None)
    }

    /// Queue a build in this process under `build_id`, publishing only while `fence` allows.
    pub(crate) fn submit_as(
        &self,
        build_id: String,
        request: BuildRequest,
        on_event: Option<EventCallback>,
        fence: Option<Arc<dyn Fence>>,
    ) -> BuildHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let (result_tx, result_rx) = oneshot::channel();
        let cancel = self.shared.root_cancel.child_token();
        let emitter = EventEmitter::new(build_id.clone(), Some(tx), Some(self.shared.events.clone()), on_event);
        let shared = self.shared.clone();
        let token = cancel.clone();
        let id = build_id.clone();
        let span = tracing::info_span!("build", build_id = %build_id);
        spawn(
            async move {
                let result =
                    crate::events::scope(emitter.clone(), run_build(shared, id, request, emitter, token, fence)).await;
                let _ = result_tx.send(result);
            }
            .instrument(span),
        );
        BuildHandle { build_id, events: Some(rx), cancel, result: result_rx }
    }

    /// Queue a build and wait for its result.
    pub async fn build(&self, request: BuildRequest) -> BuildResult {
        self.submit(request, None).wait().await
    }

    /// Build, blocking the calling thread (for callers outside any async runtime).
    pub fn build_blocking(&self, request: BuildRequest, on_event: Option<EventCallback>) -> BuildResult {
        let handle = self.submit(request, on_event);
        block_on(handle.wait())
    }

    /// The app's `buildTargets`, read from the request's app config or its `workz.json`
    /// (empty when there are none or the config cannot be read: the build then says why).
    pub fn configured_targets(&self, request: &BuildRequest) -> Vec<String> {
        let text = match (&request.app_config, &request.source) {
            (Some(value), _) => value.to_string(),
            (None, crate::source::SourceSpec::Directory(dir)) => {
                std::fs::read_to_string(dir.join(crate::config::APP_CONFIG_FILE)).unwrap_or_default()
            }
            (None, crate::source::SourceSpec::Files(files)) => files
                .get(crate::config::APP_CONFIG_FILE)
                .and_then(|f| std::str::from_utf8(&f.0).ok())
                .unwrap_or_default()
                .to_string(),
        };
        crate::config::AppConfig::from_json("app config", &text).map(|p| p.value.build_targets).unwrap_or_default()
    }

    /// Whether the next build of `request` would hit the cache, and if not, what changed.
    pub async fn explain(&self, request: BuildRequest) -> Result<Explanation> {
        crate::testing::panic_point("explain");
        let (emitter, _) = EventEmitter::collecting("explain");
        let mut ctx = BuildContext::new(
            "explain".into(),
            request,
            self.shared.services.clone(),
            emitter,
            self.shared.root_cancel.child_token(),
        );
        self.shared.pipeline.run(&mut ctx, Some("dependencies")).await?;
        let components = crate::stages::key_components(&ctx).await?;
        let key = components.key();
        let cache_enabled = self.config().build_system.cache_enabled && self.shared.services.cache.is_some();
        let tier = match (&self.shared.services.cache, cache_enabled) {
            (Some(cache), true) => cache.get_entry(&key).await.ok().flatten().map(|hit| hit.tier),
            _ => None,
        };
        let app = ctx.app()?.app_id();
        let previous = self.shared.history.last(&app, &components.target).map(|last| (last.record, last.components));
        Ok(Explanation::new(app, &components, tier, cache_enabled, previous))
    }

    fn cache(&self) -> Result<&Arc<dyn CacheBackend>> {
        self.shared
            .services
            .cache
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("the cache is disabled in the engine config".into()))
    }

    /// Wait for the engine's background work to finish (the copies of hits from shared tiers
    /// into this machine's tiers): a host calls it before its process exits.
    pub async fn flush(&self) {
        if let Some(cache) = &self.shared.services.cache {
            cache.flush().await;
        }
        self.shared.notifier.flush().await;
    }

    pub async fn cache_stats(&self) -> Result<CacheStats> {
        let cache = self.cache()?;
        Ok(CacheStats { tiers: cache.stats(), usage: cache.usage().await? })
    }

    /// Remove the entries matching a glob over `<app>/<target>/<key>`; returns how many
    /// builds (an entry in several tiers counts once).
    pub async fn cache_invalidate(&self, pattern: &str) -> Result<u64> {
        let pattern = compile_pattern(pattern)?;
        Ok(self.cache()?.invalidate(&pattern).await?.len() as u64)
    }

    pub async fn cache_prune(&self) -> Result<PruneReport> {
        Ok(self.cache()?.prune().await?)
    }

    pub async fn cache_clear(&self) -> Result<()> {
        Ok(self.cache()?.clear().await?)
    }
}

/// Run a future to completion from synchronous code.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        // Inside a runtime: block this worker thread without starving the others. (Not in a
        // one-thread runtime, see `run_on_calling_thread`: its only thread must not block.)
        Ok(handle) => tokio::task::block_in_place(|| handle.block_on(fut)),
        Err(_) => runtime().block_on(fut),
    }
}

/// Build ids sort by time: `b` + UUIDv7 without dashes.
/// The queue submitted builds go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobQueue {
    /// This process's priority queue (`buildSystem.maxConcurrentBuilds` at once): the embedded
    /// default.
    InProcess,
    /// The farm's Redis queue (`queue.redis`): `workz-build worker` processes build the jobs.
    Redis,
}

fn new_build_id() -> String {
    format!("b{}", uuid::Uuid::now_v7().simple())
}

async fn run_build(
    shared: Arc<Shared>,
    build_id: String,
    request: BuildRequest,
    events: EventEmitter,
    cancel: CancellationToken,
    fence: Option<Arc<dyn Fence>>,
) -> BuildResult {
    let submitted = Instant::now();
    let config = shared.services.config.clone();
    let (default_limit, default_warning) = config.timeouts();
    // A request's own timeout within the config's range (1 s to a week): no arithmetic on it
    // can overflow.
    let limit = request.timeout.map(|t| Duration::from_secs(t.clamp(1, 604_800))).unwrap_or(default_limit);
    let warning = if request.timeout.is_some() { limit / 3 * 2 } else { default_warning };
    // Wait for a slot; a build cancelled while queued never starts.
    let gate = shared.gate.status();
    let position = gate.queued + usize::from(gate.running >= gate.max_concurrent);
    if position > 0 {
        events.emit(BuildEvent::Queued { position });
    }
    let permit = tokio::select! {
        permit = shared.gate.acquire(request.priority) => Some(permit),
        _ = cancel.cancelled() => None,
    };
    let mut ctx = BuildContext::new(build_id.clone(), request, shared.services.clone(), events.clone(), cancel.clone());
    ctx.fence = fence;
    let outcome = match permit {
        None => Err(Error::Cancelled),
        Some(_permit) => {
            events.emit(BuildEvent::Started);
            let started = tokio::time::Instant::now();
            // A panic in a stage fails this build with `internal`; the engine and its host live on.
            let run = crate::error::catch_panic_async(shared.pipeline.run(&mut ctx, None)).map(|outcome| outcome?);
            tokio::pin!(run);
            let warn_at = tokio::time::sleep_until(started + warning);
            tokio::pin!(warn_at);
            let deadline = tokio::time::sleep_until(started + limit);
            tokio::pin!(deadline);
            let mut warned = false;
            let outcome = loop {
                tokio::select! {
                    result = &mut run => break result,
                    _ = &mut warn_at, if !warned => {
                        warned = true;
                        events.warn("build_slow", format!(
                            "the build has run {}s of its {}s limit", warning.as_secs(), limit.as_secs()));
                    }
                    _ = cancel.cancelled() => break Err(Error::Cancelled),
                    _ = &mut deadline => break Err(Error::TimedOut(limit)),
                }
            };
            let cancel_requested = cancel.is_cancelled();
            // Whatever is still running for this build (processes, blocking copies) stops now.
            cancel.cancel();
            match outcome {
                // A process killed by the cancellation reports the cancellation, not its exit.
                Err(Error::Process(_)) if cancel_requested => Err(Error::Cancelled),
                other => other,
            }
        }
    };
    cleanup(&shared, &ctx).await;
    finish(&shared, ctx, outcome, submitted.elapsed())
}

/// Remove the build directory, and the staging directory unless it was published.
async fn cleanup(shared: &Shared, ctx: &BuildContext) {
    let (build_dir, output_dir) = ctx.scratch_dirs();
    if let Some(dir) = build_dir
        && !shared.services.config.storage.keep_build_dirs
    {
        remove_dir_retrying(&dir).await;
    }
    if ctx.release.is_none()
        && let Some(dir) = output_dir
        && let Err(e) = shared.services.store.discard(&dir).await
    {
        tracing::warn!("discarding staged output {} failed: {e}", dir.display());
    }
}

/// A cancelled copy may still be finishing a file: retry briefly rather than leave the dir.
async fn remove_dir_retrying(dir: &Path) {
    for attempt in 0..20 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if attempt == 19 => tracing::warn!("removing build dir {} failed: {e}", dir.display()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn finish(shared: &Shared, mut ctx: BuildContext, outcome: Result<()>, elapsed: Duration) -> BuildResult {
    let fence = ctx.fence.clone();
    let status = match &outcome {
        Ok(()) => BuildStatus::Succeeded,
        Err(Error::Cancelled) => BuildStatus::Cancelled,
        Err(Error::TimedOut(_)) => BuildStatus::TimedOut,
        Err(_) => BuildStatus::Failed,
    };
    let error = outcome.err().map(|e| {
        tracing::warn!(build_id = %ctx.build_id, code = e.code(), "build failed: {e}");
        e.report()
    });
    let duration = elapsed.as_secs_f64();
    let cache =
        CacheOutcome { key: ctx.key.map(|k| k.to_string()), hit: ctx.cache_hit.is_some(), tier: ctx.cache_hit.clone() };
    let artifacts = ctx.release.as_ref().map(|release| Artifacts {
        path: release.location.clone(),
        entry_point: ctx.entry_point.clone(),
        size: ctx.files.iter().map(|f| f.size).sum(),
        files: match ctx.request.list_files {
            true => {
                ctx.files.iter().map(|f| ArtifactRef { path: f.path.clone(), size: f.size, blake3: f.blake3 }).collect()
            }
            false => Vec::new(),
        },
        reused: ctx.reused_release,
        deployments: ctx.deployments.clone(),
    });
    let assessment = ctx.assess(duration, cache.hit);
    let app = ctx.app.as_ref();
    let build_type = format!(
        "{}_{}",
        app.map(|a| a.app_type.to_string()).unwrap_or_else(|| "unknown".into()),
        ctx.target.as_deref().unwrap_or("unknown")
    );
    let record = BuildRecord {
        build_id: ctx.build_id.clone(),
        app: app.map(|a| a.app_id()),
        version: app.map(|a| a.version.clone()),
        app_type: app.map(|a| a.app_type.to_string()),
        target: ctx.target.clone(),
        status,
        finished_at: crate::cache::unix_now(),
        duration,
        timings: ctx.timings.clone(),
        cache: cache.clone(),
        error: error.clone(),
        release: ctx.release.as_ref().map(|r| r.location.clone()),
        // Where the app is, so that `cache warm` can build the most built apps again.
        source: match &ctx.request.source {
            crate::source::SourceSpec::Directory(dir) => {
                std::fs::canonicalize(dir).ok().map(|d| d.display().to_string())
            }
            crate::source::SourceSpec::Files(_) => None,
        },
        suggestions: assessment.suggestions.clone(),
    };
    if let Err(e) = shared.history.record(&record, ctx.components.as_ref()) {
        tracing::warn!("recording build history failed: {e}");
    }
    ctx.events.emit(BuildEvent::Finished { status, duration });
    let mut warnings = ctx.warnings;
    warnings.extend(ctx.events.take_shared_warnings());
    let result = BuildResult {
        build_id: ctx.build_id,
        status,
        app: app.map(|a| AppRef { name: a.name.clone(), version: a.version.clone(), app_type: a.app_type.to_string() }),
        target: ctx.target,
        cache,
        artifacts,
        timings: ctx.timings,
        duration,
        warnings,
        error,
        worker: None,
        placement: None,
        suggestions: assessment.suggestions,
    };
    shared.metrics.record(&build_type, &result);
    let app_hooks = app.map(|a| a.notifications.webhooks.as_slice()).unwrap_or_default();
    let alerts = shared.notifier.alerts(&shared.history, &shared.services.config.monitoring.alerts);
    shared.notifier.build_finished(&result, app_hooks, alerts, fence, shared.farm.get().map(|f| f.queue.clone()));
    result
}
