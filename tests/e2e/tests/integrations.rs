//! The ecosystem integrations: `anyhow` errors with their chain and backtrace, `log` and
//! `tracing` records as breadcrumbs (scrubbed like everything else), typed event catalogs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use consentry_e2e::*;
use serde_json::Value;

fn event_of(scenario: &str) -> Vec<Value> {
    event_of_with(scenario, &[])
}

fn event_of_with(scenario: &str, env: &[(&str, &str)]) -> Vec<Value> {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = fixture(&fixture_bin!(), &dirs, scenario);
    cmd.envs(env.iter().copied());
    cmd.env("FIXTURE_TELEMETRY", "1")
        .env("FIXTURE_DSN", server.dsn())
        .env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", format!("{}/usage", server.url()));
    let (out, _) = run(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{}", stderr(&out));
    server
        .requests()
        .iter()
        .inspect(|r| assert_no_pii(&r.text()))
        .map(|r| {
            if r.url.starts_with("/api/") {
                r.envelope_event()
            } else {
                r.json()
            }
        })
        .collect()
}

#[test]
fn anyhow_errors_keep_their_context_chain() {
    let events = event_of("anyhow");
    assert_eq!(events.len(), 1);
    let values: Vec<&str> = events[0]["exception"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        [
            "cannot read ~/.config/fixture/token.txt on <hostname>",
            "cannot train the model in ~/projects/yolo",
            "while running the job in ~/job",
        ]
    );
    assert!(
        events[0]["exception"]["values"][2]["stacktrace"]["frames"].is_array(),
        "a backtrace"
    );
}

/// With `RUST_BACKTRACE` set anyhow captures its own backtrace, and that is the stack sent:
/// its frames named, trimmed and marked like a raw stack's, grouped by the app's function.
#[test]
fn anyhow_backtraces_have_the_apps_frames_and_group_by_them() {
    for setting in ["1", "full"] {
        let events = event_of_with("anyhow", &[("RUST_BACKTRACE", setting)]);
        assert_eq!(events.len(), 1, "{setting}");
        let frames = events[0]["exception"]["values"][2]["stacktrace"]["frames"]
            .as_array()
            .unwrap_or_else(|| panic!("{setting}: a backtrace"));
        let names: Vec<&str> = frames
            .iter()
            .map(|f| f["function"].as_str().unwrap_or(""))
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with("at ")),
            "{setting}: {names:?}"
        );
        let innermost = frames.last().unwrap();
        assert_eq!(
            innermost["function"], "fixture::main",
            "{setting}: {names:?}"
        );
        assert_eq!(innermost["in_app"], true, "{setting}");
        assert!(innermost["lineno"].is_u64(), "{setting}: {innermost}");
        assert_eq!(
            events[0]["fingerprint"],
            serde_json::json!(["anyhow::Error", "fixture::main"]),
            "{setting}"
        );
    }
}

#[test]
fn log_and_tracing_records_become_scrubbed_breadcrumbs() {
    let events = event_of("breadcrumbs");
    assert_eq!(events.len(), 1);
    let crumbs = events[0]["breadcrumbs"]["values"]
        .as_array()
        .expect("breadcrumbs");
    let messages: Vec<&str> = crumbs
        .iter()
        .filter_map(|b| b["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "opened ~/project/config.toml",
            "retrying the upload to <hostname>",
            "about to fail"
        ],
        "{crumbs:#?}"
    );
    assert_eq!(crumbs[1]["level"], "warning");
    assert_eq!(crumbs[1]["data"]["attempt"], 3);
    assert_eq!(crumbs[1]["data"]["user"], "<user>");
    assert_eq!(crumbs[2]["category"], "app");
}

#[test]
fn typed_catalog_events_are_sent_by_name() {
    let events = event_of("catalog");
    let sent: Vec<&Value> = events
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap())
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["name"], "model_exported");
    assert_eq!(sent[0]["props"]["format"], "onnx");
}
