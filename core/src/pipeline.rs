//! The staged pipeline: validate → dependencies → cache lookup (hit: restore) →
//! build → optimize → package → cache store → deploy.
//!
//! Each [`Stage`] runs over a [`BuildContext`]. The pipeline times every stage,
//! emits stage events, checks cancellation between stages, retries a stage that
//! failed with a retryable error, and skips the stages that a cache hit makes
//! unnecessary. Status and notification (history record, `finished` event) are
//! done by the engine for every outcome, failures included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::builder::{BuilderRegistry, PlatformBuilder};
use crate::cache::{ArtifactFile, BlobRestore, BlobSource, CacheBackend, CacheEntry, CacheKey, KeyComponents};
use crate::config::{APP_CONFIG_FILE, AppConfig, ConfigError, EngineConfig};
use crate::error::{BuildError, Error, Result};
use crate::events::{BuildEvent, EventEmitter, StageOutcome};
use crate::process::{CommandSpec, ProcessRunner};
use crate::source::SourceTree;
use crate::store::{ArtifactStore, MANIFEST_FILE, Manifest, Release, ReleaseId};

/// What a build asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRequest {
    pub source: crate::source::SourceSpec,
    /// The app config as JSON; when absent it is read from `workz.json` at the app root.
    #[serde(default)]
    pub app_config: Option<serde_json::Value>,
    /// The target to build; default: the app's first `buildTargets` entry, else the platform's first.
    #[serde(default)]
    pub target: Option<String>,
    /// Higher runs first when builds wait in the queue.
    #[serde(default)]
    pub priority: i32,
    /// Skip the cache lookup (the result is still stored).
    #[serde(default)]
    pub force: bool,
    /// Seconds; overrides `buildSystem.buildTimeout` for this build.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// List every published file in the result (`artifacts.files`). A host that does not read
    /// the list says `false`: it stays in the release's `manifest.json`, and the result a
    /// binding hands over shrinks from one entry per file to a few fields.
    #[serde(default = "list_files_default")]
    pub list_files: bool,
}

fn list_files_default() -> bool {
    true
}

impl BuildRequest {
    /// Build the app in `dir` with its own `workz.json`.
    pub fn directory(dir: impl Into<PathBuf>) -> BuildRequest {
        BuildRequest {
            source: crate::source::SourceSpec::Directory(dir.into()),
            app_config: None,
            target: None,
            priority: 0,
            force: false,
            timeout: None,
            list_files: true,
        }
    }
}

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

/// Seconds spent in each stage, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTimings(pub Vec<(String, f64)>);

impl StageTimings {
    pub fn record(&mut self, stage: &str, seconds: f64) {
        match self.0.iter_mut().find(|(s, _)| s == stage) {
            Some((_, total)) => *total += seconds,
            None => self.0.push((stage.to_string(), seconds)),
        }
    }

    pub fn get(&self, stage: &str) -> Option<f64> {
        self.0.iter().find(|(s, _)| s == stage).map(|(_, t)| *t)
    }
}

impl Serialize for StageTimings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (stage, secs) in &self.0 {
            map.serialize_entry(stage, secs)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StageTimings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // serde_json keeps object order only with a feature; the stage order is recovered
        // from the pipeline's order where it matters (display), so a map is enough here.
        let map = BTreeMap::<String, f64>::deserialize(d)?;
        Ok(StageTimings(map.into_iter().collect()))
    }
}

/// A warning raised during a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub message: String,
}

/// Whether the pipeline goes on after a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// End the pipeline successfully now.
    Finish,
}

/// One step of the pipeline.
#[async_trait]
pub trait Stage: Send + Sync {
    /// The stage's name in events and timings.
    fn name(&self) -> &str;

    /// Whether the stage runs after a cache hit (build, optimize, package and store do not).
    fn runs_on_cache_hit(&self) -> bool {
        true
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow>;
}

/// Shared services a build runs with.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<EngineConfig>,
    pub cache: Option<Arc<dyn CacheBackend>>,
    pub store: Arc<dyn ArtifactStore>,
    pub builders: Arc<BuilderRegistry>,
    /// Where build directories are made.
    pub work_root: PathBuf,
    /// Engine state kept with the cache (history, remembered file digests).
    pub state_dir: PathBuf,
}

/// Everything a build's stages share.
pub struct BuildContext {
    pub build_id: String,
    pub request: BuildRequest,
    pub config: Arc<EngineConfig>,
    pub events: EventEmitter,
    pub cancel: CancellationToken,
    pub services: Services,

    pub source: Option<Arc<SourceTree>>,
    pub app: Option<AppConfig>,
    pub target: Option<String>,
    pub builder: Option<Arc<dyn PlatformBuilder>>,
    pub dependencies: BTreeMap<String, String>,
    pub components: Option<KeyComponents>,
    pub key: Option<CacheKey>,
    /// The tier that served a cache hit.
    pub cache_hit: Option<String>,
    build_dir: Option<PathBuf>,
    build_dir_materialized: bool,
    output_dir: Option<PathBuf>,
    pub entry_point: Option<String>,
    pub artifact_type: Option<String>,
    pub files: Vec<ArtifactFile>,
    pub release: Option<Release>,
    /// The cache hit was served by the app's identical latest release: nothing was copied.
    pub reused_release: bool,
    pub warnings: Vec<Warning>,
    pub timings: StageTimings,
}

impl BuildContext {
    pub fn new(
        build_id: String,
        request: BuildRequest,
        services: Services,
        events: EventEmitter,
        cancel: CancellationToken,
    ) -> Self {
        BuildContext {
            build_id,
            request,
            config: services.config.clone(),
            events,
            cancel,
            services,
            source: None,
            app: None,
            target: None,
            builder: None,
            dependencies: BTreeMap::new(),
            components: None,
            key: None,
            cache_hit: None,
            build_dir: None,
            build_dir_materialized: false,
            output_dir: None,
            entry_point: None,
            artifact_type: None,
            files: Vec::new(),
            release: None,
            reused_release: false,
            warnings: Vec::new(),
            timings: StageTimings::default(),
        }
    }

    fn missing(what: &str) -> Error {
        Error::internal(format!("{what} is not known yet: a stage ran out of order"))
    }

    pub fn source(&self) -> Result<&Arc<SourceTree>> {
        self.source.as_ref().ok_or_else(|| Self::missing("the source"))
    }

    pub fn app(&self) -> Result<&AppConfig> {
        self.app.as_ref().ok_or_else(|| Self::missing("the app config"))
    }

    pub fn target(&self) -> Result<&str> {
        self.target.as_deref().ok_or_else(|| Self::missing("the target"))
    }

    pub fn builder(&self) -> Result<Arc<dyn PlatformBuilder>> {
        self.builder.clone().ok_or_else(|| Self::missing("the builder"))
    }

    /// The staging directory the outputs go to (handed out by the artifact store).
    pub fn output_dir(&self) -> Result<&Path> {
        self.output_dir.as_deref().ok_or_else(|| Self::missing("the output directory"))
    }

    /// The output directory, staged on first use.
    pub async fn ensure_output_dir(&mut self) -> Result<PathBuf> {
        if let Some(dir) = &self.output_dir {
            return Ok(dir.clone());
        }
        let dir = self.services.store.stage(&self.build_id).await?;
        self.output_dir = Some(dir.clone());
        Ok(dir)
    }

    fn record_hit(&mut self, hit: crate::cache::Hit) {
        let key = self.key.map(|k| k.to_string()).unwrap_or_default();
        self.events.emit(BuildEvent::CacheHit { tier: hit.tier.clone(), key });
        self.cache_hit = Some(hit.tier);
        self.entry_point = hit.entry.entry_point;
        self.artifact_type = Some(hit.entry.artifact_type);
        self.files = hit.entry.files;
    }

    /// The build directory, if the sources were written out (hooks or a builder asked).
    pub fn materialized_build_dir(&self) -> Option<&Path> {
        self.build_dir.as_deref().filter(|_| self.build_dir_materialized)
    }

    /// The build directory with the sources written into it (done once, on first use).
    pub async fn build_dir(&mut self) -> Result<PathBuf> {
        let dir = self.build_dir_path();
        if !self.build_dir_materialized {
            let source = self.source()?.clone();
            let cancel = self.cancel.clone();
            let target = dir.clone();
            tokio::task::spawn_blocking(move || source.materialize(&target, &|_| true, &|| cancel.is_cancelled()))
                .await
                .map_err(|e| Error::internal(e.to_string()))?
                .map_err(|e| {
                    if self.cancel.is_cancelled() {
                        Error::Cancelled
                    } else {
                        BuildError::Io { action: format!("writing the sources to {}", dir.display()), source: e }.into()
                    }
                })?;
            self.build_dir_materialized = true;
        }
        Ok(dir)
    }

    fn build_dir_path(&mut self) -> PathBuf {
        self.build_dir.get_or_insert_with(|| self.services.work_root.join(&self.build_id)).clone()
    }

    /// Directories this build created, to remove when it ends.
    pub(crate) fn scratch_dirs(&self) -> (Option<PathBuf>, Option<PathBuf>) {
        (self.build_dir.clone(), self.output_dir.clone())
    }

    /// A process runner confined to the build directory, with the build's environment.
    pub fn runner(&self, build_dir: &Path) -> ProcessRunner {
        let mut extra = BTreeMap::new();
        // The app config's `env` (part of the key through the config); the engine's own
        // variables below win over it.
        if let Some(app) = &self.app {
            for (name, value) in &app.env {
                if !matches!(name.as_str(), "PATH" | "HOME") && !name.starts_with("WORKZ_BUILD") {
                    extra.insert(name.clone(), value.clone());
                }
            }
        }
        extra.insert("WORKZ_BUILD_ID".to_string(), self.build_id.clone());
        if let Some(t) = &self.target {
            extra.insert("WORKZ_TARGET".to_string(), t.clone());
        }
        extra.insert("CI".to_string(), "true".to_string());
        // Hooks such as `flutter pub get` use the configured SDK before any on PATH.
        if let Some(sdk) = self.app.as_ref().and_then(|a| self.config.platforms.get(a.app_type).sdk_path.as_ref()) {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let dirs = std::iter::once(sdk.join("bin")).chain(std::env::split_paths(&path));
            if let Ok(joined) = std::env::join_paths(dirs) {
                extra.insert("PATH".to_string(), joined.to_string_lossy().into_owned());
            }
        }
        let mut allowed = self.config.cache.env_allow_list.clone();
        allowed.extend(self.toolchain_env().into_iter().map(String::from));
        ProcessRunner::new(
            build_dir.to_path_buf(),
            &allowed,
            extra,
            self.events.clone(),
            self.cancel.clone(),
            self.config.limits.max_log_bytes,
        )
    }

    /// The host variables the builder says this target's toolchain needs.
    fn toolchain_env(&self) -> Vec<&'static str> {
        match (&self.builder, &self.target) {
            (Some(builder), Some(target)) => builder.toolchain_env(target),
            _ => Vec::new(),
        }
    }

    /// Emit a warning event and keep it for the result.
    pub fn warn(&mut self, code: &str, message: impl Into<String>) {
        let message = message.into();
        self.events.warn(code, message.clone());
        self.warnings.push(Warning { code: code.to_string(), message });
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.cancel.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }
}

/// An ordered list of stages.
#[derive(Clone)]
pub struct Pipeline {
    stages: Vec<Arc<dyn Stage>>,
}

impl Pipeline {
    /// The standard stages.
    pub fn standard() -> Pipeline {
        Pipeline {
            stages: vec![
                Arc::new(ValidateStage),
                Arc::new(DependenciesStage),
                Arc::new(CacheLookupStage),
                Arc::new(BuildStage),
                Arc::new(OptimizeStage),
                Arc::new(PackageStage),
                Arc::new(CacheStoreStage),
                Arc::new(DeployStage),
            ],
        }
    }

    /// Names of the stages in order.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.name().to_string()).collect()
    }

    /// Insert `stage` after the stage named `after` (at the end if there is none).
    pub fn insert_after(&mut self, after: &str, stage: Arc<dyn Stage>) {
        let at = self.stages.iter().position(|s| s.name() == after).map_or(self.stages.len(), |i| i + 1);
        self.stages.insert(at, stage);
    }

    /// Replace the stage with the same name.
    pub fn replace(&mut self, stage: Arc<dyn Stage>) -> bool {
        match self.stages.iter_mut().find(|s| s.name() == stage.name()) {
            Some(slot) => {
                *slot = stage;
                true
            }
            None => false,
        }
    }

    /// Run the stages up to and including `last` (all when `None`).
    pub async fn run(&self, ctx: &mut BuildContext, last: Option<&str>) -> Result<()> {
        for stage in &self.stages {
            ctx.check_cancelled()?;
            if ctx.cache_hit.is_some() && !stage.runs_on_cache_hit() {
                ctx.events.emit(BuildEvent::StageFinished {
                    stage: stage.name().to_string(),
                    outcome: StageOutcome::Skipped,
                    seconds: 0.0,
                });
                continue;
            }
            let flow = self.run_stage(stage.as_ref(), ctx).await?;
            if flow == Flow::Finish || last == Some(stage.name()) {
                break;
            }
        }
        Ok(())
    }

    async fn run_stage(&self, stage: &dyn Stage, ctx: &mut BuildContext) -> Result<Flow> {
        let name = stage.name().to_string();
        let retries = ctx.config.build_system.retry_attempts;
        let backoff = ctx.config.build_system.retry_backoff;
        let mut attempt = 0;
        loop {
            ctx.events.emit(BuildEvent::StageStarted { stage: name.clone() });
            let started = Instant::now();
            crate::testing::panic_point(&name);
            let result = stage.run(ctx).await;
            let seconds = started.elapsed().as_secs_f64();
            ctx.timings.record(&name, seconds);
            let outcome = if result.is_ok() { StageOutcome::Succeeded } else { StageOutcome::Failed };
            ctx.events.emit(BuildEvent::StageFinished { stage: name.clone(), outcome, seconds });
            match result {
                Err(e) if e.is_retryable() && attempt < retries && !ctx.cancel.is_cancelled() => {
                    let delay = backoff * f64::from(2u32.saturating_pow(attempt));
                    attempt += 1;
                    ctx.events.emit(BuildEvent::Retrying {
                        stage: name.clone(),
                        attempt,
                        delay_seconds: delay,
                        error: e.report(),
                    });
                    tokio::time::sleep(Duration::from_secs_f64(delay.min(3600.0))).await;
                }
                other => return other,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The standard stages
// ---------------------------------------------------------------------------

/// Takes in the source, reads the app config, picks the builder and the target,
/// checks host requirements and lets the builder validate the sources.
pub struct ValidateStage;

#[async_trait]
impl Stage for ValidateStage {
    fn name(&self) -> &str {
        "validate"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let spec = ctx.request.source.clone();
        let config = ctx.config.clone();
        let stat_dir = ctx.services.state_dir.join("stat");
        let tree = tokio::task::spawn_blocking(move || {
            SourceTree::intake(&spec, &config.limits, &config.source, Some(&stat_dir))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        let tree = Arc::new(tree);
        ctx.source = Some(tree.clone());

        let parsed = match &ctx.request.app_config {
            Some(value) => AppConfig::from_json("app config", &value.to_string())?,
            None => {
                let file = tree.get(APP_CONFIG_FILE).ok_or_else(|| {
                    ConfigError::AppConfigMissing(format!("{APP_CONFIG_FILE} not found at the app root"))
                })?;
                let bytes = file.read()?;
                let text = std::str::from_utf8(&bytes).map_err(|_| ConfigError::Parse {
                    file: APP_CONFIG_FILE.into(),
                    line: 1,
                    column: 1,
                    message: "not valid UTF-8".into(),
                })?;
                AppConfig::from_json(APP_CONFIG_FILE, text)?
            }
        };
        for key in &parsed.unknown_keys {
            ctx.warn("config_unknown_key", format!("{APP_CONFIG_FILE}: unknown key `{key}` ignored"));
        }
        let app = parsed.value;

        let platform = ctx.config.platforms.get(app.app_type);
        if !platform.enabled {
            return Err(BuildError::PlatformDisabled { platform: app.app_type.to_string() }.into());
        }
        let builder = ctx.services.builders.get(app.app_type)?;
        let target = ctx
            .request
            .target
            .clone()
            .or_else(|| app.build_targets.first().cloned())
            .or_else(|| platform.targets.first().cloned())
            .or_else(|| builder.supported_targets().first().map(|t| t.to_string()))
            .ok_or_else(|| Error::InvalidRequest("no target given and none configured".into()))?;
        // Known from here on, so that a result for this target says which one it is.
        ctx.target = Some(target.clone());
        if !builder.supported_targets().contains(&target.as_str()) {
            return Err(BuildError::UnsupportedTarget {
                app_type: app.app_type.to_string(),
                target,
                supported: builder.supported_targets().join(", "),
            }
            .into());
        }
        for requirement in builder.host_requirements(&target) {
            if let Err(reason) = requirement.check() {
                return Err(BuildError::PlatformRequirementUnmet { target, reason }.into());
            }
        }
        ctx.app = Some(app);
        ctx.builder = Some(builder.clone());
        builder.validate(ctx).await?;
        Ok(Flow::Continue)
    }
}

/// Resolves dependency versions (they go into the cache key; installing happens on a miss).
pub struct DependenciesStage;

#[async_trait]
impl Stage for DependenciesStage {
    fn name(&self) -> &str {
        "dependencies"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let builder = ctx.builder()?;
        ctx.dependencies = builder.resolve_dependencies(ctx).await?;
        Ok(Flow::Continue)
    }
}

/// The normalised build configuration that goes into the cache key: the app config with
/// its defaults, and the engine settings that change outputs.
fn normalized_config(ctx: &BuildContext) -> Result<serde_json::Value> {
    let app = ctx.app()?;
    let platform = ctx.config.platforms.get(app.app_type);
    let to_value = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| Error::internal(e.to_string()));
    Ok(serde_json::json!({
        "app": to_value(serde_json::to_value(app))?,
        "optimization": to_value(serde_json::to_value(&ctx.config.optimization))?,
        "platform": to_value(serde_json::to_value(platform))?,
    }))
}

/// Compute the cache key components of the context's build.
pub async fn key_components(ctx: &BuildContext) -> Result<KeyComponents> {
    let builder = ctx.builder()?;
    let app = ctx.app()?;
    let toolchain_env = ctx.toolchain_env();
    let env = ctx
        .config
        .cache
        .env_allow_list
        .iter()
        .map(String::as_str)
        .chain(toolchain_env)
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
        .collect();
    Ok(KeyComponents {
        engine_version: crate::VERSION.to_string(),
        app_type: app.app_type.to_string(),
        target: ctx.target()?.to_string(),
        toolchain: builder.toolchain(ctx).await?,
        config: normalized_config(ctx)?,
        dependencies: ctx.dependencies.clone(),
        env,
        files: ctx.source()?.files().iter().map(|f| (f.path.clone(), f.digest)).collect(),
    })
}

/// Computes the key and, on a hit, restores the artifacts (every blob verified).
pub struct CacheLookupStage;

#[async_trait]
impl Stage for CacheLookupStage {
    fn name(&self) -> &str {
        "cache"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let components = key_components(ctx).await?;
        let key = components.key();
        ctx.key = Some(key);
        ctx.components = Some(components);
        let store = ctx.services.store.clone();

        let cache = match (&ctx.services.cache, ctx.config.build_system.cache_enabled, ctx.request.force) {
            (Some(cache), true, false) => cache.clone(),
            _ => {
                ctx.events.emit(BuildEvent::CacheMiss { key: key.to_string() });
                return Ok(Flow::Continue);
            }
        };
        let hit = match cache.get_entry(&key).await {
            Ok(hit) => hit,
            Err(e) => {
                ctx.warn("cache_failed", format!("cache lookup failed, building without it: {e}"));
                None
            }
        };
        let Some(hit) = hit else {
            ctx.events.emit(BuildEvent::CacheMiss { key: key.to_string() });
            return Ok(Flow::Continue);
        };
        // The app's latest release may already be exactly this build: then nothing is copied.
        let app_id = ctx.app()?.app_id();
        match store.reuse(&app_id, &key.to_string(), &hit.entry.files).await {
            Ok(Some(release)) => {
                ctx.release = Some(release);
                ctx.reused_release = true;
                ctx.record_hit(hit);
                return Ok(Flow::Continue);
            }
            Ok(None) => {}
            Err(e) => ctx.warn("artifact_store_failed", format!("checking the latest release failed: {e}")),
        }
        let out = ctx.ensure_output_dir().await?;
        let wanted: Vec<BlobRestore> =
            hit.entry.files.iter().map(|f| BlobRestore { digest: f.blake3, dest: out.join(&f.path) }).collect();
        let unavailable = match cache.restore_blobs(&wanted).await {
            Ok(report) => report.unavailable.len(),
            Err(e) => {
                ctx.warn("cache_failed", format!("restoring from the cache failed, building instead: {e}"));
                wanted.len()
            }
        };
        if unavailable > 0 {
            ctx.warn(
                "cache_entry_incomplete",
                format!("cache entry {key} had {unavailable} missing or corrupt blob(s): evicted, building instead"),
            );
            if let Err(e) = cache.remove_entry(&key).await {
                ctx.warn("cache_failed", format!("evicting the incomplete entry failed: {e}"));
            }
            // Start the output afresh: a partial restore must not leak into the build.
            store.discard(&out).await?;
            ctx.output_dir = None;
            ctx.events.emit(BuildEvent::CacheMiss { key: key.to_string() });
            return Ok(Flow::Continue);
        }
        ctx.record_hit(hit);
        Ok(Flow::Continue)
    }
}

/// Runs the preBuild hooks, the platform build, then the postBuild hooks.
pub struct BuildStage;

impl BuildStage {
    async fn run_hooks(ctx: &mut BuildContext, which: &str, hooks: &[String]) -> Result<()> {
        if hooks.is_empty() {
            return Ok(());
        }
        let dir = ctx.build_dir().await?;
        let runner = ctx.runner(&dir);
        for hook in hooks {
            tracing::info!(build_id = %ctx.build_id, hook = %hook, "running {which} hook");
            let spec = CommandSpec::from_command_line(hook, &dir)?;
            runner.run(&spec).await?;
            ctx.check_cancelled()?;
        }
        Ok(())
    }
}

#[async_trait]
impl Stage for BuildStage {
    fn name(&self) -> &str {
        "build"
    }

    fn runs_on_cache_hit(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        ctx.ensure_output_dir().await?;
        let hooks = ctx.app()?.hooks.clone();
        Self::run_hooks(ctx, "preBuild", &hooks.pre_build).await?;
        let builder = ctx.builder()?;
        let output = builder.build(ctx).await?;
        ctx.entry_point = output.entry_point;
        ctx.artifact_type = Some(builder.artifact_type(ctx.target()?));
        Self::run_hooks(ctx, "postBuild", &hooks.post_build).await?;
        Ok(Flow::Continue)
    }
}

/// The builder's own optimisation, then precompressed variants per `optimization.compression`.
pub struct OptimizeStage;

#[async_trait]
impl Stage for OptimizeStage {
    fn name(&self) -> &str {
        "optimize"
    }

    fn runs_on_cache_hit(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let builder = ctx.builder()?;
        builder.optimize(ctx).await?;
        let compression = ctx.config.optimization.compression;
        let out = ctx.output_dir()?.to_path_buf();
        tokio::task::spawn_blocking(move || crate::output::precompress(&out, compression))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(BuildError::io("precompressing the output"))?;
        Ok(Flow::Continue)
    }
}

/// Lists and hashes the outputs; an empty output is an error.
pub struct PackageStage;

#[async_trait]
impl Stage for PackageStage {
    fn name(&self) -> &str {
        "package"
    }

    fn runs_on_cache_hit(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let out = ctx.output_dir()?.to_path_buf();
        // The release manifest would silently replace the app's own file.
        if out.join(MANIFEST_FILE).exists() {
            return Err(crate::store::StoreError::ReservedName(MANIFEST_FILE).into());
        }
        let files = tokio::task::spawn_blocking(move || crate::output::list_artifacts(&out))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(BuildError::io("listing the output"))?;
        if files.is_empty() {
            return Err(BuildError::ArtifactMissing(format!("the {} build wrote no files", ctx.target()?)).into());
        }
        if let Some(entry) = &ctx.entry_point
            && !files.iter().any(|f| &f.path == entry)
        {
            return Err(BuildError::ArtifactMissing(format!("entry point {entry} is not in the output")).into());
        }
        ctx.files = files;
        Ok(Flow::Continue)
    }
}

/// Stores the outputs in the cache: blobs first, then the entry that refers to them.
pub struct CacheStoreStage;

#[async_trait]
impl Stage for CacheStoreStage {
    fn name(&self) -> &str {
        "cache_store"
    }

    fn runs_on_cache_hit(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let Some(cache) = ctx.services.cache.clone().filter(|_| ctx.config.build_system.cache_enabled) else {
            return Ok(Flow::Continue);
        };
        let key = ctx.key.ok_or_else(|| Error::internal("no cache key before cache_store"))?;
        let out = ctx.output_dir()?.to_path_buf();
        let app = ctx.app()?;
        let entry = CacheEntry {
            key,
            label: format!("{}/{}", app.app_id(), ctx.target()?),
            created_at: crate::cache::unix_now(),
            build_id: ctx.build_id.clone(),
            artifact_type: ctx.artifact_type.clone().unwrap_or_default(),
            entry_point: ctx.entry_point.clone(),
            files: ctx.files.clone(),
        };
        let blobs: Vec<BlobSource> =
            ctx.files.iter().map(|f| BlobSource { digest: f.blake3, path: out.join(&f.path) }).collect();
        let stored = match cache.store_blobs(&blobs).await {
            Ok(()) => cache.put_entry(&entry, ctx.components.as_ref()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            ctx.warn("cache_failed", format!("storing the build in the cache failed: {e}"));
        }
        Ok(Flow::Continue)
    }
}

/// Writes `manifest.json` and publishes the release in the artifact store.
pub struct DeployStage;

#[async_trait]
impl Stage for DeployStage {
    fn name(&self) -> &str {
        "deploy"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        if ctx.reused_release {
            return Ok(Flow::Continue);
        }
        let app = ctx.app()?.clone();
        let out = ctx.output_dir()?.to_path_buf();
        let manifest = Manifest {
            name: app.name.clone(),
            version: app.version.clone(),
            build_id: ctx.build_id.clone(),
            target: ctx.target()?.to_string(),
            build_time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            build_size: ctx.files.iter().map(|f| f.size).sum(),
            entry_point: ctx.entry_point.clone(),
            artifact_type: ctx.artifact_type.clone().unwrap_or_default(),
            cache_key: ctx.key.map(|k| k.to_string()).unwrap_or_default(),
            files: ctx.files.clone(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))?;
        std::fs::write(out.join(MANIFEST_FILE), json).map_err(|source| crate::store::StoreError::Io {
            op: "write",
            path: out.join(MANIFEST_FILE),
            source,
        })?;
        let id = ReleaseId { app: app.app_id(), version: app.version.clone(), build_id: ctx.build_id.clone() };
        let store = ctx.services.store.clone();
        let release = store.publish(&out, &id).await?;
        ctx.output_dir = Some(PathBuf::from(&release.location));
        ctx.release = Some(release);
        let retention = Duration::from_secs(ctx.config.build_system.artifact_retention);
        if let Err(e) = store.enforce_retention(&id.app, retention).await {
            ctx.warn("retention_failed", format!("removing old releases failed: {e}"));
        }
        Ok(Flow::Continue)
    }
}
