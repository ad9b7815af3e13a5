//! The submitting side of the farm: a build's sources into the content store and its job on
//! the queue; then its events and its result, followed from Redis.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{FarmQueue, Job, upload_source};
use crate::cache::{CacheBackend, RemoteCache, RemoteTierSettings};
use crate::config::EngineConfig;
use crate::config::{APP_CONFIG_FILE, AppConfig, ConfigError};
use crate::context::{BuildRequest, PlatformRegistry};
use crate::error::{BuildError, Error, FarmError};
use crate::events::EventEmitter;
use crate::result::{BuildResult, BuildStatus};
use crate::source::SourceTree;

/// How long one read of a build's events waits before checking for a cancel.
const FOLLOW_BLOCK: Duration = Duration::from_millis(500);
/// How long a submitter keeps following a build while the farm's Redis does not answer.
const FOLLOW_OUTAGE: Duration = Duration::from_secs(60);

/// The farm's queue and the content store sources and results travel through.
#[derive(Clone)]
pub struct FarmClient {
    pub queue: FarmQueue,
    pub content: Arc<dyn CacheBackend>,
}

/// The `appType:target` a request needs, from its app config: only workers that can build it
/// read the stream its job goes to, so a target no builder has is refused here, not queued.
fn capability_of(request: &BuildRequest, tree: &SourceTree, platforms: &PlatformRegistry) -> Result<String, Error> {
    let text = match &request.app_config {
        Some(value) => value.to_string(),
        None => {
            let file = tree
                .get(APP_CONFIG_FILE)
                .ok_or_else(|| ConfigError::AppConfigMissing(format!("no {APP_CONFIG_FILE} at the app root")))?;
            String::from_utf8_lossy(&file.read()?).into_owned()
        }
    };
    let app = AppConfig::from_json(APP_CONFIG_FILE, &text)?.value;
    let builder = platforms.get(app.app_type)?;
    let supported = builder.supported_targets();
    let target = request
        .target
        .clone()
        .or_else(|| app.build_targets.first().cloned())
        .or_else(|| supported.first().map(|t| t.to_string()))
        .unwrap_or_default();
    if !supported.contains(&target.as_str()) {
        return Err(BuildError::UnsupportedTarget {
            app_type: app.app_type.to_string(),
            target,
            supported: supported.join(", "),
        }
        .into());
    }
    Ok(format!("{}:{target}", app.app_type))
}

/// The digest of the file that pins the app's dependencies (the lockfile, else the manifest),
/// for placing the job on a worker that installed them before.
fn dependency_lock(tree: &SourceTree) -> Option<String> {
    const LOCKS: [&str; 7] = [
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "pubspec.lock",
        "package.json",
        "pubspec.yaml",
    ];
    LOCKS.iter().find_map(|name| tree.get(name)).map(|file| file.digest.to_hex())
}

impl FarmClient {
    /// Connect to the farm `config` names (`None` without `queue.redis`).
    pub async fn connect(config: &EngineConfig) -> Result<Option<FarmClient>, Error> {
        let Some(queue) = FarmQueue::connect(config).await? else { return Ok(None) };
        let remote = config.cache.remote.as_ref().ok_or_else(|| {
            Error::InvalidRequest("a farm needs cache.remote: sources and results travel through it".into())
        })?;
        let ttl = Duration::from_secs(config.build_system.cache_ttl);
        let content: Arc<dyn CacheBackend> = Arc::new(RemoteCache::new(RemoteTierSettings::of(remote, ttl))?);
        Ok(Some(FarmClient { queue, content }))
    }

    /// Take in the request's sources, put what the content store lacks there, and queue the
    /// job as build `id`.
    pub async fn enqueue(
        &self,
        id: &str,
        request: &BuildRequest,
        config: &EngineConfig,
        stat_dir: &Path,
        platforms: &PlatformRegistry,
    ) -> Result<(), Error> {
        if !matches!(request.timeout, None | Some(1..)) {
            return Err(Error::InvalidRequest("timeout: expected at least 1 second".into()));
        }
        if request.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 256) {
            return Err(Error::InvalidRequest("idempotencyKey: expected 1 to 256 bytes".into()));
        }
        let (spec, config_copy, stat_dir) = (request.source.clone(), config.clone(), stat_dir.to_path_buf());
        let tree = tokio::task::spawn_blocking(move || {
            SourceTree::intake(&spec, &config_copy.limits, &config_copy.source, Some(&stat_dir))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        let capability = capability_of(request, &tree, platforms)?;
        let source = upload_source(&tree, self.content.as_ref()).await?;
        let job = Job {
            id: id.to_string(),
            source,
            capability,
            app_config: request.app_config.clone(),
            target: request.target.clone(),
            priority: request.priority,
            force: request.force,
            timeout: request.timeout,
            list_files: request.list_files,
            dependencies: dependency_lock(&tree),
            submitted_at: crate::cache::unix_now(),
        };
        // A job with this id already exists (the same idempotency key): it is the build.
        self.queue.enqueue(&job).await?;
        Ok(())
    }

    /// Follow build `id` to its end: its events re-emitted in order through `emitter`, then
    /// its result. Cancelling `cancel` cancels the build on the farm (it still ends with a
    /// result: `cancelled`).
    pub async fn follow(&self, id: &str, emitter: &EventEmitter, cancel: &CancellationToken) -> BuildResult {
        match self.follow_inner(id, emitter, cancel).await {
            Ok(result) => result,
            Err(e) => {
                let result = BuildResult::rejected(id.to_string(), &e);
                emitter.emit(crate::events::BuildEvent::Finished { status: result.status, duration: 0.0 });
                result
            }
        }
    }

    async fn follow_inner(
        &self,
        id: &str,
        emitter: &EventEmitter,
        cancel: &CancellationToken,
    ) -> Result<BuildResult, Error> {
        let mut blocking = None;
        let mut last = "0".to_string();
        // Redis may go away for a while (a restart): keep trying, then give up with the error.
        let mut failing_since: Option<std::time::Instant> = None;
        let mut cancel_sent = false;
        let mut finished = false;
        let status = loop {
            let read = async {
                if cancel.is_cancelled() && !cancel_sent {
                    self.queue.cancel(id).await?;
                    cancel_sent = true;
                }
                if blocking.is_none() {
                    blocking = Some(self.queue.blocking_connection(FOLLOW_BLOCK).await?);
                }
                let connection = blocking.as_mut().expect("made above");
                let (next, events, ended) = self.queue.events(connection, id, &last, FOLLOW_BLOCK).await?;
                // The end marker, or (for a job that ended with no events: cancelled while
                // queued, or expired) its state, says the build is over.
                let status = if ended || next == "0" { Some(self.queue.status(id).await?) } else { None };
                Ok::<_, FarmError>((next, events, ended, status))
            };
            let (next, events, ended, status) = match read.await {
                Ok(read) => {
                    failing_since = None;
                    read
                }
                Err(e @ FarmError::Unavailable { .. }) => {
                    blocking = None;
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > FOLLOW_OUTAGE {
                        return Err(e.into());
                    }
                    tokio::time::sleep(FOLLOW_BLOCK).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            last = next;
            for record in events {
                finished |= matches!(record.event, crate::events::BuildEvent::Finished { .. });
                emitter.emit(record.event);
            }
            match status {
                Some(status) if ended || status.result.is_some() => break status,
                _ => {}
            }
        };
        let mut result = status.result.ok_or_else(|| FarmError::NotFound(id.to_string()))?;
        if status.state == "cancelled" {
            result.status = BuildStatus::Cancelled;
        }
        if !finished {
            emitter.emit(crate::events::BuildEvent::Finished { status: result.status, duration: result.duration });
        }
        Ok(result)
    }
}
