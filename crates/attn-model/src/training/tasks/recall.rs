//! Associative recall: key–value pairs (`a 3 f 7 …`), a `|`, then keys asked again, each followed
//! by its value. Answering needs a content-based lookup: attend to the earlier copy of the
//! queried key and read the value next to it.

use crate::tokenizer::TokenizerSpec;
use rand_chacha::ChaCha8Rng;

use super::data::{distinct, held_out_from, uniform, words_text, Sequence, TaskData};

/// Keys `a`–`p`.
const KEYS: usize = 16;
/// Values `0`–`9`.
const VALUES: usize = 10;
/// Fewest and most pairs.
const PAIRS: (usize, usize) = (2, 8);
/// Most queries (bounded so that the longest sequence is 31 tokens).
const MAX_QUERIES: usize = 7;
/// Id of the separator `|` (after the keys and the values).
const SEP: u32 = (KEYS + VALUES) as u32;

/// The recall task.
pub struct Recall;

fn vocab() -> Vec<String> {
    let mut v: Vec<String> = (b'a'..b'a' + KEYS as u8)
        .map(|c| (c as char).to_string())
        .collect();
    v.extend((0..VALUES).map(|d| d.to_string()));
    v.push("|".into());
    v
}

fn value_id(digit: usize) -> u32 {
    (KEYS + digit) as u32
}

/// `k₁ v₁ … kₙ vₙ | q₁ a₁ … qₘ aₘ` with distinct keys and distinct queries; scored: at each
/// query key, its value.
fn sample(rng: &mut ChaCha8Rng) -> Sequence {
    let n = uniform(rng, PAIRS.0, PAIRS.1);
    let keys = distinct(rng, KEYS, n);
    let values: Vec<u32> = (0..n)
        .map(|_| value_id(uniform(rng, 0, VALUES - 1)))
        .collect();
    let mut tokens = Vec::new();
    for (k, v) in keys.iter().zip(&values) {
        tokens.extend([*k, *v]);
    }
    tokens.push(SEP);
    let m = uniform(rng, 1, n.min(MAX_QUERIES));
    let asked = distinct(rng, n, m);
    let mut targets = vec![None; tokens.len()];
    for &i in &asked {
        tokens.extend([keys[i as usize], values[i as usize]]);
        targets.extend([Some(values[i as usize]), None]);
    }
    Sequence { tokens, targets }
}

impl TaskData for Recall {
    fn tokenizer(&self) -> TokenizerSpec {
        TokenizerSpec::Words { vocab: vocab() }
    }
    fn vocab_size(&self) -> usize {
        KEYS + VALUES + 1
    }
    fn n_ctx(&self) -> usize {
        2 * PAIRS.1 + 1 + 2 * MAX_QUERIES
    }
    fn batch(&self, rng: &mut ChaCha8Rng, size: usize) -> Vec<Sequence> {
        (0..size).map(|_| sample(rng)).collect()
    }
    fn held_out(&self) -> Vec<Sequence> {
        held_out_from(sample)
    }
    fn example_inputs(&self) -> Vec<String> {
        let v = vocab();
        let (a, c, f, k, p) = (0, 2, 5, 10, 15);
        vec![
            words_text(
                &v,
                &[a, value_id(3), f, value_id(7), k, value_id(1), SEP, f],
            ),
            words_text(
                &v,
                &[
                    p,
                    value_id(0),
                    c,
                    value_id(9),
                    a,
                    value_id(4),
                    SEP,
                    a,
                    value_id(4),
                    p,
                ],
            ),
        ]
    }
    fn scoring(&self) -> &'static str {
        "every queried key after the `|`: its value"
    }
}
