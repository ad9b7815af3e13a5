//! Vite's `import.meta.glob`: each call is replaced, before rolldown reads the module, by an
//! object of the matching files — `{"./pages/a.ts": () => import("./pages/a.ts")}`, or with
//! `{ eager: true }` the modules imported up front — as Vite does. (rolldown has no import-glob
//! plugin for its version here; left alone, the call throws in the browser.)
//!
//! Patterns are relative to the importing file (`./`, `../`) or to the app root (`/`); `*` stays
//! within a directory, `**` crosses them, a `!` pattern excludes; `node_modules` and the
//! importing file itself are never matched. Options: `eager`, `import` (one export).

use std::path::Path;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use oxc::allocator::Allocator;
use oxc::ast::ast::{Argument, CallExpression, Expression, ObjectPropertyKind, PropertyKey};
use oxc::ast_visit::{Visit, walk};
use oxc::parser::Parser;

/// One `import.meta.glob(...)` call: where it is and what it asks for.
struct GlobCall {
    start: usize,
    end: usize,
    patterns: Vec<String>,
    eager: bool,
    import: Option<String>,
}

#[derive(Default)]
struct Finder {
    calls: Vec<GlobCall>,
    /// The first call this engine cannot rewrite (its offset), and why.
    refused: Option<(usize, String)>,
}

fn is_import_meta_glob(callee: &Expression<'_>) -> bool {
    matches!(callee, Expression::StaticMemberExpression(m)
        if m.property.name == "glob"
            && matches!(&m.object, Expression::ImportMeta(_)))
}

fn string_of(expression: &Expression<'_>) -> Option<String> {
    match expression {
        Expression::StringLiteral(s) => Some(s.value.to_string()),
        Expression::TemplateLiteral(t) if t.expressions.is_empty() => {
            Some(t.quasis.iter().map(|q| q.value.raw.as_str()).collect())
        }
        _ => None,
    }
}

impl Finder {
    fn call(&self, it: &CallExpression<'_>) -> Result<GlobCall, String> {
        let patterns = match it.arguments.first() {
            Some(Argument::ArrayExpression(array)) => array
                .elements
                .iter()
                .map(|e| e.as_expression().and_then(string_of))
                .collect::<Option<Vec<_>>>()
                .ok_or("its patterns must be string literals")?,
            Some(argument) => {
                vec![argument.as_expression().and_then(string_of).ok_or("its pattern must be a string literal")?]
            }
            None => return Err("it needs a pattern".into()),
        };
        let mut call =
            GlobCall { start: it.span.start as usize, end: it.span.end as usize, patterns, eager: false, import: None };
        if let Some(Argument::ObjectExpression(options)) = it.arguments.get(1) {
            for property in &options.properties {
                let ObjectPropertyKind::ObjectProperty(p) = property else {
                    return Err("its options must be literal".into());
                };
                let key = match &p.key {
                    PropertyKey::StaticIdentifier(id) => id.name.to_string(),
                    PropertyKey::StringLiteral(s) => s.value.to_string(),
                    _ => return Err("its options must be literal".into()),
                };
                match (key.as_str(), &p.value) {
                    ("eager", Expression::BooleanLiteral(b)) => call.eager = b.value,
                    ("import", value) => {
                        call.import = Some(string_of(value).ok_or("`import` must be a string literal")?)
                    }
                    ("exhaustive", Expression::BooleanLiteral(_)) => {}
                    (other, _) => {
                        return Err(format!("the option `{other}` is not supported here (only `eager` and `import`)"));
                    }
                }
            }
        } else if it.arguments.len() > 1 {
            return Err("its options must be an object literal".into());
        }
        Ok(call)
    }
}

impl<'a> Visit<'a> for Finder {
    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        if is_import_meta_glob(&it.callee) {
            match self.call(it) {
                Ok(call) => self.calls.push(call),
                Err(why) => {
                    self.refused.get_or_insert((it.span.start as usize, why));
                }
            }
            return;
        }
        walk::walk_call_expression(self, it);
    }
}

/// The path from `dir` (app-relative, `""` for the root) to the app-relative `file`, as an
/// import specifier: `./pages/a.ts`, `../lib/b.ts`.
fn relative_to(dir: &str, file: &str) -> String {
    let dir_parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    let file_parts: Vec<&str> = file.split('/').collect();
    let common = dir_parts.iter().zip(&file_parts).take_while(|(a, b)| a == b).count();
    let ups = dir_parts.len() - common;
    let rest = file_parts[common..].join("/");
    if ups == 0 { format!("./{rest}") } else { format!("{}{rest}", "../".repeat(ups)) }
}

/// An app-relative glob for `pattern` written in a module of `dir`; an exclusion may also
/// start with `**/` (anywhere in the app), as Vite allows.
fn app_glob(dir: &str, pattern: &str, exclusion: bool) -> Result<String, String> {
    let joined = match pattern {
        p if p.starts_with('/') => p.trim_start_matches('/').to_string(),
        p if p.starts_with("./") || p.starts_with("../") => format!("{dir}/{p}"),
        p if exclusion && p.starts_with("**/") => return Ok(p.to_string()),
        p => return Err(format!("the pattern {p:?} must start with ./, ../ or /")),
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." if parts.pop().is_some() => {}
            ".." => return Err(format!("the pattern {pattern:?} leads out of the app")),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn glob_set(globs: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        let glob = GlobBuilder::new(glob).literal_separator(true).build().map_err(|e| e.to_string())?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

/// The app-relative paths of the files under `root`, `node_modules` and `.git` left out.
pub fn app_files(root: &Path) -> Vec<String> {
    let mut walker = ignore::WalkBuilder::new(root);
    walker.standard_filters(false).follow_links(false);
    walker.filter_entry(|entry| !matches!(entry.file_name().to_str(), Some("node_modules" | ".git")));
    let mut files: Vec<String> = walker
        .build()
        .flatten()
        .filter(|entry| entry.file_type().is_some_and(|t| t.is_file()))
        .filter_map(|entry| entry.path().strip_prefix(root).ok().and_then(|p| p.to_str()).map(str::to_string))
        .collect();
    files.sort();
    files
}

/// `code` of the app-relative module `module` with every `import.meta.glob` call replaced, or
/// `None` when it has none. `files` are the app's files, app-relative.
pub fn rewrite(code: &str, module: &str, files: &[&str]) -> Result<Option<String>, String> {
    if !code.contains("import.meta.glob") {
        return Ok(None);
    }
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, code, super::validate::source_type(module)).parse();
    let mut finder = Finder::default();
    finder.visit_program(&parsed.program);
    if let Some((offset, why)) = finder.refused {
        let line = code[..offset.min(code.len())].matches('\n').count() + 1;
        return Err(format!("{module}:{line}: import.meta.glob: {why}"));
    }
    if finder.calls.is_empty() {
        return Ok(None);
    }
    let dir = module.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut hoisted = String::new();
    let mut out = String::new();
    let mut at = 0;
    for (i, call) in finder.calls.iter().enumerate() {
        let (mut include, mut exclude) = (Vec::new(), Vec::new());
        for pattern in &call.patterns {
            match pattern.strip_prefix('!') {
                Some(negated) => exclude.push(app_glob(dir, negated, true)?),
                None => include.push(app_glob(dir, pattern, false)?),
            }
        }
        let absolute = call.patterns.iter().all(|p| p.trim_start_matches('!').starts_with('/'));
        let (include, exclude) = (glob_set(&include)?, glob_set(&exclude)?);
        let mut entries = Vec::new();
        for (j, file) in files
            .iter()
            .filter(|f| **f != module && !f.split('/').any(|part| part == "node_modules"))
            .filter(|f| include.is_match(f) && !exclude.is_match(f))
            .enumerate()
        {
            let specifier = relative_to(dir, file);
            let key = if absolute { format!("/{file}") } else { specifier.clone() };
            let (key, specifier_json) = (
                serde_json::to_string(&key).unwrap_or_default(),
                serde_json::to_string(&specifier).unwrap_or_default(),
            );
            let value = match (call.eager, &call.import) {
                (true, import) => {
                    let local = format!("__workz_glob_{i}_{j}");
                    match import {
                        Some(name) => hoisted.push_str(&format!(
                            "import {{ {} as {local} }} from {specifier_json};",
                            export_name(name)?
                        )),
                        None => hoisted.push_str(&format!("import * as {local} from {specifier_json};")),
                    }
                    local
                }
                (false, Some(name)) => {
                    let name = serde_json::to_string(name).unwrap_or_default();
                    format!("() => import({specifier_json}).then((m) => m[{name}])")
                }
                (false, None) => format!("() => import({specifier_json})"),
            };
            entries.push(format!("{key}: {value}"));
        }
        out.push_str(&code[at..call.start]);
        // One line, so that a call's line numbers stay those of the code around it.
        out.push_str(&format!("({{{}}})", entries.join(", ")));
        at = call.end;
    }
    out.push_str(&code[at..]);
    // The hoisted imports go on the first line, so that every line keeps its number.
    Ok(Some(format!("{hoisted}{out}")))
}

/// An export named in `import`: `default` or an identifier.
fn export_name(name: &str) -> Result<&str, String> {
    let identifier = name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == '$')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$');
    if identifier { Ok(name) } else { Err(format!("`import: {name:?}` must name an export")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: &[&str] = &[
        "src/main.ts",
        "src/pages/about.ts",
        "src/pages/home.ts",
        "src/pages/nested/deep.ts",
        "src/pages/skip.test.ts",
        "src/locales/en.json",
        "node_modules/x/pages/a.ts",
    ];

    #[test]
    fn lazy_eager_named_and_negated_globs_become_objects_of_the_matching_files() {
        let code = "const a = import.meta.glob('./pages/*.ts');\n\
                    const b = import.meta.glob(['./pages/**/*.ts', '!**/*.test.ts'], { eager: true });\n\
                    const c = import.meta.glob<string>('/src/locales/*.json', { import: 'default' });\n";
        let out = rewrite(code, "src/main.ts", FILES).unwrap().unwrap();
        assert!(out.contains(r#"const a = ({"./pages/about.ts": () => import("./pages/about.ts"), "./pages/home.ts": () => import("./pages/home.ts"), "./pages/skip.test.ts": () => import("./pages/skip.test.ts")});"#), "{out}");
        assert!(out.starts_with("import * as __workz_glob_1_0 from \"./pages/about.ts\";import"), "{out}");
        assert!(out.contains(r#"const b = ({"./pages/about.ts": __workz_glob_1_0, "./pages/home.ts": __workz_glob_1_1, "./pages/nested/deep.ts": __workz_glob_1_2});"#), "{out}");
        assert!(
            out.contains(
                r#"const c = ({"/src/locales/en.json": () => import("./locales/en.json").then((m) => m["default"])});"#
            ),
            "{out}"
        );
        assert!(!out.contains("node_modules"), "{out}");
        assert_eq!(out.lines().count(), 3, "every line keeps its number: {out}");
    }

    #[test]
    fn a_build_directory_is_listed_by_name_without_its_packages() {
        let dir = tempfile::tempdir().unwrap();
        for file in ["src/main.ts", "src/pages/a.ts", "node_modules/x/index.js", ".git/HEAD", "index.html"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        assert_eq!(app_files(dir.path()), ["index.html", "src/main.ts", "src/pages/a.ts"]);
    }

    #[test]
    fn parent_patterns_keys_and_what_cannot_be_rewritten() {
        let out =
            rewrite("export default import.meta.glob('../pages/*.ts')", "src/lib/index.ts", FILES).unwrap().unwrap();
        assert!(out.contains(r#""../pages/about.ts": () => import("../pages/about.ts")"#), "{out}");
        assert_eq!(rewrite("const x = 1", "src/a.ts", FILES).unwrap(), None);
        for (code, why) in [
            ("import.meta.glob(name)", "string literal"),
            ("import.meta.glob('pages/*.ts')", "must start with"),
            ("import.meta.glob('../../../*.ts')", "out of the app"),
            ("import.meta.glob('./*.ts', { query: '?raw' })", "`query` is not supported"),
        ] {
            let err = rewrite(code, "src/main.ts", FILES).unwrap_err();
            assert!(err.contains(why), "{code}: {err}");
        }
    }
}
