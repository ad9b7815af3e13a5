//! CSS: the stylesheets an entry imports (and those the page links), bundled with
//! their `@import`s, minified and prefixed for the targets by lightningcss, with
//! `url()` assets copied next to the output under content-hashed names.

use std::collections::HashMap;
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
use crate::fsutil::normalize;

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

/// Reads stylesheets from the build directory only; the virtual entry `@import`s the inputs.
struct Provider {
    root: PathBuf,
    entry: PathBuf,
    entry_text: String,
    files: Mutex<Vec<Box<str>>>,
}

impl SourceProvider for Provider {
    type Error = std::io::Error;

    fn read<'a>(&'a self, file: &Path) -> std::result::Result<&'a str, Self::Error> {
        if file == self.entry {
            return Ok(&self.entry_text);
        }
        if !file.starts_with(&self.root) {
            return Err(std::io::Error::other(format!("{} is outside the app", file.display())));
        }
        let raw = std::fs::read_to_string(file)?;
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
    error: Option<String>,
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
            self.error.get_or_insert(format!("url({shown}) does not name a file in the app"));
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
                    self.error.get_or_insert(format!("copying {}: {e}", file.display()));
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

/// Bundle `inputs` (absolute paths inside `root`, in order) into one stylesheet.
/// Returns the CSS text; `url()` assets are copied into `<out>/assets/`.
pub fn bundle(
    root: &Path,
    inputs: &[PathBuf],
    out_dir: &Path,
    targets: Option<Browsers>,
    minify: bool,
) -> Result<String> {
    let failed = |message: String| -> Error { BuildError::Failed(format!("CSS: {message}")).into() };
    let entry = root.join("\0workz-css-entry.css");
    let entry_text: String =
        inputs.iter().map(|p| format!("@import {};\n", serde_json::Value::String(p.display().to_string()))).collect();
    let provider =
        Provider { root: root.to_path_buf(), entry: entry.clone(), entry_text, files: Mutex::new(Vec::new()) };
    let mut bundler = Bundler::new(&provider, None, ParserOptions::default());
    let mut sheet = bundler.bundle(&entry).map_err(|e| {
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
        failed(format!("{location}{}", e.kind))
    })?;
    let mut rewriter = UrlRewriter { root, out_dir, copied: HashMap::new(), error: None };
    let _ = sheet.visit(&mut rewriter);
    if let Some(message) = rewriter.error {
        return Err(failed(message));
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
        std::fs::write(root.path().join("bad.css"), "a { color: red; }\n@import 'missing.css';\n").unwrap();
        std::fs::write(root.path().join("gone.css"), "@import './nope.css';").unwrap();
        let err = bundle(root.path(), &[root.path().join("gone.css")], root.path(), None, true).unwrap_err();
        assert!(err.to_string().contains("gone.css") || err.to_string().contains("nope.css"), "{err}");
    }
}
