//! End to end against a real Sentry-compatible server: Bugsink, installed and started on
//! loopback by `scripts/test`, which sets `CONSENTRY_BUGSINK_DSN`, `CONSENTRY_BUGSINK_MANAGE`
//! and `CONSENTRY_BUGSINK_DIR`. Ignored by a plain `cargo test`, because the server is not
//! there; `scripts/test` runs it with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use consentry_e2e::*;
use serde_json::Value;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run this test through scripts/test"))
}

/// Runs `select` (a Python expression over `events`, the stored events with these ids) in
/// Bugsink's Django shell and returns what it printed after `tag`.
fn bugsink_query(ids: &[String], tag: &str, select: &str) -> String {
    let list = ids
        .iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        "import json\nfrom events.models import Event\n\
         events = Event.objects.filter(event_id__in=[{list}])\n\
         print('{tag}' + {select})"
    );
    let dir = env("CONSENTRY_BUGSINK_DIR");
    let out = Command::new(env("CONSENTRY_BUGSINK_MANAGE"))
        .args(["shell", "-c", &script])
        .env("DJANGO_SETTINGS_MODULE", "bugsink_conf")
        .env("PYTHONPATH", &dir)
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(tag))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "no answer from Bugsink: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// The stored events with these ids, read back through Bugsink's Django models.
fn stored_events(ids: &[String]) -> Vec<Value> {
    let line = bugsink_query(
        ids,
        "EVENTS",
        "json.dumps([e.get_parsed_data() for e in events])",
    );
    serde_json::from_str(&line).unwrap()
}

/// The event ids the audit log says were sent.
fn sent_ids(dirs: &Dirs) -> Vec<String> {
    dirs.audit_log()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["status"] == 200)
        .map(|r| {
            let id = r["payload"]["event_id"].as_str().unwrap().replace('-', "");
            format!(
                "{}-{}-{}-{}-{}",
                &id[..8],
                &id[8..12],
                &id[12..16],
                &id[16..20],
                &id[20..]
            )
        })
        .collect()
}

/// Runs `bin`'s `errors` (a three-link error and a message) and `panic` scenarios against
/// Bugsink, in fresh directories; returns those directories.
fn errors_and_a_panic(bin: &std::path::Path, dsn: &str, label: &str) -> Dirs {
    let dirs = Dirs::new();
    for scenario in ["errors", "panic"] {
        let mut cmd = fixture(bin, &dirs, scenario);
        cmd.env("FIXTURE_TELEMETRY", "1")
            .env("FIXTURE_DSN", dsn)
            .env("FIXTURE_FLUSH_MS", "10000");
        let (out, _) = run(cmd, Duration::from_secs(60));
        assert!(
            out.status.success() || scenario == "panic",
            "{label}: {}",
            stderr(&out)
        );
    }
    dirs
}

#[test]
#[ignore = "needs Bugsink: run scripts/test"]
fn an_error_chain_and_a_panic_arrive_intact_and_scrubbed() {
    let dsn = env("CONSENTRY_BUGSINK_DSN");
    let dirs = errors_and_a_panic(&fixture_bin!(), &dsn, "debug");
    let ids = sent_ids(&dirs);
    assert_eq!(
        ids.len(),
        3,
        "an error, a message and a panic were accepted: {}",
        dirs.audit_log()
    );
    let events = stored_events(&ids);
    assert_eq!(events.len(), 3, "Bugsink stored all three");
    for event in &events {
        let text = event.to_string();
        assert_no_pii(&text);
        assert!(
            event.get("server_name").is_none_or(Value::is_null),
            "{text}"
        );
        assert_eq!(event["release"], "fixture@1.2.3");
    }
    let error = events
        .iter()
        .find(|e| {
            e["exception"]["values"]
                .as_array()
                .is_some_and(|v| v.len() == 3)
        })
        .expect("the three-link error");
    let values: Vec<&str> = error["exception"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        [
            "upload refused for <email> with token <secret:github>",
            "cannot read ~/.config/fixture/token.txt on <hostname>",
            "cannot train the model in ~/projects/yolo",
        ]
    );
    let panic = events
        .iter()
        .find(|e| e["exception"]["values"][0]["type"] == "panic")
        .expect("the panic");
    assert_eq!(
        panic["exception"]["values"][0]["value"],
        "fixture panicked reading ~/data.csv with <secret:github>"
    );
}

/// The Bugsink issue each of these events was grouped into.
fn issues_of(ids: &[String]) -> Vec<String> {
    bugsink_query(ids, "ISSUES", "','.join(str(e.issue_id) for e in events)")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs Bugsink: run scripts/test"]
fn the_same_error_with_different_paths_is_one_issue() {
    let dsn = env("CONSENTRY_BUGSINK_DSN");
    // Two machines: their own directories, the same bug, different paths in the message.
    let mut ids = Vec::new();
    for path in ["/home/ann/data.conf", "bad.conf"] {
        let dirs = Dirs::new();
        let mut cmd = fixture(&fixture_bin!(), &dirs, "grouped");
        cmd.arg(path)
            .env("FIXTURE_TELEMETRY", "1")
            .env("FIXTURE_DSN", &dsn)
            .env("FIXTURE_FLUSH_MS", "10000");
        let (out, _) = run(cmd, Duration::from_secs(60));
        assert!(out.status.success(), "{}", stderr(&out));
        ids.extend(sent_ids(&dirs));
    }
    assert_eq!(ids.len(), 2, "both were accepted");
    let issues = issues_of(&ids);
    assert_eq!(issues.len(), 2, "both were stored: {issues:?}");
    assert_eq!(issues[0], issues[1], "one issue for one bug");
}

/// The fixture as people ship it: a release build with `debug = "line-tables-only"`; that
/// binary without its debug info (what `debug = false` leaves), with its debug sections
/// compressed (`-Wl,--compress-debug-sections=zlib`) and without any symbols (what
/// `strip = true` leaves); and `line-tables-only` with `panic = "abort"` and `lto = "fat"`. Built once per
/// target directory (`target/profiles*`), a few minutes on a clean machine.
fn profile_fixtures() -> Vec<(&'static str, PathBuf)> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let build = |dir: &str, abort: bool| {
        let target = workspace.join("target").join(dir);
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--release",
            "-p",
            "consentry-e2e",
            "--bin",
            "fixture",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(&workspace)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only");
        if abort {
            // Three more choices in the same build (each build takes minutes on 2 cores).
            // With split debug information the DWARF is packed into `fixture.dwp` beside
            // the executable, which is where the symbolizer looks for it.
            cmd.env("CARGO_PROFILE_RELEASE_PANIC", "abort")
                .env("CARGO_PROFILE_RELEASE_LTO", "fat")
                .env("CARGO_PROFILE_RELEASE_SPLIT_DEBUGINFO", "packed");
        }
        assert!(
            cmd.status().unwrap().success(),
            "building the {dir} fixture failed"
        );
        let bin = target.join("release/fixture");
        if abort {
            assert!(
                bin.with_extension("dwp").is_file(),
                "split debuginfo: no .dwp"
            );
        }
        bin
    };
    let line_tables = build("profiles", false);
    let derived = |flag: &str, name: &str| {
        let out = line_tables.with_file_name(name);
        let dir = out.with_extension("d");
        std::fs::create_dir_all(&dir).unwrap();
        // The file name stays `fixture` (the report names the executable by it).
        let bin = dir.join("fixture");
        let status = Command::new("objcopy")
            .arg(flag)
            .arg(&line_tables)
            .arg(&bin)
            .status()
            .unwrap();
        assert!(status.success(), "objcopy {flag}");
        bin
    };
    vec![
        ("line-tables-only", line_tables.clone()),
        ("no debug info", derived("--strip-debug", "nodebug")),
        (
            "line-tables-only, compressed",
            derived("--compress-debug-sections=zlib", "compressed"),
        ),
        ("strip = true", derived("--strip-all", "stripped")),
        (
            "line-tables-only, panic = abort, lto = fat, split-debuginfo = packed",
            build("profiles-abort", true),
        ),
    ]
}

/// The frames of an event's outermost exception (where a report's stack trace is).
fn frames_of(event: &Value) -> Vec<Value> {
    event["exception"]["values"]
        .as_array()
        .and_then(|v| v.last())
        .and_then(|e| e["stacktrace"]["frames"].as_array())
        .cloned()
        .unwrap_or_default()
}

/// The innermost in-app frame is the app's function; consentry's own frames are gone or
/// not in-app, and so are the standard library's.
fn check_in_app(profile: &str, what: &str, event: &Value, function: &str) {
    let frames = frames_of(event);
    let top = frames
        .iter()
        .rev()
        .find(|f| f["in_app"] == true)
        .unwrap_or_else(|| panic!("{profile}, {what}: no in-app frame: {frames:#?}"));
    assert_eq!(top["function"], function, "{profile}, {what}: {frames:#?}");
    // Every other profile here keeps line tables (in the executable or in its `.dwp`).
    if profile != "no debug info" {
        assert!(
            top["lineno"].is_u64(),
            "{profile}, {what}: no line: {frames:#?}"
        );
        assert_eq!(
            top["filename"], "fixture.rs",
            "{profile}, {what}: {frames:#?}"
        );
    }
    for f in &frames {
        let name = f["function"].as_str().unwrap_or("");
        let path = f["abs_path"].as_str().unwrap_or("");
        let foreign = ["consentry", "std::", "core::", "alloc::", "backtrace::"]
            .iter()
            .any(|p| name.starts_with(p) || name.starts_with(&format!("<{p}")))
            || path.contains("/rustc/")
            || path.contains("/src/runtime.rs")
            || path.contains("/src/lib.rs") && !path.contains("/e2e/");
        assert!(
            !(foreign && f["in_app"] == true),
            "{profile}, {what}: {name} ({path}) is not the app's: {frames:#?}"
        );
    }
}

/// The executable's debug image: its build id, its file name only.
fn check_images(profile: &str, event: &Value, id: &str) {
    let images = event["debug_meta"]["images"].as_array().unwrap_or_else(|| {
        panic!("{profile}: no debug_meta: {event}");
    });
    let exe = images
        .iter()
        .find(|i| i["code_id"] == id)
        .unwrap_or_else(|| panic!("{profile}: no image with build id {id}: {images:#?}"));
    assert_eq!(exe["name"], "fixture", "{profile}");
    for image in images {
        let name = image["name"].as_str().unwrap_or("");
        assert!(!name.contains('/'), "{profile}: {name}");
    }
}

#[test]
#[ignore = "needs Bugsink: run scripts/test"]
fn every_profile_reports_the_apps_frames_in_app() {
    let dsn = env("CONSENTRY_BUGSINK_DSN");
    let mut profiles = vec![("debug", fixture_bin!())];
    profiles.extend(profile_fixtures());
    for (profile, bin) in profiles {
        let id = gnu_build_id(&bin).expect("a build id (readelf -n)");
        let symbols = profile != "strip = true";
        let dirs = errors_and_a_panic(&bin, &dsn, profile);
        let ids = sent_ids(&dirs);
        assert_eq!(ids.len(), 3, "{profile}: {}", dirs.audit_log());
        let events = stored_events(&ids);
        assert_eq!(events.len(), 3, "{profile}: Bugsink stored all three");
        let error = events
            .iter()
            .find(|e| {
                e["exception"]["values"]
                    .as_array()
                    .is_some_and(|v| v.len() == 3)
            })
            .unwrap_or_else(|| panic!("{profile}: the three-link error"));
        let panic = events
            .iter()
            .find(|e| e["exception"]["values"][0]["type"] == "panic")
            .unwrap_or_else(|| panic!("{profile}: the panic"));
        for (what, event) in [("error", error), ("panic", panic)] {
            assert_no_pii(&event.to_string());
            check_images(profile, event, &id);
            assert!(!frames_of(event).is_empty(), "{profile}, {what}: frames");
            if symbols {
                check_in_app(profile, what, event, "fixture::main");
            } else {
                // No symbols on the machine: bare addresses (kept, not trimmed as unknown),
                // which a server holding the debug files symbolicates by the build id.
                let frames = frames_of(event);
                assert!(frames.len() >= 5, "{profile}, {what}: {frames:#?}");
                assert!(frames.iter().all(|f| f["instruction_addr"].is_string()));
            }
        }

        // A native crash in the same build, reported at the next start.
        let server = CaptureServer::start(Plan::Status(200));
        let dirs = Dirs::new();
        let crash = |scenario: &str| {
            let mut cmd = fixture(&bin, &dirs, scenario);
            // The exit flush waits for symbols (past the default 2 s, bare addresses
            // would be sent: a debug build's symbols take that long on a loaded machine).
            cmd.env("FIXTURE_TELEMETRY", "1")
                .env("FIXTURE_FLUSH_MS", "20000")
                .env("FIXTURE_DSN", server.dsn());
            run(cmd, Duration::from_secs(60)).0
        };
        let out = crash("native-null");
        assert!(!out.status.success(), "{profile}: crashed");
        assert!(crash("idle").status.success());
        let requests = server.wait_for(1, Duration::from_secs(10));
        assert_eq!(requests.len(), 1, "{profile}: the native crash");
        let event = requests[0].envelope_event();
        assert_no_pii(&event.to_string());
        assert_eq!(event["exception"]["values"][0]["type"], "SIGSEGV");
        check_images(profile, &event, &id);
        if symbols {
            check_in_app(profile, "native crash", &event, "fixture::crash_null");
        }
    }
}
