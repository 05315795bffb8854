//! Consent beyond a switch (issue 13), end to end with the loopback capture server: local
//! mode sends zero bytes, data from before consent is not uploaded by a later "yes" (only by
//! an explicit `send`, which delivers exactly one report), a "no" reaches child processes, a
//! project file under version control says no for everyone, and a consent group shares one
//! decision, live.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use consentry_e2e::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);

/// The fixture with both destinations pointing at `server`.
fn with_server(dirs: &Dirs, scenario: &str, server: &CaptureServer) -> Command {
    let mut cmd = fixture(&fixture_bin!(), dirs, scenario);
    cmd.env("FIXTURE_DSN", server.dsn())
        .env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", format!("{}/usage", server.url()));
    cmd
}

/// Runs the app's mounted `telemetry` subcommand (`fixture telemetry ARGS`); it must succeed.
fn telemetry(dirs: &Dirs, server: &CaptureServer, args: &[&str]) -> Output {
    let mut cmd = with_server(dirs, "telemetry", server);
    cmd.args(args);
    let (out, _) = run(cmd, LIMIT);
    assert!(
        out.status.success(),
        "telemetry {args:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

fn ok(cmd: Command) -> Output {
    let (out, _) = run(cmd, LIMIT);
    assert!(
        out.status.success(),
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    out
}

fn settings(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Gives a fixture run's requests time to arrive, then returns them all.
fn settle(server: &CaptureServer) -> Vec<Recorded> {
    std::thread::sleep(Duration::from_millis(500));
    server.requests()
}

/// Control: the same run without the "no" does reach the server, so a test that sees zero
/// requests proves the "no", not a broken fixture.
fn assert_sends(dirs: &Dirs, server: &CaptureServer) {
    let before = server.requests().len();
    ok(with_server(dirs, "errors", server));
    assert!(
        server.wait_for(before + 1, Duration::from_secs(10)).len() > before,
        "the control run sent nothing: the test proves nothing"
    );
}

/// The fixture with both destinations pointing at a port that counts connections.
fn with_closing(dirs: &Dirs, scenario: &str, closing: &ClosingServer) -> Command {
    let mut cmd = fixture(&fixture_bin!(), dirs, scenario);
    cmd.env("FIXTURE_DSN", closing.dsn())
        .env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", closing.dsn().replace("publickey@", ""))
        .env("FIXTURE_USAGE_INTERVAL_MS", "0");
    cmd
}

#[test]
fn local_mode_opens_no_socket_keeps_reports_and_logs_them() {
    // A port that counts every connection, even one that never sends a byte.
    let closing = ClosingServer::start();
    let dirs = Dirs::new();
    let mut enable = with_closing(&dirs, "telemetry", &closing);
    enable.args(["enable", "--local"]);
    let out = ok(enable);
    assert!(
        stdout(&out).contains("local mode: nothing is sent"),
        "{}",
        stdout(&out)
    );
    let s = settings(&dirs.settings());
    assert_eq!(
        (s["crash_reports"].as_str(), s["usage"].as_str()),
        (Some("local"), Some("local"))
    );

    ok(with_closing(&dirs, "errors", &closing));
    let mut track = with_closing(&dirs, "track", &closing);
    track.arg("3");
    ok(track);
    ok(with_closing(&dirs, "thread-panic", &closing));
    ok(with_closing(&dirs, "cli-once", &closing));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        *closing.accepted.lock().unwrap(),
        0,
        "local mode opened a socket"
    );

    // The reports are kept where uploads never look, scrubbed.
    assert!(dirs.outbox_files().is_empty(), "{:?}", dirs.outbox_files());
    let kept = dirs.kept_files();
    assert_eq!(
        kept.len(),
        4,
        "error, message, panic, the CLI's error: {kept:?}\n{}",
        dirs.audit_log()
    );
    for f in &kept {
        assert_no_pii(&String::from_utf8_lossy(&std::fs::read(f).unwrap()));
    }
    // The audit log says what was kept, and that nothing left.
    let log = dirs.audit_log();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &records {
        assert_eq!(
            r["destination"], "none: local mode, kept on this machine",
            "every record is local: {r}"
        );
        assert!(r["status"].is_null(), "{r}");
    }
    let count = |kind: &str| records.iter().filter(|r| r["kind"] == kind).count();
    assert_eq!(count("crash"), 4, "{log}");
    assert!(count("usage") >= 2, "train and ran: {log}");
    assert!(log.contains("\"train\""), "usage events are logged: {log}");
    assert!(log.contains("\"ran\""), "usage events are logged: {log}");
    assert_no_pii(&log);
    // `pending` lists them as local; nothing is sent by looking.
    let mut pending = with_closing(&dirs, "telemetry", &closing);
    pending.arg("pending");
    let out = stdout(&ok(pending));
    assert_eq!(out.matches("crash, local").count(), 4, "{out}");
    assert_eq!(*closing.accepted.lock().unwrap(), 0);
}

#[test]
fn data_from_before_consent_is_not_uploaded_by_a_later_yes_only_by_send() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    telemetry(&dirs, &server, &["enable", "--local"]);
    ok(with_server(&dirs, "errors", &server));
    let kept = dirs.kept_files();
    assert_eq!(kept.len(), 2, "the error and the message: {kept:?}");
    // Consent times have whole seconds, and a capture in the same second counts as after.
    std::thread::sleep(Duration::from_millis(2100));

    // The "yes": the reports captured in local mode stay where they are.
    telemetry(&dirs, &server, &["enable"]);
    let s = settings(&dirs.settings());
    assert_eq!(s["crash_reports"], true, "{s}");
    ok(with_server(&dirs, "idle", &server));
    assert!(
        settle(&server).is_empty(),
        "a later yes uploaded local reports"
    );
    assert_eq!(dirs.kept_files(), kept);

    // Even moved into the outbox (as any other process could), the egress gate compares
    // their capture time with the moment consent was given and keeps them.
    std::fs::create_dir_all(dirs.outbox()).unwrap();
    for f in &kept {
        std::fs::rename(f, dirs.outbox().join(f.file_name().unwrap())).unwrap();
    }
    let old_ids: Vec<String> = dirs
        .outbox_files()
        .iter()
        .map(|f| envelope_file_id(f))
        .collect();
    ok(with_server(&dirs, "idle", &server));
    assert!(
        settle(&server).is_empty(),
        "the gate let pre-consent reports out"
    );
    assert_eq!(dirs.outbox_files().len(), 2, "kept for an explicit send");

    // What is captured after the yes is sent; the old ones still are not.
    ok(with_server(&dirs, "errors", &server));
    let got = server.wait_for(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let got_now = server.requests();
    assert_eq!(
        got_now.len(),
        2,
        "exactly the two new reports: {}",
        got.len()
    );
    for r in &got_now {
        assert!(
            !old_ids.contains(&r.envelope_id()),
            "a pre-consent report was uploaded"
        );
    }

    // The user's explicit send: exactly one request, carrying that report.
    let out = telemetry(&dirs, &server, &["send", &old_ids[0][..12]]);
    assert!(
        stdout(&out).contains("Sent 1 report(s)"),
        "{}",
        stdout(&out)
    );
    let after = settle(&server);
    assert_eq!(after.len(), 3, "one more request");
    assert_eq!(after[2].envelope_id(), old_ids[0]);
    assert_no_pii(&after[2].text());
    let left: Vec<String> = dirs
        .outbox_files()
        .iter()
        .map(|f| envelope_file_id(f))
        .collect();
    assert_eq!(
        left,
        vec![old_ids[1].clone()],
        "the sent one is gone, the other waits"
    );
    assert!(
        dirs.audit_log()
            .lines()
            .any(|l| l.contains("\"status\":200")),
        "the explicit send is in the audit log"
    );
}

#[test]
fn send_delivers_exactly_one_report_kept_in_local_mode() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    telemetry(&dirs, &server, &["enable", "--local"]);
    ok(with_server(&dirs, "errors", &server));
    let kept = dirs.kept_files();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let id = envelope_file_id(&kept[1]);
    // Still in local mode: the user's send is consent for that one report.
    telemetry(&dirs, &server, &["send", &id]);
    let got = settle(&server);
    assert_eq!(got.len(), 1, "exactly one request");
    assert_eq!(got[0].envelope_id(), id);
    assert!(got[0].url.contains("/api/42/envelope"), "{}", got[0].url);
    assert_eq!(dirs.kept_files(), vec![kept[0].clone()]);
    // Discard the other: nothing is sent for it.
    telemetry(&dirs, &server, &["discard", "--all"]);
    assert!(dirs.kept_files().is_empty());
    assert_eq!(settle(&server).len(), 1);
}

/// The `NAME=VALUE` lines a fixture printed for `child_env()`.
fn child_env_of(out: &Output) -> Vec<(String, String)> {
    let text = stdout(out);
    assert!(text.lines().any(|l| l == "end"), "{text}");
    text.lines()
        .take_while(|l| *l != "end")
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn a_no_is_inherited_by_a_child_with_its_own_directories() {
    let server = CaptureServer::start(Plan::Status(200));
    let parent = Dirs::new();
    parent.write_settings(
        r#"{"sync": false, "consent": {"decided": true, "granted": false, "via": "cli"}}"#,
    );
    let exported = child_env_of(&ok(with_server(&parent, "child-env", &server)));
    let mut sorted = exported.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            ("DO_NOT_TRACK".to_owned(), "1".to_owned()),
            ("FIXTURE_TELEMETRY".to_owned(), "0".to_owned()),
        ]
    );

    // The child's own settings say yes: only the inherited variables can stop it.
    let child = Dirs::new();
    child.grant_consent();
    let mut cmd = with_server(&child, "errors", &server);
    cmd.envs(exported.iter().map(|(k, v)| (k, v)));
    ok(cmd);
    let mut cmd = with_server(&child, "track", &server);
    cmd.env("FIXTURE_USAGE_INTERVAL_MS", "0")
        .envs(exported.iter().map(|(k, v)| (k, v)));
    ok(cmd);
    assert!(
        settle(&server).is_empty(),
        "the child sent despite the parent's no"
    );
    assert!(child.outbox_files().is_empty());
    assert_sends(&child, &server);
}

#[test]
fn child_env_exports_a_one_kind_no_and_nothing_for_a_yes_or_undecided() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    dirs.write_settings(
        r#"{"sync": true, "crash_reports": false, "usage": true,
            "consent": {"decided": true, "granted": true, "via": "cli"}}"#,
    );
    let exported = child_env_of(&ok(with_server(&dirs, "child-env", &server)));
    assert_eq!(
        exported,
        vec![("FIXTURE_TELEMETRY_OFF".to_owned(), "crash".to_owned())],
        "only a no is passed on, never the yes for usage"
    );

    let yes = Dirs::new();
    yes.grant_consent();
    assert!(child_env_of(&ok(with_server(&yes, "child-env", &server))).is_empty());
    // Undecided is not a "no": the child may still be asked.
    let undecided = Dirs::new();
    assert!(child_env_of(&ok(with_server(&undecided, "child-env", &server))).is_empty());
    // A "no" the parent inherited is passed on in turn.
    let mut cmd = with_server(&yes, "child-env", &server);
    cmd.env("DO_NOT_TRACK", "1");
    let mut got = child_env_of(&ok(cmd));
    got.sort();
    assert_eq!(
        got,
        vec![
            ("DO_NOT_TRACK".to_owned(), "1".to_owned()),
            ("FIXTURE_TELEMETRY".to_owned(), "0".to_owned()),
        ]
    );
    assert!(settle(&server).is_empty());
}

#[test]
fn a_project_file_in_the_repository_stops_everything() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    dirs.grant_consent();
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join(".git")).unwrap();
    std::fs::write(repo.path().join(".fixture-telemetry"), "off\n").unwrap();
    let deep = repo.path().join("crates/tool/src");
    std::fs::create_dir_all(&deep).unwrap();
    for cwd in [repo.path(), deep.as_path()] {
        for scenario in ["errors", "thread-panic", "cli-once"] {
            let mut cmd = with_server(&dirs, scenario, &server);
            cmd.current_dir(cwd).env("FIXTURE_USAGE_INTERVAL_MS", "0");
            ok(cmd);
        }
        let mut cmd = with_server(&dirs, "status", &server);
        cmd.current_dir(cwd);
        let out = stdout(&ok(cmd));
        let file = repo.path().join(".fixture-telemetry");
        assert!(
            out.contains(&format!(
                "disabled by the project's file {}",
                file.display()
            )),
            "{out}"
        );
    }
    assert!(
        settle(&server).is_empty(),
        "sent inside a repository that says off"
    );
    assert!(dirs.outbox_files().is_empty());
    // Outside the repository, the user's yes holds.
    let outside = tempfile::tempdir().unwrap();
    let mut cmd = with_server(&dirs, "errors", &server);
    cmd.current_dir(outside.path());
    ok(cmd);
    assert!(!server.wait_for(1, Duration::from_secs(10)).is_empty());
}

/// A member of the consent group `acme`: the settings live in `<config home>/acme/`, its
/// data in its own directory.
fn member(
    app: &str,
    config_home: &Path,
    data: &Path,
    scenario: &str,
    server: &CaptureServer,
) -> Command {
    let dirs = Dirs::new();
    let mut cmd = with_server(&dirs, scenario, server);
    let prefix = app.to_ascii_uppercase().replace('-', "_");
    cmd.env_remove("FIXTURE_CONFIG_DIR")
        .env_remove("FIXTURE_DATA_DIR")
        .env("XDG_CONFIG_HOME", config_home)
        .env("FIXTURE_APP", app)
        .env("FIXTURE_GROUP", "acme")
        .env(format!("{prefix}_DATA_DIR"), data);
    // The temporary directory is not needed: nothing is written under `dirs`.
    drop(dirs);
    cmd
}

#[test]
fn a_yes_given_through_one_member_of_a_group_counts_for_the_others() {
    let server = CaptureServer::start(Plan::Status(200));
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("config-home");
    let (cli_data, daemon_data) = (root.path().join("cli"), root.path().join("daemon"));
    let shared = home.join("acme/settings.json");

    let mut enable = member("fixture", &home, &cli_data, "telemetry", &server);
    enable.arg("enable");
    ok(enable);
    assert!(shared.exists(), "the group's settings file: {shared:?}");
    assert!(
        !home.join("fixture").exists(),
        "no settings of the app's own"
    );

    // The other member sees the same consent and the same anonymous id.
    let status_of = |app: &str, data: &Path| -> Value {
        serde_json::from_str(&stdout(&ok(member(app, &home, data, "status-of", &server)))).unwrap()
    };
    let (a, b) = (
        status_of("fixture", &cli_data),
        status_of("fixture-daemon", &daemon_data),
    );
    assert_eq!(a["settings_file"], b["settings_file"]);
    assert_eq!(a["settings"]["anonymous_id"], b["settings"]["anonymous_id"]);
    assert_eq!(a["crash"]["enabled"], true, "{a}");
    assert_eq!(
        b["crash"]["enabled"], true,
        "one consent for the group, but the daemon says: {}",
        b["crash"]["reason"]
    );
    ok(member(
        "fixture-daemon",
        &home,
        &daemon_data,
        "errors",
        &server,
    ));
    assert!(
        !server.wait_for(1, Duration::from_secs(10)).is_empty(),
        "the daemon sends under the consent given through the CLI"
    );
}

#[test]
fn a_no_in_one_member_of_a_group_stops_the_other_live() {
    let server = CaptureServer::start(Plan::Status(200));
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("config-home");
    let (cli_data, daemon_data) = (root.path().join("cli"), root.path().join("daemon"));
    let shared = home.join("acme/settings.json");
    // The daemon's own yes (see the test above for a yes given through another member).
    let mut enable = member("fixture-daemon", &home, &daemon_data, "telemetry", &server);
    enable.arg("enable");
    ok(enable);

    // The daemon reports for a while; the CLI's `disable` stops it while it runs.
    let mut daemon = member(
        "fixture-daemon",
        &home,
        &daemon_data,
        "capture-spread",
        &server,
    );
    daemon
        .args(["80", "100"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = daemon.spawn().unwrap();
    assert!(
        !server.wait_for(1, Duration::from_secs(10)).is_empty(),
        "the daemon sends while consent is given"
    );
    let mut disable = member("fixture", &home, &cli_data, "telemetry", &server);
    disable.arg("disable");
    ok(disable);
    let disabled_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        disabled_at.elapsed() > Duration::from_secs(2),
        "the daemon ran on after the no, so the test shows it stopped sending"
    );
    let late: Vec<Recorded> = server
        .requests()
        .into_iter()
        .filter(|r| r.at > disabled_at + Duration::from_millis(300))
        .collect();
    assert!(
        late.is_empty(),
        "{} request(s) after the other member's disable: {:?}",
        late.len(),
        late.iter().map(|r| &r.url).collect::<Vec<_>>()
    );
    assert!(
        envelopes_in(&daemon_data.join("outbox")).is_empty(),
        "what waited is deleted"
    );

    // A later start of any member sends nothing; a member that shows a notice (opt-out)
    // does not turn the group's recorded no into a yes.
    let before = server.requests().len();
    ok(member(
        "fixture-daemon",
        &home,
        &daemon_data,
        "errors",
        &server,
    ));
    let lsp = root.path().join("lsp");
    for _ in 0..2 {
        let mut optout = member("fixture-lsp", &home, &lsp, "errors", &server);
        optout.env("FIXTURE_POLICY", "optout");
        ok(optout);
    }
    assert_eq!(settle(&server).len(), before);
    let s = settings(&shared);
    assert_eq!(s["consent"]["granted"], false, "{s}");
    assert!(s["notice_shown_at"].is_null(), "{s}");
}

#[test]
fn a_yes_given_with_the_consentry_binary_counts_in_the_app() {
    let server = CaptureServer::start(Plan::Status(200));
    let dirs = Dirs::new();
    // `consentry --app fixture enable`: what a fresh install's status tells the user to run.
    let mut cmd = fixture(&fixture_bin!(), &dirs, "consentry");
    cmd.arg("enable");
    let out = ok(cmd);
    assert!(stdout(&out).contains("on for fixture"), "{}", stdout(&out));
    let out = stdout(&ok(with_server(&dirs, "status", &server)));
    assert!(
        out.contains("crash reports: on"),
        "the app ignores the consent given with the consentry binary:\n{out}"
    );
    ok(with_server(&dirs, "errors", &server));
    assert!(!server.wait_for(1, Duration::from_secs(10)).is_empty());
}

#[test]
fn enabling_again_does_not_strand_reports_captured_under_the_earlier_yes() {
    let server = CaptureServer::start(Plan::Status(503));
    let dirs = Dirs::new();
    telemetry(&dirs, &server, &["enable"]);
    // Captured with consent; the server is down, so they wait in the outbox.
    ok(with_server(&dirs, "errors", &server));
    let waiting = dirs.outbox_files();
    assert_eq!(waiting.len(), 2, "{waiting:?}");
    std::thread::sleep(Duration::from_millis(2100));
    // The user runs `enable` again (it was already on).
    telemetry(&dirs, &server, &["enable"]);
    let before = server.requests().len();
    server.push([Plan::Status(200), Plan::Status(200)]);
    ok(with_server(&dirs, "idle", &server));
    let sent = settle(&server).len() - before;
    assert_eq!(
        sent,
        2,
        "reports captured under consent were held back as 'before consent' after a second \
         enable; outbox: {:?}",
        dirs.outbox_files()
    );
}
