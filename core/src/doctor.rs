//! What this worker can build: the toolchains found (with versions), the host's OS, free disk
//! in the engine's directories and memory, and for each gap the targets it rules out.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::{RedisCache, RedisTierSettings};
use crate::config::{EngineConfig, redact_url};
use crate::context::HostRequirement;
use crate::engine::EngineDirs;
use crate::objects::{ObjectLocation, Unanswered};

/// One thing the doctor looked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub found: bool,
    /// A version or a location, when found.
    pub detail: Option<String>,
    /// `<appType>:<target>` builds that need it and cannot run without it.
    pub needed_by: Vec<String>,
}

/// Free space of a directory's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpace {
    pub role: String,
    pub path: String,
    pub free_bytes: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorReport {
    pub os: String,
    pub arch: String,
    pub checks: Vec<Check>,
    pub disks: Vec<DiskSpace>,
    pub memory_available_bytes: Option<u64>,
    /// Whether build commands can be sandboxed here.
    pub sandbox: crate::sandbox::SandboxProbe,
}

impl DoctorReport {
    /// `<appType>:<target>` builds this worker cannot run.
    pub fn unbuildable(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.checks.iter().filter(|c| !c.found).flat_map(|c| c.needed_by.iter().cloned()).collect();
        out.sort();
        out.dedup();
        out
    }
}

fn on_path(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()).map(|p| p.display().to_string())
}

fn free_bytes(dir: &Path) -> Option<u64> {
    // The directory may not exist yet: ask about the nearest ancestor that does.
    let existing = dir.ancestors().find(|d| d.exists())?;
    let c_path = std::ffi::CString::new(existing.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a zeroed out-struct of the right type.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

fn memory_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The versions of the build tools this machine has (`flutter`, `node`, `npm`): what a farm
/// worker registers, and what `doctor` reports.
pub async fn tool_versions(config: &EngineConfig) -> BTreeMap<String, String> {
    let dirs = EngineDirs::resolve(config);
    let flutter = config.platforms.flutter_program();
    let probes: [(&str, &[&str]); 3] =
        [(&flutter, &["--version", "--machine"]), ("node", &["--version"]), ("npm", &["--version"])];
    let mut versions = crate::toolchain::versions(&dirs.cache, &std::env::temp_dir(), &probes).await;
    let flutter_version = versions.remove(&flutter).and_then(|machine| {
        let info: serde_json::Value = serde_json::from_str(&machine).ok()?;
        Some(format!(
            "{} (Dart {})",
            info["frameworkVersion"].as_str()?,
            info["dartSdkVersion"].as_str().unwrap_or("?")
        ))
    });
    if let Some(version) = flutter_version {
        versions.insert("flutter".to_string(), version);
    }
    versions
}

/// Look at this worker for the engine `config`.
pub async fn diagnose(config: &EngineConfig) -> DoctorReport {
    let dirs = EngineDirs::resolve(config);
    let versions = tool_versions(config).await;
    let flutter_version = versions.get("flutter").cloned();
    let flutter_targets = ["web", "android", "ios", "windows", "macos", "linux"];
    let needed = |app: &str, targets: &[&str]| targets.iter().map(|t| format!("{app}:{t}")).collect::<Vec<_>>();
    let android_sdk = ["ANDROID_HOME", "ANDROID_SDK_ROOT"]
        .iter()
        .filter_map(std::env::var_os)
        .map(std::path::PathBuf::from)
        .find(|d| d.is_dir());
    let mut checks = vec![
        Check {
            name: "flutter".into(),
            found: flutter_version.is_some(),
            detail: flutter_version,
            needed_by: needed("flutter", &flutter_targets),
        },
        Check {
            name: "android sdk (ANDROID_HOME / ANDROID_SDK_ROOT)".into(),
            found: android_sdk.is_some(),
            detail: android_sdk.map(|d| d.display().to_string()),
            needed_by: needed("flutter", &["android"]),
        },
        Check {
            name: "java".into(),
            found: on_path("java").is_some(),
            detail: on_path("java"),
            needed_by: needed("flutter", &["android"]),
        },
        Check {
            name: "node".into(),
            found: versions.contains_key("node"),
            detail: versions.get("node").cloned(),
            needed_by: vec!["javascript:web (npm dependencies, external bundlers)".into()],
        },
        Check {
            name: "npm".into(),
            found: versions.contains_key("npm"),
            detail: versions.get("npm").cloned(),
            needed_by: vec!["javascript:web (npm dependencies)".into()],
        },
    ];
    for (os, targets) in [("macos", &["ios", "macos"][..]), ("windows", &["windows"][..])] {
        let ok = HostRequirement::Os(os).check().is_ok();
        checks.push(Check {
            name: format!("{os} host"),
            found: ok,
            detail: ok.then(|| std::env::consts::OS.to_string()),
            needed_by: needed("flutter", targets),
        });
    }
    if std::env::consts::OS == "macos" {
        checks.push(Check {
            name: "xcode (xcodebuild)".into(),
            found: on_path("xcodebuild").is_some(),
            detail: on_path("xcodebuild"),
            needed_by: needed("flutter", &["ios", "macos"]),
        });
    }
    checks.extend(storage_checks(config).await);
    let disks = [("work", &dirs.work), ("cache", &dirs.cache), ("artifacts", &dirs.artifacts)]
        .into_iter()
        .map(|(role, path)| DiskSpace {
            role: role.into(),
            path: path.display().to_string(),
            free_bytes: free_bytes(path),
        })
        .collect();
    DoctorReport {
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        checks,
        disks,
        memory_available_bytes: memory_available(),
        sandbox: crate::sandbox::probe().clone(),
    }
}

/// Whether each shared store the config names answers from here. A cache tier rules no build
/// out (builds go on without it, with a warning), so these name no target.
async fn storage_checks(config: &EngineConfig) -> Vec<Check> {
    let ttl = std::time::Duration::from_secs(config.build_system.cache_ttl);
    let mut checks = Vec::new();
    if let Some(redis) = &config.cache.redis {
        let settings = RedisTierSettings::of(redis, ttl);
        let answer = match RedisCache::new(settings) {
            Ok(cache) => cache.ping().await,
            Err(e) => Err(e),
        };
        checks.push(Check {
            name: format!("redis cache at {}", redact_url(&redis.url)),
            found: answer.is_ok(),
            detail: Some(answer.map_or_else(|e| e.to_string(), |()| "answers".into())),
            needed_by: Vec::new(),
        });
    }
    if let Some(remote) = &config.cache.remote {
        checks.push(bucket_check(format!("object-store cache at {}", remote.url), &remote.location()).await);
    }
    for destination in &config.storage.deploy {
        let name = format!("release destination {} at {}", destination.name, destination.url);
        checks.push(bucket_check(name, &destination.location()).await);
    }
    checks
}

/// Whether a bucket (or directory) answers with the credentials it would be given, and which
/// credential variable is unset when the config names none.
async fn bucket_check(name: String, location: &ObjectLocation) -> Check {
    let answer = location.check(std::time::Duration::from_secs(10)).await;
    let mut detail = match &answer {
        Ok(()) => "answers".to_string(),
        Err(Unanswered::NoBucket(e)) => format!("no such bucket: {e}"),
        Err(Unanswered::Credentials(e) | Unanswered::Unreachable(e)) => e.clone(),
    };
    let missing = location.missing_credential_vars();
    if !missing.is_empty() && !detail.contains(missing[0]) {
        detail.push_str(&format!(" (not set: {}; the config names no credentials either)", missing.join(", ")));
    }
    Check { name, found: answer.is_ok(), detail: Some(detail), needed_by: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_report_names_what_is_missing_for_which_target() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::default();
        config.cache.dir = Some(dir.path().join("cache"));
        config.platforms.flutter.sdk_path = Some(dir.path().join("no-sdk"));
        let report = diagnose(&config).await;
        let flutter = report.checks.iter().find(|c| c.name == "flutter").unwrap();
        assert!(!flutter.found);
        assert!(report.unbuildable().contains(&"flutter:web".to_string()));
        assert!(report.disks.iter().all(|d| d.free_bytes.is_some_and(|b| b > 0)), "{:?}", report.disks);
        assert!(report.memory_available_bytes.is_some_and(|m| m > 0));
        if std::env::consts::OS == "linux" {
            assert!(report.unbuildable().contains(&"flutter:ios".to_string()));
        }
    }
}
