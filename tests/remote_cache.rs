//! The object-store cache tier against a real S3-compatible server (`moto_server`, installed by
//! `scripts/test.sh` into a virtualenv and named by `WORKZ_TEST_MOTO_SERVER`; started here on a
//! free loopback port): two machines sharing a bucket, corrupt objects, the server stopped
//! mid-build, entries never ahead of their blobs, bad settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use object_store::ObjectStoreExt;
use workz_build::cache::{CacheBackend, CacheEntry, CacheKey, RemoteCache, RemoteTierSettings};
use workz_build::{BuildRequest, BuildResult, BuildStatus, Digest, Engine, EngineConfig};

#[path = "support/s3.rs"]
mod s3;

use s3::{BUCKET, S3Server};

fn settings(s3: &S3Server) -> RemoteTierSettings {
    RemoteTierSettings {
        location: workz_build::objects::ObjectLocation {
            url: format!("s3://{BUCKET}/builds"),
            endpoint: Some(s3.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("testing".into()),
            secret_access_key: Some("testing".into()),
        },
        read_only: false,
        ttl: Duration::from_secs(3600),
    }
}

/// One machine: its own cache and artifact roots, the shared bucket.
fn machine(root: &Path, s3: &S3Server) -> Engine {
    let mut config = EngineConfig::default();
    config.cache.dir = Some(root.join("cache"));
    config.storage.artifacts_dir = Some(root.join("artifacts"));
    config.cache.memory.enabled = false;
    config.cache.remote = Some(
        serde_json::from_value(serde_json::json!({
            "url": format!("s3://{BUCKET}/builds"),
            "endpoint": s3.endpoint(),
            "region": "us-east-1",
            "accessKeyId": "testing",
            "secretAccessKey": "testing",
        }))
        .unwrap(),
    );
    Engine::new(config).unwrap()
}

fn app(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("img")).unwrap();
    std::fs::write(dir.join("workz.json"), format!(r#"{{"name": "{name}", "appType": "static"}}"#)).unwrap();
    std::fs::write(dir.join("index.html"), format!("<!doctype html><h1>{name}</h1><img src=img/logo.bin>")).unwrap();
    // A blob of 3 MB beside the small ones.
    let logo: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(dir.join("img/logo.bin"), logo).unwrap();
    dir
}

fn build(engine: &Engine, dir: &Path) -> BuildResult {
    engine.build_blocking(BuildRequest::directory(dir), None)
}

fn release_files(result: &BuildResult) -> Vec<(String, String)> {
    let mut files: Vec<_> = result
        .artifacts
        .as_ref()
        .expect("a release")
        .files
        .iter()
        .map(|f| (f.path.clone(), f.blake3.to_string()))
        .collect();
    files.sort();
    files
}

#[test]
fn a_build_on_one_machine_is_a_remote_hit_on_another() {
    let s3 = S3Server::start();
    let world = tempfile::tempdir().unwrap();
    let dir = app(world.path(), "shop");
    let first = build(&machine(&world.path().join("m1"), &s3), &dir);
    assert_eq!(first.status, BuildStatus::Succeeded, "{:?}", first.error);
    assert!(!s3.keys("builds/ac/").is_empty(), "the entry reached the bucket");

    let second = build(&machine(&world.path().join("m2"), &s3), &dir);
    assert_eq!(second.status, BuildStatus::Succeeded, "{:?}", second.error);
    assert_eq!(second.cache.tier.as_deref(), Some("remote"), "{:?}", second.cache);
    assert_eq!(release_files(&second), release_files(&first));
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
}

#[test]
fn a_corrupt_object_is_never_served() {
    let s3 = S3Server::start();
    let world = tempfile::tempdir().unwrap();
    let dir = app(world.path(), "shop");
    let first = build(&machine(&world.path().join("m1"), &s3), &dir);
    assert_eq!(first.status, BuildStatus::Succeeded, "{:?}", first.error);
    // Every blob overwritten (a signed PUT, as another writer would): some truncated, some not
    // the bytes at all.
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(s3.endpoint())
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_allow_http(true)
        .build()
        .unwrap();
    let keys = s3.keys("builds/cas/");
    assert!(!keys.is_empty());
    for (i, key) in keys.iter().enumerate() {
        let path = object_store::path::Path::from(key.as_str());
        let bytes = workz_build::engine::block_on(async { store.get(&path).await.unwrap().bytes().await.unwrap() });
        let bad = if i % 2 == 0 { bytes.slice(..bytes.len() - 1) } else { bytes::Bytes::from_static(b"not the bytes") };
        workz_build::engine::block_on(store.put(&path, bad.into())).unwrap();
    }
    let m2 = machine(&world.path().join("m2"), &s3);
    let second = build(&m2, &dir);
    assert_eq!(second.status, BuildStatus::Succeeded, "{:?}", second.error);
    assert_eq!(release_files(&second), release_files(&first), "rebuilt, not served");
    let stats = workz_build::engine::block_on(m2.cache_stats()).unwrap();
    let remote = stats.tiers.iter().find(|t| t.tier == "remote").expect("remote stats");
    assert!(remote.corrupt >= 1, "{remote:?}");
}

#[test]
fn an_entry_is_never_written_before_its_blobs() {
    let s3 = S3Server::start();
    let cache = RemoteCache::new(settings(&s3)).unwrap();
    let entry = CacheEntry {
        key: CacheKey(Digest::of(b"key")),
        label: "shop/web".into(),
        created_at: 4_000_000_000,
        build_id: "b1".into(),
        artifact_type: "static-web".into(),
        entry_point: None,
        files: vec![workz_build::cache::ArtifactFile {
            path: "index.html".into(),
            size: 5,
            blake3: Digest::of(b"never"),
            content_type: "text/html".into(),
        }],
    };
    let refused = workz_build::engine::block_on(cache.put_entry(&entry, None));
    assert!(refused.is_err(), "an entry naming a missing blob is refused");
    assert!(s3.keys("builds/ac/").is_empty(), "and nothing became visible");
}

#[test]
fn the_store_stopped_mid_build_is_a_warning_and_the_next_build_stores_fully() {
    let mut s3 = S3Server::start();
    let world = tempfile::tempdir().unwrap();
    let engine = machine(&world.path().join("m1"), &s3);
    let slow = app(world.path(), "slow");
    std::fs::write(
        slow.join("workz.json"),
        r#"{"name": "slow", "appType": "static", "hooks": {"preBuild": ["sleep 1"]}}"#,
    )
    .unwrap();
    let handle = engine.submit(BuildRequest::directory(&slow), None);
    std::thread::sleep(Duration::from_millis(300));
    s3.stop();
    let result = workz_build::engine::block_on(handle.wait());
    assert_eq!(result.status, BuildStatus::Succeeded, "{:?}", result.error);
    assert!(result.warnings.iter().any(|w| w.code == "cache_tier_failed"), "{:?}", result.warnings);

    s3.restart();
    let other = app(world.path(), "other");
    let stored = build(&engine, &other);
    assert_eq!(stored.status, BuildStatus::Succeeded, "{:?}", stored.error);
    let entries = s3.keys("builds/ac/");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let blobs = s3.keys("builds/cas/");
    for file in &stored.artifacts.as_ref().unwrap().files {
        assert!(blobs.contains(&format!("builds/cas/{}", file.blake3)), "{} missing", file.path);
    }
}

#[test]
fn bad_remote_settings_are_config_errors_at_engine_start() {
    for (remote, wanted) in [
        (serde_json::json!({"url": "ftp://x/y"}), "cache.remote.url"),
        (serde_json::json!({"url": "s3://ab/c"}), "cache.remote.url"),
        (serde_json::json!({"url": "s3://bucket/c", "accessKeyId": "only-the-id"}), "cache.remote"),
    ] {
        let text = serde_json::json!({"cache": {"remote": remote}}).to_string();
        let err = EngineConfig::from_json("engine.json", &text).unwrap_err();
        let report = workz_build::Error::from(err).report();
        assert_eq!(report.code, "config_invalid", "{}", report.message);
        assert!(report.message.contains(wanted), "{}", report.message);
    }
}

#[test]
fn doctor_says_whether_the_bucket_answers() {
    let s3 = S3Server::start();
    for (bucket, answers) in [(BUCKET, true), ("no-such-bucket", false)] {
        let mut config = EngineConfig::default();
        config.cache.remote = Some(
            serde_json::from_value(serde_json::json!({
                "url": format!("s3://{bucket}/builds"),
                "endpoint": s3.endpoint(),
                "accessKeyId": "testing",
                "secretAccessKey": "testing",
            }))
            .unwrap(),
        );
        let report = workz_build::engine::block_on(workz_build::doctor::diagnose(&config));
        let check = report.checks.iter().find(|c| c.name.starts_with("object-store cache")).expect("a bucket check");
        assert_eq!(check.found, answers, "{check:?}");
    }
}

#[test]
fn a_remote_hit_is_copied_to_this_machines_disk_in_the_background() {
    let mut s3 = S3Server::start();
    let world = tempfile::tempdir().unwrap();
    let dir = app(world.path(), "shop");
    let first = build(&machine(&world.path().join("m1"), &s3), &dir);
    assert_eq!(first.status, BuildStatus::Succeeded, "{:?}", first.error);
    let m2 = machine(&world.path().join("m2"), &s3);
    let second = build(&m2, &dir);
    assert_eq!(second.cache.tier.as_deref(), Some("remote"), "{:?}", second.cache);
    workz_build::engine::block_on(m2.flush());

    // The bucket gone and the release removed, machine 2 restores the build from its own disk.
    s3.stop();
    std::fs::remove_dir_all(world.path().join("m2/artifacts")).unwrap();
    let third = build(&machine(&world.path().join("m2"), &s3), &dir);
    assert_eq!(third.status, BuildStatus::Succeeded, "{:?}", third.error);
    assert_eq!(third.cache.tier.as_deref(), Some("filesystem"), "{:?}", third.cache);
    assert_eq!(release_files(&third), release_files(&first));
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
}

#[test]
fn cache_warm_pulls_what_only_the_bucket_has_and_builds_what_no_tier_has() {
    use workz_build::warm::{WarmOptions, WarmOutcome};
    let mut s3 = S3Server::start();
    let world = tempfile::tempdir().unwrap();
    let (shop, blog) = (app(world.path(), "shop"), app(world.path(), "blog"));
    let first = build(&machine(&world.path().join("m1"), &s3), &shop);
    assert_eq!(first.status, BuildStatus::Succeeded, "{:?}", first.error);

    let m2 = machine(&world.path().join("m2"), &s3);
    let warmed = workz_build::engine::block_on(m2.warm(&[shop.clone(), blog.clone()], WarmOptions { pull: true }));
    let outcomes: Vec<(WarmOutcome, Option<&str>)> = warmed.iter().map(|w| (w.outcome, w.tier.as_deref())).collect();
    assert_eq!(outcomes, [(WarmOutcome::Pulled, Some("remote")), (WarmOutcome::Built, None)], "{warmed:?}");

    // Both are on machine 2's disk now: with the bucket gone, each builds from there.
    s3.stop();
    for dir in [&shop, &blog] {
        let result = build(&machine(&world.path().join("m2"), &s3), dir);
        assert_eq!(result.cache.tier.as_deref(), Some("filesystem"), "{}: {:?}", dir.display(), result.cache);
        assert!(result.warnings.is_empty(), "{:?}", result.warnings);
    }
    let again = workz_build::engine::block_on(m2.warm(&[shop, blog], WarmOptions { pull: true }));
    assert!(
        again.iter().all(|w| w.outcome == WarmOutcome::Cached && w.tier.as_deref() == Some("filesystem")),
        "{again:?}"
    );
}
