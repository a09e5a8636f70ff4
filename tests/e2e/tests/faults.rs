//! Faults in the page: a WebGPU device lost mid-visit moves the page to the CPU engine and the
//! next forward shows a result; a compute worker that crashes is restarted, reloads the model and
//! the page keeps its input, variant and URL. Both faults are injected through
//! `window.attnFaults` (docs/RELIABILITY.md).

use std::time::Duration;

use attn_e2e::{dist_dir, Browser, StaticServer, WebGpu};

const LOAD: Duration = Duration::from_secs(120);

fn kl(b: &Browser) -> String {
    b.eval("const k = document.querySelector('[data-testid=kl]'); return k ? k.textContent : ''")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_for_variant_result(b: &Browser, what: &str) {
    b.wait_for(
        what,
        "const k = document.querySelector('[data-testid=kl]');
         return !!k && k.textContent !== '' && !k.textContent.startsWith('0.0000')
             && document.querySelectorAll('[data-testid=heatmap-cell]').length > 0",
        LOAD,
    );
}

#[test]
fn a_crashed_worker_is_restarted_and_the_page_keeps_its_state() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.goto(&server.url("index.html?model=induction&engine=cpu&kv_groups=1&prompt=a+b+c+d+a+b+c"));
    wait_for_variant_result(&b, "the variant's first result");
    let before = kl(&b);
    let url = b.url();
    b.eval("window.attnFaults.crashWorker()");
    let notice = b.wait_for(
        "the restart notice",
        "return [...document.querySelectorAll('.notice')].map(n => n.textContent).find(t => t.includes('restarted')) || ''",
        LOAD,
    );
    assert!(
        notice.as_str().unwrap().contains("fault injection"),
        "{notice}"
    );
    // The new worker loads the model again and runs the same input and variant.
    b.wait_for(
        "the same result from the new worker",
        &format!(
            "const k = document.querySelector('[data-testid=kl]');
             return !!k && k.textContent === {before:?} && !document.querySelector('.loading')"
        ),
        LOAD,
    );
    assert_eq!(b.url(), url, "the URL state is kept");
    let prompt = b.eval("return document.querySelector('[data-testid=prompt-input]').value");
    assert_eq!(prompt, "a b c d a b c");
    // And it keeps working: another setting gives another result.
    b.set_value("window", "1");
    b.wait_for(
        "a result for the new setting",
        &format!("const k = document.querySelector('[data-testid=kl]').textContent; return k !== {before:?} && location.search.includes('window=1')"),
        LOAD,
    );
}

#[test]
fn a_lost_device_moves_the_page_to_the_cpu_engine_and_keeps_its_state() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.goto(&server.url("index.html?model=induction&engine=gpu&kv_groups=1"));
    b.wait_for(
        "the GPU engine",
        "const e = document.querySelector('[data-testid=engine-badge]'); return !!e && e.textContent.includes('GPU engine')",
        LOAD,
    );
    wait_for_variant_result(&b, "the first result on the GPU");
    b.eval("window.attnFaults.loseDevice()");
    // The next forward finds the device gone, moves to the CPU engine and still answers.
    b.set_value("window", "2");
    let badge = b.wait_for(
        "the CPU fallback",
        "const e = document.querySelector('[data-testid=engine-badge]'); return e.textContent.includes('CPU fallback') ? e.textContent : ''",
        LOAD,
    );
    assert!(
        badge.as_str().unwrap().contains("GPU engine failed"),
        "{badge}"
    );
    b.wait_for(
        "a result on the CPU engine",
        "return location.search.includes('window=2') && location.search.includes('kv_groups=1')
             && !document.querySelector('[data-testid=kl]').textContent.startsWith('0.0000')",
        LOAD,
    );
    let notices = b.eval(
        "return [...document.querySelectorAll('.notice')].map(n => n.textContent).join(' | ')",
    );
    assert!(
        notices
            .as_str()
            .unwrap()
            .contains("Switched to the CPU engine"),
        "{notices}"
    );
}

#[test]
fn a_device_lost_mid_generation_moves_it_to_the_cpu_and_it_goes_on() {
    // The character model on the GPU engine, generating token by token from the GPU's cache;
    // the device goes while it is paused; *Continue* finds it gone, moves to the CPU engine
    // (whose cache is filled again from the text so far) and finishes the 40 tokens.
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.goto(&server.url("index.html?model=shakespeare&engine=gpu&temperature=0"));
    b.wait_for(
        "the GPU engine",
        "const e = document.querySelector('[data-testid=engine-badge]'); return !!e && e.textContent.includes('GPU engine')",
        LOAD,
    );
    b.wait_for(
        "the first result on the GPU",
        "return document.querySelectorAll('[data-testid=heatmap-cell]').length > 0",
        LOAD,
    );
    let generated = "return [...document.querySelectorAll('[data-testid=gen-token]')]
        .filter(c => c.dataset.generated === 'true').length";
    b.eval("document.querySelector('[data-testid=step-through]').click()");
    b.wait_for("the first token", &format!("{generated} === 1"), LOAD);
    let stats =
        b.eval("return document.querySelector('[data-testid=generation-stats]').textContent");
    assert!(
        stats.as_str().unwrap().contains("KV cache holds"),
        "the GPU engine decodes from its cache: {stats}"
    );
    b.eval("window.attnFaults.loseDevice()");
    b.eval("document.querySelector('[data-testid=pause-generating]').click()");
    let summary = b.wait_for(
        "the generation finished on the CPU",
        "const s = document.querySelector('[data-testid=generation-summary]');
         return s ? s.textContent : ''",
        LOAD,
    );
    assert!(summary.as_str().unwrap().contains("40 tokens"), "{summary}");
    let badge = b.eval("return document.querySelector('[data-testid=engine-badge]').textContent");
    assert!(badge.as_str().unwrap().contains("CPU fallback"), "{badge}");
    b.assert_no_page_panic();
}
