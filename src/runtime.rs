//! The process-wide state behind the free functions: the on/off switch, the worker thread,
//! and the pipeline every crash report goes through (enrich, ignore, deduplicate, scrub,
//! app hook, store in the outbox, send).
//!
//! The switch is one atomic byte, [`STATE`], so that `capture_error` from a library costs one
//! load when reporting is off or `init` was never called. Everything else lives in a
//! [`Runtime`] created by `init` and reached through [`current`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::{Config, Ignore, clamp_wait};
use crate::consent::{self, Decision, NextStep};
use crate::diag;
use crate::env::EnvSnapshot;
use crate::facts::Facts;
use crate::identity::Identity;
use crate::outbox::Outbox;
use crate::paths::Paths;
use crate::report::{self, BREADCRUMBS, Captured, Enrichment, Kind};
use crate::scrub::Scrubber;
use crate::settings::{Consent, ConsentSource, Settings};
use crate::transport::{self, Delivery, RateLimitFile, SentryTarget};
use crate::usage::UsageQueue;

/// `init` has not run: captures go to the early buffer.
pub(crate) const UNINIT: u8 = 0;
/// `init` has not run and the early buffer is full: captures are dropped.
pub(crate) const UNINIT_FULL: u8 = 1;
/// Crash reports are off.
pub(crate) const OFF: u8 = 2;
/// Crash reports are on.
pub(crate) const ON: u8 = 3;

/// The crash-report switch, read by every capture.
pub(crate) static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// The usage-ping switch, read by every `track`.
pub(crate) static USAGE_ON: AtomicBool = AtomicBool::new(false);

static RUNTIME: RwLock<Option<Arc<Runtime>>> = RwLock::new(None);

/// Captures waiting for the worker, at most; more are counted and dropped.
const MAX_PENDING: usize = 100;
/// How long one background upload may take.
const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry backoff bounds after a failed upload.
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// After a request got no answer, flushes within this time do not try again (the worker
/// still retries with its backoff).
const UNANSWERED_PAUSE: Duration = Duration::from_secs(30);
/// The worker sends the first occurrence of an error this long after it happened, with the
/// count of the repeats seen meanwhile.
const REPEAT_HOLD: Duration = Duration::from_secs(1);
/// The most error kinds tracked for deduplication.
const DEDUP_KEYS: usize = 64;

/// The runtime, if `init` ran and its guard is alive.
pub(crate) fn current() -> Option<Arc<Runtime>> {
    RUNTIME.read().ok().and_then(|r| r.clone())
}

/// Work for the worker thread.
enum Job {
    Capture(Box<Captured>),
    /// Send this retired anonymous id's deletion request.
    Deletion(Uuid),
}

/// When the worker last failed to upload, and when it may try again.
#[derive(Debug)]
struct Backoff {
    delay: Duration,
    next: Option<Instant>,
    rate_limited_until: Option<SystemTime>,
    /// When a request last got no answer at all (timeout, refused connection).
    unanswered_at: Option<Instant>,
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
    template: Value,
}

/// Everything `init` set up.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) paths: Paths,
    pub(crate) env: EnvSnapshot,
    pub(crate) debug: bool,
    pub(crate) session_id: Uuid,
    decision: Mutex<Decision>,
    /// The anonymous id and salt from the settings.
    ids: Mutex<(Uuid, String)>,
    /// (modified time, length) of the settings file when last read.
    settings_seen: Mutex<Option<(SystemTime, u64)>>,
    facts: OnceLock<Facts>,
    scrubber: OnceLock<Result<Scrubber, String>>,
    pub(crate) outbox: Option<Outbox>,
    target: Option<SentryTarget>,
    jobs: Mutex<VecDeque<Job>>,
    /// Held while one job goes through the pipeline: the worker and a flush may both drain
    /// the queue, and deduplication needs them to take turns.
    pipeline: Mutex<()>,
    wake: Condvar,
    pub(crate) usage: UsageQueue,
    dedup: Mutex<HashMap<String, Seen>>,
    in_flight: Mutex<HashSet<PathBuf>>,
    /// Held while sending crash reports: one request at a time, so a rate limit or a failure
    /// that one sender meets stops the others before their next request.
    sending: Mutex<()>,
    backoff: Mutex<Backoff>,
    dropped: AtomicU64,
    /// Panic reports being written on helper threads; a flush waits for them.
    pub(crate) panics_in_progress: std::sync::atomic::AtomicUsize,
    stop: AtomicBool,
    worker_started: AtomicBool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("app", &self.config.app_name)
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

/// Keeps consentry running; dropping it flushes (with the configured deadline) and stops.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let guard = consentry::init(consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path()));
/// // ... the app runs ...
/// drop(guard); // flushes for at most `flush_timeout`, then stops
/// ```
#[must_use = "dropping the guard stops consentry: keep it alive until main returns"]
#[derive(Debug)]
pub struct Guard {
    runtime: Option<Arc<Runtime>>,
}

impl Guard {
    /// Sends what is waiting, for at most `timeout`. Returns `true` when nothing is left.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let guard = consentry::init(consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path()));
    /// assert!(guard.flush(std::time::Duration::from_millis(100)));
    /// ```
    pub fn flush(&self, timeout: Duration) -> bool {
        self.runtime.as_ref().is_none_or(|rt| {
            catch_unwind(AssertUnwindSafe(|| rt.flush(timeout, timeout))).unwrap_or(false)
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Never unwind into the app, which may itself be unwinding.
            let _ = catch_unwind(AssertUnwindSafe(|| rt.shutdown()));
        }
    }
}

/// Sets consentry up for this process; see [`crate::init`].
pub(crate) fn init(config: Config) -> Guard {
    if current().is_some() {
        diag::warn_once("init-twice", || {
            "consentry::init was called twice; the second call is ignored".to_owned()
        });
        return Guard { runtime: None };
    }
    if let Err(e) = config.validate() {
        diag::warn_once("bad-config", || {
            format!("{e}; crash and usage reporting stay off")
        });
        STATE.store(OFF, Ordering::Release);
        drop(crate::early::drain());
        return Guard { runtime: None };
    }
    let env = EnvSnapshot::from_process(&config.env_prefix());
    let paths = Paths::resolve(&config, &env);
    let (settings, decision) = decide_on_disk(
        &config,
        &env,
        load_settings(&config, &paths),
        consent::interactive(),
    );
    let settings_error = settings.as_ref().err().cloned();
    if let Some(e) = settings_error {
        diag::warn_once("settings-unusable", || format!("{e}; nothing will be sent"));
    }
    let (anonymous_id, salt, pending_deletion) = settings
        .as_ref()
        .map(|s| {
            (
                s.anonymous_id(),
                s.data().salt.clone(),
                s.data().pending_deletion.clone(),
            )
        })
        .unwrap_or_else(|_| (Uuid::nil(), String::new(), Vec::new()));
    if decision.next == NextStep::Notice
        && let Ok(mut settings) = settings
    {
        diag::eprint_line(&consent::notice(&config));
        let recorded = settings.modify(|d| {
            d.notice_shown_at = Some(crate::settings::now_rfc3339());
            d.consent = Consent::record(true, ConsentSource::Default);
        });
        if let Err(e) = recorded {
            diag::warn_once("notice-record", || {
                format!("cannot record that the notice was shown: {e}")
            });
        }
    }
    let runtime = Arc::new(Runtime::build(
        config,
        env,
        paths,
        decision.clone(),
        (anonymous_id, salt),
    ));
    runtime.remember_settings_version();
    if let Ok(mut slot) = RUNTIME.write() {
        *slot = Some(runtime.clone());
    }
    runtime.apply(&decision);
    runtime.settle_deletions(pending_deletion);
    Guard {
        runtime: Some(runtime),
    }
}

/// [`consent::decide_for`] on loaded settings, plus one check only a real file needs: when
/// the decision would send or prompt, the settings directory must be writable. A file that
/// says yes in a directory that cannot be written would keep sending after a "no" that
/// cannot be recorded, so such settings count as unusable (nothing is sent).
pub(crate) fn decide_on_disk(
    config: &Config,
    env: &EnvSnapshot,
    mut settings: Result<Settings, String>,
    interactive: bool,
) -> (Result<Settings, String>, Decision) {
    let decide = |settings: &Result<Settings, String>| {
        consent::decide_for(
            config,
            env,
            settings
                .as_ref()
                .map(Settings::data)
                .map_err(String::as_str),
            interactive,
        )
    };
    let mut decision = decide(&settings);
    if (!decision.is_off() || matches!(decision.next, NextStep::Ask | NextStep::Notice))
        && let Ok(s) = &settings
        && let Err(e) = s.check_writable()
    {
        settings = Err(e.to_string());
        decision = decide(&settings);
    }
    (settings, decision)
}

/// Loads the settings, reporting a recovered corrupt file once. `Err` says why they cannot
/// be used (then nothing is sent).
fn load_settings(config: &Config, paths: &Paths) -> Result<Settings, String> {
    let settings = Settings::load_for(config, paths).map_err(|e| e.to_string())?;
    if let Some(r) = settings.recovered() {
        diag::warn_once("settings-corrupt", || {
            format!(
                "the settings file {} was unreadable ({}); it was moved to {} and defaults are used",
                settings.path().display(),
                r.problem,
                r.moved_to.display()
            )
        });
    }
    Ok(settings)
}

impl Runtime {
    /// A runtime that is not started: nothing runs until [`Runtime::apply`]. `init` builds
    /// one per process; `preview` builds a throwaway one.
    pub(crate) fn build(
        config: Config,
        env: EnvSnapshot,
        paths: Paths,
        decision: Decision,
        ids: (Uuid, String),
    ) -> Runtime {
        let target = config.parsed_dsn().map(|dsn| SentryTarget::new(&dsn));
        let outbox = paths
            .outbox_dir()
            .map(|dir| Outbox::new(dir, config.outbox_max_envelopes, config.outbox_max_bytes));
        Runtime {
            debug: env.debug(&config.env_prefix()),
            session_id: Uuid::new_v4(),
            decision: Mutex::new(decision),
            ids: Mutex::new(ids),
            settings_seen: Mutex::new(None),
            facts: OnceLock::new(),
            scrubber: OnceLock::new(),
            outbox,
            target,
            jobs: Mutex::new(VecDeque::new()),
            pipeline: Mutex::new(()),
            wake: Condvar::new(),
            usage: UsageQueue::new(config.usage_queue_capacity),
            dedup: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            sending: Mutex::new(()),
            backoff: Mutex::new(Backoff {
                delay: MIN_BACKOFF,
                next: None,
                rate_limited_until: None,
                unanswered_at: None,
            }),
            dropped: AtomicU64::new(0),
            panics_in_progress: std::sync::atomic::AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            worker_started: AtomicBool::new(false),
            paths,
            env,
            config,
        }
    }

    /// Deletion requests owed for ids retired by `disable`: queued for the worker when the
    /// sink takes them (the one request sent without consent, because it is the user's
    /// request to be forgotten), forgotten when the sink has no deletion API.
    fn settle_deletions(self: &Arc<Self>, pending: Vec<Uuid>) {
        if pending.is_empty() || self.debug {
            return;
        }
        match &self.config.usage_sink {
            Some(sink) if sink.supports_deletion() => {
                self.start_worker();
                for id in pending {
                    self.push(Job::Deletion(id));
                }
            }
            Some(_) => {
                if let Some(path) = self.paths.settings_file()
                    && let Ok(mut s) = Settings::load_from(&path)
                {
                    let _ = s.modify(|d| d.pending_deletion.clear());
                }
            }
            // No sink configured in this build: keep them owed.
            None => {}
        }
    }

    /// Turns crash reports and usage pings on or off as `decision` says.
    pub(crate) fn apply(self: &Arc<Self>, decision: &Decision) {
        if let Ok(mut d) = self.decision.lock() {
            *d = decision.clone();
        }
        if decision.crash || decision.usage {
            self.start_worker();
        }
        if decision.crash {
            crate::panic::install();
            STATE.store(ON, Ordering::Release);
            self.adopt_early();
        } else {
            STATE.store(OFF, Ordering::Release);
            drop(crate::early::drain());
        }
        USAGE_ON.store(decision.usage, Ordering::Release);
    }

    pub(crate) fn decision(&self) -> Decision {
        self.decision
            .lock()
            .map(|d| d.clone())
            .unwrap_or_else(|_| Decision::off("disabled: internal state unavailable"))
    }

    /// The anonymous id and the salt.
    pub(crate) fn ids(&self) -> (Uuid, String) {
        self.ids
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_else(|_| (Uuid::nil(), String::new()))
    }

    fn start_worker(self: &Arc<Self>) {
        if self.worker_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let rt = self.clone();
        let spawned = std::thread::Builder::new()
            .name("consentry-worker".into())
            .spawn(move || {
                crate::panic::mark_internal_thread();
                rt.worker_loop();
            });
        if let Err(e) = spawned {
            diag::warn_once("worker-spawn", || {
                format!("cannot start the background worker: {e}")
            });
        }
    }

    /// Queues work for the worker. Captures beyond [`MAX_PENDING`] are counted and dropped.
    fn push(&self, job: Job) -> bool {
        let Ok(mut jobs) = self.jobs.lock() else {
            return false;
        };
        if jobs.len() >= MAX_PENDING {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        jobs.push_back(job);
        self.wake.notify_one();
        true
    }

    /// Wakes the worker (a usage event was queued).
    pub(crate) fn notify(&self) {
        self.wake.notify_one();
    }

    /// Hands an event built on the caller's thread to the worker, with a raw backtrace of
    /// this thread if `backtrace` and the config want one (symbolicated on the worker).
    pub(crate) fn submit(
        &self,
        event: sentry::protocol::Event<'static>,
        kind: Kind,
        backtrace: bool,
    ) -> Option<Uuid> {
        let backtrace =
            (backtrace && self.config.attach_backtrace).then(backtrace::Backtrace::new_unresolved);
        self.capture(Captured {
            event,
            backtrace,
            breadcrumb_seq: BREADCRUMBS.current(),
            kind,
        })
    }

    /// Hands a capture to the worker; the caller's thread does nothing more.
    pub(crate) fn capture(&self, captured: Captured) -> Option<Uuid> {
        let id = captured.event.event_id;
        self.push(Job::Capture(Box::new(captured))).then_some(id)
    }

    fn pop(&self) -> Option<Job> {
        self.jobs.lock().ok().and_then(|mut jobs| jobs.pop_front())
    }

    fn worker_loop(self: Arc<Self>) {
        // The costly set-up happens here, not on the thread that called `init`.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.facts();
            let _ = self.scrubber();
        }));
        while !self.stop.load(Ordering::Acquire) {
            let step = catch_unwind(AssertUnwindSafe(|| {
                self.run_jobs(None);
                if STATE.load(Ordering::Acquire) == ON {
                    self.expire_dedup(false);
                    self.upload_pending(None);
                }
                if USAGE_ON.load(Ordering::Acquire) {
                    self.usage_tick(None);
                }
            }));
            if step.is_err() {
                diag::warn_once("worker-panic", || {
                    "internal error in the background worker; it keeps running".to_owned()
                });
            }
            let wait = self.next_wake();
            if let Ok(jobs) = self.jobs.lock() {
                let _ = self.wake.wait_timeout_while(jobs, wait, |jobs| {
                    jobs.is_empty()
                        && !self.stop.load(Ordering::Acquire)
                        && !self.usage.due(&self.config)
                });
            }
        }
    }

    /// How long the worker may sleep: until the next retry, usage batch or dedup expiry.
    fn next_wake(&self) -> Duration {
        let mut wait = Duration::from_secs(5);
        if let Ok(b) = self.backoff.lock()
            && let Some(next) = b.next
        {
            wait = wait.min(next.saturating_duration_since(Instant::now()));
        }
        if let Some(d) = self.usage.time_until_due(&self.config) {
            wait = wait.min(d);
        }
        if let Some(d) = self.next_hold_end() {
            wait = wait.min(d);
        }
        wait.max(Duration::from_millis(5))
    }

    /// Runs queued jobs. Past `deadline` (a flush's), events are still stored, but with
    /// bare addresses instead of a symbolicated stack trace: symbolication can take seconds,
    /// and a flush must not wait longer than its deadline.
    fn run_jobs(&self, deadline: Option<Instant>) {
        loop {
            // A flush waits for the worker's current job only until its deadline.
            let _turn = match deadline {
                Some(d) => match lock_until(&self.pipeline, d) {
                    Some(turn) => turn,
                    None => break,
                },
                None => self.pipeline.lock().unwrap_or_else(|p| p.into_inner()),
            };
            let Some(job) = self.pop() else { break };

            match job {
                Job::Capture(captured) => {
                    if STATE.load(Ordering::Acquire) == ON {
                        let symbolicate = deadline.is_none_or(|d| Instant::now() < d);
                        self.process(*captured, symbolicate);
                    }
                }
                Job::Deletion(id) => self.send_deletion(id),
            }
        }
    }

    /// Facts about this process, gathered once.
    pub(crate) fn facts(&self) -> &Facts {
        self.facts.get_or_init(|| {
            let ci = self.env.ci().map(|(_, vendor)| vendor);
            Facts::gather(ci, self.session_id)
        })
    }

    /// The scrubber for this process (identity, environment, salt, the app's rules), built
    /// once. `Err` when the app's rules do not compile: then every event is dropped.
    pub(crate) fn scrubber(&self) -> Result<&Scrubber, String> {
        self.scrubber
            .get_or_init(|| {
                let (_, salt) = self.ids();
                let mut builder = Identity::current().builder().salt(salt.as_bytes());
                for rule in &self.config.scrub_rules {
                    builder = builder.rule(rule.clone());
                }
                for name in &self.config.scrub_disabled {
                    builder = builder.disable_rule(name);
                }
                builder.build().map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    pub(crate) fn enrichment(&self) -> Enrichment {
        Enrichment {
            app_name: self.config.app_name.clone(),
            app_version: self.config.app_version.clone(),
            environment: self.config.environment_name(),
            anonymous_id: self.ids().0,
            facts: self.facts().clone(),
            report_ci: self.config.allow_ci,
        }
    }

    /// The pipeline: backtrace, breadcrumbs, ignore rules, deduplication, enrichment,
    /// scrubbing, the app's hook, and then the outbox. Returns the stored file, if any.
    pub(crate) fn process(&self, captured: Captured, symbolicate: bool) -> Option<PathBuf> {
        self.process_with(captured, symbolicate, None)
    }

    /// [`Runtime::process`]; for a panic, `stored` learns the outbox file as soon as the
    /// first (unsymbolicated) copy is durable, so the panic hook can send it while
    /// symbolication goes on.
    pub(crate) fn process_with(
        &self,
        captured: Captured,
        symbolicate: bool,
        stored: Option<&std::sync::mpsc::Sender<PathBuf>>,
    ) -> Option<PathBuf> {
        let Captured {
            mut event,
            backtrace,
            breadcrumb_seq,
            kind,
        } = captured;
        event.breadcrumbs = report::BREADCRUMBS.up_to(breadcrumb_seq).into();
        if kind == Kind::Panic {
            return self.process_panic(event, backtrace, stored);
        }
        if let Some(mut bt) = backtrace {
            let st = if symbolicate {
                report::stacktrace_from(&mut bt)
            } else {
                report::stacktrace_unresolved(&bt)
            };
            attach_stacktrace(&mut event, st);
        }
        if self.ignored(&event) {
            return None;
        }
        let key = report::dedup_key(&event);
        if self.repeat(&key) {
            return None;
        }
        self.enrichment().apply(&mut event);
        let event_id = event.event_id;
        let value = self.scrub_and_hook(serde_json::to_value(&event).ok()?)?;
        let path = self.store(event_id, &value)?;
        if let Ok(mut dedup) = self.dedup.lock() {
            if dedup.len() >= DEDUP_KEYS
                && let Some(oldest) = dedup
                    .iter()
                    .min_by_key(|(_, s)| s.first)
                    .map(|(k, _)| k.clone())
            {
                dedup.remove(&oldest);
            }
            dedup.insert(
                key,
                Seen {
                    first: Instant::now(),
                    path: Some(path.clone()),
                    repeats: 0,
                    template: value,
                },
            );
        }
        Some(path)
    }

    /// A panic is stored twice: first at once with a stack trace of bare addresses, then
    /// again, in place, once symbolication is done. Symbolication of a large binary can take
    /// seconds, and the process may end (or abort) before: the first copy is what makes sure
    /// the report is not lost.
    fn process_panic(
        &self,
        mut event: sentry::protocol::Event<'static>,
        backtrace: Option<backtrace::Backtrace>,
        stored: Option<&std::sync::mpsc::Sender<PathBuf>>,
    ) -> Option<PathBuf> {
        if self.ignored(&event) {
            return None;
        }
        self.enrichment().apply(&mut event);
        let event_id = event.event_id;
        let quick = (!self.debug).then(|| {
            let mut quick = event.clone();
            attach_stacktrace(
                &mut quick,
                backtrace.as_ref().and_then(report::stacktrace_unresolved),
            );
            quick
        });
        let path = match quick {
            Some(quick) => {
                let value = self.scrub_and_hook(serde_json::to_value(&quick).ok()?)?;
                let path = self.write_outbox(event_id, &value)?;
                if let Some(tx) = stored {
                    let _ = tx.send(path.clone());
                }
                Some(path)
            }
            None => None,
        };
        if let Some(mut bt) = backtrace {
            attach_stacktrace(&mut event, report::stacktrace_from(&mut bt));
        }
        let value = serde_json::to_value(&event)
            .ok()
            .and_then(|v| self.scrub_and_hook(v));
        match (path, value) {
            (Some(path), Some(value)) => {
                let bytes = report::envelope_bytes(event_id, &value);
                // Unless it was sent meanwhile (a flush on another thread): then keep it gone.
                if let Some(_claim) = Claim::take(&self.in_flight, &path)
                    && path.exists()
                {
                    let _ = crate::settings::write_file_atomically(&path, &bytes);
                }
                self.audit_local(&value);
                Some(path)
            }
            (path, Some(value)) => path.or_else(|| self.store(event_id, &value)),
            (path, None) => path,
        }
    }

    /// Whether an app ignore rule drops the event.
    fn ignored(&self, event: &sentry::protocol::Event<'static>) -> bool {
        self.config.ignore.iter().any(|rule| match rule {
            Ignore::ErrorType(ty) => event.exception.iter().any(|e| &e.ty == ty),
            Ignore::MessageContains(needle) => {
                event
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains(needle.as_str()))
                    || event.exception.iter().any(|e| {
                        e.value
                            .as_deref()
                            .is_some_and(|v| v.contains(needle.as_str()))
                    })
            }
        })
    }

    /// Counts a repeat of a recently seen error. `true` means "drop this one".
    fn repeat(&self, key: &str) -> bool {
        let Ok(mut dedup) = self.dedup.lock() else {
            return false;
        };
        match dedup.get_mut(key) {
            Some(seen) if seen.first.elapsed() < self.config.dedup_window => {
                seen.repeats += 1;
                true
            }
            _ => false,
        }
    }

    /// Reports the repeats counted for errors whose window ended (or all, at shutdown): the
    /// first occurrence if still unsent carries the count; otherwise one more event with it.
    fn expire_dedup(&self, all: bool) {
        let expired: Vec<(String, Seen)> = {
            let Ok(mut dedup) = self.dedup.lock() else {
                return;
            };
            let window = self.config.dedup_window;
            let keys: Vec<String> = dedup
                .iter()
                .filter(|(_, s)| all || s.first.elapsed() >= window)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| dedup.remove(&k).map(|s| (k, s)))
                .collect()
        };
        for (_, seen) in expired {
            if seen.repeats == 0 {
                continue;
            }
            // Only while nobody is sending it: a file being sent gets no new count (the send
            // would delete it afterwards); the count then goes out as an event of its own.
            if let Some(path) = &seen.path
                && let Some(_claim) = Claim::take(&self.in_flight, path)
                && self.add_count(path, seen.repeats)
            {
                continue;
            }
            let mut event = seen.template;
            let id = Uuid::new_v4();
            event["event_id"] = Value::from(id.simple().to_string());
            set_extra(
                &mut event,
                "consentry.occurrences",
                Value::from(seen.repeats),
            );
            set_extra(
                &mut event,
                "consentry.repeat_of_earlier_report",
                Value::from(true),
            );
            self.store(id, &event);
        }
    }

    /// Adds `repeats` to the occurrence count of a stored, unsent event. `false` if it is
    /// already gone (sent). The caller holds the file's claim.
    fn add_count(&self, path: &Path, repeats: u64) -> bool {
        let Ok(bytes) = std::fs::read(path) else {
            return false;
        };
        let Some(mut event) = report::event_of_envelope(&bytes) else {
            return false;
        };
        let before = event["extra"]["consentry.occurrences"]
            .as_u64()
            .unwrap_or(1);
        set_extra(
            &mut event,
            "consentry.occurrences",
            Value::from(before + repeats),
        );
        let Some(id) = crate::outbox::event_id_of(path) else {
            return false;
        };
        crate::settings::write_file_atomically(path, &report::envelope_bytes(id, &event)).is_ok()
    }

    /// Scrubs, lets the app's hook look, scrubs again (so a hook cannot put PII back).
    /// Any failure or panic drops the event: fail closed.
    fn scrub_and_hook(&self, value: Value) -> Option<Value> {
        let scrubber = match self.scrubber() {
            Ok(s) => s,
            Err(e) => {
                diag::warn_once("scrubber-build", || {
                    format!("the scrubbing rules do not compile ({e}); reports are dropped")
                });
                return None;
            }
        };
        let scrub = |mut v: Value| -> Result<Value, String> {
            scrubber.scrub_value(&mut v).map_err(|e| e.to_string())?;
            report::strip_identifying(&mut v);
            Ok(v)
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<Option<Value>, String> {
            let v = scrub(value)?;
            match &self.config.before_send {
                None => Ok(Some(v)),
                Some(hook) => match hook(v) {
                    Some(v) if v.is_object() => scrub(v).map(Some),
                    Some(_) => Err("the app's before_send hook returned a non-object".to_owned()),
                    None => Ok(None),
                },
            }
        }));
        match outcome {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                diag::warn_once("scrub-failed", || {
                    format!("a report could not be scrubbed ({e}); it was dropped, not sent")
                });
                None
            }
            Err(_) => {
                diag::warn_once("hook-panic", || {
                    "a panic in the scrubber or the app's before_send hook; the report was dropped"
                        .to_owned()
                });
                None
            }
        }
    }

    /// Stores a scrubbed event: printed in debug mode; else written to the outbox (and, with
    /// no DSN, recorded in the audit log as kept locally).
    fn store(&self, event_id: Uuid, event: &Value) -> Option<PathBuf> {
        if self.debug {
            let pretty = serde_json::to_string_pretty(event).unwrap_or_default();
            diag::eprint_line(&format!(
                "[consentry debug] crash report {event_id} (debug mode: not stored, not sent):\n{pretty}"
            ));
            return None;
        }
        let path = self.write_outbox(event_id, event)?;
        self.audit_local(event);
        Some(path)
    }

    /// Writes a scrubbed event to the outbox. Consent is read again first: `disable` in
    /// another process stops new reports from being stored, not only sent (with no DSN,
    /// storing is all that happens). One stat of the settings file, beside a write with
    /// fsync.
    fn write_outbox(&self, event_id: Uuid, event: &Value) -> Option<PathBuf> {
        let outbox = self.outbox.as_ref()?;
        self.recheck_consent();
        if STATE.load(Ordering::Acquire) != ON {
            return None;
        }
        match outbox.write(event_id, &report::envelope_bytes(event_id, event)) {
            Ok(path) => Some(path),
            Err(e) => {
                diag::warn_once("outbox-write", || {
                    format!("cannot write to the outbox {}: {e}", outbox.dir().display())
                });
                None
            }
        }
    }

    /// With no DSN, the audit log records what was kept locally instead of sent.
    fn audit_local(&self, event: &Value) {
        if self.target.is_none()
            && let Some(log) = self.paths.audit_log()
        {
            crate::audit::append(
                &log,
                "crash",
                "none: no DSN configured, kept in the local outbox",
                None,
                event.clone(),
            );
        }
    }

    /// Re-reads the settings if another process changed them and applies what they say now.
    /// Called before every send: consent is checked at send time, not only at start.
    pub(crate) fn recheck_consent(&self) {
        let Some(path) = self.paths.settings_file() else {
            return;
        };
        let version = std::fs::metadata(&path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let changed = self
            .settings_seen
            .lock()
            .map(|seen| *seen != version)
            .unwrap_or(true);
        if !changed {
            return;
        }
        let settings = Settings::load_from(&path).map_err(|e| e.to_string());
        self.remember_settings_version();
        let (settings, decision) = decide_on_disk(&self.config, &self.env, settings, false);
        if let Ok(s) = &settings
            && let Ok(mut ids) = self.ids.lock()
        {
            ids.0 = s.anonymous_id();
        }
        let was = self.decision();
        if was.crash && !decision.crash {
            STATE.store(OFF, Ordering::Release);
            if let Some(outbox) = &self.outbox {
                outbox.clear();
            }
        }
        if was.usage && !decision.usage {
            USAGE_ON.store(false, Ordering::Release);
            self.usage.clear();
        }
        // A "yes" given in another process takes effect at the next start, not mid-run.
        let mut merged = decision;
        merged.crash &= was.crash;
        merged.usage &= was.usage;
        if let Ok(mut d) = self.decision.lock() {
            *d = merged;
        }
    }

    fn remember_settings_version(&self) {
        let version = self
            .paths
            .settings_file()
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if let Ok(mut seen) = self.settings_seen.lock() {
            *seen = version;
        }
    }

    /// Sends waiting envelopes, oldest first. With a deadline (flush, panic) it tries now,
    /// whatever the backoff, and gives up at the deadline; without one (the worker) it
    /// respects the backoff. Never sends during a server-imposed rate limit.
    pub(crate) fn upload_pending(&self, deadline: Option<Instant>) {
        self.upload(deadline, None);
    }

    /// Sends one stored envelope now (the panic hook), within `deadline`.
    pub(crate) fn upload_one(&self, path: &Path, deadline: Instant) -> Option<Delivery> {
        self.upload(Some(deadline), Some(path))
    }

    fn upload(&self, deadline: Option<Instant>, only: Option<&Path>) -> Option<Delivery> {
        if self.debug {
            return None;
        }
        let (target, outbox) = (self.target.as_ref()?, self.outbox.as_ref()?);
        // A flush (or the panic hook) waits for the worker's request, within its deadline;
        // the worker does not wait for anyone.
        let _sending = match deadline {
            Some(d) => lock_until(&self.sending, d)?,
            None => match self.sending.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return None,
            },
        };
        self.recheck_consent();
        if STATE.load(Ordering::Acquire) != ON {
            return None;
        }
        if self.rate_limited() {
            return None;
        }
        if let Ok(b) = self.backoff.lock() {
            // The worker respects the backoff. A flush tries at once, unless the server just
            // gave no answer at all: a panic's attempt that timed out is not repeated by the
            // guard's flush right after, which would double the time the process waits.
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
            None => outbox.list().into_iter().map(|e| e.path).collect(),
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
                Some(d) => Claim::wait_take(&self.in_flight, &path, d),
                None => Claim::take(&self.in_flight, &path),
            };
            let Some(_claim) = claim else {
                continue;
            };
            if !path.exists() || (deadline.is_none() && self.held_for_repeats(&path).is_some()) {
                continue;
            }
            self.apply_repeats(&path);
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let delivery = transport::send(target, &bytes, timeout);
            // What reached a server is in the audit log, whatever it answered.
            let answered = match &delivery {
                Delivery::Accepted { status, .. } | Delivery::Rejected(status) => Some(*status),
                Delivery::Retry { status, .. } => *status,
                Delivery::RateLimited(_) => None,
            };
            if let Some(status) = answered
                && let Some(log) = self.paths.audit_log()
            {
                let payload = report::event_of_envelope(&bytes).unwrap_or(Value::Null);
                crate::audit::append(&log, "crash", target.url(), Some(status), payload);
            }
            match &delivery {
                Delivery::Accepted { limit, .. } => {
                    outbox.remove(&path);
                    self.forget_sent(&path);
                    if let Ok(mut b) = self.backoff.lock() {
                        b.delay = MIN_BACKOFF;
                        b.next = None;
                        b.unanswered_at = None;
                    }
                    if let Some(until) = *limit {
                        self.pause_until(until);
                        return Some(delivery);
                    }
                }
                Delivery::Rejected(status) => {
                    outbox.remove(&path);
                    self.forget_sent(&path);
                    diag::warn_once("rejected", || {
                        format!("the server refused a crash report (HTTP {status}); it was dropped")
                    });
                }
                Delivery::RateLimited(until) => {
                    self.pause_until(*until);
                    return Some(delivery);
                }
                Delivery::Retry { status, why } => {
                    if let Ok(mut b) = self.backoff.lock() {
                        b.next = Some(Instant::now() + b.delay);
                        b.delay = (b.delay * 2).min(MAX_BACKOFF);
                        if status.is_none() {
                            b.unanswered_at = Some(Instant::now());
                        }
                    }
                    if status.is_some() {
                        diag::warn_once("retry-status", || {
                            format!("crash reports are kept for later: {why}")
                        });
                    }
                    return Some(delivery);
                }
            }
            last = Some(delivery);
        }
        last
    }

    /// How much longer the worker keeps the first occurrence of an error unsent, so that a
    /// burst of the same error goes out as one event with its count ([`REPEAT_HOLD`]). A
    /// flush sends at once (with the count so far).
    fn held_for_repeats(&self, path: &Path) -> Option<Duration> {
        let dedup = self.dedup.lock().ok()?;
        dedup
            .values()
            .filter(|s| s.path.as_deref() == Some(path))
            .map(|s| REPEAT_HOLD.saturating_sub(s.first.elapsed()))
            .find(|left| !left.is_zero())
    }

    /// The soonest end of a [`REPEAT_HOLD`], if any file is held.
    fn next_hold_end(&self) -> Option<Duration> {
        let dedup = self.dedup.lock().ok()?;
        dedup
            .values()
            .filter(|s| s.path.is_some())
            .map(|s| REPEAT_HOLD.saturating_sub(s.first.elapsed()))
            .filter(|left| !left.is_zero())
            .min()
    }

    /// Records a server-imposed pause, here and on disk (it outlives the process).
    fn pause_until(&self, until: std::time::SystemTime) {
        if let Ok(mut b) = self.backoff.lock() {
            b.rate_limited_until = Some(until);
        }
        if let Some(file) = self.paths.rate_limit_file() {
            RateLimitFile::store(&file, until);
        }
    }

    /// Before the first occurrence of an error is sent, adds the repeats counted so far to
    /// it, so a burst of the same error is sent once, with its count.
    fn apply_repeats(&self, path: &Path) {
        let repeats = self
            .dedup
            .lock()
            .ok()
            .and_then(|mut dedup| {
                dedup
                    .values_mut()
                    .find(|s| s.path.as_deref() == Some(path))
                    .map(|s| std::mem::take(&mut s.repeats))
            })
            .unwrap_or(0);
        if repeats > 0 {
            self.add_count(path, repeats);
        }
    }

    /// The first occurrence was sent: later repeats need an event of their own.
    fn forget_sent(&self, path: &Path) {
        if let Ok(mut dedup) = self.dedup.lock() {
            for seen in dedup.values_mut() {
                if seen.path.as_deref() == Some(path) {
                    seen.path = None;
                }
            }
        }
    }

    /// Whether the server asked us to wait (in this process or an earlier one).
    fn rate_limited(&self) -> bool {
        let now = SystemTime::now();
        if let Ok(b) = self.backoff.lock()
            && b.rate_limited_until.is_some_and(|until| until > now)
        {
            return true;
        }
        self.paths
            .rate_limit_file()
            .is_some_and(|f| RateLimitFile::load(&f).active_until().is_some())
    }

    /// Processes what is queued and sends what is waiting, for at most the given times.
    pub(crate) fn flush(&self, crash_timeout: Duration, usage_timeout: Duration) -> bool {
        let start = Instant::now();
        self.flush_until(
            start + clamp_wait(crash_timeout),
            start + clamp_wait(usage_timeout),
            false,
        )
    }

    /// [`Runtime::flush`] with deadlines; `all_repeats` also reports repeat counts whose
    /// window has not ended (at shutdown).
    fn flush_until(
        &self,
        crash_deadline: Instant,
        usage_deadline: Instant,
        all_repeats: bool,
    ) -> bool {
        // A panic on another thread may still be writing its report (the app goes on
        // after a thread panics): wait for it, within the deadline.
        while self.panics_in_progress.load(Ordering::Acquire) > 0 && Instant::now() < crash_deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.run_jobs(Some(crash_deadline));
        if STATE.load(Ordering::Acquire) == ON {
            self.expire_dedup(all_repeats);
        }
        if USAGE_ON.load(Ordering::Acquire) {
            self.usage_tick(Some(usage_deadline));
        }
        if STATE.load(Ordering::Acquire) == ON {
            self.upload_pending(Some(crash_deadline));
        }
        let outbox_empty =
            self.target.is_none() || self.outbox.as_ref().is_none_or(|o| o.list().is_empty());
        outbox_empty && self.usage.is_empty()
    }

    /// The guard was dropped: report pending repeat counts, flush with the configured
    /// deadlines, stop the worker and turn everything off.
    pub(crate) fn shutdown(&self) {
        let start = Instant::now();
        // Whatever happens in the flush, the worker stops and everything turns off below.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.flush_until(
                start + self.config.flush_timeout,
                start + self.config.usage_flush_timeout,
                true,
            )
        }));
        let dropped = self.dropped.load(Ordering::Relaxed) + self.usage.dropped();
        if dropped > 0 && self.debug {
            diag::eprint_line(&format!(
                "[consentry debug] {dropped} events were dropped because a queue was full"
            ));
        }
        self.stop.store(true, Ordering::Release);
        self.wake.notify_all();
        STATE.store(OFF, Ordering::Release);
        USAGE_ON.store(false, Ordering::Release);
        if let Ok(mut slot) = RUNTIME.write() {
            *slot = None;
        }
    }

    /// Marks consent withdrawn in this process (after `disable`).
    pub(crate) fn turn_off(&self, crash: bool, usage: bool) {
        if crash {
            STATE.store(OFF, Ordering::Release);
        }
        if usage {
            USAGE_ON.store(false, Ordering::Release);
            self.usage.clear();
        }
        if let Ok(mut d) = self.decision.lock() {
            d.crash &= !crash;
            d.usage &= !usage;
        }
    }
}

/// Sets `event.extra[key]`. The app's hook may have left `extra` (or the event) something
/// other than an object; indexing would panic, so such an `extra` is replaced.
fn set_extra(event: &mut Value, key: &str, value: Value) {
    let Some(event) = event.as_object_mut() else {
        return;
    };
    let extra = event
        .entry("extra")
        .or_insert_with(|| Value::Object(Map::new()));
    if !extra.is_object() {
        *extra = Value::Object(Map::new());
    }
    if let Some(extra) = extra.as_object_mut() {
        extra.insert(key.to_owned(), value);
    }
}

/// Takes `lock`, waiting at most until `deadline`.
fn lock_until<T>(lock: &Mutex<T>, deadline: Instant) -> Option<std::sync::MutexGuard<'_, T>> {
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

/// Puts a stack trace on the event's last exception (the error itself), or on the event.
fn attach_stacktrace(
    event: &mut sentry::protocol::Event<'static>,
    st: Option<sentry::protocol::Stacktrace>,
) {
    let Some(st) = st else { return };
    match event.exception.values.last_mut() {
        Some(top) => top.stacktrace = Some(st),
        None => event.stacktrace = Some(st),
    }
}

/// A claim on an outbox file while it is being sent, so the worker and a flush (or the
/// panic hook) do not send the same file at once.
struct Claim<'a> {
    set: &'a Mutex<HashSet<PathBuf>>,
    path: PathBuf,
}

impl<'a> Claim<'a> {
    fn take(set: &'a Mutex<HashSet<PathBuf>>, path: &Path) -> Option<Claim<'a>> {
        let mut guard = set.lock().ok()?;
        guard.insert(path.to_owned()).then(|| Claim {
            set,
            path: path.to_owned(),
        })
    }
}

impl<'a> Claim<'a> {
    /// Waits until nobody else holds `path` (or it is gone, or the deadline passes).
    fn wait_take(
        set: &'a Mutex<HashSet<PathBuf>>,
        path: &Path,
        deadline: Instant,
    ) -> Option<Claim<'a>> {
        loop {
            if let Some(claim) = Claim::take(set, path) {
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
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.path);
        }
    }
}

/// Asks the user for consent; see [`crate::ask`].
pub(crate) fn ask() -> Decision {
    let Some(rt) = current() else {
        return Decision::off("disabled: consentry::init was not called");
    };
    let decision = rt.decision();
    if !decision.can_ask() {
        return decision;
    }
    let config = &rt.config;
    diag::eprint_line(&consent::disclosure(config));
    let question = format!(
        "Allow {} to send these reports? [y/N] (no answer in {} s counts as no) ",
        config.app_name,
        config.prompt_timeout.as_secs()
    );
    {
        use std::io::Write;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "{question}");
        let _ = stderr.flush();
    }
    let answer = consent::read_line_timeout(config.prompt_timeout);
    let Some(answer) = answer else {
        diag::eprint_line("\nNo answer: nothing will be sent. You will be asked again next time.");
        return decision;
    };
    let granted = consent::is_yes(&answer);
    let Some(path) = rt.paths.settings_file() else {
        return decision;
    };
    let recorded = Settings::load_from(&path).and_then(|mut s| {
        crate::control::record_answer(&mut s, granted, ConsentSource::Prompt)?;
        Ok(s)
    });
    match recorded {
        Ok(settings) => {
            let new = consent::decide_for(config, &rt.env, Ok(settings.data()), false);
            rt.remember_settings_version();
            let msg = if granted {
                format!(
                    "Thank you. Turn it off any time with '{} disable'.",
                    config.command()
                )
            } else {
                format!(
                    "Nothing will be sent. Change your mind with '{} enable'.",
                    config.command()
                )
            };
            diag::eprint_line(&msg);
            rt.apply(&new);
            new
        }
        Err(e) => {
            diag::warn_once("ask-record", || format!("cannot record your answer: {e}"));
            decision
        }
    }
}

/// The guard `init` returns when it failed internally: it does nothing.
pub(crate) fn init_failed() -> Guard {
    Guard { runtime: None }
}

impl Runtime {
    /// Takes errors kept before `init` (one raced with it) and queues them.
    pub(crate) fn adopt_early(&self) {
        let seq = BREADCRUMBS.current();
        for event in crate::early::drain() {
            self.push(Job::Capture(Box::new(Captured {
                event,
                backtrace: None,
                breadcrumb_seq: seq,
                kind: Kind::Error,
            })));
        }
    }
}
