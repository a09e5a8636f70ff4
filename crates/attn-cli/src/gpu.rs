//! The engine choice of `attn run --engine`, and `attn bench`: forward-pass timings of the CPU
//! and GPU engines on one model.

use std::time::{Duration, Instant};

use attn_gpu::{AnyEngine, GpuContext, GpuEngine, GpuError, Readback};
use attn_model::{Engine, Model, Output, Variant};
use clap::ValueEnum;
use serde_json::{json, Value};

use crate::failure::Failure;

impl From<GpuError> for Failure {
    fn from(e: GpuError) -> Self {
        Failure(e.to_string())
    }
}

/// Which engine runs a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// attn-model's reference forward pass on the CPU.
    Cpu,
    /// The WebGPU engine (Vulkan/Metal/DX12 natively).
    Gpu,
}

/// Which engines `attn bench` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchEngines {
    Cpu,
    Gpu,
    Both,
}

pub(crate) fn gpu_context() -> Result<GpuContext, Failure> {
    GpuContext::new_blocking()
        .map_err(|e| Failure(format!("{e} (use --engine cpu to run without a GPU)")))
}

/// The chosen engine on `model`.
pub fn engine(kind: EngineArg, model: Model) -> Result<AnyEngine, Failure> {
    Ok(match kind {
        EngineArg::Cpu => AnyEngine::cpu(model)?,
        EngineArg::Gpu => AnyEngine::gpu(&gpu_context()?, model)?,
    })
}

/// One forward pass of `model` under `variant` on the chosen engine.
pub fn forward(
    kind: EngineArg,
    model: Model,
    variant: &Variant,
    tokens: &[u32],
) -> Result<Output, Failure> {
    let mut engine = engine(kind, model)?;
    engine.set_variant(variant)?;
    Ok(engine.forward_blocking(tokens, &Readback::everything())?)
}

/// Median, spread and counts of one engine's forward times.
struct Timing {
    engine: &'static str,
    adapter: Option<String>,
    times: Vec<Duration>,
    dispatches: Option<u32>,
    submits: Option<u32>,
}

impl Timing {
    fn ms(&self, q: f64) -> f64 {
        let mut sorted: Vec<f64> = self.times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        sorted.sort_by(f64::total_cmp);
        // Nearest-rank quantile.
        let i = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[i]
    }

    fn json(&self, flops: u64) -> Value {
        let median = self.ms(0.5);
        json!({
            "engine": self.engine,
            "adapter": self.adapter,
            "runs": self.times.len(),
            "median_ms": median,
            "min_ms": self.ms(0.0),
            "p10_ms": self.ms(0.1),
            "p90_ms": self.ms(0.9),
            "max_ms": self.ms(1.0),
            "gflops_per_s": flops as f64 / (median * 1e-3) / 1e9,
            "dispatches_per_forward": self.dispatches,
            "submits_per_forward": self.submits,
        })
    }
}

fn time_engine(
    engine: &mut AnyEngine,
    tokens: &[u32],
    warmup: usize,
    runs: usize,
) -> Result<Vec<Duration>, Failure> {
    for _ in 0..warmup {
        engine.forward_blocking(tokens, &Readback::everything())?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        engine.forward_blocking(tokens, &Readback::everything())?;
        times.push(start.elapsed());
    }
    Ok(times)
}

/// What `attn bench` runs.
pub struct BenchOptions {
    pub engines: BenchEngines,
    /// Sequence length (default: the model's context, at most 64).
    pub seq: Option<usize>,
    /// Timed forwards per engine.
    pub runs: usize,
    /// Untimed forwards first.
    pub warmup: usize,
    /// Then a per-kernel profile of the GPU engine from GPU timestamps.
    pub profile: bool,
    pub json: bool,
}

/// Forwards whose per-kernel times are taken (the median of each launch is reported).
const PROFILED_RUNS: usize = 5;

/// One kernel's share of a profiled forward.
struct KernelShare {
    kernel: &'static str,
    launches: usize,
    millis: f64,
}

/// A launch of a profiled forward: its index, its kernel and its median milliseconds.
type Launch = (usize, &'static str, f64);

/// Profiles `PROFILED_RUNS` forwards of `engine`: the median time of each launch, summed per
/// kernel (largest first), and the slowest launches.
fn profile_kernels(
    engine: &mut GpuEngine,
    tokens: &[u32],
) -> Result<(Vec<KernelShare>, Vec<Launch>), Failure> {
    engine.set_profiling(true)?;
    let mut runs: Vec<Vec<attn_gpu::KernelTime>> = Vec::new();
    for _ in 0..PROFILED_RUNS {
        engine.forward_with_blocking(tokens, &Readback::everything())?;
        runs.push(engine.last_profile().to_vec());
    }
    engine.set_profiling(false)?;
    let launches: Vec<Launch> = (0..runs[0].len())
        .map(|i| {
            let mut times: Vec<f64> = runs.iter().map(|r| r[i].millis).collect();
            times.sort_by(f64::total_cmp);
            (i, runs[0][i].kernel, times[times.len() / 2])
        })
        .collect();
    let mut shares: Vec<KernelShare> = Vec::new();
    for &(_, kernel, millis) in &launches {
        match shares.iter_mut().find(|s| s.kernel == kernel) {
            Some(s) => {
                s.launches += 1;
                s.millis += millis;
            }
            None => shares.push(KernelShare {
                kernel,
                launches: 1,
                millis,
            }),
        }
    }
    shares.sort_by(|a, b| b.millis.total_cmp(&a.millis));
    let mut slowest = launches;
    slowest.sort_by(|a, b| b.2.total_cmp(&a.2));
    slowest.truncate(5);
    Ok((shares, slowest))
}

/// `attn bench`: times `runs` forward passes over `seq` tokens after `warmup` untimed ones.
pub fn bench(model: Model, variant: &Variant, options: &BenchOptions) -> Result<(), Failure> {
    let &BenchOptions {
        engines,
        seq,
        runs,
        warmup,
        profile,
        json: json_out,
    } = options;
    if runs == 0 {
        return Err(Failure("--runs must be at least 1".into()));
    }
    let c = model.config.clone();
    let t = seq.unwrap_or(c.n_ctx.min(64));
    if t == 0 || t > c.n_ctx {
        return Err(Failure(format!(
            "--seq must be between 1 and the model's context ({})",
            c.n_ctx
        )));
    }
    let tokens: Vec<u32> = (0..t)
        .map(|i| ((i * 7 + 3) % c.vocab_size) as u32)
        .collect();
    let model = std::sync::Arc::new(model);
    let prepared = attn_model::prepare(&model, variant)?;
    let flops = attn_gpu::forward_flops(&prepared, t);

    let mut timings = Vec::new();
    if matches!(engines, BenchEngines::Cpu | BenchEngines::Both) {
        let mut engine = AnyEngine::cpu_shared(model.clone())?;
        engine.set_variant(variant)?;
        timings.push(Timing {
            engine: "cpu",
            adapter: None,
            times: time_engine(&mut engine, &tokens, warmup, runs)?,
            dispatches: None,
            submits: None,
        });
    }
    let mut profiled = None;
    if matches!(engines, BenchEngines::Gpu | BenchEngines::Both) {
        let ctx = gpu_context()?;
        let mut engine = AnyEngine::Gpu(Box::new(GpuEngine::shared(&ctx, model)?));
        engine.set_variant(variant)?;
        let times = time_engine(&mut engine, &tokens, warmup.max(1), runs)?;
        let AnyEngine::Gpu(gpu) = &mut engine else {
            unreachable!("this is the GPU engine")
        };
        let stats = gpu.stats().last_forward;
        if profile {
            profiled = Some(profile_kernels(gpu, &tokens)?);
        }
        timings.push(Timing {
            engine: "gpu",
            adapter: Some(format!(
                "{} ({}, {})",
                ctx.adapter().name,
                ctx.adapter().backend,
                ctx.adapter().device_type
            )),
            times,
            dispatches: Some(stats.dispatches),
            submits: Some(stats.submits),
        });
    }

    let model_json = json!({
        "n_layer": c.n_layer, "n_head": c.n_head, "n_kv_head": c.kv_heads(), "d_model": c.d_model,
        "d_mlp": if c.mlp { Some(c.mlp_width()) } else { None }, "n_out": c.n_out(),
        "parameters": prepared.model().parameter_count(),
    });
    if json_out {
        let report = json!({
            "model": model_json,
            "variant": variant,
            "seq_len": t,
            "warmup": warmup,
            "flops_per_forward": flops,
            "engines": timings.iter().map(|tm| tm.json(flops)).collect::<Vec<_>>(),
            "gpu_kernels": profiled.as_ref().map(|(shares, _)| shares.iter().map(|s| json!({
                "kernel": s.kernel, "launches": s.launches, "millis": s.millis,
            })).collect::<Vec<_>>()),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("JSON values always serialise")
        );
        return Ok(());
    }
    println!(
        "model: {} layers × {} heads (kv {}), d_model {}, {} outputs; T = {t}; {:.3} MFLOP per forward",
        c.n_layer,
        c.n_head,
        c.kv_heads(),
        c.d_model,
        c.n_out(),
        flops as f64 / 1e6
    );
    println!(
        "{runs} timed runs after {warmup} warm-up; every output read back (logits, attention, norms)"
    );
    for tm in &timings {
        let label = match &tm.adapter {
            Some(a) => format!("gpu [{a}]"),
            None => "cpu".into(),
        };
        println!(
            "{label}: median {:.3} ms (min {:.3}, p10 {:.3}, p90 {:.3}, max {:.3}), {:.2} GFLOP/s{}",
            tm.ms(0.5),
            tm.ms(0.0),
            tm.ms(0.1),
            tm.ms(0.9),
            tm.ms(1.0),
            flops as f64 / (tm.ms(0.5) * 1e-3) / 1e9,
            match (tm.dispatches, tm.submits) {
                (Some(d), Some(s)) => format!(", {d} dispatches and {s} submit per forward"),
                _ => String::new(),
            }
        );
    }
    if let Some((shares, slowest)) = &profiled {
        let total: f64 = shares.iter().map(|s| s.millis).sum();
        println!(
            "GPU time per kernel (timestamps around each launch in a pass of its own, median of \
             {PROFILED_RUNS} forwards): {total:.3} ms in all"
        );
        for s in shares {
            println!(
                "  {:<22} {:>4} launches {:>10.3} ms {:>5.1} %",
                s.kernel,
                s.launches,
                s.millis,
                100.0 * s.millis / total.max(f64::MIN_POSITIVE)
            );
        }
        let slowest: Vec<String> = slowest
            .iter()
            .map(|(i, kernel, ms)| format!("#{i} {kernel} {ms:.3} ms"))
            .collect();
        println!("  slowest launches: {}", slowest.join(", "));
    }
    Ok(())
}
