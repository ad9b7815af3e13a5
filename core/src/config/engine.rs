//! The engine's configuration: the document's global build configuration (`buildSystem`,
//! `platforms`, `optimization`) plus our own sections (`cache`, `storage`, `limits`, `source`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::app::AppType;
use super::{
    ConfigError, MonitoringConfig, NotificationsConfig, Parsed, QueueConfig, SandboxConfig, ServerConfig, parse_json,
};
use crate::objects::{LocationField, ObjectLocation};

/// The engine's configuration: the document's global build configuration plus our sections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EngineConfig {
    pub build_system: BuildSystemConfig,
    pub platforms: PlatformsConfig,
    pub optimization: OptimizationConfig,
    pub cache: CacheConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub source: SourceConfig,
    pub queue: QueueConfig,
    pub monitoring: MonitoringConfig,
    pub server: ServerConfig,
    pub notifications: NotificationsConfig,
    pub sandbox: SandboxConfig,
}

impl EngineConfig {
    /// Parse and check an engine config document (`file` names it in errors).
    pub fn from_json(file: &str, text: &str) -> Result<Parsed<EngineConfig>, ConfigError> {
        let mut parsed = if text.trim().is_empty() {
            Parsed { value: EngineConfig::default(), unknown_keys: Vec::new() }
        } else {
            parse_json::<EngineConfig>(file, text)?
        };
        parsed.value.platforms.fill_partial_entries(file, text)?;
        parsed.value.validate(file)?;
        Ok(parsed)
    }

    /// Read an engine config file.
    pub fn from_file(path: &Path) -> Result<Parsed<EngineConfig>, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        EngineConfig::from_json(&path.display().to_string(), &text)
    }

    /// Every numeric setting's range, inclusive (`docs/configuration.md` gives them):
    /// durations stop at ten years, sizes at 1 PiB, counts where more would mean nothing, so
    /// that no arithmetic on a config value can overflow.
    pub fn numeric_ranges(&self) -> Vec<(&'static str, u64, u64, u64)> {
        const WEEK: u64 = 7 * 24 * 3600;
        const TEN_YEARS: u64 = 3660 * 24 * 3600;
        const PIB: u64 = 1 << 50;
        let (b, c, l, q, s) = (&self.build_system, &self.cache, &self.limits, &self.queue, &self.sandbox.limits);
        let mut ranges = vec![
            ("buildSystem.maxConcurrentBuilds", b.max_concurrent_builds as u64, 1, 4096),
            ("buildSystem.buildTimeout", b.build_timeout, 1, WEEK),
            ("buildSystem.retryAttempts", u64::from(b.retry_attempts), 0, 100),
            ("buildSystem.cacheTTL", b.cache_ttl, 1, TEN_YEARS),
            ("buildSystem.artifactRetention", b.artifact_retention, 0, TEN_YEARS),
            ("cache.memory.maxBytes", c.memory.max_bytes, 0, PIB),
            ("cache.memory.ttl", c.memory.ttl, 0, TEN_YEARS),
            ("cache.filesystem.maxBytes", c.filesystem.max_bytes, 0, PIB),
            ("limits.maxSourceFiles", l.max_source_files, 1, 100_000_000),
            ("limits.maxFileBytes", l.max_file_bytes, 1, PIB),
            ("limits.maxSourceBytes", l.max_source_bytes, 1, PIB),
            ("limits.maxLogBytes", l.max_log_bytes, 0, PIB),
            ("queue.leaseSeconds", q.lease_seconds, 5, 86_400),
            ("queue.resultTTL", q.result_ttl, 1, 31_536_000),
            ("queue.minWorkers", q.min_workers, 0, 100_000),
            ("queue.maxWorkers", q.max_workers, 1, 100_000),
            ("notifications.retryFor", self.notifications.retry_for, 0, 86_400),
            ("server.maxUploadBytes", self.server.max_upload_bytes, 1024, 4 << 30),
            ("sandbox.limits.processes", s.processes, 8, 1 << 22),
            ("sandbox.limits.fileBytes", s.file_bytes, 1 << 20, PIB),
            ("sandbox.limits.cpuSeconds", s.cpu_seconds, 1, TEN_YEARS),
            ("sandbox.limits.memoryBytes", s.memory_bytes, 64 << 20, PIB),
        ];
        if let Some(warning) = b.build_timeout_warning {
            ranges.push(("buildSystem.buildTimeoutWarning", warning, 1, WEEK));
        }
        if let Some(redis) = &c.redis {
            ranges.push(("cache.redis.ttl", redis.ttl, 1, TEN_YEARS));
            ranges.push(("cache.redis.maxBlobBytes", redis.max_blob_bytes, 0, 512 << 20));
        }
        ranges
    }

    /// Check values that types alone cannot (ranges, relations).
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        for (path, value, min, max) in self.numeric_ranges() {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::invalid(file, path, format!("expected {min} to {max}, found {value}")));
            }
        }
        let b = &self.build_system;
        if !(0.0..=3600.0).contains(&b.retry_backoff) {
            return Err(ConfigError::invalid(
                file,
                "buildSystem.retryBackoff",
                format!("expected 0 to 3600 seconds, found {}", b.retry_backoff),
            ));
        }
        if let Some(w) = b.build_timeout_warning
            && w >= b.build_timeout
        {
            return Err(ConfigError::invalid(
                file,
                "buildSystem.buildTimeoutWarning",
                format!("expected fewer seconds than buildSystem.buildTimeout ({}), found {w}", b.build_timeout),
            ));
        }
        if let Some(redis) = &self.cache.redis {
            // Checked here so that a typo stops the engine at start, not a build midway.
            if let Err(e) = redis::Client::open(redis.url.as_str()) {
                return Err(ConfigError::invalid(
                    file,
                    "cache.redis.url",
                    format!(
                        "expected a Redis URL such as redis://127.0.0.1:6379/0, found {:?} ({e})",
                        redact_url(&redis.url)
                    ),
                ));
            }
        }
        if let Some((key, message)) =
            self.cache.remote.as_ref().and_then(|remote| location_problem("cache.remote", &remote.location()))
        {
            return Err(ConfigError::invalid(file, key, message));
        }
        self.queue.validate(file)?;
        self.monitoring.validate(file)?;
        self.server.validate(file)?;
        self.notifications.validate(file)?;
        let mut names = std::collections::HashSet::new();
        for (i, destination) in self.storage.deploy.iter().enumerate() {
            let at = format!("storage.deploy.{i}");
            if let Some((key, message)) = location_problem(&at, &destination.location()) {
                return Err(ConfigError::invalid(file, key, message));
            }
            let name = &destination.name;
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                return Err(ConfigError::invalid(
                    file,
                    format!("{at}.name"),
                    format!("expected a name of letters, digits, '-', '_' or '.' (64 at most), found {name:?}"),
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(ConfigError::invalid(
                    file,
                    format!("{at}.name"),
                    format!("expected a name no other destination has, found {name:?} twice"),
                ));
            }
            if let Some(public) = &destination.public_url
                && !url::Url::parse(public).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            {
                return Err(ConfigError::invalid(
                    file,
                    format!("{at}.publicUrl"),
                    format!("expected an http:// or https:// URL, found {public:?}"),
                ));
            }
        }
        for (i, pattern) in self.cache.env_allow_list.iter().enumerate() {
            if pattern.is_empty() || pattern.contains('=') || pattern.contains('\0') {
                return Err(ConfigError::invalid(
                    file,
                    format!("cache.envAllowList.{i}"),
                    format!("expected an environment variable name, found {pattern:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The build timeout and the time at which a warning is emitted.
    pub fn timeouts(&self) -> (std::time::Duration, std::time::Duration) {
        let limit = self.build_system.build_timeout;
        // The document's timeout handler warns at 1200 s of 1800 s: two thirds.
        let warning = self.build_system.build_timeout_warning.unwrap_or(limit * 2 / 3);
        (std::time::Duration::from_secs(limit), std::time::Duration::from_secs(warning))
    }
}

/// The document's `buildSystem` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BuildSystemConfig {
    /// Builds that run at once; more wait in the queue.
    pub max_concurrent_builds: usize,
    /// Seconds before a build is stopped and reported `timed_out`.
    pub build_timeout: u64,
    /// Retries of a stage that failed with a retryable error.
    pub retry_attempts: u32,
    pub cache_enabled: bool,
    /// Seconds a cache entry stays valid.
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: u64,
    /// Seconds a deployed release is kept (the latest release of an app is always kept).
    pub artifact_retention: u64,
    /// Ours: seconds after which a "build is slow" warning is emitted (default: two thirds of the timeout).
    pub build_timeout_warning: Option<u64>,
    /// Ours: first retry delay in seconds, doubled on each further retry.
    pub retry_backoff: f64,
}

impl Default for BuildSystemConfig {
    fn default() -> Self {
        BuildSystemConfig {
            max_concurrent_builds: 10,
            build_timeout: 1800,
            retry_attempts: 3,
            cache_enabled: true,
            cache_ttl: 604_800,
            artifact_retention: 2_592_000,
            build_timeout_warning: None,
            retry_backoff: 1.0,
        }
    }
}

/// The document's `platforms` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlatformsConfig {
    pub javascript: PlatformConfig,
    pub flutter: PlatformConfig,
    #[serde(rename = "static")]
    pub static_site: PlatformConfig,
}

impl PlatformsConfig {
    /// The SDK directories configured (a sandboxed command may read them).
    pub fn sdk_paths(&self) -> Vec<std::path::PathBuf> {
        [&self.javascript, &self.flutter, &self.static_site].iter().filter_map(|p| p.sdk_path.clone()).collect()
    }
}

impl Default for PlatformsConfig {
    fn default() -> Self {
        PlatformsConfig {
            javascript: PlatformConfig {
                enabled: true,
                targets: vec!["web".into()],
                node_version: Some("18.x".into()),
                flutter_version: None,
                dart_version: None,
                build_tools: vec!["webpack".into(), "babel".into(), "terser".into()],
                sdk_path: None,
                sdk_script_url: None,
                init_script_url: None,
                inject_dependencies: BTreeMap::new(),
                browsers: None,
            },
            flutter: PlatformConfig {
                enabled: true,
                targets: ["web", "android", "ios", "windows", "macos", "linux"].map(String::from).to_vec(),
                node_version: None,
                flutter_version: Some("3.16.x".into()),
                dart_version: Some("3.2.x".into()),
                build_tools: vec!["flutter".into(), "dart".into()],
                sdk_path: None,
                sdk_script_url: None,
                init_script_url: None,
                inject_dependencies: BTreeMap::new(),
                browsers: None,
            },
            static_site: PlatformConfig {
                enabled: true,
                targets: vec!["web".into()],
                node_version: None,
                flutter_version: None,
                dart_version: None,
                build_tools: Vec::new(),
                sdk_path: None,
                sdk_script_url: None,
                init_script_url: None,
                inject_dependencies: BTreeMap::new(),
                browsers: None,
            },
        }
    }
}

impl PlatformsConfig {
    /// The `flutter` program: `<flutter.sdkPath>/bin/flutter`, else `flutter` on PATH.
    pub fn flutter_program(&self) -> String {
        match &self.flutter.sdk_path {
            Some(sdk) => sdk.join("bin/flutter").display().to_string(),
            None => "flutter".into(),
        }
    }

    /// A platform entry that names only some keys (`{"flutter": {"sdkPath": "..."}}`) changes
    /// only those: the others keep the platform's defaults instead of the empty ones, which
    /// would disable the platform and drop its targets.
    fn fill_partial_entries(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        let Ok(raw) = serde_json::from_str::<serde_json::Value>(text) else { return Ok(()) };
        let Some(given) = raw.get("platforms").and_then(|p| p.as_object()) else { return Ok(()) };
        let defaults = PlatformsConfig::default();
        for (name, slot, default) in [
            ("javascript", &mut self.javascript, defaults.javascript),
            ("flutter", &mut self.flutter, defaults.flutter),
            ("static", &mut self.static_site, defaults.static_site),
        ] {
            let Some(entry) = given.get(name).and_then(|e| e.as_object()) else { continue };
            let invalid = |e: serde_json::Error| ConfigError::invalid(file, format!("platforms.{name}"), e.to_string());
            let mut merged = serde_json::to_value(&default).map_err(invalid)?;
            if let Some(merged) = merged.as_object_mut() {
                merged.extend(entry.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            *slot = serde_json::from_value(merged).map_err(invalid)?;
        }
        Ok(())
    }

    pub fn get(&self, app_type: AppType) -> &PlatformConfig {
        match app_type {
            AppType::Javascript => &self.javascript,
            AppType::Flutter => &self.flutter,
            AppType::Static => &self.static_site,
        }
    }
}

/// One platform's entry in `platforms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlatformConfig {
    pub enabled: bool,
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flutter_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dart_version: Option<String>,
    pub build_tools: Vec<String>,
    /// Ours: the SDK to use (flutter: its root, with `bin/flutter`); default: the tool on PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk_path: Option<PathBuf>,
    /// Ours (flutter web): the Workz SDK script injected into `<head>`; default the document's
    /// `/js/core/workz-sdk-v2.js`, `""` for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk_script_url: Option<String>,
    /// Ours (flutter web): a script that initialises the Workz SDK, loaded before `</body>`;
    /// default an inline `WorkzSDK.init(...)` with the app's id, version and build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_script_url: Option<String>,
    /// Ours: dependencies the platform adds to every app of this type (the document's
    /// "inject workz-sdk" step), package → version range. Empty by default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub inject_dependencies: BTreeMap<String, String>,
    /// Ours: a browserslist-style query (`"> 0.25%, not dead"`, `"chrome 90, safari 14"`) for
    /// the CSS and JS targets of this platform's builds; when absent, the app's ES target rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browsers: Option<String>,
}

/// The document's `optimization` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OptimizationConfig {
    pub minification: bool,
    pub compression: Compression,
    pub asset_optimization: bool,
    pub treeshaking: bool,
    pub source_maps: bool,
}

impl Default for OptimizationConfig {
    fn default() -> Self {
        OptimizationConfig {
            minification: true,
            compression: Compression::Gzip,
            asset_optimization: true,
            treeshaking: true,
            source_maps: false,
        }
    }
}

/// Precompressed variants to write next to text outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Brotli,
    /// Both gzip and brotli variants.
    Both,
}

impl Compression {
    pub fn gzip(self) -> bool {
        matches!(self, Compression::Gzip | Compression::Both)
    }
    pub fn brotli(self) -> bool {
        matches!(self, Compression::Brotli | Compression::Both)
    }
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Brotli => "brotli",
            Compression::Both => "both",
        }
    }
}

impl Serialize for Compression {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Name(String),
        }
        let expected = "one of \"gzip\", \"brotli\", \"both\", \"none\" or a boolean";
        match Raw::deserialize(d).map_err(|_| serde::de::Error::custom(format!("expected {expected}")))? {
            Raw::Flag(true) => Ok(Compression::Gzip),
            Raw::Flag(false) => Ok(Compression::None),
            Raw::Name(name) => match name.as_str() {
                "gzip" => Ok(Compression::Gzip),
                "brotli" | "br" => Ok(Compression::Brotli),
                "both" | "gzip+brotli" | "all" => Ok(Compression::Both),
                "none" | "off" => Ok(Compression::None),
                other => Err(serde::de::Error::custom(format!("expected {expected}, found {other:?}"))),
            },
        }
    }
}

/// Ours: where and how much the cache keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CacheConfig {
    /// Cache root (default: `$WORKZ_CACHE_DIR`, else the user cache dir + `/workz-build`).
    pub dir: Option<PathBuf>,
    pub memory: MemoryTierConfig,
    pub filesystem: FilesystemTierConfig,
    /// The shared Redis tier (the document's L2), between memory and the filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisTierConfig>,
    /// The object-store tier (an S3-compatible bucket, or a directory), below the filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteTierConfig>,
    /// Serve cache hits but never write (for untrusted builds).
    pub read_only: bool,
    /// Environment variables that are passed to build processes and go into the cache key.
    pub env_allow_list: Vec<String>,
}

/// The in-process memory tier (the document's L1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MemoryTierConfig {
    pub enabled: bool,
    pub max_bytes: u64,
    /// Seconds an entry stays in memory (the document uses 300).
    pub ttl: u64,
}

impl Default for MemoryTierConfig {
    fn default() -> Self {
        MemoryTierConfig { enabled: true, max_bytes: 256 << 20, ttl: 300 }
    }
}

/// The Redis tier (`cache.redis`): entries and small blobs, shared by every machine that
/// points at the same server. Its keys expire after `ttl` seconds (and never later than
/// `buildSystem.cacheTTL`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RedisTierConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://` for TLS, `unix:///path`.
    pub url: String,
    pub key_prefix: String,
    /// Seconds (the document caches in Redis for an hour).
    pub ttl: u64,
    /// Larger blobs are left to the tiers below.
    pub max_blob_bytes: u64,
}

impl Default for RedisTierConfig {
    fn default() -> Self {
        RedisTierConfig { url: String::new(), key_prefix: "workz:".into(), ttl: 3600, max_blob_bytes: 256 << 10 }
    }
}

/// The object-store tier (`cache.remote`): what every machine of a farm shares. Credentials
/// come from the config or from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (or the
/// machine's role, when neither names any).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RemoteTierConfig {
    /// `s3://bucket/prefix` or `file:///dir`.
    pub url: String,
    /// An S3-compatible endpoint other than AWS's (`http://127.0.0.1:9000`, R2's, MinIO's).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Serve hits, never write (CI-style consumers).
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
}

impl RemoteTierConfig {
    /// Where the tier's store is.
    pub fn location(&self) -> ObjectLocation {
        ObjectLocation {
            url: self.url.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }
}

/// The JSON path and message of what is wrong with a store location at `at`.
fn location_problem(at: &str, location: &ObjectLocation) -> Option<(String, String)> {
    location.problem().map(|(field, message)| match field {
        LocationField::Url => (format!("{at}.url"), message),
        LocationField::Credentials => (at.to_string(), message),
    })
}

/// The on-disk tier (the document's L3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilesystemTierConfig {
    pub enabled: bool,
    /// Size bound; least recently used entries are evicted past it.
    pub max_bytes: u64,
}

impl Default for FilesystemTierConfig {
    fn default() -> Self {
        FilesystemTierConfig { enabled: true, max_bytes: 10 << 30 }
    }
}

/// Ours: where builds run and where artifacts are published.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StorageConfig {
    /// Artifact root (default: `$WORKZ_ARTIFACTS_DIR`, else the user data dir + `/workz-build/artifacts`).
    pub artifacts_dir: Option<PathBuf>,
    /// Where build directories are made (default: `<cache dir>/work`).
    pub work_dir: Option<PathBuf>,
    /// Keep build directories after the build (for debugging).
    pub keep_build_dirs: bool,
    /// Where releases are published besides the artifacts directory: CDN origins (buckets or
    /// directories) and backups.
    pub deploy: Vec<DeployDestinationConfig>,
}

/// One release destination (`storage.deploy[]`): a bucket (`s3://bucket/prefix`) or a
/// directory (`file:///dir`). A release is `<prefix>/<app>/<version>/<build_id>/…`, and
/// `<prefix>/<app>/latest.json` (per target for a multi-target app) names the current one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeployDestinationConfig {
    /// Names the destination in results and messages.
    pub name: String,
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Where the destination's objects are served (`https://cdn.example.com/sites`): release
    /// URLs in results are made from it.
    pub public_url: Option<String>,
    /// A failed publish to a backup is a warning; to any other destination it fails the build.
    pub backup: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
}

impl DeployDestinationConfig {
    pub fn location(&self) -> ObjectLocation {
        ObjectLocation {
            url: self.url.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }
}

/// Ours: limits on what a build may take in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LimitsConfig {
    pub max_source_files: u64,
    pub max_file_bytes: u64,
    pub max_source_bytes: u64,
    /// Output kept per external process as log events; the rest is counted, not streamed.
    pub max_log_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_source_files: 50_000,
            max_file_bytes: 100 << 20,
            max_source_bytes: 2 << 30,
            max_log_bytes: 1 << 20,
        }
    }
}

/// Ours: what a directory snapshot leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SourceConfig {
    /// Gitignore-style patterns left out of directory snapshots.
    pub exclude: Vec<String>,
    /// Honour `.gitignore` (and `.workzignore`) files in the source tree.
    pub respect_gitignore: bool,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            exclude: ["node_modules/", ".git/", "/dist/", "/build/", ".dart_tool/", ".workz/"]
                .map(String::from)
                .to_vec(),
            respect_gitignore: true,
        }
    }
}

/// A URL without its password, for messages (`redis://user:***@host`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let hidden = if userinfo.contains(':') { format!("{user}:***") } else { "***".to_string() };
            format!("{scheme}://{hidden}@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}
