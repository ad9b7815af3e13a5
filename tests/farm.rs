//! The build farm end to end: real `redis-server`, real `workz-build worker` processes, builds
//! submitted by `workz-build submit` processes; workers killed and stopped mid-build.

#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/websocket.rs"]
mod websocket;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use serde_json::{Value, json};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_workz-build")
}

/// A farm: its Redis, a shared content store (a directory every process reaches), a config.
struct Farm {
    redis: RedisServer,
    root: tempfile::TempDir,
    config: PathBuf,
    workers: Vec<(String, Child)>,
}

impl Farm {
    fn start(extra: Value) -> Farm {
        Farm::with_redis(RedisServer::start(), extra)
    }

    fn with_redis(redis: RedisServer, extra: Value) -> Farm {
        let root = tempfile::tempdir().unwrap();
        let mut config = json!({
            "queue": {"redis": {"url": redis.url()}, "leaseSeconds": 5},
            "cache": {"remote": {"url": format!("file://{}/shared", root.path().display())}},
        });
        merge(&mut config, extra);
        let path = root.path().join("engine.json");
        std::fs::write(&path, config.to_string()).unwrap();
        Farm { redis, root, config: path, workers: Vec::new() }
    }

    /// A `workz-build` command as machine `machine` runs it (its own cache and artifacts).
    fn command(&self, machine: &str) -> Command {
        let mut cmd = Command::new(bin());
        let home = self.root.path().join(machine);
        cmd.arg("--config")
            .arg(&self.config)
            .env("WORKZ_CACHE_DIR", home.join("cache"))
            .env("WORKZ_ARTIFACTS_DIR", home.join("artifacts"))
            .env_remove("WORKZ_LOG");
        cmd
    }

    fn worker(&mut self, name: &str) {
        let child = self
            .command(name)
            .args(["worker", "--name", name, "--concurrency", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.workers.push((name.to_string(), child));
    }

    fn pid(&self, name: &str) -> u32 {
        self.workers.iter().find(|(n, _)| n == name).unwrap().1.id()
    }

    fn signal(&self, name: &str, signal: &str) {
        assert!(Command::new("kill").args([signal, &self.pid(name).to_string()]).status().unwrap().success());
    }

    fn submit(&self, app: &Path, args: &[&str]) -> Output {
        self.command("client").arg("submit").arg(app).args(args).output().unwrap()
    }

    fn status(&self, id: &str) -> Value {
        json_of(&self.command("client").args(["status", id, "--json"]).output().unwrap())
    }

    /// Wait until build `id` is in `state`; its status then.
    fn wait_for(&self, id: &str, state: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status(id);
            if status["state"] == state {
                return status;
            }
            assert!(Instant::now() < deadline, "{id} never reached {state}: {status}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        for (_, child) in &mut self.workers {
            let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        self.redis.kill();
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        for (k, v) in extra {
            match into.get_mut(&k) {
                Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                _ => {
                    into.insert(k, v);
                }
            }
        }
    }
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn app(root: &Path, name: &str, pre_build: &[&str]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("css")).unwrap();
    let config = json!({"name": name, "appType": "static", "hooks": {"preBuild": pre_build}});
    std::fs::write(dir.join("workz.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("index.html"), format!("<!doctype html><h1>{name}</h1>")).unwrap();
    std::fs::write(dir.join("css/site.css"), "h1 { color: teal; }\n".repeat(50)).unwrap();
    dir
}

fn files(result: &Value) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = result["artifacts"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["blake3"].as_str().unwrap().to_string()))
        .collect();
    files.sort();
    files
}

#[test]
fn a_submitted_build_runs_on_a_worker_and_gives_what_an_in_process_build_gives() {
    let mut farm = Farm::start(json!({}));
    farm.worker("w1");
    let site = app(farm.root.path(), "shop", &[]);
    let out = farm.submit(&site, &["--wait", "--json"]);
    let result = json_of(&out);
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["worker"], "w1");
    let local = json_of(&farm.command("local").args(["build", site.to_str().unwrap(), "--json"]).output().unwrap());
    assert_eq!(local["status"], "succeeded");
    assert!(local.get("worker").is_none(), "`build` runs in its own process: {local}");
    assert_eq!(files(&result), files(&local), "the farm built what this process builds");
    assert_eq!(result["cache"]["key"], local["cache"]["key"]);

    let status = farm.status(result["build_id"].as_str().unwrap());
    assert_eq!((status["state"].as_str(), status["worker"].as_str()), (Some("succeeded"), Some("w1")), "{status}");
    let figures = json_of(&farm.command("client").args(["farm", "status", "--json"]).output().unwrap());
    assert_eq!(figures["workers"][0]["name"], "w1", "{figures}");
    assert_eq!(figures["running"], 0);
    assert_eq!(figures["desiredWorkers"], 1, "nothing waits: the minimum");

    // Without --wait, the id comes back once the job is queued.
    let out = farm.submit(&site, &["--json"]);
    let id = json_of(&out)["build_id"].as_str().unwrap().to_string();
    let done = farm.wait_for(&id, "succeeded", Duration::from_secs(30));
    assert_eq!(done["result"]["cache"]["hit"], true, "{done}");
}

#[test]
fn a_worker_killed_mid_build_loses_its_job_to_another() {
    let mut farm = Farm::start(json!({}));
    farm.worker("w1");
    let site = app(farm.root.path(), "slow", &["sleep 5"]);
    let id = json_of(&farm.submit(&site, &["--json"]))["build_id"].as_str().unwrap().to_string();
    let running = farm.wait_for(&id, "running", Duration::from_secs(20));
    assert_eq!(running["worker"], "w1");
    // The hook's process (in a process group of its own) dies with its worker.
    let deadline = Instant::now() + Duration::from_secs(10);
    let hook = loop {
        if let Some(pid) = children_of(farm.pid("w1")).into_iter().next() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the hook never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    farm.signal("w1", "-KILL");
    // Well before the hook's own 5 s are over.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Path::new(&format!("/proc/{hook}")).exists() && !is_zombie(hook) {
        assert!(Instant::now() < deadline, "the hook {hook} outlived its killed worker");
        std::thread::sleep(Duration::from_millis(50));
    }
    farm.worker("w2");
    let done = farm.wait_for(&id, "succeeded", Duration::from_secs(40));
    assert_eq!(done["worker"], "w2", "{done}");
    assert_eq!(done["attempt"], 2);
    assert_eq!(done["result"]["worker"], "w2");
    assert!(!farm.root.path().join("w1/artifacts/slow/latest").exists(), "nothing published by the dead worker");
}

#[test]
fn a_worker_stopped_past_its_lease_publishes_nothing_when_it_resumes() {
    let mut farm = Farm::start(json!({}));
    farm.worker("w1");
    let site = app(farm.root.path(), "stalled", &["sleep 3"]);
    let id = json_of(&farm.submit(&site, &["--json"]))["build_id"].as_str().unwrap().to_string();
    farm.wait_for(&id, "running", Duration::from_secs(20));
    farm.signal("w1", "-STOP");
    farm.worker("w2");
    let done = farm.wait_for(&id, "succeeded", Duration::from_secs(40));
    assert_eq!(done["worker"], "w2", "{done}");
    farm.signal("w1", "-CONT");
    // w1's build goes on, reaches its first publishing step and finds the lease gone.
    std::thread::sleep(Duration::from_secs(5));
    let after = farm.status(&id);
    assert_eq!((after["worker"].as_str(), after["attempt"].as_u64()), (Some("w2"), Some(2)), "{after}");
    assert_eq!(after["result"]["build_id"], id.as_str());
    assert!(!farm.root.path().join("w1/artifacts/stalled/latest").exists(), "the stalled worker published nothing");
    // And it takes jobs again.
    farm.signal("w2", "-STOP");
    let other = app(farm.root.path(), "after", &[]);
    let result = json_of(&farm.submit(&other, &["--wait", "--json"]));
    assert_eq!((result["status"].as_str(), result["worker"].as_str()), (Some("succeeded"), Some("w1")), "{result}");
}

#[test]
fn a_job_that_kills_its_worker_every_time_is_dead_lettered() {
    // Sandboxed, a hook cannot reach its worker (tests/sandbox.rs): the sandbox is off here so
    // that the poison can kill whoever takes it, as a crashing tool chain would.
    let mut farm = Farm::start(json!({"buildSystem": {"retryAttempts": 1}, "sandbox": {"mode": "none"}}));
    let site = app(farm.root.path(), "poison", &["sh -c 'kill -9 $PPID'"]);
    let id = json_of(&farm.submit(&site, &["--json"]))["build_id"].as_str().unwrap().to_string();
    let healthy = app(farm.root.path(), "healthy", &[]);
    for (round, name) in ["w1", "w2", "w3"].into_iter().enumerate() {
        farm.worker(name);
        if round < 2 {
            // The poison kills the worker that takes it.
            let deadline = Instant::now() + Duration::from_secs(30);
            let child = &mut farm.workers.last_mut().unwrap().1;
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "{name} was not killed by the poison job");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let dead = farm.wait_for(&id, "dead", Duration::from_secs(40));
    let error = &dead["result"]["error"];
    assert!(error["message"].as_str().unwrap().contains("never finished"), "{dead}");
    let figures = json_of(&farm.command("client").args(["farm", "status", "--json"]).output().unwrap());
    assert_eq!(figures["deadLettered"], 1, "{figures}");
    // Other jobs are unaffected.
    let result = json_of(&farm.submit(&healthy, &["--wait", "--json"]));
    assert_eq!((result["status"].as_str(), result["worker"].as_str()), (Some("succeeded"), Some("w3")), "{result}");
}

#[test]
fn a_queued_build_is_cancelled_from_another_process() {
    let farm = Farm::start(json!({}));
    let site = app(farm.root.path(), "never", &[]);
    let id = json_of(&farm.submit(&site, &["--json"]))["build_id"].as_str().unwrap().to_string();
    let out = farm.command("client").args(["cancel", &id]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelled before it started"));
    let status = farm.wait_for(&id, "cancelled", Duration::from_secs(5));
    assert_eq!(status["result"]["status"], "cancelled");
    let unknown = farm.command("client").args(["status", "bnope", "--json"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert_eq!(json_of(&unknown)["error"]["code"], "build_not_found");
}

#[test]
fn sigterm_drains_a_worker_its_build_finishes_and_it_leaves_the_farm() {
    let mut farm = Farm::start(json!({}));
    farm.worker("w1");
    let site = app(farm.root.path(), "draining", &["sleep 2"]);
    let id = json_of(&farm.submit(&site, &["--json"]))["build_id"].as_str().unwrap().to_string();
    farm.wait_for(&id, "running", Duration::from_secs(20));
    farm.signal("w1", "-TERM");
    let done = farm.wait_for(&id, "succeeded", Duration::from_secs(30));
    assert_eq!(
        (done["worker"].as_str(), done["attempt"].as_u64()),
        (Some("w1"), Some(1)),
        "finished where it ran: {done}"
    );
    let child = &mut farm.workers[0].1;
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the worker did not stop after its build");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let figures = json_of(&farm.command("client").args(["farm", "status", "--json"]).output().unwrap());
    assert_eq!(figures["workers"].as_array().map(Vec::len), Some(0), "deregistered: {figures}");
}

#[test]
fn a_running_build_is_cancelled_from_another_process() {
    let mut farm = Farm::start(json!({}));
    farm.worker("w1");
    let site = app(farm.root.path(), "long", &["sleep 30"]);
    let id = json_of(&farm.submit(&site, &["--json"]))["build_id"].as_str().unwrap().to_string();
    farm.wait_for(&id, "running", Duration::from_secs(20));
    let started = Instant::now();
    let out = farm.command("client").args(["cancel", &id]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelling"), "{out:?}");
    let done = farm.wait_for(&id, "cancelled", Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(10), "the 30 s hook was stopped: {:?}", started.elapsed());
    assert_eq!(done["result"]["status"], "cancelled", "{done}");
    assert_eq!(done["result"]["error"]["code"], "cancelled");
}

#[test]
fn bad_jobs_are_refused_with_their_code_and_the_worker_goes_on() {
    let mut farm = Farm::start(json!({}));
    // A job whose payload was tampered with, put on the queue by hand.
    let key = |k: &str| format!("workz:{k}");
    farm.redis.command(&[
        b"HSET",
        key("job:btampered").as_bytes(),
        b"payload",
        b"{\"id\": 12",
        b"state",
        b"queued",
        b"attempt",
        b"0",
    ]);
    farm.redis.command(&[b"XADD", key("q:normal:static:web").as_bytes(), b"*", b"id", b"btampered"]);
    // A job whose sources are gone from the content store.
    let site = app(farm.root.path(), "lost", &[]);
    let id = json_of(&farm.submit(&site, &["--json"]))["build_id"].as_str().unwrap().to_string();
    let cas = farm.root.path().join("shared/cas");
    let blob = std::fs::read_dir(&cas).unwrap().next().unwrap().unwrap().path();
    std::fs::remove_file(&blob).unwrap();

    farm.worker("w1");
    let tampered = farm.wait_for("btampered", "dead", Duration::from_secs(20));
    assert_eq!(tampered["result"]["error"]["code"], "job_invalid", "{tampered}");
    let lost = farm.wait_for(&id, "failed", Duration::from_secs(20));
    assert_eq!(lost["result"]["error"]["code"], "job_source_missing", "{lost}");
    assert!(lost["result"]["error"]["hint"].is_string());
    // Submitted again, the sources are uploaded again (the stale manifest was dropped).
    let again = json_of(&farm.submit(&site, &["--wait", "--json"]));
    assert_eq!(again["status"], "succeeded", "{again}");
    // The worker is still there and builds.
    let good = app(farm.root.path(), "good", &[]);
    let result = json_of(&farm.submit(&good, &["--wait", "--json"]));
    assert_eq!(result["status"], "succeeded", "{result}");

    let out = farm.submit(&good, &["--priority", "high", "--json"]);
    assert_eq!(out.status.code(), Some(2), "a malformed priority is bad usage");
}

#[test]
fn redis_restarted_mid_run_loses_no_job() {
    let mut farm = Farm::with_redis(RedisServer::start_persistent(), json!({}));
    farm.worker("w1");
    // Six builds from three submitting processes at once, each waiting for its results.
    let submitters: Vec<Child> = (0..3)
        .map(|client| {
            let sites: Vec<PathBuf> =
                (0..2).map(|i| app(farm.root.path(), &format!("app{client}{i}"), &["sleep 1"])).collect();
            // Each build's result to a file of its own (two processes on one pipe interleave lines).
            let script = sites
                .iter()
                .map(|s| {
                    format!(
                        "{} --config {} submit {} --wait --json > {}.json",
                        bin(),
                        farm.config.display(),
                        s.display(),
                        s.display()
                    )
                })
                .collect::<Vec<_>>()
                .join(" & ");
            let home = farm.root.path().join(format!("client{client}"));
            Command::new("sh")
                .arg("-c")
                .arg(format!("{script} & wait"))
                .env("WORKZ_CACHE_DIR", home.join("cache"))
                .env("WORKZ_ARTIFACTS_DIR", home.join("artifacts"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    farm.redis.kill();
    std::thread::sleep(Duration::from_secs(1));
    farm.redis.restart();

    for mut submitter in submitters {
        submitter.wait().unwrap();
    }
    let results: Vec<Value> = (0..3)
        .flat_map(|client| (0..2).map(move |i| format!("app{client}{i}.json")))
        .map(|name| serde_json::from_slice(&std::fs::read(farm.root.path().join(name)).unwrap()).unwrap())
        .collect();
    assert_eq!(results.len(), 6, "{results:?}");
    for result in &results {
        assert_eq!(result["status"], "succeeded", "{result}");
    }
    let figures = json_of(&farm.command("client").args(["farm", "status", "--json"]).output().unwrap());
    assert_eq!((figures["running"].as_u64(), figures["deadLettered"].as_u64()), (Some(0), Some(0)), "{figures}");
    let queued: u64 = figures["queued"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(queued, 0, "{figures}");
}

#[test]
fn a_job_waits_for_a_worker_that_can_build_it() {
    let mut farm = Farm::start(json!({}));
    farm.worker("w1");
    // No Android SDK here: an Android build waits, and `farm status` says for what.
    let android = farm.root.path().join("mobile");
    std::fs::create_dir_all(&android).unwrap();
    let config = json!({"name": "Mobile", "appType": "flutter", "buildTargets": ["android"]});
    std::fs::write(android.join("workz.json"), config.to_string()).unwrap();
    std::fs::write(android.join("pubspec.yaml"), "name: mobile\n").unwrap();
    let id = json_of(&farm.submit(&android, &["--json"]))["build_id"].as_str().unwrap().to_string();
    // A build this worker can do goes past it.
    let site = app(farm.root.path(), "site", &[]);
    let result = json_of(&farm.submit(&site, &["--wait", "--json"]));
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(farm.status(&id)["state"], "queued");
    let figures = json_of(&farm.command("client").args(["farm", "status", "--json"]).output().unwrap());
    assert_eq!(figures["waitingForCapability"]["flutter:android"], 1, "{figures}");
    let capabilities = figures["workers"][0]["capabilities"].as_array().unwrap();
    assert!(capabilities.iter().any(|c| c == "static:web"), "{figures}");
    assert!(!capabilities.iter().any(|c| c == "flutter:android"), "{figures}");
    // With its tool versions (what `doctor` finds): Node here, no Flutter SDK.
    let tools = &figures["workers"][0]["tools"];
    assert!(tools["node"].as_str().is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit())), "{figures}");
    assert!(tools.get("flutter").is_none(), "{figures}");
    // No Flutter SDK: no Flutter target at all, web included.
    assert!(!capabilities.iter().any(|c| c.as_str().unwrap().starts_with("flutter:")), "{figures}");

    // A target no builder has is refused at submit, not queued for ever.
    let wrong = app(farm.root.path(), "wrong", &[]);
    let out = farm.submit(&wrong, &["--target", "android", "--json"]);
    assert_eq!(json_of(&out)["error"]["code"], "unsupported_target");
}

#[test]
fn logs_follow_a_build_and_drain_stops_a_worker_after_its_build() {
    let mut farm = Farm::start(json!({}));
    farm.worker("w1");
    let site = app(farm.root.path(), "chatty", &["sh -c 'echo hello from the hook; sleep 2'"]);
    let id = json_of(&farm.submit(&site, &["--json"]))["build_id"].as_str().unwrap().to_string();
    farm.wait_for(&id, "running", Duration::from_secs(20));
    let out = farm.command("client").args(["farm", "drain", "w1"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let logs = farm.command("client").args(["logs", &id, "--follow"]).output().unwrap();
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("│ hello from the hook"), "{text}");
    assert!(text.contains("finished: succeeded"), "{text}");
    let jsonl = farm.command("client").args(["logs", &id, "--json"]).output().unwrap();
    let records: Vec<Value> =
        String::from_utf8_lossy(&jsonl.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Every event, in order (numbers included: the stage timings, the duration).
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "{records:?}");
    assert!(records.iter().any(|r| r["type"] == "stage_finished" && r["seconds"].is_number()), "{records:?}");
    // The drained worker finished the build, then left.
    assert_eq!(farm.status(&id)["worker"], "w1");
    let child = &mut farm.workers[0].1;
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the drained worker did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // pid (comm) state ppid …: comm may hold spaces, so read after its closing parenthesis.
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn farm_status(farm: &Farm) -> Value {
    json_of(&farm.command("client").args(["farm", "status", "--json"]).output().unwrap())
}

/// Wait until `farm status` satisfies `ready`.
fn wait_for_status(farm: &Farm, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = farm_status(farm);
        if ready(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "never {what}: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_goes_to_the_free_worker_that_holds_its_dependencies() {
    let mut farm = Farm::start(json!({}));
    farm.worker("holder");
    let shop = farm.root.path().join("shop");
    copy_dir(&Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../tests/fixtures/js/deps-app"), &shop);
    let first = json_of(&farm.submit(&shop, &["--wait", "--json"]));
    assert_eq!((first["status"].as_str(), first["worker"].as_str()), (Some("succeeded"), Some("holder")), "{first}");
    assert_eq!(first["placement"]["reason"], "only free worker", "{first}");

    farm.worker("fresh");
    let status = wait_for_status(&farm, "two free workers, one holding the lock", |s| {
        let workers = s["workers"].as_array().unwrap();
        workers.len() == 2
            && workers.iter().any(|w| w["name"] == "holder" && w["dependencies"].as_array().unwrap().len() == 1)
    });
    assert!(status["workers"].as_array().unwrap().iter().all(|w| w["running"].as_array().unwrap().is_empty()));
    // Each worker learns of its peers at its next heartbeat (lease / 3 here).
    std::thread::sleep(Duration::from_secs(2));
    // Whichever worker reads the job, it runs where its dependencies are installed.
    for round in 0..4 {
        std::fs::write(
            shop.join("src/main.js"),
            format!("import {{ shout }} from 'shout';\nconsole.log(shout('round {round}'));\n"),
        )
        .unwrap();
        let result = json_of(&farm.submit(&shop, &["--wait", "--json"]));
        assert_eq!(result["status"], "succeeded", "{result}");
        assert_eq!(result["worker"], "holder", "round {round}: {result}");
        let placement = &result["placement"];
        let (holder, fresh) =
            (placement["scores"]["holder"].as_f64().unwrap(), placement["scores"]["fresh"].as_f64().unwrap());
        assert!(holder >= fresh + 30.0, "+50 for the dependencies, at most 20 apart on performance: {placement}");
    }
    // A job with other dependencies: both score alike, and it does not wait for anyone.
    let other = farm.root.path().join("other");
    copy_dir(&Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../tests/fixtures/js/version-v1"), &other);
    let result = json_of(&farm.submit(&other, &["--wait", "--json"]));
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["placement"]["scores"].as_object().unwrap().len(), 2, "{result}");

    // The holder stopped (its registration still fresh): the job is offered to it, not taken,
    // and the other worker takes it after the grace.
    farm.signal("holder", "-STOP");
    std::fs::write(shop.join("src/main.js"), "import { shout } from 'shout';\nconsole.log(shout('stopped'));\n")
        .unwrap();
    let started = Instant::now();
    let result = json_of(&farm.submit(&shop, &["--wait", "--json"]));
    farm.signal("holder", "-CONT");
    assert_eq!((result["status"].as_str(), result["worker"].as_str()), (Some("succeeded"), Some("fresh")), "{result}");
    let reason = result["placement"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("offered to holder, not taken within"), "{result}");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

#[test]
fn submissions_with_the_same_idempotency_key_are_one_build() {
    let mut farm = Farm::start(json!({}));
    let site = app(farm.root.path(), "order", &["sleep 1"]);
    let first = json_of(&farm.submit(&site, &["--idempotency-key", "order-42", "--json"]));
    let again = json_of(&farm.submit(&site, &["--idempotency-key", "order-42", "--json"]));
    assert_eq!(first["build_id"], again["build_id"], "the same key, the same build");
    farm.worker("w1");
    let waited = json_of(&farm.submit(&site, &["--idempotency-key", "order-42", "--wait", "--json"]));
    assert_eq!(
        (waited["build_id"].as_str(), waited["status"].as_str()),
        (first["build_id"].as_str(), Some("succeeded"))
    );
    let id = first["build_id"].as_str().unwrap();
    assert_eq!(farm.status(id)["attempt"], 1);
    let history = std::fs::read_to_string(farm.root.path().join("w1/cache/history/builds.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1, "built once: {history}");
    // Another key is another build.
    let other = json_of(&farm.submit(&site, &["--idempotency-key", "order-43", "--json"]));
    assert_ne!(other["build_id"], first["build_id"]);
    let empty = farm.submit(&site, &["--idempotency-key", "", "--json"]);
    assert_eq!(json_of(&empty)["error"]["code"], "invalid_request", "{empty:?}");
}

#[test]
fn the_desired_worker_count_reaches_the_scale_command_and_the_prometheus_gauges() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("scaled.log");
    let command = format!("echo $1 >> '{}'", log.display());
    let mut farm = Farm::start(
        json!({"queue": {"minWorkers": 1, "maxWorkers": 4, "scaleCommand": ["sh", "-c", command, "scale"]}}),
    );
    farm.worker("w1");
    let lines = || std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>();
    let wait_lines = |expected: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while lines() != expected {
            assert!(Instant::now() < deadline, "scale command ran with {:?}, expected {expected:?}", lines());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_lines(&["1"]);
    // Three builds no worker here can do wait: 3 > 2 × 1 active → 3 wanted.
    let mobile = farm.root.path().join("mobile");
    std::fs::create_dir_all(&mobile).unwrap();
    let config = json!({"name": "Mobile", "appType": "flutter", "buildTargets": ["android"]});
    std::fs::write(mobile.join("workz.json"), config.to_string()).unwrap();
    std::fs::write(mobile.join("pubspec.yaml"), "name: mobile\n").unwrap();
    let ids: Vec<String> =
        (0..3).map(|_| json_of(&farm.submit(&mobile, &["--json"]))["build_id"].as_str().unwrap().to_string()).collect();
    wait_lines(&["1", "3"]);
    let text =
        String::from_utf8(farm.command("client").args(["farm", "status", "--prometheus"]).output().unwrap().stdout)
            .unwrap();
    for line in [
        "workz_queue_depth{priority=\"normal\"} 3",
        "workz_workers_active 1",
        "workz_workers_desired 3",
        "workz_worker_load{worker=\"w1\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(text.contains("# TYPE workz_queue_depth gauge"), "{text}");
    for id in &ids {
        assert!(farm.command("client").args(["cancel", id]).status().unwrap().success());
    }
    // Nothing waits and one worker is the minimum: back to 1.
    wait_lines(&["1", "3", "1"]);
}

#[test]
fn sixty_builds_from_three_clients_on_three_workers_each_finish_once() {
    let mut farm = Farm::start(json!({}));
    for name in ["w1", "w2", "w3"] {
        farm.worker(name);
    }
    // Mixed apps as people write them: static sites with and without styles or images, bundled
    // scripts with modules, a hook here and there.
    let apps: Vec<PathBuf> = (0..60)
        .map(|i| {
            let dir = farm.root.path().join(format!("apps/app{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let hooks = if i % 7 == 0 { json!({"preBuild": ["true"]}) } else { json!({}) };
            if i % 3 == 0 {
                std::fs::create_dir_all(dir.join("src")).unwrap();
                let config = json!({"name": format!("app{i}"), "appType": "javascript", "hooks": hooks});
                std::fs::write(dir.join("workz.json"), config.to_string()).unwrap();
                std::fs::write(dir.join("index.html"), "<!doctype html><div id=app></div><script type=module src=src/main.js></script>").unwrap();
                std::fs::write(dir.join("src/main.js"), format!("import {{ greet }} from './greet.js';\ndocument.getElementById('app').textContent = greet({i});\n")).unwrap();
                std::fs::write(dir.join("src/greet.js"), "export function greet(n) { return `hello ${n}`; }\n").unwrap();
            } else {
                let config = json!({"name": format!("app{i}"), "appType": "static", "hooks": hooks});
                std::fs::write(dir.join("workz.json"), config.to_string()).unwrap();
                std::fs::write(dir.join("index.html"), format!("<!doctype html><title>{i}</title><h1>app {i}</h1>")).unwrap();
                if i % 3 == 1 {
                    std::fs::create_dir_all(dir.join("css")).unwrap();
                    std::fs::write(dir.join("css/site.css"), format!("h1 {{ margin: {i}px; }}\n")).unwrap();
                }
                if i % 5 == 0 {
                    std::fs::write(dir.join("logo.svg"), format!("<svg xmlns='http://www.w3.org/2000/svg'><text>{i}</text></svg>")).unwrap();
                }
            }
            dir
        })
        .collect();
    // Three clients submit 20 builds each, at once.
    let ids: Vec<(usize, String)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..3)
            .map(|client| {
                let (farm, apps) = (&farm, &apps);
                scope.spawn(move || {
                    (client * 20..client * 20 + 20)
                        .map(|i| {
                            let out = farm
                                .command(&format!("client{client}"))
                                .arg("submit")
                                .arg(&apps[i])
                                .arg("--json")
                                .output()
                                .unwrap();
                            (i, json_of(&out)["build_id"].as_str().unwrap().to_string())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().unwrap()).collect()
    });
    let history = |worker: &str| {
        std::fs::read_to_string(farm.root.path().join(format!("{worker}/cache/history/builds.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["build_id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let mut ran_on = std::collections::BTreeMap::<String, u64>::new();
    for (i, id) in &ids {
        let done = farm.wait_for(id, "succeeded", Duration::from_secs(120));
        assert_eq!(done["attempt"], 1, "{done}");
        *ran_on.entry(done["worker"].as_str().unwrap().to_string()).or_default() += 1;
        let result = &done["result"];
        // The release it names is where it ran.
        let release = PathBuf::from(result["artifacts"]["path"].as_str().unwrap());
        assert!(release.starts_with(farm.root.path().join(done["worker"].as_str().unwrap())), "{result}");
        assert!(release.join("index.html").is_file(), "{result}");
        // One `finished` event.
        let logs = farm.command("client").args(["logs", id, "--json"]).output().unwrap();
        let finished =
            String::from_utf8_lossy(&logs.stdout).lines().filter(|l| l.contains("\"type\":\"finished\"")).count();
        assert_eq!(finished, 1, "app{i}");
        // What this process builds of the same app.
        if i % 10 == 0 || i % 10 == 3 {
            let local =
                json_of(&farm.command("local").args(["build", apps[*i].to_str().unwrap(), "--json"]).output().unwrap());
            assert_eq!(files(result), files(&local), "app{i}");
        }
    }
    // One history record per build, on one worker.
    let mut recorded: Vec<String> = ["w1", "w2", "w3"].iter().flat_map(|w| history(w)).collect();
    recorded.sort();
    let mut expected: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    expected.sort();
    assert_eq!(recorded, expected);
    assert!(ran_on.len() >= 2, "the work was shared: {ran_on:?}");
    let figures = farm_status(&farm);
    assert_eq!((figures["running"].as_u64(), figures["deadLettered"].as_u64()), (Some(0), Some(0)), "{figures}");
}

#[test]
fn a_dashboard_on_the_farm_hears_of_the_builds_every_worker_finishes() {
    const TOKEN: &str = "farm-dashboard-token-0123456789";
    let mut farm = Farm::start(json!({}));
    farm.worker("w1");
    farm.worker("w2");
    let mut serve = farm
        .command("dash")
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("WORKZ_API_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(serve.stdout.take().unwrap()), &mut line).unwrap();
    let address = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line}")).to_string();

    let refused = websocket::WebSocket::connect(&address, "/ws?token=wrong-token-0123456789").err();
    assert!(refused.as_deref().is_some_and(|s| s.contains(" 401 ")), "{refused:?}");
    let mut feed = websocket::WebSocket::connect(&address, &format!("/ws?token={TOKEN}")).unwrap();
    let hello = feed.until("hello", |_| true);
    assert_eq!(hello["alerts"]["queueLength"], 10, "{hello}");
    feed.until("worker_status", |m| m["workers"].as_array().is_some_and(|w| w.len() == 2));

    // Two clients' builds, run by whichever workers take them: the dashboard hears of both.
    let clients: Vec<_> = ["north", "south"]
        .iter()
        .map(|name| {
            let site = app(farm.root.path(), name, &[]);
            farm.command(name).arg("submit").arg(&site).args(["--json"]).output().unwrap()
        })
        .collect();
    let mut ids: Vec<String> = clients.iter().map(|o| json_of(o)["build_id"].as_str().unwrap().to_string()).collect();
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let done = feed.until("build_completed", |_| true);
        assert_eq!((done["status"].as_str(), done["build_type"].as_str()), (Some("succeeded"), Some("static_web")));
        heard.push(done["build_id"].as_str().unwrap().to_string());
    }
    ids.sort();
    heard.sort();
    assert_eq!(heard, ids);
    feed.until("queue_status", |m| m["pending"] == 0 && m["building"] == 0 && m["completed"] == 2);

    // The historical API of a farm's service counts every worker's builds.
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    let request = format!(
        "GET /build-metrics/historical?hours=1 HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["types"]["static_web"]["counts"]["succeeded"], 2, "{body}");
    let _ = serve.kill();
    let _ = serve.wait();
}
