//! Induction: random letters, then a stretch of distinct letters repeated periodically to the
//! end. From the second copy on, each next letter is determined by the earlier copies — but only
//! for a model that finds the previous occurrence of the current letter and reads what followed
//! it (a previous-token head feeding an induction head). The prefix length and the period vary,
//! so position alone cannot solve it, and the prefix may use the stretch's letters too, so
//! "guess a letter seen once" is no shortcut either.

use crate::tokenizer::TokenizerSpec;
use rand_chacha::ChaCha8Rng;

use super::data::{distinct, held_out_from, uniform, words_text, Sequence, TaskData};

/// Sequence length (every sequence fills the context).
const LEN: usize = 32;
/// Letters `a`–`z`.
const VOCAB: usize = 26;
/// Shortest and longest repeated stretch. From 2: with a period of 2, a head looking two or
/// three positions back cannot reach the earlier copy in time, so only the textbook circuit (a
/// head looking exactly one back, feeding an induction head) solves every period; up to 16, the
/// role probe's period (docs/MODELS.md).
const STRETCH: (usize, usize) = (2, 16);

/// The induction task.
pub struct Induction;

fn letters() -> Vec<String> {
    (b'a'..=b'z').map(|c| (c as char).to_string()).collect()
}

/// `prefix · stretch · stretch · …`, 32 letters, the stretch of distinct letters repeated until
/// the sequence is full. Scored: from the second copy on, every letter that does not occur in
/// the prefix (so all its earlier occurrences are in the repeats, followed by the same letter),
/// predicting the next letter.
fn sample(rng: &mut ChaCha8Rng) -> Sequence {
    let n = uniform(rng, STRETCH.0, STRETCH.1);
    let prefix_len = uniform(rng, 0, LEN - 2 * n);
    let stretch = distinct(rng, VOCAB, n);
    let mut tokens: Vec<u32> = (0..prefix_len)
        .map(|_| uniform(rng, 0, VOCAB - 1) as u32)
        .collect();
    tokens.extend((0..LEN - prefix_len).map(|i| stretch[i % n]));
    let prefix = &tokens[..prefix_len];
    let targets: Vec<Option<u32>> = (0..LEN)
        .map(|t| {
            let determined = t >= prefix_len + n && t + 1 < LEN && !prefix.contains(&tokens[t]);
            determined.then(|| tokens[t + 1])
        })
        .collect();
    if targets.iter().all(Option::is_none) {
        // Every letter of the stretch also occurs in the prefix: nothing is determined.
        return sample(rng);
    }
    Sequence { tokens, targets }
}

impl TaskData for Induction {
    fn tokenizer(&self) -> TokenizerSpec {
        TokenizerSpec::Words { vocab: letters() }
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn n_ctx(&self) -> usize {
        LEN
    }
    fn batch(&self, rng: &mut ChaCha8Rng, size: usize) -> Vec<Sequence> {
        (0..size).map(|_| sample(rng)).collect()
    }
    fn held_out(&self) -> Vec<Sequence> {
        held_out_from(sample)
    }
    fn example_inputs(&self) -> Vec<String> {
        let v = letters();
        let text = |s: &str| {
            let ids: Vec<u32> = s.bytes().map(|b| (b - b'a') as u32).collect();
            words_text(&v, &ids)
        };
        vec![
            text("qxzmbrwkeyhtplnbrwkeyh"),
            text("uvgjdsacfouvgjdsa"),
            text("mtpczqlmtpc"),
        ]
    }
    fn scoring(&self) -> &'static str {
        "from the second copy of the repeated stretch on, at each letter not seen in the prefix: the next letter"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn every_earlier_occurrence_predicts_the_target() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for _ in 0..200 {
            let s = sample(&mut rng);
            assert_eq!(s.tokens.len(), LEN);
            for (t, target) in s.targets.iter().enumerate() {
                let Some(target) = target else { continue };
                let earlier: Vec<usize> = (0..t).filter(|&j| s.tokens[j] == s.tokens[t]).collect();
                assert!(!earlier.is_empty());
                assert!(earlier.iter().all(|&j| s.tokens[j + 1] == *target));
                assert_eq!(s.tokens[t + 1], *target);
            }
        }
    }
}
