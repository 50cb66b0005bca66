//! The shape of `src/` (ARCHITECTURE.md): no two modules import each other, directly
//! or around a circle; no file over 600 lines outside its tests; no function over
//! 120 lines; `stats` holds no SQL (it asks `store` in typed words). Read from the
//! source text: `crate::` and `super::` paths, in `use` lines and in code, resolved
//! to the file that defines the module they name.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 120;

/// A source file's module path: `src/sim/engine.rs` → `sim::engine`,
/// `src/sim/mod.rs` → `sim`, `src/lib.rs` → `` (the crate root).
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts.join("::")
}

/// The code of a file without comments and string contents (a path in a doc comment
/// or a message is not an import).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
                out.push('"');
            } else if !in_str {
                out.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push('\n');
    }
    out
}

/// Every module path a file refers to: `crate::a::b::{c, d::e}` gives `a::b::c`,
/// `a::b::d::e`; `super::x` is resolved against the file's own module, and a bare
/// `child::x` against it when `child` is one of its submodules (`children`).
fn references(code: &str, module: &str, children: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let own: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for child in children {
        let start = format!("{child}::");
        let mut from = 0;
        while let Some(i) = code[from..].find(&start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue;
            }
            let mut base = own.clone();
            base.push(child.clone());
            expand(&code[from..], base, &mut out);
        }
    }
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if at > 0 && (ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue;
            }
            let base: Vec<String> = if start == "crate::" {
                Vec::new()
            } else {
                // `super` of a mod.rs is the folder's parent; of a file, its folder.
                let mut m: Vec<String> = module
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                m.pop();
                m
            };
            expand(&code[from..], base, &mut out);
        }
    }
    out
}

/// Reads one path (with `{...}` groups) at the start of `rest`.
fn expand(rest: &str, mut base: Vec<String>, out: &mut Vec<String>) {
    let mut s = rest;
    loop {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        if end == 0 {
            if let Some(group) = s.strip_prefix('{') {
                let mut depth = 1;
                let mut item = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 1 => {
                            expand(group[item..i].trim_start(), base.clone(), out);
                            item = i + 1;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        expand(group[item..i].trim_start(), base.clone(), out);
                        break;
                    }
                }
                return;
            }
            break;
        }
        let seg = &s[..end];
        if seg != "self" {
            base.push(seg.to_string());
        }
        s = &s[end..];
        match s.strip_prefix("::") {
            Some(r) => s = r,
            None => break,
        }
    }
    out.push(base.join("::"));
}

struct Source {
    files: BTreeMap<String, (PathBuf, String)>,
}

impl Source {
    fn read(root: &Path) -> Source {
        let mut files = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let rel = p.strip_prefix(root).unwrap().to_path_buf();
                    if rel == Path::new("main.rs") {
                        continue; // the binary: it uses the library, nothing uses it
                    }
                    let text = std::fs::read_to_string(&p).unwrap();
                    files.insert(module_of(&rel), (rel, text));
                }
            }
        }
        Source { files }
    }

    /// The file (module) that defines `path`: its longest prefix that is a module.
    fn owner(&self, path: &str) -> Option<&str> {
        let mut parts: Vec<&str> = path.split("::").collect();
        while !parts.is_empty() {
            let m = parts.join("::");
            if let Some((k, _)) = self.files.get_key_value(&m) {
                return Some(k);
            }
            parts.pop();
        }
        None
    }

    /// module → the modules it imports (not itself, not the crate root).
    fn graph(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut g = BTreeMap::new();
        for (m, (rel, text)) in &self.files {
            // The crate root only declares the modules.
            if m.is_empty() {
                continue;
            }
            let is_mod = rel.ends_with("mod.rs");
            let children: Vec<String> = if is_mod {
                self.files
                    .keys()
                    .filter_map(|k| k.strip_prefix(&format!("{m}::")))
                    .filter(|k| !k.contains("::"))
                    .map(String::from)
                    .collect()
            } else {
                Vec::new()
            };
            let mut to = BTreeSet::new();
            let outside_tests = text.lines().take(lines_outside_tests(text));
            let outside_tests: Vec<&str> = outside_tests.collect();
            for r in references(&code_only(&outside_tests.join("\n")), m, &children) {
                if let Some(o) = self.owner(&r) {
                    if o != m && !o.is_empty() {
                        to.insert(o.to_string());
                    }
                }
            }
            g.insert(m.clone(), to);
        }
        g
    }
}

/// Strongly connected components with more than one module (Tarjan).
fn circles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        if let Some(next) = t.g.get(v) {
            for w in next {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let l = t.low[w].min(t.low[v]);
                    t.low.insert(v, l);
                } else if t.on.contains(w) {
                    let l = t.index[w].min(t.low[v]);
                    t.low.insert(v, l);
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
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
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

fn src() -> Source {
    Source::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn the_checker_finds_a_circle_and_resolves_paths() {
    let code = code_only(
        "use crate::{a::b::{C, d}, e};\nuse super::f::G; // crate::not_me\nlet x = crate::h::i(\"crate::no\");\nkid::run(); other_kid::x();",
    );
    let mut refs = references(&code, "x::y", &["kid".to_string()]);
    refs.sort();
    assert_eq!(
        refs,
        [
            "a::b::C",
            "a::b::d",
            "e",
            "h::i",
            "x::f::G",
            "x::y::kid::run"
        ]
    );
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(circles(&g), vec![vec!["a", "b", "c"]]);
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    let s = src();
    let g = s.graph();
    // The graph is read at all: the engine imports the client and config.
    assert!(g["engine"].contains("client"), "{:?}", g["engine"]);
    let found = circles(&g);
    let mut report = String::new();
    for c in &found {
        report.push_str(&format!("circle of {} modules:\n", c.len()));
        for m in c {
            let back: Vec<_> = g[m].iter().filter(|t| c.contains(t)).collect();
            report.push_str(&format!("  {m} -> {back:?}\n"));
        }
    }
    assert!(found.is_empty(), "import circles in src/:\n{report}");
}

/// Lines of a file before its `#[cfg(test)] mod tests`.
fn lines_outside_tests(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].starts_with("mod "))
        .unwrap_or(lines.len())
}

#[test]
fn no_file_over_600_lines_and_no_function_over_120() {
    let s = src();
    let mut long = Vec::new();
    for (rel, text) in s.files.values() {
        let n = lines_outside_tests(text);
        if n > MAX_FILE_LINES {
            long.push(format!("{}: {n} lines", rel.display()));
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            // Any visibility and qualifiers: `pub(crate) async fn`, `const fn`, ...
            let mut head = t;
            for p in [
                "pub(crate) ",
                "pub(super) ",
                "pub ",
                "const ",
                "async ",
                "unsafe ",
            ] {
                head = head.strip_prefix(p).unwrap_or(head);
            }
            let is_fn = head.starts_with("fn ") && !t.ends_with(';');
            if !is_fn {
                continue;
            }
            let indent = &l[..l.len() - t.len()];
            let close = format!("{indent}}}");
            if let Some(end) = lines[i..].iter().position(|x| *x == close) {
                if end + 1 > MAX_FN_LINES {
                    long.push(format!(
                        "{}:{}: {} lines: {t}",
                        rel.display(),
                        i + 1,
                        end + 1
                    ));
                }
            }
        }
    }
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
}

/// No comment cites a section of a document that is not in the repository
/// ("evalscope §7.2"): a reader cannot follow it. Public standards (RFC …) may be
/// cited by section.
#[test]
fn no_comment_cites_a_section_of_a_document_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in ["src", "tests/it", "benches"] {
        for f in crate::common::files_under(&root.join(dir)) {
            if f.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let cites = line.match_indices('§').any(|(at, _)| {
                    line[at + '§'.len_utf8()..].starts_with(|c: char| c.is_ascii_digit())
                        && !line[..at]
                            .trim_end()
                            .ends_with(|c: char| c.is_ascii_digit())
                });
                if cites && !line.contains("RFC") {
                    found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "section citations:\n{}", found.join("\n"));
}

/// SQL in a file's code outside its tests: `rusqlite`, or a string holding SQL
/// syntax (upper-case keywords and SQLite's JSON functions).
fn sql_in(text: &str) -> Vec<String> {
    const SQL: [&str; 13] = [
        "rusqlite",
        "SELECT",
        "COALESCE(",
        "SUM(",
        "AVG(",
        "MIN(",
        "MAX(",
        "COUNT(",
        "IS NOT NULL",
        "CASE WHEN",
        "NULLIF(",
        "json_each",
        "json_array_length",
    ];
    let lines: Vec<&str> = text.lines().collect();
    let code = &lines[..lines_outside_tests(text)];
    code.iter()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| SQL.iter().any(|k| l.contains(k)))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn stats_asks_the_store_in_typed_words_not_sql() {
    // The check sees an SQL fragment passed as a string, and not a comment or a test.
    assert_eq!(
        sql_in("let a = rows.aggregate(Requests, \"SUM(latency)\", \"success=1\");\n// AVG(x)\n#[cfg(test)]\nmod tests {\n use rusqlite::Connection;\n}"),
        ["let a = rows.aggregate(Requests, \"SUM(latency)\", \"success=1\");"]
    );
    let s = src();
    let mut found = Vec::new();
    for (module, (rel, text)) in &s.files {
        if module == "stats" || module.starts_with("stats::") {
            for line in sql_in(text) {
                found.push(format!("src/{}: {line}", rel.display()));
            }
        }
    }
    assert!(s.files.contains_key("stats::summary"));
    assert!(
        found.is_empty(),
        "stats names store::Field / Expr / Filter, not SQL:\n{}",
        found.join("\n")
    );
}
