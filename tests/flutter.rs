//! The Flutter builder end to end against the scripted stand-in `tests/flutter/flutter`,
//! which accepts exactly the flags the real CLI of its version accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use workz_build::builders::flutter::{FlutterOptions, FlutterVersion, build_commands};
use workz_build::config::{BuildMode, WebRenderer};
use workz_build::{BuildRequest, BuildResult, BuildStatus, Engine, EngineConfig};

/// A world with its own copy of the stand-in SDK (its own version, log and failure mode).
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new(version: &str) -> World {
        let world = World { dir: tempfile::tempdir().unwrap() };
        let bin = world.sdk().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let standin = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../tests/flutter/flutter");
        std::fs::copy(standin, bin.join("flutter")).unwrap();
        world.configure(serde_json::json!({"version": version}));
        world
    }

    fn sdk(&self) -> PathBuf {
        self.dir.path().join("sdk")
    }

    /// In the SDK's `bin/cache`, the one place of the SDK a sandboxed Flutter may write.
    fn log(&self) -> PathBuf {
        self.sdk().join("bin/cache/argv.jsonl")
    }

    /// Set the stand-in's behaviour (version, fail, hang, no_artifact); the log is always kept.
    fn configure(&self, mut settings: serde_json::Value) {
        settings["log"] = self.log().display().to_string().into();
        if settings.get("version").is_none() {
            let old: serde_json::Value =
                serde_json::from_slice(&std::fs::read(self.sdk().join("bin/standin.json")).unwrap()).unwrap();
            settings["version"] = old["version"].clone();
        }
        std::fs::write(self.sdk().join("bin/standin.json"), settings.to_string()).unwrap();
        // Where the real SDK keeps its version (an upgrade leaves bin/flutter as it was).
        std::fs::create_dir_all(self.sdk().join("bin/cache")).unwrap();
        let version = serde_json::json!({"frameworkVersion": settings["version"]});
        std::fs::write(self.sdk().join("bin/cache/flutter.version.json"), version.to_string()).unwrap();
    }

    fn engine(&self) -> Engine {
        let mut config = EngineConfig::default();
        config.cache.dir = Some(self.dir.path().join("cache"));
        config.storage.artifacts_dir = Some(self.dir.path().join("artifacts"));
        config.platforms.flutter.sdk_path = Some(self.sdk());
        Engine::new(config).unwrap()
    }

    fn app(&self, name: &str, build_config: serde_json::Value) -> PathBuf {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(root.join("lib")).unwrap();
        let app = serde_json::json!({"name": name, "appType": "flutter",
            "buildTargets": ["web", "android", "ios", "linux"], "buildConfig": build_config});
        std::fs::write(root.join("workz.json"), app.to_string()).unwrap();
        std::fs::write(
            root.join("pubspec.yaml"),
            format!("name: {}\nenvironment:\n  sdk: '>=3.2.0 <4.0.0'\ndependencies:\n  flutter:\n    sdk: flutter\n  http: ^1.2.0\n", name.replace('-', "_")),
        )
        .unwrap();
        std::fs::write(root.join("lib/main.dart"), "void main() {}\n").unwrap();
        root
    }

    /// Every argv the stand-in saw, as space-joined strings.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                v["argv"]
                    .as_array()
                    .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect::<Vec<_>>().join(" "))
            })
            .collect()
    }
}

async fn build(engine: &Engine, app: &Path, target: &str) -> BuildResult {
    let mut request = BuildRequest::directory(app);
    request.target = Some(target.into());
    engine.build(request).await
}

fn code(result: &BuildResult) -> String {
    result.error.as_ref().map(|e| e.code.clone()).unwrap_or_default()
}

/// Every combination of options the config can express, per target.
fn combinations() -> Vec<(String, String, FlutterOptions)> {
    let mut all = Vec::new();
    for mode in [BuildMode::Release, BuildMode::Profile, BuildMode::Debug] {
        let base = FlutterOptions { mode, ..FlutterOptions::default() };
        for renderer in [WebRenderer::Canvaskit, WebRenderer::Html, WebRenderer::Auto, WebRenderer::Skwasm] {
            for wasm in [false, true] {
                for source_maps in [false, true] {
                    for tree_shake_icons in [false, true] {
                        let o = FlutterOptions {
                            web_renderer: renderer,
                            wasm,
                            source_maps,
                            tree_shake_icons,
                            ..base.clone()
                        };
                        all.push((
                            "web".into(),
                            format!("{mode:?} {renderer:?} wasm={wasm} maps={source_maps} icons={tree_shake_icons}"),
                            o,
                        ));
                    }
                }
            }
        }
        for obfuscate in [false, true] {
            for split_per_abi in [false, true] {
                for abis in [vec![], vec!["arm64-v8a".to_string(), "armeabi-v7a".into(), "x86_64".into()]] {
                    for app_bundle in [false, true] {
                        let o = FlutterOptions {
                            obfuscate,
                            split_per_abi,
                            target_abis: abis.clone(),
                            app_bundle,
                            ..base.clone()
                        };
                        all.push((
                            "android".into(),
                            format!(
                                "{mode:?} obfuscate={obfuscate} split={split_per_abi} abis={} aab={app_bundle}",
                                abis.len()
                            ),
                            o,
                        ));
                    }
                }
            }
            for (codesign, export) in [(false, None), (true, None), (true, Some("ad-hoc")), (true, Some("app-store"))] {
                let o = FlutterOptions { obfuscate, codesign, export_method: export.map(String::from), ..base.clone() };
                all.push((
                    "ios".into(),
                    format!("{mode:?} obfuscate={obfuscate} codesign={codesign} export={export:?}"),
                    o,
                ));
            }
            for desktop in ["linux", "windows", "macos"] {
                let o = FlutterOptions { obfuscate, ..base.clone() };
                all.push((desktop.into(), format!("{mode:?} obfuscate={obfuscate}"), o));
            }
        }
    }
    all
}

/// Golden argv for every combination, for a Flutter that still has `--web-renderer` (3.16)
/// and one that no longer does (3.32); every argv the builder makes is also run through the
/// stand-in of that version, which rejects a flag the real tool would reject.
#[test]
fn golden_argv_for_every_combination_and_three_sdk_versions() {
    // 3.24 is one of the versions where both --wasm and --web-renderer exist.
    for version in ["3.16.9", "3.24.0", "3.32.0"] {
        let world = World::new(version);
        let project = world.dir.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("pubspec.yaml"), "name: golden\n").unwrap();
        let parsed = FlutterVersion::parse(version).unwrap();
        let mut golden = String::new();
        let mut argvs = Vec::new();
        for (target, label, options) in combinations() {
            match build_commands(&target, parsed, &options) {
                Ok(commands) => {
                    for args in commands {
                        golden.push_str(&format!("{target} | {label} | flutter {}\n", args.join(" ")));
                        argvs.push(args);
                    }
                }
                Err(e) => golden.push_str(&format!("{target} | {label} | error {}: {e}\n", e.code())),
            }
        }
        // Each argv through the stand-in, 16 processes at a time.
        for batch in argvs.chunks(16) {
            let children: Vec<_> = batch
                .iter()
                .map(|args| {
                    // A host with an Android SDK (the stand-in, like flutter, refuses Android
                    // builds without one).
                    let child = Command::new(world.sdk().join("bin/flutter"))
                        .args(args)
                        .env("ANDROID_HOME", &project)
                        .current_dir(&project)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap();
                    (args, child)
                })
                .collect();
            for (args, child) in children {
                let out = child.wait_with_output().unwrap();
                assert!(
                    out.status.success(),
                    "flutter {version} rejects {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join(format!("../tests/flutter/golden-argv-{version}.txt"));
        if std::env::var_os("WORKZ_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &golden).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == golden,
            "{} differs from the argv the builder makes now (WORKZ_UPDATE_GOLDEN=1 rewrites it)",
            path.display()
        );
    }
}

#[test]
fn the_stand_in_rejects_what_the_real_tool_rejects() {
    let world = World::new("3.32.0");
    let project = world.dir.path().join("p");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("pubspec.yaml"), "name: p\n").unwrap();
    let run = |args: &[&str]| {
        Command::new(world.sdk().join("bin/flutter")).args(args).current_dir(&project).output().unwrap()
    };
    // The document's command: --web-renderer is gone in 3.29+, ABI names are not platforms.
    let out = run(&["build", "web", "--release", "--web-renderer=canvaskit"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Could not find an option named \"web-renderer\""));
    let out = run(&["build", "apk", "--release", "--target-platform=arm64-v8a"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"arm64-v8a\" is not an allowed value"));
    assert_eq!(run(&["build", "apk", "--release", "--debug"]).status.code(), Some(64));
    assert!(run(&["build", "web", "--release", "--wasm"]).status.success());
    let old = World::new("3.16.9");
    let out = Command::new(old.sdk().join("bin/flutter"))
        .args(["build", "web", "--wasm"])
        .current_dir(&project)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "no --wasm before 3.22");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_build_collects_artifacts_then_hits_the_cache_without_calling_flutter() {
    let world = World::new("3.16.9");
    let app = world.app("shop", serde_json::json!({"optimization": {"sourceMaps": true}}));
    let engine = world.engine();
    let result = build(&engine, &app, "web").await;
    assert_eq!(result.status, BuildStatus::Succeeded, "{:?}", result.error);
    let artifacts = result.artifacts.as_ref().unwrap();
    let root = Path::new(&artifacts.path);
    assert!(
        root.join("index.html").is_file()
            && root.join("main.dart.js").is_file()
            && root.join("main.dart.js.map").is_file()
    );
    assert!(artifacts.files.iter().any(|f| f.path == "main.dart.js.gz"), "precompressed by the shared optimize stage");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["type"], "flutter-web");
    let calls = world.calls();
    assert!(calls.contains(&"create --platforms=web .".to_string()), "{calls:?}");
    assert!(calls.contains(&"pub get".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"build web --release --web-renderer=canvaskit --source-maps --tree-shake-icons".to_string()),
        "{calls:?}"
    );

    let before = world.calls().len();
    let again = build(&engine, &app, "web").await;
    assert!(again.cache.hit, "{:?}", again.error);
    assert_eq!(world.calls().len(), before, "no flutter call at all on a hit: {:?}", &world.calls()[before..]);

    // A newer SDK is another key, and gets no --web-renderer.
    world.configure(serde_json::json!({"version": "3.32.0"}));
    let newer = build(&engine, &app, "web").await;
    assert!(!newer.cache.hit && newer.status == BuildStatus::Succeeded, "{:?}", newer.error);
    assert!(
        world.calls().last().unwrap().starts_with("build web --release --source-maps"),
        "{:?}",
        world.calls().last()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_artifacts_come_from_where_flutter_writes_them_and_android_needs_an_sdk() {
    let world = World::new("3.22.0");
    let app = world.app(
        "tool",
        serde_json::json!({"flutter": {"splitPerAbi": true, "targetAbis": ["arm64-v8a", "x86_64"], "appBundle": true}}),
    );
    let engine = world.engine();
    let linux = build(&engine, &app, "linux").await;
    assert_eq!(linux.status, BuildStatus::Succeeded, "{:?}", linux.error);
    let files: Vec<&str> = linux.artifacts.as_ref().unwrap().files.iter().map(|f| f.path.as_str()).collect();
    assert!(files.contains(&"tool") && files.contains(&"lib/libapp.so"), "{files:?}");

    // Android needs an SDK: on a host without one (the test machines; the Android build
    // itself is tests/flutter_android.rs, in its own process) it is refused before flutter runs.
    assert!(
        std::env::var_os("ANDROID_HOME").is_none() && std::env::var_os("ANDROID_SDK_ROOT").is_none(),
        "this test needs a host without an Android SDK"
    );
    let android = build(&engine, &app, "android").await;
    assert_eq!(code(&android), "platform_requirement_unmet");
    assert!(android.error.as_ref().unwrap().message.contains("ANDROID_HOME"));
    let mut world_calls = world.calls();
    world_calls.retain(|c| c.starts_with("build apk"));
    assert!(world_calls.is_empty(), "no android build was attempted: {world_calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_requirements_fail_one_target_while_others_build() {
    let world = World::new("3.16.9");
    let app = world.app("multi", serde_json::json!({}));
    let engine = world.engine();
    let ios = build(&engine, &app, "ios").await;
    if std::env::consts::OS != "macos" {
        assert_eq!(code(&ios), "platform_requirement_unmet");
        assert!(ios.error.as_ref().unwrap().hint.is_some());
    }
    let web = build(&engine, &app, "web").await;
    assert_eq!(web.status, BuildStatus::Succeeded, "{:?}", web.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_diagnosed_with_the_guides_hints() {
    for (fail, fail_on, expected) in [
        ("canvaskit", "build", "flutter_canvaskit_unavailable"),
        ("sdk_version", "pub", "flutter_sdk_version_conflict"),
        ("pub_conflict", "pub", "dependency_conflict"),
        ("gradle", "build", "flutter_gradle_failed"),
        ("xcode", "build", "flutter_signing_failed"),
    ] {
        let world = World::new("3.16.9");
        world.configure(serde_json::json!({"fail": fail, "fail_on": fail_on}));
        let app = world.app(&format!("fail-{fail}"), serde_json::json!({}));
        let mut config = EngineConfig::default();
        config.cache.dir = Some(world.dir.path().join("cache"));
        config.storage.artifacts_dir = Some(world.dir.path().join("artifacts"));
        config.platforms.flutter.sdk_path = Some(world.sdk());
        config.build_system.retry_attempts = 0;
        let result = build(&Engine::new(config).unwrap(), &app, "web").await;
        assert_eq!(code(&result), expected, "{fail}: {:?}", result.error);
        assert!(result.error.as_ref().unwrap().hint.as_deref().is_some_and(|h| !h.is_empty()), "{fail}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_that_exits_0_without_artifacts_is_artifact_missing() {
    let world = World::new("3.16.9");
    world.configure(serde_json::json!({"no_artifact": true}));
    let app = world.app("empty", serde_json::json!({}));
    let result = build(&world.engine(), &app, "web").await;
    assert_eq!(code(&result), "artifact_missing", "{:?}", result.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_sdk_cannot_honour_and_a_missing_pubspec_fail_before_any_work() {
    let world = World::new("3.32.0");
    let app = world.app("old-renderer", serde_json::json!({"flutter": {"webRenderer": "html"}}));
    let result = build(&world.engine(), &app, "web").await;
    assert_eq!(code(&result), "config_invalid", "{:?}", result.error);
    assert!(result.error.as_ref().unwrap().message.contains("buildConfig.flutter.webRenderer"));
    std::fs::remove_file(app.join("pubspec.yaml")).unwrap();
    let result = build(&world.engine(), &app, "web").await;
    assert_eq!(code(&result), "validation_failed");
    assert!(!world.calls().iter().any(|c| c.starts_with("build ")), "{:?}", world.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_build_is_killed_at_the_timeout_with_its_children() {
    let world = World::new("3.16.9");
    // A tag of this test's own in the stand-in's command lines: the host finds its processes.
    let tag = format!("300.{}", std::process::id());
    world.configure(serde_json::json!({"hang": true, "hang_tag": tag}));
    let app = world.app("hang", serde_json::json!({}));
    let mut request = BuildRequest::directory(&app);
    request.target = Some("web".into());
    request.timeout = Some(3);
    let started = std::time::Instant::now();
    let pattern = format!("^sleep {tag}$");
    let watcher = std::thread::spawn(move || {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let out = std::process::Command::new("pgrep").args(["-f", &pattern]).output().unwrap();
            seen.extend(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            if seen.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(30));
        }
        seen
    });
    let result = world.engine().build(request).await;
    assert_eq!(result.status, BuildStatus::TimedOut, "{:?}", result.error);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let recorded = watcher.join().unwrap();
    assert_eq!(recorded.len(), 2, "the stand-in and its child were seen running");
    for pid in recorded {
        assert!(
            workz_build::testing::wait_until_gone(pid, std::time::Duration::from_secs(5)),
            "process {pid} was left running"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_builds_get_the_workz_sdk_and_a_pwa_manifest() {
    let world = World::new("3.22.0");
    let app = world.app("pwa", serde_json::json!({"flutter": {"generatePWA": true}}));
    // A name that tries to close the init script.
    let mut app_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(app.join("workz.json")).unwrap()).unwrap();
    app_json["name"] = "pwa</script><script>alert(1)".into();
    std::fs::write(app.join("workz.json"), app_json.to_string()).unwrap();
    let mut config = EngineConfig::default();
    config.cache.dir = Some(world.dir.path().join("cache"));
    config.storage.artifacts_dir = Some(world.dir.path().join("artifacts"));
    config.platforms.flutter.sdk_path = Some(world.sdk());
    config.platforms.flutter.sdk_script_url = Some("https://cdn.workz.example/sdk.js".into());
    let result = build(&Engine::new(config).unwrap(), &app, "web").await;
    assert_eq!(result.status, BuildStatus::Succeeded, "{:?}", result.error);
    let root = PathBuf::from(&result.artifacts.as_ref().unwrap().path);
    let page = std::fs::read_to_string(root.join("index.html")).unwrap();
    let head = page.split("</head>").next().unwrap();
    assert!(head.contains(r#"<script src="https://cdn.workz.example/sdk.js"></script>"#), "{page}");
    let (_, body) = page.split_once("<body>").unwrap();
    let init = body.find("WorkzSDK.init").expect("the init script");
    assert!(init < body.find("</body>").unwrap(), "before </body>: {page}");
    assert!(!body.contains("</script><script>alert(1)"), "the app name cannot close the script: {page}");
    assert!(body.contains(&result.build_id), "{page}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.webmanifest")).unwrap()).unwrap();
    assert_eq!(manifest["display"], "standalone");
    assert_eq!(manifest["start_url"], ".");
    assert_eq!(manifest["name"], app_json["name"]);
    assert_eq!(manifest["icons"][0]["src"], "icons/Icon-192.png", "flutter's icons are kept");
    assert!(page.contains(r#"<link rel="manifest" href="manifest.webmanifest">"#), "{page}");
    // manifest.json stays the release manifest.
    let release: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(release["buildId"], result.build_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pub_cache_is_restored_by_lock_and_hooks_find_the_configured_sdk() {
    let world = World::new("3.16.9");
    let app = world.app("pub", serde_json::json!({}));
    std::fs::write(app.join("pubspec.lock"), "packages:\n  http:\n    version: \"1.2.0\"\n").unwrap();
    let mut app_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(app.join("workz.json")).unwrap()).unwrap();
    app_json["hooks"] = serde_json::json!({"preBuild": ["flutter analyze"]});
    std::fs::write(app.join("workz.json"), app_json.to_string()).unwrap();
    let engine = world.engine();
    let fetched = |world: &World| -> Vec<Vec<String>> {
        std::fs::read_to_string(world.log())
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v.get("fetched").cloned())
            .map(|v| serde_json::from_value(v).unwrap())
            .collect()
    };
    let first = build(&engine, &app, "web").await;
    assert_eq!(first.status, BuildStatus::Succeeded, "{:?}", first.error);
    assert_eq!(fetched(&world), vec![vec!["http".to_string()]], "the first build fetches");
    assert!(world.calls().contains(&"analyze".to_string()), "the hook ran the configured SDK: {:?}", world.calls());
    let mut forced = BuildRequest::directory(&app);
    forced.target = Some("web".into());
    forced.force = true;
    let second = engine.build(forced).await;
    assert_eq!(second.status, BuildStatus::Succeeded, "{:?}", second.error);
    assert_eq!(fetched(&world), vec![vec!["http".to_string()], vec![]], "same lock: nothing fetched again");
}
