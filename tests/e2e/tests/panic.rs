//! The panic hook, in child processes: the previous hook still prints, the report arrives
//! scrubbed, the exit code is the panic's, `panic = "abort"` works, and a report survives a
//! SIGKILL right after it was stored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use consentry_e2e::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn panic_run(bin: &std::path::Path, dirs: &Dirs, dsn: &str, scenario: &str) -> Command {
    let mut cmd = fixture(bin, dirs, scenario);
    // A generous deadline: symbolication of the debug fixture can take seconds on a loaded
    // machine, and these tests check the symbolicated report. (The test with a hanging
    // server sets its own.)
    cmd.env("FIXTURE_TELEMETRY", "1")
        .env("FIXTURE_DSN", dsn)
        .env("FIXTURE_FLUSH_MS", "15000");
    cmd
}

/// Checks a panic report. The symbolicated one has its frames checked too; the copy stored
/// before symbolication (bare addresses) is what a next run sends when the process ended
/// first, which a slow machine can make happen within a short flush deadline.
fn check_panic_event(event: &Value, thread: &str) {
    check_panic_event_frames(event, thread, true);
}

fn check_panic_event_frames(event: &Value, thread: &str, symbolicated: bool) {
    let ex = &event["exception"]["values"][0];
    assert_eq!(ex["type"], "panic");
    assert_eq!(ex["mechanism"]["type"], "panic");
    assert_eq!(ex["mechanism"]["handled"], false);
    assert_eq!(event["level"], "fatal");
    assert_eq!(event["contexts"]["panic"]["thread"], thread);
    let location = event["contexts"]["panic"]["location"].as_str().unwrap();
    assert!(location.contains("fixture.rs:"), "{location}");
    let frames = ex["stacktrace"]["frames"]
        .as_array()
        .expect("a stack trace");
    if !symbolicated && frames.iter().all(|f| f["function"] == "<unresolved>") {
        assert!(
            frames.iter().all(|f| f["instruction_addr"].is_string()),
            "bare addresses"
        );
        return;
    }
    let last = frames.last().unwrap()["function"].as_str().unwrap_or("");
    assert!(
        !last.starts_with("std::panicking") && !last.starts_with("consentry::"),
        "the panic machinery is trimmed: innermost frame is {last}"
    );
    assert!(frames.iter().any(|f| {
        f["function"]
            .as_str()
            .unwrap_or("")
            .contains("fixture::main")
    }));
}

#[test]
fn a_panic_is_reported_after_the_previous_hook_and_the_exit_code_is_kept() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(
        panic_run(&fixture_bin!(), &dirs, &server.dsn(), "panic"),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(101), "a panic's exit code");
    let err = stderr(&out);
    let default_hook = err
        .find("panicked at")
        .expect("the default hook still prints");
    let ours = err.find("crash report").expect("our one line");
    assert!(default_hook < ours, "the previous hook runs first:\n{err}");
    assert!(err.contains("was sent"), "{err}");
    assert!(
        err.contains("'fixture telemetry disable'"),
        "says how to turn it off:\n{err}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_no_pii(&requests[0].text());
    let event = requests[0].envelope_event();
    check_panic_event(&event, "main");
    assert_eq!(
        event["exception"]["values"][0]["value"],
        "fixture panicked reading ~/data.csv with <secret:github>"
    );
    assert!(dirs.outbox_files().is_empty());
}

#[test]
fn a_panic_on_another_thread_is_reported_and_the_app_goes_on() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(
        panic_run(&fixture_bin!(), &dirs, &server.dsn(), "thread-panic"),
        LIMIT,
    );
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "main goes on");
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let event = requests[0].envelope_event();
    assert_eq!(event["contexts"]["panic"]["thread"], "worker-7");
    assert_eq!(
        event["exception"]["values"][0]["value"],
        "worker failed on <hostname>"
    );
}

#[test]
fn a_panic_with_a_server_that_never_answers_waits_at_most_the_flush_deadline() {
    let server = CaptureServer::start(Plan::Hang);
    let dirs = Dirs::new();
    let mut cmd = panic_run(&fixture_bin!(), &dirs, &server.dsn(), "panic");
    cmd.env("FIXTURE_FLUSH_MS", "700");
    let (out, elapsed) = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(101));
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(
        stderr(&out).contains("will be sent later"),
        "{}",
        stderr(&out)
    );
    assert_eq!(dirs.outbox_files().len(), 1, "kept for the next run");

    let ok = CaptureServer::start(Plan::Status(200));
    let (out, _) = run(panic_run(&fixture_bin!(), &dirs, &ok.dsn(), "noop"), LIMIT);
    assert!(out.status.success());
    let got = ok.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    check_panic_event_frames(&got[0].envelope_event(), "main", false);
}

/// The event id in the panic hook's line (`crash report <id> was ...`), without dashes.
fn reported_id(err: &str) -> String {
    let rest = &err[err.find("crash report ").expect("our one line") + "crash report ".len()..];
    rest.split_whitespace().next().unwrap().replace('-', "")
}

#[test]
fn a_panic_and_the_guards_drop_share_one_deadline_and_later_runs_skip_a_silent_server() {
    let hanging = CaptureServer::start(Plan::Hang);
    let dirs = Dirs::new();
    let deadline = Duration::from_millis(2000);
    for n in 1..=3 {
        let mut cmd = panic_run(&fixture_bin!(), &dirs, &hanging.dsn(), "panic");
        // Symbolication slower than the deadline: the report's helper thread is still at
        // work when the hook gives up, and the guard's drop must not wait for it again.
        cmd.env("FIXTURE_FLUSH_MS", deadline.as_millis().to_string())
            .env("CONSENTRY_TEST_SYMBOLICATION_DELAY_MS", "30000");
        let (out, elapsed) = run(cmd, LIMIT);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(101), "{err}");
        // One deadline from the panic to the end of the drop (plus start-up and exit).
        assert!(
            elapsed < deadline + Duration::from_millis(1200),
            "run {n} took {elapsed:?}:\n{err}"
        );
        assert!(err.contains("will be sent later"), "{err}");
        if n > 1 {
            // The first run marked the server unreachable: the panic sends nothing to it.
            let id = reported_id(&err);
            assert!(
                hanging.requests().iter().all(|r| r.envelope_id() != id),
                "run {n}'s panic report was sent to a server marked unreachable"
            );
        }
    }
    assert_eq!(dirs.outbox_files().len(), 3, "all kept for a later run");
}

/// Runs `scenario` against a server that never answers, kills the process with SIGKILL as
/// soon as a report is in the outbox, then runs the app again against a working server and
/// returns the one event that next run delivers.
fn killed_once_stored_then_delivered(scenario: &str) -> Value {
    let hanging = CaptureServer::start(Plan::Hang);
    let dirs = Dirs::new();
    let mut child = panic_run(&fixture_bin!(), &dirs, &hanging.dsn(), scenario)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while dirs.outbox_files().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no outbox file appeared"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
    assert_eq!(dirs.outbox_files().len(), 1);

    let server = CaptureServer::start(Plan::Status(200));
    let (out, _) = run(
        panic_run(&fixture_bin!(), &dirs, &server.dsn(), "noop"),
        LIMIT,
    );
    assert!(out.status.success());
    let got = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "the next run delivers it");
    got[0].envelope_event()
}

#[test]
fn a_report_survives_sigkill_right_after_it_was_stored() {
    let event = killed_once_stored_then_delivered("capture-and-wait");
    assert_eq!(event["exception"]["values"].as_array().unwrap().len(), 3);
}

#[test]
fn a_panic_report_survives_sigkill_right_after_it_was_stored() {
    let event = killed_once_stored_then_delivered("thread-panic-and-wait");
    // Killed before or after symbolication: either copy is a whole report.
    check_panic_event_frames(&event, "worker-7", false);
}

/// The fixture built with `panic = "abort"`, in its own target directory.
fn abort_fixture() -> PathBuf {
    if let Ok(path) = std::env::var("CONSENTRY_ABORT_FIXTURE") {
        return PathBuf::from(path);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = workspace.join("target/abort-fixture");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "consentry-e2e",
            "--bin",
            "fixture",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&workspace)
        .env("RUSTFLAGS", "-C panic=abort")
        .status()
        .unwrap();
    assert!(status.success(), "building the panic=abort fixture failed");
    target.join("debug/fixture")
}

#[test]
fn a_panic_is_reported_with_panic_abort() {
    let bin = abort_fixture();
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(panic_run(&bin, &dirs, &server.dsn(), "panic"), LIMIT);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(6),
            "aborted (SIGABRT): {:?}",
            out.status
        );
    }
    assert!(stderr(&out).contains("panicked at"));
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        1,
        "the hook ran before the abort: {}",
        stderr(&out)
    );
    check_panic_event(&requests[0].envelope_event(), "main");
}

#[test]
fn a_slow_symbolication_does_not_keep_a_panic_from_leaving_before_the_abort() {
    let bin = abort_fixture();
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = panic_run(&bin, &dirs, &server.dsn(), "panic");
    cmd.env("FIXTURE_FLUSH_MS", "2000")
        .env("CONSENTRY_TEST_SYMBOLICATION_DELAY_MS", "30000");
    let (out, elapsed) = run(cmd, LIMIT);
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let err = stderr(&out);
    assert!(err.contains("was sent"), "{err}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "sent before the abort: {err}");
    check_panic_event_frames(&requests[0].envelope_event(), "main", false);
}
