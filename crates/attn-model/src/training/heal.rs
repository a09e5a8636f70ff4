//! Healing: fine-tuning a model with a variant built into its weights — the "uptraining" the
//! grouped-query and latent-attention papers rely on after pooling key/value heads or cutting
//! their rank, and the retraining after pruning heads. [`build_in`] turns the variant into
//! weights the trainer can change: pooled key/value heads become a native grouped-query model;
//! the rank cut replaces each layer's `[W_k | W_v]` by its best rank-r approximation; an ablated
//! head's rows of the output projection are zeroed. The [`Constraint`] puts the rank cut and
//! the zeroed rows back after every optimiser step, so training never leaves the cut model's
//! family. Linear attention is the one change of the forward that heals too: the trainer then
//! trains with that kernel ("linearising" a softmax model). Other parts of a variant change the
//! forward itself, not the weights, and are refused with a message.

use crate::error::{ModelError, Result};
use crate::model::Model;
use crate::prepare::{pool_heads, truncate_joint_kv};
use crate::variant::{AblationMode, Kernel, KernelName, Variant};
use crate::Precision;

/// What stays true of the weights while a built-in variant heals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Constraint {
    /// `[layer, head]` pairs whose output rows stay zero.
    pub ablated: Vec<[usize; 2]>,
    /// The joint K/V rank every layer is cut back to.
    pub kv_rank: Option<usize>,
}

impl Constraint {
    /// Puts the constraint back on `model`'s weights.
    pub fn apply(&self, model: &mut Model) -> Result<()> {
        let d_head = model.config.d_head();
        for &[layer, head] in &self.ablated {
            let o = &mut model.blocks[layer].attn.o;
            let d_out = o.d_out;
            o.weight.make_f32()[head * d_head * d_out..(head + 1) * d_head * d_out].fill(0.0);
        }
        if let Some(rank) = self.kv_rank {
            for block in &mut model.blocks {
                truncate_joint_kv(&mut block.attn.k, &mut block.attn.v, rank)?;
            }
        }
        Ok(())
    }
}

/// `model` with `variant` built into its weights (see the module documentation), and what must
/// stay true of them while it trains. The built-in model's forward (with the linear kernel, if
/// the variant has it) equals `model`'s forward under `variant`.
pub fn build_in(model: &Model, variant: &Variant) -> Result<(Model, Constraint)> {
    variant.validate(&model.config)?;
    let v = variant.normalised();
    let forward_changes = [
        (v.window.is_some(), "a sliding window"),
        (v.top_k.is_some(), "top-k keys"),
        (
            v.kernel
                .as_ref()
                .is_some_and(|k| *k != Kernel::Named(KernelName::Linear)),
            "random-feature attention",
        ),
        (v.beta.is_some(), "an inverse temperature β"),
        (
            v.drop_attention_layers.is_some(),
            "dropped attention layers",
        ),
        (v.route_heads.is_some(), "heads per token"),
        (v.kv_pca.is_some(), "per-head PCA"),
    ];
    if let Some((_, what)) = forward_changes.iter().find(|(set, _)| *set) {
        return Err(ModelError::Training(format!(
            "healing builds pooled key/value heads, a K/V rank cut and zero-ablated heads into \
             the weights; this variant also sets {what}: reset it first"
        )));
    }
    let ablated = match &v.heads {
        Some(h) if !h.ablate.is_empty() && h.mode != AblationMode::Zero => {
            return Err(ModelError::Training(
                "healing keeps ablated heads at zero; switch the ablation to zero first".into(),
            ))
        }
        Some(h) => h.ablate.clone(),
        None => Vec::new(),
    };
    let mut built = model.to_precision(Precision::F32);
    let c = built.config.clone();
    if let Some(groups) = v.kv_groups.filter(|&g| g != c.kv_heads()) {
        let per_group = c.kv_heads() / groups;
        for block in &mut built.blocks {
            block.attn.k = pool_heads(&block.attn.k, c.d_head(), per_group);
            block.attn.v = pool_heads(&block.attn.v, c.d_head(), per_group);
        }
        built.config.n_kv_head = (groups != c.n_head).then_some(groups);
    }
    let constraint = Constraint {
        ablated,
        kv_rank: v.kv_rank,
    };
    constraint.apply(&mut built)?;
    built.check_shapes()?;
    Ok((built, constraint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuEngine, ModelConfig};

    #[test]
    fn a_built_in_variant_runs_as_the_variant_does() {
        let config = ModelConfig {
            n_head: 4,
            ..ModelConfig::tiny(13)
        };
        let model = Model::random(config, 3, 0.3).unwrap();
        let tokens = [1, 5, 2, 7, 7, 3, 9];
        for json in [
            r#"{"kv_groups": 2}"#,
            r#"{"kv_groups": 1, "heads": {"ablate": [[0, 1], [1, 3]]}}"#,
            r#"{"kv_rank": 3}"#,
            r#"{"kv_groups": 2, "kv_rank": 5, "heads": {"ablate": [[1, 0]]}}"#,
            r#"{"kv_groups": 1, "kernel": "linear"}"#,
        ] {
            let variant = Variant::from_json(json).unwrap();
            let mut engine = CpuEngine::new(model.clone()).unwrap();
            engine.set_variant(&variant).unwrap();
            let expected = engine.forward(&tokens).unwrap();
            let (built, _) = build_in(&model, &variant).unwrap();
            // The kernel stays a part of the forward: the built model runs with it.
            let kernel = Variant {
                kernel: variant.kernel.clone(),
                ..Variant::default()
            };
            let mut engine = CpuEngine::new(built).unwrap();
            engine.set_variant(&kernel).unwrap();
            let got = engine.forward(&tokens).unwrap();
            let worst = expected
                .logits
                .iter()
                .zip(&got.logits)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "{json}: logits differ by {worst}");
        }
    }

    #[test]
    fn variants_that_change_the_forward_are_refused() {
        let model = Model::random(ModelConfig::tiny(13), 3, 0.3).unwrap();
        for (json, word) in [
            (r#"{"window": 2}"#, "sliding window"),
            (
                r#"{"kernel": {"random_features": 16, "seed": 1}}"#,
                "random-feature",
            ),
            (r#"{"heads": {"ablate": [[0, 0]], "mode": "mean"}}"#, "zero"),
        ] {
            let e = build_in(&model, &Variant::from_json(json).unwrap())
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(word), "{json}: {e}");
        }
    }

    #[test]
    fn the_constraint_holds_after_it_is_applied() {
        let model = Model::random(ModelConfig::tiny(13), 3, 0.3).unwrap();
        let variant = Variant::from_json(r#"{"heads": {"ablate": [[1, 1]]}}"#).unwrap();
        let (mut built, constraint) = build_in(&model, &variant).unwrap();
        built.blocks[1].attn.o.weight.make_f32().fill(0.5);
        constraint.apply(&mut built).unwrap();
        let d_head = built.config.d_head();
        let o = &built.blocks[1].attn.o;
        let w = o.weight.f32();
        let d_out = o.d_out;
        assert!(w[d_head * d_out..2 * d_head * d_out]
            .iter()
            .all(|&x| x == 0.0));
        assert!(w[..d_head * d_out].iter().all(|&x| x == 0.5));
    }
}
