//! Everything a link must reproduce: model, input, engine choice, variant and the enlarged map.
//! Encoded as readable query parameters (`?model=induction&prompt=…&kv_groups=1&ablate=1.0`).

use attn_model::url::{variant_from_query, variant_to_query};
use attn_model::{Sampling, Variant};

use crate::protocol::EngineChoice;
use crate::train_state::TrainSettings;

/// Activation steering as the page keeps it (`steer=LAYER,COEFFICIENT,FROM`, `steer_plus=TEXT`,
/// `steer_minus=TEXT`, `steer_vector=lens`): ActAdd's "prompt A minus prompt B" (or the lens's
/// direction toward a token) added to the residual stream before
/// `layer`, times `coefficient`, from position `from` on. The worker tokenizes nothing: the page
/// sends the prompts' ids.
#[derive(Clone, Debug, PartialEq)]
pub struct SteerSpec {
    pub layer: usize,
    pub coefficient: f32,
    pub from: usize,
    pub plus: String,
    pub minus: String,
    /// The vector is the logit lens's direction toward the token `plus` (away from the token
    /// `minus`, when given) instead of ActAdd's difference of the two prompts (`steer_vector=lens`).
    pub lens: bool,
}

impl SteerSpec {
    /// "+4 × (“ love” − “ hate”) before layer 2, from position 3"; the lens direction is
    /// "+4 × lens(“ love” − “ hate”) …", or "lens(“ love”)" toward one token alone.
    pub fn describe(&self) -> String {
        let vector = match (self.lens, self.minus.is_empty()) {
            (true, true) => format!("lens(“{}”)", self.plus),
            (true, false) => format!("lens(“{}” − “{}”)", self.plus, self.minus),
            (false, _) => format!("(“{}” − “{}”)", self.plus, self.minus),
        };
        format!(
            "{:+} × {vector} before layer {}{}",
            self.coefficient,
            self.layer,
            match self.from {
                0 => String::new(),
                f => format!(", from position {f}"),
            }
        )
    }
}

/// The state a URL carries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PageState {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub engine: EngineChoice,
    pub variant: Variant,
    /// The enlarged heatmap, `(layer, head)`.
    pub focus: Option<(usize, usize)>,
    /// Show maps as the difference to the baseline.
    pub diff: bool,
    /// The open lesson and its step (1-based in the URL, 0-based here).
    pub lesson: Option<String>,
    pub step: usize,
    /// Show only what the open lesson uses (for an `<iframe>` in slides or a course page).
    pub embed: bool,
    /// The training panel's settings, when it is open.
    pub train: Option<TrainSettings>,
    /// `simd=plain`: run the compute worker built for plain wasm SIMD even where the browser has
    /// relaxed SIMD (to compare the two, or to rule the faster one out).
    pub plain_simd: bool,
    /// `threads=1`: run the compute worker without threads even where the page is cross-origin
    /// isolated (to compare, or to rule threads out).
    pub one_thread: bool,
    /// How *Generate* picks tokens: `temperature` (0 greedy), `sample_k` (0 all) and `seed`.
    pub sampling: Sampling,
    /// Activation steering, when on.
    pub steer: Option<SteerSpec>,
}

impl PageState {
    /// Query pairs in a stable order; defaults are left out so links stay short.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        if let Some(m) = &self.model {
            pairs.push(("model".to_string(), m.clone()));
        }
        if let Some(p) = &self.prompt {
            pairs.push(("prompt".to_string(), p.clone()));
        }
        if self.engine != EngineChoice::Auto {
            pairs.push(("engine".to_string(), self.engine.as_str().to_string()));
        }
        pairs.extend(variant_to_query(&self.variant));
        if let Some((l, h)) = self.focus {
            pairs.push(("focus".to_string(), format!("{l}.{h}")));
        }
        if self.diff {
            pairs.push(("diff".to_string(), "1".to_string()));
        }
        if let Some(lesson) = &self.lesson {
            pairs.push(("lesson".to_string(), lesson.clone()));
            pairs.push(("step".to_string(), (self.step + 1).to_string()));
        }
        if self.embed {
            pairs.push(("embed".to_string(), "1".to_string()));
        }
        if let Some(train) = &self.train {
            pairs.extend(train.to_pairs());
        }
        if self.plain_simd {
            pairs.push(("simd".to_string(), "plain".to_string()));
        }
        let default = Sampling::default();
        if self.sampling.temperature != default.temperature {
            pairs.push(("temperature".into(), self.sampling.temperature.to_string()));
        }
        if self.sampling.top_k != default.top_k {
            pairs.push(("sample_k".into(), self.sampling.top_k.to_string()));
        }
        if self.sampling.seed != default.seed {
            pairs.push(("seed".into(), self.sampling.seed.to_string()));
        }
        if self.one_thread {
            pairs.push(("threads".to_string(), "1".to_string()));
        }
        if let Some(s) = &self.steer {
            pairs.push((
                "steer".into(),
                format!("{},{},{}", s.layer, s.coefficient, s.from),
            ));
            pairs.push(("steer_plus".into(), s.plus.clone()));
            pairs.push(("steer_minus".into(), s.minus.clone()));
            if s.lens {
                pairs.push(("steer_vector".into(), "lens".into()));
            }
        }
        pairs
    }

    /// Reads the state from query pairs; returns it with one message per ignored value.
    pub fn from_pairs(pairs: &[(String, String)]) -> (PageState, Vec<String>) {
        let (variant, mut problems) =
            variant_from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut state = PageState {
            variant,
            ..PageState::default()
        };
        for (key, value) in pairs {
            match key.as_str() {
                "model" if !value.is_empty() => state.model = Some(value.clone()),
                "prompt" => state.prompt = Some(value.clone()),
                "engine" => match EngineChoice::parse(value) {
                    Some(e) => state.engine = e,
                    None => problems.push(format!(
                        "ignored engine={value:?}: expected auto, gpu or cpu"
                    )),
                },
                "focus" => {
                    let parsed = value
                        .split_once('.')
                        .and_then(|(l, h)| Some((l.parse().ok()?, h.parse().ok()?)));
                    match parsed {
                        Some(f) => state.focus = Some(f),
                        None => {
                            problems.push(format!("ignored focus={value:?}: expected LAYER.HEAD"))
                        }
                    }
                }
                "diff" => state.diff = value == "1" || value == "true",
                "lesson" if !value.is_empty() => state.lesson = Some(value.clone()),
                "step" => match value.parse::<usize>() {
                    Ok(n) if n >= 1 => state.step = n - 1,
                    _ => problems.push(format!(
                        "ignored step={value:?}: expected a step number from 1"
                    )),
                },
                "embed" => state.embed = value == "1" || value == "true",
                "simd" => match value.as_str() {
                    "plain" => state.plain_simd = true,
                    "auto" => state.plain_simd = false,
                    _ => problems.push(format!("ignored simd={value:?}: expected auto or plain")),
                },
                "temperature" => match value.parse::<f32>() {
                    Ok(t) if t.is_finite() && (0.0..=10.0).contains(&t) => {
                        state.sampling.temperature = t
                    }
                    _ => problems.push(format!(
                        "ignored temperature={value:?}: expected a number from 0 (greedy) to 10"
                    )),
                },
                "sample_k" => match value.parse::<usize>() {
                    Ok(k) => state.sampling.top_k = k,
                    _ => problems.push(format!(
                        "ignored sample_k={value:?}: expected a count (0 samples among all tokens)"
                    )),
                },
                "seed" => match value.parse::<u64>() {
                    Ok(seed) => state.sampling.seed = seed,
                    _ => problems.push(format!("ignored seed={value:?}: expected a whole number")),
                },
                "threads" => match value.as_str() {
                    "1" => state.one_thread = true,
                    "auto" => state.one_thread = false,
                    _ => problems.push(format!("ignored threads={value:?}: expected auto or 1")),
                },
                _ => {}
            }
        }
        state.steer = steer_from_pairs(pairs, &mut problems);
        state.train = TrainSettings::from_pairs(pairs, &mut problems);
        (state, problems)
    }
}

/// `steer=LAYER,COEFFICIENT,FROM` with `steer_plus` and `steer_minus` (and `steer_vector=lens`
/// for the lens direction); `None` when absent or bad (with a message).
fn steer_from_pairs(pairs: &[(String, String)], problems: &mut Vec<String>) -> Option<SteerSpec> {
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let value = get("steer")?;
    let parts: Vec<&str> = value.split(',').collect();
    let parsed = match parts.as_slice() {
        [layer, coefficient, from] => (|| {
            let coefficient: f32 = coefficient.parse().ok().filter(|c: &f32| c.is_finite())?;
            Some((layer.parse().ok()?, coefficient, from.parse().ok()?))
        })(),
        _ => None,
    };
    let lens = get("steer_vector").as_deref() == Some("lens");
    // The lens direction may point toward one token alone.
    let minus = get("steer_minus").or_else(|| lens.then(String::new));
    match (parsed, get("steer_plus"), minus) {
        (Some((layer, coefficient, from)), Some(plus), Some(minus)) => Some(SteerSpec {
            layer,
            coefficient,
            from,
            plus,
            minus,
            lens,
        }),
        _ => {
            problems.push(format!(
                "ignored steer={value:?}: expected LAYER,COEFFICIENT,FROM with steer_plus and steer_minus"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_pairs() {
        let state = PageState {
            model: Some("induction".into()),
            prompt: Some("a b & c = d".into()),
            engine: EngineChoice::Cpu,
            variant: Variant::from_json(r#"{"kv_groups": 1, "heads": {"ablate": [[1, 0]]}}"#)
                .unwrap(),
            focus: Some((1, 0)),
            diff: true,
            lesson: Some("induction-heads".into()),
            step: 2,
            embed: true,
            train: Some(TrainSettings {
                n_head: 4,
                seed: 3,
                ..TrainSettings::default()
            }),
            plain_simd: true,
            one_thread: true,
            sampling: Sampling {
                temperature: 0.0,
                top_k: 5,
                seed: 9,
            },
            steer: Some(SteerSpec {
                layer: 2,
                coefficient: -1.5,
                from: 3,
                plus: " love, & more".into(),
                minus: " hate".into(),
                lens: false,
            }),
        };
        let pairs = state.to_pairs();
        assert!(
            pairs.contains(&("step".to_string(), "3".to_string())),
            "steps count from 1"
        );
        let (back, problems) = PageState::from_pairs(&pairs);
        assert!(problems.is_empty());
        assert_eq!(back, state);
        assert!(PageState::default().to_pairs().is_empty());
        // The lens direction toward one token.
        let lens = PageState {
            steer: Some(SteerSpec {
                layer: 1,
                coefficient: 2.0,
                from: 0,
                plus: "z".into(),
                minus: String::new(),
                lens: true,
            }),
            ..PageState::default()
        };
        let (back, problems) = PageState::from_pairs(&lens.to_pairs());
        assert!(problems.is_empty());
        assert_eq!(back, lens);
        assert_eq!(
            lens.steer.unwrap().describe(),
            "+2 × lens(“z”) before layer 1"
        );
    }

    #[test]
    fn bad_values_are_reported_not_fatal() {
        let pairs: Vec<(String, String)> = [
            ("engine", "tpu"),
            ("focus", "x"),
            ("kv_groups", "2"),
            ("step", "0"),
            ("simd", "avx"),
            ("steer", "1,x,0"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (state, problems) = PageState::from_pairs(&pairs);
        assert_eq!(state.variant.kv_groups, Some(2));
        assert_eq!(problems.len(), 5);
        assert_eq!(state.steer, None);
    }
}
