//! One error model for the whole engine.
//!
//! Each module has its own error enum; [`Error`] gathers them. Every error has a
//! stable snake_case [`Error::code`] (the same string in C, Python and Node), a
//! [`Category`], an optional [`Error::hint`] and a retryable flag that the
//! pipeline's retry loop reads.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;

pub use crate::cache::CacheError;
pub use crate::config::ConfigError;
pub use crate::process::ProcessError;
pub use crate::report::{Category, ErrorCode, ErrorReport, Family};
pub use crate::source::SourceError;
pub use crate::store::StoreError;

/// Errors of the build itself (not of its inputs or of the machine).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("validation failed: {0}")]
    Validation(String),
    #[error("unsupported app type `{0}`")]
    UnsupportedAppType(String),
    #[error("target `{target}` is not supported by the `{app_type}` builder (supported: {supported})")]
    UnsupportedTarget { app_type: String, target: String, supported: String },
    #[error("platform `{platform}` is disabled in the engine configuration")]
    PlatformDisabled { platform: String },
    #[error("target `{target}` cannot be built on this host: {reason}")]
    PlatformRequirementUnmet { target: String, reason: String },
    #[error("{0}")]
    Failed(String),
    #[error("the build finished but produced no artifact: {0}")]
    ArtifactMissing(String),
    #[error("unresolved import {specifier:?} at {location}")]
    UnresolvedImport { specifier: String, location: String },
    /// The app imports a file kind the in-process bundler cannot compile.
    #[error("{file}: {kind} files cannot be bundled in-process")]
    UnsupportedModuleType { file: String, kind: String },
    /// The engine's own file I/O in its work, output or staging directories failed.
    #[error("{action}: {source}")]
    Io { action: String, source: std::io::Error },
}

impl BuildError {
    /// Maps an I/O error of the engine's own files (not the app's) to [`BuildError::Io`].
    pub fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let action = action.into();
        move |source| BuildError::Io { action, source }.into()
    }
}

impl ErrorCode for BuildError {
    fn code(&self) -> &'static str {
        match self {
            BuildError::Validation(_) => "validation_failed",
            BuildError::UnsupportedAppType(_) => "unsupported_app_type",
            BuildError::UnsupportedTarget { .. } => "unsupported_target",
            BuildError::PlatformDisabled { .. } => "platform_disabled",
            BuildError::PlatformRequirementUnmet { .. } => "platform_requirement_unmet",
            BuildError::Failed(_) => "build_failed",
            BuildError::ArtifactMissing(_) => "artifact_missing",
            BuildError::UnresolvedImport { .. } => "unresolved_import",
            BuildError::UnsupportedModuleType { .. } => "unsupported_module_type",
            BuildError::Io { .. } => "build_io_failed",
        }
    }

    fn category(&self) -> Category {
        match self {
            BuildError::PlatformRequirementUnmet { .. } | BuildError::Io { .. } => Category::Infrastructure,
            BuildError::Failed(_) | BuildError::ArtifactMissing(_) => Category::Toolchain,
            _ => Category::User,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(
            match self {
                BuildError::Validation(_) => "Fix the reported files and build again.",
                BuildError::UnsupportedAppType(_) => {
                    "Set `appType` in workz.json to one of: static, javascript, flutter."
                }
                BuildError::UnsupportedTarget { .. } => {
                    "Use one of the supported targets in `buildTargets` or --target."
                }
                BuildError::PlatformDisabled { .. } => {
                    "Enable the platform in the engine configuration (`platforms.<type>.enabled`)."
                }
                BuildError::PlatformRequirementUnmet { .. } => {
                    "Build this target on a worker that meets the requirement; the app's other targets can still build here."
                }
                BuildError::Failed(_) => {
                    "The message names the step and the file that failed: fix that input and build again; `workz-build build --json` shows the log lines that led to it."
                }
                BuildError::UnsupportedModuleType { kind, .. } => {
                    return Some(format!(
                        "The in-process bundler compiles JavaScript, TypeScript, JSX, CSS, CSS modules and Sass, not {kind} files. \
                         Build the app with its own tool instead: set `buildConfig.javascript.bundler` to \"script\" in workz.json \
                         (it runs `npm run build`, e.g. `vite build`, and publishes `outputDir`)."
                    ));
                }
                BuildError::Io { .. } => {
                    "The engine could not read or write its own work files: check free space (`df -h`) and the permissions of the work, cache and artifact directories (`workz-build doctor` lists them), then build again."
                }
                BuildError::UnresolvedImport { .. } => {
                    "Fix the import path, or add the package to package.json (and the lockfile) so it is installed."
                }
                BuildError::ArtifactMissing(_) => {
                    "The tool exited successfully but wrote nothing where expected: check the build logs and the tool's output directory settings."
                }
            }
            .to_string(),
        )
    }

    fn family(&self) -> Family {
        match self {
            BuildError::Validation(_)
            | BuildError::UnsupportedAppType(_)
            | BuildError::UnsupportedTarget { .. }
            | BuildError::PlatformDisabled { .. }
            | BuildError::UnresolvedImport { .. }
            | BuildError::UnsupportedModuleType { .. } => Family::Validation,
            BuildError::PlatformRequirementUnmet { .. } => Family::Toolchain,
            BuildError::Failed(_) | BuildError::ArtifactMissing(_) => Family::Build,
            BuildError::Io { .. } => Family::Storage,
        }
    }
}

/// Errors of dependency installation (npm, pub), classified as the troubleshooting guide does.
#[derive(Debug, thiserror::Error)]
pub enum DependencyError {
    #[error("package not found: {detail}")]
    NotFound { tool: &'static str, detail: String },
    #[error("dependency versions conflict: {detail}")]
    Conflict { tool: &'static str, detail: String },
    #[error("the package registry is unreachable: {detail}")]
    RegistryUnreachable { tool: &'static str, detail: String },
    #[error("the lockfile does not match the manifest: {detail}")]
    LockfileMismatch { tool: &'static str, detail: String },
    #[error("installing dependencies failed: {detail}")]
    InstallFailed { tool: &'static str, detail: String },
    #[error("invalid {file}: {detail}")]
    InvalidManifest { file: String, detail: String },
}

impl ErrorCode for DependencyError {
    fn code(&self) -> &'static str {
        match self {
            DependencyError::NotFound { .. } => "dependency_not_found",
            DependencyError::Conflict { .. } => "dependency_conflict",
            DependencyError::RegistryUnreachable { .. } => "registry_unreachable",
            DependencyError::LockfileMismatch { .. } => "lockfile_mismatch",
            DependencyError::InstallFailed { .. } => "dependency_install_failed",
            DependencyError::InvalidManifest { .. } => "dependency_manifest_invalid",
        }
    }

    fn hint(&self) -> Option<String> {
        let npm = |tool: &str| tool == "npm";
        Some(match self {
            DependencyError::NotFound { tool, .. } if npm(tool) => {
                "Check the package name and version in package.json (`npm view NAME versions`); for a private package, configure the registry.".into()
            }
            DependencyError::NotFound { .. } => "Check the package name and version in pubspec.yaml (`flutter pub deps`).".into(),
            DependencyError::Conflict { tool, .. } if npm(tool) => {
                "Fix the version conflict in package.json (`npm ls` shows the tree); `npm install --legacy-peer-deps` locally can tell whether peer dependencies are the cause, then update the lockfile.".into()
            }
            DependencyError::Conflict { .. } => "Edit pubspec.yaml to resolve the conflict (`flutter pub upgrade`, `flutter pub deps`).".into(),
            DependencyError::RegistryUnreachable { tool, .. } if npm(tool) => {
                "Check registry connectivity from the worker (`npm ping`); the build is retried. A local package mirror avoids this.".into()
            }
            DependencyError::RegistryUnreachable { .. } => "Check connectivity to pub.dev from the worker; the build is retried.".into(),
            DependencyError::LockfileMismatch { .. } => {
                "Run `npm install` locally and commit the updated package-lock.json.".into()
            }
            DependencyError::InstallFailed { tool, .. } if npm(tool) => {
                "Clear the dependency cache (`npm cache clean --force`) and check the log lines above; `npm update` refreshes versions.".into()
            }
            DependencyError::InstallFailed { .. } => "Repair the pub cache (`flutter pub cache repair`) and check the log lines above.".into(),
            DependencyError::InvalidManifest { .. } => "Check the file's syntax (`jq . package.json`).".into(),
        })
    }

    fn category(&self) -> Category {
        match self {
            DependencyError::RegistryUnreachable { .. } => Category::Infrastructure,
            DependencyError::InstallFailed { .. } => Category::Toolchain,
            DependencyError::NotFound { .. }
            | DependencyError::Conflict { .. }
            | DependencyError::LockfileMismatch { .. }
            | DependencyError::InvalidManifest { .. } => Category::User,
        }
    }

    fn family(&self) -> Family {
        Family::Dependency
    }

    fn is_retryable(&self) -> bool {
        matches!(self, DependencyError::RegistryUnreachable { .. })
    }
}

/// Errors of the build farm (`queue.redis`): the queue, jobs, leases.
#[derive(Debug, thiserror::Error)]
pub enum FarmError {
    /// The farm's Redis failed or did not answer in time.
    #[error("the build farm's queue: cannot {op}: {message}")]
    Unavailable { op: &'static str, message: String },
    /// A job that cannot be read as one (tampered with, or from another engine version).
    #[error("job {id}: {message}")]
    JobInvalid { id: String, message: String },
    /// The job names source files the content store does not have (or has corrupt).
    #[error("job {id}: {message}")]
    SourceMissing { id: String, message: String },
    /// This worker's lease on the job passed to another: its result is not published.
    #[error("job {0}: this worker no longer holds its lease (another worker took the job)")]
    LeaseLost(String),
    #[error("no build {0} on the farm (finished builds are kept for queue.resultTTL)")]
    NotFound(String),
}

impl ErrorCode for FarmError {
    fn code(&self) -> &'static str {
        match self {
            FarmError::Unavailable { .. } => "farm_unavailable",
            FarmError::JobInvalid { .. } => "job_invalid",
            FarmError::SourceMissing { .. } => "job_source_missing",
            FarmError::LeaseLost(_) => "lease_lost",
            FarmError::NotFound(_) => "build_not_found",
        }
    }

    fn category(&self) -> Category {
        match self {
            FarmError::NotFound(_) => Category::User,
            _ => Category::Infrastructure,
        }
    }

    fn family(&self) -> Family {
        match self {
            FarmError::NotFound(_) | FarmError::JobInvalid { .. } => Family::Config,
            _ => Family::Storage,
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            FarmError::Unavailable { .. } => "Check that the farm's Redis (`queue.redis.url`) answers from this machine (`redis-cli -u URL ping`); submitting again is safe.".into(),
            FarmError::JobInvalid { .. } => "Submit the build again with this engine version; a job is written by `submit` and read by workers of the same version.".into(),
            FarmError::SourceMissing { .. } => "The sources travel through the object store (`cache.remote`): check that submitters and workers use the same bucket, then submit again.".into(),
            FarmError::LeaseLost(_) => "A worker that stalls past `queue.leaseSeconds` loses its job to another; raise the lease if builds stall legitimately.".into(),
            FarmError::NotFound(_) => "Check the build id (`workz-build submit` prints it).".into(),
        })
    }

    fn is_retryable(&self) -> bool {
        matches!(self, FarmError::Unavailable { .. } | FarmError::LeaseLost(_))
    }
}

/// The engine's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Farm(#[from] FarmError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    /// A platform builder's own error (for example Flutter's classified failures), with its
    /// code, family and hint: builders outside this crate bring their own codes this way.
    #[error("{0}")]
    Platform(Box<dyn ErrorCode>),
    #[error("the build was cancelled")]
    Cancelled,
    #[error("the build timed out after {}s", .0.as_secs())]
    TimedOut(Duration),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The module error inside, for the variants that carry one.
    fn inner(&self) -> Option<&dyn ErrorCode> {
        match self {
            Error::Config(e) => Some(e),
            Error::Source(e) => Some(e),
            Error::Cache(e) => Some(e),
            Error::Store(e) => Some(e),
            Error::Process(e) => Some(e),
            Error::Build(e) => Some(e),
            Error::Dependency(e) => Some(e),
            Error::Farm(e) => Some(e),
            Error::Platform(e) => Some(e.as_ref()),
            Error::Cancelled | Error::TimedOut(_) | Error::InvalidRequest(_) | Error::Internal(_) => None,
        }
    }

    /// Stable snake_case code, identical in every binding.
    pub fn code(&self) -> &'static str {
        if let Some(e) = self.inner() {
            return e.code();
        }
        match self {
            Error::Cancelled => "cancelled",
            Error::TimedOut(_) => "timed_out",
            Error::InvalidRequest(_) => "invalid_request",
            _ => "internal",
        }
    }

    pub fn category(&self) -> Category {
        if let Some(e) = self.inner() {
            return e.category();
        }
        match self {
            Error::Cancelled | Error::InvalidRequest(_) => Category::User,
            Error::TimedOut(_) => Category::Infrastructure,
            _ => Category::Internal,
        }
    }

    pub fn family(&self) -> Family {
        if let Some(e) = self.inner() {
            return e.family();
        }
        match self {
            Error::Cancelled => Family::Cancelled,
            Error::TimedOut(_) => Family::Timeout,
            Error::InvalidRequest(_) => Family::Config,
            _ => Family::Internal,
        }
    }

    /// What the user can do about it, from the platform's troubleshooting guide where one applies.
    pub fn hint(&self) -> Option<String> {
        if let Some(e) = self.inner() {
            return e.hint();
        }
        match self {
            Error::TimedOut(_) => Some(
                "Check the build worker's resources (CPU with `top`, disk with `df -h`, memory with `free -h`); \
                 enable dependency caching; raise `buildSystem.buildTimeout` if the build is legitimately long."
                    .into(),
            ),
            Error::Internal(_) => Some("This is a bug in the engine: please report it with the build log.".into()),
            _ => None,
        }
    }

    /// Whether running the failed stage again may succeed (network, busy machine).
    pub fn is_retryable(&self) -> bool {
        self.inner().is_some_and(|e| e.is_retryable())
    }

    /// The serializable form carried by results, events and bindings.
    pub fn report(&self) -> ErrorReport {
        ErrorCode::report(self)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }
}

/// Run `f`; a panic becomes an `internal` error instead of unwinding into the host. (Not
/// `UnwindSafe`-bound: after a panic the host only gets the error, never the half-updated
/// state, and every lock the bindings hold is released by then.)
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(panic_error(payload.as_ref())))
}

/// Await `work`; a panic inside it becomes an `internal` error (the pipeline of every build
/// and the bindings' Promise-backed calls run under this).
pub async fn catch_panic_async<T>(work: impl std::future::Future<Output = T>) -> Result<T> {
    AssertUnwindSafe(work).catch_unwind().await.map_err(|payload| panic_error(payload.as_ref()))
}

/// The `internal` error for a caught panic, with its message.
pub fn panic_error(payload: &(dyn std::any::Any + Send)) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    Error::Internal(format!("the engine panicked: {message}"))
}

/// The engine's error is an [`ErrorCode`] too, so anything that takes one takes it.
impl ErrorCode for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
    fn category(&self) -> Category {
        Error::category(self)
    }
    fn family(&self) -> Family {
        Error::family(self)
    }
    fn hint(&self) -> Option<String> {
        Error::hint(self)
    }
    fn is_retryable(&self) -> bool {
        Error::is_retryable(self)
    }
}

impl From<Error> for ErrorReport {
    fn from(error: Error) -> Self {
        error.report()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every code the engine can return, for docs and binding tests.
pub const ALL_CODES: &[&str] = &[
    "config_parse_error",
    "config_invalid",
    "config_read_failed",
    "app_config_missing",
    "source_not_found",
    "source_path_invalid",
    "source_duplicate_path",
    "source_symlink_escape",
    "source_file_too_large",
    "source_too_many_files",
    "source_too_large",
    "source_read_failed",
    "cache_io_failed",
    "cache_entry_invalid",
    "cache_read_only",
    "cache_backend_failed",
    "artifact_store_failed",
    "artifact_name_invalid",
    "deploy_failed",
    "hook_invalid",
    "toolchain_missing",
    "process_spawn_failed",
    "process_failed",
    "process_timed_out",
    "resource_limit_exceeded",
    "sandbox_unavailable",
    "validation_failed",
    "unsupported_app_type",
    "unsupported_target",
    "platform_disabled",
    "platform_requirement_unmet",
    "build_failed",
    "artifact_missing",
    "unresolved_import",
    "unsupported_module_type",
    "build_io_failed",
    "dependency_not_found",
    "dependency_conflict",
    "registry_unreachable",
    "lockfile_mismatch",
    "dependency_install_failed",
    "dependency_manifest_invalid",
    "flutter_gradle_failed",
    "flutter_sdk_version_conflict",
    "flutter_canvaskit_unavailable",
    "flutter_signing_failed",
    "farm_unavailable",
    "job_invalid",
    "job_source_missing",
    "lease_lost",
    "build_not_found",
    "cancelled",
    "timed_out",
    "invalid_request",
    "internal",
];

/// Every warning code a build can emit.
pub const WARNING_CODES: &[&str] = &[
    "config_unknown_key",
    "cache_failed",
    "cache_tier_failed",
    "cache_entry_incomplete",
    "artifact_store_failed",
    "retention_failed",
    "backup_deploy_failed",
    "build_slow",
    "security_warning",
    "dependencies_not_locked",
    "asset_format_unsupported",
    "sandbox_unavailable",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_internal_errors() {
        let err = catch_panic(|| -> Result<()> { panic!("boom {}", 1) }).unwrap_err();
        assert_eq!(err.code(), "internal");
        assert!(err.to_string().contains("boom 1"), "{err}");
        let err = catch_panic(|| -> Result<()> { std::panic::panic_any(7u8) }).unwrap_err();
        assert!(err.to_string().contains("without a message"), "{err}");
        assert_eq!(catch_panic(|| Ok(3)).unwrap(), 3);
    }

    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../docs/errors.md");
        for code in ALL_CODES.iter().chain(WARNING_CODES) {
            assert!(doc.contains(&format!("| `{code}` |")), "docs/errors.md does not list `{code}`");
        }
    }

    /// One error of every code the engine can return, built from its enums.
    fn one_of_each() -> Vec<Error> {
        use std::path::PathBuf;
        let io = || std::io::Error::other("x");
        let (s, d) = (String::new, || String::from("d"));
        #[cfg_attr(not(feature = "flutter"), allow(unused_mut))]
        let mut all: Vec<Error> = vec![
            ConfigError::Parse { file: s(), line: 1, column: 1, message: s() }.into(),
            ConfigError::Invalid { file: s(), path: s(), message: s() }.into(),
            ConfigError::Read { path: PathBuf::new(), source: io() }.into(),
            ConfigError::AppConfigMissing(s()).into(),
            SourceError::NotFound(PathBuf::new()).into(),
            SourceError::InvalidPath { path: s(), reason: "r" }.into(),
            SourceError::DuplicatePath(s()).into(),
            SourceError::SymlinkEscape { path: s() }.into(),
            SourceError::FileTooLarge { path: s(), size: 2, limit: 1 }.into(),
            SourceError::TooManyFiles { limit: 1 }.into(),
            SourceError::TooLarge { limit: 1 }.into(),
            SourceError::Read { path: s(), source: io() }.into(),
            CacheError::io("t", "read", "p", io()).into(),
            CacheError::InvalidEntry { tier: s(), key: s(), message: s() }.into(),
            CacheError::ReadOnly(s()).into(),
            CacheError::Backend { tier: s(), op: "read", message: s() }.into(),
            StoreError::Io { op: "w", path: PathBuf::new(), source: io() }.into(),
            StoreError::InvalidName { what: "app", value: s() }.into(),
            StoreError::Deploy { destination: s(), op: "upload a file", message: s() }.into(),
            FarmError::Unavailable { op: "enqueue", message: s() }.into(),
            FarmError::JobInvalid { id: s(), message: s() }.into(),
            FarmError::SourceMissing { id: s(), message: s() }.into(),
            FarmError::LeaseLost(s()).into(),
            FarmError::NotFound(s()).into(),
            ProcessError::InvalidCommand { command: s(), message: s() }.into(),
            ProcessError::ToolchainMissing { program: s() }.into(),
            ProcessError::OutsideBuildDir(PathBuf::new()).into(),
            ProcessError::Failed { command: s(), status: s(), stderr_tail: s(), retryable: false, offline: false }
                .into(),
            ProcessError::ResourceLimit { command: s(), limit: "processes", value: 1 }.into(),
            ProcessError::SandboxUnavailable { command: s(), reason: s() }.into(),
            ProcessError::TimedOut { command: s(), after: Duration::from_secs(1) }.into(),
            BuildError::Validation(s()).into(),
            BuildError::UnsupportedAppType(s()).into(),
            BuildError::UnsupportedTarget { app_type: s(), target: s(), supported: s() }.into(),
            BuildError::PlatformDisabled { platform: s() }.into(),
            BuildError::PlatformRequirementUnmet { target: s(), reason: s() }.into(),
            BuildError::Failed(s()).into(),
            BuildError::ArtifactMissing(s()).into(),
            BuildError::UnresolvedImport { specifier: s(), location: s() }.into(),
            BuildError::UnsupportedModuleType { file: s(), kind: s() }.into(),
            BuildError::Io { action: s(), source: io() }.into(),
            DependencyError::NotFound { tool: "npm", detail: d() }.into(),
            DependencyError::Conflict { tool: "npm", detail: d() }.into(),
            DependencyError::RegistryUnreachable { tool: "npm", detail: d() }.into(),
            DependencyError::LockfileMismatch { tool: "npm", detail: d() }.into(),
            DependencyError::InstallFailed { tool: "npm", detail: d() }.into(),
            DependencyError::InvalidManifest { file: s(), detail: d() }.into(),
            Error::Cancelled,
            Error::TimedOut(Duration::from_secs(1)),
            Error::InvalidRequest(s()),
            Error::Internal(s()),
        ];
        #[cfg(feature = "flutter")]
        for stderr in ["Gradle task x failed", "requires SDK version >=9", "canvaskit.wasm failed", "No profiles for x"]
        {
            all.push(crate::builders::flutter::classify_failure("flutter build", "1", stderr));
        }
        all
    }

    #[test]
    fn every_code_has_its_family_and_category_in_the_docs() {
        let doc = include_str!("../../docs/errors.md");
        let errors = one_of_each();
        let codes: std::collections::HashSet<&str> = errors.iter().map(Error::code).collect();
        for code in ALL_CODES {
            // The Flutter builder's own codes exist only when it is compiled in.
            if cfg!(not(feature = "flutter")) && code.starts_with("flutter_") {
                continue;
            }
            assert!(codes.contains(code), "no error of code {code} in one_of_each()");
        }
        let mut wrong = Vec::new();
        for error in &errors {
            let code = error.code();
            assert!(ALL_CODES.contains(&code), "{code} is missing from ALL_CODES");
            let row = doc.lines().find(|l| l.starts_with(&format!("| `{code}` |"))).unwrap_or_default();
            let family = error.family();
            assert_eq!(family == Family::Internal, code == "internal", "{code}");
            let category = serde_json::to_value(error.category()).unwrap();
            // A row reads `| code | category | family | …`.
            let expected = format!("| `{code}` | {} | {} |", category.as_str().unwrap(), family.as_str());
            if !row.starts_with(&expected) {
                wrong.push(format!("{expected} (docs: {row})"));
            }
        }
        assert!(wrong.is_empty(), "docs/errors.md disagrees with the code:\n{}", wrong.join("\n"));
    }

    #[test]
    fn a_platform_builders_own_error_keeps_its_code_family_and_hint() {
        #[derive(Debug, thiserror::Error)]
        #[error("the widget compiler failed")]
        struct WidgetError;
        impl ErrorCode for WidgetError {
            fn code(&self) -> &'static str {
                "widget_compile_failed"
            }
            fn category(&self) -> Category {
                Category::Toolchain
            }
            fn family(&self) -> Family {
                Family::Build
            }
            fn hint(&self) -> Option<String> {
                Some("Run the widget compiler by hand.".into())
            }
        }
        let report = Error::Platform(Box::new(WidgetError)).report();
        assert_eq!(report.code, "widget_compile_failed");
        assert_eq!(report.family, Family::Build);
        assert_eq!(report.message, "the widget compiler failed");
        assert_eq!(report.hint.as_deref(), Some("Run the widget compiler by hand."));
    }

    #[test]
    fn codes_are_snake_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ALL_CODES {
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{code}");
            assert!(seen.insert(code), "{code} listed twice");
        }
    }
}
