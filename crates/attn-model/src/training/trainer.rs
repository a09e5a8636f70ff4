//! A training run one step at a time: the page's worker calls [`Trainer::step`] between other
//! work (so a run can pause, resume and report as it goes), and the whole run is deterministic
//! in its config — the initial weights and the batches come from the seed, exactly as in the
//! offline trainer, so the same seed gives the same loss curve.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::engine::cpu::CpuEngine;
use crate::engine::inputs::role_probe;
use crate::error::{ModelError, Result};
use crate::linalg::log_softmax;
use crate::model::Model;
use crate::roles::{roles_from_outputs, HeadRoles};
use crate::training::backprop::{check_trainable, loss_and_gradients_with, BatchLoss};
use crate::training::config::TrainConfig;
use crate::training::heal::{build_in, Constraint};
use crate::training::init::initial_model;
use crate::training::optimizer::AdamW;
use crate::training::tasks::{Sequence, Task, TaskData};
use crate::variant::{Kernel, KernelName, Variant};
use crate::{ModelConfig, Positional, Rope, RopeScaling};

/// The architecture `config` asks for on `data`'s task: the task decides the vocabulary, the
/// output head, causal or bidirectional attention and (for the synthetic tasks) the context.
pub fn model_config(config: &TrainConfig, data: &dyn TaskData) -> Result<ModelConfig> {
    let arch = &config.model;
    if arch.n_ctx.is_some_and(|n| n != data.n_ctx()) {
        return Err(ModelError::Training(format!(
            "model.n_ctx is fixed by the task to {}; leave it null",
            data.n_ctx()
        )));
    }
    let model_config = ModelConfig {
        vocab_size: data.vocab_size(),
        n_ctx: data.n_ctx(),
        d_model: arch.d_model,
        n_layer: arch.n_layer,
        n_head: arch.n_head,
        n_kv_head: arch.n_kv_head,
        d_mlp: arch.d_mlp,
        mlp: arch.mlp,
        causal: data.causal(),
        tied_embeddings: true,
        n_classes: data.classes().map(|c| c.len()),
        positional: if arch.rotary {
            Positional::Rope(Rope {
                theta: 10_000.0,
                rotary_dim: arch.d_model / arch.n_head.max(1),
                scaling: RopeScaling::None,
            })
        } else {
            Positional::Learned
        },
        ..ModelConfig::tiny(1)
    };
    model_config.validate().map_err(|e| match e {
        ModelError::Config(m) => ModelError::Training(format!("model: {m}")),
        other => other,
    })?;
    Ok(model_config)
}

/// Loss and accuracy over the targets of `sequences` (the CPU engine's forward, as `attn eval`
/// and the page score).
pub fn score(model: &Model, sequences: &[Sequence]) -> Result<(f64, f64)> {
    score_with(model, &Variant::default(), sequences)
}

/// [`score`] of `model` run with `variant` (a linear-attention model's kernel).
pub fn score_with(model: &Model, variant: &Variant, sequences: &[Sequence]) -> Result<(f64, f64)> {
    let mut engine = CpuEngine::new(model.clone())?;
    engine.set_variant(variant)?;
    let (mut nll, mut correct, mut n) = (0.0f64, 0usize, 0usize);
    for sequence in sequences {
        let output = engine.forward(&sequence.tokens)?;
        for (t, target) in sequence.targets.iter().enumerate() {
            let Some(target) = *target else { continue };
            n += 1;
            nll -= log_softmax(output.logits_at(t))[target as usize];
            correct += usize::from(output.argmax_at(t) == target);
        }
    }
    Ok((nll / n.max(1) as f64, correct as f64 / n.max(1) as f64))
}

/// The heads on a fixed input during training (see [`probe`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// The probe's first sequence.
    pub tokens: Vec<u32>,
    /// Every head's attention map on it, layer by layer (`[T, T]` each, row = query).
    pub maps: Vec<Vec<f32>>,
    /// Every head's role scores over the whole probe (copying scores left out).
    pub roles: Vec<HeadRoles>,
}

/// The attention of every head of `model` (run with `variant`) on a fixed probe — the role
/// probe's first sequence, random tokens repeated once, where a previous-token head draws the
/// sub-diagonal and an induction head the stripe one after the earlier copy — and every head's
/// role scores over the whole probe: what the page redraws as the heads form.
pub fn probe(model: &Model, variant: &Variant) -> Result<Probe> {
    let c = &model.config;
    let sequences = role_probe(c.vocab_size, c.n_ctx, 0);
    let mut engine = CpuEngine::new(model.clone())?;
    engine.set_variant(variant)?;
    let outputs = sequences
        .iter()
        .map(|tokens| engine.forward(tokens))
        .collect::<Result<Vec<_>>>()?;
    let first = &outputs[0];
    Ok(Probe {
        tokens: sequences[0].clone(),
        maps: (0..c.n_layer)
            .flat_map(|l| (0..c.n_head).map(move |h| (l, h)))
            .map(|(l, h)| first.attention_map(l, h).to_vec())
            .collect(),
        roles: roles_from_outputs(&outputs),
    })
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Steps done, this one included.
    pub step: usize,
    pub learning_rate: f64,
    /// The batch's loss and accuracy before the update.
    pub batch: BatchLoss,
}

/// Where a run is: the steps done, and the step it stops at (the config's steps, raised by
/// [`RunSteps::continue_for`]). Both trainers, the CPU's and the GPU's, count with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSteps {
    done: usize,
    limit: usize,
}

impl RunSteps {
    /// A run of `steps` steps, none done.
    pub fn new(steps: usize) -> RunSteps {
        RunSteps {
            done: 0,
            limit: steps,
        }
    }

    /// Steps done.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Counts one more step done; returns the new count.
    pub fn advance(&mut self) -> usize {
        self.done += 1;
        self.done
    }

    /// Whether the run's steps are done.
    pub fn finished(&self) -> bool {
        self.done >= self.limit
    }

    /// The step the run stops at.
    pub fn run_length(&self) -> usize {
        self.limit
    }

    /// Lets a finished (or running) run go on for `more` steps (at the schedule's final learning
    /// rate once past the configured steps).
    pub fn continue_for(&mut self, more: usize) {
        self.limit = self.limit.max(self.done) + more;
    }
}

/// `model` as a run on `task` starts from it: trainable, fitting the task's data (vocabulary,
/// outputs, causal or not, context), in f32, with the task's tokenizer.
pub fn starting_weights(task: Task, data: &dyn TaskData, model: Model) -> Result<Model> {
    check_trainable(&model.config)?;
    let c = &model.config;
    if c.vocab_size != data.vocab_size()
        || c.n_out() != data.classes().map_or(data.vocab_size(), |k| k.len())
        || c.causal != data.causal()
        || c.n_ctx < data.n_ctx()
    {
        return Err(ModelError::Training(format!(
            "this model (vocabulary {}, context {}) does not fit the {} task",
            c.vocab_size,
            c.n_ctx,
            task.name()
        )));
    }
    let mut model = model.to_precision(crate::Precision::F32);
    model.tokenizer = Some(data.tokenizer());
    Ok(model)
}

/// The recipe a model of `task` is healed (or uptrained) with for `steps` steps: the task's own
/// training recipe at a third of its peak learning rate, warming up over a tenth of the run.
pub fn healing_config(task: Task, steps: usize) -> TrainConfig {
    let mut config = task.default_config();
    config.steps = steps.max(1);
    config.warmup_steps = (steps / 10).max(1);
    config.learning_rate /= 3.0;
    config
}

/// What healing `model` under `variant` starts from: the variant built into the weights
/// ([`build_in`]), the constraint that keeps it there, and `config` set to train with the
/// variant's kernel.
pub fn healing_start(
    model: &Model,
    variant: &Variant,
    mut config: TrainConfig,
) -> Result<(Model, Constraint, TrainConfig)> {
    let (built, constraint) = build_in(model, variant)?;
    config.model.linear_attention = variant.kernel == Some(Kernel::Named(KernelName::Linear));
    Ok((built, constraint, config))
}

/// A training run in progress (see the module documentation).
pub struct Trainer {
    task: Task,
    config: TrainConfig,
    data: Box<dyn TaskData>,
    model_config: ModelConfig,
    model: Model,
    optimizer: AdamW,
    rng: ChaCha8Rng,
    steps: RunSteps,
    /// What stays true of the weights after every step (a built-in variant being healed).
    constraint: Option<Constraint>,
}

impl Trainer {
    /// A run of `config` on `task` (whose data is `data`) from the seed's initial weights.
    pub fn new(task: Task, data: Box<dyn TaskData>, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        let model_config = model_config(&config, data.as_ref())?;
        let model = initial_model(&model_config, config.seed)?;
        Trainer::from_weights(task, data, config, model)
    }

    /// A run that starts from `model`'s weights (fine-tuning), which must fit the task.
    pub fn from_weights(
        task: Task,
        data: Box<dyn TaskData>,
        config: TrainConfig,
        model: Model,
    ) -> Result<Trainer> {
        config.validate()?;
        let model = starting_weights(task, data.as_ref(), model)?;
        Ok(Trainer {
            task,
            model_config: model.config.clone(),
            optimizer: AdamW::new(&config),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            steps: RunSteps::new(config.steps),
            constraint: None,
            config,
            data,
            model,
        })
    }

    /// A run that fine-tunes `model` with `variant` built into its weights (healing; see
    /// [`crate::training::heal`]): the variant's pooled key/value heads, rank cut and
    /// zero-ablated heads stay as they are after every step.
    pub fn healing(
        task: Task,
        data: Box<dyn TaskData>,
        config: TrainConfig,
        model: &Model,
        variant: &Variant,
    ) -> Result<Trainer> {
        let (built, constraint, config) = healing_start(model, variant, config)?;
        let mut trainer = Trainer::from_weights(task, data, config, built)?;
        trainer.constraint = Some(constraint);
        Ok(trainer)
    }

    /// One optimiser step on the next batch. Past the configured number of steps the schedule
    /// stays at its final learning rate.
    pub fn step(&mut self) -> Result<StepReport> {
        let batch = self.data.batch(&mut self.rng, self.config.batch_size);
        let learning_rate = self.config.learning_rate_at(self.steps.done());
        let (loss, mut grads) = loss_and_gradients_with(
            &self.model,
            self.kernel(),
            &batch,
            self.config.head_penalty as f32,
        )?;
        self.optimizer
            .step(learning_rate, &mut self.model, &mut grads);
        if let Some(constraint) = &self.constraint {
            constraint.apply(&mut self.model)?;
        }
        Ok(StepReport {
            step: self.steps.advance(),
            learning_rate,
            batch: loss,
        })
    }

    /// The attention weights the run trains: softmax, or linear attention.
    pub fn kernel(&self) -> KernelName {
        self.config.model.kernel()
    }

    /// What the trained weights run with: the unmodified model, or the linear kernel they were
    /// trained with.
    pub fn variant(&self) -> Variant {
        self.config.model.variant()
    }

    /// Where the run is: steps done and the step it stops at.
    pub fn steps(&self) -> &RunSteps {
        &self.steps
    }

    /// See [`RunSteps::continue_for`].
    pub fn steps_mut(&mut self) -> &mut RunSteps {
        &mut self.steps
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn task(&self) -> Task {
        self.task
    }

    pub fn data(&self) -> &dyn TaskData {
        self.data.as_ref()
    }

    /// The architecture being trained.
    pub fn model_config(&self) -> &ModelConfig {
        &self.model_config
    }

    /// The weights as they are now (with the task's tokenizer, without metadata).
    pub fn weights(&self) -> &Model {
        &self.model
    }

    /// Loss and accuracy on the first `limit` sequences of the task's fixed held-out set.
    pub fn held_out_score(&self, limit: usize) -> Result<(f64, f64)> {
        let held_out = self.data.held_out();
        score_with(
            &self.model,
            &self.variant(),
            &held_out[..held_out.len().min(limit)],
        )
    }

    /// The heads on the fixed probe (see [`probe`]).
    pub fn probe(&self) -> Result<Probe> {
        probe(&self.model, &self.variant())
    }

    /// The model as it is now, labelled like a trained model file: tokenizer, title, task,
    /// scoring, example inputs, steps, seed, the config and `trainer`.
    pub fn labelled_model(&self, trainer: &str, seconds: f64) -> Model {
        let mut model = self.model.clone();
        model.metadata = run_metadata(
            self.task,
            self.data.as_ref(),
            &self.config,
            &self.model_config,
            self.steps.done(),
            seconds,
            trainer,
        );
        model
    }
}

/// The metadata of a trained model file (what `attn train` and the page's trainer write).
pub fn run_metadata(
    task: Task,
    data: &dyn TaskData,
    config: &TrainConfig,
    model_config: &ModelConfig,
    steps: usize,
    seconds: f64,
    trainer: &str,
) -> Map<String, Value> {
    let m = model_config;
    let kv = if m.kv_heads() == m.n_head {
        String::new()
    } else {
        format!(", {} key/value heads", m.kv_heads())
    };
    let linear = config.model.linear_attention;
    let mut meta = Map::new();
    meta.insert(
        "title".into(),
        json!(format!(
            "{} — {} layers × {} heads{kv}, d_model {}{}",
            task.name(),
            m.n_layer,
            m.n_head,
            m.d_model,
            if linear { ", linear attention" } else { "" }
        )),
    );
    if linear {
        // The weights run with the kernel they were trained with: the page opens them so.
        meta.insert("attention_kernel".into(), json!("linear"));
    }
    meta.insert("task".into(), json!(task.name()));
    meta.insert("scoring".into(), json!(data.scoring()));
    if let Some(classes) = data.classes() {
        meta.insert("classes".into(), json!(classes));
    }
    meta.insert("example_inputs".into(), json!(data.example_inputs()));
    meta.insert("steps".into(), json!(steps));
    meta.insert("seed".into(), json!(config.seed));
    meta.insert("train_config".into(), json!(config));
    meta.insert(
        "train_seconds".into(),
        json!((seconds * 10.0).round() / 10.0),
    );
    meta.insert("trainer".into(), json!(trainer));
    meta
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The induction recipe at half the width, a short batch and run.
    fn small_induction(seed: u64) -> Trainer {
        let mut config = Task::Induction.default_config();
        config.model.d_model = 32;
        config.batch_size = 8;
        config.steps = 20;
        config.warmup_steps = 5;
        config.seed = seed;
        Trainer::new(
            Task::Induction,
            Task::Induction.synthetic_data().unwrap(),
            config,
        )
        .unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let (mut a, mut b, mut c) = (small_induction(3), small_induction(3), small_induction(4));
        let mut losses = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            losses.0.push(a.step().unwrap().batch.loss);
            losses.1.push(b.step().unwrap().batch.loss);
            losses.2.push(c.step().unwrap().batch.loss);
        }
        assert_eq!(losses.0, losses.1);
        assert_ne!(losses.0, losses.2);
        assert_eq!(a.steps().done(), 5);
        a.steps_mut().continue_for(3);
        assert_eq!(a.steps().run_length(), 23);
        let probe = a.probe().unwrap();
        assert_eq!(probe.maps.len(), 4);
        assert_eq!(probe.roles.len(), 4);
        assert_eq!(probe.maps[0].len(), probe.tokens.len() * probe.tokens.len());
        let model = a.labelled_model("test", 1.0);
        assert_eq!(model.metadata["task"], "induction");
        assert!(model.tokenizer.is_some());
        // A labelled model is a valid file.
        Model::from_safetensors_bytes(&model.to_safetensors_bytes().unwrap()).unwrap();
    }

    #[test]
    fn a_rotary_model_trains_and_saves() {
        let mut config = Task::Induction.default_config();
        config.model.d_model = 32;
        config.model.rotary = true;
        config.batch_size = 8;
        config.steps = 5;
        let mut trainer = Trainer::new(
            Task::Induction,
            Task::Induction.synthetic_data().unwrap(),
            config,
        )
        .unwrap();
        assert!(trainer.weights().position_embedding.is_none());
        while !trainer.steps().finished() {
            trainer.step().unwrap();
        }
        let model = trainer.labelled_model("test", 0.1);
        let back = Model::from_safetensors_bytes(&model.to_safetensors_bytes().unwrap()).unwrap();
        assert!(matches!(back.config.positional, Positional::Rope(_)));
    }

    #[test]
    fn a_linear_attention_model_trains_and_runs_with_its_kernel() {
        let mut config = Task::Sort.default_config();
        config.model.d_model = 32;
        config.model.linear_attention = true;
        config.batch_size = 8;
        config.steps = 30;
        config.warmup_steps = 3;
        let mut trainer =
            Trainer::new(Task::Sort, Task::Sort.synthetic_data().unwrap(), config).unwrap();
        assert_eq!(trainer.kernel(), KernelName::Linear);
        let before = trainer.held_out_score(64).unwrap();
        while !trainer.steps().finished() {
            trainer.step().unwrap();
        }
        let after = trainer.held_out_score(64).unwrap();
        assert!(after.0 < before.0, "held-out loss {before:?} → {after:?}");
        // The scores are those of the weights run with the linear kernel.
        let held_out = trainer.data().held_out();
        let held_out = &held_out[..64.min(held_out.len())];
        assert_eq!(
            score_with(trainer.weights(), &trainer.variant(), held_out).unwrap(),
            after
        );
        assert_ne!(score(trainer.weights(), held_out).unwrap(), after);
        // The saved run says how it was trained, and with which kernel the weights run.
        let model = trainer.labelled_model("test", 0.1);
        assert!(
            serde_json::to_string(&model.metadata)
                .unwrap()
                .contains("\"linear_attention\":true"),
            "{:?}",
            model.metadata
        );
        let back = Model::from_safetensors_bytes(&model.to_safetensors_bytes().unwrap()).unwrap();
        assert_eq!(back.metadata["attention_kernel"], "linear");
    }

    #[test]
    fn training_lowers_the_held_out_loss() {
        let mut trainer = small_induction(0);
        let (before, _) = trainer.held_out_score(64).unwrap();
        for _ in 0..20 {
            trainer.step().unwrap();
        }
        let (after, _) = trainer.held_out_score(64).unwrap();
        assert!(after < before - 0.01, "{before} → {after}");
    }

    #[test]
    fn a_model_that_does_not_fit_the_task_is_refused() {
        let model = Model::random(ModelConfig::tiny(9), 1, 0.1).unwrap();
        let e = Trainer::from_weights(
            Task::Induction,
            Task::Induction.synthetic_data().unwrap(),
            Task::Induction.default_config(),
            model,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
