//! Hashing a snapshot's files: in parallel, small files through a buffer, large ones mapped;
//! scripts kept in memory within a per-build and a process-wide budget.

use std::path::PathBuf;

use bytes::Bytes;
use rayon::prelude::*;

use super::{Content, SourceError, SourceFile};
use crate::digest::Digest;
use crate::statcache::StatCache;
use std::fs::File;
use std::io::Read;

/// Files at or above this size are hashed from a memory map (as b3sum does), smaller ones
/// from a read into a per-thread buffer.
pub(super) const MMAP_THRESHOLD: u64 = 64 * 1024;

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

/// Hash files in parallel, in the order given, skipping those whose stat the cache remembers;
/// with `keep_scripts`, scripts read for hashing are kept (within the budgets).
pub(super) fn hash_files(
    pending: &[Pending],
    stat_cache: &StatCache,
    keep_scripts: bool,
) -> Result<Vec<SourceFile>, SourceError> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let held_total = std::sync::atomic::AtomicU64::new(0);
    let take_in = |p: &Pending| -> Result<SourceFile, SourceError> {
        let read_err = |source| SourceError::Read { path: p.rel.clone(), source };
        let size = p.meta.len();
        let known = stat_cache.lookup(&p.rel, &p.meta);
        let hold = keep_scripts
            && known.is_none()
            && size <= HELD_FILE_BYTES
            && is_script(&p.rel)
            && held_total.fetch_add(size, std::sync::atomic::Ordering::Relaxed) + size <= HELD_TOTAL_BYTES;
        if let Some(held) = hold.then(|| HELD_BUDGET.take(size)).flatten() {
            let bytes = Bytes::from(std::fs::read(&p.abs).map_err(read_err)?);
            let digest = Digest::of(&bytes);
            return Ok(SourceFile {
                path: p.rel.clone(),
                size: bytes.len() as u64,
                digest,
                content: Content::Held { bytes, _share: std::sync::Arc::new(held) },
            });
        }
        let digest = if let Some(known) = known {
            known
        } else if size >= MMAP_THRESHOLD {
            let mut hasher = blake3::Hasher::new();
            hasher.update_mmap(&p.abs).map_err(read_err)?;
            Digest::from(hasher.finalize())
        } else {
            BUFFER.with_borrow_mut(|buf| -> Result<Digest, SourceError> {
                buf.clear();
                let mut file = File::open(&p.abs).map_err(read_err)?;
                file.read_to_end(buf).map_err(read_err)?;
                Ok(Digest::of(buf))
            })?
        };
        Ok(SourceFile { path: p.rel.clone(), size, digest, content: Content::Disk(p.abs.clone()) })
    };
    // A warm rebuild reads next to nothing: then this thread is faster than waking the pool.
    let to_read = pending.iter().filter(|p| stat_cache.lookup(&p.rel, &p.meta).is_none()).count();
    let files: Vec<SourceFile> = if to_read < PARALLEL_READ_MIN {
        pending.iter().map(take_in).collect::<Result<_, SourceError>>()?
    } else {
        pending.par_iter().map(take_in).collect::<Result<_, SourceError>>()?
    };
    Ok(files)
}

/// Extensions of the files that are scripts (kept in memory by a snapshot, parsed by validation).
pub const SCRIPT_EXTENSIONS: &[&str] = &["js", "mjs", "cjs", "jsx", "ts", "mts", "cts", "tsx"];

/// Whether a path names a script (by its extension).
pub fn is_script(path: &str) -> bool {
    path.rsplit_once('.').is_some_and(|(_, ext)| SCRIPT_EXTENSIONS.contains(&ext))
}
