//! Transpile, bundle and minify in-process with rolldown; CSS imports are collected by
//! a plugin (rolldown has no CSS bundling) and bundled per entry chunk by lightningcss.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rolldown::{
    BundlerOptions, ChunkFilenamesOutputOption, CodeSplittingMode, Either, InputItem, OutputFormat, RawMinifyOptions,
    SourceMapType,
};
use rolldown_common::Output;

use oxc::minifier::CompressOptions;
use oxc::transformer::EngineTargets;

use super::minify::{ChunkSourceMap, EarlyMinify, Minified, MinifySettings, minify_chunk};
pub use super::options::BundleSpec;
use super::options::{bundler_options, diagnostics, unresolved};
use super::plugins::{CssImports, MinifyEarly, PluginFailure, RawImports, ScriptUrls, SourceGuard};
use crate::config::ModuleFormat;
use crate::error::{BuildError, Error, Result};

impl ChunkSourceMap for rolldown_common::OutputChunk {
    fn source_map(&self) -> Option<&oxc_sourcemap::SourceMap<'static>> {
        self.map.as_ref()
    }
}

/// One entry's built files, relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOutput {
    /// The entry module, relative to the app root.
    pub entry: String,
    pub script: String,
    /// Stylesheets imported anywhere below the entry, in import order (absolute paths).
    pub css_inputs: Vec<PathBuf>,
    /// Chunks the entry loads at startup (for modulepreload hints).
    pub static_imports: Vec<String>,
    /// Stylesheets another bundler already wrote, relative to the output directory.
    pub css_files: Vec<String>,
}

/// What bundling wrote: each entry's files, and the compiled CSS modules its stylesheets use.
#[derive(Debug, Clone, Default)]
pub struct Bundled {
    pub entries: Vec<EntryOutput>,
    /// The scoped CSS of each CSS module, by file (read instead of the file when bundling CSS).
    pub compiled_css: Arc<HashMap<PathBuf, String>>,
}

/// Bundle and write the chunks (at the root of `out`) and assets (under `<out>/assets/`).
pub async fn bundle(spec: &BundleSpec, out_dir: &Path) -> Result<Bundled> {
    let names = entry_names(&spec.entries);
    let input = spec
        .entries
        .iter()
        .zip(&names)
        .map(|(entry, name)| InputItem {
            name: Some(name.clone()),
            import: spec.root.join(entry).display().to_string(),
        })
        .collect();
    // A module chunk is minified here, on every core (minify.rs); rolldown minifies a chunk
    // on one. Its minify switch also picks the production `process.env.NODE_ENV`, so that is
    // defined here too.
    let own_minify = spec.minify && spec.format == ModuleFormat::Esm;
    let options = BundlerOptions {
        format: Some(match spec.format {
            ModuleFormat::Esm => OutputFormat::Esm,
            ModuleFormat::Iife => OutputFormat::Iife,
        }),
        // IIFE cannot load split chunks: dynamic imports are inlined there.
        code_splitting: Some(CodeSplittingMode::Bool(spec.format == ModuleFormat::Esm)),
        // Scripts sit next to the page: rolldown writes an imported asset's URL relative to
        // the chunk, and a page resolves it against the document, so the two must agree.
        entry_filenames: Some(ChunkFilenamesOutputOption::String("[name]-[hash].js".into())),
        chunk_filenames: Some(ChunkFilenamesOutputOption::String("[name]-[hash].js".into())),
        asset_filenames: Some(rolldown::AssetFilenamesOutputOption::String("assets/[name]-[hash][extname]".into())),
        minify: Some(RawMinifyOptions::Bool(spec.minify && !own_minify)),
        minify_internal_exports: own_minify.then_some(true),
        sourcemap: spec.sourcemap.then_some(SourceMapType::File),
        ..bundler_options(spec, input)
    };
    let failure = Arc::new(PluginFailure::default());
    let css = Arc::new(CssImports {
        root: spec.root.clone(),
        seen: Mutex::new(HashSet::new()),
        compiled: Mutex::new(HashMap::new()),
        failure: failure.clone(),
    });
    let guard = Arc::new(SourceGuard {
        root: spec.root.clone(),
        snapshot: spec.snapshot.clone(),
        refused: Mutex::new(Vec::new()),
        failure: failure.clone(),
    });
    let script_urls = Arc::new(ScriptUrls { spec: spec.clone(), failure: failure.clone() });
    let raw = Arc::new(RawImports { root: spec.root.clone() });
    let early = Arc::new(MinifyEarly {
        settings: if own_minify { Some(minify_settings(&spec.target)?) } else { None },
        source_map: spec.sourcemap,
        started: Mutex::new(HashMap::new()),
    });
    let mut bundler =
        rolldown::Bundler::with_plugins(options, vec![guard.clone(), css.clone(), script_urls, raw, early.clone()])
            .map_err(|e| diagnostics(&spec.root, e))?;
    let generated = bundler.generate().await;
    if let Some(e) = failure.take().or_else(|| guard.refused()) {
        return Err(e);
    }
    let output = generated.map_err(|e| diagnostics(&spec.root, e))?;
    let _ = bundler.close().await;

    if let Some(warning) = output.warnings.iter().find(|w| w.kind().to_string() == "UNRESOLVED_IMPORT") {
        return Err(unresolved(&spec.root, warning));
    }

    let css_ids: HashSet<String> = css.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut minified = match &early.settings {
        Some(settings) => {
            let started = std::mem::take(&mut *early.started.lock().map_err(|_| Error::internal("minifier lock"))?);
            minify_chunks(&output.assets, settings, started)
        }
        None => HashMap::new(),
    };
    let mut chunks: HashMap<String, Arc<rolldown_common::OutputChunk>> = HashMap::new();
    let chunk_maps: HashSet<String> = output
        .assets
        .iter()
        .filter_map(|item| match item {
            Output::Chunk(chunk) if chunk.map.is_some() => {
                Some(chunk.sourcemap_filename.clone().unwrap_or_else(|| format!("{}.map", chunk.filename)))
            }
            _ => None,
        })
        .collect();
    for item in &output.assets {
        let name = item.filename().to_string();
        let dest = safe_join(out_dir, &name)?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(write_failed(&dest))?;
        }
        match item {
            Output::Chunk(chunk) => {
                let own = minified.remove(&name);
                let (code, map) = match &own {
                    Some(m) => (m.code.as_str(), m.map.as_ref()),
                    None => (chunk.code.as_str(), chunk.map.as_ref()),
                };
                std::fs::write(&dest, code.as_bytes()).map_err(write_failed(&dest))?;
                if let Some(map) = map {
                    let map_name = chunk.sourcemap_filename.clone().unwrap_or_else(|| format!("{name}.map"));
                    let map_dest = safe_join(out_dir, &map_name)?;
                    std::fs::write(&map_dest, map.to_json_string()).map_err(write_failed(&map_dest))?;
                }
                chunks.insert(name, chunk.clone());
            }
            // rolldown also lists each chunk's source map as an asset: the chunk's own map
            // (minified here, maybe) is the one written.
            Output::Asset(_) if chunk_maps.contains(name.as_str()) => {}
            Output::Asset(asset) => {
                std::fs::write(&dest, asset.source.as_bytes()).map_err(write_failed(&dest))?;
            }
        }
    }

    let mut entries = Vec::new();
    for (entry, name) in spec.entries.iter().zip(&names) {
        let Some(chunk) = chunks.values().find(|c| c.is_entry && c.name.as_str() == name) else {
            return Err(BuildError::ArtifactMissing(format!("no output chunk for entry {entry}")).into());
        };
        let mut css_inputs = Vec::new();
        let mut seen_css = HashSet::new();
        let mut visited = HashSet::new();
        collect_css(chunk, &chunks, &css_ids, &mut visited, &mut seen_css, &mut css_inputs);
        let mut static_imports = Vec::new();
        collect_static(chunk, &chunks, &mut HashSet::new(), &mut static_imports);
        entries.push(EntryOutput {
            entry: entry.clone(),
            script: chunk.filename.to_string(),
            css_inputs,
            static_imports,
            css_files: Vec::new(),
        });
    }
    let compiled_css = std::mem::take(&mut *css.compiled.lock().map_err(|_| Error::internal("CSS module lock"))?);
    Ok(Bundled { entries, compiled_css: Arc::new(compiled_css) })
}

fn minify_settings(target: &Either<String, Vec<String>>) -> Result<MinifySettings> {
    let targets = match target {
        Either::Left(target) => EngineTargets::from_target(target),
        Either::Right(targets) => EngineTargets::from_target_list(targets),
    }
    .map_err(|e| BuildError::Failed(format!("minifier target: {e}")))?;
    Ok(MinifySettings {
        module: true,
        // Two peephole passes instead of "until nothing changes": on three.js x10 the bundle
        // grows 0.1 % (7,025,530 vs 7,017,810 bytes) and the build takes 5 % less time.
        compress: CompressOptions { target: targets, max_iterations: Some(1), ..CompressOptions::smallest() },
        split: true,
    })
}

/// Every chunk minified, by file name: those started early are finished (when rolldown did
/// not change them after rendering), the others minified now, side by side (large ones cut
/// into pieces on their own threads).
fn minify_chunks(
    assets: &[Output],
    settings: &MinifySettings,
    mut started: HashMap<String, EarlyMinify>,
) -> HashMap<String, Minified> {
    use rayon::prelude::*;
    let chunks: Vec<(Arc<rolldown_common::OutputChunk>, Option<EarlyMinify>)> = assets
        .iter()
        .filter_map(|item| match item {
            Output::Chunk(chunk) => Some((chunk.clone(), started.remove(&chunk.preliminary_filename))),
            Output::Asset(_) => None,
        })
        .collect();
    chunks
        .into_par_iter()
        .map(|(chunk, early)| {
            let name = chunk.filename.to_string();
            let finished = early.and_then(|job| job.finish(chunk.clone(), &chunk.code, &name));
            let early = finished.is_some();
            let minified = finished.unwrap_or_else(|| minify_chunk(&chunk.code, chunk.map.as_ref(), &name, settings));
            tracing::debug!(chunk = %name, early, pieces = minified.pieces, bytes = minified.code.len(), "minified");
            (name, minified)
        })
        .collect()
}

/// Stylesheets below `chunk`: statically imported chunks first (they run first), then its
/// own modules in order, then what it loads dynamically.
fn collect_css(
    chunk: &rolldown_common::OutputChunk,
    chunks: &HashMap<String, Arc<rolldown_common::OutputChunk>>,
    css_ids: &HashSet<String>,
    visited: &mut HashSet<String>,
    seen: &mut HashSet<String>,
    out: &mut Vec<PathBuf>,
) {
    if !visited.insert(chunk.filename.to_string()) {
        return;
    }
    for import in &chunk.imports {
        if let Some(c) = chunks.get(import.as_str()) {
            collect_css(c, chunks, css_ids, visited, seen, out);
        }
    }
    for id in &chunk.module_ids {
        let id = id.to_string();
        if css_ids.contains(&id) && seen.insert(id.clone()) {
            out.push(PathBuf::from(id.split(['?', '#']).next().unwrap_or(&id)));
        }
    }
    for import in &chunk.dynamic_imports {
        if let Some(c) = chunks.get(import.as_str()) {
            collect_css(c, chunks, css_ids, visited, seen, out);
        }
    }
}

fn collect_static(
    chunk: &rolldown_common::OutputChunk,
    chunks: &HashMap<String, Arc<rolldown_common::OutputChunk>>,
    visited: &mut HashSet<String>,
    out: &mut Vec<String>,
) {
    for import in &chunk.imports {
        if visited.insert(import.to_string()) {
            out.push(import.to_string());
            if let Some(c) = chunks.get(import.as_str()) {
                collect_static(c, chunks, visited, out);
            }
        }
    }
}

/// Unique chunk names from entry file stems (`src/main.ts` → `main`, a second `main` → `main2`).
fn entry_names(entries: &[String]) -> Vec<String> {
    let mut used: BTreeMap<String, usize> = BTreeMap::new();
    entries
        .iter()
        .map(|e| {
            let stem = Path::new(e).file_stem().and_then(|s| s.to_str()).unwrap_or("entry");
            let stem: String =
                stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
            let n = used.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n == 1 { stem } else { format!("{stem}{n}") }
        })
        .collect()
}

/// `out/name` for a name the bundler produced: never outside `out`.
fn safe_join(out: &Path, name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(Error::internal(format!("bundler produced an unsafe output name {name:?}")));
    }
    Ok(out.join(p))
}

fn write_failed(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    BuildError::io(format!("writing {}", path.display()))
}
