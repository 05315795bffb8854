//! Fuzzes `Scrubber::scrub_text` on arbitrary text: never a panic, never an error, and
//! scrubbing the output again changes nothing.
#![no_main]

mod scrubber;

use libfuzzer_sys::fuzz_target;

use scrubber::SCRUBBER;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (once, report) = SCRUBBER.scrub_text(&text).expect("scrubbing failed");
    let (twice, second) = SCRUBBER.scrub_text(&once).expect("second scrub failed");
    assert_eq!(twice, once, "not idempotent (first report:\n{report})");
    assert!(second.is_empty(), "second scrub reported:\n{second}");
});
