//! The right answer for the built-in task models, worked out from the input alone, so the page
//! can say whether the model's prediction is correct. The rules are those of the trainer's task
//! generators (`crates/attn-train/src/tasks/`), over the tokens as the page shows them.

/// What the next output should be, or why there is no single right answer here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The output the task determines.
    Answer(String),
    /// The task does not determine the next output at this point (e.g. still inside the input).
    Open(&'static str),
}

/// The expected next output after `tokens` (labels as shown in the token chips) for `task`
/// (`metadata.task`); `None` for models that are not one of the built-in tasks.
pub fn expected(task: &str, tokens: &[String]) -> Option<Expected> {
    let sep = tokens.iter().position(|t| t == "|");
    let answer = |s: &str| Expected::Answer(s.to_string());
    Some(match task {
        "sort" | "reverse" => match sep {
            None => Expected::Open("type `|` after the input and the model starts answering"),
            Some(sep) => {
                let mut target: Vec<&String> = tokens[..sep].iter().collect();
                if task == "sort" {
                    target.sort_by_key(|t| t.parse::<u32>().unwrap_or(u32::MAX));
                } else {
                    target.reverse();
                }
                match target.get(tokens.len() - sep - 1) {
                    Some(t) => answer(t),
                    None => Expected::Open("the whole answer has been written"),
                }
            }
        },
        "recall" => match sep {
            None => Expected::Open("type `|` and a key to ask for its value"),
            Some(sep) => {
                let asked = tokens.len() - sep - 1;
                if asked % 2 == 0 {
                    return Some(Expected::Open("type a key to ask for its value"));
                }
                let key = &tokens[tokens.len() - 1];
                let pairs = &tokens[..sep];
                match pairs.chunks(2).find(|p| p.len() == 2 && &p[0] == key) {
                    Some(p) => answer(&p[1]),
                    None => Expected::Open("that key is not among the pairs"),
                }
            }
        },
        "induction" => {
            let (last, before) = tokens.split_last()?;
            match before.iter().rposition(|t| t == last) {
                Some(i) => answer(&tokens[i + 1]),
                None => Expected::Open("the last letter has not occurred before"),
            }
        }
        "brackets" => {
            let mut depth = 0i64;
            let mut balanced = true;
            for t in tokens {
                depth += if t == "(" { 1 } else { -1 };
                balanced &= depth >= 0;
            }
            answer(if balanced && depth == 0 {
                "balanced"
            } else {
                "unbalanced"
            })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn answer(task: &str, s: &str) -> Option<Expected> {
        expected(task, &toks(s))
    }

    fn is(s: &str) -> Option<Expected> {
        Some(Expected::Answer(s.to_string()))
    }

    #[test]
    fn sort_and_reverse_follow_the_written_answer() {
        assert_eq!(answer("sort", "7 2 15 9 0 |"), is("0"));
        assert_eq!(answer("sort", "7 2 15 9 0 | 0 2"), is("7"));
        assert_eq!(
            answer("sort", "7 2 15 | 2 7 15"),
            Some(Expected::Open("the whole answer has been written"))
        );
        assert!(matches!(answer("sort", "7 2"), Some(Expected::Open(_))));
        assert_eq!(answer("reverse", "1 2 3 |"), is("3"));
        assert_eq!(answer("reverse", "1 2 3 | 3 2"), is("1"));
    }

    #[test]
    fn recall_looks_the_key_up() {
        assert_eq!(answer("recall", "a 3 f 7 k 1 | f"), is("7"));
        assert_eq!(answer("recall", "a 3 f 7 | f 7 a"), is("3"));
        assert!(matches!(
            answer("recall", "a 3 f 7 | f 7"),
            Some(Expected::Open(_))
        ));
        assert!(matches!(
            answer("recall", "a 3 | z"),
            Some(Expected::Open(_))
        ));
    }

    #[test]
    fn induction_copies_what_followed_the_last_occurrence() {
        assert_eq!(answer("induction", "q x z m b x z m"), is("b"));
        assert!(matches!(
            answer("induction", "q x z"),
            Some(Expected::Open(_))
        ));
    }

    #[test]
    fn brackets_checks_prefixes_and_totals() {
        assert_eq!(answer("brackets", "( ( ) )"), is("balanced"));
        assert_eq!(answer("brackets", ") ( ( )"), is("unbalanced"));
        assert_eq!(answer("brackets", "( ( )"), is("unbalanced"));
        assert_eq!(answer("shakespeare", "a b"), None);
    }
}
