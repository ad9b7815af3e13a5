//! End-to-end tests of the JavaScript builder on the fixture apps in tests/fixtures/js.
//! Bundles are run in Node and must compute what their sources compute.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use workz_build::events::BuildEvent;
use workz_build::{BuildRequest, BuildResult, BuildStatus, Engine, EngineConfig, EventRecord};

fn fixture(name: &str) -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../tests/fixtures/js").join(name)
}

/// A scratch world with the engine's roots, and a private copy of a fixture app.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        World { dir: tempfile::tempdir().unwrap() }
    }

    fn config(&self) -> EngineConfig {
        let mut config = EngineConfig::default();
        config.cache.dir = Some(self.dir.path().join("cache"));
        config.storage.artifacts_dir = Some(self.dir.path().join("artifacts"));
        config
    }

    fn engine(&self) -> Engine {
        Engine::new(self.config()).unwrap()
    }

    /// Copy a fixture so tests may change it.
    fn app(&self, name: &str) -> PathBuf {
        let dest = self.dir.path().join("apps").join(name);
        copy_tree(&fixture(name), &dest);
        dest
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

async fn build_with_events(engine: &Engine, request: BuildRequest) -> (BuildResult, Vec<EventRecord>) {
    let mut handle = engine.submit(request, None);
    let mut rx = handle.take_events().unwrap();
    let result = handle.wait().await;
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events)
}

fn assert_ok(result: &BuildResult) {
    assert_eq!(result.status, BuildStatus::Succeeded, "{:#?}", result.error);
}

fn release(result: &BuildResult) -> PathBuf {
    PathBuf::from(&result.artifacts.as_ref().expect("published").path)
}

fn commands(events: &[EventRecord]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            BuildEvent::ProcessStarted { command } => Some(command.clone()),
            _ => None,
        })
        .collect()
}

/// The scripts the published page loads, in order.
fn page_scripts(release: &Path) -> Vec<PathBuf> {
    let page = std::fs::read_to_string(release.join("index.html")).unwrap();
    page.split("<script")
        .skip(1)
        .filter_map(|tag| tag.split("src=\"").nth(1).and_then(|s| s.split('"').next()))
        .filter(|src| src.starts_with("./") && src.ends_with(".js"))
        .map(|src| release.join(src.trim_start_matches("./")))
        .collect()
}

/// Run a built ES module (or script) in Node and return what it reported.
fn run_node(script: &Path, module: bool) -> String {
    let mut cmd = Command::new("node");
    if module {
        cmd.arg("--experimental-default-type=module");
    }
    let out = cmd.arg(script).output().expect("node runs");
    assert!(out.status.success(), "node failed: {}", String::from_utf8_lossy(&out.stderr));
    result_line(&String::from_utf8_lossy(&out.stdout))
}

fn result_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("WORKZ_RESULT "))
        .unwrap_or_else(|| panic!("no result in {stdout:?}"))
        .to_string()
}

/// Run the unbundled source in Node, after installing its dependencies the plain way.
fn run_source(app: &Path, entry: &str) -> String {
    let status = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--install-links", "--no-audit", "--no-fund"])
        .current_dir(app)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let out = Command::new("node").arg(entry).current_dir(app).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result = result_line(&String::from_utf8_lossy(&out.stdout));
    std::fs::remove_dir_all(app.join("node_modules")).unwrap();
    result
}

fn error_code(result: &BuildResult) -> &str {
    result.error.as_ref().map_or("", |e| e.code.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_app_is_lowered_bundled_and_runs() {
    let world = World::new();
    let app = world.app("ts-app");
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_ok(&result);
    let out = release(&result);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["type"], "javascript-web");
    assert_eq!(manifest["entryPoint"], "index.html");
    let scripts = page_scripts(&out);
    assert_eq!(scripts.len(), 1);
    let code = std::fs::read_to_string(&scripts[0]).unwrap();
    assert!(!code.contains("#items"), "private fields lowered for es2018");
    assert!(!code.contains("interface") && !code.contains(": number"), "types stripped");
    assert_eq!(run_node(&scripts[0], true), "\"2 shapes, total area 21.57\"");
    // Service worker: precaches the hashed outputs and is registered by the page.
    let sw = std::fs::read_to_string(out.join("sw.js")).unwrap();
    let script_name = scripts[0].strip_prefix(&out).unwrap().display().to_string();
    assert!(sw.contains(&script_name), "{sw}");
    assert!(std::fs::read_to_string(out.join("index.html")).unwrap().contains("serviceWorker.register"));
    let name = scripts[0].file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("main-") && name.ends_with(".js") && name.len() > "main-.js".len() + 6, "hashed: {name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minified_bundle_s_source_map_leads_back_to_the_typescript() {
    let world = World::new();
    let app = world.app("ts-app");
    let config = r#"{ "name": "TS App", "version": "1.0.0", "appType": "javascript",
        "buildConfig": { "javascript": { "target": "es2018" }, "optimization": { "minify": true, "sourceMaps": true } } }"#;
    std::fs::write(app.join("workz.json"), config).unwrap();
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_ok(&result);
    let script = &page_scripts(&release(&result))[0];
    let code = std::fs::read_to_string(script).unwrap();
    let map_text = std::fs::read_to_string(format!("{}.map", script.display())).unwrap();
    let map = oxc_sourcemap::SourceMap::from_json_string(&map_text).unwrap();
    // The log line's string, where the minified code has it, maps to where main.ts has it.
    let (line, col) = code
        .lines()
        .enumerate()
        .find_map(|(n, l)| l.find("WORKZ_RESULT ").map(|c| (n as u32, c as u32 - 1)))
        .expect("the log line in the bundle");
    let table = map.generate_lookup_table();
    let token = map.lookup_token(&table, line, col).expect("a mapping");
    let source = map.get_source(token.get_source_id().unwrap()).unwrap();
    assert_eq!(source, "src/main.ts");
    let content = map.get_source_content(token.get_source_id().unwrap()).unwrap();
    let at = &content.lines().nth(token.get_src_line() as usize).unwrap()[token.get_src_col() as usize..];
    assert!(at.starts_with("\"WORKZ_RESULT \""), "maps to {at:?}");
    assert!(
        code.trim_end()
            .ends_with(&format!("//# sourceMappingURL={}.map", script.file_name().unwrap().to_str().unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_imports_are_split_into_chunks() {
    let world = World::new();
    let app = world.app("split-app");
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_ok(&result);
    let js: Vec<_> = result
        .artifacts
        .as_ref()
        .unwrap()
        .files
        .iter()
        .filter(|f| f.path.ends_with(".js") && f.path != "sw.js")
        .collect();
    assert!(js.len() >= 2, "a chunk for the dynamic import: {js:?}");
    let scripts = page_scripts(&release(&result));
    assert_eq!(run_node(&scripts[0], true), "\"hello split 55\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn css_images_and_the_page_template() {
    let world = World::new();
    let app = world.app("css-app");
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_ok(&result);
    let out = release(&result);
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(!page.contains("./css/base.css") && !page.contains("./src/main.js"), "{page}");
    let css_href = page.split("rel=\"stylesheet\" href=\"./").nth(1).unwrap().split('"').next().unwrap();
    let css = std::fs::read_to_string(out.join(css_href)).unwrap();
    assert!(css.contains("box-sizing:border-box"), "@import bundled: {css}");
    assert!(css.find("box-sizing").unwrap() < css.find(".card").unwrap(), "page CSS first, then imported CSS");
    assert!(css.contains("-webkit-user-select:none"), "prefixed for es2015 browsers: {css}");
    let bg = css.split("url(").nth(1).unwrap().split(')').next().unwrap().trim_matches('"');
    assert!(out.join("assets").join(bg).is_file(), "url() asset copied: {bg}");
    // The imported image: hashed, optimised losslessly, with webp and avif variants.
    let logo_url = run_node(&page_scripts(&out)[0], true);
    let logo_rel = logo_url.trim_matches('"').trim_start_matches("./").trim_start_matches('/');
    let logo = out.join(logo_rel);
    assert!(logo.is_file(), "{logo_url}");
    let original = std::fs::metadata(app.join("img/logo.png")).unwrap().len();
    assert!(std::fs::metadata(&logo).unwrap().len() < original, "PNG shrunk");
    assert!(logo.with_extension("webp").is_file(), "webp variant");
    assert_eq!(&std::fs::read(logo.with_extension("avif")).unwrap()[4..12], b"ftypavif", "avif variant");
    let files: Vec<&str> = result.artifacts.as_ref().unwrap().files.iter().map(|f| f.path.as_str()).collect();
    assert!(files.iter().any(|f| f.ends_with(".webp")), "variant in the manifest");
    assert!(files.iter().any(|f| f.ends_with(".avif")), "variant in the manifest");
    assert!(out.join("robots.txt").is_file(), "public/ copied");
    assert!(files.iter().any(|f| f.ends_with(".css.gz")), "precompressed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_dependencies_are_installed_without_scripts_and_cached_by_lockfile() {
    let world = World::new();
    let app = world.app("deps-app");
    let marker = std::env::temp_dir().join("workz-evil-postinstall-ran");
    let _ = std::fs::remove_file(&marker);
    let engine = world.engine();
    let (first, events) = build_with_events(&engine, BuildRequest::directory(&app)).await;
    assert_ok(&first);
    assert!(
        commands(&events).iter().any(|c| c.starts_with("npm ci") && c.contains("--ignore-scripts")),
        "{:?}",
        commands(&events)
    );
    assert!(!marker.exists(), "the malicious postinstall did not run");
    let bundle = &page_scripts(&release(&first))[0];
    let code = std::fs::read_to_string(bundle).unwrap();
    assert!(!code.contains("tree-shaken away"), "unused export dropped");
    assert_eq!(run_node(bundle, true), run_source(&app, "src/main.js"));

    // A changed source with the same lockfile: a miss, but npm does not run.
    std::fs::write(app.join("src/extra.js"), "export const x = 1;\n").unwrap();
    let (second, events) = build_with_events(&engine, BuildRequest::directory(&app)).await;
    assert_ok(&second);
    assert!(!second.cache.hit);
    assert!(
        !commands(&events).iter().any(|c| c.starts_with("npm")),
        "node_modules came from the cache: {:?}",
        commands(&events)
    );

    // Allow-listed, the package's install script runs.
    let json = std::fs::read_to_string(app.join("workz.json")).unwrap();
    std::fs::write(
        app.join("workz.json"),
        json.replace(
            "\"javascript\"",
            "\"javascript\", \"buildConfig\": {\"javascript\": {\"allowScripts\": [\"evil\"]}}",
        ),
    )
    .unwrap();
    let (third, events) = build_with_events(&engine, BuildRequest::directory(&app)).await;
    assert_ok(&third);
    assert!(commands(&events).iter().any(|c| c.starts_with("npm rebuild evil")), "{:?}", commands(&events));
    let logged = |events: &[EventRecord]| {
        events.iter().any(|e| matches!(&e.event, BuildEvent::Log { line, .. } if line.contains("evil postinstall ran")))
    };
    assert!(logged(&events), "allow-listed script ran");
    // It ran sandboxed: its write to /tmp landed in the sandbox's own.
    assert!(!marker.exists(), "the install script wrote to the host's /tmp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_with_different_versions_of_a_dependency_build_at_once() {
    let world = World::new();
    let engine = world.engine();
    let v1 = world.app("version-v1");
    let v2 = world.app("version-v2");
    let h1 = engine.submit(BuildRequest::directory(&v1), None);
    let h2 = engine.submit(BuildRequest::directory(&v2), None);
    let (r1, r2) = (h1.wait().await, h2.wait().await);
    assert_ok(&r1);
    assert_ok(&r2);
    assert_eq!(run_node(&page_scripts(&release(&r1))[0], true), r#"{"version":"1.0.0","count":21}"#);
    assert_eq!(run_node(&page_scripts(&release(&r2))[0], true), r#"{"version":"2.0.0","count":42}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syntax_error_fails_fast_before_any_npm_work() {
    let world = World::new();
    let app = world.app("syntax-error");
    let started = std::time::Instant::now();
    let (result, events) = build_with_events(&world.engine(), BuildRequest::directory(&app)).await;
    let elapsed = started.elapsed();
    assert_eq!(error_code(&result), "validation_failed");
    let message = &result.error.as_ref().unwrap().message;
    assert!(message.contains("src/main.js:4:"), "{message}");
    assert!(message.contains("4 |   return helper(1, 2;") && message.contains('^'), "code frame: {message}");
    assert!(commands(&events).is_empty(), "no npm: {:?}", commands(&events));
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_rules_fail_and_can_be_switched_off() {
    let world = World::new();
    let app = world.app("secret-key");
    let engine = world.engine();
    let result = engine.build(BuildRequest::directory(&app)).await;
    assert_eq!(error_code(&result), "validation_failed");
    let message = &result.error.as_ref().unwrap().message;
    assert!(message.contains("main.js:3:") && message.contains("hardcoded-credentials"), "{message}");
    std::fs::write(
        app.join("workz.json"),
        r#"{"name": "Leaky", "appType": "javascript", "buildConfig": {"javascript": {"securityRules": {"hardcoded-credentials": "warn"}}}}"#,
    )
    .unwrap();
    let result = engine.build(BuildRequest::directory(&app)).await;
    assert_ok(&result);
    assert!(
        result.warnings.iter().any(|w| w.code == "security_warning" && w.message.contains("hardcoded-credentials"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_references_are_clear_errors() {
    let world = World::new();
    let engine = world.engine();
    let result = engine.build(BuildRequest::directory(world.app("missing-script"))).await;
    assert_eq!(error_code(&result), "validation_failed");
    assert!(result.error.as_ref().unwrap().message.contains("src/app.js"));

    let result = engine.build(BuildRequest::directory(world.app("unresolved"))).await;
    assert_eq!(error_code(&result), "unresolved_import", "{:#?}", result.error);
    let message = &result.error.as_ref().unwrap().message;
    assert!(message.contains("./does-not-exist.js") && message.contains("main.js:1"), "{message}");
    assert!(result.error.as_ref().unwrap().hint.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_build_hits_without_bundling() {
    let world = World::new();
    let app = world.app("split-app");
    let engine = world.engine();
    assert_ok(&engine.build(BuildRequest::directory(&app)).await);
    let second = world.engine().build(BuildRequest::directory(&app)).await;
    assert!(second.cache.hit && second.timings.get("build").is_none());
}

// Apps whose dependencies come from the npm registry.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_react_app_with_jsx_renders_in_node() {
    let world = World::new();
    let app = world.app("react-app");
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_ok(&result);
    let html = run_node(&page_scripts(&release(&result))[0], true);
    assert!(html.contains("<h1>Workz React</h1>") && html.contains("<li>deploy</li>"), "{html}");
    assert!(html.contains("Clicked <!-- -->3<!-- --> times"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_own_esbuild_builds_it() {
    let world = World::new();
    let app = world.app("esbuild-app");
    let (result, events) = build_with_events(&world.engine(), BuildRequest::directory(&app)).await;
    assert_ok(&result);
    assert!(
        commands(&events).iter().any(|c| c.contains("esbuild") && c.contains("--bundle")),
        "{:?}",
        commands(&events)
    );
    let out = release(&result);
    assert_eq!(run_node(&page_scripts(&out)[0], true), "[7,7,5]");
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("rel=\"stylesheet\""), "esbuild's CSS linked: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_own_webpack_config_builds_it() {
    let world = World::new();
    let app = world.app("webpack-app");
    let (result, events) = build_with_events(&world.engine(), BuildRequest::directory(&app)).await;
    assert_ok(&result);
    assert!(commands(&events).iter().any(|c| c.contains("webpack.config.js")), "{:?}", commands(&events));
    let out = release(&result);
    let scripts = page_scripts(&out);
    assert_eq!(scripts.len(), 1, "{scripts:?}");
    assert_eq!(run_node(&scripts[0], false), r#"{"sum":29,"mean":7.25}"#);
    assert!(std::fs::read_to_string(out.join("index.html")).unwrap().contains("<p>webpack</p>"), "the app's template");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bundler_is_toolchain_missing() {
    let world = World::new();
    let app = world.app("ts-app");
    std::fs::write(
        app.join("workz.json"),
        r#"{"name": "x", "appType": "javascript", "buildConfig": {"javascript": {"bundler": "webpack"}}}"#,
    )
    .unwrap();
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_eq!(error_code(&result), "toolchain_missing", "{:#?}", result.error);
    assert!(result.error.as_ref().unwrap().hint.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_cannot_reach_outside_the_app_or_its_snapshot() {
    let world = World::new();
    let app = world.app("split-app");
    std::fs::write(world.dir.path().join("apps/secret.json"), "{\"password\": \"hunter2\"}").unwrap();
    std::fs::write(app.join("src/main.js"), "import secret from \"../../secret.json\";\nconsole.log(secret);\n")
        .unwrap();
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_eq!(error_code(&result), "validation_failed");
    let message = &result.error.as_ref().unwrap().message;
    assert!(message.contains("outside the app") && message.contains("secret.json"), "{message}");

    // A file left out of the snapshot (.gitignore) cannot be bundled either.
    std::fs::write(app.join(".gitignore"), "src/local.js\n").unwrap();
    std::fs::write(app.join("src/local.js"), "export const local = 1;\n").unwrap();
    std::fs::write(app.join("src/main.js"), "import { local } from \"./local.js\";\nconsole.log(local);\n").unwrap();
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_eq!(error_code(&result), "validation_failed");
    let message = &result.error.as_ref().unwrap().message;
    assert!(message.contains("src/local.js is not part of the app's sources"), "{message}");

    // Nor through Vite's `?raw` (a file's text as a string), relative or from the root.
    for specifier in ["../../secret.json?raw", "/../secret.json?raw", "./local.js?raw"] {
        std::fs::write(app.join("src/main.js"), format!("import text from {specifier:?};\nconsole.log(text);\n"))
            .unwrap();
        let result = world.engine().build(BuildRequest::directory(&app)).await;
        assert_eq!(error_code(&result), "validation_failed", "{specifier}");
        let message = &result.error.as_ref().unwrap().message;
        assert!(message.contains("outside the app") || message.contains("not part of the app's sources"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syntax_error_found_while_bundling_is_a_validation_failure() {
    // No dependencies: the bundler's own parse reports the error.
    let world = World::new();
    let app = world.app("split-app");
    std::fs::write(app.join("src/greet.js"), "export const greet = (name) => `hello ${name}`;\nexport const x = ;\n")
        .unwrap();
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    assert_eq!(error_code(&result), "validation_failed", "{:#?}", result.error);
    let message = &result.error.as_ref().unwrap().message;
    assert!(message.contains("src/greet.js:2:"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_own_build_script_builds_it() {
    let world = World::new();
    let app = world.app("script-app");
    let (result, events) = build_with_events(&world.engine(), BuildRequest::directory(&app)).await;
    assert_ok(&result);
    assert!(commands(&events).iter().any(|c| c == "npm run build"), "{:?}", commands(&events));
    let out = release(&result);
    assert_eq!(run_node(&out.join("app.js"), false), "42");
    // Optimize still runs on the script's output: the service worker precaches what it wrote.
    let sw = std::fs::read_to_string(out.join("sw.js")).unwrap();
    assert!(sw.contains("\"./app.js\""), "{sw}");
}

/// Write a small app: `files` are (path, contents) pairs.
fn write_app(root: &Path, files: &[(&str, &str)]) -> PathBuf {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    root.to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_imports_css_and_has_no_image_builds_in_either_module_format() {
    for format in ["esm", "iife"] {
        let world = World::new();
        let app = write_app(
            &world.dir.path().join("app"),
            &[
                (
                    "workz.json",
                    &format!(
                        r#"{{"name": "plain-css", "appType": "javascript",
                    "buildConfig": {{"javascript": {{"moduleFormat": "{format}"}}}}}}"#
                    ),
                ),
                ("src/main.js", "import './style.css';\nconsole.log('WORKZ_RESULT ' + JSON.stringify('styled'));\n"),
                ("src/style.css", "body { margin: 0; color: rgb(1, 2, 3); }\n"),
            ],
        );
        let result = world.engine().build(BuildRequest::directory(&app)).await;
        assert_ok(&result);
        let out = release(&result);
        let page = std::fs::read_to_string(out.join("index.html")).unwrap();
        let href = page.split("rel=\"stylesheet\" href=\"./").nth(1).unwrap().split('"').next().unwrap();
        assert!(
            std::fs::read_to_string(out.join(href)).unwrap().contains("rgb(1,2,3)")
                || std::fs::read_to_string(out.join(href)).unwrap().contains("#010203"),
            "{format}"
        );
        assert_eq!(run_node(&page_scripts(&out)[0], format == "esm"), "\"styled\"", "{format}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_the_engine_cannot_compile_are_named_with_a_hint_before_parsing() {
    for (file, contents, kind) in [
        ("src/Widget.svelte", "<script>let n = 1;</script>\n<p>{n}</p>\n", "Svelte"),
        ("src/theme.less", "@c: red;\nbody { color: @c; }\n", "Less"),
        ("src/App.vue", "<template><p>hi</p></template>\n", "Vue"),
    ] {
        let world = World::new();
        let import = format!("import './{}';\n", file.trim_start_matches("src/"));
        let app = write_app(
            &world.dir.path().join("app"),
            &[
                ("workz.json", r#"{"name": "sfc", "appType": "javascript"}"#),
                ("src/main.js", &import),
                (file, contents),
            ],
        );
        let result = world.engine().build(BuildRequest::directory(&app)).await;
        assert_eq!(result.status, BuildStatus::Failed);
        let error = result.error.unwrap();
        assert_eq!(error.code, "unsupported_module_type", "{file}: {error:?}");
        assert_eq!(error.family.as_str(), "validation");
        assert!(error.message.contains(file) && error.message.contains(kind), "{}", error.message);
        assert!(error.hint.unwrap().contains("bundler"), "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_url_asset_and_a_bad_stylesheet_are_clear_errors() {
    let world = World::new();
    let app = write_app(
        &world.dir.path().join("app"),
        &[
            ("workz.json", r#"{"name": "broken", "appType": "javascript"}"#),
            ("src/main.js", "const u = new URL('./gone.png', import.meta.url);\nconsole.log(u.href);\n"),
        ],
    );
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    let error = result.error.expect("a missing file addressed by URL fails the build");
    assert_eq!(error.code, "unresolved_import", "{error:?}");
    assert!(error.message.contains("gone.png"), "{}", error.message);

    let world = World::new();
    let app = write_app(
        &world.dir.path().join("app"),
        &[
            ("workz.json", r#"{"name": "bad-sass", "appType": "javascript"}"#),
            ("src/main.js", "import './a.scss';\n"),
            ("src/a.scss", "$x: 1px;\n.a { width: $undefined-variable; }\n"),
        ],
    );
    let result = world.engine().build(BuildRequest::directory(&app)).await;
    let error = result.error.expect("an undefined Sass variable fails the build");
    assert_eq!(error.code, "validation_failed", "{error:?}");
    assert!(error.message.contains("src/a.scss") && error.message.contains("Undefined variable"), "{}", error.message);
    assert!(error.hint.is_some());
}
