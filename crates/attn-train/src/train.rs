//! The training loop and the export of its result.
//!
//! A run is deterministic in its config: the initial weights (`attn_model::training::initial_model`) and the data
//! stream come from the seed, and the held-out set is fixed. Each step draws a batch, computes
//! the masked cross-entropy over the positions that carry a target, and takes an AdamW step at
//! the scheduled learning rate. At the end the weights are copied into an attn-model
//! [`Model`], scored on the held-out set by attn-model's CPU engine (exactly what `attn eval`
//! reports) and labelled with the tokenizer and the training metadata.

use std::path::Path;
use std::time::Instant;

use attn_model::training::{initial_model, run_metadata};
use attn_model::{Model, ModelConfig, Variant};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{activation, Device, Int, Tensor, TensorData};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::eval::{evaluate_with_data, EvalReport};
use crate::net::{token_tensor, Transformer};
use crate::tasks::{task_data, Sequence, Task, TaskData};

/// How many held-out sequences the periodic in-training estimate uses (the final score uses
/// the whole set).
const PROGRESS_HELD_OUT: usize = 256;

/// One line of training progress.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Steps done.
    pub step: usize,
    pub steps: usize,
    pub learning_rate: f64,
    /// Mean training loss over the steps since the previous report.
    pub train_loss: f64,
    /// Loss and accuracy on (part of) the held-out set, at checkpoints.
    pub held_out: Option<(f64, f64)>,
    /// Seconds since training started.
    pub seconds: f64,
}

/// What the trainer reports while it runs.
pub enum Event<'a> {
    /// A progress line (every `log_every` steps).
    Progress(&'a Progress),
    /// The model so far (every `10 · log_every` steps), labelled like the final one but without
    /// final metrics: worth saving during a long run.
    Checkpoint(&'a Model),
}

/// The result of a run.
pub struct TrainOutcome {
    /// The trained model with tokenizer and metadata, ready to save.
    pub model: Model,
    /// Its score on the held-out set.
    pub report: EvalReport,
    /// Wall-clock seconds of training (without the final evaluation).
    pub seconds: f64,
}

/// A configured training run: the task's data is loaded and the model config derived.
pub struct Trainer {
    task: Task,
    config: TrainConfig,
    data: Box<dyn TaskData>,
    model_config: ModelConfig,
}

impl Trainer {
    /// Loads the task's data and checks that `config` fits it.
    pub fn new(task: Task, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        if config.model.rotary {
            return Err(TrainError::Config(
                "model.rotary: the offline trainer trains learned positions only (rotary models \
                 train in the page)"
                    .into(),
            ));
        }
        if config.model.linear_attention {
            return Err(TrainError::Config(
                "model.linear_attention: the offline trainer trains softmax attention only \
                 (linear attention trains in the page)"
                    .into(),
            ));
        }
        let data = task_data(task, config.model.n_ctx)?;
        let model_config = attn_model::training::model_config(&config, data.as_ref())?;
        Ok(Trainer {
            task,
            config,
            data,
            model_config,
        })
    }

    /// The architecture that will be trained.
    pub fn model_config(&self) -> &ModelConfig {
        &self.model_config
    }

    /// Trains, reporting progress to `observer`, then exports and scores the model.
    pub fn run(&self, observer: &mut dyn FnMut(Event<'_>)) -> Result<TrainOutcome> {
        let c = &self.config;
        let device = Device::flex().autodiff();
        let start = initial_model(&self.model_config, c.seed)?;
        let mut net = Transformer::from_model(&start, &device);
        // burn's default epsilon (1e-5) is large next to the tiny gradients of attention
        // weights early in training and stretches the plateau before induction heads form;
        // 1e-8 is the usual Adam value.
        let mut optimizer = AdamWConfig::new()
            .with_beta_2(0.99)
            .with_epsilon(1e-8)
            .with_weight_decay(c.weight_decay as f32)
            .with_grad_clipping(c.grad_clip.map(|n| GradientClippingConfig::Norm(n as f32)))
            .init();
        let mut rng = ChaCha8Rng::seed_from_u64(c.seed);
        let held_out = self.data.held_out();
        let progress_set = &held_out[..held_out.len().min(PROGRESS_HELD_OUT)];

        let started = Instant::now();
        let mut loss_sum = 0.0;
        let mut loss_steps = 0;
        for step in 0..c.steps {
            let batch = self.data.batch(&mut rng, c.batch_size);
            let learning_rate = c.learning_rate_at(step);
            let (loss, head_norms) = batch_loss(&net, &batch, &device);
            loss_sum += loss.clone().into_scalar::<f32>() as f64;
            let loss = if c.head_penalty > 0.0 {
                loss + head_norms * c.head_penalty
            } else {
                loss
            };
            loss_steps += 1;
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optimizer.step(learning_rate, net, grads);

            let done = step + 1;
            let checkpoint = done % (10 * c.log_every) == 0 || done == c.steps;
            if done % c.log_every == 0 || checkpoint {
                let held_out = checkpoint.then(|| held_out_score(&net.valid(), progress_set));
                observer(Event::Progress(&Progress {
                    step: done,
                    steps: c.steps,
                    learning_rate,
                    train_loss: loss_sum / loss_steps as f64,
                    held_out,
                    seconds: started.elapsed().as_secs_f64(),
                }));
                loss_sum = 0.0;
                loss_steps = 0;
                if checkpoint && done < c.steps {
                    let seconds = started.elapsed().as_secs_f64();
                    let model = self.export(&net, done, seconds, None)?;
                    observer(Event::Checkpoint(&model));
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let unlabelled = self.export(&net, c.steps, seconds, None)?;
        let report = evaluate_with_data(&unlabelled, &Variant::default(), self.data.as_ref())?;
        let model = self.export(&net, c.steps, seconds, Some(&report))?;
        Ok(TrainOutcome {
            model,
            report,
            seconds,
        })
    }

    /// The network as a labelled attn-model [`Model`].
    fn export(
        &self,
        net: &Transformer,
        steps: usize,
        seconds: f64,
        report: Option<&EvalReport>,
    ) -> Result<Model> {
        let mut model = net.to_model(&self.model_config)?;
        model.tokenizer = Some(self.data.tokenizer());
        model.metadata = self.metadata(steps, seconds, report);
        Ok(model)
    }

    fn metadata(
        &self,
        steps: usize,
        seconds: f64,
        report: Option<&EvalReport>,
    ) -> Map<String, Value> {
        let trainer = format!(
            "attn-train {} (burn 0.22, flex CPU backend)",
            env!("CARGO_PKG_VERSION")
        );
        let mut meta = run_metadata(
            self.task,
            self.data.as_ref(),
            &self.config,
            &self.model_config,
            steps,
            seconds,
            &trainer,
        );
        if let Some(report) = report {
            meta.insert("metrics".into(), json!(report));
        }
        meta
    }
}

/// Trains `task` with `config`, printing nothing; see [`Trainer::run`] to observe progress.
pub fn train(task: Task, config: TrainConfig) -> Result<TrainOutcome> {
    Trainer::new(task, config)?.run(&mut |_| {})
}

/// Token ids, target ids and target weights (1 where a target exists) of a batch, padded to
/// its longest sequence.
fn batch_tensors(
    batch: &[Sequence],
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>, usize) {
    let t_len = batch.iter().map(|s| s.tokens.len()).max().unwrap_or(1);
    let rows: Vec<Vec<u32>> = batch.iter().map(|s| s.tokens.clone()).collect();
    let tokens = token_tensor(&rows, t_len, device);
    let mut targets = Vec::with_capacity(batch.len() * t_len);
    let mut weights = Vec::with_capacity(batch.len() * t_len);
    for s in batch {
        for t in 0..t_len {
            let target = s.targets.get(t).copied().flatten();
            targets.push(target.unwrap_or(0) as i64);
            weights.push(if target.is_some() { 1.0f32 } else { 0.0 });
        }
    }
    let count = weights.iter().filter(|&&w| w > 0.0).count();
    let shape = [batch.len(), t_len];
    (
        tokens,
        Tensor::from_data(TensorData::new(targets, shape), device),
        Tensor::from_data(TensorData::new(weights, shape), device),
        count,
    )
}

/// Mean cross-entropy over the positions of `batch` that carry a target, and the summed head
/// output norms (for the optional head-sparsity penalty).
pub fn batch_loss(
    net: &Transformer,
    batch: &[Sequence],
    device: &Device,
) -> (Tensor<1>, Tensor<1>) {
    let (tokens, targets, weights, count) = batch_tensors(batch, device);
    let (logits, head_norms) = net.forward_with_head_norms(tokens);
    let log_probs = activation::log_softmax(logits, 2);
    let [b, t, _] = log_probs.dims();
    let picked = log_probs
        .gather(2, targets.unsqueeze_dim::<3>(2))
        .reshape([b, t]);
    let loss = (picked * weights).sum() * (-1.0 / count.max(1) as f64);
    (loss, head_norms)
}

/// Loss and accuracy over the targets of `sequences`, computed in burn (no gradients), in
/// batches of equal length so that bidirectional models never see padding.
fn held_out_score(net: &Transformer, sequences: &[Sequence]) -> (f64, f64) {
    let device = Device::flex();
    let mut by_len: std::collections::BTreeMap<usize, Vec<Sequence>> = Default::default();
    for s in sequences {
        by_len.entry(s.tokens.len()).or_default().push(s.clone());
    }
    let (mut nll, mut correct, mut count) = (0.0, 0usize, 0usize);
    for group in by_len.values() {
        for chunk in group.chunks(64) {
            let (tokens, targets, weights, n) = batch_tensors(chunk, &device);
            let logits = net.forward(tokens);
            let log_probs = activation::log_softmax(logits.clone(), 2);
            let [b, t, _] = log_probs.dims();
            let picked = log_probs
                .gather(2, targets.clone().unsqueeze_dim::<3>(2))
                .reshape([b, t]);
            nll -= (picked * weights.clone()).sum().into_scalar::<f32>() as f64;
            let hits = logits.argmax(2).reshape([b, t]).equal(targets).float() * weights;
            correct += hits.sum().into_scalar::<f32>() as usize;
            count += n;
        }
    }
    (
        nll / count.max(1) as f64,
        correct as f64 / count.max(1) as f64,
    )
}

/// Fails early, before a long run, if `path` cannot be written: its folder must exist and
/// accept a new file.
pub fn check_writable(path: &Path) -> Result<()> {
    let fail = |message: String| TrainError::Output {
        path: path.to_path_buf(),
        message,
    };
    if path.is_dir() {
        return Err(fail("it is a directory".into()));
    }
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Writes `model` in the project's own format.
pub fn save_model(model: &Model, path: &Path) -> Result<()> {
    let bytes = model.to_safetensors_bytes()?;
    std::fs::write(path, bytes).map_err(|e| TrainError::Output {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
