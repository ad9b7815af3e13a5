//! Cache warming (the document's `warmCache(popularApps)`): for each app and each of its
//! configured targets whose key is not in the cache, a build queued at low priority; with
//! `pull`, an entry found only in a shared tier (Redis, the object store) is fetched into
//! this machine's tiers now, so that its first build here does not wait on the network.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::{BlobRestore, BlobSource, CacheKey};
use crate::context::BuildRequest;
use crate::engine::Engine;
use crate::error::{Error, ErrorReport};

/// The priority of warming builds: behind any build a person or a host asked for.
pub const WARM_PRIORITY: i32 = -100;

/// How to warm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmOptions {
    /// Fetch entries found only in a shared tier into this machine's tiers.
    pub pull: bool,
}

/// What warming did for one app target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmOutcome {
    /// The key was in the cache already (`tier` says where).
    Cached,
    /// The entry was in a shared tier only and is now in this machine's tiers too.
    Pulled,
    /// A build was queued and succeeded.
    Built,
    /// The app could not be read, the pull or the build failed (`error` says why).
    Failed,
}

/// One app target warmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warmed {
    /// The app's directory.
    pub source: PathBuf,
    pub app: Option<String>,
    pub target: Option<String>,
    pub key: Option<String>,
    pub outcome: WarmOutcome,
    /// Where the entry was found (for `cached` and `pulled`).
    pub tier: Option<String>,
    /// The build that filled the cache (for `built`, and a failed build).
    pub build_id: Option<String>,
    pub error: Option<ErrorReport>,
}

impl Engine {
    /// Warm the cache for the apps in `sources` (directories): see the module's docs. Queued
    /// builds run at [`WARM_PRIORITY`] under `maxConcurrentBuilds` with everything else.
    pub async fn warm(&self, sources: &[PathBuf], options: WarmOptions) -> Vec<Warmed> {
        let mut done = Vec::new();
        let mut queued = Vec::new();
        for source in sources {
            let request = BuildRequest::directory(source);
            let targets = self.configured_targets(&request);
            let targets: Vec<Option<String>> =
                if targets.is_empty() { vec![None] } else { targets.into_iter().map(Some).collect() };
            for target in targets {
                let request = BuildRequest { target: target.clone(), priority: WARM_PRIORITY, ..request.clone() };
                let warmed = |outcome, error: Option<&Error>| Warmed {
                    source: source.clone(),
                    app: None,
                    target: target.clone(),
                    key: None,
                    outcome,
                    tier: None,
                    build_id: None,
                    error: error.map(Error::report),
                };
                let explanation = match self.explain(request.clone()).await {
                    Ok(explanation) => explanation,
                    Err(e) => {
                        done.push(warmed(WarmOutcome::Failed, Some(&e)));
                        continue;
                    }
                };
                let mut row = Warmed {
                    app: Some(explanation.app.clone()),
                    target: Some(explanation.target.clone()),
                    key: Some(explanation.key.clone()),
                    tier: explanation.tier.clone(),
                    ..warmed(WarmOutcome::Cached, None)
                };
                match explanation.tier.as_deref() {
                    Some(tier) if crate::cache::is_local_tier(tier) || !options.pull => done.push(row),
                    Some(_) => {
                        match self.pull(&explanation.key).await {
                            Ok(()) => row.outcome = WarmOutcome::Pulled,
                            Err(e) => {
                                row.outcome = WarmOutcome::Failed;
                                row.error = Some(e.report());
                            }
                        }
                        done.push(row);
                    }
                    None => queued.push((row, self.submit(request, None))),
                }
            }
        }
        for (mut row, handle) in queued {
            let result = handle.wait().await;
            row.build_id = Some(result.build_id.clone());
            row.outcome = if result.succeeded() { WarmOutcome::Built } else { WarmOutcome::Failed };
            row.error = result.error;
            done.push(row);
        }
        done
    }

    /// Fetch the entry of `key` and its blobs from the tier that has it into the tiers above.
    async fn pull(&self, key: &str) -> crate::error::Result<()> {
        let cache =
            self.services().cache.clone().ok_or_else(|| Error::InvalidRequest("the cache is disabled".into()))?;
        let key: CacheKey = key.parse().map_err(|_| Error::internal(format!("not a cache key: {key}")))?;
        let Some(hit) = cache.get_entry(&key).await? else { return Ok(()) };
        let scratch = tempfile::tempdir_in(&self.dirs().work)
            .map_err(|e| Error::internal(format!("a scratch dir in {}: {e}", self.dirs().work.display())))?;
        let wanted: Vec<BlobRestore> = hit
            .entry
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| BlobRestore { digest: f.blake3, dest: scratch.path().join(i.to_string()) })
            .collect();
        let report = cache.restore_blobs(&wanted).await?;
        if !report.unavailable.is_empty() {
            return Err(Error::internal(format!(
                "{} blob(s) of the entry are missing or corrupt in the {} tier",
                report.unavailable.len(),
                hit.tier
            )));
        }
        let files: Vec<BlobSource> =
            wanted.into_iter().map(|w| BlobSource { digest: w.digest, path: w.dest }).collect();
        cache.backfill(&hit, &files).await;
        cache.flush().await;
        Ok(())
    }

    /// The directories of the `limit` apps built most often in this engine's history (that
    /// still exist), most built first: the document's "popular apps".
    pub fn most_built(&self, limit: usize) -> Vec<PathBuf> {
        let records = self.history().recent(usize::MAX).unwrap_or_default();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for record in &records {
            if let Some(source) = &record.source {
                *counts.entry(source.as_str()).or_default() += 1;
            }
        }
        let mut ranked: Vec<(&str, usize)> = counts.into_iter().filter(|(s, _)| Path::new(s).is_dir()).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ranked.into_iter().take(limit).map(|(s, _)| PathBuf::from(s)).collect()
    }
}
