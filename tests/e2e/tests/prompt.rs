//! The consent prompt on a real terminal (a pseudo-terminal): yes, no, no answer, and no
//! terminal at all.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, unsafe_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use consentry_e2e::*;
use serde_json::Value;

/// A child whose stdin and stderr are a pseudo-terminal; what it writes there is collected.
struct OnTerminal {
    child: Child,
    master: File,
    seen: Arc<Mutex<String>>,
}

impl OnTerminal {
    fn spawn(mut cmd: Command) -> OnTerminal {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: both pointers are valid for writes; name, termios and winsize may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty failed");
        // SAFETY: openpty returned two fresh descriptors that nothing else owns.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let child = cmd
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(String::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        OnTerminal {
            child,
            master,
            seen,
        }
    }

    fn wait_for(&self, text: &str) {
        let start = Instant::now();
        while !self.seen.lock().unwrap().contains(text) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never saw {text:?} in:\n{}",
                self.seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn answer(&mut self, line: &str) {
        self.master.write_all(line.as_bytes()).unwrap();
    }

    fn finish(self) -> (String, String) {
        let out = self.child.wait_with_output().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let terminal = self.seen.lock().unwrap().clone();
        (String::from_utf8_lossy(&out.stdout).into_owned(), terminal)
    }
}

fn ask_cmd(dirs: &Dirs, server: &CaptureServer) -> Command {
    let mut cmd = fixture(&fixture_bin!(), dirs, "ask");
    cmd.env("FIXTURE_DSN", server.dsn());
    cmd
}

fn settings(dirs: &Dirs) -> Value {
    serde_json::from_slice(&std::fs::read(dirs.settings()).unwrap()).unwrap()
}

#[test]
fn yes_at_the_prompt_turns_reporting_on_at_once() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut term = OnTerminal::spawn(ask_cmd(&dirs, &server));
    term.wait_for("[y/N]");
    term.answer("y\n");
    let (stdout, terminal) = term.finish();
    assert!(
        terminal.contains("Never sent: your user name, host name, home paths"),
        "{terminal}"
    );
    assert!(
        terminal.contains("turn it off any time with 'fixture telemetry disable'"),
        "{terminal}"
    );
    assert!(terminal.contains("Thank you."), "{terminal}");
    assert!(
        stdout.contains("after ask: crash=true usage=true"),
        "{stdout}"
    );
    assert_eq!(settings(&dirs)["consent"]["via"], "prompt");
    assert_eq!(settings(&dirs)["consent"]["granted"], true);
    assert_eq!(
        server.wait_for(1, Duration::from_secs(5)).len(),
        1,
        "the error after the yes is sent"
    );
}

#[test]
fn no_at_the_prompt_sends_nothing_at_all() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut term = OnTerminal::spawn(ask_cmd(&dirs, &server));
    term.wait_for("[y/N]");
    term.answer("n\n");
    let (stdout, terminal) = term.finish();
    assert!(
        stdout.contains("after ask: crash=false usage=false"),
        "{stdout}"
    );
    assert!(terminal.contains("Nothing will be sent."), "{terminal}");
    let s = settings(&dirs);
    assert_eq!(
        (s["sync"].as_bool(), s["consent"]["granted"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(s["consent"]["via"], "prompt");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.requests().is_empty(),
        "unlike OpenVINO, not even one event for a no"
    );
    assert!(dirs.outbox_files().is_empty());
}

#[test]
fn no_answer_in_time_is_no_and_asks_again_a_day_later() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = ask_cmd(&dirs, &server);
    cmd.env("FIXTURE_PROMPT_MS", "500");
    let start = Instant::now();
    let term = OnTerminal::spawn(cmd);
    term.wait_for("[y/N]");
    let (stdout, terminal) = term.finish();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(stdout.contains("after ask: crash=false"), "{stdout}");
    assert!(
        terminal.contains("No answer: nothing will be sent"),
        "{terminal}"
    );
    assert_eq!(
        settings(&dirs)["consent"]["decided"],
        false,
        "not recorded: asked again next time"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn without_a_terminal_nobody_is_asked() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(ask_cmd(&dirs, &server), Duration::from_secs(20));
    assert!(out.status.success());
    assert!(!stderr(&out).contains("[y/N]"), "{}", stderr(&out));
    assert!(stdout(&out).contains("after ask: crash=false"));
    assert!(server.requests().is_empty());
}

impl OnTerminal {
    /// Waits until `text` was written `n` times.
    fn wait_for_count(&self, text: &str, n: usize) {
        let start = Instant::now();
        while self.seen.lock().unwrap().matches(text).count() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never saw {text:?} {n} times in:\n{}",
                self.seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn an_unanswered_prompt_is_remembered_and_not_repeated_for_a_day() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = ask_cmd(&dirs, &server);
    cmd.env("FIXTURE_PROMPT_MS", "500");
    let term = OnTerminal::spawn(cmd);
    term.wait_for("[y/N]");
    let (stdout, terminal) = term.finish();
    assert!(stdout.contains("after ask: crash=false"), "{stdout}");
    assert!(
        terminal.contains("You will be asked again in a day"),
        "{terminal}"
    );
    let s = settings(&dirs);
    let at = s["prompt_unanswered_at"]
        .as_str()
        .unwrap_or_else(|| panic!("no prompt_unanswered_at: {s}"));
    assert_eq!(at.len(), 20, "RFC 3339, seconds, UTC: {at}");
    assert_eq!(s["consent"]["decided"], false, "no answer is not a no: {s}");

    // The next run, within the day, on a terminal: no question, no wait, nothing sent.
    let mut cmd = ask_cmd(&dirs, &server);
    cmd.env("FIXTURE_PROMPT_MS", "5000");
    let start = Instant::now();
    let (stdout, terminal) = OnTerminal::spawn(cmd).finish();
    assert!(!terminal.contains("[y/N]"), "asked again: {terminal}");
    assert!(stdout.contains("after ask: crash=false"), "{stdout}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "waited for an answer: {:?}",
        start.elapsed()
    );
    assert!(server.requests().is_empty());

    // A day later it asks again.
    let mut s = settings(&dirs);
    s["prompt_unanswered_at"] = "2000-01-01T00:00:00Z".into();
    std::fs::write(dirs.settings(), serde_json::to_vec(&s).unwrap()).unwrap();
    let mut term = OnTerminal::spawn(ask_cmd(&dirs, &server));
    term.wait_for("[y/N]");
    term.answer("n\n");
    let (stdout, _) = term.finish();
    assert!(stdout.contains("after ask: crash=false"), "{stdout}");
    assert_eq!(settings(&dirs)["consent"]["granted"], false);
    assert!(server.requests().is_empty());
}

/// Consent given, review on (by the app's config, or by the user's setting), and one report
/// captured by an earlier run without a terminal: it waits, unsent.
fn one_report_waiting_for_review(dirs: &Dirs, server: &CaptureServer, by_setting: bool) -> String {
    if by_setting {
        dirs.write_settings(
            r#"{"review": true, "consent": {"decided": true, "granted": true, "via": "cli"}}"#,
        );
    } else {
        dirs.grant_consent();
    }
    let mut cmd = ask_cmd(dirs, server);
    if !by_setting {
        cmd.env("FIXTURE_REVIEW", "1");
    }
    let (out, _) = run(cmd, Duration::from_secs(20));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("[y/N/v=view]"),
        "without a terminal nobody is asked: {}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.requests().is_empty(),
        "review on: nothing is sent automatically"
    );
    let files = dirs.outbox_files();
    assert_eq!(files.len(), 1, "{files:?}");
    envelope_file_id(&files[0])
}

fn review_cmd(dirs: &Dirs, server: &CaptureServer, by_setting: bool) -> Command {
    let mut cmd = ask_cmd(dirs, server);
    if !by_setting {
        cmd.env("FIXTURE_REVIEW", "1");
    }
    cmd
}

/// The review question for one report: count, day (YYYY-MM-DD), destination host.
fn assert_review_question(terminal: &str) {
    let q = "is waiting to be sent to 127.0.0.1: send it? [y/N/v=view]";
    let at = terminal
        .find(q)
        .unwrap_or_else(|| panic!("no review question: {terminal}"));
    let before = &terminal[..at];
    let start = before
        .rfind("1 crash report from ")
        .unwrap_or_else(|| panic!("{terminal}"));
    let day = before[start + "1 crash report from ".len()..].trim();
    assert!(
        day.len() == 10
            && day.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }),
        "a date: {day:?} in {terminal}"
    );
}

#[test]
fn review_view_then_yes_sends_exactly_that_report() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let id = one_report_waiting_for_review(&dirs, &server, false);
    let old = dirs.outbox_files()[0].clone();

    let mut term = OnTerminal::spawn(review_cmd(&dirs, &server, false));
    term.wait_for("[y/N/v=view]");
    term.answer("v\n");
    // The report, exactly as it would be sent, then the question again.
    term.wait_for(&format!("\"event_id\": \"{id}\""));
    term.wait_for_count("[y/N/v=view]", 2);
    term.answer("y\n");
    let (stdout, terminal) = term.finish();
    assert_review_question(&terminal);
    assert!(terminal.contains("Sent 1 report(s)"), "{terminal}");
    assert!(stdout.contains("after ask: crash=true"), "{stdout}");
    assert_no_pii(&terminal);

    std::thread::sleep(Duration::from_millis(500));
    let got = server.requests();
    assert_eq!(got.len(), 1, "exactly one request");
    assert_eq!(got[0].envelope_id(), id);
    assert!(!old.exists(), "sent, so removed");
    // The error this run captured after the question waits for the next review.
    let waiting = dirs.outbox_files();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert_ne!(envelope_file_id(&waiting[0]), id);
}

#[test]
fn review_no_deletes_the_report_and_sends_nothing() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    // Review turned on by the user's setting (`telemetry settings review=true`).
    let id = one_report_waiting_for_review(&dirs, &server, true);
    let old = dirs.outbox_files()[0].clone();

    let mut term = OnTerminal::spawn(review_cmd(&dirs, &server, true));
    term.wait_for("[y/N/v=view]");
    term.answer("n\n");
    let (_, terminal) = term.finish();
    assert_review_question(&terminal);
    assert!(
        terminal.contains("Deleted 1 report(s) without sending them."),
        "{terminal}"
    );
    assert!(!old.exists(), "deleted");
    assert!(
        !terminal.contains(&format!("\"event_id\": \"{id}\"")),
        "not viewed"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(server.requests().is_empty(), "a no sends nothing");
}

#[test]
fn review_view_twice_shows_it_again_and_deletes_nothing() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let id = one_report_waiting_for_review(&dirs, &server, false);
    let old = dirs.outbox_files()[0].clone();

    let mut cmd = review_cmd(&dirs, &server, false);
    cmd.env("FIXTURE_PROMPT_MS", "1500");
    let mut term = OnTerminal::spawn(cmd);
    let shown = format!("\"event_id\": \"{id}\"");
    for n in 1..=2 {
        term.wait_for_count("[y/N/v=view]", n);
        term.answer("v\n");
        term.wait_for_count(&shown, n);
    }
    // No answer after the second look: the report waits for next time.
    let (_, terminal) = term.finish();
    assert!(
        !terminal.contains("Deleted"),
        "a second 'v' deleted the report: {terminal}"
    );
    assert!(old.exists(), "a look is not a decision");
    assert!(server.requests().is_empty());
}
