//! The `static` app type: plain sites, copied as they are (precompression and the
//! manifest come from the shared optimize and package stages).

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{APP_CONFIG_FILE, AppType};
use crate::context::BuildContext;
use crate::context::{BuildOutput, PlatformBuilder};
use crate::error::{Error, Result};
use crate::source::SourceTree;

/// Files at the app root that configure the build and are not part of the site.
const NOT_PUBLISHED: &[&str] = &[APP_CONFIG_FILE, ".gitignore", ".workzignore"];

/// Builds `appType: "static"` apps.
#[derive(Debug, Clone, Copy, Default)]
pub struct StaticSiteBuilder;

#[async_trait]
impl PlatformBuilder for StaticSiteBuilder {
    fn app_type(&self) -> AppType {
        AppType::Static
    }

    fn supported_targets(&self) -> &[&'static str] {
        &["web"]
    }

    async fn build(&self, ctx: &mut BuildContext) -> Result<BuildOutput> {
        // After hooks ran, the working copy is the input (hooks may generate files);
        // otherwise copy straight from the checked source snapshot.
        let input: Arc<SourceTree> = match ctx.materialized_build_dir() {
            Some(dir) => {
                let dir = dir.to_path_buf();
                let config = ctx.config.clone();
                Arc::new(
                    tokio::task::spawn_blocking(move || SourceTree::from_dir(&dir, &config.limits, &config.source))
                        .await
                        .map_err(|e| Error::internal(e.to_string()))??,
                )
            }
            None => ctx.source()?.clone(),
        };
        let out = ctx.output_dir()?.to_path_buf();
        let cancel = ctx.cancel.clone();
        let entry_point = input.get("index.html").map(|_| "index.html".to_string());
        tokio::task::spawn_blocking(move || {
            let published = |f: &crate::source::SourceFile| {
                !NOT_PUBLISHED.contains(&f.path.as_str()) && !super::never_published(&f.path)
            };
            input.materialize(&out, &published, &|| cancel.is_cancelled())
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?
        .map_err(|e| crate::error::BuildError::Failed(format!("copying the site failed: {e}")))?;
        Ok(BuildOutput { entry_point })
    }

    fn artifact_type(&self, _target: &str) -> String {
        "static-web".into()
    }
}
