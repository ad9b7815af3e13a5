//! Source intake: a checked, hashed snapshot of an app's files.
//!
//! Paths are checked once, here: relative, `/`-separated, no `..`, `.`, empty,
//! absolute, drive or backslash components, no NUL or control characters, no
//! symlink that leaves the root, and within the configured limits. Everything
//! downstream trusts a [`SourceTree`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{LimitsConfig, SourceConfig};
use crate::digest::Digest;
use crate::statcache::StatCache;

/// From this many files on, intake stats and hashes them on every core while it walks.
const PARALLEL_STAT_MIN: usize = 2048;

/// Errors of source intake.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source directory {0} does not exist or is not a directory")]
    NotFound(PathBuf),
    #[error("invalid source path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("duplicate source path {0:?}")]
    DuplicatePath(String),
    #[error("symlink {path:?} points outside the source root")]
    SymlinkEscape { path: String },
    #[error("source file {path:?} is {size} bytes, over the limit of {limit}")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("the source has more than {limit} files")]
    TooManyFiles { limit: u64 },
    #[error("the source is over the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("cannot read source {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl crate::report::ErrorCode for SourceError {
    fn code(&self) -> &'static str {
        match self {
            SourceError::NotFound(_) => "source_not_found",
            SourceError::InvalidPath { .. } => "source_path_invalid",
            SourceError::DuplicatePath(_) => "source_duplicate_path",
            SourceError::SymlinkEscape { .. } => "source_symlink_escape",
            SourceError::FileTooLarge { .. } => "source_file_too_large",
            SourceError::TooManyFiles { .. } => "source_too_many_files",
            SourceError::TooLarge { .. } => "source_too_large",
            SourceError::Read { .. } => "source_read_failed",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(
            match self {
                SourceError::NotFound(_) => "Pass the directory that holds the app (its workz.json).",
                SourceError::InvalidPath { .. } | SourceError::DuplicatePath(_) => {
                    "Source paths must be relative, '/'-separated and stay inside the app root."
                }
                SourceError::SymlinkEscape { .. } => {
                    "Replace the symlink with the file it points to, or remove it: builds only read inside the app root."
                }
                SourceError::FileTooLarge { .. } | SourceError::TooLarge { .. } => {
                    "Leave large generated files out (.gitignore or `source.exclude`) or raise `limits.maxFileBytes` / `limits.maxSourceBytes`."
                }
                SourceError::TooManyFiles { .. } => {
                    "Leave generated or vendored folders out (.gitignore or `source.exclude`) or raise `limits.maxSourceFiles`."
                }
                SourceError::Read { .. } => "Check the file's permissions.",
            }
            .into(),
        )
    }

    fn category(&self) -> crate::report::Category {
        crate::report::Category::User
    }

    fn family(&self) -> crate::report::Family {
        crate::report::Family::Validation
    }
}

/// Where a source file's bytes are.
#[derive(Debug, Clone)]
enum Content {
    Disk(PathBuf),
    Memory(Bytes),
    /// A script read while it was hashed, kept: the stages after read it again many times
    /// (validation, the bundler), and what they see is then exactly what was hashed. Its
    /// share of the process's budget is given back when the last copy of the file goes.
    Held {
        bytes: Bytes,
        _share: std::sync::Arc<Held>,
    },
}

/// One checked source file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative, `/`-separated, checked.
    pub path: String,
    pub size: u64,
    pub digest: Digest,
    content: Content,
}

impl SourceFile {
    /// The file's bytes.
    pub fn read(&self) -> Result<Bytes, SourceError> {
        match &self.content {
            Content::Memory(bytes) | Content::Held { bytes, .. } => Ok(bytes.clone()),
            Content::Disk(path) => std::fs::read(path)
                .map(Bytes::from)
                .map_err(|source| SourceError::Read { path: self.path.clone(), source }),
        }
    }

    /// The file's bytes as they were hashed: from memory when they were kept, else read
    /// from disk and checked against the digest (`None` if they changed since).
    pub fn read_as_hashed(&self) -> Result<Option<Bytes>, SourceError> {
        match &self.content {
            Content::Memory(bytes) | Content::Held { bytes, .. } => Ok(Some(bytes.clone())),
            Content::Disk(_) => {
                let bytes = self.read()?;
                Ok((Digest::of(&bytes) == self.digest).then_some(bytes))
            }
        }
    }

    /// Write the file to `dest` (a path the caller owns).
    pub fn copy_to(&self, dest: &Path) -> std::io::Result<()> {
        match &self.content {
            Content::Memory(bytes) | Content::Held { bytes, .. } => std::fs::write(dest, bytes),
            Content::Disk(path) => std::fs::copy(path, dest).map(|_| ()),
        }
    }
}

/// A checked, hashed snapshot of an app's sources, sorted by path.
#[derive(Debug, Clone, Default)]
pub struct SourceTree {
    root: Option<PathBuf>,
    files: Vec<SourceFile>,
    total_bytes: u64,
}

/// What to take in, in a [`crate::BuildRequest`]: a directory or files in memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceSpec {
    /// A directory on this machine.
    Directory(PathBuf),
    /// Relative path → contents (UTF-8 text in JSON; bytes from Rust and the bindings).
    Files(BTreeMap<String, FileBytes>),
}

/// File contents that serialize as a UTF-8 string when they are text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBytes(pub Bytes);

impl Serialize for FileBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.serialize_bytes(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for FileBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(FileBytes(match Raw::deserialize(d)? {
            Raw::Text(text) => Bytes::from(text),
            Raw::Bytes(bytes) => Bytes::from(bytes),
        }))
    }
}

impl<T: Into<Bytes>> From<T> for FileBytes {
    fn from(value: T) -> Self {
        FileBytes(value.into())
    }
}

impl SourceTree {
    /// Take in a [`SourceSpec`]. With `stat_dir`, digests of unchanged files are remembered
    /// there between snapshots (see [`StatCache`]).
    pub fn intake(
        spec: &SourceSpec,
        limits: &LimitsConfig,
        rules: &SourceConfig,
        stat_dir: Option<&Path>,
    ) -> Result<SourceTree, SourceError> {
        match spec {
            // A build's intake keeps the scripts it reads: validation and the bundler use them.
            SourceSpec::Directory(dir) => SourceTree::snapshot(dir, limits, rules, stat_dir, true),
            SourceSpec::Files(files) => {
                SourceTree::from_memory(files.iter().map(|(p, b)| (p.clone(), b.0.clone())), limits)
            }
        }
    }

    /// Snapshot a directory, leaving out ignored files and `source.exclude` patterns. Files
    /// are hashed, not kept: what a caller reads later comes from the disk, checked.
    pub fn from_dir(root: &Path, limits: &LimitsConfig, rules: &SourceConfig) -> Result<SourceTree, SourceError> {
        SourceTree::snapshot(root, limits, rules, None, false)
    }

    fn snapshot(
        root: &Path,
        limits: &LimitsConfig,
        rules: &SourceConfig,
        stat_dir: Option<&Path>,
        keep_scripts: bool,
    ) -> Result<SourceTree, SourceError> {
        if !root.is_dir() {
            return Err(SourceError::NotFound(root.to_path_buf()));
        }
        let canonical_root =
            root.canonicalize().map_err(|source| SourceError::Read { path: root.display().to_string(), source })?;
        let exclude = exclude_matcher(&canonical_root, &rules.exclude);

        let mut walker = ignore::WalkBuilder::new(&canonical_root);
        walker.standard_filters(false).follow_links(false).git_ignore(rules.respect_gitignore).require_git(false);
        if rules.respect_gitignore {
            walker.add_custom_ignore_filename(".workzignore");
        }
        if !exclude.is_empty() {
            let filter_root = canonical_root.clone();
            walker.filter_entry(move |entry| {
                let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
                let rel = strip_root(&filter_root, entry.path())
                    .or_else(|| entry.path().strip_prefix(&filter_root).ok())
                    .unwrap_or(entry.path());
                rel.as_os_str().is_empty() || !exclude.matched_path_or_any_parents(rel, is_dir).is_ignore()
            });
        }

        let stat_cache = match stat_dir {
            Some(dir) => StatCache::load(dir, &canonical_root),
            None => StatCache::disabled(),
        };
        let hasher = Arc::new(Hasher::new(stat_cache, keep_scripts, limits.max_file_bytes, limits.max_source_bytes));
        // One thread walks: directory reads are cheap, and a small app's whole warm rebuild
        // (a few milliseconds of stats) costs less than starting threads. Past
        // `PARALLEL_STAT_MIN` files the rest goes to the pool in batches while the walk goes
        // on: stats, reads and hashes of a big tree overlap the walk.
        let mut found = Vec::new();
        let mut stream: Option<Stream> = None;
        let mut count: u64 = 0;
        for entry in walker.build() {
            let entry = entry.map_err(|e| SourceError::Read {
                path: root.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let Some(file_type) = entry.file_type() else { continue };
            if file_type.is_dir() {
                continue;
            }
            let abs = entry.path();
            let rel = relative_path(&canonical_root, abs)?;
            let data_path = if file_type.is_symlink() {
                match resolve_symlink(&canonical_root, abs, &rel)? {
                    Some(target) => target,
                    // A symlink to a directory inside the root: its files are walked at their real path.
                    None => continue,
                }
            } else if file_type.is_file() {
                entry.into_path()
            } else {
                // Sockets, FIFOs and devices are not sources.
                continue;
            };
            if count >= limits.max_source_files {
                return Err(SourceError::TooManyFiles { limit: limits.max_source_files });
            }
            count += 1;
            match stream.as_mut() {
                Some(stream) => stream.push(rel, data_path),
                None if found.len() + 1 < PARALLEL_STAT_MIN => found.push((rel, data_path)),
                None => {
                    let mut started = Stream::new(hasher.clone());
                    for (rel, abs) in found.drain(..) {
                        started.push(rel, abs);
                    }
                    started.push(rel, data_path);
                    stream = Some(started);
                }
            }
        }
        let mut taken = match stream {
            Some(stream) => stream.finish()?,
            None => take_all(found, &hasher)?,
        };
        // Files come back in walk and batch order; paths sort by their text, and the limits
        // are checked in that order so that the error is the same on every machine.
        taken.sort_unstable_by(|a, b| a.pending.rel.cmp(&b.pending.rel));
        let mut total: u64 = 0;
        for t in &taken {
            check_size(&t.pending.rel, t.pending.meta.len(), &mut total, limits)?;
        }
        let Ok(hasher) = Arc::try_unwrap(hasher) else {
            return Err(SourceError::Read {
                path: root.display().to_string(),
                source: std::io::Error::other("source hashing did not finish"),
            });
        };
        let mut stat_cache = hasher.stat_cache;
        let mut files = Vec::with_capacity(taken.len());
        for Taken { pending, file } in taken {
            // Within the limits (checked above) every file was read.
            let Some(file) = file else {
                return Err(SourceError::TooLarge { limit: limits.max_source_bytes });
            };
            if stat_dir.is_some() {
                stat_cache.record(&file.path, &pending.meta, file.digest);
            }
            files.push(file);
        }
        if stat_dir.is_some() {
            stat_cache.save();
        }
        Ok(SourceTree { root: Some(canonical_root), files, total_bytes: total })
    }

    /// Take in files held in memory.
    pub fn from_memory<I>(files: I, limits: &LimitsConfig) -> Result<SourceTree, SourceError>
    where
        I: IntoIterator<Item = (String, Bytes)>,
    {
        let mut checked = BTreeMap::new();
        let mut total: u64 = 0;
        for (path, bytes) in files {
            let rel = normalize_path(&path)?;
            if checked.len() as u64 >= limits.max_source_files {
                return Err(SourceError::TooManyFiles { limit: limits.max_source_files });
            }
            check_size(&rel, bytes.len() as u64, &mut total, limits)?;
            if checked.insert(rel.clone(), bytes).is_some() {
                return Err(SourceError::DuplicatePath(rel));
            }
        }
        let files = checked
            .into_par_iter()
            .map(|(path, bytes)| SourceFile {
                size: bytes.len() as u64,
                digest: Digest::of(&bytes),
                path,
                content: Content::Memory(bytes),
            })
            .collect();
        Ok(SourceTree { root: None, files, total_bytes: total })
    }

    /// The directory the snapshot was taken from, if any.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Files sorted by path.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    pub fn get(&self, path: &str) -> Option<&SourceFile> {
        self.files.binary_search_by(|f| f.path.as_str().cmp(path)).ok().map(|i| &self.files[i])
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Write every file that `keep` selects under `dir` (which the caller owns), in parallel.
    /// Stops early when `cancelled` turns true.
    pub fn materialize(
        &self,
        dir: &Path,
        keep: &(dyn Fn(&SourceFile) -> bool + Sync),
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> std::io::Result<()> {
        let selected: Vec<&SourceFile> = self.files.iter().filter(|f| keep(f)).collect();
        let mut dirs: Vec<PathBuf> =
            selected.iter().filter_map(|f| Path::new(&f.path).parent().map(|p| dir.join(p))).collect();
        dirs.sort();
        dirs.dedup();
        std::fs::create_dir_all(dir)?;
        for d in &dirs {
            std::fs::create_dir_all(d)?;
        }
        selected.par_iter().try_for_each(|file| {
            if cancelled() {
                return Err(std::io::Error::other("cancelled"));
            }
            file.copy_to(&dir.join(&file.path))
        })
    }
}

fn check_size(rel: &str, size: u64, total: &mut u64, limits: &LimitsConfig) -> Result<(), SourceError> {
    if size > limits.max_file_bytes {
        return Err(SourceError::FileTooLarge { path: rel.to_string(), size, limit: limits.max_file_bytes });
    }
    *total += size;
    if *total > limits.max_source_bytes {
        return Err(SourceError::TooLarge { limit: limits.max_source_bytes });
    }
    Ok(())
}

fn exclude_matcher(root: &Path, patterns: &[String]) -> ignore::gitignore::Gitignore {
    let mut builder = ignore::gitignore::GitignoreBuilder::new(root);
    for pattern in patterns {
        // A malformed pattern is skipped rather than failing every build; config validation reports it.
        let _ = builder.add_line(None, pattern);
    }
    builder.build().unwrap_or_else(|_| ignore::gitignore::Gitignore::empty())
}

/// `path` below `root` as text (`None` if it is not, or is not UTF-8): the walk joins names to
/// the root as given, and `Path::strip_prefix`'s component-wise comparison showed in warm
/// rebuilds.
fn strip_root<'a>(root: &Path, path: &'a Path) -> Option<&'a Path> {
    let (root, path) = (root.to_str()?, path.to_str()?);
    let rest = path.strip_prefix(root)?;
    let rest = if root.ends_with('/') || rest.is_empty() { rest } else { rest.strip_prefix('/')? };
    Some(Path::new(rest))
}

/// `abs` relative to `root`, as a checked `/`-separated path.
fn relative_path(root: &Path, abs: &Path) -> Result<String, SourceError> {
    let rel = strip_root(root, abs)
        .or_else(|| abs.strip_prefix(root).ok())
        .ok_or(())
        .map_err(|_| SourceError::InvalidPath { path: abs.display().to_string(), reason: "outside the source root" })?;
    let text = rel.to_str().ok_or_else(|| SourceError::InvalidPath {
        path: rel.to_string_lossy().into_owned(),
        reason: "not valid UTF-8",
    })?;
    normalize_path(text)
}

/// Resolve a symlink found in the walk: `Some(target)` for a file inside the root,
/// `None` for a directory inside the root, an error when it leaves the root or dangles.
fn resolve_symlink(root: &Path, link: &Path, rel: &str) -> Result<Option<PathBuf>, SourceError> {
    let target = link.canonicalize().map_err(|_| SourceError::SymlinkEscape { path: rel.to_string() })?;
    if !target.starts_with(root) {
        return Err(SourceError::SymlinkEscape { path: rel.to_string() });
    }
    Ok(target.is_file().then_some(target))
}

/// Check a relative path and return its normal form (no leading `./`).
pub fn normalize_path(path: &str) -> Result<String, SourceError> {
    let invalid = |reason| SourceError::InvalidPath { path: path.to_string(), reason };
    if path.is_empty() {
        return Err(invalid("empty path"));
    }
    if path.len() > 4096 {
        return Err(invalid("longer than 4096 bytes"));
    }
    if path.chars().any(|c| c == '\0') {
        return Err(invalid("contains a NUL character"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(invalid("contains a control character"));
    }
    if path.contains('\\') {
        return Err(invalid("contains a backslash; use '/' as the separator"));
    }
    if path.starts_with('/') {
        return Err(invalid("absolute path"));
    }
    let bytes = path.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(invalid("drive path"));
    }
    let trimmed = path.trim_start_matches("./");
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" => return Err(invalid("empty path component")),
            "." => return Err(invalid("'.' component")),
            ".." => return Err(invalid("'..' component")),
            _ => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

mod archive;
mod hash;

pub use archive::{files_from_tar, files_from_zip};
use hash::*;
pub use hash::{SCRIPT_EXTENSIONS, is_script};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ErrorCode;
    use std::fs::File;

    fn limits() -> LimitsConfig {
        LimitsConfig::default()
    }

    #[test]
    fn held_scripts_share_one_budget_given_back_when_they_go() {
        static BUDGET: HeldBudget = HeldBudget::new(100);
        let first = BUDGET.take(60).expect("fits");
        assert!(BUDGET.take(50).is_none(), "past the limit");
        let second = BUDGET.take(40).expect("fits exactly");
        assert_eq!(BUDGET.used(), 100);
        drop(first);
        assert_eq!(BUDGET.used(), 40);
        assert!(BUDGET.take(60).is_some(), "given back");
        drop(second);
        assert_eq!(BUDGET.used(), 0);
    }

    #[test]
    fn a_snapshot_gives_back_what_it_held() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.js"), "export const a = 1;\n".repeat(1000)).unwrap();
        let spec = SourceSpec::Directory(dir.path().to_path_buf());
        let tree = SourceTree::intake(&spec, &limits(), &SourceConfig::default(), None).unwrap();
        let file = tree.get("main.js").unwrap();
        let Content::Held { _share: held, .. } = &file.content else { panic!("a script is held") };
        // Other tests take from the same budget meanwhile: only this file's share is checked.
        let weak = std::sync::Arc::downgrade(held);
        assert_eq!(held.bytes, 20_000);
        drop(tree);
        assert!(weak.upgrade().is_none(), "its share is given back with the snapshot");
    }

    #[test]
    fn hostile_paths_are_rejected() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a\0b", "C:/x", "c:x", "a\\..\\b", "a//b", "a/./b", "", ".."] {
            let err = normalize_path(bad).unwrap_err();
            assert_eq!(err.code(), "source_path_invalid", "{bad:?}");
        }
        assert_eq!(normalize_path("./src/main.js").unwrap(), "src/main.js");
        assert_eq!(normalize_path(".well-known/x..y").unwrap(), ".well-known/x..y");
    }

    #[test]
    fn memory_intake_checks_limits_and_duplicates() {
        let files =
            vec![("a.txt".to_string(), Bytes::from_static(b"x")), ("./a.txt".to_string(), Bytes::from_static(b"y"))];
        assert_eq!(SourceTree::from_memory(files, &limits()).unwrap_err().code(), "source_duplicate_path");

        let small = LimitsConfig { max_file_bytes: 3, ..limits() };
        let files = vec![("big".to_string(), Bytes::from_static(b"four"))];
        assert_eq!(SourceTree::from_memory(files, &small).unwrap_err().code(), "source_file_too_large");

        let few = LimitsConfig { max_source_files: 2, ..limits() };
        let files = (0..3).map(|i| (format!("f{i}"), Bytes::new()));
        assert_eq!(SourceTree::from_memory(files, &few).unwrap_err().code(), "source_too_many_files");
    }

    #[test]
    fn directory_snapshot_leaves_out_ignored_and_excluded_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, body) in [
            ("index.html", "<h1>hi</h1>"),
            ("css/site.css", "body{}"),
            ("node_modules/x/index.js", "x"),
            ("dist/old.js", "x"),
            ("sub/dist/kept.js", "x"),
            ("secret.env", "x"),
            (".gitignore", "*.env\n"),
        ] {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "ref").unwrap();
        let tree = SourceTree::from_dir(root, &limits(), &SourceConfig::default()).unwrap();
        let paths: Vec<_> = tree.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, vec![".gitignore", "css/site.css", "index.html", "sub/dist/kept.js"]);
        assert_eq!(tree.get("index.html").unwrap().digest, Digest::of(b"<h1>hi</h1>"));
    }

    #[test]
    fn symlinks_leaving_the_root_are_rejected() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.txt"), dir.path().join("inside")).unwrap();
        let tree = SourceTree::from_dir(dir.path(), &limits(), &SourceConfig::default()).unwrap();
        assert_eq!(tree.get("inside").unwrap().digest, Digest::of(b"a"));

        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("escape")).unwrap();
        let err = SourceTree::from_dir(dir.path(), &limits(), &SourceConfig::default()).unwrap_err();
        assert_eq!(err.code(), "source_symlink_escape");
    }

    #[test]
    fn remembered_digests_follow_file_changes() {
        let state = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "one").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        File::options().write(true).open(&file).unwrap().set_modified(old).unwrap();
        let spec = SourceSpec::Directory(dir.path().into());
        let snap = || SourceTree::intake(&spec, &limits(), &SourceConfig::default(), Some(state.path())).unwrap();
        assert_eq!(snap().get("a.txt").unwrap().digest, Digest::of(b"one"));
        assert_eq!(snap().get("a.txt").unwrap().digest, Digest::of(b"one"), "from the stat cache");
        std::fs::write(&file, "two").unwrap();
        assert_eq!(snap().get("a.txt").unwrap().digest, Digest::of(b"two"));
    }

    #[test]
    fn a_big_tree_hashed_while_it_is_walked_is_the_same_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let n = PARALLEL_STAT_MIN + 300;
        let mut expected = Vec::new();
        for i in 0..n {
            let rel = format!("d{}/f{i}.js", i % 37);
            let body = format!("export const v{i} = {};\n", i * 7).repeat(1 + i % 5);
            std::fs::create_dir_all(dir.path().join(format!("d{}", i % 37))).unwrap();
            std::fs::write(dir.path().join(&rel), &body).unwrap();
            expected.push((rel, Digest::of(body.as_bytes())));
        }
        expected.sort();
        let state = tempfile::tempdir().unwrap();
        let intake = || {
            let spec = SourceSpec::Directory(dir.path().to_path_buf());
            SourceTree::intake(&spec, &limits(), &SourceConfig::default(), Some(state.path())).unwrap()
        };
        for tree in [SourceTree::from_dir(dir.path(), &limits(), &SourceConfig::default()).unwrap(), intake(), intake()]
        {
            let got: Vec<(String, Digest)> = tree.files().iter().map(|f| (f.path.clone(), f.digest)).collect();
            assert_eq!(got, expected);
        }

        // Limits in a big tree name the same file on every run: the first in path order.
        std::fs::write(dir.path().join("d3/zz-big.js"), vec![b'x'; 5000]).unwrap();
        std::fs::write(dir.path().join("d1/zz-big.js"), vec![b'x'; 5000]).unwrap();
        let tight = LimitsConfig { max_file_bytes: 4096, ..limits() };
        for _ in 0..3 {
            match SourceTree::from_dir(dir.path(), &tight, &SourceConfig::default()) {
                Err(SourceError::FileTooLarge { path, .. }) => assert_eq!(path, "d1/zz-big.js"),
                other => panic!("expected FileTooLarge, got {other:?}"),
            }
        }
        let total: u64 = expected.iter().map(|(p, _)| std::fs::metadata(dir.path().join(p)).unwrap().len()).sum();
        let small = LimitsConfig { max_source_bytes: total / 2, ..limits() };
        assert!(matches!(
            SourceTree::from_dir(dir.path(), &small, &SourceConfig::default()),
            Err(SourceError::TooLarge { .. })
        ));
    }

    #[test]
    fn large_files_hash_like_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; (MMAP_THRESHOLD as usize) * 3 + 5];
        std::fs::write(dir.path().join("big.bin"), &big).unwrap();
        let tree = SourceTree::from_dir(dir.path(), &limits(), &SourceConfig::default()).unwrap();
        assert_eq!(tree.get("big.bin").unwrap().digest, Digest::of(&big));
        assert_eq!(tree.total_bytes(), big.len() as u64);
    }
}
