//! Hostile apps against the sandbox (bubblewrap, installed by `scripts/test.sh`): each build
//! runs through `workz-build build` with `sandbox.mode: "required"`, its hook tries what an
//! attacker would, and the test checks from the outside that nothing was read, written or
//! reached, and that limits stop what they must with their own error.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

struct Bench {
    root: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let bench = Bench { root: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(bench.home()).unwrap();
        bench
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    fn artifacts(&self) -> PathBuf {
        self.root.path().join("artifacts")
    }

    /// An app whose preBuild hook is `hook` (argv words).
    fn app(&self, name: &str, hook: &[&str]) -> PathBuf {
        let dir = self.root.path().join("apps").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // Shell-style quoting, as hooks are split.
        let hook = hook.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect::<Vec<_>>().join(" ");
        let config = json!({"name": name, "appType": "static", "hooks": {"preBuild": [hook]}});
        std::fs::write(dir.join("workz.json"), config.to_string()).unwrap();
        std::fs::write(dir.join("index.html"), format!("<!doctype html><h1>{name}</h1>")).unwrap();
        dir
    }

    /// `workz-build` as the engine's user runs it: its HOME, cache and artifacts under the root.
    fn command(&self, config: &Value) -> Command {
        let path = self.root.path().join("engine.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_workz-build"));
        cmd.arg("--config")
            .arg(path)
            .env("HOME", self.home())
            .env("WORKZ_CACHE_DIR", self.cache())
            .env("WORKZ_ARTIFACTS_DIR", self.artifacts())
            .env_remove("WORKZ_LOG");
        cmd
    }

    fn build(&self, config: &Value, app: &Path) -> Value {
        let out = self.command(config).args(["build", "--json"]).arg(app).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        })
    }
}

fn required() -> Value {
    json!({"sandbox": {"mode": "required"}})
}

/// What the hook wrote to `report.txt` in its build directory, as published.
fn report(result: &Value) -> String {
    assert_eq!(result["status"], "succeeded", "{result}");
    let release = PathBuf::from(result["artifacts"]["path"].as_str().unwrap());
    std::fs::read_to_string(release.join("report.txt")).unwrap()
}

#[test]
fn a_hook_reads_nothing_outside_its_build_not_even_a_concurrent_build() {
    let bench = Bench::new();
    std::fs::write(bench.home().join(".secret"), "home-secret").unwrap();
    std::fs::create_dir_all(bench.cache()).unwrap();
    std::fs::write(bench.cache().join("planted"), "cache-secret").unwrap();
    // Another app's build, running while the hostile one looks for it.
    let other = bench.app("other", &["sh", "-c", "echo other-secret > other.txt; sleep 4"]);
    let mut running =
        bench.command(&required()).args(["build", "--json"]).arg(&other).stdout(Stdio::null()).spawn().unwrap();
    let work = bench.cache().join("work");
    let other_dir = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::read_dir(&work).ok()?.flatten().map(|e| e.path()).find(|p| p.join("other.txt").exists())
        })
        .expect("the other build's directory");
    let targets = [
        "/etc/shadow".into(),
        bench.home().join(".secret"),
        bench.cache().join("planted"),
        other_dir.join("other.txt"),
    ];
    let script = targets
        .iter()
        .map(|t| {
            format!(
                "if cat {0} >/dev/null 2>&1 || ls {0} >/dev/null 2>&1; then echo READ {0}; else echo denied {0}; fi",
                t.display()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    // The work directory holds every build's; the hook sees only its own there.
    let listing = format!("ls -a {} > listing.txt", work.display());
    let hostile = bench.app("hostile", &["sh", "-c", &format!("({script}) > report.txt; {listing}")]);
    let result = bench.build(&required(), &hostile);
    let report = report(&result);
    assert!(!report.contains("READ"), "{report}");
    assert_eq!(report.lines().count(), targets.len(), "{report}");
    let release = PathBuf::from(result["artifacts"]["path"].as_str().unwrap());
    let listing = std::fs::read_to_string(release.join("listing.txt")).unwrap();
    let seen: Vec<&str> = listing.lines().filter(|l| !l.starts_with('.')).collect();
    assert_eq!(seen, [result["build_id"].as_str().unwrap()], "{listing}");
    assert!(running.wait().unwrap().success());
}

#[test]
fn a_hook_writes_nothing_outside_its_build() {
    let bench = Bench::new();
    let marker = format!("workz-sandbox-escape-{}", std::process::id());
    let host_tmp = Path::new("/tmp").join(&marker);
    let targets =
        [host_tmp.clone(), bench.cache().join(&marker), bench.artifacts().join(&marker), bench.home().join(&marker)];
    let script = targets.iter().map(|t| format!("touch {} 2>/dev/null", t.display())).collect::<Vec<_>>().join("; ");
    let hostile = bench.app("writer", &["sh", "-c", &format!("{script}; echo tried > report.txt")]);
    let result = bench.build(&required(), &hostile);
    assert_eq!(report(&result).trim(), "tried");
    for target in &targets {
        assert!(!target.exists(), "{} was written", target.display());
    }
}

#[test]
fn a_hook_cannot_reach_a_listener_on_the_hosts_loopback() {
    let bench = Bench::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        for _ in 0..200 {
            if let Ok((mut stream, _)) = listener.accept() {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.read(&mut [0; 16]);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let connect = format!("import socket; socket.create_connection(('127.0.0.1', {port}), 3).sendall(b'hi')");
    let hostile = bench.app("caller", &["python3", "-c", &connect]);
    let result = bench.build(&required(), &hostile);
    assert_eq!(result["status"], "failed", "{result}");
    let error = &result["error"];
    assert_eq!(error["code"], "process_failed", "{error}");
    assert!(error["message"].as_str().unwrap().contains("Connection refused"), "{error}");
    assert!(error["hint"].as_str().unwrap().contains("sandbox.network"), "{error}");
    // The same with every step on the network: the listener is the host's, and is reached.
    let open = json!({"sandbox": {"mode": "required", "network": "all"}});
    let result = bench.build(&open, &hostile);
    assert_eq!(result["status"], "succeeded", "{result}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "only the build with the network connected");
}

#[test]
fn limits_stop_a_command_with_their_own_code() {
    let bench = Bench::new();
    let limited = |limits: Value| json!({"sandbox": {"mode": "required", "limits": limits}});
    let cases: [(&str, Value, &[&str]); 4] = [
        ("fileBytes", json!({"fileBytes": 1048576}), &["sh", "-c", "head -c 4194304 /dev/zero > big.bin"]),
        ("cpuSeconds", json!({"cpuSeconds": 1}), &["sh", "-c", "while :; do :; done"]),
        ("processes", json!({"processes": 16}), &["sh", "-c", "for i in $(seq 64); do sleep 7.25 & done; wait"]),
        (
            "memoryBytes",
            json!({"memoryBytes": 67108864}),
            &["python3", "-c", "b = bytearray(512 * 1024 * 1024); print(len(b))"],
        ),
    ];
    // Another build runs meanwhile, and is not affected.
    let neighbour = bench.app("neighbour", &["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 0.25; done"]);
    let beside =
        bench.command(&required()).args(["build", "--json"]).arg(&neighbour).stdout(Stdio::piped()).spawn().unwrap();
    for (limit, limits, hook) in cases {
        let app = bench.app(&format!("limit-{}", limit.to_lowercase()), hook);
        let result = bench.build(&limited(limits.clone()), &app);
        let error = &result["error"];
        assert_eq!(error["code"], "resource_limit_exceeded", "{limit}: {result}");
        assert!(error["message"].as_str().unwrap().contains(limit), "{limit}: {error}");
        assert!(error["hint"].as_str().unwrap().contains(&format!("sandbox.limits.{limit}")), "{error}");
    }
    let out = beside.wait_with_output().unwrap();
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "succeeded", "the neighbour: {result}");
    // Nothing of the fork bomb is left running.
    std::thread::sleep(Duration::from_millis(300));
    let ps = Command::new("pgrep").args(["-f", "sleep 7.25"]).output().unwrap();
    assert!(ps.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&ps.stdout));
}

#[test]
fn without_bubblewrap_required_fails_and_auto_warns() {
    let bench = Bench::new();
    // A PATH with the tools the hook needs and no bwrap.
    let bin = bench.root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["sh", "echo", "true"] {
        let found = ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists()).unwrap();
        std::os::unix::fs::symlink(found, bin.join(tool)).unwrap();
    }
    let app = bench.app("plain", &["true"]);
    let run = |config: Value| {
        let out = bench.command(&config).env("PATH", &bin).args(["build", "--json"]).arg(&app).output().unwrap();
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let result = run(required());
    assert_eq!(result["error"]["code"], "sandbox_unavailable", "{result}");
    assert!(result["error"]["hint"].as_str().unwrap().contains("apt-get install bubblewrap"), "{result}");
    let result = run(json!({"sandbox": {"mode": "auto"}}));
    assert_eq!(result["status"], "succeeded", "{result}");
    let warnings: Vec<&str> =
        result["warnings"].as_array().unwrap().iter().map(|w| w["code"].as_str().unwrap()).collect();
    assert_eq!(warnings.iter().filter(|c| **c == "sandbox_unavailable").count(), 1, "{result}");
    let doctor: Value = serde_json::from_slice(
        &bench.command(&json!({})).env("PATH", &bin).args(["doctor", "--json"]).output().unwrap().stdout,
    )
    .unwrap();
    assert_eq!(doctor["sandbox"]["available"], false, "{doctor}");
    let doctor: Value =
        serde_json::from_slice(&bench.command(&json!({})).args(["doctor", "--json"]).output().unwrap().stdout).unwrap();
    assert_eq!(
        (doctor["sandbox"]["available"].as_bool(), doctor["sandbox"]["tool"].as_str()),
        (Some(true), Some("bwrap"))
    );
}

#[test]
fn an_allow_listed_postinstall_is_contained_like_a_hook() {
    let bench = Bench::new();
    std::fs::create_dir_all(bench.cache()).unwrap();
    std::fs::write(bench.cache().join("planted"), "cache-secret").unwrap();
    std::fs::write(bench.home().join(".secret"), "home-secret").unwrap();
    // A file in the engine's cache: the write lands, if anywhere, in the sandbox's own
    // filesystem, never in the host's cache.
    let marker = bench.cache().join("planted-by-postinstall");
    let app = bench.root.path().join("apps/js");
    std::fs::create_dir_all(app.join("src")).unwrap();
    std::fs::create_dir_all(app.join("evil")).unwrap();
    let config = json!({"name": "js", "appType": "javascript",
        "buildConfig": {"javascript": {"allowScripts": ["evil"]}}});
    std::fs::write(app.join("workz.json"), config.to_string()).unwrap();
    std::fs::write(
        app.join("package.json"),
        json!({"name": "js", "version": "1.0.0", "dependencies": {"evil": "file:./evil"}}).to_string(),
    )
    .unwrap();
    std::fs::write(app.join("src/main.js"), "import verdict from 'evil/verdict.js';\ndocument.title = verdict;\n")
        .unwrap();
    std::fs::write(app.join("index.html"), "<!doctype html><script type=module src=./src/main.js></script>").unwrap();
    std::fs::write(
        app.join("evil/package.json"),
        json!({"name": "evil", "version": "1.0.0", "scripts": {"postinstall": "node probe.js"}}).to_string(),
    )
    .unwrap();
    // The install script tries to read the secrets and plant a file on the host, then says
    // what it managed in a module the app bundles.
    let probe = format!(
        r#"const fs = require('fs');
const tries = {{ home: {home:?}, cache: {cache:?}, shadow: '/etc/shadow' }};
const read = Object.entries(tries).filter(([, p]) => {{ try {{ fs.readFileSync(p); return true; }} catch {{ return false; }} }}).map(([k]) => k);
let wrote = true;
try {{ fs.writeFileSync({marker:?}, 'x'); }} catch {{ wrote = false; }}
fs.writeFileSync('verdict.js', `export default "postinstall ran: read [${{read}}] wrote ${{wrote}}";`);
"#,
        home = bench.home().join(".secret").display().to_string(),
        cache = bench.cache().join("planted").display().to_string(),
        marker = marker.display().to_string(),
    );
    std::fs::write(app.join("evil/probe.js"), probe).unwrap();
    let result = bench.build(&required(), &app);
    assert_eq!(result["status"], "succeeded", "{result}");
    let release = PathBuf::from(result["artifacts"]["path"].as_str().unwrap());
    let bundled: String = walk(&release)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "js"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(bundled.contains("postinstall ran: read [] wrote"), "{bundled}");
    assert!(!marker.exists(), "the postinstall planted a file in the engine's cache");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn a_hook_that_daemonises_or_kills_its_parent_leaves_nothing_running() {
    let bench = Bench::new();
    let daemon =
        bench.app("daemon", &["sh", "-c", "setsid sh -c 'sleep 9.75 & sleep 9.75' & (sleep 9.75 &) ; echo started"]);
    let result = bench.build(&required(), &daemon);
    assert_eq!(result["status"], "succeeded", "{result}");
    let parent_killer = bench.app("patricide", &["sh", "-c", "(sleep 9.75 &); kill -9 $PPID; echo survived"]);
    let started = std::time::Instant::now();
    let result = bench.build(&required(), &parent_killer);
    assert!(started.elapsed() < Duration::from_secs(9), "the build waited for its hook: {result}");
    std::thread::sleep(Duration::from_millis(300));
    let ps = Command::new("pgrep").args(["-f", "sleep 9.75"]).output().unwrap();
    assert!(ps.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&ps.stdout));
}
