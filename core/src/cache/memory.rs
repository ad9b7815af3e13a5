//! The in-process memory tier (the document's L1): bounded by bytes, with a TTL,
//! least recently used entries and blobs evicted first.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use lru::LruCache;

use super::{
    CacheBackend, CacheEntry, CacheError, CacheKey, Counters, Hit, KeyComponents, PruneReport, TierStats, TierUsage,
};
use crate::digest::Digest;

const TIER: &str = "memory";

/// The memory tier.
pub struct MemoryCache {
    ttl: Duration,
    max_bytes: u64,
    state: Mutex<State>,
    counters: Counters,
}

struct State {
    entries: LruCache<CacheKey, (CacheEntry, Instant)>,
    blobs: LruCache<Digest, Bytes>,
    bytes: u64,
}

impl MemoryCache {
    pub fn new(max_bytes: u64, ttl: Duration) -> MemoryCache {
        MemoryCache {
            ttl,
            max_bytes,
            state: Mutex::new(State { entries: LruCache::unbounded(), blobs: LruCache::unbounded(), bytes: 0 }),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn evict_over_budget(&self, state: &mut State) {
        while state.bytes > self.max_bytes {
            match state.blobs.pop_lru() {
                Some((_, blob)) => {
                    state.bytes -= blob.len() as u64;
                    self.counters.evicted(1);
                }
                None => break,
            }
        }
    }
}

#[async_trait]
impl CacheBackend for MemoryCache {
    fn name(&self) -> &str {
        TIER
    }

    async fn get_entry(&self, key: &CacheKey) -> Result<Option<Hit>, CacheError> {
        let mut state = self.lock();
        let found = match state.entries.get(key) {
            Some((_, at)) if at.elapsed() > self.ttl => {
                state.entries.pop(key);
                None
            }
            Some((entry, _)) => Some(entry.clone()),
            None => None,
        };
        match found {
            Some(entry) => {
                self.counters.hit();
                Ok(Some(Hit { entry, tier: TIER.to_string() }))
            }
            None => {
                self.counters.miss();
                Ok(None)
            }
        }
    }

    async fn put_entry(&self, entry: &CacheEntry, _components: Option<&KeyComponents>) -> Result<(), CacheError> {
        self.lock().entries.put(entry.key, (entry.clone(), Instant::now()));
        Ok(())
    }

    async fn remove_entry(&self, key: &CacheKey) -> Result<bool, CacheError> {
        Ok(self.lock().entries.pop(key).is_some())
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError> {
        let blob = self.lock().blobs.get(digest).cloned();
        // Memory can be corrupted too (a bug elsewhere): verify like every tier.
        match blob {
            Some(b) if Digest::of(&b) == *digest => {
                self.counters.read(b.len() as u64);
                Ok(Some(b))
            }
            Some(_) => {
                self.counters.corrupt();
                let mut state = self.lock();
                if let Some(b) = state.blobs.pop(digest) {
                    state.bytes -= b.len() as u64;
                }
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put_blob(&self, digest: &Digest, data: Bytes) -> Result<(), CacheError> {
        if data.len() as u64 > self.max_bytes {
            return Ok(());
        }
        let mut state = self.lock();
        let len = data.len() as u64;
        if let Some(old) = state.blobs.put(*digest, data) {
            state.bytes -= old.len() as u64;
        }
        state.bytes += len;
        self.counters.written(len);
        self.evict_over_budget(&mut state);
        Ok(())
    }

    async fn invalidate(&self, pattern: &globset::GlobMatcher) -> Result<Vec<CacheKey>, CacheError> {
        let mut state = self.lock();
        let doomed: Vec<CacheKey> =
            state.entries.iter().filter(|(_, (e, _))| e.matches(pattern)).map(|(k, _)| *k).collect();
        for k in &doomed {
            state.entries.pop(k);
        }
        Ok(doomed)
    }

    async fn prune(&self) -> Result<PruneReport, CacheError> {
        let mut state = self.lock();
        let expired: Vec<CacheKey> =
            state.entries.iter().filter(|(_, (_, at))| at.elapsed() > self.ttl).map(|(k, _)| *k).collect();
        for k in &expired {
            state.entries.pop(k);
        }
        Ok(PruneReport { entries_removed: expired.len() as u64, ..PruneReport::default() })
    }

    async fn clear(&self) -> Result<(), CacheError> {
        let mut state = self.lock();
        state.entries.clear();
        state.blobs.clear();
        state.bytes = 0;
        Ok(())
    }

    async fn usage(&self) -> Result<Vec<TierUsage>, CacheError> {
        let state = self.lock();
        Ok(vec![TierUsage {
            tier: TIER.to_string(),
            entries: state.entries.len() as u64,
            blobs: state.blobs.len() as u64,
            bytes: state.bytes,
        }])
    }

    fn stats(&self) -> Vec<TierStats> {
        vec![self.counters.snapshot(TIER)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_are_bounded_by_bytes() {
        let cache = MemoryCache::new(10, Duration::from_secs(60));
        for i in 0..5u8 {
            let data = Bytes::from(vec![i; 4]);
            cache.put_blob(&Digest::of(&data), data).await.unwrap();
        }
        let usage = &cache.usage().await.unwrap()[0];
        assert!(usage.bytes <= 10, "{usage:?}");
        assert!(cache.get_blob(&Digest::of(&[0u8; 4])).await.unwrap().is_none(), "oldest evicted");
        assert!(cache.get_blob(&Digest::of(&[4u8; 4])).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn entries_expire() {
        let cache = MemoryCache::new(1 << 20, Duration::from_millis(20));
        let entry = CacheEntry {
            key: CacheKey(Digest::of(b"k")),
            label: "a/web".into(),
            created_at: 0,
            build_id: "b".into(),
            artifact_type: "static-web".into(),
            entry_point: None,
            files: vec![],
        };
        cache.put_entry(&entry, None).await.unwrap();
        assert!(cache.get_entry(&entry.key).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(cache.get_entry(&entry.key).await.unwrap().is_none());
    }
}
