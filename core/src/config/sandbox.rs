//! The `sandbox` section: how the commands a build runs are isolated.

use serde::{Deserialize, Serialize};

/// Ours: every external command of a build (hooks, npm, bundlers, flutter) runs in a
/// bubblewrap sandbox: its own mount, PID, IPC, UTS and network namespaces, the build
/// directory the only writable place of the host, limits on processes, file size, CPU time
/// and memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SandboxConfig {
    /// Absent: `auto` for an embedded engine and `build`; `required` for `worker` and `serve`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<SandboxMode>,
    pub network: SandboxNetwork,
    pub limits: SandboxLimits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Sandboxed when bubblewrap works here; otherwise unsandboxed, with a
    /// `sandbox_unavailable` warning on each build that runs a command.
    Auto,
    /// No sandbox, no build: a build that would run a command fails with `sandbox_unavailable`.
    Required,
    /// Commands run unsandboxed (logged once).
    None,
}

/// Which commands may reach the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxNetwork {
    /// Only the steps that must fetch: dependency installs (`npm ci`, `pub get`) and a
    /// flutter build (gradle resolves).
    #[default]
    Dependencies,
    None,
    All,
}

/// Per command. Processes and memory through a cgroup where the host offers one (memory
/// falls back to the address-space limit); file size and CPU time through rlimits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SandboxLimits {
    pub processes: u64,
    pub file_bytes: u64,
    pub cpu_seconds: u64,
    pub memory_bytes: u64,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits { processes: 512, file_bytes: 4 << 30, cpu_seconds: 3600, memory_bytes: 8 << 30 }
    }
}

impl SandboxConfig {
    /// The mode in effect, `default` when the config names none.
    pub fn mode_or(&self, default: SandboxMode) -> SandboxMode {
        self.mode.unwrap_or(default)
    }
}
