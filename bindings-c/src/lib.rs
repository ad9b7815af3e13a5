//! The C ABI of the Workz build engine. Only conversions live here: C strings and JSON in,
//! JSON and error objects out; every exported body runs inside [`guard`] so that a panic
//! never unwinds into the host. The header `include/workz_build.h` is generated from this
//! file by cbindgen (the `header_is_current` test regenerates and compares it).

//!
//! # Safety
//!
//! One contract for every exported function, stated once here and in the header rather than
//! per function: pointers are NULL or valid for what the function does with them (strings
//! NUL-terminated, handles from this library and not yet freed, out-parameters writable).
//! NULL is checked and reported as an error.

#![allow(non_camel_case_types)]
// Every exported function checks its pointers itself; the `unsafe` contract is the one above.
#![allow(clippy::not_unsafe_ptr_arg_deref, clippy::missing_safety_doc)]

use std::ffi::{CStr, CString, c_char, c_void};
use std::ptr;
use std::sync::Arc;

use workz::embed::{SharedBuild, catch_panic, failure_of, request_from_json};
use workz::engine::block_on;
use workz::{BuildResult, Engine, Error, ErrorReport, EventRecord};

/// What an exported body returns: its error as the report that becomes a `wz_error`.
type Result<T> = std::result::Result<T, ErrorReport>;

/// The ABI version (the header's WZ_ABI_VERSION, checked by a unit test).
const ABI_VERSION: u32 = workz::embed::ABI_VERSION;

/// An engine. Thread-safe: one engine may be used from several threads at once.
pub struct wz_engine {
    engine: Engine,
}

/// A build submitted with `wz_engine_submit`. `wz_build_cancel` may be called from any
/// thread; the other functions on one build must not run concurrently with each other.
pub struct wz_build {
    /// The id as a C string, borrowed out by `wz_build_id`.
    build_id: CString,
    build: SharedBuild,
}

/// An error: a stable code, a family, a message and maybe a hint. Owned by the caller,
/// freed with `wz_error_free`.
pub struct wz_error {
    code: CString,
    family: CString,
    message: CString,
    hint: Option<CString>,
}

/// Receives one event as a JSON document (`{"build_id", "seq", "elapsed", "type", ...}`);
/// the string is valid only during the call. Called on the thread that called the function
/// the callback was given to, before that function returns.
pub type wz_event_callback = Option<unsafe extern "C" fn(event_json: *const c_char, user_data: *mut c_void)>;

fn cstring(text: impl Into<Vec<u8>>) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let mut bytes = e.into_vec();
        bytes.retain(|b| *b != 0);
        CString::new(bytes).expect("NUL bytes were removed")
    })
}

fn error_object(report: ErrorReport) -> *mut wz_error {
    Box::into_raw(Box::new(wz_error {
        code: cstring(report.code),
        family: cstring(report.family.as_str()),
        message: cstring(report.message),
        hint: report.hint.map(cstring),
    }))
}

fn invalid(message: impl Into<String>) -> ErrorReport {
    Error::InvalidRequest(message.into()).report()
}

/// Run an exported function's body: its error, or a panic inside it, becomes an error object.
fn guard(body: impl FnOnce() -> Result<()>) -> *mut wz_error {
    match catch_panic(|| Ok(body())) {
        Ok(Ok(())) => ptr::null_mut(),
        Ok(Err(report)) => error_object(report),
        Err(panic) => error_object(panic.report()),
    }
}

/// Run an exported function that cannot fail (frees, accessors): a panic is swallowed and
/// `fallback` returned.
fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// A required UTF-8 string argument.
unsafe fn text<'a>(arg: *const c_char, name: &str) -> Result<&'a str> {
    if arg.is_null() {
        return Err(invalid(format!("{name} is NULL")));
    }
    // SAFETY: the caller passes a NUL-terminated string (the header's contract).
    let bytes = unsafe { CStr::from_ptr(arg) };
    bytes.to_str().map_err(|e| invalid(format!("{name} is not UTF-8: {e}")))
}

/// A required out-parameter, zeroed first.
unsafe fn out<'a, T>(arg: *mut *mut T, name: &str) -> Result<&'a mut *mut T> {
    if arg.is_null() {
        return Err(invalid(format!("{name} is NULL")));
    }
    // SAFETY: non-null, and the caller passes a writable pointer (the header's contract).
    let slot = unsafe { &mut *arg };
    *slot = ptr::null_mut();
    Ok(slot)
}

/// A required out-parameter of plain data, zeroed (set to its default) first.
unsafe fn out_value<'a, T: Default>(arg: *mut T, name: &str) -> Result<&'a mut T> {
    // SAFETY: a non-null out-parameter is writable (the header's contract).
    let slot = unsafe { arg.as_mut() }.ok_or_else(|| invalid(format!("{name} is NULL")))?;
    *slot = T::default();
    Ok(slot)
}

/// Take back what `*slot` owns (if anything) and write NULL there: the body of every `*_free`.
unsafe fn take_box<T>(slot: *mut *mut T) -> Option<Box<T>> {
    if slot.is_null() {
        return None;
    }
    // SAFETY: non-null; the pointee is NULL or a pointer from Box::into_raw in this library.
    let owned = unsafe { std::mem::replace(&mut *slot, ptr::null_mut()) };
    // SAFETY: from Box::into_raw, and NULL is written back so it is freed once.
    (!owned.is_null()).then(|| unsafe { Box::from_raw(owned) })
}

unsafe fn engine_ref<'a>(engine: *const wz_engine) -> Result<&'a Engine> {
    // SAFETY: a non-null engine comes from wz_engine_new and is not yet freed (the contract).
    unsafe { engine.as_ref() }.map(|e| &e.engine).ok_or_else(|| invalid("engine is NULL"))
}

unsafe fn build_ref<'a>(build: *const wz_build) -> Result<&'a wz_build> {
    // SAFETY: a non-null build comes from wz_engine_submit and is not yet freed (the contract).
    unsafe { build.as_ref() }.ok_or_else(|| invalid("build is NULL"))
}

fn json<T: serde::Serialize>(value: &T) -> Result<CString> {
    workz::embed::to_json(value).map(cstring).map_err(|e| e.report())
}

/// Hands events to a C callback.
#[derive(Clone, Copy)]
struct Callback {
    function: unsafe extern "C" fn(*const c_char, *mut c_void),
    user_data: *mut c_void,
}

impl Callback {
    fn new(function: wz_event_callback, user_data: *mut c_void) -> Option<Callback> {
        function.map(|function| Callback { function, user_data })
    }

    fn send(self, record: &EventRecord) {
        if let Ok(event) = json(record) {
            // SAFETY: the function pointer and user_data are the caller's, called as documented.
            unsafe { (self.function)(event.as_ptr(), self.user_data) }
        }
    }
}

/// The error of a build that did not succeed (its result JSON is still written).
fn outcome_error(result: &BuildResult) -> Result<()> {
    failure_of(result).map_or(Ok(()), Err)
}

fn deliver(callback: Option<Callback>) -> impl FnMut(&EventRecord) {
    move |record| {
        if let Some(callback) = callback {
            callback.send(record);
        }
    }
}

/// Wait for the build; with a callback, its events go to it on this thread as they arrive
/// (without one, the thread is not woken for each event).
fn wait(build: &SharedBuild, on_event: wz_event_callback, user_data: *mut c_void) -> Arc<BuildResult> {
    match Callback::new(on_event, user_data) {
        Some(callback) => build.wait_delivering_events(deliver(Some(callback))),
        None => block_on(build.result()),
    }
}

/// The engine's version, such as "0.1.0". Static: do not free. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wz_version() -> *const c_char {
    guard_value(ptr::null(), || {
        static VERSION: std::sync::OnceLock<CString> = std::sync::OnceLock::new();
        VERSION.get_or_init(|| cstring(workz::VERSION)).as_ptr()
    })
}

/// The ABI version of the library (compare with WZ_ABI_VERSION). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn wz_abi_version() -> u32 {
    guard_value(ABI_VERSION, || ABI_VERSION)
}

/// Create an engine from an engine config JSON document (NULL or "" for the embedded
/// defaults). On success `*engine_out` owns the engine: free it with `wz_engine_free`.
/// Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_engine_new(config_json: *const c_char, engine_out: *mut *mut wz_engine) -> *mut wz_error {
    guard(|| {
        let slot = unsafe { out(engine_out, "engine_out") }?;
        let config = if config_json.is_null() { "" } else { unsafe { text(config_json, "config_json") }? };
        let engine = workz::embed::engine_from_json(config)?;
        *slot = Box::into_raw(Box::new(wz_engine { engine }));
        Ok(())
    })
}

/// Free an engine and write NULL back; NULL and `*engine == NULL` are ignored. Builds still
/// running on it are cancelled. Do not call while another thread uses the engine.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_engine_free(engine: *mut *mut wz_engine) {
    guard_value((), || drop(unsafe { take_box(engine) }))
}

/// Build and wait. `request_json` is a BuildRequest (`{"source": {"directory": "/path"}}` or
/// `{"source": {"files": {"index.html": "..."}}}`, with optional `target`, `app_config`,
/// `priority`, `force`, `timeout`). `on_event` (may be NULL) receives each event on this
/// thread while the build runs. Once the build ran, `*result_json_out` holds the BuildResult
/// JSON (free with `wz_string_free`) whatever its status, and the returned error is the
/// build's error when it did not succeed. Thread-safe: several threads may build at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_engine_build(
    engine: *const wz_engine,
    request_json: *const c_char,
    on_event: wz_event_callback,
    user_data: *mut c_void,
    result_json_out: *mut *mut c_char,
) -> *mut wz_error {
    guard(|| {
        let slot = unsafe { out(result_json_out, "result_json_out") }?;
        let engine = unsafe { engine_ref(engine) }?;
        let request = request_from_json(unsafe { text(request_json, "request_json") }?)?;
        let build = SharedBuild::new(engine.submit(request, None));
        let result = wait(&build, on_event, user_data);
        *slot = json(&result)?.into_raw();
        outcome_error(&result)
    })
}

/// Queue a build and return at once. `*build_out` owns the handle: free it with
/// `wz_build_free`. Events wait in the handle until `wz_build_poll` or `wz_build_wait`
/// delivers them. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_engine_submit(
    engine: *const wz_engine,
    request_json: *const c_char,
    build_out: *mut *mut wz_build,
) -> *mut wz_error {
    guard(|| {
        let slot = unsafe { out(build_out, "build_out") }?;
        let engine = unsafe { engine_ref(engine) }?;
        let request = request_from_json(unsafe { text(request_json, "request_json") }?)?;
        let build = SharedBuild::new(engine.submit(request, None));
        *slot = Box::into_raw(Box::new(wz_build { build_id: cstring(build.build_id()), build }));
        Ok(())
    })
}

/// The build's id (borrowed: valid until `wz_build_free`), or NULL for a NULL build.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_build_id(build: *const wz_build) -> *const c_char {
    guard_value(ptr::null(), || unsafe { build_ref(build) }.map_or(ptr::null(), |b| b.build_id.as_ptr()))
}

/// Deliver the events that arrived since the last call to `on_event` (may be NULL), without
/// waiting, and set `*finished_out` to whether the build has ended.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_build_poll(
    build: *const wz_build,
    on_event: wz_event_callback,
    user_data: *mut c_void,
    finished_out: *mut bool,
) -> *mut wz_error {
    guard(|| {
        let finished = unsafe { out_value(finished_out, "finished_out") }?;
        let build = unsafe { build_ref(build) }?;
        *finished = build.build.poll(deliver(Callback::new(on_event, user_data))).is_some();
        Ok(())
    })
}

/// Wait for the build to end, delivering its remaining events to `on_event` (may be NULL) on
/// this thread. `*result_json_out` then holds the BuildResult JSON (free with
/// `wz_string_free`) whatever its status; the returned error is the build's error when it
/// did not succeed. May be called again: it returns the same result.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_build_wait(
    build: *const wz_build,
    on_event: wz_event_callback,
    user_data: *mut c_void,
    result_json_out: *mut *mut c_char,
) -> *mut wz_error {
    guard(|| {
        let slot = unsafe { out(result_json_out, "result_json_out") }?;
        let build = unsafe { build_ref(build) }?;
        let result = wait(&build.build, on_event, user_data);
        *slot = json(&result)?.into_raw();
        outcome_error(&result)
    })
}

/// Cancel the build (queued or running); its result then has status "cancelled". Thread-safe:
/// may be called from any thread, also while another waits on the build.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_build_cancel(build: *const wz_build) -> *mut wz_error {
    guard(|| {
        unsafe { build_ref(build) }?.build.cancel();
        Ok(())
    })
}

/// Free a build handle and write NULL back; NULL and `*build == NULL` are ignored. A build
/// still running goes on (cancel it first to stop it).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_build_free(build: *mut *mut wz_build) {
    guard_value((), || drop(unsafe { take_box(build) }))
}

/// Whether the next build of `request_json` would hit the cache, and if not, what changed:
/// an Explanation JSON in `*explanation_json_out` (free with `wz_string_free`). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_engine_explain(
    engine: *const wz_engine,
    request_json: *const c_char,
    explanation_json_out: *mut *mut c_char,
) -> *mut wz_error {
    guard(|| {
        let slot = unsafe { out(explanation_json_out, "explanation_json_out") }?;
        let engine = unsafe { engine_ref(engine) }?;
        let request = request_from_json(unsafe { text(request_json, "request_json") }?)?;
        let explanation = block_on(engine.explain(request))?;
        *slot = json(&explanation)?.into_raw();
        Ok(())
    })
}

/// Cache statistics JSON (`{"tiers": [...], "usage": [...]}`) in `*stats_json_out` (free
/// with `wz_string_free`). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_engine_cache_stats(
    engine: *const wz_engine,
    stats_json_out: *mut *mut c_char,
) -> *mut wz_error {
    guard(|| {
        let slot = unsafe { out(stats_json_out, "stats_json_out") }?;
        let engine = unsafe { engine_ref(engine) }?;
        let stats = block_on(engine.cache_stats())?;
        *slot = json(&stats)?.into_raw();
        Ok(())
    })
}

/// Remove the cache entries matching a glob over `<app>/<target>/<key>` (such as `shop/web/` and a star);
/// `*removed_out` is how many. Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_engine_cache_invalidate(
    engine: *const wz_engine,
    pattern: *const c_char,
    removed_out: *mut u64,
) -> *mut wz_error {
    guard(|| {
        let removed = unsafe { out_value(removed_out, "removed_out") }?;
        let engine = unsafe { engine_ref(engine) }?;
        let pattern = unsafe { text(pattern, "pattern") }?;
        *removed = block_on(engine.cache_invalidate(pattern))?;
        Ok(())
    })
}

/// Remove expired entries and blobs no entry uses; a PruneReport JSON in
/// `*report_json_out` (free with `wz_string_free`). Thread-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_engine_cache_prune(
    engine: *const wz_engine,
    report_json_out: *mut *mut c_char,
) -> *mut wz_error {
    guard(|| {
        let slot = unsafe { out(report_json_out, "report_json_out") }?;
        let engine = unsafe { engine_ref(engine) }?;
        let report = block_on(engine.cache_prune())?;
        *slot = json(&report)?.into_raw();
        Ok(())
    })
}

unsafe fn error_field(error: *const wz_error, field: impl FnOnce(&wz_error) -> *const c_char) -> *const c_char {
    // SAFETY: a non-null error comes from this library and is not yet freed (the contract).
    guard_value(ptr::null(), || unsafe { error.as_ref() }.map_or(ptr::null(), field))
}

/// The error's stable code ("validation_failed", see docs/errors.md). Borrowed: valid until
/// `wz_error_free`. NULL for a NULL error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_error_code(error: *const wz_error) -> *const c_char {
    unsafe { error_field(error, |e| e.code.as_ptr()) }
}

/// The error's family ("config", "validation", "dependency", "toolchain", "build",
/// "timeout", "cancelled", "storage", "internal"). Borrowed, like `wz_error_code`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_error_family(error: *const wz_error) -> *const c_char {
    unsafe { error_field(error, |e| e.family.as_ptr()) }
}

/// The error's message for people. Borrowed, like `wz_error_code`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_error_message(error: *const wz_error) -> *const c_char {
    unsafe { error_field(error, |e| e.message.as_ptr()) }
}

/// What to do about the error, or NULL when there is no hint. Borrowed, like `wz_error_code`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_error_hint(error: *const wz_error) -> *const c_char {
    unsafe { error_field(error, |e| e.hint.as_ref().map_or(ptr::null(), |h| h.as_ptr())) }
}

/// Free an error and write NULL back; NULL and `*error == NULL` are ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_error_free(error: *mut *mut wz_error) {
    guard_value((), || drop(unsafe { take_box(error) }))
}

/// Free a string this library returned and write NULL back; NULL and `*string == NULL` are
/// ignored.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wz_string_free(string: *mut *mut c_char) {
    guard_value((), || {
        if string.is_null() {
            return;
        }
        // SAFETY: non-null; the pointee is NULL or a string from CString::into_raw here.
        let owned = unsafe { std::mem::replace(&mut *string, ptr::null_mut()) };
        if !owned.is_null() {
            // SAFETY: from CString::into_raw in this library, freed once.
            drop(unsafe { CString::from_raw(owned) });
        }
    })
}

#[cfg(test)]
mod tests;
