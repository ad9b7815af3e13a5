//! The `javascript` app type: validate (oxc parse + security rules) → npm dependencies
//! (lockfile-keyed `node_modules` cache, scripts off) → bundle in-process with rolldown
//! (CSS by lightningcss, the page from index.html) or through the app's own esbuild,
//! webpack or build script → images, service worker.

pub mod assets;
pub mod bundle;
pub mod css;
mod dotenv;
pub mod external;
mod glob_import;
pub mod minify;
pub mod npm;
mod options;
mod plugins;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rolldown::Either;

use crate::builders::html;
use crate::config::{AppConfig, AppType, Bundler, EngineConfig, ModuleFormat, RuleLevel};
use crate::context::BuildContext;
use crate::context::{BuildOutput, PlatformBuilder};
use crate::error::{BuildError, ConfigError, Error, Result};
use crate::source::SourceTree;

/// Versions of the in-process toolchain (they go into the cache key).
pub const ROLLDOWN_VERSION: &str = "1.2.5";
pub const LIGHTNINGCSS_VERSION: &str = "1.0.0-alpha.72";

/// Entry modules looked for, in order, when neither the config nor index.html names one.
const DEFAULT_ENTRIES: &[&str] = &[
    "main.js",
    "index.js",
    "src/main.js",
    "src/main.ts",
    "src/main.jsx",
    "src/main.tsx",
    "src/index.js",
    "src/index.ts",
    "src/index.jsx",
    "src/index.tsx",
];

/// Builds `appType: "javascript"` apps.
#[derive(Debug, Default)]
pub struct JavascriptBuilder;

/// The app's entry modules and its pages.
#[derive(Debug, Clone)]
pub struct Entries {
    pub modules: Vec<String>,
    /// index.html and what it references, if the app has one.
    pub page: Option<html::PageRefs>,
    /// The app's other pages: every other `.html` file at its root (a multi-page app),
    /// each with what it references.
    pub other_pages: Vec<(String, html::PageRefs)>,
}

/// A page's local scripts and stylesheets, each checked to be a file of the app.
fn scan_page(tree: &SourceTree, file: &str) -> Result<Option<html::PageRefs>> {
    let Some(found) = tree.get(file) else { return Ok(None) };
    let page = html::scan(&String::from_utf8_lossy(&found.read()?))?;
    for (kind, refs) in [("script", &page.scripts), ("stylesheet", &page.stylesheets)] {
        if let Some(missing) = refs.iter().find(|r| tree.get(r).is_none()) {
            return Err(BuildError::Validation(format!(
                "{file} references the {kind} {missing:?}, which is not in the app"
            ))
            .into());
        }
    }
    Ok(Some(page))
}

/// Create React App keeps its page in public/: it names the files there `%PUBLIC_URL%/…`
/// (published as they are) and loads no script itself; the build adds the entries.
const CRA_PAGE: &str = "public/index.html";

/// The app's index.html and what it references; or Create React App's page, which
/// references nothing the build makes.
pub fn index_page(tree: &SourceTree) -> Result<Option<html::PageRefs>> {
    match scan_page(tree, "index.html")? {
        None if tree.get(CRA_PAGE).is_some() => Ok(Some(html::PageRefs::default())),
        page => Ok(page),
    }
}

/// `%PUBLIC_URL%` (`.`: releases are served from any path), `%NODE_ENV%` and the public
/// variables in Create React App's page, as its build replaces them.
fn interpolate(template: &str, mode: &str, variables: &BTreeMap<String, String>) -> String {
    let mut page = template.replace("%PUBLIC_URL%", ".").replace("%NODE_ENV%", mode);
    for (name, value) in variables.iter().filter(|(name, _)| is_public(name)) {
        page = page.replace(&format!("%{name}%"), value);
    }
    page
}

/// Find the entry modules: the page's local scripts, plus the configured entry (or, when
/// the page has none, the first of the usual names).
pub fn find_entries(tree: &SourceTree, app: &AppConfig) -> Result<Entries> {
    let page = index_page(tree)?;
    let mut other_pages = Vec::new();
    for file in tree.files() {
        if file.path.ends_with(".html")
            && !file.path.contains('/')
            && file.path != "index.html"
            && let Some(refs) = scan_page(tree, &file.path)?
        {
            other_pages.push((file.path.clone(), refs));
        }
    }
    let mut modules: Vec<String> = Vec::new();
    for refs in page.iter().chain(other_pages.iter().map(|(_, refs)| refs)) {
        for src in &refs.scripts {
            if !modules.contains(src) {
                modules.push(src.clone());
            }
        }
    }
    match &app.build_config.javascript.entry {
        Some(entry) => {
            let entry = html::local_path(entry);
            if tree.get(&entry).is_none() {
                return Err(ConfigError::Invalid {
                    file: crate::config::APP_CONFIG_FILE.into(),
                    path: "buildConfig.javascript.entry".into(),
                    message: format!("{entry:?} is not a file of the app"),
                }
                .into());
            }
            if !modules.contains(&entry) {
                modules.insert(0, entry);
            }
        }
        None if modules.is_empty() => {
            if let Some(found) = DEFAULT_ENTRIES.iter().find(|e| tree.get(e).is_some()) {
                modules.push(found.to_string());
            }
        }
        None => {}
    }
    // A page without scripts (stylesheets, fonts, images) is built as a page alone.
    if modules.is_empty() && page.is_none() && other_pages.is_empty() {
        return Err(BuildError::Validation(format!(
            "no entry point: set buildConfig.javascript.entry, reference a script from index.html, or add one of {}",
            DEFAULT_ENTRIES.join(", ")
        ))
        .into());
    }
    Ok(Entries { modules, page, other_pages })
}

/// What the bundler and the CSS compiler target.
type Targets = (Either<String, Vec<String>>, Option<lightningcss::targets::Browsers>);

/// The JavaScript target: the platform's browserslist query when set, else the app's ES level.
fn js_target(config: &EngineConfig, app: &AppConfig) -> Result<Targets> {
    let es = app.build_config.javascript.target;
    let Some(query) = &config.platforms.javascript.browsers else {
        return Ok((Either::Left(es.as_str().to_string()), css::browsers_for(es)));
    };
    let invalid = |message: String| -> Error {
        ConfigError::Invalid { file: "engine config".into(), path: "platforms.javascript.browsers".into(), message }
            .into()
    };
    let browsers = lightningcss::targets::Browsers::from_browserslist([query.as_str()])
        .map_err(|e| invalid(e.to_string()))?
        .ok_or_else(|| invalid(format!("{query:?} selects no browsers")))?;
    let mut targets = Vec::new();
    let mut push = |name: &str, v: Option<u32>| {
        if let Some(v) = v {
            let (major, minor) = (v >> 16, (v >> 8) & 0xff);
            targets.push(if minor > 0 { format!("{name}{major}.{minor}") } else { format!("{name}{major}") });
        }
    };
    push("chrome", browsers.chrome);
    push("edge", browsers.edge);
    push("firefox", browsers.firefox);
    push("safari", browsers.safari);
    push("ios", browsers.ios_saf);
    push("opera", browsers.opera);
    if targets.is_empty() {
        return Err(invalid(format!("{query:?} selects no browser that has an ES target")));
    }
    Ok((Either::Right(targets), Some(browsers)))
}

impl JavascriptBuilder {
    /// node and npm versions (remembered per installed binary).
    async fn node_versions(&self, ctx: &BuildContext) -> BTreeMap<String, String> {
        crate::toolchain::versions(
            &ctx.services.state_dir,
            &ctx.services.work_root,
            &[("node", &["--version"]), ("npm", &["--version"])],
        )
        .await
    }

    async fn bundle_in_process(
        &self,
        ctx: &mut BuildContext,
        dir: &Path,
        entries: &Entries,
        snapshot: Option<Arc<SourceTree>>,
    ) -> Result<()> {
        let app = ctx.app()?.clone();
        let out = ctx.output_dir()?.to_path_buf();
        let (target, browsers) = js_target(&ctx.config, &app)?;
        let minify = app.build_config.optimization.minify.unwrap_or(ctx.config.optimization.minification);
        let sourcemap = app.build_config.optimization.source_maps.unwrap_or(ctx.config.optimization.source_maps);
        let format = app.build_config.javascript.module_format;
        let variables = app_variables(&app, dir, snapshot.as_deref())?;
        let spec = bundle::BundleSpec {
            root: dir.to_path_buf(),
            snapshot,
            entries: entries.modules.clone(),
            format,
            target,
            minify,
            sourcemap,
            treeshake: ctx.config.optimization.treeshaking,
            defines: env_defines(&app, &variables),
        };
        let built = match entries.modules.is_empty() {
            true => bundle::Bundled::default(),
            false => bundle::bundle(&spec, &out).await?,
        };
        write_page(ctx, dir, entries, &built.entries, &built.compiled_css, browsers).await
    }
}

/// Prefixes of the app config's `env` variables that are compiled into the app (as Vite
/// exposes `VITE_*`): everything else there is for build commands only.
pub const PUBLIC_ENV_PREFIXES: &[&str] = &["VITE_", "WORKZ_PUBLIC_", "REACT_APP_"];

fn is_public(name: &str) -> bool {
    PUBLIC_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The app's variables: its Vite env files (from the checked snapshot, or the build directory
/// when hooks ran there) under its config's `env`. Both are in the cache key (the files by
/// their digests, `env` in the app config).
fn app_variables(app: &AppConfig, dir: &Path, snapshot: Option<&SourceTree>) -> Result<BTreeMap<String, String>> {
    let mut texts = Vec::new();
    for name in dotenv::files(app.build_config.javascript.mode.as_str()) {
        let bytes = match snapshot {
            Some(tree) => tree.get(&name).map(|f| f.read().map(|b| b.to_vec())).transpose()?,
            None => match std::fs::read(dir.join(&name)) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(BuildError::io(format!("reading {name}"))(e)),
            },
        };
        texts.extend(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()));
    }
    Ok(dotenv::variables(&texts, &app.env))
}

/// What the bundler replaces at build time: `process.env.NODE_ENV` and Vite's
/// `import.meta.env` (`MODE`, `PROD`, `DEV`, `SSR`, `BASE_URL` and the public ones of the
/// app's `variables`; never the worker's own environment).
fn env_defines(app: &AppConfig, variables: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mode = app.build_config.javascript.mode.as_str();
    let production = mode == "production";
    let mut env = serde_json::Map::new();
    env.insert("MODE".into(), mode.into());
    env.insert("PROD".into(), production.into());
    env.insert("DEV".into(), (!production).into());
    env.insert("SSR".into(), false.into());
    // Releases are served from any path: assets are addressed relative to the page.
    env.insert("BASE_URL".into(), "./".into());
    for (name, value) in variables {
        if is_public(name) {
            env.insert(name.clone(), value.clone().into());
        }
    }
    let mut defines = vec![("process.env.NODE_ENV".to_string(), serde_json::Value::from(mode).to_string())];
    // Create React App's way: `process.env.REACT_APP_NAME` and `process.env.PUBLIC_URL`.
    defines.push(("process.env.PUBLIC_URL".to_string(), "\".\"".to_string()));
    for (name, value) in env.iter().filter(|(name, _)| is_public(name)) {
        defines.push((format!("process.env.{name}"), value.to_string()));
    }
    for (name, value) in &env {
        defines.push((format!("import.meta.env.{name}"), value.to_string()));
    }
    defines.push(("import.meta.env".to_string(), serde_json::Value::Object(env).to_string()));
    defines
}

/// Bundle `inputs` into `assets/<base>-<hash>.css`; returns that name.
async fn write_stylesheet(
    dir: &Path,
    out: &Path,
    base: &str,
    inputs: Vec<PathBuf>,
    compiled: &Arc<HashMap<PathBuf, String>>,
    browsers: Option<lightningcss::targets::Browsers>,
    minify: bool,
) -> Result<String> {
    let (root, out_dir, compiled) = (dir.to_path_buf(), out.to_path_buf(), compiled.clone());
    let text = tokio::task::spawn_blocking(move || css::bundle(&root, &inputs, &compiled, &out_dir, browsers, minify))
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    let name = format!("assets/{base}-{}.css", &crate::digest::Digest::of(text.as_bytes()).to_hex()[..8]);
    // assets/ exists only if something was written there before (an image, a font).
    std::fs::create_dir_all(out.join("assets")).map_err(BuildError::io("creating assets/"))?;
    std::fs::write(out.join(&name), text).map_err(BuildError::io(format!("writing {name}")))?;
    Ok(name)
}

/// Write the stylesheets of each entry and the pages that load them, then `public/`.
pub async fn write_page(
    ctx: &BuildContext,
    dir: &Path,
    entries: &Entries,
    built: &[bundle::EntryOutput],
    compiled_css: &Arc<HashMap<PathBuf, String>>,
    browsers: Option<lightningcss::targets::Browsers>,
) -> Result<()> {
    let app = ctx.app()?.clone();
    let out = ctx.output_dir()?.to_path_buf();
    let minify = app.build_config.optimization.minify.unwrap_or(ctx.config.optimization.minification);
    let format = app.build_config.javascript.module_format;
    // index.html (or the minimal page) loads its own scripts and every entry no other page claims.
    let claimed: Vec<&String> = entries.other_pages.iter().flat_map(|(_, refs)| &refs.scripts).collect();
    let mut pages: Vec<(&str, Option<&html::PageRefs>, Vec<&bundle::EntryOutput>)> = Vec::new();
    let index_entries = built
        .iter()
        .filter(|e| entries.page.as_ref().is_some_and(|p| p.scripts.contains(&e.entry)) || !claimed.contains(&&e.entry))
        .collect();
    pages.push(("index.html", entries.page.as_ref(), index_entries));
    for (file, refs) in &entries.other_pages {
        pages.push((file, Some(refs), built.iter().filter(|e| refs.scripts.contains(&e.entry)).collect()));
    }
    for (file, refs, page_entries) in pages {
        // One stylesheet per entry: the page's own stylesheets go with its first entry.
        let page_css: Vec<PathBuf> =
            refs.map(|p| p.stylesheets.iter().map(|s| dir.join(s)).collect()).unwrap_or_default();
        let mut injected = html::Injected::default();
        if page_entries.is_empty() && !page_css.is_empty() {
            let stem = Path::new(file).file_stem().and_then(|s| s.to_str()).unwrap_or("style");
            let base = if stem == "index" { "style" } else { stem };
            let name = write_stylesheet(dir, &out, base, page_css.clone(), compiled_css, browsers, minify).await?;
            injected.head.push_str(&format!("<link rel=\"stylesheet\" href=\"./{name}\">\n"));
        }
        for (i, entry) in page_entries.iter().enumerate() {
            let mut inputs = if i == 0 { page_css.clone() } else { Vec::new() };
            inputs.extend(entry.css_inputs.iter().cloned());
            if !inputs.is_empty() {
                let stem = Path::new(&entry.script).file_stem().and_then(|s| s.to_str()).unwrap_or("style");
                let base = stem.rsplit_once('-').map_or(stem, |(name, _)| name);
                let name = write_stylesheet(dir, &out, base, inputs, compiled_css, browsers, minify).await?;
                injected.head.push_str(&format!("<link rel=\"stylesheet\" href=\"./{name}\">\n"));
            }
            for css in &entry.css_files {
                injected.head.push_str(&format!("<link rel=\"stylesheet\" href=\"./{css}\">\n"));
            }
            if format == ModuleFormat::Esm {
                for chunk in &entry.static_imports {
                    injected.head.push_str(&format!("<link rel=\"modulepreload\" href=\"./{chunk}\">\n"));
                }
                injected.body.push_str(&format!("<script type=\"module\" src=\"./{}\"></script>\n", entry.script));
            } else {
                injected.body.push_str(&format!("<script defer src=\"./{}\"></script>\n", entry.script));
            }
        }
        let page = match refs {
            Some(_) => {
                let template_file = if file == "index.html" && !dir.join(file).is_file() { CRA_PAGE } else { file };
                let mut template = std::fs::read_to_string(dir.join(template_file))
                    .map_err(BuildError::io(format!("reading {template_file}")))?;
                if template_file == CRA_PAGE {
                    let snapshot = match ctx.materialized_build_dir() {
                        Some(_) => None,
                        None => Some(ctx.source()?.clone()),
                    };
                    let variables = app_variables(&app, dir, snapshot.as_deref())?;
                    template = interpolate(&template, app.build_config.javascript.mode.as_str(), &variables);
                    injected.keep_local_tags = true;
                }
                html::render(&template, &injected)?
            }
            None => html::minimal_page(&app.name, &injected),
        };
        std::fs::write(out.join(file), page).map_err(BuildError::io(format!("writing {file}")))?;
    }
    // public/ comes from the checked snapshot, or from the build directory when hooks ran there.
    let tree = match ctx.materialized_build_dir() {
        Some(build_dir) => Arc::new(SourceTree::from_dir(
            build_dir,
            &ctx.config.limits,
            &crate::config::SourceConfig { exclude: vec![], respect_gitignore: false },
        )?),
        None => ctx.source()?.clone(),
    };
    copy_public(&tree, &out)
}

/// Files under `public/` are published as they are, at the root (as Vite does); a built
/// file of the same name wins.
fn copy_public(tree: &SourceTree, out: &Path) -> Result<()> {
    for file in tree.files() {
        let Some(rel) = file.path.strip_prefix("public/").filter(|rel| !super::never_published(rel)) else { continue };
        // The release's manifest.json is the build manifest; a web app manifest moves aside
        // (and the page's link follows it, see html::render).
        let rel = if rel == "manifest.json" { html::WEB_MANIFEST } else { rel };
        let dest = out.join(rel);
        if dest.exists() {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(BuildError::io("copying public/"))?;
        }
        file.copy_to(&dest).map_err(BuildError::io(format!("copying public/{rel}")))?;
    }
    Ok(())
}

#[async_trait]
impl PlatformBuilder for JavascriptBuilder {
    fn app_type(&self) -> AppType {
        AppType::Javascript
    }

    fn supported_targets(&self) -> &[&'static str] {
        &["web"]
    }

    async fn toolchain(&self, ctx: &BuildContext) -> Result<BTreeMap<String, String>> {
        let app = ctx.app()?;
        let mut tools = BTreeMap::new();
        let bundler = app.build_config.javascript.bundler;
        tools.insert("bundler".to_string(), format!("{bundler:?}").to_lowercase());
        if bundler == Bundler::Rolldown {
            tools.insert("rolldown".into(), ROLLDOWN_VERSION.into());
            tools.insert("lightningcss".into(), LIGHTNINGCSS_VERSION.into());
        }
        let project = npm::NpmProject::read(ctx.source()?)?;
        if project.has_dependencies() || bundler != Bundler::Rolldown {
            tools.extend(self.node_versions(ctx).await);
        }
        Ok(tools)
    }

    async fn validate(&self, ctx: &mut BuildContext) -> Result<()> {
        let tree = ctx.source()?.clone();
        let app = ctx.app()?.clone();
        let rules = app.build_config.javascript.security_rules.clone();
        for name in rules.keys() {
            if !validate::RULES.iter().any(|r| r.name == name) {
                ctx.warn(
                    "config_unknown_key",
                    format!("unknown security rule `{name}` in buildConfig.javascript.securityRules"),
                );
            }
        }
        // Syntax must be checked here when work comes before bundling (npm, hooks, another
        // bundler); otherwise rolldown parses every file next and reports syntax errors itself.
        let project = npm::NpmProject::read(&tree)?;
        let parse_all = project.has_dependencies()
            || !ctx.config.platforms.javascript.inject_dependencies.is_empty()
            || !app.hooks.pre_build.is_empty()
            || app.build_config.javascript.bundler != Bundler::Rolldown;
        // Files that passed the same rules with the same content before are not parsed again.
        let state_dir = ctx.services.state_dir.clone();
        let report = {
            let tree = tree.clone();
            tokio::task::spawn_blocking(move || {
                let clean = validate::CleanSet::load(&state_dir);
                let report = validate::validate(&tree, &rules, &clean.known, parse_all);
                clean.add(&report.clean);
                report
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))?
        };
        let syntax = report.syntax;
        if !syntax.is_empty() {
            let shown: Vec<String> = syntax.iter().take(20).map(|e| e.to_string()).collect();
            let more = if syntax.len() > 20 { format!("\n… and {} more", syntax.len() - 20) } else { String::new() };
            return Err(BuildError::Validation(format!("syntax errors:\n{}{more}", shown.join("\n"))).into());
        }
        let findings = report.findings;
        let (errors, warnings): (Vec<_>, Vec<_>) = findings.into_iter().partition(|f| f.level == RuleLevel::Error);
        for w in warnings {
            ctx.warn("security_warning", format!("{}: [{}] {}", w.location, w.rule, w.message));
        }
        if !errors.is_empty() {
            let shown: Vec<String> = errors.iter().take(20).map(|f| f.to_string()).collect();
            return Err(BuildError::Validation(format!(
                "security rules failed (switch a rule off with buildConfig.javascript.securityRules):\n{}",
                shown.join("\n")
            ))
            .into());
        }
        if app.build_config.javascript.bundler == Bundler::Rolldown {
            find_entries(&tree, &app)?;
        }
        Ok(())
    }

    async fn resolve_dependencies(&self, ctx: &mut BuildContext) -> Result<BTreeMap<String, String>> {
        let project = npm::NpmProject::read(ctx.source()?)?;
        let mut resolved = project.resolved_versions();
        for (name, range) in &ctx.config.platforms.javascript.inject_dependencies {
            resolved.entry(format!("inject:{name}")).or_insert_with(|| range.clone());
        }
        Ok(resolved)
    }

    async fn build(&self, ctx: &mut BuildContext) -> Result<BuildOutput> {
        let tree = ctx.source()?.clone();
        let app = ctx.app()?.clone();
        let project = npm::NpmProject::read(&tree)?;
        let injected = !ctx.config.platforms.javascript.inject_dependencies.is_empty();
        let needs_install = project.has_dependencies() || injected;
        // Nothing to install and no hook wrote files: bundle straight from the source
        // directory (every read checked against the snapshot) instead of copying it first.
        let in_place = match tree.root() {
            Some(root)
                if !needs_install
                    && ctx.materialized_build_dir().is_none()
                    && app.build_config.javascript.bundler == Bundler::Rolldown =>
            {
                Some(root.to_path_buf())
            }
            _ => None,
        };
        let dir = match &in_place {
            Some(root) => root.clone(),
            None => ctx.build_dir().await?,
        };
        if needs_install {
            let toolchain = self.node_versions(ctx).await;
            if !toolchain.contains_key("npm") {
                return Err(crate::error::ProcessError::ToolchainMissing { program: "npm".into() }.into());
            }
            npm::install(ctx, &project, &toolchain).await?;
        }
        match app.build_config.javascript.bundler {
            Bundler::Rolldown => {
                let entries = find_entries(&tree, &app)?;
                let snapshot = in_place.is_some().then(|| tree.clone());
                self.bundle_in_process(ctx, &dir, &entries, snapshot).await?;
            }
            external => external::build(ctx, &dir, external).await?,
        }
        let entry_point = ctx.output_dir()?.join("index.html").is_file().then(|| "index.html".to_string());
        Ok(BuildOutput { entry_point })
    }

    async fn optimize(&self, ctx: &mut BuildContext) -> Result<()> {
        let app = ctx.app()?.clone();
        let out = ctx.output_dir()?.to_path_buf();
        let options = assets::ImageOptions {
            optimize: app.build_config.assets.optimize && ctx.config.optimization.asset_optimization,
            formats: app.build_config.assets.formats.clone(),
        };
        let dir = out.clone();
        let report = tokio::task::spawn_blocking(move || assets::optimize_images(&dir, &options))
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(BuildError::io("optimizing images"))?;
        for format in &report.unsupported {
            ctx.warn(
                "asset_format_unsupported",
                format!("image format `{format}` cannot be produced by this build; only webp variants are written"),
            );
        }
        if app.build_config.javascript.generate_sw && out.join("index.html").is_file() {
            let tag = ctx.key.map(|k| k.to_string()[..16].to_string()).unwrap_or_else(|| ctx.build_id.clone());
            let page = std::fs::read_to_string(out.join("index.html")).map_err(BuildError::io("reading index.html"))?;
            let page = html::append_to_body(&page, assets::SW_REGISTRATION)?;
            std::fs::write(out.join("index.html"), page).map_err(BuildError::io("writing index.html"))?;
            assets::write_service_worker(&out, &tag).map_err(BuildError::io("writing sw.js"))?;
        }
        Ok(())
    }

    fn artifact_type(&self, _target: &str) -> String {
        "javascript-web".into()
    }
}
