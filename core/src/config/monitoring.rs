//! The `monitoring` section: the performance monitor's thresholds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Ours: the platform document's performance monitor. A build that takes longer than its
/// type's threshold raises `build_slow`; a stage that takes more than `stageShare` percent of a
/// build gets the document's suggestions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MonitoringConfig {
    /// Seconds per build type (`<appType>_<target>`, the document's names).
    pub thresholds: BTreeMap<String, u64>,
    /// Seconds for a build type the map does not name.
    pub default_threshold: u64,
    /// Percent of a build's time past which a stage gets suggestions.
    pub stage_share: u64,
    /// The document's alerts (sent to webhooks that ask for `alert`).
    pub alerts: AlertsConfig,
}

/// When the document's alerts fire, over the latest `window` builds of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AlertsConfig {
    /// Percent of failed builds.
    pub failure_rate: u64,
    /// Seconds of the average build.
    pub average_duration: u64,
    /// How many of the latest builds the rates are taken over (at least 5 must exist).
    pub window: u64,
    /// Builds waiting in the queue (the dashboard's backlog alert).
    pub queue_length: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig { failure_rate: 10, average_duration: 300, window: 20, queue_length: 10 }
    }
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            thresholds: [("javascript_web", 120), ("flutter_web", 300), ("flutter_android", 600), ("flutter_ios", 900)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            default_threshold: 300,
            stage_share: 40,
            alerts: AlertsConfig::default(),
        }
    }
}

/// A week: no build threshold is longer.
const MAX_THRESHOLD: u64 = 604_800;

impl MonitoringConfig {
    /// The slow-build threshold of a build type, in seconds.
    pub fn threshold(&self, app_type: &str, target: &str) -> u64 {
        self.thresholds.get(&format!("{app_type}_{target}")).copied().unwrap_or(self.default_threshold)
    }

    pub(crate) fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let range = |path: String, value: u64| {
            if (1..=MAX_THRESHOLD).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::invalid(file, path, format!("expected 1 to {MAX_THRESHOLD} seconds, found {value}")))
            }
        };
        for (build_type, seconds) in &self.thresholds {
            range(format!("monitoring.thresholds.{build_type}"), *seconds)?;
        }
        range("monitoring.defaultThreshold".into(), self.default_threshold)?;
        if !(1..=100).contains(&self.stage_share) {
            return Err(ConfigError::invalid(
                file,
                "monitoring.stageShare",
                format!("expected a percentage from 1 to 100, found {}", self.stage_share),
            ));
        }
        if !(1..=100).contains(&self.alerts.failure_rate) {
            return Err(ConfigError::invalid(
                file,
                "monitoring.alerts.failureRate",
                format!("expected a percentage from 1 to 100, found {}", self.alerts.failure_rate),
            ));
        }
        range("monitoring.alerts.averageDuration".into(), self.alerts.average_duration)?;
        if !(5..=10_000).contains(&self.alerts.window) {
            return Err(ConfigError::invalid(
                file,
                "monitoring.alerts.window",
                format!("expected 5 to 10000 builds, found {}", self.alerts.window),
            ));
        }
        if !(1..=1_000_000).contains(&self.alerts.queue_length) {
            return Err(ConfigError::invalid(
                file,
                "monitoring.alerts.queueLength",
                format!("expected 1 to 1000000 builds, found {}", self.alerts.queue_length),
            ));
        }
        Ok(())
    }
}
