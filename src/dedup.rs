//! Deduplication: the same error (same type and location) within a window is counted, not
//! reported again. The first occurrence is held unsent for [`REPEAT_HOLD`] so a burst goes
//! out as one event with its count; repeats after it was sent go out as one more event with
//! the count when the window ends.
//!
//! Time comes from a [`Clock`], so the window and the hold are unit-tested without sleeping.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::pipeline::{Repeats, Scrubbed};

/// The worker sends the first occurrence of an error this long after it happened, with the
/// count of the repeats seen meanwhile.
pub(crate) const REPEAT_HOLD: Duration = Duration::from_secs(1);
/// The most error kinds tracked.
pub(crate) const KEYS_MAX: usize = 64;

/// The time source.
pub(crate) trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// One kind of error seen recently.
#[derive(Debug)]
struct Seen {
    first: Instant,
    /// The outbox file of the first occurrence, while it is not yet sent.
    path: Option<PathBuf>,
    /// Occurrences since the last one that was stored.
    repeats: u64,
    /// The scrubbed first occurrence, to report a count of later repeats.
    template: Scrubbed,
}

/// What to do with the repeats of an error whose window ended.
#[derive(Debug)]
pub(crate) enum Expired {
    /// Its first occurrence is still unsent at `path`: rewrite it with the total count.
    AddToStored {
        path: PathBuf,
        event: Scrubbed,
        total: u64,
    },
    /// The first occurrence was sent: report the repeats as an event of their own.
    NewEvent { event: Scrubbed, repeats: u64 },
}

/// The table of recently seen errors.
pub(crate) struct Dedup {
    window: Duration,
    clock: Box<dyn Clock>,
    seen: Mutex<HashMap<String, Seen>>,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Repeats for Dedup {
    fn is_repeat(&self, key: &str) -> bool {
        let now = self.clock.now();
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        match seen.get_mut(key) {
            Some(s) if now.saturating_duration_since(s.first) < self.window => {
                s.repeats += 1;
                true
            }
            _ => false,
        }
    }
}

impl Dedup {
    pub(crate) fn new(window: Duration, clock: Box<dyn Clock>) -> Dedup {
        Dedup {
            window,
            clock,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records a stored first occurrence. The table holds at most [`KEYS_MAX`] kinds; the
    /// oldest is forgotten first.
    pub(crate) fn first_stored(&self, key: String, path: Option<PathBuf>, template: Scrubbed) {
        let now = self.clock.now();
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.len() >= KEYS_MAX
            && !seen.contains_key(&key)
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, s)| s.first)
                .map(|(k, _)| k.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(
            key,
            Seen {
                first: now,
                path,
                repeats: 0,
                template,
            },
        );
    }

    /// Takes the kinds whose window ended (or all of them, at exit) that have repeats to
    /// report.
    pub(crate) fn expire(&self, all: bool) -> Vec<Expired> {
        let now = self.clock.now();
        let Ok(mut seen) = self.seen.lock() else {
            return Vec::new();
        };
        let window = self.window;
        let keys: Vec<String> = seen
            .iter()
            .filter(|(_, s)| all || now.saturating_duration_since(s.first) >= window)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| seen.remove(&k))
            .filter(|s| s.repeats > 0)
            .map(|s| match s.path {
                Some(path) => Expired::AddToStored {
                    path,
                    event: s.template,
                    total: 1 + s.repeats,
                },
                None => Expired::NewEvent {
                    event: s.template,
                    repeats: s.repeats,
                },
            })
            .collect()
    }

    /// How much longer the first occurrence stored at `path` is held unsent.
    pub(crate) fn held_for(&self, path: &Path) -> Option<Duration> {
        let now = self.clock.now();
        let seen = self.seen.lock().ok()?;
        seen.values()
            .filter(|s| s.path.as_deref() == Some(path))
            .map(|s| REPEAT_HOLD.saturating_sub(now.saturating_duration_since(s.first)))
            .find(|left| !left.is_zero())
    }

    /// The soonest end of a hold, if any file is held.
    pub(crate) fn next_hold_end(&self) -> Option<Duration> {
        let now = self.clock.now();
        let seen = self.seen.lock().ok()?;
        seen.values()
            .filter(|s| s.path.is_some())
            .map(|s| REPEAT_HOLD.saturating_sub(now.saturating_duration_since(s.first)))
            .filter(|left| !left.is_zero())
            .min()
    }

    /// Before the first occurrence stored at `path` is sent: the total count so far, if it
    /// has repeats, with the event to rewrite it from. The repeats are then reset.
    pub(crate) fn take_count(&self, path: &Path) -> Option<(Scrubbed, u64)> {
        let mut seen = self.seen.lock().ok()?;
        let s = seen
            .values_mut()
            .find(|s| s.path.as_deref() == Some(path))?;
        if s.repeats == 0 {
            return None;
        }
        let total = 1 + std::mem::take(&mut s.repeats);
        // Later repeats add to this total.
        s.repeats = 0;
        Some((s.template.clone(), total))
    }

    /// The first occurrence at `path` was sent: later repeats need an event of their own.
    pub(crate) fn sent(&self, path: &Path) {
        if let Ok(mut seen) = self.seen.lock() {
            for s in seen.values_mut() {
                if s.path.as_deref() == Some(path) {
                    s.path = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Pipeline, Stack, Verdict};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock the test moves by hand.
    #[derive(Clone, Default)]
    struct Manual(Arc<AtomicU64>, Option<Instant>);
    impl Clock for Manual {
        fn now(&self) -> Instant {
            self.1.unwrap_or_else(Instant::now)
                + Duration::from_millis(self.0.load(Ordering::SeqCst))
        }
    }

    fn event() -> Scrubbed {
        let p = Pipeline::new(
            crate::Config::new("app", "1.0"),
            String::new(),
            uuid::Uuid::nil(),
        );
        let captured = crate::report::Captured {
            event: crate::report::event_from_message("x", sentry::Level::Error),
            backtrace: None,
            breadcrumb_seq: 0,
            kind: crate::report::Kind::Message,
        };
        match p.run(captured, Stack::Addresses, None, uuid::Uuid::nil()) {
            Verdict::Keep { event, .. } => event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_burst_is_one_event_with_its_count() {
        let clock = Manual(Arc::default(), Some(Instant::now()));
        let dedup = Dedup::new(Duration::from_secs(60), Box::new(clock.clone()));
        let path = PathBuf::from("/outbox/1.envelope");
        assert!(!dedup.is_repeat("k"));
        dedup.first_stored("k".into(), Some(path.clone()), event());
        for _ in 0..49 {
            assert!(dedup.is_repeat("k"));
        }
        assert_eq!(dedup.held_for(&path), Some(REPEAT_HOLD));
        clock.0.store(1000, Ordering::SeqCst);
        assert_eq!(dedup.held_for(&path), None);
        let (_, total) = dedup.take_count(&path).unwrap();
        assert_eq!(total, 50);
        dedup.sent(&path);
        // Repeats after the send are reported as their own event when the window ends.
        assert!(dedup.is_repeat("k"));
        assert!(dedup.expire(false).is_empty());
        clock.0.store(61_000, Ordering::SeqCst);
        match dedup.expire(false).as_slice() {
            [Expired::NewEvent { repeats: 1, .. }] => {}
            other => panic!("{other:?}"),
        }
        assert!(!dedup.is_repeat("k"));
    }

    #[test]
    fn the_table_is_bounded() {
        let dedup = Dedup::new(Duration::from_secs(60), Box::new(SystemClock));
        let e = event();
        for i in 0..(KEYS_MAX * 3) {
            dedup.first_stored(format!("k{i}"), None, e.clone());
        }
        assert_eq!(dedup.seen.lock().unwrap().len(), KEYS_MAX);
    }
}
