//! The filesystem tier: entries and blobs as files under one root.
//!
//! ```text
//! <root>/ac/<k[..2]>/<key>.json        action entry (outputs of a build)
//! <root>/ac/<k[..2]>/<key>.key.json    its key components (for explain)
//! <root>/cas/<d[..2]>/<digest>         blobs, named by their BLAKE3 digest
//! <root>/tmp/                          temp files, renamed into place
//! ```
//!
//! Every write is a temp file renamed into place, so readers see a whole file or
//! none, and concurrent writers of the same key or blob are harmless. No fsync:
//! a torn file after a crash fails verification and is treated as a miss. An
//! entry's mtime is its last use, for LRU eviction.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use rayon::prelude::*;

use super::{
    BlobRestore, BlobSource, CacheBackend, CacheEntry, CacheError, CacheKey, Counters, Hit, KeyComponents, PruneReport,
    RestoreReport, TierStats, TierUsage, unix_now,
};
use crate::digest::Digest;

const TIER: &str = "filesystem";
/// Unreferenced blobs younger than this are kept: a build may be about to reference them.
const BLOB_GRACE: Duration = Duration::from_secs(600);
/// How often a store triggers an automatic prune.
const AUTO_PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The on-disk cache tier.
#[derive(Clone)]
pub struct FilesystemCache {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    ttl: Duration,
    max_bytes: u64,
    counters: Counters,
}

impl FilesystemCache {
    /// Open (creating if needed) a cache under `root`.
    pub fn open(root: &Path, ttl: Duration, max_bytes: u64) -> Result<FilesystemCache, CacheError> {
        for dir in ["ac", "cas", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| CacheError::io(TIER, "create", &path, e))?;
        }
        Ok(FilesystemCache {
            inner: Arc::new(Inner { root: root.to_path_buf(), ttl, max_bytes, counters: Counters::default() }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where the blob with `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.blob_path(digest)
    }

    /// Where the entry for `key` lives.
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.inner.entry_path(key, "json")
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        let inner = self.inner.clone();
        let result = tokio::task::spawn_blocking(move || f(&inner)).await.unwrap_or_else(|e| {
            Err(CacheError::io(TIER, "join", PathBuf::new(), std::io::Error::other(e.to_string())))
        });
        if result.is_err() {
            self.inner.counters.error();
        }
        result
    }
}

impl Inner {
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("cas").join(&hex[..2]).join(hex)
    }

    fn entry_path(&self, key: &CacheKey, ext: &str) -> PathBuf {
        let hex = key.to_string();
        self.root.join("ac").join(&hex[..2]).join(format!("{hex}.{ext}"))
    }

    fn io(&self, op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
        let path = path.to_path_buf();
        move |e| CacheError::io(TIER, op, path, e)
    }

    /// Write `bytes` to `dest` through a temp file and a rename.
    fn write_atomic(
        &self,
        dest: &Path,
        write: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> Result<(), CacheError> {
        let parent = dest.parent().expect("cache paths have a parent directory");
        std::fs::create_dir_all(parent).map_err(self.io("create", parent))?;
        let tmp_dir = self.root.join("tmp");
        let mut tmp = tempfile::NamedTempFile::new_in(&tmp_dir).map_err(self.io("create temp in", &tmp_dir))?;
        write(tmp.as_file_mut()).map_err(self.io("write", tmp.path()))?;
        tmp.persist(dest).map_err(|e| CacheError::io(TIER, "rename into", dest, e.error))?;
        Ok(())
    }

    /// Read and verify a blob. `Ok(None)` when it is missing or corrupt (then it is deleted).
    fn read_blob(&self, digest: &Digest, buf: &mut Vec<u8>) -> Result<bool, CacheError> {
        let path = self.blob_path(digest);
        buf.clear();
        match File::open(&path) {
            Ok(mut file) => {
                file.read_to_end(buf).map_err(self.io("read", &path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(CacheError::io(TIER, "open", path, e)),
        }
        if Digest::of(buf) != *digest {
            self.counters.corrupt();
            tracing::warn!(blob = %digest, "corrupt blob in the filesystem cache: evicted");
            let _ = std::fs::remove_file(&path);
            return Ok(false);
        }
        self.counters.read(buf.len() as u64);
        Ok(true)
    }

    fn read_entry(&self, key: &CacheKey) -> Result<Option<CacheEntry>, CacheError> {
        let path = self.entry_path(key, "json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::io(TIER, "read", path, e)),
        };
        match serde_json::from_slice::<CacheEntry>(&text) {
            Ok(entry) if entry.key == *key => Ok(Some(entry)),
            Ok(_) | Err(_) => {
                // A torn or foreign file is not an entry: evict it and miss.
                self.counters.corrupt();
                self.remove_entry(key)?;
                Ok(None)
            }
        }
    }

    fn remove_entry(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let path = self.entry_path(key, "json");
        let existed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(CacheError::io(TIER, "remove", path, e)),
        };
        let _ = std::fs::remove_file(self.entry_path(key, "key.json"));
        Ok(existed)
    }

    fn expired(&self, entry: &CacheEntry) -> bool {
        unix_now().saturating_sub(entry.created_at) > self.ttl.as_secs()
    }

    /// Every entry on disk with its last-use time.
    fn list_entries(&self) -> Result<Vec<(CacheEntry, SystemTime)>, CacheError> {
        let ac = self.root.join("ac");
        let mut out = Vec::new();
        for shard in read_dir(&ac)? {
            for file in read_dir(&shard)? {
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                let Some(hex) = name.strip_suffix(".json").filter(|h| !h.ends_with(".key")) else { continue };
                let Ok(key) = hex.parse::<CacheKey>() else { continue };
                let used = file.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
                if let Some(entry) = self.read_entry(&key)? {
                    out.push((entry, used));
                }
            }
        }
        Ok(out)
    }

    /// Every blob on disk: digest → (size, mtime).
    fn list_blobs(&self) -> Result<HashMap<Digest, (u64, SystemTime)>, CacheError> {
        let cas = self.root.join("cas");
        let mut out = HashMap::new();
        for shard in read_dir(&cas)? {
            for file in read_dir(&shard)? {
                let Some(digest) = file.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<Digest>().ok())
                else {
                    continue;
                };
                if let Ok(meta) = file.metadata() {
                    out.insert(digest, (meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                }
            }
        }
        Ok(out)
    }

    fn prune(&self) -> Result<PruneReport, CacheError> {
        let mut report = PruneReport::default();
        let mut entries = self.list_entries()?;
        // Least recently used first.
        entries.sort_by_key(|(_, used)| *used);
        let blobs = self.list_blobs()?;
        let mut refs: HashMap<Digest, u32> = HashMap::new();
        for (entry, _) in &entries {
            for f in &entry.files {
                *refs.entry(f.blake3).or_default() += 1;
            }
        }
        let mut live_bytes: u64 = refs.keys().filter_map(|d| blobs.get(d)).map(|(size, _)| size).sum();
        for (entry, _) in &entries {
            let over = live_bytes > self.max_bytes;
            if !(self.expired(entry) || over) {
                continue;
            }
            self.remove_entry(&entry.key)?;
            report.entries_removed += 1;
            for f in &entry.files {
                if let Some(n) = refs.get_mut(&f.blake3) {
                    *n -= 1;
                    if *n == 0 {
                        refs.remove(&f.blake3);
                        live_bytes = live_bytes.saturating_sub(blobs.get(&f.blake3).map_or(0, |b| b.0));
                    }
                }
            }
        }
        let now = SystemTime::now();
        for (digest, (size, modified)) in &blobs {
            let young = now.duration_since(*modified).unwrap_or_default() < BLOB_GRACE;
            if refs.contains_key(digest) || young {
                continue;
            }
            if std::fs::remove_file(self.blob_path(digest)).is_ok() {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        for tmp in read_dir(&self.root.join("tmp"))? {
            let old = tmp
                .metadata()
                .and_then(|m| m.modified())
                .map(|m| now.duration_since(m).unwrap_or_default() > BLOB_GRACE)
                .unwrap_or(false);
            if old {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        self.counters.evicted(report.entries_removed);
        let stamp = self.root.join("last-prune");
        let _ = std::fs::write(&stamp, unix_now().to_string());
        Ok(report)
    }

    fn prune_due(&self) -> bool {
        let stamp = self.root.join("last-prune");
        match std::fs::metadata(&stamp).and_then(|m| m.modified()) {
            Ok(t) => SystemTime::now().duration_since(t).unwrap_or_default() > AUTO_PRUNE_EVERY,
            Err(_) => {
                // First use: start the clock rather than pruning an empty cache.
                let _ = std::fs::write(&stamp, unix_now().to_string());
                false
            }
        }
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CacheError::io(TIER, "list", dir, e)),
    }
}

/// Serialize in memory and write once: an unbuffered file would take a syscall per token.
fn write_json<T: serde::Serialize>(file: &mut File, value: &T) -> std::io::Result<()> {
    file.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)
}

fn touch(path: &Path) {
    if let Ok(file) = File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

#[async_trait]
impl CacheBackend for FilesystemCache {
    fn name(&self) -> &str {
        TIER
    }

    async fn get_entry(&self, key: &CacheKey) -> Result<Option<Hit>, CacheError> {
        // Small file reads: cheaper inline than a hop to the blocking pool.
        let inner = &self.inner;
        let result = inner.read_entry(key);
        let entry = match result {
            Ok(Some(entry)) if inner.expired(&entry) => {
                inner.remove_entry(key)?;
                inner.counters.evicted(1);
                None
            }
            Ok(found) => found,
            Err(e) => {
                inner.counters.error();
                return Err(e);
            }
        };
        match entry {
            Some(entry) => {
                inner.counters.hit();
                touch(&inner.entry_path(key, "json"));
                Ok(Some(Hit { entry, tier: TIER.to_string() }))
            }
            None => {
                inner.counters.miss();
                Ok(None)
            }
        }
    }

    async fn put_entry(&self, entry: &CacheEntry, components: Option<&KeyComponents>) -> Result<(), CacheError> {
        let entry = entry.clone();
        let components = components.cloned();
        let this = self.clone();
        self.blocking(move |inner| {
            if let Some(components) = components {
                let path = inner.entry_path(&entry.key, "key.json");
                inner.write_atomic(&path, |f| write_json(f, &components))?;
            }
            let path = inner.entry_path(&entry.key, "json");
            inner.write_atomic(&path, |f| write_json(f, &entry))?;
            if inner.prune_due() {
                // Pruning is housekeeping: it must not slow or fail the build that stored.
                std::thread::spawn(move || {
                    if let Err(e) = this.inner.prune() {
                        tracing::warn!("automatic cache prune failed: {e}");
                    }
                });
            }
            Ok(())
        })
        .await
    }

    async fn get_components(&self, key: &CacheKey) -> Result<Option<KeyComponents>, CacheError> {
        let path = self.inner.entry_path(key, "key.json");
        match std::fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CacheError::io(TIER, "read", path, e)),
        }
    }

    async fn remove_entry(&self, key: &CacheKey) -> Result<bool, CacheError> {
        let key = *key;
        self.blocking(move |inner| inner.remove_entry(&key)).await
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError> {
        let digest = *digest;
        self.blocking(move |inner| {
            let mut buf = Vec::new();
            Ok(inner.read_blob(&digest, &mut buf)?.then(|| Bytes::from(buf)))
        })
        .await
    }

    async fn put_blob(&self, digest: &Digest, data: Bytes) -> Result<(), CacheError> {
        let digest = *digest;
        self.blocking(move |inner| {
            let path = inner.blob_path(&digest);
            if std::fs::metadata(&path).is_ok_and(|m| m.len() == data.len() as u64) {
                touch(&path);
                return Ok(());
            }
            inner.write_atomic(&path, |f| f.write_all(&data))?;
            inner.counters.written(data.len() as u64);
            Ok(())
        })
        .await
    }

    async fn restore_blobs(&self, wanted: &[BlobRestore]) -> Result<RestoreReport, CacheError> {
        let wanted = wanted.to_vec();
        self.blocking(move |inner| {
            thread_local! {
                static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
            }
            let results: Vec<Result<Option<u64>, CacheError>> = wanted
                .par_iter()
                .map(|want| {
                    BUFFER.with_borrow_mut(|buf| {
                        if !inner.read_blob(&want.digest, buf)? {
                            return Ok(None);
                        }
                        super::write_new_file(&want.dest, buf).map_err(inner.io("write", &want.dest))?;
                        Ok(Some(buf.len() as u64))
                    })
                })
                .collect();
            let mut report = RestoreReport::default();
            for (want, result) in wanted.iter().zip(results) {
                match result? {
                    Some(n) => report.bytes += n,
                    None => report.unavailable.push(want.digest),
                }
            }
            Ok(report)
        })
        .await
    }

    async fn store_blobs(&self, files: &[BlobSource]) -> Result<(), CacheError> {
        let files = files.to_vec();
        self.blocking(move |inner| {
            files.par_iter().try_for_each(|file| {
                let dest = inner.blob_path(&file.digest);
                let size = std::fs::metadata(&file.path).map_err(inner.io("stat", &file.path))?.len();
                if std::fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
                    // Present: mark it used so a concurrent prune's grace period covers it.
                    touch(&dest);
                    return Ok(());
                }
                inner.write_atomic(&dest, |out| {
                    let mut src = File::open(&file.path)?;
                    std::io::copy(&mut src, out).map(|_| ())
                })?;
                inner.counters.written(size);
                Ok(())
            })
        })
        .await
    }

    async fn invalidate(&self, pattern: &globset::GlobMatcher) -> Result<Vec<CacheKey>, CacheError> {
        let pattern = pattern.clone();
        self.blocking(move |inner| {
            let mut removed = Vec::new();
            for (entry, _) in inner.list_entries()? {
                if entry.matches(&pattern) && inner.remove_entry(&entry.key)? {
                    removed.push(entry.key);
                }
            }
            inner.counters.evicted(removed.len() as u64);
            Ok(removed)
        })
        .await
    }

    async fn prune(&self) -> Result<PruneReport, CacheError> {
        self.blocking(|inner| inner.prune()).await
    }

    async fn clear(&self) -> Result<(), CacheError> {
        self.blocking(|inner| {
            for dir in ["ac", "cas"] {
                let path = inner.root.join(dir);
                // Rename first so that concurrent readers see an empty cache, not a half-deleted one.
                let doomed = inner.root.join("tmp").join(format!("{dir}-cleared-{}", uuid::Uuid::now_v7()));
                match std::fs::rename(&path, &doomed) {
                    Ok(()) => std::fs::remove_dir_all(&doomed).map_err(inner.io("remove", &doomed))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(CacheError::io(TIER, "rename", path, e)),
                }
                std::fs::create_dir_all(&path).map_err(inner.io("create", &path))?;
            }
            Ok(())
        })
        .await
    }

    async fn usage(&self) -> Result<Vec<TierUsage>, CacheError> {
        self.blocking(|inner| {
            let entries = inner.list_entries()?.len() as u64;
            let blobs = inner.list_blobs()?;
            Ok(vec![TierUsage {
                tier: TIER.to_string(),
                entries,
                blobs: blobs.len() as u64,
                bytes: blobs.values().map(|(size, _)| size).sum(),
            }])
        })
        .await
    }

    fn stats(&self) -> Vec<TierStats> {
        vec![self.inner.counters.snapshot(TIER)]
    }
}

#[cfg(test)]
mod tests {
    use super::super::ArtifactFile;
    use super::*;

    fn entry(key: CacheKey, label: &str, files: &[(&str, &[u8])]) -> CacheEntry {
        CacheEntry {
            key,
            label: label.into(),
            created_at: unix_now(),
            build_id: "b".into(),
            artifact_type: "static-web".into(),
            entry_point: None,
            files: files
                .iter()
                .map(|(p, b)| ArtifactFile {
                    path: p.to_string(),
                    size: b.len() as u64,
                    blake3: Digest::of(b),
                    content_type: "text/plain".into(),
                })
                .collect(),
        }
    }

    fn key(n: u8) -> CacheKey {
        CacheKey(Digest::of(&[n]))
    }

    async fn stored(cache: &FilesystemCache, e: &CacheEntry, files: &[(&str, &[u8])]) {
        for (_, bytes) in files {
            cache.put_blob(&Digest::of(bytes), Bytes::copy_from_slice(bytes)).await.unwrap();
        }
        cache.put_entry(e, None).await.unwrap();
    }

    #[tokio::test]
    async fn corrupt_truncated_and_missing_blobs_are_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FilesystemCache::open(dir.path(), Duration::from_secs(3600), u64::MAX).unwrap();
        let files: &[(&str, &[u8])] = &[("a", b"alpha alpha"), ("b", b"bravo bravo"), ("c", b"charlie")];
        stored(&cache, &entry(key(1), "app/web", files), files).await;

        std::fs::write(cache.blob_path(&Digest::of(b"alpha alpha")), b"alpha alphX").unwrap();
        std::fs::write(cache.blob_path(&Digest::of(b"bravo bravo")), b"bravo").unwrap();
        std::fs::remove_file(cache.blob_path(&Digest::of(b"charlie"))).unwrap();

        let out = tempfile::tempdir().unwrap();
        let wanted: Vec<BlobRestore> =
            files.iter().map(|(p, b)| BlobRestore { digest: Digest::of(b), dest: out.path().join(p) }).collect();
        let report = cache.restore_blobs(&wanted).await.unwrap();
        assert_eq!(report.unavailable.len(), 3);
        assert!(std::fs::read_dir(out.path()).unwrap().next().is_none(), "nothing written from bad blobs");
        assert!(!cache.blob_path(&Digest::of(b"alpha alpha")).exists(), "corrupt blob evicted");
        assert_eq!(cache.stats()[0].corrupt, 2);
        assert!(cache.get_blob(&Digest::of(b"bravo bravo")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn torn_entries_are_misses_and_expired_entries_go() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FilesystemCache::open(dir.path(), Duration::from_secs(3600), u64::MAX).unwrap();
        stored(&cache, &entry(key(1), "app/web", &[]), &[]).await;
        assert!(cache.get_entry(&key(1)).await.unwrap().is_some());
        let path = cache.entry_path(&key(1));
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        assert!(cache.get_entry(&key(1)).await.unwrap().is_none());
        assert!(!path.exists());

        let mut old = entry(key(2), "app/web", &[]);
        old.created_at -= 7200;
        stored(&cache, &old, &[]).await;
        assert!(cache.get_entry(&key(2)).await.unwrap().is_none(), "expired");
    }

    #[tokio::test]
    async fn prune_evicts_least_recently_used_and_collects_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FilesystemCache::open(dir.path(), Duration::from_secs(3600), 25).unwrap();
        let a: &[(&str, &[u8])] = &[("x", b"0123456789"), ("shared", b"SSSSSSSSSS")];
        let b: &[(&str, &[u8])] = &[("y", b"abcdefghij"), ("shared", b"SSSSSSSSSS")];
        stored(&cache, &entry(key(1), "a/web", a), a).await;
        stored(&cache, &entry(key(2), "b/web", b), b).await;
        // Make entry 1 the older one, then use it: entry 2 becomes least recently used.
        let long_ago = SystemTime::now() - Duration::from_secs(100);
        File::options().write(true).open(cache.entry_path(&key(2))).unwrap().set_modified(long_ago).unwrap();
        // Blobs must be past the grace period to be collected.
        for d in [b"0123456789", b"abcdefghij", b"SSSSSSSSSS"] {
            File::options()
                .write(true)
                .open(cache.blob_path(&Digest::of(d)))
                .unwrap()
                .set_modified(long_ago - BLOB_GRACE)
                .unwrap();
        }
        let report = cache.prune().await.unwrap();
        assert_eq!(report.entries_removed, 1);
        assert_eq!(report.blobs_removed, 1, "only the blob no entry refers to");
        assert!(cache.get_entry(&key(1)).await.unwrap().is_some());
        assert!(cache.get_entry(&key(2)).await.unwrap().is_none());
        assert!(cache.get_blob(&Digest::of(b"SSSSSSSSSS")).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn invalidate_by_pattern_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FilesystemCache::open(dir.path(), Duration::from_secs(3600), u64::MAX).unwrap();
        stored(&cache, &entry(key(1), "shop/web", &[]), &[]).await;
        stored(&cache, &entry(key(2), "shop/android", &[]), &[]).await;
        stored(&cache, &entry(key(3), "blog/web", &[]), &[]).await;
        assert_eq!(cache.invalidate(&super::super::compile_pattern("*/web/*").unwrap()).await.unwrap().len(), 2);
        assert!(cache.get_entry(&key(2)).await.unwrap().is_some());
        cache.clear().await.unwrap();
        assert!(cache.get_entry(&key(2)).await.unwrap().is_none());
        assert_eq!(cache.usage().await.unwrap()[0].entries, 0);
    }
}
