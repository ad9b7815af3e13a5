//! The engine's side of shared infrastructure: submitting to the farm, and checking the
//! buckets it is configured with when it starts.

use tokio::sync::{mpsc, oneshot};

use super::{BuildHandle, Engine, EngineDirs, new_build_id, spawn};
use crate::config::EngineConfig;
use crate::context::BuildRequest;
use crate::error::{Error, Result};
use crate::events::{BuildEvent, EventCallback, EventEmitter};
use crate::farm::FarmClient;
use crate::result::BuildResult;

impl Engine {
    /// The farm's client, connected on first use.
    pub async fn farm(&self) -> Result<&FarmClient> {
        self.shared
            .farm
            .get_or_try_init(|| async {
                FarmClient::connect(self.config())
                    .await?
                    .ok_or_else(|| Error::InvalidRequest("the engine config names no farm (queue.redis)".into()))
            })
            .await
    }

    /// Put a build on the farm and return its id once it is queued (its sources are in the
    /// content store by then).
    pub async fn enqueue(&self, request: BuildRequest) -> Result<String> {
        let id = farm_build_id(&request);
        let stat_dir = self.shared.services.state_dir.join("stat");
        self.farm().await?.enqueue(&id, &request, self.config(), &stat_dir, &self.shared.services.platforms).await?;
        Ok(id)
    }

    pub(super) fn submit_to_farm(&self, request: BuildRequest, on_event: Option<EventCallback>) -> BuildHandle {
        let build_id = farm_build_id(&request);
        let (tx, rx) = mpsc::unbounded_channel();
        let (result_tx, result_rx) = oneshot::channel();
        let cancel = self.shared.root_cancel.child_token();
        let emitter = EventEmitter::new(build_id.clone(), Some(tx), Some(self.shared.events.clone()), on_event);
        let (engine, token, id) = (self.clone(), cancel.clone(), build_id.clone());
        spawn(async move {
            let stat_dir = engine.shared.services.state_dir.join("stat");
            let queued = match engine.farm().await {
                Ok(farm) => farm
                    .enqueue(&id, &request, engine.config(), &stat_dir, &engine.shared.services.platforms)
                    .await
                    .map(|()| farm),
                Err(e) => Err(e),
            };
            // `follow` ends the event stream itself; a build that never reached the queue ends here.
            let result = match queued {
                Ok(farm) => farm.follow(&id, &emitter, &token).await,
                Err(e) => {
                    let result = BuildResult::rejected(id.clone(), &e);
                    emitter.emit(BuildEvent::Finished { status: result.status, duration: 0.0 });
                    result
                }
            };
            let _ = result_tx.send(result);
        });
        BuildHandle { build_id, events: Some(rx), cancel, result: result_rx }
    }
}

/// A farm build's id: derived from its idempotency key when it has one (a second submission
/// with the key is the same build), else new.
fn farm_build_id(request: &BuildRequest) -> String {
    match &request.idempotency_key {
        Some(key) => crate::farm::id_for_key(key),
        None => new_build_id(),
    }
}

/// An unknown bucket or missing credentials stop the engine at start, not a build midway.
pub(super) fn check_buckets(config: &EngineConfig, dirs: &EngineDirs) -> Result<()> {
    use crate::objects::Unanswered;
    let mut locations = Vec::new();
    if let Some(remote) = &config.cache.remote {
        locations.push(("cache.remote".to_string(), remote.location()));
    }
    for (i, destination) in config.storage.deploy.iter().enumerate() {
        locations.push((format!("storage.deploy.{i}"), destination.location()));
    }
    if locations.is_empty() {
        return Ok(());
    }
    let memo = dirs.cache.join("checked-buckets");
    crate::objects::check_at_start(&locations, &memo).map_err(|(at, problem)| {
        let (path, message) = match problem {
            Unanswered::NoBucket(e) => (format!("{at}.url"), format!("no such bucket at this endpoint ({e})")),
            Unanswered::Credentials(e) => (at, e),
            Unanswered::Unreachable(e) => (at, e),
        };
        crate::config::ConfigError::invalid("engine config", path, message).into()
    })
}
