//! The Rust side of `benches/bindings-hit.sh`: time cache-hit builds of one app through the
//! Rust API, as the bindings' loops do through theirs.
//!
//! usage: hit_loop APP_DIR STATE_DIR RUNS  → prints the median milliseconds per build

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
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let result = build();
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(result.cache.hit);
    }
    times.sort_by(f64::total_cmp);
    println!("{:.3}", times[times.len() / 2]);
}
