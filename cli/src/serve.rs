//! `workz-build serve`: the engine over HTTP (axum), for hosts that are not a Rust, C, Python
//! or Node process. Every route needs the bearer token (`server.token` or `WORKZ_API_TOKEN`,
//! compared in constant time), `/metrics` too unless `server.metricsOpen`; uploads are size
//! limited and read through the same source rules as any source.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use workz_build::config::LimitsConfig;
use workz_build::events::EventRecord;
use workz_build::history::{Historical, HistoricalBuild};
use workz_build::source::{FileBytes, SourceError, SourceSpec, files_from_tar, files_from_zip};
use workz_build::{BuildRequest, BuildResult, Category, Engine, ErrorCode};

use crate::dashboard::{self, Hub};

/// Builds the service keeps (events and result) for clients to read; older ones are dropped.
const KEPT_BUILDS: usize = 10_000;

/// A build submitted through the service: its events so far (for every reader, from the
/// start), then its result.
struct ServedBuild {
    events: Mutex<Vec<EventRecord>>,
    /// Bumped on each event and at the end.
    changed: watch::Sender<usize>,
    result: OnceLock<Arc<BuildResult>>,
    cancel: CancellationToken,
}

struct Service {
    engine: Engine,
    token: String,
    metrics_open: bool,
    builds: Mutex<Kept>,
    hub: Arc<Hub>,
    /// Cancelled when the service stops: dashboards' sockets close then.
    stop: CancellationToken,
}

/// The builds kept, by id, and their ids oldest first.
type Kept = (BTreeMap<String, Arc<ServedBuild>>, VecDeque<String>);

type Shared = Arc<Service>;

fn error(status: StatusCode, code: &str, message: impl Into<String>, hint: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message.into(), "hint": hint}}))).into_response()
}

/// axum's own refusals (a query or path that does not parse, an unknown route or method, a body
/// over the limit) come as text or nothing: answered as JSON with a code and a hint, like ours.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (code, hint) = match status {
        StatusCode::NOT_FOUND => ("not_found", "docs/monitoring.md lists the service's routes"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "the Allow header lists this route's methods"),
        StatusCode::PAYLOAD_TOO_LARGE => ("upload_too_large", "archives are taken up to server.maxUploadBytes"),
        _ => ("invalid_request", "docs/monitoring.md gives each route's parameters"),
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("refused").to_string(),
        text => text.to_string(),
    };
    let mut answer = error(status, code, message, hint);
    for name in [header::ALLOW, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// Paths anyone may read: the dashboard's page and scripts, which hold no data.
const PUBLIC: [&str; 3] = ["/", "/assets/dashboard.js", "/assets/chart.umd.js"];

async fn authorize(State(service): State<Shared>, request: axum::extract::Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = PUBLIC.contains(&path) || (service.metrics_open && path == "/metrics");
    let header_token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // A browser cannot set headers on a WebSocket: `/ws` also takes `?token=`.
    let given = match header_token {
        Some(token) => token.to_string(),
        None if path == "/ws" => {
            serde_urlencoded::from_str::<Vec<(String, String)>>(request.uri().query().unwrap_or(""))
                .ok()
                .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "token").map(|(_, v)| v))
                .unwrap_or_default()
        }
        None => String::new(),
    };
    if open || bool::from(given.as_bytes().ct_eq(service.token.as_bytes())) {
        next.run(request).await
    } else {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` is needed",
            "send the service's token (server.token or WORKZ_API_TOKEN where it runs)",
        );
        response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        response
    }
}

#[derive(serde::Deserialize)]
struct SubmitQuery {
    target: Option<String>,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    force: bool,
}

/// `POST /api/builds`: the body is the app as a tar archive (gzip-compressed or not) or a zip.
async fn submit(
    State(service): State<Shared>,
    Query(query): Query<SubmitQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let source = match kind.split(';').next().unwrap_or("").trim() {
        "application/json" => directory_under_root(&service, &body),
        "application/x-tar" | "application/gzip" | "application/x-gtar" | "application/tar+gzip" => {
            unpack(&service, body, files_from_tar).await
        }
        "application/zip" | "application/x-zip-compressed" => unpack(&service, body, files_from_zip).await,
        _ => Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            format!("an app cannot be sent as {kind:?}"),
            "send it as a tar or zip archive (Content-Type: application/x-tar or application/zip), or {\"path\"} as application/json",
        ))),
    };
    let source = match source {
        Ok(source) => source,
        Err(response) => return *response,
    };
    let mut request = BuildRequest::directory("");
    request.source = source;
    request.target = query.target;
    request.priority = query.priority;
    request.force = query.force;
    let handle = service.engine.submit(request, None);
    let build_id = handle.build_id().to_string();
    let (changed, _) = watch::channel(0);
    let served = Arc::new(ServedBuild {
        events: Mutex::new(Vec::new()),
        changed,
        result: OnceLock::new(),
        cancel: handle.cancel_token(),
    });
    {
        let mut builds = service.builds.lock().unwrap_or_else(|p| p.into_inner());
        builds.0.insert(build_id.clone(), served.clone());
        builds.1.push_back(build_id.clone());
        while builds.1.len() > KEPT_BUILDS {
            if let Some(old) = builds.1.pop_front() {
                builds.0.remove(&old);
            }
        }
    }
    let (hub, on_farm) = (service.hub.clone(), service.engine.config().queue.redis.is_some());
    tokio::spawn(async move {
        let mut handle = handle;
        while let Some(record) = handle.next_event().await {
            hub.event(&record);
            served.events.lock().unwrap_or_else(|p| p.into_inner()).push(record);
            served.changed.send_modify(|n| *n += 1);
        }
        let result = handle.result().await;
        // On a farm the dashboards hear of it from the farm's `finished` stream, as of
        // every other build there.
        if !on_farm {
            hub.completed(&HistoricalBuild::of_result(&result));
        }
        let _ = served.result.set(Arc::new(result));
        served.changed.send_modify(|n| *n += 1);
    });
    (StatusCode::ACCEPTED, axum::Json(json!({"build_id": build_id}))).into_response()
}

/// An engine error as the service answers it: the caller's fault (422), the infrastructure's
/// (503), else 500; with its stable code and hint.
fn failure(e: &impl ErrorCode) -> Response {
    let status = match e.category() {
        Category::User => StatusCode::UNPROCESSABLE_ENTITY,
        Category::Infrastructure => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, axum::Json(json!({"error": {"code": e.code(), "message": e.to_string(), "hint": e.hint()}})))
        .into_response()
}

type ArchiveReader = fn(&[u8], &LimitsConfig) -> Result<BTreeMap<String, FileBytes>, SourceError>;

/// The files of an uploaded archive, read by `read` under the engine's limits.
async fn unpack(service: &Service, body: Bytes, read: ArchiveReader) -> Result<SourceSpec, Box<Response>> {
    let limits = service.engine.config().limits.clone();
    match tokio::task::spawn_blocking(move || read(&body, &limits)).await {
        Ok(Ok(files)) => Ok(SourceSpec::Files(files)),
        Ok(Err(e)) => Err(Box::new(failure(&e))),
        Err(e) => Err(Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
            "a bug: please report it with the archive",
        ))),
    }
}

#[derive(serde::Deserialize)]
struct PathSubmission {
    path: String,
}

/// `{"path"}`: an app directory under `server.sourceRoot`, links resolved (one that leads out
/// of the root is refused like a `..`).
fn directory_under_root(service: &Service, body: &[u8]) -> Result<SourceSpec, Box<Response>> {
    let Some(root) = &service.engine.config().server.source_root else {
        return Err(Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "this service takes no paths",
            "set server.sourceRoot to the directory whose apps it may build, or upload the app",
        )));
    };
    let submission: PathSubmission = serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the body is not {{\"path\": \"…\"}}: {e}"),
            "send {\"path\": \"<the app's directory under server.sourceRoot>\"}",
        )
    })?;
    let outside =
        || failure(&SourceError::InvalidPath { path: submission.path.clone(), reason: "outside server.sourceRoot" });
    if std::path::Path::new(&submission.path).is_absolute() {
        return Err(Box::new(outside()));
    }
    let root = std::fs::canonicalize(root).map_err(|_| Box::new(failure(&SourceError::NotFound(root.clone()))))?;
    let dir = std::fs::canonicalize(root.join(&submission.path))
        .map_err(|_| Box::new(failure(&SourceError::NotFound(submission.path.clone().into()))))?;
    if !dir.starts_with(&root) {
        return Err(Box::new(outside()));
    }
    Ok(SourceSpec::Directory(dir))
}

fn find(service: &Service, id: &str) -> Option<Arc<ServedBuild>> {
    service.builds.lock().unwrap_or_else(|p| p.into_inner()).0.get(id).cloned()
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "build_not_found",
        format!("no build {id} was submitted to this service"),
        "the service keeps its last 10,000 builds; check the id",
    )
}

/// `GET /api/builds/{id}`: the result once the build ended, else its state.
async fn status(State(service): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(build) = find(&service, &id) else { return not_found(&id) };
    match build.result.get() {
        Some(result) => axum::Json(result.as_ref()).into_response(),
        None => {
            let started = build
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|r| matches!(r.event, workz_build::BuildEvent::Started));
            axum::Json(json!({"build_id": id, "state": if started { "running" } else { "queued" }})).into_response()
        }
    }
}

/// `DELETE /api/builds/{id}`: cancel it, queued or running.
async fn cancel(State(service): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(build) = find(&service, &id) else { return not_found(&id) };
    build.cancel.cancel();
    (StatusCode::ACCEPTED, axum::Json(json!({"build_id": id, "cancelled": build.result.get().is_none()})))
        .into_response()
}

/// `GET /api/builds/{id}/events`: every event from the first, as Server-Sent Events (the event
/// type as the SSE event name, the record as JSON), then an `end` event with the result.
async fn events(State(service): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(build) = find(&service, &id) else { return not_found(&id) };
    let receiver = build.changed.subscribe();
    let stream =
        futures_util::stream::unfold((build, receiver, 0usize, false), |(build, mut rx, next, done)| async move {
            if done {
                return None;
            }
            loop {
                let (record, ended) = {
                    let events = build.events.lock().unwrap_or_else(|p| p.into_inner());
                    (events.get(next).cloned(), build.result.get().cloned())
                };
                if let Some(record) = record {
                    let name = serde_json::to_value(&record).ok().and_then(|v| v["type"].as_str().map(str::to_string));
                    let event = Event::default().event(name.unwrap_or_else(|| "event".into())).json_data(&record);
                    let event = event.unwrap_or_else(|_| Event::default().comment("unserializable event"));
                    return Some((Ok::<_, Infallible>(event), (build, rx, next + 1, false)));
                }
                if let Some(result) = ended {
                    let event = Event::default().event("end").json_data(result.as_ref());
                    let event = event.unwrap_or_else(|_| Event::default().event("end"));
                    return Some((Ok(event), (build, rx, next, true)));
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

/// `GET /api/builds/{id}/logs`: its log so far as text — stages, commands and what they
/// printed, warnings, the end (`workz-build logs` prints the same lines).
async fn logs(State(service): State<Shared>, Path(id): Path<String>) -> Response {
    let Some(build) = find(&service, &id) else { return not_found(&id) };
    let events = build.events.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let text: String = events.iter().filter_map(crate::farm::log_line).map(|line| line + "\n").collect();
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// `GET /api/cache`: entries, bytes, hits and misses per cache tier.
async fn cache_stats(State(service): State<Shared>) -> Response {
    match service.engine.cache_stats().await {
        Ok(stats) => axum::Json(stats).into_response(),
        Err(e) => failure(&e),
    }
}

#[derive(serde::Deserialize)]
struct Invalidate {
    /// A glob over `<app>/<target>/<key>`: `shop/*`.
    pattern: String,
}

/// `DELETE /api/cache?pattern=`: remove the matching entries from every tier.
async fn cache_invalidate(State(service): State<Shared>, Query(query): Query<Invalidate>) -> Response {
    match service.engine.cache_invalidate(&query.pattern).await {
        Ok(removed) => axum::Json(json!({"pattern": query.pattern, "invalidated": removed})).into_response(),
        Err(e) => failure(&e),
    }
}

/// `GET /api/queue`: the in-process queue, and the farm's figures when the engine has one.
async fn queue(State(service): State<Shared>) -> Response {
    let local = service.engine.queue_status();
    let mut body = json!({"queued": local.queued, "running": local.running, "maxConcurrent": local.max_concurrent});
    if service.engine.config().queue.redis.is_some() {
        let q = &service.engine.config().queue;
        match service.engine.farm().await {
            Ok(farm) => match farm.queue.farm_status(q.min_workers, q.max_workers).await {
                Ok(status) => body["farm"] = serde_json::to_value(status).unwrap_or(Value::Null),
                Err(e) => return failure(&e),
            },
            Err(e) => return failure(&e),
        }
    }
    axum::Json(body).into_response()
}

/// `GET /metrics`: the engine's build metrics, and the farm's gauges when it has one.
async fn metrics(State(service): State<Shared>) -> Response {
    let mut text = service.engine.metrics_text();
    if service.engine.config().queue.redis.is_some() {
        let q = &service.engine.config().queue;
        if let Ok(farm) = service.engine.farm().await
            && let Ok(status) = farm.queue.farm_status(q.min_workers, q.max_workers).await
        {
            // One exposition: the farm's families before the single `# EOF`.
            text = text.trim_end().trim_end_matches("# EOF").to_string();
            text.push_str(&status.prometheus());
        }
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

#[derive(serde::Deserialize)]
struct Window {
    /// Hours back from now (the document's default: 24).
    hours: Option<u64>,
}

/// `GET /build-metrics/historical?hours=N`: per build type, the builds of the window (their
/// durations and outcomes, oldest first) and counts by status, from the build history.
/// On a farm, the builds of every worker (its `finished` stream); else this engine's history.
async fn historical(State(service): State<Shared>, Query(window): Query<Window>) -> Response {
    let hours = window.hours.unwrap_or(24);
    match finished_builds(&service.engine, hours).await {
        Ok(builds) => axum::Json(Historical::of_builds(hours, builds)).into_response(),
        Err(refusal) => *refusal,
    }
}

/// The builds that finished in the last `hours`, oldest first.
async fn finished_builds(engine: &Engine, hours: u64) -> Result<Vec<HistoricalBuild>, Box<Response>> {
    if engine.config().queue.redis.is_some() {
        let since = Historical::of_builds(hours, []).since;
        let farm = engine.farm().await.map_err(|e| Box::new(failure(&e)))?;
        farm.queue.finished_since(since).await.map_err(|e| Box::new(failure(&e)))
    } else {
        let history = engine.history().historical(hours).map_err(|e| {
            let message = format!("the build history cannot be read: {e}");
            Box::new(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "build_io_failed",
                message,
                "check the cache directory's history/ (permissions, free space)",
            ))
        })?;
        let mut builds: Vec<HistoricalBuild> = history.types.into_values().flat_map(|t| t.builds).collect();
        builds.sort_by_key(|b| b.finished_at);
        Ok(builds)
    }
}

/// `GET /ws`: the dashboard's live feed.
async fn socket(State(service): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    let (hub, stop) = (service.hub.clone(), service.stop.clone());
    upgrade.on_upgrade(move |socket| hub.serve_socket(socket, stop))
}

/// The service's routes over `engine`.
fn router(service: Shared, max_upload: usize, cors: &[String]) -> Router {
    let router = Router::new()
        .route("/", get(dashboard::page))
        .route("/assets/dashboard.js", get(dashboard::script))
        .route("/assets/chart.umd.js", get(dashboard::chart_js))
        .route("/ws", get(socket))
        .route("/api/builds", axum::routing::post(submit))
        .route("/api/builds/{id}", get(status).delete(cancel))
        .route("/api/builds/{id}/events", get(events))
        .route("/api/builds/{id}/logs", get(logs))
        .route("/api/cache", get(cache_stats).delete(cache_invalidate))
        .route("/api/queue", get(queue))
        .route("/build-metrics/historical", get(historical))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_upload))
        .layer(middleware::from_fn_with_state(service.clone(), authorize))
        .layer(middleware::map_response(json_errors))
        .with_state(service);
    if cors.is_empty() {
        return router;
    }
    // Outside the token check: a browser's preflight carries no token.
    let origins: Vec<header::HeaderValue> = cors.iter().filter_map(|o| o.parse().ok()).collect();
    router.layer(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST, axum::http::Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}

/// Serve `engine` on `listen` until SIGINT/SIGTERM. Exit code as for the other commands.
pub fn serve(engine: Engine, listen: Option<String>) -> u8 {
    let config = engine.config().server.clone();
    let token = config.token.clone().or_else(|| std::env::var("WORKZ_API_TOKEN").ok()).filter(|t| !t.is_empty());
    let Some(token) = token.filter(|t| t.len() >= 16) else {
        eprintln!(
            "error [config_invalid]: the service needs a token of at least 16 characters: set server.token in the engine config or WORKZ_API_TOKEN\n  hint: every call must send `Authorization: Bearer <token>`"
        );
        return crate::EXIT_USAGE;
    };
    let listen = listen.unwrap_or(config.listen.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error [internal]: cannot start the runtime: {e}");
            return crate::EXIT_FAILED;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("error [invalid_request]: cannot listen on {listen}: {e}\n  hint: --listen 127.0.0.1:8470");
                return crate::EXIT_USAGE;
            }
        };
        let stop = CancellationToken::new();
        // The "Completed" bar starts from the day's builds; a farm out of reach starts it at 0.
        let day = finished_builds(&engine, 24).await.unwrap_or_default();
        let hub = Arc::new(Hub::new(engine.config().monitoring.alerts.clone(), day));
        hub.clone().run(engine.clone(), stop.clone());
        let service = Arc::new(Service {
            engine: engine.clone(),
            token,
            metrics_open: config.metrics_open,
            builds: Mutex::new((BTreeMap::new(), VecDeque::new())),
            hub,
            stop: stop.clone(),
        });
        let app = router(service, config.max_upload_bytes as usize, &config.cors_origins);
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
        // Tools that start the service read where it listens from this line.
        println!("listening on http://{address}");
        tokio::spawn(crate::farm::cancel_on_signal(stop.clone()));
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
        engine.flush().await;
        match served {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error [internal]: the service stopped: {e}");
                crate::EXIT_FAILED
            }
        }
    })
}
