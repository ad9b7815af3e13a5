//! The Rust side of `benches/bindings-hit.sh`: time cache-hit builds of one app through the
//! Rust API, as the bindings' loops do through theirs.
//!
//! usage: hit_loop APP_DIR STATE_DIR RUNS  → prints the median milliseconds per build
//! (`HIT_LOOP_JSON=1` also times serialising each result to JSON and parsing it back, the
//! part of a binding's cost that is not the thread hand-off).

use std::time::Instant;

use workz_build::{BuildRequest, Engine, EngineConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, app, state, runs] = args.as_slice() else {
        eprintln!("usage: hit_loop APP_DIR STATE_DIR RUNS");
        std::process::exit(2);
    };
    let runs: usize = runs.parse().expect("RUNS is a number");
    let mut config = EngineConfig::default();
    config.cache.dir = Some(format!("{state}/cache").into());
    config.storage.artifacts_dir = Some(format!("{state}/artifacts").into());
    let engine = Engine::new(config).expect("an engine");
    let build = || {
        let result = engine.build_blocking(BuildRequest::directory(app), None);
        assert!(result.succeeded(), "{:?}", result.error);
        result
    };
    build();
    // The cold build: the release was just published, so its files are younger than the stat cache trusts (2 s): wait that out, as a real rebuild would.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut times = Vec::with_capacity(runs);
    let mut json_times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let result = build();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        if std::env::var_os("HIT_LOOP_JSON").is_some() {
            // What the bindings add on the Rust side: the result as JSON, and reading it back.
            let start = Instant::now();
            let text = serde_json::to_string(&result).expect("serialisable");
            std::hint::black_box(serde_json::from_str::<serde_json::Value>(&text).expect("parses"));
            json_times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        assert!(result.cache.hit);
    }
    times.sort_by(f64::total_cmp);
    println!("{:.3}", times[times.len() / 2]);
    if !json_times.is_empty() {
        json_times.sort_by(f64::total_cmp);
        eprintln!("result JSON out and back in: {:.3} ms median", json_times[json_times.len() / 2]);
    }
}
