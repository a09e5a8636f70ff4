//! The import graph of a crate's sources, for the tests that keep its modules in layers: one
//! node per file (a folder's `mod.rs` is the folder's module), an edge for every `crate::…`
//! path, `use super::…` and a folder module's use of its children (`embed::kernel`), resolved
//! through the `pub use` re-exports (which are facades, not imports of their own). Test modules
//! (a `mod tests` under `#[cfg(test)]` or `#[cfg(all(test, …))]`, and what follows it) and
//! comments are left out.
//!
//! Read at run time from the crate's `src/` (`CARGO_MANIFEST_DIR`), so it costs no build.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`engine::forward`; `""` for the crate root) → the modules its code imports.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The import graph of the crate whose sources are in `src` (binaries under `src/bin` left out).
pub fn import_graph(src: &Path) -> Graph {
    let mut files = BTreeMap::new();
    collect(src, src, &mut files);
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let code: BTreeMap<String, String> = files
        .iter()
        .map(|(m, path)| (m.clone(), without_tests_and_comments(&read(path))))
        .collect();
    let mut reexports = BTreeMap::new();
    for (module, text) in &code {
        for (tree, _) in statements(text, true) {
            for segments in use_paths(&tree) {
                let Some(last) = segments.last().cloned() else {
                    continue;
                };
                let is_module = resolve_path(&modules, &BTreeMap::new(), module, &segments)
                    .is_some_and(|(_, rest)| rest.is_empty());
                let key = (module.clone(), last);
                if reexports.get(&key).is_some_and(|r: &Reexport| r.is_module) {
                    continue;
                }
                reexports.insert(
                    key,
                    Reexport {
                        owner: module.clone(),
                        segments,
                        is_module,
                    },
                );
            }
        }
    }
    let mut graph = Graph::new();
    for (module, text) in &code {
        let mut edges = BTreeSet::new();
        let imports = remove_reexports(text);
        let mut add = |from: &str, segments: &[String]| {
            if let Some((target, _)) = resolve_path(&modules, &reexports, from, segments) {
                if target != *module {
                    edges.insert(target);
                }
            }
        };
        for (tree, indented) in statements(&imports, false) {
            for segments in use_paths(&tree) {
                match segments.first().map(String::as_str) {
                    Some("crate") => add("", &segments[1..]),
                    // An indented `use super::…` is inside an inline module of this file.
                    Some("super") if indented => {}
                    Some("super") => add(&parent(module), &segments[1..]),
                    Some("self") => add(module, &segments[1..]),
                    _ => add(module, &segments),
                }
            }
        }
        for segments in inline_paths(&imports, "crate::") {
            add("", &segments);
        }
        // A folder module's code naming its children (`embed::kernel(…)`).
        for child in modules
            .iter()
            .filter(|c| parent(c) == *module && *c != module)
        {
            let name = child.rsplit("::").next().unwrap_or(child);
            if !inline_paths(&imports, &format!("{name}::")).is_empty() {
                edges.insert(child.clone());
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

/// Every circle of `graph` (its strongly connected components of more than one module), each
/// sorted, with the edges between its members to show how it closes.
pub fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

/// Fails with every circle of the crate in `src` and how each closes.
#[track_caller]
pub fn assert_no_circles(src: &Path) {
    let graph = import_graph(src);
    let found = circles(&graph);
    if found.is_empty() {
        return;
    }
    let mut message = String::from("modules import each other in a circle:\n");
    for circle in &found {
        message.push_str(&format!("  circle of {}:\n", circle.join(", ")));
        for m in circle {
            let inside: Vec<&String> = graph[m].iter().filter(|t| circle.contains(t)).collect();
            message.push_str(&format!("    {} → {inside:?}\n", display(m)));
        }
    }
    panic!("{message}");
}

/// The `src/` of the crate under test.
pub fn crate_src() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("src")
}

struct Reexport {
    owner: String,
    segments: Vec<String>,
    is_module: bool,
}

fn display(module: &str) -> &str {
    if module.is_empty() {
        "<crate root>"
    } else {
        module
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_string())
}

/// Every `.rs` file under `dir` by module path.
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "bin") && dir == root {
                continue;
            }
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path.strip_prefix(root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                parts.clear();
            }
            out.insert(parts.join("::"), path);
        }
    }
}

/// The code without its test module (a `mod tests` under a `#[cfg(…test…)]` attribute, and
/// everything after it) and without line comments.
fn without_tests_and_comments(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    let end = (1..lines.len())
        .find(|&i| {
            lines[i].starts_with("mod tests")
                && lines[i - 1].starts_with("#[cfg(")
                && lines[i - 1].contains("test")
        })
        .map_or(lines.len(), |i| i - 1);
    lines[..end]
        .iter()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| match l.find("//") {
            // A `//` inside a string ("https://…") is not a comment.
            Some(at) if !l[..at].contains('"') => &l[..at],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The trees of the `use` statements at the start of a line, and whether each is indented:
/// `pub use` ones (re-exports) when `public`, the others otherwise.
fn statements(code: &str, public: bool) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let line_start = rest[..at].rfind('\n').map_or(0, |n| n + 1);
        let prefix = rest[line_start..at].trim();
        let is_public = prefix.starts_with("pub");
        let is_statement = prefix.is_empty() || prefix == "pub" || prefix.starts_with("pub(");
        let after = &rest[at + 4..];
        let Some(end) = after.find(';') else { break };
        if is_statement && is_public == public {
            let indented = rest[line_start..].starts_with(char::is_whitespace);
            found.push((after[..end].to_string(), indented));
        }
        rest = &after[end..];
    }
    found
}

/// The code with its `pub use` statements removed.
fn remove_reexports(code: &str) -> String {
    code.lines()
        .scan(false, |inside, line| {
            let t = line.trim_start();
            let starts = t.starts_with("pub use ") || t.starts_with("pub(crate) use ");
            let keep = !(*inside || starts);
            if starts || *inside {
                *inside = !line.trim_end().ends_with(';');
            }
            Some(if keep { line } else { "" })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` tree names (`a::{b, c::d}` → `a::b`, `a::c::d`), `self` and globs dropped.
fn use_paths(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    expand(&tree, &mut Vec::new(), &mut out);
    out
}

fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for part in split_top(tree) {
        let part = part.trim();
        let part = part.split(" as ").next().unwrap_or(part).trim();
        if part.is_empty() || part == "*" {
            continue;
        }
        if let Some(open) = part.find('{') {
            let head = part[..open].trim_end_matches("::");
            let inner = &part[open + 1..part.rfind('}').unwrap_or(part.len())];
            let added: Vec<String> = head
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            let n = added.len();
            prefix.extend(added);
            expand(inner, prefix, out);
            prefix.truncate(prefix.len() - n);
        } else {
            let mut path = prefix.clone();
            path.extend(part.split("::").map(String::from));
            if path.last().is_some_and(|s| s == "self") {
                path.pop();
            }
            out.push(path);
        }
    }
}

/// `a, b::{c, d}, e` split at its top-level commas.
fn split_top(tree: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0usize, 0, Vec::new());
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    parts
}

/// Every path that follows `marker` in `code` outside `use` trees (`crate::forward::argmax(`),
/// as segments after the marker.
fn inline_paths(code: &str, marker: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(marker) {
        let start = from + at;
        from = start + marker.len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let path: String = code[from..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut segments: Vec<String> = Vec::new();
        if marker != "crate::" {
            segments.push(marker.trim_end_matches("::").to_string());
        }
        segments.extend(path.split("::").filter(|s| !s.is_empty()).map(String::from));
        found.push(segments);
    }
    found
}

/// Where `segments`, read from module `from`, lands: the deepest module of the crate it names
/// (following re-exports), and what is left of the path after it. `None` for another crate.
fn resolve_path(
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<(String, String), Reexport>,
    from: &str,
    segments: &[String],
) -> Option<(String, Vec<String>)> {
    resolve_depth(modules, reexports, from, segments, 0)
}

fn resolve_depth(
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<(String, String), Reexport>,
    from: &str,
    segments: &[String],
    depth: usize,
) -> Option<(String, Vec<String>)> {
    if depth > 16 {
        return None;
    }
    let join = |base: &str, s: &str| {
        if base.is_empty() {
            s.to_string()
        } else {
            format!("{base}::{s}")
        }
    };
    let mut current = from.to_string();
    let mut moved = false;
    for (i, segment) in segments.iter().enumerate() {
        match segment.as_str() {
            "crate" if i == 0 => {
                current.clear();
                moved = true;
                continue;
            }
            "super" => {
                current = parent(&current);
                moved = true;
                continue;
            }
            "self" => continue,
            _ => {}
        }
        let candidate = join(&current, segment);
        if modules.contains(&candidate) {
            current = candidate;
            moved = true;
            continue;
        }
        if let Some(r) = reexports.get(&(current.clone(), segment.clone())) {
            let mut path = r.segments.clone();
            path.extend(segments[i + 1..].iter().cloned());
            return resolve_depth(modules, reexports, &r.owner, &path, depth + 1);
        }
        // Not a module of this crate at the start: another crate (`std`, `wgpu`, …).
        return moved.then(|| (current, segments[i..].to_vec()));
    }
    moved.then(|| (current, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_of(files: &[(&str, &str)]) -> Graph {
        let dir = std::env::temp_dir().join(format!(
            "attn-layering-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, code) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, code).unwrap();
        }
        let graph = import_graph(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        graph
    }

    #[test]
    fn a_circle_through_reexports_and_children_is_found_and_layers_are_not() {
        let graph = graph_of(&[
            (
                "lib.rs",
                "pub mod a;\npub mod b;\npub use a::thing;\npub use b::Other;\n",
            ),
            ("a/mod.rs", "pub mod leaf;\npub fn thing() { leaf::f(); }\n"),
            ("a/leaf.rs", "use crate::Other;\npub fn f() {}\n"),
            (
                "b.rs",
                "use crate::a::thing;\npub struct Other;\n// use crate::nothing;\n",
            ),
        ]);
        assert_eq!(graph["a"], BTreeSet::from(["a::leaf".to_string()]));
        assert_eq!(graph["a::leaf"], BTreeSet::from(["b".to_string()]));
        assert_eq!(graph["b"], BTreeSet::from(["a".to_string()]));
        assert_eq!(circles(&graph), vec![vec!["a", "a::leaf", "b"]]);

        let layered = graph_of(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a.rs", "use crate::b::{self, Thing};\nfn f() { super::b::g(); }\n"),
            ("b.rs", "pub struct Thing;\npub fn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n"),
        ]);
        assert_eq!(layered["a"], BTreeSet::from(["b".to_string()]));
        assert!(circles(&layered).is_empty());
    }
}
