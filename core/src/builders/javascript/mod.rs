//! The `javascript` app type: validate (oxc parse + security rules) → npm dependencies
//! (lockfile-keyed `node_modules` cache, scripts off) → bundle in-process with rolldown
//! (CSS by lightningcss, the page from index.html) or through the app's own esbuild,
//! webpack or build script → images, service worker.

pub mod assets;
pub mod bundle;
pub mod css;
pub mod external;
pub mod html;
pub mod minify;
pub mod npm;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rolldown::Either;

use crate::builder::{BuildOutput, PlatformBuilder};
use crate::config::{AppConfig, AppType, Bundler, EngineConfig, ModuleFormat, RuleLevel};
use crate::error::{BuildError, ConfigError, Error, Result};
use crate::pipeline::BuildContext;
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

/// The app's entry modules and its page.
#[derive(Debug, Clone)]
pub struct Entries {
    pub modules: Vec<String>,
    /// index.html and what it references, if the app has one.
    pub page: Option<html::PageRefs>,
}

/// Find the entry modules: the page's local scripts, plus the configured entry (or, when
/// the page has none, the first of the usual names).
pub fn find_entries(tree: &SourceTree, app: &AppConfig) -> Result<Entries> {
    let page = match tree.get("index.html") {
        Some(file) => Some(html::scan(&String::from_utf8_lossy(&file.read()?))?),
        None => None,
    };
    let mut modules = Vec::new();
    if let Some(page) = &page {
        for src in &page.scripts {
            if tree.get(src).is_none() {
                return Err(BuildError::Validation(format!(
                    "index.html references the script {src:?}, which is not in the app"
                ))
                .into());
            }
            modules.push(src.clone());
        }
        for href in &page.stylesheets {
            if tree.get(href).is_none() {
                return Err(BuildError::Validation(format!(
                    "index.html references the stylesheet {href:?}, which is not in the app"
                ))
                .into());
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
    if modules.is_empty() {
        return Err(BuildError::Validation(format!(
            "no entry point: set buildConfig.javascript.entry, reference a script from index.html, or add one of {}",
            DEFAULT_ENTRIES.join(", ")
        ))
        .into());
    }
    Ok(Entries { modules, page })
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
        snapshot: Option<std::sync::Arc<SourceTree>>,
    ) -> Result<()> {
        let app = ctx.app()?.clone();
        let out = ctx.output_dir()?.to_path_buf();
        let (target, browsers) = js_target(&ctx.config, &app)?;
        let minify = app.build_config.optimization.minify.unwrap_or(ctx.config.optimization.minification);
        let sourcemap = app.build_config.optimization.source_maps.unwrap_or(ctx.config.optimization.source_maps);
        let format = app.build_config.javascript.module_format;
        let spec = bundle::BundleSpec {
            root: dir.to_path_buf(),
            snapshot,
            entries: entries.modules.clone(),
            format,
            target,
            minify,
            sourcemap,
            treeshake: ctx.config.optimization.treeshaking,
        };
        let built = bundle::bundle(&spec, &out).await?;
        write_page(ctx, dir, entries, &built, browsers).await
    }
}

/// Write the stylesheets of each entry and the page that loads them, then `public/`.
pub async fn write_page(
    ctx: &BuildContext,
    dir: &Path,
    entries: &Entries,
    built: &[bundle::EntryOutput],
    browsers: Option<lightningcss::targets::Browsers>,
) -> Result<()> {
    let app = ctx.app()?.clone();
    let out = ctx.output_dir()?.to_path_buf();
    let minify = app.build_config.optimization.minify.unwrap_or(ctx.config.optimization.minification);
    let format = app.build_config.javascript.module_format;
    // One stylesheet per entry: the page's own stylesheets go with the first entry.
    let page_css: Vec<PathBuf> =
        entries.page.as_ref().map(|p| p.stylesheets.iter().map(|s| dir.join(s)).collect()).unwrap_or_default();
    let mut injected = html::Injected::default();
    for (i, entry) in built.iter().enumerate() {
        let mut inputs = if i == 0 { page_css.clone() } else { Vec::new() };
        inputs.extend(entry.css_inputs.iter().cloned());
        if !inputs.is_empty() {
            let (root, out_dir) = (dir.to_path_buf(), out.clone());
            let text = tokio::task::spawn_blocking(move || css::bundle(&root, &inputs, &out_dir, browsers, minify))
                .await
                .map_err(|e| Error::internal(e.to_string()))??;
            let stem = Path::new(&entry.script).file_stem().and_then(|s| s.to_str()).unwrap_or("style");
            let base = stem.rsplit_once('-').map_or(stem, |(name, _)| name);
            let name = format!("assets/{base}-{}.css", &crate::digest::Digest::of(text.as_bytes()).to_hex()[..8]);
            std::fs::write(out.join(&name), text).map_err(|e| BuildError::Failed(format!("writing {name}: {e}")))?;
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
    let page = match entries.page {
        Some(_) => {
            let template = std::fs::read_to_string(dir.join("index.html"))
                .map_err(|e| BuildError::Failed(format!("reading index.html: {e}")))?;
            html::render(&template, &injected)?
        }
        None => html::minimal_page(&app.name, &injected),
    };
    std::fs::write(out.join("index.html"), page).map_err(|e| BuildError::Failed(format!("writing index.html: {e}")))?;
    // public/ comes from the checked snapshot, or from the build directory when hooks ran there.
    let tree = match ctx.materialized_build_dir() {
        Some(build_dir) => std::sync::Arc::new(SourceTree::from_dir(
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
        let Some(rel) = file.path.strip_prefix("public/") else { continue };
        let dest = out.join(rel);
        if dest.exists() {
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BuildError::Failed(format!("copying public/: {e}")))?;
        }
        file.copy_to(&dest).map_err(|e| BuildError::Failed(format!("copying public/{rel}: {e}")))?;
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
            .map_err(|e| BuildError::Failed(format!("optimizing images: {e}")))?;
        for format in &report.unsupported {
            ctx.warn(
                "asset_format_unsupported",
                format!("image format `{format}` cannot be produced by this build; only webp variants are written"),
            );
        }
        if app.build_config.javascript.generate_sw && out.join("index.html").is_file() {
            let tag = ctx.key.map(|k| k.to_string()[..16].to_string()).unwrap_or_else(|| ctx.build_id.clone());
            let page =
                std::fs::read_to_string(out.join("index.html")).map_err(|e| BuildError::Failed(e.to_string()))?;
            let page = html::append_to_body(&page, assets::SW_REGISTRATION)?;
            std::fs::write(out.join("index.html"), page).map_err(|e| BuildError::Failed(e.to_string()))?;
            assets::write_service_worker(&out, &tag).map_err(|e| BuildError::Failed(format!("writing sw.js: {e}")))?;
        }
        Ok(())
    }

    fn artifact_type(&self, _target: &str) -> String {
        "javascript-web".into()
    }
}
