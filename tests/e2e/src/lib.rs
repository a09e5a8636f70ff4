//! A small harness for end-to-end tests: a static file server for `dist/` on 127.0.0.1, and a
//! minimal W3C WebDriver client that drives Debian's Chromium through `chromedriver`.
//!
//! It uses only `std::net`: the protocol needs a handful of JSON requests, and a blocking client
//! keeps the tests readable top to bottom.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

/// The repository root. Read at run time (cargo sets `CARGO_MANIFEST_DIR` for test binaries):
/// a build cache shared by several checkouts may hold a library compiled in another one.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .expect("cargo test sets CARGO_MANIFEST_DIR");
    Path::new(&manifest_dir).join("../..")
}

/// The built app; panics with the command to run when it is missing.
pub fn dist_dir() -> PathBuf {
    let dist = std::env::var_os("ATTN_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("dist"));
    assert!(
        dist.join("index.html").exists(),
        "{} has no index.html: build the app first (`trunk build --release`, or scripts/test.sh)",
        dist.display()
    );
    dist
}

/// Where tests save screenshots (gitignored).
pub fn artifacts_dir() -> PathBuf {
    let dir = repo_root().join("tests/artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

/// The strict Content-Security-Policy the page must run under (docs/HOSTING.md): no inline
/// script or style, no `eval`, everything from the page's own origin.
pub const STRICT_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; worker-src 'self' blob:; \
    object-src 'none'; base-uri 'none'";

/// Where the server takes the browser's CSP violation reports (`report-uri`).
const CSP_REPORTS: &str = "/_csp-report";

/// Serves a folder over HTTP on an ephemeral loopback port until dropped.
pub struct StaticServer {
    pub port: u16,
    reports: Arc<Mutex<Vec<String>>>,
}

/// What the server sends besides the files.
#[derive(Clone, Default)]
struct Serving {
    test_files: Option<PathBuf>,
    /// A `Content-Security-Policy` header for every response, with a `report-uri` to the server.
    csp: Option<String>,
    /// The headers that make the page cross-origin isolated (docs/HOSTING.md), on every response.
    isolated: bool,
}

impl StaticServer {
    pub fn start(root: PathBuf) -> StaticServer {
        Self::serve(root, Serving::default())
    }

    /// Serves `root`, and the files of `test_files` under `/_test/` (models a test made, so the
    /// page can fetch them without touching `dist/`).
    pub fn start_with(root: PathBuf, test_files: Option<PathBuf>) -> StaticServer {
        Self::serve(
            root,
            Serving {
                test_files,
                ..Serving::default()
            },
        )
    }

    /// Serves `root` with `policy` as every response's Content-Security-Policy, plus a
    /// `report-uri` through which the browser posts each violation (see
    /// [`StaticServer::csp_reports`]), from the page and from its worker alike.
    pub fn start_with_csp(root: PathBuf, policy: &str) -> StaticServer {
        Self::serve(
            root,
            Serving {
                csp: Some(format!("{policy}; report-uri {CSP_REPORTS}")),
                ..Serving::default()
            },
        )
    }

    /// Serves `root` cross-origin isolated (`Cross-Origin-Opener-Policy: same-origin`,
    /// `Cross-Origin-Embedder-Policy: require-corp`), as a host that lets the page use wasm
    /// threads does, with `policy` as every response's Content-Security-Policy.
    pub fn start_isolated_with_csp(root: PathBuf, policy: &str) -> StaticServer {
        Self::serve(
            root,
            Serving {
                csp: Some(format!("{policy}; report-uri {CSP_REPORTS}")),
                isolated: true,
                ..Serving::default()
            },
        )
    }

    fn serve(root: PathBuf, serving: Serving) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, serving, sink) = (root.clone(), serving.clone(), sink.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &root, &serving, &sink);
                });
            }
        });
        StaticServer { port, reports }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}/{}", self.port, path_and_query)
    }

    /// The CSP violation reports received so far (JSON bodies), for a server started with
    /// [`StaticServer::start_with_csp`].
    pub fn csp_reports(&self) -> Vec<String> {
        self.reports.lock().unwrap().clone()
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

fn serve_one(
    stream: TcpStream,
    root: &Path,
    serving: &Serving,
    reports: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut body_length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                body_length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let raw_path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = raw_path.split(['?', '#']).next().unwrap_or("/");
    if path == CSP_REPORTS {
        let mut body = vec![0; body_length];
        reader.read_exact(&mut body)?;
        reports
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return out.flush();
    }
    let test_files = serving.test_files.as_deref();
    let mut csp = match &serving.csp {
        Some(policy) => format!("Content-Security-Policy: {policy}\r\n"),
        None => String::new(),
    };
    if serving.isolated {
        csp.push_str(
            "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n",
        );
    }
    let mut relative = path.trim_start_matches('/');
    let mut root = root;
    if let (Some(rest), Some(dir)) = (relative.strip_prefix("_test/"), test_files) {
        (relative, root) = (rest, dir);
    }
    let mut file = root.join(if relative.is_empty() {
        "index.html"
    } else {
        relative
    });
    if file.is_dir() {
        file = file.join("index.html");
    }
    let mut out = stream;
    let safe = !relative.split('/').any(|part| part == "..");
    match std::fs::read(&file) {
        Ok(body) if safe => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n{csp}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                content_type(&file),
                body.len()
            )?;
            out.write_all(&body)?;
        }
        _ => {
            let body = b"not found";
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)?;
        }
    }
    out.flush()
}

/// How the browser starts: with WebGPU (SwiftShader on a machine without a GPU) or without.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebGpu {
    Enabled,
    Disabled,
}

/// A headless Chromium session driven through chromedriver. Ends the session and the driver on
/// drop.
pub struct Browser {
    port: u16,
    session: String,
    // Dropped after the session is deleted, in this order.
    _driver: Driver,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One HTTP/1.1 request to the driver; returns the JSON body.
///
/// The body is read by its `Content-Length`: chromedriver 156 answers `Connection: close` but
/// keeps the socket open, so reading to the end of the stream would wait for the timeout.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("chromedriver: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        payload.len()
    );
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(&stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut content_length = None;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).map_err(|e| e.to_string())? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                content_length = value.parse::<usize>().ok();
            } else if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else if let Some(n) = content_length {
        let mut buf = vec![0; n];
        reader.read_exact(&mut buf).map_err(|e| e.to_string())?;
        buf
    } else {
        let mut buf = Vec::new();
        reader.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        buf
    };
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("bad JSON from chromedriver ({status_line:?}): {e}"))?;
    if status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'))
    {
        Ok(value)
    } else {
        Err(format!("{method} {path}: {}", value["value"]))
    }
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).map_err(|e| e.to_string())?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| format!("bad chunk size {size:?}"))?;
        let mut chunk = vec![0; n + 2]; // the data and its CRLF
        reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// The chromedriver process; killed when dropped, also when a test panics while starting.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium (the flags that give WebGPU on SwiftShader; see the README, "Toolchain").
    pub fn start(webgpu: WebGpu) -> Browser {
        let port = free_port();
        let profile = TempDir(std::env::temp_dir().join(format!("attn-e2e-profile-{port}")));
        // Chromium's own scratch folders go inside the profile, so they leave with it (they
        // would otherwise stay in /tmp, ~90 MB a browser).
        let scratch = profile.0.join("tmp");
        std::fs::create_dir_all(&scratch).expect("a folder for the browser's temporary files");
        let driver = Driver(Command::new(
            std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
        )
        .env("TMPDIR", &scratch)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts (Debian package chromium-driver; scripts/setup.sh installs it)"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = http(port, "GET", "/status", None) {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not come up: {e}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu-sandbox".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-quic".into(),
            "--window-size=1280,1600".into(),
            format!("--user-data-dir={}", profile.0.display()),
        ];
        match webgpu {
            WebGpu::Enabled => args.push("--enable-unsafe-webgpu".into()),
            WebGpu::Disabled => args.push("--disable-webgpu".into()),
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": args,
            }
        }}});
        let created = http(port, "POST", "/session", Some(&caps)).expect("a Chromium session");
        let session = created["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        Browser {
            port,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn command(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        match http(self.port, method, &path, body.as_ref()) {
            Ok(v) => v["value"].clone(),
            Err(e) => panic!("webdriver {what}: {e}"),
        }
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "url", Some(json!({ "url": url })));
    }

    pub fn refresh(&self) {
        self.command("POST", "refresh", Some(json!({})));
    }

    pub fn back(&self) {
        self.command("POST", "back", Some(json!({})));
    }

    /// Runs a script in the page (`return …` gives a value back).
    pub fn eval(&self, script: &str) -> Value {
        self.command(
            "POST",
            "execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Fails the test if the page's own code has panicked (the page's panic hook keeps every
    /// message in `window.attnPanics`): a page that panics may look right and be half updated.
    pub fn assert_no_page_panic(&self) {
        let panics = self.eval("return window.attnPanics ?? []");
        assert_eq!(panics, json!([]), "the page panicked");
    }

    /// Polls `script` until it returns something truthy (not null/false/""/0), or panics with
    /// `what` and the page's visible error after `timeout`. Also fails as soon as the page has
    /// panicked ([`Browser::assert_no_page_panic`]).
    pub fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_no_page_panic();
            let v = self.eval(script);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let errors = self.eval(
                    "return Array.from(document.querySelectorAll('.error, .notice, .loading')).map(e => e.textContent).join(' | ')",
                );
                panic!("timed out waiting for {what}; page says: {errors}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Picks files from disk in the file input `selector`, as a person choosing them in the
    /// file dialog would (WebDriver sends the paths; the page gets disk-backed `File`s).
    pub fn pick_files(&self, selector: &str, paths: &[PathBuf]) {
        let element = self.command(
            "POST",
            "element",
            Some(json!({"using": "css selector", "value": selector})),
        );
        let id = element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {selector}: {element}"))
            .to_string();
        let text = paths
            .iter()
            // WebDriver takes only canonical paths.
            .map(|p| {
                let p = p
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                p.display().to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        self.command(
            "POST",
            &format!("element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn url(&self) -> String {
        self.command("GET", "url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Types `text` into the input box as a person would (an `input` event follows). The text
    /// goes in as a JSON string, so any character survives.
    pub fn type_prompt(&self, text: &str) {
        self.set_value("prompt-input", text);
    }

    /// Sets the control `[data-testid=TESTID]` to `value` as a person would: its `input` and
    /// `change` events follow. The value goes in as a JSON string, so any character survives.
    pub fn set_value(&self, testid: &str, value: &str) {
        self.eval(&format!(
            "const e = document.querySelector('[data-testid={testid}]');
             e.value = {};
             e.dispatchEvent(new Event('input', {{bubbles: true}}));
             e.dispatchEvent(new Event('change', {{bubbles: true}}));",
            serde_json::to_string(value).expect("a string")
        ));
    }

    /// The text of every cell of the table `[data-testid=TESTID]`, row by row.
    pub fn table(&self, testid: &str) -> Vec<Vec<String>> {
        let rows = self.eval(&format!(
            "return [...document.querySelectorAll('[data-testid={testid}] tr')]
                 .map(r => [...r.children].map(c => c.textContent))"
        ));
        serde_json::from_value(rows).expect("rows of cells")
    }

    /// Clicks a *Look inside* tool's button and waits until its table `[data-testid=TESTID]`
    /// has cells and no analysis is running; returns the table.
    pub fn run_tool(&self, button: &str, testid: &str, timeout: Duration) -> Vec<Vec<String>> {
        self.eval(&format!(
            "document.querySelector('[data-testid={button}]').click()"
        ));
        self.wait_for(
            testid,
            &format!(
                "return !document.querySelector('[data-testid=analysis-progress]')
                     && !!document.querySelector('[data-testid={testid}] td')"
            ),
            timeout,
        );
        self.table(testid)
    }

    /// Waits for the page's error message and returns it.
    pub fn error_message(&self, what: &str, timeout: Duration) -> String {
        let error = self.wait_for(
            what,
            "const e = document.querySelector('[data-testid=error]'); return e ? e.textContent : '';",
            timeout,
        );
        error.as_str().unwrap_or_default().to_string()
    }

    /// Opens `index.html{query}` of `server` and waits until a model's maps are drawn.
    pub fn open_page(&self, server: &StaticServer, query: &str, timeout: Duration) {
        self.goto(&server.url(&format!("index.html{query}")));
        self.wait_for(
            "a model's maps",
            "return document.querySelectorAll('[data-testid=heatmap-cell]').length",
            timeout,
        );
    }

    /// Saves a PNG screenshot under tests/artifacts/.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let data = self.command("GET", "screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}
