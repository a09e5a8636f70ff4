//! The crate's shape, checked: no module imports `app` (it only composes), no panel imports
//! another panel, and the modules' imports form no circle (attn-test-support's `layering`), so
//! a change can be followed down from a panel to the worker and back without running in loops.
//! Test-only modules are left out. The test reads the sources at run time.

use std::collections::{BTreeMap, BTreeSet};

use attn_test_support::layering::{assert_no_circles, circles, crate_src, import_graph};

/// The import graph of `web/src`: module → the modules it imports.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    import_graph(&crate_src())
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
    assert!(!circles(&with_circle).is_empty());
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
    assert_no_circles(&crate_src());
}
