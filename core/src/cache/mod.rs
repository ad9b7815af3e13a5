//! The build cache: an action cache (key → artifact entry) over a content store
//! (BLAKE3 digest → blob), as in Bazel's AC/CAS split.
//!
//! Backends implement [`CacheBackend`]. A hit or a miss is a value; an error means
//! the backend failed. Every blob is verified against its digest on read: a
//! missing, truncated or corrupt blob is unavailable, never served. Decorators
//! ([`TieredCache`], [`ReadOnlyCache`]) wrap backends.

mod fs;
mod key;
mod memory;
mod readonly;
mod redis;
mod remote;
mod tiered;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::fs::FilesystemCache;
#[cfg(any(feature = "javascript", feature = "flutter"))]
pub(crate) use self::key::canonical_json;
pub use self::key::{CacheKey, KeyComponents};
pub use self::memory::MemoryCache;
pub use self::readonly::ReadOnlyCache;
pub use self::redis::{RedisCache, RedisTierSettings};
pub use self::remote::{RemoteCache, RemoteTierSettings};
pub use self::tiered::TieredCache;
use crate::config::EngineConfig;
use crate::digest::Digest;

/// Errors of cache backends. The pipeline degrades past them with a warning.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {tier}: {op} {path}: {source}")]
    Io {
        tier: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache {tier}: invalid entry {key}: {message}")]
    InvalidEntry { tier: String, key: String, message: String },
    #[error("cache {0} is read-only")]
    ReadOnly(String),
    #[error("invalid pattern {pattern:?}: {message}")]
    InvalidPattern { pattern: String, message: String },
    /// A remote tier (Redis, an object store) failed or did not answer in time.
    #[error("cache {tier}: cannot {op}: {message}")]
    Backend { tier: String, op: &'static str, message: String },
}

impl crate::report::ErrorCode for CacheError {
    fn code(&self) -> &'static str {
        match self {
            CacheError::Io { .. } => "cache_io_failed",
            CacheError::InvalidEntry { .. } => "cache_entry_invalid",
            CacheError::ReadOnly(_) => "cache_read_only",
            CacheError::InvalidPattern { .. } => "invalid_request",
            CacheError::Backend { .. } => "cache_backend_failed",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            CacheError::Io { .. } => {
                "Check free disk space and permissions of the cache directory (`df -h`); `workz-build cache prune` frees space.".into()
            }
            CacheError::InvalidEntry { .. } => "The entry is ignored and rebuilt; `workz-build cache clear` removes all entries.".into(),
            CacheError::ReadOnly(_) => "This cache was opened read-only (`cache.readOnly`).".into(),
            CacheError::InvalidPattern { .. } => "Use a glob such as `my-app/*` (entries are named `<app>/<target>/<key>`).".into(),
            CacheError::Backend { .. } => {
                "Check that the server answers from this machine (`workz-build doctor`); builds go on without the tier meanwhile.".into()
            }
        })
    }

    fn is_retryable(&self) -> bool {
        matches!(self, CacheError::Backend { .. })
    }

    fn category(&self) -> crate::report::Category {
        match self {
            CacheError::InvalidPattern { .. } => crate::report::Category::User,
            CacheError::Io { .. }
            | CacheError::InvalidEntry { .. }
            | CacheError::ReadOnly(_)
            | CacheError::Backend { .. } => crate::report::Category::Infrastructure,
        }
    }

    fn family(&self) -> crate::report::Family {
        match self {
            CacheError::InvalidPattern { .. } => crate::report::Family::Config,
            CacheError::Io { .. }
            | CacheError::InvalidEntry { .. }
            | CacheError::ReadOnly(_)
            | CacheError::Backend { .. } => crate::report::Family::Storage,
        }
    }
}

impl CacheError {
    pub(crate) fn io(tier: &str, op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CacheError::Io { tier: tier.to_string(), op, path: path.into(), source }
    }
}

/// One output file of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub size: u64,
    pub blake3: Digest,
    #[serde(rename = "contentType")]
    pub content_type: String,
}

/// What the action cache keeps for a key: the outputs of one build of one app target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: CacheKey,
    /// `<app>/<target>`: what invalidation patterns match (with `/<key>` appended).
    pub label: String,
    /// Unix seconds when stored; the entry expires `cacheTTL` seconds later.
    pub created_at: u64,
    /// The build that produced it.
    pub build_id: String,
    pub artifact_type: String,
    pub entry_point: Option<String>,
    pub files: Vec<ArtifactFile>,
}

impl CacheEntry {
    /// Whether `pattern` selects this entry (matched against `<label>/<key>` and the bare key).
    pub fn matches(&self, pattern: &globset::GlobMatcher) -> bool {
        let key = self.key.to_string();
        pattern.is_match(format!("{}/{}", self.label, key)) || pattern.is_match(&key)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// An entry found in a backend, and which tier served it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub entry: CacheEntry,
    pub tier: String,
}

/// A blob to write to a file the caller owns.
#[derive(Debug, Clone)]
pub struct BlobRestore {
    pub digest: Digest,
    pub dest: PathBuf,
}

/// A file whose bytes go into the content store.
#[derive(Debug, Clone)]
pub struct BlobSource {
    pub digest: Digest,
    pub path: PathBuf,
}

/// The result of [`CacheBackend::restore_blobs`].
#[derive(Debug, Clone, Default)]
pub struct RestoreReport {
    /// Blobs this backend does not have, or had corrupt (and evicted).
    pub unavailable: Vec<Digest>,
    pub bytes: u64,
}

/// What [`CacheBackend::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    pub entries_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
}

impl PruneReport {
    fn add(&mut self, other: &PruneReport) {
        self.entries_removed += other.entries_removed;
        self.blobs_removed += other.blobs_removed;
        self.bytes_freed += other.bytes_freed;
    }
}

/// How much a tier holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TierUsage {
    pub tier: String,
    pub entries: u64,
    pub blobs: u64,
    pub bytes: u64,
}

/// Counters of one tier since the process started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TierStats {
    pub tier: String,
    pub hits: u64,
    pub misses: u64,
    /// Backend failures (counted apart from misses).
    pub errors: u64,
    /// Blobs found missing, truncated or corrupt on read, and entries evicted for them.
    pub corrupt: u64,
    pub evictions: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// Lock-free counters behind [`TierStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    corrupt: AtomicU64,
    evictions: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

impl Counters {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn corrupt(&self) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn evicted(&self, n: u64) {
        self.evictions.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn read(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn written(&self, n: u64) {
        self.bytes_written.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self, tier: &str) -> TierStats {
        TierStats {
            tier: tier.to_string(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
        }
    }
}

/// A cache tier (memory, filesystem; Redis and object storage later) or a decorator.
#[async_trait]
pub trait CacheBackend: Send + Sync {
    /// The tier's name in events and stats (`memory`, `filesystem`, …).
    fn name(&self) -> &str;

    /// The entry for `key`, or `None` on a miss (expired entries are misses).
    async fn get_entry(&self, key: &CacheKey) -> Result<Option<Hit>, CacheError>;

    /// Store an entry; its blobs must be stored first. `components` are kept beside it.
    async fn put_entry(&self, entry: &CacheEntry, components: Option<&KeyComponents>) -> Result<(), CacheError>;

    /// The key components stored beside an entry, if this tier keeps them.
    async fn get_components(&self, _key: &CacheKey) -> Result<Option<KeyComponents>, CacheError> {
        Ok(None)
    }

    /// Remove an entry (its blobs go at the next prune). Returns whether it existed.
    async fn remove_entry(&self, key: &CacheKey) -> Result<bool, CacheError>;

    /// A blob, verified against its digest; `None` if missing or corrupt.
    async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError>;

    async fn put_blob(&self, digest: &Digest, data: Bytes) -> Result<(), CacheError>;

    /// Remove a blob (a content store that must not vouch for it any more). Tiers that keep
    /// blobs only as long as entries name them need not.
    async fn remove_blob(&self, _digest: &Digest) -> Result<(), CacheError> {
        Ok(())
    }

    /// Write blobs to files, verified; report those that are unavailable.
    async fn restore_blobs(&self, wanted: &[BlobRestore]) -> Result<RestoreReport, CacheError> {
        let mut report = RestoreReport::default();
        for want in wanted {
            match self.get_blob(&want.digest).await? {
                Some(bytes) => {
                    write_new_file(&want.dest, &bytes)
                        .map_err(|e| CacheError::io(self.name(), "write", &want.dest, e))?;
                    report.bytes += bytes.len() as u64;
                }
                None => report.unavailable.push(want.digest),
            }
        }
        Ok(report)
    }

    /// Store files' bytes in the content store.
    async fn store_blobs(&self, files: &[BlobSource]) -> Result<(), CacheError> {
        for file in files {
            let bytes = std::fs::read(&file.path).map_err(|e| CacheError::io(self.name(), "read", &file.path, e))?;
            self.put_blob(&file.digest, Bytes::from(bytes)).await?;
        }
        Ok(())
    }

    /// Copy a hit that a lower tier served into the tiers above it: the blobs (the files in
    /// `files`, local copies of the entry's blobs, already verified), then the entry. A tiered
    /// cache does it in the background (see [`CacheBackend::flush`]); a single tier has
    /// nothing above it.
    async fn backfill(&self, _hit: &Hit, _files: &[BlobSource]) {}

    /// Wait until background work (backfills) has finished: before a process exits.
    async fn flush(&self) {}

    /// Remove the entries whose `<app>/<target>/<key>` (or bare key) matches `pattern`;
    /// the keys removed (a tiered cache counts an entry held by several tiers once).
    async fn invalidate(&self, pattern: &globset::GlobMatcher) -> Result<Vec<CacheKey>, CacheError>;

    /// Drop expired entries, enforce the size bound (least recently used first) and
    /// remove blobs no entry refers to.
    async fn prune(&self) -> Result<PruneReport, CacheError>;

    async fn clear(&self) -> Result<(), CacheError>;

    async fn usage(&self) -> Result<Vec<TierUsage>, CacheError>;

    /// Counters of this tier (a decorator returns those of every tier it wraps).
    fn stats(&self) -> Vec<TierStats>;
}

/// Whether a tier is this machine's own (memory, filesystem) rather than shared (Redis, the
/// object store): a hit there needs no copying into this machine.
pub fn is_local_tier(tier: &str) -> bool {
    matches!(tier, "memory" | "filesystem")
}

/// Compile an invalidation pattern.
pub fn compile_pattern(pattern: &str) -> Result<globset::GlobMatcher, CacheError> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| CacheError::InvalidPattern { pattern: pattern.to_string(), message: e.to_string() })
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Write a file the caller owns, creating its parent directories.
pub(crate) fn write_new_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes)
}

/// The cache the config describes, in read order: memory, filesystem, Redis, object store
/// (each if configured), read-only if asked.
pub fn from_config(config: &EngineConfig, cache_dir: &Path) -> Result<Option<Arc<dyn CacheBackend>>, CacheError> {
    let mut tiers: Vec<Arc<dyn CacheBackend>> = Vec::new();
    let ttl = Duration::from_secs(config.build_system.cache_ttl);
    if config.cache.memory.enabled {
        let memory_ttl = ttl.min(Duration::from_secs(config.cache.memory.ttl));
        tiers.push(Arc::new(MemoryCache::new(config.cache.memory.max_bytes, memory_ttl)));
    }
    if config.cache.filesystem.enabled {
        tiers.push(Arc::new(FilesystemCache::open(&cache_dir.join("store"), ttl, config.cache.filesystem.max_bytes)?));
    }
    // The machine's own tiers are read first: a hit on this disk never waits on the network.
    // The shared ones follow in the document's order (Redis, then the object store), and a
    // hit there is copied into the tiers above.
    if let Some(redis) = &config.cache.redis {
        tiers.push(Arc::new(RedisCache::new(RedisTierSettings::of(redis, ttl))?));
    }
    if let Some(remote) = &config.cache.remote {
        tiers.push(Arc::new(RemoteCache::new(RemoteTierSettings::of(remote, ttl))?));
    }
    let cache: Arc<dyn CacheBackend> = match tiers.len() {
        0 => return Ok(None),
        1 => tiers.remove(0),
        _ => Arc::new(TieredCache::new(tiers)),
    };
    Ok(Some(if config.cache.read_only { Arc::new(ReadOnlyCache::new(cache)) } else { cache }))
}
