//! Test helpers: a loopback HTTP capture server that records requests and answers as told,
//! and a way to run the fixture app (`src/bin/fixture.rs`) as a child process in a clean,
//! known environment.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs,
    missing_debug_implementations
)]

use std::collections::VecDeque;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How the capture server answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Answer with this status and an empty body.
    Status(u16),
    /// Answer 429 with this `Retry-After`.
    RetryAfter(String),
    /// Answer 429 with this `X-Sentry-Rate-Limits`.
    SentryRateLimits(String),
    /// Answer 200 (accepted) with this `X-Sentry-Rate-Limits`: Sentry may ask for a pause
    /// in any answer.
    AcceptedWithRateLimits(String),
    /// Never answer (the connection stays open until the server stops).
    Hang,
    /// Answer 200 after this many milliseconds (a slow server; requests are answered one
    /// at a time).
    Slow(u64),
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// The event inside a Sentry envelope body.
    pub fn envelope_event(&self) -> Value {
        let text = self.text();
        let mut lines = text.splitn(3, '\n');
        let _header = lines.next().unwrap();
        let item: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(item["type"], "event", "{text}");
        let rest = lines.next().unwrap();
        let len = item["length"].as_u64().unwrap() as usize;
        serde_json::from_str(&rest[..len]).unwrap()
    }

    /// The envelope's event id.
    pub fn envelope_id(&self) -> String {
        let text = self.text();
        let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        header["event_id"].as_str().unwrap().replace('-', "")
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    plans: Mutex<VecDeque<Plan>>,
    default: Plan,
    held: Mutex<Vec<tiny_http::Request>>,
    stop: AtomicBool,
}

/// A loopback HTTP server that records every request.
pub struct CaptureServer {
    server: Arc<tiny_http::Server>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    port: u16,
}

impl CaptureServer {
    /// Starts on 127.0.0.1 on a free port; answers `default` unless a plan was pushed.
    pub fn start(default: Plan) -> CaptureServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            plans: Mutex::new(VecDeque::new()),
            default,
            held: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let (s, sh) = (server.clone(), shared.clone());
        let thread = std::thread::spawn(move || {
            while !sh.stop.load(Ordering::Acquire) {
                let Ok(Some(mut request)) = s.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                sh.requests.lock().unwrap().push(Recorded {
                    method: request.method().to_string(),
                    url: request.url().to_owned(),
                    headers: request
                        .headers()
                        .iter()
                        .map(|h| (h.field.to_string(), h.value.to_string()))
                        .collect(),
                    body,
                    at: Instant::now(),
                });
                let plan = sh
                    .plans
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| sh.default.clone());
                let header = |k: &str, v: &str| {
                    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap()
                };
                match plan {
                    Plan::Status(code) => {
                        let _ = request
                            .respond(tiny_http::Response::from_string("{}").with_status_code(code));
                    }
                    Plan::RetryAfter(v) => {
                        let r = tiny_http::Response::from_string("")
                            .with_status_code(429)
                            .with_header(header("Retry-After", &v));
                        let _ = request.respond(r);
                    }
                    Plan::SentryRateLimits(v) => {
                        let r = tiny_http::Response::from_string("")
                            .with_status_code(429)
                            .with_header(header("X-Sentry-Rate-Limits", &v));
                        let _ = request.respond(r);
                    }
                    Plan::AcceptedWithRateLimits(v) => {
                        let r = tiny_http::Response::from_string("{}")
                            .with_status_code(200)
                            .with_header(header("X-Sentry-Rate-Limits", &v));
                        let _ = request.respond(r);
                    }
                    Plan::Hang => sh.held.lock().unwrap().push(request),
                    Plan::Slow(ms) => {
                        std::thread::sleep(Duration::from_millis(ms));
                        let _ = request
                            .respond(tiny_http::Response::from_string("{}").with_status_code(200));
                    }
                }
            }
        });
        CaptureServer {
            server,
            shared,
            thread: Some(thread),
            port,
        }
    }

    /// Answers the next requests with these plans, in order.
    pub fn push(&self, plans: impl IntoIterator<Item = Plan>) {
        self.shared.plans.lock().unwrap().extend(plans);
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A DSN pointing at this server (project 42).
    pub fn dsn(&self) -> String {
        format!("http://publickey@127.0.0.1:{}/42", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or `timeout`), and returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let end = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n || Instant::now() > end {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.held.lock().unwrap().clear();
    }
}

/// A port where connections are accepted and closed at once, without an answer.
pub struct ClosingServer {
    port: u16,
    stop: Arc<AtomicBool>,
    pub accepted: Arc<Mutex<usize>>,
}

impl ClosingServer {
    pub fn start() -> ClosingServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(Mutex::new(0));
        let (st, acc) = (stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        *acc.lock().unwrap() += 1;
                        drop(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        ClosingServer {
            port,
            stop,
            accepted,
        }
    }

    pub fn dsn(&self) -> String {
        format!("http://publickey@127.0.0.1:{}/42", self.port)
    }
}

impl Drop for ClosingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The planted identity every fixture run has: none of it may reach a server.
pub const PLANTED_USER: &str = "plantuser";
pub const PLANTED_HOST: &str = "planthost-box";
pub const PLANTED_HOME: &str = "/home/plantuser";
pub const PLANTED_TOKEN: &str = "ghp_plantedTokenAbcdefghijklmnopqrstuv0123";
pub const PLANTED_EMAIL: &str = "plant.user@example.org";
/// A secret-looking environment variable's value.
pub const PLANTED_ENV_SECRET: &str = "s3cr3t-env-value-4711";

/// Checks that no planted value, and not this machine's host name, is in `text`.
pub fn assert_no_pii(text: &str) {
    for planted in [
        PLANTED_USER,
        PLANTED_HOST,
        PLANTED_HOME,
        PLANTED_TOKEN,
        PLANTED_EMAIL,
        PLANTED_ENV_SECRET,
    ] {
        assert!(
            !text.contains(planted),
            "planted value {planted:?} leaked into:\n{text}"
        );
    }
    // The home of whoever built and runs the tests: build paths in stack frames carry it.
    if let Some(home) = std::env::var_os("HOME").and_then(|h| h.into_string().ok())
        && home.len() > 1
    {
        let home = format!("{}/", home.trim_end_matches('/'));
        assert!(
            !text.contains(&home),
            "this machine's home {home:?} leaked into:\n{text}"
        );
    }
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if host.len() >= 4 {
            assert!(
                !text.contains(host),
                "this machine's host name {host:?} leaked into:\n{text}"
            );
        }
    }
}

/// Directories for one fixture run: config and data.
pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Default for Dirs {
    fn default() -> Self {
        Self::new()
    }
}

impl Dirs {
    pub fn new() -> Dirs {
        Dirs {
            root: tempfile::tempdir().unwrap(),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.root.path().join("config")
    }
    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    pub fn outbox(&self) -> PathBuf {
        self.data().join("outbox")
    }
    pub fn settings(&self) -> PathBuf {
        self.config().join("settings.json")
    }
    /// Crash reports kept on this machine only (local mode, panics saved while off).
    pub fn kept(&self) -> PathBuf {
        self.data().join("kept")
    }
    /// Envelope files in `kept/`.
    pub fn kept_files(&self) -> Vec<PathBuf> {
        envelopes_in(&self.kept())
    }
    /// Writes the settings file (creating the config directory), as an earlier run or the
    /// CLI would have left it.
    pub fn write_settings(&self, json: &str) {
        std::fs::create_dir_all(self.config()).unwrap();
        std::fs::write(self.settings(), json).unwrap();
    }

    /// Consent given earlier with the CLI.
    pub fn grant_consent(&self) {
        self.write_settings(r#"{"consent": {"decided": true, "granted": true, "via": "cli"}}"#);
    }

    /// Envelope files waiting in the outbox.
    pub fn outbox_files(&self) -> Vec<PathBuf> {
        envelopes_in(&self.outbox())
    }
    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(self.data().join("sent.jsonl")).unwrap_or_default()
    }
}

/// The `*.envelope` files in a directory, sorted (oldest first).
pub fn envelopes_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "envelope"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The 32-hex event id in an envelope file's name (`<millis>-<id>.envelope`).
pub fn envelope_file_id(path: &Path) -> String {
    let name = path.file_name().unwrap().to_str().unwrap();
    let stem = name.strip_suffix(".envelope").unwrap();
    stem.split_once('-').unwrap().1.to_owned()
}

/// The fixture binary cargo built for this test run (only integration tests see it).
#[macro_export]
macro_rules! fixture_bin {
    () => {
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_fixture"))
    };
}

/// A command running the fixture in a clean environment: nothing inherited (no CI variables,
/// no DO_NOT_TRACK from the machine running the tests), the planted identity, and the
/// fixture app's directories.
pub fn fixture(bin: &Path, dirs: &Dirs, scenario: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg(scenario)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", PLANTED_HOME)
        .env("USER", PLANTED_USER)
        .env("LOGNAME", PLANTED_USER)
        .env("HOSTNAME", PLANTED_HOST)
        .env("GITHUB_TOKEN", PLANTED_ENV_SECRET)
        .env("RUST_BACKTRACE", "0")
        .env("FIXTURE_CONFIG_DIR", dirs.config())
        .env("FIXTURE_DATA_DIR", dirs.data());
    cmd
}

/// Runs a command with a time limit; panics if it does not end in time.
pub fn run(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "child still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = start.elapsed();
    (child.wait_with_output().unwrap(), elapsed)
}

/// stderr of an output, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stdout of an output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The GNU build id of a binary, as `readelf -n` shows it (`None` without readelf or id).
pub fn gnu_build_id(bin: &Path) -> Option<String> {
    let out = Command::new("readelf").arg("-n").arg(bin).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: ").map(str::to_owned))
}
