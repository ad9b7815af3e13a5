//! The `optimize` stage: the builder's own optimisation, then precompressed variants.

use async_trait::async_trait;

use crate::context::{BuildContext, Flow, Stage};
use crate::error::{BuildError, Error, Result};

/// The builder's own optimisation, then precompressed variants per `optimization.compression`.
pub struct OptimizeStage;

#[async_trait]
impl Stage for OptimizeStage {
    fn name(&self) -> &str {
        "optimize"
    }

    fn runs_on_cache_hit(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let builder = ctx.platform()?;
        builder.optimize(ctx).await?;
        let compression = ctx.config.optimization.compression;
        let out = ctx.output_dir()?.to_path_buf();
        tokio::task::spawn_blocking(move || crate::output::precompress(&out, compression))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(BuildError::io("precompressing the output"))?;
        Ok(Flow::Continue)
    }
}
