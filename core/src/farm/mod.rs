//! The build farm's queue on Redis (`queue.redis`): jobs that travel, leases, fencing.
//!
//! ```text
//! <prefix>q:<class>:<appType>:<target>  streams of job ids (and dependency lock), one per
//!                                       priority class and capability, group "workers"
//! <prefix>job:<id>                      hash: payload, state, attempt (the fencing token),
//!                                       worker, stream, entry, cancel, placement, result
//! <prefix>ev:<id>                       stream of the build's events, in order, then `end`
//! <prefix>dead                          stream of dead-lettered jobs (id, error)
//! <prefix>worker:<name>                 a worker's registration (JSON), expiring unless renewed
//! <prefix>queues | workers              sets: the job streams, the registered worker names
//! <prefix>offers:<name>                 jobs another worker placed on this one
//! <prefix>reserved:<name>               offers on their way to it (short-lived)
//! ```
//!
//! A worker reads a job with `XREADGROUP` (offers, then high, normal, low), places it by the
//! document's scoring (it keeps it, or hands the entry to a better free worker), then bumps the
//! job's `attempt` (its token) in a script; it renews its lease by re-claiming the entry (idle
//! time back to 0) while the build runs. An entry idle past the lease is taken by another
//! worker, whose new token fences the old holder out: events, the result and the
//! acknowledgement are written only by scripts that check the token first.

mod client;
mod dispatch;
mod placement;
mod source;
mod status;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use serde::{Deserialize, Serialize};

pub use self::client::FarmClient;
pub use self::dispatch::{Delivered, Delivery};
pub use self::placement::{WorkerInfo, choose, performance_score};
pub use self::source::{SourceManifest, materialize_source, upload_source};
pub use self::status::{Depth, FarmStatus, desired_workers};
use crate::config::{EngineConfig, redact_url};
use crate::error::FarmError;
use crate::events::{BuildEvent, EventRecord, LogStream, StageOutcome};
use crate::history::HistoricalBuild;
use crate::result::BuildResult;

/// The consumer group every worker reads in.
pub const GROUP: &str = "workers";
/// Priority classes, read in this order.
pub const CLASSES: [&str; 3] = ["high", "normal", "low"];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// An event as the farm stores it: externally tagged. (rolldown turns on serde_json's
/// `arbitrary_precision`, with which a number inside an internally tagged or flattened enum,
/// as `EventRecord` is for the bindings, does not deserialize.)
#[derive(Serialize, Deserialize)]
struct WireRecord {
    seq: u64,
    elapsed: f64,
    #[serde(with = "WireEvent")]
    event: BuildEvent,
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "BuildEvent")]
enum WireEvent {
    Queued { position: usize },
    Started,
    StageStarted { stage: String },
    StageFinished { stage: String, outcome: StageOutcome, seconds: f64 },
    Log { stream: LogStream, line: String },
    ProcessStarted { command: String },
    CacheHit { tier: String, key: String },
    CacheMiss { key: String },
    Warning { code: String, message: String },
    Retrying { stage: String, attempt: u32, delay_seconds: f64, error: crate::report::ErrorReport },
    Finished { status: crate::result::BuildStatus, duration: f64 },
}

/// The build id of submissions with idempotency key `key`: the same key, the same build.
pub fn id_for_key(key: &str) -> String {
    let digest = blake3::hash(format!("workz-build idempotency\0{key}").as_bytes());
    format!("k{}", &digest.to_hex()[..32])
}

/// The class of a request priority: above 0 high, 0 normal, below 0 low.
pub fn class_of(priority: i32) -> &'static str {
    match priority {
        p if p > 0 => "high",
        0 => "normal",
        _ => "low",
    }
}

/// What a worker needs to run a build someone submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The build id the submitter was given.
    pub id: String,
    /// BLAKE3 of the source manifest (path → digest) in the content store.
    pub source: crate::digest::Digest,
    /// `appType:target`: only a worker that can build it takes the job.
    pub capability: String,
    #[serde(default)]
    pub app_config: Option<serde_json::Value>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default = "yes")]
    pub list_files: bool,
    /// BLAKE3 (hex) of the app's dependency lock (`package-lock.json`, `pubspec.lock`, …):
    /// a worker that installed it before scores higher for the job.
    #[serde(default)]
    pub dependencies: Option<String>,
    /// Unix seconds.
    pub submitted_at: u64,
}

/// The stream of finished builds' briefs, and about how many it keeps.
const FINISHED: &str = "finished";
const FINISHED_KEPT: u64 = 10_000;

fn brief_of(entry: &redis::streams::StreamId) -> Option<HistoricalBuild> {
    serde_json::from_str(&entry.get::<String>("b")?).ok()
}

fn yes() -> bool {
    true
}

/// A job a worker took, with what it needs to act on it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: Job,
    pub stream: String,
    pub entry: String,
    /// The fencing token: the job's attempt number when this worker took it.
    pub token: u64,
    /// How many times the entry was delivered (1 for the first).
    pub deliveries: u64,
    /// Where the farm placed it and why.
    pub placement: Option<crate::result::Placement>,
}

/// What taking an entry found.
pub enum Taken {
    Run(Box<Claimed>),
    /// The entry's job is finished, cancelled or unknown: acknowledged and dropped.
    Dropped,
    /// The job's payload cannot be read: dead-lettered with this error.
    Invalid(FarmError),
}

/// A job's state as the farm keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, `timed_out`, `dead`.
    pub state: String,
    pub worker: Option<String>,
    pub attempt: u64,
    pub result: Option<BuildResult>,
}

/// The farm's queue: a connection to its Redis and its key names.
#[derive(Clone)]
pub struct FarmQueue {
    client: redis::Client,
    connection: ConnectionManager,
    prefix: String,
    pub lease: Duration,
    pub result_ttl: Duration,
}

fn unavailable(op: &'static str) -> impl Fn(redis::RedisError) -> FarmError {
    move |e| FarmError::Unavailable { op, message: e.to_string() }
}

impl FarmQueue {
    /// Connect to the farm of `config` (`None` when it names none).
    pub async fn connect(config: &EngineConfig) -> Result<Option<FarmQueue>, FarmError> {
        let Some(redis) = &config.queue.redis else { return Ok(None) };
        let url = redact_url(&redis.url);
        let client = redis::Client::open(redis.url.as_str())
            .map_err(|e| FarmError::Unavailable { op: "open", message: format!("{url}: {e}") })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(3);
        let connection = ConnectionManager::new_with_config(client.clone(), manager)
            .await
            .map_err(|e| FarmError::Unavailable { op: "connect", message: format!("{url}: {e}") })?;
        let queue = FarmQueue {
            client,
            connection,
            prefix: redis.key_prefix.clone(),
            lease: Duration::from_secs(config.queue.lease_seconds),
            result_ttl: Duration::from_secs(config.queue.result_ttl),
        };
        Ok(Some(queue))
    }

    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The stream of jobs of a priority class that need a capability (`appType:target`).
    fn stream(&self, class: &str, capability: &str) -> String {
        self.key(&format!("q:{class}:{capability}"))
    }

    /// The streams worker `name` with `capabilities` reads, in order: the jobs offered to it,
    /// then the queue by class (high first).
    pub fn streams_for(&self, name: &str, capabilities: &[String]) -> Vec<Vec<String>> {
        let offers = vec![self.key(&format!("offers:{name}"))];
        let queue = CLASSES.iter().map(|class| capabilities.iter().map(|c| self.stream(class, c)).collect());
        std::iter::once(offers).chain(queue).collect()
    }

    /// The consumer group on each of `streams`.
    pub async fn ensure_groups(&self, streams: &[Vec<String>]) -> Result<(), FarmError> {
        for stream in streams.concat() {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut self.connection.clone())
                .await;
            match created {
                Ok(()) => {}
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(unavailable("create the consumer group")(e)),
            }
        }
        Ok(())
    }

    /// A connection of its own for blocking reads (a blocking command holds a multiplexed
    /// connection), with a response timeout longer than the block.
    pub async fn blocking_connection(&self, block: Duration) -> Result<MultiplexedConnection, FarmError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(block + RESPONSE_TIMEOUT));
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(unavailable("connect for blocking reads"))
    }

    /// Put a job on the queue, unless a job with its id exists (a submission with the same
    /// idempotency key): returns whether it was queued.
    pub async fn enqueue(&self, job: &Job) -> Result<bool, FarmError> {
        let payload = serde_json::to_string(job)
            .map_err(|e| FarmError::JobInvalid { id: job.id.clone(), message: e.to_string() })?;
        let script = redis::Script::new(
            r"
            if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
            redis.pcall('XGROUP', 'CREATE', KEYS[2], ARGV[2], '0', 'MKSTREAM')
            redis.call('SADD', KEYS[3], KEYS[2])
            redis.call('HSET', KEYS[1], 'payload', ARGV[1], 'state', 'queued', 'attempt', 0, 'stream', KEYS[2])
            local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[3], 'deps', ARGV[4])
            redis.call('HSET', KEYS[1], 'entry', entry)
            return 1
            ",
        );
        let queued: i64 = script
            .key(self.key(&format!("job:{}", job.id)))
            .key(self.stream(class_of(job.priority), &job.capability))
            .key(self.key("queues"))
            .arg(payload)
            .arg(GROUP)
            .arg(&job.id)
            .arg(job.dependencies.as_deref().unwrap_or(""))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("enqueue"))?;
        Ok(queued == 1)
    }

    pub(super) async fn ack(&self, stream: &str, entry: &str) -> Result<(), FarmError> {
        redis::pipe()
            .cmd("XACK")
            .arg(stream)
            .arg(GROUP)
            .arg(entry)
            .ignore()
            .cmd("XDEL")
            .arg(stream)
            .arg(entry)
            .ignore()
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(unavailable("acknowledge a job"))
    }

    /// Whether the token still holds the job (checked before each step that publishes).
    pub async fn holds(&self, id: &str, token: u64) -> Result<bool, FarmError> {
        let attempt: Option<u64> = redis::cmd("HGET")
            .arg(self.key(&format!("job:{id}")))
            .arg("attempt")
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("check a lease"))?;
        Ok(attempt == Some(token))
    }

    /// Add an event to the build's stream, if the token still holds the job.
    pub async fn emit(&self, id: &str, token: u64, record: &EventRecord) -> Result<bool, FarmError> {
        let wire = WireRecord { seq: record.seq, elapsed: record.elapsed, event: record.event.clone() };
        let json = serde_json::to_string(&wire).unwrap_or_default();
        let script = redis::Script::new(
            r"
            if tonumber(redis.call('HGET', KEYS[1], 'attempt')) ~= tonumber(ARGV[1]) then return 0 end
            redis.call('XADD', KEYS[2], '*', 'e', ARGV[2])
            redis.call('EXPIRE', KEYS[2], ARGV[3])
            return 1
            ",
        );
        let added: i64 = script
            .key(self.key(&format!("job:{id}")))
            .key(self.key(&format!("ev:{id}")))
            .arg(token)
            .arg(json)
            .arg(self.result_ttl.as_secs())
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("send an event"))?;
        Ok(added == 1)
    }

    /// Store the result, end the event stream, add the build's brief to the `finished` stream
    /// (the dashboards' feed) and acknowledge the entry, if the token still holds the job: all
    /// at once or nothing. Returns whether it held.
    pub async fn complete(&self, claimed: &Claimed, result: &BuildResult) -> Result<bool, FarmError> {
        let json = serde_json::to_string(result).unwrap_or_default();
        let brief = serde_json::to_string(&HistoricalBuild::of_result(result)).unwrap_or_default();
        let script = redis::Script::new(
            r"
            if tonumber(redis.call('HGET', KEYS[1], 'attempt')) ~= tonumber(ARGV[1]) then return 0 end
            redis.call('HSET', KEYS[1], 'state', ARGV[2], 'result', ARGV[3])
            redis.call('XADD', KEYS[3], '*', 'end', ARGV[2])
            redis.call('XACK', KEYS[2], ARGV[4], ARGV[5])
            redis.call('XDEL', KEYS[2], ARGV[5])
            redis.call('EXPIRE', KEYS[1], ARGV[6])
            redis.call('EXPIRE', KEYS[3], ARGV[6])
            redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*', 'b', ARGV[7])
            return 1
            ",
        );
        let done: i64 = script
            .key(self.key(&format!("job:{}", claimed.job.id)))
            .key(&claimed.stream)
            .key(self.key(&format!("ev:{}", claimed.job.id)))
            .key(self.key(FINISHED))
            .arg(claimed.token)
            .arg(result.status.as_str())
            .arg(json)
            .arg(GROUP)
            .arg(&claimed.entry)
            .arg(self.result_ttl.as_secs())
            .arg(brief)
            .arg(FINISHED_KEPT)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("store a result"))?;
        Ok(done == 1)
    }

    /// Give up on a job: state `dead`, its error as the result, a record on the dead-letter
    /// stream, the entry acknowledged (whoever holds it).
    pub async fn dead_letter(
        &self,
        id: &str,
        stream: &str,
        entry: &str,
        result: &BuildResult,
    ) -> Result<(), FarmError> {
        let json = serde_json::to_string(result).unwrap_or_default();
        let error = result.error.as_ref().map(|e| format!("{}: {}", e.code, e.message)).unwrap_or_default();
        let script = redis::Script::new(
            r"
            redis.call('HSET', KEYS[1], 'state', 'dead', 'result', ARGV[1])
            redis.call('XADD', KEYS[3], '*', 'id', ARGV[4], 'error', ARGV[5])
            redis.call('XADD', KEYS[4], '*', 'end', 'dead')
            redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
            redis.call('XDEL', KEYS[2], ARGV[3])
            redis.call('EXPIRE', KEYS[1], ARGV[6])
            redis.call('EXPIRE', KEYS[4], ARGV[6])
            return 1
            ",
        );
        script
            .key(self.key(&format!("job:{id}")))
            .key(stream)
            .key(self.key("dead"))
            .key(self.key(&format!("ev:{id}")))
            .arg(json)
            .arg(GROUP)
            .arg(entry)
            .arg(id)
            .arg(error)
            .arg(self.result_ttl.as_secs())
            .invoke_async::<i64>(&mut self.connection.clone())
            .await
            .map_err(unavailable("dead-letter a job"))?;
        Ok(())
    }

    /// The builds that finished since `since` (Unix seconds), oldest first, from the
    /// `finished` stream (the latest [`FINISHED_KEPT`] builds of the farm).
    pub async fn finished_since(&self, since: u64) -> Result<Vec<HistoricalBuild>, FarmError> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.key(FINISHED))
            .arg(since.saturating_mul(1000))
            .arg("+")
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("read finished builds"))?;
        Ok(reply.ids.iter().filter_map(brief_of).collect())
    }

    /// Builds that finished after the `finished` stream's entry `after` (`$` for from now),
    /// waiting up to `block` for the first; `(last entry id, builds)`.
    pub async fn next_finished(
        &self,
        blocking: &mut MultiplexedConnection,
        after: &str,
        block: Duration,
    ) -> Result<(String, Vec<HistoricalBuild>), FarmError> {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(500)
            .arg("BLOCK")
            .arg(block.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(self.key(FINISHED))
            .arg(after)
            .query_async(blocking)
            .await
            .map_err(unavailable("read finished builds"))?;
        let mut last = after.to_string();
        let mut builds = Vec::new();
        for entry in reply.map(|r| r.keys).unwrap_or_default().into_iter().flat_map(|s| s.ids) {
            last = entry.id.clone();
            builds.extend(brief_of(&entry));
        }
        Ok((last, builds))
    }

    /// Events of a build after `after` (`0` for all), waiting up to `block` for the first;
    /// `(last id, events, ended)`.
    pub async fn events(
        &self,
        blocking: &mut MultiplexedConnection,
        id: &str,
        after: &str,
        block: Duration,
    ) -> Result<(String, Vec<EventRecord>, bool), FarmError> {
        // A zero block reads what is there (Redis's `BLOCK 0` would wait for ever).
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(100);
        if !block.is_zero() {
            cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        let reply: Option<redis::streams::StreamReadReply> = cmd
            .arg("STREAMS")
            .arg(self.key(&format!("ev:{id}")))
            .arg(after)
            .query_async(blocking)
            .await
            .map_err(unavailable("read events"))?;
        let mut last = after.to_string();
        let mut events = Vec::new();
        let mut ended = false;
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in stream.ids {
                last = entry.id.clone();
                if entry.map.contains_key("end") {
                    ended = true;
                } else if let Some(wire) =
                    entry.get::<String>("e").and_then(|json| serde_json::from_str::<WireRecord>(&json).ok())
                {
                    events.push(EventRecord {
                        build_id: id.to_string(),
                        seq: wire.seq,
                        elapsed: wire.elapsed,
                        event: wire.event,
                    });
                }
            }
        }
        Ok((last, events, ended))
    }
}
