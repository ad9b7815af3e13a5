//! The staged pipeline: validate → dependencies → cache lookup (hit: restore) →
//! build → optimize → package → cache store → deploy (the stages are in `stages/`).
//!
//! Each [`Stage`] runs over a [`BuildContext`]. The pipeline times every stage,
//! emits stage events, checks cancellation between stages, retries a stage that
//! failed with a retryable error, and skips the stages that a cache hit makes
//! unnecessary. Status and notification (history record, `finished` event) are
//! done by the engine for every outcome, failures included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::{BuildContext, Flow, Stage};
use crate::error::Result;
use crate::events::{BuildEvent, StageOutcome};
use crate::stages::{
    BuildStage, CacheLookupStage, CacheStoreStage, DependenciesStage, DeployStage, OptimizeStage, PackageStage,
    ValidateStage,
};

/// An ordered list of stages.
#[derive(Clone)]
pub struct Pipeline {
    stages: Vec<Arc<dyn Stage>>,
}

impl Pipeline {
    /// The standard stages.
    pub fn standard() -> Pipeline {
        Pipeline {
            stages: vec![
                Arc::new(ValidateStage),
                Arc::new(DependenciesStage),
                Arc::new(CacheLookupStage),
                Arc::new(BuildStage),
                Arc::new(OptimizeStage),
                Arc::new(PackageStage),
                Arc::new(CacheStoreStage),
                Arc::new(DeployStage),
            ],
        }
    }

    /// Names of the stages in order.
    pub fn stage_names(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.name().to_string()).collect()
    }

    /// Insert `stage` after the stage named `after` (at the end if there is none).
    pub fn insert_after(&mut self, after: &str, stage: Arc<dyn Stage>) {
        let at = self.stages.iter().position(|s| s.name() == after).map_or(self.stages.len(), |i| i + 1);
        self.stages.insert(at, stage);
    }

    /// Replace the stage with the same name.
    pub fn replace(&mut self, stage: Arc<dyn Stage>) -> bool {
        match self.stages.iter_mut().find(|s| s.name() == stage.name()) {
            Some(slot) => {
                *slot = stage;
                true
            }
            None => false,
        }
    }

    /// Run the stages up to and including `last` (all when `None`).
    pub async fn run(&self, ctx: &mut BuildContext, last: Option<&str>) -> Result<()> {
        for stage in &self.stages {
            ctx.check_cancelled()?;
            if ctx.cache_hit.is_some() && !stage.runs_on_cache_hit() {
                ctx.events.emit(BuildEvent::StageFinished {
                    stage: stage.name().to_string(),
                    outcome: StageOutcome::Skipped,
                    seconds: 0.0,
                });
                continue;
            }
            let flow = self.run_stage(stage.as_ref(), ctx).await?;
            if flow == Flow::Finish || last == Some(stage.name()) {
                break;
            }
        }
        Ok(())
    }

    async fn run_stage(&self, stage: &dyn Stage, ctx: &mut BuildContext) -> Result<Flow> {
        let name = stage.name().to_string();
        let retries = ctx.config.build_system.retry_attempts;
        let backoff = ctx.config.build_system.retry_backoff;
        let mut attempt = 0;
        loop {
            ctx.events.emit(BuildEvent::StageStarted { stage: name.clone() });
            let started = Instant::now();
            crate::testing::panic_point(&name);
            let result = stage.run(ctx).await;
            let seconds = started.elapsed().as_secs_f64();
            ctx.timings.record(&name, seconds);
            let outcome = if result.is_ok() { StageOutcome::Succeeded } else { StageOutcome::Failed };
            ctx.events.emit(BuildEvent::StageFinished { stage: name.clone(), outcome, seconds });
            match result {
                Err(e) if e.is_retryable() && attempt < retries && !ctx.cancel.is_cancelled() => {
                    let delay = backoff * f64::from(2u32.saturating_pow(attempt));
                    attempt += 1;
                    ctx.events.emit(BuildEvent::Retrying {
                        stage: name.clone(),
                        attempt,
                        delay_seconds: delay,
                        error: e.report(),
                    });
                    tokio::time::sleep(Duration::from_secs_f64(delay.min(3600.0))).await;
                }
                other => return other,
            }
        }
    }
}
