//! The build history, kept with the cache: every finished build as a JSON line,
//! and per app and target the last build with its key components (what
//! `explain` compares against, and what the monitor reads).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::KeyComponents;
use crate::report::ErrorReport;
use crate::result::CacheOutcome;
use crate::result::{BuildStatus, StageTimings};

/// One finished build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub build_id: String,
    /// The app id (slug of its name); null when the app config could not be read.
    pub app: Option<String>,
    pub version: Option<String>,
    pub app_type: Option<String>,
    pub target: Option<String>,
    pub status: BuildStatus,
    /// Unix seconds when the build ended.
    pub finished_at: u64,
    pub duration: f64,
    pub timings: StageTimings,
    pub cache: CacheOutcome,
    pub error: Option<ErrorReport>,
    /// Where the release was published.
    pub release: Option<String>,
    /// The app's directory, when the build was of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The performance monitor's suggestions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<crate::result::Suggestion>,
}

/// Builds over a window, per build type (`<appType>_<target>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Historical {
    pub hours: u64,
    /// Unix seconds: the window's start.
    pub since: u64,
    pub types: BTreeMap<String, TypeHistory>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TypeHistory {
    /// Oldest first.
    pub builds: Vec<HistoricalBuild>,
    /// Status → builds.
    pub counts: BTreeMap<String, u64>,
}

/// A finished build in brief: an entry of the historical API, and the dashboard's
/// `build_completed` message (the farm keeps these on its `finished` stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoricalBuild {
    pub build_id: String,
    pub app: Option<String>,
    #[serde(default)]
    pub app_type: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    pub finished_at: u64,
    pub duration: f64,
    pub status: BuildStatus,
    pub cache_hit: bool,
}

impl HistoricalBuild {
    /// `appType_target`, the document's build type.
    pub fn build_type(&self) -> String {
        format!("{}_{}", self.app_type.as_deref().unwrap_or("unknown"), self.target.as_deref().unwrap_or("unknown"))
    }

    /// The brief of a result that just ended.
    pub fn of_result(result: &crate::result::BuildResult) -> HistoricalBuild {
        HistoricalBuild {
            build_id: result.build_id.clone(),
            app: result.app.as_ref().map(|a| crate::config::slug(&a.name)),
            app_type: result.app.as_ref().map(|a| a.app_type.clone()).filter(|t| !t.is_empty()),
            target: result.target.clone(),
            finished_at: crate::cache::unix_now(),
            duration: result.duration,
            status: result.status,
            cache_hit: result.cache.hit,
        }
    }

    fn of_record(record: BuildRecord) -> HistoricalBuild {
        HistoricalBuild {
            build_id: record.build_id,
            app: record.app,
            app_type: record.app_type,
            target: record.target,
            finished_at: record.finished_at,
            duration: record.duration,
            status: record.status,
            cache_hit: record.cache.hit,
        }
    }
}

impl Historical {
    /// The builds of the last `hours` among `builds` (oldest first), grouped by build type.
    pub fn of_builds(hours: u64, builds: impl IntoIterator<Item = HistoricalBuild>) -> Historical {
        let hours = hours.clamp(1, 24 * 366);
        let since = crate::cache::unix_now().saturating_sub(hours * 3600);
        let mut types: BTreeMap<String, TypeHistory> = BTreeMap::new();
        for build in builds.into_iter().filter(|b| b.finished_at >= since) {
            let entry = types.entry(build.build_type()).or_default();
            *entry.counts.entry(build.status.as_str().to_string()).or_default() += 1;
            entry.builds.push(build);
        }
        Historical { hours, since, types }
    }
}

/// The last build of an app target, with what went into its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastBuild {
    pub record: BuildRecord,
    pub components: KeyComponents,
}

/// The history under `<cache root>/history`.
#[derive(Debug, Clone)]
pub struct BuildHistory {
    dir: PathBuf,
}

impl BuildHistory {
    pub fn open(dir: &Path) -> std::io::Result<BuildHistory> {
        std::fs::create_dir_all(dir.join("last"))?;
        Ok(BuildHistory { dir: dir.to_path_buf() })
    }

    fn last_path(&self, app: &str, target: &str) -> PathBuf {
        self.dir.join("last").join(app).join(format!("{target}.json"))
    }

    fn components_path(&self, key: &str) -> PathBuf {
        let shard = key.get(..2).unwrap_or("00");
        self.dir.join("keys").join(shard).join(format!("{key}.json"))
    }

    /// Append a record; with components, it also becomes the app target's last build.
    /// Components are stored once per key: a rebuild with the same inputs writes only the
    /// small record, not thousands of file digests again.
    pub fn record(&self, record: &BuildRecord, components: Option<&KeyComponents>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // One write of a whole line with O_APPEND: concurrent writers do not interleave.
        std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("builds.jsonl"))?.write_all(&line)?;
        if let (Some(components), Some(app), Some(target), Some(key)) =
            (components, &record.app, &record.target, &record.cache.key)
        {
            let keyed = self.components_path(key);
            if !keyed.exists() {
                let json = serde_json::to_vec(components).map_err(std::io::Error::other)?;
                crate::files::write_atomic(&keyed, &json)?;
            }
            let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
            crate::files::write_atomic(&self.last_path(app, target), &json)?;
        }
        Ok(())
    }

    /// The last build of `app` for `target` whose key was computed, with its components.
    pub fn last(&self, app: &str, target: &str) -> Option<LastBuild> {
        let record: BuildRecord = serde_json::from_slice(&std::fs::read(self.last_path(app, target)).ok()?).ok()?;
        let key = record.cache.key.as_deref()?;
        let components = serde_json::from_slice(&std::fs::read(self.components_path(key)).ok()?).ok()?;
        Some(LastBuild { record, components })
    }

    /// The builds of the last `hours` (1 to a year), per build type, with counts by status:
    /// the document's `GET /build-metrics/historical`.
    pub fn historical(&self, hours: u64) -> std::io::Result<Historical> {
        Ok(Historical::of_builds(hours, self.recent(usize::MAX)?.into_iter().map(HistoricalBuild::of_record)))
    }

    /// The most recent `limit` records, newest last. Lines that do not parse are skipped.
    pub fn recent(&self, limit: usize) -> std::io::Result<Vec<BuildRecord>> {
        let text = match std::fs::read_to_string(self.dir.join("builds.jsonl")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut records: Vec<BuildRecord> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let skip = records.len().saturating_sub(limit);
        records.drain(..skip);
        Ok(records)
    }
}
