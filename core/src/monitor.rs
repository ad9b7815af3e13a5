//! The platform document's performance monitor, for every build: a `build_slow` alert when a
//! build takes longer than its type's threshold (with where the time went), the document's
//! suggestions when one stage takes more than `monitoring.stageShare` percent of a build, and
//! per-build metrics (Prometheus histograms with fixed buckets, so that workers' figures add up).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::config::{Bundler, EngineConfig};
use crate::result::{BuildResult, StageTimings, Suggestion};

/// What a finished build tells the monitor, besides its timings.
pub struct BuildFacts<'a> {
    pub app_type: &'a str,
    pub target: &'a str,
    pub timings: &'a StageTimings,
    /// Seconds of the `build` stage spent installing or restoring dependencies (npm, pub).
    pub dependency_seconds: f64,
    /// The whole build, queue time included.
    pub duration: f64,
    pub cache_hit: bool,
    pub bundler: Option<Bundler>,
    /// Whether the app's dependencies are pinned by a lockfile.
    pub locked: bool,
}

/// The monitor's verdict on one build.
#[derive(Debug, Default, PartialEq)]
pub struct Assessment {
    /// The `build_slow` message, when the build passed its type's threshold.
    pub slow: Option<String>,
    pub suggestions: Vec<Suggestion>,
}

/// A stage shorter than this gets no suggestion, whatever its share: a 50 ms build needs no
/// advice.
const MIN_STAGE_SECONDS: f64 = 0.1;

/// The document's monitor stages from ours: dependencies (the stage and the installs inside
/// the build stage), compilation (the rest of the build stage), optimization.
fn monitored(facts: &BuildFacts) -> [(&'static str, f64); 3] {
    let get = |stage: &str| facts.timings.get(stage).unwrap_or(0.0);
    [
        ("dependencies", get("dependencies") + facts.dependency_seconds),
        ("compilation", (get("build") - facts.dependency_seconds).max(0.0)),
        ("optimization", get("optimize")),
    ]
}

pub fn assess(config: &EngineConfig, facts: &BuildFacts) -> Assessment {
    let monitoring = &config.monitoring;
    let build_type = format!("{}_{}", facts.app_type, facts.target);
    let threshold = monitoring.threshold(facts.app_type, facts.target);
    let slow = (facts.duration > threshold as f64).then(|| {
        let stages: Vec<String> = facts.timings.0.iter().map(|(stage, s)| format!("{stage} {s:.1} s")).collect();
        format!(
            "took {:.1} s, over the {build_type} threshold of {threshold} s (monitoring.thresholds.{build_type}): {}",
            facts.duration,
            stages.join(", ")
        )
    });
    let total: f64 = facts.timings.0.iter().map(|(_, s)| s).sum();
    let mut suggestions = Vec::new();
    if !facts.cache_hit && total > 0.0 {
        for (stage, seconds) in monitored(facts) {
            let share = seconds / total;
            if share * 100.0 > monitoring.stage_share as f64 && seconds >= MIN_STAGE_SECONDS {
                let (issue, solutions) = advice(stage, config, facts);
                suggestions.push(Suggestion {
                    stage: stage.to_string(),
                    share: (share * 1000.0).round() / 1000.0,
                    issue: issue.to_string(),
                    solutions,
                });
            }
        }
    }
    Assessment { slow, suggestions }
}

/// The document's solutions for a slow stage, said in this engine's terms.
fn advice(stage: &str, config: &EngineConfig, facts: &BuildFacts) -> (&'static str, Vec<String>) {
    let cache_on = config.build_system.cache_enabled;
    let mut solutions = Vec::new();
    match stage {
        "dependencies" => {
            if !cache_on {
                solutions.push("Enable dependency caching: `buildSystem.cacheEnabled: true` keeps installed dependencies by lockfile and restores them instead of installing".into());
            } else if !facts.locked {
                solutions.push("Commit a lockfile (package-lock.json, pubspec.lock): without one, dependencies are resolved afresh and their install is never reused".into());
            } else {
                solutions.push("Installed dependencies are cached by lockfile: this lockfile was new to the cache, and the next build with it restores the install".into());
            }
            solutions.push("Use a local package mirror: set `npm_config_registry` (npm) or `PUB_HOSTED_URL` (pub) on the workers and name it in `cache.envAllowList`".into());
            solutions.push("Optimize dependency versions: every package in the lockfile is installed; drop the unused ones (`npm ls --all` lists them)".into());
            ("Slow dependency resolution", solutions)
        }
        "compilation" => {
            if matches!(facts.bundler, Some(Bundler::Esbuild | Bundler::Webpack | Bundler::Script)) {
                solutions.push(
                    "Use the in-process bundler: `buildConfig.javascript.bundler: \"rolldown\"` starts no Node process"
                        .into(),
                );
            }
            if !cache_on {
                solutions.push("Enable incremental builds: with `buildSystem.cacheEnabled: true` an unchanged app is a cache hit, not a compilation".into());
            }
            solutions.push("Optimize source code structure: put what the first page does not need behind dynamic `import()`, so that smaller chunks build in parallel".into());
            ("Slow compilation", solutions)
        }
        _ => {
            solutions.push("Reduce optimization for development builds: `buildConfig.optimization.minify: false` (or `optimization.minification: false` for every app)".into());
            solutions.push(
                "Compress less: `optimization.compression: \"gzip\"` instead of `\"both\"` (brotli is the slow one)"
                    .into(),
            );
            if !cache_on {
                solutions.push("Cache optimization results: `buildSystem.cacheEnabled: true` stores optimized outputs with the build".into());
            }
            ("Slow optimization", solutions)
        }
    }
}

/// Histogram buckets for build and stage durations, in seconds (fixed, so that histograms
/// from many workers add up).
const DURATION_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

type Labels = Vec<(String, String)>;

/// The engine's build metrics, in Prometheus (OpenMetrics) text.
pub struct BuildMetrics {
    registry: Registry,
    builds: Family<Labels, Counter>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    stages: Family<Labels, Histogram, fn() -> Histogram>,
    cache_hits: Family<Labels, Counter>,
}

impl std::fmt::Debug for BuildMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuildMetrics")
    }
}

impl Default for BuildMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let builds = Family::<Labels, Counter>::default();
        let durations = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let stages = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let cache_hits = Family::<Labels, Counter>::default();
        registry.register("workz_builds", "Finished builds, by build type and status", builds.clone());
        registry.register(
            "workz_build_duration_seconds",
            "Build durations, queue time included, by build type and status",
            durations.clone(),
        );
        registry.register(
            "workz_build_stage_duration_seconds",
            "Stage durations, by build type and stage",
            stages.clone(),
        );
        registry.register("workz_cache_hits", "Cache hits, by the tier that served them", cache_hits.clone());
        BuildMetrics { registry, builds, durations, stages, cache_hits }
    }
}

impl BuildMetrics {
    pub fn record(&self, build_type: &str, result: &BuildResult) {
        let status = result.status.as_str().to_string();
        let by_status = vec![("build_type".to_string(), build_type.to_string()), ("status".to_string(), status)];
        self.builds.get_or_create(&by_status).inc();
        self.durations.get_or_create(&by_status).observe(result.duration);
        for (stage, seconds) in &result.timings.0 {
            let labels = vec![("build_type".to_string(), build_type.to_string()), ("stage".to_string(), stage.clone())];
            self.stages.get_or_create(&labels).observe(*seconds);
        }
        if let Some(tier) = &result.cache.tier {
            self.cache_hits.get_or_create(&vec![("tier".to_string(), tier.clone())]).inc();
        }
    }

    /// Everything recorded so far, as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(timings: &'a StageTimings, dependency_seconds: f64) -> BuildFacts<'a> {
        BuildFacts {
            app_type: "javascript",
            target: "web",
            timings,
            dependency_seconds,
            duration: timings.0.iter().map(|(_, s)| s).sum(),
            cache_hit: false,
            bundler: Some(Bundler::Rolldown),
            locked: true,
        }
    }

    fn timings(stages: &[(&str, f64)]) -> StageTimings {
        StageTimings(stages.iter().map(|(s, t)| (s.to_string(), *t)).collect())
    }

    #[test]
    fn an_install_inside_the_build_stage_counts_as_dependencies() {
        let t = timings(&[("validate", 0.1), ("dependencies", 0.0), ("build", 5.0), ("optimize", 0.5)]);
        let verdict = assess(&EngineConfig::default(), &facts(&t, 4.0));
        let stages: Vec<&str> = verdict.suggestions.iter().map(|s| s.stage.as_str()).collect();
        assert_eq!(stages, ["dependencies"], "{verdict:?}");
        assert_eq!(verdict.suggestions[0].share, 0.714);
        assert_eq!(verdict.suggestions[0].issue, "Slow dependency resolution");
        assert!(verdict.slow.is_none());
        // Without the install, the same stage is compilation.
        let verdict = assess(&EngineConfig::default(), &facts(&t, 0.0));
        assert_eq!(verdict.suggestions[0].stage, "compilation");
    }

    #[test]
    fn the_dependency_advice_names_the_cache_switch_when_it_is_off() {
        let mut config = EngineConfig::default();
        config.build_system.cache_enabled = false;
        let t = timings(&[("dependencies", 0.0), ("build", 2.0)]);
        let verdict = assess(&config, &facts(&t, 1.5));
        assert!(verdict.suggestions[0].solutions[0].contains("buildSystem.cacheEnabled: true"), "{verdict:?}");
    }

    #[test]
    fn slow_builds_by_their_type_threshold_from_config() {
        let t = timings(&[("validate", 1.0), ("build", 130.0)]);
        let verdict = assess(&EngineConfig::default(), &facts(&t, 0.0));
        let slow = verdict.slow.expect("over 120 s");
        assert!(slow.contains("javascript_web threshold of 120 s") && slow.contains("build 130.0 s"), "{slow}");
        let mut config = EngineConfig::default();
        config.monitoring.thresholds.insert("javascript_web".into(), 200);
        assert!(assess(&config, &facts(&t, 0.0)).slow.is_none());
    }

    #[test]
    fn no_advice_for_a_hit_or_a_short_stage() {
        let t = timings(&[("validate", 0.01), ("build", 0.05)]);
        assert!(assess(&EngineConfig::default(), &facts(&t, 0.0)).suggestions.is_empty(), "50 ms");
        let t = timings(&[("validate", 0.1), ("build", 3.0)]);
        let hit = BuildFacts { cache_hit: true, ..facts(&t, 0.0) };
        assert!(assess(&EngineConfig::default(), &hit).suggestions.is_empty());
    }

    #[test]
    fn metrics_are_histograms_with_fixed_buckets() {
        let metrics = BuildMetrics::default();
        let mut result = BuildResult::rejected("b1".into(), &crate::Error::Cancelled);
        result.duration = 0.3;
        result.timings = timings(&[("build", 0.2)]);
        metrics.record("static_web", &result);
        let text = metrics.encode();
        assert!(text.contains("workz_builds_total{build_type=\"static_web\",status=\"failed\"} 1"), "{text}");
        assert!(
            text.contains(
                "workz_build_duration_seconds_bucket{le=\"0.5\",build_type=\"static_web\",status=\"failed\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("workz_build_stage_duration_seconds_count{build_type=\"static_web\",stage=\"build\"} 1"));
    }
}
