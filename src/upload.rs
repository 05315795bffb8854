//! Uploading stored crash reports: the outbox, oldest first, one request at a time, each
//! through the egress gate (so consent is checked before every request, not per batch).
//!
//! - A flush (the guard, the panic hook) waits for the worker's request within its deadline;
//!   the worker never waits for anyone.
//! - Claims keep two threads from sending (or rewriting) the same file at once.
//! - After a failure the worker backs off (doubling, bounded); a flush tries at once unless
//!   the server just gave no answer, and an endpoint that gave none is skipped by later runs
//!   for a while (`Pauses`), so an offline user pays one timeout, not one per run.
//! - A server-imposed pause (429, `Retry-After`, `X-Sentry-Rate-Limits`) is kept on disk,
//!   clamped to a day.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::dedup::Dedup;
use crate::egress::{self, Egress, Gate, Outcome, Request};
use crate::outbox::Outbox;
use crate::transport::{Pauses, SentryTarget};

/// How long one background upload may take.
pub(crate) const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry backoff bounds after a failed upload.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// After a request got no answer, flushes within this time do not try again (the worker
/// still retries with its backoff).
const UNANSWERED_PAUSE: Duration = Duration::from_secs(30);

/// When the worker last failed, and when it may try again.
#[derive(Debug)]
struct Backoff {
    delay: Duration,
    next: Option<Instant>,
    /// When a request last got no answer at all (timeout, refused connection).
    unanswered_at: Option<Instant>,
}

/// The outbox files being sent or rewritten right now.
#[derive(Debug, Default)]
pub(crate) struct Claims(Mutex<HashSet<PathBuf>>);

/// A claim on one file, released on drop.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    set: &'a Claims,
    path: PathBuf,
}

impl Claims {
    /// Claims `path` if nobody holds it.
    pub(crate) fn take(&self, path: &Path) -> Option<Claim<'_>> {
        let mut guard = self.0.lock().ok()?;
        guard.insert(path.to_owned()).then(|| Claim {
            set: self,
            path: path.to_owned(),
        })
    }

    /// Waits until nobody else holds `path` (or it is gone, or the deadline passes).
    pub(crate) fn wait_take(&self, path: &Path, deadline: Instant) -> Option<Claim<'_>> {
        loop {
            if let Some(claim) = self.take(path) {
                return Some(claim);
            }
            if !path.exists() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.0.lock() {
            set.remove(&self.path);
        }
    }
}

/// Takes `lock`, waiting at most until `deadline`.
pub(crate) fn lock_until<T>(
    lock: &Mutex<T>,
    deadline: Instant,
) -> Option<std::sync::MutexGuard<'_, T>> {
    loop {
        match lock.try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// The crash-report uploader.
#[derive(Debug)]
pub(crate) struct Uploads {
    target: SentryTarget,
    outbox: Outbox,
    pauses: Option<PathBuf>,
    /// Held while sending: one request at a time, so a rate limit or a failure that one
    /// sender meets stops the others before their next request.
    sending: Mutex<()>,
    backoff: Mutex<Backoff>,
    pub(crate) claims: Claims,
}

/// Everything an upload consults besides the uploader itself.
pub(crate) struct Context<'a> {
    pub(crate) egress: &'a Egress,
    pub(crate) gate: &'a dyn Gate,
    pub(crate) dedup: &'a Dedup,
}

impl Uploads {
    pub(crate) fn new(target: SentryTarget, outbox: Outbox, pauses: Option<PathBuf>) -> Uploads {
        Uploads {
            target,
            outbox,
            pauses,
            sending: Mutex::new(()),
            backoff: Mutex::new(Backoff {
                delay: MIN_BACKOFF,
                next: None,
                unanswered_at: None,
            }),
            claims: Claims::default(),
        }
    }

    /// When the worker should try again, if it is backing off.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.backoff.lock().ok().and_then(|b| b.next)
    }

    /// Whether a server-imposed pause or a recent silence holds sending off.
    fn paused(&self, now: SystemTime) -> bool {
        let Some(file) = &self.pauses else {
            return false;
        };
        Pauses::load(file).crash.holds(self.target.url(), now)
    }

    /// Sends waiting envelopes, oldest first (or only `only`). With a deadline (flush,
    /// panic) it tries now, whatever the backoff, and gives up at the deadline; without one
    /// (the worker) it respects the backoff. Never sends during a pause. Returns the last
    /// outcome.
    pub(crate) fn run(
        &self,
        cx: &Context<'_>,
        deadline: Option<Instant>,
        only: Option<&Path>,
    ) -> Option<Outcome> {
        let _sending = match deadline {
            Some(d) => lock_until(&self.sending, d)?,
            None => match self.sending.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            },
        };
        if self.paused(SystemTime::now()) {
            return None;
        }
        if let Ok(b) = self.backoff.lock() {
            // A flush tries at once, unless the server just gave no answer at all: a
            // panic's attempt that timed out is not repeated by the guard's flush right
            // after, which would double the time the process waits.
            let backing_off = b.next.is_some_and(|next| Instant::now() < next);
            let unanswered = b
                .unanswered_at
                .is_some_and(|t| t.elapsed() < UNANSWERED_PAUSE);
            if backing_off && (deadline.is_none() || unanswered) {
                return None;
            }
        }
        let entries = match only {
            Some(path) => vec![path.to_owned()],
            None => self.outbox.list().into_iter().map(|e| e.path).collect(),
        };
        let mut last = None;
        for path in entries {
            let timeout = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => BACKGROUND_TIMEOUT,
            };
            if timeout.is_zero() {
                break;
            }
            // Another thread may be sending this file: a flush waits for it (the process may
            // end right after a flush); the worker moves on.
            let claim = match deadline {
                Some(d) => self.claims.wait_take(&path, d),
                None => self.claims.take(&path),
            };
            let Some(_claim) = claim else {
                continue;
            };
            if crate::fsx::regular_len(&path).is_none()
                || (deadline.is_none() && cx.dedup.held_for(&path).is_some())
            {
                continue;
            }
            // A burst of the same error goes out once, with its count.
            if let Some((event, total)) = cx.dedup.take_count(&path)
                && let Some(id) = crate::outbox::event_id_of(&path)
            {
                let counted = event.with_count("consentry.occurrences", total, None);
                let _ = self.outbox.replace(&path, id, &counted);
            }
            let Ok(bytes) = self.outbox.read(&path) else {
                continue;
            };
            let record = crate::report::event_of_envelope(&bytes).unwrap_or_default();
            let outcome = cx.egress.send(
                cx.gate,
                Request {
                    kind: egress::Kind::Crash,
                    url: self.target.url(),
                    shown_url: self.target.url(),
                    headers: self.target.headers(),
                    body: &bytes,
                    record,
                    timeout,
                },
            );
            if !self.settle(cx, &path, &outcome) {
                return Some(outcome);
            }
            last = Some(outcome);
        }
        last
    }

    /// Acts on one outcome. `false`: stop sending for now.
    fn settle(&self, cx: &Context<'_>, path: &Path, outcome: &Outcome) -> bool {
        let now = SystemTime::now();
        if let (Some(file), Some(_)) = (&self.pauses, outcome.answered()) {
            Pauses::record_answer(file, egress::Kind::Crash, self.target.url());
        }
        match outcome {
            Outcome::Accepted { pause, .. } => {
                self.outbox.remove(path);
                cx.dedup.sent(path);
                if let Ok(mut b) = self.backoff.lock() {
                    b.delay = MIN_BACKOFF;
                    b.next = None;
                    b.unanswered_at = None;
                }
                if let (Some(until), Some(file)) = (pause, &self.pauses) {
                    Pauses::record_pause(file, egress::Kind::Crash, self.target.url(), *until);
                    return false;
                }
                true
            }
            Outcome::Rejected(status) => {
                self.outbox.remove(path);
                cx.dedup.sent(path);
                crate::diag::warn_once("rejected", || {
                    format!("the server refused a crash report (HTTP {status}); it was dropped")
                });
                true
            }
            Outcome::Paused { until, .. } => {
                if let Some(file) = &self.pauses {
                    Pauses::record_pause(file, egress::Kind::Crash, self.target.url(), *until);
                }
                false
            }
            Outcome::Retry { status, error } => {
                if let Ok(mut b) = self.backoff.lock() {
                    b.next = Some(Instant::now() + b.delay);
                    b.delay = (b.delay * 2).min(MAX_BACKOFF);
                    if status.is_none() {
                        b.unanswered_at = Some(Instant::now());
                    }
                }
                match status {
                    Some(s) => crate::diag::warn_once("retry-status", || {
                        format!("crash reports are kept for later: the server answered {s}")
                    }),
                    // Only a request that cost its whole timeout marks the endpoint as
                    // unreachable for later runs: a refused connection costs nothing.
                    None => {
                        if let (Some(file), Some(crate::http::NetError::Timeout(_))) =
                            (&self.pauses, error)
                        {
                            Pauses::record_unreachable(
                                file,
                                egress::Kind::Crash,
                                self.target.url(),
                                now,
                            );
                        }
                    }
                }
                false
            }
            // Consent was withdrawn at this moment: the gate has already turned reporting
            // off and deleted the outbox.
            Outcome::NotAllowed => false,
        }
    }
}
