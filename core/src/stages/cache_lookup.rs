//! The `cache` stage: the key from its components; on a hit, the verified artifacts restored (or the identical latest release reused).

use async_trait::async_trait;

use crate::cache::{BlobRestore, BlobSource, KeyComponents};
use crate::context::{BuildContext, Flow, Stage};
use crate::error::{Error, Result};
use crate::events::BuildEvent;

/// The normalised build configuration that goes into the cache key: the app config with
/// its defaults, and the engine settings that change outputs.
fn normalized_config(ctx: &BuildContext) -> Result<serde_json::Value> {
    let app = ctx.app()?;
    let platform = ctx.config.platforms.get(app.app_type);
    let to_value = |v: serde_json::Result<serde_json::Value>| v.map_err(|e| Error::internal(e.to_string()));
    Ok(serde_json::json!({
        "app": to_value(serde_json::to_value(app))?,
        "optimization": to_value(serde_json::to_value(&ctx.config.optimization))?,
        "platform": to_value(serde_json::to_value(platform))?,
    }))
}

/// Compute the cache key components of the context's build.
pub async fn key_components(ctx: &BuildContext) -> Result<KeyComponents> {
    let builder = ctx.platform()?;
    let app = ctx.app()?;
    let toolchain_env = ctx.toolchain_env();
    let env = ctx
        .config
        .cache
        .env_allow_list
        .iter()
        .map(String::as_str)
        .chain(toolchain_env)
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
        .collect();
    Ok(KeyComponents {
        engine_version: format!("{}+r{}", crate::VERSION, crate::OUTPUT_REVISION),
        app_type: app.app_type.to_string(),
        target: ctx.target()?.to_string(),
        toolchain: builder.toolchain(ctx).await?,
        config: normalized_config(ctx)?,
        dependencies: ctx.dependencies.clone(),
        env,
        files: ctx.source()?.files().iter().map(|f| (f.path.clone(), f.digest)).collect(),
    })
}

/// Computes the key and, on a hit, restores the artifacts (every blob verified).
pub struct CacheLookupStage;

#[async_trait]
impl Stage for CacheLookupStage {
    fn name(&self) -> &str {
        "cache"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let components = key_components(ctx).await?;
        let key = components.key();
        ctx.key = Some(key);
        ctx.components = Some(components);
        let store = ctx.services.store.clone();

        let cache = match (&ctx.services.cache, ctx.config.build_system.cache_enabled, ctx.request.force) {
            (Some(cache), true, false) => cache.clone(),
            _ => {
                ctx.events.emit(BuildEvent::CacheMiss { key: key.to_string() });
                return Ok(Flow::Continue);
            }
        };
        let hit = match cache.get_entry(&key).await {
            Ok(hit) => hit,
            Err(e) => {
                ctx.warn("cache_failed", format!("cache lookup failed, building without it: {e}"));
                None
            }
        };
        let Some(hit) = hit else {
            ctx.events.emit(BuildEvent::CacheMiss { key: key.to_string() });
            return Ok(Flow::Continue);
        };
        // The app's latest release may already be exactly this build: then nothing is copied.
        let app_id = ctx.app()?.app_id();
        match store.reuse(&app_id, &key.to_string(), &hit.entry.files).await {
            Ok(Some(release)) => {
                // A hit from a shared tier goes into this machine's tiers (the release holds
                // its blobs); one from this machine's own is where it should be already.
                if !crate::cache::is_local_tier(&hit.tier) {
                    let root = std::path::Path::new(&release.location);
                    let files: Vec<BlobSource> = hit
                        .entry
                        .files
                        .iter()
                        .map(|f| BlobSource { digest: f.blake3, path: root.join(&f.path) })
                        .collect();
                    cache.backfill(&hit, &files).await;
                }
                ctx.release = Some(release);
                ctx.reused_release = true;
                ctx.record_hit(hit);
                return Ok(Flow::Continue);
            }
            Ok(None) => {}
            Err(e) => ctx.warn("artifact_store_failed", format!("checking the latest release failed: {e}")),
        }
        let out = ctx.ensure_output_dir().await?;
        let wanted: Vec<BlobRestore> =
            hit.entry.files.iter().map(|f| BlobRestore { digest: f.blake3, dest: out.join(&f.path) }).collect();
        let unavailable = match cache.restore_blobs(&wanted).await {
            Ok(report) => report.unavailable.len(),
            Err(e) => {
                ctx.warn("cache_failed", format!("restoring from the cache failed, building instead: {e}"));
                wanted.len()
            }
        };
        if unavailable > 0 {
            ctx.warn(
                "cache_entry_incomplete",
                format!("cache entry {key} had {unavailable} missing or corrupt blob(s): evicted, building instead"),
            );
            if let Err(e) = cache.remove_entry(&key).await {
                ctx.warn("cache_failed", format!("evicting the incomplete entry failed: {e}"));
            }
            // Start the output afresh: a partial restore must not leak into the build.
            store.discard(&out).await?;
            ctx.output_dir = None;
            ctx.events.emit(BuildEvent::CacheMiss { key: key.to_string() });
            return Ok(Flow::Continue);
        }
        let restored: Vec<BlobSource> =
            wanted.into_iter().map(|w| BlobSource { digest: w.digest, path: w.dest }).collect();
        cache.backfill(&hit, &restored).await;
        ctx.record_hit(hit);
        Ok(Flow::Continue)
    }
}
