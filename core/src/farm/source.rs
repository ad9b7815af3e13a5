//! Sources that travel: a submitter puts the snapshot's blobs (those the content store lacks)
//! and a manifest (path → digest) in the content store; a worker materialises the manifest
//! into a directory of its own, every file verified against its digest.

use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cache::{BlobRestore, BlobSource, CacheBackend};
use crate::config::LimitsConfig;
use crate::digest::Digest;
use crate::error::FarmError;
use crate::source::SourceTree;

/// The files of a source snapshot, stored as a blob of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceManifest {
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub size: u64,
    pub blake3: Digest,
}

fn store_failed(e: impl std::fmt::Display) -> FarmError {
    FarmError::Unavailable { op: "upload the sources", message: e.to_string() }
}

/// Put `tree` in the content store; returns the manifest's digest. The manifest is stored
/// after every blob it names, so a manifest already there means its blobs are too: a snapshot
/// submitted before (the usual resubmission) costs one read, not one request per file.
pub async fn upload_source(tree: &SourceTree, store: &dyn CacheBackend) -> Result<Digest, FarmError> {
    let manifest = SourceManifest {
        files: tree
            .files()
            .iter()
            .map(|f| ManifestFile { path: f.path.clone(), size: f.size, blake3: f.digest })
            .collect(),
    };
    let json = Bytes::from(serde_json::to_vec(&manifest).map_err(store_failed)?);
    let digest = Digest::of(&json);
    if matches!(store.get_blob(&digest).await, Ok(Some(_))) {
        return Ok(digest);
    }
    match tree.root() {
        Some(root) => {
            let files: Vec<BlobSource> =
                tree.files().iter().map(|f| BlobSource { digest: f.digest, path: root.join(&f.path) }).collect();
            store.store_blobs(&files).await.map_err(store_failed)?;
        }
        None => {
            for file in tree.files() {
                let bytes = file.read().map_err(store_failed)?;
                store.put_blob(&file.digest, bytes).await.map_err(store_failed)?;
            }
        }
    }
    store.put_blob(&digest, json).await.map_err(store_failed)?;
    Ok(digest)
}

/// Write the sources `manifest` names into `dest` (a new directory this worker owns),
/// verified; the limits of this worker's config apply as to any source.
pub async fn materialize_source(
    id: &str,
    manifest_digest: &Digest,
    store: &dyn CacheBackend,
    dest: &Path,
    limits: &LimitsConfig,
) -> Result<(), FarmError> {
    let missing = |message: String| FarmError::SourceMissing { id: id.to_string(), message };
    let invalid = |message: String| FarmError::JobInvalid { id: id.to_string(), message };
    let bytes = store
        .get_blob(manifest_digest)
        .await
        .map_err(|e| FarmError::Unavailable { op: "read the sources", message: e.to_string() })?
        .ok_or_else(|| missing(format!("its source manifest {manifest_digest} is not in the content store")))?;
    let manifest: SourceManifest =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("its source manifest does not parse: {e}")))?;
    if manifest.files.len() as u64 > limits.max_source_files {
        return Err(invalid(format!("{} source files, more than limits.maxSourceFiles", manifest.files.len())));
    }
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    if total > limits.max_source_bytes {
        return Err(invalid(format!("{total} source bytes, more than limits.maxSourceBytes")));
    }
    let mut wanted = Vec::with_capacity(manifest.files.len());
    for file in &manifest.files {
        // A manifest is an input: its paths must stay inside `dest`.
        match crate::source::normalize_path(&file.path) {
            Ok(normal) if normal == file.path => {}
            _ => return Err(invalid(format!("its source manifest names the path {:?}", file.path))),
        }
        wanted.push(BlobRestore { digest: file.blake3, dest: dest.join(&file.path) });
    }
    std::fs::create_dir_all(dest)
        .map_err(|e| FarmError::Unavailable { op: "materialise the sources", message: e.to_string() })?;
    let report = store
        .restore_blobs(&wanted)
        .await
        .map_err(|e| FarmError::Unavailable { op: "read the sources", message: e.to_string() })?;
    if let Some(first) = report.unavailable.first() {
        // The manifest vouches for blobs that are gone: without it, the next submission of
        // these sources uploads them again.
        let _ = store.remove_blob(manifest_digest).await;
        let path = manifest.files.iter().find(|f| f.blake3 == *first).map(|f| f.path.as_str()).unwrap_or("?");
        return Err(missing(format!(
            "{} source file(s) are missing or corrupt in the content store (first: {path})",
            report.unavailable.len()
        )));
    }
    Ok(())
}
