//! The `notifications` section: webhooks told of finished builds.

use serde::{Deserialize, Serialize};

use super::{ConfigError, redact_url};

/// Ours: the document's "Notify Completion".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NotificationsConfig {
    pub webhooks: Vec<WebhookConfig>,
    /// Seconds a delivery is retried (with exponential back-off and jitter) before it is
    /// recorded as failed.
    pub retry_for: u64,
}

/// One receiver.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    pub url: String,
    /// The signing secret (Standard Webhooks: `whsec_<base64>`, or any text).
    pub secret: String,
    /// `build_completed`, `build_slow`, `alert`; all of them when absent.
    #[serde(default = "all_events")]
    pub events: Vec<String>,
}

fn all_events() -> Vec<String> {
    EVENTS.iter().map(|e| e.to_string()).collect()
}

/// The events a webhook can ask for.
pub const EVENTS: [&str; 3] = ["build_completed", "build_slow", "alert"];

// The secret never reaches a log through `{:?}`.
impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &redact_url(&self.url))
            .field("secret", &"<redacted>")
            .field("events", &self.events)
            .finish()
    }
}

impl NotificationsConfig {
    pub(crate) fn validate(&self, file: &str) -> Result<(), ConfigError> {
        // retryFor's range is in EngineConfig::numeric_ranges.
        validate_webhooks(&self.webhooks, file)
    }
}

/// Check `notifications.webhooks` of an engine or app config.
pub(crate) fn validate_webhooks(hooks: &[WebhookConfig], file: &str) -> Result<(), ConfigError> {
    for (i, hook) in hooks.iter().enumerate() {
        let at = |field: &str| format!("notifications.webhooks.{i}.{field}");
        if !(hook.url.starts_with("https://") || hook.url.starts_with("http://")) {
            return Err(ConfigError::invalid(file, at("url"), "expected an http:// or https:// URL"));
        }
        if hook.secret.len() < 16 {
            return Err(ConfigError::invalid(file, at("secret"), "expected at least 16 characters"));
        }
        if let Some(bad) = hook.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            return Err(ConfigError::invalid(
                file,
                at("events"),
                format!("unknown event {bad:?}; expected one of {}", EVENTS.join(", ")),
            ));
        }
    }
    Ok(())
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig { webhooks: Vec::new(), retry_for: 900 }
    }
}
