//! Small wrappers over browser APIs the app needs: fetching bytes, reading files, the URL, time,
//! and asking for a WebGPU adapter. Every failure comes back as a message, never a panic.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

fn window() -> Result<web_sys::Window, String> {
    web_sys::window().ok_or_else(|| "no browser window".to_string())
}

fn js_message(err: JsValue) -> String {
    err.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| err.as_string())
        .unwrap_or_else(|| format!("{err:?}"))
}

/// Why a fetch failed. A picked file is read through its object URL (`blob:`); when that fails
/// the usual cause is a Content-Security-Policy whose `connect-src` leaves `blob:` out.
fn fetch_error(url: &str, error: gloo_net::Error) -> String {
    if url.starts_with("blob:") {
        format!(
            "the browser refused to read the picked file ({error}); if this page is served with \
             a Content-Security-Policy, its connect-src must allow blob: (see docs/HOSTING.md)"
        )
    } else {
        format!("cannot fetch {url}: {error}")
    }
}

/// GETs `url` (relative to the page, or to the worker's script) and returns its body. Works on
/// the page and in the compute worker.
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let response = gloo_net::http::Request::get(url)
        .send()
        .await
        .map_err(|e| fetch_error(url, e))?;
    if !response.ok() {
        return Err(format!("cannot fetch {url}: HTTP {}", response.status()));
    }
    response
        .binary()
        .await
        .map_err(|e| format!("cannot read {url}: {e}"))
}

/// GETs `url` and hands its body to `piece` as it arrives (`piece(bytes, read so far, total
/// length when the response declares it)`), so that a large file is never held whole. An error
/// from `piece` stops the reading and is returned.
pub async fn read_in_pieces(
    url: &str,
    mut piece: impl FnMut(&[u8], u64, Option<u64>) -> Result<(), String>,
) -> Result<(), String> {
    let response = gloo_net::http::Request::get(url)
        .send()
        .await
        .map_err(|e| fetch_error(url, e))?;
    if !response.ok() {
        return Err(format!("cannot fetch {url}: HTTP {}", response.status()));
    }
    let total = response
        .headers()
        .get("content-length")
        .and_then(|n| n.parse::<u64>().ok());
    let body = response
        .body()
        .ok_or_else(|| format!("cannot read {url}: the response has no body"))?;
    let reader: web_sys::ReadableStreamDefaultReader = body
        .get_reader()
        .dyn_into()
        .map_err(|_| format!("cannot read {url}: no stream reader"))?;
    let mut read = 0u64;
    let mut buffer = Vec::new();
    loop {
        let result = wasm_bindgen_futures::JsFuture::from(reader.read())
            .await
            .map_err(|e| format!("cannot read {url}: {e:?}"))?;
        if Reflect::get(&result, &"done".into())
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true)
        {
            return Ok(());
        }
        let chunk: js_sys::Uint8Array = Reflect::get(&result, &"value".into())
            .ok()
            .and_then(|v| v.dyn_into().ok())
            .ok_or_else(|| format!("cannot read {url}: a piece is not bytes"))?;
        buffer.resize(chunk.length() as usize, 0);
        chunk.copy_to(&mut buffer);
        read += buffer.len() as u64;
        if let Err(e) = piece(&buffer, read, total) {
            let _ = reader.cancel();
            return Err(e);
        }
    }
}

/// Shows a panic of the page's own code as a message at the top of the page (the page may be
/// half updated after one; a reload restores it from its link) and appends it to
/// `window.attnPanics`, which the e2e suite checks stays empty. Written with the DOM directly:
/// the reactive system may be what panicked.
pub fn report_page_panic(message: &str) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let panics = match Reflect::get(&window, &"attnPanics".into()) {
        Ok(list) if list.is_array() => js_sys::Array::from(&list),
        _ => {
            let list = js_sys::Array::new();
            let _ = Reflect::set(&window, &"attnPanics".into(), &list);
            list
        }
    };
    panics.push(&message.into());
    let Some(document) = window.document() else {
        return;
    };
    if document
        .query_selector("[data-testid=page-panic]")
        .ok()
        .flatten()
        .is_some()
    {
        return;
    }
    if let (Ok(note), Some(body)) = (document.create_element("p"), document.body()) {
        note.set_class_name("error page-panic");
        let _ = note.set_attribute("role", "alert");
        let _ = note.set_attribute("data-testid", "page-panic");
        note.set_text_content(Some(&format!(
            "The page hit an internal error and may be out of date; reload it to continue              (the link keeps your model, input and settings). Details: {message}"
        )));
        let _ = body.prepend_with_node_1(&note);
    }
}

/// GETs `url` as text.
pub async fn fetch_text(url: &str) -> Result<String, String> {
    String::from_utf8(fetch_bytes(url).await?).map_err(|_| format!("{url} is not UTF-8 text"))
}

/// Milliseconds from a monotonic clock, on the page and in the compute worker alike.
pub fn now_ms() -> f64 {
    Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Resolves on the next turn of the event loop (a zero-delay timer), so that events queued
/// during a long computation are handled before the next one starts. Works on the page and in
/// the compute worker alike.
pub async fn next_tick() {
    gloo_timers::future::TimeoutFuture::new(0).await;
}

/// The page's query parameters.
pub fn query_pairs() -> Vec<(String, String)> {
    let Some(search) = web_sys::window().and_then(|w| w.location().search().ok()) else {
        return Vec::new();
    };
    let Ok(params) = web_sys::UrlSearchParams::new_with_str(&search) else {
        return Vec::new();
    };
    let mut pairs = Vec::new();
    let entries = js_sys::try_iter(&params).ok().flatten();
    for entry in entries.into_iter().flatten().flatten() {
        let pair: js_sys::Array = entry.unchecked_into();
        if let (Some(k), Some(v)) = (pair.get(0).as_string(), pair.get(1).as_string()) {
            pairs.push((k, v));
        }
    }
    pairs
}

/// Writes `pairs` as the page's query string, as a new history entry (`push`) or in place.
/// Query pairs as URL query text (without the `?`), encoded as the browser encodes forms.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    let Ok(params) = web_sys::UrlSearchParams::new() else {
        return String::new();
    };
    for (k, v) in pairs {
        params.append(k, v);
    }
    String::from(params.to_string())
}

pub fn set_query(pairs: &[(String, String)], push: bool) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let query = encode_query(pairs);
    let url = if query.is_empty() {
        window.location().pathname().unwrap_or_default()
    } else {
        format!("?{query}")
    };
    if window.location().search().unwrap_or_default() == url {
        return;
    }
    if let Ok(history) = window.history() {
        let _ = if push {
            history.push_state_with_url(&JsValue::NULL, "", Some(&url))
        } else {
            history.replace_state_with_url(&JsValue::NULL, "", Some(&url))
        };
    }
}

/// Device pixels per CSS pixel (1 where there is no window).
pub fn device_pixel_ratio() -> f64 {
    web_sys::window().map_or(1.0, |w| w.device_pixel_ratio())
}

/// Whether the page is cross-origin isolated (its host sends `Cross-Origin-Opener-Policy:
/// same-origin` and `Cross-Origin-Embedder-Policy: require-corp`, docs/HOSTING.md): only then may
/// workers share memory, which wasm threads need.
pub fn cross_origin_isolated() -> bool {
    web_sys::window()
        .and_then(|w| Reflect::get(&w, &"crossOriginIsolated".into()).ok())
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// How many threads the machine runs at once (`navigator.hardwareConcurrency`), at least 1.
pub fn hardware_threads() -> usize {
    web_sys::window().map_or(1, |w| {
        (w.navigator().hardware_concurrency() as usize).max(1)
    })
}

/// What the browser offers for WebGPU.
#[derive(Clone, Debug, PartialEq)]
pub enum WebGpuStatus {
    /// No `navigator.gpu`, or `requestAdapter()` gave nothing.
    Unavailable(String),
    /// An adapter; `fallback` is true for a software adapter (SwiftShader) that is slower than
    /// the CPU engine.
    Adapter { name: String, fallback: bool },
}

/// Whether this browser's WebAssembly has relaxed SIMD (Chromium 114+, Firefox 120+; not
/// Safari as of 2025): then the page runs the compute worker built with it
/// (`bin/attn-worker-relaxed.rs`), whose matrix product uses fused multiply-adds.
///
/// The probe validates the smallest module that uses a relaxed-SIMD instruction: a function
/// returning `i8x16.relaxed_swizzle(i8x16.splat(1), i8x16.splat(2))`. Validating compiles
/// nothing and takes microseconds.
pub fn has_relaxed_simd() -> bool {
    const MODULE: [u8; 36] = [
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // "\0asm", version 1
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
        0x03, 0x02, 0x01, 0x00, // one function of type 0
        0x0a, 0x0f, 0x01, 0x0d, 0x00, // code: one body of 13 bytes, no locals
        0x41, 0x01, 0xfd, 0x0f, // i32.const 1, i8x16.splat
        0x41, 0x02, 0xfd, 0x0f, // i32.const 2, i8x16.splat
        0xfd, 0x80, 0x02, // i8x16.relaxed_swizzle (0xfd 0x100)
        0x0b, // end
    ];
    js_sys::WebAssembly::validate(&Uint8Array::from(&MODULE[..]).into()).unwrap_or(false)
}

/// Asks `navigator.gpu` for an adapter and describes it.
pub async fn probe_webgpu() -> WebGpuStatus {
    let Ok(window) = window() else {
        return WebGpuStatus::Unavailable("no browser window".into());
    };
    let gpu = Reflect::get(&window.navigator(), &"gpu".into()).unwrap_or(JsValue::UNDEFINED);
    if gpu.is_undefined() || gpu.is_null() {
        return WebGpuStatus::Unavailable("this browser has no WebGPU".into());
    }
    let request = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
    let Some(request) = request else {
        return WebGpuStatus::Unavailable("navigator.gpu.requestAdapter is missing".into());
    };
    let promise = match request.call0(&gpu) {
        Ok(p) => p,
        Err(e) => return WebGpuStatus::Unavailable(js_message(e)),
    };
    let adapter = match JsFuture::from(js_sys::Promise::from(promise)).await {
        Ok(a) if !a.is_null() && !a.is_undefined() => a,
        Ok(_) => return WebGpuStatus::Unavailable("no WebGPU adapter was offered".into()),
        Err(e) => return WebGpuStatus::Unavailable(js_message(e)),
    };
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or(JsValue::UNDEFINED);
    let field = |obj: &JsValue, key: &str| {
        Reflect::get(obj, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    let name = ["description", "device", "architecture", "vendor"]
        .iter()
        .find_map(|k| field(&info, k))
        .unwrap_or_else(|| "unnamed adapter".into());
    let fallback = [&info, &adapter].iter().any(|obj| {
        Reflect::get(obj, &"isFallbackAdapter".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    });
    WebGpuStatus::Adapter { name, fallback }
}

/// Offers `bytes` as a download named `name`.
pub fn download(name: &str, bytes: &[u8], mime: &str) -> Result<(), String> {
    let array = Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&array);
    let options = web_sys::BlobPropertyBag::new();
    options.set_type(mime);
    let blob = web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &options)
        .map_err(js_message)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(js_message)?;
    download_url(name, &url)?;
    let _ = web_sys::Url::revoke_object_url(&url);
    Ok(())
}

/// Offers a URL (e.g. a canvas's data URL) as a download named `name`.
pub fn download_url(name: &str, url: &str) -> Result<(), String> {
    let document = window()?.document().ok_or("no document")?;
    let anchor: web_sys::HtmlAnchorElement = document
        .create_element("a")
        .map_err(js_message)?
        .unchecked_into();
    anchor.set_href(url);
    anchor.set_download(name);
    anchor.click();
    Ok(())
}
