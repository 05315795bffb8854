//! Whole crash reports from Linux, macOS, Windows and WSL, scrubbed, as snapshots: each
//! `.snap` under `tests/snapshots/` shows what a report looks like after scrubbing, and is
//! reviewed like code. Regenerate with `INSTA_UPDATE=always cargo test -p consentry-scrubbers
//! --test snapshots` (or `cargo insta review`) and read the diff.
//!
//! The scrubber is that of `tests/support/corpus.rs`: the running user is `alice` on
//! `alice-laptop`, so the Linux report is her own and the others come from other machines,
//! as with `consentry scrub` run on a report someone attached to a bug.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/corpus.rs"]
mod corpus;

use serde_json::Value;

fn check(name: &str, fixture: &str) {
    let scrubber = corpus::builder().build().unwrap();
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    let report = scrubber.scrub_value(&mut event).unwrap();
    insta::assert_json_snapshot!(name, event);
    insta::assert_snapshot!(format!("{name}_report"), report.to_string());
    let mut again = event.clone();
    assert!(scrubber.scrub_value(&mut again).unwrap().is_empty());
    assert_eq!(again, event);
}

#[test]
fn linux() {
    check("linux", include_str!("fixtures/linux.json"));
}

#[test]
fn macos() {
    check("macos", include_str!("fixtures/macos.json"));
}

#[test]
fn windows() {
    check("windows", include_str!("fixtures/windows.json"));
}

#[test]
fn wsl() {
    check("wsl", include_str!("fixtures/wsl.json"));
}
