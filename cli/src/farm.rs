//! The farm's commands: `submit`, `status`, `cancel`, `worker`, `farm status`.

use workz_build::engine::block_on;
use workz_build::{BuildRequest, Engine};

use super::{EXIT_FAILED, exit_code, fail_early, print_json, print_summary, show_build};

pub fn submit(engine: &Engine, request: BuildRequest, wait: bool, json: bool) -> u8 {
    if wait {
        let result = show_build(engine.submit(request, None), json);
        if json {
            print_json(&result);
        } else {
            print_summary(&result);
            if let Some(worker) = &result.worker {
                match &result.placement {
                    Some(p) => eprintln!("  ran on worker {worker} ({})", p.reason),
                    None => eprintln!("  ran on worker {worker}"),
                }
            }
        }
        return exit_code(&result);
    }
    match block_on(engine.enqueue(request)) {
        Ok(id) => {
            if json {
                print_json(&serde_json::json!({"build_id": id, "state": "queued"}));
            } else {
                println!("{id}");
            }
            0
        }
        Err(e) => fail_early(&e, json),
    }
}

pub fn status(engine: &Engine, build_id: &str, json: bool) -> u8 {
    let status =
        block_on(async { engine.farm().await?.queue.status(build_id).await.map_err(workz_build::Error::from) });
    match status {
        Ok(status) => {
            if json {
                print_json(&status);
            } else {
                let worker = status.worker.as_deref().map(|w| format!(" on {w}")).unwrap_or_default();
                println!("{}: {}{worker} (attempt {})", status.id, status.state, status.attempt);
                if let Some(result) = &status.result {
                    print_summary(result);
                }
            }
            match &status.result {
                Some(result) => exit_code(result),
                None => 0,
            }
        }
        Err(e) => fail_early(&e, json),
    }
}

pub fn cancel(engine: &Engine, build_id: &str) -> u8 {
    match block_on(async { engine.farm().await?.queue.cancel(build_id).await.map_err(workz_build::Error::from) }) {
        Ok(state) => {
            match state.as_str() {
                "queued" => println!("{build_id}: cancelled before it started"),
                "running" => println!("{build_id}: cancelling (its worker stops it)"),
                other => println!("{build_id}: already {other}"),
            }
            0
        }
        Err(e) => fail_early(&e, false),
    }
}

/// Cancel `stop` on SIGTERM or Ctrl-C (a long-running command's way to drain and stop).
pub async fn cancel_on_signal(stop: workz_build::CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    stop.cancel();
}

pub fn worker(engine: &Engine, concurrency: Option<usize>, name: Option<String>) -> u8 {
    let name = name.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let concurrency = concurrency.unwrap_or(engine.config().build_system.max_concurrent_builds).max(1);
    let options = workz_build::worker::WorkerOptions { name: name.clone(), concurrency };
    let stop = workz_build::CancellationToken::new();
    eprintln!("worker {name}: taking up to {concurrency} build(s) at once (SIGTERM or Ctrl-C drains and stops)");
    let outcome = block_on(async {
        tokio::spawn(cancel_on_signal(stop.clone()));
        workz_build::worker::run_worker(engine.clone(), options, stop).await
    });
    match outcome {
        Ok(()) => {
            eprintln!("worker {name}: stopped");
            0
        }
        Err(e) => fail_early(&e, false).max(EXIT_FAILED),
    }
}

pub fn farm_status(engine: &Engine, json: bool, prometheus: bool) -> u8 {
    let q = &engine.config().queue;
    let status = block_on(async {
        let farm = engine.farm().await?;
        Ok::<_, workz_build::Error>(farm.queue.farm_status(q.min_workers, q.max_workers).await?)
    });
    match status {
        Ok(status) if prometheus => {
            print!("{}", status.prometheus());
            0
        }
        Ok(status) if json => {
            print_json(&status);
            0
        }
        Ok(status) => {
            let queued: Vec<String> = status.queued.iter().map(|(class, n)| format!("{class} {n}")).collect();
            println!("queued: {} ({})", status.queued_total(), queued.join(", "));
            println!("running: {}, dead-lettered: {}", status.running, status.dead_lettered);
            println!("workers: {} active, {} desired", status.workers.len(), status.desired_workers);
            for (cap, n) in &status.waiting_for_capability {
                println!("  {n} build(s) wait for a worker that can build {cap}");
            }
            for w in &status.workers {
                let draining = if w.accepting { "" } else { ", draining" };
                println!("  worker {}: load {}%, running {:?}{draining}", w.name, w.load, w.running);
            }
            0
        }
        Err(e) => fail_early(&e, json),
    }
}

pub fn drain(engine: &Engine, worker: &str) -> u8 {
    match block_on(async { engine.farm().await?.queue.drain(worker).await.map_err(workz_build::Error::from) }) {
        Ok(()) => {
            println!("{worker}: asked to drain (it finishes its builds, then stops)");
            0
        }
        Err(e) => fail_early(&e, false),
    }
}

/// An event as a line of a build's log (`logs`, the service's `/logs`); `None` for events
/// the log leaves out.
pub fn log_line(record: &workz_build::EventRecord) -> Option<String> {
    use workz_build::events::BuildEvent;
    match &record.event {
        BuildEvent::StageStarted { stage } => Some(format!("[{:>7.3}s] {stage}", record.elapsed)),
        BuildEvent::ProcessStarted { command } => Some(format!("$ {command}")),
        BuildEvent::Log { line, .. } => Some(format!("│ {line}")),
        BuildEvent::Warning { message, .. } => Some(format!("warning: {message}")),
        BuildEvent::Finished { status, duration } => Some(format!("finished: {} in {duration:.3}s", status.as_str())),
        _ => None,
    }
}

/// Print a build's events as they are (with --follow, until the build ends).
pub fn logs(engine: &Engine, build_id: &str, follow: bool, json: bool) -> u8 {
    let shown = block_on(async {
        let farm = engine.farm().await?;
        // Known build? (Also the error for a wrong id.)
        farm.queue.status(build_id).await?;
        let block = std::time::Duration::from_millis(if follow { 500 } else { 0 });
        let mut connection = farm.queue.blocking_connection(block).await?;
        let mut last = "0".to_string();
        loop {
            let (next, events, ended) = farm.queue.events(&mut connection, build_id, &last, block).await?;
            let read_all = next == last;
            last = next;
            for record in events {
                if json {
                    println!("{}", serde_json::to_string(&record).unwrap_or_default());
                } else if let Some(line) = log_line(&record) {
                    println!("{line}");
                }
            }
            if ended || (!follow && read_all) {
                return Ok::<_, workz_build::Error>(());
            }
        }
    });
    match shown {
        Ok(()) => 0,
        Err(e) => fail_early(&e, json),
    }
}
