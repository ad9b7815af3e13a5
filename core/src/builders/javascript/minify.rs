//! Minification of a bundled chunk on every core, the way esbuild does it rather than the way
//! rolldown does (one oxc pass over the whole chunk, on one core: more than half of a large
//! app's cold build).
//!
//! The chunk is cut at module boundaries (rolldown's `//#region` lines) into pieces, one
//! thread each. A piece is parsed, compressed and its local names mangled on its own; it
//! keeps its top-level declarations (a synthetic `export { … }` of all of them stands in for
//! the other pieces' uses while it is compressed). Then one short name per top-level symbol
//! is chosen for the whole chunk, by how often the pieces use it, avoiding every name a piece
//! gave a local; each piece applies it, prints itself and traces its source map back through
//! rolldown's, and the pieces are joined.
//!
//! A piece sees only its own code, so the cut is refused (and the chunk minified in one piece,
//! exactly as rolldown would) when that could change what the code does: a piece that assigns
//! another piece's top-level binding, a top-level name that shadows a global the compressor
//! knows, a direct `eval`, a piece that does not parse, or anything unexpected.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use oxc::allocator::Allocator;
use oxc::ast::ast::{IdentifierReference, Program, Statement};
use oxc::ast_visit::VisitMut;
use oxc::codegen::{Codegen, CodegenOptions, CommentOptions, LegalComment};
use oxc::mangler::{MangleOptions, MangleOptionsKeepNames};
use oxc::minifier::{CompressOptions, Minifier, MinifierOptions, MinifierReturn};
use oxc::parser::{ParseOptions, Parser};
use oxc::semantic::{Scoping, SemanticBuilder};
use oxc::span::SourceType;
use oxc::str::Ident;
use oxc_sourcemap::{SourceMap, Token};

/// Bytes of chunk per piece. The piece count depends on the chunk alone, never on the
/// machine's cores, so that the same input gives the same bytes everywhere; chunks under
/// two pieces' worth are minified whole.
const PIECE_BYTES: usize = 512 * 1024;
const MAX_PIECES: usize = 16;

/// How a chunk is minified.
#[derive(Clone, Debug)]
pub struct MinifySettings {
    /// An ES module (`esm`); else a script (`iife`), which is never cut: it is one statement.
    pub module: bool,
    pub compress: CompressOptions,
    /// Cut large chunks into pieces (false: always whole, as rolldown does; for comparisons).
    pub split: bool,
}

/// The minified chunk, and its source map traced back to the original sources.
pub struct Minified {
    pub code: String,
    pub map: Option<SourceMap<'static>>,
    /// How many pieces it was minified in (1 when it was not cut).
    pub pieces: usize,
}

/// Minify `code` (a chunk named `filename`); `map` is the chunk's source map, when wanted.
pub fn minify_chunk(
    code: &str,
    map: Option<&SourceMap<'static>>,
    filename: &str,
    settings: &MinifySettings,
) -> Minified {
    let (body, trailer) = split_trailer(code);
    let supply = match map {
        Some(map) => MapSupply::Ready(map),
        None => MapSupply::Unwanted,
    };
    let minified = minify_body(body, &supply, settings).expect("a ready map is always there");
    finish(minified, filename, trailer)
}

/// rolldown ends a chunk with its source-map comment (after a newline it adds), which the
/// printer would drop: the code before it, and the comment.
fn split_trailer(code: &str) -> (&str, Option<&str>) {
    let trimmed = code.trim_end();
    match trimmed.rfind('\n') {
        Some(i) if trimmed[i + 1..].starts_with("//# sourceMappingURL=") => (&code[..i], Some(&trimmed[i + 1..])),
        _ => (code, None),
    }
}

fn finish(mut minified: Minified, filename: &str, trailer: Option<&str>) -> Minified {
    if let Some(map) = &mut minified.map {
        map.set_file(filename);
    }
    if let Some(trailer) = trailer {
        if !minified.code.ends_with('\n') {
            minified.code.push('\n');
        }
        minified.code.push_str(trailer);
    }
    minified
}

/// Where a chunk's source map comes from.
enum MapSupply<'m> {
    /// No source map is wanted.
    Unwanted,
    Ready(&'m SourceMap<'static>),
    /// Wanted, but the bundler is still finishing the chunk: this waits for it (`None`: the
    /// chunk turned out different and the work is abandoned). Asked only once pieces print.
    Later(&'m dyn Fn() -> Option<&'m SourceMap<'static>>),
}

impl<'m> MapSupply<'m> {
    fn wanted(&self) -> bool {
        !matches!(self, MapSupply::Unwanted)
    }

    /// The map, waiting for it if need be; `Err` when it was wanted and will not come.
    fn get(&self) -> Result<Option<&'m SourceMap<'static>>, ()> {
        match self {
            MapSupply::Unwanted => Ok(None),
            MapSupply::Ready(map) => Ok(Some(map)),
            MapSupply::Later(wait) => wait().map(Some).ok_or(()),
        }
    }
}

/// `None` only when a map that was to come later did not.
fn minify_body(code: &str, map: &MapSupply<'_>, settings: &MinifySettings) -> Option<Minified> {
    let pieces = (code.len() / PIECE_BYTES).min(MAX_PIECES);
    let cuts = if settings.module && settings.split && pieces > 1 { cut_points(code, pieces) } else { Vec::new() };
    if !cuts.is_empty() {
        match minify_pieces(code, &cuts, map, settings) {
            Cut::Done(minified) => return Some(*minified),
            Cut::Abandoned => return None,
            Cut::Refused => {}
        }
    }
    let map = map.get().ok()?;
    let piece = Piece { text: code, line_offset: 0 };
    let table = map.map(|m| m.generate_lookup_table());
    let output = piece.minify_whole(settings, map.zip(table.as_deref()));
    Some(Minified { map: map.map(|m| joined_map(m, std::slice::from_ref(&output))), code: output.code, pieces: 1 })
}

/// A chunk the bundler has rendered but not finished (it still names its files and appends
/// the source-map comment), minified meanwhile on its own thread: the cores that the
/// bundler's last, mostly serial steps leave idle start on it. The source map is asked for
/// only when the pieces print.
pub struct EarlyMinify {
    code: Arc<String>,
    chunk: mpsc::Sender<Arc<dyn ChunkSourceMap>>,
    job: std::thread::JoinHandle<Option<Minified>>,
}

/// What holds a finished chunk's source map.
pub trait ChunkSourceMap: Send + Sync {
    fn source_map(&self) -> Option<&SourceMap<'static>>;
}

impl std::fmt::Debug for EarlyMinify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarlyMinify").field("bytes", &self.code.len()).finish()
    }
}

impl EarlyMinify {
    /// Start on a rendered chunk when it is large enough to be cut and final as rendered
    /// (no hash placeholders for the bundler to fill in); `None` otherwise.
    pub fn start(code: Arc<String>, settings: &MinifySettings, source_map: bool) -> Option<EarlyMinify> {
        let worth_it = settings.module && settings.split && code.len() >= 2 * PIECE_BYTES;
        if !worth_it || code.contains(HASH_PLACEHOLDER_START) {
            return None;
        }
        let (chunk, arrived) = mpsc::channel::<Arc<dyn ChunkSourceMap>>();
        let text = code.clone();
        let settings = settings.clone();
        let job = std::thread::Builder::new()
            .name("workz-minify".into())
            .spawn(move || {
                let held: OnceLock<Arc<dyn ChunkSourceMap>> = OnceLock::new();
                let wait = || {
                    if held.get().is_none()
                        && let Ok(chunk) = arrived.recv()
                    {
                        let _ = held.set(chunk);
                    }
                    held.get().and_then(|chunk| chunk.source_map())
                };
                let supply = if source_map { MapSupply::Later(&wait) } else { MapSupply::Unwanted };
                minify_body(&text, &supply, &settings)
            })
            .ok()?;
        Some(EarlyMinify { code, chunk, job })
    }

    /// The minified chunk, when the finished chunk (`code`, holding its map) is the one that
    /// was rendered; `None` (and the work dropped) when the bundler changed it since.
    pub fn finish(self, chunk: Arc<dyn ChunkSourceMap>, code: &str, filename: &str) -> Option<Minified> {
        let (body, trailer) = split_trailer(code);
        if body != self.code.as_str() {
            return None;
        }
        self.chunk.send(chunk).ok()?;
        let minified = self.job.join().ok()??;
        Some(finish(minified, filename, trailer))
    }
}

/// How rolldown marks a file name it fills in after rendering.
const HASH_PLACEHOLDER_START: &str = "!~{";

/// Where to cut: the starts of `//#region` lines, about evenly spaced.
fn cut_points(code: &str, pieces: usize) -> Vec<usize> {
    let regions: Vec<usize> = code.match_indices("\n//#region ").map(|(i, _)| i + 1).collect();
    let mut cuts = Vec::new();
    for k in 1..pieces {
        let target = code.len() * k / pieces;
        let Some(&at) = regions.iter().find(|&&r| r >= target) else { break };
        if cuts.last() != Some(&at) {
            cuts.push(at);
        }
    }
    cuts
}

/// A piece of the chunk: its text and the chunk line it starts on.
struct Piece<'t> {
    text: &'t str,
    line_offset: u32,
}

/// What a piece tells the others after compressing and mangling itself.
#[derive(Default)]
struct PieceReport {
    /// Its top-level bindings, with how often each is used (declaration included).
    roots: Vec<(String, usize)>,
    /// Names it uses but does not declare, after compression, with how often each is used.
    free: Vec<(String, usize)>,
    /// Every name it gave (or left on) a binding below the top level.
    locals: HashSet<String>,
}

struct FreeName {
    name: String,
    written: bool,
}

/// A piece printed: its code and its source-map tokens (destination lines within the piece,
/// sources those of the chunk's map).
struct PieceOutput {
    code: String,
    tokens: Vec<Token>,
}

/// The chunk's source map and its lookup table, shared by the pieces that trace through it.
type ChunkMap<'m> = (&'m SourceMap<'static>, &'m [&'m [Token]]);

/// What a piece declares and uses, read before it is compressed.
struct Scan {
    /// A direct `eval` can reach any top-level name by its name: nothing may be renamed.
    direct_eval: bool,
    roots: Vec<String>,
    /// Names it uses but does not declare (other pieces' top-level names, or globals), as its
    /// source has them: compression may drop the very use that makes the cut unsafe.
    free: Vec<FreeName>,
}

/// From the coordinator to a piece.
enum Message {
    /// Its top-level names that other pieces use: kept through compression.
    Keep(Vec<String>),
    /// The chunk-wide top-level names.
    Rename(Arc<HashMap<String, String>>),
}

type Inbox<T> = (mpsc::Sender<(usize, Option<T>)>, mpsc::Receiver<(usize, Option<T>)>);

/// How cutting a chunk went.
enum Cut {
    Done(Box<Minified>),
    /// Cutting could change what the code does: minify it whole.
    Refused,
    /// The source map that was to come later did not.
    Abandoned,
}

fn minify_pieces(code: &str, cuts: &[usize], map: &MapSupply<'_>, settings: &MinifySettings) -> Cut {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    let mut line = 0u32;
    for &end in cuts.iter().chain(std::iter::once(&code.len())) {
        let text = &code[start..end];
        pieces.push(Piece { text, line_offset: line });
        let Ok(lines) = u32::try_from(line_count(text)) else { return Cut::Refused };
        line += lines;
        start = end;
    }
    // The chunk's map with its lookup table, which every piece traces through once printed.
    let slot: OnceLock<Option<MapTable<'_>>> = OnceLock::new();
    let wants_map = map.wanted();
    let mut abandoned = false;
    let outputs = std::thread::scope(|scope| {
        // Whatever way this ends, pieces waiting for the map are let go.
        let _release = ReleaseOnDrop(&slot);
        let (scan_tx, scan_rx): Inbox<Scan> = mpsc::channel();
        let (report_tx, report_rx): Inbox<PieceReport> = mpsc::channel();
        let mut inboxes = Vec::new();
        let mut handles = Vec::new();
        for (index, piece) in pieces.iter().enumerate() {
            let (message_tx, message_rx) = mpsc::channel::<Message>();
            inboxes.push(message_tx);
            let outbox = Outbox { index, scan: Some(scan_tx.clone()), report: Some(report_tx.clone()) };
            let slot = &slot;
            handles.push(scope.spawn(move || {
                let chunk_map = || slot.wait().as_ref().map(|(map, table)| (*map, table.as_slice()));
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    piece.minify_cut(settings, wants_map, outbox, message_rx, chunk_map)
                }))
                .ok()
                .flatten()
            }));
        }
        // While the pieces parse: the lookup table of a map that is already there.
        if let MapSupply::Ready(ready) = map {
            let _ = slot.set(Some((*ready, ready.generate_lookup_table())));
        }
        // Each piece sends one scan and one report, `None` when it failed; returning early
        // drops the inboxes, which ends the pieces still waiting.
        let scans = receive(&scan_rx, pieces.len())?;
        for (inbox, keep) in inboxes.iter().zip(plan_keep(&scans)?) {
            let _ = inbox.send(Message::Keep(keep));
        }
        let reports = receive(&report_rx, pieces.len())?;
        let renames = Arc::new(plan_renames(&scans, &reports)?);
        for inbox in &inboxes {
            let _ = inbox.send(Message::Rename(renames.clone()));
        }
        // The pieces print; a map still to come is waited for meanwhile.
        if slot.get().is_none() {
            match map.get() {
                Ok(Some(later)) => {
                    let _ = slot.set(Some((later, later.generate_lookup_table())));
                }
                Ok(None) => {}
                Err(()) => abandoned = true,
            }
        }
        let _ = slot.set(None);
        handles.into_iter().map(|h| h.join().ok().flatten()).collect::<Option<Vec<PieceOutput>>>()
    });
    if abandoned {
        return Cut::Abandoned;
    }
    let Some(outputs) = outputs else { return Cut::Refused };
    let code = outputs.iter().map(|o| o.code.as_str()).collect::<Vec<_>>().join("\n");
    let map = slot.get().and_then(|m| m.as_ref()).map(|(map, _)| joined_map(map, &outputs));
    if wants_map && map.is_none() {
        return Cut::Abandoned;
    }
    Cut::Done(Box::new(Minified { map, code, pieces: outputs.len() }))
}

/// A chunk map and its lookup table.
type MapTable<'m> = (&'m SourceMap<'static>, Vec<&'m [Token]>);

/// Sets the map slot to "no map" unless it was set: no piece waits for it forever.
struct ReleaseOnDrop<'s, 'm>(&'s OnceLock<Option<MapTable<'m>>>);

impl Drop for ReleaseOnDrop<'_, '_> {
    fn drop(&mut self) {
        let _ = self.0.set(None);
    }
}

/// One message from each of `count` pieces, in piece order; `None` if any failed.
fn receive<T>(inbox: &mpsc::Receiver<(usize, Option<T>)>, count: usize) -> Option<Vec<T>> {
    let mut received: Vec<Option<T>> = (0..count).map(|_| None).collect();
    for _ in 0..count {
        let (index, message) = inbox.recv().ok()?;
        received[index] = Some(message?);
    }
    received.into_iter().collect()
}

/// A piece's way back to the coordinator; whatever it has not sent when it is dropped (the
/// piece failed, or panicked) goes as `None`, so that the coordinator never waits for it.
struct Outbox {
    index: usize,
    scan: Option<mpsc::Sender<(usize, Option<Scan>)>>,
    report: Option<mpsc::Sender<(usize, Option<PieceReport>)>>,
}

impl Outbox {
    fn scan(&mut self, scan: Option<Scan>) {
        if let Some(tx) = self.scan.take() {
            let _ = tx.send((self.index, scan));
        }
    }

    fn report(&mut self, report: Option<PieceReport>) {
        if let Some(tx) = self.report.take() {
            let _ = tx.send((self.index, report));
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.scan(None);
        self.report(None);
    }
}

/// For each piece, its top-level names that another piece uses; `None` when cutting would
/// change what the code does.
fn plan_keep(scans: &[Scan]) -> Option<Vec<Vec<String>>> {
    if scans.iter().any(|scan| scan.direct_eval) {
        return None;
    }
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (index, scan) in scans.iter().enumerate() {
        for name in &scan.roots {
            // Two pieces declaring one name cannot both be the chunk's top level.
            if owner.insert(name.as_str(), index).is_some() {
                return None;
            }
        }
    }
    let mut keep: Vec<HashSet<&str>> = vec![HashSet::new(); scans.len()];
    for scan in scans {
        for free in &scan.free {
            let Some(&at) = owner.get(free.name.as_str()) else { continue };
            // Another piece's binding, assigned here (its own piece would not see that), or
            // taken here for a global the compressor knows.
            if free.written || KNOWN_GLOBALS.contains(&free.name.as_str()) {
                return None;
            }
            keep[at].insert(free.name.as_str());
        }
    }
    Some(keep.into_iter().map(|names| names.into_iter().map(str::to_string).collect()).collect())
}

/// Newlines in `text` (a piece's line count less one).
fn line_count(text: &str) -> usize {
    text.bytes().filter(|&b| b == b'\n').count()
}

impl<'t> Piece<'t> {
    fn parse<'a>(&self, allocator: &'a Allocator, source_type: SourceType) -> Option<Program<'a>>
    where
        't: 'a,
    {
        let ret = Parser::new(allocator, self.text, source_type)
            .with_options(ParseOptions { preserve_parens: false, ..ParseOptions::default() })
            .parse();
        (!ret.diagnostics.has_errors() && !ret.panicked).then_some(ret.program)
    }

    /// The whole chunk as one piece: what rolldown's minifier does (top-level names mangled too).
    fn minify_whole(&self, settings: &MinifySettings, map: Option<ChunkMap<'_>>) -> PieceOutput {
        let allocator = Allocator::default();
        let source_type = if settings.module { SourceType::mjs() } else { SourceType::cjs() };
        // Like rolldown: a chunk that does not parse is minified as far as it parsed.
        let mut program = Parser::new(&allocator, self.text, source_type)
            .with_options(ParseOptions { preserve_parens: false, ..ParseOptions::default() })
            .parse()
            .program;
        let ret = minifier(settings, settings.module).minify(&allocator, &mut program);
        let (code, piece_map) = print(&program, ret, map.is_some());
        PieceOutput { tokens: trace(piece_map.as_ref(), map, self.line_offset), code }
    }

    /// One piece of a cut chunk: scan, compress and mangle its locals keeping what the others
    /// use, report, then take the chunk-wide top-level names and print. `None` when the cut
    /// is refused.
    fn minify_cut<'m>(
        &self,
        settings: &MinifySettings,
        wants_map: bool,
        mut outbox: Outbox,
        inbox: mpsc::Receiver<Message>,
        map: impl FnOnce() -> Option<ChunkMap<'m>>,
    ) -> Option<PieceOutput> {
        let allocator = Allocator::default();
        let mut program = self.parse(&allocator, SourceType::mjs())?;
        let declared = {
            let scan = scan(&program);
            let declared = scan.roots.clone();
            outbox.scan(Some(scan));
            declared
        };
        let Message::Keep(keep) = inbox.recv().ok()? else { return None };
        let mut ret = compress_and_mangle(&allocator, &mut program, &keep, settings)?;
        outbox.report(Some(report(ret.scoping.as_ref()?, &declared)?));
        let Message::Rename(renames) = inbox.recv().ok()? else { return None };
        let mut scoping = ret.scoping.take()?;
        rename_top_level(&allocator, &mut program, &mut scoping, &renames);
        ret.scoping = Some(scoping);
        let (code, piece_map) = print(&program, ret, wants_map);
        Some(PieceOutput { tokens: trace(piece_map.as_ref(), map(), self.line_offset), code })
    }
}

/// What a piece declares at its top level and what it uses without declaring.
fn scan(program: &Program<'_>) -> Scan {
    let semantic = SemanticBuilder::new().build(program).semantic;
    let scoping = semantic.scoping();
    let roots = scoping.get_bindings(scoping.root_scope_id()).keys().map(|name| name.to_string()).collect();
    let free = scoping
        .root_unresolved_references()
        .iter()
        .map(|(name, references)| FreeName {
            name: name.to_string(),
            written: references.iter().any(|&r| scoping.get_reference(r).is_write()),
        })
        .collect();
    Scan { direct_eval: scoping.root_scope_flags().contains_direct_eval(), roots, free }
}

/// Compress a piece and mangle its locals. The top-level names other pieces use are exported
/// while it is compressed, so that none is dropped or inlined away for looking unused here.
fn compress_and_mangle<'a>(
    allocator: &'a Allocator,
    program: &mut Program<'a>,
    keep: &[String],
    settings: &MinifySettings,
) -> Option<MinifierReturn> {
    let keep_alive = if keep.is_empty() {
        None
    } else {
        let text = allocator.alloc_str(&format!("export {{ {} }};", keep.join(", ")));
        let mut stub = Parser::new(allocator, text, SourceType::mjs()).parse().program;
        program.body.push(stub.body.pop()?);
        Some(text.len())
    };
    let ret = minifier(settings, false).minify(allocator, program);
    if let Some(len) = keep_alive {
        let is_stub = |s: &Statement<'_>| matches!(s, Statement::ExportNamedDeclaration(d) if d.span.start == 0 && d.span.end as usize == len);
        let at = program.body.iter().rposition(is_stub)?;
        program.body.remove(at);
    }
    Some(ret)
}

fn minifier(settings: &MinifySettings, top_level: bool) -> Minifier {
    let keep_names = settings.compress.keep_names;
    Minifier::new(MinifierOptions {
        mangle: Some(MangleOptions {
            top_level: Some(top_level),
            keep_names: MangleOptionsKeepNames { function: keep_names.function, class: keep_names.class },
            ..MangleOptions::default()
        }),
        mangle_properties: None,
        compress: Some(settings.compress.clone()),
    })
}

/// What the others need to know of a piece; `None` if its top level is not what it declared
/// before compression (a binding the keep-alive export did not cover).
fn report(scoping: &Scoping, declared: &[String]) -> Option<PieceReport> {
    let root = scoping.root_scope_id();
    let declared: HashSet<&str> = declared.iter().map(String::as_str).collect();
    let mut report = PieceReport::default();
    for (name, &symbol) in scoping.get_bindings(root) {
        if !declared.contains(name.as_str()) {
            return None;
        }
        // Counted while the keep-alive export was still there (one use more for the names it
        // kept): only the ranking sees it.
        let uses = scoping.get_resolved_reference_ids(symbol).len();
        report.roots.push((name.to_string(), uses));
    }
    for (name, references) in scoping.root_unresolved_references() {
        report.free.push((name.to_string(), references.len()));
    }
    for symbol in scoping.symbol_ids() {
        if scoping.symbol_scope_id(symbol) != root {
            report.locals.insert(scoping.symbol_name(symbol).to_string());
        }
    }
    Some(report)
}

/// Globals whose meaning the compressor relies on: a top-level binding of the chunk by one of
/// these names, used in another piece, would be taken there for the global.
const KNOWN_GLOBALS: &[&str] = &[
    "undefined",
    "NaN",
    "Infinity",
    "globalThis",
    "window",
    "self",
    "document",
    "console",
    "Object",
    "Array",
    "String",
    "Number",
    "Boolean",
    "Symbol",
    "BigInt",
    "Math",
    "JSON",
    "Reflect",
    "Proxy",
    "Promise",
    "Map",
    "Set",
    "WeakMap",
    "WeakSet",
    "WeakRef",
    "Date",
    "RegExp",
    "Error",
    "TypeError",
    "RangeError",
    "SyntaxError",
    "ReferenceError",
    "EvalError",
    "URIError",
    "AggregateError",
    "Function",
    "ArrayBuffer",
    "SharedArrayBuffer",
    "DataView",
    "Int8Array",
    "Uint8Array",
    "Uint8ClampedArray",
    "Int16Array",
    "Uint16Array",
    "Int32Array",
    "Uint32Array",
    "Float32Array",
    "Float64Array",
    "BigInt64Array",
    "BigUint64Array",
    "parseInt",
    "parseFloat",
    "isNaN",
    "isFinite",
    "encodeURI",
    "encodeURIComponent",
    "decodeURI",
    "decodeURIComponent",
    "escape",
    "unescape",
    "eval",
    "arguments",
    "require",
    "module",
    "exports",
    "process",
    "Intl",
    "Atomics",
];

/// One new name per top-level symbol of the chunk, the most used getting the shortest, none
/// that a piece gave a local or that names a global; `None` if compression made a piece use
/// another's top-level name that its source did not.
fn plan_renames(scans: &[Scan], reports: &[PieceReport]) -> Option<HashMap<String, String>> {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for report in reports {
        for (name, count) in &report.roots {
            uses.insert(name.as_str(), *count);
        }
    }
    let mut taken: HashSet<&str> = HashSet::new();
    for (scan, report) in scans.iter().zip(reports) {
        taken.extend(report.locals.iter().map(String::as_str));
        let free_in_source: HashSet<&str> = scan.free.iter().map(|f| f.name.as_str()).collect();
        for (name, count) in &report.free {
            match uses.get_mut(name.as_str()) {
                Some(total) => {
                    if !free_in_source.contains(name.as_str()) {
                        return None;
                    }
                    *total += count;
                }
                None => {
                    taken.insert(name.as_str()); // a real global, kept as it is
                }
            }
        }
    }
    let mut by_use: Vec<(&str, usize)> = uses.into_iter().collect();
    by_use.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut renames = HashMap::with_capacity(by_use.len());
    let mut candidate = 0u32;
    for (name, _) in by_use {
        let new = loop {
            let new = oxc::mangler::base54(candidate);
            candidate += 1;
            let new = new.as_str();
            if !oxc::syntax::keyword::is_reserved_keyword(new) && !taken.contains(new) && new != "arguments" {
                break new.to_string();
            }
        };
        renames.insert(name.to_string(), new);
    }
    Some(renames)
}

/// Give the piece's top-level bindings and its uses of other pieces' top-level names their
/// chunk-wide names.
fn rename_top_level<'a>(
    allocator: &'a Allocator,
    program: &mut Program<'a>,
    scoping: &mut Scoping,
    renames: &HashMap<String, String>,
) {
    let root = scoping.root_scope_id();
    let symbols: Vec<_> = scoping
        .get_bindings(root)
        .iter()
        .filter_map(|(name, &symbol)| renames.get(name.as_str()).map(|new| (symbol, new)))
        .collect();
    for (symbol, new) in symbols {
        scoping.set_symbol_name(symbol, Ident::from(new.as_str()));
    }
    RenameFree { allocator, scoping, renames }.visit_program(program);
}

/// Renames references that resolve to nothing in this piece (the codegen prints those by
/// their own name, not through the scoping).
struct RenameFree<'a, 's> {
    allocator: &'a Allocator,
    scoping: &'s Scoping,
    renames: &'s HashMap<String, String>,
}

impl<'a> VisitMut<'a> for RenameFree<'a, '_> {
    fn visit_identifier_reference(&mut self, it: &mut IdentifierReference<'a>) {
        let unresolved = it.reference_id.get().is_some_and(|r| self.scoping.get_reference(r).symbol_id().is_none());
        if unresolved && let Some(new) = self.renames.get(it.name.as_str()) {
            it.name = Ident::from_str_in(new, &self.allocator);
        }
    }
}

/// Print a piece, with its own source map when one is wanted.
fn print<'a>(program: &Program<'a>, minified: MinifierReturn, map: bool) -> (String, Option<SourceMap<'a>>) {
    let options = CodegenOptions {
        minify: true,
        comments: CommentOptions { normal: false, jsdoc: false, annotation: false, legal: LegalComment::Inline },
        // Only its tokens are used: they are traced through the chunk's map.
        source_map_path: map.then(|| PathBuf::from("piece.js")),
        ..CodegenOptions::default()
    };
    let ret = Codegen::new()
        .with_options(options)
        .with_scoping(minified.scoping)
        .with_private_member_mappings(minified.class_private_mappings)
        .build(program);
    (ret.code, ret.map)
}

/// A piece's tokens traced to the original sources through the chunk's map (what rolldown's
/// `collapse_sourcemaps` does, with the piece's place in the chunk: its line 0 is the chunk's
/// `line_offset`).
fn trace(piece_map: Option<&SourceMap<'_>>, chunk_map: Option<ChunkMap<'_>>, line_offset: u32) -> Vec<Token> {
    let (Some(piece_map), Some((chunk_map, table))) = (piece_map, chunk_map) else { return Vec::new() };
    piece_map
        .get_tokens()
        .filter_map(|token| {
            let unmapped = Token::new(token.get_dst_line(), token.get_dst_col(), 0, 0, None, None);
            if token.get_source_id().is_none() {
                return Some(unmapped);
            }
            let original = chunk_map.lookup_source_view_token_approx(
                table,
                token.get_src_line() + line_offset,
                token.get_src_col(),
            )?;
            Some(match original.get_source_id() {
                None => unmapped,
                source => Token::new(
                    token.get_dst_line(),
                    token.get_dst_col(),
                    original.get_src_line(),
                    original.get_src_col(),
                    source,
                    original.get_name_id(),
                ),
            })
        })
        .collect()
}

/// The pieces' tokens, one after the other (each piece on the lines after the one before,
/// joined by a newline), over the chunk map's sources and names.
fn joined_map(chunk_map: &SourceMap<'static>, outputs: &[PieceOutput]) -> SourceMap<'static> {
    let mut tokens = Vec::with_capacity(outputs.iter().map(|o| o.tokens.len()).sum());
    let mut line = 0u32;
    for output in outputs {
        for t in &output.tokens {
            tokens.push(Token::new(
                t.get_dst_line() + line,
                t.get_dst_col(),
                t.get_src_line(),
                t.get_src_col(),
                t.get_source_id(),
                t.get_name_id(),
            ));
        }
        line += line_count(&output.code) as u32 + 1;
    }
    let owned = |s: &str| std::borrow::Cow::Owned(s.to_owned());
    SourceMap::new(
        None,
        chunk_map.get_names().map(owned).collect(),
        None,
        chunk_map.get_sources().map(owned).collect(),
        chunk_map.get_source_contents().map(|c| c.map(owned)).collect(),
        tokens.into_boxed_slice(),
        None,
    )
}
