//! `workz-build serve` end to end: a real server process on a free loopback port, spoken to
//! over plain HTTP/1.1 as any host would (no client library), with archives made by Python's
//! tarfile (hostile ones included).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/fuzzing.rs"]
mod fuzzing;
use fuzzing::{Rng, snapshot};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Server {
    child: Child,
    address: String,
    root: tempfile::TempDir,
}

impl Server {
    fn start(config: Value) -> Server {
        let root = tempfile::tempdir().unwrap();
        let config_path = root.path().join("engine.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_workz-build"))
            .arg("--config")
            .arg(&config_path)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("WORKZ_API_TOKEN", TOKEN)
            .env("WORKZ_CACHE_DIR", root.path().join("cache"))
            .env("WORKZ_ARTIFACTS_DIR", root.path().join("artifacts"))
            .env_remove("WORKZ_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().strip_prefix("listening on http://").unwrap_or_else(|| panic!("{line}")).to_string();
        Server { child, address, root }
    }

    /// One request; `(status, body)`.
    fn call(&self, method: &str, path: &str, token: Option<&str>, content_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.address);
        if let Some(token) = token {
            head += &format!("Authorization: Bearer {token}\r\n");
        }
        if !content_type.is_empty() {
            head += &format!("Content-Type: {content_type}\r\n");
        }
        head += &format!("Content-Length: {}\r\n\r\n", body.len());
        stream.write_all(head.as_bytes()).unwrap();
        // The server may answer (413) before reading all of a big body.
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        let status: u16 =
            text.split_whitespace().nth(1).unwrap_or_else(|| panic!("no response: {text}")).parse().unwrap();
        let at = response.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(response.len());
        (status, response[at..].to_vec())
    }

    fn json(&self, method: &str, path: &str) -> (u16, Value) {
        let (status, body) = self.call(method, path, Some(TOKEN), "", b"");
        (status, serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body))))
    }

    fn submit(&self, archive: &[u8]) -> (u16, Value) {
        let (status, body) = self.call("POST", "/api/builds", Some(TOKEN), "application/x-tar", archive);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    fn wait(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.json("GET", &format!("/api/builds/{id}"));
            assert_eq!(status, 200, "{body}");
            if body.get("status").is_some() {
                return body;
            }
            assert!(Instant::now() < deadline, "{id} never ended: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tar archive from `(name, kind, contents or link target)`, made by Python's tarfile, which
/// writes `..` and absolute names as given.
fn tar(entries: &[(&str, &str, &str)]) -> Vec<u8> {
    let script = r#"
import io, json, sys, tarfile
out = io.BytesIO()
with tarfile.open(fileobj=out, mode="w") as t:
    for name, kind, data in json.loads(sys.argv[1]):
        info = tarfile.TarInfo(name)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, data
            t.addfile(info)
        else:
            body = data.encode()
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
sys.stdout.buffer.write(out.getvalue())
"#;
    python_archive(script, entries)
}

/// What `script` writes to stdout given `entries` as JSON in its first argument.
fn python_archive(script: &str, entries: &[(&str, &str, &str)]) -> Vec<u8> {
    let spec = serde_json::to_string(entries).unwrap();
    let out = Command::new("python3").args(["-c", script, &spec]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A deflated zip archive from `(name, kind, contents or link target)`, made by Python's
/// zipfile, which writes names as given (`..` included).
fn zip(entries: &[(&str, &str, &str)]) -> Vec<u8> {
    let script = r#"
import io, json, sys, zipfile
out = io.BytesIO()
with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
    for name, kind, data in json.loads(sys.argv[1]):
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        info.external_attr = (0o120777 if kind == "symlink" else 0o100644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
sys.stdout.buffer.write(out.getvalue())
"#;
    python_archive(script, entries)
}

fn site(name: &str, pre_build: &[&str]) -> Vec<u8> {
    let config = json!({"name": name, "appType": "static", "hooks": {"preBuild": pre_build}}).to_string();
    let page = format!("<!doctype html><link rel=stylesheet href=css/site.css><h1>{name}</h1>");
    tar(&[
        ("workz.json", "file", &config),
        ("index.html", "file", &page),
        ("css/site.css", "file", "h1 { color: teal; }\n"),
    ])
}

#[test]
fn every_route_needs_the_token() {
    let server = Server::start(json!({}));
    let routes = [
        ("POST", "/api/builds"),
        ("GET", "/api/builds/b1"),
        ("DELETE", "/api/builds/b1"),
        ("GET", "/api/builds/b1/events"),
        ("GET", "/api/builds/b1/logs"),
        ("GET", "/api/cache"),
        ("DELETE", "/api/cache?pattern=*"),
        ("GET", "/api/queue"),
        ("GET", "/build-metrics/historical"),
        ("GET", "/metrics"),
        ("GET", "/ws"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
            let (status, body) = server.call(method, path, token, "application/x-tar", b"");
            assert_eq!(status, 401, "{method} {path} with {token:?}: {}", String::from_utf8_lossy(&body));
        }
    }
    let (status, body) = server.json("GET", "/api/builds/bnope");
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("build_not_found")));
    // `?token=` is for the dashboard's socket (a browser cannot set its headers), not the API.
    let (status, _) = server.call("GET", &format!("/api/queue?token={TOKEN}"), None, "", b"");
    assert_eq!(status, 401);
    let (status, _) = server.call("GET", "/ws?token=wrong-token-0123456789abcdef", None, "", b"");
    assert_eq!(status, 401);
    // The dashboard's page and scripts are public: they hold no data and no secret.
    for path in ["/", "/assets/dashboard.js", "/assets/chart.umd.js"] {
        let (status, body) = server.call("GET", path, None, "", b"");
        assert_eq!(status, 200, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains(TOKEN));
    }
}

#[test]
fn cross_origin_calls_are_refused_unless_the_origin_is_configured() {
    let preflight = |server: &Server, origin: &str| {
        let mut stream = TcpStream::connect(&server.address).unwrap();
        let request = format!(
            "OPTIONS /api/queue HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: GET\r\n\
             Access-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n",
            server.address
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.to_ascii_lowercase()
    };
    let closed = Server::start(json!({}));
    let answer = preflight(&closed, "https://admin.example.com");
    assert!(!answer.contains("access-control-allow-origin"), "{answer}");
    let open = Server::start(json!({"server": {"corsOrigins": ["https://admin.example.com"]}}));
    let answer = preflight(&open, "https://admin.example.com");
    assert!(answer.contains("access-control-allow-origin: https://admin.example.com"), "{answer}");
    assert!(answer.contains("authorization"), "{answer}");
    let answer = preflight(&open, "https://evil.example.net");
    assert!(!answer.contains("access-control-allow-origin"), "{answer}");
}

#[test]
fn a_build_uploaded_as_a_tar_streams_its_events_and_its_result() {
    let server = Server::start(json!({}));
    let (status, body) = server.submit(&site("shop", &[]));
    assert_eq!(status, 202, "{body}");
    let id = body["build_id"].as_str().unwrap().to_string();
    // Server-Sent Events from the first event to the end.
    let (status, stream) = server.call("GET", &format!("/api/builds/{id}/events"), Some(TOKEN), "", b"");
    let text = String::from_utf8_lossy(&stream);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("event: started") && text.contains("event: finished"), "{text}");
    assert!(text.contains("event: end") && text.contains("\"status\":\"succeeded\""), "{text}");
    let result = server.wait(&id);
    assert_eq!(result["status"], "succeeded", "{result}");
    let release = PathBuf::from(result["artifacts"]["path"].as_str().unwrap());
    assert!(release.join("index.html").is_file() && release.starts_with(server.root.path()), "{result}");

    let (_, metrics) = server.call("GET", "/metrics", Some(TOKEN), "", b"");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(metrics.contains("workz_builds_total{build_type=\"static_web\",status=\"succeeded\"} 1"), "{metrics}");
    let (status, history) = server.json("GET", "/build-metrics/historical?hours=1");
    assert_eq!(status, 200);
    assert_eq!(history["types"]["static_web"]["counts"]["succeeded"], 1, "{history}");
    let (_, queue) = server.json("GET", "/api/queue");
    assert_eq!(queue["running"], 0, "{queue}");
}

#[test]
fn logs_and_the_cache_over_http() {
    let server = Server::start(json!({}));
    let (_, body) = server.submit(&site("chatty", &["echo hello from the hook"]));
    let id = body["build_id"].as_str().unwrap().to_string();
    assert_eq!(server.wait(&id)["status"], "succeeded");
    let (status, log) = server.call("GET", &format!("/api/builds/{id}/logs"), Some(TOKEN), "", b"");
    let log = String::from_utf8_lossy(&log);
    assert_eq!(status, 200, "{log}");
    assert!(log.contains("$ echo hello from the hook") && log.contains("│ hello from the hook"), "{log}");
    assert!(log.lines().last().unwrap_or("").starts_with("finished: succeeded"), "{log}");

    let (status, stats) = server.json("GET", "/api/cache");
    assert_eq!(status, 200, "{stats}");
    let entries =
        |stats: &Value| stats["usage"].as_array().unwrap().iter().map(|t| t["entries"].as_u64().unwrap()).sum::<u64>();
    assert!(entries(&stats) >= 1, "{stats}");
    let (status, removed) = server.json("DELETE", "/api/cache?pattern=chatty/*");
    assert_eq!((status, removed["invalidated"].as_u64()), (200, Some(1)), "{removed}");
    let (_, stats) = server.json("GET", "/api/cache");
    assert_eq!(entries(&stats), 0, "{stats}");
    let (status, bad) = server.json("DELETE", "/api/cache?pattern=%5B");
    assert_eq!((status, bad["error"]["code"].as_str()), (422, Some("invalid_request")), "{bad}");
    assert!(bad["error"]["hint"].as_str().is_some_and(|h| h.contains("glob")), "{bad}");
}

#[test]
fn a_zip_upload_builds_and_a_hostile_zip_is_refused() {
    let server = Server::start(json!({}));
    let config = json!({"name": "zipped", "appType": "static"}).to_string();
    let page = "<!doctype html><link rel=stylesheet href=css/site.css><h1>zipped</h1>";
    let css = "h1 { color: teal; }\n".repeat(100);
    let app = zip(&[
        ("workz.json", "file", &config),
        ("index.html", "file", page),
        ("css/site.css", "file", &css),
        ("home.html", "symlink", "index.html"),
    ]);
    let (status, body) = server.call("POST", "/api/builds", Some(TOKEN), "application/zip", &app);
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<Value>(&body).unwrap()["build_id"].as_str().unwrap().to_string();
    let result = server.wait(&id);
    assert_eq!(result["status"], "succeeded", "{result}");
    let release = PathBuf::from(result["artifacts"]["path"].as_str().unwrap());
    assert!(std::fs::read_to_string(release.join("home.html")).unwrap().contains("zipped"));
    for (entries, code) in [
        (vec![("workz.json", "file", "{}"), ("../../evil.sh", "file", "echo owned")], "source_path_invalid"),
        (vec![("workz.json", "file", "{}"), ("passwd", "symlink", "../../../etc/passwd")], "source_symlink_escape"),
    ] {
        let (status, body) = server.call("POST", "/api/builds", Some(TOKEN), "application/zip", &zip(&entries));
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some(code)), "{body}");
    }
    // A tar sent as a zip: unreadable, said so.
    let (status, body) = server.call("POST", "/api/builds", Some(TOKEN), "application/zip", &site("t", &[]));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("source_read_failed")), "{body}");
}

#[test]
fn an_app_named_by_path_is_built_only_from_under_the_source_root() {
    let apps = tempfile::tempdir().unwrap();
    let shop = apps.path().join("team/shop");
    std::fs::create_dir_all(&shop).unwrap();
    std::fs::write(shop.join("workz.json"), json!({"name": "shop", "appType": "static"}).to_string()).unwrap();
    std::fs::write(shop.join("index.html"), "<!doctype html><h1>shop</h1>").unwrap();
    std::os::unix::fs::symlink("/etc", apps.path().join("etc-link")).unwrap();
    let submit_path = |server: &Server, path: &str| {
        let body = json!({"path": path}).to_string();
        let (status, body) = server.call("POST", "/api/builds", Some(TOKEN), "application/json", body.as_bytes());
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    };
    let closed = Server::start(json!({}));
    let (status, body) = submit_path(&closed, "team/shop");
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_request")), "{body}");
    assert!(body["error"]["hint"].as_str().unwrap().contains("server.sourceRoot"), "{body}");

    let server = Server::start(json!({"server": {"sourceRoot": apps.path()}}));
    let (status, body) = submit_path(&server, "team/shop");
    assert_eq!(status, 202, "{body}");
    assert_eq!(server.wait(body["build_id"].as_str().unwrap())["status"], "succeeded");
    for (path, code) in [
        ("../", "source_path_invalid"),
        ("team/../../", "source_path_invalid"),
        ("etc-link", "source_path_invalid"),
        ("/etc", "source_path_invalid"),
        ("team/nope", "source_not_found"),
    ] {
        let (status, body) = submit_path(&server, path);
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some(code)), "{path}: {body}");
    }
}

#[test]
fn hostile_and_oversized_uploads_are_refused_with_their_codes() {
    let server = Server::start(json!({"server": {"maxUploadBytes": 65536}}));
    let up = tar(&[("workz.json", "file", "{}"), ("../../evil.sh", "file", "echo owned")]);
    let (status, body) = server.submit(&up);
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("source_path_invalid")), "{body}");
    let link = tar(&[("workz.json", "file", "{}"), ("passwd", "symlink", "../../../etc/passwd")]);
    let (status, body) = server.submit(&link);
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("source_symlink_escape")), "{body}");
    let absolute = tar(&[("/tmp/workz-serve-escape", "file", "x")]);
    let (status, body) = server.submit(&absolute);
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("source_path_invalid")), "{body}");
    assert!(!Path::new("/tmp/workz-serve-escape").exists());
    let big = tar(&[("workz.json", "file", "{}"), ("big.txt", "file", &"x".repeat(100_000))]);
    let (status, body) = server.submit(&big);
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("upload_too_large")), "{body}");
    assert!(body["error"]["hint"].as_str().is_some_and(|h| h.contains("server.maxUploadBytes")), "{body}");
    let (status, body) = server.call("POST", "/api/builds", Some(TOKEN), "text/plain", b"{}");
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn a_hundred_concurrent_submissions_each_finish_once_and_a_running_one_is_cancelled() {
    let server = Server::start(json!({}));
    let slow = site("slow", &["sleep 30"]);
    let (_, body) = server.submit(&slow);
    let slow_id = body["build_id"].as_str().unwrap().to_string();
    let ids: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..100)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    let (status, body) = server.submit(&site(&format!("app{}", i % 10), &[]));
                    assert_eq!(status, 202, "{body}");
                    body["build_id"].as_str().unwrap().to_string()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 100);
    for id in &ids {
        assert_eq!(server.wait(id)["status"], "succeeded");
    }
    let (status, _) = server.json("DELETE", &format!("/api/builds/{slow_id}"));
    assert_eq!(status, 202);
    assert_eq!(server.wait(&slow_id)["status"], "cancelled");
    let history = std::fs::read_to_string(server.root.path().join("cache/history/builds.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 101, "each build recorded once");
}

/// What a raw request brought back: the status, or `None` when the server closed without one.
fn raw(address: &str, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

/// The HTTP API fuzzed from a seed (`WORKZ_FUZZ_SEED`, `WORKZ_FUZZ_CASES`): uploads (tar, gzip,
/// zip) damaged or with hostile header fields, `{"path"}` bodies, query strings, ids, methods,
/// content types, and requests that break HTTP itself. Every answer comes within 30 s; every
/// refusal is JSON with a code and a hint, never `internal`; every accepted build ends with a
/// result that is not `internal`; the server stays up and writes nothing outside its roots.
#[test]
fn fuzzed_requests_are_answered_with_codes_and_the_server_stays_up() {
    let (mut rng, seed, cases) = Rng::from_env(1000);
    let replay = format!(
        "seed {seed}, {cases} cases (replay: WORKZ_FUZZ_SEED={seed} WORKZ_FUZZ_CASES={cases} cargo test -p workz-build-cli --test serve fuzzed -- --nocapture)"
    );
    println!("fuzz: {replay}");
    let apps = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("keep.txt"), "keep").unwrap();
    let shop = apps.path().join("shop");
    std::fs::create_dir_all(&shop).unwrap();
    std::fs::write(shop.join("workz.json"), json!({"name": "shop", "appType": "static"}).to_string()).unwrap();
    std::fs::write(shop.join("index.html"), "<!doctype html><h1>shop</h1>").unwrap();
    std::os::unix::fs::symlink(outside.path(), apps.path().join("out-link")).unwrap();
    std::os::unix::fs::symlink("/etc", apps.path().join("etc-link")).unwrap();
    let watched = [snapshot(outside.path()), snapshot(apps.path())];
    let server = Server::start(json!({"server": {"sourceRoot": apps.path(), "maxUploadBytes": 65536}}));

    let tar_app = site("fuzzed", &[]);
    let gzip_app = {
        let script = "import gzip, sys; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read()))";
        let mut child =
            Command::new("python3").args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(&tar_app).unwrap();
        child.wait_with_output().unwrap().stdout
    };
    let zip_app = zip(&[
        ("workz.json", "file", r#"{"name": "zipped", "appType": "static"}"#),
        ("index.html", "file", "<h1>zipped</h1>"),
        ("home.html", "symlink", "index.html"),
    ]);
    let types = [
        "application/x-tar",
        "application/gzip",
        "application/zip",
        "application/json",
        "application/x-tar; charset=binary",
        "text/plain",
        "",
        "application/json, application/zip",
        "multipart/form-data; boundary=x",
    ];
    let paths = ["shop", "../", "out-link", "etc-link/passwd", "shop/../..", "/etc", "", ".", "shop\u{0}", "nope"];
    let hostile = [json!(null), json!(7), json!(["shop"]), json!({"path": "shop"}), json!("x".repeat(5000))];
    let ids = ["b1", "..", "%2e%2e", "%2F..%2Fetc", "%00", "%ZZ", "\u{20ac}", "a%20b"];
    let mut accepted: Vec<String> = Vec::new();
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for case in 0..cases {
        let what = format!("case {case}, {replay}");
        let (method, path, content_type, body): (&str, String, &str, Vec<u8>) = match rng.below(6) {
            // An upload, damaged or with a hostile header field.
            0 | 1 => {
                let base = rng.pick(&[&tar_app, &gzip_app, &zip_app]).to_vec();
                let body = if base == tar_app && rng.below(2) == 0 { rng.retar(base) } else { rng.damage(base) };
                let mut query = Vec::new();
                for _ in 0..rng.below(3) {
                    query.push(match rng.below(4) {
                        0 => format!("target={}", rng.pick(&["web", "android", "ios", "", "..%2Fx", "%00", "%ZZ"])),
                        1 => format!("priority={}", rng.pick(&["0", "-1", "2147483648", "abc", "1e9", ""])),
                        2 => format!("force={}", rng.pick(&["true", "false", "1", "yes", ""])),
                        _ => "unknown=1&&=&%".to_string(),
                    });
                }
                ("POST", format!("/api/builds?{}", query.join("&")), *rng.pick(&types), body)
            }
            // An app named by path.
            2 => {
                let body = match rng.below(3) {
                    0 => json!({"path": rng.pick(&paths)}).to_string().into_bytes(),
                    1 => json!({"path": rng.pick(&hostile)}).to_string().into_bytes(),
                    _ => rng.damage(json!({"path": "shop"}).to_string().into_bytes()),
                };
                ("POST", "/api/builds".to_string(), "application/json", body)
            }
            // Any route, any method, any id, any query.
            3 | 4 => {
                let id = if !accepted.is_empty() && rng.below(2) == 0 {
                    rng.pick(&accepted).clone()
                } else {
                    rng.pick(&ids).to_string()
                };
                let path = match rng.below(8) {
                    0 => format!("/api/builds/{id}"),
                    1 => format!("/api/builds/{id}/events"),
                    2 => format!("/api/builds/{id}/logs"),
                    3 => format!("/api/cache?pattern={}", rng.pick(&["*", "shop/*", "%5B", "", "**/..", "%00"])),
                    4 => format!(
                        "/build-metrics/historical?hours={}",
                        rng.pick(&["1", "0", "-1", "18446744073709551615", "x"])
                    ),
                    5 => rng.pick(&["/api/queue", "/metrics", "/ws", "/", "/assets/%2e%2e/x"]).to_string(),
                    6 => format!("/api/builds/{id}/{id}/{id}"),
                    _ => "/api/builds".to_string(),
                };
                let method = *rng.pick(&["GET", "GET", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]);
                (method, path, "", Vec::new())
            }
            // HTTP itself broken: lying lengths, bad chunks, garbage, huge headers.
            _ => {
                let request: Vec<u8> = match rng.below(4) {
                    0 => format!("POST /api/builds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/x-tar\r\nContent-Length: 100000\r\n\r\nshort").into_bytes(),
                    1 => format!("POST /api/builds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n").into_bytes(),
                    2 => (0..rng.below(2000)).map(|_| rng.next() as u8).collect(),
                    _ => format!("GET /api/queue HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(200_000)).into_bytes(),
                };
                let status = raw(&server.address, &request);
                *outcomes.entry(format!("raw {status:?}")).or_default() += 1;
                let (status, _) = server.json("GET", "/api/queue");
                assert_eq!(status, 200, "{what}: the server does not answer after a broken request");
                continue;
            }
        };
        let started = Instant::now();
        let (status, answer) = server.call(method, &path, Some(TOKEN), content_type, &body);
        assert!(started.elapsed() < Duration::from_secs(30), "{what}: {method} {path} took {:?}", started.elapsed());
        assert_ne!(status, 500, "{what}: {method} {path}: {}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if status >= 400 {
            let code = answer["error"]["code"].as_str().unwrap_or_default();
            let hint = answer["error"]["hint"].as_str().unwrap_or_default();
            assert!(
                !code.is_empty() && !hint.is_empty(),
                "{what}: {method} {path} ({content_type}) → {status} {answer}"
            );
            assert_ne!(code, "internal", "{what}: {method} {path} → {answer}");
            *outcomes.entry(format!("{status} {code}")).or_default() += 1;
        } else {
            *outcomes.entry(status.to_string()).or_default() += 1;
        }
        if let Some(id) = answer["build_id"].as_str().filter(|_| status == 202 && method == "POST") {
            accepted.push(id.to_string());
        }
    }
    for id in &accepted {
        let result = server.wait(id);
        let code = result["error"]["code"].as_str().unwrap_or_default();
        assert_ne!(code, "internal", "build {id}, {replay}: {result}");
        *outcomes
            .entry(format!("build {} {code}", result["status"].as_str().unwrap_or("?")).trim_end().to_string())
            .or_default() += 1;
    }
    let mut server = server;
    assert!(server.child.try_wait().unwrap().is_none(), "{replay}: the server exited");
    assert_eq!(
        [snapshot(outside.path()), snapshot(apps.path())],
        watched,
        "{replay}: a file outside the roots changed"
    );
    assert!(!Path::new("/tmp/workz-fuzz-escape").exists(), "{replay}");
    println!("fuzz: {cases} cases, outcomes {outcomes:?}");
}
