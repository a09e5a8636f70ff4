//! Lessons in the page: every built-in lesson opens step by step in headless Chromium; the
//! lessons on the sort, induction and character models run every measurement over its sample on
//! the page's engine, each finishing with a plot, a strip of every input's value per number, and
//! the verdict the lesson expects (the native lesson test measures every lesson the same way);
//! `lesson=…&step=N` opens a step, the arrow keys move between steps, `embed=1` (also inside an
//! `<iframe>`) shows only what the lesson uses, and an unknown lesson gives a message and the list.

use std::time::Duration;

use attn_e2e::{dist_dir, repo_root, Browser, StaticServer, WebGpu};
use attn_model::Lesson;

const LOAD: Duration = Duration::from_secs(120);
const MEASURE: Duration = Duration::from_secs(300);

fn lessons() -> Vec<Lesson> {
    attn_model::lesson::read_lessons(&repo_root().join("static/lessons")).unwrap()
}

/// `document.querySelector` in the page, or inside its first iframe when `frame`.
fn query(frame: bool, selector: &str) -> String {
    let doc = if frame {
        "document.querySelector('iframe').contentDocument"
    } else {
        "document"
    };
    format!("{doc}.querySelector('{selector}')")
}

/// Lessons whose measurements the page runs here (the others are opened step by step): the
/// cheap ones, covering every kind of sample (task lists, task sequences, held-out text), a
/// ranking set, generation from each variant's KV cache, the logit lens, and controls on
/// untrained weights.
const MEASURED_IN_THE_PAGE: [&str; 6] = [
    "induction-heads",
    "logit-lens",
    "sharing-kv",
    "kv-cache",
    "hopfield-beta",
    "one-head",
];

/// Walks through every step of `lesson` (open at step 1), running each measurement when
/// `measure`; returns the failures (a verdict other than the one the lesson expects).
fn walk(b: &Browser, lesson: &Lesson, frame: bool, measure: bool) -> Vec<String> {
    let mut failures = Vec::new();
    for (n, step) in lesson.steps.iter().enumerate() {
        let at = query(
            frame,
            &format!("[data-testid=lesson-step][data-step=\"{}\"]", n + 1),
        );
        b.wait_for(
            &format!("{} step {}", lesson.id, n + 1),
            &format!("return !!{at}"),
            LOAD,
        );
        if step.measure.is_some() && !measure {
            let button = query(frame, "[data-testid=lesson-measure]");
            b.wait_for(
                &format!("{} step {}: the experiment's button", lesson.id, n + 1),
                &format!("return !!{button}"),
                LOAD,
            );
        }
        if step.measure.is_some() && measure {
            let button = query(frame, "[data-testid=lesson-measure]");
            b.wait_for(
                &format!("{} step {}: the step's model and input", lesson.id, n + 1),
                &format!("const e = {button}; return e && !e.disabled"),
                LOAD,
            );
            b.eval(&format!("{button}.click()"));
            let done = b.wait_for(
                &format!("{} step {}: the measurement", lesson.id, n + 1),
                &format!(
                    "const error = {}; if (error) return 'error: ' + error.textContent;
                     const plot = {}; return plot ? 'plot' : ''",
                    query(frame, "[data-testid=lesson-measure-error]"),
                    query(frame, "[data-testid=lesson-step] [data-testid=plot]")
                ),
                MEASURE,
            );
            assert_eq!(done, "plot", "{} step {}", lesson.id, n + 1);
            let points = b.eval(&format!(
                "return Number({}.getAttribute('data-points'))",
                query(frame, "[data-testid=lesson-step] [data-testid=plot]")
            ));
            assert!(
                points.as_f64().unwrap() >= 1.0,
                "{} step {}: a plot with points",
                lesson.id,
                n + 1
            );
            let doc = if frame {
                "document.querySelector('iframe').contentDocument"
            } else {
                "document"
            };
            struct Shown {
                value: f64,
                verdict: String,
                expected: String,
                strip: usize,
            }
            let shown: Vec<serde_json::Value> = serde_json::from_value(b.eval(&format!(
                "return [...{doc}.querySelectorAll('[data-testid=lesson-result]')].map(e => ({{
                   value: Number(e.getAttribute('data-value')),
                   verdict: e.getAttribute('data-verdict'),
                   expected: e.getAttribute('data-expected'),
                   strip: Number(e.querySelector('[data-testid=lesson-strip]').getAttribute('data-values')),
                 }}))"
            )))
            .unwrap();
            let shown: Vec<Shown> = shown
                .iter()
                .map(|r| Shown {
                    value: r["value"].as_f64().unwrap_or(f64::NAN),
                    verdict: r["verdict"].as_str().unwrap_or_default().to_string(),
                    expected: r["expected"].as_str().unwrap_or_default().to_string(),
                    strip: r["strip"].as_u64().unwrap_or(0) as usize,
                })
                .collect();
            assert_eq!(
                shown.len(),
                step.results.len(),
                "{} step {}: one number per result",
                lesson.id,
                n + 1
            );
            for (spec, r) in step.results.iter().zip(shown) {
                println!(
                    "{} step {}: {} = {:.4} over {} inputs (claims {}): {}",
                    lesson.id,
                    n + 1,
                    spec.label,
                    r.value,
                    r.strip,
                    spec.range_text(),
                    r.verdict
                );
                assert!(
                    r.strip >= 20,
                    "{} step {}: a strip of every input's value",
                    lesson.id,
                    n + 1
                );
                if r.verdict != r.expected {
                    failures.push(format!(
                        "{} step {}: {} = {}, claimed {}: {}, expected {}",
                        lesson.id,
                        n + 1,
                        spec.label,
                        r.value,
                        spec.range_text(),
                        r.verdict,
                        r.expected
                    ));
                }
            }
            if !frame && lesson.id == "hopfield-beta" && n == 1 {
                // The README's picture of a lesson (docs/lesson.png is a copy).
                b.screenshot("lesson-hopfield-beta");
            }
        }
        if n + 1 < lesson.steps.len() {
            b.eval(&format!(
                "{}.click()",
                query(frame, "[data-testid=lesson-next]")
            ));
        }
    }
    failures
}

#[test]
fn every_lesson_runs_in_the_page_and_reproduces_its_claims() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    let lessons = lessons();
    assert!(lessons.len() >= 8);
    // The list names every lesson.
    b.goto(&server.url("index.html"));
    let listed = b.wait_for(
        "the lesson list",
        "return [...document.querySelectorAll('[data-testid=lesson-list] [data-lesson-id]')].map(e => e.getAttribute('data-lesson-id')).join(' ')",
        LOAD,
    );
    let ids: Vec<&str> = lessons.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(listed, ids.join(" "));
    let mut failures = Vec::new();
    for lesson in &lessons {
        b.goto(&server.url(&format!("index.html?lesson={}&embed=1", lesson.id)));
        let title = b.wait_for(
            "the lesson's title",
            "const e = document.querySelector('[data-testid=lesson-title]'); return e ? e.textContent : ''",
            LOAD,
        );
        assert_eq!(title, lesson.title.as_str());
        let measure = MEASURED_IN_THE_PAGE.contains(&lesson.id.as_str());
        failures.extend(walk(&b, lesson, false, measure));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_lesson_runs_on_the_gpu_engine_too() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    let lesson = lessons().into_iter().find(|l| l.id == "one-head").unwrap();
    b.goto(&server.url("index.html?lesson=one-head&engine=gpu"));
    b.wait_for(
        "the GPU engine",
        "const e = document.querySelector('[data-testid=engine-badge]'); return e && /GPU engine/.test(e.textContent)",
        LOAD,
    );
    let failures = walk(&b, &lesson, false, true);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn steps_open_by_url_and_keys_and_embed_mode_shows_only_the_lesson() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    // Step 3 of a lesson that uses the controls but not the head-importance panel.
    b.open_page(&server, "?lesson=sharing-kv&step=3&embed=1", LOAD);
    b.wait_for(
        "step 3",
        "return !!document.querySelector('[data-testid=lesson-step][data-step=\"3\"]')",
        LOAD,
    );
    let shown = |testid: &str| {
        b.eval(&format!(
            "return !!document.querySelector('[data-testid={testid}]')"
        ))
        .as_bool()
        .unwrap()
    };
    assert!(!shown("model-select"), "embed mode hides the model list");
    assert!(!shown("app-title"), "and the page's header");
    assert!(
        !shown("rank-heads"),
        "and the panels the lesson does not use"
    );
    assert!(shown("kv-groups"), "but keeps the controls it uses");
    // The arrow keys move between steps; the URL follows.
    let key = |k: &str| {
        b.eval(&format!(
            "document.body.dispatchEvent(new KeyboardEvent('keydown', {{key: '{k}', bubbles: true}}))"
        ));
    };
    key("ArrowRight");
    b.wait_for(
        "step 4",
        "return !!document.querySelector('[data-testid=lesson-step][data-step=\"4\"]')",
        LOAD,
    );
    b.wait_for(
        "step=4 in the URL",
        "return location.search.includes('step=4')",
        LOAD,
    );
    // Step 4 runs on the model trained with two key/value heads.
    b.wait_for(
        "the step's model",
        "return location.search.includes('model=sort-gqa')",
        LOAD,
    );
    key("ArrowLeft");
    b.wait_for(
        "back to step 3",
        "return !!document.querySelector('[data-testid=lesson-step][data-step=\"3\"]')",
        LOAD,
    );
    // Without embed=1 the whole page is there, the lesson on top.
    b.open_page(&server, "?lesson=few-heads", LOAD);
    assert!(shown("model-select") && shown("rank-heads") && shown("lesson-title"));
    // Closing the lesson shows the list.
    b.eval("document.querySelector('[data-testid=lesson-close]').click()");
    b.wait_for(
        "the list",
        "return document.querySelectorAll('[data-testid=lesson-list] li').length >= 8",
        LOAD,
    );
}

#[test]
fn a_lesson_embedded_in_an_iframe_shows_just_the_experiment_and_runs() {
    let dir = std::env::temp_dir().join(format!("attn-e2e-iframe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("slides.html"),
        "<!doctype html><html><body><h1>Slides</h1>\
         <iframe src=\"/index.html?lesson=hopfield-beta&embed=1\" width=\"900\" height=\"900\"></iframe>\
         </body></html>",
    )
    .unwrap();
    let server = StaticServer::start_with(dist_dir(), Some(dir.clone()));
    let b = Browser::start(WebGpu::Enabled);
    b.goto(&server.url("_test/slides.html"));
    let lesson = lessons()
        .into_iter()
        .find(|l| l.id == "hopfield-beta")
        .unwrap();
    b.wait_for(
        "the lesson inside the iframe",
        "const d = document.querySelector('iframe').contentDocument; return !!(d && d.querySelector('[data-testid=lesson-title]'))",
        LOAD,
    );
    let hidden = b.eval(&format!(
        "return !{} && !{}",
        query(true, "[data-testid=model-select]"),
        query(true, "[data-testid=app-title]")
    ));
    assert_eq!(
        hidden, true,
        "the iframe shows only the lesson and what it uses"
    );
    let failures = walk(&b, &lesson, true, true);
    assert!(failures.is_empty(), "{failures:#?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unknown_lesson_gives_a_message_and_the_list() {
    let server = StaticServer::start(dist_dir());
    let b = Browser::start(WebGpu::Enabled);
    b.open_page(&server, "?lesson=no-such-lesson", LOAD);
    let message = b.wait_for(
        "the message",
        "const e = document.querySelector('[data-testid=lesson-error]'); return e ? e.textContent : ''",
        LOAD,
    );
    assert!(
        message.as_str().unwrap().contains("no-such-lesson"),
        "{message}"
    );
    let items = b.eval("return document.querySelectorAll('[data-testid=lesson-list] li').length");
    assert!(items.as_u64().unwrap() >= 8);
}
