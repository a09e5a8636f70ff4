//! Training in the page, in the compute worker: a link opens the training panel with its
//! settings, the induction task with 2 layers × 2 heads learns on the CPU (the loss falls
//! through the plateau, the held-out accuracy rises), the curve is plotted, "Open in the
//! playground" shows the trained model's four maps, and the same link trains the same run
//! again, to the same loss. On WebGPU (SwiftShader here) the GPU trainer gives the CPU
//! trainer's loss with softmax and linear attention and trains rotary models; without WebGPU,
//! asking for it gives a message.

use std::time::Duration;

use attn_e2e::{dist_dir, Browser, StaticServer, WebGpu};

const LOAD: Duration = Duration::from_secs(120);
/// 200 steps of batch 64: a few seconds natively, a little longer in wasm.
const TRAIN: Duration = Duration::from_secs(400);

const QUERY: &str = "?model=sort&engine=cpu&train=induction&train_layers=2&train_heads=2\
                     &train_kv=2&train_steps=200&train_seed=3";

fn text(b: &Browser, testid: &str) -> String {
    b.eval(&format!(
        "const e = document.querySelector('[data-testid={testid}]'); return e ? e.textContent : ''"
    ))
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Clicks Start and waits for the run of `steps` steps to finish; returns its last training
/// loss.
fn train_to_the_end(b: &Browser, steps: usize) -> f64 {
    b.eval("document.querySelector('[data-testid=train-start]').click()");
    b.wait_for(
        "the end of the run",
        &format!(
            "const s = document.querySelector('.train-status');
             return !!s && s.textContent.includes('Step {steps} of {steps}')
                 && s.textContent.includes('finished')"
        ),
        TRAIN,
    );
    text(b, "train-loss").parse().expect("the loss is a number")
}

/// Opens `query`, heals the model on screen for 60 steps and returns the server, the browser
/// and the healing table's cells (a header row, then unmodified, after the cut, healed).
fn heal_for_60_steps(query: &str) -> (StaticServer, Browser, Vec<Vec<String>>) {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Disabled);
    b.open_page(&server, query, LOAD);
    let table = heal_for(&b, 60);
    (server, b, table)
}

/// Heals the model on screen for `steps` steps and returns the healing table's cells.
fn heal_for(b: &Browser, steps: usize) -> Vec<Vec<String>> {
    b.wait_for(
        "the healing controls",
        "return !!document.querySelector('[data-testid=heal-start]')",
        LOAD,
    );
    b.set_value("heal-steps", &steps.to_string());
    b.eval("document.querySelector('[data-testid=heal-start]').click()");
    b.wait_for(
        "the end of healing",
        &format!(
            "const s = document.querySelector('.train-status');
             return !!s && s.textContent.includes('Step {steps} of {steps}')
                 && s.textContent.includes('finished')
                 && document.querySelectorAll('[data-testid=heal-table] tr').length === 4"
        ),
        TRAIN,
    );
    b.table("heal-table")
}

#[test]
fn the_induction_task_trains_in_the_page_and_opens_in_the_playground() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Disabled);
    b.open_page(&server, QUERY, LOAD);
    assert_eq!(
        b.eval("return document.querySelector('[data-testid=train-panel]').open"),
        true,
        "a link with train= opens the panel"
    );
    let chosen = b.eval(
        "return ['train-task', 'train-heads', 'train-kv-heads']
             .map(id => document.querySelector(`[data-testid=${id}]`).value)",
    );
    assert_eq!(chosen, serde_json::json!(["induction", "2", "2"]));

    let loss = train_to_the_end(&b, 200);
    // Chance on 26 letters is ln 26 ≈ 3.26 nats; the plateau sits near 3; the induction head
    // takes the loss far below it (≈ 0.4 at step 200 natively).
    assert!(
        loss < 1.0,
        "the loss did not fall through the plateau: {loss}"
    );
    let accuracy: f64 = text(&b, "train-accuracy").parse().unwrap();
    assert!(accuracy > 0.8, "held-out accuracy {accuracy}");
    let points: usize = b
        .eval(
            "return document.querySelector('[data-testid=train-plot]').getAttribute('data-points')",
        )
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(points >= 200, "the curve has {points} points");
    let maps = b.eval("return document.querySelectorAll('[data-testid=train-probe-map]').length");
    assert_eq!(maps, 4, "one probe map per head");
    let best_induction = b.eval(
        "return document.querySelector('[data-testid=train-roles-plot]').getAttribute('data-points')",
    );
    assert!(best_induction.as_str().is_some_and(|n| n != "0"));

    b.eval("document.querySelector('[data-testid=train-panel]').scrollIntoView()");
    b.screenshot("training-panel");

    // Open in the playground: the trained model replaces the sort model, with its four maps.
    b.eval("document.querySelector('[data-testid=train-open]').click()");
    b.wait_for(
        "the trained model in the playground",
        "return document.querySelector('[data-testid=model-title]')?.textContent.includes('Trained here')
             && document.querySelectorAll('[data-testid=heatmap-cell]').length === 4
             && !!document.querySelector('[data-testid=output-topk-current] li')",
        LOAD,
    );
    b.screenshot("training-opened");

    // The same link trains the same run.
    b.goto(&server.url(&format!("index.html{QUERY}")));
    b.wait_for(
        "the panel again",
        "return !!document.querySelector('[data-testid=train-start]')",
        LOAD,
    );
    let again = train_to_the_end(&b, 200);
    assert_eq!(again, loss, "the same seed gives the same loss at step 200");

    // A finished run continues for another run's length (at the final learning rate), and a
    // running one pauses where it is.
    b.eval("document.querySelector('[data-testid=train-pause]').click()");
    b.wait_for(
        "the run going on",
        "return document.querySelector('[data-testid=train-pause]').textContent === 'Pause'",
        LOAD,
    );
    b.eval("document.querySelector('[data-testid=train-pause]').click()");
    b.wait_for(
        "the pause",
        "return document.querySelector('.train-status').textContent.includes('paused')",
        LOAD,
    );
    let paused_at = text(&b, "train-step");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        text(&b, "train-step"),
        paused_at,
        "a paused run does not step"
    );
    let step: usize = paused_at
        .trim_start_matches("Step ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((200..=400).contains(&step), "{paused_at}");
    assert!(paused_at.ends_with("of 400"), "{paused_at}");
}

#[test]
fn a_model_pooled_to_one_key_value_head_heals_with_the_pooling_built_in() {
    let (_server, b, table) = heal_for_60_steps("?model=sort&engine=cpu&kv_groups=1&train=sort");
    let accuracy = |row: usize| -> f64 { table[row][2].parse().unwrap() };
    let (before, cut, healed) = (accuracy(1), accuracy(2), accuracy(3));
    eprintln!("healing the sort model pooled to MQA: {table:?}");
    assert!(
        table[3][0].contains("after healing (60 steps)"),
        "{table:?}"
    );
    // Pooling the sort model's four key/value heads into one costs accuracy; 60 steps with the
    // pooling built in win much of it back.
    assert!(cut < before - 0.1, "before {before}, after the cut {cut}");
    assert!(healed > cut + 0.1, "after the cut {cut}, healed {healed}");

    // The healed model opens in the playground, multi-query as it was trained.
    b.eval("document.querySelector('[data-testid=train-open]').click()");
    b.wait_for(
        "the healed model in the playground",
        "return document.querySelector('[data-testid=model-title]')?.textContent.includes('Healed')
             && [...document.querySelectorAll('.facts')].some(f => f.textContent.includes('(1 key/value)'))
             && document.querySelectorAll('[data-testid=heatmap-cell]').length === 8",
        LOAD,
    );
}

#[test]
fn the_character_model_trains_on_the_bundled_plays() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Disabled);
    b.open_page(
        &server,
        "?model=induction&engine=cpu&train=shakespeare&train_steps=40",
        LOAD,
    );
    // Chance over the plays' ≈ 65 characters is ≈ 4.2 nats; 40 steps learn the letter
    // frequencies and the commonest pairs.
    let loss = train_to_the_end(&b, 40);
    assert!(
        loss < 3.6,
        "the character model's loss after 40 steps: {loss}"
    );
    b.eval("document.querySelector('[data-testid=train-open]').click()");
    b.wait_for(
        "the character model in the playground",
        "return document.querySelector('[data-testid=model-title]')?.textContent.includes('shakespeare')
             && document.querySelector('[data-testid=prompt-input]').value.startsWith('ROMEO:')
             && !!document.querySelector('[data-testid=output-topk-current] li')",
        LOAD,
    );
}

#[test]
fn a_rotary_model_trains_and_opens_with_its_rotary_positions() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Disabled);
    b.open_page(
        &server,
        "?model=induction&engine=cpu&train=induction&train_rope=1&train_steps=60&train_batch=16",
        LOAD,
    );
    assert_eq!(
        b.eval("return document.querySelector('[data-testid=train-rotary]').checked"),
        true
    );
    let loss = train_to_the_end(&b, 60);
    assert!(loss.is_finite() && loss < 3.5, "loss {loss}");
    b.eval("document.querySelector('[data-testid=train-open]').click()");
    b.wait_for(
        "the rotary model in the playground",
        "return document.querySelector('[data-testid=model-title]')?.textContent.includes('rotary')
             && document.querySelector('.facts.architecture')?.textContent.includes('rotary')
             && document.querySelectorAll('[data-testid=heatmap-cell]').length === 4",
        LOAD,
    );
}

#[test]
fn a_linear_attention_model_trains_and_opens_with_its_kernel() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Disabled);
    b.open_page(
        &server,
        "?model=sort&engine=cpu&train=sort&train_kernel=linear&train_steps=80&train_batch=16",
        LOAD,
    );
    assert_eq!(
        b.eval("return document.querySelector('[data-testid=train-linear]').checked"),
        true
    );
    let loss = train_to_the_end(&b, 80);
    // Chance on the sort task's 22 outputs is ln 22 ≈ 3.09 nats.
    assert!(loss.is_finite() && loss < 2.5, "loss {loss}");
    b.eval("document.querySelector('[data-testid=train-open]').click()");
    b.wait_for(
        "the linear-attention model in the playground, run with its kernel",
        "return document.querySelector('[data-testid=model-title]')?.textContent
                 .includes('linear attention')
             && document.querySelector('[data-testid=kernel]')?.value === 'linear'
             && document.querySelectorAll('[data-testid=heatmap-cell]').length > 0",
        LOAD,
    );
    assert!(
        b.url().contains("kernel=linear"),
        "the link keeps the kernel: {}",
        b.url()
    );
    // Its unmodified baseline is its linear forward: nothing changed yet costs nothing, and
    // softmax — which it never saw — is the change.
    b.wait_for(
        "no cost for the model as trained: it is its own baseline",
        "return document.querySelector('[data-testid=kl]')?.textContent === '0.0000 nats'",
        LOAD,
    );
    b.set_value("kernel", "softmax");
    let kl = b.wait_for(
        "the cost of softmax",
        "const t = document.querySelector('[data-testid=kl]')?.textContent;
         return t && t !== '0.0000 nats' ? t : ''",
        LOAD,
    );
    let kl: f64 = kl
        .as_str()
        .and_then(|t| t.trim_end_matches(" nats").parse().ok())
        .expect("a KL");
    assert!(kl > 0.0, "softmax costs {kl} nats");
}

#[test]
fn the_sort_model_switched_to_linear_attention_heals_with_the_kernel() {
    let (_server, b, table) = heal_for_60_steps("?model=sort&engine=cpu&kernel=linear&train=sort");
    let accuracy = |row: usize| -> f64 { table[row][2].parse().unwrap() };
    let (before, cut, healed) = (accuracy(1), accuracy(2), accuracy(3));
    eprintln!("healing the sort model switched to linear attention: {table:?}");
    // Linear attention costs the softmax-trained model most of its accuracy; 60 steps of
    // training with the linear kernel win much of it back.
    assert!(
        cut < before - 0.1,
        "before {before}, after the switch {cut}"
    );
    assert!(
        healed > cut + 0.1,
        "after the switch {cut}, healed {healed}"
    );

    // The healed model opens in the playground with the kernel it was healed with.
    b.eval("document.querySelector('[data-testid=train-open]').click()");
    b.wait_for(
        "the healed model in the playground, on linear attention",
        "return document.querySelector('[data-testid=model-title]')?.textContent.includes('Healed')
             && document.querySelector('[data-testid=kernel]')?.value === 'linear'
             && document.querySelectorAll('[data-testid=heatmap-cell]').length === 8",
        LOAD,
    );
}

/// Sets the panel's engine choice and trains the `steps`-step run to its end on it; returns the
/// last training loss and where the panel says it trained.
fn train_on(b: &Browser, engine: &str, steps: usize) -> (f64, String) {
    b.set_value("train-on", engine);
    let loss = train_to_the_end(b, steps);
    (loss, text(b, "train-engine"))
}

#[test]
fn the_gpu_trainer_gives_the_cpu_trainers_run_in_the_page() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.open_page(
        &server,
        "?model=sort&engine=cpu&train=induction&train_steps=8&train_batch=16&train_engine=gpu",
        LOAD,
    );
    assert_eq!(
        b.eval("return document.querySelector('[data-testid=train-on]').value"),
        "gpu"
    );
    let (softmax_gpu, engine) = train_on(&b, "gpu", 8);
    assert!(engine.contains("on the GPU ("), "{engine}");
    // The end's checkpoint, from the weights read back: a held-out score and every head's map.
    let accuracy: f64 = text(&b, "train-accuracy").parse().expect("an accuracy");
    assert!((0.0..=1.0).contains(&accuracy));
    let maps = b.eval("return document.querySelectorAll('[data-testid=train-probe-map]').length");
    assert_eq!(maps, 4, "one probe map per head");

    // The same runs on the CPU trainer — the same batches and updates — end at the same loss,
    // with softmax and with linear attention.
    let (softmax_cpu, engine) = train_on(&b, "cpu", 8);
    assert_eq!(engine, " · on the CPU");
    assert!(b.url().contains("train_engine=cpu"), "{}", b.url());
    b.eval("document.querySelector('[data-testid=train-linear]').click()");
    let (linear_cpu, _) = train_on(&b, "cpu", 8);
    let (linear_gpu, engine) = train_on(&b, "gpu", 8);
    assert!(engine.contains("on the GPU ("), "{engine}");
    for (what, gpu, cpu) in [
        ("softmax", softmax_gpu, softmax_cpu),
        ("linear attention", linear_gpu, linear_cpu),
    ] {
        assert!(
            (gpu - cpu).abs() <= 1e-3,
            "{what}: GPU {gpu} against CPU {cpu} at step 8"
        );
    }
    assert_ne!(softmax_cpu, linear_cpu, "the kernel changes the run");

    // Auto keeps a software adapter for the forward's sake and says so.
    b.eval("document.querySelector('[data-testid=train-linear]').click()");
    let (_, engine) = train_on(&b, "auto", 8);
    assert!(
        engine.contains("on the CPU (") && engine.contains("software fallback"),
        "{engine}"
    );

    // A rotary model on the GPU, opened in the playground from the weights read back.
    b.eval("document.querySelector('[data-testid=train-rotary]').click()");
    let (_, engine) = train_on(&b, "gpu", 8);
    assert!(engine.contains("on the GPU ("), "{engine}");
    b.eval("document.querySelector('[data-testid=train-open]').click()");
    b.wait_for(
        "the GPU-trained rotary model in the playground",
        "return document.querySelector('[data-testid=model-title]')?.textContent.includes('rotary')
             && document.querySelectorAll('[data-testid=heatmap-cell]').length === 4
             && !!document.querySelector('[data-testid=output-topk-current] li')",
        LOAD,
    );
}

#[test]
fn training_on_the_gpu_without_webgpu_says_why() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Disabled);
    b.open_page(
        &server,
        "?model=sort&engine=cpu&train=induction&train_steps=8&train_engine=gpu",
        LOAD,
    );
    b.eval("document.querySelector('[data-testid=train-start]').click()");
    let error = b.wait_for(
        "the message",
        "const e = document.querySelector('[data-testid=train-error]'); return e ? e.textContent : ''",
        LOAD,
    );
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("Cannot train on the GPU")),
        "{error}"
    );
    // The page still trains, on the CPU.
    let (loss, engine) = train_on(&b, "cpu", 8);
    assert!(
        loss.is_finite() && engine == " · on the CPU",
        "{loss} {engine}"
    );
}

#[test]
fn a_gpu_lost_during_training_stops_the_run_with_a_message() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.open_page(
        &server,
        "?model=sort&engine=cpu&train=induction&train_steps=400&train_batch=16&train_engine=gpu",
        LOAD,
    );
    b.eval("document.querySelector('[data-testid=train-start]').click()");
    b.wait_for(
        "the first steps on the GPU",
        "const s = document.querySelector('[data-testid=train-step]');
         return !!s && !s.textContent.startsWith('Step 0 ')
             && !!document.querySelector('[data-testid=train-engine]')",
        TRAIN,
    );
    b.eval("window.attnFaults.loseDevice()");
    let error = b.wait_for(
        "the message",
        "const e = document.querySelector('[data-testid=train-error]'); return e ? e.textContent : ''",
        LOAD,
    );
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("The GPU failed during training")),
        "{error}"
    );
    // A new run opens a new device.
    b.set_value("train-steps", "2");
    let (loss, engine) = train_on(&b, "gpu", 2);
    assert!(
        loss.is_finite() && engine.contains("on the GPU ("),
        "{loss} {engine}"
    );
}

#[test]
fn healing_on_the_gpu_gives_the_cpu_trainers_result() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.open_page(
        &server,
        "?model=sort&engine=cpu&kv_groups=1&ablate=0.1&train=sort&train_engine=gpu",
        LOAD,
    );
    let on_gpu = heal_for(&b, 10);
    let engine = text(&b, "train-engine");
    assert!(engine.contains("on the GPU ("), "{engine}");
    b.set_value("train-on", "cpu");
    let on_cpu = heal_for(&b, 10);
    assert_eq!(text(&b, "train-engine"), " · on the CPU");
    // Before and after the cut are the CPU engine's scores either way; after healing, the same
    // run on either trainer.
    assert_eq!(on_gpu[..3], on_cpu[..3]);
    let number = |cell: &str| cell.parse::<f64>().expect("a number");
    let (gpu, cpu) = (&on_gpu[3], &on_cpu[3]);
    assert!(
        (number(&gpu[1]) - number(&cpu[1])).abs() <= 1e-3
            && (number(&gpu[2]) - number(&cpu[2])).abs() <= 2e-3,
        "healed on the GPU {gpu:?} against the CPU {cpu:?}"
    );
}
