//! The consent matrix end to end: for every way of saying no, a child process that panics,
//! captures errors and tracks usage sends zero bytes and leaves no outbox file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use consentry_e2e::*;

/// `(case, environment, settings file contents or none, opt-out policy)`.
/// One way of saying no: its name, the environment, the settings file, opt-out policy.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Option<&'static str>,
    bool,
);

fn cases() -> Vec<Case> {
    let granted = r#"{"sync": true, "consent": {"decided": true, "granted": true, "via": "cli"}}"#;
    vec![
        (
            "FIXTURE_TELEMETRY=0",
            vec![("FIXTURE_TELEMETRY", "0")],
            Some(granted),
            false,
        ),
        (
            "FIXTURE_TELEMETRY=false",
            vec![("FIXTURE_TELEMETRY", "false")],
            Some(granted),
            false,
        ),
        (
            "FIXTURE_TELEMETRY=off",
            vec![("FIXTURE_TELEMETRY", "off")],
            Some(granted),
            false,
        ),
        (
            "FIXTURE_TELEMETRY=no",
            vec![("FIXTURE_TELEMETRY", "no")],
            Some(granted),
            true,
        ),
        (
            "DO_NOT_TRACK=1",
            vec![("DO_NOT_TRACK", "1")],
            Some(granted),
            false,
        ),
        (
            "DO_NOT_TRACK=true with env consent",
            vec![("DO_NOT_TRACK", "true"), ("FIXTURE_TELEMETRY", "1")],
            None,
            false,
        ),
        (
            "sync=false",
            vec![],
            Some(r#"{"sync": false, "consent": {"decided": true, "granted": true, "via": "cli"}}"#),
            false,
        ),
        (
            "sync=false opt-out",
            vec![],
            Some(r#"{"sync": false, "notice_shown_at": "2026-01-01T00:00:00Z"}"#),
            true,
        ),
        ("CI=true", vec![("CI", "true")], Some(granted), false),
        (
            "GITHUB_ACTIONS",
            vec![("GITHUB_ACTIONS", "true"), ("FIXTURE_TELEMETRY", "1")],
            None,
            false,
        ),
        ("RANK=1", vec![("RANK", "1")], Some(granted), false),
        (
            "LOCAL_RANK=2",
            vec![("LOCAL_RANK", "2"), ("FIXTURE_TELEMETRY", "1")],
            None,
            false,
        ),
        ("undecided opt-in", vec![], None, false),
        ("opt-out first run", vec![], None, true),
    ]
}

#[test]
fn every_no_sends_zero_bytes_and_stores_nothing() {
    let server = CaptureServer::start(Plan::Status(200));
    for (case, env, settings, optout) in cases() {
        for scenario in ["errors", "panic", "track", "threads"] {
            let dirs = Dirs::new();
            if let Some(settings) = settings {
                dirs.write_settings(settings);
            }
            let mut cmd = fixture(&fixture_bin!(), &dirs, scenario);
            cmd.env("FIXTURE_DSN", server.dsn())
                .env("FIXTURE_SINK", "json")
                .env("FIXTURE_SINK_URL", format!("{}/usage", server.url()))
                .env("FIXTURE_USAGE_INTERVAL_MS", "0");
            if optout {
                cmd.env("FIXTURE_POLICY", "optout");
            }
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let (out, _) = run(cmd, Duration::from_secs(30));
            let err = stderr(&out);
            if scenario == "panic" {
                assert_eq!(out.status.code(), Some(101), "{case}/{scenario}");
                assert!(
                    err.contains("panicked at"),
                    "{case}: the app's own panic message still prints"
                );
                // No line about a report being sent or waiting to be sent; with reporting
                // off the panic is only saved, scrubbed, in kept/ (never sent), and one line
                // says so, unless in CI.
                assert!(
                    !err.contains("consentry; turn reporting off"),
                    "{case}: no report line:\n{err}"
                );
                let kept = dirs.data().join("kept");
                let saved = std::fs::read_dir(&kept).map_or(0, |d| d.count());
                if env
                    .iter()
                    .any(|(k, _)| matches!(*k, "CI" | "GITHUB_ACTIONS"))
                {
                    assert_eq!(saved, 0, "{case}: nothing is saved in CI");
                } else {
                    assert_eq!(saved, 1, "{case}: the panic is saved locally");
                    assert!(
                        err.contains("Reporting is off, so nothing was sent"),
                        "{case}: {err}"
                    );
                }
            } else {
                assert!(out.status.success(), "{case}/{scenario}: {err}");
            }
            assert!(
                dirs.outbox_files().is_empty(),
                "{case}/{scenario}: an outbox file was left"
            );
            assert!(
                dirs.audit_log().is_empty(),
                "{case}/{scenario}: audit log written"
            );
            #[cfg(target_os = "linux")]
            if scenario == "threads" {
                assert_eq!(
                    stdout(&out).trim(),
                    "threads=1",
                    "{case}: init started a thread"
                );
            }
            if case == "opt-out first run" {
                assert!(
                    err.contains("Nothing was sent during this run"),
                    "{case}: the notice:\n{err}"
                );
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let requests = server.requests();
    assert!(
        requests.is_empty(),
        "{} requests reached the server: {:?}",
        requests.len(),
        requests.first().map(Recorded::text)
    );
}

#[test]
fn the_opt_out_notice_is_shown_once_and_the_second_run_sends() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let run_once = || {
        let mut cmd = fixture(&fixture_bin!(), &dirs, "errors");
        cmd.env("FIXTURE_DSN", server.dsn())
            .env("FIXTURE_POLICY", "optout");
        run(cmd, Duration::from_secs(30)).0
    };
    let first = run_once();
    assert!(
        stderr(&first).contains("Nothing was sent during this run"),
        "{}",
        stderr(&first)
    );
    assert!(stderr(&first).contains("'fixture telemetry disable'"));
    assert!(
        server.requests().is_empty(),
        "nothing is sent on the run that shows the notice"
    );
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs.settings()).unwrap()).unwrap();
    assert!(settings["notice_shown_at"].is_string());
    assert_eq!(settings["consent"]["via"], "default");

    let second = run_once();
    assert!(
        !stderr(&second).contains("Nothing was sent during this run"),
        "the notice is shown once"
    );
    assert_eq!(server.wait_for(2, Duration::from_secs(5)).len(), 2);
}

/// `(case, environment, settings, crash reports expected, usage pings expected)`.
type KindCase = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    &'static str,
    bool,
    bool,
);

#[test]
fn saying_no_to_one_kind_keeps_the_other() {
    let cases: [KindCase; 3] = [
        (
            "usage=false",
            vec![],
            r#"{"usage": false, "consent": {"decided": true, "granted": true, "via": "cli"}}"#,
            true,
            false,
        ),
        (
            "crash_reports=false",
            vec![],
            r#"{"crash_reports": false, "consent": {"decided": true, "granted": true, "via": "cli"}}"#,
            false,
            true,
        ),
        (
            "FIXTURE_TELEMETRY=crash",
            vec![("FIXTURE_TELEMETRY", "crash")],
            r#"{"consent": {"decided": true, "granted": true, "via": "cli"}}"#,
            true,
            false,
        ),
    ];
    for (case, env, settings, crash, usage) in cases {
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        dirs.write_settings(settings);
        // `panic` tracks a usage event, then panics.
        let mut cmd = fixture(&fixture_bin!(), &dirs, "panic");
        cmd.env("FIXTURE_DSN", server.dsn())
            .env("FIXTURE_SINK", "json")
            .env("FIXTURE_SINK_URL", format!("{}/usage", server.url()));
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let (out, _) = run(cmd, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(101), "{case}");
        std::thread::sleep(Duration::from_millis(200));
        let requests = server.requests();
        let crashes = requests
            .iter()
            .filter(|r| r.url.contains("/envelope"))
            .count();
        let pings = requests
            .iter()
            .filter(|r| r.url.starts_with("/usage"))
            .count();
        assert_eq!(crashes > 0, crash, "{case}: crash reports sent: {crashes}");
        assert_eq!(pings > 0, usage, "{case}: usage pings sent: {pings}");
        if !crash {
            assert!(dirs.outbox_files().is_empty(), "{case}: nothing stored");
        }
    }
}
