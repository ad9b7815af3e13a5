//! The `cache_store` stage: blobs first, then the entry that names them.

use async_trait::async_trait;

use crate::cache::{BlobSource, CacheEntry};
use crate::context::{BuildContext, Flow, Stage};
use crate::error::{Error, Result};

/// Stores the outputs in the cache: blobs first, then the entry that refers to them.
pub struct CacheStoreStage;

#[async_trait]
impl Stage for CacheStoreStage {
    fn name(&self) -> &str {
        "cache_store"
    }

    fn runs_on_cache_hit(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let Some(cache) = ctx.services.cache.clone().filter(|_| ctx.config.build_system.cache_enabled) else {
            return Ok(Flow::Continue);
        };
        let key = ctx.key.ok_or_else(|| Error::internal("no cache key before cache_store"))?;
        ctx.check_fence().await?;
        let out = ctx.output_dir()?.to_path_buf();
        let app = ctx.app()?;
        let entry = CacheEntry {
            key,
            label: format!("{}/{}", app.app_id(), ctx.target()?),
            created_at: crate::cache::unix_now(),
            build_id: ctx.build_id.clone(),
            artifact_type: ctx.artifact_type.clone().unwrap_or_default(),
            entry_point: ctx.entry_point.clone(),
            files: ctx.files.clone(),
        };
        let blobs: Vec<BlobSource> =
            ctx.files.iter().map(|f| BlobSource { digest: f.blake3, path: out.join(&f.path) }).collect();
        let stored = match cache.store_blobs(&blobs).await {
            Ok(()) => cache.put_entry(&entry, ctx.components.as_ref()).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            ctx.warn("cache_failed", format!("storing the build in the cache failed: {e}"));
        }
        Ok(Flow::Continue)
    }
}
