//! `attn run --engine gpu` against PyTorch and the CPU engine, and `attn bench`. These need a
//! GPU adapter (lavapipe on CI) and fail loudly without one.

use crate::common::{attn, flatten_floats, json_of, HfFixture};
use attn_test_support::assert_close;

#[test]
fn run_engine_gpu_matches_pytorch_and_the_cpu_for_every_variant() {
    let fixture = HfFixture::load();
    let (dir, prompt, cases) = (&fixture.dir, &fixture.prompt, &fixture.cases);
    let tensor = |name: &str| fixture.tensor(name);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let variant = case["variant"].to_string();
        let run = |engine: &str| {
            json_of(&attn(&[
                "run",
                dir.to_str().unwrap(),
                "--prompt",
                prompt,
                "--variant",
                &variant,
                "--attention",
                "--engine",
                engine,
                "--json",
            ]))
        };
        let (gpu, cpu) = (run("gpu"), run("cpu"));
        let logits = flatten_floats(&gpu["logits"]);
        let attention = flatten_floats(&gpu["attention"]);
        assert_close(
            &format!("{name} logits vs PyTorch"),
            &logits,
            &tensor(&format!("{name}.logits")),
        );
        assert_close(
            &format!("{name} attention vs PyTorch"),
            &attention,
            &tensor(&format!("{name}.attention")),
        );
        assert_close(
            &format!("{name} logits vs cpu"),
            &logits,
            &flatten_floats(&cpu["logits"]),
        );
        assert_close(
            &format!("{name} attention vs cpu"),
            &attention,
            &flatten_floats(&cpu["attention"]),
        );
        assert_eq!(
            gpu["kv_bytes_per_token"], case["kv_bytes_per_token"],
            "{name}"
        );
        assert_eq!(gpu["top_labels"], cpu["top_labels"], "{name}");
    }
}

#[test]
fn bench_reports_both_engines_with_the_adapter() {
    let dir = HfFixture::load().dir;
    let report = json_of(&attn(&[
        "bench",
        dir.to_str().unwrap(),
        "--seq",
        "9",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--variant",
        r#"{"window": 4}"#,
        "--json",
    ]));
    assert_eq!(report["seq_len"], 9);
    assert!(report["flops_per_forward"].as_u64().unwrap() > 0);
    let engines = report["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 2);
    assert_eq!(engines[0]["engine"], "cpu");
    assert_eq!(engines[1]["engine"], "gpu");
    assert!(engines[1]["adapter"].as_str().unwrap().len() > 3);
    assert_eq!(engines[1]["submits_per_forward"], 1);
    // 2 layers × 12 launches + embed + final LN + output projection.
    assert_eq!(engines[1]["dispatches_per_forward"], 27);
    for e in engines {
        let (min, median, max) = (
            e["min_ms"].as_f64().unwrap(),
            e["median_ms"].as_f64().unwrap(),
            e["max_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < min && min <= median && median <= max, "{e}");
    }
    // A per-kernel profile: every launch's kernel counted once, matmul the most launched.
    let profiled = attn(&[
        "bench",
        dir.to_str().unwrap(),
        "--seq",
        "9",
        "--runs",
        "1",
        "--engine",
        "gpu",
        "--profile",
        "--json",
    ]);
    if profiled.status.success() {
        let kernels = json_of(&profiled)["gpu_kernels"].clone();
        let kernels = kernels.as_array().unwrap();
        let launches: u64 = kernels
            .iter()
            .map(|k| k["launches"].as_u64().unwrap())
            .sum();
        assert_eq!(launches, 27, "{kernels:?}");
        assert_eq!(
            kernels.iter().find(|k| k["kernel"] == "matmul").unwrap()["launches"],
            17
        );
    } else {
        // An adapter without timestamp queries says so.
        let message = String::from_utf8_lossy(&profiled.stderr).to_string();
        assert!(message.contains("timestamp"), "{message}");
    }
    // Plain text works too, and bad arguments are errors, not panics.
    let out = attn(&[
        "bench",
        dir.to_str().unwrap(),
        "--runs",
        "1",
        "--engine",
        "cpu",
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("median"));
    let out = attn(&["bench", dir.to_str().unwrap(), "--seq", "999"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--seq"));
}

#[test]
fn analyses_run_on_the_gpu_engine_and_agree_with_the_cpu() {
    let fixture = HfFixture::load();
    let dir = fixture.dir.to_str().unwrap();
    let on = |engine: &str, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([dir, "--engine", engine, "--json"]);
        json_of(&attn(&all))
    };
    let prompt = ["--prompt", "The cat sat on the mat"];
    let importance = |engine| on(engine, &[&["importance"][..], &prompt[..]].concat());
    let (gpu, cpu) = (importance("gpu"), importance("cpu"));
    let heads = |v: &serde_json::Value| -> Vec<(u64, u64)> {
        v["heads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["layer"].as_u64().unwrap(), h["head"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(heads(&gpu), heads(&cpu), "the same ranking");
    let losses = |v: &serde_json::Value| -> Vec<f32> {
        v["heads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["loss_increase"].as_f64().unwrap() as f32)
            .collect()
    };
    assert_close("loss increases", &losses(&gpu), &losses(&cpu));
    let greedy = [
        "generate",
        "--prompt",
        "The",
        "-n",
        "8",
        "--temperature",
        "0",
    ];
    let (gpu, cpu) = (on("gpu", &greedy), on("cpu", &greedy));
    assert_eq!(gpu["generated"], cpu["generated"]);
    // Both decoded from a cache of every token's keys and values: the same bytes.
    assert!(gpu["kv_cache_bytes"].as_u64().unwrap() > 0, "{gpu}");
    assert_eq!(gpu["kv_cache_bytes"], cpu["kv_cache_bytes"]);
    let recomputed = on("gpu", &[&greedy[..], &["--no-cache"]].concat());
    assert_eq!(recomputed["generated"], gpu["generated"]);
    assert!(recomputed["kv_cache_bytes"].is_null());
    let (gpu, cpu) = (on("gpu", &["roles"]), on("cpu", &["roles"]));
    let scores = |v: &serde_json::Value| -> Vec<f32> {
        v["heads"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|h| {
                [
                    "previous_token",
                    "first_token",
                    "self_attention",
                    "induction",
                ]
                .map(|k| h[k].as_f64().unwrap() as f32)
            })
            .collect()
    };
    assert_eq!(
        scores(&cpu).len(),
        4 * 2 * 4,
        "every head of the fixture scored"
    );
    assert_close("role scores", &scores(&gpu), &scores(&cpu));
    // QK attribution from the GPU engine's residual streams and head outputs, on pooled keys.
    let qk = |engine| {
        let args = [
            "qk",
            "--prompt",
            "The cat sat on the mat",
            "--layer",
            "1",
            "--head",
            "2",
            "--query",
            "5",
            "--key",
            "1",
            "--variant",
            r#"{"kv_groups": 2}"#,
        ];
        on(engine, &args)
    };
    let (gpu, cpu) = (qk("gpu"), qk("cpu"));
    let numbers = |v: &serde_json::Value| -> Vec<f64> {
        let side = |key: &str| -> Vec<f64> {
            v[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        [
            vec![v["score"].as_f64().unwrap()],
            side("query_totals"),
            side("key_totals"),
        ]
        .concat()
    };
    assert_eq!(gpu["components"], cpu["components"]);
    assert_close("QK attribution", &numbers(&gpu), &numbers(&cpu));
    // Steering: the stream read back from the GPU, the vector added, the stream written back.
    let steer = |engine| {
        let args = [
            "steer",
            "--prompt",
            "The cat sat on the mat",
            "--layer",
            "1",
            "--plus",
            "The dog",
            "--minus",
            "The cat",
            "--coefficient",
            "3",
            "--from",
            "2",
        ];
        on(engine, &args)
    };
    let (gpu, cpu) = (steer("gpu"), steer("cpu"));
    assert_close(
        "steered logits",
        &flatten_floats(&gpu["logits"]),
        &flatten_floats(&cpu["logits"]),
    );
}

/// The done-criterion of the model families: `attn run DIR --tokens … --attention --json` on
/// every family fixture (tests/fixtures/families, written by transformers) matches transformers
/// to 1e-4 on both engines, and `attn inspect` names the family, positions and K/V layout.
#[test]
fn run_on_every_family_matches_transformers_on_both_engines() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/families");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let expected = std::fs::read(dir.join("expected.safetensors")).unwrap();
        let file = attn_model::LoadedTensors::from_bytes(&expected).unwrap();
        let ids: Vec<u32> = serde_json::from_str(&file.metadata()["input_ids"]).unwrap();
        let tokens = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let tensor = |t: &str| file.values(t).unwrap().to_vec();
        for engine in ["cpu", "gpu"] {
            let report = json_of(&attn(&[
                "run",
                dir.to_str().unwrap(),
                "--tokens",
                &tokens,
                "--attention",
                "--engine",
                engine,
                "--json",
            ]));
            let what = format!("{name} on the {engine} engine");
            assert_close(&what, &flatten_floats(&report["logits"]), &tensor("logits"));
            assert_close(
                &what,
                &flatten_floats(&report["attention"]),
                &tensor("attention"),
            );
        }
        // Greedy generation of 32 tokens from the checkpoint (a prompt after which none of
        // them reaches its end-of-text token): the same tokens decoded from either engine's
        // cache and recomputed.
        let dir_arg = dir.to_str().unwrap();
        let generate = |engine: &str, more: &[&str]| {
            let mut args = vec!["generate", dir_arg, "--prompt", "Hello there my friend"];
            args.extend(["-n", "32"]);
            args.extend(["--temperature", "0", "--engine", engine, "--json"]);
            args.extend(more);
            json_of(&attn(&args))["generated"].clone()
        };
        let cached = generate("gpu", &[]);
        assert_eq!(
            cached.as_array().map(Vec::len),
            Some(32),
            "{name}: {cached}"
        );
        assert_eq!(generate("cpu", &[]), cached, "{name}: the CPU's cache");
        assert_eq!(
            generate("gpu", &["--no-cache"]),
            cached,
            "{name}: recomputed"
        );
        let report = json_of(&attn(&["inspect", dir.to_str().unwrap(), "--json"]));
        let family = report["family"].as_str().unwrap();
        let positions = report["positions"].as_str().unwrap();
        assert!(positions.starts_with("rotary (θ"), "{name}: {positions}");
        match family {
            "Llama" | "Qwen2" => assert!(
                report["kv_layout"]
                    .as_str()
                    .unwrap()
                    .starts_with("grouped-query (6 query heads share 2"),
                "{name}: {report}"
            ),
            "GPT-NeoX" => assert!(positions.contains("4 of 16 dims"), "{name}: {positions}"),
            other => panic!("{name}: family {other}"),
        }
        // 16-bit checkpoints are held in 16 bits.
        let precision = ["f16", "bf16"]
            .into_iter()
            .find(|p| name.ends_with(&format!("-{p}")))
            .unwrap_or("f32");
        assert_eq!(report["weights"]["precision"], precision, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 7);
}

/// `attn lens`, `attn attribute` and `attn patch` (exact and attribution) on the HF GPT-2
/// fixture against transformers
/// (`tests/fixtures/gpt2-tiny/analysis.safetensors`), on both engines.
#[test]
fn lens_attribute_and_patch_match_transformers_on_both_engines() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt2-tiny");
    let bytes = std::fs::read(dir.join("analysis.safetensors")).unwrap();
    let file = attn_model::LoadedTensors::from_bytes(&bytes).unwrap();
    let meta = file.metadata();
    let tensor = |name: &str| file.values(name).unwrap().to_vec();
    let ids = |key: &str| -> String {
        let ids: Vec<u32> = serde_json::from_str(&meta[key]).unwrap();
        ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    };
    let path = dir.to_str().unwrap();
    for engine in ["cpu", "gpu"] {
        let lens = json_of(&attn(&[
            "lens",
            path,
            "--tokens",
            &ids("tokens"),
            "--engine",
            engine,
            "--json",
        ]));
        assert_close(
            &format!("lens on {engine}"),
            &flatten_floats(&lens["logits"]),
            &tensor("lens"),
        );

        let a = json_of(&attn(&[
            "attribute",
            path,
            "--tokens",
            &ids("tokens"),
            "--target",
            &meta["target"],
            "--engine",
            engine,
            "--json",
        ]));
        assert_close(
            &format!("heads on {engine}"),
            &flatten_floats(&a["heads"]),
            &tensor("attribution.heads"),
        );
        assert_close(
            &format!("mlps on {engine}"),
            &flatten_floats(&a["mlps"]),
            &tensor("attribution.mlps"),
        );
        let parts =
            [&a["embeddings"], &a["biases"], &a["logit"]].map(|v| v.as_f64().unwrap() as f32);
        assert_close(
            &format!("parts on {engine}"),
            &parts,
            &tensor("attribution.parts"),
        );

        let p = json_of(&attn(&[
            "patch",
            path,
            "--clean-tokens",
            &ids("clean"),
            "--corrupt-tokens",
            &ids("corrupt"),
            "--target",
            &meta["patch_target"],
            "--contrast",
            &meta["patch_contrast"],
            "--engine",
            engine,
            "--json",
        ]));
        assert_close(
            &format!("patched heads on {engine}"),
            &flatten_floats(&p["heads"]),
            &tensor("patching.heads"),
        );
        assert_close(
            &format!("patched residual on {engine}"),
            &flatten_floats(&p["resid"]),
            &tensor("patching.resid"),
        );

        // Attribution patching: the engine's forwards, the reference backward, against
        // PyTorch's autograd; the same JSON as exact patching.
        let a = json_of(&attn(&[
            "patch",
            path,
            "--clean-tokens",
            &ids("clean"),
            "--corrupt-tokens",
            &ids("corrupt"),
            "--target",
            &meta["patch_target"],
            "--contrast",
            &meta["patch_contrast"],
            "--method",
            "attribution",
            "--engine",
            engine,
            "--json",
        ]));
        assert_eq!(a["method"], "attribution");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        assert_eq!(keys(&a), keys(&p));
        assert_close(
            &format!("attribution-patched heads on {engine}"),
            &flatten_floats(&a["heads"]),
            &tensor("attribution_patching.heads"),
        );
        assert_close(
            &format!("attribution-patched residual on {engine}"),
            &flatten_floats(&a["resid"]),
            &tensor("attribution_patching.resid"),
        );
    }
}

/// `attn generate --temperature 0` on the GPU engine, decoding from its KV cache, gives the tokens
/// transformers' `generate(do_sample=False)` gives on the GPT-2 fixture and every family fixture
/// (`tests/fixtures/greedy.json`, from `generate_greedy_fixtures.py`).
#[test]
fn greedy_generation_on_the_gpu_is_the_tokens_transformers_generates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(root.join("greedy.json")).unwrap()).unwrap();
    let list = |v: &serde_json::Value| -> String {
        let ids: Vec<u64> = serde_json::from_value(v.clone()).unwrap();
        ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
    };
    for (name, case) in &expected {
        let dir = root.join(name);
        let n = case["generated"].as_array().unwrap().len().to_string();
        let report = json_of(&attn(&[
            "generate",
            dir.to_str().unwrap(),
            "--tokens",
            &list(&case["prompt"]),
            "-n",
            &n,
            "--temperature",
            "0",
            "--engine",
            "gpu",
            "--json",
        ]));
        assert_eq!(report["tokens"], case["generated"], "{name}");
        assert!(
            report["kv_cache_bytes"].as_u64().unwrap() > 0,
            "{name}: from the cache"
        );
    }
}
