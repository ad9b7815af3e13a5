//! The `validate` stage: take in the source, read the app config, pick the builder and target, check the host, let the builder check the sources.

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{APP_CONFIG_FILE, AppConfig, ConfigError};
use crate::context::{BuildContext, Flow, Stage};
use crate::error::{BuildError, Error, Result};
use crate::source::SourceTree;

/// Takes in the source, reads the app config, picks the builder and the target,
/// checks host requirements and lets the builder validate the sources.
pub struct ValidateStage;

#[async_trait]
impl Stage for ValidateStage {
    fn name(&self) -> &str {
        "validate"
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let spec = ctx.request.source.clone();
        let config = ctx.config.clone();
        let stat_dir = ctx.services.state_dir.join("stat");
        let tree = tokio::task::spawn_blocking(move || {
            SourceTree::intake(&spec, &config.limits, &config.source, Some(&stat_dir))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
        let tree = Arc::new(tree);
        ctx.source = Some(tree.clone());

        let parsed = match &ctx.request.app_config {
            Some(value) => AppConfig::from_json("app config", &value.to_string())?,
            None => {
                let file = tree.get(APP_CONFIG_FILE).ok_or_else(|| {
                    ConfigError::AppConfigMissing(format!("{APP_CONFIG_FILE} not found at the app root"))
                })?;
                let bytes = file.read()?;
                let text = std::str::from_utf8(&bytes).map_err(|_| ConfigError::Parse {
                    file: APP_CONFIG_FILE.into(),
                    line: 1,
                    column: 1,
                    message: "not valid UTF-8".into(),
                })?;
                AppConfig::from_json(APP_CONFIG_FILE, text)?
            }
        };
        for key in &parsed.unknown_keys {
            ctx.warn("config_unknown_key", format!("{APP_CONFIG_FILE}: unknown key `{key}` ignored"));
        }
        let app = parsed.value;

        let platform = ctx.config.platforms.get(app.app_type);
        if !platform.enabled {
            return Err(BuildError::PlatformDisabled { platform: app.app_type.to_string() }.into());
        }
        let builder = ctx.services.platforms.get(app.app_type)?;
        let target = ctx
            .request
            .target
            .clone()
            .or_else(|| app.build_targets.first().cloned())
            .or_else(|| platform.targets.first().cloned())
            .or_else(|| builder.supported_targets().first().map(|t| t.to_string()))
            .ok_or_else(|| Error::InvalidRequest("no target given and none configured".into()))?;
        // Known from here on, so that a result for this target says which one it is.
        ctx.target = Some(target.clone());
        if !builder.supported_targets().contains(&target.as_str()) {
            return Err(BuildError::UnsupportedTarget {
                app_type: app.app_type.to_string(),
                target,
                supported: builder.supported_targets().join(", "),
            }
            .into());
        }
        for requirement in builder.host_requirements(&target) {
            if let Err(reason) = requirement.check() {
                return Err(BuildError::PlatformRequirementUnmet { target, reason }.into());
            }
        }
        ctx.app = Some(app);
        ctx.platform = Some(builder.clone());
        builder.validate(ctx).await?;
        Ok(Flow::Continue)
    }
}
