//! The settings file: round trip, atomic writes, concurrent updates from two processes,
//! recovery from every kind of corruption, unusable directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use consentry::Settings;
use serde_json::{Value, json};

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn round_trip_keeps_values_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    std::fs::write(
        &path,
        r#"{"sync": true, "theme": "dark", "nested": {"a": [1, 2]}}"#,
    )
    .unwrap();
    let mut s = Settings::load_from(&path).unwrap();
    assert!(s.recovered().is_none());
    // Missing generated fields were filled in and written, so the id is stable.
    let id = s.anonymous_id();
    assert_eq!(read(&path)["anonymous_id"], id.to_string());
    assert_eq!(Settings::load_from(&path).unwrap().anonymous_id(), id);
    s.update([("usage", false)]).unwrap();
    let on_disk = read(&path);
    assert_eq!(on_disk["usage"], false);
    assert_eq!(on_disk["theme"], "dark", "unknown keys are kept on rewrite");
    assert_eq!(on_disk["nested"], json!({"a": [1, 2]}));
    let again = Settings::load_from(&path).unwrap();
    assert!(!again.usage());
    assert_eq!(again.get("theme"), Some(json!("dark")));
}

#[cfg(unix)]
#[test]
fn the_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg/settings.json");
    Settings::load_from(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
}

#[test]
fn writes_are_atomic_a_reader_never_sees_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let mut s = Settings::load_from(&path).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (p, st) = (path.clone(), stop.clone());
    let reader = std::thread::spawn(move || {
        let mut reads = 0u32;
        while !st.load(Ordering::Relaxed) {
            let bytes = std::fs::read(&p).expect("the file always exists");
            serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|e| {
                panic!(
                    "partial file seen ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            reads += 1;
        }
        reads
    });
    for i in 0..200 {
        s.update([("usage", i % 2 == 0)]).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn cli(config_dir: &Path, args: &[&str], delay_ms: u64) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_consentry"))
        .env_clear()
        .env("CONSENTRY_TEST_SETTINGS_DELAY_MS", delay_ms.to_string())
        .args(["--app", "myapp", "--config-dir"])
        .arg(config_dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn two_processes_updating_at_once_lose_neither_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    for round in 0..3 {
        std::fs::remove_file(&path).ok();
        Settings::load_from(&path).unwrap();
        // Each process holds the file for 150 ms between reading and writing: without the
        // lock both would read the same old state and the second write would undo the first.
        let a = cli(dir.path(), &["settings", "usage=false"], 150);
        let b = cli(dir.path(), &["settings", "crash_reports=false"], 150);
        assert!(a.wait_with_output().unwrap().status.success());
        assert!(b.wait_with_output().unwrap().status.success());
        let s = read(&path);
        assert_eq!(
            (s["usage"].as_bool(), s["crash_reports"].as_bool()),
            (Some(false), Some(false)),
            "round {round}: {s}"
        );
    }
}

fn corrupt_aside(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("settings.json.corrupt-")
        })
        .collect()
}

#[test]
fn every_kind_of_corruption_is_kept_aside_and_replaced_by_defaults() {
    let cases: &[(&str, &[u8], &str)] = &[
        ("empty", b"", "the file is empty (truncated?)"),
        (
            "truncated",
            b"{\"sync\": true, \"usa",
            "truncated JSON: EOF while parsing",
        ),
        (
            "invalid",
            b"{\"sync\": true,, }",
            "invalid JSON: key must be a string at line 1 column 15",
        ),
        (
            "wrong type",
            b"{\"sync\": \"yes please\"}",
            "wrong type: invalid type: string \"yes please\", expected a boolean at line 1 column",
        ),
        (
            "wrong type nested",
            b"{\"consent\": {\"decided\": 3}}",
            "wrong type: invalid type: integer `3`, expected a boolean",
        ),
        (
            "not an object",
            b"[true]",
            "expected a JSON object at the top level, found an array",
        ),
        (
            "non-UTF-8",
            b"{\"sync\": true, \"x\": \"caf\xe9\"}",
            "not valid UTF-8 (invalid byte at offset 24)",
        ),
        ("binary", b"\x00\x01\x02\xff", "not valid UTF-8"),
    ];
    for (name, bytes, problem) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, bytes).unwrap();
        let s = Settings::load_from(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = s
            .recovered()
            .unwrap_or_else(|| panic!("{name}: not reported"));
        assert!(
            r.problem.contains(problem),
            "{name}: {:?} should contain {problem:?}",
            r.problem
        );
        let aside = corrupt_aside(dir.path());
        assert_eq!(aside, vec![r.moved_to.clone()], "{name}");
        assert_eq!(
            std::fs::read(&aside[0]).unwrap(),
            *bytes,
            "{name}: the corrupt file is kept as it was"
        );
        let fresh = read(&path);
        assert_eq!(fresh["consent"]["decided"], true, "{name}: a recorded no");
        assert_eq!(fresh["consent"]["granted"], false, "{name}: a recorded no");
        assert_eq!(fresh["consent"]["via"], "recovered", "{name}");
        assert!(
            Settings::load_from(&path).unwrap().recovered().is_none(),
            "{name}: fixed for good"
        );
    }
}

#[test]
fn a_bom_is_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    std::fs::write(&path, "\u{feff}{\"sync\": false}").unwrap();
    let s = Settings::load_from(&path).unwrap();
    assert!(s.recovered().is_none());
    assert!(!s.sync());
}

#[test]
fn a_second_corruption_in_the_same_second_does_not_overwrite_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    std::fs::write(&path, "one").unwrap();
    Settings::load_from(&path).unwrap();
    std::fs::write(&path, "two").unwrap();
    Settings::load_from(&path).unwrap();
    let mut kept: Vec<String> = corrupt_aside(dir.path())
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    kept.sort();
    assert_eq!(kept, ["one", "two"]);
}

#[test]
fn an_unusable_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = Settings::load_from(file.join("settings.json")).unwrap_err();
    assert!(err.to_string().starts_with("cannot create"), "{err}");
    // A directory where the file should be.
    let dir2 = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir2.path().join("settings.json")).unwrap();
    let err = Settings::load_from(dir2.path().join("settings.json")).unwrap_err();
    assert!(err.to_string().contains("settings.json"), "{err}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_read_only_file_system_is_an_error_when_the_file_must_be_created() {
    // /proc refuses new files and directories even to root (these tests run as root in CI,
    // where permission bits would not stop anything).
    let path = PathBuf::from(format!(
        "/proc/consentry-test-{}/settings.json",
        std::process::id()
    ));
    let err = Settings::load_from(&path).unwrap_err();
    assert!(err.to_string().contains("/proc/consentry-test-"), "{err}");
    // And the decision made from it sends nothing.
    let config = consentry::Config::new("myapp", "1").config_dir(path.parent().unwrap());
    let status = consentry::status_on_disk(&config);
    assert!(!status.decision.crash && !status.decision.usage);
    assert!(
        status
            .decision
            .crash_reason
            .contains("consent cannot be recorded"),
        "{}",
        status.decision.crash_reason
    );
}

#[test]
fn a_no_through_update_retires_the_id_as_disable_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.json");
    let mut s = Settings::load_from(&path).unwrap();
    // Never granted: the id was never sent, nothing is owed.
    let first = s.anonymous_id();
    s.update([("usage", false)]).unwrap();
    assert_ne!(s.anonymous_id(), first, "a new id");
    assert!(read(&path).get("pending_deletion").is_none());
    // Granted, then withdrawn through update: the old id is owed a deletion request.
    s.update([("sync", true), ("usage", true)]).unwrap();
    let used = s.anonymous_id();
    let salt = read(&path)["salt"].clone();
    s.update([("sync", false)]).unwrap();
    assert_ne!(s.anonymous_id(), used);
    assert_ne!(
        read(&path)["salt"],
        salt,
        "hashed values cannot be linked across ids"
    );
    assert_eq!(read(&path)["pending_deletion"][0], used.to_string());
    assert!(s.consent().decided && !s.consent().granted);
}

#[test]
fn a_no_through_update_deletes_what_waits_as_disable_does() {
    let dir = tempfile::tempdir().unwrap();
    let config = consentry::Config::new("myapp", "1.0.0")
        .config_dir(dir.path().join("config"))
        .data_dir(dir.path().join("data"));
    let outbox = dir.path().join("data/outbox");
    let usage = dir.path().join("data/usage");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::create_dir_all(&usage).unwrap();
    std::fs::write(
        outbox.join("1-00000000000000000000000000000001.envelope"),
        b"x",
    )
    .unwrap();
    std::fs::write(
        usage.join("1-00000000000000000000000000000002.usage"),
        b"[]",
    )
    .unwrap();
    std::fs::write(outbox.join("notes.txt"), b"not ours").unwrap();
    let mut s = Settings::load(&config).unwrap();
    s.update([("usage", false)]).unwrap();
    assert_eq!(
        std::fs::read_dir(&usage).unwrap().count(),
        0,
        "usage store emptied"
    );
    assert_eq!(
        std::fs::read_dir(&outbox).unwrap().count(),
        2,
        "crash reports kept"
    );
    s.update([("sync", false)]).unwrap();
    let left: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"], "only what is not ours is left");
}
