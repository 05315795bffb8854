//! The featherweight facade of [consentry](https://docs.rs/consentry) for libraries: report
//! errors and usage from a library without pulling the reporting machinery into every build
//! of its users, the way the `log` crate is a facade and a logger the application installs.
//!
//! A library depends on `consentry-api` (no dependencies of its own) and calls
//! [`capture_error`], [`capture_message`], [`track`] and [`add_breadcrumb`]. Until the
//! application calls `consentry::init` and the user consents, each call costs one atomic
//! load (the first few errors captured before `init` wait in static memory, no allocation,
//! for `init` to decide). The application depends on `consentry`, which installs itself as
//! the backend in `init` and re-exports everything here, so `consentry::capture_error` and
//! `consentry_api::capture_error` are the same function.
//!
//! ```
//! // In a library:
//! fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
//!     text.trim().parse().inspect_err(|e| {
//!         consentry_api::capture_error(e);
//!     })
//! }
//! # let _ = parse("x");
//! consentry_api::track("parsed", [("format", "csv")]);
//! ```
#![deny(missing_docs)]

use std::error::Error;
use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

mod early;
mod level;
mod usage;

pub use crate::early::EarlyEvent;
pub use crate::level::Level;
pub use crate::usage::{MAX_NAME_LEN, MAX_PROPS, MAX_VALUE_LEN, Prop, UsageEvent, valid_name};

/// The id of a reported event (a random UUID, version 4).
///
/// ```
/// let id = consentry_api::EventId::from_bytes([0x11; 16]);
/// assert_eq!(id.to_string(), "11111111111111111111111111111111");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId([u8; 16]);

impl EventId {
    /// The all-zero id.
    pub const NIL: EventId = EventId([0; 16]);

    /// An id made of these bytes (the UUID's big-endian bytes).
    pub const fn from_bytes(bytes: [u8; 16]) -> EventId {
        EventId(bytes)
    }

    /// The id's bytes (a UUID's big-endian bytes).
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A random version-4 id, from the standard library's per-process random hash keys, the
    /// time and a counter (no dependency needed).
    pub(crate) fn new_random() -> EventId {
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::AtomicU64;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let half = |salt: u64| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(salt);
            h.write_u64(n);
            h.write_u128(now);
            h.finish()
        };
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&half(1).to_be_bytes());
        bytes[8..].copy_from_slice(&half(2).to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        EventId(bytes)
    }
}

impl fmt::Display for EventId {
    /// 32 lower-case hex digits (Sentry's form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

/// What [`capture_error`] accepts: any error type, and the `dyn Error` trait objects
/// (`&*boxed` for a `Box<dyn Error + Send + Sync>`).
pub trait AsError {
    /// The error as a trait object.
    fn as_error(&self) -> &(dyn Error + '_);
}

impl<E: Error> AsError for E {
    fn as_error(&self) -> &(dyn Error + '_) {
        self
    }
}

impl AsError for dyn Error + '_ {
    fn as_error(&self) -> &(dyn Error + '_) {
        self
    }
}

impl AsError for dyn Error + Send + '_ {
    fn as_error(&self) -> &(dyn Error + '_) {
        self
    }
}

impl AsError for dyn Error + Send + Sync + '_ {
    fn as_error(&self) -> &(dyn Error + '_) {
        self
    }
}

/// What the application installs (`consentry::init` does): where captures go once
/// reporting is on. Every method runs on the caller's thread and must not block.
pub trait Backend: Send + Sync {
    /// An error with its `source()` chain; `type_name` is the static type's name when the
    /// caller's error was not a trait object.
    fn capture_error(&self, err: &dyn Error, type_name: Option<&'static str>) -> Option<EventId>;
    /// A message.
    fn capture_message(&self, message: &str, level: Level) -> Option<EventId>;
    /// A usage event, its properties as the caller gave them (at most [`MAX_PROPS`] + 1).
    fn track(&self, name: &str, props: &mut dyn Iterator<Item = (&str, Prop)>);
    /// A breadcrumb.
    fn add_breadcrumb(&self, category: &str, message: &str, level: Level);
    /// An error was kept in the early buffer while `init` turned reporting on: take the
    /// buffer now ([`backend::drain_early`]).
    fn early_kept(&self) {}
}

const UNINIT: u8 = 0;
const UNINIT_FULL: u8 = 1;
const OFF: u8 = 2;
const ON: u8 = 3;

/// The crash-report switch, read by every capture.
static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// The usage-ping switch, read by every `track`.
static USAGE_ON: AtomicBool = AtomicBool::new(false);
static BACKEND: OnceLock<&'static dyn Backend> = OnceLock::new();

/// Reports an error with its whole `source()` chain. One atomic load when reporting is off;
/// before `init`, the first few errors are kept in static memory (no allocation) until
/// `init` decides. Never panics into the caller.
///
/// ```
/// let err = std::io::Error::new(std::io::ErrorKind::NotFound, "config.toml");
/// let _id: Option<consentry_api::EventId> = consentry_api::capture_error(&err);
/// let boxed: Box<dyn std::error::Error + Send + Sync> = "bad input".into();
/// consentry_api::capture_error(&*boxed);
/// ```
#[inline]
pub fn capture_error<E: AsError + ?Sized>(err: &E) -> Option<EventId> {
    match STATE.load(Ordering::Relaxed) {
        ON => capture_error_on(err),
        UNINIT => capture_error_early(err),
        _ => None,
    }
}

/// The static type's name, unless it is a trait object or a reference (Debug then names it).
fn type_label<E: ?Sized>() -> Option<&'static str> {
    let name = std::any::type_name::<E>();
    (!name.starts_with("dyn ") && !name.starts_with('&')).then_some(name)
}

#[inline(never)]
fn capture_error_on<E: AsError + ?Sized>(err: &E) -> Option<EventId> {
    let backend = BACKEND.get()?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        backend.capture_error(err.as_error(), type_label::<E>())
    }))
    .ok()
    .flatten()
}

#[cold]
fn capture_error_early<E: AsError + ?Sized>(err: &E) -> Option<EventId> {
    early_outcome(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || early::capture_error(err.as_error()),
    )))
}

fn early_outcome(outcome: std::thread::Result<early::Capture>) -> Option<EventId> {
    match outcome {
        Ok(early::Capture::Kept(id, full)) => {
            if full {
                let _ = STATE.compare_exchange(
                    UNINIT,
                    UNINIT_FULL,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
            // `init` may have run while we wrote: hand the kept errors to it now.
            if STATE.load(Ordering::Acquire) == ON
                && let Some(backend) = BACKEND.get()
            {
                backend.early_kept();
            }
            Some(id)
        }
        Ok(early::Capture::Full) => {
            let _ =
                STATE.compare_exchange(UNINIT, UNINIT_FULL, Ordering::AcqRel, Ordering::Relaxed);
            None
        }
        _ => None,
    }
}

/// Reports a message at `level`. Same costs and guarantees as [`capture_error`].
///
/// ```
/// consentry_api::capture_message("cache rebuilt from scratch", consentry_api::Level::Warning);
/// ```
#[inline]
pub fn capture_message(message: &str, level: Level) -> Option<EventId> {
    match STATE.load(Ordering::Relaxed) {
        ON => {
            let backend = BACKEND.get()?;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                backend.capture_message(message, level)
            }))
            .ok()
            .flatten()
        }
        UNINIT => early_outcome(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || early::capture_message(message, level),
        ))),
        _ => None,
    }
}

/// Queues an anonymous usage event. One atomic load when usage pings are off. Names and
/// keys are 1 to 40 of `[a-z0-9_]`; see [`Prop`] for values. Without properties:
/// [`track_event`] with a catalog, or `track("name", consentry_api::NO_PROPS)`.
///
/// ```
/// consentry_api::track("train", [("task", "detect")]);
/// consentry_api::track("export", [("format", consentry_api::Prop::from("onnx")), ("n", 3.into())]);
/// consentry_api::track("started", consentry_api::NO_PROPS);
/// ```
#[inline]
pub fn track<'a, V: Into<Prop>>(name: &str, props: impl IntoIterator<Item = (&'a str, V)>) {
    if USAGE_ON.load(Ordering::Relaxed) {
        track_on(name, props);
    }
}

/// No properties, for [`track`].
pub const NO_PROPS: [(&str, Prop); 0] = [];

/// Properties of different types for [`track`]: `props!["format" => "csv", "rows" => 3]`.
///
/// ```
/// consentry_api::track("exported", consentry_api::props!["format" => "csv", "rows" => 3, "gzip" => true]);
/// consentry_api::track("started", consentry_api::props![]);
/// ```
#[macro_export]
macro_rules! props {
    () => {
        $crate::NO_PROPS
    };
    ($($key:expr => $value:expr),+ $(,)?) => {
        [$(($key, $crate::Prop::from($value))),+]
    };
}

#[inline(never)]
fn track_on<'a, V: Into<Prop>>(name: &str, props: impl IntoIterator<Item = (&'a str, V)>) {
    let Some(backend) = BACKEND.get() else { return };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // No allocation here: the backend takes what it keeps.
        let mut props = props
            .into_iter()
            .take(MAX_PROPS + 1)
            .map(|(k, v)| (k, v.into()));
        backend.track(name, &mut props);
    }));
}

/// [`track`] for an event of a typed catalog (see [`event_catalog!`]).
///
/// ```
/// struct Started;
/// impl consentry_api::UsageEvent for Started {
///     fn name(&self) -> &'static str { "started" }
/// }
/// consentry_api::track_event(Started, [("mode", "fast")]);
/// ```
#[inline]
pub fn track_event<'a, V: Into<Prop>>(
    event: impl UsageEvent,
    props: impl IntoIterator<Item = (&'a str, V)>,
) {
    if USAGE_ON.load(Ordering::Relaxed) {
        track_on(event.name(), props);
    }
}

/// Records a breadcrumb: a short note attached to the crash reports that follow (scrubbed
/// like everything else). Does nothing unless crash reports are on.
///
/// ```
/// consentry_api::add_breadcrumb("config", "loaded 3 profiles", consentry_api::Level::Info);
/// ```
#[inline]
pub fn add_breadcrumb(category: &str, message: &str, level: Level) {
    if STATE.load(Ordering::Relaxed) == ON
        && let Some(backend) = BACKEND.get()
    {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            backend.add_breadcrumb(category, message, level);
        }));
    }
}

/// For the backend (`consentry`) only: installing it and driving the switches. Not part of
/// the API libraries use.
#[doc(hidden)]
pub mod backend {
    use super::*;

    /// Installs the backend (once per process; later calls keep the first).
    pub fn install(backend: &'static dyn Backend) {
        let _ = BACKEND.set(backend);
    }

    /// Whether crash reports are on.
    pub fn crash_on() -> bool {
        STATE.load(Ordering::Acquire) == ON
    }

    /// Turns crash reports on or off (after `init`: captures are no longer kept early).
    pub fn set_crash(on: bool) {
        STATE.store(if on { ON } else { OFF }, Ordering::Release);
    }

    /// Whether usage pings are on.
    pub fn usage_on() -> bool {
        USAGE_ON.load(Ordering::Acquire)
    }

    /// Turns usage pings on or off.
    pub fn set_usage(on: bool) {
        USAGE_ON.store(on, Ordering::Release);
    }

    /// This crate's source directory, as this build sees it (to tell its frames from the
    /// app's in a stack trace).
    pub const SOURCE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

    /// Takes the errors kept before `init`, emptying the buffer.
    pub fn drain_early() -> Vec<EarlyEvent> {
        early::drain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_version_4() {
        let a = EventId::new_random();
        let b = EventId::new_random();
        assert_ne!(a, b);
        assert_eq!(a.as_bytes()[6] >> 4, 4);
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn type_labels() {
        assert_eq!(
            type_label::<std::io::Error>(),
            Some("std::io::error::Error")
        );
        assert_eq!(type_label::<dyn Error>(), None);
    }
}
