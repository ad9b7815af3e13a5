//! CSS: the stylesheets an entry imports (and those the page links), bundled with
//! their `@import`s, minified and prefixed for the targets by lightningcss, with
//! `url()` assets copied next to the output under content-hashed names. Sass (`.scss`,
//! `.sass`) is compiled by grass as it is read; CSS modules (`*.module.css`, `*.module.scss`)
//! get scoped class names and a JavaScript module exporting the name map.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lightningcss::bundler::{Bundler, ResolveResult, SourceProvider};
use lightningcss::printer::PrinterOptions;
use lightningcss::stylesheet::{MinifyOptions, ParserOptions};
use lightningcss::targets::{Browsers, Targets};
use lightningcss::values::url::Url;
use lightningcss::visit_types;
use lightningcss::visitor::{Visit, VisitTypes, Visitor};

use crate::config::EsTarget;
use crate::digest::Digest;
use crate::error::{BuildError, Error, Result};
use crate::files::normalize;

/// Browser versions that support each ES level, for CSS prefixing when no browserslist query is set.
pub fn browsers_for(target: EsTarget) -> Option<Browsers> {
    let v = |major: u32, minor: u32| Some(major << 16 | minor << 8);
    let (chrome, firefox, safari, edge) = match target {
        EsTarget::Es2015 => (51, 54, (10, 0), 15),
        EsTarget::Es2016 => (52, 52, (10, 1), 15),
        EsTarget::Es2017 => (58, 53, (11, 0), 16),
        EsTarget::Es2018 => (64, 58, (12, 0), 79),
        EsTarget::Es2019 => (73, 66, (12, 1), 79),
        EsTarget::Es2020 => (80, 80, (14, 0), 80),
        EsTarget::Es2021 => (85, 80, (14, 1), 85),
        EsTarget::Es2022 => (94, 93, (16, 4), 94),
        EsTarget::Es2023 => (110, 115, (16, 4), 110),
        EsTarget::Es2024 => (119, 121, (17, 4), 119),
        EsTarget::Esnext => return None,
    };
    Some(Browsers {
        chrome: v(chrome, 0),
        firefox: v(firefox, 0),
        safari: v(safari.0, safari.1),
        ios_saf: v(safari.0, safari.1),
        edge: v(edge, 0),
        ..Browsers::default()
    })
}

/// Whether a stylesheet is Sass (compiled by grass before anything else reads it).
pub fn is_sass(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("scss" | "sass"))
}

/// Whether a path names a stylesheet (plain CSS or Sass).
pub fn is_stylesheet(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    path.ends_with(".css") || path.ends_with(".scss") || path.ends_with(".sass")
}

/// Whether a stylesheet is a CSS module (`button.module.css`, `card.module.scss`).
pub fn is_css_module(path: &str) -> bool {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    [".module.css", ".module.scss", ".module.sass"].iter().any(|ext| path.ends_with(ext))
}

/// Lets grass read the app's files only (its partials and `node_modules` packages).
#[derive(Debug)]
struct AppFiles<'a> {
    root: &'a Path,
}

impl AppFiles<'_> {
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let path = normalize(path);
        path.starts_with(self.root).then_some(path)
    }
}

impl grass_compiler::Fs for AppFiles<'_> {
    fn is_dir(&self, path: &Path) -> bool {
        self.inside(path).is_some_and(|p| p.is_dir())
    }

    fn is_file(&self, path: &Path) -> bool {
        self.inside(path).is_some_and(|p| p.is_file())
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        match self.inside(path) {
            Some(path) => std::fs::read(path),
            None => Err(std::io::Error::other(format!("{} is outside the app", path.display()))),
        }
    }
}

/// Compile a Sass file (`.scss`, or the indented `.sass`) to CSS. `@use`/`@import` find
/// partials next to the importing file and packages under the app's `node_modules`.
pub fn compile_sass(root: &Path, file: &Path) -> Result<String> {
    let fs = AppFiles { root };
    let syntax = match file.extension().and_then(|e| e.to_str()) {
        Some("sass") => grass_compiler::InputSyntax::Sass,
        _ => grass_compiler::InputSyntax::Scss,
    };
    let options = grass_compiler::Options::default()
        .fs(&fs)
        .logger(&grass_compiler::NullLogger)
        .input_syntax(syntax)
        .load_path(root.join("node_modules"));
    grass_compiler::from_path(file, &options).map_err(|e| {
        let rel = file.strip_prefix(root).unwrap_or(file);
        BuildError::Validation(format!("Sass: {}: {e}", rel.display())).into()
    })
}

/// A CSS module compiled: its scoped CSS, and the JavaScript module the app imports.
#[derive(Debug, Clone)]
pub struct CssModule {
    pub css: String,
    pub js: String,
}

/// Compile a CSS module: class names (and animations, grid areas) scoped as
/// `<file>_<name>_<hash of its path>`, `composes` resolved; the JavaScript side default-exports
/// `{name: "scoped names"}` and exports each name that is a JavaScript identifier.
pub fn compile_module(root: &Path, file: &Path) -> Result<CssModule> {
    let rel = file.strip_prefix(root).unwrap_or(file).display().to_string();
    let source = if is_sass(file) {
        compile_sass(root, file)?
    } else {
        std::fs::read_to_string(file).map_err(|e| BuildError::Validation(format!("{rel}: {e}")))?
    };
    let invalid = |message: String| -> Error { BuildError::Validation(format!("CSS module {rel}: {message}")).into() };
    let pattern = lightningcss::css_modules::Pattern::parse("[name]_[local]_[hash]")
        .map_err(|e| Error::internal(format!("CSS module pattern: {e}")))?;
    let options = ParserOptions {
        // The hash is of the path relative to the app: the same on every machine.
        filename: rel.clone(),
        css_modules: Some(lightningcss::css_modules::Config { pattern, ..Default::default() }),
        ..ParserOptions::default()
    };
    let sheet = lightningcss::stylesheet::StyleSheet::parse(&source, options).map_err(|e| {
        let at = e.loc.as_ref().map(|l| format!("{}:{}: ", l.line + 1, l.column)).unwrap_or_default();
        invalid(format!("{at}{}", e.kind))
    })?;
    let printed = sheet.to_css(PrinterOptions::default()).map_err(|e| invalid(e.to_string()))?;
    let mut exports: Vec<_> = printed.exports.unwrap_or_default().into_iter().collect();
    exports.sort_by(|a, b| a.0.cmp(&b.0));
    let mut imports: Vec<String> = Vec::new();
    let mut fields = Vec::new();
    for (name, _) in &exports {
        // `composes: a` brings everything `a` composes too (as css-loader and Vite do).
        let mut parts: Vec<String> = Vec::new();
        let mut pending = vec![name.as_str()];
        let mut visited = HashSet::new();
        while let Some(local) = pending.pop() {
            let Some((_, export)) = exports.iter().find(|(n, _)| n == local) else { continue };
            if !visited.insert(local) {
                continue;
            }
            parts.push(serde_json::Value::String(export.name.clone()).to_string());
            for composed in &export.composes {
                use lightningcss::css_modules::CssModuleReference as Ref;
                match composed {
                    Ref::Local { name } => {
                        if let Some((key, _)) = exports.iter().find(|(_, e)| &e.name == name) {
                            pending.push(key.as_str());
                        }
                    }
                    Ref::Global { name } => parts.push(serde_json::Value::String(name.clone()).to_string()),
                    Ref::Dependency { name, specifier } => {
                        let index = match imports.iter().position(|s| s == specifier) {
                            Some(i) => i,
                            None => {
                                imports.push(specifier.clone());
                                imports.len() - 1
                            }
                        };
                        parts.push(format!("__workz_composes{index}[{}]", serde_json::Value::String(name.clone())));
                    }
                }
            }
        }
        fields.push((name.clone(), parts.join(" + \" \" + ")));
    }
    let mut js = String::new();
    for (i, specifier) in imports.iter().enumerate() {
        js.push_str(&format!("import __workz_composes{i} from {};\n", serde_json::Value::String(specifier.clone())));
    }
    js.push_str("const classes = {\n");
    for (name, value) in &fields {
        js.push_str(&format!("  {}: {value},\n", serde_json::Value::String(name.clone())));
    }
    js.push_str("};\nexport default classes;\n");
    for (name, _) in &fields {
        if is_identifier(name) {
            js.push_str(&format!("export const {name} = classes[{}];\n", serde_json::Value::String(name.clone())));
        }
    }
    Ok(CssModule { css: printed.code, js })
}

/// A name that can be exported as `export const NAME` (ASCII identifiers that are not reserved).
fn is_identifier(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "debugger",
        "default",
        "delete",
        "do",
        "else",
        "enum",
        "export",
        "extends",
        "false",
        "finally",
        "for",
        "function",
        "if",
        "implements",
        "import",
        "in",
        "instanceof",
        "interface",
        "let",
        "new",
        "null",
        "package",
        "private",
        "protected",
        "public",
        "return",
        "static",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "typeof",
        "var",
        "void",
        "while",
        "with",
        "yield",
        "arguments",
        "eval",
        "classes",
    ];
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !RESERVED.contains(&name)
}

/// Reads stylesheets from the build directory only; the virtual entry `@import`s the inputs.
/// CSS modules are read as compiled (`compiled`), Sass files compiled on read.
struct Provider<'c> {
    root: PathBuf,
    entry: PathBuf,
    entry_text: String,
    compiled: &'c HashMap<PathBuf, String>,
    files: Mutex<Vec<Box<str>>>,
    /// The first Sass error (lightningcss's bundler only keeps an I/O error's kind).
    sass_error: Mutex<Option<Error>>,
}

impl SourceProvider for Provider<'_> {
    type Error = std::io::Error;

    fn read<'a>(&'a self, file: &Path) -> std::result::Result<&'a str, Self::Error> {
        if file == self.entry {
            return Ok(&self.entry_text);
        }
        if !file.starts_with(&self.root) {
            return Err(std::io::Error::other(format!("{} is outside the app", file.display())));
        }
        let raw = match self.compiled.get(file) {
            Some(css) => css.clone(),
            None if is_sass(file) => compile_sass(&self.root, file).map_err(|e| {
                let message = e.to_string();
                if let Ok(mut first) = self.sass_error.lock() {
                    first.get_or_insert(e);
                }
                std::io::Error::other(message)
            })?,
            None => std::fs::read_to_string(file)?,
        };
        let text: Box<str> = absolutize_urls(&raw, file).into_boxed_str();
        let ptr: *const str = &*text;
        self.files.lock().map_err(|_| std::io::Error::other("poisoned"))?.push(text);
        // SAFETY: the boxed str is kept in `files` until the provider is dropped, and a
        // Box's heap allocation does not move when the Vec holding it grows.
        Ok(unsafe { &*ptr })
    }

    fn resolve(&self, specifier: &str, originating_file: &Path) -> std::result::Result<ResolveResult, Self::Error> {
        if specifier.starts_with("http://") || specifier.starts_with("https://") || specifier.starts_with("//") {
            return Ok(ResolveResult::External(specifier.to_string()));
        }
        let base = originating_file.parent().unwrap_or(&self.root);
        let path = if let Some(pkg) = specifier.strip_prefix('~') {
            self.root.join("node_modules").join(pkg)
        } else if Path::new(specifier).is_absolute() {
            PathBuf::from(specifier)
        } else if specifier.starts_with('.') {
            base.join(specifier)
        } else {
            // A bare specifier is a package stylesheet (`@import "normalize.css"`), else relative.
            let in_package = self.root.join("node_modules").join(specifier);
            if in_package.exists() { in_package } else { base.join(specifier) }
        };
        Ok(ResolveResult::File(normalize(&path)))
    }
}

/// Marks a `url()` that was made absolute while its file was read (the bundled sheet no
/// longer knows which file a `url()` came from).
const FILE_URL: &str = "workz-file://";

/// Resolve the relative `url()`s of one stylesheet against its own path.
fn absolutize_urls(text: &str, file: &Path) -> String {
    struct Absolutize<'a>(&'a Path);
    impl<'i> Visitor<'i> for Absolutize<'_> {
        type Error = std::convert::Infallible;
        fn visit_types(&self) -> VisitTypes {
            visit_types!(URLS)
        }
        fn visit_url(&mut self, url: &mut Url<'i>) -> std::result::Result<(), Self::Error> {
            let spec = url.url.as_ref();
            let external = spec.contains(':') || spec.starts_with("//") || spec.starts_with('#') || spec.is_empty();
            if !external && !spec.starts_with('/') {
                let base = self.0.parent().unwrap_or(Path::new("/"));
                url.url = format!("{FILE_URL}{}", normalize(&base.join(spec)).display()).into();
            }
            Ok(())
        }
    }
    let options = ParserOptions { filename: file.display().to_string(), ..ParserOptions::default() };
    // A sheet that does not parse is returned as it is: the bundler reports the error with its location.
    let Ok(mut sheet) = lightningcss::stylesheet::StyleSheet::parse(text, options) else { return text.to_string() };
    let _ = sheet.visit(&mut Absolutize(file));
    sheet.to_css(PrinterOptions::default()).map(|r| r.code).unwrap_or_else(|_| text.to_string())
}

/// Copies `url()` assets into `<out>/assets/` and rewrites the references (relative to the CSS file there).
struct UrlRewriter<'a> {
    root: &'a Path,
    out_dir: &'a Path,
    copied: HashMap<PathBuf, String>,
    error: Option<Error>,
}

impl<'i> Visitor<'i> for UrlRewriter<'_> {
    type Error = std::convert::Infallible;

    fn visit_types(&self) -> VisitTypes {
        visit_types!(URLS)
    }

    fn visit_url(&mut self, url: &mut Url<'i>) -> std::result::Result<(), Self::Error> {
        let spec = url.url.as_ref().to_string();
        let path = if let Some(abs) = spec.strip_prefix(FILE_URL) {
            abs.to_string()
        } else if let Some(rooted) = spec.strip_prefix('/').filter(|s| !s.starts_with('/')) {
            self.root.join(rooted).display().to_string()
        } else {
            return Ok(());
        };
        let (path_part, suffix) = match path.find(['?', '#']) {
            Some(i) => (&path[..i], &path[i..]),
            None => (path.as_str(), ""),
        };
        let file = normalize(Path::new(path_part));
        if !file.starts_with(self.root) || !file.is_file() {
            let shown = file.strip_prefix(self.root).unwrap_or(&file).display().to_string();
            let message = format!("CSS: url({shown}) does not name a file in the app");
            self.error.get_or_insert(BuildError::Validation(message).into());
            return Ok(());
        }
        let name = match self.copied.get(&file) {
            Some(name) => name.clone(),
            None => match copy_hashed(&file, self.out_dir) {
                Ok(name) => {
                    self.copied.insert(file.clone(), name.clone());
                    name
                }
                Err(e) => {
                    self.error.get_or_insert(BuildError::io(format!("copying {}", file.display()))(e));
                    return Ok(());
                }
            },
        };
        // The CSS file lives in assets/ too.
        url.url = format!("{name}{suffix}").into();
        Ok(())
    }
}

/// Copy `file` to `<out>/assets/<stem>-<hash8>.<ext>`; returns the file name.
pub fn copy_hashed(file: &Path, out_dir: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(file)?;
    let hash = &Digest::of(&bytes).to_hex()[..8];
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("asset");
    let name = match file.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}-{hash}.{ext}"),
        None => format!("{stem}-{hash}"),
    };
    let dest = out_dir.join("assets").join(&name);
    std::fs::create_dir_all(out_dir.join("assets"))?;
    if !dest.exists() {
        std::fs::write(&dest, bytes)?;
    }
    Ok(name)
}

/// Bundle `inputs` (absolute paths inside `root`, in order) into one stylesheet; a path in
/// `compiled` (a CSS module) is taken as its compiled text.
/// Returns the CSS text; `url()` assets are copied into `<out>/assets/`.
pub fn bundle(
    root: &Path,
    inputs: &[PathBuf],
    compiled: &HashMap<PathBuf, String>,
    out_dir: &Path,
    targets: Option<Browsers>,
    minify: bool,
) -> Result<String> {
    // The sheets are the app's sources: what does not parse is the user's to fix.
    let invalid = |message: String| -> Error { BuildError::Validation(format!("CSS: {message}")).into() };
    let failed = |message: String| -> Error { BuildError::Failed(format!("CSS: {message}")).into() };
    let entry = root.join("\0workz-css-entry.css");
    let entry_text: String =
        inputs.iter().map(|p| format!("@import {};\n", serde_json::Value::String(p.display().to_string()))).collect();
    let provider = Provider {
        root: root.to_path_buf(),
        entry: entry.clone(),
        entry_text,
        compiled,
        files: Mutex::new(Vec::new()),
        sass_error: Mutex::new(None),
    };
    let mut bundler = Bundler::new(&provider, None, ParserOptions::default());
    let bundled = bundler.bundle(&entry);
    if let Some(e) = provider.sass_error.lock().ok().and_then(|mut e| e.take()) {
        return Err(e);
    }
    let mut sheet = bundled.map_err(|e| {
        let location = e
            .loc
            .as_ref()
            .map(|l| {
                let file = Path::new(&l.filename);
                let rel = file.strip_prefix(root).unwrap_or(file);
                // lightningcss lines are 0-based.
                format!("{}:{}:{}: ", rel.display(), l.line + 1, l.column)
            })
            .unwrap_or_default();
        invalid(format!("{location}{}", e.kind))
    })?;
    let mut rewriter = UrlRewriter { root, out_dir, copied: HashMap::new(), error: None };
    let _ = sheet.visit(&mut rewriter);
    if let Some(error) = rewriter.error {
        return Err(error);
    }
    let targets = Targets { browsers: targets, ..Targets::default() };
    sheet.minify(MinifyOptions { targets, ..MinifyOptions::default() }).map_err(|e| failed(e.to_string()))?;
    let out = sheet
        .to_css(PrinterOptions { minify, targets, ..PrinterOptions::default() })
        .map_err(|e| failed(e.to_string()))?;
    Ok(out.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_bundled_prefixed_and_assets_copied() {
        let root = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("styles/img")).unwrap();
        std::fs::write(r.join("styles/base.css"), ".base { color: red; }\n").unwrap();
        std::fs::write(
            r.join("styles/main.css"),
            "@import './base.css';\n.box { user-select: none; background: url(./img/dot.png); }\n",
        )
        .unwrap();
        std::fs::write(r.join("styles/img/dot.png"), b"\x89PNG fake").unwrap();
        std::fs::write(r.join("extra.css"), ".extra { display: flex }").unwrap();
        let css = bundle(
            r,
            &[r.join("styles/main.css"), r.join("extra.css")],
            &HashMap::new(),
            out.path(),
            browsers_for(EsTarget::Es2015),
            true,
        )
        .unwrap();
        assert!(css.starts_with(".base{color:red}"), "{css}");
        assert!(css.contains("-webkit-user-select:none"), "prefixed for old Safari: {css}");
        assert!(css.contains(".extra{display:flex}"));
        let asset = std::fs::read_dir(out.path().join("assets")).unwrap().next().unwrap().unwrap().file_name();
        let asset = asset.to_str().unwrap();
        assert!(asset.starts_with("dot-") && asset.ends_with(".png"));
        assert!(css.contains(&format!("url(\"{asset}\")")) || css.contains(&format!("url({asset})")), "{css}");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("bad.css"), "a { color: red; }\n\n.b { color: blue }\n.c {{ }\n").unwrap();
        let err =
            bundle(root.path(), &[root.path().join("bad.css")], &HashMap::new(), root.path(), None, true).unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        assert!(err.to_string().contains("bad.css:4:"), "{err}");
    }
}
