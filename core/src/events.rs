//! Build events: one serializable enum that the CLI and every binding consume.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use crate::report::ErrorReport;
use crate::result::{BuildStatus, Warning};

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageOutcome {
    Succeeded,
    Skipped,
    Failed,
}

/// Something that happened in a build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BuildEvent {
    /// Waiting in the queue behind `position` other builds.
    Queued {
        position: usize,
    },
    /// A worker took the build.
    Started,
    StageStarted {
        stage: String,
    },
    StageFinished {
        stage: String,
        outcome: StageOutcome,
        seconds: f64,
    },
    /// A line of an external command's output.
    Log {
        stream: LogStream,
        line: String,
    },
    /// An external command was started (argv joined with shell quoting, for display).
    ProcessStarted {
        command: String,
    },
    CacheHit {
        tier: String,
        key: String,
    },
    CacheMiss {
        key: String,
    },
    /// Something the user should know that does not fail the build.
    Warning {
        code: String,
        message: String,
    },
    /// A stage failed with a retryable error and runs again after `delay_seconds`.
    Retrying {
        stage: String,
        attempt: u32,
        delay_seconds: f64,
        error: ErrorReport,
    },
    /// The build ended.
    Finished {
        status: BuildStatus,
        duration: f64,
    },
}

/// An event with the build it belongs to, its order and its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub build_id: String,
    /// 0, 1, 2, … within the build.
    pub seq: u64,
    /// Seconds since the build was submitted.
    pub elapsed: f64,
    #[serde(flatten)]
    pub event: BuildEvent,
}

/// A callback that receives a build's events, on the thread that runs the build.
pub type EventCallback = Arc<dyn Fn(&EventRecord) + Send + Sync>;

/// Sends one build's events to its subscribers.
#[derive(Clone)]
pub struct EventEmitter {
    inner: Arc<EmitterInner>,
}

struct EmitterInner {
    build_id: String,
    seq: AtomicU64,
    start: Instant,
    per_build: Option<mpsc::UnboundedSender<EventRecord>>,
    engine_wide: Option<broadcast::Sender<EventRecord>>,
    callback: Option<EventCallback>,
    collected: Option<EventCollector>,
    /// Warnings from shared components (see [`warn_current`]), for the build's result.
    shared_warnings: Mutex<Vec<Warning>>,
}

impl std::fmt::Debug for EventEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventEmitter").field("build_id", &self.inner.build_id).finish()
    }
}

impl EventEmitter {
    pub(crate) fn new(
        build_id: String,
        per_build: Option<mpsc::UnboundedSender<EventRecord>>,
        engine_wide: Option<broadcast::Sender<EventRecord>>,
        callback: Option<EventCallback>,
    ) -> Self {
        EventEmitter {
            inner: Arc::new(EmitterInner {
                build_id,
                seq: AtomicU64::new(0),
                start: Instant::now(),
                per_build,
                engine_wide,
                callback,
                collected: None,
                shared_warnings: Mutex::default(),
            }),
        }
    }

    /// An emitter that keeps every event in memory (for tests and tools).
    pub fn collecting(build_id: &str) -> (Self, EventCollector) {
        let collector = EventCollector::default();
        let emitter = EventEmitter {
            inner: Arc::new(EmitterInner {
                build_id: build_id.to_string(),
                seq: AtomicU64::new(0),
                start: Instant::now(),
                per_build: None,
                engine_wide: None,
                callback: None,
                collected: Some(collector.clone()),
                shared_warnings: Mutex::default(),
            }),
        };
        (emitter, collector)
    }

    pub fn build_id(&self) -> &str {
        &self.inner.build_id
    }

    /// Send an event to every subscriber. A subscriber that went away is skipped.
    pub fn emit(&self, event: BuildEvent) {
        let inner = &self.inner;
        let record = EventRecord {
            build_id: inner.build_id.clone(),
            seq: inner.seq.fetch_add(1, Ordering::Relaxed),
            elapsed: inner.start.elapsed().as_secs_f64(),
            event,
        };
        if let Some(callback) = &inner.callback {
            // A callback that panics must not take the build down with it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(&record)));
        }
        if let Some(collected) = &inner.collected {
            collected.push(record.clone());
        }
        if let Some(tx) = &inner.engine_wide {
            let _ = tx.send(record.clone());
        }
        if let Some(tx) = &inner.per_build {
            let _ = tx.send(record);
        }
    }

    /// Emit a warning event.
    pub fn warn(&self, code: &str, message: impl Into<String>) {
        self.emit(BuildEvent::Warning { code: code.to_string(), message: message.into() });
    }

    /// Emit a warning from a shared component and keep it for the build's result (the same
    /// warning twice is kept once: a tier that is down fails every call of a build).
    pub(crate) fn warn_shared(&self, code: &str, message: String) {
        let mut kept = self.inner.shared_warnings.lock().unwrap_or_else(|p| p.into_inner());
        if kept.iter().any(|w| w.code == code && w.message == message) {
            return;
        }
        kept.push(Warning { code: code.to_string(), message: message.clone() });
        drop(kept);
        self.warn(code, message);
    }

    /// The warnings shared components gave this build, in order (taken once).
    pub(crate) fn take_shared_warnings(&self) -> Vec<Warning> {
        std::mem::take(&mut *self.inner.shared_warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Events kept in memory by [`EventEmitter::collecting`].
#[derive(Clone, Default, Debug)]
pub struct EventCollector(Arc<Mutex<Vec<EventRecord>>>);

impl EventCollector {
    fn push(&self, record: EventRecord) {
        if let Ok(mut v) = self.0.lock() {
            v.push(record);
        }
    }

    pub fn events(&self) -> Vec<EventRecord> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

tokio::task_local! {
    /// The emitter of the build running on this task: lets shared components (a
    /// cache tier that degrades, say) warn the build that called them.
    static CURRENT: EventEmitter;
}

/// Run `fut` with `emitter` as the current build's emitter.
pub(crate) async fn scope<F: std::future::Future>(emitter: EventEmitter, fut: F) -> F::Output {
    CURRENT.scope(emitter, fut).await
}

/// Warn the build running on this task, if any (else only log).
pub(crate) fn warn_current(code: &str, message: String) {
    tracing::warn!(code, "{message}");
    let _ = CURRENT.try_with(|e| e.warn_shared(code, message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_flat_with_a_type_tag() {
        let record = EventRecord {
            build_id: "b1".into(),
            seq: 3,
            elapsed: 0.5,
            event: BuildEvent::CacheHit { tier: "filesystem".into(), key: "ab".into() },
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["type"], "cache_hit");
        assert_eq!(json["tier"], "filesystem");
        assert_eq!(json["build_id"], "b1");
        let back: EventRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn a_panicking_callback_does_not_stop_emission() {
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let callback = Arc::new(move |_: &EventRecord| {
            counted.fetch_add(1, Ordering::Relaxed);
            panic!("callback bug")
        });
        let emitter = EventEmitter::new("b".into(), Some(tx), None, Some(callback));
        emitter.emit(BuildEvent::Started);
        emitter.emit(BuildEvent::Finished { status: crate::result::BuildStatus::Succeeded, duration: 0.1 });
        // Both events reached the channel, in order, and the callback was called for each.
        assert_eq!(rx.try_recv().unwrap().event, BuildEvent::Started);
        assert!(matches!(rx.try_recv().unwrap().event, BuildEvent::Finished { .. }));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }
}
