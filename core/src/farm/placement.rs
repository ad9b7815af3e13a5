//! Placement by the platform document's worker scoring (`findOptimalWorker`): each free worker
//! that can build a job scores +50 when it holds the installed dependencies of the job's lock,
//! +30 when it has the target's platform tools, `100 − load` (the percentage of its slots
//! busy) and its performance score (0–20, from its recent build times against the slow-build
//! thresholds of `monitoring.thresholds`). The best one takes the job; a tie stays with the worker that read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::MonitoringConfig;
use crate::result::Placement;

/// A worker as it registers itself on the farm (`farm status --json` lists these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerInfo {
    pub name: String,
    pub concurrency: usize,
    /// Ids of the builds it runs.
    #[serde(default)]
    pub running: Vec<String>,
    /// Percentage of its slots busy.
    #[serde(default)]
    pub load: u32,
    /// `appType:target` it can build (its builders whose tools this machine has).
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub version: String,
    /// Versions of its build tools (`node`, `npm`, `flutter`).
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
    /// Digests of the dependency locks whose install it holds in its own cache.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// 0–20: how fast its recent builds were against their type's slow-build threshold.
    #[serde(default)]
    pub performance: f64,
    /// False once it drains: it takes no new job.
    #[serde(default = "yes")]
    pub accepting: bool,
}

fn yes() -> bool {
    true
}

impl WorkerInfo {
    pub fn free(&self) -> bool {
        self.accepting && self.running.len() < self.concurrency
    }

    pub fn can_build(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }

    /// The document's score of this worker for a job needing `capability` whose dependency
    /// lock is `dependencies`.
    pub fn score(&self, capability: &str, dependencies: Option<&str>) -> f64 {
        let mut score = 0.0;
        if dependencies.is_some_and(|d| self.dependencies.iter().any(|held| held == d)) {
            score += 50.0;
        }
        if self.can_build(capability) {
            score += 30.0;
        }
        score += 100.0 - f64::from(self.load.min(100));
        score + self.performance.clamp(0.0, PERFORMANCE_MAX)
    }
}

/// The most a performance score adds: less than the dependency bonus, so that a fast worker
/// does not beat one that skips an install.
pub const PERFORMANCE_MAX: f64 = 20.0;

/// A worker's performance score from its recent builds `(capability, seconds)`: 20 for builds
/// that take no time, 0 for builds at (or past) their type's slow-build threshold
/// (`monitoring.thresholds`), by the median ratio; 10 with no history.
pub fn performance_score(recent: &[(String, f64)], monitoring: &MonitoringConfig) -> f64 {
    if recent.is_empty() {
        return PERFORMANCE_MAX / 2.0;
    }
    let threshold = |capability: &str| {
        let (app_type, target) = capability.split_once(':').unwrap_or((capability, ""));
        monitoring.threshold(app_type, target) as f64
    };
    let mut ratios: Vec<f64> = recent.iter().map(|(cap, s)| (s / threshold(cap)).clamp(0.0, 1.0)).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    ((1.0 - median) * PERFORMANCE_MAX * 100.0).round() / 100.0
}

/// Where a job read by `me` should run among the free workers that can build it: `me` unless
/// another scores strictly higher (the best of those then).
pub fn choose(me: &WorkerInfo, peers: &[WorkerInfo], capability: &str, dependencies: Option<&str>) -> Placement {
    let mut scores = BTreeMap::new();
    let my_score = me.score(capability, dependencies);
    scores.insert(me.name.clone(), my_score);
    let mut best: Option<(&str, f64)> = None;
    for peer in peers.iter().filter(|p| p.name != me.name && p.free() && p.can_build(capability)) {
        let score = peer.score(capability, dependencies);
        scores.insert(peer.name.clone(), score);
        if best.is_none_or(|(_, b)| score > b) {
            best = Some((&peer.name, score));
        }
    }
    let (worker, reason) = match best {
        None => (me.name.clone(), "only free worker"),
        Some((name, score)) if score > my_score => (name.to_string(), "best score"),
        Some((_, score)) if score == my_score => (me.name.clone(), "tie"),
        Some(_) => (me.name.clone(), "best score"),
    };
    Placement { worker, reason: reason.to_string(), scores }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(name: &str, running: usize, deps: &[&str]) -> WorkerInfo {
        WorkerInfo {
            name: name.into(),
            concurrency: 2,
            running: (0..running).map(|i| format!("b{i}")).collect(),
            load: (running * 50) as u32,
            capabilities: vec!["javascript:web".into(), "static:web".into()],
            version: String::new(),
            tools: BTreeMap::new(),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
            performance: 10.0,
            accepting: true,
        }
    }

    #[test]
    fn the_documents_scores() {
        let w = worker("a", 1, &["lock"]);
        assert_eq!(w.score("javascript:web", Some("lock")), 50.0 + 30.0 + 50.0 + 10.0);
        assert_eq!(w.score("javascript:web", Some("other")), 30.0 + 50.0 + 10.0);
        assert_eq!(w.score("flutter:web", None), 50.0 + 10.0, "no tools: no +30");
    }

    #[test]
    fn the_best_score_wins_and_a_tie_stays_with_the_reader() {
        let me = worker("a", 0, &[]);
        // Half busy but holding the dependencies: 50 + 30 + 50 + 10, as much as idle `a`.
        let holder = worker("b", 1, &["lock"]);
        let placement = choose(&me, std::slice::from_ref(&holder), "javascript:web", Some("lock"));
        assert_eq!(placement.worker, "a");
        assert_eq!(placement.scores["a"], 140.0);
        assert_eq!(placement.scores["b"], 140.0);
        assert_eq!(placement.reason, "tie", "equal scores stay with the reader");
        let idle_holder = worker("b", 0, &["lock"]);
        let placement = choose(&me, &[idle_holder], "javascript:web", Some("lock"));
        assert_eq!((placement.worker.as_str(), placement.reason.as_str()), ("b", "best score"));
    }

    #[test]
    fn busy_draining_and_incapable_workers_are_not_candidates() {
        let me = worker("a", 0, &[]);
        let busy = worker("b", 2, &["lock"]);
        let mut draining = worker("c", 0, &["lock"]);
        draining.accepting = false;
        let mut incapable = worker("d", 0, &["lock"]);
        incapable.capabilities = vec!["flutter:android".into()];
        let placement = choose(&me, &[busy, draining, incapable], "javascript:web", Some("lock"));
        assert_eq!((placement.worker.as_str(), placement.reason.as_str()), ("a", "only free worker"));
        assert_eq!(placement.scores.len(), 1);
    }

    #[test]
    fn performance_by_the_median_build_against_its_threshold() {
        let monitoring = MonitoringConfig::default();
        assert_eq!(performance_score(&[], &monitoring), 10.0);
        let fast = vec![("javascript:web".to_string(), 12.0); 3];
        assert_eq!(performance_score(&fast, &monitoring), 18.0, "a tenth of 120 s");
        let slow = vec![("flutter:web".to_string(), 900.0)];
        assert_eq!(performance_score(&slow, &monitoring), 0.0, "past the threshold");
    }
}
