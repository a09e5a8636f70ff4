//! Sort: a list of distinct small numbers, a `|`, then the same numbers in increasing order.
//! Each output position should attend to where the next larger number sits in the input.

use crate::tokenizer::TokenizerSpec;
use rand_chacha::ChaCha8Rng;

use super::data::{
    distinct, held_out_from, number_symbols, uniform, words_text, Sequence, TaskData,
};

/// Numbers `0`–`19`.
const VALUES: usize = 20;
/// Shortest and longest list.
const LIST: (usize, usize) = (2, 10);
/// Id of the separator `|`.
const SEP: u32 = VALUES as u32;

/// The sort task.
pub struct Sort;

fn vocab() -> Vec<String> {
    let mut v = number_symbols(VALUES);
    v.push("|".into());
    v
}

/// `x₁ … xₙ | sorted(x)`; scored: from the `|` on, the next number of the sorted list.
fn sample(rng: &mut ChaCha8Rng) -> Sequence {
    let n = uniform(rng, LIST.0, LIST.1);
    let input = distinct(rng, VALUES, n);
    let mut sorted = input.clone();
    sorted.sort_unstable();
    let mut tokens = input;
    tokens.push(SEP);
    tokens.extend(&sorted);
    let mut targets = vec![None; tokens.len()];
    for (k, &value) in sorted.iter().enumerate() {
        targets[n + k] = Some(value);
    }
    Sequence { tokens, targets }
}

impl TaskData for Sort {
    fn tokenizer(&self) -> TokenizerSpec {
        TokenizerSpec::Words { vocab: vocab() }
    }
    fn vocab_size(&self) -> usize {
        VALUES + 1
    }
    fn n_ctx(&self) -> usize {
        2 * LIST.1 + 1
    }
    fn batch(&self, rng: &mut ChaCha8Rng, size: usize) -> Vec<Sequence> {
        (0..size).map(|_| sample(rng)).collect()
    }
    fn held_out(&self) -> Vec<Sequence> {
        held_out_from(sample)
    }
    fn example_inputs(&self) -> Vec<String> {
        let v = vocab();
        vec![
            words_text(&v, &[7, 2, 15, 9, 0, SEP]),
            words_text(&v, &[19, 4, 11, 3, 8, 16, 1, 12, SEP, 1, 3]),
            words_text(&v, &[5, 13, SEP]),
        ]
    }
    fn scoring(&self) -> &'static str {
        "every position from the `|` on: the next number of the sorted list"
    }
}
