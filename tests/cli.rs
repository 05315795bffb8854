//! The `consentry` binary against a temporary config directory: stdout, stderr, exit code
//! and the settings file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

struct Run {
    out: Output,
}

impl Run {
    fn code(&self) -> i32 {
        self.out.status.code().unwrap()
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn settings_path(&self) -> PathBuf {
        self.config().join("settings.json")
    }
    fn settings(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.settings_path()).unwrap()).unwrap()
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_consentry"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args(["--app", "myapp", "--config-dir"])
            .arg(self.config())
            .arg("--data-dir")
            .arg(self.data())
            .args(args);
        cmd
    }
    fn run(&self, args: &[&str]) -> Run {
        Run {
            out: self.cmd(args).output().unwrap(),
        }
    }
}

#[test]
fn status_of_a_fresh_install_is_off_and_says_why() {
    let env = Env::new();
    let r = env.run(&["status"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    assert!(out.contains("crash reports: off"), "{out}");
    assert!(
        out.contains("no consent given yet (opt-in); 'consentry --app myapp enable' turns it on"),
        "{out}"
    );
    assert!(
        out.contains(&env.settings_path().display().to_string()),
        "{out}"
    );
    assert!(out.contains("0 crash reports waiting"), "{out}");
    assert!(out.contains("no DSN configured"), "{out}");
    let s = env.settings();
    assert_eq!(s["schema_version"], 1);
    assert_eq!(s["consent"]["decided"], false);
    assert!(uuid_like(s["anonymous_id"].as_str().unwrap()));
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn status_json_is_machine_readable() {
    let env = Env::new();
    let r = env.run(&["status", "--json"]);
    assert_eq!(r.code(), 0);
    let v: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(v["app"], "myapp");
    assert_eq!(v["crash"]["enabled"], false);
    assert_eq!(v["usage"]["enabled"], false);
    assert_eq!(v["outbox"]["reports"], 0);
    assert_eq!(v["settings"]["salt"], "<hidden>");
}

#[test]
fn status_names_the_environment_variable_that_said_no() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let r = Run {
        out: env
            .cmd(&["status"])
            .env("DO_NOT_TRACK", "1")
            .output()
            .unwrap(),
    };
    assert!(
        r.stdout().contains("disabled by DO_NOT_TRACK=1"),
        "{}",
        r.stdout()
    );
    let r = Run {
        out: env
            .cmd(&["status"])
            .env("MYAPP_TELEMETRY", "0")
            .env("CI", "true")
            .output()
            .unwrap(),
    };
    let out = r.stdout();
    assert!(out.contains("disabled by MYAPP_TELEMETRY=0"), "{out}");
    assert!(
        out.contains("also: disabled: CI detected (CI, generic CI)"),
        "every reason is listed: {out}"
    );
}

#[test]
fn enable_records_consent_and_status_says_when() {
    let env = Env::new();
    let r = env.run(&["enable"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stdout()
            .contains("Crash reports and usage pings are on for myapp"),
        "{}",
        r.stdout()
    );
    let s = env.settings();
    assert_eq!(s["sync"], true);
    assert_eq!(s["consent"]["decided"], true);
    assert_eq!(s["consent"]["granted"], true);
    assert_eq!(s["consent"]["via"], "cli");
    let date = &s["consent"]["at"].as_str().unwrap()[..10];
    let status = env.run(&["status"]).stdout();
    assert!(
        status.contains(&format!(
            "enabled: consent given with 'consentry --app myapp enable' on {date}"
        )),
        "{status}"
    );
}

#[test]
fn enable_crash_only_leaves_usage_off() {
    let env = Env::new();
    assert_eq!(env.run(&["enable", "--crash"]).code(), 0);
    let s = env.settings();
    assert_eq!(
        (s["crash_reports"].as_bool(), s["usage"].as_bool()),
        (Some(true), Some(false))
    );
    let status: Value = serde_json::from_str(&env.run(&["status", "--json"]).stdout()).unwrap();
    assert_eq!(status["crash"]["enabled"], true);
    assert_eq!(status["usage"]["enabled"], false);
    assert_eq!(
        env.run(&["enable", "--crash", "--usage"]).code(),
        2,
        "the flags conflict"
    );
}

#[test]
fn disable_turns_off_deletes_the_outbox_and_rotates_the_id() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let old_id = env.settings()["anonymous_id"].clone();
    let outbox = env.data().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::write(
        outbox.join("0000000000001-0123456789abcdef0123456789abcdef.envelope"),
        "{}\n",
    )
    .unwrap();
    let r = env.run(&["disable"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    assert!(
        out.contains("Crash reports and usage pings are off for myapp"),
        "{out}"
    );
    assert!(out.contains("Deleted 1 crash report(s)"), "{out}");
    assert!(
        out.contains("will be sent by myapp at its next start"),
        "{out}"
    );
    let s = env.settings();
    assert_eq!(s["sync"], false);
    assert_eq!(s["consent"]["granted"], false);
    assert_ne!(s["anonymous_id"], old_id);
    assert_eq!(s["pending_deletion"][0], old_id);
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 0);
    let status = env.run(&["status"]).stdout();
    assert!(
        status.contains("declined with 'consentry --app myapp disable'"),
        "{status}"
    );
}

#[test]
fn settings_prints_the_file_with_the_salt_hidden() {
    let env = Env::new();
    let r = env.run(&["settings"]);
    assert_eq!(r.code(), 0);
    let out = r.stdout();
    assert!(
        out.starts_with(&format!("# {}", env.settings_path().display())),
        "{out}"
    );
    assert!(out.contains("\"salt\": \"<hidden>\""), "{out}");
    let real_salt = env.settings()["salt"].as_str().unwrap().to_owned();
    assert!(!out.contains(&real_salt));
    let json: Value = serde_json::from_str(&env.run(&["settings", "--json"]).stdout()).unwrap();
    assert_eq!(json["sync"], true);
}

#[test]
fn settings_key_value_sets_typed_values() {
    let env = Env::new();
    // Ultralytics' spelling works: `yolo settings sync=False`.
    let r = env.run(&["settings", "sync=False", "usage=off"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let s = env.settings();
    assert_eq!(s["sync"], false);
    assert_eq!(s["usage"], false);
    assert_eq!(s["consent"]["via"], "cli");
    assert_eq!(s["consent"]["granted"], false);
    assert_eq!(env.run(&["settings", "sync=1"]).code(), 0);
    assert_eq!(env.settings()["sync"], true);
}

#[test]
fn bad_settings_are_clear_errors_and_leave_the_file_untouched() {
    let env = Env::new();
    assert_eq!(env.run(&["settings"]).code(), 0);
    let before = std::fs::read(env.settings_path()).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["colour=blue"],
            "unknown setting 'colour' (settable: sync, crash_reports, usage, review, minidumps)",
        ),
        (
            &["sync=maybe"],
            "invalid value \"maybe\" for 'sync': expected a boolean",
        ),
        (&["salt=abc"], "setting 'salt' is read-only"),
        (&["anonymous_id=x"], "setting 'anonymous_id' is read-only"),
        (&["sync"], "invalid argument 'sync': expected key=value"),
        // All or nothing: the good pair is not applied either.
        (
            &["sync=false", "usage=bad"],
            "invalid value \"bad\" for 'usage'",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["settings"];
        all.extend_from_slice(args);
        let r = env.run(&all);
        assert_eq!(r.code(), 2, "{args:?}: {}", r.stderr());
        assert!(r.stderr().contains(message), "{args:?}: {}", r.stderr());
        assert_eq!(
            std::fs::read(env.settings_path()).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }
}

#[test]
fn settings_reset_gives_a_new_id_and_undecided_consent() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let old = env.settings();
    let r = env.run(&["settings", "reset"]);
    assert_eq!(r.code(), 0);
    let new = env.settings();
    assert_ne!(new["anonymous_id"], old["anonymous_id"]);
    assert_ne!(new["salt"], old["salt"]);
    assert_eq!(new["consent"]["decided"], false);
}

#[test]
fn a_corrupt_settings_file_is_kept_aside_and_reported() {
    let env = Env::new();
    std::fs::create_dir_all(env.config()).unwrap();
    std::fs::write(
        env.settings_path(),
        "{\n  \"sync\": true,\n  \"usage\": tru\n",
    )
    .unwrap();
    let r = env.run(&["status"]);
    assert_eq!(r.code(), 0, "never fatal");
    let out = r.stdout();
    assert!(
        out.contains("it was unreadable (invalid JSON: expected ident at line 4 column 0)"),
        "{out}"
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(env.config())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("settings.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read_to_string(&aside[0]).unwrap(),
        "{\n  \"sync\": true,\n  \"usage\": tru\n"
    );
    // A file that cannot be read means "no" until the user decides again, whatever the
    // policy: a mistyped "no" must never become a "yes".
    let settings = env.settings();
    assert_eq!(settings["consent"]["decided"], true, "{settings}");
    assert_eq!(settings["consent"]["granted"], false, "{settings}");
    assert_eq!(settings["consent"]["via"], "recovered", "{settings}");
    assert!(out.contains("could not be read"), "{out}");
}

#[test]
fn settings_json_stays_parseable_on_a_corrupt_file_and_a_bad_value_touches_nothing() {
    let env = Env::new();
    std::fs::create_dir_all(env.config()).unwrap();
    std::fs::write(env.settings_path(), "{\"sync\": tru").unwrap();
    let corrupt_copies = || {
        std::fs::read_dir(env.config())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().contains("corrupt-")
            })
            .count()
    };
    // A bad value is refused before the file is even read: the corrupt file stays as it is.
    let r = env.run(&["settings", "colour=blue"]);
    assert_eq!(r.code(), 2);
    assert_eq!(corrupt_copies(), 0);
    assert_eq!(
        std::fs::read_to_string(env.settings_path()).unwrap(),
        "{\"sync\": tru"
    );
    // --json: stdout is the JSON alone; the note about the repair is on stderr.
    let r = env.run(&["settings", "--json"]);
    assert_eq!(r.code(), 0);
    let parsed: Value = serde_json::from_str(&r.stdout()).expect("stdout is JSON");
    // An unreadable file means "no" until the user decides again.
    assert_eq!(parsed["sync"], false);
    assert_eq!(parsed["consent"]["via"], "recovered");
    assert!(r.stderr().contains("was unreadable"), "{}", r.stderr());
    assert_eq!(corrupt_copies(), 1);
}

#[test]
fn the_standalone_status_knows_an_opt_out_app_from_its_notice() {
    let env = Env::new();
    std::fs::create_dir_all(env.config()).unwrap();
    // What an opt-out app leaves after its first run: the notice shown, consent by default.
    std::fs::write(
        env.settings_path(),
        r#"{"schema_version": 1, "sync": true, "notice_shown_at": "2026-11-20T10:00:00Z",
            "consent": {"decided": true, "granted": true, "at": "2026-11-20T10:00:00Z", "via": "default"}}"#,
    )
    .unwrap();
    let r = env.run(&["status", "--json"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let status: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(status["crash"]["enabled"], true, "{status}");
    // Told it is opt-in, the same file is no consent at all.
    let r = env.run(&["--policy", "opt-in", "status", "--json"]);
    let status: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(status["crash"]["enabled"], false, "{status}");
}

/// Makes a directory unwritable for as long as it lives: `chmod 0500`, which root ignores,
/// so also `chattr +i` (immutable, which binds root too) when that is allowed here.
#[cfg(target_os = "linux")]
struct ReadOnlyDir(PathBuf, bool);

#[cfg(target_os = "linux")]
impl ReadOnlyDir {
    fn new(dir: &std::path::Path) -> ReadOnlyDir {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        let immutable = Command::new("chattr")
            .arg("+i")
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ReadOnlyDir(dir.to_owned(), immutable)
    }
    fn is_unwritable(&self) -> bool {
        tempfile::tempfile_in(&self.0).is_err()
    }
}

#[cfg(target_os = "linux")]
impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        }
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_yes_in_a_read_only_directory_sends_nothing() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let r = env.run(&["status", "--json"]);
    let status: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(status["crash"]["enabled"], true);

    let read_only = ReadOnlyDir::new(&env.config());
    if !read_only.is_unwritable() {
        // Root without CAP_LINUX_IMMUTABLE: nothing here can make a directory unwritable.
        eprintln!("skipped: cannot make a directory read-only on this machine");
        return;
    }
    // A "no" could not be recorded any more, so the "yes" no longer counts.
    let r = env.run(&["status"]);
    assert_eq!(r.code(), 0);
    let out = r.stdout();
    assert!(
        out.contains("crash reports: off  disabled: consent cannot be recorded (cannot write to"),
        "{out}"
    );
    assert!(out.contains("usage pings:   off"), "{out}");
}

#[test]
fn an_unusable_config_directory_means_nothing_is_sent() {
    let env = Env::new();
    // A regular file where the config directory's parent should be: not even root can
    // create the directory.
    let blocker = env.dir.path().join("blocker");
    std::fs::write(&blocker, "").unwrap();
    let r = Run {
        out: Command::new(env!("CARGO_BIN_EXE_consentry"))
            .env_clear()
            .args(["--app", "myapp", "--config-dir"])
            .arg(blocker.join("config"))
            .arg("--data-dir")
            .arg(env.data())
            .arg("status")
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 0);
    let out = r.stdout();
    assert!(
        out.contains("crash reports: off  disabled: consent cannot be recorded (cannot create"),
        "{out}"
    );
    let r = Run {
        out: Command::new(env!("CARGO_BIN_EXE_consentry"))
            .env_clear()
            .args(["--app", "myapp", "--config-dir"])
            .arg(blocker.join("config"))
            .arg("enable")
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 1, "an I/O failure");
    assert!(
        r.stderr().contains("error: cannot create"),
        "{}",
        r.stderr()
    );
}

#[test]
fn log_prints_what_was_sent() {
    let env = Env::new();
    let r = env.run(&["log"]);
    assert_eq!(r.code(), 0);
    assert!(
        r.stdout().contains("Nothing was sent yet"),
        "{}",
        r.stdout()
    );
    std::fs::create_dir_all(env.data()).unwrap();
    let record = r#"{"time":"2026-11-23T10:00:00Z","kind":"usage","destination":"https://collect.example.com/v1","status":200,"payload":{"events":[{"name":"train"}]}}"#;
    std::fs::write(
        env.data().join("sent.jsonl"),
        format!("{record}\n{record}\n"),
    )
    .unwrap();
    // One line per record by default: time, kind, destination, status, title.
    let out = env.run(&["log", "-n", "1"]).stdout();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(
            "2026-11-23T10:00:00Z  usage    https://collect.example.com/v1 -> 200  train"
        ),
        "{out}"
    );
    // --full adds the payload, as sent.
    let full = env.run(&["log", "-n", "1", "--full"]).stdout();
    assert_eq!(full.matches("\"train\"").count(), 1, "{full}");
    let json = env.run(&["log", "--json"]).stdout();
    assert_eq!(json.lines().count(), 2);
}

#[test]
fn preview_shows_both_payloads_and_sends_nothing() {
    let env = Env::new();
    let r = env.run(&["preview"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    assert!(
        out.contains("A usage ping from this machine (json format)"),
        "{out}"
    );
    assert!(
        out.contains("A crash report from this machine, after scrubbing"),
        "{out}"
    );
    assert!(out.ends_with("Nothing was sent.\n"), "{out}");
    let json: Value = serde_json::from_str(&env.run(&["preview", "--json"]).stdout()).unwrap();
    assert_eq!(
        json["usage"]["body"]["events"][0]["props"]["model"],
        "custom"
    );
    assert!(json["crash"]["exception"]["values"].is_array());
    // A crash that is not a panic, from this thread's stack: the signal, frames, build ids
    // with file names only, no memory and no registers.
    if cfg!(target_os = "linux") {
        let native = &json["native_crash"];
        let exception = &native["exception"]["values"][0];
        assert_eq!(exception["type"], "SIGSEGV", "{native}");
        assert!(
            exception["stacktrace"]["frames"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
        );
        let images = native["debug_meta"]["images"].as_array().unwrap();
        assert!(
            images
                .iter()
                .all(|i| !i["name"].as_str().unwrap().contains('/'))
        );
        assert!(out.contains("A crash that is not a panic"), "{out}");
    }
}

#[test]
fn privacy_prints_the_statement_filled_in_for_the_app() {
    let env = Env::new();
    let r = env.run(&["privacy"]);
    assert_eq!(r.code(), 0);
    let out = r.stdout();
    assert!(
        out.starts_with("# myapp: what is collected, and how to say no"),
        "{out}"
    );
    assert!(out.contains("`MYAPP_TELEMETRY=0`"), "{out}");
    assert!(out.contains("`consentry --app myapp disable`"), "{out}");
    assert!(
        out.contains(&env.settings_path().display().to_string()),
        "{out}"
    );
    assert!(!out.contains("{{"), "every placeholder filled: {out}");
}

#[test]
fn the_app_is_required_and_checked() {
    let r = Run {
        out: Command::new(env!("CARGO_BIN_EXE_consentry"))
            .arg("status")
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("--app NAME is required"),
        "{}",
        r.stderr()
    );
    let r = Run {
        out: Command::new(env!("CARGO_BIN_EXE_consentry"))
            .args(["--app", "My App", "status"])
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr().contains("invalid app name \"My App\""),
        "{}",
        r.stderr()
    );
}

#[test]
fn help_lists_every_command() {
    let r = Run {
        out: Command::new(env!("CARGO_BIN_EXE_consentry"))
            .arg("--help")
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 0);
    for cmd in [
        "status",
        "enable",
        "disable",
        "settings",
        "preview",
        "log",
        "scrub",
        "Exit codes",
    ] {
        assert!(r.stdout().contains(cmd), "{cmd}: {}", r.stdout());
    }
}

/// Issue 10, finding 4: `disable` on a full disk (`ulimit -f 0`: no file may grow) still stops
/// everything: the outbox is emptied and later runs see crash reports off.
#[cfg(target_os = "linux")]
#[test]
fn disable_on_a_full_disk_still_stops_everything() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let outbox = env.data().join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    for n in 1..=3 {
        std::fs::write(
            outbox.join(format!(
                "000000000000{n}-0123456789abcdef0123456789abcde{n}.envelope"
            )),
            "{}\n",
        )
        .unwrap();
    }
    let r = Run {
        out: Command::new("bash")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .arg("-c")
            .arg("trap '' XFSZ; ulimit -f 0; exec \"$@\"")
            .arg("bash")
            .arg(env!("CARGO_BIN_EXE_consentry"))
            .args(["--app", "myapp", "--config-dir"])
            .arg(env.config())
            .arg("--data-dir")
            .arg(env.data())
            .arg("disable")
            .output()
            .unwrap(),
    };
    let what = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        r.out.status.code(),
        r.stdout(),
        r.stderr()
    );
    assert_eq!(
        std::fs::read_dir(&outbox).unwrap().count(),
        0,
        "the outbox is emptied: {what}"
    );
    let status = env.run(&["status"]);
    assert_eq!(status.code(), 0, "{}", status.stderr());
    let out = status.stdout();
    assert!(out.contains("crash reports: off"), "{out}\n{what}");
    assert!(out.contains("usage pings:   off"), "{out}\n{what}");
}

/// Issue 10, finding 11: `disable` never deletes through a link: an outbox that is a symbolic
/// link to another program's directory keeps that directory's `*.envelope` files.
#[cfg(unix)]
#[test]
fn disable_does_not_delete_through_a_symlinked_outbox() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let other = env.dir.path().join("another-program");
    std::fs::create_dir_all(&other).unwrap();
    let theirs = other.join("0000000000001-0123456789abcdef0123456789abcdef.envelope");
    std::fs::write(&theirs, "their data\n").unwrap();
    std::fs::create_dir_all(env.data()).unwrap();
    std::os::unix::fs::symlink(&other, env.data().join("outbox")).unwrap();
    let r = env.run(&["disable"]);
    assert_eq!(
        std::fs::read_to_string(&theirs).ok().as_deref(),
        Some("their data\n"),
        "deleted through the link: exit {}\n{}\n{}",
        r.code(),
        r.stdout(),
        r.stderr()
    );
    assert!(
        env.run(&["status"]).stdout().contains("crash reports: off"),
        "the \"no\" is recorded"
    );
}

// ---- Issue 13: local mode, review commands, the mounted help, the project file ----

/// Writes an envelope as consentry's outbox does (`report::envelope_bytes`): a header line,
/// an item header line with the payload's length, the payload line. Named
/// `<13-digit millis>-<32-hex event id>.envelope` in `dir`.
fn plant_envelope(dir: &std::path::Path, millis: u64, id: &str, message: &str) -> PathBuf {
    assert_eq!(id.len(), 32, "an event id is 32 hex digits");
    std::fs::create_dir_all(dir).unwrap();
    let event = serde_json::json!({
        "event_id": id,
        "timestamp": 1_796_025_600.0, // 2026-11-30T08:00:00Z
        "level": "error",
        "platform": "native",
        "message": message,
        "exception": {"values": [{"type": "app::LoadError", "value": message}]},
    });
    let payload = serde_json::to_vec(&event).unwrap();
    let header = serde_json::json!({"event_id": id, "sdk": {"name": "consentry", "version": "0"}});
    let item = serde_json::json!({"type": "event", "length": payload.len(), "content_type": "application/json"});
    let mut bytes = serde_json::to_vec(&header).unwrap();
    bytes.push(b'\n');
    bytes.extend_from_slice(&serde_json::to_vec(&item).unwrap());
    bytes.push(b'\n');
    bytes.extend_from_slice(&payload);
    bytes.push(b'\n');
    let path = dir.join(format!("{millis:013}-{id}.envelope"));
    std::fs::write(&path, bytes).unwrap();
    path
}

const ID_A: &str = "aaaa1111bbbb2222cccc3333dddd4444";
const ID_B: &str = "aaaa9999eeee8888ffff777766665555";
const ID_C: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

#[test]
fn enable_local_then_status_says_local_for_both_kinds_and_why() {
    let env = Env::new();
    let r = env.run(&["enable", "--local"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stdout()
            .contains("kept on this machine only (local mode: nothing is sent)"),
        "{}",
        r.stdout()
    );
    let s = env.settings();
    assert_eq!(s["crash_reports"], "local", "{s}");
    assert_eq!(s["usage"], "local", "{s}");
    assert_eq!(s["consent"]["granted"], true, "{s}");
    let out = env.run(&["status"]).stdout();
    for kind in ["crash reports: local", "usage pings:   local"] {
        let line = out
            .lines()
            .find(|l| l.contains(kind))
            .unwrap_or_else(|| panic!("no {kind:?} line: {out}"));
        assert!(
            line.contains("consent given with 'consentry --app myapp enable'"),
            "why it is on: {line}"
        );
        assert!(
            line.contains("kept on this machine only (local mode): nothing is sent"),
            "why nothing is sent: {line}"
        );
    }
    // --local with one kind: the other is left as it was (undecided: off).
    let env = Env::new();
    assert_eq!(env.run(&["enable", "--local", "--crash"]).code(), 0);
    let out = env.run(&["status"]).stdout();
    assert!(out.contains("crash reports: local"), "{out}");
    assert!(out.contains("usage pings:   off"), "{out}");
}

#[test]
fn settings_take_off_local_on_and_refuse_anything_else() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let r = env.run(&["settings", "crash_reports=local"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(env.settings()["crash_reports"], "local");
    assert_eq!(env.settings()["usage"], true, "usage untouched");
    let out = env.run(&["status"]).stdout();
    assert!(out.contains("crash reports: local"), "{out}");
    assert!(out.contains("usage pings:   on"), "{out}");
    assert_eq!(env.run(&["settings", "crash_reports=on"]).code(), 0);
    assert_eq!(env.settings()["crash_reports"], true);

    let before = std::fs::read(env.settings_path()).unwrap();
    let r = env.run(&["settings", "crash_reports=perhaps"]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr()
            .contains("invalid value \"perhaps\" for 'crash_reports': expected off, local or on"),
        "{}",
        r.stderr()
    );
    assert_eq!(std::fs::read(env.settings_path()).unwrap(), before);
    // `local` is a mode of a kind, not of the master switch or of review.
    for bad in ["sync=local", "review=local"] {
        let r = env.run(&["settings", bad]);
        assert_eq!(r.code(), 2, "{bad}: {}", r.stderr());
        assert!(
            r.stderr().contains("invalid value"),
            "{bad}: {}",
            r.stderr()
        );
    }
    assert_eq!(env.run(&["settings", "review=true"]).code(), 0);
    assert_eq!(env.settings()["review"], true);
}

#[test]
fn pending_on_an_empty_outbox_says_so() {
    let env = Env::new();
    let r = env.run(&["pending"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(r.stdout(), "No crash report is waiting.\n");
    let r = env.run(&["pending", "--json"]);
    assert_eq!(r.code(), 0);
    assert_eq!(r.stdout(), "", "no report, no line");
}

#[test]
fn pending_lists_the_outbox_and_the_kept_reports() {
    let env = Env::new();
    plant_envelope(
        &env.data().join("outbox"),
        1_000,
        ID_A,
        "cannot load the model",
    );
    plant_envelope(
        &env.data().join("kept"),
        2_000,
        ID_C,
        "kept on this machine",
    );
    let r = env.run(&["pending"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "one line each, then the hint: {out}");
    assert!(
        lines[0].starts_with("aaaa1111  2026-11-30T08:00:00Z  crash "),
        "{out}"
    );
    assert!(
        lines[0].contains("app::LoadError: cannot load the model"),
        "{out}"
    );
    assert!(lines[0].contains(" bytes "), "{out}");
    assert!(lines[1].starts_with("c0ffee00  "), "{out}");
    assert!(lines[1].contains("crash, local"), "{out}");
    assert!(lines[2].starts_with("2 waiting."), "{out}");
    assert!(
        lines[2].contains("'consentry --app myapp show ID'"),
        "{out}"
    );
    let json = env.run(&["pending", "--json"]).stdout();
    let records: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{json}");
    assert_eq!(records[0]["id"], ID_A);
    assert_eq!(records[0]["kept_locally"], false);
    assert_eq!(records[1]["id"], ID_C);
    assert_eq!(records[1]["kept_locally"], true);
    assert!(records[0]["size"].as_u64().unwrap() > 0);
}

#[test]
fn the_binary_manages_a_consent_group_s_shared_settings() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_consentry"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["--app", "acme-cli", "--group", "acme", "enable"]);
    let shared = home.path().join("config/acme/settings.json");
    assert!(shared.exists(), "the group's settings file");
    assert!(
        !home.path().join("config/acme-cli").exists(),
        "not a file of the app's own"
    );
    run(&["--app", "acme-lsp", "--group", "acme", "disable"]);
    let s: Value = serde_json::from_slice(&std::fs::read(&shared).unwrap()).unwrap();
    assert_eq!(s["sync"], false, "one member's no is the group's: {s}");
    let status = run(&["--app", "acme-cli", "--group", "acme", "status"]);
    assert!(status.contains("crash reports: off"), "{status}");
}

#[test]
fn pending_lists_usage_batches_and_disable_usage_deletes_them() {
    let env = Env::new();
    let env_ok = env.run(&["enable"]);
    assert_eq!(env_ok.code(), 0, "{}", env_ok.stderr());
    let dir = env.data().join("usage");
    std::fs::create_dir_all(&dir).unwrap();
    let record = |name: &str, n: u64| {
        serde_json::json!({
            "id": format!("00000000-0000-4000-8000-{n:012}"), "name": name, "props": {},
            "time": "2026-11-30T08:00:00Z", "micros": 1_796_025_600_000_000u64 + n,
        })
    };
    let batch = serde_json::json!([record("train", 1), record("train", 2), record("export", 3)]);
    std::fs::write(
        dir.join(format!("{:013}-{ID_B}.usage", 1_000)),
        serde_json::to_vec(&batch).unwrap(),
    )
    .unwrap();
    plant_envelope(
        &env.data().join("outbox"),
        2_000,
        ID_A,
        "cannot load the model",
    );

    let r = env.run(&["pending"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = r.stdout();
    let usage_line = out
        .lines()
        .find(|l| l.starts_with("usage "))
        .unwrap_or_else(|| panic!("a line for the usage batch: {out}"));
    assert!(usage_line.contains("2026-11-30T08:00:00Z"), "{out}");
    assert!(usage_line.contains("3 events: train, export"), "{out}");
    assert!(out.contains("1 usage batch waiting"), "{out}");
    assert!(
        out.contains("aaaa1111  "),
        "the crash report is listed too: {out}"
    );

    let json = env.run(&["pending", "--json"]).stdout();
    let records: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let usage: Vec<&Value> = records.iter().filter(|r| r["kind"] == "usage").collect();
    assert_eq!(usage.len(), 1, "{json}");
    assert_eq!(usage[0]["events"], 3);
    assert_eq!(usage[0]["names"], serde_json::json!(["train", "export"]));

    let r = env.run(&["disable", "--usage"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let out = env.run(&["pending"]).stdout();
    assert!(
        !out.contains("usage batch"),
        "withdrawn usage is deleted: {out}"
    );
    assert!(out.contains("aaaa1111  "), "crash reports stay: {out}");
}

#[test]
fn show_prints_the_event_and_export_writes_it() {
    let env = Env::new();
    plant_envelope(
        &env.data().join("outbox"),
        1_000,
        ID_A,
        "cannot load the model",
    );
    // A unique prefix is enough, in either case.
    let r = env.run(&["show", "AAAA1111"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let shown: Value = serde_json::from_str(&r.stdout()).expect("show prints the event as JSON");
    assert_eq!(shown["event_id"], ID_A);
    assert_eq!(shown["message"], "cannot load the model");

    let file = env.dir.path().join("report.json");
    let r = env.run(&["export", "aaaa1111", "-o", file.to_str().unwrap()]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(
        r.stdout().contains(&file.display().to_string()),
        "{}",
        r.stdout()
    );
    let exported: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(exported, shown, "export writes what show prints");
    assert_eq!(
        env.run(&["pending", "--json"]).stdout().lines().count(),
        1,
        "show and export leave the report waiting"
    );
}

#[test]
fn discard_one_then_all() {
    let env = Env::new();
    let a = plant_envelope(&env.data().join("outbox"), 1_000, ID_A, "first");
    let b = plant_envelope(&env.data().join("outbox"), 2_000, ID_B, "second");
    let c = plant_envelope(&env.data().join("kept"), 3_000, ID_C, "third");
    let r = env.run(&["discard", ID_A]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("Deleted 1 report(s)"), "{}", r.stdout());
    assert!(!a.exists());
    assert!(b.exists() && c.exists(), "only the one named");
    let r = env.run(&["discard", "--all"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert!(r.stdout().contains("Deleted 2 report(s)"), "{}", r.stdout());
    assert!(!b.exists() && !c.exists());
    assert_eq!(
        env.run(&["pending"]).stdout(),
        "No crash report is waiting.\n"
    );
    // Neither an id nor --all: a usage error.
    assert_eq!(env.run(&["discard"]).code(), 2);
}

#[test]
fn a_bad_or_ambiguous_id_is_a_clear_usage_error() {
    let env = Env::new();
    let a = plant_envelope(&env.data().join("outbox"), 1_000, ID_A, "first");
    let b = plant_envelope(&env.data().join("outbox"), 2_000, ID_B, "second");
    for cmd in ["show", "discard", "send"] {
        let r = env.run(&[cmd, "aaaa"]);
        assert_eq!(r.code(), 2, "{cmd}: {}", r.stderr());
        assert!(
            r.stderr()
                .contains("'aaaa' matches more than one waiting report; give more of the id"),
            "{cmd}: {}",
            r.stderr()
        );
        let r = env.run(&[cmd, "zz"]);
        assert_eq!(r.code(), 2, "{cmd}: {}", r.stderr());
        assert!(
            r.stderr().contains("'zz' is too short"),
            "{cmd}: {}",
            r.stderr()
        );
        let r = env.run(&[cmd, "0123abcd"]);
        assert_eq!(r.code(), 2, "{cmd}: {}", r.stderr());
        assert!(
            r.stderr()
                .contains("no waiting report has the id '0123abcd' (see 'pending')"),
            "{cmd}: {}",
            r.stderr()
        );
    }
    let file = env.dir.path().join("out.json");
    let r = env.run(&["export", "zzzz", "-o", file.to_str().unwrap()]);
    assert_eq!(r.code(), 2, "{}", r.stderr());
    assert!(
        r.stderr().contains("no waiting report has the id 'zzzz'"),
        "{}",
        r.stderr()
    );
    assert!(!file.exists(), "nothing written for a bad id");
    assert!(a.exists() && b.exists(), "nothing deleted");
}

#[test]
fn send_without_a_server_says_so_and_keeps_the_report() {
    let env = Env::new();
    let a = plant_envelope(&env.data().join("outbox"), 1_000, ID_A, "first");
    let r = env.run(&["send", ID_A]);
    assert_eq!(r.code(), 1, "{}", r.stderr());
    assert!(
        r.stderr().contains("no server is configured (no DSN)"),
        "{}",
        r.stderr()
    );
    assert!(a.exists());
}

mod mounted {
    /// An app that mounts the `telemetry` subcommand, as the README shows.
    #[derive(clap::Parser)]
    #[command(name = "myapp")]
    pub struct Cli {
        #[command(subcommand)]
        pub command: Command,
    }

    #[derive(clap::Subcommand)]
    pub enum Command {
        /// Do the app's work.
        Run,
        /// Manage crash reports and usage pings.
        #[command(subcommand)]
        Telemetry(consentry::cli::Command),
    }
}

#[test]
fn a_mounted_telemetry_help_hides_scrub_and_the_binary_lists_it() {
    use clap::{CommandFactory, Parser};
    let mut app = mounted::Cli::command();
    let telemetry = app.find_subcommand_mut("telemetry").unwrap();
    let help = telemetry.render_long_help().to_string();
    for cmd in [
        "status", "enable", "disable", "pending", "show", "send", "discard", "export",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} listed: {help}"
        );
    }
    assert!(
        !help
            .lines()
            .any(|l| l.trim_start().starts_with("scrub ") || l.contains("Scrub Sentry events")),
        "scrub is a developer tool: {help}"
    );
    // Hidden, not removed.
    assert!(mounted::Cli::try_parse_from(["myapp", "telemetry", "scrub", "--report"]).is_ok());

    let r = Run {
        out: Command::new(env!("CARGO_BIN_EXE_consentry"))
            .arg("--help")
            .output()
            .unwrap(),
    };
    assert_eq!(r.code(), 0);
    let out = r.stdout();
    let also = out.find("Also:").expect("an Also: section");
    assert!(
        out[also..].contains("consentry scrub"),
        "the binary lists scrub under Also: {out}"
    );
    for cmd in ["pending", "show", "send", "discard", "export"] {
        assert!(out.contains(cmd), "{cmd}: {out}");
    }
}

/// A temporary repository: `.git` and, at its root, `.myapp-telemetry` with `content`.
fn repo_with_project_file(content: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join(".git")).unwrap();
    std::fs::write(repo.path().join(".myapp-telemetry"), content).unwrap();
    std::fs::create_dir_all(repo.path().join("src/deep")).unwrap();
    repo
}

#[test]
fn a_project_file_saying_off_turns_reporting_off_and_is_named() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let repo = repo_with_project_file("# this team does not send telemetry\noff\n");
    let file = repo.path().join(".myapp-telemetry");
    // At the root and from a directory deep inside: the walk up stops at `.git`.
    for cwd in [repo.path().to_owned(), repo.path().join("src/deep")] {
        let r = Run {
            out: env.cmd(&["status"]).current_dir(&cwd).output().unwrap(),
        };
        assert_eq!(r.code(), 0, "{}", r.stderr());
        let out = r.stdout();
        let expected = format!("disabled by the project's file {}", file.display());
        assert!(out.contains("crash reports: off"), "{cwd:?}: {out}");
        assert!(out.contains("usage pings:   off"), "{cwd:?}: {out}");
        assert!(out.contains(&expected), "{cwd:?}: {out}");
        let r = Run {
            out: env
                .cmd(&["status", "--json"])
                .current_dir(&cwd)
                .output()
                .unwrap(),
        };
        let json: Value = serde_json::from_str(&r.stdout()).unwrap();
        assert_eq!(json["crash"]["enabled"], false);
        assert_eq!(json["crash"]["reason"], expected);
    }
    // Outside the repository the user's own "yes" holds.
    let outside = tempfile::tempdir().unwrap();
    let r = Run {
        out: env
            .cmd(&["status"])
            .current_dir(outside.path())
            .output()
            .unwrap(),
    };
    assert!(r.stdout().contains("crash reports: on"), "{}", r.stdout());
}

#[test]
fn a_project_file_counts_only_at_the_repository_root_and_only_when_it_says_off() {
    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let status_in = |cwd: &std::path::Path| {
        let r = Run {
            out: env.cmd(&["status"]).current_dir(cwd).output().unwrap(),
        };
        r.stdout()
    };
    // It says something else.
    let repo = repo_with_project_file("on\n");
    let out = status_in(repo.path());
    assert!(out.contains("crash reports: on"), "{out}");
    // Above the repository root: not this repository's file.
    let parent = tempfile::tempdir().unwrap();
    std::fs::write(parent.path().join(".myapp-telemetry"), "off\n").unwrap();
    let inner = parent.path().join("inner");
    std::fs::create_dir_all(inner.join(".git")).unwrap();
    let out = status_in(&inner);
    assert!(out.contains("crash reports: on"), "{out}");
    // Another app's file.
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join(".git")).unwrap();
    std::fs::write(repo.path().join(".otherapp-telemetry"), "off\n").unwrap();
    let out = status_in(repo.path());
    assert!(out.contains("crash reports: on"), "{out}");
}

#[test]
fn an_undecided_settings_file_does_not_look_on() {
    let env = Env::new();
    assert_eq!(env.run(&["status"]).code(), 0);
    let s = env.settings();
    assert_eq!(s["consent"]["decided"], false, "{s}");
    for key in ["sync", "crash_reports", "usage"] {
        assert!(s.get(key).is_none(), "{key} written while undecided: {s}");
    }
}

#[test]
fn a_first_disable_prints_one_line_and_a_disable_rotates_the_salt_with_the_id() {
    let env = Env::new();
    let r = env.run(&["disable"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    assert_eq!(
        r.stdout(),
        "Crash reports and usage pings are off for myapp.\n",
        "nothing was ever sent: one line"
    );
    assert_eq!(r.stderr(), "");

    let env = Env::new();
    assert_eq!(env.run(&["enable"]).code(), 0);
    let before = env.settings();
    assert_eq!(env.run(&["disable"]).code(), 0);
    let after = env.settings();
    assert_ne!(after["anonymous_id"], before["anonymous_id"]);
    assert_ne!(
        after["salt"], before["salt"],
        "hashed values must not stay linkable across ids"
    );
}
