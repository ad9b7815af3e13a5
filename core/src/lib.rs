//! The Workz build engine: builds Workz! platform apps in-process.
//!
//! ```no_run
//! # async fn demo() -> workz_build::Result<()> {
//! use workz_build::{BuildRequest, Engine, EngineConfig};
//! let engine = Engine::new(EngineConfig::default())?;
//! let result = engine.build(BuildRequest::directory("examples/static-site")).await;
//! println!("{}", serde_json::to_string_pretty(&result).unwrap());
//! # Ok(()) }
//! ```
//!
//! The flow is queue → pipeline (validate → dependencies → cache lookup → build →
//! optimize → package → cache store → deploy) → history and events; see
//! `docs/architecture.md`.

pub mod builders;
pub mod cache;
pub mod config;
pub mod context;
pub mod digest;
pub mod dircache;
pub mod doctor;
pub mod embed;
pub mod engine;
pub mod error;
pub mod events;
pub mod explain;
pub mod farm;
pub mod files;
pub mod history;
pub mod monitor;
pub mod notify;
pub mod objects;
pub mod output;
pub mod pipeline;
pub mod process;
pub mod queue;
pub mod report;
pub mod result;
pub mod sandbox;
pub mod source;
pub mod stages;
pub mod statcache;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod toolchain;
pub mod warm;
pub mod worker;

pub use cache::{CacheBackend, CacheKey, KeyComponents};
pub use config::{AppConfig, EngineConfig};
pub use context::{
    BuildContext, BuildOutput, BuildRequest, Flow, HostRequirement, PlatformBuilder, PlatformRegistry, Services, Stage,
};
pub use digest::Digest;
pub use engine::{BuildHandle, CacheStats, Engine, EngineDirs, EngineSetup, JobQueue, QueueStatus};
pub use error::{Category, Error, ErrorCode, ErrorReport, Family, Result};
pub use events::{BuildEvent, EventRecord};
pub use explain::Explanation;
pub use pipeline::Pipeline;
pub use result::{BuildResult, BuildStatus, StageTimings, Warning};
pub use source::{SourceSpec, SourceTree};
pub use store::{ArtifactStore, LocalArtifactStore, Manifest};
/// Cancels a build or stops a worker (`tokio_util`'s, re-exported for hosts).
pub use tokio_util::sync::CancellationToken;

/// The engine's version; part of every cache key.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Raised whenever the same sources build to a different release (a fix in what is
/// published): part of every cache key with `VERSION`, so that no entry made before the fix
/// is served after it. 2: env files never published, TypeScript workers named .js, env files
/// `import.meta.glob` and `?raw` compiled in, Create React App pages.
pub const OUTPUT_REVISION: u32 = 2;
