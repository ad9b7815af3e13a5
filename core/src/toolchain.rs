//! Tool versions for cache keys, asked once per installed binary: a probe such as
//! `npm --version` (~0.3 s) or `flutter --version` (seconds) would otherwise dominate
//! every cache hit. A version is remembered by the resolved binary's path, size and
//! mtime, so replacing the tool asks again.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::events::EventEmitter;
use crate::process::{CommandSpec, ProcessRunner};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    path: PathBuf,
    size: u64,
    mtime_ns: i128,
    /// Size and mtime of the files that hold the version of an SDK whose launcher script is
    /// the same in every release (flutter's `bin/flutter`).
    #[serde(default)]
    version_files: Vec<(PathBuf, u64, i128)>,
}

/// Launchers whose SDK keeps its version in other files, relative to the launcher's directory.
const VERSION_FILES: &[(&str, &[&str])] = &[("flutter", &["../version", "cache/flutter.version.json"])];

fn file_stamp(path: &Path) -> Option<(u64, i128)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())))
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Remembered {
    tools: BTreeMap<String, (Stamp, String)>,
}

/// The binary `program` resolves to on PATH, with what identifies its installed version.
fn stamp(program: &str) -> Option<Stamp> {
    let path_var = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path_var).map(|d| d.join(program)).find(|p| p.is_file())?;
    let real = std::fs::canonicalize(&found).ok()?;
    let (size, mtime_ns) = file_stamp(&real)?;
    let name = real.file_name()?.to_str()?;
    let dir = real.parent()?;
    let version_files = VERSION_FILES
        .iter()
        .filter(|(launcher, _)| *launcher == name)
        .flat_map(|(_, files)| files.iter())
        .filter_map(|f| file_stamp(&dir.join(f)).map(|(size, mtime)| (dir.join(f), size, mtime)))
        .collect();
    Some(Stamp { path: real, size, mtime_ns, version_files })
}

/// Versions of `tools` (name → probe arguments), from `<state_dir>/toolchain.json` when the
/// binary is unchanged, else by running the probe in `cwd`. A tool that is missing or whose
/// probe fails is left out.
pub async fn versions(state_dir: &Path, cwd: &Path, tools: &[(&str, &[&str])]) -> BTreeMap<String, String> {
    let file = state_dir.join("toolchain.json");
    let mut remembered: Remembered =
        std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut changed = false;
    let mut out = BTreeMap::new();
    // Probes are the engine's business, not the build's: their output is not streamed.
    let (quiet, _) = EventEmitter::collecting("toolchain-probe");
    let off = std::sync::Arc::new(crate::sandbox::Sandbox::off());
    let runner = ProcessRunner::new(cwd.to_path_buf(), &[], BTreeMap::new(), quiet, Default::default(), 1 << 16, off);
    for (tool, args) in tools {
        let Some(stamp) = stamp(tool) else { continue };
        if let Some((known, version)) = remembered.tools.get(*tool)
            && *known == stamp
        {
            out.insert(tool.to_string(), version.clone());
            continue;
        }
        let Ok(mut spec) = CommandSpec::from_command_line(tool, cwd) else { continue };
        spec.args = args.iter().map(|a| a.to_string()).collect();
        spec.timeout = Some(Duration::from_secs(60));
        let Ok(output) = runner.run_capturing(&spec).await else { continue };
        let version = output.stdout.trim().trim_start_matches('v').to_string();
        remembered.tools.insert(tool.to_string(), (stamp, version.clone()));
        changed = true;
        out.insert(tool.to_string(), version);
    }
    if changed && let Ok(json) = serde_json::to_vec(&remembered) {
        // Best effort: a lost write only means probing again.
        let _ = crate::files::write_atomic(&file, &json);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_are_probed_once_per_binary() {
        let state = tempfile::tempdir().unwrap();
        let cwd = tempfile::tempdir().unwrap();
        let first =
            versions(state.path(), cwd.path(), &[("sh", &["-c", "echo v1.2.3"]), ("no-such-tool-xyz", &["--version"])])
                .await;
        assert_eq!(first.get("sh").map(String::as_str), Some("1.2.3"));
        assert!(!first.contains_key("no-such-tool-xyz"));
        // The remembered answer is used while the binary is unchanged (the probe would say otherwise).
        let second = versions(state.path(), cwd.path(), &[("sh", &["-c", "echo v9"])]).await;
        assert_eq!(second.get("sh").map(String::as_str), Some("1.2.3"));
    }
}
