//! `workz-build`: the command line of the Workz build engine.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

mod dashboard;
mod farm;
mod serve;
use indicatif::{ProgressBar, ProgressStyle};
use workz_build::events::BuildEvent;
use workz_build::{BuildRequest, BuildResult, BuildStatus, Engine, EngineConfig, Error};

#[derive(Parser)]
#[command(name = "workz-build", version, about = "Build Workz! apps: static sites, JavaScript and Flutter")]
struct Cli {
    /// Engine configuration file (the platform's global build configuration JSON).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Cache directory (default: $WORKZ_CACHE_DIR, else ~/.cache/workz-build).
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the app in DIR (default: the current directory) and publish its artifacts.
    Build {
        dir: Option<PathBuf>,
        /// Target to build (default: the app's first buildTargets entry).
        #[arg(long, short)]
        target: Option<String>,
        /// Print one BuildResult JSON object on stdout, whatever the outcome.
        #[arg(long)]
        json: bool,
        /// Artifact root the release is published under (default: $WORKZ_ARTIFACTS_DIR).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Rebuild even if the cache has the result (the new result is stored).
        #[arg(long)]
        force: bool,
        /// Stop the build after this many seconds (default: buildSystem.buildTimeout).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Say whether the next build of DIR would hit the cache, and if not, what changed.
    Explain {
        dir: PathBuf,
        #[arg(long, short)]
        target: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the files a build of DIR takes in, with their BLAKE3 digests (as b3sum prints them).
    Sources { dir: PathBuf },
    /// Report the toolchains found, free disk and memory, and which targets cannot build here.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Put a build of DIR on the farm (`queue.redis`); prints its id, or with --wait its result.
    Submit {
        dir: PathBuf,
        #[arg(long, short)]
        target: Option<String>,
        /// Higher runs first (above 0: the high class, below 0: the low class).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        priority: i32,
        /// Wait for the result (and show the build's progress).
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        force: bool,
        /// Submissions with the same key are one build (a retried submission gets the first
        /// one's id and result).
        #[arg(long)]
        idempotency_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A farm build's state, and its result once it ended.
    Status {
        build_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a farm build, queued or running.
    Cancel { build_id: String },
    /// A farm build's events so far (its log lines, warnings, stages); --follow until it ends.
    Logs {
        build_id: String,
        #[arg(long, short)]
        follow: bool,
        /// One event JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Webhook deliveries (notifications.webhooks), oldest first: delivered or given up, with
    /// their attempts.
    Notifications {
        /// Only the ones given up on.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
    },
    /// The engine over HTTP: submit (a tar of the app), status, cancel, events (SSE), queue,
    /// historical build metrics, Prometheus metrics. Needs a token (server.token or
    /// WORKZ_API_TOKEN).
    Serve {
        /// host:port (default: server.listen, 127.0.0.1:8470); port 0 picks a free one.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Take builds from the farm's queue and run them here, until SIGTERM or Ctrl-C.
    Worker {
        /// Builds run at once (default: buildSystem.maxConcurrentBuilds).
        #[arg(long)]
        concurrency: Option<usize>,
        /// The worker's name on the farm (default: host name and process id).
        #[arg(long)]
        name: Option<String>,
    },
    /// The farm: queued builds per priority, running, dead-lettered, workers.
    Farm {
        #[command(subcommand)]
        action: FarmAction,
    },
    /// Inspect and maintain the cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum FarmAction {
    /// Queue depth, running builds, dead letters, workers and the desired worker count.
    Status {
        #[arg(long)]
        json: bool,
        /// The same figures as Prometheus gauges (workz_queue_depth, workz_workers_active,
        /// workz_workers_desired, …) in the OpenMetrics text format.
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Ask a worker to take no new build, finish those it holds and stop.
    Drain { worker: String },
}

#[derive(Subcommand)]
enum CacheAction {
    /// Entries, blobs and bytes per tier, and hit counts from the build history.
    Stats,
    /// Remove every entry and blob.
    Clear,
    /// Drop expired entries, enforce the size bound, remove unreferenced blobs.
    Prune,
    /// Remove entries whose `<app>/<target>/<key>` matches a glob (e.g. `my-app/*`).
    Invalidate { pattern: String },
    /// Build, at low priority, each configured target of the apps whose key is not cached.
    Warm {
        /// App directories (default: the most built apps of this machine's history).
        dirs: Vec<PathBuf>,
        /// Without directories, how many of the most built apps.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Fetch entries found only in Redis or the object store into this machine's tiers.
        #[arg(long)]
        pull: bool,
    },
}

/// rolldown and oxc allocate heavily from many threads; mimalloc measured faster than glibc's malloc there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes: 0 success, 1 failed build, 2 bad usage or configuration.
const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// A panic is a bug: the engine turns it into an `internal` error with a hint; a person sees
/// one line saying so, and a backtrace only when they ask for one (`RUST_BACKTRACE`).
fn quiet_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!(
            "workz-build: internal error{location}: {message}\n  this is a bug: please report it with the command and its output (RUST_BACKTRACE=1 adds a backtrace)"
        );
    }));
}

fn main() {
    quiet_panics();
    let code = run();
    // Everything is written and reported. Leaving through `_exit` skips the allocator's
    // at-exit sweep, which gave every heap page back to the kernel one `madvise` at a time
    // (about 100 ms after a large build) just before the kernel frees the whole address space
    // anyway.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process at once; no other thread's work is needed after `run`
    // returns (builds finished, files closed, output flushed above).
    unsafe { libc::_exit(i32::from(code)) }
}

fn run() -> u8 {
    // Transparent huge pages make every fresh 2 MiB region cost a full zeroing on first touch;
    // a short-lived build process with sparse heaps spent a third of its time there.
    // SAFETY: prctl with these arguments only changes this process's memory policy.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    // The CLI blocks on all it starts: the engine's async work runs on this thread (a cache
    // hit then starts no runtime workers).
    workz_build::engine::run_on_calling_thread();
    if std::env::var_os("WORKZ_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("WORKZ_LOG"))
            .with_writer(std::io::stderr)
            .init();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let wants_json = std::env::args().any(|a| a == "--json");
            let is_build = std::env::args().nth(1).is_some_and(|a| a == "build");
            if wants_json
                && is_build
                && !matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion)
            {
                let err = Error::InvalidRequest(e.to_string().lines().next().unwrap_or_default().to_string());
                print_json(&BuildResult::rejected(String::new(), &err));
                return EXIT_USAGE;
            }
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    match cli.command {
        Command::Build { ref dir, ref target, json, ref out, force, timeout } => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let engine = match open_engine(&cli, out.as_deref()) {
                Ok(engine) => engine,
                Err(e) => return fail_early(&e, json),
            };
            let mut request = BuildRequest::directory(dir);
            request.target = target.clone();
            request.force = force;
            request.timeout = timeout;
            // Without --target, an app with several buildTargets builds all of them (the queue
            // runs up to maxConcurrentBuilds at once) and reports one result per target.
            let targets = if target.is_none() { engine.configured_targets(&request) } else { Vec::new() };
            if targets.len() > 1 {
                let results = build_targets(&engine, &request, &targets);
                if json {
                    print_json(&results);
                } else {
                    results.iter().for_each(print_summary);
                }
                workz_build::engine::block_on(engine.flush());
                return results.iter().map(exit_code).max().unwrap_or(0);
            }
            let result = run_build(&engine, request, json);
            if json {
                print_json(&result);
            } else {
                print_summary(&result);
            }
            // Copies of a shared-tier hit into this machine's tiers finish before the process ends.
            workz_build::engine::block_on(engine.flush());
            exit_code(&result)
        }
        Command::Explain { ref dir, ref target, json } => {
            let engine = match open_engine(&cli, None) {
                Ok(engine) => engine,
                Err(e) => return fail_early(&e, json),
            };
            let mut request = BuildRequest::directory(dir.clone());
            request.target = target.clone();
            match workz_build::engine::block_on(engine.explain(request)) {
                Ok(explanation) if json => {
                    print_json(&explanation);
                    0
                }
                Ok(explanation) => {
                    print_explanation(&explanation);
                    0
                }
                Err(e) => fail_early(&e, json),
            }
        }
        Command::Doctor { json } => {
            let config = match &cli.config {
                Some(path) => match EngineConfig::from_file(path) {
                    Ok(parsed) => parsed.value,
                    Err(e) => return fail_early(&e.into(), json),
                },
                None => EngineConfig::default(),
            };
            let report = workz_build::engine::block_on(workz_build::doctor::diagnose(&config));
            if json {
                print_json(&report);
            } else {
                println!("host: {} {}", report.os, report.arch);
                for check in &report.checks {
                    let status = if check.found { "ok     " } else { "missing" };
                    let detail = check.detail.as_deref().unwrap_or("");
                    let needed = if check.found || check.needed_by.is_empty() {
                        String::new()
                    } else {
                        format!("  (needed by {})", check.needed_by.join(", "))
                    };
                    println!("  {status} {} {detail}{needed}", check.name);
                }
                for disk in &report.disks {
                    let free = disk.free_bytes.map(human_bytes).unwrap_or_else(|| "?".into());
                    println!("  disk    {}: {free} free ({})", disk.role, disk.path);
                }
                if let Some(memory) = report.memory_available_bytes {
                    println!("  memory  {} available", human_bytes(memory));
                }
                let sandbox = &report.sandbox;
                match (&sandbox.version, &sandbox.reason) {
                    (Some(version), None) => {
                        println!("  sandbox bwrap {version} (limits by cgroup: {})", sandbox.cgroups.join(", "))
                    }
                    (_, reason) => println!("  sandbox none: {}", reason.as_deref().unwrap_or("unknown")),
                }
                let unbuildable = report.unbuildable();
                if !unbuildable.is_empty() {
                    println!("cannot build here: {}", unbuildable.join(", "));
                }
            }
            0
        }
        Command::Sources { ref dir } => {
            let config = match &cli.config {
                Some(path) => match EngineConfig::from_file(path) {
                    Ok(parsed) => parsed.value,
                    Err(e) => return fail_early(&e.into(), false),
                },
                None => EngineConfig::default(),
            };
            // Every file is read and hashed here (no remembered digests): this is the full price.
            match workz_build::SourceTree::from_dir(dir, &config.limits, &config.source) {
                Ok(tree) => {
                    let mut out = String::with_capacity(tree.files().len() * 100);
                    for file in tree.files() {
                        out.push_str(&format!("{}  {}\n", file.digest, file.path));
                    }
                    print!("{out}");
                    0
                }
                Err(e) => fail_early(&e.into(), false),
            }
        }
        Command::Submit { ref dir, ref target, priority, wait, force, ref idempotency_key, json } => {
            let engine = match open_engine(&cli, None) {
                Ok(engine) => engine,
                Err(e) => return fail_early(&e, json),
            };
            let mut request = BuildRequest::directory(absolute(dir));
            request.target = target.clone();
            request.priority = priority;
            request.force = force;
            request.idempotency_key = idempotency_key.clone();
            farm::submit(&engine, request, wait, json)
        }
        Command::Status { ref build_id, json } => match open_engine(&cli, None) {
            Ok(engine) => farm::status(&engine, build_id, json),
            Err(e) => fail_early(&e, json),
        },
        Command::Cancel { ref build_id } => match open_engine(&cli, None) {
            Ok(engine) => farm::cancel(&engine, build_id),
            Err(e) => fail_early(&e, false),
        },
        Command::Notifications { failed, json } => match open_engine(&cli, None) {
            Ok(engine) => notifications(&engine, failed, json),
            Err(e) => fail_early(&e, json),
        },
        Command::Serve { ref listen } => match open_engine(&cli, None) {
            Ok(engine) => serve::serve(engine, listen.clone()),
            Err(e) => fail_early(&e, false),
        },
        Command::Worker { concurrency, ref name } => match open_engine(&cli, None) {
            Ok(engine) => farm::worker(&engine, concurrency, name.clone()),
            Err(e) => fail_early(&e, false),
        },
        Command::Farm { action: FarmAction::Status { json, prometheus } } => match open_engine(&cli, None) {
            Ok(engine) => farm::farm_status(&engine, json, prometheus),
            Err(e) => fail_early(&e, json),
        },
        Command::Farm { action: FarmAction::Drain { ref worker } } => match open_engine(&cli, None) {
            Ok(engine) => farm::drain(&engine, worker),
            Err(e) => fail_early(&e, false),
        },
        Command::Logs { ref build_id, follow, json } => match open_engine(&cli, None) {
            Ok(engine) => farm::logs(&engine, build_id, follow, json),
            Err(e) => fail_early(&e, json),
        },
        Command::Cache { ref action, json } => {
            let engine = match open_engine(&cli, None) {
                Ok(engine) => engine,
                Err(e) => return fail_early(&e, json),
            };
            match run_cache(&engine, action, json) {
                Ok(code) => code,
                Err(e) => fail_early(&e, json),
            }
        }
    }
}

/// Load the engine config and apply the command-line overrides.
fn open_engine(cli: &Cli, out: Option<&Path>) -> Result<Engine, Error> {
    let (mut config, raw) = match &cli.config {
        Some(path) => {
            let parsed = EngineConfig::from_file(path)?;
            for key in &parsed.unknown_keys {
                eprintln!("warning: {}: unknown key `{key}` ignored", path.display());
            }
            let raw: serde_json::Value =
                std::fs::read_to_string(path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
            (parsed.value, raw)
        }
        None => (EngineConfig::default(), serde_json::Value::Null),
    };
    // A one-shot process gains nothing from the memory tier: promoting into it is pure cost.
    if raw.pointer("/cache/memory/enabled").is_none() {
        config.cache.memory.enabled = false;
    }
    if let Some(dir) = &cli.cache_dir {
        config.cache.dir = Some(absolute(dir));
    }
    if let Some(out) = out {
        config.storage.artifacts_dir = Some(absolute(out));
    }
    // A worker and a service build other people's apps: no sandbox, no build (unless the
    // config says otherwise).
    if matches!(cli.command, Command::Serve { .. } | Command::Worker { .. }) {
        config.sandbox.mode.get_or_insert(workz_build::config::SandboxMode::Required);
    }
    Engine::new(config)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn fail_early(e: &Error, json: bool) -> u8 {
    if json {
        print_json(&BuildResult::rejected(String::new(), e));
    } else {
        print_error(&e.report());
    }
    if is_usage_error(e.code()) { EXIT_USAGE } else { EXIT_FAILED }
}

fn is_usage_error(code: &str) -> bool {
    code.starts_with("config_") || matches!(code, "app_config_missing" | "invalid_request" | "source_not_found")
}

fn exit_code(result: &BuildResult) -> u8 {
    match (&result.status, &result.error) {
        (BuildStatus::Succeeded, _) => 0,
        (_, Some(e)) if is_usage_error(&e.code) => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot print the result as JSON: {e}"),
    }
}

/// Build every target at once; results in the order of the targets. Ctrl-C cancels them all.
fn build_targets(engine: &Engine, request: &BuildRequest, targets: &[String]) -> Vec<BuildResult> {
    let handles: Vec<_> = targets
        .iter()
        .map(|target| {
            let mut request = request.clone();
            request.target = Some(target.clone());
            engine.submit_local(request, None)
        })
        .collect();
    let tokens: Vec<_> = handles.iter().map(|h| h.cancel_token()).collect();
    workz_build::engine::block_on(async move {
        let all = futures_util::future::join_all(handles.into_iter().map(|h| h.wait()));
        tokio::pin!(all);
        tokio::select! {
            results = &mut all => results,
            _ = tokio::signal::ctrl_c() => {
                tokens.iter().for_each(|t| t.cancel());
                all.await
            }
        }
    })
}

/// Run the build, showing its progress on a terminal.
fn run_build(engine: &Engine, request: BuildRequest, json: bool) -> BuildResult {
    // A person's build runs here, even with a farm configured (`submit` sends to the farm).
    show_build(engine.submit_local(request, None), json)
}

/// Wait for a build, showing its progress on a terminal; Ctrl-C cancels it.
fn show_build(mut handle: workz_build::BuildHandle, json: bool) -> BuildResult {
    let mut events = handle.take_events();
    let interactive = !json && std::io::stderr().is_terminal();
    let progress = interactive.then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]").expect("a valid template"));
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    });
    let cancel = handle.cancel_token();
    workz_build::engine::block_on(async move {
        let show = async {
            let Some(events) = events.as_mut() else { return };
            while let Some(record) = events.recv().await {
                match &record.event {
                    BuildEvent::StageStarted { stage } => {
                        if let Some(bar) = &progress {
                            bar.set_message(format!("{stage}…"));
                        }
                    }
                    BuildEvent::Warning { message, .. } if !json => match &progress {
                        Some(bar) => bar.println(format!("warning: {message}")),
                        None => eprintln!("warning: {message}"),
                    },
                    BuildEvent::Log { line, .. } if !json => match &progress {
                        Some(bar) => bar.println(format!("│ {line}")),
                        None => eprintln!("│ {line}"),
                    },
                    BuildEvent::Finished { .. } => break,
                    _ => {}
                }
            }
        };
        let interrupted = async {
            // Ctrl-C cancels the build (which kills its processes and cleans up) instead of abandoning it.
            let _ = tokio::signal::ctrl_c().await;
            cancel.cancel();
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = show => {}
            _ = interrupted => {}
        }
        let result = handle.wait().await;
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        result
    })
}

fn print_error(error: &workz_build::ErrorReport) {
    eprint!("{}", error_text(error));
}

fn error_text(error: &workz_build::ErrorReport) -> String {
    let mut text = format!("error: {} [{}]\n", error.message, error.code);
    if let Some(hint) = &error.hint {
        text += &format!("  hint: {hint}\n");
    }
    text
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn print_summary(result: &BuildResult) {
    let what = match (&result.app, &result.target) {
        (Some(app), Some(target)) => format!("{} {} ({target})", app.name, app.version),
        (Some(app), None) => format!("{} {}", app.name, app.version),
        _ => "build".to_string(),
    };
    // Gathered and written at once: stderr is unbuffered, and a line written piece by piece
    // costs a system call per piece.
    let mut text = String::new();
    for (stage, secs) in &result.timings.0 {
        let note = if stage == "cache" {
            match (&result.cache.hit, &result.cache.tier) {
                (true, Some(tier)) => format!("  hit ({tier})"),
                _ => "  miss".to_string(),
            }
        } else {
            String::new()
        };
        text += &format!("  {stage:<13}{secs:>8.3}s{note}\n");
    }
    match result.status {
        BuildStatus::Succeeded => {
            let (files, size, path) =
                result.artifacts.as_ref().map(|a| (a.files.len(), a.size, a.path.as_str())).unwrap_or((0, 0, ""));
            let cached = if result.cache.hit { ", from cache" } else { "" };
            text +=
                &format!("✔ {what} built in {:.3}s{cached}: {files} files, {}\n", result.duration, human_bytes(size));
            for suggestion in &result.suggestions {
                text += &format!(
                    "  {}: {} took {:.0}% of the build\n",
                    suggestion.issue,
                    suggestion.stage,
                    suggestion.share * 100.0
                );
                for solution in &suggestion.solutions {
                    text += &format!("    - {solution}\n");
                }
            }
            eprint!("{text}");
            println!("{path}");
        }
        status => {
            let word = match status {
                BuildStatus::Cancelled => "cancelled",
                BuildStatus::TimedOut => "timed out",
                _ => "failed",
            };
            text += &format!("✘ {what} {word} after {:.3}s\n", result.duration);
            if let Some(error) = &result.error {
                text += &error_text(error);
            }
            eprint!("{text}");
        }
    }
}

fn notifications(engine: &Engine, failed: bool, json: bool) -> u8 {
    let deliveries = match workz_build::notify::deliveries(&engine.dirs().cache) {
        Ok(deliveries) => deliveries,
        Err(e) => return fail_early(&workz_build::Error::Internal(format!("reading the deliveries: {e}")), json),
    };
    let shown: Vec<_> = deliveries.into_iter().filter(|d| !failed || !d.delivered).collect();
    if json {
        print_json(&shown);
        return 0;
    }
    for d in &shown {
        let outcome = if d.delivered {
            "delivered".to_string()
        } else {
            format!("FAILED ({})", d.error.as_deref().unwrap_or("?"))
        };
        println!("{} {} {} → {}: {outcome} after {} attempt(s)", d.at, d.build_id, d.event, d.url, d.attempts);
    }
    if shown.is_empty() {
        println!("no deliveries{}", if failed { " failed" } else { "" });
    }
    0
}

fn print_explanation(e: &workz_build::Explanation) {
    let verdict = match &e.tier {
        Some(tier) => format!("would hit the {tier} cache"),
        None => "would rebuild".to_string(),
    };
    println!("{} ({}): {verdict}", e.app, e.target);
    println!("  key:    {}", e.key);
    println!("  reason: {}", e.reason);
    if let Some(p) = &e.previous {
        println!("  compared with build {} ({:?}, key {})", p.build_id, p.status, p.key.as_deref().unwrap_or("none"));
    }
    let lines = e.changes.summary_lines();
    if !lines.is_empty() {
        println!("  changes:");
        for line in lines {
            println!("    - {line}");
        }
        let all_files = e.changes.files_changed.len() + e.changes.files_added.len() + e.changes.files_removed.len();
        if all_files > 10 {
            println!("    (--json lists every file)");
        }
    }
}

fn run_cache(engine: &Engine, action: &CacheAction, json: bool) -> Result<u8, Error> {
    use workz_build::engine::block_on;
    match action {
        CacheAction::Stats => {
            let stats = block_on(engine.cache_stats())?;
            let history = engine.history().recent(usize::MAX).unwrap_or_default();
            let builds = history.len();
            let hits = history.iter().filter(|r| r.cache.hit).count();
            let mut by_tier = std::collections::BTreeMap::<String, usize>::new();
            for r in history.iter().filter(|r| r.cache.hit) {
                *by_tier.entry(r.cache.tier.clone().unwrap_or_default()).or_default() += 1;
            }
            if json {
                print_json(&serde_json::json!({
                    "usage": stats.usage,
                    "history": {"builds": builds, "hits": hits, "hits_by_tier": by_tier},
                    "dir": engine.dirs().cache,
                }));
            } else {
                println!("cache: {}", engine.dirs().cache.display());
                for u in &stats.usage {
                    println!("  {:<11} {} entries, {} blobs, {}", u.tier, u.entries, u.blobs, human_bytes(u.bytes));
                }
                let ratio = if builds > 0 { 100.0 * hits as f64 / builds as f64 } else { 0.0 };
                println!("  history: {builds} builds, {hits} cache hits ({ratio:.0}%)");
                for (tier, n) in by_tier {
                    println!("    {tier}: {n}");
                }
            }
        }
        CacheAction::Clear => {
            block_on(engine.cache_clear())?;
            if json { print_json(&serde_json::json!({"cleared": true})) } else { println!("cache cleared") }
        }
        CacheAction::Prune => {
            let report = block_on(engine.cache_prune())?;
            if json {
                print_json(&report);
            } else {
                println!(
                    "pruned {} entries and {} blobs, freed {}",
                    report.entries_removed,
                    report.blobs_removed,
                    human_bytes(report.bytes_freed)
                );
            }
        }
        CacheAction::Invalidate { pattern } => {
            let removed = block_on(engine.cache_invalidate(pattern))?;
            if json {
                print_json(&serde_json::json!({"invalidated": removed}))
            } else {
                println!("invalidated {removed} entries")
            }
        }
        CacheAction::Warm { dirs, top, pull } => return warm(engine, dirs, *top, *pull, json),
    }
    Ok(0)
}

fn warm(engine: &Engine, dirs: &[PathBuf], top: usize, pull: bool, json: bool) -> Result<u8, Error> {
    use workz_build::warm::{WarmOptions, WarmOutcome};
    let sources = if dirs.is_empty() { engine.most_built(top) } else { dirs.to_vec() };
    if sources.is_empty() {
        return Err(Error::InvalidRequest(
            "no apps to warm: name their directories, or build some first (the history names none that still exist)"
                .into(),
        ));
    }
    let warmed = workz_build::engine::block_on(engine.warm(&sources, WarmOptions { pull }));
    workz_build::engine::block_on(engine.flush());
    if json {
        print_json(&warmed);
    } else {
        for w in &warmed {
            let name = w.app.clone().unwrap_or_else(|| w.source.display().to_string());
            let target = w.target.as_deref().unwrap_or("default target");
            let what = match (w.outcome, &w.error) {
                (WarmOutcome::Cached, _) => format!("cached ({})", w.tier.as_deref().unwrap_or("?")),
                (WarmOutcome::Pulled, _) => {
                    format!("pulled from {} into this machine", w.tier.as_deref().unwrap_or("?"))
                }
                (WarmOutcome::Built, _) => format!("built ({})", w.build_id.as_deref().unwrap_or("")),
                (WarmOutcome::Failed, Some(e)) => format!("failed: {} [{}]", e.message, e.code),
                (WarmOutcome::Failed, None) => "failed".into(),
            };
            println!("{name} ({target}): {what}");
        }
    }
    Ok(if warmed.iter().any(|w| w.outcome == WarmOutcome::Failed) { EXIT_FAILED } else { 0 })
}
