//! Runs the examples as a user would, so they cannot rot: each in a clean environment with
//! its own config and data directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The example's binary, built by `cargo test` (which builds examples) or built here.
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let dir = deps.parent().unwrap().parent().unwrap().join("examples");
    let bin = dir.join(name);
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

fn run(bin: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/home/quickuser")
        .env("USER", "quickuser")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn quickstart_stores_a_scrubbed_report_and_keeps_it_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = (dir.path().join("config"), dir.path().join("data"));
    let env = [
        ("CONSENTRY_CONFIG_DIR", config.as_path()),
        ("CONSENTRY_DATA_DIR", data.as_path()),
    ];
    let bin = example("quickstart");

    let first = run(&bin, &["--yes"], &env);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(out.contains("crash reports: on"), "{out}");
    assert!(
        out.contains(&format!("The outbox {}", data.join("outbox").display())),
        "{out}"
    );
    assert!(
        out.contains("~/datasets/cats/labels.csv"),
        "the home path is scrubbed to ~: {out}"
    );
    assert!(
        !out.contains("/home/quickuser") && !out.contains("quickuser"),
        "{out}"
    );
    assert!(out.contains("\"training failed\""), "{out}");
    assert!(
        out.contains("no learning rate configured in ~/.config/quickstart.toml"),
        "{out}"
    );
    let err = text(&first.stderr);
    assert!(
        err.contains("panicked at"),
        "the default hook still prints: {err}"
    );
    assert!(err.contains("was saved on this machine, scrubbed"), "{err}");

    let second = run(&bin, &["--yes"], &env);
    let out = text(&second.stdout);
    assert!(
        out.contains("2 report(s) from earlier runs are waiting in the outbox"),
        "{out}"
    );
    assert!(out.contains("holds 4 report(s)"), "{out}");
}

#[test]
fn quickstart_without_consent_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = (dir.path().join("config"), dir.path().join("data"));
    let env = [
        ("CONSENTRY_CONFIG_DIR", config.as_path()),
        ("CONSENTRY_DATA_DIR", data.as_path()),
    ];
    let out = run(&example("quickstart"), &[], &env);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("Crash reports are off, so nothing is stored"),
        "{}",
        text(&out.stdout)
    );
    assert!(!data.join("outbox").exists());
}

#[test]
fn a_library_costs_nothing_in_an_app_that_never_calls_init() {
    let out = run(&example("library"), &[], &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("heap allocations: 0"), "{stdout}");
    assert!(stdout.contains("threads started:  0"), "{stdout}");
}

#[test]
fn a_library_reports_in_an_app_that_calls_init() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("LIBRARY_DEMO_CONFIG_DIR", dir.path()),
        ("LIBRARY_DEMO_DATA_DIR", dir.path()),
    ];
    let out = run(&example("library"), &["--init", "--yes"], &env);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 report(s) from the library in the outbox"),
        "three equal errors, one report: {stdout}"
    );
    assert!(stdout.contains("not a number on line"), "{stdout}");
}

#[test]
fn cli_app_mounts_telemetry_and_shows_the_notice_once() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("CLI_APP_CONFIG_DIR", dir.path()),
        ("CLI_APP_DATA_DIR", dir.path()),
    ];
    let bin = example("cli_app");

    let first = run(&bin, &["run", "--fail"], &env);
    assert_eq!(first.status.code(), Some(1));
    let err = text(&first.stderr);
    assert!(err.contains("Nothing was sent during this run"), "{err}");
    assert!(err.contains("'cli-app telemetry disable'"), "{err}");
    assert!(err.contains("https://example.com/cli-app/privacy"), "{err}");

    let second = run(&bin, &["run", "--fail"], &env);
    assert!(
        !text(&second.stderr).contains("Nothing was sent during this run"),
        "the notice is shown once"
    );

    let status = run(&bin, &["telemetry", "status"], &env);
    let out = text(&status.stdout);
    assert!(out.contains("cli-app telemetry"), "{out}");
    assert!(
        out.contains("crash reports: on   enabled: opt-out policy, notice shown on"),
        "{out}"
    );
    assert!(
        out.contains("1 crash report waiting"),
        "the second run's report (no DSN): {out}"
    );

    for sub in ["preview", "log", "settings"] {
        let out = run(&bin, &["telemetry", sub], &env);
        assert!(out.status.success(), "{sub}: {}", text(&out.stderr));
    }
    let disable = run(&bin, &["telemetry", "disable"], &env);
    assert!(
        text(&disable.stdout).contains("Deleted 1 crash report(s)"),
        "{}",
        text(&disable.stdout)
    );
    let status = text(&run(&bin, &["telemetry", "status"], &env).stdout);
    assert!(
        status.contains("crash reports: off  disabled by sync=false"),
        "{status}"
    );
}

#[test]
fn the_readme_snippet_gives_a_first_telemetry_disable_of_one_line() {
    // The README's snippet is examples/cli_app.rs's `main`, as is: they cannot drift.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let app = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cli_app.rs"))
        .unwrap();
    let main = &app[app.find("fn main() -> ExitCode {").unwrap()..];
    let main = &main[..main.find("\n}\n").unwrap() + 2];
    assert!(
        readme.contains(main),
        "README's snippet differs from cli_app's main:\n{main}"
    );

    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("CLI_APP_CONFIG_DIR", dir.path()),
        ("CLI_APP_DATA_DIR", dir.path()),
    ];
    let out = run(&example("cli_app"), &["telemetry", "disable"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    assert!(stderr.trim().is_empty(), "no notice, no prompt: {stderr}");
}

#[test]
fn a_library_on_the_facade_adds_one_crate_and_builds_in_seconds() {
    // A small library crate that reports its errors through the facade, built from scratch
    // in its own target directory.
    let dir = tempfile::tempdir().unwrap();
    let api = concat!(env!("CARGO_MANIFEST_DIR"), "/api");
    std::fs::create_dir_all(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"facade-user\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[dependencies]\nconsentry-api = {{ path = {api:?} }}\n\n[workspace]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("src/lib.rs"),
        "pub fn parse(s: &str) -> Option<u32> {\n    s.parse().inspect_err(|e| { consentry_api::capture_error(e); }).ok()\n}\n",
    )
    .unwrap();
    let tree = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-e", "normal", "--prefix", "none"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(tree.status.success(), "{}", text(&tree.stderr));
    let crates: std::collections::BTreeSet<String> = text(&tree.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    // The library itself and the facade: nothing else.
    assert_eq!(crates.len(), 2, "{crates:?}");
    let start = std::time::Instant::now();
    let build = Command::new(env!("CARGO"))
        .args(["build", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", text(&build.stderr));
    // Generous for a loaded CI machine; BENCHMARKS.md has the measured figure.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}
