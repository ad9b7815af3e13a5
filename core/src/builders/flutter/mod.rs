//! The `flutter` app type: drives the real `flutter` CLI through the process runner for six
//! targets. The SDK's version picks the argv (`command.rs`); its failure output is classified
//! into the platform guide's cases (`diagnose.rs`); artifacts are collected from where the
//! tool writes them.

mod command;
mod diagnose;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use command::{FlutterOptions, FlutterVersion, android_platform, build_commands};
pub use diagnose::{FlutterError, classify_failure};

use crate::builders::html;
use crate::config::{AppConfig, AppType, EngineConfig};
use crate::context::BuildContext;
use crate::context::{BuildOutput, HostRequirement, PlatformBuilder};
use crate::error::{BuildError, ProcessError, Result};
use crate::process::CommandSpec;

/// Builds `appType: "flutter"` apps with the `flutter` CLI.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlutterBuilder;

/// Where each target's artifacts are, relative to the project, and what to publish.
fn artifact_dirs(target: &str, mode: &str) -> Vec<String> {
    let folder = {
        let mut c = mode.chars();
        c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
    };
    match target {
        "web" => vec!["build/web".into()],
        "android" => vec!["build/app/outputs/flutter-apk".into(), format!("build/app/outputs/bundle/{mode}")],
        "ios" => vec!["build/ios/iphoneos".into(), "build/ios/ipa".into()],
        "linux" => vec![format!("build/linux/x64/{mode}/bundle"), format!("build/linux/arm64/{mode}/bundle")],
        "windows" => vec![format!("build/windows/x64/runner/{folder}"), format!("build/windows/arm64/runner/{folder}")],
        "macos" => vec![format!("build/macos/Build/Products/{folder}")],
        _ => Vec::new(),
    }
}

/// Files of an artifact directory that are published (APKs only, not Gradle's metadata).
fn publishes(target: &str, rel: &str) -> bool {
    match target {
        "android" => rel.ends_with(".apk") || rel.ends_with(".aab"),
        "ios" => rel.starts_with("Runner.app/") || rel.ends_with(".ipa") || rel.contains(".app/"),
        _ => true,
    }
}

impl FlutterBuilder {
    /// The `flutter` program: `<platforms.flutter.sdkPath>/bin/flutter`, else `flutter` on PATH.
    pub fn program(config: &EngineConfig) -> String {
        config.platforms.flutter_program()
    }

    /// The SDK's version, from `flutter --version --machine` (remembered per installed binary).
    async fn sdk(ctx: &BuildContext) -> Result<(FlutterVersion, BTreeMap<String, String>)> {
        let program = Self::program(&ctx.config);
        let probe: &[&str] = &["--version", "--machine"];
        let found =
            crate::toolchain::versions(&ctx.services.state_dir, &ctx.services.work_root, &[(&program, probe)]).await;
        let Some(machine) = found.get(&program) else {
            return Err(ProcessError::ToolchainMissing { program }.into());
        };
        let info: serde_json::Value = serde_json::from_str(machine).map_err(|e| {
            BuildError::Failed(format!("`flutter --version --machine` did not print JSON ({e}): {machine:.200}"))
        })?;
        let text = info["frameworkVersion"].as_str().unwrap_or_default();
        let version = FlutterVersion::parse(text)
            .ok_or_else(|| BuildError::Failed(format!("unreadable Flutter version `{text}`")))?;
        let mut tools = BTreeMap::new();
        tools.insert("flutter".to_string(), version.to_string());
        if let Some(dart) = info["dartSdkVersion"].as_str() {
            tools.insert("dart".to_string(), dart.to_string());
        }
        Ok((version, tools))
    }

    fn options(app: &AppConfig, config: &EngineConfig) -> FlutterOptions {
        let flutter = &app.build_config.flutter;
        let optimization = &app.build_config.optimization;
        FlutterOptions {
            mode: flutter.build_mode,
            web_renderer: flutter.web_renderer,
            wasm: flutter.wasm,
            source_maps: optimization.source_maps.unwrap_or(config.optimization.source_maps),
            tree_shake_icons: flutter.tree_shake_icons,
            obfuscate: optimization.obfuscate,
            split_per_abi: flutter.split_per_abi,
            target_abis: flutter.target_abis.clone(),
            app_bundle: flutter.app_bundle,
            codesign: flutter.codesign,
            export_method: flutter.export_method.clone(),
        }
    }

    /// Run one flutter command in the project; a failure is classified by its output.
    async fn flutter(ctx: &BuildContext, project: &Path, args: Vec<String>) -> Result<()> {
        let spec = CommandSpec {
            program: Self::program(&ctx.config),
            args,
            cwd: project.to_path_buf(),
            env: BTreeMap::from([("PUB_CACHE".to_string(), project.join(PUB_CACHE_DIR).display().to_string())]),
            timeout: None,
            // pub get fetches packages; a build's gradle resolves its dependencies.
            network: true,
            writable: Vec::new(),
        };
        match ctx.runner(project).run(&spec).await {
            Ok(_) => Ok(()),
            Err(ProcessError::Failed { command, status, stderr_tail, .. }) => {
                Err(classify_failure(&command, &status, &stderr_tail))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// `flutter pub get` with the project's pub cache restored from the content store when the
    /// same lock (and SDK) was fetched before, so that pub finds every package and fetches none.
    async fn pub_get(ctx: &mut BuildContext, project: &Path, tools: &BTreeMap<String, String>) -> Result<()> {
        let started = std::time::Instant::now();
        let fetched = Self::pub_get_timed(ctx, project, tools).await;
        ctx.dependency_seconds += started.elapsed().as_secs_f64();
        fetched
    }

    async fn pub_get_timed(ctx: &mut BuildContext, project: &Path, tools: &BTreeMap<String, String>) -> Result<()> {
        let pub_cache = project.join(PUB_CACHE_DIR);
        let key = pub_cache_key(ctx.source()?, tools);
        let cache = ctx.services.cache.clone().filter(|_| ctx.config.build_system.cache_enabled);
        let restored = match &cache {
            Some(cache) => crate::dircache::restore(cache.as_ref(), &key, &pub_cache, project, "pub").await?,
            None => false,
        };
        Self::flutter(ctx, project, vec!["pub".into(), "get".into()]).await?;
        if !restored
            && pub_cache.is_dir()
            && let Some(cache) = &cache
        {
            let label = format!("{}/pub-cache", ctx.app()?.app_id());
            if let Err(e) = crate::dircache::store(cache.as_ref(), &key, &label, &ctx.build_id, &pub_cache, "pub").await
            {
                ctx.warn("cache_failed", format!("storing the pub cache failed: {e}"));
            }
        }
        Ok(())
    }

    /// Copy what the target produced into the output directory; none is `artifact_missing`.
    fn collect(project: &Path, target: &str, mode: &str, out: &Path) -> Result<usize> {
        let mut copied = 0;
        for dir in artifact_dirs(target, mode) {
            let root = project.join(&dir);
            if !root.is_dir() {
                continue;
            }
            for entry in walk(&root)? {
                let rel = entry.strip_prefix(&root).unwrap_or(&entry).to_string_lossy().replace('\\', "/");
                if !publishes(target, &rel) {
                    continue;
                }
                let dest = out.join(&rel);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| BuildError::Failed(format!("{}: {e}", dest.display())))?;
                }
                std::fs::copy(&entry, &dest).map_err(|e| BuildError::Failed(format!("{}: {e}", entry.display())))?;
                copied += 1;
            }
        }
        if copied == 0 {
            let looked = artifact_dirs(target, mode).join(", ");
            return Err(BuildError::ArtifactMissing(format!(
                "flutter exited successfully but left no {target} artifact (looked in {looked})"
            ))
            .into());
        }
        Ok(copied)
    }
}

/// The project's pub cache (`PUB_CACHE`), inside the build directory.
const PUB_CACHE_DIR: &str = ".pub-cache";

/// What identifies a fetched pub cache: the lock (or the manifest without one), the SDK, the host.
fn pub_cache_key(tree: &crate::source::SourceTree, tools: &BTreeMap<String, String>) -> crate::cache::CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(b"workz-build pub-cache v2\0"); // v2: executable bits kept
    if let Some(file) = tree.get("pubspec.lock").or_else(|| tree.get("pubspec.yaml")) {
        h.update(file.digest.as_bytes());
    }
    let extra = serde_json::json!({"toolchain": tools, "os": std::env::consts::OS, "arch": std::env::consts::ARCH});
    let mut canonical = Vec::new();
    crate::cache::canonical_json(&extra, &mut canonical);
    h.update(&canonical);
    crate::cache::CacheKey(crate::digest::Digest::from(h.finalize()))
}

/// The web app manifest's name in the published site (`manifest.json` is the release's).
const WEB_MANIFEST: &str = "manifest.webmanifest";

/// The document's Workz SDK script URL.
pub const DEFAULT_SDK_SCRIPT: &str = "/js/core/workz-sdk-v2.js";

fn attribute(value: &str) -> String {
    value.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;")
}

/// A PWA manifest for the app, keeping what flutter's own manifest has (icons, colours).
fn write_pwa_manifest(out: &Path, app: &AppConfig) -> std::io::Result<()> {
    let path = out.join(WEB_MANIFEST);
    let mut manifest: serde_json::Map<String, serde_json::Value> =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let short: String = app.name.chars().take(12).collect();
    manifest.insert("name".into(), app.name.clone().into());
    manifest.insert("short_name".into(), short.into());
    manifest.insert("start_url".into(), ".".into());
    manifest.insert("display".into(), "standalone".into());
    manifest.entry("background_color").or_insert_with(|| "#ffffff".into());
    manifest.entry("theme_color").or_insert_with(|| "#0175C2".into());
    manifest.entry("icons").or_insert_with(|| serde_json::Value::Array(Vec::new()));
    let text = serde_json::to_string_pretty(&manifest).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

/// Regular files under `root`, not following symlinks out of it.
fn walk(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| BuildError::Failed(format!("{}: {e}", dir.display())))?;
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files.sort();
    Ok(files)
}

#[async_trait]
impl PlatformBuilder for FlutterBuilder {
    fn app_type(&self) -> AppType {
        AppType::Flutter
    }

    fn supported_targets(&self) -> &[&'static str] {
        command::TARGETS
    }

    fn host_requirements(&self, target: &str) -> Vec<HostRequirement> {
        match target {
            "ios" | "macos" => vec![HostRequirement::Os("macos")],
            "windows" => vec![HostRequirement::Os("windows")],
            "android" => {
                vec![HostRequirement::EnvDir(&["ANDROID_HOME", "ANDROID_SDK_ROOT"]), HostRequirement::Program("java")]
            }
            _ => Vec::new(),
        }
    }

    fn toolchain_env(&self, target: &str) -> Vec<&'static str> {
        // Where flutter finds its own files and packages, for every target.
        let mut names = vec!["FLUTTER_ROOT", "PUB_HOSTED_URL", "FLUTTER_STORAGE_BASE_URL"];
        match target {
            "android" => names.extend(["ANDROID_HOME", "ANDROID_SDK_ROOT", "JAVA_HOME"]),
            "ios" | "macos" => names.push("DEVELOPER_DIR"),
            _ => {}
        }
        names
    }

    async fn toolchain(&self, ctx: &BuildContext) -> Result<BTreeMap<String, String>> {
        Ok(Self::sdk(ctx).await?.1)
    }

    async fn validate(&self, ctx: &mut BuildContext) -> Result<()> {
        if ctx.source()?.get("pubspec.yaml").is_none() {
            return Err(BuildError::Validation(
                "a Flutter app needs pubspec.yaml at its root (flutter create makes one)".into(),
            )
            .into());
        }
        let (version, _) = Self::sdk(ctx).await?;
        // A setting this SDK cannot honour fails here, before any work.
        build_commands(ctx.target()?, version, &Self::options(ctx.app()?, &ctx.config))?;
        Ok(())
    }

    async fn resolve_dependencies(&self, ctx: &mut BuildContext) -> Result<BTreeMap<String, String>> {
        let mut resolved = BTreeMap::new();
        if let Some(lock) = ctx.source()?.get("pubspec.lock") {
            resolved.insert("pubspec.lock".to_string(), lock.digest.to_string());
        }
        Ok(resolved)
    }

    async fn build(&self, ctx: &mut BuildContext) -> Result<BuildOutput> {
        let project = ctx.build_dir().await?;
        let target = ctx.target()?.to_string();
        let (version, tools) = Self::sdk(ctx).await?;
        let options = Self::options(ctx.app()?, &ctx.config);
        let commands = build_commands(&target, version, &options)?;
        // The real workflow: platform folders the app does not have are generated.
        let folder = target.as_str();
        if !project.join(folder).is_dir() {
            Self::flutter(ctx, &project, vec!["create".into(), format!("--platforms={target}"), ".".into()]).await?;
        }
        Self::pub_get(ctx, &project, &tools).await?;
        for args in commands {
            Self::flutter(ctx, &project, args).await?;
        }
        let mode = format!("{:?}", options.mode).to_lowercase();
        let out = ctx.output_dir()?.to_path_buf();
        Self::collect(&project, &target, &mode, &out)?;
        let entry_point = (target == "web" && out.join("index.html").is_file()).then(|| "index.html".to_string());
        Ok(BuildOutput { entry_point })
    }

    /// Web post-processing as the document does it: the Workz SDK script into `<head>`, its
    /// initialisation before `</body>`, a PWA manifest when asked. Precompression follows in
    /// the shared optimize stage.
    async fn optimize(&self, ctx: &mut BuildContext) -> Result<()> {
        let out = ctx.output_dir()?.to_path_buf();
        let index = out.join("index.html");
        if ctx.target()? != "web" || !index.is_file() {
            return Ok(());
        }
        let app = ctx.app()?.clone();
        let platform = &ctx.config.platforms.flutter;
        let failed = |e: std::io::Error| BuildError::Failed(format!("post-processing index.html: {e}"));
        let mut page = std::fs::read_to_string(&index).map_err(failed)?;
        let sdk = platform.sdk_script_url.as_deref().unwrap_or(DEFAULT_SDK_SCRIPT);
        if !sdk.is_empty() {
            page = html::append_to_head(&page, &format!("<script src=\"{}\"></script>\n", attribute(sdk)))?;
        }
        let init = match &platform.init_script_url {
            Some(url) => format!("<script src=\"{}\"></script>\n", attribute(url)),
            None => {
                let settings = serde_json::json!({
                    "app": app.app_id(), "name": app.name, "version": app.version,
                    "target": "web", "buildId": ctx.build_id,
                });
                // `<` escaped so that no value can close the script element.
                let settings = settings.to_string().replace('<', "\\u003c");
                format!(
                    "<script>window.WorkzApp={settings};if(window.WorkzSDK&&WorkzSDK.init)WorkzSDK.init(window.WorkzApp);</script>\n"
                )
            }
        };
        page = html::append_to_body(&page, &init)?;
        // flutter writes `manifest.json`, the release manifest's name: the web manifest moves to
        // its standard extension, and the page's link with it.
        let flutter_manifest = out.join("manifest.json");
        if flutter_manifest.is_file() {
            std::fs::rename(&flutter_manifest, out.join(WEB_MANIFEST)).map_err(failed)?;
            page = page.replace("href=\"manifest.json\"", &format!("href=\"{WEB_MANIFEST}\""));
        }
        if app.build_config.flutter.generate_pwa {
            write_pwa_manifest(&out, &app).map_err(failed)?;
            if !page.contains("rel=\"manifest\"") {
                page = html::append_to_head(&page, &format!("<link rel=\"manifest\" href=\"{WEB_MANIFEST}\">\n"))?;
            }
        }
        std::fs::write(&index, page).map_err(failed)?;
        Ok(())
    }

    fn artifact_type(&self, target: &str) -> String {
        format!("flutter-{target}")
    }
}

#[cfg(test)]
mod tests;
