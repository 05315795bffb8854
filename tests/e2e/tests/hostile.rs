//! Hostile inputs and environments, end to end (issue 10): consent withdrawn mid-flush,
//! corrupt or mistyped settings, bytes in environment variables, secrets across cuts, absurd
//! server delays, corrupt pause files, FIFOs and links in our directories, `fork` after
//! `init`, huge inputs, deep error chains, re-entrant `flush`, short-lived CLIs and 408s.
//! Each test runs the fixture app as a child process against a loopback capture server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use consentry_e2e::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);
const DAY: u64 = 24 * 60 * 60;

/// The fixture, with a crash flush deadline long enough for a loaded machine (tests that
/// measure the deadline set their own; a flush that is done returns at once).
fn app(dirs: &Dirs, scenario: &str) -> Command {
    let mut cmd = fixture(&fixture_bin!(), dirs, scenario);
    cmd.env("FIXTURE_FLUSH_MS", "10000");
    cmd
}

/// The fixture with crash reports on (by the environment) and sent to `server`.
fn reporting(dirs: &Dirs, server: &CaptureServer, scenario: &str) -> Command {
    let mut cmd = app(dirs, scenario);
    cmd.env("FIXTURE_TELEMETRY", "1")
        .env("FIXTURE_DSN", server.dsn());
    cmd
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Unix seconds of an RFC 3339 time (`2026-11-30T07:48:35Z`, fractions and offset ignored:
/// a day's precision is all the tests need).
fn rfc3339_secs(t: &str) -> u64 {
    let num = |r: std::ops::Range<usize>| -> i64 {
        t.get(r)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an RFC 3339 time: {t:?}"))
    };
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    let (hh, mm, ss) = (num(11..13), num(14..16), num(17..19));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).unwrap()
}

/// Asserts the process ended normally, without a panic message.
fn assert_clean_exit(out: &Output) {
    let err = stderr(out);
    assert!(out.status.success(), "{:?}\n{err}", out.status);
    assert!(!err.contains("panicked"), "a panic:\n{err}");
}

/// How long `init` took, as the fixture printed it (`FIXTURE_PRINT_INIT`).
fn init_ms(out: &Output) -> u64 {
    let err = stderr(out);
    err.lines()
        .find_map(|l| l.strip_prefix("init_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no init_ms= line: {err}"))
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a child started with [`spawn`]; kills it and fails after `limit`.
fn wait_child(mut child: Child, limit: Duration) -> Output {
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "child still running after {limit:?}\nstderr:\n{}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success(), "mkfifo {}", path.display());
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A file's text, if it is a regular file (never opens a FIFO, which would block).
fn read_if_file(path: &Path) -> Option<String> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .and_then(|_| std::fs::read_to_string(path).ok())
}

/// What a run left behind, for failure messages.
fn left(dirs: &Dirs, out: &Output) -> String {
    format!(
        "\nexit: {:?}\nstderr:\n{}\naudit log:\n{:?}\noutbox: {:?}\nusage store: {:?}\npauses: {:?}",
        out.status,
        stderr(out),
        read_if_file(&dirs.data().join("sent.jsonl")),
        dirs.outbox_files(),
        files_ending(&dirs.data().join("usage"), ".usage"),
        read_if_file(&dirs.data().join("pauses.json")),
    )
}

fn pauses(dirs: &Dirs) -> Value {
    serde_json::from_slice(&std::fs::read(dirs.data().join("pauses.json")).unwrap()).unwrap()
}

/// The fixture's `status_on_disk` (formerly `status_of`), as JSON.
fn status_of(dirs: &Dirs, server: &CaptureServer) -> Value {
    let (out, _) = run(reporting(dirs, server, "status-of"), LIMIT);
    assert_clean_exit(&out);
    serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("status_of is not JSON ({e}): {}", stdout(&out)))
}

/// Asserts `status_of` shows no pause that ends more than a day from now (and, if
/// `required`, that it shows one).
fn assert_pause_within_a_day(status: &Value, required: bool) {
    let Some(until) = status["rate_limited_until"].as_str() else {
        assert!(!required, "no pause shown: {status}");
        return;
    };
    let until = rfc3339_secs(until);
    let now = now_secs();
    assert!(
        until > now.saturating_sub(60) && until <= now + DAY + 60,
        "pause until {until}, now {now}: {status}"
    );
}

/// Finding 1: a "no" written to the settings file while the app flushes stored reports to a
/// slow server stops the very next request, not the next batch.
#[test]
fn a_no_written_during_a_slow_flush_stops_the_next_request() {
    let server = CaptureServer::start(Plan::Slow(200));
    let dirs = Dirs::new();
    dirs.grant_consent();
    let mut cmd = app(&dirs, "capture-spread");
    cmd.args(["50", "0"])
        .env("FIXTURE_DSN", server.dsn())
        .env("FIXTURE_FLUSH_MS", "60000");
    let child = spawn(cmd);
    let before = server.wait_for(3, Duration::from_secs(20));
    assert!(before.len() >= 3, "the flush started: {}", before.len());

    // The "no", written as `consentry settings sync=false` or an editor would: a new file
    // renamed over the old one.
    let mut settings: Value = serde_json::from_slice(&std::fs::read(dirs.settings()).unwrap())
        .expect("the app keeps a parseable settings file");
    settings["sync"] = false.into();
    let tmp = dirs.config().join("settings.json.new");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&settings).unwrap()).unwrap();
    std::fs::rename(&tmp, dirs.settings()).unwrap();
    let changed = Instant::now();

    let out = wait_child(child, LIMIT);
    assert_clean_exit(&out);
    let all = server.requests();
    let after = all.iter().filter(|r| r.at > changed).count();
    assert!(
        after <= 1,
        "{after} of {} requests reached the server after the \"no\"",
        all.len()
    );
    assert!(all.len() < 50, "{} requests", all.len());
}

/// Finding 2: an opt-out app whose settings file says "no" in a mistyped or truncated way
/// sends nothing, on this run and the next, and keeps the corrupt copy.
#[test]
fn a_mistyped_or_truncated_no_stays_a_no_for_an_opt_out_app() {
    for bad in [
        r#"{"schema_version": 1, "sync": "false"}"#,
        r#"{"schema_version": 1, "sync": False}"#,
        r#"{"schema_version": 1, "sync": fal"#,
    ] {
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        dirs.write_settings(bad);
        for run_no in 1..=2 {
            let mut cmd = app(&dirs, "errors");
            cmd.env("FIXTURE_POLICY", "optout")
                .env("FIXTURE_DSN", server.dsn());
            let (out, _) = run(cmd, LIMIT);
            assert_clean_exit(&out);
            if run_no == 1 {
                assert!(
                    stderr(&out).contains("settings.json.corrupt-"),
                    "the warning names the kept copy: {}",
                    stderr(&out)
                );
            }
            assert!(
                server.requests().is_empty(),
                "{bad}: run {run_no} sent {} request(s)",
                server.requests().len()
            );
            assert!(dirs.outbox_files().is_empty(), "{bad}: nothing stored");
        }
        let kept = files_ending(&dirs.config(), "");
        let corrupt: Vec<&PathBuf> = kept
            .iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("settings.json.corrupt-")
            })
            .collect();
        assert_eq!(corrupt.len(), 1, "{bad}: {kept:?}");
        assert_eq!(std::fs::read_to_string(corrupt[0]).unwrap(), bad);
    }
}

/// Finding 3: `DO_NOT_TRACK`, `<APP>_TELEMETRY` and `CI` holding bytes that are not UTF-8
/// are set, and say no.
#[test]
fn environment_variables_that_are_not_utf8_say_no() {
    // The same setup without them sends: the variables are what stops it.
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    dirs.grant_consent();
    let mut cmd = app(&dirs, "errors");
    cmd.env("FIXTURE_DSN", server.dsn());
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    assert_eq!(
        server.wait_for(2, Duration::from_secs(5)).len(),
        2,
        "{}",
        left(&dirs, &out)
    );

    for var in ["DO_NOT_TRACK", "FIXTURE_TELEMETRY", "CI"] {
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        dirs.grant_consent();
        let mut cmd = app(&dirs, "errors");
        cmd.env("FIXTURE_DSN", server.dsn())
            .env(var, OsStr::from_bytes(b"\xff"));
        let (out, _) = run(cmd, LIMIT);
        assert_clean_exit(&out);
        assert!(
            server.requests().is_empty(),
            "{var}=$'\\xff': {} request(s) sent",
            server.requests().len()
        );
        assert!(dirs.outbox_files().is_empty(), "{var}: nothing stored");
    }
}

/// Finding 6: an error captured before `init` with a token across the early buffer's cut
/// (and another across the old 256-byte cut) arrives with no part of either.
#[test]
fn a_token_across_the_early_buffers_cut_never_leaves_in_part() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(reporting(&dirs, &server, "early-token"), LIMIT);
    assert_clean_exit(&out);
    let got = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let text = got[0].text();
    assert!(text.contains("login failed"), "the early error: {text}");
    assert!(!text.contains("ghp_"), "part of a token left: {text}");
    let log = dirs.audit_log();
    assert!(!log.contains("ghp_"), "{log}");
}

/// Finding 7: absurd server delays are clamped to a day, on disk and in `status_of`, which
/// does not panic.
#[test]
fn absurd_server_delays_are_clamped_to_a_day() {
    for plan in [
        Plan::RetryAfter("1e12".into()),
        Plan::RetryAfter("Fri, 31 Dec 9999 23:59:59 GMT".into()),
        Plan::SentryRateLimits("1e12:error:org".into()),
    ] {
        let server = CaptureServer::start(plan.clone());
        let dirs = Dirs::new();
        let (out, _) = run(reporting(&dirs, &server, "errors"), LIMIT);
        assert_clean_exit(&out);
        assert!(!server.requests().is_empty(), "{plan:?}: it was tried");
        let stored = pauses(&dirs);
        let until = stored["crash"]["until"]
            .as_u64()
            .unwrap_or_else(|| panic!("{plan:?}: {stored}"));
        let now = now_secs();
        assert!(
            until > now && until <= now + DAY + 60,
            "{plan:?}: stored pause until {until}, now {now}"
        );
        assert_pause_within_a_day(&status_of(&dirs, &server), true);
        // The reports wait for the next run.
        assert_eq!(dirs.outbox_files().len(), 2, "{plan:?}");
    }
}

/// Finding 8: a pauses file holding `u64::MAX` for the current endpoint neither panics nor
/// holds reporting back for more than a day (read back clamped, or ignored as corrupt), and
/// nothing is lost.
#[test]
fn a_corrupt_pauses_file_does_not_panic() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.data()).unwrap();
    let endpoint = format!("{}/api/42/envelope/", server.url());
    let max = u64::MAX;
    std::fs::write(
        dirs.data().join("pauses.json"),
        format!(
            r#"{{"crash":{{"endpoint":"{endpoint}","until":{max},"unreachable_until":{max},"unreachable_backoff":{max}}},"usage":{{"endpoint":"{endpoint}","until":{max},"unreachable_until":{max}}}}}"#
        ),
    )
    .unwrap();
    // The same under the file's former name and layout (which must not matter now).
    std::fs::write(
        dirs.data().join("rate-limits.json"),
        format!(r#"{{"error_until":{max}}}"#),
    )
    .unwrap();
    let (out, _) = run(reporting(&dirs, &server, "errors"), LIMIT);
    assert_clean_exit(&out);
    let sent = server.wait_for(2, Duration::from_millis(500)).len();
    let kept = dirs.outbox_files().len();
    assert_eq!(sent + kept, 2, "sent or kept: {}", left(&dirs, &out));
    assert_pause_within_a_day(&status_of(&dirs, &server), false);
}

/// Finding 9: a FIFO at the settings file does not block `init` (and nothing is sent).
#[test]
fn a_fifo_at_the_settings_file_does_not_block_init() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.config()).unwrap();
    mkfifo(&dirs.settings());
    let mut cmd = reporting(&dirs, &server, "errors");
    cmd.env("FIXTURE_PRINT_INIT", "1");
    let (out, elapsed) = run(cmd, Duration::from_secs(10));
    assert_clean_exit(&out);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(init_ms(&out) < 1000, "{}", stderr(&out));
    assert!(server.requests().is_empty(), "nothing sent");
    assert!(is_fifo(&dirs.settings()), "left alone");
}

/// Finding 9: a FIFO at the audit log does not hold the exit, with or without a DSN (without
/// one, reports kept locally are logged too).
#[test]
fn a_fifo_at_the_audit_log_does_not_hold_the_exit() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.data()).unwrap();
    mkfifo(&dirs.data().join("sent.jsonl"));
    for dsn in [None, Some(server.dsn())] {
        let mut cmd = app(&dirs, "errors");
        cmd.env("FIXTURE_TELEMETRY", "1")
            .env("FIXTURE_FLUSH_MS", "2000");
        if let Some(dsn) = &dsn {
            cmd.env("FIXTURE_DSN", dsn);
        }
        let (out, elapsed) = run(cmd, Duration::from_secs(15));
        assert_clean_exit(&out);
        assert!(elapsed < Duration::from_secs(6), "{dsn:?}: {elapsed:?}");
        assert!(is_fifo(&dirs.data().join("sent.jsonl")), "left alone");
    }
}

/// Finding 9: a FIFO at the pauses file (and at its former name) does not stop reports.
#[test]
fn a_fifo_at_the_pauses_file_does_not_stop_reports() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.data()).unwrap();
    mkfifo(&dirs.data().join("pauses.json"));
    mkfifo(&dirs.data().join("rate-limits.json"));
    let (out, _) = run(reporting(&dirs, &server, "errors"), Duration::from_secs(15));
    assert_clean_exit(&out);
    assert_eq!(
        server.wait_for(2, Duration::from_secs(5)).len(),
        2,
        "{}",
        left(&dirs, &out)
    );
}

/// Finding 10: children forked 5-50 ms after `init`, while the parent captures and tracks,
/// all exit (none hangs on a lock the parent's worker held).
#[test]
fn children_forked_after_init_never_hang() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = reporting(&dirs, &server, "fork");
    cmd.arg("20")
        .env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", format!("{}/v1/usage", server.url()))
        .env("FIXTURE_FLUSH_MS", "2000");
    let (out, _) = run(cmd, Duration::from_secs(40));
    assert_clean_exit(&out);
    let report = stdout(&out);
    assert!(
        report.contains("children=20 hung=0 failed=0"),
        "{report}\n{}",
        stderr(&out)
    );
}

/// Finding 11: a symlinked audit log's target is never written.
#[test]
fn a_symlinked_audit_log_is_not_written_through() {
    let dirs = Dirs::new();
    dirs.grant_consent();
    std::fs::create_dir_all(dirs.data()).unwrap();
    let victim = dirs.root.path().join("victim.txt");
    std::fs::write(&victim, "another program's file\n").unwrap();
    std::os::unix::fs::symlink(&victim, dirs.data().join("sent.jsonl")).unwrap();
    // Without a DSN (reports stay local), then with one.
    let (out, _) = run(app(&dirs, "errors"), LIMIT);
    assert_clean_exit(&out);
    let server = CaptureServer::start(Plan::Status(200));
    let mut cmd = app(&dirs, "errors");
    cmd.env("FIXTURE_DSN", server.dsn());
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "another program's file\n"
    );
    assert!(is_symlink(&dirs.data().join("sent.jsonl")));
}

/// Finding 11: a dangling link at the settings lock never creates its target.
#[test]
fn a_dangling_lock_link_never_creates_its_target() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.config()).unwrap();
    let target = dirs.root.path().join("created-through-the-link");
    std::os::unix::fs::symlink(&target, dirs.config().join("settings.json.lock")).unwrap();
    // A first run writes the settings file (under the lock), a second updates it.
    let (out, _) = run(reporting(&dirs, &server, "errors"), LIMIT);
    assert_clean_exit(&out);
    dirs.grant_consent();
    let mut cmd = app(&dirs, "errors");
    cmd.env("FIXTURE_DSN", server.dsn());
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    assert!(
        std::fs::symlink_metadata(&target).is_err(),
        "the link's target was created"
    );
}

/// Finding 12: one 50 MB message becomes a small envelope and a small audit line, and the
/// exit keeps its deadline.
#[test]
fn a_50_mb_message_is_bounded_in_bytes_and_in_time() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = reporting(&dirs, &server, "huge");
    cmd.arg("50").env("FIXTURE_FLUSH_MS", "2000");
    let (out, elapsed) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    assert!(
        elapsed < Duration::from_secs(5),
        "a 2 s flush deadline took {elapsed:?}"
    );
    let got = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert!(
        got[0].body.len() < 100_000,
        "envelope of {} bytes",
        got[0].body.len()
    );
    let log = dirs.audit_log();
    assert_eq!(log.lines().count(), 1, "{}", log.len());
    assert!(log.len() < 100_000, "audit line of {} bytes", log.len());
}

/// Finding 12: 100 captures of 5 MB messages keep the peak resident set far below their
/// 500 MB.
#[test]
fn a_hundred_5_mb_messages_keep_memory_bounded() {
    let dirs = Dirs::new();
    let mut cmd = app(&dirs, "big-many");
    cmd.args(["100", "5"]).env("FIXTURE_TELEMETRY", "1");
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    let text = stdout(&out);
    let peak: u64 = text
        .trim()
        .strip_prefix("peak_rss_kb=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(peak > 0, "VmHWM unknown: {text}");
    assert!(peak < 150_000, "peak resident set {peak} kB");
    assert!(!dirs.outbox_files().is_empty(), "the reports were kept");
}

/// Finding 13: a 5,000-link `source()` chain captured on a 2 MB stack does not overflow it,
/// and at most 16 links are reported.
#[test]
fn a_5000_link_chain_on_a_small_stack_is_capped() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = reporting(&dirs, &server, "deep-chain");
    cmd.arg("5000");
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    assert!(stdout(&out).contains("captured"));
    let got = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "{}", left(&dirs, &out));
    let event = got[0].envelope_event();
    let links = event["exception"]["values"].as_array().unwrap().len();
    assert!((2..=16).contains(&links), "{links} exceptions");
    assert_no_pii(&got[0].text());
}

/// Finding 14: `flush` from inside `before_send` returns at once.
#[test]
fn flush_inside_before_send_returns_at_once() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = reporting(&dirs, &server, "errors");
    cmd.env("FIXTURE_HOOK", "flush")
        .env("FIXTURE_FLUSH_MS", "20000");
    let (out, elapsed) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    assert!(
        elapsed < Duration::from_secs(5),
        "the run took {elapsed:?}: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    let times: Vec<u64> = err
        .lines()
        .filter_map(|l| l.strip_prefix("flush_in_hook_ms="))
        .map(|v| v.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(times.len(), 2, "the hook ran for both events: {err}");
    assert!(times.iter().all(|t| *t < 1000), "{times:?}");
    assert_eq!(server.wait_for(2, Duration::from_secs(5)).len(), 2);
}

/// Finding 14: a valid 100 MB settings file does not hold `init`, and is not a "yes".
#[test]
fn a_100_mb_settings_file_does_not_block_init() {
    use std::io::Write;
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.config()).unwrap();
    let mut file = std::io::BufWriter::new(std::fs::File::create(dirs.settings()).unwrap());
    file.write_all(
        br#"{"consent": {"decided": true, "granted": true, "via": "cli"}, "padding": ""#,
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        file.write_all(&chunk).unwrap();
    }
    file.write_all(b"\"}").unwrap();
    file.flush().unwrap();
    drop(file);
    let mut cmd = app(&dirs, "errors");
    cmd.env("FIXTURE_DSN", server.dsn())
        .env("FIXTURE_PRINT_INIT", "1");
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    let init_ms = init_ms(&out);
    assert!(init_ms < 1000, "init took {init_ms} ms");
    assert!(server.requests().is_empty(), "nothing sent");
}

/// Finding 14: a symlinked settings file stays a link (it is not replaced by a regular file)
/// and nothing is sent.
#[test]
fn a_symlinked_settings_file_stays_a_link() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.config()).unwrap();
    let real = dirs.root.path().join("dotfiles-settings.json");
    let granted = r#"{"consent": {"decided": true, "granted": true, "via": "cli"}}"#;
    std::fs::write(&real, granted).unwrap();
    std::os::unix::fs::symlink(&real, dirs.settings()).unwrap();
    let mut cmd = app(&dirs, "errors");
    cmd.env("FIXTURE_DSN", server.dsn());
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    assert!(is_symlink(&dirs.settings()), "replaced by a regular file");
    assert!(server.requests().is_empty(), "nothing sent");
}

/// Finding 14: a data directory whose name is not UTF-8 is used.
#[test]
fn a_data_directory_that_is_not_utf8_is_used() {
    let dirs = Dirs::new();
    dirs.grant_consent();
    let data = dirs.root.path().join(OsStr::from_bytes(b"data-\xff-dir"));
    let mut cmd = app(&dirs, "errors");
    cmd.env("FIXTURE_DATA_DIR", &data);
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    let stored = files_ending(&data.join("outbox"), ".envelope");
    assert_eq!(stored.len(), 2, "reports land in the given directory");
}

/// Finding 15 (and "done when"): a short-lived CLI that tracks once, captures once and
/// returns from `main`, run 50 times against a freshly started server: every ping and every
/// report arrives, and the audit log has one line per request that reached the server.
#[test]
fn a_short_lived_cli_loses_nothing_and_logs_every_request() {
    for i in 0..50 {
        let dirs = Dirs::new();
        let server = CaptureServer::start(Plan::Status(200));
        let mut cmd = reporting(&dirs, &server, "cli-once");
        // The default deadlines, as a CLI has them. No backtrace: symbolicating this debug
        // fixture takes up to half the crash deadline (1 s) per run, which would only slow
        // the 50 runs; the ping's road is the same.
        cmd.env_remove("FIXTURE_FLUSH_MS")
            .env("FIXTURE_BACKTRACE", "0")
            .env("FIXTURE_SINK", "json")
            .env("FIXTURE_SINK_URL", format!("{}/v1/usage", server.url()));
        let (out, _) = run(cmd, LIMIT);
        assert_clean_exit(&out);
        let lines = dirs.audit_log().lines().count();
        // The process is gone; its last request may still be in the server's hands.
        let got = server.wait_for(lines.max(2), Duration::from_secs(2));
        let reports = got.iter().filter(|r| r.url.contains("/envelope/")).count();
        let pings: usize = got
            .iter()
            .filter(|r| r.url == "/v1/usage")
            .map(|r| {
                r.json()["events"]
                    .as_array()
                    .map_or(0, |e| e.iter().filter(|e| e["name"] == "ran").count())
            })
            .sum();
        let why = || {
            format!(
                "{:?}\naudit log:\n{}\nstderr:\n{}\nstored usage: {:?}, outbox: {:?}",
                got.iter().map(|r| &r.url).collect::<Vec<_>>(),
                dirs.audit_log(),
                stderr(&out),
                files_ending(&dirs.data().join("usage"), ".usage"),
                dirs.outbox_files()
            )
        };
        assert_eq!(reports, 1, "run {i}: reports {}", why());
        assert!(pings >= 1, "run {i}: the ping did not arrive {}", why());
        assert_eq!(
            lines,
            got.len(),
            "run {i}: audit lines vs requests {}",
            why()
        );
    }
}

/// Finding 16: an HTTP 408 keeps a crash report in the outbox and a usage batch on disk.
#[test]
fn a_408_keeps_reports_and_usage_for_later() {
    let server = CaptureServer::start(Plan::Status(408));
    let dirs = Dirs::new();
    let mut cmd = reporting(&dirs, &server, "cli-once");
    cmd.env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", format!("{}/v1/usage", server.url()));
    let (out, _) = run(cmd, LIMIT);
    assert_clean_exit(&out);
    let got = server.requests();
    assert!(
        got.iter().any(|r| r.url.contains("/envelope/")),
        "the report was tried {}",
        left(&dirs, &out)
    );
    assert!(
        got.iter().any(|r| r.url == "/v1/usage"),
        "the ping was tried {}",
        left(&dirs, &out)
    );
    assert_eq!(dirs.outbox_files().len(), 1, "the report is kept");
    assert!(
        !files_ending(&dirs.data().join("usage"), ".usage").is_empty(),
        "the usage batch is kept"
    );
}

/// A native crash record as the handler writes one (a SIGSEGV at address `0x1000`).
fn native_record(pid: u32, time: u64) -> String {
    format!(
        "consentry-native 1\nsignal 11\ncode 1\nfault null\ntime {time}\npid {pid}\nframe 1000\nmodule 0 2000 0 0011223344556677 /home/plantuser/bin/fixture\nend\n"
    )
}

#[test]
fn hostile_native_crash_records_are_refused_without_blocking() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let native = dirs.data().join("native");
    std::fs::create_dir_all(&native).unwrap();
    // Process ids above the kernel's maximum (2^22): never alive.
    let dead = 999_999_000u32;
    let t = now_secs();
    let name = |pid: u32| native.join(format!("{pid}-{t}-{pid}.crash"));
    // A FIFO (reading it would block), a link to a valid record elsewhere (following it would
    // report it), a 100 MB file, a malformed record, a record of a process that still runs.
    let fifo = name(dead);
    mkfifo(&fifo);
    let outside = dirs.data().join("outside.txt");
    std::fs::write(&outside, native_record(dead, t)).unwrap();
    let link = name(dead + 1);
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let big = name(dead + 2);
    std::fs::File::create(&big)
        .unwrap()
        .set_len(100 * 1024 * 1024)
        .unwrap();
    let malformed = name(dead + 3);
    std::fs::write(
        &malformed,
        "consentry-native 1\nsignal eleven\nframe x\nend\n",
    )
    .unwrap();
    // A process that still runs holds its `.alive` file locked (here: this test).
    let live = native.join(format!("bbbb00000000000f-{t}-1.crash"));
    std::fs::write(&live, native_record(std::process::id(), t)).unwrap();
    let lock = std::fs::File::create(native.join("bbbb00000000000f.alive")).unwrap();
    lock.try_lock().unwrap();

    let (out, elapsed) = run(reporting(&dirs, &server, "idle"), LIMIT);
    assert_clean_exit(&out);
    assert!(
        elapsed < Duration::from_secs(10),
        "{elapsed:?}{}",
        left(&dirs, &out)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.requests().is_empty(), "nothing was reported");
    assert!(is_fifo(&fifo), "the FIFO is left alone");
    assert!(is_symlink(&link), "the link is left alone");
    assert!(outside.exists(), "its target too");
    assert!(!big.exists(), "an oversized record is removed");
    assert!(!malformed.exists(), "a malformed record is removed");
    assert!(live.exists(), "a running process's record waits");
    assert!(stderr(&out).contains("unusable"), "{}", stderr(&out));
    drop(lock);
}

#[test]
fn a_native_crash_record_from_a_gone_process_is_reported_scrubbed() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let native = dirs.data().join("native");
    std::fs::create_dir_all(&native).unwrap();
    let (dead, t) = (999_999_100u32, now_secs());
    std::fs::write(
        native.join(format!("{dead}-{t}-1.crash")),
        native_record(dead, t),
    )
    .unwrap();
    let (out, _) = run(reporting(&dirs, &server, "idle"), LIMIT);
    assert_clean_exit(&out);
    let requests = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1, "{}", left(&dirs, &out));
    let text = requests[0].text();
    assert_no_pii(&text);
    assert!(!text.contains("plantuser"), "{text}");
    let event = requests[0].envelope_event();
    assert_eq!(event["exception"]["values"][0]["type"], "SIGSEGV");
    // Not this binary (another build id): bare addresses, and the image by file name.
    let image = &event["debug_meta"]["images"][0];
    assert_eq!(image["name"], "fixture");
    assert_eq!(image["code_id"], "0011223344556677");
}

#[test]
fn a_linked_native_crash_directory_is_never_written_through() {
    use std::os::unix::process::ExitStatusExt;
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dirs.data()).unwrap();
    std::os::unix::fs::symlink(outside.path(), dirs.data().join("native")).unwrap();
    let (out, _) = run(reporting(&dirs, &server, "native-null"), LIMIT);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "{}",
        left(&dirs, &out)
    );
    let written: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(
        written.is_empty(),
        "nothing written through the link: {written:?}"
    );
    assert!(is_symlink(&dirs.data().join("native")));
}
