//! The character-level language model's data: plays as plain script text (`SPEAKER:` lines,
//! dialogue, blank lines between speeches). Each play is split 90 / 10: the first 90 % of its
//! text trains, the last 10 % validates. The vocabulary is every character of the corpus,
//! sorted. The offline trainer reads Shakespeare's complete plays (attn-train); the page
//! bundles a few of them.

use rand_chacha::rand_core::Rng;
use rand_chacha::ChaCha8Rng;

use super::data::{MetricKind, Sequence, TaskData};
use crate::error::{ModelError, Result};
use crate::tokenizer::TokenizerSpec;

/// Fraction of every play that is kept for validation (its end).
const VALIDATION_FRACTION: f64 = 0.1;
/// Number of validation windows in the held-out set, spread evenly over the validation text.
const HELD_OUT_WINDOWS: usize = 256;

/// Lines to try on a character model of the plays.
pub const EXAMPLES: [&str; 3] = [
    "ROMEO:\nBut soft, what light through yonder window breaks?\n",
    "KING HENRY V:\nOnce more unto the breach, dear friends, once more;\n",
    "First Citizen:\nWe are accounted poor citizens, the patricians good.\n",
];

/// The encoded corpus.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The characters, sorted; a token id is an index here.
    pub vocab: Vec<char>,
    /// Training text as token ids.
    pub train: Vec<u32>,
    /// Validation text as token ids.
    pub validation: Vec<u32>,
    /// Number of plays read.
    pub plays: usize,
}

/// The JSON `attn plays` writes (and the page bundles as `train/shakespeare.json`).
#[derive(serde::Deserialize)]
struct PlaysFile {
    plays: Vec<Play>,
}

#[derive(serde::Deserialize)]
struct Play {
    text: String,
}

/// The whole text of every play in the JSON `attn plays` writes: the built-in corpus head
/// metrics are measured over ([`crate::corpus`]).
pub fn play_texts(plays_json: &str) -> Result<Vec<String>> {
    let file: PlaysFile = serde_json::from_str(plays_json).map_err(|e| ModelError::Json {
        what: "the plays".into(),
        message: e.to_string(),
    })?;
    Ok(file.plays.into_iter().map(|p| p.text).collect())
}

/// The held-out tail of every play in the JSON `attn plays` writes (the last 10 % of each, the
/// text the character model never trained on), as plain text: what lessons measure language
/// models on, through any model's tokenizer.
pub fn held_out_text(plays_json: &str) -> Result<Vec<String>> {
    let file: PlaysFile = serde_json::from_str(plays_json).map_err(|e| ModelError::Json {
        what: "the plays".into(),
        message: e.to_string(),
    })?;
    Ok(file
        .plays
        .into_iter()
        .map(|p| {
            let play: Vec<char> = p.text.chars().collect();
            let split = ((1.0 - VALIDATION_FRACTION) * play.len() as f64) as usize;
            play[split..].iter().collect()
        })
        .collect())
}

impl Corpus {
    /// The corpus of the JSON `attn plays` writes: `{"plays": [{"name": …, "text": …}, …]}`.
    pub fn from_json(text: &str) -> Result<Corpus> {
        let file: PlaysFile = serde_json::from_str(text).map_err(|e| ModelError::Json {
            what: "the training text".into(),
            message: e.to_string(),
        })?;
        let plays: Vec<String> = file.plays.into_iter().map(|p| p.text).collect();
        Ok(Corpus::from_plays(&plays))
    }

    /// Splits every play (plain script text) 90 / 10 and encodes the whole by its characters.
    pub fn from_plays(plays: &[String]) -> Corpus {
        let mut train_text = Vec::new();
        let mut validation_text = Vec::new();
        for play in plays {
            let play: Vec<char> = play.chars().collect();
            let split = ((1.0 - VALIDATION_FRACTION) * play.len() as f64) as usize;
            train_text.extend_from_slice(&play[..split]);
            validation_text.extend_from_slice(&play[split..]);
        }
        let mut vocab: Vec<char> = train_text.iter().chain(&validation_text).copied().collect();
        vocab.sort_unstable();
        vocab.dedup();
        let encode = |text: &[char]| -> Vec<u32> {
            text.iter()
                .map(|c| {
                    vocab
                        .binary_search(c)
                        .expect("the vocabulary has every character") as u32
                })
                .collect()
        };
        Corpus {
            train: encode(&train_text),
            validation: encode(&validation_text),
            plays: plays.len(),
            vocab,
        }
    }
}

/// Next-character prediction on the corpus with a context of `n_ctx` characters.
pub struct ShakespeareTask {
    corpus: Corpus,
    n_ctx: usize,
}

impl ShakespeareTask {
    /// The task over `corpus` with windows of `n_ctx` characters; both the training and the
    /// validation text must be longer than one window.
    pub fn new(corpus: Corpus, n_ctx: usize) -> Result<Self> {
        let shortest = corpus.train.len().min(corpus.validation.len());
        if n_ctx == 0 || shortest <= n_ctx + 1 {
            return Err(ModelError::Config(format!(
                "the text is too short for windows of {n_ctx} characters: {} characters train \
                 and {} validate",
                corpus.train.len(),
                corpus.validation.len()
            )));
        }
        Ok(ShakespeareTask { corpus, n_ctx })
    }

    fn window(text: &[u32], start: usize, len: usize) -> Sequence {
        Sequence {
            tokens: text[start..start + len].to_vec(),
            targets: text[start + 1..start + len + 1]
                .iter()
                .map(|&t| Some(t))
                .collect(),
        }
    }
}

impl TaskData for ShakespeareTask {
    fn tokenizer(&self) -> TokenizerSpec {
        TokenizerSpec::Char {
            vocab: self.corpus.vocab.iter().map(|c| c.to_string()).collect(),
        }
    }
    fn vocab_size(&self) -> usize {
        self.corpus.vocab.len()
    }
    fn n_ctx(&self) -> usize {
        self.n_ctx
    }
    fn metric(&self) -> MetricKind {
        MetricKind::ValidationLoss
    }
    fn batch(&self, rng: &mut ChaCha8Rng, size: usize) -> Vec<Sequence> {
        let text = &self.corpus.train;
        let starts = (text.len() - self.n_ctx - 1) as u64;
        (0..size)
            .map(|_| Self::window(text, (rng.next_u64() % starts) as usize, self.n_ctx))
            .collect()
    }
    /// `HELD_OUT_WINDOWS` (256) windows spread evenly over the validation text (every play's tail).
    fn held_out(&self) -> Vec<Sequence> {
        let text = &self.corpus.validation;
        let last_start = text.len() - self.n_ctx - 1;
        (0..HELD_OUT_WINDOWS)
            .map(|i| Self::window(text, i * last_start / (HELD_OUT_WINDOWS - 1), self.n_ctx))
            .collect()
    }
    fn example_inputs(&self) -> Vec<String> {
        EXAMPLES.map(String::from).to_vec()
    }
    fn scoring(&self) -> &'static str {
        "every position of held-out text: the next character"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_splits_every_play_and_windows_are_shifted_by_one() {
        let speech = "A:\nTo be, or not to be, that is the question.\n\n".repeat(20);
        let corpus = Corpus::from_plays(&[speech.clone(), speech.replace('A', "B")]);
        assert_eq!(corpus.plays, 2);
        assert!(corpus.vocab.contains(&'B') && corpus.vocab.contains(&'\n'));
        let ratio = corpus.validation.len() as f64 / corpus.train.len() as f64;
        assert!((0.1..0.12).contains(&ratio), "{ratio}");
        let task = ShakespeareTask::new(corpus, 16).unwrap();
        for w in task.held_out() {
            assert_eq!(w.tokens.len(), 16);
            assert_eq!(
                w.tokens[1..],
                w.targets[..15]
                    .iter()
                    .map(|t| t.unwrap())
                    .collect::<Vec<_>>()[..]
            );
        }
    }

    #[test]
    fn the_pages_bundled_plays_make_a_corpus() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../static/train/shakespeare.json"
        );
        let corpus = Corpus::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(corpus.plays, 2);
        assert!(corpus.train.len() > 150_000 && corpus.validation.len() > 15_000);
        let task = ShakespeareTask::new(corpus, 64).unwrap();
        assert!(task.vocab_size() > 50 && task.vocab_size() < 100);
        assert!(Corpus::from_json("{\"plays\": 3}").is_err());
    }

    #[test]
    fn a_text_shorter_than_a_window_is_refused() {
        let corpus = Corpus::from_plays(&["To be, or not to be.".to_string()]);
        let e = ShakespeareTask::new(corpus, 16).err().unwrap().to_string();
        assert!(e.contains("too short"), "{e}");
    }
}
