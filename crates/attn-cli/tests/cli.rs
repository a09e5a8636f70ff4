//! The `attn` binary end to end: real files in, JSON out, clear errors.

use std::path::PathBuf;
use std::process::Output;

use crate::common::{attn, flatten_floats, json_of, HfFixture};

use attn_model::config::ModelConfig;
use attn_model::{CpuEngine, Model, Variant};

/// A fresh directory for one test's files, removed when the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A random model saved in a scratch directory; keep the guard alive while using the path.
fn saved_model(name: &str) -> (PathBuf, Model, Scratch) {
    let dir = std::env::temp_dir().join(format!("attn-cli-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = Model::random(ModelConfig::tiny(40), 21, 0.4).unwrap();
    let path = dir.join("model.safetensors");
    std::fs::write(&path, model.to_safetensors_bytes().unwrap()).unwrap();
    (path, model, Scratch(dir))
}

fn failure(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !err.contains("panicked"),
        "a panic instead of an error: {err}"
    );
    err
}

#[test]
fn inspect_reports_config_and_parameters() {
    let (path, model, _scratch) = saved_model("inspect");
    let report = json_of(&attn(&["inspect", path.to_str().unwrap(), "--json"]));
    assert_eq!(report["config"]["n_layer"], 2);
    assert_eq!(report["parameters"], model.parameter_count());
    let text = attn(&["inspect", path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("2 layers × 4 heads"));
}

#[test]
fn run_prints_the_forward_of_the_library() {
    let (path, model, _scratch) = saved_model("run");
    let variant = r#"{"kv_groups": 2, "window": 3}"#;
    let report = json_of(&attn(&[
        "run",
        path.to_str().unwrap(),
        "--tokens",
        "1,5,9,2",
        "--variant",
        variant,
        "--attention",
        "--json",
    ]));
    let mut engine = CpuEngine::new(model).unwrap();
    engine
        .set_variant(&Variant::from_json(variant).unwrap())
        .unwrap();
    let expected = engine.forward(&[1, 5, 9, 2]).unwrap();
    assert_eq!(report["tokens"], serde_json::json!([1, 5, 9, 2]));
    assert_eq!(report["kv_bytes_per_token"], expected.kv_bytes_per_token);
    let logits = report["logits"].as_array().unwrap();
    assert_eq!(logits.len(), 4);
    assert_eq!(logits[3].as_array().unwrap().len(), 40);
    assert_eq!(
        logits[2][7].as_f64().unwrap() as f32,
        expected.logits_at(2)[7]
    );
    let attention = report["attention"].as_array().unwrap();
    assert_eq!(attention.len(), 2);
    assert_eq!(attention[1].as_array().unwrap().len(), 4);
    assert_eq!(
        attention[1][3][2][1].as_f64().unwrap() as f32,
        expected.attention_map(1, 3)[2 * 4 + 1]
    );
    let top = report["top"].as_array().unwrap();
    assert_eq!(top.len(), 10);
    assert_eq!(top[0][0], expected.argmax_at(3));
    // Without --attention there are no maps; without --json a readable report.
    let plain = json_of(&attn(&[
        "run",
        path.to_str().unwrap(),
        "--tokens",
        "1,2",
        "--json",
    ]));
    assert!(plain.get("attention").is_none());
    let text = attn(&["run", path.to_str().unwrap(), "--tokens", "1,2"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("next token:"));
}

#[test]
fn variant_can_come_from_a_file() {
    let (path, _, _scratch) = saved_model("variant-file");
    let variant_path = path.with_file_name("variant.json");
    std::fs::write(&variant_path, r#"{"kv_rank": 4}"#).unwrap();
    let report = json_of(&attn(&[
        "run",
        path.to_str().unwrap(),
        "--tokens",
        "3,4",
        "--variant",
        variant_path.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(report["kv_bytes_per_token"], 2 * 4 * 4);
}

#[test]
fn compare_reports_the_cost_of_a_variant() {
    let (path, _, _scratch) = saved_model("compare");
    let report = json_of(&attn(&[
        "compare",
        path.to_str().unwrap(),
        "--tokens",
        "1,2,3,4,5,6",
        "--variant",
        r#"{"kv_groups": 1}"#,
        "--json",
    ]));
    assert!(report["mean_kl"].as_f64().unwrap() > 0.0);
    assert_eq!(report["kl_per_position"].as_array().unwrap().len(), 6);
    assert_eq!(report["baseline_kv_bytes_per_token"], 256);
    assert_eq!(report["variant_kv_bytes_per_token"], 64);
    assert!(report["variant_nll"].as_f64().is_some());
    let same = json_of(&attn(&[
        "compare",
        path.to_str().unwrap(),
        "--tokens",
        "1,2,3",
        "--variant",
        "{}",
        "--json",
    ]));
    assert_eq!(same["mean_kl"], 0.0);
    assert_eq!(same["top1_agreement"], 1.0);
}

#[test]
fn roles_score_every_head() {
    let (path, _, _scratch) = saved_model("roles");
    let report = json_of(&attn(&["roles", path.to_str().unwrap(), "--json"]));
    let heads = report["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 8);
    for h in heads {
        for key in [
            "previous_token",
            "first_token",
            "self_attention",
            "induction",
        ] {
            let v = h[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
    }
    let text = attn(&["roles", path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("induction"));
}

/// The built-in induction model carries the textbook circuit, and `attn roles` names it: a
/// previous-token head in layer 0 (score ≥ 0.8) and an induction head in layer 1 (≥ 0.7).
#[test]
fn roles_name_the_induction_models_circuit() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../static/models/induction.safetensors");
    let report = json_of(&attn(&["roles", path.to_str().unwrap(), "--json"]));
    let heads = report["heads"].as_array().unwrap();
    let best = |key: &str, layer: u64| {
        heads
            .iter()
            .filter(|h| h["layer"] == layer)
            .max_by(|a, b| {
                a[key]
                    .as_f64()
                    .unwrap()
                    .total_cmp(&b[key].as_f64().unwrap())
            })
            .unwrap()
            .clone()
    };
    let previous = best("previous_token", 0);
    assert!(
        previous["previous_token"].as_f64().unwrap() >= 0.8,
        "{previous}"
    );
    assert_eq!(previous["role"], "previous-token", "{previous}");
    let induction = best("induction", 1);
    assert!(
        induction["induction"].as_f64().unwrap() >= 0.7,
        "{induction}"
    );
    assert_eq!(induction["role"], "induction", "{induction}");
}

/// The role scores are the published definitions applied to the maps `attn run --attention`
/// returns on each probe sequence, averaged over the batch.
#[test]
fn roles_equal_their_definitions_on_the_maps_of_attn_run() {
    let (path, model, _scratch) = saved_model("role-definitions");
    let p = path.to_str().unwrap();
    let report = json_of(&attn(&["roles", p, "--seed", "4", "--json"]));
    let probe: Vec<Vec<u32>> = serde_json::from_value(report["probe"].clone()).unwrap();
    assert!(probe.len() >= 8);
    let c = &model.config;
    // Sums over the batch, per head: previous, induction, duplicate, first, self.
    let mut sums = vec![[0.0f64; 5]; c.n_layer * c.n_head];
    for seq in &probe {
        let n = seq.len() / 2;
        assert_eq!(seq[..n], seq[n..]);
        let tokens = seq.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let run = json_of(&attn(&[
            "run",
            p,
            "--tokens",
            &tokens,
            "--attention",
            "--json",
        ]));
        let t = seq.len();
        for layer in 0..c.n_layer {
            for head in 0..c.n_head {
                let map = &run["attention"][layer][head];
                let a = |i: usize, j: usize| map[i][j].as_f64().unwrap();
                let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
                let s = &mut sums[layer * c.n_head + head];
                s[0] += mean((1..t).map(|i| a(i, i - 1)).collect());
                s[1] += mean((n..t).map(|i| a(i, i - n + 1)).collect());
                s[2] += mean((n..t).map(|i| a(i, i - n)).collect());
                s[3] += mean((1..t).map(|i| a(i, 0)).collect());
                s[4] += mean((1..t).map(|i| a(i, i)).collect());
            }
        }
    }
    let keys = [
        "previous_token",
        "induction",
        "duplicate_token",
        "first_token",
        "self_attention",
    ];
    for (h, head) in report["heads"].as_array().unwrap().iter().enumerate() {
        for (k, key) in keys.iter().enumerate() {
            let want = sums[h][k] / probe.len() as f64;
            let got = head[key].as_f64().unwrap();
            assert!((got - want).abs() < 1e-5, "head {h} {key}: {got} vs {want}");
        }
        let copying = head["copying"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&copying), "{copying}");
    }
}

#[test]
fn bad_input_fails_with_a_message() {
    let (path, _, _scratch) = saved_model("errors");
    let p = path.to_str().unwrap();
    let err = failure(&attn(&["run", "/nonexistent.safetensors", "--tokens", "1"]));
    assert!(
        err.contains("cannot load /nonexistent.safetensors"),
        "{err}"
    );
    let err = failure(&attn(&[
        "run",
        p,
        "--tokens",
        "1",
        "--variant",
        r#"{"kv_groups": 3}"#,
    ]));
    assert!(err.contains("kv_groups 3 must divide"), "{err}");
    let err = failure(&attn(&["run", p, "--tokens", "1", "--variant", "{oops"]));
    assert!(err.contains("invalid JSON in variant"), "{err}");
    let err = failure(&attn(&[
        "run",
        p,
        "--tokens",
        "1",
        "--variant",
        "no-such-file.json",
    ]));
    assert!(err.contains("neither JSON"), "{err}");
    let err = failure(&attn(&["run", p, "--tokens", "1,99"]));
    assert!(err.contains("outside the vocabulary"), "{err}");
    let err = failure(&attn(&["run", p, "--prompt", "hello"]));
    assert!(err.contains("no tokenizer"), "{err}");
    let garbage = path.with_file_name("garbage.safetensors");
    std::fs::write(&garbage, b"not a model").unwrap();
    let err = failure(&attn(&["inspect", garbage.to_str().unwrap()]));
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn importance_ranks_every_head_and_generate_continues() {
    let (path, _, _scratch) = saved_model("importance");
    let p = path.to_str().unwrap();
    let report = json_of(&attn(&[
        "importance",
        p,
        "--tokens",
        "1,2,3,4,5,1,2,3",
        "--json",
    ]));
    let heads = report["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 8);
    let losses: Vec<f64> = heads
        .iter()
        .map(|h| h["loss_increase"].as_f64().unwrap())
        .collect();
    assert!(losses.windows(2).all(|w| w[0] >= w[1]));
    let generate = |more: &[&str]| {
        let mut args = vec!["generate", p, "--tokens", "1,2", "-n", "5", "--json"];
        args.extend(more);
        json_of(&attn(&args))
    };
    let out = generate(&[]);
    assert_eq!(out["tokens"].as_array().unwrap().len(), 5);
    assert_eq!(out["generated"], out["tokens"]);
    assert_eq!(out["prompt_tokens"], 2);
    assert!(out["tokens_per_second"].as_f64().unwrap() > 0.0);
    let again = generate(&[]);
    assert_eq!(
        out["tokens"], again["tokens"],
        "same seed, same continuation"
    );
    // The cache holds the keys and values of every token but the last generated one (never
    // run): 6 positions × 2 layers × K and V × 4 heads × 4 dimensions, f32.
    assert_eq!(out["kv_cache_bytes"], 6 * 2 * 2 * 4 * 4 * 4);
    let recomputed = generate(&["--no-cache"]);
    assert_eq!(
        recomputed["tokens"], out["tokens"],
        "the cache changes no token"
    );
    assert!(recomputed["kv_cache_bytes"].is_null());
    // One key/value head for four: a quarter of the bytes.
    let pooled = generate(&["--variant", r#"{"kv_groups": 1}"#, "--temperature", "0"]);
    assert_eq!(pooled["kv_cache_bytes"], 6 * 2 * 2 * 4 * 4);
}

/// `attn run` on the committed Hugging Face fixture reproduces PyTorch for every variant case.
#[test]
fn run_on_the_hf_fixture_matches_pytorch_for_every_variant() {
    let fixture = HfFixture::load();
    // The prompt goes through the CLI's tokenizer, so tokenisation is checked on the way.
    let (dir, prompt, cases) = (&fixture.dir, &fixture.prompt, &fixture.cases);
    let tensor = |name: &str| fixture.tensor(name);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let report = json_of(&attn(&[
            "run",
            dir.to_str().unwrap(),
            "--prompt",
            prompt,
            "--variant",
            &case["variant"].to_string(),
            "--attention",
            "--json",
        ]));
        let logits = flatten_floats(&report["logits"]);
        let attention = flatten_floats(&report["attention"]);
        for (what, got, want) in [
            ("logits", logits, tensor(&format!("{name}.logits"))),
            ("attention", attention, tensor(&format!("{name}.attention"))),
        ] {
            assert_eq!(got.len(), want.len(), "{name} {what}");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{name} {what}[{i}]: {a} vs PyTorch {b}"
                );
            }
        }
        assert_eq!(
            report["kv_bytes_per_token"], case["kv_bytes_per_token"],
            "{name}"
        );
    }
}

/// `attn circuits --json`: every head's circuits and a composition score for every pair of heads
/// in different layers (only from earlier to later ones).
#[test]
fn circuits_report_every_head_and_every_later_pair() {
    let (path, model, _scratch) = saved_model("circuits");
    let report = json_of(&attn(&["circuits", path.to_str().unwrap(), "--json"]));
    let c = &model.config;
    let heads = c.n_layer * c.n_head;
    assert_eq!(report["heads"].as_array().unwrap().len(), heads);
    assert_eq!(
        report["heads"][0]["qk_singular_values"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    for kind in ["q", "k", "v"] {
        let scores = report[kind].as_array().unwrap();
        assert_eq!(scores.len(), heads);
        for (a, row) in scores.iter().enumerate() {
            for (b, score) in row.as_array().unwrap().iter().enumerate() {
                let score = score.as_f64().unwrap();
                let later = b / c.n_head > a / c.n_head;
                assert!(
                    if later {
                        score > 0.0 && score <= 1.0
                    } else {
                        score == 0.0
                    },
                    "{kind} {a}→{b}: {score}"
                );
            }
        }
    }
    let text = attn(&["circuits", path.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("strongest compositions"));
}

/// `attn lesson`: the list, and one lesson over its samples in the documented JSON — each
/// number's mean inside its interval, one value per input, the verdict the lesson expects — and
/// the same numbers on another model given with `--model`.
#[test]
fn lesson_lists_and_measures_over_samples() {
    let list = json_of(&attn(&["lesson", "--list", "--json"]));
    let ids: Vec<&str> = list["lessons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert!(ids.len() >= 8 && ids.contains(&"one-head"), "{ids:?}");
    let report = json_of(&attn(&["lesson", "one-head", "--json"]));
    assert_eq!(report["id"], "one-head");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for step in steps {
        for r in step["results"].as_array().unwrap() {
            let (mean, low, high) = (
                r["mean"].as_f64().unwrap(),
                r["low"].as_f64().unwrap(),
                r["high"].as_f64().unwrap(),
            );
            assert!(low <= mean + 1e-12 && mean <= high + 1e-12, "{r}");
            assert_eq!(
                r["values"].as_array().unwrap().len(),
                r["n"].as_u64().unwrap() as usize
            );
            assert!(r["n"].as_u64().unwrap() >= 32);
            assert_eq!(r["verdict"], r["expected"], "{r}");
            assert!(r["paper"].as_str().is_some_and(|p| !p.is_empty()));
        }
    }
    // Both steps again on the four-head model: its least needed head costs nothing, so the
    // one-head claim (step 1) is not reproduced there.
    let sort = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../static/models/sort.safetensors"
    );
    let report = json_of(&attn(&["lesson", "one-head", "--model", sort, "--json"]));
    let first = &report["steps"][0]["results"][0];
    assert_eq!(first["verdict"], "not reproduced", "{first}");
    // A language model from disk runs the steps marked for any language model, on itself.
    let llama = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/families/llama-gqa-tied"
    );
    let report = json_of(&attn(&["lesson", "sharing-kv", "--model", llama, "--json"]));
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{report}");
    assert_eq!(steps[0]["step"], 6);
    assert!(report["model"]
        .as_str()
        .unwrap()
        .ends_with("llama-gqa-tied"));
    let err = failure(&attn(&["lesson", "one-head", "--model", llama]));
    assert!(err.contains("any_language_model"), "{err}");
    let err = failure(&attn(&["lesson", "no-such-lesson"]));
    assert!(
        err.contains("one-head"),
        "the error lists the lessons: {err}"
    );
}

/// `attn heads`: every head's metrics over the built-in corpus in the documented JSON — on the
/// induction model its held-out sequences, where the induction head (layer 1) leads both
/// induction scores — and a clear message for a corpus file that is not there.
#[test]
fn heads_are_measured_over_a_corpus() {
    let induction = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../static/models/induction.safetensors"
    );
    let report = json_of(&attn(&["heads", induction, "--windows", "50", "--json"]));
    assert_eq!(report["windows"], 50);
    assert!(report["corpus"]
        .as_str()
        .unwrap()
        .contains("induction task"));
    let heads = report["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 4);
    let best = |key: &str| {
        heads
            .iter()
            .max_by(|a, b| {
                a[key]
                    .as_f64()
                    .unwrap()
                    .total_cmp(&b[key].as_f64().unwrap())
            })
            .unwrap()
    };
    assert_eq!(best("induction")["layer"], 1);
    assert_eq!(best("induction_probe")["layer"], 1);
    assert_eq!(best("previous_token")["layer"], 0);
    for h in heads {
        for key in [
            "self",
            "first_token",
            "entropy",
            "distance_mean",
            "distance_std",
        ] {
            assert!(h[key].as_f64().is_some(), "{key}: {h}");
        }
        let top = h["top"].as_array().unwrap();
        let induction = top.iter().filter(|t| t["metric"] == "induction").count();
        assert!((1..=5).contains(&induction), "{h}");
    }
    let err = failure(&attn(&[
        "heads",
        induction,
        "--corpus",
        "/no/such/text.txt",
    ]));
    assert!(err.contains("/no/such/text.txt"), "{err}");
}

#[test]
fn qk_splits_a_score_into_parts_that_sum_to_it() {
    let induction = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../static/models/induction.safetensors"
    );
    // A repeated stretch: the second 9 (position 6) looks for what followed the first 9 (the
    // 3 at position 2) — the induction head L1 H1's target.
    let args = [
        "qk",
        induction,
        "--tokens",
        "5,9,3,7,2,5,9",
        "--layer",
        "1",
        "--head",
        "1",
        "--query",
        "6",
        "--key",
        "2",
        "--json",
    ];
    let report = json_of(&attn(&args));
    let score = report["score"].as_f64().unwrap();
    let parts = report["parts"].as_array().unwrap();
    // embeddings, L0H0, L0H1 and the biases on each side (the model has no MLPs).
    assert_eq!(report["components"].as_array().unwrap().len(), 4);
    assert_eq!(parts.len(), 16);
    let sum: f64 = parts.iter().map(|p| p["value"].as_f64().unwrap()).sum();
    assert!(
        (sum - score).abs() <= 1e-4 * score.abs().max(1.0),
        "{sum} vs {score}"
    );
    for p in parts {
        assert!(
            p["query_side"].is_string() && p["key_side"].is_string(),
            "{p}"
        );
    }
    // The key side's largest part is what the previous-token head L0 H1 wrote into the key, and
    // the largest pair is that against the query's own token: K-composition, as `attn circuits`
    // finds it from the weights.
    assert_eq!(parts[0]["query_side"], "embeddings");
    assert_eq!(parts[0]["key_side"], "L0H1");
    let components = report["components"].as_array().unwrap();
    let key_totals: Vec<f64> = report["key_totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let largest = (0..key_totals.len())
        .max_by(|&a, &b| key_totals[a].total_cmp(&key_totals[b]))
        .unwrap();
    assert_eq!(components[largest], "L0H1", "{key_totals:?}");
    // The score is the one the map shows: its softmax over the query's keys is `attn run`'s row.
    let run = json_of(&attn(&[
        "run",
        induction,
        "--tokens",
        "5,9,3,7,2,5,9",
        "--attention",
        "--json",
    ]));
    let row = &run["attention"][1][1][6];
    let scores: Vec<f64> = (0..=6)
        .map(|key| {
            let key = key.to_string();
            let mut args = args.to_vec();
            args[11] = &key;
            json_of(&attn(&args))["score"].as_f64().unwrap()
        })
        .collect();
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
    for (key, s) in scores.iter().enumerate() {
        let p = (s - max).exp() / total;
        let want = row[key].as_f64().unwrap();
        assert!((p - want).abs() < 1e-5, "key {key}: {p} vs {want}");
    }
    let err = failure(&attn(&[
        "qk", induction, "--tokens", "5,9,3", "--layer", "1", "--head", "1", "--query", "0",
        "--key", "2",
    ]));
    assert!(err.contains("masked"), "{err}");
}

#[test]
fn steer_prints_the_run_under_steering() {
    let (path, model, _scratch) = saved_model("steer");
    let path = path.to_str().unwrap();
    let tokens = ["--tokens", "1,5,9,2,7"];
    let steer = |extra: &[&str]| {
        let mut args = vec!["steer", path];
        args.extend(tokens);
        args.extend(["--layer", "1", "--json"]);
        args.extend(extra);
        attn(&args)
    };
    let run = json_of(&attn(
        &[&["run", path][..], &tokens[..], &["--json"]].concat(),
    ));
    // Coefficient 0: exactly the unmodified run.
    let idle = json_of(&steer(&[
        "--plus",
        "3,4",
        "--minus",
        "8",
        "--coefficient",
        "0",
    ]));
    assert_eq!(idle["logits"], run["logits"]);
    assert_eq!(idle["steering"]["layer"], 1);
    // A strong steer moves the prediction at the steered positions only.
    let strong = json_of(&steer(&[
        "--plus",
        "3,4",
        "--minus",
        "8",
        "--coefficient",
        "-20",
        "--from",
        "3",
    ]));
    let rows = |v: &serde_json::Value| v["logits"].as_array().unwrap().clone();
    assert_eq!(rows(&strong)[..3], rows(&run)[..3]);
    assert_ne!(rows(&strong)[3..], rows(&run)[3..]);
    // The same vector from a file gives the same output.
    let mut engine = CpuEngine::new(model.clone()).unwrap();
    let vector =
        attn_model::engine::now(attn_model::actadd_vector(&mut engine, &[3, 4], &[8], 1)).unwrap();
    let file = std::env::temp_dir().join(format!("attn-steer-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_string(&vector).unwrap()).unwrap();
    let from_file = json_of(&steer(&[
        "--vector",
        file.to_str().unwrap(),
        "--coefficient",
        "-20",
        "--from",
        "3",
    ]));
    std::fs::remove_file(&file).unwrap();
    assert_eq!(from_file["logits"], strong["logits"]);
    let err = failure(&attn(&[
        "steer",
        path,
        "--tokens",
        "1,2",
        "--layer",
        "5",
        "--plus",
        "3",
        "--minus",
        "4",
        "--coefficient",
        "1",
    ]));
    assert!(err.contains("layer"), "{err}");
    let err = failure(&attn(&[
        "steer",
        path,
        "--tokens",
        "1,2",
        "--layer",
        "0",
        "--coefficient",
        "1",
    ]));
    assert!(err.contains("--plus A --minus B"), "{err}");
    // The lens direction: the vector attn_model computes, and toward the token it names.
    let toward = json_of(&steer(&[
        "--toward",
        "6",
        "--away",
        "2",
        "--coefficient",
        "3",
    ]));
    let vector = attn_model::engine::now(attn_model::lens_vector(
        &mut engine,
        &[1, 5, 9, 2, 7],
        1,
        (6, Some(2)),
    ))
    .unwrap();
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    let got = toward["steering"]["vector_norm"].as_f64().unwrap();
    assert!(
        (got - norm as f64).abs() < 1e-4 * norm as f64,
        "{got} vs {norm}"
    );
    let difference = |v: &serde_json::Value| {
        let last = v["logits"].as_array().unwrap().last().unwrap().clone();
        last[6].as_f64().unwrap() - last[2].as_f64().unwrap()
    };
    assert!(
        difference(&toward) > difference(&run),
        "steering toward 6 raises it over 2"
    );
    let err = failure(&steer(&["--toward", "1,2", "--coefficient", "1"]));
    assert!(err.contains("one token"), "{err}");
}
