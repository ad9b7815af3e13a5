//! "Notify Completion": each finished build is sent to the configured webhooks, signed in the
//! Standard Webhooks shape (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
//! HMAC-SHA256 of id.timestamp.body>`), retried with exponential back-off and jitter for
//! `notifications.retryFor`, in the background: a receiver that fails or hangs never delays or
//! fails a build. On a farm only the worker that holds the job's lease notifies, once per
//! build id. Every delivery is recorded (`workz-build notifications`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use tokio_util::task::TaskTracker;

use crate::config::{NotificationsConfig, WebhookConfig, redact_url};
use crate::context::Fence;
use crate::farm::FarmQueue;
use crate::result::BuildResult;

/// One request's limit: a receiver that hangs is given up on (and retried) after this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(60);
/// How long a process about to exit waits for deliveries still running.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// A delivery as recorded in `<cache>/notifications.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The `webhook-id` (receivers dedupe on it).
    pub id: String,
    pub build_id: String,
    pub event: String,
    /// The receiver, without credentials.
    pub url: String,
    pub delivered: bool,
    pub attempts: u32,
    /// The receiver's last HTTP status.
    pub status: Option<u16>,
    pub error: Option<String>,
    /// Unix seconds when it was delivered or given up.
    pub at: u64,
}

/// The engine's webhooks and its record of deliveries.
pub struct Notifier {
    hooks: Vec<WebhookConfig>,
    retry_for: Duration,
    /// Made at the first delivery: an engine whose builds notify no one never pays for it.
    client: OnceLock<Option<reqwest::Client>>,
    log: PathBuf,
    tracker: TaskTracker,
}

/// The signature of `body` sent as message `id` at `timestamp` (Unix seconds).
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    // Standard Webhooks secrets are `whsec_<base64 key>`; any other text is the key itself.
    let key =
        secret.strip_prefix("whsec_").and_then(|k| b64.decode(k).ok()).unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

impl Notifier {
    pub fn new(config: &NotificationsConfig, state_dir: &Path) -> Arc<Notifier> {
        Arc::new(Notifier {
            hooks: config.webhooks.clone(),
            retry_for: Duration::from_secs(config.retry_for),
            client: OnceLock::new(),
            log: state_dir.join("notifications.jsonl"),
            tracker: TaskTracker::new(),
        })
    }

    fn client(&self) -> Option<&reqwest::Client> {
        self.client
            .get_or_init(|| match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
                Ok(client) => Some(client),
                Err(e) => {
                    tracing::warn!("webhooks disabled: no HTTP client ({e})");
                    None
                }
            })
            .as_ref()
    }

    /// The alerts the build just recorded in `history` set off, when a webhook asked for
    /// `alert` (the history is read only then).
    pub fn alerts(&self, history: &crate::history::BuildHistory, config: &crate::config::AlertsConfig) -> Vec<Alert> {
        if !self.hooks.iter().any(|h| h.events.iter().any(|e| e == "alert")) {
            return Vec::new();
        }
        alerts_set_off(&history.recent(config.window as usize + 1).unwrap_or_default(), config)
    }

    /// Send a finished build to the webhooks (the engine's, and `app_hooks`: its app's own)
    /// that asked for its events, in the background, with the alerts it set off (see
    /// [`alerts_set_off`]; to the engine's webhooks only). `fence`: send only while it holds
    /// (a farm job's lease); `farm`: once per build id.
    pub fn build_finished(
        self: &Arc<Self>,
        result: &BuildResult,
        app_hooks: &[WebhookConfig],
        alerts: Vec<Alert>,
        fence: Option<Arc<dyn Fence>>,
        farm: Option<FarmQueue>,
    ) {
        let mut events = vec!["build_completed".to_string()];
        if result.warnings.iter().any(|w| w.code == "build_slow") {
            events.push("build_slow".to_string());
        }
        events.extend(alerts.iter().map(|a| format!("alert:{}", a.alert)));
        let payload = |event: &str| {
            if let Some(kind) = event.strip_prefix("alert:") {
                let alert = alerts.iter().find(|a| a.alert == kind);
                return serde_json::json!({"type": "alert", "timestamp": crate::cache::unix_now(), "data": alert});
            }
            serde_json::json!({
                "type": event,
                "timestamp": crate::cache::unix_now(),
                "data": {
                    "build_id": result.build_id,
                    "status": result.status,
                    "app": result.app,
                    "target": result.target,
                    "duration": result.duration,
                    "cache": result.cache,
                    "release": result.artifacts.as_ref().map(|a| &a.path),
                    "deployments": result.artifacts.as_ref().map(|a| &a.deployments),
                    "error": result.error,
                    "warnings": result.warnings,
                    "suggestions": result.suggestions,
                    "worker": result.worker,
                }
            })
        };
        let sends: Vec<(WebhookConfig, String, String, Vec<u8>)> = events
            .iter()
            .flat_map(|event| {
                let id = match &event[..] {
                    "build_completed" => result.build_id.clone(),
                    other => format!("{}-{}", result.build_id, other.replace(':', "-")),
                };
                let kind = if event.starts_with("alert:") { "alert" } else { &event[..] };
                let body = serde_json::to_vec(&payload(event)).unwrap_or_default();
                let app_hooks = app_hooks.iter().filter(move |_| kind != "alert");
                self.hooks
                    .iter()
                    .chain(app_hooks)
                    .filter(|h| h.events.iter().any(|e| e == kind))
                    .map(move |h| (h.clone(), kind.to_string(), id.clone(), body.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if sends.is_empty() {
            return;
        }
        let (notifier, build_id) = (self.clone(), result.build_id.clone());
        self.tracker.spawn(async move {
            if let Some(fence) = fence
                && fence.check().await.is_err()
            {
                return; // Another worker holds the job now: it notifies.
            }
            if let Some(farm) = farm
                && !matches!(farm.first_notice(&build_id).await, Ok(true))
            {
                return; // Notified already (the job ran twice), or Redis is gone: never twice.
            }
            let deliveries = sends.into_iter().map(|(hook, event, id, body)| {
                let (notifier, build_id) = (notifier.clone(), build_id.clone());
                async move { notifier.deliver(&hook, &event, &id, &build_id, body).await }
            });
            futures_util::future::join_all(deliveries).await;
        });
    }

    async fn deliver(&self, hook: &WebhookConfig, event: &str, id: &str, build_id: &str, body: Vec<u8>) {
        let started = Instant::now();
        let mut wait = FIRST_RETRY;
        let mut attempts = 0;
        let (delivered, status, error) = loop {
            attempts += 1;
            let timestamp = crate::cache::unix_now();
            let Some(client) = self.client() else { return };
            let sent = client
                .post(&hook.url)
                .header("content-type", "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", sign(&hook.secret, id, timestamp, &body))
                .body(body.clone())
                .send()
                .await;
            let (status, error) = match sent {
                Ok(response) if response.status().is_success() => break (true, Some(response.status().as_u16()), None),
                Ok(response) => (Some(response.status().as_u16()), Some(format!("answered {}", response.status()))),
                Err(e) => (None, Some(e.without_url().to_string())),
            };
            // Jitter: between half and all of the wait, so that receivers back up unevenly.
            let jitter = 0.5 + 0.5 * fraction(id, attempts);
            let pause = wait.mul_f64(jitter);
            if started.elapsed() + pause > self.retry_for {
                break (false, status, error);
            }
            tokio::time::sleep(pause).await;
            wait = (wait * 2).min(LONGEST_RETRY);
        };
        let record = Delivery {
            id: id.to_string(),
            build_id: build_id.to_string(),
            event: event.to_string(),
            url: redact_url(&hook.url),
            delivered,
            attempts,
            status,
            error,
            at: crate::cache::unix_now(),
        };
        if let Err(e) = append(&self.log, &record) {
            tracing::warn!("recording a webhook delivery failed: {e}");
        }
    }

    /// Wait (up to [`FLUSH_LIMIT`]) for deliveries still running: a host calls it before its
    /// process exits.
    pub async fn flush(&self) {
        self.tracker.close();
        let _ = tokio::time::timeout(FLUSH_LIMIT, self.tracker.wait()).await;
        self.tracker.reopen();
    }
}

/// One of the document's alerts, set off by a build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `failure_rate` (percent of failed or timed-out builds) or `average_duration` (seconds).
    pub alert: String,
    pub value: f64,
    pub threshold: u64,
    /// Over how many of the latest builds.
    pub window: usize,
    /// The build that passed the threshold.
    pub build_id: String,
}

/// The alerts the newest build of `history` (newest last) set off: a rate over the latest
/// `alerts.window` builds that is past its threshold now and was not before this build (so an
/// alert is sent once per crossing, whichever process ran the builds).
pub fn alerts_set_off(history: &[crate::history::BuildRecord], alerts: &crate::config::AlertsConfig) -> Vec<Alert> {
    use crate::result::BuildStatus;
    let window = alerts.window as usize;
    let Some(newest) = history.last() else { return Vec::new() };
    let now = &history[history.len().saturating_sub(window)..];
    let before = &history[history.len().saturating_sub(window + 1)..history.len() - 1];
    let failure = |records: &[crate::history::BuildRecord]| {
        let failed = records.iter().filter(|r| matches!(r.status, BuildStatus::Failed | BuildStatus::TimedOut)).count();
        100.0 * failed as f64 / records.len().max(1) as f64
    };
    let average = |records: &[crate::history::BuildRecord]| {
        records.iter().map(|r| r.duration).sum::<f64>() / records.len().max(1) as f64
    };
    type Rate = fn(&[crate::history::BuildRecord]) -> f64;
    let rates: [(&str, Rate, u64); 2] =
        [("failure_rate", failure, alerts.failure_rate), ("average_duration", average, alerts.average_duration)];
    let enough = |records: &[crate::history::BuildRecord]| records.len() >= 5;
    rates
        .into_iter()
        .filter(|(_, rate, threshold)| {
            enough(now) && rate(now) > *threshold as f64 && !(enough(before) && rate(before) > *threshold as f64)
        })
        .map(|(alert, rate, threshold)| Alert {
            alert: alert.to_string(),
            value: (rate(now) * 10.0).round() / 10.0,
            threshold,
            window: now.len(),
            build_id: newest.build_id.clone(),
        })
        .collect()
}

/// A number in 0..1 that varies with the message and the attempt.
fn fraction(id: &str, attempt: u32) -> f64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let hash = blake3::hash(format!("{id}:{attempt}:{nanos}").as_bytes());
    f64::from(u32::from_le_bytes(hash.as_bytes()[..4].try_into().expect("4 bytes"))) / f64::from(u32::MAX)
}

fn append(log: &Path, record: &Delivery) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    line.push(b'\n');
    // One write of one line: concurrent deliveries do not interleave.
    std::fs::OpenOptions::new().create(true).append(true).open(log)?.write_all(&line)
}

/// The recorded deliveries of the engine whose state directory is `state_dir`, oldest first.
pub fn deliveries(state_dir: &Path) -> std::io::Result<Vec<Delivery>> {
    match std::fs::read_to_string(state_dir.join("notifications.jsonl")) {
        Ok(text) => Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_signature() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
