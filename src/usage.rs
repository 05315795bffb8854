//! Anonymous usage pings: `track(name, props)` queues an event (bounded), and the worker
//! sends batches at most once per interval to the configured sink, in the sink's own wire
//! format (Google Analytics 4 Measurement Protocol, Segment, PostHog, or plain JSON).
//!
//! The caller's thread only validates the name, bounds the values and queues; hashing,
//! scrubbing (the pipeline), storing (the usage store, so a CLI that exits at once loses
//! nothing) and sending (the egress gate) happen on the worker or at exit.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::bound;
use crate::diag;

/// The longest event name or property key (Google Analytics' limit).
///
/// ```
/// assert!(consentry::valid_name(&"a".repeat(consentry::MAX_NAME_LEN)));
/// ```
pub const MAX_NAME_LEN: usize = 40;
/// The most properties one event carries; the ones past it (and any with an invalid key)
/// are dropped, the event is kept.
///
/// ```
/// assert_eq!(consentry::MAX_PROPS, 16);
/// ```
pub const MAX_PROPS: usize = 16;
/// The longest string property value sent, in characters (longer ones are cut).
///
/// ```
/// assert_eq!(consentry::MAX_VALUE_LEN, 100);
/// ```
pub const MAX_VALUE_LEN: usize = 100;

/// The value of a usage property.
///
/// Numbers and booleans pass as they are; free strings pass through the scrubbing engine;
/// [`Prop::choice`] reports values outside an allow-list as `custom`; [`Prop::hashed`]
/// sends a salted hash so equal values group without being revealed.
///
/// ```
/// use consentry::Prop;
/// let props: [(&str, Prop); 4] = [
///     ("task", "detect".into()),
///     ("epochs", 100.into()),
///     ("model", Prop::choice("yolov8n", &["yolov8n", "yolov8s"])),
///     ("project", Prop::hashed("acme-secret-project")),
/// ];
/// # let _ = props;
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Prop {
    /// A free string; scrubbed before it is sent and cut at [`MAX_VALUE_LEN`] characters.
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A value from an allow-list, or `custom`.
    Choice(String),
    /// A value sent only as a salted hash.
    Hashed(String),
}

impl fmt::Debug for Prop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prop::Str(s) => write!(f, "Str({s:?})"),
            Prop::Int(n) => write!(f, "Int({n})"),
            Prop::Float(x) => write!(f, "Float({x})"),
            Prop::Bool(b) => write!(f, "Bool({b})"),
            Prop::Choice(c) => write!(f, "Choice({c:?})"),
            // The raw value is what the user wanted hidden: never print it.
            Prop::Hashed(_) => f.write_str("Hashed(..)"),
        }
    }
}

impl Prop {
    /// `value` if it is in `allowed`, else `custom` (Ultralytics reports model names outside
    /// its own list this way).
    ///
    /// ```
    /// use consentry::Prop;
    /// assert_eq!(Prop::choice("yolov8n", &["yolov8n"]), Prop::Choice("yolov8n".into()));
    /// assert_eq!(Prop::choice("my-secret-model", &["yolov8n"]), Prop::Choice("custom".into()));
    /// ```
    pub fn choice(value: &str, allowed: &[&str]) -> Prop {
        if allowed.contains(&value) {
            Prop::Choice(value.to_owned())
        } else {
            Prop::Choice("custom".to_owned())
        }
    }

    /// A value sent as an HMAC-SHA256 of it under the per-install salt, truncated: equal
    /// values give equal hashes on this install, and the value itself never leaves.
    ///
    /// ```
    /// let p = consentry::Prop::hashed("my-project");
    /// assert_eq!(format!("{p:?}"), "Hashed(..)");
    /// ```
    pub fn hashed(value: impl Into<String>) -> Prop {
        Prop::Hashed(value.into())
    }
}

impl From<&str> for Prop {
    fn from(s: &str) -> Prop {
        Prop::Str(s.to_owned())
    }
}
impl From<String> for Prop {
    fn from(s: String) -> Prop {
        Prop::Str(s)
    }
}
impl From<bool> for Prop {
    fn from(b: bool) -> Prop {
        Prop::Bool(b)
    }
}
impl From<f64> for Prop {
    fn from(x: f64) -> Prop {
        Prop::Float(x)
    }
}
impl From<f32> for Prop {
    fn from(x: f32) -> Prop {
        Prop::Float(f64::from(x))
    }
}
macro_rules! int_prop {
    ($($t:ty),*) => {$(
        impl From<$t> for Prop {
            fn from(n: $t) -> Prop {
                Prop::Int(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_prop!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

/// An event name or property key: 1 to 40 of `[a-z0-9_]`, starting with a letter.
///
/// `const`, so typed event catalogs are checked at compile time (see
/// [`event_catalog!`](crate::event_catalog)).
///
/// ```
/// assert!(consentry::valid_name("train_started"));
/// assert!(!consentry::valid_name("Train Started"));
/// ```
pub const fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// An event of a typed catalog: the name is fixed at compile time.
///
/// Implemented by [`event_catalog!`](crate::event_catalog); apps may implement it by hand.
///
/// ```
/// struct Exported;
/// impl consentry::UsageEvent for Exported {
///     fn name(&self) -> &'static str { "exported" }
/// }
/// consentry::track_event(Exported, [("format", "onnx")]);
/// ```
pub trait UsageEvent {
    /// The event's name on the wire.
    fn name(&self) -> &'static str;
}

/// Declares a typed catalog of usage events (as ZenML does), with names checked at compile
/// time: a bad name does not compile.
///
/// ```
/// consentry::event_catalog! {
///     /// What this app reports.
///     pub enum AppEvent {
///         /// A training run started.
///         TrainStarted = "train_started",
///         /// A model was exported.
///         Exported = "exported",
///     }
/// }
/// use consentry::UsageEvent;
/// assert_eq!(AppEvent::TrainStarted.name(), "train_started");
/// consentry::track_event(AppEvent::Exported, [("format", "onnx")]);
/// ```
///
/// ```compile_fail
/// consentry::event_catalog! {
///     pub enum Bad { Oops = "Not Valid" }
/// }
/// ```
#[macro_export]
macro_rules! event_catalog {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every event name of the catalog, for [`Config::usage_events`]($crate::Config::usage_events).
            $vis const NAMES: &'static [&'static str] = &[$($wire),+];
        }

        impl $crate::UsageEvent for $name {
            fn name(&self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        const _: () = { $(assert!($crate::valid_name($wire), concat!("invalid usage event name: ", $wire));)+ };
    };
}

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
