//! Helpers shared by the engine's own tests (unit, integration and bindings). Not API.

use std::time::{Duration, Instant};

/// Whether process `pid` is gone (or a zombie) within `timeout`.
pub fn wait_until_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !alive(pid) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process that exists and is not a zombie.
#[cfg(target_os = "linux")]
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// A process that exists (without /proc a zombie counts as alive: a test then fails rather
/// than passing on a process it cannot see).
#[cfg(not(target_os = "linux"))]
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// The environment variable that makes [`panic_point`] panic: set it to a stage name
/// (`validate`, `build`, …) or `explain` to test how the engine and its bindings survive a
/// panic inside the engine.
pub const PANIC_POINT_VAR: &str = "WORKZ_BUILD_TEST_PANIC_AT";

/// Panic here when [`PANIC_POINT_VAR`] names this point. Only with the `test-hooks` feature,
/// which only the test suites turn on.
#[cfg(feature = "test-hooks")]
pub fn panic_point(name: &str) {
    if std::env::var_os(PANIC_POINT_VAR).is_some_and(|v| v == name) {
        panic!("test panic at {name} ({PANIC_POINT_VAR})");
    }
}

/// Without the `test-hooks` feature there is no panic point.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn panic_point(_name: &str) {}
