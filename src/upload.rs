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

/// When a stored event was captured: its `timestamp` (Unix seconds).
fn captured_at(event: &serde_json::Value) -> Option<SystemTime> {
    let secs = event.get("timestamp")?.as_f64()?;
    (secs.is_finite() && secs >= 0.0)
        .then(|| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(secs.min(1e11))))
        .flatten()
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

    /// Whether a server-imposed pause (or, for a flush at exit, a recent silence) holds
    /// sending off.
    fn paused(&self, now: SystemTime, at_exit: bool) -> bool {
        let Some(file) = &self.pauses else {
            return false;
        };
        Pauses::load(file)
            .crash
            .holds(self.target.url(), now, at_exit)
    }

    /// The endpoint, for the pauses file.
    pub(crate) fn endpoint(&self) -> &str {
        self.target.url()
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
        // A flush (the guard, the panic hook) skips a paused or recently silent endpoint at
        // once, before waiting for the worker's request to it: an offline user does not pay
        // a timeout on every run, whoever holds the lock.
        if deadline.is_some() && self.paused(SystemTime::now(), true) {
            return None;
        }
        let _sending = match deadline {
            Some(d) => lock_until(&self.sending, d)?,
            None => match self.sending.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            },
        };
        if self.paused(SystemTime::now(), deadline.is_some()) {
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
            // A minidump goes only with the user's yes to minidumps at this moment; without
            // it the report goes without its minidump, which is deleted.
            let Some(bytes) = crate::minidump::sendable(&path, bytes, || cx.gate.allows_minidump())
            else {
                continue;
            };
            // The audit log says what went with the event (not the bytes).
            let record = crate::minidump::audit_record(
                crate::report::event_of_envelope(&bytes).unwrap_or_default(),
                &bytes,
            );
            // A report whose capture time cannot be read counts as captured before any
            // consent (it fails closed).
            let captured_at = Some(captured_at(&record).unwrap_or(std::time::UNIX_EPOCH));
            // Captured before consent was given: kept for an explicit `telemetry send`,
            // never uploaded by the "yes" that came later.
            if captured_at.is_some_and(|at| !cx.gate.allows_captured_at(egress::Kind::Crash, at)) {
                continue;
            }
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
                    captured_at,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::SystemClock;
    use crate::http::{Answer, NetError};
    use crate::pipeline::{Pipeline, Stack, Verdict};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A server that answers each request with the next status of its list (then 200), and
    /// counts the requests.
    struct Scripted {
        statuses: Mutex<Vec<u16>>,
        seen: Arc<AtomicUsize>,
    }
    impl egress::Wire for Scripted {
        fn post(
            &self,
            _: &str,
            _: &[(&str, String)],
            _: &[u8],
            _: Duration,
        ) -> Result<Answer, NetError> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            let mut s = self.statuses.lock().unwrap();
            let status = if s.is_empty() { 200 } else { s.remove(0) };
            Ok(Answer {
                status,
                retry_after: (status == 429).then(|| "1e12".to_owned()),
                sentry_rate_limits: None,
            })
        }
    }

    /// Consent that says yes for the first `n` asks, then no (a "no" given mid-flush).
    struct YesFor(AtomicUsize);
    impl Gate for YesFor {
        fn allows(&self, _: egress::Kind) -> bool {
            self.0
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        }
    }

    struct Setup {
        _dir: tempfile::TempDir,
        outbox: Outbox,
        uploads: Uploads,
        egress: Egress,
        dedup: Dedup,
        seen: Arc<AtomicUsize>,
        pauses: PathBuf,
    }

    fn setup(reports: usize, statuses: Vec<u16>) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().join("outbox"), 1000, 1 << 30);
        let pipeline = Pipeline::new(
            crate::Config::new("app", "1.0"),
            String::new(),
            uuid::Uuid::nil(),
        );
        for i in 0..reports {
            let captured = crate::report::Captured {
                event: crate::report::event_from_message(&format!("m{i}"), sentry::Level::Error),
                backtrace: None,
                breadcrumb_seq: 0,
                kind: crate::report::Kind::Message,
            };
            let Verdict::Keep { event, .. } =
                pipeline.run(captured, Stack::Addresses, None, uuid::Uuid::nil())
            else {
                panic!("kept")
            };
            outbox.write(event.event_id().unwrap(), &event).unwrap();
        }
        let dsn: sentry::types::Dsn = "http://key@127.0.0.1:9/1".parse().unwrap();
        let pauses = dir.path().join("pauses.json");
        let seen = Arc::new(AtomicUsize::new(0));
        Setup {
            uploads: Uploads::new(
                SentryTarget::new(&dsn),
                outbox.clone(),
                Some(pauses.clone()),
            ),
            egress: Egress::new(
                Box::new(Scripted {
                    statuses: Mutex::new(statuses),
                    seen: seen.clone(),
                }),
                Some(dir.path().join("sent.jsonl")),
            ),
            dedup: Dedup::new(Duration::from_secs(60), Box::new(SystemClock)),
            outbox,
            seen,
            pauses,
            _dir: dir,
        }
    }

    fn flush(s: &Setup, gate: &dyn Gate) -> Option<Outcome> {
        let cx = Context {
            egress: &s.egress,
            gate,
            dedup: &s.dedup,
        };
        s.uploads
            .run(&cx, Some(Instant::now() + Duration::from_secs(5)), None)
    }

    #[test]
    fn a_flush_skips_a_silent_endpoint_without_waiting_for_the_workers_request() {
        let s = setup(1, vec![]);
        Pauses::record_unreachable(
            &s.pauses,
            egress::Kind::Crash,
            s.uploads.endpoint(),
            SystemTime::now(),
        );
        // The worker's request to that endpoint is on the wire (it holds the send lock).
        let _worker = s.uploads.sending.lock().unwrap();
        let start = Instant::now();
        assert!(flush(&s, &YesFor(AtomicUsize::new(100))).is_none());
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a 5 s flush waited {:?} for a request to an endpoint it skips",
            start.elapsed()
        );
        assert_eq!(s.seen.load(Ordering::SeqCst), 0);
        assert_eq!(s.outbox.list().len(), 1, "kept for later");
    }

    #[test]
    fn consent_is_asked_before_every_request() {
        let s = setup(10, vec![]);
        flush(&s, &YesFor(AtomicUsize::new(3)));
        assert_eq!(s.seen.load(Ordering::SeqCst), 3, "the fourth ask said no");
        assert_eq!(s.outbox.list().len(), 7);
    }

    #[test]
    fn accepted_and_rejected_are_removed_retry_is_kept_in_order() {
        let s = setup(3, vec![200, 400, 503]);
        let last = flush(&s, &YesFor(AtomicUsize::new(100)));
        assert!(matches!(
            last,
            Some(Outcome::Retry {
                status: Some(503),
                ..
            })
        ));
        assert_eq!(s.outbox.list().len(), 1, "the 5xx one waits");
        // The worker backs off; a flush tries again at once.
        let cx = Context {
            egress: &s.egress,
            gate: &YesFor(AtomicUsize::new(100)),
            dedup: &s.dedup,
        };
        assert!(s.uploads.run(&cx, None, None).is_none(), "backing off");
        flush(&s, &YesFor(AtomicUsize::new(100)));
        assert!(s.outbox.list().is_empty());
    }

    #[test]
    fn a_hostile_pause_is_clamped_and_kept_on_disk() {
        let s = setup(2, vec![429]);
        flush(&s, &YesFor(AtomicUsize::new(100)));
        assert_eq!(s.seen.load(Ordering::SeqCst), 1, "nothing after the 429");
        let now = SystemTime::now();
        let until = Pauses::load(&s.pauses).crash.paused_until(now).unwrap();
        assert!(until <= now + egress::MAX_SERVER_PAUSE + Duration::from_secs(2));
        // A later run honours it without asking the server.
        assert!(flush(&s, &YesFor(AtomicUsize::new(100))).is_none());
        assert_eq!(s.seen.load(Ordering::SeqCst), 1);
    }

    /// Consent given now: everything stored before is older.
    struct GivenNow(SystemTime);
    impl Gate for GivenNow {
        fn allows(&self, _: egress::Kind) -> bool {
            true
        }
        fn allows_captured_at(&self, _: egress::Kind, at: SystemTime) -> bool {
            at >= self.0
        }
    }

    #[test]
    fn nothing_captured_before_consent_is_uploaded_by_the_later_yes() {
        let s = setup(2, vec![]);
        let gate = GivenNow(SystemTime::now() + Duration::from_secs(5));
        flush(&s, &gate);
        assert_eq!(s.seen.load(Ordering::SeqCst), 0);
        assert_eq!(s.outbox.list().len(), 2, "kept for an explicit send");
        flush(&s, &GivenNow(SystemTime::now() - Duration::from_secs(60)));
        assert_eq!(s.seen.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_report_without_a_capture_time_counts_as_from_before_consent() {
        let s = setup(1, vec![]);
        let path = s.outbox.list()[0].path.clone();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut event: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert!(event.as_object_mut().unwrap().remove("timestamp").is_some());
        let payload = serde_json::to_string(&event).unwrap();
        let mut item: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        item["length"] = payload.len().into();
        std::fs::write(&path, format!("{}\n{item}\n{payload}\n", lines[0])).unwrap();
        flush(&s, &GivenNow(SystemTime::now() - Duration::from_secs(60)));
        assert_eq!(
            s.seen.load(Ordering::SeqCst),
            0,
            "held for an explicit send"
        );
        assert_eq!(s.outbox.list().len(), 1);
        flush(&s, &YesFor(AtomicUsize::new(10)));
        assert_eq!(
            s.seen.load(Ordering::SeqCst),
            1,
            "no consent time: no limit"
        );
    }

    #[test]
    fn a_claimed_file_is_not_sent_twice() {
        let s = setup(1, vec![]);
        let path = s.outbox.list()[0].path.clone();
        let claim = s.uploads.claims.take(&path).unwrap();
        let cx = Context {
            egress: &s.egress,
            gate: &YesFor(AtomicUsize::new(100)),
            dedup: &s.dedup,
        };
        // The worker moves on; a flush would wait for the claim (until its deadline).
        s.uploads.run(&cx, None, None);
        assert_eq!(s.seen.load(Ordering::SeqCst), 0);
        drop(claim);
        s.uploads.run(&cx, None, None);
        assert_eq!(s.seen.load(Ordering::SeqCst), 1);
    }
}
