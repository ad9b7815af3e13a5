//! The `package` stage: every output file listed and hashed; an empty output or a missing entry point fails.

use async_trait::async_trait;

use crate::context::{BuildContext, Flow, Stage};
use crate::error::{BuildError, Error, Result};
use crate::store::MANIFEST_FILE;

/// Lists and hashes the outputs; an empty output is an error.
pub struct PackageStage;

#[async_trait]
impl Stage for PackageStage {
    fn name(&self) -> &str {
        "package"
    }

    fn runs_on_cache_hit(&self) -> bool {
        false
    }

    async fn run(&self, ctx: &mut BuildContext) -> Result<Flow> {
        let out = ctx.output_dir()?.to_path_buf();
        // The release manifest would silently replace the app's own file.
        if out.join(MANIFEST_FILE).exists() {
            return Err(crate::store::StoreError::ReservedName(MANIFEST_FILE).into());
        }
        let files = tokio::task::spawn_blocking(move || crate::output::list_artifacts(&out))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(BuildError::io("listing the output"))?;
        if files.is_empty() {
            return Err(BuildError::ArtifactMissing(format!("the {} build wrote no files", ctx.target()?)).into());
        }
        if let Some(entry) = &ctx.entry_point
            && !files.iter().any(|f| &f.path == entry)
        {
            return Err(BuildError::ArtifactMissing(format!("entry point {entry} is not in the output")).into());
        }
        ctx.files = files;
        Ok(Flow::Continue)
    }
}
