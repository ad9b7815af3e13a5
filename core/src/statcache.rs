//! Remembered file digests, keyed by what `stat` says (size, mtime, inode), as
//! git's index does: a file whose stat is unchanged is not read again.
//!
//! Racy entries are never trusted: a file modified in the same clock tick as it
//! was recorded could change without its mtime moving, so entries whose mtime is
//! within [`RACY_WINDOW`] of the moment they were recorded are not saved.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::digest::Digest;

const RACY_WINDOW: Duration = Duration::from_secs(2);
const HEADER: &str = "workz-stat v1";

/// What `stat` told about a file when its digest was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        }
    }
}

/// Digests of the files under one root, by relative path.
#[derive(Debug, Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    known: rustc_hash::FxHashMap<String, (Stamp, Digest)>,
    seen: Vec<(String, Stamp, Digest)>,
    changed: bool,
}

impl StatCache {
    /// The cache for `root`, stored under `dir` (an empty one if there is none or it is unreadable).
    pub fn load(dir: &Path, root: &Path) -> StatCache {
        let name = Digest::of(root.as_os_str().as_encoded_bytes()).to_hex();
        let file = dir.join(format!("{}.idx", &name[..32]));
        let known = std::fs::read_to_string(&file).map(|text| parse(&text)).unwrap_or_default();
        StatCache { file: Some(file), known, seen: Vec::new(), changed: false }
    }

    /// A cache that remembers nothing (no directory to keep it in).
    pub fn disabled() -> StatCache {
        StatCache::default()
    }

    /// The remembered digest of `rel` if its stat is unchanged.
    pub fn lookup(&self, rel: &str, meta: &Metadata) -> Option<Digest> {
        let (stamp, digest) = self.known.get(rel)?;
        (*stamp == Stamp::of(meta)).then_some(*digest)
    }

    /// Whether a digest of `rel` is remembered at all (whatever its stat).
    pub fn knows(&self, rel: &str) -> bool {
        self.known.contains_key(rel)
    }

    /// Record the digest of `rel` taken with this stat.
    pub fn record(&mut self, rel: &str, meta: &Metadata, digest: Digest) {
        let stamp = Stamp::of(meta);
        if self.known.get(rel).is_none_or(|(s, d)| *s != stamp || *d != digest) {
            self.changed = true;
        }
        self.seen.push((rel.to_string(), stamp, digest));
    }

    /// Write what was seen (dropping files that are gone), if anything changed.
    pub fn save(self) {
        let Some(file) = &self.file else { return };
        if !self.changed && self.seen.len() == self.known.len() {
            return;
        }
        let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
        let racy_after = now_ns - RACY_WINDOW.as_nanos() as i128;
        let mut text = String::with_capacity(self.seen.len() * 120);
        text.push_str(HEADER);
        text.push('\n');
        for (rel, stamp, digest) in &self.seen {
            if stamp.mtime_ns >= racy_after || rel.contains('\n') {
                continue;
            }
            text.push_str(&format!("{} {} {} {} {rel}\n", digest, stamp.size, stamp.mtime_ns, stamp.inode));
        }
        // Best effort: a cache that cannot be written only costs re-reading next time.
        let _ = crate::files::write_atomic(file, text.as_bytes());
    }
}

fn parse(text: &str) -> rustc_hash::FxHashMap<String, (Stamp, Digest)> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Default::default();
    }
    lines
        .filter_map(|line| {
            let mut parts = line.splitn(5, ' ');
            let digest = parts.next()?.parse().ok()?;
            let size = parts.next()?.parse().ok()?;
            let mtime_ns = parts.next()?.parse().ok()?;
            let inode = parts.next()?.parse().ok()?;
            let rel = parts.next()?.to_string();
            Some((rel, (Stamp { size, mtime_ns, inode }, digest)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_old_files_and_notices_changes() {
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a.txt");
        std::fs::write(&file, "one").unwrap();
        // Age the file past the racy window.
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();

        let mut cache = StatCache::load(state.path(), root.path());
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(cache.lookup("a.txt", &meta), None);
        cache.record("a.txt", &meta, Digest::of(b"one"));
        cache.save();

        let cache = StatCache::load(state.path(), root.path());
        assert_eq!(cache.lookup("a.txt", &meta), Some(Digest::of(b"one")));

        std::fs::write(&file, "two").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(cache.lookup("a.txt", &meta), None, "changed file is re-read");
    }

    #[test]
    fn racy_entries_are_not_saved() {
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("fresh.txt");
        std::fs::write(&file, "now").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let mut cache = StatCache::load(state.path(), root.path());
        cache.record("fresh.txt", &meta, Digest::of(b"now"));
        cache.save();
        assert_eq!(StatCache::load(state.path(), root.path()).lookup("fresh.txt", &meta), None);
    }
}
