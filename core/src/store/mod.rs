//! Where deployed artifacts go.
//!
//! A build writes its outputs into a staging directory that the store hands out,
//! then the store publishes it atomically as `<app>/<version>/<build_id>/`.
//! The local store (the default) publishes with a rename and keeps a `latest`
//! symlink per app. Configured destinations (`storage.deploy`: CDN origins in buckets or
//! directories, and backups) receive every release as well, see [`Destination`].

mod destination;
mod local;

pub use self::destination::{Destination, LatestPointer};
pub use self::local::LocalArtifactStore;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cache::ArtifactFile;

/// Errors of artifact stores.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("artifact store: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("artifact store: invalid {what} {value:?}")]
    InvalidName { what: &'static str, value: String },
    #[error("the build wrote {0} at the root of its output, where the release manifest goes")]
    ReservedName(&'static str),
    /// A release destination (`storage.deploy`) failed or did not answer in time.
    #[error("deploy to {destination}: cannot {op}: {message}")]
    Deploy { destination: String, op: &'static str, message: String },
}

impl crate::report::ErrorCode for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "artifact_store_failed",
            StoreError::InvalidName { .. } | StoreError::ReservedName(_) => "artifact_name_invalid",
            StoreError::Deploy { .. } => "deploy_failed",
        }
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            StoreError::Io { .. } => {
                "Check free space and permissions of the artifacts directory (`storage.artifactsDir`, WORKZ_ARTIFACTS_DIR).".into()
            }
            StoreError::InvalidName { .. } => "App names and versions are used in paths: use letters, digits, '.', '-', '_'.".into(),
            StoreError::Deploy { .. } => "Check that the destination answers from this machine and takes these credentials (`workz-build doctor`); its previous release stays current, and the build can be retried.".into(),
            StoreError::ReservedName(_) => "Name the web app manifest `manifest.webmanifest` (its standard extension) and point `<link rel=\"manifest\">` at it; `manifest.json` at a release's root is the engine's.".into(),
        })
    }

    fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Deploy { .. })
    }

    fn category(&self) -> crate::report::Category {
        match self {
            StoreError::Io { .. } | StoreError::Deploy { .. } => crate::report::Category::Infrastructure,
            StoreError::InvalidName { .. } | StoreError::ReservedName(_) => crate::report::Category::User,
        }
    }

    fn family(&self) -> crate::report::Family {
        match self {
            StoreError::Io { .. } | StoreError::Deploy { .. } => crate::report::Family::Storage,
            StoreError::InvalidName { .. } | StoreError::ReservedName(_) => crate::report::Family::Build,
        }
    }
}

impl StoreError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Io { op, path, source }
    }
}

/// `manifest.json`: what a release holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub build_id: String,
    pub target: String,
    /// RFC 3339.
    pub build_time: String,
    /// Total bytes of `files`.
    pub build_size: u64,
    pub entry_point: Option<String>,
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub cache_key: String,
    pub files: Vec<ArtifactFile>,
}

/// The file name of the manifest inside a release.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Names a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseId {
    pub app: String,
    pub version: String,
    pub build_id: String,
}

/// A published release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: ReleaseId,
    /// Where the release can be read (a local path, or a URL for remote stores).
    pub location: String,
}

/// A place deployed artifacts go.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    fn name(&self) -> &str;

    /// A new, empty local directory for one build's outputs.
    async fn stage(&self, build_id: &str) -> Result<PathBuf, StoreError>;

    /// Publish a staged directory atomically and make it the app's latest release.
    async fn publish(&self, staged: &Path, id: &ReleaseId) -> Result<Release, StoreError>;

    /// Drop a staged directory that will not be published.
    async fn discard(&self, staged: &Path) -> Result<(), StoreError>;

    /// The app's latest release.
    async fn latest(&self, app: &str) -> Result<Option<Release>, StoreError>;

    /// Remove the app's releases older than `retention`, never its latest. Returns how many.
    async fn enforce_retention(&self, app: &str, retention: Duration) -> Result<u64, StoreError>;

    /// The app's latest release, if it already holds exactly `files` built under `cache_key`
    /// and every file still matches its hash: a cache hit then needs no new copy.
    async fn reuse(
        &self,
        _app: &str,
        _cache_key: &str,
        _files: &[ArtifactFile],
    ) -> Result<Option<Release>, StoreError> {
        Ok(None)
    }
}

/// A single path component we are willing to create under our root.
pub(crate) fn check_component(what: &'static str, value: &str) -> Result<(), StoreError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value != "."
        && value != ".."
        && value != "latest"
        && !value.starts_with('.')
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    if ok { Ok(()) } else { Err(StoreError::InvalidName { what, value: value.to_string() }) }
}
