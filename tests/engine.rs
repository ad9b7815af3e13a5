//! End-to-end tests of the engine through its Rust API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use workz_build::cache::FilesystemCache;
use workz_build::config::AppType;
use workz_build::events::BuildEvent;
use workz_build::process::ProcessError;
use workz_build::source::{FileBytes, SourceSpec};
use workz_build::{BuildContext, BuildRequest, BuildResult, BuildStatus, Digest, Engine, EngineConfig};
use workz_build::{BuildOutput, PlatformBuilder};

/// A scratch world: the engine's roots and the app live under one temp dir.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> EngineConfig {
        let mut config = EngineConfig::default();
        config.cache.dir = Some(self.path().join("cache"));
        config.storage.artifacts_dir = Some(self.path().join("artifacts"));
        config.build_system.retry_backoff = 0.01;
        config
    }

    fn engine(&self) -> Engine {
        Engine::new(self.config()).unwrap()
    }

    /// Write an app under `name` with a workz.json built from `app_json` and the given files.
    fn app(&self, name: &str, app_json: serde_json::Value, files: &[(&str, &str)]) -> PathBuf {
        let root = self.path().join(name);
        write(&root.join("workz.json"), &app_json.to_string());
        for (path, body) in files {
            write(&root.join(path), body);
        }
        root
    }

    fn static_app(&self, name: &str) -> PathBuf {
        let css = "body { color: #333; margin: 0 auto; max-width: 40rem; }\n".repeat(20);
        self.app(
            name,
            serde_json::json!({"name": "Shop", "version": "1.2.0", "appType": "static"}),
            &[("index.html", "<!doctype html><h1>Shop</h1>"), ("css/site.css", &css), ("img/a.txt", "a")],
        )
    }

    fn fs_cache(&self) -> FilesystemCache {
        FilesystemCache::open(&self.path().join("cache/store"), Duration::from_secs(3600), u64::MAX).unwrap()
    }

    /// Entries directly under the world dir, besides the ones we expect.
    fn stray_entries(&self, expected: &[&str]) -> Vec<String> {
        std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !expected.contains(&n.as_str()))
            .collect()
    }

    /// Build and scratch directories left behind.
    fn leftovers(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for dir in [self.path().join("cache/work"), self.path().join("artifacts/.staging")] {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                left.extend(rd.map(|e| e.unwrap().path()));
            }
        }
        left
    }
}

fn write(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

fn assert_succeeded(result: &BuildResult) {
    assert_eq!(result.status, BuildStatus::Succeeded, "{:#?}", result.error);
}

/// Every published file matches its manifest entry.
fn assert_release_intact(result: &BuildResult) {
    let artifacts = result.artifacts.as_ref().expect("a published release");
    let root = Path::new(&artifacts.path);
    let manifest: workz_build::Manifest =
        serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
    if !artifacts.reused {
        assert_eq!(manifest.build_id, result.build_id);
    }
    assert_eq!(manifest.files.len(), artifacts.files.len());
    for file in &manifest.files {
        let bytes = std::fs::read(root.join(&file.path)).unwrap();
        assert_eq!(Digest::of(&bytes), file.blake3, "{}", file.path);
        assert_eq!(bytes.len() as u64, file.size);
    }
}

fn error_code(result: &BuildResult) -> &str {
    result.error.as_ref().map(|e| e.code.as_str()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_app_builds_then_hits_the_cache() {
    let world = World::new();
    let app = world.static_app("shop");
    let engine = world.engine();

    let first = engine.build(BuildRequest::directory(&app)).await;
    assert_succeeded(&first);
    assert!(!first.cache.hit);
    assert_eq!(first.cache.key.as_ref().unwrap().len(), 64);
    assert_eq!(first.target.as_deref(), Some("web"));
    let files: Vec<&str> = first.artifacts.as_ref().unwrap().files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(files, vec!["css/site.css", "css/site.css.gz", "img/a.txt", "index.html"]);
    assert_release_intact(&first);
    for stage in ["validate", "dependencies", "cache", "build", "optimize", "package", "cache_store", "deploy"] {
        assert!(first.timings.get(stage).is_some(), "no timing for {stage}");
    }

    let second = engine.build(BuildRequest::directory(&app)).await;
    assert_succeeded(&second);
    assert!(second.cache.hit);
    assert_eq!(second.cache.tier.as_deref(), Some("memory"), "the memory tier was filled by the store");
    assert_eq!(second.cache.key, first.cache.key);
    assert!(second.timings.get("build").is_none(), "a hit skips the build");
    assert_release_intact(&second);

    assert!(second.artifacts.as_ref().unwrap().reused, "the identical latest release is reused");
    assert_eq!(second.artifacts.as_ref().unwrap().path, first.artifacts.as_ref().unwrap().path);

    // Both went through the metrics: a miss and a memory hit, histograms with fixed buckets.
    let metrics = engine.metrics_text();
    assert!(metrics.contains("workz_builds_total{build_type=\"static_web\",status=\"succeeded\"} 2"), "{metrics}");
    assert!(metrics.contains("workz_cache_hits_total{tier=\"memory\"} 1"), "{metrics}");
    assert!(
        metrics.contains(
            "workz_build_duration_seconds_bucket{le=\"600.0\",build_type=\"static_web\",status=\"succeeded\"} 2"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("workz_build_stage_duration_seconds_count{build_type=\"static_web\",stage=\"build\"} 1"));

    // A host that does not read the file list gets the same result without it.
    let lean = engine.build(BuildRequest { list_files: false, ..BuildRequest::directory(&app) }).await;
    assert!(lean.cache.hit);
    let (lean, full) = (lean.artifacts.as_ref().unwrap(), second.artifacts.as_ref().unwrap());
    assert!(lean.files.is_empty());
    assert_eq!((&lean.path, lean.size), (&full.path, full.size));

    // A fresh engine (a new process) hits the filesystem tier.
    let third = world.engine().build(BuildRequest::directory(&app)).await;
    assert_eq!(third.cache.tier.as_deref(), Some("filesystem"));
    assert_release_intact(&third);

    // A damaged release is not reused: the hit is restored from the cache into a new one.
    let first_path = PathBuf::from(&first.artifacts.as_ref().unwrap().path);
    std::fs::remove_file(first_path.join("img/a.txt")).unwrap();
    let fourth = world.engine().build(BuildRequest::directory(&app)).await;
    assert!(fourth.cache.hit);
    assert!(!fourth.artifacts.as_ref().unwrap().reused);
    assert_release_intact(&fourth);
    let latest = std::fs::read_link(world.path().join("artifacts/shop/latest")).unwrap();
    assert_eq!(latest, Path::new("1.2.0").join(&fourth.build_id));
    assert!(world.leftovers().is_empty(), "{:?}", world.leftovers());

    // A changed file is a miss.
    write(&app.join("index.html"), "<!doctype html><h1>Shop v2</h1>");
    let fifth = world.engine().build(BuildRequest::directory(&app)).await;
    assert!(!fifth.cache.hit);
    assert_ne!(fifth.cache.key, first.cache.key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_builds_share_one_cache() {
    let world = World::new();
    let app = world.static_app("shop");
    let engine = world.engine();
    let handles: Vec<_> = (0..64).map(|_| engine.submit(BuildRequest::directory(&app), None)).collect();
    let mut keys = std::collections::BTreeSet::new();
    let mut published = std::collections::BTreeSet::new();
    for handle in handles {
        let result = handle.wait().await;
        assert_succeeded(&result);
        assert_release_intact(&result);
        keys.insert(result.cache.key.clone().unwrap());
        let artifacts = result.artifacts.as_ref().unwrap();
        // A build either published its own release or reused the identical latest one.
        if !artifacts.reused {
            assert!(published.insert(artifacts.path.clone()), "two builds published {}", artifacts.path);
        }
    }
    assert_eq!(keys.len(), 1);
    assert_eq!(engine.queue_status().running, 0);

    // The entry on disk is whole and every blob verifies.
    let cache = world.fs_cache();
    let key = keys.into_iter().next().unwrap().parse().unwrap();
    use workz_build::CacheBackend;
    let hit = cache.get_entry(&key).await.unwrap().expect("the entry was stored");
    for file in &hit.entry.files {
        let blob = cache.get_blob(&file.blake3).await.unwrap().expect("blob present and valid");
        assert_eq!(blob.len() as u64, file.size);
    }
    // Exactly the releases the builds say they published are on disk, and the later builds
    // (once one release was there) reused it instead of publishing copies.
    let releases: std::collections::BTreeSet<String> = std::fs::read_dir(world.path().join("artifacts/shop/1.2.0"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    assert_eq!(releases, published);
    assert!(published.len() < 64, "every build published a copy: {}", published.len());
    assert!(world.leftovers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_truncated_and_deleted_blobs_are_rebuilt_never_served() {
    let world = World::new();
    let app = world.static_app("shop");
    let mut config = world.config();
    config.cache.memory.enabled = false;
    let first = Engine::new(config.clone()).unwrap().build(BuildRequest::directory(&app)).await;
    assert_succeeded(&first);
    let cache = world.fs_cache();
    let files = &first.artifacts.as_ref().unwrap().files;
    type Harm = fn(&Path);
    let damage: [(&str, Harm); 3] = [
        ("corrupt", |p| {
            let mut bytes = std::fs::read(p).unwrap();
            bytes[0] ^= 0xff;
            std::fs::write(p, bytes).unwrap();
        }),
        ("truncated", |p| {
            let bytes = std::fs::read(p).unwrap();
            std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
    ];
    for (what, harm) in damage {
        let victim = files.iter().find(|f| f.path == "css/site.css").unwrap();
        harm(&cache.blob_path(&victim.blake3));
        // Without the published release, the hit must be restored from the damaged cache.
        std::fs::remove_dir_all(world.path().join("artifacts")).unwrap();
        let rebuilt = Engine::new(config.clone()).unwrap().build(BuildRequest::directory(&app)).await;
        assert_succeeded(&rebuilt);
        assert!(!rebuilt.cache.hit, "{what}: a damaged entry must not be served");
        assert!(rebuilt.warnings.iter().any(|w| w.code == "cache_entry_incomplete"), "{what}: {:?}", rebuilt.warnings);
        assert_release_intact(&rebuilt);
        std::fs::remove_dir_all(world.path().join("artifacts")).unwrap();
        let again = Engine::new(config.clone()).unwrap().build(BuildRequest::directory(&app)).await;
        assert!(again.cache.hit, "{what}: the rebuild was stored again");
        assert!(!again.artifacts.as_ref().unwrap().reused, "{what}: restored from the cache");
        assert_release_intact(&again);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sources_fail_with_codes_and_write_nothing_outside() {
    let world = World::new();
    let engine = world.engine();
    let app_json = r#"{"name": "evil", "appType": "static"}"#;
    for (bad_path, code) in [
        ("../x", "source_path_invalid"),
        ("/etc/passwd", "source_path_invalid"),
        ("a\0b", "source_path_invalid"),
        ("..\\..\\x", "source_path_invalid"),
        ("C:/x", "source_path_invalid"),
    ] {
        let mut files = BTreeMap::new();
        files.insert("workz.json".to_string(), FileBytes::from(app_json));
        files.insert(bad_path.to_string(), FileBytes::from("pwned"));
        let request = BuildRequest { source: SourceSpec::Files(files), ..BuildRequest::directory("") };
        let result = engine.build(request).await;
        assert_eq!(result.status, BuildStatus::Failed);
        assert_eq!(error_code(&result), code, "{bad_path:?}");
        assert!(result.error.as_ref().unwrap().hint.is_some());
    }

    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("secret"), "s");
    let app = world.app("linky", serde_json::from_str(app_json).unwrap(), &[("index.html", "x")]);
    std::os::unix::fs::symlink(outside.path().join("secret"), app.join("leak")).unwrap();
    let result = engine.build(BuildRequest::directory(&app)).await;
    assert_eq!(error_code(&result), "source_symlink_escape");

    let mut config = world.config();
    config.limits.max_file_bytes = 1024;
    let big = world.app("big", serde_json::from_str(app_json).unwrap(), &[("huge.bin", &"x".repeat(2048))]);
    let result = Engine::new(config).unwrap().build(BuildRequest::directory(&big)).await;
    assert_eq!(error_code(&result), "source_file_too_large");

    let many = world.app("many", serde_json::from_str(app_json).unwrap(), &[]);
    for i in 0..100_000 {
        let dir = many.join(format!("d{}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::File::create(dir.join(format!("f{i}"))).unwrap();
    }
    let result = engine.build(BuildRequest::directory(&many)).await;
    assert_eq!(error_code(&result), "source_too_many_files");
    let files: BTreeMap<String, FileBytes> = (0..100_000)
        .map(|i| (format!("f{i}"), FileBytes(Bytes::new())))
        .chain([("workz.json".to_string(), FileBytes::from(app_json))])
        .collect();
    let result = engine.build(BuildRequest { source: SourceSpec::Files(files), ..BuildRequest::directory("") }).await;
    assert_eq!(error_code(&result), "source_too_many_files");

    let strays = world.stray_entries(&["cache", "artifacts", "linky", "big", "many"]);
    assert!(strays.is_empty(), "written outside the roots: {strays:?}");
    assert!(!world.path().join("x").exists());
    assert!(world.leftovers().is_empty(), "{:?}", world.leftovers());
    assert!(!world.path().join("artifacts/evil").exists(), "nothing published");
}

/// A hook that starts a background child and hangs; both carry a tag of their own in their
/// command line, so that the host finds them whether the hook is sandboxed (its own PID
/// namespace) or not. Returns the app and the tag.
fn hanging_app(world: &World, name: &str) -> (PathBuf, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let tag = format!("sleep 300.{}{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    let hook = format!("sh -c '{tag} & {tag}'");
    let app = world.app(
        name,
        serde_json::json!({"name": name, "appType": "static", "hooks": {"preBuild": [hook]}}),
        &[("index.html", "x")],
    );
    (app, tag)
}

/// Host pids of the processes whose command line holds `tag` (the hook, its child, and the
/// sandbox's processes around them), once there are at least two.
async fn running_pids(tag: &str) -> Vec<i32> {
    for _ in 0..250 {
        let out = std::process::Command::new("pgrep").args(["-f", tag]).output().unwrap();
        let pids: Vec<i32> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.len() >= 2 {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the hook and its child never ran ({tag})");
}

fn assert_all_gone(pids: &[i32]) {
    for pid in pids {
        assert!(workz_build::testing::wait_until_gone(*pid, Duration::from_secs(5)), "process {pid} was left running");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hook_is_killed_at_the_timeout_with_its_children() {
    let world = World::new();
    let (app, pids) = hanging_app(&world, "hang");
    let engine = world.engine();
    let mut request = BuildRequest::directory(&app);
    request.timeout = Some(2);
    let mut handle = engine.submit(request, None);
    let mut events = handle.take_events().unwrap();
    let running = running_pids(&pids).await;
    let result = handle.wait().await;
    assert_eq!(result.status, BuildStatus::TimedOut);
    assert_eq!(error_code(&result), "timed_out");
    assert!(result.error.as_ref().unwrap().hint.is_some());
    assert_all_gone(&running);
    assert!(world.leftovers().is_empty(), "build dir removed: {:?}", world.leftovers());
    let mut saw_warning = false;
    while let Ok(record) = events.try_recv() {
        if let BuildEvent::Warning { code, .. } = &record.event {
            saw_warning |= code == "build_slow";
        }
    }
    assert!(saw_warning, "a warning before the hard stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_build_kills_its_processes_and_cleans_up() {
    let world = World::new();
    let (app, pids) = hanging_app(&world, "cancel");
    let engine = world.engine();
    let mut handle = engine.submit(BuildRequest::directory(&app), None);
    let mut events = handle.take_events().unwrap();
    while let Some(record) = events.recv().await {
        if matches!(record.event, BuildEvent::ProcessStarted { .. }) {
            break;
        }
    }
    let running = running_pids(&pids).await;
    handle.cancel();
    let result = handle.wait().await;
    assert_eq!(result.status, BuildStatus::Cancelled);
    assert_eq!(error_code(&result), "cancelled");
    assert_all_gone(&running);
    assert!(world.leftovers().is_empty(), "{:?}", world.leftovers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_app_configs_name_the_json_path() {
    let world = World::new();
    let engine = world.engine();
    let cases = [
        (
            r#"{"name": "x", "appType": "static", "buildConfig": {"javascript": {"target": "es5"}}}"#,
            "config_invalid",
            "buildConfig.javascript.target",
        ),
        (r#"{"name": "x", "appType": "static", "buildTargets": "web"}"#, "config_invalid", "buildTargets"),
        (r#"{"name": "x", "appType": "cobol"}"#, "config_invalid", "appType"),
        (r#"{"name": "x", "appType": "static",}"#, "config_parse_error", "line 1"),
        (r#"{"name": 7, "appType": "static"}"#, "config_invalid", "`name`"),
    ];
    for (i, (json, code, needle)) in cases.iter().enumerate() {
        let dir = world.path().join(format!("bad{i}"));
        write(&dir.join("workz.json"), json);
        write(&dir.join("index.html"), "x");
        let result = engine.build(BuildRequest::directory(&dir)).await;
        assert_eq!(error_code(&result), *code, "{json}");
        let message = &result.error.as_ref().unwrap().message;
        assert!(message.contains(needle), "{message} should name {needle}");
    }
    let no_config = world.path().join("none");
    write(&no_config.join("index.html"), "x");
    assert_eq!(error_code(&engine.build(BuildRequest::directory(&no_config)).await), "app_config_missing");

    let mut config = world.config();
    config.build_system.max_concurrent_builds = 0;
    assert_eq!(Engine::new(config).err().unwrap().code(), "config_invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_become_warnings() {
    let world = World::new();
    let app = world.app(
        "warn",
        serde_json::json!({"name": "w", "appType": "static", "buildConfg": {}}),
        &[("index.html", "x")],
    );
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_succeeded(&result);
    assert!(result.warnings.iter().any(|w| w.code == "config_unknown_key" && w.message.contains("buildConfg")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_what_changed() {
    let world = World::new();
    let app = world.static_app("shop");
    let engine = world.engine();
    let first = engine.explain(BuildRequest::directory(&app)).await.unwrap();
    assert!(!first.would_hit);
    assert!(first.previous.is_none());
    assert_succeeded(&engine.build(BuildRequest::directory(&app)).await);
    let hit = engine.explain(BuildRequest::directory(&app)).await.unwrap();
    assert!(hit.would_hit, "{}", hit.reason);

    write(&app.join("index.html"), "<h1>changed</h1>");
    write(&app.join("new.txt"), "new");
    std::fs::remove_file(app.join("img/a.txt")).unwrap();
    write(
        &app.join("workz.json"),
        &serde_json::json!({"name": "Shop", "version": "1.2.0", "appType": "static", "buildConfig": {"javascript": {"target": "es2022"}}})
            .to_string(),
    );
    let miss = engine.explain(BuildRequest::directory(&app)).await.unwrap();
    assert!(!miss.would_hit);
    let c = &miss.changes;
    assert_eq!(c.files_added, vec!["new.txt"]);
    assert_eq!(c.files_removed, vec!["img/a.txt"]);
    assert!(c.files_changed.contains(&"index.html".to_string()) && c.files_changed.contains(&"workz.json".to_string()));
    assert!(c.config.iter().any(|ch| ch.name == "app.buildConfig.javascript.target"), "{:?}", c.config);
    assert!(miss.reason.contains("index.html"), "{}", miss.reason);
}

/// A builder whose build fails with a retryable error a few times, then succeeds;
/// counts how many builds run at once.
struct FlakyBuilder {
    failures_left: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
    delay: Duration,
}

#[async_trait]
impl PlatformBuilder for FlakyBuilder {
    fn app_type(&self) -> AppType {
        AppType::Javascript
    }
    fn supported_targets(&self) -> &[&'static str] {
        &["web"]
    }
    async fn build(&self, ctx: &mut BuildContext) -> workz_build::Result<BuildOutput> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(ProcessError::Failed {
                command: "npm ci".into(),
                status: "exit code 1".into(),
                stderr_tail: "ETIMEDOUT".into(),
                retryable: true,
                offline: false,
            }
            .into());
        }
        std::fs::write(ctx.output_dir()?.join("index.html"), "ok").unwrap();
        Ok(BuildOutput { entry_point: Some("index.html".into()) })
    }
    fn artifact_type(&self, _: &str) -> String {
        "test-web".into()
    }
}

fn js_app(world: &World, name: &str) -> PathBuf {
    world.app(name, serde_json::json!({"name": name, "appType": "javascript"}), &[("main.js", name)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_with_backoff() {
    let world = World::new();
    let builder = Arc::new(FlakyBuilder {
        failures_left: AtomicUsize::new(2),
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
        delay: Duration::ZERO,
    });
    let engine = Engine::setup(world.config()).platform(builder.clone()).build().unwrap();
    let mut handle = engine.submit(BuildRequest::directory(js_app(&world, "flaky")), None);
    let mut events = handle.take_events().unwrap();
    let result = handle.wait().await;
    assert_succeeded(&result);
    let mut retries = 0;
    while let Ok(record) = events.try_recv() {
        if let BuildEvent::Retrying { stage, .. } = &record.event {
            assert_eq!(stage, "build");
            retries += 1;
        }
    }
    assert_eq!(retries, 2);

    // Past retryAttempts the error stands.
    builder.failures_left.store(10, Ordering::SeqCst);
    let mut config = world.config();
    config.build_system.retry_attempts = 1;
    let engine = Engine::setup(config).platform(builder).build().unwrap();
    let mut request = BuildRequest::directory(js_app(&world, "flaky2"));
    request.force = true;
    let result = engine.build(request).await;
    assert_eq!(error_code(&result), "process_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_bounds_concurrency_and_reports_depth() {
    let world = World::new();
    let builder = Arc::new(FlakyBuilder {
        failures_left: AtomicUsize::new(0),
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
        delay: Duration::from_millis(200),
    });
    let mut config = world.config();
    config.build_system.max_concurrent_builds = 2;
    let engine = Engine::setup(config).platform(builder.clone()).build().unwrap();
    let handles: Vec<_> =
        (0..6).map(|i| engine.submit(BuildRequest::directory(js_app(&world, &format!("q{i}"))), None)).collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = engine.queue_status();
    assert_eq!(status.running, 2);
    assert_eq!(status.queued, 4);
    for h in handles {
        assert_succeeded(&h.wait().await);
    }
    assert_eq!(builder.max_running.load(Ordering::SeqCst), 2);
    assert_eq!(engine.queue_status().running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_on_a_miss_only_and_cannot_reach_a_shell() {
    let world = World::new();
    let app = world.app(
        "hooked",
        serde_json::json!({"name": "hooked", "appType": "static", "hooks": {
            "preBuild": ["sh -c 'echo $WORKZ_BUILD_ID > gen.txt'"],
            "postBuild": ["echo done ; touch /tmp/should-not-exist-workz"]
        }}),
        &[("index.html", "x")],
    );
    let engine = world.engine();
    let first = engine.build(BuildRequest::directory(&app)).await;
    assert_succeeded(&first);
    assert!(first.artifacts.as_ref().unwrap().files.iter().any(|f| f.path == "gen.txt"), "hook output published");
    let second = engine.build(BuildRequest::directory(&app)).await;
    assert!(second.cache.hit);
    // The hit published what the first build's hook generated: the hook ran once.
    let generated = std::path::Path::new(&second.artifacts.as_ref().unwrap().path).join("gen.txt");
    assert_eq!(std::fs::read_to_string(generated).unwrap().trim(), first.build_id, "the hook ran once");
    assert!(!Path::new("/tmp/should-not-exist-workz").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_engine_cancels_its_builds() {
    let world = World::new();
    let (app, pids) = hanging_app(&world, "dropped");
    let engine = world.engine();
    let handle = engine.submit(BuildRequest::directory(&app), None);
    let running = running_pids(&pids).await;
    drop(engine);
    let result = handle.wait().await;
    assert_eq!(result.status, BuildStatus::Cancelled);
    assert_all_gone(&running);
}

/// A stage with a bug.
struct PanickingStage;

#[async_trait]
impl workz_build::Stage for PanickingStage {
    fn name(&self) -> &str {
        "buggy"
    }

    async fn run(&self, _ctx: &mut BuildContext) -> workz_build::Result<workz_build::Flow> {
        panic!("index out of bounds in the buggy stage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_stage_fails_its_build_as_internal_and_the_engine_goes_on() {
    let world = World::new();
    let mut pipeline = workz_build::Pipeline::standard();
    pipeline.insert_after("validate", Arc::new(PanickingStage));
    let engine = Engine::setup(world.config()).pipeline(pipeline).build().unwrap();
    let mut handle = engine.submit(BuildRequest::directory(world.static_app("buggy")), None);
    let mut events = handle.take_events().unwrap();
    let result = handle.wait().await;
    assert_eq!(result.status, BuildStatus::Failed);
    let error = result.error.as_ref().unwrap();
    assert_eq!((error.code.as_str(), error.family), ("internal", workz_build::Family::Internal));
    assert!(error.message.contains("index out of bounds in the buggy stage"), "{}", error.message);
    let mut finished = false;
    while let Ok(record) = events.try_recv() {
        finished |= matches!(record.event, BuildEvent::Finished { .. });
    }
    assert!(finished, "a finished event for the failed build");
    assert!(world.leftovers().is_empty(), "{:?}", world.leftovers());
    // The engine still builds.
    assert_succeeded(&world.engine().build(BuildRequest::directory(world.static_app("fine"))).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_file_named_like_the_release_manifest_is_refused_not_overwritten() {
    let world = World::new();
    let app = world.app(
        "pwa-site",
        serde_json::json!({"name": "PWA", "appType": "static"}),
        &[("index.html", "<link rel=manifest href=manifest.json>"), ("manifest.json", r#"{"name": "PWA"}"#)],
    );
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_eq!(error_code(&result), "artifact_name_invalid");
    assert!(result.error.as_ref().unwrap().hint.as_deref().unwrap().contains("manifest.webmanifest"));
    assert_eq!(
        std::fs::read_to_string(app.join("manifest.json")).unwrap(),
        r#"{"name": "PWA"}"#,
        "the app's file is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_timeout_past_any_instant_is_bounded_not_a_panic() {
    let world = World::new();
    let app = world.app("bounded", serde_json::json!({"name": "bounded", "appType": "static"}), &[("index.html", "x")]);
    let engine = world.engine();
    for timeout in [0, u64::MAX, 9_223_372_036_854_775_808] {
        let mut request = BuildRequest::directory(&app);
        request.timeout = Some(timeout);
        request.force = true;
        let result = engine.build(request).await;
        assert_eq!(result.status, BuildStatus::Succeeded, "timeout {timeout}: {:?}", result.error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_site_publishes_its_dotfiles_but_never_env_files_or_registry_credentials() {
    let world = World::new();
    let app = world.app(
        "dotfiles",
        serde_json::json!({"name": "dotfiles", "appType": "static"}),
        &[
            ("index.html", "<!doctype html><h1>hi</h1>"),
            (".well-known/security.txt", "Contact: mailto:security@example.com"),
            (".htaccess", "Options -Indexes"),
            (".env", "STRIPE_SECRET=sk_live_1"),
            (".env.production", "STRIPE_SECRET=sk_live_2"),
            ("admin/.env.local", "STRIPE_SECRET=sk_live_3"),
            (".npmrc", "//registry.npmjs.org/:_authToken=npm_secret"),
            ("docs/.netrc", "machine example.com password p"),
            ("env.txt", "not an env file"),
        ],
    );
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_succeeded(&result);
    let files: Vec<&str> = result.artifacts.as_ref().unwrap().files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(files, vec![".htaccess", ".well-known/security.txt", "env.txt", "index.html"]);
}
