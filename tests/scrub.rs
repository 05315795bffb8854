//! `consentry scrub`: Sentry events in, scrubbed events out, one per line, in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn scrub(args: &[&str], stdin: &str) -> Output {
    let stdin = stdin.to_owned();
    scrub_fed(
        Command::new(env!("CARGO_BIN_EXE_consentry")),
        args,
        move |w| w.write_all(stdin.as_bytes()),
    )
}

/// Runs `consentry scrub` (through `program`, which may be a wrapper such as `time`), with
/// stdin written by `feed` on another thread, so that large inputs and outputs do not block
/// each other (and a run that stops early only breaks the pipe).
fn scrub_fed(
    mut program: Command,
    args: &[&str],
    feed: impl FnOnce(&mut std::process::ChildStdin) -> std::io::Result<()> + Send + 'static,
) -> Output {
    if program.get_program() != env!("CARGO_BIN_EXE_consentry") {
        program.arg(env!("CARGO_BIN_EXE_consentry"));
    }
    let mut child = program
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
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = feed(&mut stdin);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
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

#[test]
fn many_events_keep_their_order_across_chunks_and_workers() {
    // Thousands of lines make many chunks; every 50th event is much larger, so that the
    // workers finish their chunks out of order.
    let mut input = String::new();
    for n in 1..=3000 {
        let pad = if n % 50 == 0 {
            "x ".repeat(20_000)
        } else {
            String::new()
        };
        input.push_str(&format!(
            "{{\"n\":{n},\"message\":\"mail to user{n}@example.com {pad}\"}}\n"
        ));
    }
    let out = scrub(&[], &input);
    assert_eq!(out.status.code(), Some(0), "{}", err(&out));
    let events = lines(&out);
    let got: Vec<i64> = events.iter().map(|e| e["n"].as_i64().unwrap()).collect();
    assert_eq!(got, (1..=3000).collect::<Vec<_>>());
    assert!(
        events.iter().all(|e| e["message"]
            .as_str()
            .unwrap()
            .starts_with("mail to <email>")),
        "every event is scrubbed"
    );

    // A bad line far into the input stops the run exactly there.
    let input = input.replacen("{\"n\":2500,", "{\"n\":2500", 1);
    let out = scrub(&[], &input);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("error: <stdin>: line 2500: invalid JSON"),
        "{}",
        err(&out)
    );
    let got: Vec<i64> = lines(&out)
        .iter()
        .map(|e| e["n"].as_i64().unwrap())
        .collect();
    assert_eq!(got, (1..2500).collect::<Vec<_>>());
}

/// Writes `{"m":"` and `len` bytes of a letter, without an end of line, in 1 MiB pieces.
fn write_long_line(w: &mut impl Write, len: usize) -> std::io::Result<()> {
    w.write_all(b"{\"m\":\"")?;
    let piece = vec![b'a'; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(piece.len());
        w.write_all(&piece[..n])?;
        left -= n;
    }
    Ok(())
}

#[test]
fn an_over_long_line_is_an_error_naming_it_and_is_never_held_whole() {
    const LONG: usize = 200 << 20;
    // With `time -f %M` when there is one: the peak RSS in KiB, printed last on stderr.
    let time = std::path::Path::new("/usr/bin/time");
    let program = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "%M"]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_consentry"))
    };
    let out = scrub_fed(program, &["--keep-going"], |w| {
        w.write_all(b"{\"n\":1}\n")?;
        write_long_line(w, LONG)?;
        w.write_all(b"\"}\n{\"n\":3}\n")
    });
    let e = err(&out);
    assert_eq!(out.status.code(), Some(1), "{e}");
    assert!(
        e.contains("error: <stdin>: line 2: longer than 64 MiB, the limit; wrote null"),
        "{e}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text, "{\"n\":1}\nnull\n{\"n\":3}\n",
        "null in its place, then on"
    );
    if time.exists() {
        let peak_kib: u64 = e.lines().last().unwrap().trim().parse().unwrap();
        assert!(
            peak_kib < 160 << 10,
            "peak RSS {peak_kib} KiB for a {LONG}-byte line"
        );
    }

    // Without --keep-going the run stops at the long line (after writing null for it).
    let out = scrub_fed(Command::new(env!("CARGO_BIN_EXE_consentry")), &[], |w| {
        w.write_all(b"{\"n\":1}\n")?;
        write_long_line(w, (64 << 20) + 1)?;
        w.write_all(b"\"}\n{\"n\":3}\n")
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err(&out).contains("line 2: longer than 64 MiB"),
        "{}",
        err(&out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"n\":1}\nnull\n");
}
