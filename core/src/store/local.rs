//! Releases as directories under a root on this machine (the default artifact store).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{ArtifactStore, MANIFEST_FILE, Manifest, Release, ReleaseId, StoreError, check_component};
use crate::cache::ArtifactFile;
use crate::digest::Digest;
use crate::statcache::StatCache;

/// Releases as directories under a root on this machine.
#[derive(Debug, Clone)]
pub struct LocalArtifactStore {
    root: PathBuf,
}

impl LocalArtifactStore {
    pub fn open(root: &Path) -> Result<LocalArtifactStore, StoreError> {
        let staging = root.join(".staging");
        std::fs::create_dir_all(&staging).map_err(StoreError::io("create", &staging))?;
        Ok(LocalArtifactStore { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn release_dir(&self, id: &ReleaseId) -> Result<PathBuf, StoreError> {
        for (what, value) in [("app", &id.app), ("version", &id.version), ("build id", &id.build_id)] {
            check_component(what, value)?;
        }
        Ok(self.root.join(&id.app).join(&id.version).join(&id.build_id))
    }
}

#[async_trait]
impl ArtifactStore for LocalArtifactStore {
    fn name(&self) -> &str {
        "local"
    }

    async fn stage(&self, build_id: &str) -> Result<PathBuf, StoreError> {
        check_component("build id", build_id)?;
        let dir = self.root.join(".staging").join(build_id);
        std::fs::create_dir_all(&dir).map_err(StoreError::io("create", &dir))?;
        Ok(dir)
    }

    async fn publish(&self, staged: &Path, id: &ReleaseId) -> Result<Release, StoreError> {
        let dest = self.release_dir(id)?;
        let parent = dest.parent().expect("release dirs have a version dir");
        std::fs::create_dir_all(parent).map_err(StoreError::io("create", parent))?;
        std::fs::rename(staged, &dest).map_err(StoreError::io("publish", &dest))?;
        // Stamp the release with its publication time: retention counts from here.
        if let Ok(dir) = std::fs::File::open(&dest) {
            let _ = dir.set_modified(SystemTime::now());
        }

        // Point `latest` at it: a new symlink renamed over the old one, so readers never see none.
        let app_dir = self.root.join(&id.app);
        let link = app_dir.join("latest");
        let tmp = app_dir.join(format!(".latest-{}", id.build_id));
        let _ = std::fs::remove_file(&tmp);
        let target = Path::new(&id.version).join(&id.build_id);
        std::os::unix::fs::symlink(&target, &tmp).map_err(StoreError::io("link", &tmp))?;
        std::fs::rename(&tmp, &link).map_err(StoreError::io("link", &link))?;
        Ok(Release { id: id.clone(), location: dest.display().to_string() })
    }

    async fn discard(&self, staged: &Path) -> Result<(), StoreError> {
        if !staged.starts_with(self.root.join(".staging")) {
            return Ok(());
        }
        match std::fs::remove_dir_all(staged) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", staged)(e)),
        }
    }

    async fn latest(&self, app: &str) -> Result<Option<Release>, StoreError> {
        check_component("app", app)?;
        let link = self.root.join(app).join("latest");
        let target = match std::fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", &link)(e)),
        };
        let mut parts = target.iter().filter_map(|p| p.to_str());
        let (Some(version), Some(build_id)) = (parts.next(), parts.next()) else { return Ok(None) };
        let id = ReleaseId { app: app.to_string(), version: version.to_string(), build_id: build_id.to_string() };
        let location = self.release_dir(&id)?.display().to_string();
        Ok(Some(Release { id, location }))
    }

    async fn enforce_retention(&self, app: &str, retention: Duration) -> Result<u64, StoreError> {
        let latest = self.latest(app).await?.map(|r| PathBuf::from(r.location));
        let app_dir = self.root.join(app);
        let now = SystemTime::now();
        let mut removed = 0;
        for version in list_dirs(&app_dir)? {
            for release in list_dirs(&version)? {
                if Some(&release) == latest.as_ref() {
                    continue;
                }
                let age = std::fs::metadata(&release)
                    .and_then(|m| m.modified())
                    .map(|t| now.duration_since(t).unwrap_or_default())
                    .unwrap_or_default();
                if age > retention && std::fs::remove_dir_all(&release).is_ok() {
                    removed += 1;
                }
            }
            // An emptied version directory goes too (fails harmlessly when not empty).
            let _ = std::fs::remove_dir(&version);
        }
        Ok(removed)
    }

    async fn reuse(&self, app: &str, cache_key: &str, files: &[ArtifactFile]) -> Result<Option<Release>, StoreError> {
        let Some(release) = self.latest(app).await? else { return Ok(None) };
        let root = PathBuf::from(&release.location);
        let Ok(bytes) = std::fs::read(root.join(MANIFEST_FILE)) else { return Ok(None) };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) else { return Ok(None) };
        if manifest.cache_key != cache_key || manifest.files != files {
            return Ok(None);
        }
        let files = files.to_vec();
        let stat_dir = self.root.join(".stat");
        let intact = tokio::task::spawn_blocking(move || files_intact(&root, &files, &stat_dir)).await.unwrap_or(false);
        Ok(intact.then_some(release))
    }
}

/// Whether every file under `root` matches its size and hash. Files whose stat is
/// unchanged since they were last verified are not read again (see [`StatCache`]).
fn files_intact(root: &Path, files: &[ArtifactFile], stat_dir: &Path) -> bool {
    use rayon::prelude::*;
    let mut stat_cache = StatCache::load(stat_dir, root);
    let metas: Option<Vec<std::fs::Metadata>> = files
        .iter()
        .map(|f| std::fs::symlink_metadata(root.join(&f.path)).ok().filter(|m| m.is_file() && m.len() == f.size))
        .collect();
    let Some(metas) = metas else { return false };
    // Only files whose stat moved are read; on every core when there are several (a warm
    // rebuild reads none, and starting the pool for it would cost more than the stats).
    let to_read: Vec<&ArtifactFile> = files
        .iter()
        .zip(&metas)
        .filter(|(f, meta)| stat_cache.lookup(&f.path, meta) != Some(f.blake3))
        .map(|(f, _)| f)
        .collect();
    let unchanged = |f: &&ArtifactFile| std::fs::read(root.join(&f.path)).is_ok_and(|b| Digest::of(&b) == f.blake3);
    let intact = if to_read.len() < 2 { to_read.iter().all(unchanged) } else { to_read.par_iter().all(unchanged) };
    if !intact {
        return false;
    }
    for (f, meta) in files.iter().zip(&metas) {
        stat_cache.record(&f.path, meta, f.blake3);
    }
    stat_cache.save();
    true
}

fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("list", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ErrorCode;

    fn id(build: &str) -> ReleaseId {
        ReleaseId { app: "shop".into(), version: "1.0.0".into(), build_id: build.into() }
    }

    #[tokio::test]
    async fn publish_is_a_rename_and_moves_latest() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalArtifactStore::open(root.path()).unwrap();
        for build in ["b1", "b2"] {
            let staged = store.stage(build).await.unwrap();
            std::fs::write(staged.join("index.html"), build).unwrap();
            let release = store.publish(&staged, &id(build)).await.unwrap();
            assert!(!staged.exists());
            assert_eq!(std::fs::read_to_string(Path::new(&release.location).join("index.html")).unwrap(), build);
        }
        assert_eq!(store.latest("shop").await.unwrap().unwrap().id.build_id, "b2");
        assert_eq!(std::fs::read_to_string(root.path().join("shop/latest/index.html")).unwrap(), "b2");
    }

    #[tokio::test]
    async fn retention_keeps_the_latest_release() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalArtifactStore::open(root.path()).unwrap();
        for build in ["b1", "b2"] {
            let staged = store.stage(build).await.unwrap();
            store.publish(&staged, &id(build)).await.unwrap();
        }
        assert_eq!(store.enforce_retention("shop", Duration::ZERO).await.unwrap(), 1);
        assert!(!root.path().join("shop/1.0.0/b1").exists());
        assert!(root.path().join("shop/1.0.0/b2").exists());
    }

    #[tokio::test]
    async fn the_latest_release_is_reused_only_when_identical_and_intact() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalArtifactStore::open(root.path()).unwrap();
        let staged = store.stage("b1").await.unwrap();
        std::fs::write(staged.join("index.html"), "hello").unwrap();
        let files = vec![ArtifactFile {
            path: "index.html".into(),
            size: 5,
            blake3: Digest::of(b"hello"),
            content_type: "text/html".into(),
        }];
        let manifest = Manifest {
            name: "Shop".into(),
            version: "1.0.0".into(),
            build_id: "b1".into(),
            target: "web".into(),
            build_time: String::new(),
            build_size: 5,
            entry_point: None,
            artifact_type: "static-web".into(),
            cache_key: "k1".into(),
            files: files.clone(),
        };
        std::fs::write(staged.join(MANIFEST_FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
        let release = store.publish(&staged, &id("b1")).await.unwrap();
        assert_eq!(store.reuse("shop", "k1", &files).await.unwrap(), Some(release.clone()));
        assert_eq!(store.reuse("shop", "k2", &files).await.unwrap(), None, "another key");
        std::fs::write(Path::new(&release.location).join("index.html"), "HELLO").unwrap();
        assert_eq!(store.reuse("shop", "k1", &files).await.unwrap(), None, "tampered file");
    }

    #[tokio::test]
    async fn names_that_would_leave_the_root_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let store = LocalArtifactStore::open(root.path()).unwrap();
        assert!(store.stage("../x").await.is_err());
        let staged = store.stage("b1").await.unwrap();
        let bad = ReleaseId { app: "..".into(), version: "1".into(), build_id: "b1".into() };
        assert_eq!(store.publish(&staged, &bad).await.unwrap_err().code(), "artifact_name_invalid");
    }
}
