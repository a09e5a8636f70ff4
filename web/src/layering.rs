//! The crate's shape, checked: no module imports `app` (it only composes), no panel imports
//! another panel, and the modules' imports form no circle, so a change can be followed down
//! from a panel to the worker and back without running in loops. Test-only modules
//! (`#[cfg(test)] mod tests`) are left out. The test reads the sources from
//! `CARGO_MANIFEST_DIR` at run time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file belongs to: `panels::NAME` for a panel, else the top-level module (a
/// folder's files belong to the folder's module); `None` for the crate root and the binaries.
fn module_of(relative: &Path) -> Option<String> {
    let parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [only] if only == "lib" || only == "main" => None,
        [first, ..] if first == "bin" => None,
        [first, second, ..] if first == "panels" && second != "mod" => {
            Some(format!("panels::{second}"))
        }
        [first, ..] => Some(first.clone()),
        [] => None,
    }
}

/// The modules of this crate that `code` refers to by `crate::…` paths (the module a panel path
/// names, `panels::NAME`, or the top-level one), without comments and test modules.
fn imports(code: &str) -> BTreeSet<String> {
    let code = match code.find("#[cfg(test)]\nmod tests") {
        Some(at) => &code[..at],
        None => code,
    };
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or("");
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let path: Vec<&str> = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .collect();
            match path.as_slice() {
                ["panels", panel, ..] if !panel.is_empty() => {
                    found.insert(format!("panels::{panel}"));
                }
                [first, ..] if !first.is_empty() => {
                    found.insert(first.to_string());
                }
                _ => {}
            }
        }
    }
    found
}

/// The import graph of `web/src`: module → the modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(file.strip_prefix(&root).unwrap()) else {
            continue;
        };
        let code = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(imports(&code).into_iter().filter(|m| *m != module));
    }
    graph
}

/// A circle in `graph`, if there is one (depth-first search).
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_import_graph_sees_the_modules_and_their_imports() {
    let graph = graph();
    for module in ["app", "controller", "protocol", "state", "panels::train"] {
        assert!(graph.contains_key(module), "{module} missing: {graph:?}");
    }
    assert!(graph["app"].contains("controller"));
    // The checks below would catch a circle or an upward import (not a vacuous test).
    let mut with_circle = graph.clone();
    with_circle
        .entry("protocol".into())
        .or_default()
        .insert("app".into());
    assert!(find_circle(&with_circle).is_some());
}

#[test]
fn nothing_imports_the_composition() {
    for (module, imported) in graph() {
        assert!(
            !imported.contains("app"),
            "{module} imports from app.rs, which only composes the page: move what it needs \
             to the state (state.rs), the controller or the module that owns it"
        );
    }
}

#[test]
fn panels_do_not_import_each_other() {
    for (module, imported) in graph() {
        if !module.starts_with("panels::") {
            continue;
        }
        let others: Vec<&String> = imported
            .iter()
            .filter(|m| m.starts_with("panels::"))
            .collect();
        assert!(
            others.is_empty(),
            "{module} imports {others:?}: what two panels share belongs in the state, a \
             module of its own (like train_state.rs or plot.rs) or the controller"
        );
    }
}

#[test]
fn the_modules_import_each_other_in_no_circle() {
    let graph = graph();
    if let Some(circle) = find_circle(&graph) {
        panic!(
            "the modules import each other in a circle: {}",
            circle.join(" → ")
        );
    }
}
