//! Usage pings end to end: the exact wire format of every sink (golden files), rate
//! limiting, the queue cap, bounded flush, consent checked at send time, the deletion
//! request on `disable`, and what `Prop::choice`, `Prop::hashed` and free strings become.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use consentry_e2e::*;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

fn usage_run(
    dirs: &Dirs,
    server: &CaptureServer,
    sink: &str,
    scenario: &str,
) -> std::process::Command {
    let mut cmd = fixture(&fixture_bin!(), dirs, scenario);
    let url = match sink {
        "json" => format!("{}/v1/usage", server.url()),
        _ => server.url(),
    };
    cmd.env("FIXTURE_TELEMETRY", "1")
        .env("FIXTURE_SINK", sink)
        .env("FIXTURE_SINK_URL", url);
    cmd
}

fn settings(dirs: &Dirs) -> Value {
    serde_json::from_slice(&std::fs::read(dirs.settings()).unwrap()).unwrap()
}

/// Replaces what differs between machines and runs with placeholders, so the rest can be
/// compared byte for byte with a golden file.
fn normalize(value: &mut Value, anonymous_id: &str) {
    const VOLATILE: &[&str] = &[
        "timestamp",
        "sentAt",
        "sent_at",
        "time",
        "messageId",
        "uuid",
        "id",
        "timestamp_micros",
        "session_id",
        "os",
        "os_version",
        "rust_version",
        "install_source",
        "container",
        "wsl",
        "arch",
        "project",
        "version",
    ];
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if VOLATILE.contains(&k.as_str()) && !v.is_object() && !v.is_null() {
                    *v = Value::from(format!("<{k}>"));
                } else {
                    normalize(v, anonymous_id);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| normalize(v, anonymous_id)),
        Value::String(s) if s == anonymous_id => *s = "<anonymous_id>".into(),
        _ => {}
    }
}

fn golden(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no golden file {}; run with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    assert_eq!(
        text,
        expected,
        "{name}: wire format differs from {}",
        path.display()
    );
}

/// Runs `track 2` against a sink and returns the one request, checked and normalized.
fn one_batch(sink: &str) -> (Recorded, Value, Dirs) {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = usage_run(&dirs, &server, sink, "track");
    cmd.arg("2").env("FIXTURE_USAGE_INTERVAL_MS", "60000");
    // The first event may go out alone (a batch is due at once), the second at exit.
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = server.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_no_pii(&r.text());
        assert!(
            !r.text().contains("acme-secret-project"),
            "a hashed value went out raw"
        );
        assert!(
            !r.text().contains("my-private-net"),
            "a value outside the allow-list went out"
        );
    }
    // Merge the batches into one body for the golden comparison.
    let id = settings(&dirs)["anonymous_id"].as_str().unwrap().to_owned();
    let mut body = requests[0].json();
    for r in &requests[1..] {
        let more = r.json();
        let key = match sink {
            "segment" | "posthog" => "batch",
            _ => "events",
        };
        let extra = more[key].as_array().unwrap().clone();
        body[key].as_array_mut().unwrap().extend(extra);
    }
    let raw = body.clone();
    normalize(&mut body, &id);
    (requests[0].clone(), raw, {
        golden(&format!("usage-{sink}"), &body);
        dirs
    })
}

fn hashed_values(events: &[Value], path: &[&str]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let mut v = e;
            for p in path {
                v = &v[*p];
            }
            v.as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn ga4_measurement_protocol() {
    let (request, raw, dirs) = one_batch("ga4");
    assert_eq!(
        request.url,
        "/mp/collect?measurement_id=G-FIXTURE1&api_secret=fixture-api-secret"
    );
    assert_eq!(request.header("Content-Type"), Some("application/json"));
    assert_eq!(raw["client_id"], settings(&dirs)["anonymous_id"]);
    let events = raw["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events[0]["params"].as_object().unwrap().len() <= 25,
        "GA4 takes 25 params"
    );
    let hashes = hashed_values(events, &["params", "project"]);
    assert_eq!(hashes[0], hashes[1], "equal values give equal hashes");
}

#[test]
fn segment_http_tracking_api() {
    let (request, raw, dirs) = one_batch("segment");
    assert_eq!(request.url, "/v1/batch");
    // Basic auth: the write key as user name, no password.
    assert_eq!(
        request.header("Authorization"),
        Some("Basic Zml4dHVyZS13cml0ZS1rZXk6")
    );
    let batch = raw["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 2);
    for e in batch {
        assert_eq!(e["type"], "track");
        assert_eq!(e["anonymousId"], settings(&dirs)["anonymous_id"]);
        assert!(e.get("userId").is_none());
    }
}

#[test]
fn posthog_batch_api() {
    let (request, raw, dirs) = one_batch("posthog");
    assert_eq!(request.url, "/batch/");
    assert_eq!(raw["api_key"], "phc_fixture_key");
    for e in raw["batch"].as_array().unwrap() {
        assert_eq!(e["distinct_id"], settings(&dirs)["anonymous_id"]);
        assert_eq!(e["properties"]["$process_person_profile"], false);
    }
}

#[test]
fn plain_json() {
    let (request, raw, dirs) = one_batch("json");
    assert_eq!(request.url, "/v1/usage");
    assert_eq!(raw["client_id"], settings(&dirs)["anonymous_id"]);
    let events = raw["events"].as_array().unwrap();
    let props = &events[0]["props"];
    assert_eq!(props["task"], "detect");
    assert_eq!(props["model"], "yolov8n", "in the allow-list: kept");
    assert_eq!(
        props["custom_model"], "custom",
        "outside the allow-list: custom"
    );
    assert_eq!(props["fast"], true);
    assert_eq!(
        props["note"], "data in ~/datasets for <email>",
        "free strings are scrubbed"
    );
    let project = props["project"].as_str().unwrap();
    assert_ne!(project, "acme-secret-project");
    assert!(
        project.starts_with("<hash:") && project.len() == "<hash:>".len() + 16,
        "{project}"
    );
    assert_eq!(raw["metadata"]["app"], "fixture");
    assert_eq!(raw["metadata"]["app_version"], "1.2.3");
    assert_eq!(raw["metadata"]["ci"], "none");
    // The audit log has what was sent.
    let log = dirs.audit_log();
    assert!(
        log.lines().any(|l| l.contains("\"kind\":\"usage\"")),
        "{log}"
    );
}

#[test]
fn many_events_make_one_request_per_interval() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = usage_run(&dirs, &server, "json", "track-spread");
    // 20 events, 50 ms apart (about 1 s), with at least 400 ms between batches.
    cmd.args(["20", "50"])
        .env("FIXTURE_USAGE_INTERVAL_MS", "400");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let requests = server.requests();
    let total: usize = requests
        .iter()
        .map(|r| r.json()["events"].as_array().unwrap().len())
        .sum();
    assert_eq!(total, 20, "every event is sent once");
    assert!(
        requests.len() >= 2 && requests.len() <= 5,
        "{} requests for 20 events",
        requests.len()
    );
    // All but the last (the flush at exit) respect the interval.
    for pair in requests[..requests.len() - 1].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(380), "batches {gap:?} apart");
    }
}

#[test]
fn a_failed_batch_is_sent_again_later_and_nothing_is_lost() {
    let server = CaptureServer::start(Plan::Status(200));
    server.push([Plan::Status(500)]);
    let dirs = Dirs::new();
    let mut cmd = usage_run(&dirs, &server, "json", "track-spread");
    cmd.args(["10", "50"])
        .env("FIXTURE_USAGE_INTERVAL_MS", "100");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let requests = server.requests();
    assert!(requests.len() >= 2, "{} requests", requests.len());
    let numbers = |r: &Recorded| -> Vec<i64> {
        r.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["props"]["n"].as_i64().unwrap())
            .collect()
    };
    let failed = numbers(&requests[0]);
    let mut delivered: Vec<i64> = requests[1..].iter().flat_map(numbers).collect();
    delivered.sort();
    assert_eq!(
        delivered,
        (0..10).collect::<Vec<i64>>(),
        "every event arrives once after the 500"
    );
    assert!(
        failed.iter().all(|n| delivered.contains(n)),
        "the failed batch was sent again"
    );
}

#[test]
fn the_queue_is_capped() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = usage_run(&dirs, &server, "json", "track");
    cmd.arg("200").env("FIXTURE_USAGE_INTERVAL_MS", "60000");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let requests = server.requests();
    assert!(
        requests.len() <= 2,
        "one batch at once and one at exit at most: {}",
        requests.len()
    );
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.json()["events"].as_array().unwrap().len())
        .collect();
    assert!(
        sizes.iter().all(|n| *n <= 25),
        "no batch exceeds the queue: {sizes:?}"
    );
    assert!(
        sizes.iter().sum::<usize>() < 200,
        "newer events were dropped when full: {sizes:?}"
    );
    let epochs: Vec<i64> = requests
        .iter()
        .flat_map(|r| r.json()["events"].as_array().unwrap().clone())
        .map(|e| e["props"]["epoch"].as_i64().unwrap())
        .collect();
    assert!(
        epochs.contains(&0) && !epochs.contains(&199),
        "the older events are kept, the newer dropped: {epochs:?}"
    );
}

#[test]
fn ga4_requests_carry_at_most_25_events_each_with_its_time() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = usage_run(&dirs, &server, "ga4", "track");
    cmd.arg("60")
        .env("FIXTURE_USAGE_QUEUE", "100")
        .env("FIXTURE_USAGE_INTERVAL_MS", "60000");
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let requests = server.requests();
    let events: Vec<Value> = requests
        .iter()
        .flat_map(|r| r.json()["events"].as_array().unwrap().clone())
        .collect();
    assert_eq!(events.len(), 60, "none lost");
    assert!(
        requests
            .iter()
            .all(|r| r.json()["events"].as_array().unwrap().len() <= 25),
        "GA4 takes 25 events per request"
    );
    for e in &events {
        let micros = e["timestamp_micros"].as_u64().expect("timestamp_micros");
        assert!(
            micros >= started && micros < started + 60_000_000,
            "{micros}"
        );
        let params = e["params"].as_object().unwrap();
        assert!(params.len() <= 25);
        assert!(
            params.contains_key("epoch"),
            "the app's props are kept first"
        );
    }
}

#[test]
fn the_flush_at_exit_is_bounded_when_the_server_hangs() {
    let server = CaptureServer::start(Plan::Hang);
    let dirs = Dirs::new();
    let mut cmd = usage_run(&dirs, &server, "json", "track");
    cmd.arg("3")
        .env("FIXTURE_USAGE_INTERVAL_MS", "60000")
        .env("FIXTURE_USAGE_FLUSH_MS", "300");
    let (out, elapsed) = run(cmd, LIMIT);
    assert!(out.status.success());
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert!(!server.requests().is_empty(), "it tried");
}

#[test]
fn a_bad_name_drops_the_event_and_a_bad_key_only_its_property() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let (out, _) = run(usage_run(&dirs, &server, "json", "track-bad"), LIMIT);
    assert!(out.status.success());
    let events: Vec<Value> = server
        .requests()
        .iter()
        .flat_map(|r| r.json()["events"].as_array().unwrap().clone())
        .collect();
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ok_name", "good"]);
    assert_eq!(events[0]["props"], json!({"kept_key": "y"}));
}

#[test]
fn debug_mode_prints_the_batch_and_sends_nothing() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let mut cmd = usage_run(&dirs, &server, "json", "track");
    cmd.arg("2").env("FIXTURE_TELEMETRY_DEBUG", "1");
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(err.contains("[consentry debug] usage batch"), "{err}");
    assert!(err.contains("\"task\": \"detect\""), "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(server.requests().is_empty());
}

#[test]
fn consent_withdrawn_in_another_process_stops_sending_at_the_next_flush() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    dirs.grant_consent();
    let mut cmd = fixture(&fixture_bin!(), &dirs, "track-spread");
    cmd.args(["40", "50"])
        .env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", format!("{}/v1/usage", server.url()))
        .env("FIXTURE_USAGE_INTERVAL_MS", "200");
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = server.wait_for(1, Duration::from_secs(10));
    assert!(!first.is_empty(), "usage was on");
    let config = consentry::Config::new("fixture", "1.2.3")
        .config_dir(dirs.config())
        .data_dir(dirs.data());
    consentry::disable(&config, consentry::Scope::Usage).unwrap();
    let disabled_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let late: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.at > disabled_at + Duration::from_millis(300))
        .filter(|r| r.json().get("type").is_none())
        .collect();
    assert!(
        late.is_empty(),
        "{} batches sent after consent was withdrawn",
        late.len()
    );
}

#[test]
fn disable_sends_one_deletion_request_and_rotates_the_id() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    dirs.grant_consent();
    let mut cmd = fixture(&fixture_bin!(), &dirs, "track");
    cmd.env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", format!("{}/v1/usage", server.url()));
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let old_id = settings(&dirs)["anonymous_id"].as_str().unwrap().to_owned();
    let before = server.requests().len();
    assert!(before >= 1);

    let config = consentry::Config::new("fixture", "1.2.3")
        .config_dir(dirs.config())
        .data_dir(dirs.data())
        .usage_sink(consentry::Sink::json(format!("{}/v1/usage", server.url())));
    let done = consentry::disable(&config, consentry::Scope::All).unwrap();
    assert!(done.deletion_sent && done.id_rotated);
    let requests = server.requests();
    assert_eq!(requests.len(), before + 1, "exactly one deletion request");
    let deletion = requests.last().unwrap().json();
    assert_eq!(deletion["type"], "deletion-request");
    assert_eq!(deletion["client_id"], old_id.as_str());
    assert_eq!(
        deletion.as_object().unwrap().len(),
        3,
        "only the id (and the request's type and time): {deletion}"
    );
    let new_id = settings(&dirs)["anonymous_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    assert!(settings(&dirs).get("pending_deletion").is_none());
}

#[test]
fn a_deletion_owed_by_the_standalone_cli_is_sent_by_the_app_at_its_next_start() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    dirs.grant_consent();
    let old_id = {
        let config = consentry::Config::new("fixture", "1.2.3")
            .config_dir(dirs.config())
            .data_dir(dirs.data());
        let old = consentry::Settings::load(&config)
            .unwrap()
            .anonymous_id()
            .to_string();
        // No sink known here, as in `consentry --app fixture disable`.
        let done = consentry::disable(&config, consentry::Scope::All).unwrap();
        assert!(done.deletion_pending && !done.deletion_sent);
        old
    };
    assert_eq!(settings(&dirs)["pending_deletion"], json!([old_id]));
    // The app starts (telemetry now off): it owes the deletion request and sends it.
    let mut cmd = fixture(&fixture_bin!(), &dirs, "track");
    cmd.env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", format!("{}/v1/usage", server.url()));
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success());
    let requests = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1, "the deletion request and nothing else");
    assert_eq!(requests[0].json()["type"], "deletion-request");
    assert_eq!(requests[0].json()["client_id"], old_id.as_str());
    assert!(settings(&dirs).get("pending_deletion").is_none(), "settled");
}

/// An unusable data directory (a file in its way): usage pings cannot be stored first nor
/// logged, so nothing is sent, whatever the app tracked (fail closed), and the app goes on.
#[test]
fn nothing_is_sent_when_the_data_directory_cannot_be_written() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    let blocker = dirs.root.path().join("f");
    std::fs::write(&blocker, "x\n").unwrap();
    let mut cmd = usage_run(&dirs, &server, "json", "track");
    cmd.env("FIXTURE_DATA_DIR", blocker.join("data"))
        .env("FIXTURE_DSN", server.dsn());
    let (out, _) = run(cmd, LIMIT);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(300));
    let requests = server.requests();
    assert!(
        requests.is_empty(),
        "sent although nothing could be stored or logged: {:?}\n{}",
        requests.iter().map(|r| r.url.clone()).collect::<Vec<_>>(),
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&blocker).unwrap(), "x\n");
}
