//! The native half of `@workz/build`: conversions only. Requests and results cross as JSON
//! text (`index.js` turns them into plain objects and `Error`s); the engine runs on the
//! process-wide runtime and each Promise is settled from there on the JS thread.

use std::collections::BTreeMap;

use napi::bindgen_prelude::{Buffer, Either, Object};
use napi::{Env, JsDeferred};
use napi_derive::napi;
use workz::embed::{SharedBuild, catch_panic, catch_panic_async, request_with_files};
use workz::engine::runtime;
use workz::{BuildRequest, ErrorReport};

/// A JS error carrying the engine's report as JSON in its message; `index.js` turns it into
/// an `Error` with `code`, `family` and `hint`.
fn js_error(report: &ErrorReport) -> napi::Error {
    let json = serde_json::to_string(report).unwrap_or_else(|_| report.message.clone());
    napi::Error::new(napi::Status::GenericFailure, format!("WORKZ:{json}"))
}

/// Run a call's body; an engine error or a panic becomes a JS error.
fn guarded<T>(body: impl FnOnce() -> Result<T, ErrorReport>) -> napi::Result<T> {
    match catch_panic(|| Ok(body())) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(report)) => Err(js_error(&report)),
        Err(panic) => Err(js_error(&panic.report())),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ErrorReport> {
    workz::embed::to_json(value).map_err(|e| e.report())
}

fn request(
    request_json: &str,
    files: Option<BTreeMap<String, Either<String, Buffer>>>,
) -> Result<BuildRequest, ErrorReport> {
    let files = files.map(|files| {
        files.into_iter().map(|(path, contents)| {
            let bytes = match contents {
                Either::A(text) => text.into_bytes(),
                Either::B(buffer) => buffer.to_vec(),
            };
            (path, bytes)
        })
    });
    request_with_files(request_json, files).map_err(|e| e.report())
}

/// A Promise settled with `work`'s output, run on the engine's runtime.
fn promise<F>(env: &Env, work: F) -> napi::Result<Object<'_>>
where
    F: std::future::Future<Output = Result<String, ErrorReport>> + Send + 'static,
{
    let (deferred, promise): (JsDeferred<String, _>, Object) = env.create_deferred()?;
    runtime().spawn(async move {
        // A panic in the work still settles the Promise.
        match catch_panic_async(work).await.unwrap_or_else(|panic| Err(panic.report())) {
            Ok(value) => deferred.resolve(move |_| Ok(value)),
            Err(report) => deferred.reject(js_error(&report)),
        }
    });
    Ok(promise)
}

/// The engine.
#[napi]
pub struct Engine {
    engine: workz::Engine,
}

#[napi]
impl Engine {
    /// An engine from an engine config JSON document ("" for the embedded defaults).
    #[napi(constructor)]
    pub fn new(config_json: String) -> napi::Result<Engine> {
        guarded(|| Ok(Engine { engine: workz::embed::engine_from_json(&config_json)? }))
    }

    /// Queue a build and return its handle at once.
    #[napi]
    pub fn submit(
        &self,
        request_json: String,
        files: Option<BTreeMap<String, Either<String, Buffer>>>,
    ) -> napi::Result<Build> {
        guarded(|| Ok(Build { build: SharedBuild::new(self.engine.submit(request(&request_json, files)?, None)) }))
    }

    /// Explanation JSON: whether the next build would hit the cache and what changed.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn explain<'env>(
        &self,
        env: &'env Env,
        request_json: String,
        files: Option<BTreeMap<String, Either<String, Buffer>>>,
    ) -> napi::Result<Object<'env>> {
        let request = guarded(|| request(&request_json, files))?;
        let engine = self.engine.clone();
        promise(env, async move { to_json(&engine.explain(request).await?) })
    }

    /// Cache statistics JSON.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn cache_stats<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let engine = self.engine.clone();
        promise(env, async move { to_json(&engine.cache_stats().await?) })
    }

    /// Remove the entries matching a glob over `<app>/<target>/<key>`; how many (as a string).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn cache_invalidate<'env>(&self, env: &'env Env, pattern: String) -> napi::Result<Object<'env>> {
        let engine = self.engine.clone();
        promise(env, async move { Ok(engine.cache_invalidate(&pattern).await?.to_string()) })
    }

    /// Prune report JSON.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn cache_prune<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let engine = self.engine.clone();
        promise(env, async move { to_json(&engine.cache_prune().await?) })
    }
}

/// A submitted build.
#[napi]
pub struct Build {
    build: SharedBuild,
}

#[napi]
impl Build {
    #[napi(getter)]
    pub fn build_id(&self) -> String {
        self.build.build_id().to_string()
    }

    /// Cancel the build (queued or running).
    #[napi]
    pub fn cancel(&self) {
        self.build.cancel();
    }

    /// The next event as JSON, or "" after the last one.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn next_event<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let build = self.build.clone();
        promise(env, async move {
            match build.next_event().await {
                Some(record) => to_json(&record),
                None => Ok(String::new()),
            }
        })
    }

    /// The BuildResult JSON once the build ends, whatever its status, without the artifact
    /// file list (`filesJson` has it: a large app's list is read only when wanted); the same
    /// on later calls.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn wait<'env>(&self, env: &'env Env) -> napi::Result<Object<'env>> {
        let build = self.build.clone();
        promise(env, async move { to_json(&build.result().await.without_files()) })
    }

    /// The artifact files of a build `wait` has seen end, as JSON (`[]` before that).
    #[napi]
    pub fn files_json(&self) -> napi::Result<String> {
        guarded(|| {
            let result = self.build.ended();
            let files = result.as_ref().and_then(|r| r.artifacts.as_ref()).map(|a| a.files.as_slice());
            to_json(&files.unwrap_or_default())
        })
    }
}

/// The engine's version.
#[napi]
pub fn version() -> String {
    workz::VERSION.to_string()
}

/// The ABI version of the binding.
#[napi]
pub fn abi_version() -> u32 {
    workz::embed::ABI_VERSION
}

/// The environment variable of the engine's test-only panic hook.
#[napi]
pub fn panic_point_var() -> String {
    workz::testing::PANIC_POINT_VAR.to_string()
}
