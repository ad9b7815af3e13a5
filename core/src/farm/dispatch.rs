//! Handing jobs to workers: reading the queue, offering a job to a better free worker, taking
//! it (a new token), renewing its lease, and taking over jobs whose worker stopped or never
//! took the job offered to it.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamClaimReply, StreamPendingCountReply, StreamRangeReply, StreamReadReply};

use super::{Claimed, FarmQueue, GROUP, Job, Taken, WorkerInfo, unavailable};
use crate::error::FarmError;
use crate::result::Placement;

/// How an entry reached a worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Read from the queue: the reader places it.
    New,
    /// Another worker placed it here (`note`: the entry on this worker's offers stream).
    Offered { note: String },
    /// Its worker stopped renewing the lease (died, stalled, lost Redis).
    Reclaimed { from: String },
    /// It was offered to a worker that did not take it within the grace.
    Unaccepted { offered_to: String },
}

/// A queue entry a worker got, before it takes the job.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub stream: String,
    pub entry: String,
    pub id: String,
    /// The job's dependency lock (hex BLAKE3), for placement.
    pub dependencies: Option<String>,
    pub how: Delivery,
}

impl Delivered {
    /// The capability the job needs, from its stream's name (`…q:<class>:<appType>:<target>`).
    pub fn capability(&self) -> &str {
        let rest = self.stream.rsplit_once(":q:").map(|(_, rest)| rest).unwrap_or(&self.stream);
        let rest = rest.strip_prefix("q:").unwrap_or(rest);
        rest.split_once(':').map(|(_, capability)| capability).unwrap_or(rest)
    }
}

fn field(map: &std::collections::HashMap<String, redis::Value>, name: &str) -> Option<String> {
    map.get(name).and_then(|v| redis::from_redis_value::<String>(v.clone()).ok()).filter(|s| !s.is_empty())
}

/// What the poll script returns: stream, entry, job id, dependency lock, (for an offer) the
/// job's own stream and entry, then the token (or a code) and the payload.
type PollReply = (String, String, String, String, String, String, i64, String);

/// A job taken with token `token`, or the error its payload earns.
fn claimed_of(
    delivered: &Delivered,
    payload: &str,
    token: u64,
    deliveries: u64,
    placement: Option<Placement>,
) -> Taken {
    let id = &delivered.id;
    let job: Job = match serde_json::from_str(payload) {
        Ok(job) => job,
        Err(e) => {
            return Taken::Invalid(FarmError::JobInvalid {
                id: id.to_string(),
                message: format!("its payload is not a job: {e}"),
            });
        }
    };
    if job.id != *id {
        return Taken::Invalid(FarmError::JobInvalid {
            id: id.to_string(),
            message: format!("its payload names another job ({})", job.id),
        });
    }
    Taken::Run(Box::new(Claimed {
        job,
        stream: delivered.stream.clone(),
        entry: delivered.entry.clone(),
        token,
        deliveries: deliveries.max(1),
        placement,
    }))
}

impl FarmQueue {
    /// How long an offered job waits for its worker before any capable worker may take it.
    pub fn offer_grace(&self) -> Duration {
        (self.lease / 2).min(Duration::from_secs(3))
    }

    /// The next entry for `worker` without waiting, in one round trip: a job offered to it
    /// first, then the queue by class (`streams` from [`FarmQueue::streams_for`]). With
    /// `keep` (no free peer could score higher, so the reader keeps whatever it reads), a job
    /// read from the queue is taken in the same script.
    pub async fn poll(
        &self,
        worker: &str,
        streams: &[Vec<String>],
        keep: bool,
    ) -> Result<Option<(Delivered, Option<Taken>)>, FarmError> {
        let script = redis::Script::new(
            r"
            for i, stream in ipairs(KEYS) do
              local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', stream, '>')
              if read then
                local entry = read[1][2][1]
                local f = {}
                for j = 1, #entry[2], 2 do f[entry[2][j]] = entry[2][j + 1] end
                local head = {stream, entry[1], f['id'] or '', f['deps'] or '', f['stream'] or '', f['entry'] or ''}
                if i == 1 or ARGV[3] ~= '1' or not f['id'] then
                  table.insert(head, -9) table.insert(head, '') return head
                end
                -- Taken at once (the same checks as `take`; a fresh delivery is this worker's).
                local job = ARGV[4] .. 'job:' .. f['id']
                local state = redis.call('HGET', job, 'state')
                if not state or (state ~= 'queued' and state ~= 'running') then
                  table.insert(head, -1) table.insert(head, '') return head
                end
                if redis.call('HGET', job, 'cancel') == '1' then
                  table.insert(head, -2) table.insert(head, '') return head
                end
                local attempt = redis.call('HINCRBY', job, 'attempt', 1)
                redis.call('HSET', job, 'state', 'running', 'worker', ARGV[2], 'entry', entry[1], 'stream', stream)
                table.insert(head, attempt) table.insert(head, redis.call('HGET', job, 'payload'))
                return head
              end
            end
            return false
            ",
        );
        let mut invocation = script.prepare_invoke();
        for stream in streams.concat() {
            invocation.key(stream);
        }
        let found: Option<PollReply> = invocation
            .arg(GROUP)
            .arg(worker)
            .arg(if keep { "1" } else { "0" })
            .arg(&self.prefix)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("read the queue"))?;
        let Some((stream, entry, id, deps, job_stream, job_entry, token, payload)) = found else { return Ok(None) };
        let dependencies = Some(deps).filter(|d| !d.is_empty());
        let delivered = if job_stream.is_empty() {
            Delivered { stream, entry, id, dependencies, how: Delivery::New }
        } else {
            Delivered { stream: job_stream, entry: job_entry, id, dependencies, how: Delivery::Offered { note: entry } }
        };
        let taken = match token {
            -9 => None,
            -2 => {
                self.finish_cancelled(&delivered.id, &delivered.stream, &delivered.entry).await?;
                Some(Taken::Dropped)
            }
            t if t < 0 => {
                self.ack(&delivered.stream, &delivered.entry).await?;
                Some(Taken::Dropped)
            }
            t => Some(claimed_of(&delivered, &payload, t as u64, 1, None)),
        };
        Ok(Some((delivered, taken)))
    }

    /// Wait up to `block` for the next entry of any of `streams` (on `blocking`, a connection
    /// of its own).
    pub async fn wait_entry(
        &self,
        worker: &str,
        streams: &[Vec<String>],
        blocking: &mut MultiplexedConnection,
        block: Duration,
    ) -> Result<Option<Delivered>, FarmError> {
        let all = streams.concat();
        if all.is_empty() {
            tokio::time::sleep(block).await;
            return Ok(None);
        }
        self.read_group(blocking, worker, &all, Some(block)).await
    }

    async fn read_group<C: redis::aio::ConnectionLike>(
        &self,
        connection: &mut C,
        worker: &str,
        streams: &[String],
        block: Option<Duration>,
    ) -> Result<Option<Delivered>, FarmError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(GROUP).arg(worker).arg("COUNT").arg(1);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(streams);
        for _ in streams {
            cmd.arg(">");
        }
        let reply: Option<StreamReadReply> =
            cmd.query_async(connection).await.map_err(unavailable("read the queue"))?;
        Ok(reply.and_then(|r| {
            r.keys.into_iter().find_map(|stream| {
                let entry = stream.ids.into_iter().next()?;
                let id = field(&entry.map, "id")?;
                let dependencies = field(&entry.map, "deps");
                // A note on the offers stream names the job's own entry.
                Some(match (field(&entry.map, "stream"), field(&entry.map, "entry")) {
                    (Some(job_stream), Some(job_entry)) => Delivered {
                        stream: job_stream,
                        entry: job_entry,
                        id,
                        dependencies,
                        how: Delivery::Offered { note: entry.id },
                    },
                    _ => Delivered { stream: stream.key, entry: entry.id, id, dependencies, how: Delivery::New },
                })
            })
        }))
    }

    /// Hand a job `worker` read to worker `to`, the better place for it, if `to` still has a
    /// free slot: the entry becomes `to`'s and a note on its offers stream wakes it. Returns
    /// whether it was handed over.
    pub async fn offer(
        &self,
        delivered: &Delivered,
        to: &WorkerInfo,
        placement: &Placement,
    ) -> Result<bool, FarmError> {
        let script = redis::Script::new(
            r"
            if redis.call('HGET', KEYS[1], 'state') ~= 'queued' or redis.call('HGET', KEYS[1], 'cancel') == '1' then return 0 end
            local info = redis.call('GET', KEYS[3])
            if not info then return 0 end
            local w = cjson.decode(info)
            local reserved = tonumber(redis.call('GET', KEYS[4]) or '0')
            if w.accepting == false or (#w.running + reserved) >= w.concurrency then return 0 end
            redis.call('XCLAIM', KEYS[2], ARGV[3], ARGV[1], 0, ARGV[2], 'JUSTID')
            redis.call('HSET', KEYS[1], 'placement', ARGV[4])
            redis.call('INCR', KEYS[4])
            redis.call('PEXPIRE', KEYS[4], ARGV[7])
            redis.call('XADD', KEYS[5], '*', 'id', ARGV[5], 'stream', ARGV[6], 'entry', ARGV[2], 'deps', ARGV[8])
            redis.call('EXPIRE', KEYS[5], 86400)
            return 1
            ",
        );
        let handed: i64 = script
            .key(self.key(&format!("job:{}", delivered.id)))
            .key(&delivered.stream)
            .key(self.key(&format!("worker:{}", to.name)))
            .key(self.key(&format!("reserved:{}", to.name)))
            .key(self.key(&format!("offers:{}", to.name)))
            .arg(&to.name)
            .arg(&delivered.entry)
            .arg(GROUP)
            .arg(serde_json::to_string(placement).unwrap_or_default())
            .arg(&delivered.id)
            .arg(&delivered.stream)
            .arg(self.offer_grace().as_millis() as u64)
            .arg(delivered.dependencies.as_deref().unwrap_or(""))
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("offer a job"))?;
        Ok(handed == 1)
    }

    /// Take an entry delivered to `worker` (still its own): a new attempt of its job, or a job
    /// to drop. `placement` is recorded unless the job was offered (the offer recorded it).
    pub async fn take(
        &self,
        worker: &str,
        delivered: &Delivered,
        placement: Option<&Placement>,
    ) -> Result<Taken, FarmError> {
        let script = redis::Script::new(
            r"
            if ARGV[6] ~= '' then
              redis.call('XACK', KEYS[4], ARGV[4], ARGV[6])
              redis.call('XDEL', KEYS[4], ARGV[6])
              if tonumber(redis.call('DECR', KEYS[3])) <= 0 then redis.call('DEL', KEYS[3]) end
            end
            local state = redis.call('HGET', KEYS[1], 'state')
            if not state or (state ~= 'queued' and state ~= 'running') then return {-1, '', 0, ''} end
            local pending = redis.call('XPENDING', KEYS[2], ARGV[4], ARGV[2], ARGV[2], 1)
            if #pending == 0 or pending[1][2] ~= ARGV[1] then return {-3, '', 0, ''} end
            if redis.call('HGET', KEYS[1], 'cancel') == '1' then return {-2, '', 0, ''} end
            local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
            redis.call('HSET', KEYS[1], 'state', 'running', 'worker', ARGV[1], 'entry', ARGV[2], 'stream', ARGV[3])
            if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'placement', ARGV[5]) end
            redis.call('XCLAIM', KEYS[2], ARGV[4], ARGV[1], 0, ARGV[2], 'JUSTID')
            return {attempt, redis.call('HGET', KEYS[1], 'payload'), pending[1][4], redis.call('HGET', KEYS[1], 'placement') or ''}
            ",
        );
        let note = match &delivered.how {
            Delivery::Offered { note } => note.as_str(),
            _ => "",
        };
        let placement = placement.map(|p| serde_json::to_string(p).unwrap_or_default()).unwrap_or_default();
        let id = &delivered.id;
        let (token, payload, deliveries, placement): (i64, String, u64, String) = script
            .key(self.key(&format!("job:{id}")))
            .key(&delivered.stream)
            .key(self.key(&format!("reserved:{worker}")))
            .key(self.key(&format!("offers:{worker}")))
            .arg(worker)
            .arg(&delivered.entry)
            .arg(&delivered.stream)
            .arg(GROUP)
            .arg(placement)
            .arg(note)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("take a job"))?;
        match token {
            -2 => {
                self.finish_cancelled(id, &delivered.stream, &delivered.entry).await?;
                return Ok(Taken::Dropped);
            }
            -3 => return Ok(Taken::Dropped),
            t if t < 0 => {
                self.ack(&delivered.stream, &delivered.entry).await?;
                return Ok(Taken::Dropped);
            }
            _ => {}
        }
        Ok(claimed_of(delivered, &payload, token as u64, deliveries, serde_json::from_str(&placement).ok()))
    }

    /// Keep the lease on a running job (its entry's idle time back to 0) and say whether this
    /// worker still holds it and whether the job was cancelled: `(holds, cancelled)`.
    pub async fn renew(&self, worker: &str, claimed: &Claimed) -> Result<(bool, bool), FarmError> {
        let script = redis::Script::new(
            r"
            if tonumber(redis.call('HGET', KEYS[1], 'attempt')) ~= tonumber(ARGV[1]) then return {0, 0} end
            redis.call('XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0, ARGV[4], 'JUSTID')
            local cancelled = 0
            if redis.call('HGET', KEYS[1], 'cancel') == '1' then cancelled = 1 end
            return {1, cancelled}
            ",
        );
        let (holds, cancelled): (i64, i64) = script
            .key(self.key(&format!("job:{}", claimed.job.id)))
            .key(&claimed.stream)
            .arg(claimed.token)
            .arg(GROUP)
            .arg(worker)
            .arg(&claimed.entry)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("renew a lease"))?;
        Ok((holds == 1, cancelled == 1))
    }

    /// An entry of `streams` that `worker` may take over: one idle past the lease (its worker
    /// died or stalled; delivered again, counted), or one offered to a worker that did not take
    /// it within the grace (not counted: it never ran).
    pub async fn sweep(&self, worker: &str, streams: &[String]) -> Result<Option<Delivered>, FarmError> {
        let (grace, lease) = (self.offer_grace().as_millis() as u64, self.lease.as_millis() as u64);
        let mut pipe = redis::pipe();
        for stream in streams {
            pipe.cmd("XPENDING").arg(stream).arg(GROUP).arg("IDLE").arg(grace).arg("-").arg("+").arg(10);
        }
        let replies: Vec<StreamPendingCountReply> =
            pipe.query_async(&mut self.connection.clone()).await.map_err(unavailable("look for stalled jobs"))?;
        for (stream, reply) in streams.iter().zip(replies) {
            for pending in reply.ids {
                let taken = if pending.last_delivered_ms as u64 >= lease {
                    self.reclaim(worker, stream, &pending.id, &pending.consumer).await?
                } else {
                    self.take_unaccepted(worker, stream, &pending.id, &pending.consumer).await?
                };
                if taken.is_some() {
                    return Ok(taken);
                }
            }
        }
        Ok(None)
    }

    async fn reclaim(
        &self,
        worker: &str,
        stream: &str,
        entry: &str,
        from: &str,
    ) -> Result<Option<Delivered>, FarmError> {
        let reply: StreamClaimReply = redis::cmd("XCLAIM")
            .arg(stream)
            .arg(GROUP)
            .arg(worker)
            .arg(self.lease.as_millis() as u64)
            .arg(entry)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("reclaim a stalled job"))?;
        Ok(reply.ids.into_iter().next().and_then(|e| {
            Some(Delivered {
                stream: stream.to_string(),
                entry: e.id.clone(),
                id: field(&e.map, "id")?,
                dependencies: field(&e.map, "deps"),
                how: Delivery::Reclaimed { from: from.to_string() },
            })
        }))
    }

    async fn take_unaccepted(
        &self,
        worker: &str,
        stream: &str,
        entry: &str,
        offered_to: &str,
    ) -> Result<Option<Delivered>, FarmError> {
        let range: StreamRangeReply = redis::cmd("XRANGE")
            .arg(stream)
            .arg(entry)
            .arg(entry)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("read a job entry"))?;
        let Some(found) = range.ids.into_iter().next() else {
            // Deleted (cancelled while queued) but still pending somewhere: let it go.
            let _: redis::RedisResult<()> =
                redis::cmd("XACK").arg(stream).arg(GROUP).arg(entry).query_async(&mut self.connection.clone()).await;
            return Ok(None);
        };
        let Some(id) = field(&found.map, "id") else { return Ok(None) };
        let script = redis::Script::new(
            r"
            if redis.call('HGET', KEYS[1], 'state') ~= 'queued' or redis.call('HGET', KEYS[1], 'cancel') == '1' then return 0 end
            return #redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'JUSTID')
            ",
        );
        let claimed: i64 = script
            .key(self.key(&format!("job:{id}")))
            .key(stream)
            .arg(GROUP)
            .arg(worker)
            .arg(self.offer_grace().as_millis() as u64)
            .arg(entry)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable("take over an offered job"))?;
        Ok((claimed > 0).then(|| Delivered {
            stream: stream.to_string(),
            entry: entry.to_string(),
            id,
            dependencies: field(&found.map, "deps"),
            how: Delivery::Unaccepted { offered_to: offered_to.to_string() },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_comes_from_the_stream_name() {
        let delivered = Delivered {
            stream: "workz:q:high:flutter:android".into(),
            entry: "1-0".into(),
            id: "b1".into(),
            dependencies: None,
            how: Delivery::New,
        };
        assert_eq!(delivered.capability(), "flutter:android");
        let plain = Delivered { stream: "q:low:static:web".into(), ..delivered };
        assert_eq!(plain.capability(), "static:web");
    }
}
