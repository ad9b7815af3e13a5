//! Cache keys: BLAKE3 over a canonical encoding of everything that decides a build's output.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;

/// The key of an action-cache entry (64 hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(pub Digest);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

impl std::str::FromStr for CacheKey {
    type Err = crate::digest::BadDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(CacheKey)
    }
}

/// Everything that goes into a cache key, kept beside the entry so that `explain`
/// can say which part changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyComponents {
    pub engine_version: String,
    pub app_type: String,
    pub target: String,
    /// Tool name → version (the builder's toolchain fingerprint).
    pub toolchain: BTreeMap<String, String>,
    /// The normalised build configuration (app config with defaults, plus the
    /// engine settings that change outputs).
    pub config: Value,
    /// Package → resolved version (from the lockfile).
    pub dependencies: BTreeMap<String, String>,
    /// Allow-listed environment variables.
    pub env: BTreeMap<String, String>,
    /// Relative path → content digest, sorted by path.
    pub files: BTreeMap<String, Digest>,
}

/// Bump when the encoding or the meaning of a component changes.
const KEY_SCHEMA: &[u8] = b"workz-build cache key v1";

impl KeyComponents {
    /// The key: BLAKE3 over a length-prefixed canonical encoding of every component.
    pub fn key(&self) -> CacheKey {
        let mut h = Encoder(blake3::Hasher::new());
        h.bytes(KEY_SCHEMA);
        h.field("engine", self.engine_version.as_bytes());
        h.field("app_type", self.app_type.as_bytes());
        h.field("target", self.target.as_bytes());
        h.map("toolchain", &self.toolchain);
        let mut config = Vec::new();
        canonical_json(&self.config, &mut config);
        h.field("config", &config);
        h.map("dependencies", &self.dependencies);
        h.map("env", &self.env);
        h.field("files", &(self.files.len() as u64).to_le_bytes());
        for (path, digest) in &self.files {
            h.bytes(path.as_bytes());
            h.bytes(digest.as_bytes());
        }
        CacheKey(Digest::from(h.0.finalize()))
    }
}

struct Encoder(blake3::Hasher);

impl Encoder {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update(&(b.len() as u64).to_le_bytes());
        self.0.update(b);
    }
    fn field(&mut self, name: &str, value: &[u8]) {
        self.bytes(name.as_bytes());
        self.bytes(value);
    }
    fn map(&mut self, name: &str, map: &BTreeMap<String, String>) {
        self.field(name, &(map.len() as u64).to_le_bytes());
        for (k, v) in map {
            self.bytes(k.as_bytes());
            self.bytes(v.as_bytes());
        }
    }
}

/// JSON with object keys sorted and no whitespace, whatever map order serde_json was built with.
pub(crate) fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical_json(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn components() -> KeyComponents {
        KeyComponents {
            engine_version: "0.1.0".into(),
            app_type: "static".into(),
            target: "web".into(),
            toolchain: BTreeMap::new(),
            config: serde_json::json!({"b": 1, "a": {"y": [1, 2], "x": null}}),
            dependencies: BTreeMap::new(),
            env: BTreeMap::new(),
            files: [("index.html".to_string(), Digest::of(b"x"))].into_iter().collect(),
        }
    }

    #[test]
    fn every_component_changes_the_key() {
        let base = components();
        let key = base.key();
        assert_eq!(key, components().key(), "deterministic");
        let mut variants = Vec::new();
        let mut c = base.clone();
        c.target = "android".into();
        variants.push(c);
        let mut c = base.clone();
        c.engine_version = "0.2.0".into();
        variants.push(c);
        let mut c = base.clone();
        c.toolchain.insert("node".into(), "20".into());
        variants.push(c);
        let mut c = base.clone();
        c.config = serde_json::json!({"b": 2, "a": {"y": [1, 2], "x": null}});
        variants.push(c);
        let mut c = base.clone();
        c.dependencies.insert("react".into(), "18.2.0".into());
        variants.push(c);
        let mut c = base.clone();
        c.env.insert("NODE_ENV".into(), "production".into());
        variants.push(c);
        let mut c = base.clone();
        c.files.insert("index.html".into(), Digest::of(b"y"));
        variants.push(c);
        let mut c = base.clone();
        c.files.insert("a.js".into(), Digest::of(b"x"));
        variants.push(c);
        for v in variants {
            assert_ne!(v.key(), key, "{v:?}");
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let mut a = components();
        a.toolchain.insert("ab".into(), "c".into());
        let mut b = components();
        b.toolchain.insert("a".into(), "bc".into());
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let mut out = Vec::new();
        canonical_json(&serde_json::json!({"b": 1, "a": {"d": "x", "c": true}}), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"a":{"c":true,"d":"x"},"b":1}"#);
    }
}
