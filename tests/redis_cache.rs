//! The Redis cache tier against a real `redis-server` (started here on a free loopback port;
//! `scripts/test.sh` installs it): two machines sharing it, the server killed and restarted,
//! corrupt values, bad URLs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use workz_build::{BuildRequest, BuildResult, BuildStatus, Engine, EngineConfig};

#[path = "support/redis.rs"]
mod redis_server;

use redis_server::RedisServer;

/// One machine: its own cache and artifact roots, the shared Redis.
fn machine(root: &Path, redis_url: &str) -> Engine {
    let mut config = EngineConfig::default();
    config.cache.dir = Some(root.join("cache"));
    config.storage.artifacts_dir = Some(root.join("artifacts"));
    config.cache.memory.enabled = false;
    config.cache.redis = Some(serde_json::from_value(serde_json::json!({"url": redis_url})).unwrap());
    Engine::new(config).unwrap()
}

fn app(root: &Path, name: &str, body: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("css")).unwrap();
    std::fs::write(dir.join("workz.json"), format!(r#"{{"name": "{name}", "appType": "static"}}"#)).unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!("<!doctype html><link rel=stylesheet href=css/site.css><h1>{body}</h1>"),
    )
    .unwrap();
    std::fs::write(dir.join("css/site.css"), "body { margin: 0 auto; max-width: 40rem }\n".repeat(50)).unwrap();
    dir
}

fn build(engine: &Engine, dir: &Path) -> BuildResult {
    engine.build_blocking(BuildRequest::directory(dir), None)
}

fn release_files(result: &BuildResult) -> Vec<(String, String)> {
    let artifacts = result.artifacts.as_ref().expect("a release");
    let mut files: Vec<_> = artifacts.files.iter().map(|f| (f.path.clone(), f.blake3.to_string())).collect();
    files.sort();
    files
}

fn warning_codes(result: &BuildResult) -> Vec<String> {
    result.warnings.iter().map(|w| w.code.clone()).collect()
}

#[test]
fn a_build_on_one_machine_is_a_redis_hit_on_another() {
    let redis = RedisServer::start();
    let world = tempfile::tempdir().unwrap();
    let dir = app(world.path(), "shop", "Shop");

    let first = build(&machine(&world.path().join("m1"), &redis.url()), &dir);
    assert_eq!(first.status, BuildStatus::Succeeded, "{:?}", first.error);
    assert!(!first.cache.hit);
    assert!(!redis.keys("workz:ac:*").is_empty(), "the entry reached Redis");

    let second = build(&machine(&world.path().join("m2"), &redis.url()), &dir);
    assert_eq!(second.status, BuildStatus::Succeeded, "{:?}", second.error);
    assert!(second.cache.hit, "a hit on the second machine");
    assert_eq!(second.cache.tier.as_deref(), Some("redis"));
    assert_eq!(release_files(&second), release_files(&first), "the same release");
    assert!(warning_codes(&second).is_empty(), "{:?}", second.warnings);
}

#[test]
fn a_redis_killed_mid_build_is_a_warning_and_is_used_again_once_back() {
    let mut redis = RedisServer::start();
    let world = tempfile::tempdir().unwrap();
    let engine = machine(&world.path().join("m1"), &redis.url());
    // A build that takes a while, so that the server dies while it runs.
    let slow = app(world.path(), "slow", "Slow");
    std::fs::write(
        slow.join("workz.json"),
        r#"{"name": "slow", "appType": "static", "hooks": {"preBuild": ["sleep 1"]}}"#,
    )
    .unwrap();
    let handle = engine.submit(BuildRequest::directory(&slow), None);
    std::thread::sleep(Duration::from_millis(300));
    redis.kill();
    let result = workz_build::engine::block_on(handle.wait());
    assert_eq!(result.status, BuildStatus::Succeeded, "{:?}", result.error);
    assert!(warning_codes(&result).contains(&"cache_tier_failed".to_string()), "{:?}", result.warnings);

    // Back, empty: the same engine stores there again without a restart.
    redis.restart();
    std::thread::sleep(Duration::from_millis(2100)); // past the tier's pause after a failed connection
    let other = app(world.path(), "other", "Other");
    let result = build(&engine, &other);
    assert_eq!(result.status, BuildStatus::Succeeded, "{:?}", result.error);
    assert!(!redis.keys("workz:ac:*").is_empty(), "stored in the restarted server");
    assert!(!warning_codes(&result).contains(&"cache_tier_failed".to_string()), "{:?}", result.warnings);
}

#[test]
fn corrupt_values_in_redis_are_never_served() {
    let redis = RedisServer::start();
    let world = tempfile::tempdir().unwrap();
    let dir = app(world.path(), "shop", "Shop");
    let first = build(&machine(&world.path().join("m1"), &redis.url()), &dir);
    assert_eq!(first.status, BuildStatus::Succeeded, "{:?}", first.error);

    // Every blob loses its last byte (a truncated value), and a second app's entry is garbage.
    let blobs = redis.keys("workz:cas:*");
    assert!(!blobs.is_empty());
    for key in &blobs {
        let reply = redis.command(&[b"GETRANGE", key.as_bytes(), b"0", b"-2"]).unwrap();
        let body = reply.split_once("\r\n").map(|(_, b)| b.trim_end_matches("\r\n")).unwrap_or("");
        assert_eq!(redis.command(&[b"SET", key.as_bytes(), body.as_bytes()]).as_deref(), Some("+OK\r\n"));
    }

    let m2 = machine(&world.path().join("m2"), &redis.url());
    let second = build(&m2, &dir);
    assert_eq!(second.status, BuildStatus::Succeeded, "{:?}", second.error);
    assert_eq!(release_files(&second), release_files(&first), "rebuilt, not served from corrupt blobs");
    let stats = workz_build::engine::block_on(m2.cache_stats()).unwrap();
    let redis_stats = stats.tiers.iter().find(|t| t.tier == "redis").expect("redis stats");
    assert!(redis_stats.corrupt >= 1, "{redis_stats:?}");

    for entry in redis.keys("workz:ac:*") {
        redis.command(&[b"SET", entry.as_bytes(), b"{not json"]);
    }
    let m3 = machine(&world.path().join("m3"), &redis.url());
    let third = build(&m3, &dir);
    assert_eq!(third.status, BuildStatus::Succeeded, "{:?}", third.error);
    assert_ne!(third.cache.tier.as_deref(), Some("redis"), "a garbage entry is a miss");
}

#[test]
fn a_malformed_redis_url_is_a_config_error_at_engine_start() {
    for url in ["http://127.0.0.1:6379", "redis://", "not a url", "redis://:hunter2@/0"] {
        let config = format!(r#"{{"cache": {{"redis": {{"url": "{url}"}}}}}}"#);
        let err = EngineConfig::from_json("engine.json", &config).unwrap_err();
        let report = workz_build::Error::from(err).report();
        assert_eq!(report.code, "config_invalid", "{url}: {}", report.message);
        assert!(report.message.contains("cache.redis.url"), "{}", report.message);
        assert!(report.hint.is_some());
        assert!(!report.message.contains("hunter2"), "the password stays out of messages: {}", report.message);
    }
}

#[test]
fn doctor_says_whether_redis_answers() {
    let redis = RedisServer::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for (url, answers) in [(redis.url(), true), (format!("redis://:secret@127.0.0.1:{closed}/0"), false)] {
        let mut config = EngineConfig::default();
        config.cache.redis = Some(serde_json::from_value(serde_json::json!({"url": url})).unwrap());
        let report = workz_build::engine::block_on(workz_build::doctor::diagnose(&config));
        let check = report.checks.iter().find(|c| c.name.starts_with("redis cache")).expect("a redis check");
        assert_eq!(check.found, answers, "{check:?}");
        assert!(
            !check.name.contains("secret") && !check.detail.as_deref().unwrap_or("").contains("secret"),
            "{check:?}"
        );
    }
}

#[test]
fn a_local_hit_never_waits_on_redis() {
    let mut redis = RedisServer::start();
    let world = tempfile::tempdir().unwrap();
    let dir = app(world.path(), "shop", "Shop");
    let engine = machine(&world.path().join("m1"), &redis.url());
    let first = build(&engine, &dir);
    assert_eq!(first.status, BuildStatus::Succeeded, "{:?}", first.error);
    // With Redis gone, a hit this machine's disk can answer is not slowed or warned about.
    redis.kill();
    let second = build(&engine, &dir);
    assert_eq!(second.status, BuildStatus::Succeeded, "{:?}", second.error);
    assert_eq!(second.cache.tier.as_deref(), Some("filesystem"));
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);
}
