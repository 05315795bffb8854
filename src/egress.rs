//! The one way out: every request consentry makes goes through [`Egress::send`], which
//! checks consent at that moment, sends, records what reached a server in the audit log, and
//! reads the answer with one status table for every kind of payload.
//!
//! ```text
//! Egress::send(gate, request)
//!   1. consent gate: gate.allows(kind), re-read now, before this request (not per batch);
//!      the deletion request is the one send that needs no consent: it is the user's
//!      request to be forgotten, and carries only the retired anonymous id
//!   2. send: Wire::post (the HTTP client; a trait, so tests substitute it)
//!   3. audit: the log must be writable before the request starts (else nothing is sent);
//!      one line in sent.jsonl for every request that may have reached a server,
//!      whatever it answered; a request still in flight when the process exits is written
//!      there by `abandon_in_flight` with no status
//!   4. outcome: `classify`, the same table for crash reports, usage batches and deletions
//! ```
//!
//! Nothing else in the crate calls [`crate::http`]; a test (`tests/tidy.rs`) enforces it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::http::{Answer, NetError};

/// The longest pause a server can impose (`Retry-After`, `X-Sentry-Rate-Limits`): one day.
/// A server that asks for more (`Retry-After: 1e12`, a date in year 9999) gets this.
pub(crate) const MAX_SERVER_PAUSE: Duration = Duration::from_secs(24 * 60 * 60);
/// The least time a request is started with.
const MIN_REQUEST_TIME: Duration = Duration::from_millis(50);
/// The pause after a 429 that says nothing about how long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(60);

/// What a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A crash or error report envelope.
    Crash,
    /// A batch of usage events.
    Usage,
    /// A deletion request for a retired anonymous id.
    Deletion,
}

impl Kind {
    /// The word in the audit log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Crash => "crash",
            Kind::Usage => "usage",
            Kind::Deletion => "deletion",
        }
    }
}

/// Consent, asked at the moment of sending.
pub(crate) trait Gate {
    /// Whether `kind` may be sent now. Implementations re-read the settings if they changed.
    fn allows(&self, kind: Kind) -> bool;

    /// Whether a payload captured at `at` may be sent: nothing captured before consent was
    /// given (while undecided, declined, or kept locally) is uploaded by a later "yes"; only
    /// the user's explicit `telemetry send` does that.
    fn allows_captured_at(&self, _kind: Kind, _at: SystemTime) -> bool {
        true
    }

    /// Whether a crash report may carry its minidump now (the app's switch and the user's
    /// own yes to minidumps, read now). No unless a gate says so.
    fn allows_minidump(&self) -> bool {
        false
    }
}

/// The HTTP client, behind a trait so tests can answer anything without a server.
pub(crate) trait Wire: Send + Sync {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Answer, NetError>;
}

/// The real client: [`crate::http::post`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Http;

impl Wire for Http {
    fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<Answer, NetError> {
        crate::http::post(url, headers, body, timeout)
    }
}

/// One request.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) kind: Kind,
    pub(crate) url: &'a str,
    /// The destination as the audit log shows it (no keys in it).
    pub(crate) shown_url: &'a str,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: &'a [u8],
    /// The payload as the audit log records it (the scrubbed event, the usage batch).
    pub(crate) record: Value,
    pub(crate) timeout: Duration,
    /// When the oldest data in it was captured, for the gate's "nothing from before
    /// consent" rule.
    pub(crate) captured_at: Option<SystemTime>,
}

/// What became of a request: the same table for every kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx: delivered; remove it. `pause`: the server also asked (`X-Sentry-Rate-Limits`)
    /// not to send more until then.
    Accepted {
        status: u16,
        pause: Option<SystemTime>,
    },
    /// No answer, a 408, a 3xx (redirects are not followed), a 5xx: keep it, try later.
    /// `status` is `None` when no server answered.
    Retry {
        status: Option<u16>,
        error: Option<NetError>,
    },
    /// 429, or a rate-limit header on a refusal: keep it and send nothing until then
    /// (at most [`MAX_SERVER_PAUSE`] from now).
    Paused { status: u16, until: SystemTime },
    /// Any other 4xx: the server will never take it; drop it.
    Rejected(u16),
    /// Consent said no at the moment of sending: nothing was sent.
    NotAllowed,
}

impl Outcome {
    /// Whether a server answered the request.
    pub(crate) fn answered(&self) -> Option<u16> {
        match self {
            Outcome::Accepted { status, .. }
            | Outcome::Paused { status, .. }
            | Outcome::Rejected(status) => Some(*status),
            Outcome::Retry { status, .. } => *status,
            Outcome::NotAllowed => None,
        }
    }

    /// Whether the payload is done with (delivered, or refused for good).
    #[cfg(test)]
    pub(crate) fn is_final(&self) -> bool {
        matches!(self, Outcome::Accepted { .. } | Outcome::Rejected(_))
    }
}

/// A server-given delay, clamped to [`MAX_SERVER_PAUSE`], as a time from `now`.
pub(crate) fn pause_from(now: SystemTime, delay: Duration) -> SystemTime {
    now.checked_add(delay.min(MAX_SERVER_PAUSE)).unwrap_or(now)
}

/// Reads a server's answer. Pauses come from `X-Sentry-Rate-Limits` (the `error` category
/// or all categories) and, on a refusal, `Retry-After` (seconds or an HTTP date); every
/// one is clamped to [`MAX_SERVER_PAUSE`].
pub(crate) fn classify(answer: &Answer, now: SystemTime) -> Outcome {
    use sentry::transports::{RateLimiter, RateLimitingCategory};
    let status = answer.status;
    let success = answer.is_success();
    let mut limiter = RateLimiter::new();
    if let Some(h) = &answer.sentry_rate_limits {
        limiter.update_from_sentry_header(h);
    } else if !success && let Some(h) = &answer.retry_after {
        limiter.update_from_retry_after(h);
    }
    let pause = limiter
        .is_disabled(RateLimitingCategory::Error)
        .map(|left| pause_from(now, left));
    if success {
        return Outcome::Accepted { status, pause };
    }
    match (status, pause) {
        (429, None) => Outcome::Paused {
            status,
            until: pause_from(now, DEFAULT_PAUSE),
        },
        (400..=499, Some(until)) if status != 408 => Outcome::Paused { status, until },
        (408, _) => Outcome::Retry {
            status: Some(status),
            error: None,
        },
        (400..=499, None) => Outcome::Rejected(status),
        _ => Outcome::Retry {
            status: Some(status),
            error: None,
        },
    }
}

/// A request on the wire, for the audit log if the process ends before its answer.
#[derive(Debug)]
struct InFlight {
    kind: Kind,
    destination: String,
    record: Value,
}

/// Requests on the wire, and whether the gate is closed (the process is exiting).
#[derive(Debug, Default)]
struct Flights {
    closed: bool,
    open: HashMap<u64, InFlight>,
}

/// The egress gate.
pub(crate) struct Egress {
    wire: Box<dyn Wire>,
    audit_log: Option<PathBuf>,
    in_flight: Mutex<Flights>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress")
            .field("audit_log", &self.audit_log)
            .finish_non_exhaustive()
    }
}

impl Egress {
    pub(crate) fn new(wire: Box<dyn Wire>, audit_log: Option<PathBuf>) -> Egress {
        Egress {
            wire,
            audit_log,
            in_flight: Mutex::new(Flights::default()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Consent gate, send, audit, outcome: see the module docs.
    pub(crate) fn send(&self, gate: &dyn Gate, request: Request<'_>) -> Outcome {
        if request.kind != Kind::Deletion
            && (!gate.allows(request.kind)
                || request
                    .captured_at
                    .is_some_and(|at| !gate.allows_captured_at(request.kind, at)))
        {
            return Outcome::NotAllowed;
        }
        // Too little time left to even connect: nothing is tried (a request that cannot be
        // answered would only be a line in the audit log for a request that never arrived),
        // and nothing is learnt about the server.
        if request.timeout < MIN_REQUEST_TIME {
            return Outcome::Retry {
                status: None,
                error: None,
            };
        }
        // Nothing reaches a server that the audit log cannot show: without a log that can
        // be written now (no data directory, a file in its way, a full disk), nothing is
        // sent, whatever the kind (fail closed; the payload stays where it is).
        if !self.audit_log.as_deref().is_some_and(crate::audit::ready) {
            return Outcome::NotAllowed;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let Ok(mut flights) = self.in_flight.lock() else {
                return Outcome::NotAllowed;
            };
            // Closed at exit: no request starts after the in-flight ones were logged.
            if flights.closed {
                return Outcome::NotAllowed;
            }
            flights.open.insert(
                id,
                InFlight {
                    kind: request.kind,
                    destination: request.shown_url.to_owned(),
                    record: request.record,
                },
            );
        }
        let headers: Vec<(&str, String)> = request
            .headers
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let answer = self
            .wire
            .post(request.url, &headers, request.body, request.timeout);
        let outcome = match &answer {
            Ok(a) => classify(a, SystemTime::now()),
            Err(e) => Outcome::Retry {
                status: None,
                error: Some(e.clone()),
            },
        };
        // Taken back unless the process gave up on it meanwhile (then it was logged there).
        // The line is written with the lock held, so `abandon_in_flight` cannot miss it.
        if let Ok(mut flights) = self.in_flight.lock()
            && let Some(entry) = flights.open.remove(&id)
        {
            match &answer {
                Ok(a) => self.audit(entry, Some(a.status), None),
                Err(e) if e.may_have_reached() => self.audit(entry, None, Some(e.to_string())),
                Err(_) => {}
            }
        }
        outcome
    }

    /// At exit, past the deadline: closes the gate (no request starts any more) and writes
    /// each request still waiting for its answer to the audit log with no status (it may
    /// have reached the server; its payload stays on disk and is sent again, with the same
    /// ids, by a later run). Returns the kinds that were abandoned.
    pub(crate) fn close_and_abandon(&self) -> Vec<Kind> {
        let Ok(mut flights) = self.in_flight.lock() else {
            return Vec::new();
        };
        flights.closed = true;
        let entries: Vec<InFlight> = flights.open.drain().map(|(_, v)| v).collect();
        let kinds = entries.iter().map(|e| e.kind).collect();
        for entry in entries {
            self.audit(
                entry,
                None,
                Some("no answer before the process exited".to_owned()),
            );
        }
        kinds
    }

    fn audit(&self, entry: InFlight, status: Option<u16>, note: Option<String>) {
        if let Some(log) = &self.audit_log {
            crate::audit::append(
                log,
                entry.kind.as_str(),
                &entry.destination,
                status,
                note.as_deref(),
                entry.record,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn answer(status: u16, retry_after: Option<&str>, limits: Option<&str>) -> Answer {
        Answer {
            status,
            retry_after: retry_after.map(str::to_owned),
            sentry_rate_limits: limits.map(str::to_owned),
        }
    }

    #[test]
    fn one_status_table() {
        let now = SystemTime::now();
        let c = |s| classify(&answer(s, None, None), now);
        assert_eq!(
            c(200),
            Outcome::Accepted {
                status: 200,
                pause: None
            }
        );
        assert!(matches!(
            c(408),
            Outcome::Retry {
                status: Some(408),
                ..
            }
        ));
        assert!(matches!(
            c(302),
            Outcome::Retry {
                status: Some(302),
                ..
            }
        ));
        assert!(matches!(
            c(503),
            Outcome::Retry {
                status: Some(503),
                ..
            }
        ));
        assert_eq!(c(400), Outcome::Rejected(400));
        assert_eq!(c(413), Outcome::Rejected(413));
        assert!(matches!(c(429), Outcome::Paused { status: 429, .. }));
    }

    #[test]
    fn absurd_server_delays_are_clamped() {
        let now = SystemTime::now();
        let limit = now + MAX_SERVER_PAUSE;
        for (retry_after, limits) in [
            (Some("1e12"), None),
            (Some("1e300"), None),
            (Some("inf"), None),
            (Some("Fri, 31 Dec 9999 23:59:59 GMT"), None),
            (None, Some("1e12:error:org")),
            (None, Some("18446744073709551615::org")),
        ] {
            match classify(&answer(429, retry_after, limits), now) {
                Outcome::Paused { until, .. } => {
                    assert!(until <= limit, "{retry_after:?} {limits:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        match classify(&answer(200, None, Some("1e12:error:org")), now) {
            Outcome::Accepted {
                pause: Some(until), ..
            } => assert!(until <= limit),
            other => panic!("{other:?}"),
        }
        // Nonsense and negative values pause for the default, never forever or never.
        match classify(&answer(429, Some("-5"), None), now) {
            Outcome::Paused { until, .. } => assert!(until <= limit),
            other => panic!("{other:?}"),
        }
    }

    struct Fixed(Result<Answer, NetError>);
    impl Wire for Fixed {
        fn post(
            &self,
            _: &str,
            _: &[(&str, String)],
            _: &[u8],
            _: Duration,
        ) -> Result<Answer, NetError> {
            self.0.clone()
        }
    }
    struct Consent(bool);
    impl Gate for Consent {
        fn allows(&self, _: Kind) -> bool {
            self.0
        }
    }

    fn request(kind: Kind) -> Request<'static> {
        Request {
            kind,
            url: "http://127.0.0.1:9/",
            shown_url: "http://127.0.0.1:9/",
            headers: Vec::new(),
            body: b"{}",
            record: serde_json::json!({"n": 1}),
            timeout: Duration::from_secs(1),
            captured_at: None,
        }
    }

    #[test]
    fn consent_is_asked_per_request_except_for_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sent.jsonl");
        let egress = Egress::new(
            Box::new(Fixed(Ok(answer(200, None, None)))),
            Some(log.clone()),
        );
        assert_eq!(
            egress.send(&Consent(false), request(Kind::Crash)),
            Outcome::NotAllowed
        );
        assert_eq!(
            egress.send(&Consent(false), request(Kind::Usage)),
            Outcome::NotAllowed
        );
        assert!(crate::audit::read(&log).is_empty());
        assert!(
            egress
                .send(&Consent(false), request(Kind::Deletion))
                .is_final()
        );
        assert!(egress.send(&Consent(true), request(Kind::Usage)).is_final());
        let kinds: Vec<String> = crate::audit::read(&log)
            .iter()
            .map(|r| r["kind"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(kinds, ["deletion", "usage"]);
    }

    #[test]
    fn nothing_is_sent_without_an_audit_log_that_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the data directory should be: the log cannot be created.
        let blocker = dir.path().join("f");
        std::fs::write(&blocker, "x").unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        for log in [None, Some(blocker.join("data").join("sent.jsonl"))] {
            let egress = Egress::new(Box::new(Counting(seen.clone())), log);
            for kind in [Kind::Crash, Kind::Usage, Kind::Deletion] {
                assert_eq!(
                    egress.send(&Consent(true), request(kind)),
                    Outcome::NotAllowed
                );
            }
        }
        assert_eq!(seen.load(Ordering::SeqCst), 0, "no request started");
        let log = dir.path().join("sent.jsonl");
        let egress = Egress::new(Box::new(Counting(seen.clone())), Some(log.clone()));
        assert!(egress.send(&Consent(true), request(Kind::Usage)).is_final());
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(crate::audit::read(&log).len(), 1);
    }

    /// A server that answers 200 and counts the requests.
    struct Counting(Arc<AtomicUsize>);
    impl Wire for Counting {
        fn post(
            &self,
            _: &str,
            _: &[(&str, String)],
            _: &[u8],
            _: Duration,
        ) -> Result<Answer, NetError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(answer(200, None, None))
        }
    }

    #[test]
    fn what_may_have_reached_a_server_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sent.jsonl");
        let refused = Egress::new(
            Box::new(Fixed(Err(NetError::Unreachable("refused".into())))),
            Some(log.clone()),
        );
        refused.send(&Consent(true), request(Kind::Crash));
        assert!(crate::audit::read(&log).is_empty());
        let timeout = Egress::new(
            Box::new(Fixed(Err(NetError::Timeout(Duration::from_secs(1))))),
            Some(log.clone()),
        );
        timeout.send(&Consent(true), request(Kind::Crash));
        let records = crate::audit::read(&log);
        assert_eq!(records.len(), 1);
        assert!(records[0]["status"].is_null());
    }
}
