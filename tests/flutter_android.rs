//! An Android build end to end against the stand-in flutter. Its own test binary with one
//! test: it sets ANDROID_HOME and puts a `java` on PATH for the host check, which must not
//! race with other tests reading the environment.

use std::path::Path;

use workz_build::{BuildRequest, BuildStatus, Engine, EngineConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn android_builds_one_apk_per_abi_and_a_bundle_with_mapped_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // The host: an Android SDK directory and a java on PATH.
    std::fs::create_dir_all(root.join("android-sdk")).unwrap();
    std::fs::create_dir_all(root.join("jdk/bin")).unwrap();
    let java = root.join("jdk/bin/java");
    std::fs::write(&java, "#!/bin/sh\necho 'openjdk 17'\n").unwrap();
    std::fs::set_permissions(&java, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(
        std::iter::once(root.join("jdk/bin")).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    // SAFETY: the only test of this binary, before the engine starts any thread.
    unsafe {
        std::env::set_var("ANDROID_HOME", root.join("android-sdk"));
        std::env::set_var("PATH", path);
    }
    // The stand-in SDK.
    let sdk = root.join("sdk");
    std::fs::create_dir_all(sdk.join("bin/cache")).unwrap();
    std::fs::copy(
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../tests/flutter/flutter"),
        sdk.join("bin/flutter"),
    )
    .unwrap();
    // In the SDK's bin/cache, where a sandboxed Flutter may write.
    let log = sdk.join("bin/cache/argv.jsonl");
    std::fs::write(sdk.join("bin/standin.json"), serde_json::json!({"version": "3.24.0", "log": log}).to_string())
        .unwrap();
    std::fs::write(sdk.join("bin/cache/flutter.version.json"), r#"{"frameworkVersion": "3.24.0"}"#).unwrap();
    // The app.
    let app = root.join("app");
    std::fs::create_dir_all(app.join("lib")).unwrap();
    std::fs::write(app.join("pubspec.yaml"), "name: droid\n").unwrap();
    std::fs::write(app.join("lib/main.dart"), "void main() {}\n").unwrap();
    let app_json = serde_json::json!({"name": "droid", "appType": "flutter", "buildTargets": ["android"],
        "buildConfig": {"optimization": {"obfuscate": true},
                        "flutter": {"splitPerAbi": true, "targetAbis": ["arm64-v8a", "x86_64"], "appBundle": true}}});
    std::fs::write(app.join("workz.json"), app_json.to_string()).unwrap();

    let mut config = EngineConfig::default();
    config.cache.dir = Some(root.join("cache"));
    config.storage.artifacts_dir = Some(root.join("artifacts"));
    config.platforms.flutter.sdk_path = Some(sdk);
    let engine = Engine::new(config).unwrap();
    let result = engine.build(BuildRequest::directory(&app)).await;
    assert_eq!(result.status, BuildStatus::Succeeded, "{:?}", result.error);
    let artifacts = result.artifacts.as_ref().unwrap();
    let mut files: Vec<&str> = artifacts
        .files
        .iter()
        .map(|f| f.path.as_str())
        .filter(|p| !p.ends_with(".gz") && !p.ends_with(".br"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["app-arm64-v8a-release.apk", "app-release.aab", "app-x86_64-release.apk"],
        "only APKs and the bundle, not the symbols"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&artifacts.path).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["type"], "flutter-android");
    let calls: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v["argv"]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect::<Vec<_>>().join(" "))
        })
        .collect();
    assert!(calls.contains(&"build apk --release --obfuscate --split-debug-info=build/debug-info --split-per-abi --target-platform=android-arm64,android-x64 --tree-shake-icons".to_string()), "{calls:?}");
    // The SDK and JDK locations reached flutter (the stand-in, like flutter, fails without them).
    let homes: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["argv"][0] == "build")
        .map(|v| v["android_home"].clone())
        .collect();
    assert_eq!(homes.len(), 2, "{homes:?}");
    assert!(homes.iter().all(|h| h.as_str() == root.join("android-sdk").to_str()), "{homes:?}");
    // They are part of the key: another SDK is another build.
    std::fs::create_dir_all(root.join("android-sdk-2")).unwrap();
    // SAFETY: this test binary runs this one test (see the module doc).
    unsafe { std::env::set_var("ANDROID_HOME", root.join("android-sdk-2")) };
    let again = engine.build(BuildRequest::directory(&app)).await;
    assert_eq!(again.status, BuildStatus::Succeeded, "{:?}", again.error);
    assert!(!again.cache.hit, "a different ANDROID_HOME must not hit the first build's entry");
    assert!(calls.contains(&"build appbundle --release --obfuscate --split-debug-info=build/debug-info --target-platform=android-arm64,android-x64 --tree-shake-icons".to_string()), "{calls:?}");
}
