//! The rolldown plugins the engine adds to every bundle: the source guard (reads stay in
//! the app and its checked snapshot; file kinds the engine cannot compile are named), CSS
//! and Sass imports with CSS modules, scripts loaded by URL (workers) bundled on their own,
//! `?raw` imports, and the early start of the minifier.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rolldown::plugin::{
    HookLoadArgs, HookLoadOutput, HookLoadReturn, HookRenderChunkArgs, HookRenderChunkReturn, HookResolveIdArgs,
    HookResolveIdOutput, HookResolveIdReturn, HookUsage, Plugin, PluginContext, PluginHookMeta, PluginOrder,
    SharedLoadPluginContext,
};
use rolldown::{CodeSplittingMode, InputItem, ModuleType, OutputFormat, RawMinifyOptions};
use rolldown_common::side_effects::HookSideEffects;
use rolldown_common::{EmittedAsset, ImportKind, Output, StrOrBytes};

use super::css;
use super::minify::{EarlyMinify, MinifySettings};
use super::options::{BundleSpec, bundler_options, diagnostics, unresolved};
use crate::error::{BuildError, Error, Result};
use crate::source::{SourceTree, is_script};

/// File kinds that need a compiler the engine does not have, with what they are.
const UNSUPPORTED_MODULES: &[(&str, &str)] = &[
    ("vue", "Vue single-file component (.vue)"),
    ("svelte", "Svelte component (.svelte)"),
    ("astro", "Astro component (.astro)"),
    ("less", "Less stylesheet (.less)"),
    ("styl", "Stylus stylesheet (.styl)"),
    ("stylus", "Stylus stylesheet (.stylus)"),
    ("mdx", "MDX document (.mdx)"),
    ("coffee", "CoffeeScript (.coffee)"),
    ("elm", "Elm module (.elm)"),
    ("marko", "Marko template (.marko)"),
];

/// The first error a plugin met: rolldown reports a plugin's error without its text, so
/// plugins keep theirs here and the bundle reports it as it is.
#[derive(Debug, Default)]
pub(super) struct PluginFailure(Mutex<Option<Error>>);

impl PluginFailure {
    /// Keep `error` (the first one wins) and give rolldown an error to stop with.
    pub(super) fn fail(&self, error: Error) -> anyhow::Error {
        let message = error.to_string();
        if let Ok(mut first) = self.0.lock() {
            first.get_or_insert(error);
        }
        anyhow::anyhow!(message)
    }

    pub(super) fn take(&self) -> Option<Error> {
        self.0.lock().ok().and_then(|mut first| first.take())
    }
}

/// Collects the stylesheets that scripts import (CSS, Sass); each becomes a module in the
/// graph (kept, so it stays listed in its chunk) and its CSS is bundled separately. A CSS
/// module is compiled here: its module exports the class-name map, its scoped CSS is kept.
#[derive(Debug)]
pub(super) struct CssImports {
    pub(super) root: PathBuf,
    pub(super) seen: Mutex<HashSet<String>>,
    /// Compiled CSS modules, by file.
    pub(super) compiled: Mutex<HashMap<PathBuf, String>>,
    pub(super) failure: Arc<PluginFailure>,
}

impl Plugin for CssImports {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("workz:css-imports")
    }

    fn register_hook_usage(&self) -> HookUsage {
        HookUsage::Load
    }

    async fn load(&self, _ctx: SharedLoadPluginContext, args: &HookLoadArgs<'_>) -> HookLoadReturn {
        if !css::is_stylesheet(args.id) {
            return Ok(None);
        }
        let path = args.id.split(['?', '#']).next().unwrap_or(args.id);
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(args.id.to_string());
        }
        let code = if css::is_css_module(path) {
            let module = css::compile_module(&self.root, Path::new(path)).map_err(|e| self.failure.fail(e))?;
            if let Ok(mut compiled) = self.compiled.lock() {
                compiled.insert(PathBuf::from(path), module.css);
            }
            module.js
        } else {
            "export {};\n".to_string()
        };
        Ok(Some(HookLoadOutput {
            code: arcstr::ArcStr::from(code),
            side_effects: Some(HookSideEffects::NoTreeshake),
            module_type: Some(ModuleType::Js),
            ..Default::default()
        }))
    }
}

/// Marks a script referenced as `new URL('./worker.js', import.meta.url)`: it is bundled on
/// its own (a worker, worklet or service worker runs it as a separate script).
const SCRIPT_URL_QUERY: &str = "?workz-script-url";

/// The placeholder rolldown's asset plugin rewrites to an emitted file's name.
const ASSET_PLACEHOLDER: &str = "__ROLLDOWN_ASSET__#";

/// Scripts that the app loads by URL (`new Worker(new URL('./w.js', import.meta.url))`):
/// each is bundled into one self-contained script (IIFE: it runs as a classic or a module
/// worker), emitted under a hashed name, and the URL rewritten to it by rolldown.
#[derive(Debug)]
pub(super) struct ScriptUrls {
    pub(super) spec: BundleSpec,
    pub(super) failure: Arc<PluginFailure>,
}

impl Plugin for ScriptUrls {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("workz:script-urls")
    }

    fn register_hook_usage(&self) -> HookUsage {
        HookUsage::ResolveId | HookUsage::Load
    }

    async fn resolve_id(&self, _ctx: &PluginContext, args: &HookResolveIdArgs<'_>) -> HookResolveIdReturn {
        let relative = args.specifier.starts_with("./") || args.specifier.starts_with("../");
        if args.kind != ImportKind::NewUrl || !relative || !is_script(args.specifier) {
            return Ok(None);
        }
        let Some(importer) = args.importer else { return Ok(None) };
        let base = Path::new(importer.split(['?', '#']).next().unwrap_or(importer)).parent().unwrap_or(&self.spec.root);
        let path = crate::files::normalize(&base.join(args.specifier.split(['?', '#']).next().unwrap_or_default()));
        if !path.is_file() {
            return Ok(None); // rolldown reports it as unresolved
        }
        Ok(Some(HookResolveIdOutput::from_id(format!("{}{SCRIPT_URL_QUERY}", path.display()))))
    }

    async fn load(&self, ctx: SharedLoadPluginContext, args: &HookLoadArgs<'_>) -> HookLoadReturn {
        let Some(path) = args.id.strip_suffix(SCRIPT_URL_QUERY) else { return Ok(None) };
        let path = PathBuf::from(path);
        let code = bundle_script(&self.spec, &path).await.map_err(|e| self.failure.fail(e))?;
        let rel = path.strip_prefix(&self.spec.root).unwrap_or(&path).display().to_string();
        let reference = ctx
            .emit_file_async(EmittedAsset {
                // Bundled, it is JavaScript whatever it was written in: `worker.ts` is published
                // as `worker-<hash>.js`, served as a script (a `.ts` file is `video/mp2t` to
                // servers and CDNs, and browsers refuse to run a worker of that type).
                name: path.file_stem().map(|n| format!("{}.js", n.to_string_lossy())),
                original_file_name: Some(rel),
                source: StrOrBytes::Str(code),
                ..Default::default()
            })
            .await?;
        ctx.associate_module_with_file_ref(args.id, &reference);
        Ok(Some(HookLoadOutput {
            code: arcstr::ArcStr::from(format!("module.exports = \"{ASSET_PLACEHOLDER}{reference}\";\n")),
            module_type: Some(ModuleType::Js),
            side_effects: Some(HookSideEffects::False),
            ..Default::default()
        }))
    }
}

/// Vite's `?raw` imports (`import shader from './light.glsl?raw'`): the file's text as the
/// module's default export. (`?url` needs nothing: rolldown emits the asset.)
#[derive(Debug)]
pub(super) struct RawImports {
    pub(super) root: PathBuf,
}

const RAW_QUERY: &str = "?raw";

impl Plugin for RawImports {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("workz:raw-imports")
    }

    fn register_hook_usage(&self) -> HookUsage {
        HookUsage::ResolveId | HookUsage::Load
    }

    async fn resolve_id(&self, _ctx: &PluginContext, args: &HookResolveIdArgs<'_>) -> HookResolveIdReturn {
        let Some(specifier) = args.specifier.strip_suffix(RAW_QUERY) else { return Ok(None) };
        let base = match (specifier.strip_prefix('/'), args.importer) {
            (Some(rooted), _) => self.root.join(rooted),
            (None, Some(importer)) if specifier.starts_with("./") || specifier.starts_with("../") => {
                let importer = importer.split(['?', '#']).next().unwrap_or(importer);
                Path::new(importer).parent().unwrap_or(&self.root).join(specifier)
            }
            _ => return Ok(None),
        };
        let path = crate::files::normalize(&base);
        // The source guard refuses what is outside the app or not in its snapshot when it loads.
        Ok(Some(HookResolveIdOutput::from_id(format!("{}{RAW_QUERY}", path.display()))))
    }

    async fn load(&self, _ctx: SharedLoadPluginContext, args: &HookLoadArgs<'_>) -> HookLoadReturn {
        let Some(path) = args.id.strip_suffix(RAW_QUERY) else { return Ok(None) };
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        let text = serde_json::to_string(&String::from_utf8_lossy(&bytes)).unwrap_or_default();
        Ok(Some(HookLoadOutput {
            code: arcstr::ArcStr::from(format!("export default {text};\n")),
            module_type: Some(ModuleType::Js),
            side_effects: Some(HookSideEffects::False),
            ..Default::default()
        }))
    }
}

/// Bundle a script loaded by URL into one self-contained IIFE (minified by rolldown when the
/// app is minified). What it cannot carry (assets, stylesheets, split chunks) is an error.
async fn bundle_script(spec: &BundleSpec, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(&spec.root).unwrap_or(path).display().to_string();
    let mut options = bundler_options(spec, vec![InputItem { name: None, import: path.display().to_string() }]);
    options.format = Some(OutputFormat::Iife);
    options.code_splitting = Some(CodeSplittingMode::Bool(false));
    options.minify = Some(RawMinifyOptions::Bool(spec.minify));
    options.minify_internal_exports = None;
    options.sourcemap = None;
    let failure = Arc::new(PluginFailure::default());
    let guard = Arc::new(SourceGuard {
        root: spec.root.clone(),
        snapshot: spec.snapshot.clone(),
        refused: Mutex::new(Vec::new()),
        failure: failure.clone(),
    });
    let mut bundler =
        rolldown::Bundler::with_plugins(options, vec![guard.clone()]).map_err(|e| diagnostics(&spec.root, e))?;
    let generated = bundler.generate().await;
    let _ = bundler.close().await;
    if let Some(e) = failure.take().or_else(|| guard.refused()) {
        return Err(e);
    }
    let output = generated.map_err(|e| diagnostics(&spec.root, e))?;
    if let Some(warning) = output.warnings.iter().find(|w| w.kind().to_string() == "UNRESOLVED_IMPORT") {
        return Err(unresolved(&spec.root, warning));
    }
    let mut code = None;
    for item in &output.assets {
        match item {
            Output::Chunk(chunk) if code.is_none() => code = Some(chunk.code.clone()),
            other => {
                return Err(BuildError::Validation(format!(
                    "{rel} is loaded with `new URL(..., import.meta.url)` and bundled on its own, but it also needs {}: \
                     a worker script must be self-contained (inline the data, or fetch it at run time)",
                    other.filename()
                ))
                .into());
            }
        }
    }
    code.ok_or_else(|| Error::internal(format!("bundling {rel} produced no script")))
}

/// Keeps the bundler inside the app: a module outside `root` is an error, and when the app
/// is bundled in place, only files of its checked snapshot may be read, unchanged.
#[derive(Debug)]
pub(super) struct SourceGuard {
    pub(super) root: PathBuf,
    pub(super) snapshot: Option<Arc<SourceTree>>,
    /// Why loads were refused (rolldown reports a plugin's error without its text).
    pub(super) refused: Mutex<Vec<String>>,
    /// A module kind the engine cannot compile.
    pub(super) failure: Arc<PluginFailure>,
}

impl SourceGuard {
    /// Every refused import, as one error.
    pub(super) fn refused(&self) -> Option<Error> {
        let reasons = self.refused.lock().ok()?;
        (!reasons.is_empty()).then(|| BuildError::Validation(format!("import refused: {}", reasons.join("; "))).into())
    }

    /// A module the engine has no compiler for, named before anything tries to parse it.
    fn unsupported(&self, id: &str) -> Option<Error> {
        let path = id.split(['?', '#']).next().unwrap_or(id);
        let ext = Path::new(path).extension()?.to_str()?;
        let (_, kind) = UNSUPPORTED_MODULES.iter().find(|(e, _)| e.eq_ignore_ascii_case(ext))?;
        let file = Path::new(path).strip_prefix(&self.root).unwrap_or(Path::new(path)).display().to_string();
        Some(BuildError::UnsupportedModuleType { file, kind: kind.to_string() }.into())
    }

    /// `code` with its `import.meta.glob` calls replaced by the app's matching files.
    fn glob_imports(&self, id: &str, code: &str) -> Result<Option<String>> {
        if !code.contains("import.meta.glob") {
            return Ok(None);
        }
        let path = crate::files::normalize(Path::new(id));
        let module = path.strip_prefix(&self.root).unwrap_or(&path).to_string_lossy().into_owned();
        // The snapshot's paths; after hooks, the build directory's names (not hashed: the
        // patterns only match names, and node_modules is never matched).
        let listed;
        let files: Vec<&str> = match &self.snapshot {
            Some(tree) => tree.files().iter().map(|f| f.path.as_str()).collect(),
            None => {
                listed = super::glob_import::app_files(&self.root);
                listed.iter().map(String::as_str).collect()
            }
        };
        super::glob_import::rewrite(code, &module, &files).map_err(|why| BuildError::Validation(why).into())
    }

    /// Refuse what the build may not read; the checked bytes when it had to read them.
    fn check(&self, id: &str) -> std::result::Result<Option<bytes::Bytes>, String> {
        let path = id.split(['?', '#']).next().unwrap_or(id);
        if id.starts_with('\0') || !Path::new(path).is_absolute() {
            return Ok(None); // the bundler's own virtual modules
        }
        let path = crate::files::normalize(Path::new(path));
        let Ok(rel) = path.strip_prefix(&self.root) else {
            return Err(format!("{} is outside the app: a build reads only the app's own files", path.display()));
        };
        let Some(tree) = &self.snapshot else { return Ok(None) };
        let rel = rel.to_str().unwrap_or_default();
        let file = tree.get(rel).ok_or_else(|| {
            format!("{rel} is not part of the app's sources (ignored, excluded, or created after the build started)")
        })?;
        match file.read_as_hashed() {
            Ok(Some(bytes)) => Ok(Some(bytes)),
            Ok(None) => Err(format!("{rel} changed while the app was being built")),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Plugin for SourceGuard {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("workz:source-guard")
    }

    fn register_hook_usage(&self) -> HookUsage {
        HookUsage::Load
    }

    fn load_meta(&self) -> Option<PluginHookMeta> {
        Some(PluginHookMeta { order: Some(PluginOrder::Pre) })
    }

    async fn load(&self, _ctx: SharedLoadPluginContext, args: &HookLoadArgs<'_>) -> HookLoadReturn {
        if let Some(error) = self.unsupported(args.id) {
            return Err(self.failure.fail(error));
        }
        let bytes = match self.check(args.id) {
            Ok(bytes) => bytes,
            Err(message) => {
                if let Ok(mut refused) = self.refused.lock() {
                    refused.push(message.clone());
                }
                return Err(anyhow::anyhow!(message));
            }
        };
        // Scripts go to rolldown as the guard checked them (one read per file, and what is
        // bundled is what was checked); everything else rolldown's own loaders read.
        let plain_script = !args.id.contains(['?', '#']) && is_script(args.id);
        let jsx = plain_script && [".jsx", ".tsx", ".js"].iter().any(|ext| args.id.ends_with(ext));
        let code = match bytes.as_deref().map(std::str::from_utf8) {
            Some(Ok(code)) if plain_script => Some(Cow::Borrowed(code)),
            // In the build directory rolldown would read it; a JSX file is read here to look
            // for a pragma.
            None if jsx => std::fs::read_to_string(args.id).ok().map(Cow::Owned),
            _ => None,
        };
        match code {
            Some(code) => {
                let code = match self.glob_imports(args.id, &code) {
                    Ok(Some(rewritten)) => Cow::Owned(rewritten),
                    Ok(None) => code,
                    Err(error) => return Err(self.failure.fail(error)),
                };
                let code = match classic_jsx_pragma(&code) {
                    Some(marked) => arcstr::ArcStr::from(marked),
                    None => arcstr::ArcStr::from(code.as_ref()),
                };
                // The app's own .js may hold JSX (Create React App's src/App.js): such a file
                // is compiled as JSX (a superset of JavaScript). Only one that looks like it
                // (a closing or self-closing tag), so that plain JavaScript skips the JSX
                // transform. Packages' files stay JavaScript.
                let app_js = [".js", ".mjs"].iter().any(|ext| args.id.ends_with(ext))
                    && !args.id.contains("/node_modules/")
                    && (code.contains("</") || code.contains("/>"));
                Ok(Some(HookLoadOutput { code, module_type: app_js.then_some(ModuleType::Jsx), ..Default::default() }))
            }
            None => Ok(None),
        }
    }
}

/// A file that names its JSX factory (`/** @jsx h */`, Preact's and Mithril's way) wants the
/// classic transform, as Babel and esbuild give it; the automatic runtime (the default, for
/// React 17+) would import `react/jsx-runtime` instead. The marker goes on the first line, so
/// line numbers stay as written.
fn classic_jsx_pragma(code: &str) -> Option<String> {
    let names_factory = code.contains("@jsx ") || code.contains("@jsx\t");
    (names_factory && !code.contains("@jsxRuntime")).then(|| format!("/* @jsxRuntime classic */{code}"))
}

/// Starts minifying each large chunk as soon as rolldown has rendered it: rolldown's last
/// steps (file names, the source map's assembly and text) run on one core, and the pieces of
/// the chunk take the other cores meanwhile.
#[derive(Debug)]
pub(super) struct MinifyEarly {
    /// `None`: rolldown minifies, or nothing is minified.
    pub(super) settings: Option<MinifySettings>,
    pub(super) source_map: bool,
    /// By the chunk's preliminary file name.
    pub(super) started: Mutex<HashMap<String, EarlyMinify>>,
}

impl Plugin for MinifyEarly {
    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("workz:minify-early")
    }

    fn register_hook_usage(&self) -> HookUsage {
        if self.settings.is_some() { HookUsage::RenderChunk } else { HookUsage::empty() }
    }

    async fn render_chunk(&self, _ctx: &PluginContext, args: &HookRenderChunkArgs<'_>) -> HookRenderChunkReturn {
        if let Some(settings) = &self.settings
            && let Some(job) = EarlyMinify::start(args.code.clone(), settings, self.source_map)
            && let Ok(mut started) = self.started.lock()
        {
            started.insert(args.chunk.filename.to_string(), job);
        }
        Ok(None)
    }
}
