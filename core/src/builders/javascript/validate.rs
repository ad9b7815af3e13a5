//! Validation of a JavaScript app before any dependency work: every script parsed
//! with oxc (the parser rolldown uses), and a security scan with named rules.

use std::collections::{BTreeMap, HashSet};

use oxc::allocator::Allocator;
use oxc::ast::ast::{Argument, CallExpression, Expression, NewExpression};
use oxc::ast_visit::{Visit, walk};
use oxc::parser::Parser;
use oxc::span::{GetSpan, SourceType};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::RuleLevel;
use crate::digest::Digest;
use crate::source::{SourceTree, is_script};

/// A place in a source file, 1-based line and column, with a code frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Line and column (1-based, column in characters) of a byte offset, and a code frame
/// of the line before, the line and a caret.
pub fn locate(file: &str, text: &str, offset: usize) -> (Location, String) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    let mut frame = String::new();
    let width = (line + 1).to_string().len();
    for n in line.saturating_sub(2).max(1)..=line {
        if let Some(content) = lines.get(n - 1) {
            frame.push_str(&format!("{n:>width$} | {}\n", truncate(content, 160)));
        }
    }
    frame.push_str(&format!("{:>width$} | {}^", "", " ".repeat(column.saturating_sub(1).min(160))));
    (Location { file: file.to_string(), line, column }, frame)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max { s.to_string() } else { s.chars().take(max).collect::<String>() + "…" }
}

/// A syntax error.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub location: Location,
    pub message: String,
    pub frame: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}\n{}", self.location, self.message, self.frame)
    }
}

pub(super) fn source_type(path: &str) -> SourceType {
    let ext = path.rsplit_once('.').map_or("js", |(_, e)| e);
    // Plain .js may hold JSX in React apps: parse it as JSX, which accepts all JS.
    let name = match ext {
        "js" | "mjs" | "cjs" => "x.jsx".to_string(),
        other => format!("x.{other}"),
    };
    SourceType::from_path(&name).unwrap_or_default()
}

/// Parse every script; return every file's first syntax errors (in path order).
pub fn check_syntax(tree: &SourceTree) -> Vec<SyntaxError> {
    validate(tree, &BTreeMap::new(), &HashSet::new(), true).syntax
}

/// A security rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub name: &'static str,
    pub default: RuleLevel,
    pub description: &'static str,
}

/// The rules, with their default levels.
pub const RULES: &[Rule] = &[
    Rule { name: "no-eval", default: RuleLevel::Error, description: "eval() with input that is not a string literal" },
    Rule {
        name: "no-new-function",
        default: RuleLevel::Error,
        description: "new Function() / Function() with input that is not a string literal",
    },
    Rule {
        name: "hardcoded-credentials",
        default: RuleLevel::Error,
        description: "a cloud key, token or private key block in the sources",
    },
    Rule { name: "insecure-script-load", default: RuleLevel::Warn, description: "a script loaded over plain http:" },
];

/// A security finding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    pub rule: String,
    pub level: RuleLevel,
    pub location: Location,
    pub message: String,
    pub frame: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]: {}\n{}", self.location, self.rule, self.message, self.frame)
    }
}

/// Credential patterns: (what, regex). Word boundaries are ASCII ones: Unicode boundaries
/// make the regex engine fall back to its slowest matcher on any non-ASCII text.
const CREDENTIALS: &[(&str, &str)] = &[
    ("an AWS access key id", r"(?-u:\b)(AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)"),
    ("a private key block", r"-----BEGIN (RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY( BLOCK)?-----"),
    ("a GitHub token", r"(?-u:\b)(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}(?-u:\b)"),
    ("a Google API key", r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}(?-u:\b)"),
    ("a Stripe secret key", r"(?-u:\b)(sk|rk)_live_[0-9A-Za-z]{24,}(?-u:\b)"),
    ("a Slack token", r"(?-u:\b)xox[abprs]-[0-9A-Za-z-]{10,}(?-u:\b)"),
];

/// Text files worth scanning for credentials.
fn scanned_for_credentials(path: &str) -> bool {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    is_script(path)
        || matches!(
            ext,
            "json" | "html" | "htm" | "env" | "yml" | "yaml" | "txt" | "md" | "css" | "vue" | "svelte" | "pem" | "key"
        )
        || path.ends_with(".env")
        || !path.contains('.')
}

/// Scan the tree with the rules, applying per-app level overrides.
pub fn security_scan(tree: &SourceTree, overrides: &BTreeMap<String, RuleLevel>) -> Vec<Finding> {
    validate(tree, overrides, &HashSet::new(), true).findings
}

/// What [`validate`] found.
#[derive(Debug, Default)]
pub struct Report {
    pub syntax: Vec<SyntaxError>,
    pub findings: Vec<Finding>,
    /// Validation keys of the files checked now and found clean (to remember).
    pub clean: Vec<Digest>,
}

/// Bump when parsing or a rule changes what passes.
const VALIDATION_SCHEMA: &[u8] = b"workz-build js validation v1";

/// What identifies "this file passed these rules": its digest and the rule levels, and
/// whether it was parsed (`parsed: false` marks a script checked by its text only).
pub fn validation_key(file: &Digest, overrides: &BTreeMap<String, RuleLevel>, parsed: bool) -> Digest {
    let mut h = blake3::Hasher::new();
    h.update(VALIDATION_SCHEMA);
    h.update(crate::VERSION.as_bytes());
    h.update(if parsed { b"parsed\0" } else { b"text\0" });
    for (rule, level) in overrides {
        h.update(rule.as_bytes());
        h.update(&[*level as u8, 0]);
    }
    h.update(file.as_bytes());
    Digest::from(h.finalize())
}

/// Parse every script once (syntax errors) and apply the security rules to it and to the
/// other text files, in parallel. Files whose validation key is in `known_clean` passed
/// before with the same content and rules, and are skipped.
///
/// With `parse_all` false, only scripts whose text could trip a script rule are parsed: the
/// bundler that runs next parses everything anyway and reports syntax errors itself.
pub fn validate<S: std::hash::BuildHasher>(
    tree: &SourceTree,
    overrides: &BTreeMap<String, RuleLevel>,
    known_clean: &HashSet<Digest, S>,
    parse_all: bool,
) -> Report {
    // What passed before with the same bytes and rules is skipped. On a rebuild that is
    // every file: then nothing below (pattern compilation, the thread pool) is started.
    let to_check: Vec<(&crate::source::SourceFile, Digest, Digest)> = tree
        .files()
        .iter()
        .filter(|f| {
            is_script(&f.path)
                || scanned_for_credentials(&f.path)
                || f.path.ends_with(".html")
                || f.path.ends_with(".htm")
        })
        .filter_map(|file| {
            // A text-only pass is enough when the bundler will parse the file anyway (checked
            // first then: it is what such runs remember).
            let text_only = validation_key(&file.digest, overrides, false);
            if !parse_all && known_clean.contains(&text_only) {
                return None;
            }
            let full = validation_key(&file.digest, overrides, true);
            (!known_clean.contains(&full)).then_some((file, text_only, full))
        })
        .collect();
    if to_check.is_empty() {
        return Report::default();
    }
    let level = |name: &str| {
        overrides
            .get(name)
            .copied()
            .unwrap_or_else(|| RULES.iter().find(|r| r.name == name).map_or(RuleLevel::Error, |r| r.default))
    };
    // In the order of the set below: its match indices pick from these.
    let patterns: Vec<(&str, regex::Regex)> =
        CREDENTIALS.iter().map(|(what, re)| (*what, regex::Regex::new(re).expect("a valid pattern"))).collect();
    // One pass over each file finds whether any credential pattern is there at all.
    let any_credential = regex::bytes::RegexSet::new(CREDENTIALS.iter().map(|(_, re)| re)).expect("valid patterns");
    let script_src =
        regex::Regex::new(r#"(?i)<script[^>]*\ssrc\s*=\s*["']?(http://[^"'\s>]+)"#).expect("a valid pattern");
    let credentials_level = level("hardcoded-credentials");
    let insecure_level = level("insecure-script-load");
    let eval_level = level("no-eval");
    let function_level = level("no-new-function");
    // The text a script rule can fire on (a rule that is off needs none): its callee's name,
    // or a string literal that starts with `http://`. Spellings with escapes are beyond the
    // rules' reach, as string concatenation always was.
    let script_rule_text: Vec<&str> = [
        (eval_level, r"(?-u:\b)eval(?-u:\b)"),
        (function_level, r"(?-u:\b)Function(?-u:\b)"),
        (insecure_level, r#"["']http://"#),
    ]
    .into_iter()
    .filter(|(level, _)| *level != RuleLevel::Off)
    .map(|(_, text)| text)
    .collect();
    let may_trip_script_rule = (!script_rule_text.is_empty())
        .then(|| regex::bytes::Regex::new(&script_rule_text.join("|")).expect("a valid pattern"));

    let per_file: Vec<(Vec<SyntaxError>, Vec<Finding>, Option<Digest>)> = to_check
        .par_iter()
        .map(|&(file, text_only, full)| {
            let mut syntax = Vec::new();
            let mut findings = Vec::new();
            let Ok(bytes) = file.read() else { return (syntax, findings, None) };
            // What may fire is found on the bytes; most files need no more than that.
            let is_html = file.path.ends_with(".html") || file.path.ends_with(".htm");
            let credentials =
                scanned_for_credentials(&file.path).then(|| any_credential.matches(&bytes)).filter(|m| m.matched_any());
            let parse = is_script(&file.path)
                && (parse_all || may_trip_script_rule.as_ref().is_some_and(|re| re.is_match(&bytes)));
            // A script that was not parsed passed by its text only: remembered as such.
            let key = if parse || !is_script(&file.path) { full } else { text_only };
            if credentials.is_none() && !is_html && !parse {
                return (syntax, findings, Some(key));
            }
            let text = String::from_utf8_lossy(&bytes);
            let mut push = |rule: &str, level: RuleLevel, offset: usize, message: String| {
                if level != RuleLevel::Off {
                    let (location, frame) = locate(&file.path, &text, offset);
                    findings.push(Finding { rule: rule.to_string(), level, location, message, frame });
                }
            };
            if let Some(present) = credentials {
                for (what, re) in patterns.iter().enumerate().filter(|(i, _)| present.matched(*i)).map(|(_, p)| p) {
                    if let Some(m) = re.find(&text) {
                        push(
                            "hardcoded-credentials",
                            credentials_level,
                            m.start(),
                            format!(
                                "{what} is hard-coded; load it from the server or an environment variable at run time"
                            ),
                        );
                    }
                }
            }
            if is_html {
                for cap in script_src.captures_iter(&text) {
                    if let Some(url) = cap.get(1) {
                        push(
                            "insecure-script-load",
                            insecure_level,
                            url.start(),
                            format!("script loaded over plain http: {}", url.as_str()),
                        );
                    }
                }
            }
            if parse {
                let allocator = Allocator::default();
                let ret = Parser::new(&allocator, &text, source_type(&file.path)).parse();
                for d in ret.diagnostics.errors().take(3) {
                    let offset = d.labels.first().map_or(0, |l| l.offset() as usize);
                    let (location, frame) = locate(&file.path, &text, offset);
                    syntax.push(SyntaxError { location, message: d.message.to_string(), frame });
                }
                if syntax.is_empty() {
                    let mut visitor = ScriptScan { hits: Vec::new() };
                    visitor.visit_program(&ret.program);
                    for (rule, offset, message) in visitor.hits {
                        let level = match rule {
                            "no-eval" => eval_level,
                            "no-new-function" => function_level,
                            _ => insecure_level,
                        };
                        push(rule, level, offset, message);
                    }
                }
            }
            let clean = (syntax.is_empty() && findings.is_empty()).then_some(key);
            (syntax, findings, clean)
        })
        .collect();
    let mut report = Report::default();
    for (syntax, findings, clean) in per_file {
        report.syntax.extend(syntax);
        report.findings.extend(findings);
        report.clean.extend(clean);
    }
    let order = |l: &Location| (l.file.clone(), l.line);
    report.syntax.sort_by_key(|e| order(&e.location));
    report.findings.sort_by_key(|f| order(&f.location));
    report
}

/// Validation keys of files that passed, remembered under the engine's state directory.
pub struct CleanSet {
    file: std::path::PathBuf,
    /// Keys are digests already: a cheap hash (rustc's) is enough, and loading a few
    /// thousand of them on every build shows in a warm rebuild.
    pub known: HashSet<Digest, rustc_hash::FxBuildHasher>,
}

/// Past this many remembered keys the set starts afresh (it only saves work).
const CLEAN_SET_LIMIT: usize = 500_000;

impl CleanSet {
    pub fn load(state_dir: &std::path::Path) -> CleanSet {
        let file = state_dir.join("js-validated.idx");
        let known = std::fs::read_to_string(&file)
            .map(|t| t.lines().filter_map(|l| l.parse().ok()).collect())
            .unwrap_or_default();
        CleanSet { file, known }
    }

    /// Remember more clean keys (best effort, written atomically).
    pub fn add(mut self, keys: &[Digest]) {
        if keys.is_empty() {
            return;
        }
        if self.known.len() + keys.len() > CLEAN_SET_LIMIT {
            self.known.clear();
        }
        self.known.extend(keys.iter().copied());
        let mut text = String::with_capacity(self.known.len() * 65);
        for key in &self.known {
            text.push_str(&key.to_hex());
            text.push('\n');
        }
        let _ = crate::files::write_atomic(&self.file, text.as_bytes());
    }
}

struct ScriptScan {
    hits: Vec<(&'static str, usize, String)>,
}

fn all_literal(args: &oxc::allocator::Vec<'_, Argument<'_>>) -> bool {
    args.iter().all(|a| {
        matches!(a, Argument::StringLiteral(_)) || matches!(a, Argument::TemplateLiteral(t) if t.expressions.is_empty())
    })
}

fn callee_name<'b>(callee: &'b Expression<'_>) -> Option<&'b str> {
    match callee {
        Expression::Identifier(id) => Some(id.name.as_str()),
        // window.eval(...), globalThis.Function(...)
        Expression::StaticMemberExpression(m) if matches!(&m.object, Expression::Identifier(o) if matches!(o.name.as_str(), "window" | "globalThis" | "self")) => {
            Some(m.property.name.as_str())
        }
        _ => None,
    }
}

impl<'a> Visit<'a> for ScriptScan {
    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        match callee_name(&it.callee) {
            Some("eval") if !all_literal(&it.arguments) => self.hits.push((
                "no-eval",
                it.span.start as usize,
                "eval() of computed input runs arbitrary code".into(),
            )),
            Some("Function") if !all_literal(&it.arguments) => self.hits.push((
                "no-new-function",
                it.span.start as usize,
                "Function() of computed input runs arbitrary code".into(),
            )),
            _ => {}
        }
        walk::walk_call_expression(self, it);
    }

    fn visit_new_expression(&mut self, it: &NewExpression<'a>) {
        if callee_name(&it.callee) == Some("Function") && !all_literal(&it.arguments) {
            self.hits.push((
                "no-new-function",
                it.span.start as usize,
                "new Function() of computed input runs arbitrary code".into(),
            ));
        }
        walk::walk_new_expression(self, it);
    }

    fn visit_import_declaration(&mut self, it: &oxc::ast::ast::ImportDeclaration<'a>) {
        if it.source.value.starts_with("http://") {
            self.hits.push((
                "insecure-script-load",
                it.source.span().start as usize,
                format!("module imported over plain http: {}", it.source.value),
            ));
        }
        walk::walk_import_declaration(self, it);
    }

    fn visit_import_expression(&mut self, it: &oxc::ast::ast::ImportExpression<'a>) {
        if let Expression::StringLiteral(s) = &it.source
            && s.value.starts_with("http://")
        {
            self.hits.push((
                "insecure-script-load",
                s.span.start as usize,
                format!("module imported over plain http: {}", s.value),
            ));
        }
        walk::walk_import_expression(self, it);
    }

    fn visit_assignment_expression(&mut self, it: &oxc::ast::ast::AssignmentExpression<'a>) {
        // script.src = "http://…"
        if let oxc::ast::ast::AssignmentTarget::StaticMemberExpression(m) = &it.left
            && m.property.name == "src"
            && let Expression::StringLiteral(s) = &it.right
            && s.value.starts_with("http://")
        {
            self.hits.push((
                "insecure-script-load",
                s.span.start as usize,
                format!("script source set to plain http: {}", s.value),
            ));
        }
        walk::walk_assignment_expression(self, it);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn tree(files: &[(&str, &str)]) -> SourceTree {
        SourceTree::from_memory(
            files.iter().map(|(p, t)| (p.to_string(), Bytes::from(t.to_string()))),
            &crate::config::LimitsConfig::default(),
        )
        .unwrap()
    }

    #[test]
    fn syntax_errors_have_file_line_column_and_a_frame() {
        let t = tree(&[("src/ok.ts", "const x: number = 1;\n"), ("src/bad.js", "const a = 1;\nconst b = ;\n")]);
        let errors = check_syntax(&t);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!((e.location.file.as_str(), e.location.line, e.location.column), ("src/bad.js", 2, 11));
        assert!(e.frame.contains("2 | const b = ;") && e.frame.ends_with('^'), "{}", e.frame);
        let jsx = tree(&[
            ("App.jsx", "export const App = () => <div className=\"x\">hi</div>;\n"),
            ("main.js", "const el = <p/>;"),
        ]);
        assert!(check_syntax(&jsx).is_empty());
    }

    #[test]
    fn files_that_passed_before_are_not_parsed_again() {
        let t = tree(&[("ok.js", "export const a = 1;\n"), ("bad.js", "const = ;\n")]);
        let first = validate(&t, &BTreeMap::new(), &HashSet::new(), true);
        assert_eq!(first.syntax.len(), 1);
        assert_eq!(first.clean.len(), 1, "only the clean file is remembered");
        // Checked by text only, the broken file passes (the bundler will parse it) but that
        // pass does not count for a run that must parse.
        let text_only = validate(&t, &BTreeMap::new(), &HashSet::new(), false);
        assert_eq!(text_only.clean.len(), 2);
        let known: HashSet<Digest> = text_only.clean.iter().copied().collect();
        assert_eq!(validate(&t, &BTreeMap::new(), &known, true).syntax.len(), 1);
        assert!(validate(&t, &BTreeMap::new(), &known, false).clean.is_empty(), "all skipped");
        // A key marks content + rules as passed: the same content is skipped, a rule change is not.
        let known: HashSet<Digest> = first.clean.iter().copied().collect();
        assert!(validate(&t, &BTreeMap::new(), &known, true).clean.is_empty());
        let other_rules: BTreeMap<String, RuleLevel> = [("no-eval".to_string(), RuleLevel::Off)].into();
        assert_eq!(validate(&t, &other_rules, &known, true).clean.len(), 1);
    }

    #[test]
    fn security_rules_find_what_they_name() {
        let t = tree(&[
            ("a.js", "eval(userInput);\neval('1 + 1');\nnew Function('a', body);\nFunction('return 1');\n"),
            ("config.js", "export const key = 'AKIAIOSFODNN7EXAMPLE';\n"),
            ("id_rsa", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"),
            ("index.html", "<script src=\"http://cdn.example.com/x.js\"></script>"),
            (
                "b.js",
                "import 'http://evil.example/x.js';\nconst s = document.createElement('script'); s.src = 'http://x.example/y.js';",
            ),
        ]);
        let findings = security_scan(&t, &BTreeMap::new());
        let rules: Vec<(&str, &str, usize)> =
            findings.iter().map(|f| (f.location.file.as_str(), f.rule.as_str(), f.location.line)).collect();
        assert!(rules.contains(&("a.js", "no-eval", 1)), "{rules:?}");
        assert!(!rules.contains(&("a.js", "no-eval", 2)), "a literal is fine");
        assert!(rules.contains(&("a.js", "no-new-function", 3)));
        assert!(!rules.contains(&("a.js", "no-new-function", 4)));
        assert!(rules.contains(&("config.js", "hardcoded-credentials", 1)));
        assert!(rules.contains(&("id_rsa", "hardcoded-credentials", 1)));
        assert!(rules.contains(&("index.html", "insecure-script-load", 1)));
        assert_eq!(findings.iter().filter(|f| f.location.file == "b.js").count(), 2);
        assert!(findings.iter().filter(|f| f.rule == "insecure-script-load").all(|f| f.level == RuleLevel::Warn));

        let off: BTreeMap<String, RuleLevel> = [("no-eval".to_string(), RuleLevel::Off)].into();
        assert!(!security_scan(&t, &off).iter().any(|f| f.rule == "no-eval"));
    }

    #[test]
    fn only_text_that_can_trip_a_rule_is_parsed() {
        let t = tree(&[
            ("doc.js", "// see http://example.com/spec\nexport const a = 1;\n"),
            ("load.js", "const s = document.createElement('script'); s.src = \"http://x.example/y.js\";\n"),
            ("shader.js", "export const f = new Function('a', body);\n"),
        ]);
        let digest = |path: &str| t.get(path).unwrap().digest;
        let rules = BTreeMap::new();
        let report = validate(&t, &rules, &HashSet::new(), false);
        // Mentions in comments cannot trip a rule: the file passes by its text.
        assert!(report.clean.contains(&validation_key(&digest("doc.js"), &rules, false)));
        let found = |report: &Report, file: &str, rule: &str| {
            report.findings.iter().any(|f| f.location.file == file && f.rule == rule)
        };
        assert!(found(&report, "load.js", "insecure-script-load"));
        assert!(found(&report, "shader.js", "no-new-function"));
        // A rule that is off needs no parse.
        let off: BTreeMap<String, RuleLevel> = [("no-new-function".to_string(), RuleLevel::Off)].into();
        let report = validate(&t, &off, &HashSet::new(), false);
        assert!(report.clean.contains(&validation_key(&digest("shader.js"), &off, false)));
        assert!(found(&report, "load.js", "insecure-script-load"));
    }
}
