//! `attn compare`: compare a variant with the unmodified model on one input: KL, top-1 agreement,
//! loss.

use attn_model::{compare, CpuEngine};
use clap::Args;
use serde_json::json;

use crate::args::{input_tokens, load, parse_variant, InputArgs, ModelArgs, VariantArg};
use crate::failure::Failure;
use crate::report::print_json;

/// The arguments of `attn compare`.
#[derive(Args)]
pub(crate) struct CompareArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    variant: VariantArg,
}

/// `attn compare`.
pub(crate) fn run(args: CompareArgs) -> Result<(), Failure> {
    let CompareArgs {
        common: ModelArgs { model, json },
        input,
        variant,
    } = args;
    let model = load(&model)?;
    let tokenizer = model.build_tokenizer()?;
    let tokens = input_tokens(&input, tokenizer.as_ref())?;
    let variant = parse_variant(&variant)?;
    let mut engine = CpuEngine::new(model)?;
    let baseline = engine.forward(&tokens)?;
    engine.set_variant(&variant)?;
    let changed = engine.forward(&tokens)?;
    let cmp = compare(&baseline, &changed, &tokens);
    let report = json!({
        "tokens": tokens,
        "variant": variant,
        "kl_per_position": cmp.kl_per_position,
        "mean_kl": cmp.mean_kl,
        "top1_agreement": cmp.top1_agreement,
        "baseline_nll": cmp.baseline_nll,
        "variant_nll": cmp.variant_nll,
        "baseline_kv_bytes_per_token": baseline.kv_bytes_per_token,
        "variant_kv_bytes_per_token": changed.kv_bytes_per_token,
    });
    if json {
        print_json(&report);
    } else {
        println!(
            "variant            {}",
            serde_json::to_string(&variant).unwrap_or_default()
        );
        println!("mean KL            {:.6} nats", cmp.mean_kl);
        println!("top-1 agreement    {:.3}", cmp.top1_agreement);
        if let (Some(b), Some(v)) = (cmp.baseline_nll, cmp.variant_nll) {
            println!("next-token loss    {b:.4} → {v:.4} nats");
        }
        println!(
            "KV bytes per token {} → {}",
            baseline.kv_bytes_per_token, changed.kv_bytes_per_token
        );
    }
    Ok(())
}
