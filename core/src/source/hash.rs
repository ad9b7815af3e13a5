//! Hashing a snapshot's files: in parallel, small files through a buffer, large ones mapped;
//! scripts kept in memory within a per-build and a process-wide budget.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use rayon::prelude::*;

use super::{Content, SourceError, SourceFile};
use crate::digest::Digest;
use crate::statcache::StatCache;
use std::fs::File;
use std::io::Read;

/// Files at or above this size are hashed from a memory map, smaller ones from a read into a
/// per-thread buffer. Higher than b3sum's 16 KiB: in a process hashing on every core, each
/// unmap interrupts the other cores to flush their TLBs, which cost more than the copy
/// (10,000 files, 202 MB: 268 ms of CPU at 16 KiB, 200 ms at 64 KiB, 177 ms at 1 MiB).
pub(super) const MMAP_THRESHOLD: u64 = 1024 * 1024;

/// Below this many files to read (the rest known by their stat), hashing stays on one thread.
const PARALLEL_READ_MIN: usize = 16;

/// Scripts (what the JavaScript builder validates and bundles) are kept in memory when read
/// for hashing, up to these sizes.
pub(super) const HELD_FILE_BYTES: u64 = 4 << 20;
pub(super) const HELD_TOTAL_BYTES: u64 = 128 << 20;

/// What all the snapshots of this process may hold at once: builds running side by side (an
/// embedding host runs several) share it, and a build past it reads its scripts from disk.
pub(super) static HELD_BUDGET: HeldBudget = HeldBudget::new(512 << 20);

/// Bytes kept in memory, against a limit.
#[derive(Debug)]
pub(crate) struct HeldBudget {
    used: std::sync::atomic::AtomicU64,
    limit: u64,
}

/// Bytes taken from a budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Held {
    budget: &'static HeldBudget,
    pub(super) bytes: u64,
}

impl HeldBudget {
    pub(crate) const fn new(limit: u64) -> HeldBudget {
        HeldBudget { used: std::sync::atomic::AtomicU64::new(0), limit }
    }

    /// `bytes` more, if they fit.
    pub(crate) fn take(&'static self, bytes: u64) -> Option<Held> {
        use std::sync::atomic::Ordering::Relaxed;
        self.used
            .fetch_update(Relaxed, Relaxed, |used| used.checked_add(bytes).filter(|&total| total <= self.limit))
            .ok()
            .map(|_| Held { budget: self, bytes })
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A file found by the walk, not hashed yet.
pub(super) struct Pending {
    pub(super) rel: String,
    pub(super) meta: std::fs::Metadata,
    pub(super) abs: PathBuf,
}

/// A file stat'ed and (unless a limit stopped it) hashed: `file` is `None` when it was not
/// read because a size limit is passed (intake then reports that limit).
pub(super) struct Taken {
    pub(super) pending: Pending,
    pub(super) file: Option<SourceFile>,
}

/// What hashing shares between threads: the remembered digests and the budgets.
pub(super) struct Hasher {
    pub(super) stat_cache: StatCache,
    keep_scripts: bool,
    held_total: AtomicU64,
    /// Bytes of files read so far, against the source limit: past it, nothing more is read.
    read_total: AtomicU64,
    max_file_bytes: u64,
    max_source_bytes: u64,
}

impl Hasher {
    pub(super) fn new(stat_cache: StatCache, keep_scripts: bool, max_file_bytes: u64, max_source_bytes: u64) -> Hasher {
        Hasher {
            stat_cache,
            keep_scripts,
            held_total: AtomicU64::new(0),
            read_total: AtomicU64::new(0),
            max_file_bytes,
            max_source_bytes,
        }
    }

    /// Stat `abs` and take it in. A file the stat cache does not know is about to be read: it
    /// is opened first and stat'ed through its descriptor (one path lookup instead of two).
    pub(super) fn stat_and_take(&self, rel: String, abs: PathBuf) -> Result<Taken, SourceError> {
        let read_err = |rel: String| move |source| SourceError::Read { path: rel, source };
        if self.stat_cache.knows(&rel) {
            let meta = std::fs::metadata(&abs).map_err(read_err(rel.clone()))?;
            return self.take_opened(Pending { rel, meta, abs }, None);
        }
        let file = File::open(&abs).map_err(read_err(rel.clone()))?;
        let meta = file.metadata().map_err(read_err(rel.clone()))?;
        self.take_opened(Pending { rel, meta, abs }, Some(file))
    }

    /// The file's digest: remembered, or read and hashed (scripts kept, within the budgets).
    fn take_opened(&self, p: Pending, opened: Option<File>) -> Result<Taken, SourceError> {
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let size = p.meta.len();
        if let Some(digest) = self.stat_cache.lookup(&p.rel, &p.meta) {
            let file = SourceFile { path: p.rel.clone(), size, digest, content: Content::Disk(p.abs.clone()) };
            return Ok(Taken { pending: p, file: Some(file) });
        }
        // A file over a limit is not read: intake reports the limit after the walk, in path order.
        if size > self.max_file_bytes || self.read_total.fetch_add(size, Relaxed) + size > self.max_source_bytes {
            return Ok(Taken { pending: p, file: None });
        }
        let read_err = |source| SourceError::Read { path: p.rel.clone(), source };
        let hold = self.keep_scripts
            && size <= HELD_FILE_BYTES
            && is_script(&p.rel)
            && self.held_total.fetch_add(size, Relaxed) + size <= HELD_TOTAL_BYTES;
        let read_all = |opened: Option<File>, buf: &mut Vec<u8>| -> std::io::Result<()> {
            let mut file = match opened {
                Some(file) => file,
                None => File::open(&p.abs)?,
            };
            file.read_to_end(buf).map(|_| ())
        };
        if let Some(held) = hold.then(|| HELD_BUDGET.take(size)).flatten() {
            let mut bytes = Vec::with_capacity(size as usize);
            read_all(opened, &mut bytes).map_err(read_err)?;
            let bytes = Bytes::from(bytes);
            let file = SourceFile {
                path: p.rel.clone(),
                size: bytes.len() as u64,
                digest: Digest::of(&bytes),
                content: Content::Held { bytes, _share: std::sync::Arc::new(held) },
            };
            return Ok(Taken { pending: p, file: Some(file) });
        }
        let digest = if size >= MMAP_THRESHOLD {
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap(&p.abs).map_err(read_err)?;
            Digest::from(hasher.finalize())
        } else {
            BUFFER.with_borrow_mut(|buf| -> Result<Digest, SourceError> {
                buf.clear();
                read_all(opened, buf).map_err(read_err)?;
                Ok(Digest::of(buf))
            })?
        };
        let file = SourceFile { path: p.rel.clone(), size, digest, content: Content::Disk(p.abs.clone()) };
        Ok(Taken { pending: p, file: Some(file) })
    }
}

/// Files handed to the thread pool in batches while the walk goes on, and what came back.
pub(super) struct Stream {
    hasher: Arc<Hasher>,
    batch: Vec<(String, PathBuf)>,
    sent: usize,
    results: std::sync::mpsc::Sender<Result<Vec<Taken>, SourceError>>,
    received: std::sync::mpsc::Receiver<Result<Vec<Taken>, SourceError>>,
}

/// Files per batch sent to the pool.
const STREAM_BATCH: usize = 128;

impl Stream {
    pub(super) fn new(hasher: Arc<Hasher>) -> Stream {
        let (results, received) = std::sync::mpsc::channel();
        Stream { hasher, batch: Vec::with_capacity(STREAM_BATCH), sent: 0, results, received }
    }

    /// Queue a file found by the walk; full batches go to the pool at once.
    pub(super) fn push(&mut self, rel: String, abs: PathBuf) {
        self.batch.push((rel, abs));
        if self.batch.len() == STREAM_BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(STREAM_BATCH));
        let hasher = self.hasher.clone();
        let results = self.results.clone();
        self.sent += 1;
        rayon::spawn(move || {
            let taken = batch.into_iter().map(|(rel, abs)| hasher.stat_and_take(rel, abs)).collect();
            // Let go of the hasher before answering: once every batch has answered, the walk
            // holds the only reference again (and records the stats in it).
            drop(hasher);
            let _ = results.send(taken);
        });
    }

    /// Everything sent, once the pool has done it (the first error if any).
    pub(super) fn finish(mut self) -> Result<Vec<Taken>, SourceError> {
        if !self.batch.is_empty() {
            self.send();
        }
        let mut all = Vec::new();
        let mut failure = None;
        for _ in 0..self.sent {
            match self.received.recv() {
                Ok(Ok(taken)) => all.extend(taken),
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(_) => break,
            }
        }
        failure.map_or(Ok(all), Err)
    }
}

/// Take in the files a walk found, in parallel when enough of them are new to the stat
/// cache (a warm rebuild reads next to nothing: then this thread is faster than the pool).
pub(super) fn take_all(found: Vec<(String, PathBuf)>, hasher: &Hasher) -> Result<Vec<Taken>, SourceError> {
    let new = found.iter().filter(|(rel, _)| !hasher.stat_cache.knows(rel)).count();
    if new < PARALLEL_READ_MIN {
        found.into_iter().map(|(rel, abs)| hasher.stat_and_take(rel, abs)).collect()
    } else {
        found.into_par_iter().map(|(rel, abs)| hasher.stat_and_take(rel, abs)).collect()
    }
}

/// Extensions of the files that are scripts (kept in memory by a snapshot, parsed by validation).
pub const SCRIPT_EXTENSIONS: &[&str] = &["js", "mjs", "cjs", "jsx", "ts", "mts", "cts", "tsx"];

/// Whether a path names a script (by its extension).
pub fn is_script(path: &str) -> bool {
    path.rsplit_once('.').is_some_and(|(_, ext)| SCRIPT_EXTENSIONS.contains(&ext))
}
