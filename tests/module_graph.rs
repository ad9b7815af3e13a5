//! The shape of `core/src`, checked so that it stays the way docs/architecture.md draws it:
//! the top-level modules (a file, or a folder taken whole) import each other without
//! circles, every file is short enough to read at once, and the layer list in the docs is
//! the one the imports give.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files allowed past the length limit, with the reason.
const LONG_FILES: &[(&str, &str)] = &[("builders/javascript/minify.rs", "the parallel minifier: one algorithm")];
const MAX_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules its non-test code names through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let module_of = |path: &Path| -> String {
        let first = path.strip_prefix(&root).unwrap().components().next().unwrap();
        first.as_os_str().to_str().unwrap().trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).filter(|m| m != "lib").collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let from = module_of(file);
        if from == "lib" || file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        // A file's unit tests may reach anywhere; the structure is that of the code they test.
        let code = text.split("\n#[cfg(test)]\nmod tests").next().unwrap();
        let mut names: Vec<&str> = code.split("crate::").skip(1).collect();
        // `use crate::{a, b::c}` names several modules at once.
        for group in code.split("use crate::{").skip(1) {
            names.extend(group.split('}').next().unwrap().split(','));
        }
        for name in names {
            let module: String = name.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if module != from && modules.contains(&module) {
                graph.get_mut(&from).unwrap().insert(module);
            }
        }
    }
    graph
}

/// Each module's layer: 0 for modules that import none, else one above the highest it imports.
fn layers(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, usize> {
    let mut layer = BTreeMap::new();
    let mut left: Vec<&String> = graph.keys().collect();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|m| {
            let deps = &graph[*m];
            if deps.iter().all(|d| layer.contains_key(d)) {
                let l = deps.iter().map(|d| layer[d] + 1).max().unwrap_or(0);
                layer.insert((*m).clone(), l);
                false
            } else {
                true
            }
        });
        assert!(left.len() < before, "import circle among {left:?}: {graph:#?}");
    }
    layer
}

#[test]
fn core_modules_import_each_other_without_circles() {
    let graph = module_graph();
    let layer = layers(&graph);
    for (module, deps) in &graph {
        for dep in deps {
            assert!(layer[dep] < layer[module], "{module} imports {dep}, which is not below it");
        }
    }
}

#[test]
fn the_architecture_page_lists_the_layers_the_imports_give() {
    let graph = module_graph();
    let layer = layers(&graph);
    let top = layer.values().max().copied().unwrap_or(0);
    let mut expected = String::new();
    for l in (0..=top).rev() {
        let names: Vec<String> = layer.iter().filter(|(_, v)| **v == l).map(|(m, _)| format!("`{m}`")).collect();
        expected.push_str(&format!("{l:>2}  {}\n", names.join(" ")));
    }
    let doc = std::fs::read_to_string(
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../docs/architecture.md"),
    )
    .unwrap();
    assert!(
        doc.contains(&expected),
        "docs/architecture.md's layer list (a code block, top to bottom) should read:\n{expected}"
    );
}

#[test]
fn every_file_is_short_enough_to_read_at_once() {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut long = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        if lines > MAX_LINES && !LONG_FILES.iter().any(|(f, _)| *f == rel) {
            long.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
}
