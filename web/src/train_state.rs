//! A training run as the page holds it: its settings (`TrainSettings`, with their URL form and
//! the attn-model config they build) and what the page shows of it (`TrainView`: the curve, the
//! checkpoints, the probe, healing's scores). Page state, shared by the training panel, the URL
//! (`page_state.rs`), the page's state (`state.rs`) and the controller, which fills `TrainView`
//! from the worker's answers.

use attn_model::training::{Probe, Task, TrainConfig};

use crate::protocol::{EngineChoice, TrainState};

/// The character model's context in the page (the offline recipe's 128 is slow to train here).
pub const TEXT_CONTEXT: usize = 64;

/// The page's default run length: long enough for the induction head to form (it does around
/// step 150 with the default settings), short enough to watch.
const DEFAULT_STEPS: usize = 400;

/// A training run's settings, as the panel and the URL hold them.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    pub task: Task,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub d_model: usize,
    pub mlp: bool,
    /// Rotary positions instead of a learned position table.
    pub rotary: bool,
    /// Linear attention (elu + 1) instead of softmax.
    pub linear: bool,
    pub seed: u64,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub steps: usize,
    /// Where it trains: the GPU trainer on a hardware adapter (`Auto`), or as chosen.
    pub engine: EngineChoice,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings::for_task(Task::Induction)
    }
}

impl TrainSettings {
    /// The task's built-in recipe (architecture, learning rate, batch), for a run of the page's
    /// default length.
    pub fn for_task(task: Task) -> TrainSettings {
        let c = task.default_config();
        if task == Task::Shakespeare {
            // A quarter of the offline model's size: ≈ 70 ms a step in the page.
            return TrainSettings {
                n_layer: 2,
                d_model: 64,
                batch_size: 16,
                ..TrainSettings::for_task(Task::Sort)
            }
            .with_task(task, &c);
        }
        TrainSettings {
            task,
            n_layer: c.model.n_layer,
            n_head: c.model.n_head,
            n_kv_head: c.model.n_kv_head.unwrap_or(c.model.n_head),
            d_model: c.model.d_model,
            mlp: c.model.mlp,
            rotary: c.model.rotary,
            linear: c.model.linear_attention,
            seed: c.seed,
            learning_rate: c.learning_rate,
            batch_size: c.batch_size,
            steps: c.steps.min(DEFAULT_STEPS),
            engine: EngineChoice::Auto,
        }
    }

    fn with_task(self, task: Task, c: &TrainConfig) -> TrainSettings {
        TrainSettings {
            task,
            learning_rate: c.learning_rate,
            seed: c.seed,
            ..self
        }
    }

    /// The trainer's config: the task's recipe with these settings, the warm-up at most a
    /// quarter of the run.
    pub fn to_config(&self) -> TrainConfig {
        let mut c = self.task.default_config();
        c.model.n_layer = self.n_layer;
        c.model.n_head = self.n_head;
        c.model.n_kv_head = (self.n_kv_head != self.n_head).then_some(self.n_kv_head);
        c.model.d_model = self.d_model;
        c.model.mlp = self.mlp;
        c.model.rotary = self.rotary;
        c.model.linear_attention = self.linear;
        c.seed = self.seed;
        c.learning_rate = self.learning_rate;
        c.batch_size = self.batch_size;
        c.steps = self.steps;
        c.warmup_steps = c.warmup_steps.min(self.steps / 4);
        if self.task == Task::Shakespeare {
            c.model.n_ctx = Some(TEXT_CONTEXT);
        }
        c
    }

    /// The URL's keys.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        [
            ("train", self.task.name().to_string()),
            ("train_layers", self.n_layer.to_string()),
            ("train_heads", self.n_head.to_string()),
            ("train_kv", self.n_kv_head.to_string()),
            ("train_d", self.d_model.to_string()),
            ("train_mlp", u8::from(self.mlp).to_string()),
            ("train_rope", u8::from(self.rotary).to_string()),
            (
                "train_kernel",
                if self.linear { "linear" } else { "softmax" }.to_string(),
            ),
            ("train_seed", self.seed.to_string()),
            ("train_lr", self.learning_rate.to_string()),
            ("train_batch", self.batch_size.to_string()),
            ("train_steps", self.steps.to_string()),
            ("train_engine", self.engine.as_str().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The settings a URL names (`None` without `train=`): the task's recipe, then each key
    /// that parses and fits; what does not is reported in `problems` and left at the recipe.
    pub fn from_pairs(pairs: &[(String, String)], problems: &mut Vec<String>) -> Option<Self> {
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let name = get("train")?;
        let Some(task) = Task::from_name(name) else {
            problems.push(format!(
                "ignored train={name:?}: the page trains {}",
                Task::ALL.map(Task::name).join(", ")
            ));
            return None;
        };
        let mut s = TrainSettings::for_task(task);
        match get("train_kernel") {
            None | Some("softmax") => {}
            Some("linear") => s.linear = true,
            Some(other) => problems.push(format!(
                "ignored train_kernel={other:?}: expected softmax or linear"
            )),
        }
        if let Some(engine) = get("train_engine") {
            match EngineChoice::parse(engine) {
                Some(choice) => s.engine = choice,
                None => problems.push(format!(
                    "ignored train_engine={engine:?}: expected auto, gpu or cpu"
                )),
            }
        }
        let mut number = |key: &str, ok: &dyn Fn(f64) -> bool| -> Option<f64> {
            let value = get(key)?;
            match value.parse::<f64>() {
                Ok(v) if ok(v) => Some(v),
                _ => {
                    problems.push(format!("ignored {key}={value:?}: out of range"));
                    None
                }
            }
        };
        let count = |lo: f64, hi: f64| move |v: f64| v.fract() == 0.0 && (lo..=hi).contains(&v);
        if let Some(v) = number("train_layers", &count(1.0, 4.0)) {
            s.n_layer = v as usize;
        }
        if let Some(v) = number("train_heads", &count(1.0, 8.0)) {
            s.n_head = v as usize;
        }
        if let Some(v) = number("train_kv", &count(1.0, 8.0)) {
            s.n_kv_head = v as usize;
        }
        if let Some(v) = number("train_d", &|v| [16.0, 32.0, 64.0, 128.0].contains(&v)) {
            s.d_model = v as usize;
        }
        if let Some(v) = number("train_mlp", &count(0.0, 1.0)) {
            s.mlp = v == 1.0;
        }
        if let Some(v) = number("train_rope", &count(0.0, 1.0)) {
            s.rotary = v == 1.0;
        }
        if let Some(v) = number("train_seed", &count(0.0, 1e9)) {
            s.seed = v as u64;
        }
        if let Some(v) = number("train_lr", &|v| v > 0.0 && v <= 0.1) {
            s.learning_rate = v;
        }
        if let Some(v) = number("train_batch", &count(1.0, 256.0)) {
            s.batch_size = v as usize;
        }
        if let Some(v) = number("train_steps", &count(1.0, 100_000.0)) {
            s.steps = v as usize;
        }
        if !s.n_head.is_power_of_two() || s.n_head % s.n_kv_head != 0 {
            problems.push(format!(
                "ignored train_heads={} / train_kv={}: the query heads (1, 2, 4 or 8) must be \
                 a multiple of the key/value heads",
                s.n_head, s.n_kv_head
            ));
            let recipe = TrainSettings::for_task(task);
            (s.n_head, s.n_kv_head) = (recipe.n_head, recipe.n_kv_head);
        }
        Some(s)
    }

    /// The title of the trained model in the playground.
    pub fn title(&self) -> String {
        let kv = if self.n_kv_head == self.n_head {
            String::new()
        } else {
            format!(", {} K/V heads", self.n_kv_head)
        };
        format!(
            "Trained here: {} — {} layers × {} heads{kv}{}{}",
            self.task.name(),
            self.n_layer,
            self.n_head,
            if self.rotary { ", rotary" } else { "" },
            if self.linear {
                ", linear attention"
            } else {
                ""
            }
        )
    }
}

/// A checkpoint of a run: the held-out score and the heads' role scores.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub step: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub roles: Vec<attn_model::HeadRoles>,
}

/// Held-out (loss, accuracy) of the unmodified model and of the cut one, before healing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealScores {
    pub before: (f64, f64),
    pub cut: (f64, f64),
}

/// The run as the page shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainView {
    /// The job the page listens to.
    pub job: Option<u32>,
    pub state: Option<TrainState>,
    /// The run's title (what its model is called in the playground), its task and seed.
    pub title: String,
    pub task: Option<Task>,
    pub seed: Option<u64>,
    /// For a healing run: the held-out scores before and right after the cut.
    pub heal: Option<HealScores>,
    pub step: usize,
    pub steps: usize,
    /// Every step's training loss.
    pub losses: Vec<(usize, f64)>,
    pub checkpoints: Vec<Checkpoint>,
    pub probe: Option<Probe>,
    pub steps_per_second: f64,
    /// Where the run trains (the worker says, with the reason for a fallback).
    pub engine: String,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_url() {
        let settings = TrainSettings {
            task: Task::Sort,
            n_layer: 3,
            n_head: 4,
            n_kv_head: 2,
            d_model: 32,
            mlp: true,
            rotary: true,
            linear: true,
            seed: 17,
            learning_rate: 0.002,
            batch_size: 16,
            steps: 250,
            engine: EngineChoice::Gpu,
        };
        let mut problems = Vec::new();
        let back = TrainSettings::from_pairs(&settings.to_pairs(), &mut problems);
        assert_eq!(back, Some(settings.clone()));
        assert!(problems.is_empty());
        let config = settings.to_config();
        assert_eq!(config.model.n_kv_head, Some(2));
        assert!(config.model.rotary && config.model.linear_attention);
        assert_eq!(
            (config.steps, config.seed, config.batch_size),
            (250, 17, 16)
        );
        config.validate().unwrap();
    }

    #[test]
    fn bad_keys_are_reported_and_left_at_the_recipe() {
        let pairs: Vec<(String, String)> = [
            ("train", "induction"),
            ("train_heads", "3"),
            ("train_lr", "-1"),
            ("train_d", "48"),
            ("train_kernel", "cubic"),
            ("train_engine", "tpu"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut problems = Vec::new();
        let s = TrainSettings::from_pairs(&pairs, &mut problems).unwrap();
        assert_eq!(s, TrainSettings::for_task(Task::Induction));
        assert_eq!(problems.len(), 5, "{problems:?}");
        let mut problems = Vec::new();
        let none = TrainSettings::from_pairs(
            &[("train".to_string(), "translation".to_string())],
            &mut problems,
        );
        assert!(none.is_none() && problems[0].contains("induction"));
        // Three heads sharing two key/value heads cannot be built: reset to a valid layout.
        let pairs: Vec<(String, String)> =
            [("train", "sort"), ("train_heads", "8"), ("train_kv", "3")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let mut problems = Vec::new();
        let s = TrainSettings::from_pairs(&pairs, &mut problems).unwrap();
        assert_eq!(s.n_head % s.n_kv_head, 0);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
