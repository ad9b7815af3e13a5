//! Platform builders: one per app type (`static`, `javascript`, `flutter`).
//!
//! The pipeline asks a builder for its targets, host requirements and toolchain
//! fingerprint (which goes into the cache key), lets it validate the sources and
//! resolve dependencies, then has it build one target into the output directory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::AppType;
use crate::error::{BuildError, Result};
use crate::pipeline::BuildContext;

/// What a builder's `build` produced, besides the files in the output directory.
#[derive(Debug, Clone, Default)]
pub struct BuildOutput {
    /// The file a host opens first (`index.html` for web targets), relative to the output.
    pub entry_point: Option<String>,
}

/// Something the build host must have for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRequirement {
    /// The host OS, as `std::env::consts::OS` names it (`macos`, `windows`, `linux`).
    Os(&'static str),
    /// At least one of these environment variables names an existing directory.
    EnvDir(&'static [&'static str]),
    /// A program on PATH.
    Program(&'static str),
}

impl HostRequirement {
    /// `Err(reason)` when the host does not meet it.
    pub fn check(&self) -> std::result::Result<(), String> {
        match self {
            HostRequirement::Os(os) => {
                if std::env::consts::OS == *os {
                    Ok(())
                } else {
                    Err(format!("needs a {os} host, this is {}", std::env::consts::OS))
                }
            }
            HostRequirement::EnvDir(vars) => {
                let found = vars.iter().filter_map(std::env::var_os).any(|dir| std::path::Path::new(&dir).is_dir());
                if found { Ok(()) } else { Err(format!("needs {} set to an existing directory", vars.join(" or "))) }
            }
            HostRequirement::Program(name) => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                if std::env::split_paths(&path).any(|d| d.join(name).is_file()) {
                    Ok(())
                } else {
                    Err(format!("needs `{name}` on PATH"))
                }
            }
        }
    }
}

/// Builds apps of one type.
#[async_trait]
pub trait PlatformBuilder: Send + Sync {
    fn app_type(&self) -> AppType;

    /// Targets this builder can build (`web`, `android`, …).
    fn supported_targets(&self) -> &[&'static str];

    /// What the host needs for `target` (checked before any work).
    fn host_requirements(&self, _target: &str) -> Vec<HostRequirement> {
        Vec::new()
    }

    /// Host variables the target's toolchain reads (`ANDROID_HOME`, `JAVA_HOME`, …): passed
    /// from the engine's environment to the target's commands, and part of the cache key.
    fn toolchain_env(&self, _target: &str) -> Vec<&'static str> {
        Vec::new()
    }

    /// Tool name → version; part of the cache key.
    async fn toolchain(&self, _ctx: &BuildContext) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }

    /// Check the sources (syntax, security rules) before any dependency work.
    async fn validate(&self, _ctx: &mut BuildContext) -> Result<()> {
        Ok(())
    }

    /// Resolved dependency versions (from a lockfile); part of the cache key.
    async fn resolve_dependencies(&self, _ctx: &mut BuildContext) -> Result<BTreeMap<String, String>> {
        Ok(BTreeMap::new())
    }

    /// Build the context's target from its build directory into its output directory.
    async fn build(&self, ctx: &mut BuildContext) -> Result<BuildOutput>;

    /// Platform-specific optimisation of the output (before the shared precompression).
    async fn optimize(&self, _ctx: &mut BuildContext) -> Result<()> {
        Ok(())
    }

    /// The manifest's `type` for a target (`static-web`, `javascript-web`, …).
    fn artifact_type(&self, target: &str) -> String;
}

/// The builders an engine knows, by app type.
#[derive(Clone, Default)]
pub struct BuilderRegistry {
    builders: HashMap<AppType, Arc<dyn PlatformBuilder>>,
}

impl BuilderRegistry {
    /// The builders that ship with the engine.
    pub fn with_defaults() -> BuilderRegistry {
        let mut registry = BuilderRegistry::default();
        registry.register(Arc::new(crate::builders::StaticSiteBuilder));
        registry.register(Arc::new(crate::builders::JavascriptBuilder));
        registry.register(Arc::new(crate::builders::FlutterBuilder));
        registry
    }

    /// Add or replace the builder for its app type.
    pub fn register(&mut self, builder: Arc<dyn PlatformBuilder>) {
        self.builders.insert(builder.app_type(), builder);
    }

    pub fn get(&self, app_type: AppType) -> Result<Arc<dyn PlatformBuilder>> {
        self.builders.get(&app_type).cloned().ok_or_else(|| BuildError::UnsupportedAppType(app_type.to_string()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_requirements_explain_themselves() {
        assert!(HostRequirement::Os(std::env::consts::OS).check().is_ok());
        let err = HostRequirement::Os("plan9").check().unwrap_err();
        assert!(err.contains("plan9"), "{err}");
        assert!(HostRequirement::Program("sh").check().is_ok());
        assert!(HostRequirement::Program("no-such-program-xyz").check().is_err());
        assert!(HostRequirement::EnvDir(&["WORKZ_NO_SUCH_VAR"]).check().is_err());
    }
}
