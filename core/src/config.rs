//! Engine and app configuration, in the platform document's JSON shapes.
//!
//! [`EngineConfig`] is the document's global build configuration (`buildSystem`,
//! `platforms`, `optimization`) plus our own sections (`cache`, `storage`,
//! `limits`, `source`). [`AppConfig`] is the per-app `workz.json`. Both keep the
//! document's defaults, so existing platform configs load unchanged. Parsing
//! reports the JSON path of a bad value and lists unknown keys as warnings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors of configuration loading.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: malformed JSON at line {line}, column {column}: {message}")]
    Parse { file: String, line: usize, column: usize, message: String },
    #[error("{file}: invalid value at `{path}`: {message}")]
    Invalid { file: String, path: String, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no app configuration: {0}")]
    AppConfigMissing(String),
}

impl ConfigError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ConfigError::Parse { .. } => "config_parse_error",
            ConfigError::Invalid { .. } => "config_invalid",
            ConfigError::Read { .. } => "config_read_failed",
            ConfigError::AppConfigMissing(_) => "app_config_missing",
        }
    }

    pub(crate) fn hint(&self) -> Option<String> {
        Some(match self {
            ConfigError::Parse { .. } => {
                "Check the JSON syntax (for example with `jq . FILE`): a trailing comma or a missing quote is the usual cause.".into()
            }
            ConfigError::Invalid { path, .. } => format!(
                "Fix `{path}`; docs/configuration.md lists every key, its type and its default."
            ),
            ConfigError::Read { .. } => "Check that the file exists and is readable.".into(),
            ConfigError::AppConfigMissing(_) => {
                "Add a workz.json at the app root with at least `name` and `appType`, or pass the app config with the request.".into()
            }
        })
    }

    fn invalid(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { file: file.to_string(), path: path.into(), message: message.into() }
    }
}

/// A config document and the keys in it that the engine does not know.
#[derive(Debug, Clone)]
pub struct Parsed<T> {
    pub value: T,
    /// JSON paths of unknown keys; the pipeline turns each into a warning event.
    pub unknown_keys: Vec<String>,
}

/// Parse JSON into `T`, naming the JSON path of a bad value and collecting unknown keys.
pub fn parse_json<T: DeserializeOwned>(file: &str, text: &str) -> Result<Parsed<T>, ConfigError> {
    let mut unknown_keys = Vec::new();
    let mut json = serde_json::Deserializer::from_str(text);
    let result: Result<T, _> = {
        let mut on_unknown = |path: serde_ignored::Path<'_>| unknown_keys.push(path.to_string());
        let tracked = serde_ignored::Deserializer::new(&mut json, &mut on_unknown);
        serde_path_to_error::deserialize(tracked)
    };
    let value = match result {
        Ok(value) => value,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            return Err(if inner.is_syntax() || inner.is_eof() {
                ConfigError::Parse {
                    file: file.to_string(),
                    line: inner.line(),
                    column: inner.column(),
                    message: strip_position(&inner.to_string()),
                }
            } else {
                let path = if path == "." { "(root)".to_string() } else { path };
                ConfigError::invalid(file, path, strip_position(&inner.to_string()))
            });
        }
    };
    if let Err(err) = json.end() {
        return Err(ConfigError::Parse {
            file: file.to_string(),
            line: err.line(),
            column: err.column(),
            message: strip_position(&err.to_string()),
        });
    }
    Ok(Parsed { value, unknown_keys })
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Engine configuration
// ---------------------------------------------------------------------------

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

    /// Check values that types alone cannot (ranges, relations).
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let b = &self.build_system;
        if b.max_concurrent_builds == 0 {
            return Err(ConfigError::invalid(
                file,
                "buildSystem.maxConcurrentBuilds",
                "expected an integer of at least 1, found 0",
            ));
        }
        if b.build_timeout == 0 {
            return Err(ConfigError::invalid(
                file,
                "buildSystem.buildTimeout",
                "expected a number of seconds of at least 1, found 0",
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
        if !(b.retry_backoff.is_finite() && b.retry_backoff >= 0.0) {
            return Err(ConfigError::invalid(
                file,
                "buildSystem.retryBackoff",
                "expected a non-negative number of seconds",
            ));
        }
        if self.limits.max_source_files == 0 {
            return Err(ConfigError::invalid(file, "limits.maxSourceFiles", "expected at least 1"));
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

// ---------------------------------------------------------------------------
// App configuration (workz.json)
// ---------------------------------------------------------------------------

/// The file name of the app configuration at the app root.
pub const APP_CONFIG_FILE: &str = "workz.json";

/// Kind of app; picks the platform builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppType {
    Static,
    Javascript,
    Flutter,
}

impl AppType {
    pub fn as_str(self) -> &'static str {
        match self {
            AppType::Static => "static",
            AppType::Javascript => "javascript",
            AppType::Flutter => "flutter",
        }
    }
}

impl std::fmt::Display for AppType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The per-app configuration (`workz.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppConfig {
    pub name: String,
    #[serde(default = "default_version")]
    pub version: String,
    pub app_type: AppType,
    /// Targets to build; empty means the platform's default targets.
    #[serde(default)]
    pub build_targets: Vec<String>,
    #[serde(default)]
    pub build_config: BuildConfig,
    /// Platform dependencies the platform injects (for example `workzSDK`).
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub hooks: Hooks,
    /// Ours: variables for the build. Those named `VITE_*` or `WORKZ_PUBLIC_*` are compiled
    /// into a JavaScript app as `import.meta.env.NAME`; all are given to build commands.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_version() -> String {
    "1.0.0".into()
}

impl AppConfig {
    /// Parse and check a `workz.json` document.
    pub fn from_json(file: &str, text: &str) -> Result<Parsed<AppConfig>, ConfigError> {
        let parsed = parse_json::<AppConfig>(file, text)?;
        parsed.value.validate(file)?;
        Ok(parsed)
    }

    /// Check values that types alone cannot.
    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::invalid(file, "name", "expected a non-empty app name"));
        }
        if slug(&self.name).is_empty() {
            return Err(ConfigError::invalid(
                file,
                "name",
                format!("expected a name with at least one letter or digit, found {:?}", self.name),
            ));
        }
        let version_ok = !self.version.is_empty()
            && self.version.len() <= 64
            && self.version != "."
            && self.version != ".."
            && self.version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
        if !version_ok {
            return Err(ConfigError::invalid(
                file,
                "version",
                format!(
                    "expected a version such as \"1.2.3\" (letters, digits, '.', '-', '+', '_'), found {:?}",
                    self.version
                ),
            ));
        }
        for (i, target) in self.build_targets.iter().enumerate() {
            if target.is_empty() || !target.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(ConfigError::invalid(
                    file,
                    format!("buildTargets.{i}"),
                    format!("expected a target name such as \"web\", found {target:?}"),
                ));
            }
        }
        for (list, hooks) in [("preBuild", &self.hooks.pre_build), ("postBuild", &self.hooks.post_build)] {
            for (i, hook) in hooks.iter().enumerate() {
                if let Err(message) = crate::process::split_command(hook) {
                    return Err(ConfigError::invalid(file, format!("hooks.{list}.{i}"), message));
                }
            }
        }
        Ok(())
    }

    /// The app's identifier in paths and cache labels: the name, lowercased, with runs of
    /// anything but letters and digits turned into `-`.
    pub fn app_id(&self) -> String {
        slug(&self.name)
    }
}

/// Lowercase ASCII letters and digits, other runs as a single `-`, trimmed.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(100);
    out
}

/// The app's `buildConfig`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BuildConfig {
    pub optimization: AppOptimization,
    pub flutter: FlutterBuildConfig,
    pub javascript: JavascriptBuildConfig,
    pub assets: AssetsConfig,
}

/// `buildConfig.optimization`: per-app overrides of the engine's optimization.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppOptimization {
    pub minify: Option<bool>,
    pub obfuscate: bool,
    pub source_maps: Option<bool>,
}

/// `buildConfig.flutter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FlutterBuildConfig {
    pub web_renderer: WebRenderer,
    pub target_platform: Option<String>,
    pub build_mode: BuildMode,
    /// Ours: `flutter build web --wasm` (Flutter 3.22+).
    pub wasm: bool,
    /// Ours: `--tree-shake-icons` (on, as the document's web build has it).
    pub tree_shake_icons: bool,
    /// Ours: Android `--split-per-abi` (one APK per ABI).
    pub split_per_abi: bool,
    /// Ours: Android ABIs (`arm64-v8a`, `armeabi-v7a`, `x86_64`), mapped to `--target-platform`.
    pub target_abis: Vec<String>,
    /// Ours: also build an Android App Bundle (`.aab`).
    pub app_bundle: bool,
    /// Ours: sign the iOS build (off: `--no-codesign`).
    pub codesign: bool,
    /// Ours: with `codesign`, build an `.ipa` exported this way (`ad-hoc`, `app-store`, `development`, `enterprise`).
    pub export_method: Option<String>,
    /// The document's option: write a PWA `manifest.json` for web builds.
    #[serde(rename = "generatePWA")]
    pub generate_pwa: bool,
}

impl Default for FlutterBuildConfig {
    fn default() -> Self {
        FlutterBuildConfig {
            web_renderer: WebRenderer::Canvaskit,
            target_platform: None,
            build_mode: BuildMode::Release,
            wasm: false,
            tree_shake_icons: true,
            split_per_abi: false,
            target_abis: Vec::new(),
            app_bundle: false,
            codesign: false,
            export_method: None,
            generate_pwa: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebRenderer {
    Canvaskit,
    Html,
    Skwasm,
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildMode {
    Release,
    Profile,
    Debug,
}

/// `buildConfig.javascript`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JavascriptBuildConfig {
    pub target: EsTarget,
    pub module_format: ModuleFormat,
    pub bundler: Bundler,
    /// Entry module, relative to the app root (default: looked up).
    pub entry: Option<String>,
    /// Packages whose install scripts may run (lifecycle scripts are off for all others).
    pub allow_scripts: Vec<String>,
    /// Security rules by name (`no-eval`, …) → `off`, `warn` or `error`, overriding their default level.
    pub security_rules: BTreeMap<String, RuleLevel>,
    /// Generate a service worker that precaches the hashed outputs (the document's `generateSW`).
    #[serde(rename = "generateSW")]
    pub generate_sw: bool,
    /// With `bundler: "script"`: the directory `npm run build` writes to.
    pub output_dir: String,
    /// With `bundler: "script"`: the package.json script to run.
    pub build_script: String,
    /// Ours: `production` (default) or `development`: `process.env.NODE_ENV` and
    /// `import.meta.env.MODE`/`PROD`/`DEV` in the built app.
    pub mode: JsMode,
}

/// `buildConfig.javascript.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsMode {
    #[default]
    Production,
    Development,
}

impl JsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            JsMode::Production => "production",
            JsMode::Development => "development",
        }
    }
}

impl Default for JavascriptBuildConfig {
    fn default() -> Self {
        JavascriptBuildConfig {
            target: EsTarget::Es2020,
            module_format: ModuleFormat::Esm,
            bundler: Bundler::Rolldown,
            entry: None,
            allow_scripts: Vec::new(),
            security_rules: BTreeMap::new(),
            generate_sw: true,
            output_dir: "dist".into(),
            build_script: "build".into(),
            mode: JsMode::Production,
        }
    }
}

/// How a security rule's findings are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleLevel {
    Off,
    Warn,
    Error,
}

impl EsTarget {
    /// The name rolldown and esbuild take (`es2020`, `esnext`).
    pub fn as_str(self) -> &'static str {
        match self {
            EsTarget::Es2015 => "es2015",
            EsTarget::Es2016 => "es2016",
            EsTarget::Es2017 => "es2017",
            EsTarget::Es2018 => "es2018",
            EsTarget::Es2019 => "es2019",
            EsTarget::Es2020 => "es2020",
            EsTarget::Es2021 => "es2021",
            EsTarget::Es2022 => "es2022",
            EsTarget::Es2023 => "es2023",
            EsTarget::Es2024 => "es2024",
            EsTarget::Esnext => "esnext",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EsTarget {
    Es2015,
    Es2016,
    Es2017,
    Es2018,
    Es2019,
    Es2020,
    Es2021,
    Es2022,
    Es2023,
    Es2024,
    Esnext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleFormat {
    Esm,
    Iife,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bundler {
    Rolldown,
    Esbuild,
    Webpack,
    Script,
}

/// `buildConfig.assets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AssetsConfig {
    pub optimize: bool,
    pub formats: Vec<String>,
    pub compression: String,
}

impl Default for AssetsConfig {
    fn default() -> Self {
        AssetsConfig { optimize: true, formats: Vec::new(), compression: "auto".into() }
    }
}

/// Commands run in the build directory before and after the platform build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Hooks {
    pub pre_build: Vec<String>,
    pub post_build: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_GLOBAL: &str = r#"{
      "buildSystem": {"maxConcurrentBuilds": 10, "buildTimeout": 1800, "retryAttempts": 3,
        "cacheEnabled": true, "cacheTTL": 604800, "artifactRetention": 2592000},
      "platforms": {
        "javascript": {"enabled": true, "targets": ["web"], "nodeVersion": "18.x",
          "buildTools": ["webpack", "babel", "terser"]},
        "flutter": {"enabled": true, "targets": ["web", "android", "ios", "windows", "macos", "linux"],
          "flutterVersion": "3.16.x", "dartVersion": "3.2.x", "buildTools": ["flutter", "dart"]}
      },
      "optimization": {"minification": true, "compression": "gzip", "assetOptimization": true,
        "treeshaking": true, "sourceMaps": false}
    }"#;

    const DOC_APP: &str = r#"{
      "name": "My Workz App", "version": "1.0.0", "appType": "flutter",
      "buildTargets": ["web", "android", "ios"],
      "buildConfig": {
        "optimization": {"minify": true, "obfuscate": false, "sourceMaps": false},
        "flutter": {"webRenderer": "canvaskit", "targetPlatform": "web-javascript", "buildMode": "release"},
        "javascript": {"target": "es2020", "moduleFormat": "esm", "bundler": "webpack"},
        "assets": {"optimize": true, "formats": ["webp", "avif"], "compression": "auto"}
      },
      "dependencies": {"workzSDK": "^2.0.0"},
      "hooks": {"preBuild": ["flutter pub get", "dart analyze"], "postBuild": ["flutter test", "dart doc"]}
    }"#;

    #[test]
    fn the_documents_global_config_equals_the_defaults() {
        let parsed = EngineConfig::from_json("engine.json", DOC_GLOBAL).unwrap();
        assert!(parsed.unknown_keys.is_empty(), "{:?}", parsed.unknown_keys);
        assert_eq!(parsed.value, EngineConfig::default());
    }

    #[test]
    fn a_partial_platform_entry_changes_only_the_keys_it_names() {
        let text = r#"{"platforms": {"flutter": {"sdkPath": "/opt/flutter"}, "javascript": {"enabled": false}}}"#;
        let config = EngineConfig::from_json("engine.json", text).unwrap().value;
        let defaults = PlatformsConfig::default();
        assert!(config.platforms.flutter.enabled, "still enabled");
        assert_eq!(config.platforms.flutter.targets, defaults.flutter.targets);
        assert_eq!(config.platforms.flutter.flutter_version, defaults.flutter.flutter_version);
        assert_eq!(config.platforms.flutter.sdk_path.as_deref(), Some(Path::new("/opt/flutter")));
        assert!(!config.platforms.javascript.enabled);
        assert_eq!(config.platforms.javascript.targets, defaults.javascript.targets);
        assert_eq!(config.platforms.static_site, defaults.static_site);
    }

    #[test]
    fn the_documents_app_config_loads() {
        let parsed = AppConfig::from_json("workz.json", DOC_APP).unwrap();
        assert!(parsed.unknown_keys.is_empty(), "{:?}", parsed.unknown_keys);
        let app = parsed.value;
        assert_eq!(app.app_type, AppType::Flutter);
        assert_eq!(app.build_config.javascript.bundler, Bundler::Webpack);
        assert_eq!(app.hooks.pre_build, vec!["flutter pub get", "dart analyze"]);
        assert_eq!(app.app_id(), "my-workz-app");
    }

    #[test]
    fn a_mistyped_value_names_its_json_path() {
        let text = DOC_APP.replace(r#""target": "es2020""#, r#""target": "es5""#);
        let err = AppConfig::from_json("workz.json", &text).unwrap_err();
        match &err {
            ConfigError::Invalid { path, message, .. } => {
                assert_eq!(path, "buildConfig.javascript.target");
                assert!(message.contains("es5") && message.contains("es2020"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.code(), "config_invalid");

        let err = EngineConfig::from_json("e.json", r#"{"buildSystem": {"buildTimeout": "long"}}"#).unwrap_err();
        assert!(matches!(&err, ConfigError::Invalid { path, .. } if path == "buildSystem.buildTimeout"), "{err}");

        let err = EngineConfig::from_json("e.json", r#"{"buildSystem": {"maxConcurrentBuilds": 0}}"#).unwrap_err();
        assert!(matches!(&err, ConfigError::Invalid { path, .. } if path == "buildSystem.maxConcurrentBuilds"));

        let err =
            AppConfig::from_json("workz.json", r#"{"name": "x", "appType": "static", "buildTargets": ["web", 3]}"#)
                .unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { path, .. } if path == "buildTargets[1]" || path == "buildTargets.1"),
            "{err}"
        );
    }

    #[test]
    fn malformed_json_gives_line_and_column() {
        let err = AppConfig::from_json("workz.json", "{\n  \"name\": \"x\",\n}").unwrap_err();
        match err {
            ConfigError::Parse { line, .. } => assert_eq!(line, 3),
            other => panic!("unexpected {other:?}"),
        }
        let err = AppConfig::from_json("workz.json", r#"{"name": "x", "appType": "static"} trailing"#).unwrap_err();
        assert_eq!(err.code(), "config_parse_error");
    }

    #[test]
    fn unknown_keys_are_reported_not_silenced() {
        let parsed = AppConfig::from_json(
            "workz.json",
            r#"{"name": "x", "appType": "static", "colour": 1, "buildConfig": {"javascript": {"bundlr": "x"}}}"#,
        )
        .unwrap();
        assert_eq!(parsed.unknown_keys, vec!["colour", "buildConfig.javascript.bundlr"]);
    }

    #[test]
    fn missing_required_fields_and_bad_names_fail() {
        let err = AppConfig::from_json("workz.json", r#"{"name": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("appType"), "{err}");
        let err = AppConfig::from_json("workz.json", r#"{"name": "x", "appType": "static", "version": "../../etc"}"#)
            .unwrap_err();
        assert!(matches!(&err, ConfigError::Invalid { path, .. } if path == "version"));
        let err = AppConfig::from_json(
            "workz.json",
            r#"{"name": "x", "appType": "static", "hooks": {"preBuild": ["echo 'unclosed"]}}"#,
        )
        .unwrap_err();
        assert!(matches!(&err, ConfigError::Invalid { path, .. } if path == "hooks.preBuild.0"), "{err}");
    }

    #[test]
    fn compression_accepts_names_and_booleans() {
        for (text, want) in
            [("\"brotli\"", Compression::Brotli), ("false", Compression::None), ("\"both\"", Compression::Both)]
        {
            let c: Compression = serde_json::from_str(text).unwrap();
            assert_eq!(c, want);
        }
        assert!(serde_json::from_str::<Compression>("\"zip\"").is_err());
    }

    /// Every key of both documents appears in docs/configuration.md.
    #[test]
    fn every_key_is_documented() {
        fn keys(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
            if let serde_json::Value::Object(map) = value {
                for (k, v) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    if path == "dependencies" || !v.is_object() {
                        out.push(path); // a leaf, or a free-form map
                    } else {
                        keys(&path, v, out);
                    }
                }
            }
        }
        let doc = include_str!("../../docs/configuration.md");
        let mut all = Vec::new();
        let mut engine = EngineConfig::default();
        engine.cache.dir = Some("/x".into());
        engine.storage.artifacts_dir = Some("/x".into());
        engine.storage.work_dir = Some("/x".into());
        engine.build_system.build_timeout_warning = Some(1);
        keys("", &serde_json::to_value(&engine).unwrap(), &mut all);
        let mut app = AppConfig::from_json("workz.json", DOC_APP).unwrap().value;
        app.build_config.javascript.entry = Some("x".into());
        keys("", &serde_json::to_value(&app).unwrap(), &mut all);
        for key in all {
            let leaf = key.rsplit('.').next().unwrap();
            let documented = doc.contains(&format!("`{leaf}`"))
                || doc.contains(&format!("`{}`", key.split_once('.').map_or(key.as_str(), |(_, rest)| rest)))
                || doc.contains(&format!("### `{leaf}`"));
            assert!(documented, "docs/configuration.md does not document `{key}`");
        }
    }

    #[test]
    fn slugs_are_path_safe() {
        assert_eq!(slug("My Workz App"), "my-workz-app");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("***"), "");
    }
}
