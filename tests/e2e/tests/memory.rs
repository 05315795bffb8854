//! A million `capture_error` and a million `track` calls with the servers down: the
//! process's peak resident set stays within 10 MB of where it was before them, because
//! every queue (pending captures, usage events, the outbox, deduplication) is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use consentry_e2e::*;

#[cfg(target_os = "linux")]
#[test]
fn a_million_calls_with_the_servers_down_keep_memory_bounded() {
    // Nothing listens on port 9 (discard) on loopback: every send fails at once.
    let dirs = Dirs::new();
    let mut cmd = fixture(&fixture_bin!(), &dirs, "memory");
    cmd.arg("1000000")
        .env("FIXTURE_TELEMETRY", "1")
        .env("FIXTURE_BACKTRACE", "0")
        .env("FIXTURE_DSN", "http://key@127.0.0.1:9/1")
        .env("FIXTURE_SINK", "json")
        .env("FIXTURE_SINK_URL", "http://127.0.0.1:9/usage")
        .env("FIXTURE_FLUSH_MS", "100")
        .env("FIXTURE_USAGE_FLUSH_MS", "100");
    let (out, _) = run(cmd, Duration::from_secs(300));
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    let (start, end) = (field("peak_rss_kb_start"), field("peak_rss_kb_end"));
    assert_eq!(field("calls"), 1_000_000);
    assert!(start > 0, "VmHWM readable");
    let grown_kb = end.saturating_sub(start);
    eprintln!(
        "peak RSS {start} kB -> {end} kB (+{grown_kb} kB) over a million captures and tracks"
    );
    assert!(grown_kb < 10 * 1024, "peak RSS grew by {grown_kb} kB");
    assert!(
        dirs.outbox_files().len() <= 100,
        "the outbox is bounded too"
    );
}
