//! The one way the engine runs external commands (hooks, npm, flutter, …).
//!
//! Argv only, never a shell: a hook string is split into words with shell-style
//! quoting and run directly, so `; rm -rf ~` is just an argument. Each command
//! gets a controlled environment, runs in its own process group inside the build
//! directory, streams its output as log events (capped), and is killed with its
//! whole group on timeout, cancellation, or when the build is dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio_util::sync::CancellationToken;

use crate::config::split_command;
use crate::events::{BuildEvent, EventEmitter, LogStream};
use crate::report::Category;
use crate::sandbox::{Confinement, Sandbox};

/// Errors of external commands.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("invalid command {command:?}: {message}")]
    InvalidCommand { command: String, message: String },
    #[error("`{program}` was not found on PATH")]
    ToolchainMissing { program: String },
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` exited with {status}{}", tail_suffix(.stderr_tail))]
    Failed {
        command: String,
        status: String,
        stderr_tail: String,
        /// Set by callers that know the failure is transient (a registry timeout, say).
        retryable: bool,
        /// It ran in a sandbox without network.
        offline: bool,
    },
    #[error("`{command}` ran into the sandbox's {limit} limit ({value}) and was stopped")]
    ResourceLimit { command: String, limit: &'static str, value: u64 },
    #[error("no sandbox for `{command}`: {reason}")]
    SandboxUnavailable { command: String, reason: String },
    #[error("`{command}` did not finish within {}s and was killed with its process group", .after.as_secs())]
    TimedOut { command: String, after: Duration },
    #[error("working directory {0} is outside the build directory")]
    OutsideBuildDir(PathBuf),
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() { String::new() } else { format!(": {tail}") }
}

impl crate::report::ErrorCode for ProcessError {
    fn code(&self) -> &'static str {
        match self {
            ProcessError::InvalidCommand { .. } => "hook_invalid",
            ProcessError::ToolchainMissing { .. } => "toolchain_missing",
            ProcessError::Spawn { .. } | ProcessError::OutsideBuildDir(_) => "process_spawn_failed",
            ProcessError::Failed { .. } => "process_failed",
            ProcessError::TimedOut { .. } => "process_timed_out",
            ProcessError::ResourceLimit { .. } => "resource_limit_exceeded",
            ProcessError::SandboxUnavailable { .. } => "sandbox_unavailable",
        }
    }

    fn category(&self) -> Category {
        match self {
            ProcessError::InvalidCommand { .. } | ProcessError::ResourceLimit { .. } => Category::User,
            ProcessError::SandboxUnavailable { .. } => Category::Infrastructure,
            _ => Category::Toolchain,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ProcessError::InvalidCommand { .. } => {
                Some("Hooks are argv words with shell-style quoting; shell operators (; | && >) are not interpreted.".into())
            }
            ProcessError::ToolchainMissing { program } => Some(format!(
                "Install `{program}` on the build worker and make sure it is on PATH (`workz-build doctor` lists the toolchains found)."
            )),
            ProcessError::Failed { offline: true, .. } => Some(
                "Read the command's output above the error (the build's log events). It ran without network: only dependency installs may fetch (sandbox.network \"dependencies\"); set sandbox.network to \"all\" if this step must, or fetch in a dependency."
                    .into(),
            ),
            ProcessError::Failed { .. } => Some("Read the command's output above the error (the build's log events).".into()),
            ProcessError::ResourceLimit { limit, value, .. } => Some(format!(
                "The build's commands are limited by sandbox.limits.{limit} (now {value}); raise it in the engine config if the build legitimately needs more."
            )),
            ProcessError::SandboxUnavailable { .. } => Some(
                "Install bubblewrap on the worker (Debian/Ubuntu: apt-get install bubblewrap) and allow user namespaces, or set sandbox.mode to \"auto\" (run unsandboxed with a warning) or \"none\"."
                    .into(),
            ),
            ProcessError::TimedOut { .. } => Some(
                "Check that the command does not wait for input or hang on the network; raise the timeout if it is legitimately slow."
                    .into(),
            ),
            _ => None,
        }
    }

    fn is_retryable(&self) -> bool {
        matches!(self, ProcessError::Failed { retryable: true, .. })
    }

    fn family(&self) -> crate::report::Family {
        use crate::report::Family;
        match self {
            ProcessError::InvalidCommand { .. } => Family::Validation,
            ProcessError::ToolchainMissing { .. }
            | ProcessError::Spawn { .. }
            | ProcessError::OutsideBuildDir(_)
            | ProcessError::Failed { .. }
            | ProcessError::SandboxUnavailable { .. } => Family::Toolchain,
            ProcessError::ResourceLimit { .. } => Family::Timeout,
            ProcessError::TimedOut { .. } => Family::Timeout,
        }
    }
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Working directory: must be inside the runner's build directory.
    pub cwd: PathBuf,
    /// Variables added to the controlled environment.
    pub env: BTreeMap<String, String>,
    /// Kill the process group after this long (the build timeout still applies).
    pub timeout: Option<Duration>,
    /// A step that may fetch (a dependency install): it gets the network when
    /// `sandbox.network` is `"dependencies"`.
    pub network: bool,
    /// Host directories it must write besides the build directory (the npm cache).
    pub writable: Vec<PathBuf>,
}

impl CommandSpec {
    /// A command from a hook string such as `"dart analyze --fatal-infos"`.
    pub fn from_command_line(command: &str, cwd: &Path) -> Result<CommandSpec, ProcessError> {
        let mut words = split_command(command)
            .map_err(|message| ProcessError::InvalidCommand { command: command.to_string(), message })?;
        let program = words.remove(0);
        Ok(CommandSpec {
            program,
            args: words,
            cwd: cwd.to_path_buf(),
            env: BTreeMap::new(),
            timeout: None,
            network: false,
            writable: Vec::new(),
        })
    }

    fn display(&self) -> String {
        let mut all = vec![self.program.clone()];
        all.extend(self.args.iter().cloned());
        shlex::try_join(all.iter().map(String::as_str)).unwrap_or_else(|_| all.join(" "))
    }
}

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    pub duration: Duration,
    /// The last lines of stderr (also kept on success, for tools that warn there).
    pub stderr_tail: String,
    /// All of stdout when `capture_stdout` was asked, else empty.
    pub stdout: String,
}

/// Variables passed through from the host environment to every command.
const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ"];
const STDERR_TAIL_LINES: usize = 20;
const STDOUT_CAPTURE_LIMIT: usize = 4 << 20;

/// Runs commands for one build.
#[derive(Debug, Clone)]
pub struct ProcessRunner {
    build_dir: PathBuf,
    env: BTreeMap<String, String>,
    events: EventEmitter,
    cancel: CancellationToken,
    max_log_bytes: u64,
    sandbox: Arc<Sandbox>,
    /// Host directories every command may write besides the build directory.
    writable: Vec<PathBuf>,
}

impl ProcessRunner {
    /// `allowed_env` names host variables passed through besides the base set.
    pub fn new(
        build_dir: PathBuf,
        allowed_env: &[String],
        extra_env: BTreeMap<String, String>,
        events: EventEmitter,
        cancel: CancellationToken,
        max_log_bytes: u64,
        sandbox: Arc<Sandbox>,
    ) -> ProcessRunner {
        let mut env = BTreeMap::new();
        for name in BASE_ENV.iter().copied().chain(allowed_env.iter().map(String::as_str)) {
            if let Ok(value) = std::env::var(name) {
                env.insert(name.to_string(), value);
            }
        }
        env.extend(extra_env);
        ProcessRunner { build_dir, env, events, cancel, max_log_bytes, sandbox, writable: Vec::new() }
    }

    /// The same runner, its commands also writing `dirs`.
    pub fn writing(mut self, dirs: Vec<PathBuf>) -> ProcessRunner {
        self.writable = dirs;
        self
    }

    pub fn build_dir(&self) -> &Path {
        &self.build_dir
    }

    /// Run a command, streaming its output; fail on a non-zero exit.
    pub async fn run(&self, spec: &CommandSpec) -> Result<ProcessOutput, ProcessError> {
        self.run_inner(spec, false).await
    }

    /// Run a command and also return its stdout (for tools that answer on stdout).
    pub async fn run_capturing(&self, spec: &CommandSpec) -> Result<ProcessOutput, ProcessError> {
        self.run_inner(spec, true).await
    }

    async fn run_inner(&self, spec: &CommandSpec, capture_stdout: bool) -> Result<ProcessOutput, ProcessError> {
        if !spec.cwd.starts_with(&self.build_dir) || spec.cwd.components().any(|c| c.as_os_str() == "..") {
            return Err(ProcessError::OutsideBuildDir(spec.cwd.clone()));
        }
        let command_text = spec.display();
        let confinement = self
            .sandbox
            .confine(&self.build_dir, &spec.cwd, spec.network, &[&self.writable[..], &spec.writable[..]].concat())
            .map_err(|reason| ProcessError::SandboxUnavailable { command: command_text.clone(), reason })?;
        let jail = match confinement {
            Confinement::Sandboxed(jail) => Some(Arc::new(jail)),
            Confinement::Unconfined { warning } => {
                self.events.warn_shared("sandbox_unavailable", warning);
                None
            }
            Confinement::Off => None,
        };
        // In a sandbox only what is mounted there can run: the PATH keeps those directories.
        let mut path_var = spec.env.get("PATH").or_else(|| self.env.get("PATH")).cloned().unwrap_or_default();
        if let Some(jail) = &jail {
            let dirs: Vec<PathBuf> = std::env::split_paths(&path_var).filter(|d| jail.shows(d)).collect();
            path_var = std::env::join_paths(dirs).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        }
        let program = resolve_program(&spec.program, &path_var, &spec.cwd)
            .ok_or_else(|| ProcessError::ToolchainMissing { program: spec.program.clone() })?;
        let (executable, args): (PathBuf, Vec<std::ffi::OsString>) = match &jail {
            Some(jail) => jail.command(&program, &spec.args),
            None => (program.clone(), spec.args.iter().map(Into::into).collect()),
        };
        let mut command = tokio::process::Command::new(&executable);
        command
            .args(&args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(&self.env)
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // The command has a group of its own (for timeouts), so a signal to the engine's group
        // does not reach it: it is killed when the engine dies instead (SIGKILL included).
        if jail.is_some() {
            command.env("HOME", crate::sandbox::SANDBOX_HOME).env("PATH", &path_var);
        }
        let parent = std::process::id() as libc::pid_t;
        let entering = jail.clone();
        // SAFETY: only async-signal-safe calls (prctl, getppid; the jail's open, write,
        // setrlimit) between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if let Some(jail) = &entering {
                    jail.enter()?;
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The engine died before the prctl: do not start an orphan.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the engine exited"));
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child =
            command.spawn().map_err(|source| ProcessError::Spawn { program: spec.program.clone(), source })?;
        let group = ProcessGroup(child.id().map(|pid| pid as i32));
        self.events.emit(BuildEvent::ProcessStarted { command: command_text.clone() });

        let budget = LogBudget::new(self.max_log_bytes);
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(pump(s, LogStream::Stdout, self.events.clone(), budget.clone(), capture_stdout)));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(s, LogStream::Stderr, self.events.clone(), budget.clone(), false)));

        let timeout = spec.timeout.unwrap_or(Duration::MAX);
        let status = tokio::select! {
            status = child.wait() => status.map_err(|source| ProcessError::Spawn { program: spec.program.clone(), source })?,
            _ = sleep_for(timeout) => {
                group.kill();
                let _ = child.wait().await;
                return Err(ProcessError::TimedOut { command: command_text, after: timeout });
            }
            _ = self.cancel.cancelled() => {
                group.kill();
                let _ = child.wait().await;
                return Err(ProcessError::Failed { command: command_text, status: "cancelled".into(), stderr_tail: String::new(), retryable: false, offline: false });
            }
        };
        // The command is done: whatever it left running in its group goes too, so no
        // background child outlives the step or holds the output pipes open.
        group.kill();
        let collect = |handle: Option<tokio::task::JoinHandle<Pumped>>| async move {
            match handle {
                Some(h) => {
                    tokio::time::timeout(Duration::from_secs(5), h).await.ok().and_then(Result::ok).unwrap_or_default()
                }
                None => Pumped::default(),
            }
        };
        let out = collect(stdout).await;
        let err = collect(stderr).await;
        if budget.dropped() > 0 {
            self.events.emit(BuildEvent::Log {
                stream: LogStream::Stderr,
                line: format!("[workz-build] {} bytes of output not shown (limits.maxLogBytes)", budget.dropped()),
            });
        }
        let stderr_tail = Vec::from(err.tail).join("\n");
        if let Some(hit) = jail.as_ref().and_then(|jail| jail.limit_hit(&status)) {
            return Err(ProcessError::ResourceLimit { command: command_text, limit: hit.limit, value: hit.value });
        }
        let offline = jail.as_ref().is_some_and(|jail| !jail.network);
        if !status.success() {
            let status = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                _ => "an unknown status".into(),
            };
            return Err(ProcessError::Failed { command: command_text, status, stderr_tail, retryable: false, offline });
        }
        Ok(ProcessOutput { duration: started.elapsed(), stderr_tail, stdout: out.captured })
    }
}

async fn sleep_for(duration: Duration) {
    match tokio::time::Instant::now().checked_add(duration) {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Find `program` the way execvp would, but in the command's own PATH.
fn resolve_program(program: &str, path_var: &str, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let p = if Path::new(program).is_absolute() { PathBuf::from(program) } else { cwd.join(program) };
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path_var).map(|dir| dir.join(program)).find(|p| executable(p))
}

/// A process group that is killed when dropped, so a dropped build (timeout,
/// cancellation, engine shutdown) never leaves its commands running.
struct ProcessGroup(Option<i32>);

impl ProcessGroup {
    fn kill(&self) {
        if let Some(pgid) = self.0
            && pgid > 0
        {
            // SAFETY: killpg has no memory effects; a group that is already gone gives ESRCH.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Bytes of output still allowed to become log events, shared by stdout and stderr.
#[derive(Clone)]
struct LogBudget(std::sync::Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>);

impl LogBudget {
    fn new(limit: u64) -> Self {
        LogBudget(std::sync::Arc::new((limit.into(), 0.into())))
    }
    fn take(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let ok = self.0.0.fetch_update(Relaxed, Relaxed, |left| left.checked_sub(n)).is_ok();
        if !ok {
            self.0.1.fetch_add(n, Relaxed);
        }
        ok
    }
    fn dropped(&self) -> u64 {
        self.0.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Default)]
struct Pumped {
    tail: std::collections::VecDeque<String>,
    captured: String,
}

async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    stream: LogStream,
    events: EventEmitter,
    budget: LogBudget,
    capture: bool,
) -> Pumped {
    let mut lines = BufReader::new(reader);
    let mut out = Pumped::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_string();
        if capture && out.captured.len() < STDOUT_CAPTURE_LIMIT {
            out.captured.push_str(&line);
            out.captured.push('\n');
        }
        if stream == LogStream::Stderr {
            if out.tail.len() == STDERR_TAIL_LINES {
                out.tail.pop_front();
            }
            out.tail.push_back(line.chars().take(500).collect());
        }
        if budget.take(line.len() as u64 + 1) {
            events.emit(BuildEvent::Log { stream, line });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ErrorCode;

    #[test]
    fn hooks_split_without_a_shell() {
        assert_eq!(split_command("dart analyze").unwrap(), vec!["dart", "analyze"]);
        assert_eq!(split_command("echo '; rm -rf ~'").unwrap(), vec!["echo", "; rm -rf ~"]);
        assert_eq!(split_command("echo ; rm -rf ~").unwrap(), vec!["echo", ";", "rm", "-rf", "~"]);
        assert!(split_command("  ").is_err());
        assert!(split_command("echo \"open").is_err());
    }

    fn runner(dir: &Path) -> (ProcessRunner, crate::events::EventCollector) {
        let (events, collected) = EventEmitter::collecting("test-build");
        let off = Arc::new(Sandbox::off());
        let runner =
            ProcessRunner::new(dir.to_path_buf(), &[], BTreeMap::new(), events, CancellationToken::new(), 1 << 20, off);
        (runner, collected)
    }

    #[tokio::test]
    async fn output_is_streamed_and_failures_carry_the_stderr_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (runner, collected) = runner(dir.path());
        let spec = CommandSpec::from_command_line("sh -c 'echo out; echo err >&2; exit 3'", dir.path()).unwrap();
        let err = runner.run(&spec).await.unwrap_err();
        assert_eq!(err.code(), "process_failed");
        let text = err.to_string();
        assert!(text.contains("exit code 3") && text.contains("err"), "{text}");
        let lines: Vec<String> = collected
            .events()
            .into_iter()
            .filter_map(|e| match e.event {
                BuildEvent::Log { line, .. } => Some(line),
                _ => None,
            })
            .collect();
        assert!(lines.contains(&"out".to_string()) && lines.contains(&"err".to_string()), "{lines:?}");
    }

    #[tokio::test]
    async fn shell_operators_are_plain_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("marker");
        let (runner, _) = runner(dir.path());
        let line = format!("echo hi ; touch {}", marker.display());
        runner.run(&CommandSpec::from_command_line(&line, dir.path()).unwrap()).await.unwrap();
        assert!(!marker.exists());
    }

    #[tokio::test]
    async fn environment_is_controlled() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("WORKZ_TEST_SECRET", "leak") };
        let (runner, _) = runner(dir.path());
        let out = runner.run_capturing(&CommandSpec::from_command_line("env", dir.path()).unwrap()).await.unwrap();
        assert!(!out.stdout.contains("WORKZ_TEST_SECRET"), "{}", out.stdout);
        assert!(out.stdout.contains("PATH="));
    }

    #[tokio::test]
    async fn missing_programs_and_outside_dirs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (runner, _) = runner(dir.path());
        let err =
            runner.run(&CommandSpec::from_command_line("no-such-tool-xyz", dir.path()).unwrap()).await.unwrap_err();
        assert_eq!(err.code(), "toolchain_missing");
        let err = runner.run(&CommandSpec::from_command_line("true", Path::new("/")).unwrap()).await.unwrap_err();
        assert_eq!(err.code(), "process_spawn_failed");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let (runner, _) = runner(dir.path());
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let mut spec = CommandSpec::from_command_line("sh -c ''", dir.path()).unwrap();
        spec.args = vec!["-c".into(), script];
        spec.timeout = Some(Duration::from_millis(500));
        let err = runner.run(&spec).await.unwrap_err();
        assert_eq!(err.code(), "process_timed_out");
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        assert!(crate::testing::wait_until_gone(pid, Duration::from_secs(5)), "background child {pid} survived");
    }
}
