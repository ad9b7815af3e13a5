//! Webhook notifications end to end: `workz-build build` with webhooks configured, a real
//! receiver (Python's http.server, verifying Standard Webhooks signatures on its own) on a free
//! loopback port that succeeds, fails three times, refuses for good, or hangs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Start the receiver, logging to `log`: the process and its base URL.
fn start_receiver(log: &std::path::Path) -> (Receiver, String) {
    let script = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../tests/support/webhook_receiver.py");
    let mut receiver =
        Receiver(Command::new("python3").arg(&script).arg(SECRET).arg(log).stdout(Stdio::piped()).spawn().unwrap());
    let mut port = String::new();
    BufReader::new(receiver.0.stdout.take().unwrap()).read_line(&mut port).unwrap();
    (receiver, format!("http://127.0.0.1:{}", port.trim()))
}

/// `workz-build` with its cache and artifacts under `root`.
fn workz(root: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workz-build"));
    cmd.env("WORKZ_CACHE_DIR", root.join("cache"))
        .env("WORKZ_ARTIFACTS_DIR", root.join("artifacts"))
        .env_remove("WORKZ_LOG");
    cmd
}

/// A static app `name` under `root` whose workz.json has `extra`'s keys too.
fn static_app(root: &std::path::Path, name: &str, extra: Value) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = json!({"name": name, "appType": "static"});
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    std::fs::write(dir.join("workz.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("index.html"), format!("<h1>{name}</h1>")).unwrap();
    dir
}

/// The receiver process, stopped when the test ends however it ends.
struct Receiver(std::process::Child);

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn builds_are_signed_and_retried_to_their_webhooks_without_waiting_for_them() {
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("received.jsonl");
    let (receiver, base) = start_receiver(&log);
    let config = json!({
        "monitoring": {"thresholds": {"static_web": 1}},
        "notifications": {"retryFor": 8, "webhooks": [
            {"url": format!("{base}/ok"), "secret": SECRET},
            {"url": format!("{base}/flaky"), "secret": SECRET, "events": ["build_completed"]},
            {"url": format!("{base}/refuse"), "secret": SECRET, "events": ["build_completed"]},
            {"url": format!("{base}/hang"), "secret": SECRET, "events": ["build_completed"]},
        ]},
    });
    let config_path = root.path().join("engine.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let app = root.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("workz.json"),
        r#"{"name": "Hooked", "appType": "static", "hooks": {"preBuild": ["sleep 1.1"]}}"#,
    )
    .unwrap();
    std::fs::write(app.join("index.html"), "<!doctype html><h1>hooked</h1>").unwrap();
    let cli = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_workz-build"));
        cmd.arg("--config")
            .arg(&config_path)
            .env("WORKZ_CACHE_DIR", root.path().join("cache"))
            .env("WORKZ_ARTIFACTS_DIR", root.path().join("artifacts"))
            .env_remove("WORKZ_LOG");
        cmd
    };

    // The result comes out while the hanging receiver still holds its delivery.
    let started = Instant::now();
    let mut build = cli().arg("build").arg(&app).arg("--json").stdout(Stdio::piped()).spawn().unwrap();
    let mut text = String::new();
    let mut lines = BufReader::new(build.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        text += &line;
        if line == "}" {
            break;
        }
    }
    let printed_after = started.elapsed();
    let result: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(result["status"], "succeeded", "{result}");
    assert!(printed_after < Duration::from_secs(6), "the result waited for a receiver: {printed_after:?}");
    build.wait().unwrap();
    drop(receiver);
    let id = result["build_id"].as_str().unwrap();

    let received: Vec<Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(received.iter().all(|r| r["valid"] == true), "every request is signed: {received:?}");
    let at = |path: &str| received.iter().filter(|r| r["path"] == path).collect::<Vec<_>>();
    // Both events to the receiver that asked for all, once each, with ids to dedupe on.
    let ok: Vec<(String, String)> =
        at("/ok").iter().map(|r| (r["type"].as_str().unwrap().into(), r["id"].as_str().unwrap().into())).collect();
    assert!(ok.contains(&("build_completed".into(), id.to_string())), "{ok:?}");
    assert!(ok.contains(&("build_slow".into(), format!("{id}-build_slow"))), "{ok:?}");
    assert_eq!(ok.len(), 2, "{ok:?}");
    // Failed three times, then delivered: the same message each time.
    let flaky = at("/flaky");
    assert_eq!(flaky.len(), 4, "{flaky:?}");
    assert!(flaky.iter().all(|r| r["id"] == id && r["type"] == "build_completed" && r["status"] == "succeeded"));

    let deliveries: Vec<Value> =
        serde_json::from_slice(&cli().args(["notifications", "--json"]).output().unwrap().stdout).unwrap();
    let flaky = deliveries.iter().find(|d| d["url"].as_str().unwrap().ends_with("/flaky")).unwrap();
    assert_eq!((flaky["delivered"].as_bool(), flaky["attempts"].as_u64()), (Some(true), Some(4)), "{deliveries:?}");
    let failed: Vec<Value> =
        serde_json::from_slice(&cli().args(["notifications", "--failed", "--json"]).output().unwrap().stdout).unwrap();
    assert!(failed.iter().all(|d| d["delivered"] == false), "{failed:?}");
    // The refusing receiver, given up after retryFor (the hanging one too, if its 10 s request
    // timed out before the process stopped waiting).
    let refused = failed.iter().find(|d| d["url"].as_str().unwrap().ends_with("/refuse")).expect("recorded");
    assert!(refused["status"] == 500 && refused["attempts"].as_u64().unwrap() >= 3, "{failed:?}");
    assert!(failed.iter().all(|d| ["/refuse", "/hang"].iter().any(|p| d["url"].as_str().unwrap().ends_with(p))));

    // A bad webhook config is refused at start, naming the path.
    std::fs::write(
        &config_path,
        json!({"notifications": {"webhooks": [{"url": "ftp://x", "secret": SECRET}]}}).to_string(),
    )
    .unwrap();
    let out = cli().arg("build").arg(&app).arg("--json").output().unwrap();
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["code"], "config_invalid");
    assert!(error["error"]["message"].as_str().unwrap().contains("notifications.webhooks.0.url"), "{error}");
}

#[test]
fn a_failure_rate_past_its_threshold_is_alerted_once_across_processes() {
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("received.jsonl");
    let (receiver, base) = start_receiver(&log);
    let config = json!({
        "monitoring": {"alerts": {"failureRate": 10, "window": 5}},
        "notifications": {"webhooks": [{"url": format!("{base}/ok"), "secret": SECRET, "events": ["alert"]}]},
    });
    let config_path = root.path().join("engine.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let app = |name: &str, hook: &str| static_app(root.path(), name, json!({"hooks": {"preBuild": [hook]}}));
    let (good, bad) = (app("good", "true"), app("bad", "false"));
    let mut ids = Vec::new();
    // Four good builds, a failed one (20 % of the last five), a good one: each its own process.
    for dir in [&good, &good, &good, &good, &bad, &good] {
        let out =
            workz(root.path()).arg("--config").arg(&config_path).args(["build", "--force", "--json"]).arg(dir).output();
        let out = out.unwrap();
        ids.push(serde_json::from_slice::<Value>(&out.stdout).unwrap()["build_id"].as_str().unwrap().to_string());
    }
    drop(receiver);
    let received: Vec<Value> =
        std::fs::read_to_string(&log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(received.len(), 1, "one alert for one crossing: {received:?}");
    assert_eq!(received[0]["type"], "alert");
    assert_eq!(received[0]["id"], format!("{}-alert-failure_rate", ids[4]));
    assert_eq!(received[0]["valid"], true);
    let alert = &received[0]["data"];
    assert_eq!(
        (alert["alert"].as_str(), alert["value"].as_f64(), alert["window"].as_u64()),
        (Some("failure_rate"), Some(20.0), Some(5))
    );
}

#[test]
fn an_apps_own_webhooks_hear_of_its_builds_and_their_secret_is_stored_nowhere() {
    let root = tempfile::tempdir().unwrap();
    let log = root.path().join("received.jsonl");
    let (receiver, base) = start_receiver(&log);
    // No webhook in the engine config: only the app's.
    let app = |name: &str, notifications: Value| static_app(root.path(), name, json!({"notifications": notifications}));
    let own = app("own", json!({"webhooks": [{"url": format!("{base}/ok"), "secret": SECRET}]}));
    let quiet = app("quiet", json!({}));
    let build = |dir: &std::path::Path| {
        let out = workz(root.path()).args(["build", "--json"]).arg(dir).output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let (told, untold) = (build(&own), build(&quiet));
    assert_eq!((told["status"].as_str(), untold["status"].as_str()), (Some("succeeded"), Some("succeeded")));
    drop(receiver);
    let received: Vec<Value> =
        std::fs::read_to_string(&log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(received.len(), 1, "only the app that asked is told: {received:?}");
    assert_eq!((received[0]["id"].as_str(), received[0]["valid"].as_bool()), (told["build_id"].as_str(), Some(true)));
    // The secret is in the app's workz.json and nowhere the engine writes (cache, history,
    // releases: workz.json is not published).
    let key = SECRET.trim_start_matches("whsec_");
    let mut stack = vec![root.path().join("cache"), root.path().join("artifacts")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()), "the secret is in {}", path.display());
            }
        }
    }
    // An app's webhook is checked as the engine's are.
    let bad = app("bad", json!({"webhooks": [{"url": "http://x", "secret": "short"}]}));
    let error = build(&bad);
    assert_eq!(error["error"]["code"], "config_invalid");
    assert!(error["error"]["message"].as_str().unwrap().contains("notifications.webhooks.0.secret"), "{error}");
}
