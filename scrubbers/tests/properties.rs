//! Properties that hold for any input: scrubbing never panics, is idempotent, and keeps the
//! JSON's shape. Case counts are kept small so that these run in every `cargo test`; the fuzz
//! targets in `fuzz/` run the same checks for as long as one likes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/corpus.rs"]
mod corpus;

use std::sync::LazyLock;

use consentry_scrubbers::Scrubber;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

static SCRUBBER: LazyLock<Scrubber> = LazyLock::new(|| corpus::builder().build().unwrap());

/// Pieces of text that wake up the rules, so that random strings exercise them.
const FRAGMENTS: &[&str] = &[
    "/home/",
    "/Users/",
    "C:\\Users\\",
    "C:\\\\Users\\\\",
    "\\\\",
    "/mnt/c/Users/",
    "%2Fhome%2F",
    "file:///",
    "alice",
    "Alice Liddell",
    "bob",
    "zorquen",
    "alice-laptop",
    "HOSTNAME=",
    "USER=",
    "@",
    "example.com",
    ".",
    ":",
    "::",
    "-",
    "_",
    "/",
    "\\",
    "+44 20 7946 0958",
    "4111 1111 1111 1111",
    "ghp_",
    "0123456789abcdefghijABCDEFGHIJ012345",
    "password=",
    "token: ",
    "Bearer ",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abc",
    "192.168.1.",
    "10.0.0.7",
    "2001:db8::",
    "fe80::1:2:3",
    "00:1a:2b:3c:4d:5e",
    "DE89 3704 0044 0532 0130 00",
    "123-45-6789",
    "?token=",
    "&",
    "=",
    "<user>",
    "<redacted>",
    "<hash:0123456789abcdef>",
    "~",
    " ",
    "\t",
    "\n",
    "é",
    "日本",
    "\u{0}",
    "\u{feff}",
    "sk-",
    "AKIA",
    "IOSFODNN7EXAMPLE",
    "https://u:p@h/",
    "-----BEGIN PRIVATE KEY-----",
    "dpl-7f3a9c2e1b8d4f60",
    "#2",
    "1",
    "42",
    "x",
    "Z",
];

fn fragment_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..12).prop_map(|parts| parts.concat())
}

fn any_string() -> impl Strategy<Value = String> {
    prop_oneof![3 => fragment_string(), 1 => any::<String>()]
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any_string(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Whether two values have the same shape: same types, same array lengths, same number of
/// keys in each object (keys may be renamed, so objects are compared in iteration order).
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null)
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => true,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_shape(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && {
                // Renamed keys may move in a sorted map: compare the multisets of shapes.
                let mut xs: Vec<String> = x.values().map(shape_sig).collect();
                let mut ys: Vec<String> = y.values().map(shape_sig).collect();
                xs.sort();
                ys.sort();
                xs == ys
            }
        }
        _ => false,
    }
}

fn shape_sig(v: &Value) -> String {
    match v {
        Value::Null => "n".into(),
        Value::Bool(_) => "b".into(),
        Value::Number(_) => "0".into(),
        Value::String(_) => "s".into(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(shape_sig).collect::<Vec<_>>().join(",")
        ),
        Value::Object(map) => {
            let mut parts: Vec<String> = map.values().map(shape_sig).collect();
            parts.sort();
            format!("{{{}}}", parts.join(","))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn text_is_idempotent(text in any_string()) {
        let (once, _) = SCRUBBER.scrub_text(&text).unwrap();
        let (twice, report) = SCRUBBER.scrub_text(&once).unwrap();
        prop_assert_eq!(&twice, &once);
        prop_assert!(report.is_empty(), "second scrub reported:\n{}", report);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn values_keep_shape_and_are_idempotent(value in any_json()) {
        let mut once = value.clone();
        SCRUBBER.scrub_value(&mut once).unwrap();
        prop_assert!(same_shape(&value, &once), "shape changed:\n{}\n{}", value, once);
        // Valid JSON: it serializes and parses back (to the same shape: floats need not
        // round-trip exactly through serde_json's text form).
        let text = serde_json::to_string(&once).unwrap();
        prop_assert!(same_shape(&serde_json::from_str::<Value>(&text).unwrap(), &once));
        let mut twice = once.clone();
        let report = SCRUBBER.scrub_value(&mut twice).unwrap();
        prop_assert_eq!(&twice, &once);
        prop_assert!(report.is_empty(), "second scrub reported:\n{}", report);
    }

    #[test]
    fn generated_events_are_idempotent(seed in any::<u64>()) {
        let mut rng = corpus::Rng::new(seed);
        let event = corpus::realistic_event(&mut rng);
        let mut once = event.clone();
        SCRUBBER.scrub_value(&mut once).unwrap();
        prop_assert!(same_shape(&event, &once));
        let mut twice = once.clone();
        SCRUBBER.scrub_value(&mut twice).unwrap();
        prop_assert_eq!(twice, once);
    }
}

/// Drops a value without recursion: dropping a deeply nested `Value` the ordinary way
/// overflows the stack.
fn drop_deep(value: Value) {
    let mut stack = vec![value];
    while let Some(mut v) = stack.pop() {
        match &mut v {
            Value::Array(items) => stack.append(items),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                stack.extend(entries.into_iter().map(|(_, v)| v));
            }
            _ => {}
        }
    }
}

#[test]
fn deep_nesting_does_not_overflow() {
    const DEPTH: usize = 200_000;
    let mut value = json!("/home/bob/x and bob");
    for i in 0..DEPTH {
        value = if i % 2 == 0 {
            Value::Array(vec![value])
        } else {
            let mut map = Map::new();
            map.insert("password".into(), json!(1234));
            map.insert(format!("k{}", i % 3), value);
            Value::Object(map)
        };
    }
    let report = SCRUBBER.scrub_value(&mut value).unwrap();
    assert_eq!(report.count_for_rule("home-path"), 1);
    assert_eq!(report.count_for_rule("user-name"), 1);
    assert_eq!(report.count_for_rule("deny-key"), (DEPTH / 2) as u64);
    // The innermost string, found without recursion.
    let mut inner = &value;
    loop {
        inner = match inner {
            Value::Array(items) => &items[0],
            Value::Object(map) => map.iter().find(|(k, _)| k.starts_with('k')).unwrap().1,
            other => break assert_eq!(other, &json!("/home/<user>/x and <user>")),
        };
    }
    drop_deep(value);
}

#[test]
fn huge_strings() {
    // Text with PII at both ends and, in the middle, input that is pathological for one rule
    // or another. Kept to about a megabyte so the test stays quick in debug builds; the
    // fuzz targets go further.
    let middle = [
        "1.2.3.".repeat(20_000),
        "a:".repeat(20_000),
        "author=".repeat(10_000),
        "?a=".repeat(10_000),
        "/home/bob".repeat(10_000),
        "4111 ".repeat(10_000),
        "\\\\x".repeat(10_000),
    ]
    .concat();
    let text = format!("bob@example.com {middle} /home/bob/x");
    let (out, report) = SCRUBBER.scrub_text(&text).unwrap();
    assert!(out.starts_with("<email> "));
    assert!(out.ends_with(" /home/<user>/x"));
    assert!(report.total() >= 2);
    let long_token = "x".repeat(1_000_000);
    let (out, _) = SCRUBBER.scrub_text(&long_token).unwrap();
    assert_eq!(out, long_token);
}

/// Inputs the fuzz targets found, kept once fixed.
#[test]
fn fuzz_regressions() {
    for text in [
        r"\\\\he78\\R44home39\\X------m\\\\home39\\X44heome3354\\",
        "dpl-7f3a9c2e1b8d4f60HOSTNAME=ghp_",
        "HOSTNAME=bob-----BEGIN PRIVATE KEY-----",
    ] {
        let (once, _) = SCRUBBER.scrub_text(text).unwrap();
        let (twice, report) = SCRUBBER.scrub_text(&once).unwrap();
        assert_eq!(twice, once, "{text:?}");
        assert!(report.is_empty(), "{text:?}: {report}");
        let mut value = json!({ text: text });
        SCRUBBER.scrub_value(&mut value).unwrap();
        let mut again = value.clone();
        assert!(SCRUBBER.scrub_value(&mut again).unwrap().is_empty());
        assert_eq!(again, value);
    }
}

#[test]
fn escaped_surrogates_in_json_text() {
    // A lone surrogate cannot be in a Rust string, so serde_json refuses it as a value; as
    // JSON text it is plain ASCII and scrubs like any text.
    let line = r#"{"message": "\ud800 bob@example.com \udc00"}"#;
    assert!(serde_json::from_str::<Value>(line).is_err());
    let (out, _) = SCRUBBER.scrub_text(line).unwrap();
    assert_eq!(out, r#"{"message": "\ud800 <email> \udc00"}"#);
}
