//! The per-app configuration (`workz.json`), with the document's defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Parsed, parse_json, slug, split_command};

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
    /// Ours: webhooks told of this app's builds, besides the engine's. Never serialized, so
    /// never in a cache key's components or a history record (secrets stay in `workz.json`).
    #[serde(default, skip_serializing)]
    pub notifications: AppNotifications,
}

/// An app's own receivers of its finished builds: `build_completed` and `build_slow` (the
/// engine-wide `alert` goes only to the engine config's webhooks).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AppNotifications {
    pub webhooks: Vec<super::WebhookConfig>,
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
                if let Err(message) = split_command(hook) {
                    return Err(ConfigError::invalid(file, format!("hooks.{list}.{i}"), message));
                }
            }
        }
        super::validate_webhooks(&self.notifications.webhooks, file)
    }

    /// The app's identifier in paths and cache labels: the name, lowercased, with runs of
    /// anything but letters and digits turned into `-`.
    pub fn app_id(&self) -> String {
        slug(&self.name)
    }
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
