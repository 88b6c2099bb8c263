//! The library's layers point down only, and no circle of imports spans two folders.
//!
//! Read from the source itself, no compiler needed (so `.ci/run` runs it first, before the
//! long `cargo test`): every `crate::…`, `super::…` and `self::…` path in `src/` outside
//! `src/bin/` (use declarations, braces expanded, and paths in expressions and types alike;
//! comments and string literals stripped) is resolved to the file of the deepest module it names
//! (`crate::tracker::store::Batched` → `src/tracker/store/mod.rs`). That gives a graph of files.
//!
//! - **Rooms and floors.** A file's room is its top folder under `src/` (`src/tracker/store/x.rs`
//!   → `tracker`; `src/util.rs` → `util`; `src/lib.rs` → `lib`). [`FLOORS`] lists the rooms from
//!   the bottom up. An import from a room to another room on the same floor or a higher one is an
//!   *upward* import. A room missing from the list fails the test: a new folder gets a floor.
//! - **Circles.** The strongly connected components of the file graph (Tarjan); a component
//!   whose files lie in more than one room is a circle spanning folders and fails. Circles inside
//!   one room (a type and its writer; a `mod.rs` re-exporting from a sub-folder that uses
//!   `super::`) are allowed and counted.
//! - **The crate root.** A library file importing a name through `lib.rs` (`crate::Outcome`
//!   instead of `crate::analysis::Outcome`) pins `lib.rs` below that file; it is reported too.
//!
//! `cargo test --test layers -- --nocapture` prints the graph's summary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rooms of the library, from the bottom floor up. Rooms on one line share a floor and may
/// not import each other.
const FLOORS: &[&[&str]] = &[
    &["util"],
    &["stats"],
    &["fixture"],
    &["engine"],
    &["tracker"],
    &["load"],
    &["analysis"],
    &["diagnose"],
    &["report"],
    &["error"],
    &["scenario", "fleet"],
    &["config"],
    &["campaign"],
    &["lib"],
];

/// Imports known to run upward, each with the step that removes it: `(file, imported path)`.
/// Empty is the goal; a new entry needs a reason.
const KNOWN: &[(&str, &str)] = &[];

/// One module: the file it lives in and its path from the crate root.
#[derive(Debug, Clone)]
struct Module {
    file: PathBuf,
}

/// Every module of the library: file modules and the inline `mod x { … }` blocks inside them.
type Modules = BTreeMap<Vec<String>, Module>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if p != src().join("bin") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` → `[a, b]`; `src/a/mod.rs` → `[a]`; `src/lib.rs` → `[]`.
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("a file under src/");
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segs.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (segs.is_empty() && stem == "lib")) {
        segs.push(stem.to_string());
    }
    segs
}

/// The text with comments, string literals and char literals blanked (lengths kept).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // a raw string r"…" or r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            j = (j + close.len()).min(b.len());
            for &x in &b[i..j] {
                out.push(if x == b'\n' { b'\n' } else { b' ' });
            }
            i = j;
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    out.push(b' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // a char literal ('x', '\n', '\u{1F600}'), not a lifetime ('a)
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 2)
            } else {
                // a multi-byte char
                std::str::from_utf8(&b[i + 1..])
                    .ok()
                    .or_else(|| text.get(i + 1..))
                    .and_then(|s| s.chars().next())
                    .filter(|ch| ch.len_utf8() > 1 && b.get(i + 1 + ch.len_utf8()) == Some(&b'\''))
                    .map(|ch| i + 1 + ch.len_utf8())
            };
            match end {
                Some(e) => {
                    out.extend(std::iter::repeat_n(b' ', e + 1 - i));
                    i = e + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path, // ::
    Punct(char),
}

fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let word = text[start..i].trim_start_matches('$').to_string();
            out.push((Tok::Ident(word), line));
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push((Tok::Path, line));
            i += 2;
        } else if c.is_ascii() {
            out.push((Tok::Punct(c as char), line));
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// A path the file names: the segments from its start (`crate`, `super`, `self`) and the line.
#[derive(Debug)]
struct Named {
    scope: Vec<String>,
    segs: Vec<String>,
    line: usize,
}

/// Every path starting with `crate`, `super` or `self` in `toks`, with the inline module it sits
/// in (`scope`, relative to the file's module). `use` groups are expanded.
fn named_paths(toks: &[(Tok, usize)]) -> (Vec<Named>, Vec<Vec<String>>) {
    let mut found = Vec::new();
    let mut inline_mods = Vec::new();
    let mut scope: Vec<(String, usize)> = Vec::new(); // (module name, brace depth at its `{`)
    let mut depth = 0usize;
    let mut i = 0;
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if scope.last().is_some_and(|(_, d)| *d == depth) {
                    scope.pop();
                }
                i += 1;
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some(name), Some((Tok::Punct('{'), _))) = (ident(i + 1), toks.get(i + 2)) {
                    scope.push((name.to_string(), depth));
                    let mut p: Vec<String> = scope.iter().map(|(n, _)| n.clone()).collect();
                    inline_mods.push(std::mem::take(&mut p));
                    depth += 1;
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Tok::Ident(w) if w == "use" => {
                // a use declaration up to its `;`
                let end = (i..toks.len())
                    .find(|&j| toks[j].0 == Tok::Punct(';'))
                    .unwrap_or(toks.len());
                let here: Vec<String> = scope.iter().map(|(n, _)| n.clone()).collect();
                let mut leaves = Vec::new();
                expand_use(&toks[i + 1..end], Vec::new(), &mut leaves);
                for (mut segs, line) in leaves {
                    if !matches!(
                        segs.first().map(String::as_str),
                        Some("crate" | "super" | "self")
                    ) {
                        // a path relative to this module (`use store::X` naming a child module):
                        // marked for the resolver, which keeps it only if the child exists
                        segs.insert(0, "self?".to_string());
                    }
                    {
                        found.push(Named {
                            scope: here.clone(),
                            segs,
                            line,
                        });
                    }
                }
                i = end + 1;
            }
            Tok::Ident(w) if w == "crate" || w == "super" || w == "self" => {
                let prev_is_path = i > 0 && toks[i - 1].0 == Tok::Path;
                // `pub(crate)`, `pub(super)`, `pub(in crate::x)` are visibilities, not paths
                let visibility = i >= 2
                    && toks[i - 1].0 == Tok::Punct('(')
                    && matches!(&toks[i - 2].0, Tok::Ident(p) if p == "pub" || p == "in")
                    || i >= 1 && matches!(&toks[i - 1].0, Tok::Ident(p) if p == "in");
                if prev_is_path || visibility || toks.get(i + 1).map(|t| &t.0) != Some(&Tok::Path) {
                    i += 1;
                    continue;
                }
                let line = toks[i].1;
                let mut segs = vec![w.clone()];
                let mut j = i + 1;
                while toks.get(j).map(|t| &t.0) == Some(&Tok::Path) {
                    match ident(j + 1) {
                        Some(s) => {
                            segs.push(s.to_string());
                            j += 2;
                        }
                        None => break,
                    }
                }
                found.push(Named {
                    scope: scope.iter().map(|(n, _)| n.clone()).collect(),
                    segs,
                    line,
                });
                i = j;
            }
            _ => i += 1,
        }
    }
    (found, inline_mods)
}

/// The leaves of a use tree: `a::{b, c::{d, e as f}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand_use(toks: &[(Tok, usize)], prefix: Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    // split at top-level commas
    let mut parts = Vec::new();
    let mut level = 0;
    let mut start = 0;
    for (k, (t, _)) in toks.iter().enumerate() {
        match t {
            Tok::Punct('{') => level += 1,
            Tok::Punct('}') => level -= 1,
            Tok::Punct(',') if level == 0 => {
                parts.push(&toks[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    for part in parts {
        let mut segs = prefix.clone();
        let mut k = 0;
        let mut line = part.first().map_or(0, |t| t.1);
        while k < part.len() {
            match &part[k].0 {
                Tok::Ident(s) if s == "as" => break,
                Tok::Ident(s) if s == "pub" => {}
                Tok::Ident(s) => {
                    segs.push(s.clone());
                    line = part[k].1;
                }
                Tok::Punct('{') => {
                    let close = part.len()
                        - 1
                        - part
                            .iter()
                            .rev()
                            .position(|t| t.0 == Tok::Punct('}'))
                            .unwrap_or(0);
                    expand_use(&part[k + 1..close], segs.clone(), out);
                    segs.clear();
                    break;
                }
                _ => {}
            }
            k += 1;
        }
        if !segs.is_empty() {
            out.push((segs, line));
        }
    }
}

/// The module a path names, as far as it resolves: `(module path, file)`.
fn resolve(modules: &Modules, here: &[String], segs: &[String]) -> Option<Vec<String>> {
    let mut cur: Vec<String> = Vec::new();
    let mut rest = segs;
    match segs.first().map(String::as_str) {
        Some("crate") => rest = &segs[1..],
        Some("self?") => {
            let mut child = here.to_vec();
            child.push(segs.get(1)?.clone());
            if !modules.contains_key(&child) {
                return None;
            }
            cur = here.to_vec();
            rest = &segs[1..];
        }
        Some("super" | "self") => {
            cur = here.to_vec();
            while let Some(s) = rest.first() {
                match s.as_str() {
                    "super" => {
                        cur.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    for s in rest {
        let mut next = cur.clone();
        next.push(s.clone());
        if modules.contains_key(&next) {
            cur = next;
        } else {
            break;
        }
    }
    Some(cur)
}

fn room_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src/");
    let first = rel.iter().next().expect("a component").to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

fn folder_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src/");
    rel.parent()
        .map_or(String::new(), |p| p.display().to_string())
}

fn show(file: &Path) -> String {
    format!(
        "src/{}",
        file.strip_prefix(src()).expect("under src/").display()
    )
}

/// One import of one file: the line and the path as written.
#[derive(Debug, Clone)]
struct Import {
    from: PathBuf,
    to: PathBuf,
    line: usize,
    path: String,
}

fn imports() -> Vec<Import> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut modules: Modules = BTreeMap::new();
    let mut parsed = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("a readable source file");
        let toks = tokens(&strip(&text));
        let (named, inline) = named_paths(&toks);
        let base = module_path(f);
        modules.insert(base.clone(), Module { file: f.clone() });
        for m in inline {
            let mut p = base.clone();
            p.extend(m);
            modules.insert(p, Module { file: f.clone() });
        }
        parsed.push((f.clone(), base, named));
    }
    let mut out = Vec::new();
    for (f, base, named) in parsed {
        for n in named {
            let mut here = base.clone();
            here.extend(n.scope.iter().cloned());
            let Some(target) = resolve(&modules, &here, &n.segs) else {
                continue;
            };
            let to = modules[&target].file.clone();
            if to != f {
                out.push(Import {
                    from: f.clone(),
                    to,
                    line: n.line,
                    path: n.segs.join("::"),
                });
            }
        }
    }
    out
}

fn floor(room: &str) -> Option<usize> {
    FLOORS.iter().position(|rooms| rooms.contains(&room))
}

/// Tarjan's strongly connected components of the file graph, those of two files or more.
fn circles(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct T<'a> {
        edges: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on: BTreeSet<&'a PathBuf>,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a PathBuf) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.edges.get(v) {
            for w in ws {
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn imports_point_down_and_no_circle_spans_two_folders() {
    let all = imports();
    let mut problems = Vec::new();
    let mut rooms = BTreeSet::new();
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for imp in &all {
        if KNOWN
            .iter()
            .any(|(f, path)| show(&imp.from) == *f && imp.path == *path)
        {
            continue;
        }
        edges
            .entry(imp.from.clone())
            .or_default()
            .insert(imp.to.clone());
        let (a, b) = (room_of(&imp.from), room_of(&imp.to));
        rooms.insert(a.clone());
        rooms.insert(b.clone());
        if a == b {
            continue;
        }
        if b == "lib" {
            problems.push(format!(
                "through the crate root: {}:{} imports `{}` (name its module instead)",
                show(&imp.from),
                imp.line,
                imp.path
            ));
            continue;
        }
        if let (Some(fa), Some(fb)) = (floor(&a), floor(&b))
            && fb >= fa
        {
            problems.push(format!(
                "upward: {}:{} ({a}, floor {fa}) imports `{}` ({b}, floor {fb})",
                show(&imp.from),
                imp.line,
                imp.path
            ));
        }
    }
    for r in &rooms {
        if floor(r).is_none() {
            problems.push(format!(
                "the room `{r}` has no floor: add it to FLOORS in tests/layers.rs"
            ));
        }
    }
    let circles = circles(&edges);
    let (mut within, mut sub) = (0, 0);
    for c in &circles {
        let folders: BTreeSet<String> = c.iter().map(|f| room_of(f)).collect();
        if c.iter()
            .map(|f| folder_of(f))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
        {
            sub += 1; // e.g. tracker/mod.rs re-exports from tracker/store/, which uses super::
        }
        if folders.len() > 1 {
            let files: Vec<String> = c.iter().map(|f| show(f)).collect();
            problems.push(format!(
                "a circle of {} files spans {} folders ({}): {}",
                c.len(),
                folders.len(),
                folders.into_iter().collect::<Vec<_>>().join(", "),
                files.join(" ")
            ));
        } else {
            within += 1;
        }
    }
    println!(
        "{} imports between {} files of {} rooms; {} circles inside one room ({} of them across \
         its sub-folders); {} problems",
        all.len(),
        edges.len(),
        rooms.len(),
        within,
        sub,
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "the layers (tests/layers.rs explains the check):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_parser_sees_what_it_must() {
    let text = "use crate::{a::{B, c::D}, e as f};\n// crate::x::Y\nfn g() { super::h(); let s = \"crate::z\"; }\npub(crate) fn k() {}\nmod tests { use super::*; }";
    let (named, inline) = named_paths(&tokens(&strip(text)));
    let got: Vec<String> = named
        .iter()
        .map(|n| format!("{}@{}", n.segs.join("::"), n.scope.join("::")))
        .collect();
    assert_eq!(
        got,
        [
            "crate::a::B@",
            "crate::a::c::D@",
            "crate::e@",
            "super::h@",
            "super@tests"
        ]
    );
    assert_eq!(inline, [vec!["tests".to_string()]]);
}
