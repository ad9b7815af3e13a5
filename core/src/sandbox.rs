//! The sandbox every external command of a build runs in: bubblewrap (the one Flatpak uses),
//! with the namespaces containers use. A command sees the system's read-only tool
//! directories, a minimal `/etc`, the build directory (the only writable place of the host),
//! a private `/tmp` and `HOME`; it gets its own PID, IPC, UTS and network namespaces (the
//! network only for the steps that must fetch, as `sandbox.network` allows), dies with the
//! engine, and runs under limits: processes and memory through a cgroup where the host has
//! one, file size and CPU time through rlimits. In-process work (rolldown, lightningcss) is not
//! concerned: it runs no code of the app.

use std::ffi::{CString, OsString};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::config::{SandboxConfig, SandboxLimits, SandboxMode, SandboxNetwork};

/// `HOME` inside the sandbox: a private tmpfs, so that nothing a tool keeps there reaches the
/// build's outputs or another command.
pub const SANDBOX_HOME: &str = "/home/workz";
/// What `/etc` holds inside: name resolution, users, certificates, time zone, the linker cache
/// and Debian's alternatives (tools in `/usr/bin` link through them).
const ETC: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
];
/// Top-level directories that are links into `/usr` on merged-/usr systems, or directories.
const SYSTEM_DIRS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// The SDKs the host's environment names (Android SDK, JDK): a sandboxed build reads them.
fn toolchain_dirs() -> Vec<PathBuf> {
    ["ANDROID_HOME", "ANDROID_SDK_ROOT", "JAVA_HOME"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .collect()
}

/// What `doctor` says of the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxProbe {
    pub available: bool,
    pub tool: String,
    pub version: Option<String>,
    /// Controllers (`pids`, `memory`) this process may make a cgroup of per command; the
    /// processes and memory limits need them (memory falls back to `RLIMIT_AS`).
    #[serde(default)]
    pub cgroups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Why it is not available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether bubblewrap is installed and can make namespaces here (checked once per process:
/// a container may forbid user namespaces even with the tool present).
pub fn probe() -> &'static SandboxProbe {
    static PROBE: OnceLock<SandboxProbe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let missing = |reason: String| SandboxProbe {
            available: false,
            tool: "bwrap".into(),
            version: None,
            cgroups: Vec::new(),
            path: None,
            reason: Some(reason),
        };
        let path = std::env::var_os("PATH").unwrap_or_default();
        let Some(bwrap) = std::env::split_paths(&path).map(|d| d.join("bwrap")).find(|p| p.is_file()) else {
            return missing("`bwrap` is not on PATH (Debian/Ubuntu: apt-get install bubblewrap)".into());
        };
        let version = std::process::Command::new(&bwrap)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("bubblewrap ").to_string());
        let trial = std::process::Command::new(&bwrap)
            .args(["--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--", "/bin/sh", "-c", "exit 0"])
            .output();
        match trial {
            Ok(out) if out.status.success() => SandboxProbe {
                available: true,
                tool: "bwrap".into(),
                version,
                cgroups: Cgroups::find().parents.iter().map(|(c, _)| c.to_string()).collect(),
                path: Some(bwrap),
                reason: None,
            },
            Ok(out) => SandboxProbe {
                version,
                path: Some(bwrap),
                ..missing(format!("bwrap cannot make namespaces here: {}", String::from_utf8_lossy(&out.stderr).trim()))
            },
            Err(e) => missing(format!("bwrap cannot be run: {e}")),
        }
    })
}

#[derive(Debug)]
enum State {
    Bubblewrap(PathBuf),
    /// The mode asks for a sandbox and there is none: `required` fails, `auto` warns.
    Missing {
        required: bool,
        reason: String,
    },
    Off,
}

/// How the commands of an engine's builds are sandboxed.
#[derive(Debug)]
pub struct Sandbox {
    state: State,
    network: SandboxNetwork,
    limits: SandboxLimits,
    /// Directories of the host a command may read besides the system's (SDKs).
    readable: Vec<PathBuf>,
    /// Directories of those it may also write (the Flutter SDK's `bin/cache`: the tool takes
    /// its lock and keeps its artifacts there, and will not run without it).
    tool_writable: Vec<PathBuf>,
    /// Per controller (`pids`, `memory`), the cgroup directory under which a command's own
    /// cgroup is made; empty where the host offers none that this process may write.
    cgroups: Cgroups,
}

/// What a command runs in.
pub enum Confinement {
    Sandboxed(Jail),
    /// `auto` without bubblewrap: run as is, with this warning on the build.
    Unconfined {
        warning: String,
    },
    Off,
}

impl Sandbox {
    /// The sandbox `config` asks for (`default_mode` when it names none); `readable`: host
    /// directories commands may read (configured SDKs).
    pub fn new(
        config: &SandboxConfig,
        default_mode: SandboxMode,
        readable: Vec<PathBuf>,
        tool_writable: Vec<PathBuf>,
    ) -> Sandbox {
        let state = match config.mode_or(default_mode) {
            SandboxMode::None => {
                tracing::info!("sandbox.mode is \"none\": build commands run unsandboxed");
                State::Off
            }
            mode => {
                let probe = probe();
                match (&probe.path, probe.available) {
                    (Some(bwrap), true) => State::Bubblewrap(bwrap.clone()),
                    _ => State::Missing {
                        required: mode == SandboxMode::Required,
                        reason: probe.reason.clone().unwrap_or_default(),
                    },
                }
            }
        };
        let cgroups = if matches!(state, State::Bubblewrap(_)) { Cgroups::find() } else { Cgroups::default() };
        Sandbox { state, network: config.network, limits: config.limits.clone(), readable, tool_writable, cgroups }
    }

    /// No sandbox: the engine's own commands (tool version probes, the scale command).
    pub fn off() -> Sandbox {
        Sandbox {
            state: State::Off,
            network: SandboxNetwork::All,
            limits: SandboxLimits::default(),
            readable: Vec::new(),
            tool_writable: Vec::new(),
            cgroups: Cgroups::default(),
        }
    }

    /// How a command of the build in `build_dir` runs: `fetches` when it is a step that may
    /// need the network (a dependency install), `writable`: host paths it must write besides
    /// the build directory (the npm cache of an install).
    pub(crate) fn confine(
        &self,
        build_dir: &Path,
        cwd: &Path,
        fetches: bool,
        writable: &[PathBuf],
    ) -> Result<Confinement, String> {
        let bwrap = match &self.state {
            State::Off => return Ok(Confinement::Off),
            State::Missing { required: true, reason } => return Err(reason.clone()),
            State::Missing { required: false, reason } => {
                return Ok(Confinement::Unconfined {
                    warning: format!("build commands ran unsandboxed: {reason} (sandbox.mode \"auto\")"),
                });
            }
            State::Bubblewrap(bwrap) => bwrap,
        };
        let network = match self.network {
            SandboxNetwork::All => true,
            SandboxNetwork::None => false,
            SandboxNetwork::Dependencies => fetches,
        };
        let mut args: Vec<OsString> =
            ["--unshare-all", "--die-with-parent", "--hostname", "workz-sandbox"].iter().map(OsString::from).collect();
        if network {
            args.push("--share-net".into());
        }
        let mut arg = |parts: &[&std::ffi::OsStr]| args.extend(parts.iter().map(|p| p.to_os_string()));
        arg(&["--ro-bind".as_ref(), "/usr".as_ref(), "/usr".as_ref()]);
        for dir in SYSTEM_DIRS {
            let path = Path::new(dir);
            match std::fs::read_link(path) {
                Ok(target) => arg(&["--symlink".as_ref(), target.as_os_str(), path.as_os_str()]),
                Err(_) if path.is_dir() => arg(&["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()]),
                Err(_) => {}
            }
        }
        arg(&["--proc".as_ref(), "/proc".as_ref(), "--dev".as_ref(), "/dev".as_ref()]);
        // The private /tmp and /home first: what is bound below may live under them.
        arg(&["--tmpfs".as_ref(), "/tmp".as_ref(), "--tmpfs".as_ref(), "/home".as_ref()]);
        arg(&["--dir".as_ref(), SANDBOX_HOME.as_ref()]);
        // The environment's SDKs as they are now (a worker's ANDROID_HOME may change).
        let toolchains = toolchain_dirs();
        for file in ETC.iter().map(Path::new).chain(self.readable.iter().chain(&toolchains).map(PathBuf::as_path)) {
            arg(&["--ro-bind-try".as_ref(), file.as_os_str(), file.as_os_str()]);
        }
        for dir in &self.tool_writable {
            arg(&["--bind-try".as_ref(), dir.as_os_str(), dir.as_os_str()]);
        }
        arg(&["--bind".as_ref(), build_dir.as_os_str(), build_dir.as_os_str()]);
        for path in writable {
            std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            arg(&["--bind".as_ref(), path.as_os_str(), path.as_os_str()]);
        }
        arg(&["--chdir".as_ref(), cwd.as_os_str()]);
        let mut visible: Vec<PathBuf> = ["/usr", "/bin", "/sbin", "/lib", "/lib64"].iter().map(PathBuf::from).collect();
        visible.extend(self.readable.iter().cloned());
        visible.extend(toolchains);
        visible.push(build_dir.to_path_buf());
        let cgroups = self.cgroups.make(&self.limits);
        let memory_by_cgroup = cgroups.iter().any(|c| c.controller == "memory");
        Ok(Confinement::Sandboxed(Jail {
            bwrap: bwrap.clone(),
            args,
            network,
            enter: cgroups
                .iter()
                .filter_map(|c| CString::new(c.dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).ok())
                .collect(),
            rlimits: Rlimits::of(&self.limits, !memory_by_cgroup),
            cgroups,
            limits: self.limits.clone(),
            visible,
        }))
    }
}

/// One command's sandbox: bubblewrap's arguments, its cgroups and rlimits.
pub struct Jail {
    bwrap: PathBuf,
    args: Vec<OsString>,
    /// Whether the command may reach the network.
    pub network: bool,
    /// `cgroup.procs` files the command enters before it runs (made before the fork: the
    /// child may only make async-signal-safe calls).
    enter: Vec<CString>,
    rlimits: Rlimits,
    cgroups: Vec<Cgroup>,
    limits: SandboxLimits,
    /// Directories of the host the command sees.
    visible: Vec<PathBuf>,
}

/// A limit a command ran into: which, and its configured value.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitHit {
    /// The key under `sandbox.limits`.
    pub limit: &'static str,
    pub value: u64,
}

impl Jail {
    /// Whether the command sees `dir` of the host (a PATH entry, say).
    pub fn shows(&self, dir: &Path) -> bool {
        self.visible.iter().any(|v| dir.starts_with(v))
    }

    /// The program and arguments that run `program args` in this sandbox.
    pub fn command(&self, program: &Path, args: &[String]) -> (PathBuf, Vec<OsString>) {
        let mut all = self.args.clone();
        all.push("--".into());
        all.push(program.as_os_str().to_os_string());
        all.extend(args.iter().map(OsString::from));
        (self.bwrap.clone(), all)
    }

    /// In the forked child, before exec: join the cgroups, set the rlimits. Only
    /// async-signal-safe calls (open, write, close, setrlimit).
    pub fn enter(&self) -> std::io::Result<()> {
        for procs in &self.enter {
            // SAFETY: a NUL-terminated path made before the fork; plain syscalls.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0": the writing process itself.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        self.rlimits.set()
    }

    /// The limit the command ran into, from how it ended and its cgroups' counters.
    pub fn limit_hit(&self, status: &ExitStatus) -> Option<LimitHit> {
        // bwrap ends with 128 + the signal that ended the command.
        let signal = status.signal().or_else(|| status.code().filter(|c| *c > 128).map(|c| c - 128));
        let hit = |limit, value| Some(LimitHit { limit, value });
        for cgroup in &self.cgroups {
            if cgroup.tripped() {
                return match cgroup.controller {
                    "memory" => hit("memoryBytes", self.limits.memory_bytes),
                    _ => hit("processes", self.limits.processes),
                };
            }
        }
        match signal {
            Some(libc::SIGXFSZ) => hit("fileBytes", self.limits.file_bytes),
            Some(libc::SIGXCPU) => hit("cpuSeconds", self.limits.cpu_seconds),
            Some(libc::SIGKILL | libc::SIGSEGV) if self.rlimits.address_space.is_some() => {
                // Without a memory cgroup the address-space limit stands in: a tool that
                // cannot map memory usually dies of it.
                hit("memoryBytes", self.limits.memory_bytes)
            }
            _ => None,
        }
    }
}

impl Drop for Jail {
    fn drop(&mut self) {
        // Usually empty by now; one whose last process is still exiting is removed in the
        // background, so that the build does not wait on the kernel.
        let busy: Vec<Cgroup> = self.cgroups.drain(..).filter(|c| std::fs::remove_dir(&c.dir).is_err()).collect();
        if !busy.is_empty() {
            std::thread::spawn(move || busy.iter().for_each(Cgroup::remove));
        }
    }
}

/// File size, CPU time and (without a memory cgroup) address space.
#[derive(Debug, Clone, Copy)]
struct Rlimits {
    file_bytes: u64,
    cpu_seconds: u64,
    address_space: Option<u64>,
}

impl Rlimits {
    fn of(limits: &SandboxLimits, address_space: bool) -> Rlimits {
        Rlimits {
            file_bytes: limits.file_bytes,
            cpu_seconds: limits.cpu_seconds,
            address_space: address_space.then_some(limits.memory_bytes),
        }
    }

    fn set(&self) -> std::io::Result<()> {
        let set = |resource, soft: u64, hard: u64| {
            let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
            // SAFETY: a plain syscall on a value on the stack.
            if unsafe { libc::setrlimit(resource, &limit) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        };
        set(libc::RLIMIT_FSIZE, self.file_bytes, self.file_bytes)?;
        // SIGXCPU at the limit, SIGKILL a little later if the command ignores it.
        set(libc::RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 5)?;
        if let Some(bytes) = self.address_space {
            set(libc::RLIMIT_AS, bytes, bytes)?;
        }
        Ok(())
    }
}

/// The cgroup directories (v1 `pids` and `memory` controllers, or the v2 hierarchy) under
/// which this process may make a cgroup per command.
#[derive(Debug, Default)]
struct Cgroups {
    parents: Vec<(&'static str, PathBuf)>,
    v2: bool,
}

struct Cgroup {
    controller: &'static str,
    dir: PathBuf,
    v2: bool,
}

static NEXT_CGROUP: AtomicU64 = AtomicU64::new(0);

impl Cgroups {
    fn find() -> Cgroups {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut parents = Vec::new();
        let mut v2 = false;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = match (parts.next(), parts.next(), parts.next()) {
                (Some(id), Some(c), Some(p)) => (id, c, p.trim_start_matches('/')),
                _ => continue,
            };
            for controller in ["pids", "memory"] {
                if controllers.split(',').any(|c| c == controller) {
                    let dir = Path::new("/sys/fs/cgroup").join(controller).join(path);
                    if writable_dir(&dir) {
                        parents.push((controller, dir));
                    }
                }
            }
            if controllers.is_empty() && parents.is_empty() {
                let dir = Path::new("/sys/fs/cgroup").join(path);
                let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                if writable_dir(&dir) && enabled.contains("pids") {
                    v2 = true;
                    parents.push(("pids", dir.clone()));
                    if enabled.contains("memory") {
                        parents.push(("memory", dir));
                    }
                }
            }
        }
        if v2 {
            parents.retain(|(_, d)| !d.starts_with("/sys/fs/cgroup/pids") && !d.starts_with("/sys/fs/cgroup/memory"));
        }
        Cgroups { parents, v2 }
    }

    /// A cgroup per controller for one command, its limit set; none where that fails.
    fn make(&self, limits: &SandboxLimits) -> Vec<Cgroup> {
        let name = format!("workz-{}-{}", std::process::id(), NEXT_CGROUP.fetch_add(1, Ordering::Relaxed));
        let mut made: Vec<Cgroup> = Vec::new();
        for (controller, parent) in &self.parents {
            // On v2 one directory holds both controllers.
            let dir = parent.join(&name);
            if !made.iter().any(|c| c.dir == dir) && std::fs::create_dir(&dir).is_err() {
                continue;
            }
            let (file, value) = match (*controller, self.v2) {
                ("pids", _) => ("pids.max", limits.processes),
                (_, true) => ("memory.max", limits.memory_bytes),
                _ => ("memory.limit_in_bytes", limits.memory_bytes),
            };
            if std::fs::write(dir.join(file), value.to_string()).is_ok() {
                made.push(Cgroup { controller, dir, v2: self.v2 });
            } else if !made.iter().any(|c| c.dir == dir) {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        if self.v2 {
            // One cgroup.procs to enter on v2: keep the first, the others share its directory.
            let mut seen = Vec::new();
            made.retain(|c| {
                let first = !seen.contains(&c.dir);
                seen.push(c.dir.clone());
                first || c.controller == "memory"
            });
        }
        made
    }
}

impl Cgroup {
    /// Whether the command ran into this cgroup's limit.
    fn tripped(&self) -> bool {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        let counter = |text: &str, key: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix(key))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .next()
                .unwrap_or(0)
        };
        match (self.controller, self.v2) {
            ("pids", _) => counter(&read("pids.events"), "max") > 0,
            (_, true) => counter(&read("memory.events"), "oom_kill") > 0,
            _ => counter(&read("memory.oom_control"), "oom_kill") > 0 || counter(&read("memory.failcnt"), "") > 0,
        }
    }

    fn remove(&self) {
        // The command and its group are gone; a process still exiting may hold it a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        tracing::warn!("cgroup {} could not be removed", self.dir.display());
    }
}

fn writable_dir(dir: &Path) -> bool {
    let c = match CString::new(dir.as_os_str().as_encoded_bytes()) {
        Ok(c) => c,
        Err(_) => return false,
    };
    // SAFETY: a NUL-terminated path; access(2) only reads it.
    dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0
}
