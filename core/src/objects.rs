//! Object stores the engine writes to: S3-compatible buckets (AWS S3, Cloudflare R2, MinIO,
//! GCS's S3 API) or a directory (`file://`), through `object_store`. Shared by the object-store
//! cache tier and the release destinations: where a store is, how it is opened, how it is
//! checked when an engine starts, and how a file is uploaded without being held in memory.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{Attributes, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload};

/// Files from this size on are uploaded in parts, streamed from the file.
pub const MULTIPART_FROM: u64 = 16 << 20;
const PART_BYTES: usize = 8 << 20;

/// The environment variables a bucket's credentials come from when the config names none.
pub const CREDENTIAL_VARS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

/// Where an object store is and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectLocation {
    /// `s3://bucket/prefix` or `file:///dir`.
    pub url: String,
    /// An S3-compatible endpoint other than AWS's (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// An opened store and where in it the location's objects are.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    pub store: Arc<dyn ObjectStore>,
    /// The URL's path in its bucket (empty for a directory: the store is rooted there).
    pub prefix: ObjectPath,
    /// Whether objects keep headers (`Content-Type`, `Cache-Control`): a bucket does, a directory does not.
    pub keeps_headers: bool,
}

/// Which part of a location is wrong, for the config's error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationField {
    Url,
    Credentials,
}

/// Why a store did not answer a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unanswered {
    /// The server answered: there is no such bucket.
    NoBucket(String),
    /// No credentials were found, or the server refused the ones sent.
    Credentials(String),
    /// The server could not be reached (or timed out): not the config's fault.
    Unreachable(String),
}

impl ObjectLocation {
    /// What is wrong with the location, found without a request.
    pub fn problem(&self) -> Option<(LocationField, String)> {
        let url = match url::Url::parse(&self.url) {
            Ok(url) => url,
            Err(e) => {
                return Some((
                    LocationField::Url,
                    format!("expected s3://bucket/prefix or file:///dir, found {:?} ({e})", self.url),
                ));
            }
        };
        match url.scheme() {
            "s3" if url.host_str().is_none_or(|b| b.len() < 3 || b.len() > 63) => {
                Some((LocationField::Url, format!("expected a bucket name of 3 to 63 characters in {:?}", self.url)))
            }
            "file" if url.to_file_path().is_err() => {
                Some((LocationField::Url, format!("expected an absolute local path in {:?}", self.url)))
            }
            "s3" | "file" => match (&self.access_key_id, &self.secret_access_key) {
                (Some(_), None) | (None, Some(_)) => Some((
                    LocationField::Credentials,
                    "expected both accessKeyId and secretAccessKey, or neither (then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the machine's role)".into(),
                )),
                _ => None,
            },
            other => Some((LocationField::Url, format!("expected an s3:// or file:// URL, found the scheme {other}://"))),
        }
    }

    /// Where the location's objects are in its store: an s3:// URL's path in its bucket;
    /// nothing for a directory (the store is rooted there).
    pub fn prefix(&self) -> ObjectPath {
        match url::Url::parse(&self.url) {
            Ok(url) if url.scheme() == "s3" => ObjectPath::from(url.path().trim_matches('/')),
            _ => ObjectPath::default(),
        }
    }

    /// What a check of this location depends on, as a short digest (no secret in the clear).
    fn identity(&self) -> String {
        let seen = format!(
            "{}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            self.url,
            self.endpoint,
            self.region,
            self.access_key_id,
            self.secret_access_key.as_ref().map(|s| blake3::hash(s.as_bytes()).to_hex().to_string()),
            std::env::var("AWS_ACCESS_KEY_ID").ok(),
        );
        blake3::hash(seen.as_bytes()).to_hex()[..32].to_string()
    }

    /// Whether this is a bucket (reached over the network) rather than a directory.
    pub fn is_bucket(&self) -> bool {
        self.url.starts_with("s3:")
    }

    /// The credential variables a bucket needs that neither the config nor the environment gives.
    pub fn missing_credential_vars(&self) -> Vec<&'static str> {
        if !self.is_bucket() || self.access_key_id.is_some() {
            return Vec::new();
        }
        CREDENTIAL_VARS.into_iter().filter(|v| std::env::var_os(v).is_none_or(|v| v.is_empty())).collect()
    }

    /// Open the store (no request is made).
    pub fn open(&self) -> Result<OpenedStore, String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("{:?} is not a URL: {e}", self.url))?;
        match url.scheme() {
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| b.len() >= 3)
                    .ok_or("an s3:// URL names its bucket (3 characters or more)")?;
                let client = object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(60))
                    .with_allow_http(self.endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
                let retry = object_store::RetryConfig {
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(20),
                    ..Default::default()
                };
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(client)
                    .with_retry(retry);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                builder = builder.with_region(self.region.clone().unwrap_or_else(|| "us-east-1".into()));
                if let Some(key) = &self.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &self.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let store = builder.build().map_err(|e| e.to_string())?;
                Ok(OpenedStore { store: Arc::new(store), prefix: self.prefix(), keeps_headers: true })
            }
            "file" => {
                let dir = url.to_file_path().map_err(|()| format!("{:?} is not a local path", self.url))?;
                std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| e.to_string())?;
                Ok(OpenedStore { store: Arc::new(store), prefix: ObjectPath::default(), keeps_headers: false })
            }
            other => Err(format!("the scheme {other}:// is not supported (use s3:// or file://)")),
        }
    }

    /// One listing of the prefix, within `timeout`: whether the bucket exists and takes our
    /// credentials. A directory is checked by opening it.
    pub async fn check(&self, timeout: Duration) -> Result<(), Unanswered> {
        let opened = self.open().map_err(Unanswered::Unreachable)?;
        if !self.is_bucket() {
            return Ok(());
        }
        let listing = async { opened.store.list(Some(&opened.prefix)).next().await };
        let missing = self.missing_credential_vars();
        let answer = match tokio::time::timeout(timeout, listing).await {
            Ok(answer) => answer,
            // Without credentials the client asks the instance metadata service, which does not
            // answer off a cloud machine.
            Err(_) if !missing.is_empty() => return Err(Unanswered::Credentials(no_credentials(&missing))),
            Err(_) => return Err(Unanswered::Unreachable(format!("no answer within {} s", timeout.as_secs()))),
        };
        match answer {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(classify(&e, &missing)),
        }
    }
}

/// How long a bucket that answered is trusted before an engine start checks it again.
const CHECK_VALID_FOR: Duration = Duration::from_secs(24 * 3600);
/// How long a check at engine start waits for a bucket.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Check the buckets an engine is configured with, before it takes a build: an unknown bucket
/// or missing credentials is the config's fault and is returned (with the location's JSON
/// path); a server that does not answer is not (the build warns, or fails to deploy, later).
/// A bucket that answered is remembered in `memo` for a day, so that an engine started on
/// every request (a PHP host, the CLI) checks it once, not each time.
pub fn check_at_start(locations: &[(String, ObjectLocation)], memo: &Path) -> Result<(), (String, Unanswered)> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let remembered = std::fs::read_to_string(memo).unwrap_or_default();
    let fresh = |id: &str| {
        remembered.lines().any(|line| {
            line.split_once(' ').is_some_and(|(seen, at)| {
                seen == id && at.parse::<u64>().is_ok_and(|at| now.saturating_sub(at) < CHECK_VALID_FOR.as_secs())
            })
        })
    };
    let due: Vec<(&String, &ObjectLocation, String)> = locations
        .iter()
        .filter(|(_, l)| l.is_bucket())
        .map(|(at, l)| (at, l, l.identity()))
        .filter(|(_, _, id)| !fresh(id))
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    // On a thread of its own with its own runtime: the caller may be inside one, or not.
    let answers: Vec<Result<(), Unanswered>> = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                let Ok(runtime) = runtime else { return Vec::new() };
                runtime.block_on(futures_util::future::join_all(due.iter().map(|(_, l, _)| l.check(CHECK_TIMEOUT))))
            })
            .join()
            .unwrap_or_default()
    });
    let mut lines: Vec<String> = remembered.lines().map(String::from).collect();
    for ((at, _, id), answer) in due.iter().zip(answers) {
        match answer {
            Ok(()) => {
                lines.retain(|l| !l.starts_with(&format!("{id} ")));
                lines.push(format!("{id} {now}"));
            }
            Err(Unanswered::Unreachable(_)) => {}
            Err(problem) => return Err(((*at).clone(), problem)),
        }
    }
    if let Some(dir) = memo.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(memo, lines.join("\n") + "\n");
    Ok(())
}

fn no_credentials(missing: &[&str]) -> String {
    format!("no credentials: {} not set, the config names none, and no instance role answered", missing.join(" and "))
}

/// What a failed listing says about the location.
fn classify(e: &object_store::Error, missing: &[&str]) -> Unanswered {
    let text = e.to_string();
    match e {
        object_store::Error::NotFound { .. } => Unanswered::NoBucket(text),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Unanswered::Credentials(format!("the bucket refused these credentials ({text})"))
        }
        _ if text.contains("NoSuchBucket") => Unanswered::NoBucket(text),
        // Without credentials the client went to the instance metadata service (a cloud
        // machine's role), and it refused or was not there.
        _ if !missing.is_empty()
            && ["credential", "169.254.169.254", "/latest/api/token"]
                .iter()
                .any(|m| text.to_ascii_lowercase().contains(m)) =>
        {
            Unanswered::Credentials(format!("{} ({text})", no_credentials(missing)))
        }
        _ if ["InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"].iter().any(|c| text.contains(c)) => {
            Unanswered::Credentials(format!("the bucket refused these credentials ({text})"))
        }
        _ => Unanswered::Unreachable(text),
    }
}

/// Upload the file at `local` to `path`: in parts from [`MULTIPART_FROM`] on (streamed, never
/// whole in memory), else in one request. With `create_only`, an object already at `path`
/// is left as it is (`If-None-Match: *`) and the upload counts as done. Returns the bytes sent.
pub async fn upload_file(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    local: &Path,
    attributes: Attributes,
    create_only: bool,
) -> Result<u64, object_store::Error> {
    let local_error = |e: std::io::Error| object_store::Error::Generic { store: "local file", source: Box::new(e) };
    let size = std::fs::metadata(local).map_err(local_error)?.len();
    if size >= MULTIPART_FROM {
        let options = PutMultipartOptions { attributes, ..Default::default() };
        let upload = store.put_multipart_opts(path, options).await?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = std::fs::File::open(local).map_err(local_error)?;
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            writer.wait_for_capacity(2).await?;
            let n = file.read(&mut buf).map_err(local_error)?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
    } else {
        let bytes = std::fs::read(local).map_err(local_error)?;
        let mode = if create_only { PutMode::Create } else { PutMode::Overwrite };
        let options = PutOptions { mode, attributes, ..Default::default() };
        match store.put_opts(path, PutPayload::from(bytes), options).await {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) if create_only => return Ok(0),
            Err(e) => return Err(e),
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(url: &str) -> ObjectLocation {
        ObjectLocation { url: url.into(), ..Default::default() }
    }

    #[test]
    fn locations_are_checked_without_a_request() {
        assert_eq!(at("s3://releases/sites").problem(), None);
        assert_eq!(at("file:///var/backups/workz").problem(), None);
        assert_eq!(at("s3://ab/x").problem().map(|p| p.0), Some(LocationField::Url));
        assert_eq!(at("http://host/x").problem().map(|p| p.0), Some(LocationField::Url));
        assert_eq!(at("releases").problem().map(|p| p.0), Some(LocationField::Url));
        let half = ObjectLocation { access_key_id: Some("k".into()), ..at("s3://releases") };
        assert_eq!(half.problem().map(|p| p.0), Some(LocationField::Credentials));
    }

    #[tokio::test]
    async fn a_directory_store_is_rooted_at_its_path_and_keeps_no_headers() {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path().join("releases")).unwrap().to_string();
        let opened = at(&url).open().unwrap();
        assert!(!opened.keeps_headers);
        assert_eq!(opened.prefix, ObjectPath::default());
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "hello").unwrap();
        let path = ObjectPath::from("app/a.txt");
        assert_eq!(upload_file(opened.store.as_ref(), &path, &file, Attributes::new(), true).await.unwrap(), 5);
        std::fs::write(&file, "other").unwrap();
        assert_eq!(upload_file(opened.store.as_ref(), &path, &file, Attributes::new(), true).await.unwrap(), 0);
        assert_eq!(std::fs::read_to_string(dir.path().join("releases/app/a.txt")).unwrap(), "hello");
        assert_eq!(at(&url).check(Duration::from_secs(1)).await, Ok(()));
    }
}
