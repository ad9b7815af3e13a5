//! A release destination (`storage.deploy[]`): a CDN origin or a backup, in a bucket or a
//! directory, written through `object_store`.
//!
//! ```text
//! <prefix>/<app>/<version>/<build_id>/…             the release's files, then its manifest.json
//! <prefix>/<app>/latest.json                        the current release
//! <prefix>/<app>/<target>/latest.json               … of each target, for a multi-target app
//! ```
//!
//! A release is uploaded whole (every file, then `manifest.json`) before the pointer object
//! moves to it, and a release's objects are never rewritten once a pointer names them: a
//! reader that follows the pointer sees the old release or the new one, never half of one.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, Attributes, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{MANIFEST_FILE, Manifest, StoreError, check_component};
use crate::cache::ArtifactFile;
use crate::config::{DeployDestinationConfig, EngineConfig};
use crate::digest::Digest;
use crate::objects::{ObjectLocation, OpenedStore, upload_file};

/// Transfers at once, per destination.
const CONCURRENCY: usize = 16;
/// The pointer object's name.
pub const LATEST_FILE: &str = "latest.json";
/// For names that change when their content does (`app-3f9a1c2b.js`): cached for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For everything else: revalidated on each use.
const REVALIDATE: &str = "public, max-age=0, must-revalidate";

/// `latest.json`: which release of an app (target) a destination serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestPointer {
    pub app: String,
    pub version: String,
    pub build_id: String,
    pub target: String,
    /// The release's objects, relative to the destination's prefix (`<app>/<version>/<build_id>`).
    pub path: String,
    /// Where the release is read from (the destination's `publicUrl`, else its own URL).
    pub url: String,
    /// The cache key the release was built under.
    pub cache_key: String,
    /// BLAKE3 of the release's file list (paths, sizes, hashes): the same list is the same release.
    pub files_digest: Digest,
    /// RFC 3339.
    pub published_at: String,
}

impl LatestPointer {
    /// The digest that identifies a release by its files.
    pub fn files_digest(files: &[ArtifactFile]) -> Digest {
        Digest::of(&serde_json::to_vec(files).unwrap_or_default())
    }
}

/// One configured destination.
pub struct Destination {
    pub name: String,
    /// A failed publish here is a warning, not a failed build.
    pub backup: bool,
    public_url: Option<String>,
    location: ObjectLocation,
    prefix: ObjectPath,
    /// Made on first use (see the object-store cache tier: a hit that sends nothing pays nothing).
    opened: OnceLock<OpenedStore>,
}

impl Destination {
    pub fn new(config: &DeployDestinationConfig) -> Destination {
        let location = config.location();
        Destination {
            name: config.name.clone(),
            backup: config.backup,
            public_url: config.public_url.as_ref().map(|u| u.trim_end_matches('/').to_string()),
            prefix: location.prefix(),
            location,
            opened: OnceLock::new(),
        }
    }

    /// Every destination of `storage.deploy`, in the config's order.
    pub fn all(config: &EngineConfig) -> Vec<Arc<Destination>> {
        config.storage.deploy.iter().map(|d| Arc::new(Destination::new(d))).collect()
    }

    fn opened(&self) -> Result<&OpenedStore, StoreError> {
        if let Some(opened) = self.opened.get() {
            return Ok(opened);
        }
        let opened = self.location.open().map_err(|e| self.failed("open the store", e))?;
        Ok(self.opened.get_or_init(|| opened))
    }

    fn failed(&self, op: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Deploy { destination: self.name.clone(), op, message: e.to_string() }
    }

    /// The object at `rel` (a `/`-separated path below the prefix).
    fn object(&self, rel: &str) -> ObjectPath {
        if self.prefix.as_ref().is_empty() {
            ObjectPath::from(rel)
        } else {
            ObjectPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// `<app>/latest.json`, or `<app>/<target>/latest.json` for one target of a multi-target app.
    fn pointer_rel(app: &str, target: Option<&str>) -> Result<String, StoreError> {
        check_component("app", app)?;
        match target {
            Some(target) => {
                check_component("target", target)?;
                Ok(format!("{app}/{target}/{LATEST_FILE}"))
            }
            None => Ok(format!("{app}/{LATEST_FILE}")),
        }
    }

    /// Where a release at `release_rel` is read from: under `publicUrl` when there is one.
    pub fn url_of(&self, release_rel: &str) -> String {
        match &self.public_url {
            Some(public) => format!("{public}/{release_rel}/"),
            None => format!("{}/{release_rel}/", self.location.url.trim_end_matches('/')),
        }
    }

    /// The release the destination serves for the app (target), if any. An unreadable
    /// pointer counts as none (the next publish replaces it).
    pub async fn current(&self, app: &str, target: Option<&str>) -> Result<Option<LatestPointer>, StoreError> {
        let path = self.object(&Self::pointer_rel(app, target)?);
        let store = &self.opened()?.store;
        let bytes = match store.get(&path).await {
            Ok(found) => found.bytes().await.map_err(|e| self.failed("read latest.json", e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failed("read latest.json", e)),
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Upload the release in `dir` (its manifest's files, then `manifest.json`) to
    /// `<prefix>/<release_rel>/`, many files at once. Returns the bytes sent.
    pub async fn upload(&self, dir: &Path, manifest: &Manifest, release_rel: &str) -> Result<u64, StoreError> {
        let opened = self.opened()?;
        let store = opened.store.as_ref();
        let plain: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        // Futures made first, then run a bounded number at a time (a closure over borrowed
        // files inside the stream would not be `Send` for every lifetime).
        let uploads: Vec<_> = manifest
            .files
            .iter()
            .map(|file| {
                let attributes = if opened.keeps_headers { headers(file, &plain) } else { Attributes::new() };
                let path = self.object(&format!("{release_rel}/{}", file.path));
                let local = dir.join(&file.path);
                async move {
                    upload_file(store, &path, &local, attributes, false)
                        .await
                        .map_err(|e| self.failed("upload a file", format!("{}: {e}", path)))
                }
            })
            .collect();
        let sent: Vec<Result<u64, StoreError>> =
            futures_util::stream::iter(uploads).buffer_unordered(CONCURRENCY).collect().await;
        let mut bytes = sent.into_iter().sum::<Result<u64, StoreError>>()?;
        // The manifest last: a release that has one has all its files.
        let mut attributes = Attributes::new();
        if opened.keeps_headers {
            attributes.insert(Attribute::ContentType, "application/json".into());
            attributes.insert(Attribute::CacheControl, REVALIDATE.into());
        }
        let path = self.object(&format!("{release_rel}/{MANIFEST_FILE}"));
        bytes += upload_file(store, &path, &dir.join(MANIFEST_FILE), attributes, false)
            .await
            .map_err(|e| self.failed("upload manifest.json", e))?;
        Ok(bytes)
    }

    /// Make `pointer` the app (target)'s current release: one object replaced whole.
    pub async fn point(&self, pointer: &LatestPointer, target: Option<&str>) -> Result<(), StoreError> {
        let opened = self.opened()?;
        let path = self.object(&Self::pointer_rel(&pointer.app, target)?);
        let json = serde_json::to_vec_pretty(pointer).map_err(|e| self.failed("encode latest.json", e))?;
        let mut options = object_store::PutOptions::default();
        if opened.keeps_headers {
            options.attributes.insert(Attribute::ContentType, "application/json".into());
            options.attributes.insert(Attribute::CacheControl, "no-cache".into());
        }
        opened
            .store
            .put_opts(&path, PutPayload::from(json), options)
            .await
            .map_err(|e| self.failed("move latest.json", e))?;
        Ok(())
    }

    /// Remove the app's releases whose newest object is older than `retention`, never one a
    /// pointer names (nor one being uploaded now: its objects are new). Returns how many.
    pub async fn enforce_retention(&self, app: &str, retention: Duration) -> Result<u64, StoreError> {
        check_component("app", app)?;
        let store = &self.opened()?.store;
        let app_dir = self.object(app);
        let objects: Vec<object_store::ObjectMeta> =
            store.list(Some(&app_dir)).try_collect().await.map_err(|e| self.failed("list releases", e))?;
        let prefix_parts = self.prefix.parts().count();
        let mut pointers = Vec::new();
        let mut releases: BTreeMap<String, (SystemTime, Vec<ObjectPath>)> = BTreeMap::new();
        for meta in objects {
            let parts: Vec<String> = meta.location.parts().skip(prefix_parts).map(|p| p.as_ref().to_string()).collect();
            match parts.len() {
                2 | 3 if parts.last().is_some_and(|p| p == LATEST_FILE) => pointers.push(meta.location),
                n if n >= 4 => {
                    let release = parts[..3].join("/");
                    let modified = SystemTime::from(meta.last_modified);
                    let slot = releases.entry(release).or_insert((SystemTime::UNIX_EPOCH, Vec::new()));
                    slot.0 = slot.0.max(modified);
                    slot.1.push(meta.location);
                }
                _ => {}
            }
        }
        let mut current = HashSet::new();
        for pointer in pointers {
            let read = store.get(&pointer).await.map_err(|e| self.failed("read latest.json", e))?;
            let bytes = read.bytes().await.map_err(|e| self.failed("read latest.json", e))?;
            match serde_json::from_slice::<LatestPointer>(&bytes) {
                Ok(p) => current.insert(p.path),
                // A pointer we cannot read protects nothing we could name: remove nothing.
                Err(_) => return Ok(0),
            };
        }
        let now = SystemTime::now();
        let mut removed = 0;
        for (release, (newest, objects)) in releases {
            let age = now.duration_since(newest).unwrap_or_default();
            if current.contains(&release) || age <= retention {
                continue;
            }
            let locations = futures_util::stream::iter(objects.into_iter().map(Ok)).boxed();
            store
                .delete_stream(locations)
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| self.failed("remove an old release", e))?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// `Content-Type`, `Content-Encoding` (for a `.gz`/`.br` variant of another file of the
/// release, with the type of the file it encodes) and `Cache-Control`.
fn headers(file: &ArtifactFile, plain: &HashSet<&str>) -> Attributes {
    let variant = [(".gz", "gzip"), (".br", "br")].into_iter().find_map(|(ext, encoding)| {
        file.path.strip_suffix(ext).filter(|base| plain.contains(base)).map(|base| (base, encoding))
    });
    let mut attributes = Attributes::new();
    let named = match variant {
        Some((base, encoding)) => {
            attributes.insert(Attribute::ContentEncoding, encoding.into());
            attributes
                .insert(Attribute::ContentType, mime_guess::from_path(base).first_or_octet_stream().to_string().into());
            base
        }
        None => {
            attributes.insert(Attribute::ContentType, file.content_type.clone().into());
            file.path.as_str()
        }
    };
    let cache = if is_content_hashed(named) { IMMUTABLE } else { REVALIDATE };
    attributes.insert(Attribute::CacheControl, cache.into());
    attributes
}

/// Whether a file name carries a hash of its content, as bundlers write them:
/// `[name]-[hash].ext` or `[name].[hash].ext` with an 8-character hash (rolldown, esbuild,
/// Vite) or a longer hexadecimal one (webpack's `[contenthash]`). A hash has a digit or a
/// capital; a plain lower-case word (`polyfill`) is not one.
pub fn is_content_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((stem, _ext)) = name.rsplit_once('.') else { return false };
    let hash_like = |s: &str| {
        s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && s.chars().any(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    };
    // An 8-character hash may itself hold '-' or '_' (base64url): take the last 8 characters.
    let short = stem.len() > 9
        && stem.is_char_boundary(stem.len() - 9)
        && matches!(stem.as_bytes()[stem.len() - 9], b'-' | b'.')
        && hash_like(&stem[stem.len() - 8..]);
    let hex = stem
        .rsplit_once(['-', '.'])
        .is_some_and(|(_, h)| (10..=64).contains(&h.len()) && h.chars().all(|c| c.is_ascii_hexdigit()));
    short || hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_are_told_from_plain_ones() {
        for hashed in ["assets/index-BUbmlG2d.js", "main-Q3ZK7X2A.css", "app.3f9a1c2b7d.js", "x/logo-a_b-C9dE.svg"] {
            assert!(is_content_hashed(hashed), "{hashed}");
        }
        for plain in
            ["index.html", "polyfill.js", "vendor-polyfill.js", "sw.js", "manifest.json", "favicon.ico", "a-b.js"]
        {
            assert!(!is_content_hashed(plain), "{plain}");
        }
    }

    #[test]
    fn a_compressed_variant_keeps_the_type_of_what_it_encodes() {
        let file = |path: &str| ArtifactFile {
            path: path.into(),
            size: 1,
            blake3: Digest::of(path.as_bytes()),
            content_type: mime_guess::from_path(path).first_or_octet_stream().to_string(),
        };
        let plain: HashSet<&str> = ["assets/app-BUbmlG2d.js", "index.html"].into_iter().collect();
        let js = headers(&file("assets/app-BUbmlG2d.js.br"), &plain);
        assert_eq!(js.get(&Attribute::ContentEncoding).map(|v| v.as_ref()), Some("br"));
        assert_eq!(js.get(&Attribute::ContentType).map(|v| v.as_ref()), Some("text/javascript"));
        assert_eq!(js.get(&Attribute::CacheControl).map(|v| v.as_ref()), Some(IMMUTABLE));
        let html = headers(&file("index.html.gz"), &plain);
        assert_eq!(html.get(&Attribute::ContentEncoding).map(|v| v.as_ref()), Some("gzip"));
        assert_eq!(html.get(&Attribute::ContentType).map(|v| v.as_ref()), Some("text/html"));
        assert_eq!(html.get(&Attribute::CacheControl).map(|v| v.as_ref()), Some(REVALIDATE));
        // A .gz the release ships as such (no plain twin) is served as what it is.
        let archive = headers(&file("data.tar.gz"), &plain);
        assert_eq!(archive.get(&Attribute::ContentEncoding), None);
    }
}
