//! npm dependencies: resolved versions from the lockfile (for the cache key),
//! installation with lifecycle scripts off, and a `node_modules` cache in the
//! content store keyed by the lockfile, so a second build with the same lockfile
//! does not run npm at all.

use serde_json::Value;
use std::collections::BTreeMap;

use crate::cache::CacheKey;
use crate::context::BuildContext;
use crate::digest::Digest;
use crate::error::{DependencyError, Error, ProcessError, Result};
use crate::process::CommandSpec;
use crate::source::SourceTree;

pub const PACKAGE_JSON: &str = "package.json";
pub const LOCKFILE: &str = "package-lock.json";

fn invalid(file: &str, detail: impl Into<String>) -> Error {
    DependencyError::InvalidManifest { file: file.to_string(), detail: detail.into() }.into()
}

fn read_json(tree: &SourceTree, file: &str) -> Result<Option<Value>> {
    let Some(f) = tree.get(file) else { return Ok(None) };
    let bytes = f.read()?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| invalid(file, e.to_string()))
}

/// The app's npm manifest and lockfile, as taken in.
#[derive(Debug, Clone, Default)]
pub struct NpmProject {
    pub package_json: Option<Value>,
    pub lockfile: Option<Value>,
    /// BLAKE3 of the lockfile (or of package.json when there is none).
    pub manifest_digest: Option<Digest>,
}

impl NpmProject {
    pub fn read(tree: &SourceTree) -> Result<NpmProject> {
        let package_json = read_json(tree, PACKAGE_JSON)?;
        if let Some(p) = &package_json
            && !p.is_object()
        {
            return Err(invalid(PACKAGE_JSON, "expected a JSON object"));
        }
        let lockfile = read_json(tree, LOCKFILE)?;
        let manifest_digest = tree.get(LOCKFILE).or_else(|| tree.get(PACKAGE_JSON)).map(|f| f.digest);
        Ok(NpmProject { package_json, lockfile, manifest_digest })
    }

    /// Whether there is anything to install.
    pub fn has_dependencies(&self) -> bool {
        let declared = |key: &str| {
            self.package_json
                .as_ref()
                .and_then(|p| p.get(key))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        };
        declared("dependencies") || declared("devDependencies") || declared("optionalDependencies")
    }

    /// A declared dependency's range, if any.
    pub fn declares(&self, name: &str) -> bool {
        ["dependencies", "devDependencies"]
            .iter()
            .any(|k| self.package_json.as_ref().and_then(|p| p.get(*k)).and_then(|d| d.get(name)).is_some())
    }

    /// Resolved versions by install path (`react`, `a/node_modules/b`), from the lockfile;
    /// without one, the declared ranges (prefixed `range:`).
    pub fn resolved_versions(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(lock) = &self.lockfile {
            if let Some(packages) = lock.get("packages").and_then(Value::as_object) {
                for (path, info) in packages {
                    let Some(name) = path.strip_prefix("node_modules/") else { continue };
                    let version = info.get("version").and_then(Value::as_str).unwrap_or("");
                    let resolved = info.get("resolved").and_then(Value::as_str).filter(|r| r.starts_with("file:"));
                    out.insert(name.to_string(), resolved.map_or(version.to_string(), |r| format!("{version} ({r})")));
                }
            } else if let Some(deps) = lock.get("dependencies").and_then(Value::as_object) {
                // lockfileVersion 1: a nested tree.
                fn walk(prefix: &str, deps: &serde_json::Map<String, Value>, out: &mut BTreeMap<String, String>) {
                    for (name, info) in deps {
                        let path =
                            if prefix.is_empty() { name.clone() } else { format!("{prefix}/node_modules/{name}") };
                        out.insert(path.clone(), info.get("version").and_then(Value::as_str).unwrap_or("").to_string());
                        if let Some(nested) = info.get("dependencies").and_then(Value::as_object) {
                            walk(&path, nested, out);
                        }
                    }
                }
                walk("", deps, &mut out);
            }
            return out;
        }
        for key in ["dependencies", "devDependencies", "optionalDependencies"] {
            if let Some(deps) = self.package_json.as_ref().and_then(|p| p.get(key)).and_then(Value::as_object) {
                for (name, range) in deps {
                    out.insert(name.clone(), format!("range:{}", range.as_str().unwrap_or("")));
                }
            }
        }
        out
    }
}

/// Classify npm's failure output into the troubleshooting guide's cases.
pub fn classify_failure(stderr: &str, command: &str) -> Error {
    let detail = stderr.lines().filter(|l| !l.trim().is_empty()).take(12).collect::<Vec<_>>().join("\n");
    let has = |needles: &[&str]| needles.iter().any(|n| stderr.contains(n));
    let tool = "npm";
    if has(&["ENOTFOUND", "ETIMEDOUT", "ECONNREFUSED", "ECONNRESET", "EAI_AGAIN", "network request", "socket hang up"])
    {
        DependencyError::RegistryUnreachable { tool, detail }.into()
    } else if has(&["E404", "404 Not Found", "is not in this registry", "No matching version found", "ETARGET"]) {
        DependencyError::NotFound { tool, detail }.into()
    } else if has(&["ERESOLVE", "conflicting peer dependency", "Could not resolve dependency"]) {
        DependencyError::Conflict { tool, detail }.into()
    } else if has(&["can only install packages when your package.json and package-lock.json", "are in sync", "EUSAGE"])
    {
        DependencyError::LockfileMismatch { tool, detail }.into()
    } else {
        DependencyError::InstallFailed { tool, detail: format!("`{command}`: {detail}") }.into()
    }
}

/// What identifies an installed `node_modules`: the lockfile (or manifest), injected
/// packages, the script allow-list, and the node/npm versions.
pub fn node_modules_key(
    project: &NpmProject,
    injected: &BTreeMap<String, String>,
    allow_scripts: &[String],
    toolchain: &BTreeMap<String, String>,
) -> CacheKey {
    let mut h = blake3::Hasher::new();
    h.update(b"workz-build node_modules v2\0"); // v2: executable bits kept
    if let Some(d) = &project.manifest_digest {
        h.update(d.as_bytes());
    }
    let extra = serde_json::json!({
        "injected": injected,
        "allowScripts": allow_scripts,
        "toolchain": toolchain,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    });
    let mut canonical = Vec::new();
    crate::cache::canonical_json(&extra, &mut canonical);
    h.update(&canonical);
    CacheKey(Digest::from(h.finalize()))
}

/// Install the app's dependencies into `<build dir>/node_modules`, from the cache when
/// the same lockfile was installed before. Returns whether npm ran.
pub async fn install(
    ctx: &mut BuildContext,
    project: &NpmProject,
    toolchain: &BTreeMap<String, String>,
) -> Result<bool> {
    let started = std::time::Instant::now();
    let installed = install_timed(ctx, project, toolchain).await;
    ctx.dependency_seconds += started.elapsed().as_secs_f64();
    installed
}

async fn install_timed(
    ctx: &mut BuildContext,
    project: &NpmProject,
    toolchain: &BTreeMap<String, String>,
) -> Result<bool> {
    let dir = ctx.build_dir().await?;
    let app = ctx.app()?.clone();
    let js = &app.build_config.javascript;
    let injected = ctx.config.platforms.javascript.inject_dependencies.clone();
    let key = node_modules_key(project, &injected, &js.allow_scripts, toolchain);
    let cache = ctx.services.cache.clone().filter(|_| ctx.config.build_system.cache_enabled);
    let node_modules = dir.join("node_modules");

    if let Some(cache) = &cache
        && crate::dircache::restore(cache.as_ref(), &key, &node_modules, &dir, "npm").await?
    {
        tracing::info!(build_id = %ctx.build_id, "node_modules restored from the cache");
        return Ok(false);
    }
    // A partial restore must not mix with npm's result.
    let _ = std::fs::remove_dir_all(&node_modules);

    let runner = ctx.runner(&dir);
    let npm_cache = ctx.services.state_dir.join("npm-cache");
    let env: BTreeMap<String, String> = [
        ("npm_config_cache", npm_cache.display().to_string()),
        ("npm_config_update_notifier", "false".into()),
        ("npm_config_fund", "false".into()),
        ("npm_config_audit", "false".into()),
        ("npm_config_loglevel", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let npm = |args: &[&str]| {
        let mut spec = CommandSpec::from_command_line("npm", &dir).expect("a plain word splits");
        spec.args = args.iter().map(|a| a.to_string()).collect();
        spec.env = env.clone();
        // Dependency installs fetch (and allow-listed install scripts may), into npm's cache.
        spec.network = true;
        spec.writable = vec![npm_cache.clone()];
        spec
    };
    // --install-links: `file:` packages are copied, not symlinked out of the build dir.
    let base = ["--ignore-scripts", "--no-audit", "--no-fund", "--install-links"];
    let mut steps: Vec<Vec<String>> = Vec::new();
    if project.lockfile.is_some() {
        steps.push(["ci"].iter().chain(base.iter()).map(|s| s.to_string()).collect());
    } else {
        ctx.warn(
            "dependencies_not_locked",
            "no package-lock.json: dependencies are resolved afresh, so this build is not reproducible; commit a lockfile",
        );
        steps.push(["install"].iter().chain(base.iter()).map(|s| s.to_string()).collect());
    }
    let to_inject: Vec<String> =
        injected.iter().filter(|(name, _)| !project.declares(name)).map(|(n, v)| format!("{n}@{v}")).collect();
    if !to_inject.is_empty() {
        let mut args: Vec<String> = ["install", "--no-save"].iter().chain(base.iter()).map(|s| s.to_string()).collect();
        args.extend(to_inject);
        steps.push(args);
    }
    if !js.allow_scripts.is_empty() {
        // Only the allow-listed packages get their install scripts run.
        // --foreground-scripts: what the scripts print reaches the build's log.
        let mut args = vec!["rebuild".to_string()];
        args.extend(js.allow_scripts.iter().cloned());
        args.push("--foreground-scripts".to_string());
        steps.push(args);
    }
    for args in steps {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let spec = npm(&refs);
        match runner.run(&spec).await {
            Ok(_) => {}
            Err(ProcessError::Failed { command, stderr_tail, status, .. }) if status != "cancelled" => {
                return Err(classify_failure(&stderr_tail, &command));
            }
            Err(e) => return Err(e.into()),
        }
        ctx.events.emit(crate::events::BuildEvent::Log {
            stream: crate::events::LogStream::Stdout,
            line: format!("[workz-build] npm {} done", args[0]),
        });
    }
    if let Some(cache) = &cache
        && node_modules.is_dir()
        && let Err(e) = crate::dircache::store(
            cache.as_ref(),
            &key,
            &format!("{}/node_modules", app.app_id()),
            &ctx.build_id,
            &node_modules,
            "npm",
        )
        .await
    {
        ctx.warn("cache_failed", format!("storing node_modules in the cache failed: {e}"));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockfile_versions_feed_the_key() {
        let project = NpmProject {
            lockfile: Some(serde_json::json!({"lockfileVersion": 3, "packages": {
                "": {"name": "app"},
                "node_modules/react": {"version": "18.2.0"},
                "node_modules/a/node_modules/b": {"version": "1.0.0"},
                "node_modules/local": {"version": "0.1.0", "resolved": "file:vendor/local"}
            }})),
            ..Default::default()
        };
        let v = project.resolved_versions();
        assert_eq!(v["react"], "18.2.0");
        assert_eq!(v["a/node_modules/b"], "1.0.0");
        assert_eq!(v["local"], "0.1.0 (file:vendor/local)");
        let unlocked = NpmProject {
            package_json: Some(serde_json::json!({"dependencies": {"ms": "^2.1.0"}})),
            ..Default::default()
        };
        assert_eq!(unlocked.resolved_versions()["ms"], "range:^2.1.0");
        assert!(unlocked.has_dependencies());
    }

    #[test]
    fn npm_failures_map_to_the_guides_cases() {
        let code = |stderr: &str| classify_failure(stderr, "npm ci").code();
        assert_eq!(
            code("npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/nope"),
            "dependency_not_found"
        );
        assert_eq!(
            code("npm error code ERESOLVE\nnpm error ERESOLVE unable to resolve dependency tree"),
            "dependency_conflict"
        );
        assert_eq!(
            code("npm error code ENOTFOUND\nnpm error network request to https://registry failed"),
            "registry_unreachable"
        );
        assert_eq!(
            code(
                "npm error `npm ci` can only install packages when your package.json and package-lock.json are in sync"
            ),
            "lockfile_mismatch"
        );
        assert_eq!(code("npm error something else"), "dependency_install_failed");
        assert!(classify_failure("ETIMEDOUT", "npm ci").is_retryable());
        assert!(!classify_failure("E404", "npm ci").is_retryable());
    }
}
