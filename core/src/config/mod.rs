//! Engine and app configuration, in the platform document's JSON shapes.
//!
//! [`EngineConfig`] is the document's global build configuration (`buildSystem`,
//! `platforms`, `optimization`) plus our own sections (`cache`, `storage`,
//! `limits`, `source`). [`AppConfig`] is the per-app `workz.json`. Both keep the
//! document's defaults, so existing platform configs load unchanged. Parsing
//! reports the JSON path of a bad value and lists unknown keys as warnings.

use serde::de::DeserializeOwned;
use std::path::PathBuf;

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

impl crate::report::ErrorCode for ConfigError {
    fn code(&self) -> &'static str {
        match self {
            ConfigError::Parse { .. } => "config_parse_error",
            ConfigError::Invalid { .. } => "config_invalid",
            ConfigError::Read { .. } => "config_read_failed",
            ConfigError::AppConfigMissing(_) => "app_config_missing",
        }
    }

    fn hint(&self) -> Option<String> {
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

    fn category(&self) -> crate::report::Category {
        crate::report::Category::User
    }

    fn family(&self) -> crate::report::Family {
        crate::report::Family::Config
    }
}

impl ConfigError {
    pub(crate) fn invalid(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
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

/// Split a command string into argv words with shell-style quoting. No expansion, no operators.
pub fn split_command(command: &str) -> Result<Vec<String>, String> {
    let words = shlex::split(command).ok_or_else(|| "unbalanced quotes or a trailing backslash".to_string())?;
    if words.is_empty() {
        return Err("expected a command, found an empty string".into());
    }
    if words.iter().any(|w| w.contains('\0')) {
        return Err("contains a NUL character".into());
    }
    Ok(words)
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

mod app;
mod engine;
mod monitoring;
mod notifications;
mod queue;
mod sandbox;
mod server;

pub use app::*;
pub use engine::*;
pub use monitoring::*;
pub use notifications::*;
pub use queue::*;
pub use sandbox::*;
pub use server::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ErrorCode;
    use std::path::Path;

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
        let doc = include_str!("../../../docs/configuration.md");
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
    fn every_numeric_setting_out_of_its_range_is_config_invalid_naming_it() {
        // A Redis tier configured, so that its settings are checked too.
        let base = serde_json::json!({"cache": {"redis": {"url": "redis://127.0.0.1:6379/0"}}, "buildSystem": {"buildTimeoutWarning": 60}});
        let config = EngineConfig::from_json("engine.json", &base.to_string()).unwrap().value;
        let ranges = config.numeric_ranges();
        assert!(ranges.len() >= 24, "{ranges:?}");
        for (path, _, min, max) in ranges {
            let mut values = vec![serde_json::json!(max + 1), serde_json::json!(u64::MAX), serde_json::json!(-1)];
            if min > 0 {
                values.push(serde_json::json!(min - 1));
            }
            for value in values {
                let mut doc = base.clone();
                let mut at = &mut doc;
                let parts: Vec<&str> = path.split('.').collect();
                for part in &parts[..parts.len() - 1] {
                    at = at.as_object_mut().unwrap().entry(part.to_string()).or_insert(serde_json::json!({}));
                }
                at[parts[parts.len() - 1]] = value.clone();
                // The warning must stay under the timeout: move it out of the way.
                if path == "buildSystem.buildTimeout" {
                    doc["buildSystem"].as_object_mut().unwrap().remove("buildTimeoutWarning");
                }
                let error = match EngineConfig::from_json("engine.json", &doc.to_string()) {
                    Err(e) => e,
                    Ok(_) => panic!("{path} = {value} was accepted"),
                };
                assert_eq!(error.code(), "config_invalid", "{path} = {value}: {error}");
                let message = error.to_string();
                let leaf = parts[parts.len() - 1];
                assert!(message.contains(leaf), "{path} = {value}: {message}");
            }
        }
        // The one a fuzzing run found: a timeout past what an Instant can hold.
        let Err(error) =
            EngineConfig::from_json("engine.json", r#"{"buildSystem": {"buildTimeout": 9223372036854775808}}"#)
        else {
            panic!("a timeout of 2^63 seconds was accepted");
        };
        assert!(error.to_string().contains("expected 1 to 604800"), "{error}");
    }

    #[test]
    fn slugs_are_path_safe() {
        assert_eq!(slug("My Workz App"), "my-workz-app");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("***"), "");
    }
}
