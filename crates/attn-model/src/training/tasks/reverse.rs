//! Reverse: a sequence of digits, a `|`, then the same digits backwards. The attention of the
//! output positions forms an anti-diagonal.

use crate::tokenizer::TokenizerSpec;
use rand_chacha::ChaCha8Rng;

use super::data::{held_out_from, number_symbols, uniform, words_text, Sequence, TaskData};

/// Digits `0`–`9`.
const VALUES: usize = 10;
/// Shortest and longest input.
const LIST: (usize, usize) = (2, 12);
/// Id of the separator `|`.
const SEP: u32 = VALUES as u32;

/// The reverse task.
pub struct Reverse;

fn vocab() -> Vec<String> {
    let mut v = number_symbols(VALUES);
    v.push("|".into());
    v
}

/// `x₁ … xₙ | xₙ … x₁`; scored: from the `|` on, the next digit of the reversed input.
fn sample(rng: &mut ChaCha8Rng) -> Sequence {
    let n = uniform(rng, LIST.0, LIST.1);
    let input: Vec<u32> = (0..n).map(|_| uniform(rng, 0, VALUES - 1) as u32).collect();
    let mut tokens = input.clone();
    tokens.push(SEP);
    tokens.extend(input.iter().rev());
    let mut targets = vec![None; tokens.len()];
    for (k, &digit) in input.iter().rev().enumerate() {
        targets[n + k] = Some(digit);
    }
    Sequence { tokens, targets }
}

impl TaskData for Reverse {
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
            words_text(&v, &[3, 1, 4, 1, 5, 9, 2, 6, SEP]),
            words_text(&v, &[8, 0, 7, SEP, 7]),
            words_text(&v, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, SEP]),
        ]
    }
    fn scoring(&self) -> &'static str {
        "every position from the `|` on: the next digit of the reversed input"
    }
}
