//! The leak test: PII planted in every field kind of 400 generated events (Linux, macOS,
//! Windows, WSL) must all be gone after scrubbing, and what a developer needs must remain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/corpus.rs"]
mod corpus;

use corpus::{all_text, planted_corpus};

#[test]
fn no_planted_value_survives_and_every_kept_value_does() {
    let scrubber = corpus::builder().build().unwrap();
    let events = planted_corpus(400, 0x5eed);
    let mut failures = Vec::new();
    for (i, planted) in events.iter().enumerate() {
        let original = all_text(&planted.event);
        for keep in &planted.keep {
            assert!(
                original.contains(keep.as_str()),
                "generator bug: event {i} lacks {keep:?}"
            );
        }
        let mut event = planted.event.clone();
        let report = scrubber.scrub_value(&mut event).unwrap();
        assert!(!report.is_empty());
        let text = all_text(&event);
        let lower = text.to_lowercase();
        for secret in &planted.secrets {
            if lower.contains(&secret.to_lowercase()) {
                failures.push(format!("event {i}: planted {secret:?} survived"));
            }
        }
        // The machine's name goes whole, however short or common.
        for pointer in ["/server_name", "/contexts/device/name"] {
            if let Some(name) = event.pointer(pointer)
                && name != "<hostname>"
            {
                failures.push(format!("event {i}: {pointer} is {name}"));
            }
        }
        for keep in &planted.keep {
            if !text.contains(keep.as_str()) {
                failures.push(format!("event {i}: kept value {keep:?} is gone"));
            }
        }
        // Idempotent, and the report never holds a value.
        let mut again = event.clone();
        let second = scrubber.scrub_value(&mut again).unwrap();
        assert_eq!(again, event, "event {i} not idempotent");
        assert!(
            second.is_empty(),
            "event {i}: second scrub found:\n{second}"
        );
        let report_json = serde_json::to_string(&report).unwrap().to_lowercase();
        for secret in &planted.secrets {
            assert!(
                !report_json.contains(&secret.to_lowercase()),
                "report of event {i} holds {secret:?}"
            );
        }
        if failures.len() > 20 {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
