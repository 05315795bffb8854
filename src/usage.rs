//! Anonymous usage pings: `track(name, props)` queues an event (bounded), and the worker
//! sends batches at most once per interval to the configured sink, in the sink's own wire
//! format (Google Analytics 4 Measurement Protocol, Segment, PostHog, or plain JSON).
//!
//! The caller's thread only validates the name, bounds the values and queues; hashing,
//! scrubbing (the pipeline), storing (the usage store, so a CLI that exits at once loses
//! nothing) and sending (the egress gate) happen on the worker or at exit.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::bound;
use crate::diag;

pub(crate) use consentry_api::{MAX_PROPS, MAX_VALUE_LEN, Prop, valid_name};

/// One queued usage event.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) name: String,
    pub(crate) props: Vec<(String, Prop)>,
    pub(crate) time: SystemTime,
}

/// The bounded queue between `track` and the worker (which moves its events, scrubbed, to
/// the usage store on disk as soon as it wakes).
#[derive(Debug)]
pub(crate) struct UsageQueue {
    events: Mutex<VecDeque<Queued>>,
    capacity: usize,
    dropped: AtomicU64,
}

impl UsageQueue {
    pub(crate) fn new(capacity: usize) -> UsageQueue {
        UsageQueue {
            // Grows as events come: an app whose usage is off allocates nothing.
            events: Mutex::new(VecDeque::new()),
            capacity,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues an event; when full, the newer event is counted and dropped.
    pub(crate) fn push(&self, event: Queued) -> bool {
        let Ok(mut events) = self.events.lock() else {
            return false;
        };
        if events.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        events.push_back(event);
        true
    }

    pub(crate) fn is_full(&self) -> bool {
        self.events
            .lock()
            .map(|e| e.len() >= self.capacity)
            .unwrap_or(true)
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.lock().map(|e| e.is_empty()).unwrap_or(true)
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut e) = self.events.lock() {
            e.clear();
        }
    }

    pub(crate) fn take(&self) -> Vec<Queued> {
        self.events
            .lock()
            .map(|mut e| e.drain(..).collect())
            .unwrap_or_default()
    }
}

/// The most bytes of a free string property queued (it is scrubbed, then cut to
/// [`MAX_VALUE_LEN`] characters, on the worker).
const QUEUED_VALUE_MAX: usize = 4 * MAX_VALUE_LEN;

/// Queues a usage event; see [`crate::track`].
pub(crate) fn track<'a, V: Into<Prop>>(
    queue: &UsageQueue,
    debug: bool,
    name: &str,
    props: impl IntoIterator<Item = (&'a str, V)>,
) -> bool {
    if !valid_name(name) {
        if debug {
            diag::warn_once(&format!("bad-event-{name}"), || {
                format!("usage event name {name:?} is invalid (use 1-40 of [a-z0-9_]); dropped")
            });
        }
        return false;
    }
    // A full queue drops the event: nothing is built for it.
    if queue.is_full() {
        queue.dropped.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    let mut list = Vec::new();
    for (key, value) in props.into_iter().take(MAX_PROPS + 1) {
        if !valid_name(key) || list.len() >= MAX_PROPS {
            // Only the property is dropped; the event still counts.
            if debug {
                diag::warn_once(&format!("bad-prop-{name}-{key}"), || {
                    format!(
                        "usage property {key:?} of {name:?} is invalid (use 1-40 of [a-z0-9_]) or past the {MAX_PROPS}th; it was dropped"
                    )
                });
            }
            continue;
        }
        let value = match value.into() {
            // Bounded in bytes before it is queued; cut at a token boundary, since it is not
            // scrubbed yet.
            Prop::Str(s) => Prop::Str(bound::cut_owned(s, QUEUED_VALUE_MAX)),
            Prop::Hashed(s) => Prop::Hashed(bound::cut_owned(s, QUEUED_VALUE_MAX)),
            other => other,
        };
        list.push((key.to_owned(), value));
    }
    queue.push(Queued {
        name: name.to_owned(),
        props: list,
        time: SystemTime::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "train", "train_v2", &"a".repeat(40)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Train",
            "2train",
            "_x",
            "a-b",
            "a b",
            "é",
            &"a".repeat(41),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn queue_drops_newer_when_full() {
        let q = UsageQueue::new(2);
        for i in 0..5 {
            q.push(Queued {
                name: format!("e{i}"),
                props: vec![],
                time: SystemTime::now(),
            });
        }
        let names: Vec<_> = q.take().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["e0", "e1"]);
        assert_eq!(q.dropped(), 3);
    }

    #[test]
    fn queued_strings_are_bounded_in_bytes() {
        let q = UsageQueue::new(2);
        let big = format!("a {}", "x".repeat(5 << 20));
        assert!(track(&q, false, "e", [("v", big.as_str())]));
        let queued = q.take();
        match &queued[0].props[0].1 {
            Prop::Str(s) => assert!(s.len() <= QUEUED_VALUE_MAX + 20, "{}", s.len()),
            other => panic!("{other:?}"),
        }
    }
}
