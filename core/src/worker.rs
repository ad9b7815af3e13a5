//! A farm worker (`workz-build worker`): takes jobs from the queue up to its concurrency, runs
//! each as an in-process build of its engine, renews the job's lease while it runs, and
//! publishes (cache entry, release, events, result, acknowledgement) only while it holds it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::context::{BuildRequest, Fence};
use crate::engine::Engine;
use crate::error::{Error, FarmError, Result};
use crate::events::{EventCallback, EventRecord};
use crate::farm::{Claimed, FarmClient, FarmQueue, Taken, materialize_source};
use crate::result::BuildResult;

/// How long a slot waits on the queue before looking for stalled jobs again.
const BLOCK: Duration = Duration::from_secs(2);

/// Who the worker is and how much it takes on.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub name: String,
    pub concurrency: usize,
}

/// A build's right to publish: its job's token still holds.
struct LeaseFence {
    queue: FarmQueue,
    id: String,
    token: u64,
}

#[async_trait]
impl Fence for LeaseFence {
    async fn check(&self) -> Result<()> {
        if self.queue.holds(&self.id, self.token).await? {
            Ok(())
        } else {
            Err(FarmError::LeaseLost(self.id.clone()).into())
        }
    }
}

/// Run a worker until `stop` is cancelled; then it takes no new job, finishes those it holds
/// and deregisters.
pub async fn run_worker(engine: Engine, options: WorkerOptions, stop: CancellationToken) -> Result<()> {
    let farm = engine.farm().await?.clone();
    let capabilities = engine.buildable_targets();
    farm.queue.ensure_groups(&capabilities).await?;
    let streams = Arc::new(farm.queue.streams_for(&capabilities));
    let running = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let heartbeat = {
        let (farm, options, running, stop) = (farm.clone(), options.clone(), running.clone(), stop.clone());
        let targets = engine.buildable_targets();
        tokio::spawn(async move {
            let every = (farm.queue.lease / 3).clamp(Duration::from_millis(500), Duration::from_secs(2));
            loop {
                let ids = running.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let info = serde_json::json!({
                    "name": options.name,
                    "concurrency": options.concurrency,
                    "running": ids,
                    "load": 100 * ids.len() / options.concurrency.max(1),
                    "capabilities": targets,
                    "version": crate::VERSION,
                });
                if let Err(e) = farm.queue.register(&options.name, &info).await {
                    tracing::warn!("worker heartbeat failed: {e}");
                }
                // `farm drain NAME` from anywhere: the same as SIGTERM here.
                if matches!(farm.queue.drain_requested(&options.name).await, Ok(true)) {
                    stop.cancel();
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => break,
                }
            }
        })
    };
    let slots: Vec<_> = (0..options.concurrency.max(1))
        .map(|_| {
            let (engine, farm, name, running, stop, streams) =
                (engine.clone(), farm.clone(), options.name.clone(), running.clone(), stop.clone(), streams.clone());
            tokio::spawn(async move { slot(engine, farm, &streams, name, running, stop).await })
        })
        .collect();
    for slot in slots {
        let _ = slot.await;
    }
    let _ = heartbeat.await;
    farm.queue.deregister(&options.name).await?;
    Ok(())
}

/// One job at a time, until `stop`.
async fn slot(
    engine: Engine,
    farm: FarmClient,
    streams: &[Vec<String>],
    name: String,
    running: Arc<std::sync::Mutex<Vec<String>>>,
    stop: CancellationToken,
) {
    let mut blocking = None;
    while !stop.is_cancelled() {
        let next = match next_entry(&farm.queue, &name, streams, &mut blocking, &stop).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!("worker {name}: {e}");
                blocking = None;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
        };
        let Some((stream, entry, id)) = next else { continue };
        let claimed = match farm.queue.take(&name, &stream, &entry, &id).await {
            Ok(Taken::Run(claimed)) => *claimed,
            Ok(Taken::Dropped) => continue,
            Ok(Taken::Invalid(e)) => {
                let result = BuildResult::rejected(id.clone(), &Error::from(e));
                if let Err(e) = farm.queue.dead_letter(&id, &stream, &entry, &result).await {
                    tracing::warn!("worker {name}: {e}");
                }
                continue;
            }
            Err(e) => {
                tracing::warn!("worker {name}: {e}");
                continue;
            }
        };
        running.lock().unwrap_or_else(|p| p.into_inner()).push(id.clone());
        run_job(&engine, &farm, &name, claimed).await;
        running.lock().unwrap_or_else(|p| p.into_inner()).retain(|r| *r != id);
    }
}

/// A stalled job first (its worker died or stopped), else the next queued one.
async fn next_entry(
    queue: &FarmQueue,
    name: &str,
    streams: &[Vec<String>],
    blocking: &mut Option<redis::aio::MultiplexedConnection>,
    stop: &CancellationToken,
) -> Result<Option<(String, String, String)>> {
    for stream in streams.concat() {
        if let Some((entry, id)) = queue.reclaim(name, &stream).await?.into_iter().next() {
            return Ok(Some((stream, entry, id)));
        }
    }
    if blocking.is_none() {
        *blocking = Some(queue.blocking_connection(BLOCK).await?);
    }
    let connection = blocking.as_mut().expect("made above");
    tokio::select! {
        next = queue.next_entry(name, streams, connection, BLOCK) => Ok(next?),
        _ = stop.cancelled() => Ok(None),
    }
}

/// Run one job to its end and publish its result, while the lease holds.
async fn run_job(engine: &Engine, farm: &FarmClient, name: &str, claimed: Claimed) {
    let queue = &farm.queue;
    let id = claimed.job.id.clone();
    let retry_attempts = u64::from(engine.config().build_system.retry_attempts);
    if claimed.deliveries > retry_attempts + 1 {
        let error = Error::Internal(format!(
            "the job was taken {} times and never finished (its worker died or stalled each time); dead-lettered",
            claimed.deliveries - 1
        ));
        let result = BuildResult::rejected(id.clone(), &error);
        if let Err(e) = queue.dead_letter(&id, &claimed.stream, &claimed.entry, &result).await {
            tracing::warn!("worker {name}: {e}");
        }
        return;
    }
    let dir = engine.dirs().work.join("farm").join(format!("{id}-{}", claimed.token));
    let source = dir.join("src");
    let materialized =
        materialize_source(&id, &claimed.job.source, farm.content.as_ref(), &source, &engine.config().limits).await;
    let mut result = match materialized {
        Err(e) => BuildResult::rejected(id.clone(), &Error::from(e)),
        Ok(()) => build(engine, queue, name, &claimed, &source).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    result.worker = Some(name.to_string());
    // Redis may be restarting: try for a while before leaving the job to be taken again.
    for attempt in 0..20 {
        match queue.complete(&claimed, &result).await {
            Ok(true) => return,
            Ok(false) => return tracing::warn!("worker {name}: {}", FarmError::LeaseLost(id)),
            Err(e) if attempt == 19 => return tracing::warn!("worker {name}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The build itself, its events sent to the farm in order, its lease renewed meanwhile.
async fn build(
    engine: &Engine,
    queue: &FarmQueue,
    name: &str,
    claimed: &Claimed,
    source: &std::path::Path,
) -> BuildResult {
    let job = &claimed.job;
    let request = BuildRequest {
        source: crate::source::SourceSpec::Directory(source.to_path_buf()),
        app_config: job.app_config.clone(),
        target: job.target.clone(),
        priority: job.priority,
        force: job.force,
        timeout: job.timeout,
        list_files: job.list_files,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<EventRecord>();
    let on_event: EventCallback = Arc::new(move |record: &EventRecord| {
        let _ = tx.send(record.clone());
    });
    let fence = Arc::new(LeaseFence { queue: queue.clone(), id: job.id.clone(), token: claimed.token });
    let handle = engine.submit_as(job.id.clone(), request, Some(on_event), Some(fence));
    let cancel = handle.cancel_token();

    let forward = {
        let (queue, id, token) = (queue.clone(), job.id.clone(), claimed.token);
        tokio::spawn(async move {
            while let Some(record) = rx.recv().await {
                if !matches!(queue.emit(&id, token, &record).await, Ok(true)) {
                    // Lost the lease (or Redis): the events are another attempt's now.
                    while rx.recv().await.is_some() {}
                }
            }
        })
    };
    let done = CancellationToken::new();
    let renew = {
        let (queue, name, claimed, done, cancel) =
            (queue.clone(), name.to_string(), claimed.clone(), done.clone(), cancel.clone());
        tokio::spawn(async move {
            let every = (queue.lease / 3).clamp(Duration::from_millis(200), Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = done.cancelled() => return,
                }
                match queue.renew(&name, &claimed).await {
                    Ok((true, false)) => {}
                    Ok((true, true)) => cancel.cancel(),
                    Ok((false, _)) => {
                        tracing::warn!("worker {name}: {}", FarmError::LeaseLost(claimed.job.id.clone()));
                        cancel.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!("worker {name}: {e}"),
                }
            }
        })
    };
    let result = handle.wait().await;
    done.cancel();
    let _ = renew.await;
    let _ = tokio::time::timeout(Duration::from_secs(10), forward).await;
    result
}
