//! The whole GPU forward against attn-model's CPU forward, for every variant on every model
//! shape, and against the PyTorch fixture. Natively this runs on whatever adapter wgpu finds
//! (Mesa lavapipe on CI); with none, every test fails with a message saying so.
#![cfg(not(target_arch = "wasm32"))]

use crate::common;

use std::sync::OnceLock;

use attn_gpu::GpuContext;
use attn_model::Precision;

fn ctx() -> GpuContext {
    static CONTEXT: OnceLock<GpuContext> = OnceLock::new();
    CONTEXT
        .get_or_init(|| pollster::block_on(common::new_context()))
        .clone()
}

/// T = 1, a length inside one tile, and one past the 32-row tile.
const LENGTHS: &[usize] = &[1, 7, 33];

fn check_config(name: &str) {
    check_config_in(name, Precision::F32);
}

fn check_config_in(name: &str, precision: Precision) {
    let (_, config) = common::model_configs()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap();
    let checked = pollster::block_on(common::check_variants_in(
        &ctx(),
        name,
        &config,
        precision,
        common::VARIANTS,
        LENGTHS,
    ));
    // Guard against a test that silently skips: most variants fit every shape.
    assert!(
        checked >= 12 * LENGTHS.len(),
        "{name}: only {checked} cases ran"
    );
}

#[test]
fn gpt_every_variant_matches_the_cpu() {
    check_config("gpt");
}

#[test]
fn bidirectional_classifier_every_variant_matches_the_cpu() {
    check_config("classifier");
}

#[test]
fn attention_only_untied_every_variant_matches_the_cpu() {
    check_config("attention-only");
}

#[test]
fn natively_grouped_every_variant_matches_the_cpu() {
    check_config("native-gqa");
}

#[test]
fn native_mqa_bidirectional_every_variant_matches_the_cpu() {
    check_config("native-mqa-bidirectional");
}

#[test]
fn d_head_one_every_variant_matches_the_cpu() {
    check_config("d_head-1");
}

#[test]
fn llama_every_variant_matches_the_cpu() {
    check_config("llama");
}

#[test]
fn qwen2_with_llama3_scaling_every_variant_matches_the_cpu() {
    check_config("qwen2-llama3-scaling");
}

#[test]
fn neox_every_variant_matches_the_cpu() {
    check_config("neox");
}

#[test]
fn bf16_llama_every_variant_matches_the_cpu() {
    check_config_in("llama", Precision::Bf16);
}

#[test]
fn f16_untied_head_every_variant_matches_the_cpu() {
    check_config_in("attention-only", Precision::F16);
}

#[test]
fn family_fixtures_match_transformers_on_the_gpu() {
    let checked = pollster::block_on(common::check_family_fixtures(&ctx()));
    assert_eq!(checked, 6);
}

#[test]
fn pytorch_fixture_matches_on_the_gpu() {
    let cases = pollster::block_on(common::check_fixture(&ctx()));
    assert!(cases >= 20, "the fixture has {cases} cases");
}
