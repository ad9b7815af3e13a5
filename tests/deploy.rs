//! Releases published to destinations (`storage.deploy`) against a real S3-compatible server
//! (`moto_server`, see `support/s3.rs`) and local directories: a reader never sees half a
//! release, a backup holds the same files, a primary that rejects writes keeps its old
//! `latest`, a second machine's hit does not publish again, unknown buckets stop the engine.

#[path = "support/s3.rs"]
mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use s3::{BUCKET, S3Server};
use serde_json::{Value, json};
use workz_build::{BuildRequest, BuildResult, BuildStatus, Digest, Engine, EngineConfig};

const RELEASES: &str = "releases";

fn destination(s3: &S3Server, name: &str, bucket: &str, extra: Value) -> Value {
    let mut d = json!({
        "name": name,
        "url": format!("s3://{bucket}/sites"),
        "endpoint": s3.endpoint(),
        "region": "us-east-1",
        "accessKeyId": "testing",
        "secretAccessKey": "testing",
    });
    d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    d
}

fn directory(name: &str, dir: &Path, backup: bool) -> Value {
    json!({"name": name, "url": url_of(dir), "backup": backup})
}

fn url_of(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// One machine: its own cache and artifacts, the given destinations (and shared cache tier).
fn machine(root: &Path, deploy: Vec<Value>, remote_cache: Option<&S3Server>) -> Engine {
    let mut config = EngineConfig::default();
    config.cache.dir = Some(root.join("cache"));
    config.storage.artifacts_dir = Some(root.join("artifacts"));
    config.cache.memory.enabled = false;
    config.storage.deploy = serde_json::from_value(Value::Array(deploy)).unwrap();
    if let Some(s3) = remote_cache {
        config.cache.remote = Some(
            serde_json::from_value(json!({
                "url": format!("s3://{BUCKET}/builds"),
                "endpoint": s3.endpoint(),
                "accessKeyId": "testing",
                "secretAccessKey": "testing",
            }))
            .unwrap(),
        );
    }
    Engine::new(config).unwrap()
}

/// A site with a page, a content-hashed script, a stylesheet big enough to be precompressed
/// and an image: release `round` differs from the others in every file.
fn write_site(dir: &Path, version: &str, round: usize) {
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(
        dir.join("workz.json"),
        json!({"name": "Shop", "version": version, "appType": "static"}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("index.html"),
        format!("<!doctype html><link rel=stylesheet href=assets/site.css><script src=assets/app-3F9a1c2B.js></script><h1>round {round}</h1>"),
    )
    .unwrap();
    std::fs::write(dir.join("assets/app-3F9a1c2B.js"), format!("console.log({round});")).unwrap();
    std::fs::write(dir.join("assets/site.css"), format!("/* {round} */\n{}", "body { color: #123456; }\n".repeat(200)))
        .unwrap();
    let logo: Vec<u8> = (0..40_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ round as u8).collect();
    std::fs::write(dir.join("assets/logo.bin"), logo).unwrap();
}

fn build(engine: &Engine, dir: &Path) -> BuildResult {
    engine.build_blocking(BuildRequest::directory(dir), None)
}

fn ok(result: &BuildResult) {
    assert_eq!(result.status, BuildStatus::Succeeded, "{:?}", result.error);
}

fn deployments(result: &BuildResult) -> BTreeMap<String, String> {
    let artifacts = result.artifacts.as_ref().expect("a release");
    artifacts.deployments.iter().map(|d| (d.destination.clone(), d.url.clone())).collect()
}

/// What a reader of a bucket finds by following `latest.json`: the release's build id, or why
/// it is not whole (a file missing or from another build).
fn read_release(s3: &S3Server, bucket: &str, app: &str) -> Option<Result<String, String>> {
    let pointer = s3.get(bucket, &format!("sites/{app}/latest.json"))?;
    if pointer.status == 404 {
        return None;
    }
    let pointer: Value = serde_json::from_slice(&pointer.body).ok()?;
    let path = pointer["path"].as_str().unwrap().to_string();
    let build_id = pointer["buildId"].as_str().unwrap().to_string();
    let Some(manifest) = s3.get(bucket, &format!("sites/{path}/manifest.json")).filter(|m| m.status == 200) else {
        return Some(Err(format!("{path}: no manifest.json")));
    };
    let manifest: Value = serde_json::from_slice(&manifest.body).unwrap();
    if manifest["buildId"] != build_id.as_str() {
        return Some(Err(format!("{path}: the manifest of {}", manifest["buildId"])));
    }
    for file in manifest["files"].as_array().unwrap() {
        let name = file["path"].as_str().unwrap();
        match s3.get(bucket, &format!("sites/{path}/{name}")) {
            Some(got) if got.status == 200 && Digest::of(&got.body).to_string() == file["blake3"].as_str().unwrap() => {
            }
            Some(got) => return Some(Err(format!("{path}/{name}: status {} or other bytes", got.status))),
            None => return None,
        }
    }
    Some(Ok(build_id))
}

#[test]
fn a_reader_polling_latest_during_twenty_publishes_never_sees_half_a_release() {
    let s3 = Arc::new(S3Server::start());
    s3.create_bucket(RELEASES);
    let world = tempfile::tempdir().unwrap();
    let backup = world.path().join("backup");
    let cdn = destination(&s3, "cdn", RELEASES, json!({"publicUrl": "https://cdn.example.com/sites/"}));
    let engine = machine(&world.path().join("m1"), vec![cdn, directory("backup", &backup, true)], None);
    let site = world.path().join("shop");

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s3, done) = (s3.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match read_release(&s3, RELEASES, "shop") {
                    Some(Ok(build_id)) => seen.push(build_id),
                    Some(Err(half)) => panic!("the reader saw half a release: {half}"),
                    None => {}
                }
            }
            seen
        })
    };
    let mut results = Vec::new();
    for round in 0..20 {
        write_site(&site, "1.0.0", round);
        let result = build(&engine, &site);
        ok(&result);
        results.push(result);
    }
    done.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("the reader saw only whole releases");
    let last = results.last().unwrap();
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert!(distinct.len() >= 3, "the reader followed several releases as they came: {distinct:?}");
    assert_eq!(read_release(&s3, RELEASES, "shop"), Some(Ok(last.build_id.clone())));

    // Where the release went, as the result says it.
    let release_rel = format!("shop/1.0.0/{}", last.build_id);
    let urls = deployments(last);
    assert_eq!(urls["cdn"], format!("https://cdn.example.com/sites/{release_rel}/"));
    assert_eq!(urls["backup"], format!("{}/{release_rel}/", url_of(&backup)));

    // Headers a CDN serves the objects with.
    let get = |name: &str| s3.get(RELEASES, &format!("sites/{release_rel}/{name}")).unwrap();
    let script = get("assets/app-3F9a1c2B.js");
    assert_eq!(script.header("cachecontrol"), Some("public, max-age=31536000, immutable"));
    assert!(script.header("contenttype").is_some_and(|t| t.contains("javascript")), "{:?}", script.headers);
    let page = get("index.html");
    assert_eq!(page.header("contenttype"), Some("text/html"));
    assert_eq!(page.header("cachecontrol"), Some("public, max-age=0, must-revalidate"));
    let css_gz = get("assets/site.css.gz");
    assert_eq!(css_gz.status, 200, "the precompressed variant is its own object");
    assert_eq!(css_gz.header("contentencoding"), Some("gzip"));
    assert_eq!(css_gz.header("contenttype"), Some("text/css"));

    // The backup holds the same files as the primary.
    let local = PathBuf::from(&last.artifacts.as_ref().unwrap().path);
    for file in &last.artifacts.as_ref().unwrap().files {
        let bytes = std::fs::read(backup.join(&release_rel).join(&file.path)).unwrap();
        assert_eq!(Digest::of(&bytes), file.blake3, "{}", file.path);
        assert_eq!(Digest::of(&get(&file.path).body), file.blake3, "{}", file.path);
    }
    assert_eq!(
        std::fs::read(backup.join(&release_rel).join("manifest.json")).unwrap(),
        std::fs::read(local.join("manifest.json")).unwrap()
    );
    let pointer: Value = serde_json::from_slice(&std::fs::read(backup.join("shop/latest.json")).unwrap()).unwrap();
    assert_eq!(pointer["buildId"], last.build_id.as_str());
}

#[test]
fn a_primary_that_rejects_writes_fails_the_build_and_keeps_its_latest() {
    let world = tempfile::tempdir().unwrap();
    let (origin, backup) = (world.path().join("origin"), world.path().join("backup"));
    let engine = machine(
        &world.path().join("m1"),
        vec![directory("origin", &origin, false), directory("backup", &backup, true)],
        None,
    );
    let site = world.path().join("shop");
    write_site(&site, "1.0.0", 0);
    let first = build(&engine, &site);
    ok(&first);

    // The origin cannot take version 1.0.1: a file stands where its directory would go.
    write_site(&site, "1.0.1", 1);
    std::fs::write(origin.join("shop/1.0.1"), "in the way").unwrap();
    let failed = build(&engine, &site);
    assert_eq!(failed.status, BuildStatus::Failed);
    let error = failed.error.as_ref().unwrap();
    assert_eq!(error.code, "deploy_failed", "{}", error.message);
    assert_eq!(error.category, workz_build::Category::Infrastructure, "{error:?}");
    assert!(error.hint.is_some(), "{error:?}");
    assert!(error.message.contains("origin"), "names the destination: {}", error.message);
    let pointer: Value = serde_json::from_slice(&std::fs::read(origin.join("shop/latest.json")).unwrap()).unwrap();
    assert_eq!(pointer["buildId"], first.build_id.as_str(), "the origin's latest did not move");
    let local_latest = std::fs::read_link(world.path().join("m1/artifacts/shop/latest")).unwrap();
    assert!(local_latest.ends_with(&first.build_id), "nor did this machine's: {}", local_latest.display());

    // A backup that cannot take it is a warning; the origin serves the build.
    // (It took the files of 1.0.1 while the origin failed: no pointer named them.)
    std::fs::remove_file(origin.join("shop/1.0.1")).unwrap();
    write_site(&site, "1.0.2", 2);
    std::fs::write(backup.join("shop/1.0.2"), "in the way").unwrap();
    let second = build(&engine, &site);
    ok(&second);
    assert!(second.warnings.iter().any(|w| w.code == "backup_deploy_failed"), "{:?}", second.warnings);
    assert_eq!(deployments(&second).keys().collect::<Vec<_>>(), ["origin"]);

    // Once it can, the next build of the same source (a hit, served by this machine's
    // release) brings the backup up to date.
    std::fs::remove_file(backup.join("shop/1.0.2")).unwrap();
    let third = build(&engine, &site);
    ok(&third);
    assert!(third.artifacts.as_ref().unwrap().reused, "{:?}", third.artifacts);
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
    assert_eq!(deployments(&third).keys().collect::<Vec<_>>(), ["backup", "origin"]);
    let pointer: Value = serde_json::from_slice(&std::fs::read(backup.join("shop/latest.json")).unwrap()).unwrap();
    assert_eq!(pointer["buildId"], second.build_id.as_str());
    assert!(backup.join(format!("shop/1.0.2/{}/index.html", second.build_id)).is_file());
}

#[test]
fn a_second_machine_hit_finds_its_release_already_deployed() {
    let s3 = S3Server::start();
    s3.create_bucket(RELEASES);
    let world = tempfile::tempdir().unwrap();
    let site = world.path().join("shop");
    write_site(&site, "1.0.0", 0);
    let cdn = || vec![destination(&s3, "cdn", RELEASES, json!({}))];
    let first = build(&machine(&world.path().join("m1"), cdn(), Some(&s3)), &site);
    ok(&first);
    let objects = s3.keys_in(RELEASES, "sites/");

    let second = build(&machine(&world.path().join("m2"), cdn(), Some(&s3)), &site);
    ok(&second);
    assert_eq!(second.cache.tier.as_deref(), Some("remote"), "{:?}", second.cache);
    assert_eq!(deployments(&second), deployments(&first), "the release the first machine published");
    assert_eq!(s3.keys_in(RELEASES, "sites/"), objects, "nothing uploaded again");
    assert_eq!(read_release(&s3, RELEASES, "shop"), Some(Ok(first.build_id.clone())));
}

#[test]
fn the_primary_server_down_fails_the_build_with_a_retryable_error() {
    let mut s3 = S3Server::start();
    s3.create_bucket(RELEASES);
    let world = tempfile::tempdir().unwrap();
    let engine = machine(&world.path().join("m1"), vec![destination(&s3, "cdn", RELEASES, json!({}))], None);
    let site = world.path().join("shop");
    write_site(&site, "1.0.0", 0);
    ok(&build(&engine, &site));
    s3.stop();
    write_site(&site, "1.0.0", 1);
    let failed = build(&engine, &site);
    let error = failed.error.as_ref().expect("a failed deploy");
    assert_eq!(error.code, "deploy_failed", "{}", error.message);
    assert_eq!(error.category, workz_build::Category::Infrastructure);
}

#[test]
fn an_unknown_bucket_stops_the_engine_at_start() {
    let s3 = S3Server::start();
    let world = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::default();
    config.cache.dir = Some(world.path().join("cache"));
    config.storage.artifacts_dir = Some(world.path().join("artifacts"));
    config.storage.deploy =
        serde_json::from_value(json!([destination(&s3, "cdn", "no-such-bucket", json!({}))])).unwrap();
    let report = Engine::new(config.clone()).err().expect("an error at start").report();
    assert_eq!(report.code, "config_invalid", "{}", report.message);
    assert!(report.message.contains("storage.deploy.0.url"), "{}", report.message);
    assert!(report.hint.is_some());

    // Once the bucket exists, the engine starts (and the check is remembered).
    s3.create_bucket("no-such-bucket");
    Engine::new(config.clone()).expect("the bucket answers");
    let remembered = std::fs::read_to_string(world.path().join("cache/checked-buckets")).unwrap();
    assert_eq!(remembered.lines().count(), 1, "{remembered}");
}

#[test]
fn bad_destinations_are_config_errors() {
    for (deploy, wanted) in [
        (json!([{"name": "cdn", "url": "ftp://x/y"}]), "storage.deploy.0.url"),
        (json!([{"name": "cdn", "url": "s3://ab"}]), "storage.deploy.0.url"),
        (json!([{"name": "cdn", "url": "s3://bucket", "secretAccessKey": "s"}]), "storage.deploy.0"),
        (json!([{"name": "", "url": "file:///tmp/x"}]), "storage.deploy.0.name"),
        (
            json!([{"name": "a", "url": "file:///tmp/x"}, {"name": "a", "url": "file:///tmp/y"}]),
            "storage.deploy.1.name",
        ),
        (
            json!([{"name": "cdn", "url": "file:///tmp/x", "publicUrl": "cdn.example.com"}]),
            "storage.deploy.0.publicUrl",
        ),
    ] {
        let text = json!({"storage": {"deploy": deploy}}).to_string();
        let err = EngineConfig::from_json("engine.json", &text).unwrap_err();
        let report = workz_build::Error::from(err).report();
        assert_eq!(report.code, "config_invalid", "{}", report.message);
        assert!(report.message.contains(wanted), "{wanted}: {}", report.message);
    }
}

/// A static-site builder with two targets, as a Flutter app has several.
struct TwoScreens;

#[async_trait::async_trait]
impl workz_build::PlatformBuilder for TwoScreens {
    fn app_type(&self) -> workz_build::config::AppType {
        workz_build::config::AppType::Static
    }
    fn supported_targets(&self) -> &[&'static str] {
        &["web", "kiosk"]
    }
    async fn build(&self, ctx: &mut workz_build::BuildContext) -> workz_build::Result<workz_build::BuildOutput> {
        let target = ctx.target()?.to_string();
        std::fs::write(ctx.output_dir()?.join("index.html"), format!("<h1>{target}")).unwrap();
        Ok(workz_build::BuildOutput { entry_point: Some("index.html".into()) })
    }
    fn artifact_type(&self, target: &str) -> String {
        format!("{target}-site")
    }
}

#[test]
fn each_target_of_a_multi_target_app_has_its_own_latest_and_retention_keeps_only_what_is_current() {
    let world = tempfile::tempdir().unwrap();
    let origin = world.path().join("origin");
    let mut config = EngineConfig::default();
    config.cache.dir = Some(world.path().join("cache"));
    config.storage.artifacts_dir = Some(world.path().join("artifacts"));
    config.build_system.artifact_retention = 0;
    config.storage.deploy = serde_json::from_value(json!([directory("origin", &origin, false)])).unwrap();
    let engine = Engine::setup(config).platform(Arc::new(TwoScreens)).build().unwrap();
    let site = world.path().join("shop");
    std::fs::create_dir_all(&site).unwrap();
    let mut builds = BTreeMap::new();
    for round in 0..2 {
        std::fs::write(
            site.join("workz.json"),
            json!({"name": "Shop", "version": format!("1.0.{round}"), "appType": "static", "buildTargets": ["web", "kiosk"]})
                .to_string(),
        )
        .unwrap();
        for target in ["web", "kiosk"] {
            let request = BuildRequest { target: Some(target.into()), ..BuildRequest::directory(&site) };
            let result = engine.build_blocking(request, None);
            ok(&result);
            builds.insert((round, target), result.build_id.clone());
        }
    }
    assert!(!origin.join("shop/latest.json").exists(), "no app-wide pointer for a multi-target app");
    for target in ["web", "kiosk"] {
        let pointer: Value =
            serde_json::from_slice(&std::fs::read(origin.join(format!("shop/{target}/latest.json"))).unwrap()).unwrap();
        assert_eq!(pointer["buildId"], builds[&(1, target)].as_str(), "{target}");
        assert_eq!(pointer["target"], target);
        let page = std::fs::read_to_string(origin.join(pointer["path"].as_str().unwrap()).join("index.html")).unwrap();
        assert_eq!(page, format!("<h1>{target}"));
        // Retention (0 s) removed the first round's release of this target, never a current one.
        let old = origin.join(format!("shop/1.0.0/{}", builds[&(0, target)]));
        assert!(!old.join("index.html").exists(), "{} is past retention", old.display());
    }
}
