//! What every binding (C, Python, Node) needs from the engine, so that each of them only
//! converts: engines and requests from JSON, and panics turned into `internal` errors.

use std::panic::{AssertUnwindSafe, UnwindSafe};

use crate::config::EngineConfig;
use crate::engine::{BuildHandle, Engine, block_on};
use crate::error::{Error, ErrorReport, Result};
use crate::events::EventRecord;
use crate::pipeline::{BuildRequest, BuildStatus};
use crate::result::BuildResult;

/// An engine from an engine config document; empty (or only whitespace) means the
/// embedded defaults. Unknown keys are logged, as the CLI warns of them.
pub fn engine_from_json(config_json: &str) -> Result<Engine> {
    let parsed = EngineConfig::from_json("engine config", config_json)?;
    for key in &parsed.unknown_keys {
        tracing::warn!("engine config: unknown key {key} ignored");
    }
    Engine::new(parsed.value)
}

/// A build request from JSON (`{"source": {"directory": "..."}, "target": "web", ...}`).
pub fn request_from_json(request_json: &str) -> Result<BuildRequest> {
    let de = &mut serde_json::Deserializer::from_str(request_json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!(" at {path}") };
        Error::InvalidRequest(format!("the build request is not valid{at}: {}", e.inner()))
    })
}

/// Wait for a submitted build on the calling thread, handing it each event as it arrives
/// (hosts such as PHP and Python may only be called back on their own thread).
pub fn wait_delivering_events(mut handle: BuildHandle, mut on_event: impl FnMut(&EventRecord)) -> BuildResult {
    block_on(async move {
        while let Some(record) = handle.next_event().await {
            on_event(&record);
        }
        handle.wait().await
    })
}

/// The error of a build that did not succeed, as bindings raise it.
pub fn failure_of(result: &BuildResult) -> Option<ErrorReport> {
    match (result.status, &result.error) {
        (BuildStatus::Succeeded, _) => None,
        (_, Some(report)) => Some(report.clone()),
        (status, None) => Some(Error::Internal(format!("the build ended {status:?} without an error")).report()),
    }
}

/// Run `f`; a panic becomes an `internal` error instead of unwinding into the host.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T> + UnwindSafe) -> Result<T> {
    std::panic::catch_unwind(f).unwrap_or_else(|payload| Err(panic_error(payload.as_ref())))
}

/// [`catch_panic`] for closures that capture references to the caller's state.
pub fn catch_panic_unchecked<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_panic(AssertUnwindSafe(f))
}

/// The `internal` error for a caught panic, with its message.
pub fn panic_error(payload: &(dyn std::any::Any + Send)) -> Error {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    Error::Internal(format!("the engine panicked: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_internal_errors() {
        let err = catch_panic(|| -> Result<()> { panic!("boom {}", 1) }).unwrap_err();
        assert_eq!(err.code(), "internal");
        assert!(err.to_string().contains("boom 1"), "{err}");
        let err = catch_panic(|| -> Result<()> { std::panic::panic_any(7u8) }).unwrap_err();
        assert!(err.to_string().contains("without a message"), "{err}");
        assert_eq!(catch_panic(|| Ok(3)).unwrap(), 3);
    }

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
    fn bad_engine_configs_are_config_errors() {
        let err = engine_from_json("{\"buildSystem\": {\"maxConcurrentBuilds\": \"x\"}}").err().unwrap();
        assert_eq!(err.code(), "config_invalid");
        assert_eq!(engine_from_json("[").err().unwrap().code(), "config_parse_error");
    }
}
