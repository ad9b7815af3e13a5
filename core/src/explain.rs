//! `explain`: would the next build hit the cache, and if not, what changed since
//! the last build of that app and target — by file, by config path, by package,
//! by tool.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cache::KeyComponents;
use crate::history::BuildRecord;
use crate::result::BuildStatus;

/// A value that changed: `before` or `after` is null when it was added or removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change<T> {
    pub name: String,
    pub before: Option<T>,
    pub after: Option<T>,
}

/// What differs between two sets of key components.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyDiff {
    pub files_added: Vec<String>,
    pub files_removed: Vec<String>,
    pub files_changed: Vec<String>,
    /// By JSON path (`app.buildConfig.javascript.target`).
    pub config: Vec<Change<Value>>,
    pub dependencies: Vec<Change<String>>,
    pub toolchain: Vec<Change<String>>,
    pub env: Vec<Change<String>>,
    pub engine_version: Option<Change<String>>,
    pub target: Option<Change<String>>,
    pub app_type: Option<Change<String>>,
}

impl KeyDiff {
    pub fn between(before: &KeyComponents, after: &KeyComponents) -> KeyDiff {
        let mut diff = KeyDiff::default();
        for (path, digest) in &after.files {
            match before.files.get(path) {
                None => diff.files_added.push(path.clone()),
                Some(old) if old != digest => diff.files_changed.push(path.clone()),
                Some(_) => {}
            }
        }
        diff.files_removed = before.files.keys().filter(|p| !after.files.contains_key(*p)).cloned().collect();
        json_changes("", &before.config, &after.config, &mut diff.config);
        diff.dependencies = map_changes(&before.dependencies, &after.dependencies);
        diff.toolchain = map_changes(&before.toolchain, &after.toolchain);
        diff.env = map_changes(&before.env, &after.env);
        let scalar = |name: &str, a: &String, b: &String| {
            (a != b).then(|| Change { name: name.to_string(), before: Some(a.clone()), after: Some(b.clone()) })
        };
        diff.engine_version = scalar("engine_version", &before.engine_version, &after.engine_version);
        diff.target = scalar("target", &before.target, &after.target);
        diff.app_type = scalar("app_type", &before.app_type, &after.app_type);
        diff
    }

    pub fn is_empty(&self) -> bool {
        *self == KeyDiff::default()
    }

    /// One line per kind of change, for people.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let files = |label: &str, list: &[String], lines: &mut Vec<String>| {
            if !list.is_empty() {
                let shown: Vec<&str> = list.iter().take(10).map(String::as_str).collect();
                let more = if list.len() > 10 { format!(" and {} more", list.len() - 10) } else { String::new() };
                lines.push(format!("{} file(s) {label}: {}{more}", list.len(), shown.join(", ")));
            }
        };
        files("changed", &self.files_changed, &mut lines);
        files("added", &self.files_added, &mut lines);
        files("removed", &self.files_removed, &mut lines);
        for c in &self.config {
            lines.push(format!("config `{}`: {} → {}", c.name, show(&c.before), show(&c.after)));
        }
        for (label, changes) in [("dependency", &self.dependencies), ("toolchain", &self.toolchain), ("env", &self.env)]
        {
            for c in changes {
                lines.push(format!("{label} `{}`: {} → {}", c.name, show_str(&c.before), show_str(&c.after)));
            }
        }
        for c in [&self.engine_version, &self.target, &self.app_type].into_iter().flatten() {
            lines.push(format!("{}: {} → {}", c.name, show_str(&c.before), show_str(&c.after)));
        }
        lines
    }
}

fn show(v: &Option<Value>) -> String {
    v.as_ref().map_or("(absent)".to_string(), |v| v.to_string())
}

fn show_str(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(absent)".to_string())
}

fn map_changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<Change<String>> {
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| Change { name: n.clone(), before: before.get(n).cloned(), after: after.get(n).cloned() })
        .collect()
}

/// Leaf-level differences between two JSON values, by dotted path.
fn json_changes(path: &str, before: &Value, after: &Value, out: &mut Vec<Change<Value>>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => json_changes(&child, x, y, out),
                    (x, y) => out.push(Change { name: child, before: x.cloned(), after: y.cloned() }),
                }
            }
        }
        (a, b) if a != b => {
            out.push(Change { name: path.to_string(), before: Some(a.clone()), after: Some(b.clone()) })
        }
        _ => {}
    }
}

/// The previous build `explain` compared against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousBuild {
    pub build_id: String,
    pub status: BuildStatus,
    pub key: Option<String>,
    pub finished_at: u64,
}

/// The answer of `explain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub app: String,
    pub target: String,
    /// The key the next build would have.
    pub key: String,
    pub would_hit: bool,
    /// The tier holding the entry, when it would hit.
    pub tier: Option<String>,
    /// Why, in one sentence.
    pub reason: String,
    pub previous: Option<PreviousBuild>,
    /// What changed since `previous` (empty when there is none or nothing changed).
    pub changes: KeyDiff,
}

impl Explanation {
    pub(crate) fn new(
        app: String,
        current: &KeyComponents,
        hit_tier: Option<String>,
        cache_enabled: bool,
        previous: Option<(BuildRecord, KeyComponents)>,
    ) -> Explanation {
        let key = current.key().to_string();
        let changes = previous.as_ref().map(|(_, before)| KeyDiff::between(before, current)).unwrap_or_default();
        let previous = previous.map(|(record, _)| PreviousBuild {
            build_id: record.build_id,
            status: record.status,
            key: record.cache.key,
            finished_at: record.finished_at,
        });
        let reason = match (&hit_tier, &previous) {
            _ if !cache_enabled => "the cache is disabled (buildSystem.cacheEnabled is false)".to_string(),
            (Some(tier), _) => format!("an entry for this key is in the {tier} cache"),
            (None, None) => "no previous build of this app and target is recorded".to_string(),
            (None, Some(p)) if changes.is_empty() => match p.status {
                BuildStatus::Succeeded => {
                    "the inputs equal the last build's, but its cache entry is gone (evicted, expired or invalidated)"
                        .to_string()
                }
                status => format!(
                    "the inputs equal the last build's, which did not store an entry (it ended {})",
                    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
                ),
            },
            (None, Some(_)) => format!("inputs changed since the last build: {}", changes.summary_lines().join("; ")),
        };
        Explanation {
            app,
            target: current.target.clone(),
            key,
            would_hit: hit_tier.is_some(),
            tier: hit_tier,
            reason,
            previous,
            changes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn components() -> KeyComponents {
        KeyComponents {
            engine_version: "1".into(),
            app_type: "static".into(),
            target: "web".into(),
            toolchain: [("node".to_string(), "20.1".to_string())].into(),
            config: serde_json::json!({"app": {"buildConfig": {"javascript": {"target": "es2020"}}, "name": "x"}}),
            dependencies: [("react".to_string(), "18.2.0".to_string())].into(),
            env: BTreeMap::new(),
            files: [("a.js".to_string(), Digest::of(b"a")), ("b.js".to_string(), Digest::of(b"b"))].into(),
        }
    }

    #[test]
    fn diff_names_files_config_paths_packages_and_tools() {
        let before = components();
        let mut after = components();
        after.files.insert("a.js".into(), Digest::of(b"A"));
        after.files.remove("b.js");
        after.files.insert("c.js".into(), Digest::of(b"c"));
        after.config = serde_json::json!({"app": {"buildConfig": {"javascript": {"target": "es2022"}}, "name": "x"}});
        after.dependencies.insert("react".into(), "18.3.1".into());
        after.toolchain.insert("node".into(), "22.0".into());
        let diff = KeyDiff::between(&before, &after);
        assert_eq!(diff.files_changed, vec!["a.js"]);
        assert_eq!(diff.files_removed, vec!["b.js"]);
        assert_eq!(diff.files_added, vec!["c.js"]);
        assert_eq!(diff.config.len(), 1);
        assert_eq!(diff.config[0].name, "app.buildConfig.javascript.target");
        assert_eq!(diff.config[0].after, Some(serde_json::json!("es2022")));
        assert_eq!(diff.dependencies[0].after.as_deref(), Some("18.3.1"));
        assert_eq!(diff.toolchain[0].before.as_deref(), Some("20.1"));
        let lines = diff.summary_lines().join("\n");
        assert!(lines.contains("app.buildConfig.javascript.target") && lines.contains("react"), "{lines}");
        assert!(KeyDiff::between(&before, &before).is_empty());
    }
}
