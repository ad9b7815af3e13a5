//! The corpus of real-world app shapes in tests/fixtures/real-world: apps laid out the way
//! Vite, Create React App, Preact, TypeScript and monorepo projects lay them out. Each is
//! built end to end and its result is run — in Node, or in headless Chromium (served over
//! HTTP on a free loopback port) where it needs a DOM — and checked for what it computes or
//! renders, not only for the files it has.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use workz_build::{BuildRequest, BuildResult, BuildStatus, Engine, EngineConfig};

fn fixture(name: &str) -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../tests/fixtures/real-world").join(name)
}

/// Engine roots and private copies of the fixture apps.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World { dir: tempfile::tempdir().unwrap() }
    }

    fn engine(&self) -> Engine {
        let mut config = EngineConfig::default();
        config.cache.dir = Some(self.dir.path().join("cache"));
        config.storage.artifacts_dir = Some(self.dir.path().join("artifacts"));
        Engine::new(config).unwrap()
    }

    fn app(&self, name: &str) -> PathBuf {
        let dest = self.dir.path().join("apps").join(name);
        copy_tree(&fixture(name), &dest);
        dest
    }

    /// Build `app`; a failure must carry its code's hint (every error a user can meet does).
    async fn build(&self, app: &Path) -> BuildResult {
        let result = self.engine().build(BuildRequest::directory(app)).await;
        if let Some(error) = &result.error {
            assert!(error.hint.is_some(), "{} has no hint: {}", error.code, error.message);
        }
        result
    }

    /// Build `app` and return its published release.
    async fn release(&self, app: &Path) -> PathBuf {
        let result = self.build(app).await;
        assert_eq!(result.status, BuildStatus::Succeeded, "{:#?}", result.error);
        PathBuf::from(&result.artifacts.as_ref().expect("published").path)
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "node_modules" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The module scripts a page loads.
fn page_scripts(release: &Path, page: &str) -> Vec<PathBuf> {
    let html = std::fs::read_to_string(release.join(page)).unwrap();
    html.split("<script")
        .skip(1)
        .filter_map(|tag| tag.split("src=\"").nth(1).and_then(|s| s.split('"').next()))
        .filter(|src| src.starts_with("./"))
        .map(|src| release.join(src.trim_start_matches("./")))
        .collect()
}

/// Run the page's entry in Node and return its `WORKZ_RESULT` line as JSON.
fn run_in_node(release: &Path) -> Value {
    let scripts = page_scripts(release, "index.html");
    assert_eq!(scripts.len(), 1, "{scripts:?}");
    let out = Command::new("node").arg("--experimental-default-type=module").arg(&scripts[0]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find_map(|l| l.strip_prefix("WORKZ_RESULT ")).unwrap_or_else(|| panic!("{stdout}"));
    serde_json::from_str(line).unwrap()
}

/// A static file server for one directory on a free loopback port, stopped when dropped.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(root: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (root, flag) = (root.to_path_buf(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let root = root.clone();
                    std::thread::spawn(move || serve_one(stream, &root));
                }
            }
        });
        Server { port, stop }
    }

    fn url(&self, page: &str) -> String {
        format!("http://127.0.0.1:{}/{page}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve_one(mut stream: TcpStream, root: &Path) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/").trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let file = root.join(path);
    let (status, body, kind) = match std::fs::read(&file) {
        Ok(body) if !path.split('/').any(|c| c == "..") => {
            let kind = match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
                "html" => "text/html; charset=utf-8",
                "js" | "mjs" => "text/javascript",
                "css" => "text/css",
                "json" | "map" => "application/json",
                "webmanifest" => "application/manifest+json",
                "svg" => "image/svg+xml",
                "png" => "image/png",
                "woff2" => "font/woff2",
                "woff" => "font/woff",
                "txt" => "text/plain",
                _ => "application/octet-stream",
            };
            ("200 OK", body, kind)
        }
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
}

fn chromium_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
        .expect("headless Chromium is needed for the browser tests: scripts/test.sh installs Debian's `chromium`")
}

/// Load `page` of `release` in headless Chromium and return what the app wrote into
/// `<pre id="workz-result">` (JSON), or panic with the page as Chromium left it. Chromium's
/// virtual time does not wait for workers, which run in real time: on a loaded machine the
/// page can be dumped before they answer, so a page without its result is loaded again (up
/// to three times) before the test fails.
fn run_in_chromium(release: &Path, page: &str) -> Value {
    let mut dom = String::new();
    for _ in 0..3 {
        dom = dump_dom(release, page);
        if let Some(start) = dom.find("<pre id=\"workz-result\">") {
            let text = &dom[start + "<pre id=\"workz-result\">".len()..];
            let text = &text[..text.find("</pre>").unwrap()];
            let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
            return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        }
    }
    panic!("no result in the page:\n{dom}")
}

/// The page's DOM as headless Chromium leaves it, served over HTTP on a free loopback port.
fn dump_dom(release: &Path, page: &str) -> String {
    let server = Server::start(release);
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium_binary())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(server.url(page))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        let _ = stdout.read_to_string(&mut dom);
        dom
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("chromium did not finish loading {page} in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vite_react_app_renders_with_svg_json_css_and_a_lazy_route() {
    let world = World::new();
    let release = world.release(&world.app("vite-react")).await;
    let files = files_under(&release);
    // The lazy route is a chunk of its own; the SVG and the public icon are published.
    assert!(files.iter().filter(|f| f.ends_with(".js") && !f.contains('/') && *f != "sw.js").count() >= 2, "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("assets/react-") && f.ends_with(".svg")), "{files:?}");
    assert!(files.contains(&"vite.svg".to_string()), "{files:?}");
    let result = run_in_chromium(&release, "index.html");
    assert_eq!(result["title"], "Vite + React");
    assert_eq!(result["count"], 4, "the JSON import: {result}");
    assert_eq!(result["about"], "About page, loaded lazily");
    assert_eq!(result["logoLoaded"], true, "{result}");
    assert_eq!(result["color"], "rgb(100, 108, 255)", "index.css applies: {result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_react_app_layout_renders_from_its_public_page_with_jsx_in_js() {
    let world = World::new();
    let release = world.release(&world.app("create-react-app")).await;
    let files = files_under(&release);
    for published in ["config.js", "favicon.svg", "manifest.webmanifest"] {
        assert!(files.contains(&published.to_string()), "{published}: {files:?}");
    }
    let page = std::fs::read_to_string(release.join("index.html")).unwrap();
    assert!(!page.contains('%') && page.contains("<noscript>"), "{page}");
    let result = run_in_chromium(&release, "index.html");
    assert_eq!(
        result,
        json!({"title": "React App", "heading": "Hello from CRA",
               "description": "Web site created using create-react-app", "runtime": "eu-west", "publicUrl": ".",
               "logoLoaded": true, "margin": "0px", "manifest": "./manifest.webmanifest"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_meta_glob_routes_locales_and_a_raw_import_are_bundled() {
    let world = World::new();
    let release = world.release(&world.app("vite-glob-routes")).await;
    // Lazy routes are chunks of their own; the test file matched by no pattern is not bundled.
    let files = files_under(&release);
    assert!(files.iter().filter(|f| f.ends_with(".js") && *f != "sw.js").count() >= 3, "{files:?}");
    let code: String = files
        .iter()
        .filter(|f| f.ends_with(".js"))
        .map(|f| std::fs::read_to_string(release.join(f)).unwrap())
        .collect();
    assert!(!code.contains("never be bundled") && !code.contains("import.meta.glob"), "{code}");
    assert_eq!(
        run_in_node(&release),
        json!({"banner": "Routes by glob\n", "routes": ["./routes/about.ts", "./routes/home.ts"],
               "rendered": {"/about": "<h1>About</h1>", "/": "<h1>Home</h1>"},
               "greetings": {"en": "Hello", "fr": "Bonjour"},
               "titles": {"./routes/about.ts": "About us", "./routes/home.ts": "Home"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preact_app_with_a_jsx_pragma_renders() {
    let world = World::new();
    let release = world.release(&world.app("preact-pragma")).await;
    let result = run_in_chromium(&release, "index.html");
    assert_eq!(
        result,
        json!({"heading": "Preact with a JSX pragma", "items": ["one", "two", "three"], "counter": "42"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_app_with_path_aliases_and_enums_computes() {
    let world = World::new();
    let release = world.release(&world.app("ts-paths-enums")).await;
    assert_eq!(
        run_in_node(&release),
        json!({"running": 5, "done": 6, "name": "done", "direction": "DOWN", "length": 5})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn css_only_page_with_font_faces_builds_without_scripts() {
    let world = World::new();
    let release = world.release(&world.app("css-only-fonts")).await;
    let files = files_under(&release);
    assert!(!files.iter().any(|f| f.ends_with(".js") && f != "sw.js"), "no script was written: {files:?}");
    let css_name = files.iter().find(|f| f.starts_with("assets/style-") && f.ends_with(".css")).expect("a stylesheet");
    let css = std::fs::read_to_string(release.join(css_name)).unwrap();
    // Every font is published under its hashed name, next to the stylesheet that names it.
    for font in ["display-", "text-"] {
        let name = files.iter().find(|f| f.starts_with(&format!("assets/{font}")) && f.ends_with(".woff2")).unwrap();
        let file_name = name.trim_start_matches("assets/");
        assert!(css.contains(file_name), "{css}");
        assert_eq!(
            std::fs::read(release.join(name)).unwrap(),
            std::fs::read(fixture("css-only-fonts").join(format!("fonts/{font}").replace('-', "") + ".woff2")).unwrap()
        );
    }
    let page = std::fs::read_to_string(release.join("index.html")).unwrap();
    assert!(page.contains(&format!("href=\"./{css_name}\"")) && !page.contains("css/site.css"), "{page}");
    // The page renders with it (no script of the app's: the check is injected for the test).
    let probe = "<script>addEventListener('load', () => { const s = getComputedStyle(document.querySelector('.display')); \
        const pre = document.createElement('pre'); pre.id = 'workz-result'; \
        pre.textContent = JSON.stringify({color: s.color, family: s.fontFamily.split(',')[0], \
        spacing: s.letterSpacing}); document.body.appendChild(pre); });</script></body>";
    std::fs::write(release.join("probe.html"), page.replace("</body>", probe)).unwrap();
    let result = run_in_chromium(&release, "probe.html");
    assert_eq!(result["color"], "rgb(17, 34, 51)", "{result}");
    assert_eq!(result["family"], "\"Specimen Display\"", "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn css_modules_are_scoped_and_composed() {
    let world = World::new();
    let release = world.release(&world.app("css-modules")).await;
    let result = run_in_chromium(&release, "index.html");
    let classes = &result["classes"];
    let button = classes["button"].as_str().unwrap();
    let card_button = classes["cardButton"].as_str().unwrap();
    // Scoped: the two `.button`s are different classes; composed: the base class comes along.
    assert_ne!(button, card_button, "{result}");
    assert!(button.split(' ').count() == 2 && button.contains("base"), "{button}");
    assert!(classes["primary"].as_str().unwrap().split(' ').count() == 3, "{result}");
    assert!(classes["cardTitle"].as_str().unwrap().contains("title"), "{result}");
    assert_eq!(result["plainColor"], "rgb(255, 0, 0)");
    assert_eq!(result["plainPadding"], "4px", "composed from base.module.css: {result}");
    assert_eq!(result["primaryBackground"], "rgb(0, 0, 255)");
    assert_eq!(result["primaryColor"], "rgb(255, 0, 0)", "primary composes button: {result}");
    assert_eq!(result["titleWeight"], "700");
    assert_eq!(result["titleSize"], "20px");
    assert_eq!(result["cardButtonColor"], "rgb(0, 0, 0)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sass_with_partials_and_a_package_compiles() {
    let world = World::new();
    let release = world.release(&world.app("sass-partials")).await;
    let result = run_in_chromium(&release, "index.html");
    assert_eq!(result["navbarBackground"], "rgb(10, 20, 30)", "{result}");
    assert_eq!(result["navbarPadding"], "12px", "sass:math: {result}");
    assert_eq!(result["linkColor"], "rgb(255, 136, 0)");
    assert_eq!(result["panelBorder"], "3px rgb(255, 136, 0)", "a mixin from a partial: {result}");
    let width = result["viewport"].as_u64().unwrap();
    let expected = if width >= 740 { "640px" } else { "100px" };
    assert_eq!(result["panelWidth"], expected, "sass-mq's media query: {result}");
    let css: String = files_under(&release)
        .iter()
        .filter(|f| f.ends_with(".css"))
        .map(|f| std::fs::read_to_string(release.join(f)).unwrap())
        .collect();
    assert!(css.contains("margin-left:7px"), "the indented .sass file: {css}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_url_assets_are_emitted_and_load() {
    let world = World::new();
    let release = world.release(&world.app("worker-url")).await;
    let files = files_under(&release);
    // Written in TypeScript, published as JavaScript (a `.ts` name is served as video/mp2t).
    let worker = files.iter().find(|f| f.starts_with("assets/primes-") && f.ends_with(".js")).expect("worker");
    assert!(!files.iter().any(|f| f.ends_with(".ts")), "{files:?}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(release.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest["files"].as_array().unwrap().iter().find(|f| f["path"] == worker.as_str()).unwrap();
    assert_eq!(entry["contentType"], "text/javascript", "{entry}");
    let code = std::fs::read_to_string(release.join(worker)).unwrap();
    assert!(!code.contains("import ") && !code.contains("../lib/sieve"), "the worker is self-contained: {code}");
    assert!(files.iter().any(|f| f.starts_with("assets/badge-") && f.ends_with(".png")), "{files:?}");
    let result = run_in_chromium(&release, "index.html");
    assert_eq!(result["primes"], json!({"count": 1229, "last": 9973}), "{result}");
    assert_eq!(result["squares"], json!([1, 4, 9]), "{result}");
    assert_eq!(result["badge"], json!({"width": 12, "height": 7}), "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commonjs_package_is_used_from_esm() {
    let world = World::new();
    let release = world.release(&world.app("cjs-lodash")).await;
    assert_eq!(
        run_in_node(&release),
        json!({"chunks": [[1, 2], [3, 4], [5]], "teams": ["compilers", "core"], "names": ["ada", "grace", "linus"],
               "camel": "helloBuildEngine", "version": "4.17.21"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_and_mode_come_from_the_app_config_and_never_from_the_worker() {
    let world = World::new();
    let app = world.app("env-mode");
    // A public-looking variable in the worker's own environment must not reach the app.
    // SAFETY: no other test in this binary reads this variable.
    unsafe { std::env::set_var("VITE_FROM_WORKER", "leaked") };
    let first = world.build(&app).await;
    assert_eq!(first.status, BuildStatus::Succeeded, "{:#?}", first.error);
    let release = PathBuf::from(&first.artifacts.as_ref().unwrap().path);
    let result = run_in_node(&release);
    assert_eq!(
        result,
        json!({"nodeEnv": "production", "mode": "production", "prod": true, "dev": false, "base": "./",
               "api": "https://api.example.com/v1", "flag": "on", "fromWorker": null, "secret": null,
               "keys": ["BASE_URL", "DEV", "MODE", "PROD", "SSR", "VITE_API_URL", "WORKZ_PUBLIC_FLAG"]})
    );
    let bundle: String =
        page_scripts(&release, "index.html").iter().map(|s| std::fs::read_to_string(s).unwrap()).collect();
    assert!(!bundle.contains("never-in-the-bundle"), "a private variable was compiled in");

    // Development mode, and a changed public value: both change the key and the output.
    let mut config: Value = serde_json::from_slice(&std::fs::read(app.join("workz.json")).unwrap()).unwrap();
    config["buildConfig"] = json!({"javascript": {"mode": "development"}});
    config["env"]["VITE_API_URL"] = json!("http://localhost:8080");
    std::fs::write(app.join("workz.json"), config.to_string()).unwrap();
    let second = world.build(&app).await;
    assert_eq!(second.status, BuildStatus::Succeeded, "{:#?}", second.error);
    assert!(!second.cache.hit && second.cache.key != first.cache.key);
    let result = run_in_node(&PathBuf::from(&second.artifacts.as_ref().unwrap().path));
    assert_eq!(result["nodeEnv"], "development");
    assert_eq!(result["dev"], true);
    assert_eq!(result["devOnly"], true);
    assert_eq!(result["api"], "http://localhost:8080");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vite_env_files_are_read_by_mode_under_the_app_config_and_never_published() {
    let world = World::new();
    let app = world.app("vite-env-files");
    // Ignored by the app's .gitignore (`*.local`), as a developer's machine has it: not read.
    std::fs::write(app.join(".env.local"), "VITE_LOCAL_ONLY=from-my-laptop\n").unwrap();
    let first = world.build(&app).await;
    assert_eq!(first.status, BuildStatus::Succeeded, "{:#?}", first.error);
    let release = PathBuf::from(&first.artifacts.as_ref().unwrap().path);
    assert_eq!(
        run_in_node(&release),
        json!({"api": "https://api.example.com/v2", "title": "Env files", "release": "from-workz-json",
               "local": null, "home": "", "secret": null, "mode": "production"})
    );
    let files = files_under(&release);
    assert!(files.contains(&"robots.txt".to_string()), "{files:?}");
    assert!(!files.iter().any(|f| f.contains(".env")), "an env file was published: {files:?}");
    let bundle: String =
        page_scripts(&release, "index.html").iter().map(|s| std::fs::read_to_string(s).unwrap()).collect();
    assert!(!bundle.contains("hunter2"), "a private variable was compiled in");

    // Another mode reads its own file; a changed env file changes the key.
    let mut config: Value = serde_json::from_slice(&std::fs::read(app.join("workz.json")).unwrap()).unwrap();
    config["buildConfig"] = json!({"javascript": {"mode": "development"}});
    std::fs::write(app.join("workz.json"), config.to_string()).unwrap();
    let second = world.build(&app).await;
    let result = run_in_node(&PathBuf::from(&second.artifacts.as_ref().unwrap().path));
    assert_eq!(
        (result["api"].as_str(), result["mode"].as_str()),
        (Some("http://localhost:3000/api"), Some("development"))
    );
    std::fs::write(app.join(".env.development"), "VITE_API_HOST=staging.example.com\n").unwrap();
    let third = world.build(&app).await;
    assert!(!third.cache.hit && third.cache.key != second.cache.key);
    let result = run_in_node(&PathBuf::from(&third.artifacts.as_ref().unwrap().path));
    assert_eq!(result["api"], "http://staging.example.com/api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_page_app_gets_each_page_with_its_entry_and_a_shared_chunk() {
    let world = World::new();
    let release = world.release(&world.app("multi-page")).await;
    let home = page_scripts(&release, "index.html");
    let about = page_scripts(&release, "about.html");
    assert_eq!((home.len(), about.len()), (1, 1));
    assert_ne!(home, about, "each page loads its own entry");
    let shared: Vec<String> = files_under(&release)
        .into_iter()
        .filter(|f| f.ends_with(".js") && !f.contains('/') && f != "sw.js")
        .filter(|f| !home[0].ends_with(f) && !about[0].ends_with(f))
        .collect();
    assert_eq!(shared.len(), 1, "one shared chunk: {shared:?}");
    for page in ["index.html", "about.html"] {
        let html = std::fs::read_to_string(release.join(page)).unwrap();
        assert!(html.contains(&format!("modulepreload\" href=\"./{}\"", shared[0])), "{page}: {html}");
    }
    let home = run_in_chromium(&release, "index.html");
    assert_eq!(
        home,
        json!({"page": "home", "heading": "Home", "color": "rgb(0, 100, 0)", "spacing": "normal", "rows": 200})
    );
    let about = run_in_chromium(&release, "about.html");
    assert_eq!(about["heading"], "About us");
    assert_eq!(about["spacing"], "3px", "about.css belongs to the about page: {about}");
    assert_eq!(about["last"], "row 199:");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_manifest_and_icons_are_published_and_no_service_worker_when_off() {
    let world = World::new();
    let release = world.release(&world.app("public-manifest")).await;
    let files = files_under(&release);
    for file in ["manifest.webmanifest", "icons/icon-192.png", "icons/icon-512.png", "favicon.ico", "robots.txt"] {
        assert!(files.contains(&file.to_string()), "{file}: {files:?}");
    }
    // The release's own manifest.json is the build manifest, with the web manifest in its list.
    let build_manifest: Value = serde_json::from_slice(&std::fs::read(release.join("manifest.json")).unwrap()).unwrap();
    assert!(build_manifest["files"].as_array().unwrap().iter().any(|f| f["path"] == "manifest.webmanifest"));
    assert!(!files.contains(&"sw.js".to_string()), "generateSW is off: {files:?}");
    let page = std::fs::read_to_string(release.join("index.html")).unwrap();
    assert!(!page.contains("serviceWorker"), "{page}");
    let result = run_in_chromium(&release, "index.html");
    assert_eq!(
        result,
        json!({"name": "Installable", "icons": [200, 200], "robots": 200, "manifestHref": "./manifest.webmanifest"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monorepo_package_imports_its_sibling_workspace_packages() {
    let world = World::new();
    let release = world.release(&world.app("monorepo")).await;
    assert_eq!(run_in_node(&release), json!({"tag": "kettle: $25.99", "badge": "[NEW]"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vue_app_is_refused_with_a_hint_and_builds_with_its_own_vite() {
    let world = World::new();
    let app = world.app("vue-sfc");
    let refused = world.build(&app).await;
    assert_eq!(refused.status, BuildStatus::Failed);
    let error = refused.error.as_ref().unwrap();
    assert_eq!(error.code, "unsupported_module_type", "{error:?}");
    assert!(error.message.contains("src/App.vue"), "{}", error.message);
    assert!(error.hint.as_deref().unwrap().contains("\"script\""), "{error:?}");

    let mut config: Value = serde_json::from_slice(&std::fs::read(app.join("workz.json")).unwrap()).unwrap();
    config["buildConfig"] = json!({"javascript": {"bundler": "script"}});
    std::fs::write(app.join("workz.json"), config.to_string()).unwrap();
    let release = world.release(&app).await;
    let result = run_in_chromium(&release, "index.html");
    assert_eq!(
        result,
        json!({"summary": "3 things to do", "items": ["write the app", "build it", "ship it"],
               "color": "rgb(66, 184, 131)"})
    );
}
