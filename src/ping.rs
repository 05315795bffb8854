//! Delivering usage pings, durably, as Glean keeps pending pings.
//!
//! `track` queues in memory (bounded). As soon as the worker wakes (and at exit), the queued
//! events go through the pipeline's usage step and are written, scrubbed, to the usage
//! store (`usage/` in the data directory, bounded): a short CLI that returns from `main`
//! right after `track` loses nothing. Batches are sent at most once per interval (and at
//! exit, within the short usage budget), each request through the egress gate; a stored
//! batch is deleted only when the sink accepted it (or refused it for good). What is left
//! is sent by a later run, with the same event ids, which the sinks that deduplicate use.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use crate::egress::{self, Egress, Gate, Outcome, Request};
use crate::outbox::Outbox;
use crate::pipeline::{Pipeline, Scrubbed};
use crate::sink::{Sink, UsageRecord};
use crate::transport::Pauses;
use crate::upload::lock_until;
use crate::usage::UsageQueue;

/// How long one background usage request may take.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// The usage store's bounds.
const STORE_FILES: usize = 100;
const STORE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Default)]
struct SendState {
    last_sent: Option<Instant>,
    /// After a failure: when to try again, and the delay after that.
    retry_at: Option<Instant>,
    backoff: Option<Duration>,
}

/// Usage delivery for one process.
#[derive(Debug)]
pub(crate) struct Pings {
    pub(crate) queue: UsageQueue,
    sink: Option<Sink>,
    store: Option<Outbox>,
    pauses: Option<PathBuf>,
    interval: Duration,
    debug: bool,
    /// Held while queued events are being scrubbed and stored, so that an exiting process
    /// waits for events the worker already took from the queue.
    storing: Mutex<()>,
    /// Held while stashing or sending, so a flush waits for the worker's request.
    sending: Mutex<()>,
    state: Mutex<SendState>,
}

/// Everything a send consults besides the pings themselves.
pub(crate) struct Context<'a> {
    pub(crate) egress: &'a Egress,
    pub(crate) gate: &'a dyn Gate,
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) anonymous_id: Uuid,
    /// Local mode: events are stored and recorded in this audit log (if any) as kept on
    /// this machine, and nothing is sent.
    pub(crate) local_log: Option<Option<&'a std::path::Path>>,
}

impl Pings {
    pub(crate) fn new(
        queue: UsageQueue,
        sink: Option<Sink>,
        store_dir: Option<PathBuf>,
        pauses: Option<PathBuf>,
        interval: Duration,
        debug: bool,
    ) -> Pings {
        Pings {
            queue,
            sink,
            store: store_dir.map(|d| Outbox::usage(d, STORE_FILES, STORE_BYTES)),
            pauses,
            interval,
            debug,
            storing: Mutex::new(()),
            sending: Mutex::new(()),
            state: Mutex::new(SendState::default()),
        }
    }

    fn stored_files(&self) -> Vec<PathBuf> {
        self.store
            .as_ref()
            .map(|s| s.list().into_iter().map(|e| e.path).collect())
            .unwrap_or_default()
    }

    fn has_pending(&self) -> bool {
        !self.queue.is_empty() || !self.stored_files().is_empty()
    }

    /// Whether nothing is waiting (in memory or on disk).
    pub(crate) fn is_empty(&self) -> bool {
        !self.has_pending()
    }

    /// How long until a batch may be sent, if anything waits and usage pings are on (the
    /// worker sleeps on this: it must never say "now" for something it will not do).
    pub(crate) fn time_until_due(&self) -> Option<Duration> {
        if !crate::switch::usage_on() {
            return None;
        }
        if !self.queue.is_empty() {
            // Queued events are stored at once.
            return Some(Duration::ZERO);
        }
        if self.sink.is_none() || !self.has_pending() {
            return None;
        }
        let state = self.state.lock().ok()?;
        let now = Instant::now();
        let by_interval = state.last_sent.map_or(Duration::ZERO, |t| {
            (t + self.interval).saturating_duration_since(now)
        });
        let by_retry = state
            .retry_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        Some(by_interval.max(by_retry))
    }

    /// Moves queued events, scrubbed, to the usage store. With no sink configured nothing
    /// can ever be sent: they are dropped (debug mode prints them instead).
    pub(crate) fn stash(&self, pipeline: &Pipeline, anonymous_id: Uuid) {
        self.stash_logged(pipeline, anonymous_id, None);
    }

    /// [`Pings::stash`]; with `local_log`, each stored batch is also written to that audit
    /// log as kept on this machine (local mode).
    fn stash_logged(
        &self,
        pipeline: &Pipeline,
        anonymous_id: Uuid,
        local_log: Option<&std::path::Path>,
    ) {
        let _storing = self.storing.lock().unwrap_or_else(|p| p.into_inner());
        let queued = self.queue.take();
        if queued.is_empty() {
            return;
        }
        let records: Vec<Scrubbed<UsageRecord>> = queued
            .into_iter()
            .filter_map(|e| pipeline.usage(e))
            .collect();
        if self.debug {
            self.print(pipeline, anonymous_id, &records);
            return;
        }
        if self.sink.is_none() || records.is_empty() {
            return;
        }
        let per_file = self
            .sink
            .as_ref()
            .map_or(25, Sink::max_events_per_request)
            .max(1);
        for chunk in records.chunks(per_file) {
            // Local mode: the audit log is where the user sees them; they are not stored for
            // sending, so no later "yes" can send them.
            if let Some(log) = local_log {
                let list: Vec<&UsageRecord> = chunk.iter().map(Scrubbed::get).collect();
                crate::audit::append(
                    log,
                    "usage",
                    "none: local mode, kept on this machine",
                    None,
                    None,
                    serde_json::to_value(list).unwrap_or_default(),
                );
                continue;
            }
            // Lose nothing, send nothing unstored: a batch that cannot be written to disk
            // (no data directory, a full disk) is dropped, never sent from memory.
            let stored = match &self.store {
                Some(store) => store.write_usage(chunk).map(drop).map_err(|e| {
                    format!(
                        "cannot write to the usage store {}: {e}",
                        store.dir().display()
                    )
                }),
                None => Err("no data directory for the usage store".to_owned()),
            };
            if let Err(e) = stored {
                crate::diag::warn_once("usage-store", || {
                    format!("{e}; usage events were dropped, not sent")
                });
            }
        }
    }

    /// Debug mode: print the batch as it would be sent, send nothing.
    fn print(&self, pipeline: &Pipeline, anonymous_id: Uuid, records: &[Scrubbed<UsageRecord>]) {
        let json_sink = Sink::json("https://collect.invalid/");
        let sink = self.sink.as_ref().unwrap_or(&json_sink);
        let list: Vec<UsageRecord> = records.iter().map(|r| r.get().clone()).collect();
        let body = sink.body(
            anonymous_id,
            &list,
            &pipeline.usage_metadata(),
            &crate::settings::now_rfc3339(),
        );
        crate::diag::eprint_line(&format!(
            "[consentry debug] usage batch for {} ({}; debug mode: not sent):\n{}",
            sink.display_url(),
            sink.format_name(),
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ));
    }

    /// At exit: stores what is queued, waiting until `until` for events another thread is
    /// storing. Storing is local work with bounded input; the short budget for the network
    /// starts after it (see `Runtime::flush_until`).
    pub(crate) fn store_now(&self, cx: &Context<'_>, until: Instant) {
        if let Some(guard) = lock_until(&self.storing, until) {
            drop(guard);
        }
        match cx.local_log {
            Some(log) => self.stash_logged(cx.pipeline, cx.anonymous_id, log),
            None => self.stash(cx.pipeline, cx.anonymous_id),
        }
    }

    /// Stores what is queued, then sends what is due (everything, with a deadline).
    pub(crate) fn tick(&self, cx: &Context<'_>, deadline: Option<Instant>) {
        // Stored first, and outside the send lock: a request in flight on the worker (up to
        // its background timeout) must never keep an exiting process from writing what it
        // tracked to disk.
        if let Some(local_log) = cx.local_log {
            // Local mode: stored (and logged), never sent; the worker need not look again
            // until something new is queued.
            self.stash_logged(cx.pipeline, cx.anonymous_id, local_log);
            if let Ok(mut state) = self.state.lock() {
                state.retry_at = Some(Instant::now() + Duration::from_secs(3600));
            }
            return;
        }
        self.stash(cx.pipeline, cx.anonymous_id);
        // A flush skips a paused or recently silent sink at once, before waiting for the
        // worker's request to it.
        if deadline.is_some() && self.held(SystemTime::now(), true) {
            return;
        }
        let _sending = match deadline {
            Some(d) => match lock_until(&self.sending, d) {
                Some(g) => g,
                None => return,
            },
            None => match self.sending.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            },
        };
        if deadline.is_none() && self.time_until_due() != Some(Duration::ZERO) {
            return;
        }
        let Some(sink) = &self.sink else { return };
        if self.debug {
            return;
        }
        // A server's pause holds for everyone; an endpoint that did not answer is skipped
        // only by flushes with a deadline (a short CLI at exit), while the worker of a
        // long-running process keeps trying with its own backoff.
        if self.held(SystemTime::now(), deadline.is_some()) {
            // Look again later, not at every wake-up.
            if let Ok(mut state) = self.state.lock() {
                state.retry_at = Some(Instant::now() + Duration::from_secs(30));
            }
            return;
        }
        // The store, oldest first (only what is on disk is ever sent).
        let Some(store) = &self.store else { return };
        let files = self.stored_files();
        let max = sink.max_events_per_request().max(1);
        let mut i = 0;
        while i < files.len() {
            // Whole files, up to the sink's limit per request.
            let mut batch: Vec<UsageRecord> = Vec::new();
            let mut taken: Vec<&PathBuf> = Vec::new();
            while let Some(path) = files.get(i) {
                let Some(records) = store.read_usage(path) else {
                    // Not ours or damaged: it can never be sent.
                    store.remove(path);
                    i += 1;
                    continue;
                };
                if !batch.is_empty() && batch.len() + records.get().len() > max {
                    break;
                }
                batch.extend(records.get().iter().cloned());
                taken.push(path);
                i += 1;
            }
            if batch.is_empty() {
                // Files with no events (`[]`): nothing to send, ever.
                for path in taken {
                    store.remove(path);
                }
                continue;
            }
            if !self.send_batch(cx, sink, &batch, deadline) {
                return;
            }
            for path in taken {
                store.remove(path);
            }
        }
    }

    /// Whether the sink is held off now: by its server's pause, or, for a flush with a
    /// deadline (`at_exit`), by its recent silence.
    fn held(&self, now: SystemTime, at_exit: bool) -> bool {
        match (&self.pauses, &self.sink) {
            (Some(file), Some(sink)) => {
                Pauses::load(file)
                    .usage
                    .holds(&sink.display_url(), now, at_exit)
            }
            _ => false,
        }
    }

    /// Sends one request. `true`: the batch is done with (accepted, or refused for good).
    fn send_batch(
        &self,
        cx: &Context<'_>,
        sink: &Sink,
        records: &[UsageRecord],
        deadline: Option<Instant>,
    ) -> bool {
        let timeout = deadline.map_or(BACKGROUND_TIMEOUT, |d| {
            d.saturating_duration_since(Instant::now())
        });
        // Events captured before consent was given are never sent by a later "yes": they are
        // dropped from the batch (the batch is then done with).
        let records: Vec<UsageRecord> = records
            .iter()
            .filter(|r| {
                record_time(r).is_none_or(|at| cx.gate.allows_captured_at(egress::Kind::Usage, at))
            })
            .cloned()
            .collect();
        if records.is_empty() {
            return true;
        }
        let captured_at = records.iter().filter_map(record_time).min();
        let body = sink.body(
            cx.anonymous_id,
            &records,
            &cx.pipeline.usage_metadata(),
            &crate::settings::now_rfc3339(),
        );
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let urls = (sink.url(), sink.display_url());
        let request = sink_request(
            egress::Kind::Usage,
            sink,
            &urls,
            &bytes,
            body,
            timeout,
            captured_at,
        );
        let outcome = cx.egress.send(cx.gate, request);
        self.settle(&urls.1, &outcome)
    }

    fn settle(&self, endpoint: &str, outcome: &Outcome) -> bool {
        let now = SystemTime::now();
        if let (Some(file), Some(_)) = (&self.pauses, outcome.answered()) {
            Pauses::record_answer(file, egress::Kind::Usage, endpoint);
        }
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        match outcome {
            Outcome::Accepted { .. } | Outcome::Rejected(_) => {
                state.last_sent = Some(Instant::now());
                state.retry_at = None;
                state.backoff = None;
                if let Outcome::Rejected(status) = outcome {
                    crate::diag::warn_once("usage-rejected", || {
                        format!(
                            "the usage endpoint refused a batch (HTTP {status}); it was dropped"
                        )
                    });
                }
                true
            }
            Outcome::Paused { until, .. } => {
                if let Some(file) = &self.pauses {
                    Pauses::record_pause(file, egress::Kind::Usage, endpoint, *until);
                }
                // Also in memory: with no pauses file (or one that cannot be written) the
                // worker must still wait, not ask again at once.
                let left = until
                    .duration_since(now)
                    .unwrap_or_default()
                    .clamp(Duration::from_secs(1), egress::MAX_SERVER_PAUSE);
                state.retry_at = Some(Instant::now() + left);
                false
            }
            Outcome::Retry { error, .. } => {
                let delay = state.backoff.map_or(Duration::from_secs(1), |d| {
                    (d * 2).min(Duration::from_secs(300))
                });
                state.backoff = Some(delay);
                state.retry_at = Some(Instant::now() + delay);
                if let (Some(file), Some(crate::http::NetError::Timeout(_))) = (&self.pauses, error)
                {
                    Pauses::record_unreachable(file, egress::Kind::Usage, endpoint, now);
                }
                false
            }
            Outcome::NotAllowed => {
                state.retry_at = Some(Instant::now() + Duration::from_secs(30));
                false
            }
        }
    }

    /// The endpoint, for the pauses file.
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.sink.as_ref().map(Sink::display_url)
    }

    /// Consent for usage withdrawn: everything waiting is deleted, in memory and on disk.
    pub(crate) fn clear(&self) {
        self.queue.clear();
        if let Some(store) = &self.store {
            store.clear();
        }
    }
}

/// A request to `sink` of `kind` carrying `body`.
fn sink_request<'a>(
    kind: egress::Kind,
    sink: &Sink,
    urls: &'a (String, String),
    bytes: &'a [u8],
    body: serde_json::Value,
    timeout: Duration,
    captured_at: Option<SystemTime>,
) -> Request<'a> {
    Request {
        kind,
        url: &urls.0,
        shown_url: &urls.1,
        headers: sink.headers(),
        body: bytes,
        record: body,
        timeout,
        captured_at,
    }
}

/// When a usage event was captured (`micros` since the Unix epoch).
fn record_time(r: &UsageRecord) -> Option<SystemTime> {
    (r.micros > 0)
        .then(|| SystemTime::UNIX_EPOCH.checked_add(Duration::from_micros(r.micros)))
        .flatten()
}

/// Sends one deletion request carrying only `id` (the one request sent without consent: it
/// is the user's request to be forgotten). Returns whether the sink accepted it. Nothing is
/// sent to a sink that fails validation, nor in debug mode, which prints the request
/// instead (it stays owed, for a later run).
pub(crate) fn send_deletion(
    egress: &Egress,
    sink: &Sink,
    id: Uuid,
    timeout: Duration,
    debug: bool,
) -> bool {
    let Some(body) = sink.deletion_body(id, &crate::settings::now_rfc3339()) else {
        return false;
    };
    if sink.validate().is_err() {
        return false;
    }
    if debug {
        crate::diag::eprint_line(&format!(
            "[consentry debug] deletion request for {} (debug mode: not sent):\n{}",
            sink.display_url(),
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ));
        return false;
    }
    /// The deletion request needs no consent; the gate is not asked for it.
    struct NoConsentNeeded;
    impl Gate for NoConsentNeeded {
        fn allows(&self, _: egress::Kind) -> bool {
            false
        }
    }
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let urls = (sink.url(), sink.display_url());
    let request = sink_request(
        egress::Kind::Deletion,
        sink,
        &urls,
        &bytes,
        body,
        timeout,
        None,
    );
    let outcome = egress.send(&NoConsentNeeded, request);
    matches!(outcome, Outcome::Accepted { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Answer, NetError};
    use crate::usage::{Prop, Queued};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Answers(Mutex<Vec<Result<u16, ()>>>, Arc<AtomicUsize>);
    impl egress::Wire for Answers {
        fn post(
            &self,
            _: &str,
            _: &[(&str, String)],
            _: &[u8],
            timeout: Duration,
        ) -> Result<Answer, NetError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            let mut a = self.0.lock().unwrap();
            match if a.is_empty() { Ok(200) } else { a.remove(0) } {
                Ok(status) => Ok(Answer {
                    status,
                    retry_after: None,
                    sentry_rate_limits: None,
                }),
                Err(()) => Err(NetError::Timeout(timeout)),
            }
        }
    }
    struct Yes;
    impl Gate for Yes {
        fn allows(&self, _: egress::Kind) -> bool {
            true
        }
    }

    fn queued(name: &str) -> Queued {
        Queued {
            name: name.into(),
            props: vec![("path".into(), Prop::from("/home/alice/data.csv"))],
            time: SystemTime::now(),
        }
    }

    #[test]
    fn pings_wait_on_disk_until_accepted_and_408_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::new(crate::Config::new("app", "1.0"), "salt".into(), Uuid::nil());
        let pings = || {
            Pings::new(
                UsageQueue::new(25),
                Some(Sink::json("http://127.0.0.1:9/u")),
                Some(dir.path().join("usage")),
                Some(dir.path().join("pauses.json")),
                Duration::from_secs(30),
                false,
            )
        };
        let seen = Arc::new(AtomicUsize::new(0));
        let egress = Egress::new(
            Box::new(Answers(Mutex::new(vec![Ok(408), Ok(200)]), seen.clone())),
            Some(dir.path().join("sent.jsonl")),
        );
        let cx = Context {
            egress: &egress,
            gate: &Yes,
            pipeline: &pipeline,
            anonymous_id: Uuid::nil(),
            local_log: None,
        };
        // A process that tracks and exits at once: the event is stored, scrubbed, first.
        let first = pings();
        first.queue.push(queued("started"));
        first.stash(&pipeline, Uuid::nil());
        let store = Outbox::usage(dir.path().join("usage"), 100, 1 << 20);
        assert_eq!(store.list().len(), 1);
        let stored = std::fs::read_to_string(&store.list()[0].path).unwrap();
        assert!(!stored.contains("alice"), "{stored}");
        // Its send gets a 408: kept.
        first.tick(&cx, Some(Instant::now() + Duration::from_secs(1)));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(store.list().len(), 1, "408 keeps the batch");
        // The next process sends it.
        let second = pings();
        second.tick(&cx, Some(Instant::now() + Duration::from_secs(1)));
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert!(store.list().is_empty());
        assert_eq!(crate::audit::read(&dir.path().join("sent.jsonl")).len(), 2);
    }

    #[test]
    fn events_that_cannot_be_stored_are_never_sent() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the data directory should be: nothing can be stored there.
        let blocker = dir.path().join("f");
        std::fs::write(&blocker, "x").unwrap();
        let pipeline = Pipeline::new(crate::Config::new("app", "1.0"), "salt".into(), Uuid::nil());
        let seen = Arc::new(AtomicUsize::new(0));
        let egress = Egress::new(
            Box::new(Answers(Mutex::new(vec![]), seen.clone())),
            Some(dir.path().join("sent.jsonl")),
        );
        let cx = Context {
            egress: &egress,
            gate: &Yes,
            pipeline: &pipeline,
            anonymous_id: Uuid::nil(),
            local_log: None,
        };
        for store in [Some(blocker.join("data").join("usage")), None] {
            let p = Pings::new(
                UsageQueue::new(25),
                Some(Sink::json("http://127.0.0.1:9/u")),
                store,
                None,
                Duration::from_secs(30),
                false,
            );
            p.queue.push(queued("parse"));
            p.tick(&cx, Some(Instant::now() + Duration::from_secs(1)));
            p.tick(&cx, None);
            assert!(p.is_empty(), "dropped, not kept in memory");
        }
        assert_eq!(seen.load(Ordering::SeqCst), 0, "nothing sent unstored");
    }

    #[test]
    fn an_endpoint_that_timed_out_is_skipped_by_the_next_runs() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = Pipeline::new(crate::Config::new("app", "1.0"), "salt".into(), Uuid::nil());
        let seen = Arc::new(AtomicUsize::new(0));
        let egress = Egress::new(
            Box::new(Answers(Mutex::new(vec![Err(())]), seen.clone())),
            Some(dir.path().join("sent.jsonl")),
        );
        let cx = Context {
            egress: &egress,
            gate: &Yes,
            pipeline: &pipeline,
            anonymous_id: Uuid::nil(),
            local_log: None,
        };
        for _ in 0..3 {
            let p = Pings::new(
                UsageQueue::new(25),
                Some(Sink::json("http://127.0.0.1:9/u")),
                Some(dir.path().join("usage")),
                Some(dir.path().join("pauses.json")),
                Duration::from_secs(30),
                false,
            );
            p.queue.push(queued("run"));
            p.tick(&cx, Some(Instant::now() + Duration::from_secs(1)));
        }
        assert_eq!(seen.load(Ordering::SeqCst), 1, "one timeout, then skipped");
        assert_eq!(
            Outbox::usage(dir.path().join("usage"), 100, 1 << 20)
                .list()
                .len(),
            3,
            "nothing lost"
        );
    }
}

#[cfg(test)]
mod local_tests {
    use super::*;
    use crate::usage::{Prop, Queued};

    struct Never;
    impl egress::Wire for Never {
        fn post(
            &self,
            _: &str,
            _: &[(&str, String)],
            _: &[u8],
            _: Duration,
        ) -> Result<crate::http::Answer, crate::http::NetError> {
            panic!("local mode opened a connection")
        }
    }
    struct Yes;
    impl Gate for Yes {
        fn allows(&self, _: egress::Kind) -> bool {
            true
        }
    }

    #[test]
    fn local_mode_stores_and_logs_and_never_sends() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sent.jsonl");
        let pipeline = Pipeline::new(crate::Config::new("app", "1.0"), "salt".into(), Uuid::nil());
        let egress = Egress::new(Box::new(Never), Some(log.clone()));
        let pings = Pings::new(
            UsageQueue::new(25),
            Some(Sink::json("http://127.0.0.1:9/u")),
            Some(dir.path().join("usage")),
            None,
            Duration::from_secs(30),
            false,
        );
        pings.queue.push(Queued {
            name: "started".into(),
            props: vec![("mode".into(), Prop::from("fast"))],
            time: SystemTime::now(),
        });
        let cx = Context {
            egress: &egress,
            gate: &Yes,
            pipeline: &pipeline,
            anonymous_id: Uuid::nil(),
            local_log: Some(Some(&log)),
        };
        pings.tick(&cx, Some(Instant::now() + Duration::from_secs(1)));
        assert!(
            pings.stored_files().is_empty(),
            "nothing is stored for sending"
        );
        let records = crate::audit::read(&log);
        assert_eq!(records.len(), 1);
        assert!(records[0]["status"].is_null());
        assert!(
            records[0]["destination"]
                .as_str()
                .unwrap()
                .contains("local mode")
        );
        assert!(
            pings
                .time_until_due()
                .is_none_or(|d| d > Duration::from_secs(60))
        );
    }
}
