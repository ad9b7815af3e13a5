//! The `flutter build` argv for a target, for the SDK version at hand: flags come and go
//! between releases (`--web-renderer` was removed in 3.29, `--wasm` arrived in 3.22), and
//! the platform document's own commands have mistakes that are fixed here (Android ABI names
//! passed to `--target-platform`, which takes `android-arm64`, `android-arm`, `android-x64`).

use std::fmt;

use crate::config::{APP_CONFIG_FILE, BuildMode, ConfigError, WebRenderer};
use crate::error::{BuildError, Error, Result};

/// A Flutter SDK version (`frameworkVersion` of `flutter --version --machine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlutterVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl FlutterVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> FlutterVersion {
        FlutterVersion { major, minor, patch }
    }

    /// `3.16.9`, `3.22.0-0.1.pre` (the pre-release suffix is ignored).
    pub fn parse(text: &str) -> Option<FlutterVersion> {
        let core = text.trim().split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let version = FlutterVersion::new(parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0));
        Some(version)
    }

    /// `--web-renderer` exists (it was removed with the HTML renderer in 3.29).
    pub fn has_web_renderer_flag(self) -> bool {
        self < FlutterVersion::new(3, 29, 0)
    }

    /// `flutter build web --wasm` exists (stable since 3.22).
    pub fn has_wasm(self) -> bool {
        self >= FlutterVersion::new(3, 22, 0)
    }

    /// The `skwasm` value of `--web-renderer` exists (with `--wasm`, 3.22 on).
    pub fn has_skwasm_renderer(self) -> bool {
        self.has_wasm()
    }
}

impl fmt::Display for FlutterVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Everything the app config can say about a Flutter build, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlutterOptions {
    pub mode: BuildMode,
    pub web_renderer: WebRenderer,
    pub wasm: bool,
    pub source_maps: bool,
    pub tree_shake_icons: bool,
    /// Android and iOS release builds: `--obfuscate --split-debug-info=build/debug-info`.
    pub obfuscate: bool,
    pub split_per_abi: bool,
    /// Android ABIs as the platform names them (`arm64-v8a`, `armeabi-v7a`, `x86_64`).
    pub target_abis: Vec<String>,
    /// Android: also build an app bundle (`flutter build appbundle`).
    pub app_bundle: bool,
    /// iOS: sign the build; with an export method, build an `.ipa`.
    pub codesign: bool,
    pub export_method: Option<String>,
}

impl Default for FlutterOptions {
    fn default() -> Self {
        FlutterOptions {
            mode: BuildMode::Release,
            web_renderer: WebRenderer::Canvaskit,
            wasm: false,
            source_maps: false,
            tree_shake_icons: true,
            obfuscate: false,
            split_per_abi: false,
            target_abis: Vec::new(),
            app_bundle: false,
            codesign: false,
            export_method: None,
        }
    }
}

/// The targets a Flutter app can be built for.
pub const TARGETS: &[&str] = &["web", "android", "ios", "windows", "macos", "linux"];

/// Where `--split-debug-info` writes the symbols (inside the project, not published).
pub const DEBUG_INFO_DIR: &str = "build/debug-info";

/// iOS export methods `flutter build ipa --export-method` takes.
pub const EXPORT_METHODS: &[&str] = &["ad-hoc", "app-store", "development", "enterprise"];

fn mode_flag(mode: BuildMode) -> String {
    match mode {
        BuildMode::Release => "--release",
        BuildMode::Profile => "--profile",
        BuildMode::Debug => "--debug",
    }
    .to_string()
}

/// Flutter's name for an Android ABI (`arm64-v8a` → `android-arm64`); its own names pass.
pub fn android_platform(abi: &str) -> Option<&'static str> {
    match abi.trim() {
        "arm64-v8a" | "android-arm64" | "arm64" => Some("android-arm64"),
        "armeabi-v7a" | "android-arm" | "arm" => Some("android-arm"),
        "x86_64" | "android-x64" | "x64" => Some("android-x64"),
        _ => None,
    }
}

/// A value of `workz.json` that this target or SDK version cannot honour.
fn config_invalid(path: &str, message: String) -> Error {
    ConfigError::Invalid { file: APP_CONFIG_FILE.into(), path: path.into(), message }.into()
}

/// The argv (after `flutter`) of each command that builds `target`, in order.
pub fn build_commands(target: &str, version: FlutterVersion, options: &FlutterOptions) -> Result<Vec<Vec<String>>> {
    let mode = mode_flag(options.mode);
    let obfuscate = options.obfuscate && options.mode == BuildMode::Release;
    let obfuscation = || vec!["--obfuscate".to_string(), format!("--split-debug-info={DEBUG_INFO_DIR}")];
    let mut args: Vec<String> = vec!["build".into()];
    let commands = match target {
        "web" => {
            args.extend(["web".into(), mode]);
            if options.wasm {
                if !version.has_wasm() {
                    return Err(config_invalid(
                        "buildConfig.flutter.wasm",
                        format!("needs Flutter 3.22 or later; this SDK is {version}"),
                    ));
                }
                args.push("--wasm".into());
            }
            if version.has_web_renderer_flag() {
                let renderer = match options.web_renderer {
                    WebRenderer::Canvaskit => Some("canvaskit"),
                    WebRenderer::Html => Some("html"),
                    WebRenderer::Auto => Some("auto"),
                    // skwasm is what --wasm selects; the flag value exists only alongside it.
                    WebRenderer::Skwasm if version.has_skwasm_renderer() && options.wasm => None,
                    WebRenderer::Skwasm => {
                        return Err(config_invalid(
                            "buildConfig.flutter.webRenderer",
                            format!(
                                "\"skwasm\" needs Flutter 3.22 or later and buildConfig.flutter.wasm; this SDK is {version}"
                            ),
                        ));
                    }
                };
                if let Some(renderer) = renderer {
                    args.push(format!("--web-renderer={renderer}"));
                }
            } else if options.web_renderer == WebRenderer::Html {
                return Err(config_invalid(
                    "buildConfig.flutter.webRenderer",
                    format!(
                        "the HTML renderer was removed in Flutter 3.29; this SDK is {version} (use canvaskit, or wasm)"
                    ),
                ));
            }
            if options.source_maps {
                args.push("--source-maps".into());
            }
            args.push(if options.tree_shake_icons { "--tree-shake-icons" } else { "--no-tree-shake-icons" }.into());
            vec![args]
        }
        "android" => {
            let mut platforms = Vec::new();
            for abi in &options.target_abis {
                let platform = android_platform(abi).ok_or_else(|| {
                    config_invalid(
                        "buildConfig.flutter.targetAbis",
                        format!("unknown Android ABI `{abi}` (arm64-v8a, armeabi-v7a, x86_64)"),
                    )
                })?;
                if !platforms.contains(&platform) {
                    platforms.push(platform);
                }
            }
            let common = |kind: &str, split: bool| {
                let mut args = vec!["build".to_string(), kind.to_string(), mode.clone()];
                if obfuscate {
                    args.extend(obfuscation());
                }
                if split {
                    args.push("--split-per-abi".into());
                }
                if !platforms.is_empty() {
                    args.push(format!("--target-platform={}", platforms.join(",")));
                }
                args.push(if options.tree_shake_icons { "--tree-shake-icons" } else { "--no-tree-shake-icons" }.into());
                args
            };
            let mut commands = vec![common("apk", options.split_per_abi)];
            if options.app_bundle {
                commands.push(common("appbundle", false));
            }
            commands
        }
        "ios" => {
            let ipa = options.codesign && options.export_method.is_some();
            args.extend([if ipa { "ipa" } else { "ios" }.into(), mode]);
            if obfuscate {
                args.extend(obfuscation());
            }
            match (&options.export_method, options.codesign) {
                (Some(method), true) => {
                    if !EXPORT_METHODS.contains(&method.as_str()) {
                        return Err(config_invalid(
                            "buildConfig.flutter.exportMethod",
                            format!("`{method}` is not one of {}", EXPORT_METHODS.join(", ")),
                        ));
                    }
                    args.push(format!("--export-method={method}"));
                }
                (_, false) => args.push("--no-codesign".into()),
                (None, true) => {}
            }
            vec![args]
        }
        "linux" | "windows" | "macos" => {
            args.extend([target.to_string(), mode]);
            if obfuscate {
                args.extend(obfuscation());
            }
            args.push(if options.tree_shake_icons { "--tree-shake-icons" } else { "--no-tree-shake-icons" }.into());
            vec![args]
        }
        other => {
            return Err(BuildError::UnsupportedTarget {
                app_type: "flutter".into(),
                target: other.into(),
                supported: TARGETS.join(", "),
            }
            .into());
        }
    };
    Ok(commands)
}
