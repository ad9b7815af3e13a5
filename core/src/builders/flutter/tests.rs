use super::*;
use crate::config::{BuildMode, WebRenderer};

#[test]
fn versions_parse_and_gate_flags() {
    let v = FlutterVersion::parse("3.16.9").unwrap();
    assert_eq!(v, FlutterVersion::new(3, 16, 9));
    assert!(v.has_web_renderer_flag() && !v.has_wasm());
    let pre = FlutterVersion::parse("3.22.0-0.1.pre").unwrap();
    assert!(pre.has_wasm() && pre.has_web_renderer_flag());
    let new = FlutterVersion::parse("3.29.0").unwrap();
    assert!(!new.has_web_renderer_flag() && new.has_wasm());
    assert_eq!(FlutterVersion::parse("garbage"), None);
}

#[test]
fn android_abi_names_map_to_flutter_platforms() {
    assert_eq!(android_platform("arm64-v8a"), Some("android-arm64"));
    assert_eq!(android_platform("armeabi-v7a"), Some("android-arm"));
    assert_eq!(android_platform("x86_64"), Some("android-x64"));
    assert_eq!(android_platform("android-arm64"), Some("android-arm64"));
    assert_eq!(android_platform("mips"), None);
    let options = FlutterOptions {
        target_abis: vec!["arm64-v8a".into(), "armeabi-v7a".into(), "arm64-v8a".into()],
        ..Default::default()
    };
    let commands = build_commands("android", FlutterVersion::new(3, 16, 9), &options).unwrap();
    assert!(commands[0].contains(&"--target-platform=android-arm64,android-arm".to_string()), "{commands:?}");
    let bad = FlutterOptions { target_abis: vec!["mips".into()], ..Default::default() };
    let err = build_commands("android", FlutterVersion::new(3, 16, 9), &bad).unwrap_err();
    assert_eq!(err.code(), "config_invalid");
}

#[test]
fn obfuscation_is_for_release_builds_only() {
    let release = FlutterOptions { obfuscate: true, ..Default::default() };
    let debug = FlutterOptions { obfuscate: true, mode: BuildMode::Debug, ..Default::default() };
    let v = FlutterVersion::new(3, 16, 9);
    assert!(build_commands("ios", v, &release).unwrap()[0].contains(&"--obfuscate".to_string()));
    assert!(!build_commands("ios", v, &debug).unwrap()[0].contains(&"--obfuscate".to_string()));
    let html = FlutterOptions { web_renderer: WebRenderer::Html, ..Default::default() };
    assert_eq!(build_commands("web", FlutterVersion::new(3, 32, 0), &html).unwrap_err().code(), "config_invalid");
    assert_eq!(build_commands("fuchsia", v, &release).unwrap_err().code(), "unsupported_target");
}

#[test]
fn failures_are_classified_into_the_guides_cases() {
    let cases = [
        ("Gradle task assembleRelease failed with exit code 1", "flutter_gradle_failed"),
        ("Because app requires SDK version >=9.0.0, version solving failed.", "flutter_sdk_version_conflict"),
        ("Because a depends on b ^1.0.0 and app depends on b ^2.0.0, version solving failed.", "dependency_conflict"),
        (
            "Failed to download https://www.gstatic.com/flutter-canvaskit/x/canvaskit.wasm",
            "flutter_canvaskit_unavailable",
        ),
        ("error: No profiles for 'com.example' were found", "flutter_signing_failed"),
        ("No Android SDK found. Try setting the ANDROID_HOME environment variable.", "platform_requirement_unmet"),
        ("Something else entirely", "process_failed"),
    ];
    for (stderr, code) in cases {
        let err = classify_failure("flutter build web", "exit status: 1", stderr);
        assert_eq!(err.code(), code, "{stderr}");
        assert!(err.hint().is_some(), "{code} has a hint");
    }
    assert!(classify_failure("flutter build web", "1", "canvaskit.wasm download failed").is_retryable());
}
