//! Checks that keep the C ABI honest: every exported function runs inside the panic guard
//! and is declared in the header, the header loads in PHP FFI, the version macros match.
//! (That the committed header is what cbindgen makes of this crate is checked by
//! `tests/c/run.sh`, with the cbindgen binary: as a dev-dependency its syn features would
//! rebuild every proc macro, and rolldown after them.)

use std::path::PathBuf;

/// Read at run time, not compiled in: CI reuses test binaries built from another checkout.
fn crate_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
}

fn committed_header_path() -> PathBuf {
    crate_dir().join("../include/workz_build.h")
}

#[test]
fn header_loads_in_php_ffi() {
    // PHP's FFI::cdef has no preprocessor: no extern "C" block, no attributes, no macro in a
    // declaration, no inline bodies.
    let header = without_comments(&std::fs::read_to_string(committed_header_path()).unwrap());
    for banned in ["extern \"C\"", "__attribute__", "__cplusplus", "static inline", "WZ_API"] {
        assert!(!header.contains(banned), "the header contains {banned}");
    }
    let macros: Vec<&str> =
        header.lines().filter_map(|l| l.strip_prefix("#define ")).filter_map(|l| l.split_whitespace().next()).collect();
    for line in header.lines().filter(|l| !l.starts_with('#')) {
        for name in &macros {
            assert!(!line.contains(name), "a declaration uses the macro {name}: {line}");
        }
    }
}

/// The header's text with its `/* ... */` comments removed.
fn without_comments(header: &str) -> String {
    let mut out = String::new();
    let mut rest = header;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..].find("*/").map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out
}

/// `(name, body)` of every `extern "C" fn` in a source file.
fn exported_functions(source: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("extern \"C\" fn ") {
        let after = &rest[at + "extern \"C\" fn ".len()..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let open = after.find('{').expect("a function body");
        // The body runs to the matching brace.
        let mut depth = 0;
        let mut end = open;
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push((name, after[open + 1..end].trim().to_string()));
        rest = &after[end..];
    }
    found
}

#[test]
fn every_exported_function_runs_inside_the_panic_guard() {
    let source = std::fs::read_to_string(crate_dir().join("src/lib.rs")).unwrap();
    let functions = exported_functions(&source);
    assert!(functions.len() >= 20, "found only {functions:?}");
    for (name, body) in &functions {
        let call = ["guard(", "guard_value(", "unsafe { error_field("].iter().find(|g| body.starts_with(**g));
        let Some(call) = call else { panic!("{name} does not run its body inside guard/guard_value: {body:.80}") };
        // ... and that call is the whole body: nothing runs before or after it.
        let mut depth = 0;
        let mut close = None;
        for (i, c) in body.char_indices().skip(call.len() - 1) {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let tail = close.map(|i| body[i + 1..].trim()).unwrap_or("?");
        assert!(tail.is_empty() || tail == "}", "{name}: code after the guard: {tail}");
    }
    let header = std::fs::read_to_string(committed_header_path()).unwrap();
    for (name, _) in &functions {
        assert!(header.contains(&format!("{name}(")), "{name} is missing from the header");
    }
}

#[test]
fn version_macros_match_the_crate() {
    let header = std::fs::read_to_string(committed_header_path()).unwrap();
    let version: Vec<&str> = env!("CARGO_PKG_VERSION").split('.').collect();
    for (part, value) in ["MAJOR", "MINOR", "PATCH"].iter().zip(&version) {
        assert!(header.contains(&format!("#define WZ_VERSION_{part} {value}\n")), "WZ_VERSION_{part}");
    }
    assert!(header.contains(&format!("#define WZ_ABI_VERSION {}\n", super::ABI_VERSION)));
}
