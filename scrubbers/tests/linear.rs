//! Scrubbing time grows linearly with the size of a string, however dense in matches, and
//! the work per string is capped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use consentry_scrubbers::{MAX_STRING_BYTES, ScrubError, Scrubber};

/// A line dense in what the rules replace: an email, an address, a secret, a home path, a
/// card, a phone number, the hostname and a token.
const LINE: &str = "user bob@example.com from 10.1.2.3 password=hunter2 at /home/bob/src/x.rs \
    card 4111 1111 1111 1111 call +44 20 7946 0958 on alice-laptop \
    ghp_0123456789abcdefghijABCDEFGHIJ012345\n";

fn scrubber() -> Scrubber {
    Scrubber::builder()
        .user("alice")
        .hostname("alice-laptop")
        .build()
        .unwrap()
}

/// The best of `runs` timings of scrubbing `bytes` of [`LINE`]s as one event message.
fn best_time(scrubber: &Scrubber, bytes: usize, runs: usize) -> Duration {
    let text = LINE.repeat(bytes / LINE.len());
    (0..runs)
        .map(|_| {
            let mut event = serde_json::json!({ "message": text.clone() });
            let start = Instant::now();
            scrubber.scrub_value(&mut event).unwrap();
            let elapsed = start.elapsed();
            assert!(!event["message"].as_str().unwrap().contains("hunter2"));
            elapsed
        })
        .min()
        .unwrap()
}

#[test]
fn time_is_linear_in_matches() {
    let scrubber = scrubber();
    // 1 MiB and 8 MiB in a release build (`cargo test --release`); an eighth of that in a
    // debug build, where the same ratio shows in a few seconds.
    let unit = if cfg!(debug_assertions) {
        128 << 10
    } else {
        1 << 20
    };
    let small = best_time(&scrubber, unit, 3);
    let large = best_time(&scrubber, 8 * unit, 2);
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-6);
    // Linear is 8; quadratic would be 64. Leave room for noise on a busy machine.
    assert!(
        ratio < 13.0,
        "8 units took {large:?}, 1 unit {small:?}: ratio {ratio:.1}, not linear"
    );
}

#[test]
fn overlong_strings_fail_closed() {
    let scrubber = scrubber();
    let mut event = serde_json::json!({ "message": "a".repeat(MAX_STRING_BYTES + 1) });
    let err = scrubber.scrub_value(&mut event).unwrap_err();
    assert!(matches!(err, ScrubError::TooLong { .. }), "{err}");
    let err = scrubber
        .scrub_text(&"a".repeat(MAX_STRING_BYTES + 1))
        .unwrap_err();
    assert!(matches!(err, ScrubError::TooLong { .. }), "{err}");
}

/// The best time to scrub an event naming `n` different users in home paths.
fn names_time(scrubber: &Scrubber, n: usize) -> Duration {
    let text: Vec<String> = (0..n).map(|i| format!("/home/usr{i:07}/x")).collect();
    let keys: serde_json::Map<String, serde_json::Value> = (0..n)
        .map(|i| (format!("k{i}@example.com"), serde_json::Value::from(i)))
        .collect();
    (0..2)
        .map(|_| {
            let mut event = serde_json::json!({ "message": text.join(" "), "extra": keys.clone() });
            let start = Instant::now();
            scrubber.scrub_value(&mut event).unwrap();
            start.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn time_is_linear_in_the_names_an_event_teaches() {
    // Each learned user and each key scrubbed to the same placeholder (`<email>#n`) cost the
    // same however many came before: both were quadratic once.
    let scrubber = scrubber();
    let unit = if cfg!(debug_assertions) {
        2_000
    } else {
        10_000
    };
    let small = names_time(&scrubber, unit);
    let large = names_time(&scrubber, 8 * unit);
    let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-6);
    assert!(
        ratio < 16.0,
        "8 units took {large:?}, 1 unit {small:?}: ratio {ratio:.1}, not linear"
    );
}
