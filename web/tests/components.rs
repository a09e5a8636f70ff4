//! The app's parts inside headless Chromium (wasm-bindgen-test): the whole page mounted where no
//! model list exists, the heatmap painter on a real canvas, and a session's GPU engine pair
//! against a session's CPU engine pair on the browser's WebGPU. `webdriver.json` beside Cargo.toml gives
//! Chromium the WebGPU flags; scripts/test.sh runs this.
#![cfg(target_arch = "wasm32")]

use attn_gpu::{EngineKind, GpuContext};
use attn_model::{Model, ModelConfig, Variant};
use attn_web::heatmap;
use attn_web::protocol::MapsWanted;
use attn_web::session::{run_timed, Session};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn document() -> web_sys::Document {
    web_sys::window().unwrap().document().unwrap()
}

async fn sleep(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
            .unwrap();
    });
    JsFuture::from(promise).await.unwrap();
}

/// The text of the first element matching `selector`, waiting up to 20 s for it.
async fn text_of(selector: &str) -> Option<String> {
    for _ in 0..200 {
        if let Some(e) = document().query_selector(selector).unwrap() {
            return e.text_content();
        }
        sleep(100).await;
    }
    None
}

#[wasm_bindgen_test]
async fn without_a_model_list_the_page_says_why_and_offers_loading_from_disk() {
    // The test runner serves no models/index.json: the page must explain, not go blank.
    leptos::mount::mount_to_body(attn_web::app::App);
    assert_eq!(
        text_of("[data-testid=app-title]").await.as_deref(),
        Some("Attention Playground")
    );
    let error = text_of("[data-testid=error]")
        .await
        .expect("an error message");
    assert!(error.contains("index.json"), "{error}");
    assert!(error.contains("load a model from disk"), "{error}");
    assert!(
        document()
            .query_selector("input[type=file]")
            .unwrap()
            .is_some(),
        "the load-from-disk picker is still there"
    );
    let badge = text_of("[data-testid=engine-badge]").await.unwrap();
    assert!(!badge.is_empty());
}

#[wasm_bindgen_test]
fn the_painter_draws_one_pixel_per_cell_with_the_future_greyed_out() {
    let canvas: web_sys::HtmlCanvasElement = document()
        .create_element("canvas")
        .unwrap()
        .unchecked_into();
    // Query 0 sees only itself; query 1 splits 0.25 / 0.75.
    let map = [1.0, 0.0, 0.25, 0.75];
    heatmap::paint(&canvas, &map, None, 2, true).unwrap();
    assert_eq!((canvas.width(), canvas.height()), (2, 2));
    let ctx: web_sys::CanvasRenderingContext2d =
        canvas.get_context("2d").unwrap().unwrap().unchecked_into();
    let pixels = ctx.get_image_data(0.0, 0.0, 2.0, 2.0).unwrap().data().0;
    let at = |i: usize, j: usize| [pixels[(i * 2 + j) * 4], pixels[(i * 2 + j) * 4 + 1]];
    assert_eq!(at(0, 0), [8, 48], "weight 1 is the darkest blue");
    assert_eq!(
        at(0, 1),
        [236, 238],
        "a causal model cannot look ahead: grey"
    );
    let brightness = |p: [u8; 2]| p[0] as u32 + p[1] as u32;
    assert!(
        brightness(at(1, 1)) < brightness(at(1, 0)),
        "0.75 is drawn darker than 0.25"
    );
}

#[wasm_bindgen_test]
async fn the_sessions_gpu_engines_agree_with_its_cpu_engine() {
    let ctx = GpuContext::new().await.expect("a WebGPU adapter");
    let config = ModelConfig {
        n_ctx: 24,
        d_model: 32,
        n_layer: 2,
        n_head: 4,
        ..ModelConfig::tiny(40)
    };
    let model = Model::random(config, 7, 0.3).unwrap();
    let mut cpu_session =
        Session::new(model.clone(), "random".into(), String::new(), Vec::new()).expect("a session");
    let mut gpu_session =
        Session::new(model, "random".into(), String::new(), Vec::new()).expect("a session");
    gpu_session.use_gpu(&ctx).expect("the model fits the GPU");
    let mut cpu_pair = cpu_session.engines.take().unwrap();
    let mut pair = gpu_session.engines.take().unwrap();
    let tokens: Vec<u32> = (0..11).map(|i| (i * 7 % 40) as u32).collect();
    let variants = [
        Variant::default(),
        Variant::from_json(r#"{"kv_groups": 2, "window": 3}"#).unwrap(),
        Variant::from_json(r#"{"heads": {"ablate": [[1, 2]], "mode": "mean"}, "beta": 2.0}"#)
            .unwrap(),
        Variant::from_json(r#"{"kernel": "linear", "top_k": 2}"#).unwrap(),
    ];
    let every_map = (&Variant::default(), Some(&MapsWanted::ALL));
    let (baseline, failure) = run_timed(&mut pair, true, every_map, &tokens).await;
    let (baseline, _) = baseline.unwrap();
    assert!(failure.is_none());
    assert_eq!(pair.kind(), EngineKind::Gpu);
    for variant in &variants {
        let wanted = (variant, Some(&MapsWanted::ALL));
        let (gpu, _) = run_timed(&mut pair, false, wanted, &tokens)
            .await
            .0
            .unwrap();
        let (cpu, _) = run_timed(&mut cpu_pair, false, wanted, &tokens)
            .await
            .0
            .unwrap();
        assert_eq!(pair.kind(), EngineKind::Gpu);
        assert_eq!(cpu_pair.kind(), EngineKind::Cpu);
        let max_diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        let logits = max_diff(&gpu.logits, &cpu.logits);
        let attention = max_diff(&gpu.attention, &cpu.attention);
        assert!(logits < 1e-3, "{variant:?}: logits differ by {logits}");
        assert!(
            attention < 1e-4,
            "{variant:?}: attention differs by {attention}"
        );
        assert_eq!(gpu.kv_bytes_per_token, cpu.kv_bytes_per_token);
    }
    // The baseline engine kept the unmodified model while the variant engine changed.
    let (again, _) = run_timed(&mut pair, true, every_map, &tokens)
        .await
        .0
        .unwrap();
    assert_eq!(again.logits, baseline.logits);
    // Only the layers on screen (layer 1 of 2) are read back, on both engines; the logits are
    // whole.
    let layer_1 = MapsWanted::shown((1, 1), None, 2, 1);
    for pair in [&mut pair, &mut cpu_pair] {
        let (shown, _) = run_timed(pair, true, (&Variant::default(), Some(&layer_1)), &tokens)
            .await
            .0
            .unwrap();
        let logits = shown.logits.iter().zip(&baseline.logits);
        assert!(logits.into_iter().all(|(a, b)| (a - b).abs() < 1e-3));
        assert!((0..4).all(|h| shown.attention_map(0, h).iter().all(|v| v.is_nan())));
        for h in 0..4 {
            let (got, want) = (shown.attention_map(1, h), baseline.attention_map(1, h));
            assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4));
        }
    }
}
