//! `attn bench`: time the forward pass on the CPU and/or GPU engine: median and spread after warm-
//! up; with `--decode N`, generation's prefill and decode steps (`decode_bench`).

use clap::Args;

use crate::args::{load, parse_variant, ModelArgs, VariantArg};
use crate::decode_bench::{bench_decode, random_model, DecodeBench};
use crate::failure::Failure;
use crate::gpu;

/// The arguments of `attn bench`.
#[derive(Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    common: ModelArgs,
    #[command(flatten)]
    variant: VariantArg,
    /// Which engines to time.
    #[arg(long, value_enum, default_value = "both")]
    engine: gpu::BenchEngines,
    /// Sequence length (default: the model's context, at most 64).
    #[arg(long)]
    seq: Option<usize>,
    /// Timed forward passes per engine.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed forward passes first (the GPU engine builds its plan in the first).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Then time every kernel launch of the GPU engine with GPU timestamps (where the
    /// adapter has timestamp queries) and print the time per kernel.
    #[arg(long)]
    profile: bool,
    /// Time generation instead: the prefill of `--seq` tokens, then this many tokens decoded
    /// from the KV cache, beside recomputing the text for every token.
    #[arg(long)]
    decode: Option<usize>,
}

/// `attn bench`.
pub(crate) fn run(args: BenchArgs) -> Result<(), Failure> {
    let BenchArgs {
        common: ModelArgs { model, json },
        variant,
        engine,
        seq,
        runs,
        warmup,
        profile,
        decode,
    } = args;
    let model = match random_model(&model)? {
        Some(model) => model,
        None => load(&model)?,
    };
    let variant = parse_variant(&variant)?;
    if let Some(tokens) = decode {
        let prompt = seq.unwrap_or(
            model
                .config
                .n_ctx
                .min(64)
                .min(model.config.n_ctx.saturating_sub(tokens))
                .max(1),
        );
        let bench = DecodeBench {
            engines: engine,
            prompt,
            tokens,
            runs,
            json,
        };
        return bench_decode(model, &variant, &bench);
    }
    let options = gpu::BenchOptions {
        engines: engine,
        seq,
        runs,
        warmup,
        profile,
        json,
    };
    gpu::bench(model, &variant, &options)?;
    Ok(())
}
