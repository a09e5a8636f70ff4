//! What a task's data is: a training sequence with its scored positions ([`Sequence`]), how a
//! task is scored ([`MetricKind`]), what the trainer needs of a task ([`TaskData`]), the fixed
//! held-out set's generator, and the sampling helpers the tasks share.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::tokenizer::TokenizerSpec;

/// Seed of every task's held-out set (on ChaCha stream [`HELD_OUT_STREAM`]).
pub const HELD_OUT_SEED: u64 = 0x00A7_7E57;

/// The ChaCha stream of held-out sets; training data uses stream 0, initial weights stream 2.
pub const HELD_OUT_STREAM: u64 = 1;

/// Number of sequences in a synthetic task's held-out set.
pub const HELD_OUT_SIZE: usize = 1000;

/// One sequence with its targets: `targets[t]` is what the model must output at position `t`
/// (the next token for the sequence tasks, the class for a classifier), or `None` where the
/// task does not determine it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub tokens: Vec<u32>,
    pub targets: Vec<Option<u32>>,
}

impl Sequence {
    /// Number of positions that carry a target.
    pub fn scored(&self) -> usize {
        self.targets.iter().flatten().count()
    }
}

/// How a task is scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Fraction of scored positions whose most probable output is the target.
    Accuracy,
    /// Mean negative log-likelihood of the next character on held-out text, in nats.
    ValidationLoss,
}

impl MetricKind {
    /// The name printed in `{"metric": ...}`.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Accuracy => "accuracy",
            MetricKind::ValidationLoss => "val_loss",
        }
    }
}

/// What the trainer and the evaluator need from a task.
pub trait TaskData {
    /// The tokenizer stored with the model.
    fn tokenizer(&self) -> TokenizerSpec;
    /// Number of token ids.
    fn vocab_size(&self) -> usize;
    /// The longest sequence the task produces (the model's context).
    fn n_ctx(&self) -> usize;
    /// Causal (next-token) or bidirectional (classifier) attention.
    fn causal(&self) -> bool {
        true
    }
    /// Class names, for a classifier task.
    fn classes(&self) -> Option<Vec<String>> {
        None
    }
    /// How the task is scored.
    fn metric(&self) -> MetricKind {
        MetricKind::Accuracy
    }
    /// A batch of training sequences. Bidirectional tasks return sequences of one length, so a
    /// batch needs no padding the model could attend to.
    fn batch(&self, rng: &mut ChaCha8Rng, size: usize) -> Vec<Sequence>;
    /// The fixed held-out set.
    fn held_out(&self) -> Vec<Sequence>;
    /// A few inputs to try, as text for the model's tokenizer.
    fn example_inputs(&self) -> Vec<String>;
    /// One sentence on which positions are scored.
    fn scoring(&self) -> &'static str;
}

/// The held-out set of a synthetic task: [`HELD_OUT_SIZE`] draws from the fixed seed.
pub(super) fn held_out_from(mut sample: impl FnMut(&mut ChaCha8Rng) -> Sequence) -> Vec<Sequence> {
    let mut rng = held_out_rng();
    (0..HELD_OUT_SIZE).map(|_| sample(&mut rng)).collect()
}

/// The generator of held-out data.
pub fn held_out_rng() -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(HELD_OUT_SEED);
    rng.set_stream(HELD_OUT_STREAM);
    rng
}

/// A uniform integer in `lo..=hi`. (Modulo bias is below 1e-17 for these tiny ranges.)
pub(super) fn uniform(rng: &mut ChaCha8Rng, lo: usize, hi: usize) -> usize {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize
}

/// Shuffles `items` in place (Fisher–Yates).
pub(super) fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = uniform(rng, 0, i);
        items.swap(i, j);
    }
}

/// `k` distinct values from `0..n`, in random order.
pub(super) fn distinct(rng: &mut ChaCha8Rng, n: usize, k: usize) -> Vec<u32> {
    let mut all: Vec<u32> = (0..n as u32).collect();
    shuffle(rng, &mut all);
    all.truncate(k);
    all
}

/// Symbols `"0"`, `"1"`, … as a words vocabulary.
pub(super) fn number_symbols(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Joins token ids into text for a words tokenizer.
pub(super) fn words_text(vocab: &[String], tokens: &[u32]) -> String {
    tokens
        .iter()
        .map(|&t| vocab[t as usize].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}
