//! attn-model's modules in layers: no two files import each other, directly or around a circle
//! (attn-test-support's `layering` reads `src/` at run time; test modules are left out).
#![cfg(not(target_arch = "wasm32"))]

use attn_test_support::layering::{assert_no_circles, crate_src};

#[test]
fn the_modules_import_each_other_in_no_circle() {
    assert_no_circles(&crate_src());
}
