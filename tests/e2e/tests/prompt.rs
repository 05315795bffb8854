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
fn no_answer_in_time_is_no_and_asks_again_next_time() {
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
