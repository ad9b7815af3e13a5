//! What every binding (C, Python, Node) needs from the engine, so that each of them only
//! converts: engines and requests from JSON, a build handle that several callers can share,
//! and panics turned into `internal` errors.

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::EngineConfig;
use crate::context::BuildRequest;
use crate::engine::{BuildHandle, Engine, block_on};
use crate::error::{Error, ErrorReport, Result};
pub use crate::error::{catch_panic, catch_panic_async, panic_error};
use crate::events::EventRecord;
use crate::result::BuildResult;
use crate::result::BuildStatus;
use crate::source::{FileBytes, SourceSpec};

/// An engine from an engine config document; empty (or only whitespace) means the
/// embedded defaults. Unknown keys are logged, as the CLI warns of them.
pub fn engine_from_json(config_json: &str) -> Result<Engine> {
    let parsed = EngineConfig::from_json("engine config", config_json)?;
    for key in &parsed.unknown_keys {
        tracing::warn!("engine config: unknown key {key} ignored");
    }
    Engine::new(parsed.value)
}

/// The version of what crosses to the hosts (the C header's `WZ_ABI_VERSION`, Python's
/// `ABI_VERSION`, Node's `abiVersion()`): bumped on any incompatible change.
pub const ABI_VERSION: u32 = 1;

/// A value as the JSON text a host receives.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("serialising: {e}")))
}

/// What a host passes with the source: the fields of its keyword arguments (Python) or
/// options object (Node, where extra fields such as `signal` are its own).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestOptions {
    pub target: Option<String>,
    /// The app config, in place of the app's `workz.json`.
    pub app_config: Option<serde_json::Value>,
    pub force: bool,
    pub priority: i32,
    /// Seconds.
    pub timeout: Option<u64>,
    /// Farm submissions with the same key are one build.
    pub idempotency_key: Option<String>,
}

/// A request for a host's source, a directory (relative to the process's working directory)
/// or files in memory (path → bytes), with its options. The one place the bindings' requests
/// are made.
pub fn request_of(
    directory: Option<&str>,
    files: Option<impl IntoIterator<Item = (String, Vec<u8>)>>,
    options: RequestOptions,
) -> Result<BuildRequest> {
    let source = match (directory, files) {
        (Some(dir), None) => {
            let dir = std::path::absolute(dir)
                .map_err(|e| Error::InvalidRequest(format!("the source directory {dir:?} cannot be resolved: {e}")))?;
            SourceSpec::Directory(dir)
        }
        (None, Some(files)) => {
            SourceSpec::Files(files.into_iter().map(|(path, bytes)| (path, FileBytes(bytes.into()))).collect())
        }
        _ => return Err(Error::InvalidRequest("give the source as a directory or as files, one of the two".into())),
    };
    let mut request = BuildRequest::directory("");
    request.source = source;
    request.target = options.target;
    request.app_config = options.app_config;
    request.force = options.force;
    request.priority = options.priority;
    request.timeout = options.timeout;
    request.idempotency_key = options.idempotency_key;
    Ok(request)
}

/// A host's options from JSON (Node's options object as it is: fields that are not request
/// options, such as `signal` or `onEvent`, are left to the host).
pub fn options_from_json(options_json: &str) -> Result<RequestOptions> {
    parse_json(options_json, "the build options")
}

/// A build request from JSON (`{"source": {"directory": "..."}, "target": "web", ...}`).
pub fn request_from_json(request_json: &str) -> Result<BuildRequest> {
    parse_json(request_json, "the build request")
}

fn parse_json<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!(" at {path}") };
        Error::InvalidRequest(format!("{what} is not valid{at}: {}", e.inner()))
    })
}

/// A submitted build as the bindings hold it: shared between the host's threads (or its event
/// loop and the engine's runtime), events in order, then a result that stays readable after
/// the build ended.
#[derive(Clone)]
pub struct SharedBuild {
    build_id: Arc<str>,
    cancel: CancellationToken,
    state: Arc<Mutex<BuildState>>,
}

enum BuildState {
    Running(Box<BuildHandle>),
    /// Shared, not copied: a result can list thousands of files.
    Ended(Arc<BuildResult>),
}

impl SharedBuild {
    pub fn new(handle: BuildHandle) -> SharedBuild {
        SharedBuild {
            build_id: handle.build_id().into(),
            cancel: handle.cancel_token(),
            state: Arc::new(Mutex::new(BuildState::Running(Box::new(handle)))),
        }
    }

    pub fn build_id(&self) -> &str {
        &self.build_id
    }

    /// Cancel the build (queued or running); never waits, so any thread may call it.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The next event, waiting for it; `None` after the last one.
    pub async fn next_event(&self) -> Option<EventRecord> {
        match &mut *self.state.lock().await {
            BuildState::Running(handle) => handle.next_event().await,
            BuildState::Ended(_) => None,
        }
    }

    /// The events that have arrived, and the result if the build has ended, without waiting
    /// (nothing while another caller is waiting on this build).
    pub fn poll(&self, mut on_event: impl FnMut(&EventRecord)) -> Option<Arc<BuildResult>> {
        let mut state = self.state.try_lock().ok()?;
        let result = match &mut *state {
            BuildState::Ended(result) => return Some(result.clone()),
            BuildState::Running(handle) => {
                while let Some(record) = handle.try_next_event() {
                    on_event(&record);
                }
                Arc::new(handle.try_wait()?)
            }
        };
        *state = BuildState::Ended(result.clone());
        Some(result)
    }

    /// The result of a build that has ended and been waited for; `None` before.
    pub fn ended(&self) -> Option<Arc<BuildResult>> {
        match &*self.state.try_lock().ok()? {
            BuildState::Ended(result) => Some(result.clone()),
            BuildState::Running(_) => None,
        }
    }

    /// The result, waiting for the build to end; the same result on later calls.
    pub async fn result(&self) -> Arc<BuildResult> {
        let mut state = self.state.lock().await;
        let result = match &mut *state {
            BuildState::Ended(result) => return result.clone(),
            BuildState::Running(handle) => Arc::new(handle.result().await),
        };
        *state = BuildState::Ended(result.clone());
        result
    }

    /// Wait on the calling thread, handing each event to `on_event` there as it arrives
    /// (hosts such as PHP and Python may only be called back on their own thread).
    pub fn wait_delivering_events(&self, mut on_event: impl FnMut(&EventRecord)) -> Arc<BuildResult> {
        block_on(async {
            while let Some(record) = self.next_event().await {
                on_event(&record);
            }
            self.result().await
        })
    }
}

/// The error of a build that did not succeed, as bindings raise it.
pub fn failure_of(result: &BuildResult) -> Option<ErrorReport> {
    match (result.status, &result.error) {
        (BuildStatus::Succeeded, _) => None,
        (_, Some(report)) => Some(report.clone()),
        (status, None) => Some(Error::Internal(format!("the build ended {status:?} without an error")).report()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_bad_field() {
        let err = request_from_json(r#"{"source": {"directory": "/x"}, "priority": "high"}"#).unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        assert!(err.to_string().contains("at priority"), "{err}");
        assert_eq!(request_from_json("{").unwrap_err().code(), "invalid_request");
        let ok = request_from_json(r#"{"source": {"files": {"a.txt": "x"}}, "target": "web"}"#).unwrap();
        assert_eq!(ok.target.as_deref(), Some("web"));
    }

    #[test]
    fn a_hosts_request_takes_one_source_and_its_options() {
        let options = RequestOptions { target: Some("web".into()), force: true, priority: 3, ..Default::default() };
        let request = request_of(Some("app"), None::<Vec<(String, Vec<u8>)>>, options).unwrap();
        let SourceSpec::Directory(dir) = &request.source else { panic!("a directory source") };
        assert!(dir.is_absolute() && dir.ends_with("app"), "{dir:?}");
        assert_eq!((request.target.as_deref(), request.force, request.priority), (Some("web"), true, 3));

        let files = vec![("index.html".to_string(), b"<p>hi</p>".to_vec())];
        let options = options_from_json(r#"{"appConfig": {"name": "x"}, "timeout": 5, "signal": {}}"#).unwrap();
        let request = request_of(None, Some(files), options).unwrap();
        let SourceSpec::Files(files) = &request.source else { panic!("a files source") };
        assert_eq!(files["index.html"].0.as_ref(), b"<p>hi</p>");
        assert_eq!((request.app_config.unwrap()["name"].as_str(), request.timeout), (Some("x"), Some(5)));

        let err = options_from_json(r#"{"timeout": -1}"#).unwrap_err();
        assert!(err.code() == "invalid_request" && err.to_string().contains("at timeout"), "{err}");
        for (dir, files) in [(None, None), (Some("app"), Some(Vec::new()))] {
            let err = request_of(dir, files, RequestOptions::default()).unwrap_err();
            assert_eq!(err.code(), "invalid_request");
        }
    }

    #[test]
    fn bad_engine_configs_are_config_errors() {
        let err = engine_from_json("{\"buildSystem\": {\"maxConcurrentBuilds\": \"x\"}}").err().unwrap();
        assert_eq!(err.code(), "config_invalid");
        assert_eq!(engine_from_json("[").err().unwrap().code(), "config_parse_error");
    }
}
