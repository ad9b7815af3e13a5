//! A directory that later builds can reuse (`node_modules`, a pub cache), kept in the
//! content store under a key: files and symlinks hashed in parallel on the way in, every
//! path and link target checked on the way back.

use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;

use crate::cache::{ArtifactFile, BlobRestore, BlobSource, CacheBackend, CacheEntry, CacheKey};
use crate::digest::Digest;
use crate::error::{DependencyError, Error, Result};

/// Content type that marks a symlink in a stored directory (the blob is its target).
const SYMLINK: &str = "inode/symlink";

/// Content type that marks an executable file (`node_modules/vite/bin/vite.js`, which
/// `.bin/vite` links to): restored with its execute bits, or `npm run build` cannot run it.
const EXECUTABLE: &str = "application/x-executable";

/// Every file and symlink under `root`, hashed in parallel (symlinks by their target).
fn snapshot(root: &Path) -> std::io::Result<Vec<(ArtifactFile, PathBuf)>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_symlink() {
                found.push((entry.path(), true, false));
            } else if kind.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let executable = entry.metadata()?.permissions().mode() & 0o111 != 0;
                found.push((entry.path(), false, executable));
            }
        }
    }
    found
        .into_par_iter()
        .map(|(path, is_link, executable)| {
            let rel = path.strip_prefix(root).map_err(std::io::Error::other)?;
            let rel = rel.to_str().ok_or_else(|| std::io::Error::other("non-UTF-8 file name"))?.to_string();
            let (bytes, content_type) = if is_link {
                let target = std::fs::read_link(&path)?;
                (target.to_string_lossy().into_owned().into_bytes(), SYMLINK.to_string())
            } else if executable {
                (std::fs::read(&path)?, EXECUTABLE.to_string())
            } else {
                (std::fs::read(&path)?, crate::output::content_type(&rel))
            };
            let file = ArtifactFile { path: rel, size: bytes.len() as u64, blake3: Digest::of(&bytes), content_type };
            Ok((file, path))
        })
        .collect()
}

/// Store `root` under `key` (`label` names it in cache listings; `tool` in errors).
pub async fn store(
    cache: &dyn CacheBackend,
    key: &CacheKey,
    label: &str,
    build_id: &str,
    root: &Path,
    tool: &'static str,
) -> Result<()> {
    let dir = root.to_path_buf();
    let files = tokio::task::spawn_blocking(move || snapshot(&dir))
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| DependencyError::InstallFailed { tool, detail: format!("reading {}: {e}", root.display()) })?;
    let mut blobs = Vec::new();
    for (file, path) in &files {
        if file.content_type == SYMLINK {
            let target = std::fs::read_link(path).unwrap_or_default();
            cache.put_blob(&file.blake3, bytes::Bytes::from(target.to_string_lossy().into_owned())).await?;
        } else {
            blobs.push(BlobSource { digest: file.blake3, path: path.clone() });
        }
    }
    cache.store_blobs(&blobs).await?;
    let entry = CacheEntry {
        key: *key,
        label: label.to_string(),
        created_at: crate::cache::unix_now(),
        build_id: build_id.to_string(),
        artifact_type: label.rsplit('/').next().unwrap_or(label).to_string(),
        entry_point: None,
        files: files.into_iter().map(|(f, _)| f).collect(),
    };
    cache.put_entry(&entry, None).await?;
    Ok(())
}

/// Restore what is stored under `key` into `root`; symlinks may only point inside `confine`.
/// `Ok(false)` on a miss or an entry that cannot be used (then removed).
pub async fn restore(
    cache: &dyn CacheBackend,
    key: &CacheKey,
    root: &Path,
    confine: &Path,
    tool: &'static str,
) -> Result<bool> {
    let Ok(Some(hit)) = cache.get_entry(key).await else { return Ok(false) };
    let mut wanted = Vec::with_capacity(hit.entry.files.len());
    for f in &hit.entry.files {
        // Stored paths are ours, but a cache is an input: never write outside the root.
        let rel = Path::new(&f.path);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            let _ = cache.remove_entry(key).await;
            return Ok(false);
        }
        wanted.push(BlobRestore { digest: f.blake3, dest: root.join(rel) });
    }
    let report = cache.restore_blobs(&wanted).await?;
    if !report.unavailable.is_empty() {
        let _ = cache.remove_entry(key).await;
        let _ = std::fs::remove_dir_all(root);
        return Ok(false);
    }
    // Before links are made of the files that hold their targets: backfill reads the files now.
    let restored: Vec<BlobSource> = wanted.into_iter().map(|w| BlobSource { digest: w.digest, path: w.dest }).collect();
    cache.backfill(&hit, &restored).await;
    for f in hit.entry.files.iter().filter(|f| f.content_type == EXECUTABLE) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join(&f.path), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| DependencyError::InstallFailed { tool, detail: format!("restoring {}: {e}", f.path) })?;
    }
    for f in hit.entry.files.iter().filter(|f| f.content_type == SYMLINK) {
        let link = root.join(&f.path);
        let target = std::fs::read_to_string(&link).unwrap_or_default();
        let resolved = crate::files::normalize(&link.parent().unwrap_or(root).join(&target));
        if !resolved.starts_with(confine) {
            let _ = cache.remove_entry(key).await;
            let _ = std::fs::remove_dir_all(root);
            return Ok(false);
        }
        std::fs::remove_file(&link)
            .and_then(|_| std::os::unix::fs::symlink(&target, &link))
            .map_err(|e| DependencyError::InstallFailed { tool, detail: format!("restoring a link: {e}") })?;
    }
    Ok(true)
}
