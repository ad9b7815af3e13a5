//! The standard stages of the pipeline, one file each, in the order they run.

mod build;
mod cache_lookup;
mod cache_store;
mod dependencies;
mod deploy;
mod optimize;
mod package;
mod validate;

pub use build::BuildStage;
pub use cache_lookup::{CacheLookupStage, key_components};
pub use cache_store::CacheStoreStage;
pub use dependencies::DependenciesStage;
pub use deploy::DeployStage;
pub use optimize::OptimizeStage;
pub use package::PackageStage;
pub use validate::ValidateStage;
