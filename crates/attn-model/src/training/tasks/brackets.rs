//! Brackets: is a string of `(` and `)` balanced? A bidirectional classifier whose output at
//! every position is the verdict for the whole string. Balanced means the counts match and no
//! prefix closes more brackets than it opened, so the model has to count over prefixes, not
//! just compare totals; the negatives are chosen to test both conditions.

use crate::tokenizer::TokenizerSpec;
use rand_chacha::ChaCha8Rng;

use super::data::{held_out_from, shuffle, uniform, Sequence, TaskData};

/// Longest string.
const MAX_LEN: usize = 24;
const OPEN: u32 = 0;
const CLOSE: u32 = 1;
const UNBALANCED: u32 = 0;
const BALANCED: u32 = 1;

/// The brackets task.
pub struct Brackets;

/// Whether `tokens` is a balanced bracket string.
pub fn is_balanced(tokens: &[u32]) -> bool {
    let mut depth: i64 = 0;
    for &t in tokens {
        depth += if t == OPEN { 1 } else { -1 };
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

/// A length for one batch: even four times out of five, since only even strings can balance.
fn draw_len(rng: &mut ChaCha8Rng) -> usize {
    if uniform(rng, 0, 4) < 4 {
        2 * uniform(rng, 1, MAX_LEN / 2)
    } else {
        2 * uniform(rng, 0, MAX_LEN / 2 - 1) + 1
    }
}

/// A random balanced string of even length `len`: shuffles of `len/2` pairs, redrawn until
/// balanced (one in `len/2 + 1` is, so this is quick at these lengths).
fn balanced(rng: &mut ChaCha8Rng, len: usize) -> Vec<u32> {
    let mut s: Vec<u32> = (0..len)
        .map(|i| if i < len / 2 { OPEN } else { CLOSE })
        .collect();
    loop {
        shuffle(rng, &mut s);
        if is_balanced(&s) {
            return s;
        }
    }
}

/// An unbalanced string of length `len`, one of three kinds so that both conditions are needed:
/// any random string; a balanced one with one bracket flipped (the counts differ); a shuffle
/// with equal counts that dips below zero somewhere.
fn unbalanced(rng: &mut ChaCha8Rng, len: usize) -> Vec<u32> {
    let kind = if len % 2 == 1 { 0 } else { uniform(rng, 0, 2) };
    loop {
        let s = match kind {
            0 => (0..len).map(|_| uniform(rng, 0, 1) as u32).collect(),
            1 => {
                let mut s = balanced(rng, len);
                let i = uniform(rng, 0, len - 1);
                s[i] = 1 - s[i];
                s
            }
            _ => {
                let mut s: Vec<u32> = (0..len)
                    .map(|i| if i < len / 2 { OPEN } else { CLOSE })
                    .collect();
                shuffle(rng, &mut s);
                s
            }
        };
        if !is_balanced(&s) {
            return s;
        }
    }
}

/// One labelled string of length `len` (balanced half the time when `len` is even).
fn sample_len(rng: &mut ChaCha8Rng, len: usize) -> Sequence {
    let tokens = if len % 2 == 0 && uniform(rng, 0, 1) == 1 {
        balanced(rng, len)
    } else {
        unbalanced(rng, len)
    };
    let label = if is_balanced(&tokens) {
        BALANCED
    } else {
        UNBALANCED
    };
    Sequence {
        targets: vec![Some(label); tokens.len()],
        tokens,
    }
}

impl TaskData for Brackets {
    fn tokenizer(&self) -> TokenizerSpec {
        TokenizerSpec::Words {
            vocab: vec!["(".into(), ")".into()],
        }
    }
    fn vocab_size(&self) -> usize {
        2
    }
    fn n_ctx(&self) -> usize {
        MAX_LEN
    }
    fn causal(&self) -> bool {
        false
    }
    fn classes(&self) -> Option<Vec<String>> {
        Some(vec!["unbalanced".into(), "balanced".into()])
    }
    fn batch(&self, rng: &mut ChaCha8Rng, size: usize) -> Vec<Sequence> {
        let len = draw_len(rng);
        (0..size).map(|_| sample_len(rng, len)).collect()
    }
    fn held_out(&self) -> Vec<Sequence> {
        held_out_from(|rng| {
            let len = draw_len(rng);
            sample_len(rng, len)
        })
    }
    fn example_inputs(&self) -> Vec<String> {
        vec![
            "( ( ) ( ) ) ( )".into(),
            "( ) ) ( ( )".into(),
            "( ( ( ) ) ( ) ) )".into(),
        ]
    }
    fn scoring(&self) -> &'static str {
        "every position: the verdict (balanced or not) for the whole string"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn labels_are_right_and_classes_are_mixed() {
        assert!(is_balanced(&[OPEN, OPEN, CLOSE, CLOSE]));
        assert!(!is_balanced(&[CLOSE, OPEN]));
        assert!(!is_balanced(&[OPEN]));
        let held_out = Brackets.held_out();
        let positives = held_out
            .iter()
            .filter(|s| s.targets[0] == Some(BALANCED))
            .count();
        assert!(
            (300..=600).contains(&positives),
            "{positives} balanced of 1000"
        );
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..100 {
            let s = sample_len(&mut rng, 12);
            assert_eq!(s.targets[0] == Some(BALANCED), is_balanced(&s.tokens));
        }
    }
}
