//! The fixture app the end-to-end tests run as a child process. Its app name is `fixture`,
//! so consentry reads `FIXTURE_TELEMETRY`, `FIXTURE_CONFIG_DIR`, `FIXTURE_DATA_DIR`, ...
//!
//! Configuration from the environment: `FIXTURE_DSN`, `FIXTURE_SINK` (`json`, `ga4`,
//! `segment`, `posthog`) with `FIXTURE_SINK_URL`, `FIXTURE_POLICY` (`optin`, `optout`),
//! `FIXTURE_FLUSH_MS`, `FIXTURE_USAGE_INTERVAL_MS`, `FIXTURE_USAGE_FLUSH_MS`,
//! `FIXTURE_ALLOW_CI`, `FIXTURE_BACKTRACE` (`0` to turn off), `FIXTURE_MINIDUMPS` (`1`: the
//! app turns minidumps on), `FIXTURE_REVIEW` (`1`: crash
//! reports wait for the user's review), `FIXTURE_GROUP` (a consent group), `FIXTURE_APP` (another
//! app name, e.g. a second member of a consent group; its variables then start with that
//! name, `FIXTURE_DAEMON_DATA_DIR` for `fixture-daemon`).
//!
//! The scenario is the first argument; see `main`.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::panic,
    missing_docs
)]

use std::fmt;
use std::time::Duration;

use consentry::{Config, Policy, Prop, Sink};

/// An error with a chain of `links` links, each message carrying planted identities.
#[derive(Debug)]
struct ChainError {
    level: usize,
    source: Option<Box<ChainError>>,
}

impl ChainError {
    fn new(links: usize) -> ChainError {
        let mut e = ChainError {
            level: links,
            source: None,
        };
        for level in (1..links).rev() {
            e = ChainError {
                level,
                source: Some(Box::new(e)),
            };
        }
        e
    }
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.level {
            1 => write!(f, "cannot train the model in /home/plantuser/projects/yolo"),
            2 => write!(
                f,
                "cannot read /home/plantuser/.config/fixture/token.txt on planthost-box"
            ),
            3 => write!(
                f,
                "upload refused for plant.user@example.org with token ghp_plantedTokenAbcdefghijklmnopqrstuv0123"
            ),
            n => write!(f, "link {n} from s3cr3t-env-value-4711"),
        }
    }
}

impl std::error::Error for ChainError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

consentry::event_catalog! {
    /// The fixture's typed usage events.
    enum FixtureEvent {
        /// A model was exported.
        ModelExported = "model_exported",
    }
}

/// A different error each time (its message differs), so deduplication cannot hide it.
#[derive(Debug)]
struct Numbered(usize);

impl fmt::Display for Numbered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {} failed in /home/plantuser/jobs", self.0)
    }
}

impl std::error::Error for Numbered {}

/// The current SIGSEGV handler's address (none on Windows).
#[cfg(not(unix))]
fn segv_handler() -> usize {
    0
}

/// The current SIGSEGV handler's address.
#[cfg(unix)]
#[allow(unsafe_code)]
fn segv_handler() -> usize {
    // SAFETY: reads the current action only.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut old);
        old.sa_sigaction
    }
}

/// Writes through a null pointer.
#[inline(never)]
#[allow(unsafe_code)]
fn crash_null() {
    let p: *mut u64 = std::hint::black_box(std::ptr::null_mut());
    // SAFETY: not safe at all: the point is the SIGSEGV.
    unsafe { std::ptr::write_volatile(p, 42) };
}

/// Recursion without end: a stack overflow.
#[inline(never)]
#[allow(unconditional_recursion)]
fn overflow(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    overflow(depth + 1) + pad[(depth % 64) as usize]
}

/// A breakpoint instruction: SIGTRAP, after which the program counter is past it.
#[inline(never)]
#[allow(unsafe_code)]
fn crash_trap() {
    // SAFETY: a trap, on purpose.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("int3")
    };
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("brk #0")
    };
    println!("went on after the trap");
}

#[inline(never)]
fn crash_abort() {
    std::process::abort();
}

#[inline(never)]
#[allow(unsafe_code)]
fn crash_c_abort() {
    // SAFETY: ends the process.
    unsafe { libc::abort() };
}

/// A real bus error: reads a mapped page past the end of its (empty) file.
#[cfg(unix)]
#[inline(never)]
#[allow(unsafe_code)]
fn crash_bus() {
    let file = tempfile::tempfile().unwrap();
    // SAFETY: not safe at all: the point is the SIGBUS.
    unsafe {
        use std::os::fd::AsRawFd;
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        println!("{}", std::ptr::read_volatile(p.cast::<u8>()));
    }
}

/// Forks a child that writes through a null pointer; prints the signal that ended it.
#[cfg(unix)]
#[allow(unsafe_code)]
fn fork_and_crash() {
    // SAFETY: the child only crashes (or exits at once).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        crash_null();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    println!("child signal {}", libc::WTERMSIG(status));
}

/// Raises SIGBUS at itself: the standard library's handler (there for stack overflows)
/// ignores a SIGBUS that is not a fault, so the process goes on, with or without consentry.
#[cfg(unix)]
#[inline(never)]
#[allow(unsafe_code)]
fn raise_bus() {
    // SAFETY: raise only sends the signal.
    unsafe { libc::raise(libc::SIGBUS) };
    println!("still running");
}

/// The process's peak resident set size so far (VmHWM), in kB; 0 where unknown.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

fn config() -> Config {
    let app = std::env::var("FIXTURE_APP").unwrap_or_else(|_| "fixture".to_owned());
    let mut c = Config::new(app, "1.2.3");
    if std::env::var("FIXTURE_REVIEW").as_deref() == Ok("1") {
        c = c.review(true);
    }
    if std::env::var("FIXTURE_NATIVE").as_deref() == Ok("0") {
        c = c.native_crashes(false);
    }
    if let Ok(group) = std::env::var("FIXTURE_GROUP") {
        c = c.consent_group(group);
    }
    if let Ok(dsn) = std::env::var("FIXTURE_DSN") {
        c = c.dsn(dsn);
    }
    if let (Ok(kind), Ok(url)) = (
        std::env::var("FIXTURE_SINK"),
        std::env::var("FIXTURE_SINK_URL"),
    ) {
        let sink = match kind.as_str() {
            "ga4" => Sink::ga4("G-FIXTURE1", "fixture-api-secret").base_url(url),
            "segment" => Sink::segment("fixture-write-key").base_url(url),
            "posthog" => Sink::posthog("phc_fixture_key").base_url(url),
            _ => Sink::json(url),
        };
        c = c.usage_sink(sink);
    }
    if std::env::var("FIXTURE_POLICY").as_deref() == Ok("optout") {
        c = c.policy(Policy::OptOut);
    }
    if std::env::var("FIXTURE_FLUSH_MS").as_deref() == Ok("max") {
        c = c.flush_timeout(Duration::MAX);
    } else if let Some(d) = env_ms("FIXTURE_FLUSH_MS") {
        c = c.flush_timeout(d);
    }
    if let Some(d) = env_ms("FIXTURE_USAGE_INTERVAL_MS") {
        c = c.usage_interval(d);
    }
    if let Ok(n) = std::env::var("FIXTURE_USAGE_QUEUE") {
        c = c.usage_queue_capacity(n.parse().unwrap());
    }
    if let Some(d) = env_ms("FIXTURE_USAGE_FLUSH_MS") {
        c = c.usage_flush_timeout(d);
    }
    if std::env::var("FIXTURE_ALLOW_CI").as_deref() == Ok("1") {
        c = c.allow_ci(true);
    }
    if std::env::var("FIXTURE_MINIDUMPS").as_deref() == Ok("1") {
        c = c.minidumps(true);
    }
    if std::env::var("FIXTURE_BACKTRACE").as_deref() == Ok("0") {
        c = c.attach_backtrace(false);
    }
    if let Some(d) = env_ms("FIXTURE_PROMPT_MS") {
        c = c.prompt_timeout(d);
    }
    if let Ok(needle) = std::env::var("FIXTURE_IGNORE") {
        c = c.ignore(consentry::Ignore::message_contains(needle));
    }
    if std::env::var("FIXTURE_CUSTOM_RULES").as_deref() == Ok("1") {
        use consentry::scrub::{Redaction, RuleConfig};
        c = c
            .scrub_rule(
                RuleConfig::regex("ticket", "PRJ-[0-9]+")
                    .with_redaction(Redaction::Placeholder("<ticket>".into())),
            )
            .disable_scrub_rule("phone");
    }
    if let Ok(n) = std::env::var("FIXTURE_OUTBOX_MAX") {
        c = c.outbox_limits(n.parse().unwrap(), 10 << 20);
    }
    match std::env::var("FIXTURE_HOOK").as_deref() {
        // The app's hook adds a tag.
        Ok("tag") => {
            c = c.before_send(|mut e| {
                e["tags"]["hooked"] = "yes".into();
                Some(e)
            })
        }
        // The app's hook tries to put personal data back: it is scrubbed again.
        Ok("pii") => {
            c = c.before_send(|mut e| {
                e["extra"]["leak"] = "/home/plantuser/secret.txt".into();
                Some(e)
            })
        }
        // The app's hook leaves `extra` a string (consentry adds its counts there).
        Ok("extra-string") => {
            c = c.before_send(|mut e| {
                e["extra"] = "not an object".into();
                Some(e)
            })
        }
        // The app's hook returns something that is not an event: dropped.
        Ok("not-an-event") => c = c.before_send(|_| Some(serde_json::Value::from(7))),
        // The app's hook drops every event.
        Ok("drop") => c = c.before_send(|_| None),
        // The app's hook panics: the event is dropped, the app goes on.
        Ok("panic") => c = c.before_send(|_| panic!("hook bug")),
        // The app's hook calls `flush` (which must return at once there), and says how long
        // it took.
        Ok("flush") => {
            c = c.before_send(|e| {
                let start = std::time::Instant::now();
                let flushed = consentry::flush(Duration::from_secs(10));
                eprintln!(
                    "flush_in_hook_ms={} flushed={flushed}",
                    start.elapsed().as_millis()
                );
                Some(e)
            })
        }
        _ => {}
    }
    c
}

/// Panics on a thread named `worker-7` and waits for it to end.
fn panic_on_a_named_thread() {
    let t = std::thread::Builder::new()
        .name("worker-7".into())
        .spawn(|| panic!("worker failed on planthost-box"))
        .unwrap();
    let _ = t.join();
}

/// An error whose message is the given text.
#[derive(Debug)]
struct TextError(String);

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextError {}

/// A GitHub-style token (`ghp_` and 36 alphanumerics) that no other fixture text contains.
const CUT_TOKEN: &str = "ghp_R7kq2Xw9LmN4pT8vB1cY6dF3gH5jK0sA2eQz";

/// A message with a token across byte 256 and another across byte 1024: wherever a text is
/// cut before scrubbing, part of a token would be left.
fn message_with_tokens_across_cuts() -> String {
    let mut s = String::from("login failed:");
    for cut in [256, 1024] {
        while s.len() < cut - 16 {
            s.push_str(" retry");
        }
        s.push(' ');
        s.push_str(CUT_TOKEN);
    }
    s.push_str(" was rejected");
    s
}

/// `n` megabytes of words.
fn megabytes_of_words(n: usize) -> String {
    "word ".repeat((n << 20) / 5)
}

/// Forks `n` children 5 to 50 ms after `init` (which ended at `started`) while a thread
/// captures errors and tracks events in a loop. Returns `Some(k)` in the k-th child, which
/// goes on as the app would; in the parent, waits for every child (killing any still
/// running 5 s after the last fork), prints `children=N hung=H failed=F` and returns `None`.
#[cfg(unix)]
#[allow(unsafe_code)]
fn fork_children(started: std::time::Instant, n: usize) -> Option<usize> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                consentry::capture_error(&Numbered(i));
                consentry::track("busy", [("n", i)]);
                i += 1;
            }
        })
    };
    let mut pids = Vec::new();
    for k in 0..n {
        let at = Duration::from_millis(5 + (45 * k / n.saturating_sub(1).max(1)) as u64);
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        // SAFETY: fork has no preconditions; the child only uses what consentry promises
        // is safe after a fork (its public functions) and returns from main.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            return Some(k);
        }
        pids.push(pid);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = busy.join();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (mut hung, mut failed) = (0, 0);
    for pid in &pids {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child, with a valid pointer.
            let r = unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
            if r == *pid {
                if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                    failed += 1;
                }
                break;
            }
            if r < 0 {
                failed += 1;
                break;
            }
            if std::time::Instant::now() > deadline {
                hung += 1;
                // SAFETY: kill and reap our own child.
                unsafe {
                    libc::kill(*pid, libc::SIGKILL);
                    libc::waitpid(*pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    println!("children={} hung={hung} failed={failed}", pids.len());
    None
}

/// An error whose message holds a path: the same bug from two machines reads differently.
#[derive(Debug)]
struct SettingsFileError(String);

impl fmt::Display for SettingsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "settings file {} is invalid", self.0)
    }
}

impl std::error::Error for SettingsFileError {}

#[inline(never)]
fn load_settings_file(path: &str) {
    consentry::capture_error(&SettingsFileError(path.to_owned()));
}

fn arg(n: usize) -> Option<String> {
    std::env::args().nth(n)
}

fn count(n: usize, default: usize) -> usize {
    arg(n).and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn main() {
    let scenario = arg(1).unwrap_or_default();
    if scenario == "early" {
        // Captured before init: kept, then reported by init (a second later: the event
        // keeps the time it was captured).
        consentry::capture_error(&ChainError::new(2));
        std::thread::sleep(Duration::from_secs(1));
    }
    if scenario == "early-token" {
        // Captured before init, with tokens across the cuts of any fixed buffer.
        consentry::capture_error(&TextError(message_with_tokens_across_cuts()));
    }
    if scenario == "consentry" {
        // The standalone `consentry` binary, as a user runs it for this app:
        // `consentry --app fixture enable|disable|status` (the directories come from
        // FIXTURE_CONFIG_DIR and FIXTURE_DATA_DIR, as for the app).
        use consentry::cli::{Command, Standalone};
        let command = match arg(2).as_deref() {
            Some("enable") => Command::Enable {
                crash: false,
                usage: false,
                local: false,
            },
            Some("disable") => Command::Disable {
                crash: false,
                usage: false,
            },
            _ => Command::Status { json: false },
        };
        let cli = Standalone {
            app: Some("fixture".to_owned()),
            config_dir: None,
            data_dir: None,
            dsn: None,
            policy: None,
            allow_ci: false,
            group: None,
            command,
        };
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        std::process::exit(i32::from(cli.run_with(&mut out, &mut err)));
    }
    let segv_before = segv_handler();
    let init_start = std::time::Instant::now();
    let guard = consentry::init(config());
    let init_time = init_start.elapsed();
    if std::env::var_os("FIXTURE_PRINT_INIT").is_some() {
        eprintln!("init_ms={}", init_time.as_millis());
    }
    match scenario.as_str() {
        // An error with a three-link chain and a message; the guard flushes on return.
        // The same error, from the same place, with the path given.
        "grouped" => load_settings_file(&arg(2).unwrap_or_default()),
        "errors" | "early" => {
            consentry::capture_error(&ChainError::new(3));
            consentry::capture_message(
                "fixture message from /home/plantuser",
                consentry::Level::Warning,
            );
        }
        // The same error captured N times.
        "repeat" => {
            let err = ChainError::new(2);
            for _ in 0..count(2, 10) {
                consentry::capture_error(&err);
            }
        }
        // A panic on the main thread (the default hook prints first).
        "panic" => {
            consentry::track("about_to_panic", [("where", "main")]);
            panic!(
                "fixture panicked reading /home/plantuser/data.csv with {}",
                "ghp_plantedTokenAbcdefghijklmnopqrstuv0123"
            );
        }
        // A panic on a named thread; the app goes on and exits 0.
        "thread-panic" => {
            panic_on_a_named_thread();
            println!("main goes on");
        }
        // A panic on a named thread, then wait: the test kills the process.
        "thread-panic-and-wait" => {
            panic_on_a_named_thread();
            std::thread::sleep(Duration::from_secs(60));
        }
        // Capture, then leave through consentry::exit with the guard still alive (its drop
        // never runs: process::exit skips destructors).
        "exit" => {
            consentry::capture_error(&ChainError::new(3));
            consentry::exit(3);
        }
        // Capture, wait N ms, then `std::process::exit(3)` with the guard alive (its drop
        // never runs): `capture-then-exit N`.
        "capture-then-exit" => {
            consentry::capture_error(&ChainError::new(3));
            consentry::track("ran", [("command", "build")]);
            std::thread::sleep(Duration::from_millis(count(2, 0) as u64));
            std::process::exit(3);
        }
        // Capture, flush, then sleep: the test kills the process.
        "capture-and-wait" => {
            consentry::capture_error(&ChainError::new(3));
            let _ = consentry::flush(Duration::from_millis(1));
            println!("captured");
            std::thread::sleep(Duration::from_secs(60));
        }
        // Usage: N events.
        "track" => {
            for i in 0..count(2, 1) {
                consentry::track(
                    "train",
                    [
                        ("task", Prop::from("detect")),
                        ("epoch", Prop::from(i)),
                        ("model", Prop::choice("yolov8n", &["yolov8n", "yolov8s"])),
                        (
                            "custom_model",
                            Prop::choice("my-private-net", &["yolov8n", "yolov8s"]),
                        ),
                        ("project", Prop::hashed("acme-secret-project")),
                        (
                            "note",
                            Prop::from(
                                "data in /home/plantuser/datasets for plant.user@example.org",
                            ),
                        ),
                        ("fast", Prop::from(true)),
                    ],
                );
            }
        }
        // Usage events with bad names: dropped.
        "track-bad" => {
            consentry::track("Bad Name", [("task", "x")]);
            consentry::track("ok_name", [("Bad-Key", "x"), ("kept_key", "y")]);
            consentry::track("good", [("task", "kept")]);
        }
        // Distinct messages spread over time: `capture-spread N MS`.
        "capture-spread" => {
            for i in 0..count(2, 10) {
                consentry::capture_message(&format!("tick {i}"), consentry::Level::Info);
                std::thread::sleep(Duration::from_millis(count(3, 50) as u64));
            }
        }
        // Usage and errors spread over time: `track-spread N MS`.
        "track-spread" => {
            for i in 0..count(2, 10) {
                consentry::track("tick", [("n", i)]);
                std::thread::sleep(Duration::from_millis(count(3, 50) as u64));
            }
        }
        // A million errors and usage events with the servers down: memory stays bounded.
        // Prints the resident-set peak before and after, in kB (Linux).
        "memory" => {
            let n = count(2, 1_000_000);
            // Warm up: the first captures build the scrubber, gather facts, fill the queues.
            for i in 0..1000 {
                consentry::capture_error(&Numbered(i));
                consentry::track("tick", [("n", i)]);
            }
            std::thread::sleep(Duration::from_millis(500));
            let start = peak_rss_kb();
            for i in 0..n {
                consentry::capture_error(&Numbered(i));
                consentry::track("tick", [("n", i)]);
            }
            let end = peak_rss_kb();
            println!("peak_rss_kb_start={start} peak_rss_kb_end={end} calls={n}");
        }
        // Ask for consent (only prompts on a terminal), then capture an error.
        "ask" => {
            let decision = consentry::ask();
            println!(
                "after ask: crash={} usage={}",
                decision.crash, decision.usage
            );
            consentry::capture_error(&ChainError::new(1));
        }
        // An anyhow error with context, captured with its backtrace.
        "anyhow" => {
            let err = anyhow::Error::new(ChainError::new(2))
                .context("while running the job in /home/plantuser/job");
            consentry::capture_anyhow(&err);
        }
        // log and tracing records become breadcrumbs of the next report.
        "breadcrumbs" => {
            struct Quiet;
            impl log::Log for Quiet {
                fn enabled(&self, _: &log::Metadata<'_>) -> bool {
                    false
                }
                fn log(&self, _: &log::Record<'_>) {}
                fn flush(&self) {}
            }
            log::set_logger(Box::leak(Box::new(consentry::log::BreadcrumbLogger::new(
                Quiet,
            ))))
            .unwrap();
            log::set_max_level(log::LevelFilter::Debug);
            log::info!("opened /home/plantuser/project/config.toml");
            log::debug!("below the breadcrumb level: not kept");
            use tracing_subscriber::layer::SubscriberExt;
            let subscriber =
                tracing_subscriber::registry().with(consentry::tracing::BreadcrumbLayer::new());
            tracing::subscriber::with_default(subscriber, || {
                tracing::warn!(
                    user = "plantuser",
                    attempt = 3,
                    "retrying the upload to planthost-box"
                );
            });
            consentry::add_breadcrumb("app", "about to fail", consentry::Level::Info);
            consentry::capture_error(&ChainError::new(1));
        }
        // A message for the app's own scrubbing rules.
        "custom-rules" => {
            consentry::capture_message(
                "ticket PRJ-4711 from the hotline +44 20 7946 0958",
                consentry::Level::Info,
            );
        }
        // A typed catalog event.
        "catalog" => {
            consentry::track_event(FixtureEvent::ModelExported, [("format", "onnx")]);
        }
        // How many threads the process has after init (Linux): 1 means consentry started none.
        "threads" => {
            let n = std::fs::read_dir("/proc/self/task")
                .map(|d| d.count())
                .unwrap_or(0);
            println!("threads={n}");
        }
        // The environment a child process gets (`consentry::child_env()`): one `NAME=VALUE`
        // a line, then `end`.
        "child-env" => {
            for (k, v) in consentry::child_env() {
                println!("{}={}", k.to_string_lossy(), v.to_string_lossy());
            }
            println!("end");
        }
        // The app's mounted `telemetry` subcommand, as a user runs it: `telemetry enable
        // [--local]`, `telemetry disable`, `telemetry pending`, `telemetry send ID|--all`,
        // `telemetry discard ID|--all`, `telemetry settings KEY=VALUE`, `telemetry preview`. `init` above did nothing: this is the telemetry command.
        "telemetry" => {
            use consentry::cli::Command;
            let (what, rest) = (arg(2).unwrap_or_default(), arg(3));
            let all = rest.as_deref() == Some("--all");
            let id = rest.clone().filter(|_| !all);
            let cmd = match what.as_str() {
                "enable" => Command::Enable {
                    crash: false,
                    usage: false,
                    local: rest.as_deref() == Some("--local"),
                },
                "disable" => Command::Disable {
                    crash: false,
                    usage: false,
                },
                "pending" => Command::Pending { json: false },
                "status" => Command::Status { json: false },
                "send" => Command::Send { id, all },
                "discard" => Command::Discard { id, all },
                "settings" => Command::Settings {
                    json: false,
                    args: rest.into_iter().collect(),
                },
                "preview" => Command::Preview { json: false },
                other => panic!("unknown telemetry command {other:?}"),
            };
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let code = consentry::cli::run_with(&cmd, &config(), &mut out, &mut err);
            drop(guard);
            std::process::exit(i32::from(code));
        }
        // Print the decision.
        "status" => println!("{}", consentry::current_decision()),
        // Print the status a run would see, as JSON.
        "status-of" => println!("{}", consentry::status_on_disk(&config()).to_json()),
        // A short-lived CLI: one usage event, one error, and return from main.
        "cli-once" => {
            consentry::track("ran", [("command", "build")]);
            consentry::capture_error(&Numbered(1));
        }
        // One message of N megabytes (`huge N`).
        "huge" => {
            consentry::capture_message(&megabytes_of_words(count(2, 50)), consentry::Level::Error);
        }
        // N messages of M megabytes each (`big-many N M`), then the peak resident set, in kB.
        "big-many" => {
            let words = megabytes_of_words(count(3, 5));
            for i in 0..count(2, 100) {
                let message = format!("report {i}: {words}");
                consentry::capture_message(&message, consentry::Level::Error);
            }
            let _ = consentry::flush(Duration::from_secs(5));
            println!("peak_rss_kb={}", peak_rss_kb());
        }
        // An error with an N-link chain (`deep-chain N`), captured on a thread with a 2 MB
        // stack.
        "deep-chain" => {
            let err = ChainError::new(count(2, 5000));
            std::thread::scope(|s| {
                std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn_scoped(s, || consentry::capture_error(&err))
                    .unwrap()
                    .join()
                    .unwrap();
            });
            println!("captured");
        }
        // fork N children after init (`fork N`); each captures, tracks and returns from main.
        #[cfg(unix)]
        "fork" => {
            if let Some(k) = fork_children(init_start + init_time, count(2, 20)) {
                consentry::capture_error(&Numbered(1_000_000 + k));
                consentry::track("child", [("k", k)]);
            }
        }
        // Whether init changed the SIGSEGV handler: prints `installed` or `not installed`.
        "handler-probe" => {
            let changed = segv_handler() != segv_before;
            println!(
                "{}",
                if changed {
                    "installed"
                } else {
                    "not installed"
                }
            );
        }
        // Crashes that are not panics; each dies by a signal.
        "native-null" => crash_null(),
        "native-overflow" => println!("{}", overflow(1)),
        "native-abort" => crash_abort(),
        // The C runtime's `abort` (on Windows, `std::process::abort` is a fail-fast exit,
        // which no handler in the process sees).
        "native-c-abort" => crash_c_abort(),
        #[cfg(unix)]
        "native-bus" => crash_bus(),
        #[cfg(unix)]
        "native-raise-bus" => raise_bus(),
        // The same, then `std::process::exit`, which skips the guard's drop.
        #[cfg(unix)]
        "native-raise-bus-exit" => {
            raise_bus();
            std::process::exit(0);
        }
        "native-trap" => crash_trap(),
        // A child forked after init crashes; the parent says how it ended and goes on.
        #[cfg(unix)]
        "native-fork-null" => fork_and_crash(),
        // A stack overflow on a thread the app spawned (its own alternate signal stack).
        "native-thread-overflow" => {
            let worker = std::thread::Builder::new()
                .name("worker-9".into())
                .stack_size(256 * 1024)
                .spawn(|| overflow(1))
                .unwrap();
            println!("{:?}", worker.join());
        }
        // Do nothing (init and drop).
        _ => {}
    }
    drop(guard);
}
