//! Building Sentry events: from an error's `source()` chain, from a panic, from a message;
//! then adding what helps fix the bug without identifying anyone (tags, contexts, the
//! anonymous id) and turning the scrubbed event into envelope bytes.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::error::Error;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sentry::protocol::{
    Breadcrumb, ClientSdkInfo, Context, DeviceContext, Event, Exception, Frame, Level, Mechanism,
    OsContext, RuntimeContext, Stacktrace, User, Value as SentryValue,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bound;
use crate::facts::Facts;
use crate::unwind;

/// A test hook: symbolication of a large debug binary can take seconds; tests make it slow
/// on purpose to check that nothing waits for it. Compiled into debug builds only.
fn test_delay() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("CONSENTRY_TEST_SYMBOLICATION_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// What the caller's thread hands to the worker: the event as built, and the raw material
/// that is costly to finish (symbolication happens on the worker).
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) event: Event<'static>,
    pub(crate) backtrace: Option<RawStack>,
    /// Breadcrumbs up to this sequence number belong to the event.
    pub(crate) breadcrumb_seq: u64,
    pub(crate) kind: Kind,
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Error,
    Message,
    Panic,
    /// A native crash (a signal), recorded by [`crate::native`].
    Native,
}

/// The name of the type `E`, without generic arguments, for an exception's `type`.
fn type_label<E: ?Sized>() -> Option<String> {
    clean_type_name(std::any::type_name::<E>())
}

/// A type name for an exception: without generic arguments, `std::io::Error` for I/O
/// errors, the pointee's for a `Box`, `Arc` or `Rc`; `None` for a trait object or a
/// reference (their `Debug` names them better).
fn clean_type_name(name: &str) -> Option<String> {
    if name.starts_with("dyn ") || name.starts_with('&') {
        return None;
    }
    for pointer in ["alloc::boxed::Box<", "alloc::sync::Arc<", "alloc::rc::Rc<"] {
        if let Some(inner) = name.strip_prefix(pointer) {
            return clean_type_name(inner.strip_suffix('>').unwrap_or(inner));
        }
    }
    let name = name.split('<').next().unwrap_or(name);
    Some(match name {
        "std::io::error::Error" => IO_ERROR.to_owned(),
        other => other.to_owned(),
    })
}

/// The name of `std::io::Error`, whichever way it was found (its static type, a downcast,
/// or the shape of its `Debug`).
const IO_ERROR: &str = "std::io::Error";

/// The type of an exception whose `Debug` does not say one: neither a Rust type's name
/// nor the start of the error's message (the server would group unrelated errors by
/// their message's first word).
const GENERIC_TYPE: &str = "Error";

/// The type of a chain link: `std::io::Error` for I/O errors (sentry would say `Custom`, `Os`
/// or `Kind`), else what its `Debug` output names (see [`debug_type`]).
fn link_type(err: &(dyn Error + 'static), display: &str) -> String {
    if err.downcast_ref::<std::io::Error>().is_some() {
        return IO_ERROR.to_owned();
    }
    debug_type(err, display)
}

/// Whether the first word of a `Debug` output reads as a Rust type's name: an identifier
/// or a path of them (`ParseErr`, `io::Error`, `reqwest::Error`) whose last segment starts
/// with an uppercase letter; not a message's first word (`command`, `root:`), a number, or
/// a token (more than four digits, longer than 64 bytes, or a last segment of more than
/// eight bytes without a lowercase letter: `AKIAIOSFODNN7EXAMPLE`).
fn type_like(word: &str) -> bool {
    let segments: Vec<&str> = word.split("::").collect();
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    word.len() <= 64
        && segments.iter().all(|s| ident(s))
        && segments
            .last()
            .and_then(|s| s.chars().next())
            .is_some_and(char::is_uppercase)
        && word.bytes().filter(u8::is_ascii_digit).count() <= 4
        && segments
            .last()
            .is_some_and(|s| s.len() <= 8 || s.chars().any(char::is_lowercase))
}

/// What `value`'s `Debug` output names, formatting no more than that: its first word when
/// it reads as a type's name ([`type_like`]) and the output is not the error's message
/// (`display`) again (anyhow's errors and many hand-written `Debug`s print the message:
/// its first word is no type); `std::io::Error` for the shapes of that type's `Debug` (a
/// trait object cannot be downcast unless it is `'static`); else [`GENERIC_TYPE`]. The
/// writer stops the formatting as soon as that is known, so a `Debug` that would recurse
/// through a 5,000-link chain (and overflow the stack) or print megabytes is never run far.
fn debug_type(value: &dyn fmt::Debug, display: &str) -> String {
    /// The most bytes of the message compared with the `Debug` output.
    const COMPARED: usize = 256;
    /// The most bytes kept of the output's start (`std::io::Error`'s shapes).
    const HEAD: usize = 64;
    struct Probe<'a> {
        word: String,
        word_done: bool,
        /// The first bytes of the output (for `std::io::Error`'s shapes).
        head: String,
        expect: &'a str,
        matched: usize,
        mismatch: bool,
        /// The output went on past the message.
        longer: bool,
    }
    impl fmt::Write for Probe<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if self.head.len() < HEAD {
                    self.head.push(c);
                }
                if !self.word_done {
                    if c.is_alphanumeric() || c == '_' || c == ':' {
                        if self.word.len() >= 128 {
                            // No type's name is that long.
                            self.word.clear();
                            self.word_done = true;
                        } else {
                            self.word.push(c);
                        }
                    } else if !self.word.is_empty() || !c.is_whitespace() {
                        self.word_done = true;
                    }
                }
                if self.mismatch {
                } else if self.matched >= self.expect.len() {
                    self.longer = true;
                } else if self.expect[self.matched..].starts_with(c) {
                    self.matched += c.len_utf8();
                } else {
                    self.mismatch = true;
                }
                let compared = self.mismatch || self.longer;
                if self.word_done && compared && self.head.len() >= HEAD {
                    return Err(fmt::Error);
                }
            }
            Ok(())
        }
    }
    let mut end = display.len().min(COMPARED);
    while !display.is_char_boundary(end) {
        end -= 1;
    }
    let mut w = Probe {
        word: String::with_capacity(32),
        word_done: false,
        head: String::with_capacity(HEAD + 4),
        expect: &display[..end],
        matched: 0,
        mismatch: false,
        longer: false,
    };
    let _ = fmt::write(&mut w, format_args!("{value:?}"));
    // `Os { code: 2, kind: NotFound, message: ".." }`, `Custom { kind: Other, error: ".." }`,
    // `Kind(NotFound)`, `Error { kind: NotFound, message: ".." }` (a constant message).
    let io_shapes = ["Os { code: ", "Custom { kind: ", "Kind("];
    if io_shapes.iter().any(|p| w.head.starts_with(p))
        || w.head.starts_with("Error { kind: ") && w.head.contains(", message: \"")
    {
        return IO_ERROR.to_owned();
    }
    // The output starts with the message: the word is the message's. Unless the output is
    // the message and the message one word: a unit error whose message is its name
    // (`Timeout`; an anyhow error whose whole message is `Timeout`, without a backtrace,
    // looks the same).
    let repeats_message = !w.expect.is_empty()
        && w.matched >= w.expect.len()
        && (w.longer || w.expect.trim() != w.word);
    if type_like(&w.word) && !repeats_message {
        w.word
    } else {
        GENERIC_TYPE.to_owned()
    }
}

/// The key under which an I/O error's `ErrorKind` (`NotFound`, `Interrupted`) is kept in
/// its exception's mechanism: what [`crate::Ignore::error_type`] also matches.
pub(crate) const IO_KIND_KEY: &str = "io_error_kind";

fn io_kind_data(kind: String) -> BTreeMap<String, SentryValue> {
    BTreeMap::from([(IO_KIND_KEY.to_owned(), SentryValue::from(kind))])
}

/// The `ErrorKind` of an I/O error from its `Debug` (`Kind(NotFound)`, `Os { code: 2,
/// kind: NotFound, .. }`, `Custom { kind: Other, .. }`), formatting at most 128 bytes.
fn io_kind_of_debug(value: &dyn fmt::Debug) -> Option<String> {
    let text = capped_text(&format_args!("{value:?}"), false, 128);
    let rest = text
        .strip_prefix("Kind(")
        .or_else(|| text.split_once("kind: ").map(|(_, r)| r))?;
    let kind: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!kind.is_empty()).then_some(kind)
}

/// The part of an exception's type that the fingerprint groups by: the last segment of its
/// path (`ParseErr` for `mylib::parse::ParseErr`), which is all an error's `Debug` says
/// when it is captured as a trait object (`capture_error(&*boxed)`), so one error has one
/// fingerprint whichever way it was captured; `std::io::Error` whole (it is named so in
/// every form), and so is any path whose last segment is a generic name (`reqwest::Error`,
/// `serde_json::Error`: cut to `Error`, two crates' errors would group as one).
pub(crate) fn grouping_type(ty: &str) -> &str {
    const GENERIC: &[&str] = &["Error", "Errors", "ErrorKind", "Failure", "Fault"];
    let last = ty.rsplit("::").next().unwrap_or(ty);
    if ty == IO_ERROR || GENERIC.contains(&last) {
        return ty;
    }
    last
}

/// `value`'s `Display`, formatting at most [`bound::TEXT_MAX`] bytes (a 50 MB message is
/// never built), cut at a token boundary.
pub(crate) fn bounded_display(value: &dyn fmt::Display) -> String {
    // One byte past the limit (or the mark) is what tells `cut` that something was dropped.
    let mut w = Capped::new(bound::TEXT_MAX + 1, true);
    let _ = fmt::write(&mut w, format_args!("{value}"));
    bound::cut_owned(w.text, bound::TEXT_MAX)
}

/// A writer that keeps at most `max` bytes (cut at a character boundary) and stops the
/// formatting past them, so a 50 MB message is never built; with `mark`, a NUL after what
/// was kept says that something was dropped when the cut fell short of `max`.
struct Capped {
    text: String,
    max: usize,
    mark: bool,
}

impl Capped {
    fn new(max: usize, mark: bool) -> Capped {
        // Most texts fit: one allocation instead of a doubling series.
        Capped {
            text: String::with_capacity(max.min(128)),
            max,
            mark,
        }
    }
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.max - self.text.len().min(self.max);
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        let mut end = room;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.text.push_str(&s[..end]);
        if self.mark && self.text.len() < self.max {
            self.text.push('\u{0}');
        }
        Err(fmt::Error)
    }
}

fn exception(ty: String, value: String) -> Exception {
    Exception {
        ty,
        value: Some(value),
        ..Default::default()
    }
}

/// An event with one exception per link of the `source()` chain, root cause first and the
/// error itself last (Sentry's order). A chain longer than [`bound::CHAIN_MAX`] keeps its
/// outermost and innermost links (the error and its root cause) and says how many were left
/// out; only the kept links are formatted.
pub(crate) fn event_from_error<E: Error + ?Sized>(err: &E) -> Event<'static> {
    event_with_top_type(err, type_label::<E>())
}

/// [`event_from_error`] for an error the facade hands over as a trait object, with its
/// static type's name when the caller's error was not one.
pub(crate) fn event_from_dyn_error(err: &dyn Error, type_name: Option<&str>) -> Event<'static> {
    event_with_top_type(err, type_name.and_then(clean_type_name))
}

/// The event of `err`, whose type is `top_type` (its static type's name) when known, else
/// what its `Debug` says.
fn event_with_top_type<E: Error + ?Sized>(err: &E, top_type: Option<String>) -> Event<'static> {
    let mut links: Vec<&(dyn Error + 'static)> = Vec::new();
    let mut source = err.source();
    // A cycle in a hand-written `source()` must not loop forever.
    while let Some(link) = source
        && links.len() < bound::CHAIN_WALK_MAX
    {
        links.push(link);
        source = link.source();
    }
    let total = links.len() + 1;
    let keep = bound::keep_ends(total, bound::CHAIN_MAX);
    // One allocation for the kept links (each exception is half a kilobyte).
    let mut exceptions = Vec::with_capacity(total.min(bound::CHAIN_MAX));
    let display = bounded_display(&err);
    let top_type = top_type.unwrap_or_else(|| debug_type(&err, &display));
    let top_kind = (top_type == IO_ERROR)
        .then(|| io_kind_of_debug(&err))
        .flatten();
    exceptions.push(exception(top_type, display));
    for (i, link) in links.iter().enumerate() {
        if keep(i + 1) {
            let display = bounded_display(link);
            let mut e = exception(link_type(*link, &display), display);
            if let Some(io) = link.downcast_ref::<std::io::Error>() {
                e.mechanism = Some(Mechanism {
                    ty: "chained".into(),
                    data: io_kind_data(format!("{:?}", io.kind())),
                    ..Default::default()
                });
            }
            exceptions.push(e);
        }
    }
    exceptions.reverse();
    if let Some(top) = exceptions.last_mut() {
        top.mechanism = Some(Mechanism {
            ty: "generic".into(),
            handled: Some(true),
            data: top_kind.map(io_kind_data).unwrap_or_default(),
            ..Default::default()
        });
    }
    let mut extra = BTreeMap::new();
    if total > bound::CHAIN_MAX {
        extra.insert(
            "consentry.chain_links_left_out".to_owned(),
            SentryValue::from(total - bound::CHAIN_MAX),
        );
    }
    Event {
        level: Level::Error,
        exception: exceptions.into(),
        extra,
        ..Default::default()
    }
}

/// An event for an error or message kept by the facade before `init`: it keeps the id
/// returned to the caller and the time it was captured.
pub(crate) fn event_from_early(e: consentry_api::EarlyEvent) -> Event<'static> {
    let mut event = Event {
        event_id: Uuid::from_bytes(*e.id.as_bytes()),
        level: sentry_level(e.level),
        timestamp: e.time,
        ..Default::default()
    };
    if e.is_message {
        event.message = e.links.into_iter().map(|(_, v)| v).next();
        return event;
    }
    let mut exceptions: Vec<Exception> = e
        .links
        .into_iter()
        // The buffer kept the first word of each link's `Debug`: a type's name, or not.
        .map(|(ty, value)| {
            let ty = if type_like(&ty) {
                ty
            } else {
                GENERIC_TYPE.to_owned()
            };
            exception(ty, value)
        })
        .collect();
    exceptions.reverse();
    if let Some(top) = exceptions.last_mut() {
        top.mechanism = Some(Mechanism {
            ty: "generic".into(),
            handled: Some(true),
            description: Some("captured before consentry::init".into()),
            ..Default::default()
        });
    }
    event.exception = exceptions.into();
    event
}

/// The protocol's level for consentry's.
pub(crate) fn sentry_level(level: consentry_api::Level) -> Level {
    match level {
        consentry_api::Level::Debug => Level::Debug,
        consentry_api::Level::Info => Level::Info,
        consentry_api::Level::Warning => Level::Warning,
        consentry_api::Level::Fatal => Level::Fatal,
        _ => Level::Error,
    }
}

/// An event for a message.
pub(crate) fn event_from_message(message: &str, level: Level) -> Event<'static> {
    Event {
        level,
        message: Some(bound::cut(message, bound::TEXT_MAX).into_owned()),
        ..Default::default()
    }
}

/// An event for a panic: message, location, thread name, and a stack trace.
pub(crate) fn event_from_panic(
    message: String,
    location: Option<String>,
    thread: Option<String>,
    stacktrace: Option<Stacktrace>,
) -> Event<'static> {
    let mut contexts = BTreeMap::new();
    let mut panic = BTreeMap::new();
    if let Some(location) = location {
        panic.insert("location".to_owned(), SentryValue::from(location));
    }
    if let Some(thread) = thread {
        panic.insert("thread".to_owned(), SentryValue::from(thread));
    }
    contexts.insert("panic".to_owned(), Context::Other(panic));
    Event {
        level: Level::Fatal,
        exception: vec![Exception {
            ty: "panic".into(),
            value: Some(bound::cut_owned(message, bound::TEXT_MAX)),
            stacktrace,
            mechanism: Some(Mechanism {
                ty: "panic".into(),
                handled: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        }]
        .into(),
        contexts,
        ..Default::default()
    }
}

/// Frames that belong to capturing, not to the bug: trimmed from the innermost end.
const MACHINERY: &[&str] = &[
    "backtrace::",
    "consentry::",
    "std::panicking",
    "core::panicking",
    "std::panic::",
    "core::panic::",
    "rust_begin_unwind",
    "std::sys::backtrace",
    "std::sys_common::backtrace",
    "__rustc::rust_begin_unwind",
    "__rust_try",
];

/// Functions that are never the app's own code.
const NOT_IN_APP: &[&str] = &[
    "std::",
    "core::",
    "alloc::",
    "backtrace::",
    "sentry",
    "consentry::",
    "__rust",
    "___rust",
    "rust_begin_unwind",
    "_start",
    "__libc_start",
    "anyhow::",
    "log::",
    "tracing",
    "tokio::",
    "<unknown>",
];

/// Resolves a backtrace into a Sentry stack trace: symbols, trimming of the capture
/// machinery, and `in_app` marks (standard library and registry crates are not in-app).
pub(crate) fn stacktrace_from(stack: &RawStack, app_crate: Option<&str>) -> Option<Stacktrace> {
    test_delay();
    let mut st = symbolicate(stack)?;
    full_names(&mut st.frames);
    // Frames are outermost first; the capture machinery sits at the end. Everything from
    // the outermost consentry frame inward is ours (capture_error, its closures, the panic
    // hook); what the compiler inlined away leaves only the backtrace crate's frames.
    if let Some(ours) = st.frames.iter().position(is_ours) {
        st.frames.truncate(ours);
    }
    // In a build without symbols (`strip = true`) every Rust frame is `<unknown>`: they are
    // kept, as bare addresses a server with the debug files symbolicates.
    let stripped = !st
        .frames
        .iter()
        .any(|f| f.function.as_deref().is_some_and(|n| n.contains("::")));
    while st
        .frames
        .last()
        .is_some_and(|f| is_machinery(f) && !(stripped && is_unknown(f)))
    {
        st.frames.pop();
    }
    // The process entry point's caller: an unknown frame at address 0.
    if st
        .frames
        .first()
        .is_some_and(|f| f.function.as_deref() == Some("<unknown>"))
    {
        st.frames.remove(0);
    }
    // For a panic: cut at the outermost frame of the innermost run of panic-entry frames.
    let entry = |f: &Frame| {
        let func = f.function.as_deref().unwrap_or("");
        PANIC_ENTRY.iter().any(|p| func.starts_with(p))
    };
    if let Some(mut start) = st.frames.iter().rposition(entry) {
        while start > 0 && st.frames.get(start - 1).is_some_and(entry) {
            start -= 1;
        }
        st.frames.truncate(start);
    }
    mark_in_app(&mut st, app_crate);
    bound_frames(&mut st);
    (!st.frames.is_empty()).then_some(st)
}

/// Frames whose debug information kept only a short name (`debug = "line-tables-only"`:
/// `main`, `load`) take the full one from the executable's symbol table (`mytool::main`),
/// so the crate of each frame is known whatever the profile. Only the outermost frame of an
/// address is a symbol of its own (the others were inlined into it). `frames` outermost
/// first, with return addresses (looked up one byte before).
pub(crate) fn full_names(frames: &mut [Frame]) {
    let addr = |f: &Frame| f.instruction_addr.map(|a| a.0);
    let outer: Vec<usize> = (0..frames.len())
        .filter(|&i| i == 0 || addr(&frames[i - 1]) != addr(&frames[i]))
        .filter(|&i| {
            frames[i]
                .function
                .as_deref()
                .is_some_and(|f| !f.contains("::") && f != "<unknown>")
        })
        .collect();
    let lookups: Vec<u64> = outer
        .iter()
        .map(|&i| addr(&frames[i]).unwrap_or(0).saturating_sub(1))
        .collect();
    if lookups.is_empty() {
        return;
    }
    for (&i, full) in outer.iter().zip(crate::modules::executable_names(&lookups)) {
        let frame = &mut frames[i];
        if let (Some(short), Some(full)) = (frame.function.as_deref(), full)
            && let Some(name) = crate::modules::fuller_name(short, &full)
        {
            frame.function = Some(name);
        }
    }
}

/// The source directories of consentry's own crates, as this build of them sees them.
const OWN_SOURCES: [&str; 2] = [
    concat!(env!("CARGO_MANIFEST_DIR"), "/src/"),
    consentry_api::backend::SOURCE_DIR,
];

/// Whether a frame is consentry's own: by its function's path, or, when the symbol lost
/// its path (`debug = "line-tables-only"` keeps bare function names), by its file.
fn is_ours(f: &Frame) -> bool {
    let func = f.function.as_deref().unwrap_or("");
    let path = f.abs_path.as_deref().unwrap_or("");
    [
        "consentry::",
        "<consentry::",
        "consentry_api::",
        "<consentry_api::",
    ]
    .iter()
    .any(|p| func.starts_with(p))
        || OWN_SOURCES.iter().any(|dir| path.starts_with(dir))
        || path.contains("/consentry-0.") && path.contains("/.cargo/registry/")
        || path.contains("/consentry-api-0.") && path.contains("/.cargo/registry/")
}

/// The most frames walked on the caller's thread (the walk costs per frame; a deep
/// recursion is cut here, then [`bound::FRAMES_MAX`] of these are kept).
const WALK_MAX: usize = 512;

/// A stack as captured: return addresses, innermost first, not yet resolved to symbols
/// (that is done on the worker).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawStack(Vec<usize>);

impl RawStack {
    /// The calling thread's stack (see [`unwind`]: no lock that symbolication holds is
    /// taken, so the app's thread never waits for it).
    #[inline(never)]
    pub(crate) fn capture() -> Self {
        RawStack(unwind::walk(WALK_MAX))
    }

    /// Instruction addresses, innermost first.
    pub(crate) fn addresses(&self) -> &[usize] {
        &self.0
    }
}

/// The most bytes of std's `Backtrace` text read (a deep recursion prints megabytes; the
/// text starts at the innermost frame, which is what is kept).
pub(crate) const BACKTRACE_TEXT_MAX: usize = 64 * 1024;

/// `value`'s `Display` (`{:#}` when `alternate`), formatting at most `max` bytes.
pub(crate) fn capped_text(value: &dyn fmt::Display, alternate: bool, max: usize) -> String {
    let mut w = Capped::new(max, false);
    let _ = if alternate {
        fmt::write(&mut w, format_args!("{value:#}"))
    } else {
        fmt::write(&mut w, format_args!("{value}"))
    };
    w.text
}

/// A stack trace from std's `Backtrace` text (anyhow's), made like [`stacktrace_from`]
/// makes one from a raw stack: full function names, the capture machinery trimmed from the
/// innermost end (std's `Backtrace::capture`, anyhow's constructors and the `From`/`Into`
/// conversions that called them, consentry's own frames), the app's frames marked by crate
/// and file, and bounded like ours. Both of std's forms are read: `{}` (names without
/// hashes, paths relative to the working directory) and `{:#}` (addresses, crate
/// disambiguators and symbol hashes, absolute paths).
#[cfg_attr(not(feature = "anyhow"), allow(dead_code))]
pub(crate) fn parsed_stacktrace(text: &str, app_crate: Option<&str>) -> Option<Stacktrace> {
    // A deep recursion prints megabytes; only the frames that are kept are parsed.
    let text = bound::cut(text, BACKTRACE_TEXT_MAX);
    let mut frames = parse_std_backtrace(&text);
    // Innermost first in the text; Sentry's order is outermost first.
    frames.reverse();
    let mut st = Stacktrace {
        frames,
        ..Default::default()
    };
    // The process entry point's caller: an unknown frame at address 0.
    if st.frames.first().is_some_and(is_unknown) {
        st.frames.remove(0);
    }
    if st.frames.iter().any(|f| f.instruction_addr.is_some()) {
        full_names(&mut st.frames);
    }
    let stripped = !st
        .frames
        .iter()
        .any(|f| f.function.as_deref().is_some_and(|n| n.contains("::")));
    while st.frames.last().is_some_and(|f| {
        (is_machinery(f) || is_ours(f) || is_error_construction(f)) && !(stripped && is_unknown(f))
    }) {
        st.frames.pop();
    }
    mark_in_app(&mut st, app_crate);
    bound_frames(&mut st);
    (!st.frames.is_empty()).then_some(st)
}

/// The frames of std's `Backtrace` text, innermost first: `  N: name` (`{:#}`:
/// `  N:     0x55d5c0a1b2c3 - name::h0123456789abcdef`), each optionally followed by an
/// indented `at path:line:col`; a function inlined into the frame before has an indented
/// name without a number (and the same address).
fn parse_std_backtrace(text: &str) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    // Whether the last frame can still take its `at` line.
    let mut open = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if let Some(at) = t.strip_prefix("at ") {
            if open && let Some(frame) = frames.last_mut() {
                let (path, lineno, colno) = split_location(at);
                let path = bound::cut(path, 1024).into_owned();
                frame.filename = Some(path.rsplit(['/', '\\']).next().unwrap_or(&path).to_owned());
                frame.abs_path = Some(path);
                frame.lineno = lineno;
                frame.colno = colno;
            }
            open = false;
            continue;
        }
        let numbered = t
            .split_once(':')
            .filter(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let (addr, name) = match numbered {
            Some((_, rest)) => {
                let rest = rest.trim();
                match rest.split_once(" - ") {
                    Some((a, name)) if a.starts_with("0x") => {
                        (u64::from_str_radix(&a[2..], 16).ok(), name.trim())
                    }
                    _ => (None, rest),
                }
            }
            // An inlined function's line: indented, after a frame of the same address.
            None if line.starts_with(' ') && !frames.is_empty() && !t.starts_with("note:") => (
                frames.last().and_then(|f| f.instruction_addr).map(|a| a.0),
                t,
            ),
            None => {
                open = false;
                continue;
            }
        };
        frames.push(Frame {
            function: Some(bound::cut_owned(clean_symbol(name), 1024)),
            instruction_addr: addr.map(Into::into),
            ..Default::default()
        });
        open = true;
    }
    frames
}

/// `path:line:col` (line and column each optional) into its parts; a path may hold a colon
/// itself (`C:\src\main.rs`).
fn split_location(at: &str) -> (&str, Option<u64>, Option<u64>) {
    fn number(s: &str) -> Option<(&str, u64)> {
        s.rsplit_once(':')
            .and_then(|(rest, n)| n.parse::<u64>().ok().map(|n| (rest, n)))
    }
    match number(at) {
        Some((rest, last)) => match number(rest) {
            Some((path, line)) => (path, Some(line), Some(last)),
            None => (rest, Some(last), None),
        },
        None => (at, None, None),
    }
}

/// A symbol as std's `{:#}` form prints it, as the `{}` form and our own symbolication do:
/// without the crate disambiguators (`std[e28293b1aa0f68bd]::`) and the trailing hash
/// (`::h0123456789abcdef`).
fn clean_symbol(name: &str) -> String {
    let is_hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(']') {
            Some(j)
                if is_hex(&after[..j])
                    && out.ends_with(|c: char| c.is_alphanumeric() || c == '_') =>
            {
                rest = &after[j + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if let Some((head, hash)) = out.rsplit_once("::h")
        && hash.len() == 16
        && is_hex(hash)
    {
        out.truncate(head.len());
    }
    out
}

/// Frames of making an error and capturing its backtrace, inward of the code that made it:
/// std's `Backtrace::capture`, anyhow's constructors, and the `From`/`Into` conversions
/// (`?`) that called them.
fn is_error_construction(frame: &Frame) -> bool {
    let func = frame.function.as_deref().unwrap_or("");
    [
        "anyhow::",
        "<anyhow::",
        "std::backtrace",
        "<std::backtrace",
        "core::convert::",
    ]
    .iter()
    .any(|p| func.starts_with(p))
        || func.starts_with('<')
            && [
                " as anyhow::",
                " as core::convert::From<",
                " as core::convert::Into<",
            ]
            .iter()
            .any(|m| func.contains(m))
}

/// At most [`bound::FRAMES_MAX`] frames: the outermost and the innermost (a deep recursion
/// keeps where it started and where it failed).
fn bound_frames(st: &mut Stacktrace) {
    normalise_paths(st);
    let n = st.frames.len();
    let keep = bound::keep_ends(n, bound::FRAMES_MAX);
    let mut i = 0;
    st.frames.retain(|_| {
        i += 1;
        keep(i - 1)
    });
}

/// Paths of registry and git dependencies, wherever the Cargo home of the machine that built
/// the binary was (`/home/dev/.cargo`, `/root/.cargo`, `$CARGO_HOME`), become
/// `~/.cargo/registry/src/...` and `~/.cargo/git/checkouts/...`: the builder's home and user
/// name never leave, whatever the scrubber knows of this machine.
fn normalise_paths(st: &mut Stacktrace) {
    // Cargo's own layout: the segment after the marker is `<source>-<16 hex digits>`
    // (`index.crates.io-1949cf8c6b5b557f`, `mylib-1a2b3c4d5e6f7a8b`), so an app's own
    // `registry/src/` directory is not taken for it.
    let cargo_segment = |rest: &str| {
        let segment = rest.split(['/', '\\']).next().unwrap_or("");
        segment.rsplit_once('-').is_some_and(|(name, hash)| {
            !name.is_empty() && hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())
        })
    };
    for frame in &mut st.frames {
        let Some(path) = frame.abs_path.as_deref() else {
            continue;
        };
        let cut = ["/registry/src/", "/git/checkouts/", "\\registry\\src\\"]
            .iter()
            .filter_map(|m| path.find(m).map(|i| (i, m.len())))
            .filter(|&(i, len)| cargo_segment(&path[i + len..]))
            .map(|(i, _)| i)
            .min();
        if let Some(i) = cut
            && !path.starts_with("~/.cargo/")
        {
            frame.abs_path = Some(format!("~/.cargo{}", &path[i..]));
        }
    }
}

/// Marks the app's own frames: not the standard library, registry crates, consentry, or C.
///
/// In every profile: the app's crate (`app_crate`, from `app_info!`) by the function's path;
/// when symbols lost their paths (`line-tables-only`), by the frame's file, which is the
/// app's when it is neither the standard library's, a registry crate's, consentry's, nor
/// a C file.
fn mark_in_app(st: &mut Stacktrace, app_crate: Option<&str>) {
    normalise_paths(st);
    let app_prefixes = app_crate.map(|c| {
        let c = c.replace('-', "_");
        [format!("{c}::"), format!("<{c}::")]
    });
    for frame in &mut st.frames {
        let func = frame.function.as_deref().unwrap_or("");
        let path = frame.abs_path.as_deref().unwrap_or("");
        let third_party = path.contains("/.cargo/registry/")
            || path.contains("/.cargo/git/")
            || path.contains("\\.cargo\\registry\\")
            || path.starts_with("/rustc/")
            || path.contains("/rustlib/");
        let app_by_name = app_prefixes
            .as_ref()
            .is_some_and(|ps| ps.iter().any(|p| func.starts_with(p.as_str())));
        let in_app = if is_ours(frame) || third_party {
            false
        } else if app_by_name {
            true
        } else if !func.contains("::") {
            // No path in the name: C (the C `main`, libc's thread start; glibc's files are
            // build-relative), or a Rust frame whose symbol lost its path: then its file
            // says whose it is.
            !path.is_empty()
                && !path.starts_with("./")
                && (path.ends_with(".rs") || path.contains(".rs:"))
                && !func.starts_with("__")
        } else {
            !NOT_IN_APP.iter().any(|m| func.starts_with(m))
        };
        // Without a name or a file nobody here can tell; the server decides after it
        // symbolicated the address.
        frame.in_app = (!(is_unknown(frame) && path.is_empty())).then_some(in_app);
    }
}

/// A native crash's frames (outermost first, symbolicated where possible) as a Sentry stack
/// trace: the app's frames marked, bounded like every other.
pub(crate) fn native_stacktrace(frames: Vec<Frame>, app_crate: Option<&str>) -> Option<Stacktrace> {
    let mut st = Stacktrace {
        frames,
        ..Default::default()
    };
    mark_in_app(&mut st, app_crate);
    bound_frames(&mut st);
    (!st.frames.is_empty()).then_some(st)
}

/// Frames with the symbols of each address (one frame per inlined function, innermost
/// first within an address), or a bare address a server with debug files can resolve.
fn symbolicate(stack: &RawStack) -> Option<Stacktrace> {
    let mut frames = Vec::with_capacity(stack.0.len());
    for &ip in &stack.0 {
        let mut resolved = symbol_frames(ip as u64, false, usize::MAX);
        if resolved.is_empty() {
            resolved.push(Frame::default());
        }
        for mut frame in resolved {
            frame.function.get_or_insert_with(|| "<unknown>".to_owned());
            frame.instruction_addr = Some(ip.into());
            frames.push(frame);
        }
    }
    Stacktrace::from_frames_reversed(frames)
}

/// Function (demangled, without its hash), file and line of an address of this process:
/// each inlined call a frame, innermost first, at most `max`. A return address is looked up
/// at its call (one byte before), a program counter (`is_pc`: where a signal stopped the
/// thread) as it is.
pub(crate) fn symbol_frames(addr: u64, is_pc: bool, max: usize) -> Vec<Frame> {
    // `backtrace::resolve` takes every address for a return address and looks one byte
    // before it: a program counter is handed over one byte after.
    let lookup = if is_pc { addr.saturating_add(1) } else { addr };
    let mut out = Vec::new();
    backtrace::resolve(lookup as usize as *mut std::ffi::c_void, |sym| {
        if out.len() >= max {
            return;
        }
        let abs_path = sym.filename().map(|p| p.to_string_lossy().into_owned());
        out.push(Frame {
            // `{:#}`: demangled without the hash (`mytool::main`, not `...::h0123...`).
            function: sym.name().map(|name| format!("{name:#}")),
            filename: abs_path
                .as_deref()
                .map(|p| p.rsplit(['/', '\\']).next().unwrap_or(p).to_owned()),
            abs_path,
            lineno: sym.lineno().map(u64::from),
            colno: sym.colno().map(u64::from),
            ..Default::default()
        });
    });
    out
}

/// A stack trace of bare instruction addresses, without symbolication: fast, for the copy
/// of a panic report stored before symbolication. Sentry can symbolicate it server-side
/// when debug files are uploaded.
pub(crate) fn stacktrace_unresolved(stack: &RawStack) -> Option<Stacktrace> {
    let frames: Vec<Frame> = stack
        .0
        .iter()
        .map(|&ip| Frame {
            instruction_addr: Some(ip.into()),
            function: Some("<unresolved>".into()),
            ..Default::default()
        })
        .collect();
    let mut st = Stacktrace::from_frames_reversed(frames)?;
    bound_frames(&mut st);
    Some(st)
}

/// Where a panic enters the standard library: everything from here inward is the panic
/// machinery, not the bug.
const PANIC_ENTRY: &[&str] = &[
    "core::panicking::",
    "rust_begin_unwind",
    "__rustc::rust_begin_unwind",
    "std::panicking::begin_panic",
    "std::panic::panic_any",
];

fn is_unknown(frame: &Frame) -> bool {
    frame.function.as_deref().is_none_or(|f| f == "<unknown>")
}

fn is_machinery(frame: &Frame) -> bool {
    let func = frame.function.as_deref().unwrap_or("<unknown>");
    func == "<unknown>" || MACHINERY.iter().any(|m| func.starts_with(m))
}

/// The key under which repeats of the same error are counted: the exception types and
/// where it was captured (the raw return addresses of the capturing thread's stack, which
/// do not depend on whether symbolication had time to run), or, without a backtrace, the
/// types and the message.
pub(crate) fn dedup_key(event: &Event<'static>, stack: Option<&RawStack>) -> String {
    use std::hash::{Hash, Hasher};
    let location = stack.map(|stack| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        stack.0.hash(&mut h);
        format!("{:016x}", h.finish())
    });
    if let Some(top) = event.exception.last() {
        let types: Vec<&str> = event.exception.iter().map(|e| e.ty.as_str()).collect();
        match location {
            Some(location) => format!("{}@{location}", types.join("<")),
            None => format!("{}:{}", types.join("<"), top.value.as_deref().unwrap_or("")),
        }
    } else {
        format!("message:{}", event.message.as_deref().unwrap_or(""))
    }
}

/// What is added to every event.
#[derive(Debug, Clone)]
pub(crate) struct Enrichment {
    pub(crate) app_name: String,
    pub(crate) app_version: String,
    pub(crate) environment: String,
    pub(crate) anonymous_id: Uuid,
    pub(crate) facts: Facts,
    pub(crate) report_ci: bool,
}

impl Enrichment {
    /// Tags, contexts, user, release, SDK; clears `server_name` and debug images.
    pub(crate) fn apply(&self, event: &mut Event<'static>) {
        let f = &self.facts;
        event.platform = "native".into();
        // A native crash's report keeps the release that crashed (an update may come
        // between the crash and the start that reports it).
        if event.release.is_none() {
            event.release = Some(Cow::Owned(format!(
                "{}@{}",
                self.app_name, self.app_version
            )));
        }
        event.environment = Some(Cow::Owned(self.environment.clone()));
        event.server_name = None;
        // The loaded images' build ids and load addresses, so a server that holds the debug
        // files (`sentry-cli debug-files upload`) symbolicates a stripped release build;
        // file names only, never a directory. Only with a stack trace to symbolicate.
        let has_stack =
            event.stacktrace.is_some() || event.exception.iter().any(|e| e.stacktrace.is_some());
        // A native crash's report already holds the crashed process's images.
        if !has_stack {
            event.debug_meta = Default::default();
        } else if event.debug_meta.images.is_empty() {
            event.debug_meta = Cow::Owned(sentry::protocol::DebugMeta {
                images: debug_images().to_vec(),
                ..Default::default()
            });
        }
        event.user = Some(User {
            id: Some(self.anonymous_id.to_string()),
            ..Default::default()
        });
        let mut tags = vec![
            ("app", self.app_name.clone()),
            ("app.version", self.app_version.clone()),
            ("os.name", f.os_name.clone()),
            ("os.version", f.os_version.clone()),
            ("arch", f.arch.to_owned()),
            ("rust.version", f.rust_version.to_owned()),
            ("install.source", f.install_source.as_str().to_owned()),
            ("container", f.container.to_string()),
            ("wsl", f.wsl.to_string()),
            // The per-process session id. Not "session": that is a deny-listed key (cookies
            // and login sessions), and the scrubber would redact it.
            ("run.id", f.session_id.to_string()),
        ];
        if let Some(exe) = &f.exe_name {
            tags.push(("exe", exe.clone()));
        }
        if self.report_ci
            && let Some(ci) = f.ci
        {
            tags.push(("ci", ci.to_owned()));
        }
        for (k, v) in tags {
            event.tags.entry(k.to_owned()).or_insert(v);
        }
        event.contexts.insert(
            "os".into(),
            OsContext {
                name: Some(f.os_name.clone()),
                version: Some(f.os_version.clone()),
                kernel_version: f.kernel_version.clone(),
                ..Default::default()
            }
            .into(),
        );
        event.contexts.insert(
            "device".into(),
            DeviceContext {
                arch: Some(f.arch.to_owned()),
                ..Default::default()
            }
            .into(),
        );
        event.contexts.insert(
            "rust".into(),
            RuntimeContext {
                name: Some("rustc".into()),
                version: Some(f.rust_version.to_owned()),
                ..Default::default()
            }
            .into(),
        );
        event.sdk = Some(Cow::Owned(ClientSdkInfo {
            name: "consentry".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            integrations: Vec::new(),
            packages: Vec::new(),
        }));
    }
}

/// The loaded images (the executable and its libraries) with their build ids, names cut to
/// the file name, read once per process.
pub(crate) fn debug_images() -> &'static [sentry::protocol::DebugImage] {
    static IMAGES: std::sync::OnceLock<Vec<sentry::protocol::DebugImage>> =
        std::sync::OnceLock::new();
    IMAGES.get_or_init(|| {
        sentry::integrations::debug_images::debug_images()
            .into_iter()
            .map(|image| match image {
                sentry::protocol::DebugImage::Symbolic(mut s) => {
                    s.name = file_name(&s.name);
                    s.debug_file = s.debug_file.map(|f| file_name(&f));
                    sentry::protocol::DebugImage::Symbolic(s)
                }
                other => other,
            })
            .collect()
    })
}

/// The last component of a path (either separator).
fn file_name(path: &str) -> String {
    path.rsplit(['/', '\\']).next().unwrap_or(path).to_owned()
}

/// Removes what must never leave, whatever put it there: `server_name` (the hostname),
/// directories in debug images' paths, IP addresses on the user, request cookies and
/// headers.
pub(crate) fn strip_identifying(event: &mut Value) {
    let Some(obj) = event.as_object_mut() else {
        return;
    };
    obj.remove("server_name");
    // Debug images keep their ids and addresses (a server needs them to symbolicate) and
    // only the file name of each path.
    if let Some(images) = obj
        .get_mut("debug_meta")
        .and_then(|m| m.get_mut("images"))
        .and_then(Value::as_array_mut)
    {
        for image in images.iter_mut().filter_map(Value::as_object_mut) {
            for key in ["code_file", "debug_file", "name"] {
                if let Some(Value::String(p)) = image.get_mut(key) {
                    *p = file_name(p);
                }
            }
        }
    } else {
        obj.remove("debug_meta");
    }
    obj.remove("modules");
    if let Some(user) = obj.get_mut("user").and_then(Value::as_object_mut) {
        user.retain(|k, _| k == "id");
    }
    if let Some(request) = obj.get_mut("request").and_then(Value::as_object_mut) {
        request.remove("cookies");
        request.remove("env");
    }
}

/// A Sentry envelope holding one event: header line, item header, payload.
pub(crate) fn envelope_bytes(event_id: Uuid, event: &Value) -> Vec<u8> {
    let payload = serde_json::to_vec(event).unwrap_or_default();
    let header = json!({ "event_id": event_id.to_string(), "sdk": {"name": "consentry", "version": env!("CARGO_PKG_VERSION")} });
    let item =
        json!({ "type": "event", "length": payload.len(), "content_type": "application/json" });
    let mut out = serde_json::to_vec(&header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(&serde_json::to_vec(&item).unwrap_or_default());
    out.push(b'\n');
    out.extend_from_slice(&payload);
    out.push(b'\n');
    out
}

/// The event payload of an envelope written by [`envelope_bytes`] (for the audit log and
/// `telemetry status`).
pub(crate) fn event_of_envelope(bytes: &[u8]) -> Option<Value> {
    let mut lines = bytes.splitn(3, |b| *b == b'\n');
    let _header = lines.next()?;
    let item: Value = serde_json::from_slice(lines.next()?).ok()?;
    let rest = lines.next()?;
    let len = item
        .get("length")
        .and_then(Value::as_u64)
        .map_or(rest.len(), |n| n as usize);
    serde_json::from_slice(rest.get(..len)?).ok()
}

/// Breadcrumbs recorded while reporting is on (from `log`, `tracing` or the app), kept in a
/// ring of the last 100.
pub(crate) struct Breadcrumbs {
    seq: AtomicU64,
    ring: Mutex<VecDeque<(u64, Breadcrumb)>>,
}

const BREADCRUMBS_KEPT: usize = 100;
/// The most bytes of one breadcrumb's message.
const BREADCRUMB_TEXT_MAX: usize = 1024;

pub(crate) static BREADCRUMBS: Breadcrumbs = Breadcrumbs {
    seq: AtomicU64::new(0),
    ring: Mutex::new(VecDeque::new()),
};

impl Breadcrumbs {
    /// The sequence number of the newest breadcrumb.
    pub(crate) fn current(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    pub(crate) fn add(&self, mut crumb: Breadcrumb) {
        // Bounded in bytes, not only in number: a 5 MB breadcrumb keeps 1 KiB.
        if let Some(m) = crumb.message.take() {
            crumb.message = Some(bound::cut_owned(m, BREADCRUMB_TEXT_MAX));
        }
        if let Some(c) = crumb.category.take() {
            crumb.category = Some(bound::cut_owned(c, 128));
        }
        crumb.data.retain(|k, v| {
            k.len() <= 128 && serde_json::to_string(v).map_or(0, |s| s.len()) <= BREADCRUMB_TEXT_MAX
        });
        if let Ok(mut ring) = self.ring.lock() {
            let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
            if ring.len() >= BREADCRUMBS_KEPT {
                ring.pop_front();
            }
            ring.push_back((seq, crumb));
        }
    }

    /// The breadcrumbs up to `seq`, oldest first.
    pub(crate) fn up_to(&self, seq: u64) -> Vec<Breadcrumb> {
        self.ring
            .lock()
            .map(|ring| {
                ring.iter()
                    .filter(|(s, _)| *s <= seq)
                    .map(|(_, b)| b.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[inline(never)]
    fn first_byte_marker() -> u32 {
        std::hint::black_box(7)
    }

    /// A program counter at a function's first byte (where a stack overflow faults, on the
    /// prologue's first push) is that function's, not the one before it; a return address is
    /// looked up at its call.
    #[test]
    fn a_program_counter_resolves_where_it_points() {
        let start = first_byte_marker as fn() -> u32 as usize as u64;
        let frames = symbol_frames(start, true, 16);
        let top = frames
            .first()
            .and_then(|f| f.function.as_deref())
            .unwrap_or("");
        assert!(top.ends_with("first_byte_marker"), "{frames:?}");
        // The same address as a return address is the byte before: not this function.
        let before = symbol_frames(start, false, 16);
        let name = before
            .first()
            .and_then(|f| f.function.as_deref())
            .unwrap_or("");
        assert!(!name.ends_with("first_byte_marker"), "{before:?}");
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot load config")
        }
    }
    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_root_cause_first_with_real_types() {
        let err = Outer(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such file",
        ));
        let event = event_from_error(&err);
        let ex: Vec<_> = event
            .exception
            .iter()
            .map(|e| (e.ty.clone(), e.value.clone().unwrap()))
            .collect();
        assert_eq!(
            ex,
            vec![
                ("std::io::Error".to_owned(), "no such file".to_owned()),
                (
                    "consentry::report::tests::Outer".to_owned(),
                    "cannot load config".to_owned()
                ),
            ]
        );
        assert_eq!(
            event
                .exception
                .last()
                .unwrap()
                .mechanism
                .as_ref()
                .unwrap()
                .handled,
            Some(true)
        );
    }

    #[test]
    fn dyn_errors_fall_back_to_debug() {
        let err: Box<dyn Error> = "plain".into();
        let event = event_from_error(&*err);
        assert_eq!(
            event.exception.last().unwrap().value.as_deref(),
            Some("plain")
        );
    }

    #[derive(Debug)]
    struct ParseErr {
        line: u32,
    }
    impl std::fmt::Display for ParseErr {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "bad line {}", self.line)
        }
    }
    impl Error for ParseErr {}

    fn top_type(event: &Event<'static>) -> String {
        event.exception.last().unwrap().ty.clone()
    }

    /// A trait object's type comes from its `Debug` only when that names a type: anyhow's
    /// boxed errors print their message, whose first word is no type.
    #[test]
    fn trait_objects_are_never_named_by_their_message() {
        for message in [
            "command failed: exit 1",
            "root: not allowed",
            "ghp_plantedTokenAbcdefghijklmnopqrstuv0123 refused",
            "Command failed: exit 1",
            "AKIAIOSFODNN7EXAMPLE is not a valid key",
        ] {
            let boxed: Box<dyn Error + Send + Sync> = anyhow::anyhow!("{message}").into();
            let event = event_from_dyn_error(&*boxed, None);
            assert_eq!(top_type(&event), "Error", "{message}");
            // The context links of an anyhow error too.
            let err = anyhow::anyhow!("{message}").context(message.to_owned());
            let boxed: Box<dyn Error + Send + Sync> = err.into();
            let event = event_from_dyn_error(&*boxed, None);
            assert!(
                event.exception.iter().all(|e| e.ty == "Error"),
                "{message}: {:?}",
                event.exception
            );
        }
        // What does name a type is kept: a derived `Debug`, a unit error named by its
        // message, an I/O error whatever its shape.
        let boxed: Box<dyn Error> = Box::new(ParseErr { line: 3 });
        assert_eq!(top_type(&event_from_dyn_error(&*boxed, None)), "ParseErr");
        #[derive(Debug)]
        struct Timeout;
        impl std::fmt::Display for Timeout {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("Timeout")
            }
        }
        impl Error for Timeout {}
        let boxed: Box<dyn Error> = Box::new(Timeout);
        assert_eq!(top_type(&event_from_dyn_error(&*boxed, None)), "Timeout");
        for io in [
            std::io::Error::other("x"),
            std::io::Error::from(std::io::ErrorKind::NotFound),
            std::io::Error::from_raw_os_error(2),
        ] {
            let boxed: Box<dyn Error> = Box::new(io);
            assert_eq!(
                top_type(&event_from_dyn_error(&*boxed, None)),
                "std::io::Error"
            );
        }
    }

    #[test]
    fn type_names_read_as_rust_types() {
        for word in [
            "ParseErr",
            "io::Error",
            "Custom",
            "reqwest::Error",
            "Utf8Error",
        ] {
            assert!(type_like(word), "{word}");
        }
        for word in [
            "command",
            "root:",
            "Root:",
            "io::",
            "::Error",
            "mylib::error",
            "4xx",
            "AKIAIOSFODNN7EXAMPLE",
            "",
        ] {
            assert!(!type_like(word), "{word}");
        }
    }

    /// One error, one grouping key, whichever way it was captured: `capture_error(&err)`
    /// (the static type's full path), `capture_error(&*boxed)` (its `Debug`), in an `Arc`.
    #[test]
    fn one_error_groups_alike_whichever_way_it_is_captured() {
        let concrete = top_type(&event_from_error(&ParseErr { line: 3 }));
        assert_eq!(concrete, "consentry::report::tests::ParseErr");
        let named = top_type(&event_from_dyn_error(
            &ParseErr { line: 3 },
            Some(std::any::type_name::<ParseErr>()),
        ));
        let arc = top_type(&event_from_dyn_error(
            &std::sync::Arc::new(ParseErr { line: 3 }),
            Some(std::any::type_name::<std::sync::Arc<ParseErr>>()),
        ));
        assert_eq!(
            (named.as_str(), arc.as_str()),
            (concrete.as_str(), concrete.as_str())
        );
        let boxed: Box<dyn Error + Send + Sync> = Box::new(ParseErr { line: 3 });
        let dynamic = top_type(&event_from_dyn_error(&*boxed, None));
        assert_eq!(grouping_type(&concrete), grouping_type(&dynamic));
        assert_eq!(grouping_type(&concrete), "ParseErr");
        let io = top_type(&event_from_error(&std::io::Error::other("x")));
        let boxed: Box<dyn Error> = Box::new(std::io::Error::other("x"));
        let io_dynamic = top_type(&event_from_dyn_error(&*boxed, None));
        assert_eq!(grouping_type(&io), grouping_type(&io_dynamic));
        assert_eq!(grouping_type(&io), "std::io::Error");
        // Two crates' `Error`s stay apart.
        assert_eq!(grouping_type("reqwest::Error"), "reqwest::Error");
        assert_ne!(
            grouping_type("reqwest::Error"),
            grouping_type("serde_json::Error")
        );
        assert_eq!(grouping_type("mylib::parse::ParseErr"), "ParseErr");
    }

    #[test]
    fn only_the_apps_own_frames_are_in_app() {
        let frame = |function: &str, abs_path: Option<&str>| Frame {
            function: Some(function.into()),
            abs_path: abs_path.map(Into::into),
            ..Default::default()
        };
        let mut st = Stacktrace {
            frames: vec![
                frame(
                    "clone3",
                    Some("./misc/../sysdeps/unix/sysv/linux/x86_64/clone3.S"),
                ),
                frame("start_thread", Some("./nptl/pthread_create.c")),
                frame("main", None),
                frame(
                    "std::rt::lang_start",
                    Some("/rustc/abc/library/std/src/rt.rs"),
                ),
                frame(
                    "serde_json::de::from_str",
                    Some("/home/u/.cargo/registry/src/x/serde_json-1.0.1/src/de.rs"),
                ),
                frame(
                    "myapp::config::load",
                    Some("/home/u/src/myapp/src/config.rs"),
                ),
                frame("<myapp::Loader as core::ops::Drop>::drop", None),
            ],
            ..Default::default()
        };
        mark_in_app(&mut st, Some("myapp"));
        let marks: Vec<bool> = st.frames.iter().map(|f| f.in_app == Some(true)).collect();
        assert_eq!(marks, [false, false, false, false, false, true, true]);
    }

    #[test]
    fn frames_that_lost_their_paths_are_told_apart_by_their_files() {
        // What `debug = "line-tables-only"` gives: bare function names.
        let frame = |function: &str, abs_path: &str| Frame {
            function: Some(function.into()),
            abs_path: Some(abs_path.into()),
            ..Default::default()
        };
        let ours = concat!(env!("CARGO_MANIFEST_DIR"), "/src/runtime.rs");
        let mut st = Stacktrace {
            frames: vec![
                frame("main", "/home/u/src/mytool/src/main.rs"),
                frame("load", "/home/u/src/mytool/src/settings_file.rs"),
                frame(
                    "parse",
                    "/home/u/.cargo/registry/src/x/toml-0.9.0/src/de.rs",
                ),
                frame(
                    "capture_error",
                    "/home/u/.cargo/registry/src/x/consentry-0.1.0/src/lib.rs",
                ),
                frame("submit", ours),
            ],
            ..Default::default()
        };
        mark_in_app(&mut st, Some("mytool"));
        let marks: Vec<bool> = st.frames.iter().map(|f| f.in_app == Some(true)).collect();
        // The app's files make its frames its own, `main` included (C's has no .rs file).
        assert_eq!(marks, [true, true, false, false, false]);
        assert!(is_ours(&st.frames[3]) && is_ours(&st.frames[4]));
    }

    /// What `anyhow!(io_err).context("a").context("b")` in `advapp::run` captured, as std
    /// prints it with `RUST_BACKTRACE=1`: `{}` and `{:#}` (addresses made small: no module
    /// of this test holds them).
    pub(crate) const STD_BACKTRACE_SHORT: &str =
        include_str!("../tests/data/anyhow_backtrace_short.txt");
    pub(crate) const STD_BACKTRACE_FULL: &str =
        include_str!("../tests/data/anyhow_backtrace_full.txt");

    #[test]
    fn std_backtraces_in_both_forms_give_the_frames_a_raw_stack_would() {
        for (form, text) in [("short", STD_BACKTRACE_SHORT), ("full", STD_BACKTRACE_FULL)] {
            let st = parsed_stacktrace(text, Some("advapp")).unwrap();
            let names: Vec<&str> = st
                .frames
                .iter()
                .map(|f| f.function.as_deref().unwrap_or(""))
                .collect();
            // Function names only: no `at` line, hash or crate disambiguator taken for one.
            for name in &names {
                assert!(
                    !name.starts_with("at ")
                        && !name.contains("[e28293b1aa0f68bd]")
                        && !name.contains("::h"),
                    "{form}: {name}"
                );
            }
            // The capture machinery (std's `Backtrace::capture`, anyhow's constructors, the
            // `Into` between them) is trimmed: the innermost frame is the app's.
            let top = st.frames.last().unwrap();
            assert_eq!(
                top.function.as_deref(),
                Some("advapp::run"),
                "{form}: {names:?}"
            );
            assert_eq!(top.filename.as_deref(), Some("main.rs"), "{form}");
            assert_eq!((top.lineno, top.colno), (Some(4), Some(5)), "{form}");
            // The entry point's caller at address 0 is gone; the outer frames stay.
            assert_eq!(names.first(), Some(&"_start"), "{form}: {names:?}");
            assert!(names.contains(&"std::rt::lang_start"), "{form}: {names:?}");
            let in_app: Vec<&str> = st
                .frames
                .iter()
                .filter(|f| f.in_app == Some(true))
                .map(|f| f.function.as_deref().unwrap_or(""))
                .collect();
            assert_eq!(in_app, ["advapp::main", "advapp::run"], "{form}");
            assert!(
                st.frames.iter().all(|f| f.in_app.is_some()),
                "{form}: every frame marked"
            );
        }
        // The full form keeps each frame's address, for the server to symbolicate.
        let full = parsed_stacktrace(STD_BACKTRACE_FULL, Some("advapp")).unwrap();
        let top = full.frames.last().unwrap();
        assert_eq!(top.instruction_addr, Some(0x3e8b3_u64.into()));
        assert_eq!(
            top.abs_path.as_deref(),
            Some("/home/dev/advapp/src/main.rs")
        );
    }

    #[test]
    fn std_symbols_lose_their_hashes_and_disambiguators() {
        assert_eq!(
            clean_symbol("<std[e28293b1aa0f68bd]::backtrace::Backtrace>::create"),
            "<std::backtrace::Backtrace>::create"
        );
        assert_eq!(
            clean_symbol("advapp::run::hccca2ddbb075394d"),
            "advapp::run"
        );
        assert_eq!(clean_symbol("a::b<[u8; 4]>"), "a::b<[u8; 4]>");
        assert_eq!(
            split_location(r"C:\src\main.rs:4:5"),
            (r"C:\src\main.rs", Some(4), Some(5))
        );
        assert_eq!(split_location("./x.rs:7"), ("./x.rs", Some(7), None));
    }

    #[test]
    fn envelope_round_trip() {
        let id = Uuid::new_v4();
        let event = json!({"event_id": id.to_string(), "message": "line\nbreak"});
        let bytes = envelope_bytes(id, &event);
        assert_eq!(event_of_envelope(&bytes).unwrap(), event);
        let parsed = sentry::Envelope::from_slice(&bytes).unwrap();
        assert_eq!(parsed.uuid(), Some(&id));
    }

    #[test]
    fn identifying_fields_are_stripped() {
        let mut event = json!({
            "server_name": "alice-laptop",
            "debug_meta": {"images": [{"code_file": "/home/alice/lib.so"}]},
            "user": {"id": "x", "ip_address": "1.2.3.4", "username": "alice"},
            "request": {"cookies": "a=b", "env": {"REMOTE_ADDR": "1.2.3.4"}, "method": "GET"}
        });
        strip_identifying(&mut event);
        assert_eq!(
            event,
            json!({
                "debug_meta": {"images": [{"code_file": "lib.so"}]},
                "user": {"id": "x"},
                "request": {"method": "GET"}
            })
        );
    }

    #[test]
    fn the_executables_build_id_is_sent_with_its_file_name_only() {
        let images = debug_images();
        let exe = std::env::current_exe().unwrap();
        let name = exe.file_name().unwrap().to_string_lossy().into_owned();
        let main = images
            .iter()
            .filter_map(|i| match i {
                sentry::protocol::DebugImage::Symbolic(s) => Some(s),
                _ => None,
            })
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no image for {name}: {images:?}"));
        assert!(!main.name.contains('/'));
        // The GNU build id, as readelf shows it.
        #[cfg(target_os = "linux")]
        if let Ok(out) = std::process::Command::new("readelf")
            .arg("-n")
            .arg(&exe)
            .output()
        {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(id) = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("Build ID: "))
            {
                let code_id = main.code_id.as_ref().map(ToString::to_string);
                assert_eq!(code_id.as_deref(), Some(id.trim()), "{text}");
            }
        }
    }

    #[test]
    fn dependency_paths_lose_the_builders_home() {
        let frame = |p: &str| Frame {
            abs_path: Some(p.to_owned()),
            function: Some("dep::f".to_owned()),
            ..Default::default()
        };
        let mut st = Stacktrace {
            frames: vec![
                frame(
                    "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crash-handler-0.8.1/src/a.rs",
                ),
                frame("/opt/cargo-home/git/checkouts/dep-1a2b3c4d5e6f7a8b/0c0d/src/b.rs"),
                frame("/home/dev/project/src/main.rs"),
                // An app whose own directory is called `registry`.
                frame("/home/dev/registry/src/main.rs"),
            ],
            ..Default::default()
        };
        mark_in_app(&mut st, Some("project"));
        let paths: Vec<_> = st
            .frames
            .iter()
            .map(|f| f.abs_path.clone().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "~/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crash-handler-0.8.1/src/a.rs",
                "~/.cargo/git/checkouts/dep-1a2b3c4d5e6f7a8b/0c0d/src/b.rs",
                "/home/dev/project/src/main.rs",
                "/home/dev/registry/src/main.rs",
            ]
        );
        assert_eq!(st.frames[0].in_app, Some(false));
        assert_eq!(
            st.frames[1].in_app,
            Some(false),
            "a git dependency is not the app"
        );
    }

    #[test]
    fn breadcrumbs_respect_sequence() {
        let crumbs = Breadcrumbs {
            seq: AtomicU64::new(0),
            ring: Mutex::new(VecDeque::new()),
        };
        crumbs.add(Breadcrumb {
            message: Some("a".into()),
            ..Default::default()
        });
        let seq = crumbs.current();
        crumbs.add(Breadcrumb {
            message: Some("b".into()),
            ..Default::default()
        });
        let got: Vec<_> = crumbs
            .up_to(seq)
            .into_iter()
            .map(|b| b.message.unwrap())
            .collect();
        assert_eq!(got, vec!["a"]);
        for i in 0..150 {
            crumbs.add(Breadcrumb {
                message: Some(i.to_string()),
                ..Default::default()
            });
        }
        assert_eq!(crumbs.up_to(crumbs.current()).len(), BREADCRUMBS_KEPT);
    }
}
