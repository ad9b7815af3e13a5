//! The object-store tier (the platform's shared store): an S3-compatible bucket (AWS S3,
//! Cloudflare R2, MinIO, GCS's S3 API) or a directory (`file://`), through `object_store`.
//!
//! ```text
//! <prefix>/cas/<blake3>     blobs, content-addressed, written once
//! <prefix>/ac/<key>.json    {"entry": …, "components": …}, written after every blob it names
//! ```
//!
//! A blob is uploaded only when the store does not have it (`If-None-Match: *`; large blobs
//! by multipart upload, streamed from the file); an entry only after each of its blobs is
//! known to be there, so a reader never finds an entry whose blobs are missing. Every blob
//! read is streamed to a temporary file while it is hashed, and renamed into place only if it
//! hashes to its name: a corrupt or truncated object is a miss, is counted, and is deleted
//! (unless the tier is read-only) so that the next store replaces it.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::{
    BlobRestore, BlobSource, CacheBackend, CacheEntry, CacheError, CacheKey, Counters, Hit, KeyComponents, PruneReport,
    RestoreReport, TierStats, TierUsage, unix_now,
};
use crate::digest::Digest;
use crate::objects::{ObjectLocation, OpenedStore, upload_file};

const TIER: &str = "remote";
/// Transfers at once, each way.
const CONCURRENCY: usize = 16;

/// Where the tier lives and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct RemoteTierSettings {
    /// The bucket and prefix (`s3://bucket/prefix`) or directory (`file:///dir`).
    pub location: ObjectLocation,
    /// Serve hits, never write.
    pub read_only: bool,
    /// Entries older than this are misses (and go at the next prune).
    pub ttl: Duration,
}

impl RemoteTierSettings {
    /// The settings of `cache.remote`; entries expire after `cache_ttl`.
    pub fn of(config: &crate::config::RemoteTierConfig, cache_ttl: Duration) -> RemoteTierSettings {
        RemoteTierSettings { location: config.location(), read_only: config.read_only, ttl: cache_ttl }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    entry: CacheEntry,
    components: Option<KeyComponents>,
}

/// The object-store tier.
pub struct RemoteCache {
    /// Made on first use: building an S3 client (its TLS setup) costs about a millisecond,
    /// which a process served by its local tiers should not pay.
    opened: std::sync::OnceLock<OpenedStore>,
    /// Where the tier's objects are in the store (the URL's path).
    prefix: ObjectPath,
    settings: RemoteTierSettings,
    /// Blobs this process knows are in the store (uploaded or seen): entries are written
    /// only when all of theirs are here.
    present: Mutex<HashSet<Digest>>,
    counters: Counters,
}

impl RemoteCache {
    /// A tier for `settings` (checked by the config already); the store is reached on first use.
    pub fn new(settings: RemoteTierSettings) -> Result<RemoteCache, CacheError> {
        Ok(RemoteCache {
            opened: std::sync::OnceLock::new(),
            prefix: settings.location.prefix(),
            settings,
            present: Mutex::default(),
            counters: Counters::default(),
        })
    }

    /// The store, made on first use.
    fn opened(&self) -> Result<&OpenedStore, CacheError> {
        if let Some(opened) = self.opened.get() {
            return Ok(opened);
        }
        let opened = self.settings.location.open().map_err(|message| self.failed("open the store", message))?;
        Ok(self.opened.get_or_init(|| opened))
    }

    fn store(&self) -> Result<&Arc<dyn ObjectStore>, CacheError> {
        Ok(&self.opened()?.store)
    }

    fn failed(&self, op: &'static str, e: impl std::fmt::Display) -> CacheError {
        self.counters.error();
        CacheError::Backend { tier: TIER.into(), op, message: e.to_string() }
    }

    fn writable(&self) -> Result<(), CacheError> {
        if self.settings.read_only { Err(CacheError::ReadOnly(TIER.into())) } else { Ok(()) }
    }

    fn blob_path(&self, digest: &Digest) -> ObjectPath {
        self.prefix.clone().join("cas").join(digest.to_string())
    }

    fn entry_path(&self, key: &CacheKey) -> ObjectPath {
        self.prefix.clone().join("ac").join(format!("{key}.json"))
    }

    fn known(&self, digest: &Digest) -> bool {
        self.present.lock().unwrap_or_else(|p| p.into_inner()).contains(digest)
    }

    fn mark_present(&self, digest: Digest) {
        self.present.lock().unwrap_or_else(|p| p.into_inner()).insert(digest);
    }

    async fn read_entry(&self, path: &ObjectPath, key: Option<&CacheKey>) -> Result<Option<StoredEntry>, CacheError> {
        let bytes = match self.store()?.get(path).await {
            Ok(found) => found.bytes().await.map_err(|e| self.failed("read an entry", e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("look up an entry", e)),
        };
        match serde_json::from_slice::<StoredEntry>(&bytes) {
            Ok(stored) if key.is_none_or(|k| stored.entry.key == *k) => Ok(Some(stored)),
            _ => {
                self.counters.corrupt();
                if !self.settings.read_only {
                    let _ = self.store()?.delete(path).await;
                }
                Ok(None)
            }
        }
    }

    fn expired(&self, entry: &CacheEntry) -> bool {
        unix_now().saturating_sub(entry.created_at) > self.settings.ttl.as_secs()
    }

    /// Whether the store has the blob (and remember it if so).
    async fn has_blob(&self, digest: &Digest) -> Result<bool, CacheError> {
        if self.known(digest) {
            return Ok(true);
        }
        match self.store()?.head(&self.blob_path(digest)).await {
            Ok(_) => {
                self.mark_present(*digest);
                Ok(true)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("look up a blob", e)),
        }
    }

    /// Upload one file's bytes unless the store has them.
    async fn upload(&self, source: &BlobSource) -> Result<(), CacheError> {
        if self.has_blob(&source.digest).await? {
            return Ok(());
        }
        let path = self.blob_path(&source.digest);
        let size = upload_file(self.store()?.as_ref(), &path, &source.path, Attributes::new(), true)
            .await
            .map_err(|e| self.failed("upload a blob", e))?;
        self.counters.written(size);
        self.mark_present(source.digest);
        Ok(())
    }

    /// Download one blob to its destination, verified on the way (`false`: missing or corrupt).
    async fn download(&self, want: &BlobRestore) -> Result<Option<u64>, CacheError> {
        let path = self.blob_path(&want.digest);
        let found = match self.store()?.get(&path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("download a blob", e)),
        };
        let dest = &want.dest;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| CacheError::io(TIER, "create", parent, e))?;
        }
        let partial = partial_path(dest);
        let mut file = std::fs::File::create(&partial).map_err(|e| CacheError::io(TIER, "write", &partial, e))?;
        let mut hasher = blake3::Hasher::new();
        let mut bytes = 0u64;
        let mut stream = found.into_stream();
        let streamed: Result<(), CacheError> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.failed("download a blob", e))?;
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                file.write_all(&chunk).map_err(|e| CacheError::io(TIER, "write", &partial, e))?;
            }
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = streamed {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        if Digest::from(hasher.finalize()) != want.digest {
            let _ = std::fs::remove_file(&partial);
            self.counters.corrupt();
            if !self.settings.read_only {
                let _ = self.store()?.delete(&path).await;
            }
            self.present.lock().unwrap_or_else(|p| p.into_inner()).remove(&want.digest);
            return Ok(None);
        }
        std::fs::rename(&partial, dest).map_err(|e| CacheError::io(TIER, "write", dest, e))?;
        self.counters.read(bytes);
        self.mark_present(want.digest);
        Ok(Some(bytes))
    }

    async fn list(&self, dir: &str) -> Result<Vec<object_store::ObjectMeta>, CacheError> {
        let prefix = self.prefix.clone().join(dir);
        self.store()?.list(Some(&prefix)).try_collect().await.map_err(|e| self.failed("list objects", e))
    }
}

/// A sibling of `dest` to download into before the bytes are checked.
fn partial_path(dest: &std::path::Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    dest.with_file_name(name)
}

#[async_trait]
impl CacheBackend for RemoteCache {
    fn name(&self) -> &str {
        TIER
    }

    async fn get_entry(&self, key: &CacheKey) -> Result<Option<Hit>, CacheError> {
        match self.read_entry(&self.entry_path(key), Some(key)).await? {
            Some(stored) if !self.expired(&stored.entry) => {
                self.counters.hit();
                Ok(Some(Hit { entry: stored.entry, tier: TIER.to_string() }))
            }
            _ => {
                self.counters.miss();
                Ok(None)
            }
        }
    }

    async fn put_entry(&self, entry: &CacheEntry, components: Option<&KeyComponents>) -> Result<(), CacheError> {
        self.writable()?;
        // Never an entry whose blobs are not all there (an upload may have failed midway).
        let digests: Vec<Digest> = entry.files.iter().map(|f| f.blake3).collect();
        let missing: Vec<Digest> = futures_util::stream::iter(digests)
            .map(|digest| async move { (digest, self.has_blob(&digest).await) })
            .buffer_unordered(CONCURRENCY)
            .filter_map(|(digest, has)| async move { (!matches!(has, Ok(true))).then_some(digest) })
            .collect()
            .await;
        if !missing.is_empty() {
            return Err(self.failed("store an entry", format!("{} of its blobs are not in the store", missing.len())));
        }
        let json = serde_json::to_vec(&StoredEntry { entry: entry.clone(), components: components.cloned() })
            .map_err(|e| self.failed("encode an entry", e))?;
        let len = json.len() as u64;
        self.store()?
            .put(&self.entry_path(&entry.key), PutPayload::from(json))
            .await
            .map_err(|e| self.failed("store an entry", e))?;
        self.counters.written(len);
        Ok(())
    }

    async fn get_components(&self, key: &CacheKey) -> Result<Option<KeyComponents>, CacheError> {
        Ok(self.read_entry(&self.entry_path(key), Some(key)).await?.and_then(|s| s.components))
    }

    async fn remove_entry(&self, key: &CacheKey) -> Result<bool, CacheError> {
        self.writable()?;
        let path = self.entry_path(key);
        match self.store()?.head(&path).await {
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("remove an entry", e)),
            Ok(_) => {
                self.store()?.delete(&path).await.map_err(|e| self.failed("remove an entry", e))?;
                Ok(true)
            }
        }
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError> {
        let path = self.blob_path(digest);
        let bytes = match self.store()?.get(&path).await {
            Ok(found) => found.bytes().await.map_err(|e| self.failed("read a blob", e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("read a blob", e)),
        };
        if Digest::of(&bytes) != *digest {
            self.counters.corrupt();
            if !self.settings.read_only {
                let _ = self.store()?.delete(&path).await;
            }
            return Ok(None);
        }
        self.counters.read(bytes.len() as u64);
        Ok(Some(bytes))
    }

    async fn remove_blob(&self, digest: &Digest) -> Result<(), CacheError> {
        self.writable()?;
        self.present.lock().unwrap_or_else(|p| p.into_inner()).remove(digest);
        match self.store()?.delete(&self.blob_path(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.failed("remove a blob", e)),
        }
    }

    async fn put_blob(&self, digest: &Digest, data: Bytes) -> Result<(), CacheError> {
        self.writable()?;
        if self.has_blob(digest).await? {
            return Ok(());
        }
        let len = data.len() as u64;
        let options = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store()?.put_opts(&self.blob_path(digest), PutPayload::from(data), options).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(self.failed("upload a blob", e)),
        }
        self.counters.written(len);
        self.mark_present(*digest);
        Ok(())
    }

    /// Many downloads at once, each streamed to its file and verified.
    async fn restore_blobs(&self, wanted: &[BlobRestore]) -> Result<RestoreReport, CacheError> {
        let outcomes: Vec<(Digest, Result<Option<u64>, CacheError>)> = futures_util::stream::iter(wanted.to_vec())
            .map(|want| async move { (want.digest, self.download(&want).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut report = RestoreReport::default();
        for (digest, outcome) in outcomes {
            match outcome? {
                Some(bytes) => report.bytes += bytes,
                None => report.unavailable.push(digest),
            }
        }
        Ok(report)
    }

    /// Many uploads at once; large files in parts, streamed.
    async fn store_blobs(&self, files: &[BlobSource]) -> Result<(), CacheError> {
        self.writable()?;
        let results: Vec<Result<(), CacheError>> = futures_util::stream::iter(files.to_vec())
            .map(|file| async move { self.upload(&file).await })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn invalidate(&self, pattern: &globset::GlobMatcher) -> Result<Vec<CacheKey>, CacheError> {
        self.writable()?;
        let mut removed = Vec::new();
        for meta in self.list("ac").await? {
            if let Some(stored) = self.read_entry(&meta.location, None).await?
                && stored.entry.matches(pattern)
            {
                self.store()?.delete(&meta.location).await.map_err(|e| self.failed("remove an entry", e))?;
                removed.push(stored.entry.key);
            }
        }
        Ok(removed)
    }

    /// Expired entries go; blobs stay (other machines' entries may name them: a bucket
    /// lifecycle rule on `cas/` is the place to bound them).
    async fn prune(&self) -> Result<PruneReport, CacheError> {
        self.writable()?;
        let mut report = PruneReport::default();
        for meta in self.list("ac").await? {
            if let Some(stored) = self.read_entry(&meta.location, None).await?
                && self.expired(&stored.entry)
            {
                self.store()?.delete(&meta.location).await.map_err(|e| self.failed("prune an entry", e))?;
                report.entries_removed += 1;
            }
        }
        Ok(report)
    }

    async fn clear(&self) -> Result<(), CacheError> {
        self.writable()?;
        for dir in ["ac", "cas"] {
            for meta in self.list(dir).await? {
                self.store()?.delete(&meta.location).await.map_err(|e| self.failed("clear", e))?;
            }
        }
        self.present.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(())
    }

    async fn usage(&self) -> Result<Vec<TierUsage>, CacheError> {
        let entries = self.list("ac").await?.len() as u64;
        let blobs = self.list("cas").await?;
        Ok(vec![TierUsage {
            tier: TIER.to_string(),
            entries,
            blobs: blobs.len() as u64,
            bytes: blobs.iter().map(|b| b.size).sum(),
        }])
    }

    fn stats(&self) -> Vec<TierStats> {
        vec![self.counters.snapshot(TIER)]
    }
}
