//! The native half of the `workz_build` Python package: conversions only. A request crosses
//! as its source and keyword arguments (the core makes it), results as JSON text (the Python
//! layer in `python/workz_build` turns them into dicts and typed objects); builds run with the
//! GIL released on the process-wide runtime.

mod error;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use workz::embed::{RequestOptions, SharedBuild, catch_panic, failure_of, request_of};
use workz::engine::{block_on, runtime};
use workz::{BuildRequest, BuildResult, Error, ErrorReport};

use crate::error::to_py_err;

/// Run a method's body; an engine error or a panic becomes the matching exception.
fn guarded<T>(body: impl FnOnce() -> Result<T, ErrorReport>) -> PyResult<T> {
    match catch_panic(|| Ok(body())) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(report)) => Err(to_py_err(report)),
        Err(panic) => Err(to_py_err(panic.report())),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ErrorReport> {
    workz::embed::to_json(value).map_err(|e| e.report())
}

fn invalid(message: String) -> ErrorReport {
    Error::InvalidRequest(message).report()
}

/// The source's files (`path -> bytes | str`) as bytes.
fn file_bytes(files: &Bound<'_, PyDict>) -> Result<Vec<(String, Vec<u8>)>, ErrorReport> {
    let mut map = Vec::new();
    for (path, contents) in files.iter() {
        let path: String = path.extract().map_err(|_| invalid("source file paths must be str".into()))?;
        let bytes = if let Ok(bytes) = contents.cast::<PyBytes>() {
            bytes.as_bytes().to_vec()
        } else if let Ok(text) = contents.extract::<String>() {
            text.into_bytes()
        } else {
            return Err(invalid(format!("the contents of {path} must be bytes or str")));
        };
        map.push((path, bytes));
    }
    Ok(map)
}

/// The request for `submit`'s and `explain`'s arguments (made by the core).
#[allow(clippy::too_many_arguments)]
fn request(
    source_dir: Option<&str>,
    files: Option<&Bound<'_, PyDict>>,
    target: Option<String>,
    app_config_json: Option<&str>,
    force: bool,
    priority: i32,
    timeout: Option<u64>,
    idempotency_key: Option<String>,
) -> Result<BuildRequest, ErrorReport> {
    let app_config = app_config_json
        .map(|text| serde_json::from_str(text).map_err(|e| invalid(format!("app_config is not JSON: {e}"))))
        .transpose()?;
    let options = RequestOptions { target, app_config, force, priority, timeout, idempotency_key };
    request_of(source_dir, files.map(file_bytes).transpose()?, options).map_err(|e| e.report())
}

/// The engine; safe to share between Python threads.
#[pyclass(frozen, module = "workz_build._native")]
struct Engine {
    engine: workz::Engine,
}

#[pymethods]
impl Engine {
    /// An engine from an engine config JSON document ("" for the embedded defaults).
    #[new]
    fn new(config_json: &str) -> PyResult<Engine> {
        guarded(|| Ok(Engine { engine: workz::embed::engine_from_json(config_json)? }))
    }

    /// Queue a build and return its handle at once.
    #[pyo3(signature = (source_dir=None, files=None, *, target=None, app_config_json=None, force=false, priority=0, timeout=None, idempotency_key=None))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        source_dir: Option<&str>,
        files: Option<&Bound<'_, PyDict>>,
        target: Option<String>,
        app_config_json: Option<&str>,
        force: bool,
        priority: i32,
        timeout: Option<u64>,
        idempotency_key: Option<String>,
    ) -> PyResult<Build> {
        guarded(|| {
            let request =
                request(source_dir, files, target, app_config_json, force, priority, timeout, idempotency_key)?;
            Ok(Build { build: SharedBuild::new(self.engine.submit(request, None)) })
        })
    }

    /// Explanation JSON: whether the next build would hit the cache and what changed.
    #[pyo3(signature = (source_dir=None, files=None, *, target=None, app_config_json=None))]
    fn explain(
        &self,
        py: Python<'_>,
        source_dir: Option<&str>,
        files: Option<&Bound<'_, PyDict>>,
        target: Option<String>,
        app_config_json: Option<&str>,
    ) -> PyResult<String> {
        let request = guarded(|| request(source_dir, files, target, app_config_json, false, 0, None, None))?;
        let engine = self.engine.clone();
        py.detach(move || guarded(|| to_json(&block_on(engine.explain(request))?)))
    }

    /// Cache statistics JSON.
    fn cache_stats(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| guarded(|| to_json(&block_on(self.engine.cache_stats())?)))
    }

    /// Remove the entries matching a glob over `<app>/<target>/<key>`; how many.
    fn cache_invalidate(&self, py: Python<'_>, pattern: &str) -> PyResult<u64> {
        py.detach(|| guarded(|| Ok(block_on(self.engine.cache_invalidate(pattern))?)))
    }

    /// Prune report JSON.
    fn cache_prune(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| guarded(|| to_json(&block_on(self.engine.cache_prune())?)))
    }
}

/// Next event JSON, or None after the last one.
async fn next_event(build: &SharedBuild) -> Option<String> {
    build.next_event().await.and_then(|record| to_json(&record).ok())
}

/// `(result_json, files, error)`: the artifact file list stays native until Python reads it
/// (a cache hit of a large app would otherwise pay for thousands of entries it may never
/// look at); the error is set when the build did not succeed.
fn outcome(result: Arc<BuildResult>) -> (String, ArtifactFiles, Option<PyErr>) {
    let json = to_json(&result.without_files()).unwrap_or_else(|e| e.to_string());
    let error = failure_of(&result).map(to_py_err);
    (json, ArtifactFiles { result }, error)
}

/// A finished build's artifact file list, turned into JSON when it is first asked for.
#[pyclass(frozen, module = "workz_build._native")]
struct ArtifactFiles {
    result: Arc<BuildResult>,
}

#[pymethods]
impl ArtifactFiles {
    /// The files as a JSON array of `{path, size, blake3}`.
    fn json(&self) -> String {
        let files = self.result.artifacts.as_ref().map(|a| a.files.as_slice()).unwrap_or_default();
        to_json(&files).unwrap_or_else(|_| "[]".into())
    }
}

/// A submitted build. `cancel` may be called from any thread.
#[pyclass(frozen, module = "workz_build._native")]
struct Build {
    build: SharedBuild,
}

#[pymethods]
impl Build {
    #[getter]
    fn build_id(&self) -> &str {
        self.build.build_id()
    }

    /// Cancel the build (queued or running).
    fn cancel(&self) {
        self.build.cancel();
    }

    /// The next event as JSON, waiting with the GIL released; None after the last.
    fn next_event(&self, py: Python<'_>) -> Option<String> {
        py.detach(|| block_on(next_event(&self.build)))
    }

    /// `(result_json, files, error_or_None)`, waiting with the GIL released.
    fn wait(&self, py: Python<'_>) -> (String, ArtifactFiles, Option<PyErr>) {
        let result = py.detach(|| block_on(self.build.result()));
        outcome(result)
    }

    /// Call `done(event_json_or_None)` from the engine's runtime when the next event arrives.
    fn next_event_then(&self, done: Py<PyAny>) {
        let build = self.build.clone();
        runtime().spawn(async move {
            let event = next_event(&build).await;
            Python::attach(|py| report_callback_error(py, done.call1(py, (event,))));
        });
    }

    /// Call `done(result_json, files, error_or_None)` from the engine's runtime when the build ends.
    fn wait_then(&self, done: Py<PyAny>) {
        let build = self.build.clone();
        runtime().spawn(async move {
            let result = build.result().await;
            Python::attach(|py| {
                let (json, files, error) = outcome(result);
                report_callback_error(py, done.call1(py, (json, files, error)));
            });
        });
    }
}

/// `done` hands a value to an event loop; if even that fails, Python's unraisable hook says so.
fn report_callback_error(py: Python<'_>, outcome: PyResult<Py<PyAny>>) {
    if let Err(e) = outcome {
        e.write_unraisable(py, None);
    }
}

/// Native part of `workz_build`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_class::<Build>()?;
    m.add_class::<ArtifactFiles>()?;
    m.add("__version__", workz::VERSION)?;
    m.add("ABI_VERSION", workz::embed::ABI_VERSION)?;
    m.add("PANIC_POINT_VAR", workz::testing::PANIC_POINT_VAR)?;
    error::register(m)
}
