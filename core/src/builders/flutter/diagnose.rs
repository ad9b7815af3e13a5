//! Flutter's failure output, classified into the platform guide's troubleshooting cases, each
//! with the guide's remedy as the hint.

use crate::error::{BuildError, Category, DependencyError, Error, ProcessError};

/// A Flutter build failure the troubleshooting guide knows.
#[derive(Debug, thiserror::Error)]
pub enum FlutterError {
    #[error("the Android (Gradle) build failed: {detail}")]
    Gradle { detail: String },
    #[error("the app's SDK constraint does not match this Flutter/Dart SDK: {detail}")]
    SdkVersion { detail: String },
    #[error("CanvasKit could not be loaded: {detail}")]
    CanvasKit { detail: String },
    #[error("Xcode code signing or provisioning failed: {detail}")]
    Signing { detail: String },
}

impl crate::report::ErrorCode for FlutterError {
    fn code(&self) -> &'static str {
        match self {
            FlutterError::Gradle { .. } => "flutter_gradle_failed",
            FlutterError::SdkVersion { .. } => "flutter_sdk_version_conflict",
            FlutterError::CanvasKit { .. } => "flutter_canvaskit_unavailable",
            FlutterError::Signing { .. } => "flutter_signing_failed",
        }
    }

    fn category(&self) -> Category {
        match self {
            FlutterError::SdkVersion { .. } | FlutterError::Signing { .. } => Category::User,
            FlutterError::Gradle { .. } => Category::Toolchain,
            FlutterError::CanvasKit { .. } => Category::Infrastructure,
        }
    }

    /// A CanvasKit download can succeed on the next try.
    fn is_retryable(&self) -> bool {
        matches!(self, FlutterError::CanvasKit { .. })
    }

    fn hint(&self) -> Option<String> {
        Some(
            match self {
                FlutterError::Gradle { .. } => {
                    "Gradle build failure: run `./gradlew clean` in android/, then `flutter clean` and \
                     `flutter pub get`; check compileSdkVersion/targetSdkVersion in android/app/build.gradle."
                }
                FlutterError::SdkVersion { .. } => {
                    "SDK version conflict: align the `environment: sdk:` constraint in pubspec.yaml (and \
                     compileSdkVersion/targetSdkVersion in android/app/build.gradle) with the worker's SDK, or \
                     set platforms.flutter.flutterVersion to a matching SDK."
                }
                FlutterError::CanvasKit { .. } => {
                    "CanvasKit loading failure: the build is retried; otherwise switch the renderer \
                     (buildConfig.flutter.webRenderer: \"html\" on SDKs before 3.29) or serve CanvasKit yourself \
                     (--dart-define=flutter.web.canvaskit.url=...)."
                }
                FlutterError::Signing { .. } => {
                    "Provisioning profile or signing error: open ios/Runner.xcworkspace in Xcode and configure \
                     signing and capabilities; `sudo xcode-select --switch /Applications/Xcode.app/Contents/Developer` \
                     and `flutter doctor --verbose` for Xcode version problems; or build with codesign off."
                }
            }
            .into(),
        )
    }

    fn family(&self) -> crate::report::Family {
        match self {
            FlutterError::SdkVersion { .. } => crate::report::Family::Dependency,
            FlutterError::Gradle { .. } | FlutterError::CanvasKit { .. } | FlutterError::Signing { .. } => {
                crate::report::Family::Toolchain
            }
        }
    }
}

/// A Flutter failure is a platform builder's own error: the core names no builder.
impl From<FlutterError> for Error {
    fn from(error: FlutterError) -> Error {
        Error::Platform(Box::new(error))
    }
}

/// The error for a failed flutter command, from its stderr: a known case with its hint, or
/// the plain `process_failed`.
pub fn classify_failure(command: &str, status: &str, stderr: &str) -> Error {
    let detail = stderr.lines().filter(|l| !l.trim().is_empty()).take(12).collect::<Vec<_>>().join("\n");
    let has = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
    if has(&["requires SDK version", "The current Dart SDK version is", "The current Flutter SDK version is"]) {
        FlutterError::SdkVersion { detail }.into()
    } else if has(&["version solving failed"]) {
        DependencyError::Conflict { tool: "pub", detail }.into()
    } else if has(&["Could not find package", "could not find package", "doesn't exist (could not find package"]) {
        DependencyError::NotFound { tool: "pub", detail }.into()
    } else if has(&["Failed host lookup", "pub.dev", "SocketException"]) && command.contains(" pub ") {
        DependencyError::RegistryUnreachable { tool: "pub", detail }.into()
    } else if has(&["canvaskit", "CanvasKit"]) {
        FlutterError::CanvasKit { detail }.into()
    } else if has(&["Gradle task", "FAILURE: Build failed with an exception", "BUILD FAILED"]) {
        FlutterError::Gradle { detail }.into()
    } else if has(&["No Android SDK found", "Unable to locate Android SDK", "No Java Development Kit"]) {
        // The host check passed, so the variables did not reach flutter or point at no SDK.
        BuildError::PlatformRequirementUnmet {
            target: "android".into(),
            reason: format!("flutter found no Android SDK or JDK (ANDROID_HOME, JAVA_HOME): {detail}"),
        }
        .into()
    } else if has(&["code signing", "provisioning profile", "No profiles for", "Code Signing Error"]) {
        FlutterError::Signing { detail }.into()
    } else {
        ProcessError::Failed {
            command: command.into(),
            status: status.into(),
            stderr_tail: stderr.into(),
            retryable: false,
            offline: false,
        }
        .into()
    }
}
