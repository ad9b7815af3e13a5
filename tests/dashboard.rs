//! The dashboard of `workz-build serve` in a real headless Chromium: `tests/dashboard/drive.mjs`
//! (playwright-core, which `scripts/test.sh` installs) starts the service, uploads apps, stops
//! and restarts it, and checks what the page shows. Screenshots go to
//! `$CARGO_TARGET_DIR/dashboard-screenshots`, or to `docs/images` with
//! `WORKZ_UPDATE_SCREENSHOTS=1` (how the ones in docs/monitoring.md were made).

use std::path::PathBuf;
use std::process::Command;

fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
        .expect("headless Chromium is needed for the dashboard test: scripts/test.sh installs Debian's `chromium`")
}

#[test]
fn the_dashboard_shows_history_live_builds_the_queue_and_alerts_and_reconnects_after_a_restart() {
    let playwright = std::env::var("WORKZ_TEST_PLAYWRIGHT")
        .expect("WORKZ_TEST_PLAYWRIGHT must name an installed playwright-core package (scripts/test.sh installs it)");
    // Read at run time: a test binary built from another checkout sharing the target dir is reused.
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let repo = manifest.parent().unwrap();
    let shots = if std::env::var_os("WORKZ_UPDATE_SCREENSHOTS").is_some() {
        repo.join("docs/images")
    } else {
        let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo.join("target"));
        target.join("dashboard-screenshots")
    };
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("node")
        .arg(repo.join("tests/dashboard/drive.mjs"))
        .env("WORKZ_TEST_PLAYWRIGHT", playwright)
        .env("WORKZ_BIN", env!("CARGO_BIN_EXE_workz-build"))
        .env("WORKZ_ROOT", root.path())
        .env("WORKZ_SCREENSHOTS", &shots)
        .env("WORKZ_CHROMIUM", chromium())
        .env_remove("WORKZ_LOG")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("dashboard: all checks passed"), "{stdout}\n{stderr}");
    assert!(shots.join("dashboard.png").is_file() && shots.join("dashboard-phone.png").is_file());
}
