//! Reading and steering the farm: a build's state, cancelling, queue depth, workers.

use std::collections::BTreeMap;

use super::{CLASSES, FarmQueue, GROUP, JobStatus, unavailable};
use crate::error::FarmError;
use crate::result::BuildResult;

/// The queue's figures (`farm status`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Depth {
    /// Jobs waiting, per priority class (high, normal, low).
    pub queued: Vec<(String, u64)>,
    /// Jobs waiting, per capability they need (`appType:target`).
    pub by_capability: BTreeMap<String, u64>,
    /// Jobs a worker holds.
    pub running: u64,
    pub dead: u64,
}

impl FarmQueue {
    pub(super) async fn finish_cancelled(&self, id: &str, stream: &str, entry: &str) -> Result<(), FarmError> {
        let mut result = BuildResult::rejected(id.to_string(), &crate::error::Error::Cancelled);
        result.status = crate::result::BuildStatus::Cancelled;
        let json = serde_json::to_string(&result).unwrap_or_default();
        let script = redis::Script::new(
            r"
            redis.call('HSET', KEYS[1], 'state', 'cancelled', 'result', ARGV[1])
            redis.call('XADD', KEYS[3], '*', 'end', 'cancelled')
            if ARGV[3] ~= '' then
              redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
              redis.call('XDEL', KEYS[2], ARGV[3])
            end
            redis.call('EXPIRE', KEYS[1], ARGV[4])
            redis.call('EXPIRE', KEYS[3], ARGV[4])
            return 1
            ",
        );
        script
            .key(self.key(&format!("job:{id}")))
            .key(stream)
            .key(self.key(&format!("ev:{id}")))
            .arg(json)
            .arg(GROUP)
            .arg(entry)
            .arg(self.result_ttl.as_secs())
            .invoke_async::<i64>(&mut self.connection.clone())
            .await
            .map_err(unavailable("cancel a job"))?;
        Ok(())
    }

    /// Cancel a build wherever it is: a queued one ends now; a running one is flagged and its
    /// worker cancels it at its next lease renewal. Returns the state it was in.
    pub async fn cancel(&self, id: &str) -> Result<String, FarmError> {
        let status = self.status(id).await?;
        match status.state.as_str() {
            "queued" => {
                let key = self.key(&format!("job:{id}"));
                let (stream, entry): (Option<String>, Option<String>) = redis::cmd("HMGET")
                    .arg(&key)
                    .arg("stream")
                    .arg("entry")
                    .query_async(&mut self.connection.clone())
                    .await
                    .map_err(unavailable("cancel a job"))?;
                let _: () = redis::cmd("HSET")
                    .arg(&key)
                    .arg("cancel")
                    .arg("1")
                    .query_async(&mut self.connection.clone())
                    .await
                    .map_err(unavailable("cancel a job"))?;
                // Not yet delivered: removed from its stream (a worker that reads it meanwhile
                // sees the flag and drops it).
                if let (Some(stream), Some(entry)) = (stream, entry) {
                    let _: () = redis::cmd("XDEL")
                        .arg(&stream)
                        .arg(&entry)
                        .query_async(&mut self.connection.clone())
                        .await
                        .map_err(unavailable("cancel a job"))?;
                    self.finish_cancelled(id, &stream, "").await?;
                }
            }
            "running" => {
                let _: () = redis::cmd("HSET")
                    .arg(self.key(&format!("job:{id}")))
                    .arg("cancel")
                    .arg("1")
                    .query_async(&mut self.connection.clone())
                    .await
                    .map_err(unavailable("cancel a job"))?;
            }
            _ => {}
        }
        Ok(status.state)
    }

    /// A job's state and, once it ended, its result.
    pub async fn status(&self, id: &str) -> Result<JobStatus, FarmError> {
        let (state, worker, attempt, result): (Option<String>, Option<String>, Option<u64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(self.key(&format!("job:{id}")))
                .arg("state")
                .arg("worker")
                .arg("attempt")
                .arg("result")
                .query_async(&mut self.connection.clone())
                .await
                .map_err(unavailable("read a job"))?;
        let state = state.ok_or_else(|| FarmError::NotFound(id.to_string()))?;
        Ok(JobStatus {
            id: id.to_string(),
            state,
            worker,
            attempt: attempt.unwrap_or(0),
            result: result.and_then(|r| serde_json::from_str(&r).ok()),
        })
    }

    /// What waits and runs: queued entries per class and per capability, entries delivered
    /// and not acknowledged, and dead-lettered jobs.
    pub async fn depth(&self) -> Result<Depth, FarmError> {
        let mut depth = Depth { queued: CLASSES.iter().map(|c| (c.to_string(), 0)).collect(), ..Depth::default() };
        let queue_prefix = self.key("q:");
        for stream in self.scan(&format!("{queue_prefix}*")).await? {
            let Some((class, capability)) = stream.strip_prefix(&queue_prefix).and_then(|rest| rest.split_once(':'))
            else {
                continue;
            };
            let length: u64 = redis::cmd("XLEN")
                .arg(&stream)
                .query_async(&mut self.connection.clone())
                .await
                .map_err(unavailable("read the queue"))?;
            let pending: redis::RedisResult<redis::Value> =
                redis::cmd("XPENDING").arg(&stream).arg(GROUP).query_async(&mut self.connection.clone()).await;
            let pending = match pending {
                Ok(redis::Value::Array(fields)) => {
                    fields.first().and_then(|v| redis::from_redis_value::<u64>(v.clone()).ok()).unwrap_or(0)
                }
                _ => 0,
            };
            let waiting = length.saturating_sub(pending);
            depth.running += pending;
            if let Some(slot) = depth.queued.iter_mut().find(|(c, _)| c == class) {
                slot.1 += waiting;
            }
            *depth.by_capability.entry(capability.to_string()).or_default() += waiting;
        }
        depth.dead = redis::cmd("XLEN")
            .arg(self.key("dead"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("read the queue"))?;
        Ok(depth)
    }

    /// Keys matching `pattern` (SCAN, never KEYS).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, FarmError> {
        let mut connection = self.connection.clone();
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(100)
                .query_async(&mut connection)
                .await
                .map_err(unavailable("list keys"))?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                return Ok(keys);
            }
        }
    }

    /// Ask worker `name` to drain: it takes no new job, finishes those it holds and stops.
    pub async fn drain(&self, name: &str) -> Result<(), FarmError> {
        let _: () = redis::cmd("SET")
            .arg(self.key(&format!("drain:{name}")))
            .arg("1")
            .arg("EX")
            .arg(self.result_ttl.as_secs().max(1))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("drain a worker"))?;
        Ok(())
    }

    /// Whether worker `name` was asked to drain (the request is consumed).
    pub async fn drain_requested(&self, name: &str) -> Result<bool, FarmError> {
        let removed: u64 = redis::cmd("DEL")
            .arg(self.key(&format!("drain:{name}")))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("check for a drain"))?;
        Ok(removed > 0)
    }

    /// Register (or refresh) a worker: its description expires unless renewed within the lease.
    pub async fn register(&self, name: &str, info: &serde_json::Value) -> Result<(), FarmError> {
        let _: () = redis::cmd("SET")
            .arg(self.key(&format!("worker:{name}")))
            .arg(info.to_string())
            .arg("EX")
            .arg(self.lease.as_secs().max(1))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("register a worker"))?;
        Ok(())
    }

    pub async fn deregister(&self, name: &str) -> Result<(), FarmError> {
        let _: () = redis::cmd("DEL")
            .arg(self.key(&format!("worker:{name}")))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("deregister a worker"))?;
        Ok(())
    }

    /// The registered workers' descriptions.
    pub async fn workers(&self) -> Result<Vec<serde_json::Value>, FarmError> {
        let mut connection = self.connection.clone();
        let keys = self.scan(&self.key("worker:*")).await?;
        let mut workers = Vec::new();
        for key in keys {
            let info: Option<String> =
                redis::cmd("GET").arg(&key).query_async(&mut connection).await.map_err(unavailable("list workers"))?;
            if let Some(info) = info.and_then(|i| serde_json::from_str(&i).ok()) {
                workers.push(info);
            }
        }
        Ok(workers)
    }
}

/// The worker count the document's rule asks for: up when more than twice as many builds wait
/// as workers are active (by the excess, up to `max`); down by one when nothing waits and more
/// than `min` are active; always within `min..=max`.
pub fn desired_workers(queued: u64, active: u64, min: u64, max: u64) -> u64 {
    let desired = if queued > active * 2 && active < max {
        active + (queued - active).min(max - active)
    } else if queued == 0 && active > min {
        active - 1
    } else {
        active
    };
    desired.clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::desired_workers;

    #[test]
    fn the_documents_scaling_rule() {
        assert_eq!(desired_workers(0, 0, 1, 10), 1, "never below the minimum");
        assert_eq!(desired_workers(7, 3, 1, 10), 7, "7 > 2 × 3: up by the excess");
        assert_eq!(desired_workers(6, 3, 1, 10), 3, "6 is not more than 2 × 3");
        assert_eq!(desired_workers(50, 3, 1, 10), 10, "up to the maximum");
        assert_eq!(desired_workers(0, 4, 1, 10), 3, "an empty queue: down by one");
        assert_eq!(desired_workers(0, 1, 1, 10), 1);
        assert_eq!(desired_workers(3, 0, 0, 10), 3, "no worker yet");
    }
}
