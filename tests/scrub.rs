//! `consentry scrub`: Sentry events in, scrubbed events out, one per line, in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn scrub(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .env_clear()
        .env("HOME", "/home/runner-x")
        .env("USER", "runner-x")
        .arg("scrub")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const EVENTS: &str = concat!(
    r#"{"event_id":"a1","message":"cannot open /home/alice/notes.txt for alice@example.com","server_name":"alice-pc"}"#,
    "\n",
    "\n",
    r#"{"event_id":"b2","exception":{"values":[{"type":"Error","value":"token ghp_abcdefghijklmnopqrstuvwxyzABCDEF012345 rejected"}]},"tags":{"host":"alice-pc"}}"#,
    "\n",
);

#[test]
fn events_are_scrubbed_one_per_line_in_order() {
    let out = scrub(&["--report"], EVENTS);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let events = lines(&out);
    assert_eq!(events.len(), 2, "the blank line is skipped");
    assert_eq!(events[0]["event_id"], "a1");
    assert_eq!(
        events[0]["message"],
        "cannot open /home/<user>/notes.txt for <email>"
    );
    assert_eq!(events[0]["server_name"], "<hostname>");
    assert_eq!(events[1]["event_id"], "b2");
    assert_eq!(
        events[1]["exception"]["values"][0]["value"],
        "token <secret:github> rejected"
    );
    // The host name learned from the first event's server_name is not learned for the
    // second: each event is scrubbed on its own (plus this machine's identity).
    let report = err(&out);
    for rule in ["home-path", "email", "hostname", "github-token"] {
        assert!(report.contains(rule), "{rule} in the report:\n{report}");
    }
    assert!(
        !report.contains("alice"),
        "the report never shows values:\n{report}"
    );
}

#[test]
fn known_identities_from_the_command_line_are_removed_everywhere() {
    let out = scrub(
        &["--user", "alice", "--hostname", "alice-pc"],
        r#"{"message":"alice ran the job on alice-pc","tags":{"host":"ALICE-PC"}}"#,
    );
    assert_eq!(out.status.code(), Some(0));
    let e = &lines(&out)[0];
    assert_eq!(e["message"], "<user> ran the job on <hostname>");
    assert_eq!(e["tags"]["host"], "<hostname>");
}

#[test]
fn the_running_users_home_becomes_tilde() {
    let out = scrub(&[], r#"{"message":"saved /home/runner-x/out.csv"}"#);
    assert_eq!(lines(&out)[0]["message"], "saved ~/out.csv");
}

#[test]
fn a_malformed_line_stops_the_run_naming_the_line() {
    let input = "{\"n\":1}\n{\"n\":2,\n{\"n\":3}\n";
    let out = scrub(&[], input);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains(
            "error: <stdin>: line 2: invalid JSON: EOF while parsing a value at line 1 column 7"
        ),
        "{}",
        err(&out)
    );
    let got: Vec<i64> = lines(&out)
        .iter()
        .map(|e| e["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [1], "nothing for the bad line, and the run stops");
}

#[test]
fn keep_going_skips_bad_lines_and_still_reports_them() {
    let input = "{\"n\":1}\n[1,2]\nnot json\n{\"n\":4}\n";
    let out = scrub(&["--keep-going"], input);
    assert_eq!(
        out.status.code(),
        Some(1),
        "bad lines still make the run fail"
    );
    let e = err(&out);
    assert!(e.contains("line 2: expected a JSON object"), "{e}");
    assert!(e.contains("line 3: invalid JSON"), "{e}");
    let got: Vec<i64> = lines(&out)
        .iter()
        .map(|e| e["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [1, 4]);
}

#[test]
fn files_are_read_in_order_and_rule_packs_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, rules) = (
        dir.path().join("a.jsonl"),
        dir.path().join("b.jsonl"),
        dir.path().join("rules.toml"),
    );
    std::fs::write(&a, "{\"n\":1,\"m\":\"ticket PRJ-1234\"}\n").unwrap();
    std::fs::write(&b, "{\"n\":2}\n").unwrap();
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"ticket\"\nkind = \"regex\"\npattern = \"PRJ-[0-9]+\"\nredaction = { placeholder = \"<ticket>\" }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .arg("scrub")
        .arg("--rules")
        .arg(&rules)
        .arg(&a)
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let events = lines(&out);
    assert_eq!(events[0]["m"], "ticket <ticket>");
    assert_eq!(events[1]["n"], 2);

    std::fs::write(
        &rules,
        "[[rules]]\nname = \"bad\"\nkind = \"regex\"\npattern = \"(\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_consentry"))
        .arg("scrub")
        .arg("--rules")
        .arg(&rules)
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err(&out).contains("rules.toml"),
        "the error names the file: {}",
        err(&out)
    );
}
