//! End to end against a real Sentry-compatible server: Bugsink, installed and started on
//! loopback by `scripts/test`, which sets `CONSENTRY_BUGSINK_DSN`, `CONSENTRY_BUGSINK_MANAGE`
//! and `CONSENTRY_BUGSINK_DIR`. Ignored by a plain `cargo test`, because the server is not
//! there; `scripts/test` runs it with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use consentry_e2e::*;
use serde_json::Value;

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run this test through scripts/test"))
}

/// The stored events with these ids, read back through Bugsink's Django models.
fn stored_events(ids: &[String]) -> Vec<Value> {
    let list = ids
        .iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        "import json\nfrom events.models import Event\n\
         print('EVENTS' + json.dumps([e.get_parsed_data() for e in Event.objects.filter(event_id__in=[{list}])]))"
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
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("EVENTS"))
        .unwrap_or_else(|| {
            panic!(
                "no answer from Bugsink: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).unwrap()
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

#[test]
#[ignore = "needs Bugsink: run scripts/test"]
fn an_error_chain_and_a_panic_arrive_intact_and_scrubbed() {
    let dsn = env("CONSENTRY_BUGSINK_DSN");
    let dirs = Dirs::new();
    for scenario in ["errors", "panic"] {
        let mut cmd = fixture(&fixture_bin!(), &dirs, scenario);
        cmd.env("FIXTURE_TELEMETRY", "1")
            .env("FIXTURE_DSN", &dsn)
            .env("FIXTURE_FLUSH_MS", "10000");
        let (out, _) = run(cmd, Duration::from_secs(60));
        assert!(
            out.status.success() || scenario == "panic",
            "{}",
            stderr(&out)
        );
    }
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
    let list = ids
        .iter()
        .map(|id| format!("{id:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let script = format!(
        "from events.models import Event\n\
         print('ISSUES' + ','.join(str(e.issue_id) for e in Event.objects.filter(event_id__in=[{list}])))"
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
        .find_map(|l| l.strip_prefix("ISSUES"))
        .unwrap_or_else(|| panic!("no answer from Bugsink: {text}"))
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
