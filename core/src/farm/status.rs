//! Reading and steering the farm: a build's state, cancelling, queue depth, workers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CLASSES, FarmQueue, GROUP, JobStatus, WorkerInfo, unavailable};
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
        let streams: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key("queues"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("read the queue"))?;
        for stream in streams {
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

    /// Whether `worker` leads duty `duty` (it takes the lead when no one holds it, and keeps
    /// it for `lease` from each call).
    pub async fn lead(&self, duty: &str, worker: &str, lease: std::time::Duration) -> Result<bool, FarmError> {
        let script = redis::Script::new(
            r"
            local holder = redis.call('GET', KEYS[1])
            if holder and holder ~= ARGV[1] then return 0 end
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            return 1
            ",
        );
        let led: i64 = script
            .key(self.key(&format!("lead:{duty}")))
            .arg(worker)
            .arg(lease.as_millis().max(1) as u64)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("take a duty"))?;
        Ok(led == 1)
    }

    /// Whether this is the first notice of build `id` (its webhooks are sent once, however
    /// often its job ran).
    pub async fn first_notice(&self, id: &str) -> Result<bool, FarmError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(&format!("notified:{id}")))
            .arg("1")
            .arg("NX")
            .arg("EX")
            .arg(self.result_ttl.as_secs().max(1))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("record a notice"))?;
        Ok(set.is_some())
    }

    /// The worker count `queue.scaleCommand` was last run with.
    pub async fn last_scaled(&self) -> Result<Option<u64>, FarmError> {
        redis::cmd("GET")
            .arg(self.key("scaled"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("read the scaled count"))
    }

    pub async fn scaled(&self, count: u64) -> Result<(), FarmError> {
        redis::cmd("SET")
            .arg(self.key("scaled"))
            .arg(count)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("record the scaled count"))
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
    pub async fn register(&self, info: &WorkerInfo) -> Result<(), FarmError> {
        let _: () = redis::pipe()
            .cmd("SET")
            .arg(self.key(&format!("worker:{}", info.name)))
            .arg(serde_json::to_string(info).unwrap_or_default())
            .arg("EX")
            .arg(self.lease.as_secs().max(1))
            .ignore()
            .cmd("SADD")
            .arg(self.key("workers"))
            .arg(&info.name)
            .ignore()
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("register a worker"))?;
        Ok(())
    }

    pub async fn deregister(&self, name: &str) -> Result<(), FarmError> {
        let _: () = redis::pipe()
            .cmd("DEL")
            .arg(self.key(&format!("worker:{name}")))
            .arg(self.key(&format!("offers:{name}")))
            .arg(self.key(&format!("reserved:{name}")))
            .ignore()
            .cmd("SREM")
            .arg(self.key("workers"))
            .arg(name)
            .ignore()
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("deregister a worker"))?;
        Ok(())
    }

    /// The registered workers, by name (a registration that expired is forgotten here).
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, FarmError> {
        let names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.key("workers"))
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("list workers"))?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = names.iter().map(|n| self.key(&format!("worker:{n}"))).collect();
        let infos: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("list workers"))?;
        let gone: Vec<&String> = names.iter().zip(&infos).filter(|(_, i)| i.is_none()).map(|(n, _)| n).collect();
        if !gone.is_empty() {
            let _: redis::RedisResult<()> =
                redis::cmd("SREM").arg(self.key("workers")).arg(&gone).query_async(&mut self.connection.clone()).await;
        }
        let mut workers: Vec<WorkerInfo> =
            infos.into_iter().flatten().filter_map(|info| serde_json::from_str(&info).ok()).collect();
        workers.sort_by(|a: &WorkerInfo, b| a.name.cmp(&b.name));
        Ok(workers)
    }
}

/// The farm at a glance (`farm status`, the Prometheus gauges, the scale command).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FarmStatus {
    /// Jobs waiting, per priority class.
    pub queued: BTreeMap<String, u64>,
    pub running: u64,
    pub dead_lettered: u64,
    pub workers: Vec<WorkerInfo>,
    /// By the document's scaling rule, within `queue.minWorkers..=queue.maxWorkers`.
    pub desired_workers: u64,
    /// Jobs no registered worker can build (an iOS build waiting for a macOS worker).
    pub waiting_for_capability: BTreeMap<String, u64>,
}

impl FarmStatus {
    pub fn queued_total(&self) -> u64 {
        self.queued.values().sum()
    }

    /// The figures as Prometheus gauges (OpenMetrics text), for an autoscaler to scale on.
    pub fn prometheus(&self) -> String {
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        let mut registry = prometheus_client::registry::Registry::default();
        let depth = Family::<Vec<(String, String)>, Gauge>::default();
        for (class, n) in &self.queued {
            depth.get_or_create(&vec![("priority".to_string(), class.clone())]).set(*n as i64);
        }
        registry.register("workz_queue_depth", "Builds waiting in the farm's queue, by priority class", depth);
        let gauge = |value: u64| {
            let g = Gauge::<i64>::default();
            g.set(value as i64);
            g
        };
        registry.register("workz_builds_running", "Builds a farm worker holds", gauge(self.running));
        registry.register("workz_dead_lettered", "Jobs on the dead-letter stream", gauge(self.dead_lettered));
        registry.register("workz_workers_active", "Registered farm workers", gauge(self.workers.len() as u64));
        registry.register(
            "workz_workers_desired",
            "Worker count the scaling rule asks for (queue.minWorkers..queue.maxWorkers)",
            gauge(self.desired_workers),
        );
        let load = Family::<Vec<(String, String)>, Gauge>::default();
        for worker in &self.workers {
            load.get_or_create(&vec![("worker".to_string(), worker.name.clone())]).set(i64::from(worker.load));
        }
        registry.register("workz_worker_load", "Percentage of a worker's slots busy", load);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

impl FarmQueue {
    /// The farm's figures, with the desired worker count for `min..=max` workers.
    pub async fn farm_status(&self, min_workers: u64, max_workers: u64) -> Result<FarmStatus, FarmError> {
        let depth = self.depth().await?;
        let workers = self.workers().await?;
        let waiting_for_capability = depth
            .by_capability
            .iter()
            .filter(|(cap, n)| **n > 0 && !workers.iter().any(|w| w.can_build(cap)))
            .map(|(cap, n)| (cap.clone(), *n))
            .collect();
        let queued: BTreeMap<String, u64> = depth.queued.into_iter().collect();
        let active = workers.iter().filter(|w| w.accepting).count() as u64;
        Ok(FarmStatus {
            desired_workers: desired_workers(queued.values().sum(), active, min_workers, max_workers),
            queued,
            running: depth.running,
            dead_lettered: depth.dead,
            workers,
            waiting_for_capability,
        })
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
