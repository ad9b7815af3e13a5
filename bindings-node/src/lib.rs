//! The native half of `@workz/build`: conversions only. A request crosses as its source and
//! the caller's options (JSON, read by the core), results as JSON text (`index.js` parses it),
//! engine errors as JS `Error`s with the engine's `code`; the engine runs on the process-wide
//! runtime and each Promise is settled from there on the JS thread.

use std::collections::BTreeMap;

use napi::bindgen_prelude::{Buffer, Either, JsObjectValue, JsValue, Object};
use napi::{Env, JsDeferred};
use napi_derive::napi;
use workz::embed::{SharedBuild, catch_panic, catch_panic_async, options_from_json, request_of};
use workz::engine::runtime;
use workz::{BuildRequest, ErrorReport};

/// The engine's report as a JS `Error` whose `code` is the engine's code, with `family`,
/// `category` and `hint` beside it (`index.js` only gives it its class).
fn js_error(env: &Env, report: &ErrorReport) -> napi::Error {
    let build = || -> napi::Result<napi::Error> {
        let mut error = env.create_error(napi::Error::new(napi::Status::GenericFailure, report.message.clone()))?;
        error.set_named_property("code", report.code.as_str())?;
        error.set_named_property("family", report.family.as_str())?;
        error.set_named_property("category", report.category.as_str())?;
        error.set_named_property("hint", report.hint.clone())?;
        Ok(napi::Error::from(error.to_unknown()))
    };
    // Only fails when the JS engine cannot make objects; the message still says what happened.
    build().unwrap_or_else(|e| e)
}

/// Run a call's body; an engine error or a panic becomes a JS error.
fn guarded<T>(env: &Env, body: impl FnOnce() -> Result<T, ErrorReport>) -> napi::Result<T> {
    match catch_panic(|| Ok(body())) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(report)) => Err(js_error(env, &report)),
        Err(panic) => Err(js_error(env, &panic.report())),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ErrorReport> {
    workz::embed::to_json(value).map_err(|e| e.report())
}

/// The request for a source (a directory, or files) and the caller's options object as JSON.
fn request(
    directory: Option<String>,
    files: Option<BTreeMap<String, Either<String, Buffer>>>,
    options_json: &str,
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
    let options = options_from_json(options_json).map_err(|e| e.report())?;
    request_of(directory.as_deref(), files, options).map_err(|e| e.report())
}

/// A Promise settled with `work`'s output, run on the engine's runtime.
fn promise<F>(env: &Env, work: F) -> napi::Result<Object<'_>>
where
    F: std::future::Future<Output = Result<String, ErrorReport>> + Send + 'static,
{
    let (deferred, promise): (JsDeferred<String, _>, Object) = env.create_deferred()?;
    runtime().spawn(async move {
        // A panic in the work still settles the Promise.
        let outcome = catch_panic_async(work).await.unwrap_or_else(|panic| Err(panic.report()));
        // Settled on the JS thread, where an error object can be made: a resolver's error
        // rejects the Promise with that very object.
        deferred.resolve(move |env| outcome.map_err(|report| js_error(&env, &report)));
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
    pub fn new(env: &Env, config_json: String) -> napi::Result<Engine> {
        guarded(env, || Ok(Engine { engine: workz::embed::engine_from_json(&config_json)? }))
    }

    /// Queue a build and return its handle at once.
    #[napi]
    pub fn submit(
        &self,
        env: &Env,
        directory: Option<String>,
        files: Option<BTreeMap<String, Either<String, Buffer>>>,
        options_json: String,
    ) -> napi::Result<Build> {
        guarded(env, || {
            Ok(Build { build: SharedBuild::new(self.engine.submit(request(directory, files, &options_json)?, None)) })
        })
    }

    /// Explanation JSON: whether the next build would hit the cache and what changed.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn explain<'env>(
        &self,
        env: &'env Env,
        directory: Option<String>,
        files: Option<BTreeMap<String, Either<String, Buffer>>>,
        options_json: String,
    ) -> napi::Result<Object<'env>> {
        let request = guarded(env, || request(directory, files, &options_json))?;
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
    pub fn files_json(&self, env: &Env) -> napi::Result<String> {
        guarded(env, || {
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
