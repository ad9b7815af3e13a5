//! The live dashboard of `workz-build serve`: the page (`GET /`, with Chart.js vendored in the
//! binary: it works offline) and its feed (`GET /ws`). The feed carries the platform
//! document's messages — `build_completed`, `queue_status`, `worker_status` — and
//! `build_event` for the live build list; a client first gets `hello` (the alert thresholds
//! and the builds in progress) and the latest queue and worker figures. A frame holds one
//! message, or a JSON array of the messages that were waiting.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use workz_build::Engine;
use workz_build::config::AlertsConfig;
use workz_build::events::{BuildEvent, EventRecord};
use workz_build::history::HistoricalBuild;

const PAGE: &str = include_str!("../assets/dashboard.html");
const SCRIPT: &str = include_str!("../assets/dashboard.js");
/// Chart.js 4.6.1 (`dist/chart.umd.js` of the npm package, MIT: `assets/chart.js-LICENSE.md`).
const CHART_JS: &str = include_str!("../assets/chart.umd.js");

/// Messages a slow client may fall behind by before it is sent a fresh snapshot instead.
const BACKLOG: usize = 8192;
/// The "Completed" bar counts the builds of the last day.
const COMPLETED_WINDOW: u64 = 24 * 3600;

/// A build in progress, as the live list shows it.
#[derive(Clone, Serialize)]
struct LiveBuild {
    build_id: String,
    state: &'static str,
    stage: Option<String>,
    stages_done: usize,
    /// Seconds since it was submitted, at its latest event.
    elapsed: f64,
}

#[derive(Default)]
struct Board {
    live: BTreeMap<String, LiveBuild>,
    /// Finish times (Unix seconds) of the last day's builds, oldest first.
    finished: VecDeque<u64>,
    queue: Option<Utf8Bytes>,
    workers: Option<Utf8Bytes>,
}

/// What every dashboard sees: the messages, once serialized, broadcast to every socket.
pub struct Hub {
    sender: broadcast::Sender<Utf8Bytes>,
    board: Mutex<Board>,
    alerts: AlertsConfig,
}

fn text(value: &serde_json::Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}

impl Hub {
    /// A hub whose "Completed" count starts from the builds `history` holds for the last day.
    pub fn new(alerts: AlertsConfig, history: impl IntoIterator<Item = HistoricalBuild>) -> Hub {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let since = now.saturating_sub(COMPLETED_WINDOW);
        let mut finished: Vec<u64> = history.into_iter().map(|b| b.finished_at).filter(|t| *t >= since).collect();
        finished.sort_unstable();
        let board = Board { finished: finished.into(), ..Board::default() };
        Hub { sender: broadcast::channel(BACKLOG).0, board: Mutex::new(board), alerts }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, message: Utf8Bytes) {
        // No receiver is not an error: nobody is watching.
        let _ = self.sender.send(message);
    }

    /// An event of a build the service runs.
    pub fn event(&self, record: &EventRecord) {
        {
            let mut board = self.board();
            let build = board.live.entry(record.build_id.clone()).or_insert_with(|| LiveBuild {
                build_id: record.build_id.clone(),
                state: "queued",
                stage: None,
                stages_done: 0,
                elapsed: 0.0,
            });
            build.elapsed = record.elapsed;
            match &record.event {
                BuildEvent::Started => build.state = "running",
                BuildEvent::StageStarted { stage } => {
                    build.state = "running";
                    build.stage = Some(stage.clone());
                }
                BuildEvent::StageFinished { .. } => build.stages_done += 1,
                _ => {}
            }
        }
        self.send(text(&json!({"type": "build_event", "record": record})));
    }

    /// A build that ended, here or anywhere on the farm.
    pub fn completed(&self, build: &HistoricalBuild) {
        {
            let mut board = self.board();
            board.live.remove(&build.build_id);
            board.finished.push_back(build.finished_at);
            let since = build.finished_at.saturating_sub(COMPLETED_WINDOW);
            while board.finished.front().is_some_and(|t| *t < since) {
                board.finished.pop_front();
            }
        }
        let mut message = serde_json::to_value(build).unwrap_or_default();
        message["type"] = "build_completed".into();
        message["build_type"] = build.build_type().into();
        self.send(text(&message));
    }

    /// Send the queue and worker figures when they changed since the last time.
    async fn refresh(&self, engine: &Engine) {
        let local = engine.queue_status();
        let (mut pending, mut building) = (local.queued as u64, local.running as u64);
        let mut workers = vec![json!({
            "name": "this service",
            "slots": local.max_concurrent,
            "running": local.running,
            "load": (local.running * 100).checked_div(local.max_concurrent).unwrap_or(0),
            "accepting": true,
        })];
        let mut desired = None;
        let queue_config = &engine.config().queue;
        if queue_config.redis.is_some() {
            let status = match engine.farm().await {
                Ok(farm) => farm.queue.farm_status(queue_config.min_workers, queue_config.max_workers).await.ok(),
                Err(_) => None,
            };
            // The farm unreachable: keep the last figures rather than show an empty farm.
            let Some(status) = status else { return };
            pending += status.queued_total();
            building += status.running;
            desired = Some(status.desired_workers);
            workers = status
                .workers
                .iter()
                .map(|w| {
                    json!({
                        "name": w.name,
                        "slots": w.concurrency,
                        "running": w.running.len(),
                        "load": w.load,
                        "accepting": w.accepting,
                        "capabilities": w.capabilities,
                    })
                })
                .collect();
        }
        let completed = self.board().finished.len();
        let queue =
            text(&json!({"type": "queue_status", "pending": pending, "building": building, "completed": completed}));
        let workers = text(&json!({"type": "worker_status", "workers": workers, "desired": desired}));
        let (queue_changed, workers_changed) = {
            let mut board = self.board();
            let changed = (board.queue.as_ref() != Some(&queue), board.workers.as_ref() != Some(&workers));
            board.queue = Some(queue.clone());
            board.workers = Some(workers.clone());
            changed
        };
        if queue_changed {
            self.send(queue);
        }
        if workers_changed {
            self.send(workers);
        }
    }

    /// What a client that just connected (or fell behind) needs to draw the present.
    fn snapshot(&self) -> Vec<Utf8Bytes> {
        let board = self.board();
        let hello = json!({
            "type": "hello",
            "alerts": {
                "averageDuration": self.alerts.average_duration,
                "failureRate": self.alerts.failure_rate,
                "queueLength": self.alerts.queue_length,
                "window": self.alerts.window,
            },
            "builds": board.live.values().collect::<Vec<_>>(),
        });
        [Some(text(&hello)), board.queue.clone(), board.workers.clone()].into_iter().flatten().collect()
    }

    /// Keep the queue and worker figures fresh (once a second) and, on a farm, relay the
    /// builds every worker finishes, until `stop`.
    pub fn run(self: Arc<Self>, engine: Engine, stop: CancellationToken) {
        let hub = self.clone();
        let (ticker_engine, ticker_stop) = (engine.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => hub.refresh(&ticker_engine).await,
                    _ = ticker_stop.cancelled() => return,
                }
            }
        });
        if engine.config().queue.redis.is_some() {
            tokio::spawn(async move {
                tokio::select! {
                    _ = self.relay_farm(&engine) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    }

    /// Relay the farm's `finished` stream; through an outage, reconnect once a second.
    async fn relay_farm(&self, engine: &Engine) {
        let block = Duration::from_secs(5);
        let mut after = "$".to_string();
        loop {
            let connected = match engine.farm().await {
                Ok(farm) => farm.queue.blocking_connection(block).await.ok().map(|c| (farm, c)),
                Err(_) => None,
            };
            if let Some((farm, mut connection)) = connected {
                while let Ok((last, builds)) = farm.queue.next_finished(&mut connection, &after, block).await {
                    after = last;
                    for build in &builds {
                        self.completed(build);
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One dashboard's socket: the snapshot, then every message, until either side goes.
    pub async fn serve_socket(self: Arc<Self>, mut socket: WebSocket, stop: CancellationToken) {
        let mut receiver = self.sender.subscribe();
        let mut pending = self.snapshot();
        loop {
            // What is pending goes as one frame (a JSON array when there is more than one
            // message): at thousands of events a second, a frame and a flush per message
            // would cost every client a wake-up per message and the service a write each.
            let frame = match pending.len() {
                0 => None,
                1 => pending.pop(),
                _ => {
                    let mut batch = String::with_capacity(pending.iter().map(|m| m.len() + 1).sum::<usize>() + 2);
                    batch.push('[');
                    for (i, message) in pending.drain(..).enumerate() {
                        batch.push_str(if i == 0 { "" } else { "," });
                        batch.push_str(message.as_str());
                    }
                    batch.push(']');
                    Some(Utf8Bytes::from(batch))
                }
            };
            if let Some(frame) = frame
                && socket.send(Message::Text(frame)).await.is_err()
            {
                return;
            }
            tokio::select! {
                message = receiver.recv() => match message {
                    Ok(message) => {
                        pending.push(message);
                        while pending.len() < 512 {
                            match receiver.try_recv() {
                                Ok(message) => pending.push(message),
                                Err(broadcast::error::TryRecvError::Lagged(_)) => pending = self.snapshot(),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => pending = self.snapshot(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                _ = stop.cancelled() => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            }
        }
    }
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Scripts and connections to this origin only; no frames of the page elsewhere.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page. It holds no data and no secret; everything it shows comes through the
/// token-checked API and socket.
pub async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn chart_js() -> Response {
    asset("text/javascript; charset=utf-8", CHART_JS)
}
