//! Queue overhead, no builds: no-op jobs enqueued and taken, placed, completed and acknowledged
//! through the farm's Redis protocol by one worker process with N slots (what `workz-build
//! worker --concurrency N` runs around each build), and the in-process queue's admissions.
//! Run by `benches/queue.sh`, beside BullMQ on the same Redis.
//!
//! Usage: queue_overhead farm REDIS_URL JOBS CONCURRENCY | queue_overhead in-process JOBS

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use workz_build::farm::{FarmQueue, Job, Taken, WorkerInfo, choose};
use workz_build::queue::PriorityGate;
use workz_build::{BuildResult, BuildStatus, EngineConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    match args.first().map(String::as_str) {
        Some("farm") => {
            let (url, jobs, concurrency) = (&args[1], args[2].parse().expect("JOBS"), args[3].parse().expect("N"));
            let seconds = runtime.block_on(farm(url, jobs, concurrency));
            println!("{:.0}", jobs as f64 / seconds);
        }
        Some("in-process") => {
            let jobs: usize = args[1].parse().expect("JOBS");
            let seconds = runtime.block_on(in_process(jobs));
            println!("{:.0}", jobs as f64 / seconds);
        }
        _ => eprintln!("usage: queue_overhead farm REDIS_URL JOBS CONCURRENCY | queue_overhead in-process JOBS"),
    }
}

async fn farm(url: &str, jobs: usize, concurrency: usize) -> f64 {
    let config = EngineConfig::from_json(
        "bench",
        &serde_json::json!({"queue": {"redis": {"url": url, "keyPrefix": "bench:"}}}).to_string(),
    )
    .expect("a config")
    .value;
    let queue = FarmQueue::connect(&config).await.expect("Redis").expect("a farm");
    let capabilities = vec!["static:web".to_string()];
    let name = "bench-worker";
    let streams = Arc::new(queue.streams_for(name, &capabilities));
    queue.ensure_groups(&streams).await.expect("groups");
    let me = WorkerInfo {
        name: name.into(),
        concurrency,
        running: Vec::new(),
        load: 0,
        capabilities,
        version: String::new(),
        tools: Default::default(),
        dependencies: Vec::new(),
        performance: 10.0,
        accepting: true,
    };
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let slots: Vec<_> = (0..concurrency)
        .map(|_| {
            let (queue, streams, done, me) = (queue.clone(), streams.clone(), done.clone(), me.clone());
            tokio::spawn(async move {
                let mut blocking = queue.blocking_connection(Duration::from_millis(100)).await.expect("Redis");
                let mut last_sweep = Instant::now();
                while done.load(Ordering::Relaxed) < jobs {
                    if last_sweep.elapsed() >= Duration::from_secs(1) {
                        last_sweep = Instant::now();
                        let _ = queue.sweep(&me.name, &streams[1..].concat()).await;
                    }
                    // As a worker with no free peer does: read and take in one script, else wait.
                    let taken = match queue.poll(&me.name, &streams, true).await.expect("a read") {
                        Some((_, Some(taken))) => taken,
                        Some((delivered, None)) => queue.take(&me.name, &delivered, None).await.expect("take"),
                        None => {
                            let wait = queue.wait_entry(&me.name, &streams, &mut blocking, Duration::from_millis(100));
                            let Some(delivered) = wait.await.expect("a read") else { continue };
                            let placement = choose(&me, &[], delivered.capability(), delivered.dependencies.as_deref());
                            queue.take(&me.name, &delivered, Some(&placement)).await.expect("take")
                        }
                    };
                    let Taken::Run(claimed) = taken else { continue };
                    let mut result = BuildResult::rejected(claimed.job.id.clone(), &workz_build::Error::Cancelled);
                    (result.status, result.error) = (BuildStatus::Succeeded, None);
                    assert!(queue.complete(&claimed, &result).await.expect("complete"));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Enqueue them all, 64 in flight (the connection pipelines them).
    let source = workz_build::Digest::of(b"no-op");
    let run = uuid_like(started);
    let enqueue = futures_util::stream::iter(0..jobs).map(|i| {
        let queue = queue.clone();
        let job = Job {
            id: format!("b{run}-{i}"),
            source,
            capability: "static:web".into(),
            app_config: None,
            target: None,
            priority: 0,
            force: false,
            timeout: None,
            list_files: true,
            dependencies: None,
            submitted_at: 0,
        };
        async move { queue.enqueue(&job).await.expect("enqueue") }
    });
    enqueue.buffer_unordered(64).collect::<Vec<_>>().await;
    for slot in slots {
        slot.await.expect("a slot");
    }
    started.elapsed().as_secs_f64()
}

fn uuid_like(at: Instant) -> String {
    format!("{:x}{:x}", std::process::id(), at.elapsed().as_nanos())
}

/// No-op jobs through the in-process queue: each waits for a slot (8 at once), by priority.
async fn in_process(jobs: usize) -> f64 {
    let gate = Arc::new(PriorityGate::new(8));
    let started = Instant::now();
    let tasks: Vec<_> = (0..jobs)
        .map(|i| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire((i % 3) as i32 - 1).await;
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a job");
    }
    started.elapsed().as_secs_f64()
}
