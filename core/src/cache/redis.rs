//! The Redis tier (the document's L2): action-cache entries and small blobs, shared by every
//! machine that points at the same server.
//!
//! ```text
//! <prefix>ac:<key>      {"entry": …, "components": …} (JSON), with the tier's TTL
//! <prefix>cas:<digest>  the blob's bytes (blobs over `maxBlobBytes` are left to lower tiers)
//! ```
//!
//! Every read is verified (an entry must be for the key asked, a blob must hash to its name);
//! what fails is deleted, counted as corrupt and is a miss. A server that is down or slow fails
//! the call within bounded timeouts (the tiered cache warns and goes on); after a failed
//! connection attempt the tier is skipped for a short while instead of paying a timeout per
//! call, then tries again: a restarted server is used again without restarting the engine.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use super::{
    BlobRestore, CacheBackend, CacheEntry, CacheError, CacheKey, Counters, Hit, KeyComponents, PruneReport,
    RestoreReport, TierStats, TierUsage, write_new_file,
};
use crate::config::redact_url;
use crate::digest::Digest;

const TIER: &str = "redis";
/// How long connecting may take, and a reply.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection attempt, calls fail at once for this long.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Keys asked for per SCAN step, and blobs per MGET.
const SCAN_COUNT: usize = 500;
const MGET_BATCH: usize = 64;

/// The Redis tier's settings (`cache.redis`).
#[derive(Debug, Clone)]
pub struct RedisTierSettings {
    pub url: String,
    pub key_prefix: String,
    pub ttl: Duration,
    pub max_blob_bytes: u64,
}

impl RedisTierSettings {
    /// The settings of `cache.redis`; keys never outlive `cache_ttl`.
    pub fn of(config: &crate::config::RedisTierConfig, cache_ttl: Duration) -> RedisTierSettings {
        RedisTierSettings {
            url: config.url.clone(),
            key_prefix: config.key_prefix.clone(),
            ttl: cache_ttl.min(Duration::from_secs(config.ttl)),
            max_blob_bytes: config.max_blob_bytes,
        }
    }
}

/// The Redis tier.
pub struct RedisCache {
    client: redis::Client,
    settings: RedisTierSettings,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    retry_at: Mutex<Option<Instant>>,
    counters: Counters,
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    entry: CacheEntry,
    components: Option<KeyComponents>,
}

impl RedisCache {
    /// A tier for the server at `settings.url` (checked by the config already). The server is first
    /// contacted when a build needs it (a cache that is down must not stop the engine).
    pub fn new(settings: RedisTierSettings) -> Result<RedisCache, CacheError> {
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| CacheError::Backend {
            tier: TIER.into(),
            op: "open",
            message: format!("{} is not a Redis URL: {e}", redact_url(&settings.url)),
        })?;
        Ok(RedisCache {
            client,
            settings,
            connection: tokio::sync::Mutex::new(None),
            retry_at: Mutex::new(None),
            counters: Counters::default(),
        })
    }

    fn failed(&self, op: &'static str, e: impl std::fmt::Display) -> CacheError {
        self.counters.error();
        CacheError::Backend { tier: TIER.into(), op, message: e.to_string() }
    }

    /// The shared connection (it reconnects by itself once made).
    async fn connection(&self, op: &'static str) -> Result<ConnectionManager, CacheError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let retry_at = *self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        if retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(self.failed(op, "the server did not answer a moment ago; skipped"));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        match ConnectionManager::new_with_config(self.client.clone(), config).await {
            Ok(connection) => {
                *slot = Some(connection.clone());
                Ok(connection)
            }
            Err(e) => {
                *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + RETRY_AFTER);
                Err(self.failed(op, format!("cannot connect to {}: {e}", redact_url(&self.settings.url))))
            }
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, op: &'static str, cmd: &redis::Cmd) -> Result<T, CacheError> {
        let mut connection = self.connection(op).await?;
        let reply = cmd.query_async(&mut connection).await;
        reply.map_err(|e| self.lost(op, e))
    }

    /// A failed call. When the connection itself failed, the next call after a pause starts
    /// a fresh one (the manager's own reconnection would keep failing calls until it succeeds).
    fn lost(&self, op: &'static str, e: redis::RedisError) -> CacheError {
        if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
            // Not waited for: another call holding the slot replaces a dead connection itself.
            if let Ok(mut slot) = self.connection.try_lock() {
                *slot = None;
            }
            *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + RETRY_AFTER);
        }
        self.failed(op, e)
    }

    /// Whether the server answers (for `doctor`).
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.query::<String>("ping the server", &redis::cmd("PING")).await.map(|_| ())
    }

    fn entry_key(&self, key: &CacheKey) -> String {
        format!("{}ac:{key}", self.settings.key_prefix)
    }

    fn blob_key(&self, digest: &Digest) -> String {
        format!("{}cas:{digest}", self.settings.key_prefix)
    }

    fn ttl_secs(&self) -> u64 {
        self.settings.ttl.as_secs().max(1)
    }

    /// The stored entry at `redis_key` if it is whole and for `key`; a bad one is deleted.
    async fn read_entry(&self, redis_key: &str, key: Option<&CacheKey>) -> Result<Option<StoredEntry>, CacheError> {
        let raw: Option<Vec<u8>> = self.query("look up an entry", redis::cmd("GET").arg(redis_key)).await?;
        let Some(raw) = raw else { return Ok(None) };
        match serde_json::from_slice::<StoredEntry>(&raw) {
            Ok(stored) if key.is_none_or(|k| stored.entry.key == *k) => Ok(Some(stored)),
            _ => {
                self.counters.corrupt();
                let _: Result<(), _> = self.query("delete a corrupt entry", redis::cmd("DEL").arg(redis_key)).await;
                Ok(None)
            }
        }
    }

    /// Every key under `<prefix><kind>`, by SCAN (never KEYS: it blocks the server).
    async fn scan(&self, kind: &str) -> Result<Vec<String>, CacheError> {
        let pattern = format!("{}{kind}*", glob_escape(&self.settings.key_prefix));
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .query(
                    "scan keys",
                    redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(SCAN_COUNT),
                )
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn delete(&self, keys: &[String]) -> Result<u64, CacheError> {
        let mut removed = 0;
        for batch in keys.chunks(MGET_BATCH) {
            removed += self.query::<u64>("delete keys", redis::cmd("DEL").arg(batch)).await?;
        }
        Ok(removed)
    }
}

#[async_trait]
impl CacheBackend for RedisCache {
    fn name(&self) -> &str {
        TIER
    }

    async fn get_entry(&self, key: &CacheKey) -> Result<Option<Hit>, CacheError> {
        match self.read_entry(&self.entry_key(key), Some(key)).await? {
            Some(stored) => {
                self.counters.hit();
                Ok(Some(Hit { entry: stored.entry, tier: TIER.to_string() }))
            }
            None => {
                self.counters.miss();
                Ok(None)
            }
        }
    }

    async fn put_entry(&self, entry: &CacheEntry, components: Option<&KeyComponents>) -> Result<(), CacheError> {
        let json = serde_json::to_vec(&StoredEntry { entry: entry.clone(), components: components.cloned() })
            .map_err(|e| self.failed("encode an entry", e))?;
        let len = json.len() as u64;
        let cmd = redis::cmd("SET").arg(self.entry_key(&entry.key)).arg(json).arg("EX").arg(self.ttl_secs()).to_owned();
        self.query::<()>("store an entry", &cmd).await?;
        self.counters.written(len);
        Ok(())
    }

    async fn get_components(&self, key: &CacheKey) -> Result<Option<KeyComponents>, CacheError> {
        Ok(self.read_entry(&self.entry_key(key), Some(key)).await?.and_then(|s| s.components))
    }

    async fn remove_entry(&self, key: &CacheKey) -> Result<bool, CacheError> {
        Ok(self.query::<u64>("remove an entry", redis::cmd("DEL").arg(self.entry_key(key))).await? > 0)
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Option<Bytes>, CacheError> {
        let key = self.blob_key(digest);
        let raw: Option<Vec<u8>> = self.query("read a blob", redis::cmd("GET").arg(&key)).await?;
        Ok(self.verified(digest, &key, raw).await)
    }

    async fn put_blob(&self, digest: &Digest, data: Bytes) -> Result<(), CacheError> {
        if data.len() as u64 > self.settings.max_blob_bytes {
            return Ok(());
        }
        let len = data.len() as u64;
        let cmd =
            redis::cmd("SET").arg(self.blob_key(digest)).arg(data.as_ref()).arg("EX").arg(self.ttl_secs()).to_owned();
        self.query::<()>("store a blob", &cmd).await?;
        self.counters.written(len);
        Ok(())
    }

    /// Blobs in batches (one round trip per batch): only small blobs are here, many per build.
    async fn restore_blobs(&self, wanted: &[BlobRestore]) -> Result<RestoreReport, CacheError> {
        let mut report = RestoreReport::default();
        for batch in wanted.chunks(MGET_BATCH) {
            let keys: Vec<String> = batch.iter().map(|w| self.blob_key(&w.digest)).collect();
            let values: Vec<Option<Vec<u8>>> = self.query("read blobs", redis::cmd("MGET").arg(&keys)).await?;
            for ((want, key), raw) in batch.iter().zip(&keys).zip(values) {
                match self.verified(&want.digest, key, raw).await {
                    Some(bytes) => {
                        write_new_file(&want.dest, &bytes).map_err(|e| CacheError::io(TIER, "write", &want.dest, e))?;
                        report.bytes += bytes.len() as u64;
                    }
                    None => report.unavailable.push(want.digest),
                }
            }
        }
        Ok(report)
    }

    async fn invalidate(&self, pattern: &globset::GlobMatcher) -> Result<Vec<CacheKey>, CacheError> {
        let mut removed = Vec::new();
        for redis_key in self.scan("ac:").await? {
            if let Some(stored) = self.read_entry(&redis_key, None).await?
                && stored.entry.matches(pattern)
                && self.query::<u64>("remove an entry", redis::cmd("DEL").arg(&redis_key)).await? > 0
            {
                removed.push(stored.entry.key);
            }
        }
        Ok(removed)
    }

    /// Redis expires keys itself (every key has the tier's TTL) and evicts under its own
    /// `maxmemory-policy`: nothing to do here.
    async fn prune(&self) -> Result<PruneReport, CacheError> {
        Ok(PruneReport::default())
    }

    async fn clear(&self) -> Result<(), CacheError> {
        let mut keys = self.scan("ac:").await?;
        keys.extend(self.scan("cas:").await?);
        self.delete(&keys).await?;
        Ok(())
    }

    async fn usage(&self) -> Result<Vec<TierUsage>, CacheError> {
        let entries = self.scan("ac:").await?.len() as u64;
        let blobs = self.scan("cas:").await?;
        let mut bytes = 0;
        for batch in blobs.chunks(MGET_BATCH) {
            let mut pipe = redis::pipe();
            for key in batch {
                pipe.cmd("STRLEN").arg(key);
            }
            let mut connection = self.connection("measure blobs").await?;
            let sizes: Vec<u64> = pipe.query_async(&mut connection).await.map_err(|e| self.lost("measure blobs", e))?;
            bytes += sizes.iter().sum::<u64>();
        }
        Ok(vec![TierUsage { tier: TIER.to_string(), entries, blobs: blobs.len() as u64, bytes }])
    }

    fn stats(&self) -> Vec<TierStats> {
        vec![self.counters.snapshot(TIER)]
    }
}

impl RedisCache {
    /// `raw` if it hashes to `digest`; a corrupt or truncated value is deleted and counted.
    async fn verified(&self, digest: &Digest, key: &str, raw: Option<Vec<u8>>) -> Option<Bytes> {
        let raw = raw?;
        if Digest::of(&raw) == *digest {
            self.counters.read(raw.len() as u64);
            return Some(Bytes::from(raw));
        }
        self.counters.corrupt();
        let _: Result<(), _> = self.query("delete a corrupt blob", redis::cmd("DEL").arg(key)).await;
        None
    }
}

/// `text` with Redis glob characters escaped, for a MATCH pattern.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
