//! The `deploy` stage: the release manifest, publishing (the configured destinations, then the
//! artifacts directory), `latest`, retention.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;

use crate::context::{BuildContext, Flow, Stage};
use crate::error::{Error, Result};
use crate::result::Deployment;
use crate::store::{Destination, LatestPointer, MANIFEST_FILE, Manifest, ReleaseId, StoreError};

/// Writes `manifest.json` and publishes the release to every destination and the artifact store.
pub struct DeployStage;

#[async_trait]
impl Stage for DeployStage {
    fn name(&self) -> &str {
        "deploy"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let retention = Duration::from_secs(ctx.config.build_system.artifact_retention);
        ctx.check_fence().await?;
        if ctx.reused_release {
            // This machine's latest release is this build already; a destination may still
            // lack it (a backup that failed, another machine's release published since).
            if let Some(release) = ctx.release.clone()
                && !ctx.services.destinations.is_empty()
            {
                let dir = PathBuf::from(&release.location);
                let manifest = read_manifest(&dir)?;
                send(ctx, &dir, &manifest, &release.id, retention).await?;
            }
            return Ok(Flow::Continue);
        }
        let app = ctx.app()?.clone();
        let out = ctx.output_dir()?.to_path_buf();
        let manifest = Manifest {
            name: app.name.clone(),
            version: app.version.clone(),
            build_id: ctx.build_id.clone(),
            target: ctx.target()?.to_string(),
            build_time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            build_size: ctx.files.iter().map(|f| f.size).sum(),
            entry_point: ctx.entry_point.clone(),
            artifact_type: ctx.artifact_type.clone().unwrap_or_default(),
            cache_key: ctx.key.map(|k| k.to_string()).unwrap_or_default(),
            files: ctx.files.clone(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::internal(e.to_string()))?;
        std::fs::write(out.join(MANIFEST_FILE), json).map_err(|source| StoreError::Io {
            op: "write",
            path: out.join(MANIFEST_FILE),
            source,
        })?;
        let id = ReleaseId { app: app.app_id(), version: app.version.clone(), build_id: ctx.build_id.clone() };
        // The destinations first: when one that is not a backup fails, nothing moves here either.
        send(ctx, &out, &manifest, &id, retention).await?;
        let store = ctx.services.store.clone();
        let release = store.publish(&out, &id).await?;
        ctx.output_dir = Some(PathBuf::from(&release.location));
        ctx.release = Some(release);
        if let Err(e) = store.enforce_retention(&id.app, retention).await {
            ctx.warn("retention_failed", format!("removing old releases failed: {e}"));
        }
        Ok(Flow::Continue)
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|source| StoreError::Io { op: "read", path: path.clone(), source })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::internal(format!("the release's {} cannot be read: {e}", path.display())))
}

/// What one destination did with the release.
enum Sent {
    /// It already served these very files (a release of the same build, from here or elsewhere).
    Serves(String),
    Uploaded,
}

/// Publish the release in `dir` to every configured destination: all files everywhere first,
/// then each destination's pointer. A destination that is not a backup and fails fails the
/// build (`deploy_failed`) before any pointer moves; a backup that fails is a warning.
async fn send(
    ctx: &mut BuildContext,
    dir: &Path,
    manifest: &Manifest,
    id: &ReleaseId,
    retention: Duration,
) -> Result<()> {
    let destinations: Arc<[Arc<Destination>]> = ctx.services.destinations.clone();
    if destinations.is_empty() {
        return Ok(());
    }
    // A multi-target app has a pointer per target.
    let target = (ctx.app()?.build_targets.len() > 1).then(|| manifest.target.clone());
    let target = target.as_deref();
    let release_rel = format!("{}/{}/{}", id.app, id.version, id.build_id);
    let files_digest = LatestPointer::files_digest(&manifest.files);
    let same = |p: &LatestPointer| {
        !manifest.cache_key.is_empty() && p.cache_key == manifest.cache_key && p.files_digest == files_digest
    };

    let uploads = join_all(destinations.iter().map(|d| async {
        match d.current(&id.app, target).await? {
            Some(current) if same(&current) => Ok(Sent::Serves(current.url)),
            _ => d.upload(dir, manifest, &release_rel).await.map(|_| Sent::Uploaded),
        }
    }))
    .await;
    let uploads = settle(ctx, &destinations, uploads)?;

    let published_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let pointer_of = |d: &Destination| LatestPointer {
        app: id.app.clone(),
        version: id.version.clone(),
        build_id: id.build_id.clone(),
        target: manifest.target.clone(),
        path: release_rel.clone(),
        url: d.url_of(&release_rel),
        cache_key: manifest.cache_key.clone(),
        files_digest,
        published_at: published_at.clone(),
    };
    let moved = join_all(uploads.iter().map(|(d, sent)| async {
        match sent {
            Sent::Serves(url) => Ok(url.clone()),
            Sent::Uploaded => {
                let pointer = pointer_of(d);
                d.point(&pointer, target).await.map(|()| pointer.url)
            }
        }
    }))
    .await;
    let destinations: Vec<Arc<Destination>> = uploads.iter().map(|(d, _)| d.clone()).collect();
    let urls = settle(ctx, &destinations, moved)?;

    let fresh: Vec<&Arc<Destination>> =
        uploads.iter().filter(|(_, sent)| matches!(sent, Sent::Uploaded)).map(|(d, _)| d).collect();
    let pruned = join_all(fresh.iter().map(|d| d.enforce_retention(&id.app, retention))).await;
    for (d, outcome) in fresh.iter().zip(pruned) {
        if let Err(e) = outcome {
            ctx.warn("retention_failed", format!("removing old releases from {} failed: {e}", d.name));
        }
    }
    ctx.deployments = urls.into_iter().map(|(d, url)| Deployment { destination: d.name.clone(), url }).collect();
    Ok(())
}

/// The destinations that succeeded, with what they returned; a failed backup becomes a
/// warning, any other failure the build's error.
fn settle<T>(
    ctx: &mut BuildContext,
    destinations: &[Arc<Destination>],
    outcomes: Vec<std::result::Result<T, StoreError>>,
) -> Result<Vec<(Arc<Destination>, T)>> {
    let mut done = Vec::new();
    let mut failure = None;
    for (d, outcome) in destinations.iter().zip(outcomes) {
        match outcome {
            Ok(value) => done.push((d.clone(), value)),
            Err(e) if d.backup => {
                ctx.warn("backup_deploy_failed", format!("{e} (the build's release is not in this backup)"))
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(done),
    }
}
