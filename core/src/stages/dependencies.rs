//! The `dependencies` stage: the builder resolves dependency versions (they go into the key).

use async_trait::async_trait;

use crate::context::{BuildContext, Flow, Stage};
use crate::error::Result;

/// Resolves dependency versions (they go into the cache key; installing happens on a miss).
pub struct DependenciesStage;

#[async_trait]
impl Stage for DependenciesStage {
    fn name(&self) -> &str {
        "dependencies"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let builder = ctx.platform()?;
        ctx.dependencies = builder.resolve_dependencies(ctx).await?;
        Ok(Flow::Continue)
    }
}
