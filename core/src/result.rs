//! What a build returns: one serializable [`BuildResult`], for every outcome, and the
//! outcome types it is made of (status, stage timings, warnings).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::report::ErrorReport;

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl BuildStatus {
    /// The status as results spell it (`succeeded`, `timed_out`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
            BuildStatus::Cancelled => "cancelled",
            BuildStatus::TimedOut => "timed_out",
        }
    }
}

/// Seconds spent in each stage, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageTimings(pub Vec<(String, f64)>);

impl StageTimings {
    pub fn record(&mut self, stage: &str, seconds: f64) {
        match self.0.iter_mut().find(|(s, _)| s == stage) {
            Some((_, total)) => *total += seconds,
            None => self.0.push((stage.to_string(), seconds)),
        }
    }

    pub fn get(&self, stage: &str) -> Option<f64> {
        self.0.iter().find(|(s, _)| s == stage).map(|(_, t)| *t)
    }
}

impl Serialize for StageTimings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (stage, secs) in &self.0 {
            map.serialize_entry(stage, secs)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for StageTimings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        // serde_json keeps object order only with a feature; the stage order is recovered
        // from the pipeline's order where it matters (display), so a map is enough here.
        let map = BTreeMap::<String, f64>::deserialize(d)?;
        Ok(StageTimings(map.into_iter().collect()))
    }
}

/// A warning raised during a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub code: String,
    pub message: String,
}

/// The app a build was for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRef {
    pub name: String,
    pub version: String,
    /// `static`, `javascript`, `flutter`.
    #[serde(default)]
    pub app_type: String,
}

/// What the cache did for a build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheOutcome {
    /// 64 hex digits; null when the build failed before its key was known.
    pub key: Option<String>,
    pub hit: bool,
    /// The tier that served the hit.
    pub tier: Option<String>,
}

/// One published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub path: String,
    pub size: u64,
    pub blake3: Digest,
}

/// Where a build's outputs were published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifacts {
    /// The release directory (or URL, for remote stores).
    pub path: String,
    pub entry_point: Option<String>,
    /// Total bytes of the published files.
    pub size: u64,
    /// Every published file; empty when the request said `list_files: false`.
    pub files: Vec<ArtifactRef>,
    /// True when a cache hit was served by the app's identical latest release (no new copy).
    pub reused: bool,
    /// Where the release went besides the artifacts directory (`storage.deploy`), in the
    /// config's order; a backup that failed is not listed (its warning says why).
    #[serde(default)]
    pub deployments: Vec<Deployment>,
}

/// A release destination that serves the build's release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// The destination's `name`.
    pub destination: String,
    /// Where the release is read from (under the destination's `publicUrl` when it has one).
    pub url: String,
}

/// The outcome of one build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildResult {
    pub build_id: String,
    pub status: BuildStatus,
    /// Null when the app config could not be read.
    pub app: Option<AppRef>,
    pub target: Option<String>,
    pub cache: CacheOutcome,
    pub artifacts: Option<Artifacts>,
    /// Seconds per stage, in the order they ran.
    pub timings: StageTimings,
    /// Seconds from submission to the end, queue time included.
    pub duration: f64,
    pub warnings: Vec<Warning>,
    pub error: Option<ErrorReport>,
    /// The farm worker that ran the build (absent for a build run in this process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// Why the farm ran it on that worker (absent for a build run in this process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// The performance monitor's advice: stages that took most of the build.
    #[serde(default)]
    pub suggestions: Vec<Suggestion>,
}

/// A stage that took more than `monitoring.stageShare` percent of a build, with the platform
/// document's solutions in this engine's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// `dependencies`, `compilation` or `optimization` (the document's stages).
    pub stage: String,
    /// Its share of the build's time, 0–1.
    pub share: f64,
    pub issue: String,
    pub solutions: Vec<String>,
}

/// Where the farm placed a build and why: every free worker that could build it, scored as
/// the platform document's `findOptimalWorker` does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The worker that ran it.
    pub worker: String,
    /// `best score`, `tie`, `only free worker`, `<name> was busy`, or a fallback: `offered to
    /// <name>, not taken within <n> s`, `reclaimed after its worker stopped`.
    pub reason: String,
    /// Worker name → score.
    pub scores: std::collections::BTreeMap<String, f64>,
}

impl BuildResult {
    pub fn succeeded(&self) -> bool {
        self.status == BuildStatus::Succeeded
    }

    /// A copy without the artifact file list, for a binding that hands the list over apart
    /// (only when the host reads it: it can hold thousands of entries).
    pub fn without_files(&self) -> BuildResult {
        let BuildResult {
            build_id,
            status,
            app,
            target,
            cache,
            artifacts,
            timings,
            duration,
            warnings,
            error,
            worker,
            placement,
            suggestions,
        } = self;
        BuildResult {
            build_id: build_id.clone(),
            status: *status,
            app: app.clone(),
            target: target.clone(),
            cache: cache.clone(),
            artifacts: artifacts.as_ref().map(|a| Artifacts {
                path: a.path.clone(),
                entry_point: a.entry_point.clone(),
                size: a.size,
                files: Vec::new(),
                reused: a.reused,
                deployments: a.deployments.clone(),
            }),
            timings: timings.clone(),
            duration: *duration,
            warnings: warnings.clone(),
            error: error.clone(),
            worker: worker.clone(),
            placement: placement.clone(),
            suggestions: suggestions.clone(),
        }
    }

    /// A failed result for an error raised before a build could start (bad config, say).
    pub fn rejected(build_id: String, error: &crate::Error) -> BuildResult {
        BuildResult {
            build_id,
            status: BuildStatus::Failed,
            app: None,
            target: None,
            cache: CacheOutcome::default(),
            artifacts: None,
            timings: StageTimings::default(),
            duration: 0.0,
            warnings: Vec::new(),
            error: Some(error.report()),
            worker: None,
            placement: None,
            suggestions: Vec::new(),
        }
    }
}
