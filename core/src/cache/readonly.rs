//! A read-only decorator: serves hits, never writes (for untrusted builds).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    BlobRestore, BlobSource, CacheBackend, CacheEntry, CacheError, CacheKey, Hit, KeyComponents, PruneReport,
    RestoreReport, TierStats, TierUsage,
};
use crate::digest::Digest;

/// Wraps a backend so that every write is a no-op and maintenance is refused.
pub struct ReadOnlyCache {
    inner: Arc<dyn CacheBackend>,
}

impl ReadOnlyCache {
    pub fn new(inner: Arc<dyn CacheBackend>) -> ReadOnlyCache {
        ReadOnlyCache { inner }
    }
}

#[async_trait]
impl CacheBackend for ReadOnlyCache {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn get_entry(&self, key: &CacheKey) -> Result<Option<Hit>, CacheError> {
        self.inner.get_entry(key).await
    }
    async fn put_entry(&self, _entry: &CacheEntry, _components: Option<&KeyComponents>) -> Result<(), CacheError> {
        Ok(())
    }
    async fn get_components(&self, key: &CacheKey) -> Result<Option<KeyComponents>, CacheError> {
        self.inner.get_components(key).await
    }
    async fn remove_entry(&self, _key: &CacheKey) -> Result<bool, CacheError> {
        Ok(false)
    }
    async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError> {
        self.inner.get_blob(digest).await
    }
    async fn put_blob(&self, _digest: &Digest, _data: Bytes) -> Result<(), CacheError> {
        Ok(())
    }
    async fn restore_blobs(&self, wanted: &[BlobRestore]) -> Result<RestoreReport, CacheError> {
        self.inner.restore_blobs(wanted).await
    }
    async fn store_blobs(&self, _files: &[BlobSource]) -> Result<(), CacheError> {
        Ok(())
    }
    /// Backfilling copies verified entries between tiers, never a build's output: allowed.
    async fn backfill(&self, hit: &Hit, files: &[BlobSource]) {
        self.inner.backfill(hit, files).await
    }

    async fn flush(&self) {
        self.inner.flush().await
    }

    async fn invalidate(&self, _pattern: &globset::GlobMatcher) -> Result<Vec<CacheKey>, CacheError> {
        Err(CacheError::ReadOnly(self.name().to_string()))
    }
    async fn prune(&self) -> Result<PruneReport, CacheError> {
        Err(CacheError::ReadOnly(self.name().to_string()))
    }
    async fn clear(&self) -> Result<(), CacheError> {
        Err(CacheError::ReadOnly(self.name().to_string()))
    }
    async fn usage(&self) -> Result<Vec<TierUsage>, CacheError> {
        self.inner.usage().await
    }
    fn stats(&self) -> Vec<TierStats> {
        self.inner.stats()
    }
}
