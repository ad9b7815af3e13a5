//! End-to-end tests of the `workz-build` command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_workz-build")
}

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

    fn command(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.env("WORKZ_CACHE_DIR", self.path().join("cache"))
            .env("WORKZ_ARTIFACTS_DIR", self.path().join("artifacts"))
            .env_remove("WORKZ_LOG");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn app(&self, name: &str, workz_json: &str) -> PathBuf {
        let dir = self.path().join(name);
        std::fs::create_dir_all(dir.join("css")).unwrap();
        std::fs::write(dir.join("workz.json"), workz_json).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html><title>t</title><h1>hello</h1>").unwrap();
        std::fs::write(dir.join("css/site.css"), "h1 { color: teal; font-weight: 700; }\n".repeat(30)).unwrap();
        dir
    }
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

const STATIC_APP: &str = r#"{"name": "Docs Site", "version": "2.0.0", "appType": "static"}"#;

#[test]
fn build_json_reports_every_field_and_hits_on_the_second_run() {
    let world = World::new();
    let app = world.app("docs", STATIC_APP);
    let app = app.to_str().unwrap();
    let first = world.run(&["build", app, "--json"]);
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let r = json(&first);
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["app"]["name"], "Docs Site");
    assert_eq!(r["app"]["version"], "2.0.0");
    assert_eq!(r["target"], "web");
    assert_eq!(r["cache"]["key"].as_str().unwrap().len(), 64);
    assert_eq!(r["cache"]["hit"], false);
    assert!(r["cache"]["tier"].is_null());
    assert_eq!(r["artifacts"]["entry_point"], "index.html");
    let files = r["artifacts"]["files"].as_array().unwrap();
    assert!(files.iter().any(|f| f["path"] == "css/site.css.gz"));
    assert!(files.iter().all(|f| f["blake3"].as_str().unwrap().len() == 64 && f["size"].is_u64()));
    let release = PathBuf::from(r["artifacts"]["path"].as_str().unwrap());
    assert!(release.starts_with(world.path().join("artifacts/docs-site/2.0.0")));
    assert!(release.join("manifest.json").is_file());
    assert!(r["timings"]["build"].is_f64());
    assert!(r["duration"].is_f64());
    assert!(r["warnings"].is_array());
    assert!(r["error"].is_null());

    let second = json(&world.run(&["build", app, "--json"]));
    assert_eq!(second["cache"]["hit"], true);
    assert_eq!(second["cache"]["tier"], "filesystem");
    assert_eq!(second["cache"]["key"], r["cache"]["key"]);
    assert!(second["timings"].get("build").is_none());

    let forced = json(&world.run(&["build", app, "--json", "--force"]));
    assert_eq!(forced["cache"]["hit"], false);

    // The human form prints the release path on stdout and a summary on stderr.
    let human = world.run(&["build", app]);
    assert_eq!(human.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(Path::new(stdout.trim()).join("index.html").is_file(), "{stdout}");
    assert!(String::from_utf8_lossy(&human.stderr).contains("cache"));
}

#[test]
fn out_overrides_the_artifact_root() {
    let world = World::new();
    let app = world.app("docs", STATIC_APP);
    let out = world.path().join("published");
    let r = json(&world.run(&["build", app.to_str().unwrap(), "--json", "--out", out.to_str().unwrap()]));
    assert!(Path::new(r["artifacts"]["path"].as_str().unwrap()).starts_with(&out));
    assert!(out.join("docs-site/latest/index.html").is_file());
}

#[test]
fn every_failure_prints_a_result_object_with_the_right_exit_status() {
    let world = World::new();
    let good = world.app("good", STATIC_APP);

    let bad_config = world.path().join("engine.json");
    std::fs::write(&bad_config, r#"{"buildSystem": {"buildTimeout": "soon"}}"#).unwrap();
    let out = world.run(&["build", good.to_str().unwrap(), "--json", "--config", bad_config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let r = json(&out);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "config_invalid");
    assert!(r["error"]["message"].as_str().unwrap().contains("buildSystem.buildTimeout"));
    assert!(r["error"]["hint"].is_string());

    std::fs::write(&bad_config, "{\"buildSystem\": {").unwrap();
    let out = world.run(&["build", good.to_str().unwrap(), "--json", "--config", bad_config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["code"], "config_parse_error");

    let mistyped = world
        .app("mistyped", r#"{"name": "m", "appType": "static", "buildConfig": {"optimization": {"minify": "yes"}}}"#);
    let out = world.run(&["build", mistyped.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let r = json(&out);
    assert_eq!(r["error"]["code"], "config_invalid");
    assert!(r["error"]["message"].as_str().unwrap().contains("buildConfig.optimization.minify"));

    let out = world.run(&["build", world.path().join("nope").to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["code"], "source_not_found");

    let out = world.run(&["build", good.to_str().unwrap(), "--json", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["code"], "invalid_request");

    let failing = world.app(
        "failing",
        r#"{"name": "f", "appType": "static", "hooks": {"preBuild": ["sh -c 'echo broken >&2; exit 4'"]}}"#,
    );
    let out = world.run(&["build", failing.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(r["status"], "failed");
    assert_eq!(r["error"]["code"], "process_failed");
    assert!(r["error"]["message"].as_str().unwrap().contains("broken"));
    assert!(r["cache"]["key"].is_string(), "the key was known before the build failed");

    let unsupported = world.app("unsupported", r#"{"name": "u", "appType": "static", "buildTargets": ["android"]}"#);
    let r = json(&world.run(&["build", unsupported.to_str().unwrap(), "--json"]));
    assert_eq!(r["error"]["code"], "unsupported_target");

    let out = world.run(&["build", failing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("process_failed") && stderr.contains("hint:"), "{stderr}");
}

#[test]
fn a_build_that_times_out_reports_timed_out() {
    let world = World::new();
    let app = world.app("slow", r#"{"name": "s", "appType": "static", "hooks": {"preBuild": ["sleep 30"]}}"#);
    let started = std::time::Instant::now();
    let out = world.run(&["build", app.to_str().unwrap(), "--json", "--timeout", "1"]);
    assert!(started.elapsed().as_secs() < 20);
    assert_eq!(out.status.code(), Some(1));
    let r = json(&out);
    assert_eq!(r["status"], "timed_out");
    assert_eq!(r["error"]["code"], "timed_out");
}

#[test]
fn explain_and_cache_commands() {
    let world = World::new();
    let app = world.app("docs", STATIC_APP);
    let app_s = app.to_str().unwrap();
    assert_eq!(world.run(&["build", app_s, "--json"]).status.code(), Some(0));

    let e = json(&world.run(&["explain", app_s, "--json"]));
    assert_eq!(e["would_hit"], true);
    assert_eq!(e["tier"], "filesystem");

    std::fs::write(app.join("css/site.css"), "h1 { color: red }").unwrap();
    let out = world.run(&["explain", app_s]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would rebuild") && text.contains("css/site.css"), "{text}");

    let stats = json(&world.run(&["cache", "stats", "--json"]));
    let fs = stats["usage"].as_array().unwrap().iter().find(|u| u["tier"] == "filesystem").unwrap().clone();
    assert_eq!(fs["entries"], 1);
    assert!(fs["blobs"].as_u64().unwrap() >= 3);
    assert_eq!(stats["history"]["builds"], 1);

    assert_eq!(world.run(&["build", app_s, "--json"]).status.code(), Some(0));
    let inv = json(&world.run(&["cache", "invalidate", "docs-site/*", "--json"]));
    assert_eq!(inv["invalidated"], 2);
    let inv = json(&world.run(&["cache", "invalidate", "other-app/*", "--json"]));
    assert_eq!(inv["invalidated"], 0);
    let pruned = json(&world.run(&["cache", "prune", "--json"]));
    assert!(pruned["entries_removed"].is_u64());
    assert_eq!(world.run(&["cache", "clear"]).status.code(), Some(0));
    let stats = json(&world.run(&["cache", "stats", "--json"]));
    assert!(stats["usage"].as_array().unwrap().iter().all(|u| u["entries"] == 0 && u["blobs"] == 0));

    let out = world.run(&["cache", "invalidate", "[", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["code"], "invalid_request");
}

#[test]
fn sixty_four_processes_build_into_one_cache() {
    let world = World::new();
    let app = world.app("docs", STATIC_APP);
    let children: Vec<_> = (0..64)
        .map(|_| {
            world
                .command()
                .args(["build", app.to_str().unwrap(), "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut keys = std::collections::BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let r = json(&out);
        assert_eq!(r["status"], "succeeded");
        keys.insert(r["cache"]["key"].as_str().unwrap().to_string());
        // Every published file matches its hash.
        let root = PathBuf::from(r["artifacts"]["path"].as_str().unwrap());
        for f in r["artifacts"]["files"].as_array().unwrap() {
            let bytes = std::fs::read(root.join(f["path"].as_str().unwrap())).unwrap();
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), f["blake3"].as_str().unwrap());
        }
    }
    assert_eq!(keys.len(), 1);
    // The cache is whole: a following build hits and restores verified blobs.
    let r = json(&world.run(&["build", app.to_str().unwrap(), "--json"]));
    assert_eq!(r["cache"]["hit"], true);
    let tmp = std::fs::read_dir(world.path().join("cache/store/tmp")).unwrap().count();
    assert_eq!(tmp, 0, "no temp files left behind");
}

#[test]
fn without_target_every_configured_target_builds_and_reports_its_own_result() {
    let world = World::new();
    // A Flutter app for three targets, built with the scripted stand-in SDK of tests/flutter.
    let sdk = world.path().join("sdk");
    std::fs::create_dir_all(sdk.join("bin/cache")).unwrap();
    std::fs::copy(
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../tests/flutter/flutter"),
        sdk.join("bin/flutter"),
    )
    .unwrap();
    std::fs::write(sdk.join("bin/standin.json"), r#"{"version": "3.22.0"}"#).unwrap();
    std::fs::write(sdk.join("bin/cache/flutter.version.json"), r#"{"frameworkVersion": "3.22.0"}"#).unwrap();
    let config = world.path().join("engine.json");
    std::fs::write(&config, serde_json::json!({"platforms": {"flutter": {"sdkPath": sdk}}}).to_string()).unwrap();
    let app = world.path().join("multi");
    std::fs::create_dir_all(app.join("lib")).unwrap();
    std::fs::write(app.join("pubspec.yaml"), "name: multi\n").unwrap();
    std::fs::write(app.join("lib/main.dart"), "void main() {}\n").unwrap();
    std::fs::write(
        app.join("workz.json"),
        r#"{"name": "multi", "appType": "flutter", "buildTargets": ["web", "linux", "ios"]}"#,
    )
    .unwrap();
    let (app_s, config_s) = (app.to_str().unwrap(), config.to_str().unwrap());

    let out = world.run(&["build", app_s, "--json", "--config", config_s]);
    let results = json(&out);
    let results = results.as_array().expect("a JSON array, one result per target");
    let by_target: Vec<(&str, &str)> =
        results.iter().map(|r| (r["target"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    assert_eq!(by_target[..2], [("web", "succeeded"), ("linux", "succeeded")], "{results:?}");
    if std::env::consts::OS != "macos" {
        assert_eq!(by_target[2], ("ios", "failed"));
        assert_eq!(results[2]["error"]["code"], "platform_requirement_unmet");
        assert_eq!(out.status.code(), Some(1), "a failed target fails the command");
    }
    // With --target: one object, as before.
    let one = json(&world.run(&["build", app_s, "--json", "--config", config_s, "--target", "web"]));
    assert_eq!(one["target"], "web");
    assert_eq!(one["cache"]["hit"], true);
}

#[path = "support/s3.rs"]
mod s3;

#[test]
fn a_bucket_without_credentials_stops_the_engine_at_start_naming_the_variable() {
    let server = s3::S3Server::start();
    let world = World::new();
    let good = world.app("good", STATIC_APP);
    let config = world.path().join("engine.json");
    let deploy = serde_json::json!({"storage": {"deploy": [{
        "name": "cdn", "url": format!("s3://{}/sites", s3::BUCKET), "endpoint": server.endpoint(),
    }]}});
    std::fs::write(&config, deploy.to_string()).unwrap();
    let started = std::time::Instant::now();
    let out = world
        .command()
        .args(["build", good.to_str().unwrap(), "--json", "--config", config.to_str().unwrap()])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let r = json(&out);
    assert_eq!(r["error"]["code"], "config_invalid");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(message.contains("storage.deploy.0") && message.contains("AWS_ACCESS_KEY_ID"), "{message}");
    assert!(r["error"]["hint"].is_string());
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());

    // With the variables set, the same config builds and publishes.
    let out = world
        .command()
        .args(["build", good.to_str().unwrap(), "--json", "--config", config.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    let r = json(&out);
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["artifacts"]["deployments"][0]["destination"], "cdn");
}

#[test]
fn cache_warm_rebuilds_the_most_built_apps_of_the_history() {
    let world = World::new();
    let docs = world.app("docs", STATIC_APP);
    let shop = world.app("shop", r#"{"name": "Shop", "appType": "static"}"#);
    for dir in [&docs, &docs, &shop] {
        assert!(world.run(&["build", dir.to_str().unwrap()]).status.success());
    }
    let warmed = json(&world.run(&["cache", "warm", "--json"]));
    let rows: Vec<(&str, &str)> = warmed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["app"].as_str().unwrap(), w["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, [("docs-site", "cached"), ("shop", "cached")], "{warmed}");

    assert!(world.run(&["cache", "clear"]).status.success());
    let out = world.run(&["cache", "warm", "--top", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("docs-site (web): built"), "the most built app only: {text}");
    let explained = json(&world.run(&["explain", docs.to_str().unwrap(), "--json"]));
    assert_eq!(explained["would_hit"], true, "{explained}");

    let empty = World::new();
    let out = empty.run(&["cache", "warm"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no apps to warm"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn the_performance_monitor_advises_on_a_dominant_install_and_flags_a_slow_build() {
    let world = World::new();
    // The cache off: every build installs its npm dependencies, most of a small app's time.
    let config = world.path().join("no-cache.json");
    std::fs::write(&config, r#"{"buildSystem": {"cacheEnabled": false}}"#).unwrap();
    let app = world.path().join("deps-app");
    copy_dir(&Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../tests/fixtures/js/deps-app"), &app);
    let out = world.run(&["--config", config.to_str().unwrap(), "build", app.to_str().unwrap(), "--json"]);
    let result = json(&out);
    assert_eq!(result["status"], "succeeded", "{result}");
    let suggestion = &result["suggestions"][0];
    assert_eq!(suggestion["stage"], "dependencies", "{result}");
    assert!(suggestion["share"].as_f64().unwrap() > 0.4, "{result}");
    assert!(suggestion["solutions"][0].as_str().unwrap().contains("buildSystem.cacheEnabled: true"), "{result}");
    let history = std::fs::read_to_string(world.path().join("cache/history/builds.jsonl")).unwrap();
    assert!(history.contains("Slow dependency resolution"), "suggestions are in the history: {history}");
    let text = world.run(&["--config", config.to_str().unwrap(), "build", app.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stderr).contains("Slow dependency resolution: dependencies took"));

    // A build over its type's threshold (from config) gets `build_slow` with its stages.
    let slow_config = world.path().join("slow.json");
    std::fs::write(&slow_config, r#"{"monitoring": {"thresholds": {"static_web": 1}}}"#).unwrap();
    let site = world.app("sleepy", r#"{"name": "Sleepy", "appType": "static", "hooks": {"preBuild": ["sleep 1.2"]}}"#);
    let result =
        json(&world.run(&["--config", slow_config.to_str().unwrap(), "build", site.to_str().unwrap(), "--json"]));
    let slow: Vec<&Value> =
        result["warnings"].as_array().unwrap().iter().filter(|w| w["code"] == "build_slow").collect();
    assert_eq!(slow.len(), 1, "{result}");
    let message = slow[0]["message"].as_str().unwrap();
    assert!(message.contains("static_web threshold of 1 s") && message.contains("build 1."), "{message}");
    // The document's 300 s for other types: not slow.
    let result = json(&world.run(&["build", site.to_str().unwrap(), "--json", "--force"]));
    assert!(!result["warnings"].as_array().unwrap().iter().any(|w| w["code"] == "build_slow"), "{result}");

    // Out of range: config_invalid at its path.
    let bad = world.path().join("bad.json");
    std::fs::write(&bad, r#"{"monitoring": {"thresholds": {"javascript_web": 0}}}"#).unwrap();
    let out = world.run(&["--config", bad.to_str().unwrap(), "build", site.to_str().unwrap(), "--json"]);
    let error = &json(&out)["error"];
    assert_eq!(error["code"], "config_invalid", "{error}");
    assert!(error["message"].as_str().unwrap().contains("monitoring.thresholds.javascript_web"), "{error}");
}

/// A panic inside the engine (the test panic point; `scripts/test.sh` builds the CLI with
/// `test-hooks`): the build ends `internal` with a hint, and a person sees one line on stderr,
/// not Rust's panic message and backtrace, unless they ask for one.
#[cfg(feature = "test-hooks")]
#[test]
fn a_panic_is_one_line_for_a_person_and_a_backtrace_only_when_asked() {
    let world = World::new();
    let app = world.app("site", STATIC_APP);
    let run = |backtrace: bool| {
        let mut cmd = world.command();
        cmd.env("WORKZ_BUILD_TEST_PANIC_AT", "build").env_remove("RUST_BACKTRACE");
        if backtrace {
            cmd.env("RUST_BACKTRACE", "1");
        }
        cmd.args(["build", "--json"]).arg(&app).output().unwrap()
    };
    let out = run(false);
    let result = json(&out);
    assert_eq!(result["error"]["code"], "internal", "{result}");
    assert!(result["error"]["hint"].as_str().unwrap().contains("report"), "{result}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("internal error") && stderr.contains("this is a bug"), "{stderr}");
    assert!(!stderr.contains("stack backtrace") && !stderr.contains("panicked at"), "{stderr}");
    let stderr = String::from_utf8_lossy(&run(true).stderr).to_string();
    assert!(stderr.contains("stack backtrace"), "{stderr}");
}
