//! The `build` stage: `preBuild` hooks, the platform build, `postBuild` hooks.

use async_trait::async_trait;

use crate::context::{BuildContext, Flow, Stage};
use crate::error::Result;
use crate::process::CommandSpec;

/// Runs the preBuild hooks, the platform build, then the postBuild hooks.
pub struct BuildStage;

impl BuildStage {
    async fn run_hooks(ctx: &mut BuildContext, which: &str, hooks: &[String]) -> Result<()> {
        if hooks.is_empty() {
            return Ok(());
        }
        let dir = ctx.build_dir().await?;
        let runner = ctx.runner(&dir);
        for hook in hooks {
            tracing::info!(build_id = %ctx.build_id, hook = %hook, "running {which} hook");
            let spec = CommandSpec::from_command_line(hook, &dir)?;
            runner.run(&spec).await?;
            ctx.check_cancelled()?;
        }
        Ok(())
    }
}

#[async_trait]
impl Stage for BuildStage {
    fn name(&self) -> &str {
        "build"
    }

    fn runs_on_cache_hit(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        ctx.ensure_output_dir().await?;
        let hooks = ctx.app()?.hooks.clone();
        Self::run_hooks(ctx, "preBuild", &hooks.pre_build).await?;
        let builder = ctx.platform()?;
        let output = builder.build(ctx).await?;
        ctx.entry_point = output.entry_point;
        ctx.artifact_type = Some(builder.artifact_type(ctx.target()?));
        Self::run_hooks(ctx, "postBuild", &hooks.post_build).await?;
        Ok(Flow::Continue)
    }
}
