//! What one build is, as the parts that act on it see it: the [`BuildRequest`], the
//! [`BuildContext`] every stage and platform builder receives, and the two seams that
//! receive it — [`Stage`] (one step of the pipeline) and [`PlatformBuilder`] (one app type:
//! its targets, host requirements, toolchain fingerprint, validation, dependencies, build).
//! Both are implemented outside this module (`stages/`, `builders/`) and can be by Rust users.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cache::{ArtifactFile, CacheBackend, CacheKey, KeyComponents};
use crate::config::{AppConfig, AppType, EngineConfig};
use crate::error::{BuildError, Error, Result};
use crate::events::{BuildEvent, EventEmitter};
use crate::process::ProcessRunner;
use crate::result::{Deployment, StageTimings, Warning};
use crate::source::SourceTree;
use crate::store::{ArtifactStore, Destination, Release};

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
    /// On the farm, submissions with the same key are one build: the second gets the first's
    /// id, events and result (a host retrying after a timeout does not build twice).
    #[serde(default, alias = "idempotencyKey")]
    pub idempotency_key: Option<String>,
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
            idempotency_key: None,
        }
    }
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

/// Says whether this build may still publish (store in the cache, deploy): a farm worker's
/// build may not once another worker took its job over. Checked before each such step.
#[async_trait]
pub trait Fence: Send + Sync {
    async fn check(&self) -> Result<()>;
}

/// Shared services a build runs with.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<EngineConfig>,
    pub cache: Option<Arc<dyn CacheBackend>>,
    pub store: Arc<dyn ArtifactStore>,
    /// Where releases are published besides `store` (`storage.deploy`).
    pub destinations: Arc<[Arc<Destination>]>,
    pub platforms: Arc<PlatformRegistry>,
    /// Where build directories are made.
    pub work_root: PathBuf,
    /// Engine state kept with the cache (history, remembered file digests).
    pub state_dir: PathBuf,
    /// What every command of a build runs in.
    pub sandbox: Arc<crate::sandbox::Sandbox>,
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
    pub platform: Option<Arc<dyn PlatformBuilder>>,
    pub dependencies: BTreeMap<String, String>,
    pub components: Option<KeyComponents>,
    pub key: Option<CacheKey>,
    /// The tier that served a cache hit.
    pub cache_hit: Option<String>,
    build_dir: Option<PathBuf>,
    build_dir_materialized: bool,
    pub(crate) output_dir: Option<PathBuf>,
    pub entry_point: Option<String>,
    pub artifact_type: Option<String>,
    pub files: Vec<ArtifactFile>,
    pub release: Option<Release>,
    /// The cache hit was served by the app's identical latest release: nothing was copied.
    pub reused_release: bool,
    /// The destinations that serve the release.
    pub deployments: Vec<Deployment>,
    /// Checked before the build publishes anything (a farm job's lease).
    pub fence: Option<Arc<dyn Fence>>,
    pub warnings: Vec<Warning>,
    pub timings: StageTimings,
    /// Seconds of the build stage spent installing or restoring dependencies (the performance
    /// monitor counts them as the document's dependencies stage).
    pub dependency_seconds: f64,
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
            platform: None,
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
            deployments: Vec::new(),
            fence: None,
            warnings: Vec::new(),
            timings: StageTimings::default(),
            dependency_seconds: 0.0,
        }
    }

    /// Fail unless the build may still publish (see [`Fence`]).
    pub async fn check_fence(&self) -> Result<()> {
        match &self.fence {
            Some(fence) => fence.check().await,
            None => Ok(()),
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

    pub fn platform(&self) -> Result<Arc<dyn PlatformBuilder>> {
        self.platform.clone().ok_or_else(|| Self::missing("the platform builder"))
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

    pub(crate) fn record_hit(&mut self, hit: crate::cache::Hit) {
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
            self.services.sandbox.clone(),
        )
        // Bundlers write where the build's output goes.
        .writing(self.output_dir.iter().cloned().collect())
    }

    /// The host variables the builder says this target's toolchain needs.
    pub(crate) fn toolchain_env(&self) -> Vec<&'static str> {
        match (&self.platform, &self.target) {
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

    /// The performance monitor's verdict on this build, now finished; a slow one gets its
    /// `build_slow` warning here (before `finished`).
    pub(crate) fn assess(&mut self, duration: f64, cache_hit: bool) -> crate::monitor::Assessment {
        let (Some(app), Some(target)) = (self.app.as_ref(), self.target.as_deref()) else { return Default::default() };
        let app_type = app.app_type.to_string();
        let facts = crate::monitor::BuildFacts {
            app_type: &app_type,
            target,
            timings: &self.timings,
            dependency_seconds: self.dependency_seconds,
            duration,
            cache_hit,
            bundler: (app.app_type == AppType::Javascript).then_some(app.build_config.javascript.bundler),
            locked: !self.warnings.iter().any(|w| w.code == "dependencies_not_locked"),
        };
        let assessment = crate::monitor::assess(&self.config, &facts);
        if let Some(message) = &assessment.slow {
            self.warn("build_slow", message.clone());
        }
        assessment
    }

    pub(crate) fn check_cancelled(&self) -> Result<()> {
        if self.cancel.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }
}

/// What a builder's `build` produced, besides the files in the output directory.
#[derive(Debug, Clone, Default)]
pub struct BuildOutput {
    /// The file a host opens first (`index.html` for web targets), relative to the output.
    pub entry_point: Option<String>,
}

/// Something the build host must have for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRequirement {
    /// The host OS, as `std::env::consts::OS` names it (`macos`, `windows`, `linux`).
    Os(&'static str),
    /// At least one of these environment variables names an existing directory.
    EnvDir(&'static [&'static str]),
    /// A program on PATH.
    Program(&'static str),
}

impl HostRequirement {
    /// `Err(reason)` when the host does not meet it.
    pub fn check(&self) -> std::result::Result<(), String> {
        match self {
            HostRequirement::Os(os) => {
                if std::env::consts::OS == *os {
                    Ok(())
                } else {
                    Err(format!("needs a {os} host, this is {}", std::env::consts::OS))
                }
            }
            HostRequirement::EnvDir(vars) => {
                let found = vars.iter().filter_map(std::env::var_os).any(|dir| std::path::Path::new(&dir).is_dir());
                if found { Ok(()) } else { Err(format!("needs {} set to an existing directory", vars.join(" or "))) }
            }
            HostRequirement::Program(name) => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                if std::env::split_paths(&path).any(|d| d.join(name).is_file()) {
                    Ok(())
                } else {
                    Err(format!("needs `{name}` on PATH"))
                }
            }
        }
    }
}

/// Builds apps of one type.
#[async_trait]
pub trait PlatformBuilder: Send + Sync {
    fn app_type(&self) -> AppType;

    /// Targets this builder can build (`web`, `android`, …).
    fn supported_targets(&self) -> &[&'static str];

    /// What the host needs for `target` (checked before any work).
    fn host_requirements(&self, _target: &str) -> Vec<HostRequirement> {
        Vec::new()
    }

    /// Host variables the target's toolchain reads (`ANDROID_HOME`, `JAVA_HOME`, …): passed
    /// from the engine's environment to the target's commands, and part of the cache key.
    fn toolchain_env(&self, _target: &str) -> Vec<&'static str> {
        Vec::new()
    }

    /// Tool name → version; part of the cache key.
    async fn toolchain(&self, _ctx: &BuildContext) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }

    /// Check the sources (syntax, security rules) before any dependency work.
    async fn validate(&self, _ctx: &mut BuildContext) -> Result<()> {
        Ok(())
    }

    /// Resolved dependency versions (from a lockfile); part of the cache key.
    async fn resolve_dependencies(&self, _ctx: &mut BuildContext) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }

    /// Build the context's target from its build directory into its output directory.
    async fn build(&self, ctx: &mut BuildContext) -> Result<BuildOutput>;

    /// Platform-specific optimisation of the output (before the shared precompression).
    async fn optimize(&self, _ctx: &mut BuildContext) -> Result<()> {
        Ok(())
    }

    /// The manifest's `type` for a target (`static-web`, `javascript-web`, …).
    fn artifact_type(&self, target: &str) -> String;
}

/// The builders an engine knows, by app type.
#[derive(Clone, Default)]
pub struct PlatformRegistry {
    builders: HashMap<AppType, Arc<dyn PlatformBuilder>>,
}

impl PlatformRegistry {
    /// Add or replace the builder for its app type.
    pub fn register(&mut self, builder: Arc<dyn PlatformBuilder>) {
        self.builders.insert(builder.app_type(), builder);
    }

    pub fn get(&self, app_type: AppType) -> Result<Arc<dyn PlatformBuilder>> {
        self.builders.get(&app_type).cloned().ok_or_else(|| BuildError::UnsupportedAppType(app_type.to_string()).into())
    }

    /// Every builder, in app type order.
    pub fn all(&self) -> Vec<Arc<dyn PlatformBuilder>> {
        let mut all: Vec<_> = self.builders.values().cloned().collect();
        all.sort_by_key(|b| b.app_type().to_string());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_requirements_explain_themselves() {
        assert!(HostRequirement::Os(std::env::consts::OS).check().is_ok());
        let err = HostRequirement::Os("plan9").check().unwrap_err();
        assert!(err.contains("plan9"), "{err}");
        assert!(HostRequirement::Program("sh").check().is_ok());
        assert!(HostRequirement::Program("no-such-program-xyz").check().is_err());
        assert!(HostRequirement::EnvDir(&["WORKZ_NO_SUCH_VAR"]).check().is_err());
    }
}
