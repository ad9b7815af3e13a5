//! The tiered decorator: reads top-down, copies hits into the tiers above in the background
//! (backfill), and writes to every tier. A failing tier is a warning and a fall-through.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::task::TaskTracker;

use super::{
    BlobRestore, BlobSource, CacheBackend, CacheEntry, CacheError, CacheKey, Hit, KeyComponents, PruneReport,
    RestoreReport, TierStats, TierUsage,
};
use crate::digest::Digest;
use crate::events::warn_current;

/// Tiers in read order: this machine's first (memory, filesystem), then the shared ones
/// (Redis, the object store).
pub struct TieredCache {
    tiers: Vec<Arc<dyn CacheBackend>>,
    /// Backfills still running.
    backfills: TaskTracker,
}

/// Backfills of up to this many bytes are read into memory and run in the background; a
/// larger one (a big `node_modules`) is copied before the build goes on, as its files may
/// not outlive the build.
const BACKFILL_IN_MEMORY: u64 = 64 << 20;

impl TieredCache {
    pub fn new(tiers: Vec<Arc<dyn CacheBackend>>) -> TieredCache {
        TieredCache { tiers, backfills: TaskTracker::new() }
    }

    pub fn tiers(&self) -> &[Arc<dyn CacheBackend>] {
        &self.tiers
    }

    fn degraded(tier: &dyn CacheBackend, op: &str, error: &CacheError) {
        warn_current(
            "cache_tier_failed",
            format!("cache tier `{}` failed to {op} and was skipped: {error}", tier.name()),
        );
    }
}

#[async_trait]
impl CacheBackend for TieredCache {
    fn name(&self) -> &str {
        "tiered"
    }

    async fn get_entry(&self, key: &CacheKey) -> Result<Option<Hit>, CacheError> {
        for tier in &self.tiers {
            match tier.get_entry(key).await {
                // The tiers above get it once its blobs are restored (`backfill`): an entry
                // never goes ahead of its blobs.
                Ok(Some(hit)) => return Ok(Some(hit)),
                Ok(None) => {}
                Err(e) => Self::degraded(tier.as_ref(), "look up an entry", &e),
            }
        }
        Ok(None)
    }

    async fn put_entry(&self, entry: &CacheEntry, components: Option<&KeyComponents>) -> Result<(), CacheError> {
        for tier in &self.tiers {
            if let Err(e) = tier.put_entry(entry, components).await {
                Self::degraded(tier.as_ref(), "store an entry", &e);
            }
        }
        Ok(())
    }

    async fn get_components(&self, key: &CacheKey) -> Result<Option<KeyComponents>, CacheError> {
        for tier in &self.tiers {
            match tier.get_components(key).await {
                Ok(Some(c)) => return Ok(Some(c)),
                Ok(None) => {}
                Err(e) => Self::degraded(tier.as_ref(), "read key components", &e),
            }
        }
        Ok(None)
    }

    async fn remove_entry(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let mut any = false;
        for tier in &self.tiers {
            match tier.remove_entry(key).await {
                Ok(existed) => any |= existed,
                Err(e) => Self::degraded(tier.as_ref(), "remove an entry", &e),
            }
        }
        Ok(any)
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError> {
        for (i, tier) in self.tiers.iter().enumerate() {
            match tier.get_blob(digest).await {
                Ok(Some(bytes)) => {
                    for upper in &self.tiers[..i] {
                        if let Err(e) = upper.put_blob(digest, bytes.clone()).await {
                            Self::degraded(upper.as_ref(), "promote a blob", &e);
                        }
                    }
                    return Ok(Some(bytes));
                }
                Ok(None) => {}
                Err(e) => Self::degraded(tier.as_ref(), "read a blob", &e),
            }
        }
        Ok(None)
    }

    async fn put_blob(&self, digest: &Digest, data: Bytes) -> Result<(), CacheError> {
        for tier in &self.tiers {
            if let Err(e) = tier.put_blob(digest, data.clone()).await {
                Self::degraded(tier.as_ref(), "store a blob", &e);
            }
        }
        Ok(())
    }

    async fn restore_blobs(&self, wanted: &[BlobRestore]) -> Result<RestoreReport, CacheError> {
        let mut remaining: Vec<BlobRestore> = wanted.to_vec();
        let mut bytes = 0;
        for tier in &self.tiers {
            if remaining.is_empty() {
                break;
            }
            let report = match tier.restore_blobs(&remaining).await {
                Ok(r) => r,
                Err(e) => {
                    Self::degraded(tier.as_ref(), "restore blobs", &e);
                    continue;
                }
            };
            bytes += report.bytes;
            remaining.retain(|w| report.unavailable.contains(&w.digest));
        }
        Ok(RestoreReport { unavailable: remaining.into_iter().map(|w| w.digest).collect(), bytes })
    }

    async fn store_blobs(&self, files: &[BlobSource]) -> Result<(), CacheError> {
        for tier in &self.tiers {
            if let Err(e) = tier.store_blobs(files).await {
                Self::degraded(tier.as_ref(), "store blobs", &e);
            }
        }
        Ok(())
    }

    async fn backfill(&self, hit: &Hit, files: &[BlobSource]) {
        let Some(found_in) = self.tiers.iter().position(|t| t.name() == hit.tier) else { return };
        if found_in == 0 {
            return;
        }
        let uppers: Vec<Arc<dyn CacheBackend>> = self.tiers[..found_in].to_vec();
        let entry = hit.entry.clone();
        let size: u64 = entry.files.iter().map(|f| f.size).sum();
        if size > BACKFILL_IN_MEMORY {
            for upper in &uppers {
                let stored = match upper.store_blobs(files).await {
                    Ok(()) => upper.put_entry(&entry, None).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = stored {
                    Self::degraded(upper.as_ref(), "backfill", &e);
                }
            }
            return;
        }
        // Read now: the files are a build's output, which moves (publish) or goes (cleanup)
        // when the build ends.
        let mut blobs = Vec::with_capacity(files.len());
        for file in files {
            match std::fs::read(&file.path) {
                Ok(bytes) => blobs.push((file.digest, Bytes::from(bytes))),
                Err(e) => {
                    let e = CacheError::io("tiered", "read", &file.path, e);
                    return Self::degraded(self, "backfill", &e);
                }
            }
        }
        self.backfills.spawn(async move {
            for upper in uppers {
                let mut stored = Ok(());
                for (digest, bytes) in &blobs {
                    stored = upper.put_blob(digest, bytes.clone()).await;
                    if stored.is_err() {
                        break;
                    }
                }
                // The entry only once its blobs are all there.
                if stored.is_ok() {
                    stored = upper.put_entry(&entry, None).await;
                }
                if let Err(e) = stored {
                    Self::degraded(upper.as_ref(), "backfill", &e);
                }
            }
        });
    }

    async fn flush(&self) {
        self.backfills.close();
        self.backfills.wait().await;
        self.backfills.reopen();
    }

    async fn invalidate(&self, pattern: &globset::GlobMatcher) -> Result<Vec<CacheKey>, CacheError> {
        let mut removed = std::collections::BTreeSet::new();
        let mut first_error = None;
        for tier in &self.tiers {
            match tier.invalidate(pattern).await {
                Ok(keys) => removed.extend(keys),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(removed.into_iter().collect()), Err)
    }

    async fn prune(&self) -> Result<PruneReport, CacheError> {
        let mut total = PruneReport::default();
        let mut first_error = None;
        for tier in &self.tiers {
            match tier.prune().await {
                Ok(r) => total.add(&r),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(total), Err)
    }

    async fn clear(&self) -> Result<(), CacheError> {
        let mut first_error = None;
        for tier in &self.tiers {
            if let Err(e) = tier.clear().await {
                first_error = first_error.or(Some(e));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn usage(&self) -> Result<Vec<TierUsage>, CacheError> {
        let mut all = Vec::new();
        for tier in &self.tiers {
            all.extend(tier.usage().await?);
        }
        Ok(all)
    }

    fn stats(&self) -> Vec<TierStats> {
        self.tiers.iter().flat_map(|t| t.stats()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{FilesystemCache, MemoryCache};
    use super::*;

    /// A tier whose every operation fails, as a Redis that went away would.
    struct Broken;

    #[async_trait]
    impl CacheBackend for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        async fn get_entry(&self, _: &CacheKey) -> Result<Option<Hit>, CacheError> {
            Err(CacheError::io("broken", "connect", "", std::io::Error::other("down")))
        }
        async fn put_entry(&self, _: &CacheEntry, _: Option<&KeyComponents>) -> Result<(), CacheError> {
            Err(CacheError::io("broken", "connect", "", std::io::Error::other("down")))
        }
        async fn remove_entry(&self, _: &CacheKey) -> Result<bool, CacheError> {
            Err(CacheError::io("broken", "connect", "", std::io::Error::other("down")))
        }
        async fn get_blob(&self, _: &Digest) -> Result<Option<Bytes>, CacheError> {
            Err(CacheError::io("broken", "connect", "", std::io::Error::other("down")))
        }
        async fn put_blob(&self, _: &Digest, _: Bytes) -> Result<(), CacheError> {
            Err(CacheError::io("broken", "connect", "", std::io::Error::other("down")))
        }
        async fn invalidate(&self, _: &globset::GlobMatcher) -> Result<Vec<CacheKey>, CacheError> {
            Ok(Vec::new())
        }
        async fn prune(&self) -> Result<PruneReport, CacheError> {
            Ok(PruneReport::default())
        }
        async fn clear(&self) -> Result<(), CacheError> {
            Ok(())
        }
        async fn usage(&self) -> Result<Vec<TierUsage>, CacheError> {
            Ok(vec![])
        }
        fn stats(&self) -> Vec<TierStats> {
            vec![]
        }
    }

    #[tokio::test]
    async fn hits_in_a_lower_tier_are_backfilled_in_the_background_and_broken_tiers_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(MemoryCache::new(1 << 20, Duration::from_secs(60)));
        let fs = Arc::new(FilesystemCache::open(dir.path(), Duration::from_secs(60), u64::MAX).unwrap());
        let tiered = TieredCache::new(vec![memory.clone(), Arc::new(Broken), fs.clone()]);

        let data = Bytes::from_static(b"hello");
        let digest = Digest::of(&data);
        fs.put_blob(&digest, data.clone()).await.unwrap();
        let entry = CacheEntry {
            key: CacheKey(Digest::of(b"k")),
            label: "a/web".into(),
            created_at: super::super::unix_now(),
            build_id: "b".into(),
            artifact_type: "static-web".into(),
            entry_point: None,
            files: vec![super::super::ArtifactFile {
                path: "f".into(),
                size: 5,
                blake3: digest,
                content_type: "text/plain".into(),
            }],
        };
        fs.put_entry(&entry, None).await.unwrap();

        let (emitter, events) = crate::events::EventEmitter::collecting("b");
        let hit = crate::events::scope(emitter, tiered.get_entry(&entry.key)).await.unwrap().unwrap();
        assert_eq!(hit.tier, "filesystem");
        assert!(events.events().iter().any(
            |e| matches!(&e.event, crate::events::BuildEvent::Warning { code, .. } if code == "cache_tier_failed")
        ));
        assert!(memory.get_entry(&entry.key).await.unwrap().is_none(), "a lookup alone copies nothing");

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("f");
        let report = tiered.restore_blobs(&[BlobRestore { digest, dest: dest.clone() }]).await.unwrap();
        assert!(report.unavailable.is_empty());
        tiered.backfill(&hit, &[BlobSource { digest, path: dest.clone() }]).await;
        // The copy runs in the background (this one-thread runtime has not run it yet), from
        // bytes read when it was asked for: the build's file may go at once.
        assert!(memory.get_entry(&entry.key).await.unwrap().is_none());
        std::fs::remove_file(&dest).unwrap();
        tiered.flush().await;
        assert_eq!(tiered.get_entry(&entry.key).await.unwrap().unwrap().tier, "memory");
        assert_eq!(memory.get_blob(&digest).await.unwrap().unwrap(), data);
    }

    #[tokio::test]
    async fn an_entry_in_several_tiers_is_invalidated_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(MemoryCache::new(1 << 20, Duration::from_secs(60)));
        let fs = Arc::new(FilesystemCache::open(dir.path(), Duration::from_secs(60), u64::MAX).unwrap());
        let tiered = TieredCache::new(vec![memory.clone(), fs.clone()]);
        let entry = |name: &str, label: &str| CacheEntry {
            key: CacheKey(Digest::of(name.as_bytes())),
            label: label.into(),
            created_at: super::super::unix_now(),
            build_id: "b".into(),
            artifact_type: "static-web".into(),
            entry_point: None,
            files: vec![],
        };
        // Stored through the tiers: in both. Another app's entry stays.
        tiered.put_entry(&entry("one", "a/web"), None).await.unwrap();
        fs.put_entry(&entry("two", "a/web"), None).await.unwrap();
        tiered.put_entry(&entry("other", "b/web"), None).await.unwrap();
        let removed = tiered.invalidate(&super::super::compile_pattern("a/*").unwrap()).await.unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(memory.get_entry(&entry("one", "a/web").key).await.unwrap().is_none());
        assert!(tiered.get_entry(&entry("other", "b/web").key).await.unwrap().is_some());
    }
}
