//! Every input fuzzed: engine configs, `workz.json`s, the bindings' request JSON and source
//! trees (names, sizes, nesting, links, special files), each mutated at random from a seed,
//! and built in-process. The property: a result or an error code — never a panic (`internal`),
//! never a hang past the build timeout, never a write outside the engine's roots.
//!
//! Prints its seed and case count (scripts/test.sh runs it with --nocapture); `WORKZ_FUZZ_SEED=<seed> WORKZ_FUZZ_CASES=<n> cargo test -p
//! workz-build --test fuzz -- --nocapture` replays a run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use workz_build::{BuildRequest, Engine, EngineConfig};

#[path = "support/fuzzing.rs"]
mod fuzzing;
use fuzzing::{Rng, snapshot};

/// Values a careless or hostile user writes.
fn value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => json!(0),
        1 => json!(1),
        2 => json!(-1),
        3 => json!(u32::MAX),
        4 => json!(u64::MAX),
        5 => json!(9_223_372_036_854_775_808u64),
        6 => json!(1e300),
        7 => json!(0.5),
        8 => json!(""),
        9 => json!("../../etc/passwd"),
        10 => json!("x".repeat(5000)),
        11 => json!(true),
        12 => Value::Null,
        13 => json!([1, "a", null]),
        14 => json!({"nested": {"deep": [{}]}}),
        _ => json!(rng.next() % 100_000),
    }
}

/// Every path to a leaf of `doc`.
fn leaves(doc: &Value, at: Vec<String>, out: &mut Vec<Vec<String>>) {
    match doc {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let mut next = at.clone();
                next.push(k.clone());
                leaves(v, next, out);
            }
        }
        _ => out.push(at),
    }
}

/// `doc` with one to three leaves replaced (or a key added next to one).
fn mutate(doc: &Value, rng: &mut Rng) -> Value {
    let mut doc = doc.clone();
    let mut paths = Vec::new();
    leaves(&doc, Vec::new(), &mut paths);
    for _ in 0..1 + rng.below(3) {
        let path = rng.pick(&paths).clone();
        let mut at = &mut doc;
        for part in &path[..path.len().saturating_sub(1)] {
            at = &mut at[part.as_str()];
        }
        let leaf = path.last().cloned().unwrap_or_default();
        let new = value(rng);
        if rng.below(8) == 0 {
            at[format!("{leaf}Extra")] = new;
        } else if let Value::Object(map) = at {
            map.insert(leaf, new);
        }
    }
    doc
}

/// `doc` with one to three numeric settings at an end of their documented range: accepted, so
/// that the arithmetic on extreme values runs.
fn extremes(doc: &Value, rng: &mut Rng) -> Value {
    let ranges = EngineConfig::default().numeric_ranges();
    let mut doc = doc.clone();
    for _ in 0..1 + rng.below(3) {
        let (path, _, min, max) = *rng.pick(&ranges);
        let mut at = &mut doc;
        for part in path.split('.') {
            at = &mut at[part];
        }
        *at = json!(if rng.below(2) == 0 { min } else { max });
    }
    doc
}

struct Roots {
    dir: tempfile::TempDir,
}

impl Roots {
    fn new() -> Roots {
        Roots { dir: tempfile::tempdir().unwrap() }
    }

    /// The engine's roots forced under this directory, whatever the mutated config said.
    fn confine(&self, mut config: EngineConfig) -> EngineConfig {
        config.cache.dir = Some(self.dir.path().join("cache"));
        config.storage.artifacts_dir = Some(self.dir.path().join("artifacts"));
        config.storage.work_dir = Some(self.dir.path().join("work"));
        config.cache.redis = None;
        config.cache.remote = None;
        config.queue.redis = None;
        config.notifications.webhooks.clear();
        config.storage.deploy.clear();
        config
    }
}

fn app_dir(root: &Path, workz: &Value) -> PathBuf {
    let dir = root.join(format!("app-{}", blake3::hash(workz.to_string().as_bytes()).to_hex().get(..8).unwrap_or("x")));
    std::fs::create_dir_all(dir.join("css")).unwrap();
    std::fs::write(dir.join("workz.json"), workz.to_string()).unwrap();
    std::fs::write(dir.join("index.html"), "<!doctype html><link rel=stylesheet href=css/a.css><h1>fuzz</h1>").unwrap();
    std::fs::write(dir.join("css/a.css"), "h1 { color: teal }").unwrap();
    dir
}

/// Build and check the property; `what` says which input, for the failure message.
fn check(engine: &Engine, request: BuildRequest, what: &str) {
    let started = Instant::now();
    let result = engine.build_blocking(request, None);
    let code = result.error.as_ref().map(|e| e.code.clone()).unwrap_or_default();
    assert_ne!(code, "internal", "{what}: {:?}", result.error);
    assert!(started.elapsed() < Duration::from_secs(60), "{what}: took {:?}", started.elapsed());
}

/// A small app as a tar archive, names and kinds picked at random.
fn tar_archive(rng: &mut Rng) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let entries: [(&str, &[u8]); 3] = [
        ("workz.json", br#"{"name": "up", "appType": "static"}"#),
        ("index.html", b"<h1>up</h1>"),
        ("css/a.css", b"h1{}"),
    ];
    for (name, body) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(*rng.pick(&[
            tar::EntryType::Regular,
            tar::EntryType::Regular,
            tar::EntryType::Symlink,
            tar::EntryType::Directory,
        ]));
        header.set_path(name).unwrap();
        header.set_cksum();
        builder.append(&header, body).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Something that starts like a zip archive and goes on at random.
fn zip_like(rng: &mut Rng) -> Vec<u8> {
    let mut bytes = b"PK\x03\x04\x14\x00\x00\x00\x00\x00".to_vec();
    bytes.extend((0..rng.below(400)).map(|_| rng.next() as u8));
    bytes.extend(b"PK\x05\x06");
    bytes.extend((0..18).map(|_| rng.next() as u8));
    bytes
}

#[test]
fn no_input_makes_the_engine_panic_hang_or_write_outside_its_roots() {
    let (mut rng, seed, cases) = Rng::from_env(1000);
    println!(
        "fuzz: seed {seed}, {cases} cases (replay: WORKZ_FUZZ_SEED={seed} WORKZ_FUZZ_CASES={cases} cargo test -p workz-build --test fuzz -- --nocapture)"
    );
    let roots = Roots::new();
    // A directory beside the roots: nothing may appear or vanish there.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "keep").unwrap();
    let before = snapshot(outside.path());

    let base_engine = serde_json::to_value(EngineConfig::default()).unwrap();
    if let Err(e) = EngineConfig::from_json("engine.json", &base_engine.to_string()) {
        panic!("the default config, serialized, does not load: {e}");
    }
    let base_app = json!({"name": "Fuzz", "version": "1.0.0", "appType": "static",
        "hooks": {"preBuild": ["true"]}, "buildConfig": {"javascript": {"entry": "src/main.js"}}, "env": {"A": "1"}});
    let sane = Engine::new(roots.confine(EngineConfig::default())).unwrap();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for case in 0..cases {
        let kind = rng.below(5);
        let what = format!("case {case} (seed {seed})");
        match kind {
            // The engine config.
            0 => {
                let doc =
                    if rng.below(2) == 0 { mutate(&base_engine, &mut rng) } else { extremes(&base_engine, &mut rng) };
                let outcome = match workz_build::EngineConfig::from_json("engine.json", &doc.to_string()) {
                    Err(e) => format!("config: {}", workz_build::ErrorCode::code(&e)),
                    Ok(parsed) => {
                        let mut config = roots.confine(parsed.value);
                        config.build_system.build_timeout = config.build_system.build_timeout.min(30);
                        config.build_system.build_timeout_warning = None;
                        match Engine::new(config) {
                            Err(e) => format!("engine: {}", workz_build::ErrorCode::code(&e)),
                            Ok(engine) => {
                                check(
                                    &engine,
                                    BuildRequest::directory(app_dir(roots.dir.path(), &base_app)),
                                    &format!("{what}: {doc}"),
                                );
                                "built".into()
                            }
                        }
                    }
                };
                *outcomes.entry(outcome).or_default() += 1;
            }
            // The app config.
            1 => {
                let workz = mutate(&base_app, &mut rng);
                check(&sane, BuildRequest::directory(app_dir(roots.dir.path(), &workz)), &format!("{what}: {workz}"));
                *outcomes.entry("app config".into()).or_default() += 1;
            }
            // The bindings' request JSON.
            2 => {
                let app = app_dir(roots.dir.path(), &base_app);
                let request = json!({"target": "web", "force": false, "priority": 0, "timeout": 30});
                let doc = mutate(&request, &mut rng);
                match workz_build::embed::options_from_json(&doc.to_string()) {
                    Err(e) => {
                        *outcomes.entry(format!("request: {}", workz_build::ErrorCode::code(&e))).or_default() += 1
                    }
                    Ok(options) => {
                        let files: Option<Vec<(String, Vec<u8>)>> = None;
                        let request = workz_build::embed::request_of(app.to_str(), files, options).unwrap();
                        check(&sane, request, &format!("{what}: {doc}"));
                        *outcomes.entry("request".into()).or_default() += 1;
                    }
                }
            }
            // An upload to the service: a tar or zip archive with bytes flipped, cut or grown.
            3 => {
                let archive = match rng.below(3) {
                    0 => {
                        let tar = tar_archive(&mut rng);
                        rng.retar(tar)
                    }
                    1 => {
                        let tar = tar_archive(&mut rng);
                        rng.damage(tar)
                    }
                    _ => {
                        let zip = zip_like(&mut rng);
                        rng.damage(zip)
                    }
                };
                let limits = workz_build::config::LimitsConfig::default();
                let read = if archive.starts_with(b"PK") {
                    workz_build::source::files_from_zip(&archive, &limits)
                } else {
                    workz_build::source::files_from_tar(&archive, &limits)
                };
                let outcome = match read {
                    Ok(files) => {
                        let request = BuildRequest {
                            source: workz_build::source::SourceSpec::Files(files),
                            ..BuildRequest::directory("")
                        };
                        check(&sane, request, &what);
                        "upload".to_string()
                    }
                    Err(e) => format!("upload: {}", workz_build::ErrorCode::code(&e)),
                };
                *outcomes.entry(outcome).or_default() += 1;
            }
            // A source tree: in memory (names, sizes) or on disk (nesting, links, fifos).
            _ => {
                let names = [
                    "index.html",
                    "a/b/c/d/e/f.css",
                    "../up.txt",
                    "/abs.txt",
                    "a//b.txt",
                    "./dot.txt",
                    "ü/ñ.html",
                    "CON",
                    "a\\b.txt",
                    "",
                    ".",
                    "..",
                    "x\u{0}y",
                    "deep/../../out.txt",
                ];
                if rng.below(2) == 0 {
                    let mut files: Vec<(String, Vec<u8>)> =
                        vec![("workz.json".into(), base_app.to_string().into_bytes())];
                    for _ in 0..rng.below(6) {
                        let size = *rng.pick(&[0usize, 1, 1000, 70_000]);
                        files.push((rng.pick(&names).to_string(), vec![b'a'; size]));
                    }
                    let request =
                        workz_build::embed::request_of(None, Some(files.clone()), Default::default()).unwrap();
                    check(
                        &sane,
                        request,
                        &format!("{what}: files {:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>()),
                    );
                } else {
                    let dir = roots.dir.path().join(format!("tree-{case}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(dir.join("workz.json"), base_app.to_string()).unwrap();
                    std::fs::write(dir.join("index.html"), "<h1>x</h1>").unwrap();
                    let mut made = Vec::new();
                    for i in 0..rng.below(5) {
                        let path = dir.join(format!("n{i}"));
                        match rng.below(6) {
                            0 => std::os::unix::fs::symlink(outside.path(), &path).unwrap(),
                            1 => std::os::unix::fs::symlink("/etc/passwd", &path).unwrap(),
                            2 => std::os::unix::fs::symlink(&path, &path).unwrap(),
                            3 => std::os::unix::fs::symlink(".", &path).unwrap(),
                            4 => {
                                let fifo = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                                // SAFETY: a NUL-terminated path.
                                unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
                            }
                            _ => std::fs::create_dir_all(path.join("a/b/c/d/e/f/g/h")).unwrap(),
                        }
                        made.push(i);
                    }
                    check(&sane, BuildRequest::directory(&dir), &format!("{what}: tree {made:?}"));
                }
                *outcomes.entry("source".into()).or_default() += 1;
            }
        }
    }
    assert_eq!(snapshot(outside.path()), before, "something outside the roots changed");
    println!("fuzz: {cases} cases, outcomes {outcomes:?}");
}
