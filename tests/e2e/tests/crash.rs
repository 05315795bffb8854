//! Crash and error reports end to end: the fixture app captures errors in a child process,
//! a loopback capture server records exactly what arrives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use consentry_e2e::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

fn errors_run(dirs: &Dirs, dsn: &str, scenario: &str) -> std::process::Command {
    let mut cmd = fixture(&fixture_bin!(), dirs, scenario);
    cmd.env("FIXTURE_TELEMETRY", "1").env("FIXTURE_DSN", dsn);
    cmd
}

fn anonymous_id(dirs: &Dirs) -> String {
    let settings: Value = serde_json::from_slice(&std::fs::read(dirs.settings()).unwrap()).unwrap();
    settings["anonymous_id"].as_str().unwrap().to_owned()
}

#[test]
fn error_chain_arrives_scrubbed_with_tags_and_no_identity() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "errors"), LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = server.wait_for(2, Duration::from_secs(5));
    assert_eq!(requests.len(), 2, "one error and one message");
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.url, "/api/42/envelope/");
        let auth = r.header("X-Sentry-Auth").unwrap();
        assert!(auth.contains("sentry_key=publickey"), "{auth}");
        assert_eq!(
            r.header("Content-Type"),
            Some("application/x-sentry-envelope")
        );
        assert_no_pii(&r.text());
    }
    let events: Vec<Value> = requests.iter().map(Recorded::envelope_event).collect();
    let error = events
        .iter()
        .find(|e| e["exception"].is_object())
        .expect("the error event");
    let values = error["exception"]["values"].as_array().unwrap();
    assert_eq!(values.len(), 3, "one exception per link of the chain");
    // Root cause first, the error itself last, each message scrubbed but still useful.
    assert_eq!(
        values[0]["value"],
        "upload refused for <email> with token <secret:github>"
    );
    assert_eq!(
        values[1]["value"],
        "cannot read ~/.config/fixture/token.txt on <hostname>"
    );
    assert_eq!(
        values[2]["value"],
        "cannot train the model in ~/projects/yolo"
    );
    assert!(
        values[2]["type"].as_str().unwrap().ends_with("ChainError"),
        "{}",
        values[2]["type"]
    );
    assert_eq!(values[2]["mechanism"]["handled"], true);
    let frames = values[2]["stacktrace"]["frames"]
        .as_array()
        .expect("a stack trace");
    assert!(
        frames.iter().any(|f| f["function"]
            .as_str()
            .unwrap_or("")
            .contains("fixture::main")),
        "the app's own frame is there: {frames:#?}"
    );
    assert!(frames.iter().all(|f| {
        !f["function"]
            .as_str()
            .unwrap_or("")
            .starts_with("consentry::")
    }));

    let tags = &error["tags"];
    assert_eq!(tags["app"], "fixture");
    assert_eq!(tags["app.version"], "1.2.3");
    assert_eq!(tags["arch"], std::env::consts::ARCH);
    assert_eq!(tags["exe"], "fixture");
    for tag in [
        "os.name",
        "os.version",
        "rust.version",
        "install.source",
        "run.id",
        "container",
        "wsl",
    ] {
        assert!(tags[tag].is_string(), "tag {tag} missing: {tags}");
        assert!(
            !tags[tag].as_str().unwrap().starts_with('<'),
            "tag {tag} was scrubbed away: {tags}"
        );
    }
    assert_eq!(error["release"], "fixture@1.2.3");
    assert_eq!(
        error["user"],
        serde_json::json!({"id": anonymous_id(&dirs)})
    );
    assert!(error.get("server_name").is_none(), "no host name: {error}");
    // Debug images: build ids and addresses for server-side symbolication, file names only.
    let images = error["debug_meta"]["images"]
        .as_array()
        .expect("debug images");
    let exe = images
        .iter()
        .find(|i| i["name"] == "fixture")
        .unwrap_or_else(|| panic!("the fixture's image: {images:?}"));
    assert!(
        exe["code_id"].as_str().is_some_and(|id| id.len() >= 32),
        "{exe}"
    );
    assert!(
        exe["id"].is_string() && exe["image_addr"].is_string(),
        "{exe}"
    );
    for image in images {
        for key in ["name", "code_file", "debug_file"] {
            assert!(
                image[key].as_str().is_none_or(|p| !p.contains('/')),
                "no directories: {image}"
            );
        }
    }
    assert_eq!(error["contexts"]["device"]["arch"], std::env::consts::ARCH);
    assert!(error["contexts"]["device"].get("name").is_none());

    let message = events
        .iter()
        .find(|e| e["message"].is_string() || e["logentry"].is_object())
        .unwrap();
    assert_eq!(message["level"], "warning");

    // Sent means gone from the outbox, and recorded in the audit log as sent.
    assert!(dirs.outbox_files().is_empty());
    let log = dirs.audit_log();
    assert_eq!(log.lines().count(), 2, "{log}");
    for line in log.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["kind"], "crash");
        assert_eq!(record["status"], 200);
        assert!(
            record["destination"]
                .as_str()
                .unwrap()
                .ends_with("/api/42/envelope/")
        );
    }
    assert_no_pii(&log);
}

/// `std::process::exit` right after `capture_error` and `track` (the guard's drop never
/// runs): what was accepted is stored at exit, scrubbed, and the next run sends it.
#[test]
fn process_exit_right_after_a_capture_keeps_it_for_the_next_run() {
    for ms in [0, 20, 100] {
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        let with_sink = |mut cmd: std::process::Command| {
            cmd.env("FIXTURE_SINK", "json")
                .env("FIXTURE_SINK_URL", format!("{}/v1/usage", server.url()));
            cmd
        };
        let mut cmd = with_sink(errors_run(&dirs, &server.dsn(), "capture-then-exit"));
        cmd.arg(ms.to_string());
        let (out, _) = run(cmd, LIMIT);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        for file in dirs.outbox_files() {
            assert_no_pii(&std::fs::read_to_string(file).unwrap());
        }
        let (out, _) = run(with_sink(errors_run(&dirs, &server.dsn(), "noop")), LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
        let got = server.wait_for(2, Duration::from_secs(5));
        // (A request on the wire at the exit may arrive and be sent again by the next run,
        // with the same event id: at least once, one report.)
        let envelopes: Vec<&Recorded> = got
            .iter()
            .filter(|r| r.url.ends_with("/envelope/"))
            .collect();
        let mut ids: Vec<String> = envelopes.iter().map(|r| r.envelope_id()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ms} ms: the report");
        assert_eq!(
            envelopes[0].envelope_event()["exception"]["values"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert!(
            got.iter()
                .any(|r| r.url == "/v1/usage" && r.text().contains("\"ran\"")),
            "{ms} ms: the usage event"
        );
        assert!(dirs.outbox_files().is_empty());
    }
}

#[test]
fn a_server_that_never_answers_does_not_hold_the_app_and_nothing_is_lost() {
    let hanging = CaptureServer::start(Plan::Hang);
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &hanging.dsn(), "errors");
    cmd.env("FIXTURE_FLUSH_MS", "500");
    let (out, elapsed) = run(cmd, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    // 500 ms of flush deadline plus process start and symbolication; far from the 25 s+
    // that sentry's own transport blocks for.
    assert!(elapsed < Duration::from_secs(5), "exit took {elapsed:?}");
    assert_eq!(
        dirs.outbox_files().len(),
        2,
        "both reports wait in the outbox"
    );
    // The request reached the server, which never answered: the audit log says so, with no
    // status, and nothing is logged as delivered.
    for line in dirs.audit_log().lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert!(record["status"].is_null(), "{record}");
        assert!(record["note"].is_string(), "{record}");
    }

    // The next run with a working server delivers them, in the background.
    let server = CaptureServer::start(Plan::Status(200));
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "noop"), LIMIT);
    assert!(out.status.success());
    let got = server.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2);
    assert!(dirs.outbox_files().is_empty());
}

#[test]
fn a_5xx_keeps_the_report_for_the_next_run() {
    let failing = CaptureServer::start(Plan::Status(500));
    let dirs = Dirs::new();
    let (out, _) = run(errors_run(&dirs, &failing.dsn(), "errors"), LIMIT);
    assert!(out.status.success());
    assert!(!failing.requests().is_empty(), "it was tried");
    let waiting: Vec<String> = dirs
        .outbox_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(waiting.len(), 2);

    let server = CaptureServer::start(Plan::Status(200));
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "noop"), LIMIT);
    assert!(out.status.success());
    let got = server.wait_for(2, Duration::from_secs(5));
    let mut sent: Vec<String> = got.iter().map(Recorded::envelope_id).collect();
    sent.sort();
    let mut expected: Vec<String> = waiting
        .iter()
        .map(|n| {
            n.trim_end_matches(".envelope")
                .split_once('-')
                .unwrap()
                .1
                .to_owned()
        })
        .collect();
    expected.sort();
    assert_eq!(sent, expected, "the same envelopes, byte for byte");
    assert!(dirs.outbox_files().is_empty());
}

#[test]
fn a_4xx_drops_the_report() {
    let server = CaptureServer::start(Plan::Status(400));
    let dirs = Dirs::new();
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "errors"), LIMIT);
    assert!(out.status.success());
    assert_eq!(server.wait_for(2, Duration::from_secs(5)).len(), 2);
    assert!(
        dirs.outbox_files().is_empty(),
        "a 400 will never succeed: dropped"
    );
}

#[test]
fn in_ci_reports_are_sent_only_when_the_app_allows_it_and_then_name_the_vendor() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &server.dsn(), "errors");
    cmd.env("GITHUB_ACTIONS", "true");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    assert!(server.requests().is_empty(), "CI says no by default");

    let mut cmd = errors_run(&dirs, &server.dsn(), "errors");
    cmd.env("GITHUB_ACTIONS", "true")
        .env("FIXTURE_ALLOW_CI", "1");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let events: Vec<Value> = server
        .wait_for(2, Duration::from_secs(5))
        .iter()
        .map(Recorded::envelope_event)
        .collect();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["tags"]["ci"], "GitHub Actions", "{}", e["tags"]);
    }
}

/// Runs `capture-spread 40 50` with consent recorded in the settings file, withdraws crash
/// consent from this process once `started` says the app is reporting, and returns when
/// it was withdrawn and the app's output.
fn withdraw_while_reporting(
    dirs: &Dirs,
    dsn: Option<&str>,
    started: impl Fn() -> bool,
) -> (std::time::Instant, std::process::Output) {
    dirs.grant_consent();
    let mut cmd = fixture(&fixture_bin!(), dirs, "capture-spread");
    cmd.args(["40", "50"]);
    if let Some(dsn) = dsn {
        cmd.env("FIXTURE_DSN", dsn);
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !started() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(started(), "the app was reporting");
    let config = consentry::Config::new("fixture", "1.2.3")
        .config_dir(dirs.config())
        .data_dir(dirs.data());
    consentry::disable(&config, consentry::Scope::Crash).unwrap();
    let at = std::time::Instant::now();
    (at, child.wait_with_output().unwrap())
}

#[test]
fn crash_consent_withdrawn_in_another_process_stops_sending() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (disabled_at, out) =
        withdraw_while_reporting(&dirs, Some(&server.dsn()), || !server.requests().is_empty());
    assert!(out.status.success());
    let late = server
        .requests()
        .into_iter()
        .filter(|r| r.at > disabled_at + Duration::from_millis(300))
        .count();
    assert_eq!(late, 0, "reports sent after consent was withdrawn");
    assert!(dirs.outbox_files().is_empty(), "and none kept");
}

#[test]
fn crash_consent_withdrawn_stops_storing_too_when_there_is_no_dsn() {
    let dirs = Dirs::new();
    let (_, out) = withdraw_while_reporting(&dirs, None, || !dirs.outbox_files().is_empty());
    assert!(out.status.success());
    assert!(
        dirs.outbox_files().is_empty(),
        "nothing stored after consent was withdrawn"
    );
}

#[test]
fn a_redirect_keeps_the_report() {
    // Redirects are not followed (the auth header must not go elsewhere), and a 3xx is no
    // "never": the report stays for a later run.
    let server = CaptureServer::start(Plan::Status(301));
    let dirs = Dirs::new();
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "errors"), LIMIT);
    assert!(out.status.success());
    assert!(!server.requests().is_empty(), "it was tried");
    assert_eq!(dirs.outbox_files().len(), 2, "both kept");
}

#[test]
fn a_rate_limit_sent_with_an_accepted_report_is_honoured() {
    let server = CaptureServer::start(Plan::Status(200));
    server.push([Plan::AcceptedWithRateLimits("60:error:project".into())]);
    let dirs = Dirs::new();
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "errors"), LIMIT);
    assert!(out.status.success());
    assert_eq!(server.requests().len(), 1, "nothing more after the limit");
    assert_eq!(
        dirs.outbox_files().len(),
        1,
        "the accepted one is gone, one waits"
    );
    assert!(dirs.data().join("pauses.json").exists());
}

#[test]
fn a_closed_connection_keeps_the_report() {
    let closing = ClosingServer::start();
    let dirs = Dirs::new();
    // Time enough to try even on a loaded machine; a closed connection fails at once.
    let mut cmd = errors_run(&dirs, &closing.dsn(), "errors");
    cmd.env("FIXTURE_FLUSH_MS", "10000");
    let (out, elapsed) = run(cmd, LIMIT);
    assert!(out.status.success());
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    assert!(*closing.accepted.lock().unwrap() >= 1);
    assert_eq!(dirs.outbox_files().len(), 2);
}

fn retry_after_honoured(plan: Plan) {
    let server = CaptureServer::start(Plan::Status(200));
    server.push([plan]);
    let dirs = Dirs::new();
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "errors"), LIMIT);
    assert!(out.status.success());
    assert_eq!(
        server.requests().len(),
        1,
        "after the 429, nothing more is sent"
    );
    assert_eq!(dirs.outbox_files().len(), 2, "both kept");
    let limit: Value =
        serde_json::from_slice(&std::fs::read(dirs.data().join("pauses.json")).unwrap()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let until = limit["crash"]["until"].as_u64().unwrap();
    assert!(
        until >= now + 50 && until <= now + 70,
        "about 60 s from now: {until} vs {now}"
    );

    // A new run while the limit lasts sends nothing.
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "noop"), LIMIT);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.requests().len(),
        1,
        "the limit holds across restarts"
    );

    // Once it has passed, the next run sends both.
    let mut expired = limit.clone();
    expired["crash"]["until"] = Value::from(now - 1);
    std::fs::write(dirs.data().join("pauses.json"), expired.to_string()).unwrap();
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "noop"), LIMIT);
    assert!(out.status.success());
    assert_eq!(server.wait_for(3, Duration::from_secs(5)).len(), 3);
    assert!(dirs.outbox_files().is_empty());
}

#[test]
fn retry_after_is_honoured_across_restarts() {
    retry_after_honoured(Plan::RetryAfter("60".into()));
}

#[test]
fn sentry_rate_limits_header_is_honoured_across_restarts() {
    retry_after_honoured(Plan::SentryRateLimits("60:error:project:quota".into()));
}

#[test]
fn exit_flushes_before_leaving() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "exit"), LIMIT);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(server.requests().len(), 1, "sent before process::exit");
}

#[test]
fn a_burst_of_the_same_error_is_sent_once_with_a_count() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &server.dsn(), "repeat");
    cmd.arg("50");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let events: Vec<Value> = server
        .requests()
        .iter()
        .map(Recorded::envelope_event)
        .collect();
    assert_eq!(
        events.len(),
        1,
        "the first occurrence waits a moment for its repeats: {}",
        serde_json::to_string_pretty(&events).unwrap_or_default()
    );
    let total: u64 = events
        .iter()
        .map(|e| e["extra"]["consentry.occurrences"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(total, 50, "every occurrence is counted");
    if let [_, second] = events.as_slice() {
        assert_eq!(second["extra"]["consentry.repeat_of_earlier_report"], true);
    }
}

#[test]
fn a_hook_that_breaks_the_event_and_a_huge_flush_timeout_do_not_break_the_app() {
    let server = CaptureServer::start(Plan::Status(200));
    // `extra` left a string, then a repeat count to add to it at exit.
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &server.dsn(), "repeat");
    cmd.arg("5")
        .env("FIXTURE_HOOK", "extra-string")
        .env("FIXTURE_FLUSH_MS", "max");
    let (out, _) = run(cmd, LIMIT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = server
        .requests()
        .iter()
        .map(Recorded::envelope_event)
        .collect();
    let total: u64 = events
        .iter()
        .map(|e| e["extra"]["consentry.occurrences"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(total, 5, "{events:?}");

    // A hook that returns something else than an event: dropped, the app goes on.
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &server.dsn(), "errors");
    cmd.env("FIXTURE_HOOK", "not-an-event");
    let before = server.requests().len();
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    assert_eq!(server.requests().len(), before, "nothing sent");
    assert!(dirs.outbox_files().is_empty());

    // A panic with a flush timeout of Duration::MAX is reported, and the process exits
    // with the panic's code (an overflow in the hook would abort it).
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &server.dsn(), "panic");
    cmd.env("FIXTURE_FLUSH_MS", "max");
    let (out, _) = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(101));
    assert!(server.requests().len() > before);
}

#[test]
fn ignore_rules_drop_matching_errors() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &server.dsn(), "errors");
    cmd.env("FIXTURE_IGNORE", "cannot train");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let events: Vec<Value> = server
        .requests()
        .iter()
        .map(Recorded::envelope_event)
        .collect();
    assert_eq!(events.len(), 1, "only the message");
    assert!(events[0]["exception"].is_null());
}

#[test]
fn the_apps_hook_runs_after_scrubbing_and_cannot_put_pii_back() {
    for (hook, expect_events) in [("tag", 2), ("pii", 2), ("drop", 0), ("panic", 0)] {
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        let mut cmd = errors_run(&dirs, &server.dsn(), "errors");
        cmd.env("FIXTURE_HOOK", hook);
        let (out, _) = run(cmd, LIMIT);
        assert!(out.status.success(), "hook {hook}: {}", stderr(&out));
        let requests = server.requests();
        assert_eq!(requests.len(), expect_events, "hook {hook}");
        for r in &requests {
            assert_no_pii(&r.text());
            let event = r.envelope_event();
            match hook {
                "tag" => assert_eq!(event["tags"]["hooked"], "yes"),
                "pii" => assert_eq!(event["extra"]["leak"], "~/secret.txt"),
                _ => {}
            }
        }
        if hook == "panic" {
            assert!(
                stderr(&out).contains("the report was dropped"),
                "{}",
                stderr(&out)
            );
            assert!(dirs.outbox_files().is_empty());
        }
    }
}

#[test]
fn debug_mode_prints_the_scrubbed_payload_and_sends_nothing() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &server.dsn(), "errors");
    cmd.env("FIXTURE_TELEMETRY_DEBUG", "1");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("[consentry debug] crash report"), "{err}");
    assert!(
        err.contains("cannot train the model in ~/projects/yolo"),
        "{err}"
    );
    assert_no_pii(&err.replace("fixture panicked", ""));
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.requests().is_empty(), "debug mode sends nothing");
    assert!(dirs.outbox_files().is_empty(), "and stores nothing");
}

#[test]
fn without_a_dsn_reports_stay_in_the_outbox_and_the_audit_log() {
    let dirs = Dirs::new();
    let mut cmd = fixture(&fixture_bin!(), &dirs, "errors");
    cmd.env("FIXTURE_TELEMETRY", "1");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let files = dirs.outbox_files();
    assert_eq!(files.len(), 2);
    for f in &files {
        assert_no_pii(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    let log = dirs.audit_log();
    assert_eq!(log.lines().count(), 2);
    assert!(log.contains("no DSN configured"), "{log}");
}

#[test]
fn errors_captured_before_init_are_reported_by_init() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(errors_run(&dirs, &server.dsn(), "early"), LIMIT);
    assert!(out.status.success());
    let events: Vec<Value> = server
        .wait_for(3, Duration::from_secs(5))
        .iter()
        .map(Recorded::envelope_event)
        .collect();
    let early = events
        .iter()
        .find(|e| {
            e["exception"]["values"]
                .as_array()
                .is_some_and(|v| v.len() == 2)
        })
        .expect("the two-link error captured before init");
    assert_eq!(
        early["exception"]["values"][1]["value"],
        "cannot train the model in ~/projects/yolo"
    );
    assert_eq!(
        early["exception"]["values"][0]["value"],
        "cannot read ~/.config/fixture/token.txt on <hostname>"
    );
    // It keeps the time it was captured, a second before init and the later capture.
    let later = events
        .iter()
        .find(|e| {
            e["exception"]["values"]
                .as_array()
                .is_some_and(|v| v.len() == 3)
        })
        .expect("the error captured after init");
    let time = |e: &Value| e["timestamp"].as_f64().expect("a numeric timestamp");
    assert!(
        time(later) - time(early) >= 0.9,
        "early {} later {}",
        early["timestamp"],
        later["timestamp"]
    );
}

#[test]
fn early_errors_are_dropped_when_the_answer_is_no() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = fixture(&fixture_bin!(), &dirs, "early");
    cmd.env("FIXTURE_DSN", server.dsn())
        .env("FIXTURE_TELEMETRY", "0");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.requests().is_empty());
    assert!(dirs.outbox_files().is_empty());
}

#[test]
fn disabling_deletes_waiting_reports() {
    let hanging = CaptureServer::start(Plan::Hang);
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &hanging.dsn(), "errors");
    cmd.env("FIXTURE_FLUSH_MS", "200");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    assert_eq!(dirs.outbox_files().len(), 2);
    let config = consentry::Config::new("fixture", "1.2.3")
        .config_dir(dirs.config())
        .data_dir(dirs.data());
    let done = consentry::disable(&config, consentry::Scope::Crash).unwrap();
    assert_eq!(done.outbox_deleted, 2);
    assert!(dirs.outbox_files().is_empty());
}

#[test]
fn the_apps_own_scrubbing_rules_apply_and_builtin_ones_can_be_turned_off() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = errors_run(&dirs, &server.dsn(), "custom-rules");
    cmd.env("FIXTURE_CUSTOM_RULES", "1");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let event = server.wait_for(1, Duration::from_secs(5))[0].envelope_event();
    // The app's regex rule replaced the ticket; the builtin phone rule, turned off, kept the number.
    assert_eq!(
        event["message"],
        "ticket <ticket> from the hotline +44 20 7946 0958"
    );

    // Without the app's configuration, the builtin rule removes the number.
    let server = CaptureServer::start(Plan::Status(200));
    let (out, _) = run(
        errors_run(&Dirs::new(), &server.dsn(), "custom-rules"),
        LIMIT,
    );
    assert!(out.status.success());
    let event = server.wait_for(1, Duration::from_secs(5))[0].envelope_event();
    assert_eq!(event["message"], "ticket PRJ-4711 from the hotline <phone>");
}

/// The one report of a native crash that the fixture's next start sent: scrubbed, a fatal
/// unhandled exception named `ty` with the `fault` tag, `function` its innermost in-app
/// frame, its debug images by file name only. Returns the event for the platform's own
/// checks.
#[cfg(target_os = "linux")]
fn the_native_crash_report(
    server: &CaptureServer,
    scenario: &str,
    ty: &str,
    fault: &str,
    function: &str,
) -> Value {
    let requests = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1, "{scenario}");
    assert_no_pii(&requests[0].text());
    let event = requests[0].envelope_event();
    let exception = &event["exception"]["values"][0];
    assert_eq!(exception["type"], ty, "{scenario}: {exception}");
    assert_eq!(exception["mechanism"]["handled"], false);
    assert_eq!(event["level"], "fatal");
    assert_eq!(
        event["release"], "fixture@1.2.3",
        "the release that crashed"
    );
    assert_eq!(event["tags"]["fault"], fault, "{scenario}");
    assert_eq!(event["fingerprint"][0], ty);
    // The innermost in-app frame is the app's function; what is inside it (libc's or the C
    // runtime's abort, an inlined core function) is not in-app.
    let frames = exception["stacktrace"]["frames"].as_array().unwrap();
    let top = frames
        .iter()
        .rev()
        .find(|f| f["in_app"] == true)
        .unwrap_or_else(|| panic!("{scenario}: no in-app frame in {frames:#?}"));
    assert_eq!(top["function"], function, "{scenario}");
    for image in event["debug_meta"]["images"].as_array().unwrap() {
        let name = image["name"].as_str().unwrap();
        assert!(!name.contains(['/', '\\']), "{name}");
    }
    event
}

/// Crashes that are not panics (signals), caught by the native handler.
#[cfg(target_os = "linux")]
mod native {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    /// The native crash records waiting (not the `.alive` files of running processes).
    fn records(dirs: &Dirs) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dirs.data().join("native"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| !p.to_string_lossy().ends_with(".alive"))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// A full minidump is written, kept and sent only when the app turned minidumps on and
    /// the user said yes to them (apart from crash reports); a "no" given after the crash
    /// still keeps it from being sent. What is sent has the environment and the command
    /// line out of it.
    #[test]
    fn a_minidump_goes_only_with_both_yeses_and_without_the_environment() {
        // (the app's switch, the user's yes before the crash, the user's yes at the next start)
        for (app, user, still) in [
            (true, true, true),
            (true, false, false),
            (false, true, true),
            (true, true, false),
        ] {
            let case = format!("app {app}, user {user}, then {still}");
            let server = CaptureServer::start(Plan::Status(200));
            let dirs = Dirs::new();
            let settings = |value: bool| {
                let mut set = fixture(&fixture_bin!(), &dirs, "telemetry");
                set.args(["settings", &format!("minidumps={value}")])
                    .env("FIXTURE_TELEMETRY", "1");
                let (out, _) = run(set, LIMIT);
                assert!(out.status.success(), "{case}: {}", stderr(&out));
            };
            settings(user);
            let app_run = |scenario: &str| {
                let mut cmd = errors_run(&dirs, &server.dsn(), scenario);
                if app {
                    cmd.env("FIXTURE_MINIDUMPS", "1");
                }
                cmd
            };
            // `preview` says whether one would go, and why not.
            let mut preview = app_run("telemetry");
            preview.arg("preview");
            let (shown, _) = run(preview, LIMIT);
            assert!(shown.status.success(), "{case}: {}", stderr(&shown));
            let would = stdout(&shown).contains("A minidump would go with it");
            assert_eq!(would, app && user, "{case}: {}", stdout(&shown));
            let mut crash = app_run("native-null");
            crash
                .arg("plantedArgument7731")
                .env("FIXTURE_PLANTED", "plantedEnvValue5512");
            let (out, _) = run(crash, LIMIT);
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGSEGV),
                "{case}: {}",
                stderr(&out)
            );
            let dumps = || {
                records(&dirs)
                    .into_iter()
                    .filter(|p| p.extension().is_some_and(|e| e == "dmp"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(dumps().len(), usize::from(app && user), "{case}: written");
            assert!(
                server.requests().is_empty(),
                "{case}: nothing sent by the dying process"
            );
            if user != still {
                settings(still);
            }
            let mut next = app_run("idle");
            next.env("FIXTURE_FLUSH_MS", "20000");
            let (next, _) = run(next, LIMIT);
            assert!(next.status.success(), "{case}: {}", stderr(&next));
            let requests = server.wait_for(1, Duration::from_secs(5));
            assert_eq!(requests.len(), 1, "{case}");
            let body = &requests[0].body;
            assert_eq!(
                requests[0].envelope_event()["exception"]["values"][0]["type"],
                "SIGSEGV"
            );
            let attached = contains(body, b"\"attachment_type\":\"event.minidump\"");
            assert_eq!(attached, app && user && still, "{case}");
            if attached {
                assert!(contains(body, b"\nMDMP"), "{case}: a minidump");
                assert!(
                    !contains(body, b"plantedEnvValue5512"),
                    "{case}: the environment"
                );
                assert!(
                    !contains(body, b"plantedArgument7731"),
                    "{case}: the command line"
                );
                // The user, host, home and token the fixture runs with, in UTF-8 or UTF-16.
                for planted in [PLANTED_USER, PLANTED_HOST, PLANTED_HOME, PLANTED_ENV_SECRET] {
                    let wide: Vec<u8> = planted.encode_utf16().flat_map(u16::to_le_bytes).collect();
                    assert!(!contains(body, planted.as_bytes()), "{case}: {planted}");
                    assert!(!contains(body, &wide), "{case}: {planted} in UTF-16");
                }
                // The audit log says what went with the report.
                let log = std::fs::read_to_string(dirs.data().join("sent.jsonl")).unwrap();
                assert!(log.contains("event.minidump"), "{log}");
            }
            assert!(dumps().is_empty(), "{case}: no minidump left behind");
        }
    }

    /// The helper's variable, inherited or left over, with no crash of the parent waiting:
    /// the app runs as usual (`init` returns), it does not become a helper.
    #[test]
    fn a_left_over_helper_variable_does_not_take_over_the_app() {
        let dirs = Dirs::new();
        let stem = dirs.data().join("native").join("aaaa000000000001-1-1");
        let mut cmd = std::process::Command::new(fixture_bin!());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FIXTURE_CONFIG_DIR", dirs.config())
            .env("FIXTURE_DATA_DIR", dirs.data())
            .env("FIXTURE_TELEMETRY", "1")
            .env("FIXTURE_MINIDUMPS", "1")
            .env("FIXTURE_PRINT_INIT", "1")
            .env("CONSENTRY_MINIDUMP_HELPER", &stem);
        let (out, _) = run(cmd, LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("init_ms="), "{}", stderr(&out));
    }

    /// A report the user sends by hand (`telemetry send`, with reports held for review)
    /// still needs their yes to minidumps at that moment: taken back in the settings file
    /// by hand, the report goes without its minidump.
    #[test]
    fn a_report_sent_by_hand_goes_without_its_minidump_after_a_no() {
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        let app_run = |scenario: &str| {
            let mut cmd = errors_run(&dirs, &server.dsn(), scenario);
            cmd.env("FIXTURE_MINIDUMPS", "1").env("FIXTURE_REVIEW", "1");
            cmd
        };
        let mut set = app_run("telemetry");
        set.args(["settings", "minidumps=true"]);
        assert!(run(set, LIMIT).0.status.success());
        let (out, _) = run(app_run("native-null"), LIMIT);
        assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "{}", stderr(&out));
        let mut next = app_run("idle");
        next.env("FIXTURE_FLUSH_MS", "20000");
        assert!(run(next, LIMIT).0.status.success());
        assert!(server.requests().is_empty(), "held for review");
        let outbox = dirs.data().join("outbox");
        let waiting = |needle: &[u8]| {
            std::fs::read_dir(&outbox)
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| contains(&std::fs::read(e.path()).unwrap_or_default(), needle))
        };
        assert!(waiting(b"event.minidump"), "stored with its minidump");
        // The list the user decides from says so.
        let mut list = app_run("telemetry");
        list.arg("pending");
        let (listed, _) = run(list, LIMIT);
        assert!(
            stdout(&listed).contains("[with a minidump, "),
            "{}",
            stdout(&listed)
        );
        // The "no", written into the file by hand (no CLI to clean up after it).
        let path = dirs.settings();
        let mut settings: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        settings["minidumps"] = Value::Bool(false);
        std::fs::write(&path, serde_json::to_vec(&settings).unwrap()).unwrap();
        let mut send = app_run("telemetry");
        send.args(["send", "--all"]);
        let (sent, _) = run(send, LIMIT);
        assert!(sent.status.success(), "{}", stderr(&sent));
        let requests = server.wait_for(1, Duration::from_secs(5));
        assert_eq!(requests.len(), 1);
        assert!(!contains(&requests[0].body, b"event.minidump"));
        assert!(!contains(&requests[0].body, b"MDMP"));
        assert_eq!(
            requests[0].envelope_event()["exception"]["values"][0]["type"],
            "SIGSEGV"
        );
    }

    #[test]
    fn native_crashes_die_as_without_consentry_and_are_reported_at_the_next_start() {
        let bin = fixture_bin!();
        let id = gnu_build_id(&bin);
        for (scenario, signal, ty, function, fault) in [
            (
                "native-null",
                libc::SIGSEGV,
                "SIGSEGV",
                "fixture::crash_null",
                "null",
            ),
            // Rust's own handler says "has overflowed its stack" and aborts.
            (
                "native-overflow",
                libc::SIGABRT,
                "SIGSEGV",
                "fixture::overflow",
                "stack",
            ),
            (
                "native-abort",
                libc::SIGABRT,
                "SIGABRT",
                "fixture::crash_abort",
                "none",
            ),
            (
                "native-bus",
                libc::SIGBUS,
                "SIGBUS",
                "fixture::crash_bus",
                "other",
            ),
            (
                "native-thread-overflow",
                libc::SIGABRT,
                "SIGSEGV",
                "fixture::overflow",
                "stack",
            ),
            // The program counter is past the breakpoint: returning would go on.
            (
                "native-trap",
                libc::SIGTRAP,
                "SIGTRAP",
                "fixture::crash_trap",
                "none",
            ),
        ] {
            // The reference: the same crash with consent off, where no handler is installed.
            let off = Dirs::new();
            let mut cmd = fixture(&bin, &off, scenario);
            cmd.env("FIXTURE_TELEMETRY", "0");
            let (reference, _) = run(cmd, LIMIT);
            assert_eq!(reference.status.signal(), Some(signal), "{scenario}");
            assert!(records(&off).is_empty(), "{scenario}: recorded under a no");

            let server = CaptureServer::start(Plan::Status(200));
            let dirs = Dirs::new();
            let (out, _) = run(errors_run(&dirs, &server.dsn(), scenario), LIMIT);
            assert_eq!(
                out.status.signal(),
                reference.status.signal(),
                "{scenario}: {}",
                stderr(&out)
            );
            if scenario == "native-overflow" {
                assert!(
                    stderr(&out).contains("has overflowed its stack"),
                    "{}",
                    stderr(&out)
                );
            }
            assert_eq!(records(&dirs).len(), 1, "{scenario}: one record on disk");
            assert!(
                server.requests().is_empty(),
                "nothing sent by the dying process"
            );

            // The next start reports it, scrubbed, and removes the record. Its exit flush
            // waits for symbols (past the default 2 s, bare addresses would be sent: a
            // debug build's symbols take that long on a loaded machine).
            let mut next = errors_run(&dirs, &server.dsn(), "idle");
            next.env("FIXTURE_FLUSH_MS", "20000");
            let (next, _) = run(next, LIMIT);
            assert!(next.status.success(), "{}", stderr(&next));
            let event = the_native_crash_report(&server, scenario, ty, fault, function);
            assert!(
                records(&dirs).is_empty(),
                "{scenario}: the record was removed"
            );
            let exception = &event["exception"]["values"][0];
            assert_eq!(exception["mechanism"]["meta"]["signal"]["name"], ty);
            let frames = exception["stacktrace"]["frames"].as_array().unwrap();
            assert!(frames.iter().all(|f| f["instruction_addr"].is_string()));
            // The executable's image: its build id.
            let images = event["debug_meta"]["images"].as_array().unwrap();
            let exe = images
                .iter()
                .find(|i| i["name"] == "fixture")
                .unwrap_or_else(|| panic!("{images:#?}"));
            if let Some(id) = &id {
                assert_eq!(exe["code_id"].as_str(), Some(id.as_str()));
            }
        }
    }

    #[test]
    fn without_consent_no_handler_is_installed() {
        let bin = fixture_bin!();
        for (telemetry, expected) in [("0", "not installed"), ("1", "installed")] {
            let dirs = Dirs::new();
            let mut cmd = fixture(&bin, &dirs, "handler-probe");
            cmd.env("FIXTURE_TELEMETRY", telemetry);
            let (out, _) = run(cmd, LIMIT);
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(
                stdout(&out).trim(),
                expected,
                "FIXTURE_TELEMETRY={telemetry}"
            );
        }
        // The app can turn it off.
        let dirs = Dirs::new();
        let mut cmd = fixture(&bin, &dirs, "handler-probe");
        cmd.env("FIXTURE_TELEMETRY", "1").env("FIXTURE_NATIVE", "0");
        let (out, _) = run(cmd, LIMIT);
        assert_eq!(stdout(&out).trim(), "not installed");
    }

    #[test]
    fn a_signal_the_process_survives_is_not_reported() {
        // The standard library's handler ignores a raised SIGBUS: the process goes on, with
        // consentry as without it, and ends normally; the record is not a crash.
        // Also when it ends by `std::process::exit`, which skips the guard's drop.
        for scenario in ["native-raise-bus", "native-raise-bus-exit"] {
            let server = CaptureServer::start(Plan::Status(200));
            let dirs = Dirs::new();
            let (out, _) = run(errors_run(&dirs, &server.dsn(), scenario), LIMIT);
            assert!(out.status.success(), "{}", stderr(&out));
            assert_eq!(stdout(&out).trim(), "still running");
            assert!(records(&dirs).is_empty(), "{scenario}");
            let (next, _) = run(errors_run(&dirs, &server.dsn(), "idle"), LIMIT);
            assert!(next.status.success());
            std::thread::sleep(Duration::from_millis(300));
            assert!(server.requests().is_empty(), "{scenario}");
        }
    }

    #[test]
    fn a_child_forked_after_init_dies_by_its_signal_and_is_not_reported() {
        // A forked child never touches the runtime (its locks may be held): its crash is
        // the default action's, recorded nowhere.
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        let (out, _) = run(errors_run(&dirs, &server.dsn(), "native-fork-null"), LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out).trim(),
            format!("child signal {}", libc::SIGSEGV)
        );
        assert!(records(&dirs).is_empty());
        let (next, _) = run(errors_run(&dirs, &server.dsn(), "idle"), LIMIT);
        assert!(next.status.success());
        std::thread::sleep(Duration::from_millis(300));
        assert!(server.requests().is_empty());
    }

    #[test]
    fn a_no_given_after_the_crash_deletes_the_record_unsent() {
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        let (out, _) = run(errors_run(&dirs, &server.dsn(), "native-null"), LIMIT);
        assert_eq!(out.status.signal(), Some(libc::SIGSEGV));
        assert_eq!(records(&dirs).len(), 1);
        // `telemetry disable` through the app's CLI records the no.
        let mut disable = fixture(&fixture_bin!(), &dirs, "telemetry");
        disable.arg("disable");
        let (out, _) = run(disable, LIMIT);
        assert!(out.status.success(), "{}", stderr(&out));
        let (next, _) = run(errors_run(&dirs, &server.dsn(), "idle"), LIMIT);
        assert!(next.status.success());
        std::thread::sleep(Duration::from_millis(300));
        assert!(server.requests().is_empty());
        assert!(records(&dirs).is_empty(), "the record was deleted");
    }
}

/// Native crashes on Windows: the fixture cross-built for `x86_64-pc-windows-gnu` (linked
/// with `--build-id`, so it has a CodeView id) and run under Wine. `scripts/test` builds it
/// and sets `CONSENTRY_WINDOWS_FIXTURE` (and `CONSENTRY_WINE`, `WINEPREFIX`); without them
/// this test says so and passes, except in CI, where it fails.
#[cfg(target_os = "linux")]
mod windows_under_wine {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;

    /// The Windows fixture and the Wine loader, when `scripts/test` prepared them.
    fn prepared() -> Option<(PathBuf, PathBuf)> {
        let exe = std::env::var_os("CONSENTRY_WINDOWS_FIXTURE").map(PathBuf::from);
        let wine = std::env::var_os("CONSENTRY_WINE").map(PathBuf::from);
        match (exe, wine) {
            (Some(exe), Some(wine)) => Some((exe, wine)),
            _ => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI runs scripts/test, which sets CONSENTRY_WINDOWS_FIXTURE and CONSENTRY_WINE"
                );
                eprintln!("skipped: no Windows fixture (scripts/test builds one and runs Wine)");
                None
            }
        }
    }

    /// The fixture under Wine, with the same environment as on Linux (Wine passes it on)
    /// plus Wine's own: its prefix, no debug output, no debugger on a crash.
    fn under_wine(wine: &Path, exe: &Path, dirs: &Dirs, scenario: &str) -> Command {
        let native = fixture(exe, dirs, scenario);
        let mut cmd = Command::new(wine);
        cmd.arg(exe).arg(scenario).env_clear();
        for (key, value) in native.get_envs() {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        for key in ["WINEPREFIX", "WINESERVER"] {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        cmd.env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "winedbg.exe=d");
        cmd
    }

    fn records(dirs: &Dirs) -> Vec<PathBuf> {
        std::fs::read_dir(dirs.data().join("native"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "crash"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The executable's CodeView GUID and age as Sentry writes a debug id, read from the
    /// file: the debug directory through the section table, then its CodeView entry.
    fn codeview_debug_id(exe: &Path) -> String {
        let bytes = std::fs::read(exe).unwrap();
        let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let coff = u32_at(0x3c) as usize + 4;
        let sections = u16_at(coff + 2) as usize;
        let opt = coff + 20;
        let debug_rva = u32_at(opt + 112 + 6 * 8);
        let table = opt + u16_at(coff + 16) as usize;
        let offset = (0..sections)
            .map(|i| table + i * 40)
            .find_map(|h| {
                let (size, rva, raw) = (u32_at(h + 8), u32_at(h + 12), u32_at(h + 20));
                (debug_rva >= rva && debug_rva < rva + size).then(|| raw + (debug_rva - rva))
            })
            .expect("the fixture is linked with --build-id: a debug directory")
            as usize;
        assert_eq!(u32_at(offset + 12), 2, "a CodeView entry");
        let at = u32_at(offset + 24) as usize;
        assert_eq!(&bytes[at..at + 4], b"RSDS");
        let g = &bytes[at + 4..at + 20];
        let age = u32_at(at + 20);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let rev = |b: &[u8]| hex(&b.iter().rev().copied().collect::<Vec<_>>());
        format!(
            "{}-{}-{}-{}-{}-{age:x}",
            rev(&g[0..4]),
            rev(&g[4..6]),
            rev(&g[6..8]),
            hex(&g[8..10]),
            hex(&g[10..16])
        )
    }

    /// Runs `cmd` until it ends, or until `done` holds (then kills it): its exit code, and
    /// what it wrote to stderr (Wine's own messages too), for the assertions to show.
    fn run_until(mut cmd: Command, done: impl Fn() -> bool) -> (Option<i32>, String) {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let code = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.code();
            }
            if start.elapsed() > LIMIT || done() {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = std::fs::read(log.path()).unwrap_or_default();
        (code, String::from_utf8_lossy(&text).into_owned())
    }

    #[test]
    fn native_crashes_on_windows_end_as_without_consentry_and_are_reported_at_the_next_start() {
        let Some((exe, wine)) = prepared() else {
            return;
        };
        let debug_id = codeview_debug_id(&exe);
        for (scenario, ty, function, fault) in [
            (
                "native-null",
                "EXCEPTION_ACCESS_VIOLATION",
                "fixture::crash_null",
                "null",
            ),
            (
                "native-c-abort",
                "STATUS_FATAL_APP_EXIT",
                "fixture::crash_c_abort",
                "none",
            ),
            (
                "native-trap",
                "EXCEPTION_BREAKPOINT",
                "fixture::crash_trap",
                "none",
            ),
            // Under Wine a stack overflow ends the thread, not the process (which then
            // waits on consentry's threads): it is stopped once its record is written.
            (
                "native-overflow",
                "EXCEPTION_STACK_OVERFLOW",
                "fixture::overflow",
                "stack",
            ),
        ] {
            let overflow = scenario == "native-overflow";
            // The reference: consent off, no handler installed, nothing recorded.
            let off = Dirs::new();
            let mut cmd = under_wine(&wine, &exe, &off, scenario);
            cmd.env("FIXTURE_TELEMETRY", "0");
            let (reference, _) = run_until(cmd, || false);
            assert!(records(&off).is_empty(), "{scenario}: recorded under a no");

            let server = CaptureServer::start(Plan::Status(200));
            let dirs = Dirs::new();
            let mut cmd = under_wine(&wine, &exe, &dirs, scenario);
            cmd.env("FIXTURE_TELEMETRY", "1")
                .env("FIXTURE_DSN", server.dsn());
            let (status, err) = run_until(cmd, || overflow && !records(&dirs).is_empty());
            if !overflow {
                assert_eq!(
                    status, reference,
                    "{scenario}: the same end as without: {err}"
                );
                assert!(status.is_some_and(|c| c != 0), "{scenario}: {status:?}");
            }
            assert_eq!(records(&dirs).len(), 1, "{scenario}: one record on disk");
            assert!(
                server.requests().is_empty(),
                "nothing sent by the dying process"
            );

            let mut next = under_wine(&wine, &exe, &dirs, "idle");
            next.env("FIXTURE_TELEMETRY", "1")
                .env("FIXTURE_DSN", server.dsn())
                .env("FIXTURE_FLUSH_MS", "20000");
            let (status, err) = run_until(next, || false);
            assert_eq!(status, Some(0), "{scenario}: next start: {err}");
            let event = the_native_crash_report(&server, scenario, ty, fault, function);
            assert!(
                records(&dirs).is_empty(),
                "{scenario}: the record was removed"
            );
            let exception = &event["exception"]["values"][0];
            assert_eq!(exception["mechanism"]["type"], "UnhandledExceptionFilter");
            assert_eq!(event["contexts"]["os"]["name"], "Windows");
            let frames = exception["stacktrace"]["frames"].as_array().unwrap();
            // Nothing of the handler's own on top (the C runtime's abort reaches it).
            assert!(
                !frames.iter().any(|f| f["function"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("crash_handler::"))),
                "{scenario}: {frames:#?}"
            );
            // The executable's image, with its CodeView id.
            let images = event["debug_meta"]["images"].as_array().unwrap();
            let image = images
                .iter()
                .find(|i| i["name"] == "fixture.exe")
                .unwrap_or_else(|| panic!("{images:#?}"));
            assert_eq!(image["id"], debug_id.as_str(), "{image}");
        }
    }

    /// The handler writes through the `\\?\` long-path form (Windows' `MAX_PATH` is 260
    /// characters). Wine does not enforce that limit, so this checks that the long form
    /// works for a deep directory, not that the limit is passed.
    #[test]
    fn a_deep_data_directory_gets_its_record_through_the_long_path_form() {
        let Some((exe, wine)) = prepared() else {
            return;
        };
        // More than MAX_PATH (260) characters before the record's own name.
        let dirs = Dirs::new();
        let mut data = dirs.data();
        for i in 0..8 {
            data.push(format!("{i}-{}", "d".repeat(40)));
        }
        assert!(data.as_os_str().len() > 300);
        let mut cmd = under_wine(&wine, &exe, &dirs, "native-null");
        cmd.env("FIXTURE_TELEMETRY", "1")
            .env("FIXTURE_DSN", "http://publickey@127.0.0.1:9/42")
            .env("FIXTURE_DATA_DIR", &data);
        let (status, err) = run_until(cmd, || false);
        assert!(status.is_some_and(|c| c != 0), "{status:?}: {err}");
        let records: Vec<_> = std::fs::read_dir(data.join("native"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "crash"))
            .collect();
        assert_eq!(records.len(), 1, "one record in {}", data.display());
    }
}
