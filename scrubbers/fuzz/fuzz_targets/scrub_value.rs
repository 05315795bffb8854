//! Fuzzes `Scrubber::scrub_value` on arbitrary JSON-ish input: never a panic, never an error,
//! the same shape out, and scrubbing the output again changes nothing.
#![no_main]

mod scrubber;

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

use scrubber::SCRUBBER;

fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_shape(x, y))
        }
        (Value::Object(x), Value::Object(y)) => x.len() == y.len(),
        (Value::Null, Value::Null)
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => true,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    // Valid JSON as it is; anything else becomes strings and keys of an event-like object, so
    // that every input exercises the rules.
    let value = serde_json::from_slice::<Value>(data).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(data).into_owned();
        let mut extra = Map::new();
        extra.insert(text.clone(), json!(1));
        for (i, part) in text.split('\n').enumerate() {
            extra.insert(format!("line{i}"), json!(part));
        }
        json!({
            "server_name": text.split(' ').next().unwrap_or(""),
            "message": text,
            "exception": {"values": [{"value": text, "stacktrace": {"frames": [{"abs_path": text}]}}]},
            "extra": extra,
            "request": {"headers": [["Authorization", text]]},
        })
    });
    let mut once = value.clone();
    let report = SCRUBBER.scrub_value(&mut once).expect("scrubbing failed");
    assert!(same_shape(&value, &once), "shape changed");
    let mut twice = once.clone();
    let second = SCRUBBER
        .scrub_value(&mut twice)
        .expect("second scrub failed");
    assert_eq!(twice, once, "not idempotent (first report:\n{report})");
    assert!(second.is_empty(), "second scrub reported:\n{second}");
});
