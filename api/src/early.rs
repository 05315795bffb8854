//! Errors captured before `init`: held until `init` decides, then reported or dropped.
//!
//! A library cannot know whether its host will ever call `init`, so this buffer must cost
//! nothing in an app that never does: it lives in static memory (no heap allocation), holds
//! at most [`SLOTS`] errors of at most [`LINKS`] chain links each, truncates long texts, and
//! once full, captures cost one atomic load again.

use std::error::Error;
use std::fmt::{self, Write};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::{EventId, Level};

/// How many early errors are kept.
pub(crate) const SLOTS: usize = 4;
/// How many links of each error's chain are kept.
pub(crate) const LINKS: usize = 6;
const TYPE_LEN: usize = 64;
const VALUE_LEN: usize = 1024;

/// A string in a fixed buffer; writes past the end are cut at a character boundary and
/// stop the formatting.
#[derive(Clone, Copy)]
struct FixedStr<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Something did not fit: the last token may be partial.
    cut: bool,
}

impl<const N: usize> FixedStr<N> {
    const EMPTY: Self = FixedStr {
        buf: [0; N],
        len: 0,
        cut: false,
    };

    fn as_str(&self) -> &str {
        // Only whole characters are ever copied in, so this cannot fail; fall back to "".
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }

    fn clear(&mut self) {
        self.len = 0;
        self.cut = false;
    }

    /// The text as it may be reported: when it was cut, the partial last token is dropped
    /// whole (nothing is scrubbed yet, and half a secret would not be recognised).
    fn reportable(&self) -> String {
        if !self.cut {
            return self.as_str().to_owned();
        }
        let kept = drop_partial_tail(self.as_str());
        format!("{kept}{CUT_MARK}")
    }
}

impl<const N: usize> Write for FixedStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + take), s.get(..take))
        {
            dst.copy_from_slice(src.as_bytes());
            self.len += take;
        }
        if take < s.len() {
            self.cut = true;
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

#[derive(Clone, Copy)]
struct Link {
    ty: FixedStr<TYPE_LEN>,
    value: FixedStr<VALUE_LEN>,
}

impl Link {
    const EMPTY: Self = Link {
        ty: FixedStr::EMPTY,
        value: FixedStr::EMPTY,
    };
}

#[derive(Clone, Copy)]
struct Slot {
    id: EventId,
    level: Level,
    is_message: bool,
    /// When it was captured (the event's timestamp; `init` may come much later).
    time: SystemTime,
    links: [Link; LINKS],
    n_links: usize,
}

impl Slot {
    const EMPTY: Self = Slot {
        id: EventId::NIL,
        level: Level::Error,
        is_message: false,
        time: SystemTime::UNIX_EPOCH,
        links: [Link::EMPTY; LINKS],
        n_links: 0,
    };
}

struct Buffer {
    used: usize,
    slots: [Slot; SLOTS],
}

static BUFFER: Mutex<Buffer> = Mutex::new(Buffer {
    used: 0,
    slots: [Slot::EMPTY; SLOTS],
});

/// Keeps an error for `init`. Returns its event id, or `None` when the buffer is full (the
/// caller then switches captures to the one-atomic-load path) or busy.
pub(crate) fn capture_error<E: Error + ?Sized>(err: &E) -> Capture {
    keep(Level::Error, false, |links| {
        // Only the first word of Debug is the type; a full Debug may be long, and the fixed
        // buffer stops the formatting when it is full.
        let mut n = 0;
        if let Some(first) = links.first_mut() {
            let _ = write!(first.ty, "{err:?}");
            let _ = write!(first.value, "{err}");
            n = 1;
        }
        let mut link = err.source();
        while let Some(e) = link
            && let Some(l) = links.get_mut(n)
        {
            let _ = write!(l.ty, "{e:?}");
            let _ = write!(l.value, "{e}");
            n += 1;
            link = e.source();
        }
        n
    })
}

/// Keeps a message for `init`.
pub(crate) fn capture_message(message: &str, level: Level) -> Capture {
    keep(level, true, |links| match links.first_mut() {
        Some(first) => {
            let _ = first.value.write_str(message);
            1
        }
        None => 0,
    })
}

/// Fills the next free slot: `fill` writes the links (cleared beforehand) and returns how
/// many it wrote.
fn keep(level: Level, is_message: bool, fill: impl FnOnce(&mut [Link; LINKS]) -> usize) -> Capture {
    let Ok(mut buffer) = BUFFER.try_lock() else {
        return Capture::Dropped;
    };
    let used = buffer.used;
    let Some(slot) = buffer.slots.get_mut(used) else {
        return Capture::Full;
    };
    for link in &mut slot.links {
        link.ty.clear();
        link.value.clear();
    }
    slot.id = EventId::new_random();
    slot.level = level;
    slot.is_message = is_message;
    slot.time = SystemTime::now();
    slot.n_links = fill(&mut slot.links);
    let id = slot.id;
    buffer.used += 1;
    Capture::Kept(id, buffer.used == SLOTS)
}

/// The outcome of an early capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// Kept; `true` when that filled the buffer.
    Kept(EventId, bool),
    /// The buffer is full.
    Full,
    /// Another thread was writing to the buffer.
    Dropped,
}

/// An error or message kept before `init`, as the backend receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EarlyEvent {
    /// The id returned to the caller.
    pub id: EventId,
    /// The level (`Error` for errors).
    pub level: Level,
    /// When it was captured.
    pub time: SystemTime,
    /// A message, not an error.
    pub is_message: bool,
    /// `(type, value)` of each link of the chain, the error itself first; for a message, its
    /// text as the value. A text cut by the fixed buffer has lost its partial last token.
    pub links: Vec<(String, String)>,
}

/// Takes the kept errors out (the error itself first), emptying the buffer.
pub(crate) fn drain() -> Vec<EarlyEvent> {
    let Ok(mut buffer) = BUFFER.lock() else {
        return Vec::new();
    };
    let used = std::mem::take(&mut buffer.used);
    buffer
        .slots
        .iter()
        .take(used)
        .map(|slot| EarlyEvent {
            id: slot.id,
            level: slot.level,
            time: slot.time,
            is_message: slot.is_message,
            links: slot
                .links
                .iter()
                .take(slot.n_links)
                .map(|l| {
                    // A type name cut inside a token is dropped like a cut value.
                    let ty = if l.ty.cut {
                        drop_partial_tail(l.ty.as_str())
                    } else {
                        l.ty.as_str()
                    };
                    (first_word(ty).to_owned(), l.value.reportable())
                })
                .collect(),
        })
        .collect()
}

/// Marks a text cut short.
const CUT_MARK: &str = " [truncated]";

/// Whether `c` separates tokens (whitespace and punctuation no token contains).
fn is_boundary(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ',' | ';' | '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '"' | '\'' | '`' | '|'
        )
}

/// `s` without its last token, which was cut somewhere inside.
fn drop_partial_tail(s: &str) -> &str {
    let at = s
        .char_indices()
        .rev()
        .find(|(_, c)| is_boundary(*c))
        .map_or(0, |(i, _)| i);
    &s[..at]
}

/// The first word of a `Debug` output: the type name (as sentry takes it).
fn first_word(debug: &str) -> &str {
    let word = debug
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .next()
        .unwrap_or("");
    if word.is_empty() { "Error" } else { word }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_str_cuts_at_char_boundaries() {
        let mut s = FixedStr::<5>::EMPTY;
        assert!(write!(s, "ab€cd").is_err());
        assert_eq!(s.as_str(), "ab€");
        s.clear();
        assert!(write!(s, "abc").is_ok());
        assert_eq!(s.as_str(), "abc");
    }

    #[test]
    fn a_cut_value_loses_its_partial_token() {
        let mut s = FixedStr::<32>::EMPTY;
        let _ = write!(s, "token ghp_0123456789abcdefghijklmnopqrstuvwxyz");
        assert_eq!(s.reportable(), format!("token{CUT_MARK}"));
        s.clear();
        let _ = write!(s, "short");
        assert_eq!(s.reportable(), "short");
    }
}
