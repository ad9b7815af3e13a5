//! The `deploy` stage: the release manifest, publishing, `latest`, retention.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::context::{BuildContext, Flow, Stage};
use crate::error::{Error, Result};
use crate::store::{MANIFEST_FILE, Manifest, ReleaseId};

/// Writes `manifest.json` and publishes the release in the artifact store.
pub struct DeployStage;

#[async_trait]
impl Stage for DeployStage {
    fn name(&self) -> &str {
        "deploy"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        if ctx.reused_release {
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
        std::fs::write(out.join(MANIFEST_FILE), json).map_err(|source| crate::store::StoreError::Io {
            op: "write",
            path: out.join(MANIFEST_FILE),
            source,
        })?;
        let id = ReleaseId { app: app.app_id(), version: app.version.clone(), build_id: ctx.build_id.clone() };
        let store = ctx.services.store.clone();
        let release = store.publish(&out, &id).await?;
        ctx.output_dir = Some(PathBuf::from(&release.location));
        ctx.release = Some(release);
        let retention = Duration::from_secs(ctx.config.build_system.artifact_retention);
        if let Err(e) = store.enforce_retention(&id.app, retention).await {
            ctx.warn("retention_failed", format!("removing old releases failed: {e}"));
        }
        Ok(Flow::Continue)
    }
}
