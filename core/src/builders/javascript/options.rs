//! What to bundle and how rolldown is told (shared by the app's bundle and the scripts it
//! loads by URL), and how rolldown's diagnostics become the engine's errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rolldown::{BundlerOptions, BundlerTransformOptions, Either, InputItem, ModuleType, Platform, TreeshakeOptions};
use rolldown_common::ExperimentalOptions;

use crate::config::ModuleFormat;
use crate::error::{BuildError, Error};
use crate::source::SourceTree;

/// File extensions imported as assets: emitted under a hashed name, imported as its URL.
const ASSET_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "avif", "ico", "bmp", "woff", "woff2", "ttf", "otf", "eot", "mp3",
    "mp4", "webm", "ogg", "wav", "pdf", "wasm", "txt",
];

/// What to bundle.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// Where the app's files are: the build directory, or the source directory itself when
    /// the app is bundled in place (then `snapshot` is set and every read is checked against it).
    pub root: PathBuf,
    pub snapshot: Option<Arc<SourceTree>>,
    /// Entry modules, relative to `root`.
    pub entries: Vec<String>,
    pub format: ModuleFormat,
    /// `es2020`, or browser targets (`chrome80`, …).
    pub target: Either<String, Vec<String>>,
    pub minify: bool,
    pub sourcemap: bool,
    pub treeshake: bool,
    /// Expressions replaced at build time (`process.env.NODE_ENV`, `import.meta.env.MODE`, …).
    pub defines: Vec<(String, String)>,
}

/// The options every bundle of the app shares (its own entries and the scripts it loads by URL).
pub(super) fn bundler_options(spec: &BundleSpec, input: Vec<InputItem>) -> BundlerOptions {
    let mut module_types: rustc_hash::FxHashMap<String, ModuleType> = Default::default();
    for ext in ASSET_EXTENSIONS {
        module_types.insert(format!(".{ext}"), ModuleType::Asset);
    }
    BundlerOptions {
        input: Some(input),
        cwd: Some(spec.root.clone()),
        // Source-map `sources` are relative to the output directory: the release root
        // mirrors the app root, so they read `src/main.ts`, not rolldown's `../src/main.ts`.
        dir: Some(spec.root.display().to_string()),
        platform: Some(Platform::Browser),
        module_types: Some(module_types),
        define: Some(spec.defines.iter().cloned().collect()),
        treeshake: TreeshakeOptions::Boolean(spec.treeshake),
        transform: Some(BundlerTransformOptions { target: Some(spec.target.clone()), ..Default::default() }),
        // `new URL('./x.png', import.meta.url)`: the file is emitted and the URL rewritten.
        experimental: Some(ExperimentalOptions { resolve_new_url_to_asset: Some(true), ..Default::default() }),
        ..Default::default()
    }
}

/// A diagnostic's file relative to the app (rolldown gives it absolute or relative to the process).
fn relative(root: &Path, file: &str) -> String {
    let root_text = root.display().to_string();
    match file.find(&root_text) {
        Some(i) => file[i + root_text.len()..].trim_start_matches('/').to_string(),
        None => file.to_string(),
    }
}

/// rolldown's error batch as one build error, each diagnostic with its code frame; an
/// unresolved import is its own error.
pub(super) fn diagnostics(root: &Path, batch: rolldown_error::BatchedBuildDiagnostic) -> Error {
    if let Some(d) = batch.iter().find(|d| d.kind().to_string() == "UNRESOLVED_IMPORT") {
        return unresolved(root, d);
    }
    let options = rolldown_error::DiagnosticOptions { cwd: root.to_path_buf() };
    let render = |d: &rolldown_error::BuildDiagnostic| d.to_diagnostic_with(&options).convert_to_string(false);
    let syntax: Vec<String> = batch.iter().filter(|d| d.kind().to_string() == "PARSE_ERROR").map(render).collect();
    if !syntax.is_empty() {
        return BuildError::Validation(format!("syntax errors:\n{}", syntax.join("\n"))).into();
    }
    let messages: Vec<String> = batch.iter().map(render).collect();
    BuildError::Failed(format!("bundling failed:\n{}", messages.join("\n"))).into()
}

pub(super) fn unresolved(root: &Path, d: &rolldown_error::BuildDiagnostic) -> Error {
    let diagnostic = d.to_diagnostic();
    let location = diagnostic
        .get_primary_location()
        .map(|(file, line, column, _)| format!("{}:{line}:{}", relative(root, &file), column + 1))
        .unwrap_or_else(|| "(unknown)".into());
    let message = d.to_message_with(&Default::default());
    let specifier = message.split('\'').nth(1).or_else(|| message.split('"').nth(1)).unwrap_or(&message).to_string();
    BuildError::UnresolvedImport { specifier, location }.into()
}
