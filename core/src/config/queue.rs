//! The `queue` section: the build farm.

use serde::{Deserialize, Serialize};

use super::{ConfigError, redact_url};

/// Ours: the build farm (`queue`). With `queue.redis`, submitted builds go to a Redis queue
/// that `workz-build worker` processes on any machine take them from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<QueueRedisConfig>,
    /// Seconds a worker holds a job without renewing its lease before another may take it.
    pub lease_seconds: u64,
    /// Seconds a finished build's result and events are kept.
    #[serde(rename = "resultTTL")]
    pub result_ttl: u64,
    pub min_workers: u64,
    pub max_workers: u64,
    /// Run with the desired worker count appended when it changes (argv), for hosts without
    /// an orchestrator.
    pub scale_command: Option<Vec<String>>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            redis: None,
            lease_seconds: 60,
            result_ttl: 86_400,
            min_workers: 1,
            max_workers: 10,
            scale_command: None,
        }
    }
}

/// Where the farm's queue is (a Redis database of its own: the queue wants
/// `maxmemory-policy noeviction`, a cache wants eviction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueueRedisConfig {
    pub url: String,
    pub key_prefix: String,
}

impl Default for QueueRedisConfig {
    fn default() -> Self {
        QueueRedisConfig { url: String::new(), key_prefix: "workz:".into() }
    }
}

impl QueueConfig {
    pub(crate) fn validate(&self, file: &str) -> Result<(), ConfigError> {
        if let Some(redis) = &self.redis
            && let Err(e) = redis::Client::open(redis.url.as_str())
        {
            return Err(ConfigError::invalid(
                file,
                "queue.redis.url",
                format!(
                    "expected a Redis URL such as redis://127.0.0.1:6379/1, found {:?} ({e})",
                    redact_url(&redis.url)
                ),
            ));
        }
        let q = self;
        if q.max_workers == 0 || q.min_workers > q.max_workers {
            return Err(ConfigError::invalid(
                file,
                "queue.maxWorkers",
                format!("expected at least 1 and at least minWorkers ({}), found {}", q.min_workers, q.max_workers),
            ));
        }
        if q.scale_command.as_ref().is_some_and(|argv| argv.is_empty() || argv[0].is_empty()) {
            return Err(ConfigError::invalid(file, "queue.scaleCommand", "expected a program and its arguments"));
        }
        Ok(())
    }
}
