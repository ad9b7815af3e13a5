//! The app's own bundler, when `buildConfig.javascript.bundler` asks for it: esbuild or
//! webpack from its devDependencies (its config file when it has one, else one made
//! from the same settings), or `npm run build`. All run through the process runner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::bundle::EntryOutput;
use super::{Entries, css, find_entries, write_page};
use crate::builders::html;
use crate::config::{Bundler, ModuleFormat};
use crate::context::BuildContext;
use crate::error::{BuildError, Error, ProcessError, Result};
use crate::process::CommandSpec;

fn missing_tool(tool: &str) -> Error {
    ProcessError::ToolchainMissing { program: format!("{tool} (add it to the app's devDependencies)") }.into()
}

/// A package's bin script inside the app's node_modules, run with node when it is a script.
fn package_bin(dir: &Path, package: &str, bin: &str) -> Result<CommandSpec> {
    let manifest = dir.join("node_modules").join(package).join("package.json");
    let json: Value = std::fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| missing_tool(package))?;
    let rel = match json.get("bin") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m)) => m
            .get(bin)
            .or_else(|| m.values().next())
            .and_then(Value::as_str)
            .ok_or_else(|| missing_tool(package))?
            .to_string(),
        _ => return Err(missing_tool(package)),
    };
    let path = dir.join("node_modules").join(package).join(rel);
    let head = std::fs::read(&path).map_err(|_| missing_tool(package))?;
    let is_script = head.starts_with(b"#!") || path.extension().is_some_and(|e| e == "js" || e == "cjs" || e == "mjs");
    let mut spec = CommandSpec::from_command_line("node", dir).expect("a plain word splits");
    if is_script {
        spec.args = vec![path.display().to_string()];
    } else {
        spec.program = path.display().to_string();
        spec.args.clear();
    }
    Ok(spec)
}

fn first_existing(dir: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    if !from.is_dir() {
        return Err(BuildError::ArtifactMissing(format!("the build wrote nothing to {}", from.display())).into());
    }
    let tree = crate::source::SourceTree::from_dir(
        from,
        &Default::default(),
        &crate::config::SourceConfig { exclude: vec![], respect_gitignore: false },
    )?;
    let published = |f: &crate::source::SourceFile| !crate::builders::never_published(&f.path);
    tree.materialize(to, &published, &|| false).map_err(BuildError::io("copying the output"))
}

/// Build with the app's own tool into the context's output directory.
pub async fn build(ctx: &mut BuildContext, dir: &Path, bundler: Bundler) -> Result<()> {
    match bundler {
        Bundler::Esbuild => esbuild(ctx, dir).await,
        Bundler::Webpack => webpack(ctx, dir).await,
        Bundler::Script => script(ctx, dir).await,
        Bundler::Rolldown => Err(Error::internal("rolldown is not an external bundler")),
    }
}

struct Settings {
    minify: bool,
    sourcemap: bool,
    format: ModuleFormat,
    target: String,
    output_dir: String,
}

fn settings(ctx: &BuildContext) -> Result<Settings> {
    let app = ctx.app()?;
    Ok(Settings {
        minify: app.build_config.optimization.minify.unwrap_or(ctx.config.optimization.minification),
        sourcemap: app.build_config.optimization.source_maps.unwrap_or(ctx.config.optimization.source_maps),
        format: app.build_config.javascript.module_format,
        target: app.build_config.javascript.target.as_str().to_string(),
        output_dir: app.build_config.javascript.output_dir.clone(),
    })
}

fn env_for(out: &Path, s: &Settings) -> BTreeMap<String, String> {
    [
        ("WORKZ_OUT_DIR", out.display().to_string()),
        ("WORKZ_MINIFY", s.minify.to_string()),
        ("WORKZ_SOURCEMAP", s.sourcemap.to_string()),
        ("NODE_ENV", "production".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn esbuild(ctx: &mut BuildContext, dir: &Path) -> Result<()> {
    let out = ctx.output_dir()?.to_path_buf();
    let s = settings(ctx)?;
    let runner = ctx.runner(dir);
    if let Some(config) = first_existing(dir, &["esbuild.config.mjs", "esbuild.config.js", "esbuild.config.cjs"]) {
        // The app's own build script: it decides; it gets our settings in the environment.
        let mut spec = CommandSpec::from_command_line("node", dir).expect("a plain word splits");
        spec.args = vec![config.display().to_string()];
        spec.env = env_for(&out, &s);
        runner.run(&spec).await?;
        if !out.join("index.html").exists() && dir.join(&s.output_dir).is_dir() {
            copy_dir(&dir.join(&s.output_dir), &out)?;
        }
        return Ok(());
    }
    let tree = ctx.source()?.clone();
    let app = ctx.app()?.clone();
    let entries = find_entries(&tree, &app)?;
    let mut spec = package_bin(dir, "esbuild", "esbuild")?;
    let meta = dir.join(".workz-esbuild-meta.json");
    spec.args.extend(entries.modules.iter().cloned());
    spec.args.extend([
        "--bundle".to_string(),
        format!("--outdir={}", out.join("assets").display()),
        "--entry-names=[name]-[hash]".into(),
        "--chunk-names=[name]-[hash]".into(),
        "--asset-names=[name]-[hash]".into(),
        "--public-path=./assets".into(),
        format!("--format={}", if s.format == ModuleFormat::Esm { "esm" } else { "iife" }),
        format!("--target={}", s.target),
        format!("--metafile={}", meta.display()),
        "--log-level=warning".into(),
    ]);
    for ext in ["png", "jpg", "jpeg", "gif", "svg", "webp", "woff", "woff2", "ttf"] {
        spec.args.push(format!("--loader:.{ext}=file"));
    }
    if s.format == ModuleFormat::Esm {
        spec.args.push("--splitting".into());
    }
    if s.minify {
        spec.args.push("--minify".into());
    }
    if s.sourcemap {
        spec.args.push("--sourcemap".into());
    }
    runner.run(&spec).await?;
    let built = esbuild_entries(&meta, dir, &out, &entries)?;
    write_page(ctx, dir, &entries, &built, &Default::default(), css::browsers_for(app.build_config.javascript.target))
        .await
}

/// Map esbuild's metafile outputs back to entries.
fn esbuild_entries(meta: &Path, dir: &Path, out: &Path, entries: &Entries) -> Result<Vec<EntryOutput>> {
    let json: Value = std::fs::read(meta)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| BuildError::ArtifactMissing("esbuild wrote no metafile".into()))?;
    let outputs = json.get("outputs").and_then(Value::as_object).cloned().unwrap_or_default();
    let rel_out = |p: &str| -> String {
        let abs = if Path::new(p).is_absolute() { PathBuf::from(p) } else { crate::files::normalize(&dir.join(p)) };
        abs.strip_prefix(out).map(|r| r.display().to_string()).unwrap_or_else(|_| p.to_string())
    };
    let mut built = Vec::new();
    for entry in &entries.modules {
        let found = outputs
            .iter()
            .find(|(_, o)| o.get("entryPoint").and_then(Value::as_str).is_some_and(|e| html::local_path(e) == *entry));
        let Some((file, info)) = found else {
            return Err(BuildError::ArtifactMissing(format!("esbuild produced no output for {entry}")).into());
        };
        let static_imports = info
            .get("imports")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|i| i.get("kind").and_then(Value::as_str) == Some("import-statement"))
                    .filter_map(|i| i.get("path").and_then(Value::as_str).map(&rel_out))
                    .collect()
            })
            .unwrap_or_default();
        let css_files = info.get("cssBundle").and_then(Value::as_str).map(|c| vec![rel_out(c)]).unwrap_or_default();
        built.push(EntryOutput {
            entry: entry.clone(),
            script: rel_out(file),
            css_inputs: Vec::new(),
            static_imports,
            css_files,
        });
    }
    Ok(built)
}

async fn webpack(ctx: &mut BuildContext, dir: &Path) -> Result<()> {
    let out = ctx.output_dir()?.to_path_buf();
    let s = settings(ctx)?;
    let runner = ctx.runner(dir);
    let mut spec = package_bin(dir, "webpack-cli", "webpack-cli")?;
    if !dir.join("node_modules/webpack/package.json").is_file() {
        return Err(missing_tool("webpack"));
    }
    let own = first_existing(dir, &["webpack.config.js", "webpack.config.cjs", "webpack.config.mjs"]);
    let stats = dir.join(".workz-webpack-stats.json");
    let generated = own.is_none();
    let (config, entries) = match own {
        Some(config) => (config, None),
        None => {
            let tree = ctx.source()?.clone();
            let app = ctx.app()?.clone();
            let entries = find_entries(&tree, &app)?;
            let config = dir.join("workz.webpack.config.cjs");
            std::fs::write(&config, generated_webpack_config(dir, &entries, &s))
                .map_err(BuildError::io("writing the webpack config"))?;
            (config, Some(entries))
        }
    };
    spec.args.extend([
        "--config".to_string(),
        config.display().to_string(),
        "--mode".into(),
        "production".into(),
        "--output-path".into(),
        out.display().to_string(),
        "--json".into(),
        stats.display().to_string(),
    ]);
    spec.env = env_for(&out, &s);
    runner.run(&spec).await?;
    if out.join("index.html").is_file() {
        // The app's config made its own page (HtmlWebpackPlugin): keep it.
        return Ok(());
    }
    // Otherwise the page comes from the template (or a minimal one) with webpack's entry assets.
    let json: Value = std::fs::read(&stats).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let entrypoints = json.get("entrypoints").and_then(Value::as_object).cloned().unwrap_or_default();
    let order: Vec<String> = match (&entries, generated) {
        (Some(e), true) => (0..e.modules.len()).map(|i| format!("e{i}")).collect(),
        _ => entrypoints.keys().cloned().collect(),
    };
    let mut built = Vec::new();
    for name in order {
        let assets: Vec<String> = entrypoints
            .get(&name)
            .and_then(|e| e.get("assets"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get("name").and_then(Value::as_str).or_else(|| x.as_str()).map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let Some(script) = assets.iter().find(|a| a.ends_with(".js")).cloned() else {
            return Err(BuildError::ArtifactMissing(format!("webpack produced no script for entry {name}")).into());
        };
        let css_files = assets.iter().filter(|a| a.ends_with(".css")).cloned().collect();
        built.push(EntryOutput { entry: name, script, css_inputs: Vec::new(), static_imports: Vec::new(), css_files });
    }
    if built.is_empty() {
        return Err(BuildError::ArtifactMissing("webpack reported no entry points".into()).into());
    }
    let page = super::index_page(&ctx.source()?.clone())?;
    let entries = entries.unwrap_or(Entries { modules: Vec::new(), page, other_pages: Vec::new() });
    let target = ctx.app()?.build_config.javascript.target;
    write_page(ctx, dir, &entries, &built, &Default::default(), css::browsers_for(target)).await
}

fn generated_webpack_config(dir: &Path, entries: &Entries, s: &Settings) -> String {
    let has = |pkg: &str| dir.join("node_modules").join(pkg).join("package.json").is_file();
    let entry: serde_json::Map<String, Value> =
        entries.modules.iter().enumerate().map(|(i, m)| (format!("e{i}"), Value::String(format!("./{m}")))).collect();
    let mut rules =
        vec![r#"{ test: /\.(png|jpe?g|gif|svg|webp|avif|woff2?|ttf|otf)$/i, type: "asset/resource" }"#.to_string()];
    let mut plugins = Vec::new();
    let mut requires = Vec::new();
    if has("babel-loader") {
        rules.push(format!(
            r#"{{ test: /\.[cm]?jsx?$/, exclude: /node_modules/, use: {{ loader: "babel-loader", options: {{ presets: {} }} }} }}"#,
            if has("@babel/preset-env") { r#"[["@babel/preset-env", { targets: "defaults" }]]"# } else { "[]" }
        ));
    }
    if has("css-loader") && has("mini-css-extract-plugin") {
        requires.push(r#"const MiniCssExtractPlugin = require("mini-css-extract-plugin");"#.to_string());
        rules.push(r#"{ test: /\.css$/i, use: [MiniCssExtractPlugin.loader, "css-loader"] }"#.into());
        plugins.push(r#"new MiniCssExtractPlugin({ filename: "assets/[name]-[contenthash:8].css" })"#.to_string());
    } else if has("css-loader") && has("style-loader") {
        rules.push(r#"{ test: /\.css$/i, use: ["style-loader", "css-loader"] }"#.into());
    }
    format!(
        "// Generated by workz-build from the app's settings.\n{requires}\nmodule.exports = {{\n  mode: \"production\",\n  context: __dirname,\n  entry: {entry},\n  output: {{ filename: \"assets/[name]-[contenthash:8].js\", chunkFilename: \"assets/[name]-[contenthash:8].js\", assetModuleFilename: \"assets/[name]-[hash:8][ext]\", publicPath: \"./\" }},\n  devtool: {devtool},\n  target: [\"web\", \"{target}\"],\n  optimization: {{ minimize: {minimize} }},\n  module: {{ rules: [\n    {rules}\n  ] }},\n  plugins: [{plugins}],\n}};\n",
        requires = requires.join("\n"),
        entry = Value::Object(entry),
        devtool = if s.sourcemap { "\"source-map\"" } else { "false" },
        target = if s.target == "esnext" { "es2022" } else { &s.target },
        minimize = s.minify,
        rules = rules.join(",\n    "),
        plugins = plugins.join(", "),
    )
}

async fn script(ctx: &mut BuildContext, dir: &Path) -> Result<()> {
    let out = ctx.output_dir()?.to_path_buf();
    let s = settings(ctx)?;
    let app = ctx.app()?.clone();
    let script = app.build_config.javascript.build_script.clone();
    let has_script = std::fs::read(dir.join("package.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|p| p.pointer(&format!("/scripts/{script}")).cloned())
        .is_some();
    if !has_script {
        return Err(BuildError::Validation(format!(
            "bundler \"script\" runs `npm run {script}`, but package.json has no \"{script}\" script"
        ))
        .into());
    }
    let runner = ctx.runner(dir);
    let mut spec = CommandSpec::from_command_line("npm", dir).expect("a plain word splits");
    spec.args = vec!["run".into(), script];
    spec.env = env_for(&out, &s);
    runner.run(&spec).await?;
    let output = dir.join(&s.output_dir);
    if !output.starts_with(dir) || s.output_dir.contains("..") {
        return Err(BuildError::Validation("buildConfig.javascript.outputDir must stay inside the app".into()).into());
    }
    copy_dir(&output, &out)
}
