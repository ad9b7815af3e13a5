//! The chunk minifier (core/src/builders/javascript/minify.rs) on chunks large enough to be
//! cut into pieces: the minified code must compute what the chunk computes (run in Node), its
//! source map must lead back to the original text, and a chunk whose pieces could not be
//! compressed apart must be minified whole.

use std::path::Path;
use std::process::Command;

use oxc::allocator::Allocator;
use oxc::codegen::{Codegen, CodegenOptions};
use oxc::parser::Parser;
use oxc::span::SourceType;
use std::sync::Arc;

use workz_build::builders::javascript::minify::{ChunkSourceMap, EarlyMinify, MinifySettings, minify_chunk};

/// A chunk shaped like rolldown's: a runtime region, then one region per module, each using
/// the one before through functions, classes, constants, a mutable binding, shorthand
/// properties and destructuring, then an export clause.
fn chunk(modules: usize, extra: impl Fn(usize) -> String) -> String {
    let mut code =
        String::from("//#region \\0rolldown/runtime.js\nvar __defProp = Object.defineProperty;\n//#endregion\n");
    code.push_str("//#region mod0.js\nfunction helper0(x) { return x + 1; }\nlet counter0 = 0;\n");
    code.push_str("class Shape0 { constructor(n) { this.n = n; } area() { return helper0(this.n); } }\n");
    code.push_str("const tag0 = \"tag0\";\nconst table0 = { helper0, Shape0, tag0 };\n//#endregion\n");
    for i in 1..modules {
        let p = i - 1;
        code.push_str(&format!(
            "//#region mod{i}.js\n\
             function helper{i}(value) {{ if (value < 0) throw new Error(\"marker{i}\"); const {{ helper{p}: previous }} = table{p}; return previous(value) * 3 % 1000003; }}\n\
             let counter{i} = 0;\n\
             function bump{i}() {{ counter{i} += helper{p}(counter{i}); return counter{i}; }}\n\
             class Shape{i} extends Shape{p} {{ area() {{ const longLocalName = super.area(); return longLocalName + helper{i}(this.n); }} }}\n\
             const tag{i} = \"tag{i}\";\n\
             const table{i} = {{ helper{i}, Shape{i}, tag{i}, bump{i} }};\n\
             {extra}\
             //#endregion\n",
            extra = extra(i),
        ));
    }
    let last = modules - 1;
    code.push_str(&format!(
        "//#region entry.js\nconst result = [new Shape{last}(7).area(), table{last}.bump{last}(), table{last}.bump{last}(), tag{last}, __defProp === Object.defineProperty];\n//#endregion\n"
    ));
    code.push_str(&format!("export {{ result as default, table{last} }};\n"));
    code
}

/// The chunk printed with comments (keeping the region lines), and a map back to `original`.
fn with_map(original: &str) -> (String, oxc_sourcemap::SourceMap<'static>) {
    let allocator = Allocator::default();
    let program = Parser::new(&allocator, original, SourceType::mjs()).parse().program;
    let options = CodegenOptions { source_map_path: Some("chunk.js".into()), ..CodegenOptions::default() };
    let ret = Codegen::new().with_options(options).build(&program);
    let mut map = ret.map.expect("a map").into_owned();
    map.set_sources(["original.js"]);
    (ret.code, map)
}

fn settings() -> MinifySettings {
    MinifySettings { module: true, compress: oxc::minifier::CompressOptions::smallest(), split: true }
}

/// What a module's default export is, as JSON, by running it in Node.
fn run(dir: &Path, name: &str, code: &str) -> String {
    std::fs::write(dir.join(name), code).unwrap();
    let script = format!("import('./{name}').then(m => console.log(JSON.stringify(m.default)))");
    let out = Command::new("node").arg("--input-type=module").arg("-e").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_large_chunk_is_minified_in_pieces_that_compute_the_same_and_map_back() {
    let original = chunk(2500, |_| String::new());
    let (code, map) = with_map(&original);
    assert!(code.len() > 1 << 20, "{} bytes", code.len());
    assert!(code.contains("\n//#region mod1000.js"), "the printed chunk keeps its region lines");
    let code = format!("{code}//# sourceMappingURL=chunk.js.map\n");

    let minified = minify_chunk(&code, Some(&map), "chunk.js", &settings());
    assert!(minified.pieces > 1, "cut into pieces");
    // About as small as minifying it whole (what rolldown does).
    let whole = minify_chunk(&code, Some(&map), "chunk.js", &MinifySettings { split: false, ..settings() });
    assert_eq!(whole.pieces, 1);
    assert!(
        minified.code.len() * 100 <= whole.code.len() * 103,
        "{} vs {} bytes whole",
        minified.code.len(),
        whole.code.len()
    );
    assert!(!minified.code.contains("longLocalName"), "locals are mangled");
    assert!(!minified.code.contains("function helper1234"), "top-level names are mangled across pieces");
    assert!(minified.code.ends_with("\n//# sourceMappingURL=chunk.js.map"), "the map comment is kept");

    let dir = tempfile::tempdir().unwrap();
    let expected = run(dir.path(), "chunk.mjs", &code);
    assert_eq!(run(dir.path(), "minified.mjs", &minified.code), expected);
    assert!(expected.contains("tag2499"), "{expected}");

    // Each module's error message, found in the minified code, maps back to it in the original.
    let final_map = minified.map.expect("a source map");
    assert_eq!(final_map.get_sources().collect::<Vec<_>>(), vec!["original.js"]);
    assert_eq!(final_map.get_file(), Some("chunk.js"));
    let table = final_map.generate_lookup_table();
    let original_lines: Vec<&str> = original.lines().collect();
    let minified_lines: Vec<&str> = minified.code.lines().collect();
    for i in (1..2500).step_by(97) {
        let (needle, printed) = (format!("\"marker{i}\""), format!("marker{i}`"));
        let (line, col) = minified_lines
            .iter()
            .enumerate()
            .find_map(|(n, l)| l.find(&printed).map(|c| (n as u32, c as u32 - 1)))
            .unwrap_or_else(|| panic!("{printed} in the minified code"));
        let token = final_map.lookup_token(&table, line, col).expect("a token");
        let source_line = original_lines[token.get_src_line() as usize];
        assert!(
            source_line[token.get_src_col() as usize..].starts_with(&needle),
            "{needle} maps to {source_line:?} col {}",
            token.get_src_col()
        );
    }
}

struct Finished(oxc_sourcemap::SourceMap<'static>);

impl ChunkSourceMap for Finished {
    fn source_map(&self) -> Option<&oxc_sourcemap::SourceMap<'static>> {
        Some(&self.0)
    }
}

#[test]
fn a_chunk_minified_while_the_bundler_finishes_it_is_the_same_as_one_minified_after() {
    let original = chunk(2500, |_| String::new());
    let (rendered, map) = with_map(&original);
    // What the bundler hands over when it has finished the chunk: the map comment appended.
    let finished = format!("{rendered}\n//# sourceMappingURL=chunk.js.map");
    let after = minify_chunk(&finished, Some(&map), "chunk.js", &settings());

    let early = EarlyMinify::start(Arc::new(rendered.clone()), &settings(), true).expect("large enough to start");
    let early = early.finish(Arc::new(Finished(map.clone())), &finished, "chunk.js").expect("the same chunk");
    assert!(early.pieces > 1);
    assert_eq!(early.code, after.code);
    assert_eq!(early.map.expect("a map").to_json_string(), after.map.expect("a map").to_json_string());

    // Changed after rendering (a file name filled in): that work is dropped.
    let early = EarlyMinify::start(Arc::new(rendered.clone()), &settings(), true).unwrap();
    let changed = finished.replacen("marker7", "marker8", 1);
    assert!(early.finish(Arc::new(Finished(map.clone())), &changed, "chunk.js").is_none());
    // Dropped unfinished (the bundle failed): the job gives up when it asks for the map, so
    // its thread ends instead of waiting for ever.
    drop(EarlyMinify::start(Arc::new(rendered.clone()), &settings(), true).unwrap());
    let minifier_threads = || {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter(|t| {
                let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm")).unwrap_or_default();
                comm.trim() == "workz-minify"
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while minifier_threads() > 0 {
        assert!(std::time::Instant::now() < deadline, "a dropped early minifier kept its thread");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Small chunks, and chunks with names still to fill in, are not started early.
    assert!(EarlyMinify::start(Arc::new("export const a = 1;\n".into()), &settings(), true).is_none());
    assert!(
        EarlyMinify::start(Arc::new(format!("{rendered}import('./c-!~{{000}}~.js');")), &settings(), true).is_none()
    );
}

#[test]
fn a_piece_assigning_another_piece_s_binding_is_not_cut() {
    // mod1500 writes mod10's counter: mod10's piece alone would think nobody else does.
    let original = chunk(2500, |i| if i == 1500 { "counter10 = 41;\n".into() } else { String::new() });
    let (code, map) = with_map(&original);
    let minified = minify_chunk(&code, Some(&map), "chunk.js", &settings());
    assert_eq!(minified.pieces, 1);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(dir.path(), "minified.mjs", &minified.code), run(dir.path(), "chunk.mjs", &code));
}

#[test]
fn a_top_level_name_shadowing_a_known_global_is_not_cut() {
    // A module's own `Map`, used from another module: that piece would take it for the global.
    let original = chunk(2500, |i| match i {
        100 => "class Map { constructor() { globalThis.made = (globalThis.made || 0) + 1; } }\n".into(),
        2000 => "new Map();\nconst made2000 = globalThis.made;\nexport { made2000 };\n".into(),
        _ => String::new(),
    });
    let (code, map) = with_map(&original);
    let minified = minify_chunk(&code, Some(&map), "chunk.js", &settings());
    assert_eq!(minified.pieces, 1);
}

#[test]
fn a_direct_eval_is_not_cut() {
    // eval can name any top-level binding: renaming them chunk-wide would break it.
    let original = chunk(2500, |i| match i {
        2000 => "const seen2000 = eval(\"typeof helper10\");\nexport { seen2000 };\n".into(),
        _ => String::new(),
    });
    let (code, map) = with_map(&original);
    let minified = minify_chunk(&code, Some(&map), "chunk.js", &settings());
    assert_eq!(minified.pieces, 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("minified.mjs"), &minified.code).unwrap();
    let script = "import('./minified.mjs').then(m => console.log(m.seen2000))";
    let out =
        Command::new("node").arg("--input-type=module").arg("-e").arg(script).current_dir(dir.path()).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "function", "{}", String::from_utf8_lossy(&out.stderr));
}
