//! The process-wide runtime behind `init`: it composes the parts (the consent gate, the
//! pipeline, deduplication, the outbox and its uploads, usage delivery, the egress gate) and
//! runs them on one background worker.
//!
//! ```text
//! caller's thread: build + bound the event (report, bound) -> job queue (bounded in items and bytes)
//! worker:          pipeline::run -> outbox (Scrubbed only) -> upload -> egress
//!                  usage queue -> pipeline::usage -> usage store -> ping -> egress
//! ```
//!
//! The switches every capture reads are in [`crate::switch`]; everything else lives in a
//! [`Runtime`] created by `init` and reached through [`current`].

use std::cell::Cell;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::config::{Config, clamp_wait};
use crate::consent::{self, Decision, NextStep};
use crate::dedup::{Dedup, Expired, SystemClock};
use crate::diag;
use crate::egress::{self, Egress, Gate};
use crate::env::EnvSnapshot;
use crate::gate::{ConsentOnDisk, Withdrawn, decide_on_disk, load_settings};
use crate::outbox::Outbox;
use crate::paths::Paths;
use crate::ping::Pings;
use crate::pipeline::{Pipeline, Scrubbed, Stack, Verdict};
use crate::report::{BREADCRUMBS, Captured, Kind, RawStack};
use crate::settings::{ConsentSource, Mode, Settings};
use crate::switch;
use crate::transport::SentryTarget;
use crate::upload::{Uploads, lock_until};
use crate::usage::UsageQueue;

static RUNTIME: RwLock<Option<Arc<Runtime>>> = RwLock::new(None);

/// consentry as the facade's backend: where `capture_error` and friends go once reporting
/// is on. Each call builds on the caller's thread only what only it can (the event, a raw
/// stack) and queues it.
struct Backend;

static BACKEND: Backend = Backend;

fn event_id(id: Uuid) -> consentry_api::EventId {
    consentry_api::EventId::from_bytes(id.into_bytes())
}

impl consentry_api::Backend for Backend {
    fn capture_error(
        &self,
        err: &dyn std::error::Error,
        type_name: Option<&'static str>,
    ) -> Option<consentry_api::EventId> {
        let rt = current()?;
        rt.submit(
            crate::report::event_from_dyn_error(err, type_name),
            Kind::Error,
            true,
        )
        .map(event_id)
    }

    fn capture_message(
        &self,
        message: &str,
        level: consentry_api::Level,
    ) -> Option<consentry_api::EventId> {
        let rt = current()?;
        let level = crate::report::sentry_level(level);
        rt.submit(
            crate::report::event_from_message(message, level),
            Kind::Message,
            false,
        )
        .map(event_id)
    }

    fn track(&self, name: &str, props: &mut dyn Iterator<Item = (&str, consentry_api::Prop)>) {
        if let Some(rt) = current()
            && crate::usage::track(rt.usage_queue(), rt.debug, name, props)
        {
            rt.notify();
        }
    }

    fn add_breadcrumb(&self, category: &str, message: &str, level: consentry_api::Level) {
        if current().is_none() {
            return;
        }
        BREADCRUMBS.add(sentry::protocol::Breadcrumb {
            category: Some(crate::bound::cut(category, 128).into_owned()),
            message: Some(crate::bound::cut(message, 1024).into_owned()),
            level: crate::report::sentry_level(level),
            ..Default::default()
        });
    }

    fn early_kept(&self) {
        if let Some(rt) = current() {
            rt.adopt_early();
        }
    }
}

/// Captures waiting for the worker, at most, in number and in bytes; more are counted and
/// dropped.
const MAX_PENDING: usize = 100;
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;

thread_local! {
    /// Set while this thread runs the pipeline (the app's `before_send` hook may call
    /// `flush`, which must then return at once instead of waiting for itself).
    static IN_PIPELINE: Cell<bool> = const { Cell::new(false) };
}

/// The runtime, if `init` ran in this process and its guard is alive. `None` in a child
/// forked after `init`: see [`switch::forked`].
pub(crate) fn current() -> Option<Arc<Runtime>> {
    if switch::forked() {
        return None;
    }
    RUNTIME.read().ok().and_then(|r| r.clone())
}

/// Work for the worker thread.
#[allow(clippy::large_enum_variant)] // on purpose: see `Capture`
enum Job {
    /// Not boxed: the queue's slots are allocated once, so a capture costs no allocation of
    /// its 1.2 kB event (a request that size also makes glibc consolidate its free lists).
    Capture(Captured),
    /// Send this retired anonymous id's deletion request.
    Deletion(Uuid),
    /// Report the native crash recorded in this file.
    Native(PathBuf),
}

/// An estimate of what a job holds, for the byte bound.
fn job_bytes(job: &Job) -> usize {
    match job {
        Job::Capture(c) => {
            let e = &c.event;
            let text: usize = e
                .exception
                .iter()
                .map(|x| x.ty.len() + x.value.as_deref().map_or(0, str::len))
                .sum();
            let frames = c.backtrace.as_ref().map_or(0, |b| b.addresses().len());
            256 + text + e.message.as_deref().map_or(0, str::len) + frames * 64
        }
        Job::Deletion(_) => 64,
        Job::Native(_) => 256,
    }
}

#[derive(Default)]
struct Jobs {
    /// Its slots are allocated at the first push, all at once (none while nothing is
    /// captured: consent not given costs no memory).
    queue: VecDeque<(Job, usize)>,
    bytes: usize,
}

/// Everything `init` set up.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) paths: Paths,
    pub(crate) debug: bool,
    consent: ConsentOnDisk,
    pipeline: Pipeline,
    dedup: Dedup,
    outbox: Option<Outbox>,
    /// Reports kept on this machine only (local mode): a directory uploads never read.
    kept: Option<Outbox>,
    uploads: Option<Uploads>,
    pub(crate) pings: Pings,
    pub(crate) egress: Egress,
    jobs: Mutex<Jobs>,
    /// Held while one job goes through the pipeline: the worker and a flush may both drain
    /// the queue, and deduplication needs them to take turns.
    turn: Mutex<()>,
    wake: Condvar,
    dropped: AtomicU64,
    /// Panic reports being written on helper threads; a flush waits for them.
    panics_in_progress: AtomicUsize,
    stop: AtomicBool,
    worker_started: AtomicBool,
    /// A flush with a deadline is waiting: the worker stops symbolicating (which can take
    /// seconds in a large debug binary) so the reports are stored and sent in time.
    flushing: AtomicUsize,
    /// Until when the waiting flush lets symbolication go on (half its deadline).
    flush_symbols_until: Mutex<Option<Instant>>,
    /// Crash reports wait for the user's review: never sent automatically.
    pub(crate) review: AtomicBool,
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
        if switch::forked() {
            return false;
        }
        self.runtime.as_ref().is_none_or(|rt| {
            catch_unwind(AssertUnwindSafe(|| rt.flush(timeout, timeout))).unwrap_or(false)
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // A forked child has the parent's memory but not its worker: any lock the worker
            // held at the fork is held forever here, so the child touches nothing.
            if switch::forked() {
                std::mem::forget(rt);
                return;
            }
            // Never unwind into the app, which may itself be unwinding.
            let _ = catch_unwind(AssertUnwindSafe(|| rt.shutdown()));
        }
    }
}

/// The guard `init` returns when it failed internally: it does nothing.
pub(crate) fn init_failed() -> Guard {
    Guard { runtime: None }
}

/// Sets consentry up for this process; see [`crate::init`].
pub(crate) fn init(config: Config) -> Guard {
    // This program started again by its own crash handler to write a minidump: that is all
    // it does (it does not come back, unless no crash of its parent waits for it).
    #[cfg(feature = "minidump")]
    if let Some(stem) = std::env::var_os(crate::minidump::HELPER_ENV)
        && std::env::args_os().len() <= 1
    {
        crate::minidump::run_helper(&stem);
    }
    // A forked child must not take locks the parent may have held at the fork.
    if switch::forked() {
        return Guard { runtime: None };
    }
    if current().is_some() {
        diag::warn_once("init-twice", || {
            "consentry::init was called twice; the second call is ignored".to_owned()
        });
        return Guard { runtime: None };
    }
    switch::claim_process();
    consentry_api::backend::install(&BACKEND);
    if consent::running_telemetry_command(&config) {
        // `mytool telemetry ...`: the command manages consent itself; nothing starts, no
        // notice, no prompt, and early captures are dropped.
        switch::set_crash(false);
        switch::set_usage(false);
        drop(consentry_api::backend::drain_early());
        return Guard { runtime: None };
    }
    if let Err(e) = config.validate() {
        diag::warn_once("bad-config", || {
            format!("{e}; crash and usage reporting stay off")
        });
        switch::set_crash(false);
        drop(consentry_api::backend::drain_early());
        return Guard { runtime: None };
    }
    let env = EnvSnapshot::for_app(
        &config.app_name,
        &config.env_prefix(),
        config.group_env_prefix().as_deref(),
    );
    warn_unusable_dirs(&config, &env);
    let paths = Paths::resolve(&config, &env);
    let (settings, decision) = decide_on_disk(
        &config,
        &env,
        load_settings(&config, &paths),
        consent::interactive(),
    );
    if let Err(e) = &settings {
        diag::warn_once("settings-unusable", || format!("{e}; nothing will be sent"));
    }
    let settings_review = settings.as_ref().is_ok_and(|s| s.data().review);
    let settings_minidumps = settings.as_ref().is_ok_and(|s| s.data().minidumps);
    let mut settings_since = settings
        .as_ref()
        .ok()
        .and_then(|s| crate::gate::consent_since(s.data()));
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
    // A "no" recorded by any means (the CLI, the app's settings screen, an edit of the
    // file) deletes what waits, as `disable` does, at the latest here.
    if let Ok(s) = &settings {
        let no = crate::gate::recorded_no(s.data());
        // (Not the reports kept on this machine: they are the user's to look at; `disable`
        // deletes them.)
        if no.crash
            && let Some(dir) = paths.outbox_dir()
        {
            Outbox::new(dir, usize::MAX, u64::MAX).clear();
        }
        if no.crash
            && let Some(dir) = paths.native_dir()
        {
            crate::native::clear(&dir);
        }
        if no.usage
            && let Some(dir) = paths.usage_dir()
        {
            Outbox::usage(dir, usize::MAX, u64::MAX).clear();
        }
    }
    if decision.next == NextStep::Notice
        && let Ok(mut settings) = settings
    {
        diag::eprint_line(&consent::notice(&config));
        let version = consent::notice_version(&config);
        let recorded = settings.modify(|d| {
            d.notice_shown_at = Some(crate::settings::now_rfc3339());
            d.notice_version = version.clone();
            // First run or a new notice version: consent from now on.
            d.consent.renew(ConsentSource::Default);
        });
        settings_since = crate::gate::consent_since(settings.data());
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
    if settings_review {
        runtime.review.store(true, Ordering::Release);
    }
    runtime.consent.remember_version();
    runtime.consent.set_consent_since(settings_since);
    runtime.consent.note_minidumps_yes(settings_minidumps);
    if let Ok(mut slot) = RUNTIME.write() {
        *slot = Some(runtime.clone());
    }
    runtime.apply(&decision);
    persist_at_exit();
    runtime.settle_deletions(pending_deletion);
    Guard {
        runtime: Some(runtime),
    }
}

/// `std::process::exit` (or a return from `main` with the guard leaked) skips the guard's
/// drop: an `atexit` handler stores what was captured or tracked and still waits in memory,
/// scrubbed, through the pipeline, to the outbox and the usage store, for the next start to
/// send. Bounded by `Config::usage_flush_timeout`; no network. A no-op once the guard was
/// dropped (or `consentry::exit` ran), with reporting off, and in a forked child.
fn persist_at_exit() {
    #[cfg(unix)]
    #[allow(unsafe_code)]
    {
        extern "C" fn at_exit() {
            // Never unwinds across the FFI boundary.
            let _ = catch_unwind(|| {
                if switch::forked() {
                    return;
                }
                if let Some(rt) = current() {
                    rt.store_at_exit();
                }
            });
        }
        static REGISTER: std::sync::Once = std::sync::Once::new();
        REGISTER.call_once(|| {
            // SAFETY: registers a plain `extern "C"` function with no captures, which
            // catches every panic.
            unsafe {
                libc::atexit(at_exit);
            }
        });
    }
}

/// `<APP>_CONFIG_DIR` or `<APP>_DATA_DIR` set to something unusable is said, not ignored.
fn warn_unusable_dirs(config: &Config, env: &EnvSnapshot) {
    let prefix = config.env_prefix();
    for suffix in ["CONFIG_DIR", "DATA_DIR"] {
        let name = format!("{prefix}_{suffix}");
        if let Some(v) = env.get_os(&name)
            && v.to_str().is_none()
        {
            diag::warn_once(&format!("non-utf8-{name}"), || {
                format!(
                    "{name} is not valid UTF-8; it is used as given ({})",
                    v.to_string_lossy()
                )
            });
        }
    }
}

impl Runtime {
    /// A runtime that is not started: nothing runs until [`Runtime::apply`].
    pub(crate) fn build(
        config: Config,
        env: EnvSnapshot,
        paths: Paths,
        decision: Decision,
        ids: (Uuid, String),
    ) -> Runtime {
        let debug = env.debug(&config.env_prefix());
        let outbox = paths
            .outbox_dir()
            .map(|dir| Outbox::new(dir, config.outbox_max_envelopes, config.outbox_max_bytes));
        let uploads = match (config.parsed_dsn(), &outbox) {
            (Some(dsn), Some(outbox)) => Some(Uploads::new(
                SentryTarget::new(&dsn),
                outbox.clone(),
                paths.pauses_file(),
            )),
            _ => None,
        };
        let pings = Pings::new(
            UsageQueue::new(config.usage_queue_capacity),
            config.usage_sink.clone(),
            paths.usage_dir(),
            paths.pauses_file(),
            config.usage_interval,
            debug,
        );
        let session_id = Uuid::new_v4();
        Runtime {
            debug,
            pipeline: Pipeline::new(config.clone(), ids.1.clone(), session_id),
            consent: ConsentOnDisk::new(config.clone(), env, paths.clone(), decision, ids),
            dedup: Dedup::new(config.dedup_window, Box::new(SystemClock)),
            kept: paths
                .kept_dir()
                .map(|d| Outbox::new(d, config.outbox_max_envelopes, config.outbox_max_bytes)),
            outbox,
            uploads,
            pings,
            egress: Egress::new(Box::new(egress::Http), paths.audit_log()),
            jobs: Mutex::new(Jobs::default()),
            turn: Mutex::new(()),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            panics_in_progress: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            worker_started: AtomicBool::new(false),
            flushing: AtomicUsize::new(0),
            flush_symbols_until: Mutex::new(None),
            review: AtomicBool::new(config.review),
            paths,
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
        self.consent.set_decision(decision.clone());
        if decision.crash || decision.usage {
            self.start_worker();
        }
        if decision.crash {
            crate::panic::register(self.clone());
            switch::set_crash(true);
            switch::PANIC_SAVE_LOCAL.store(false, Ordering::Release);
            self.adopt_early();
            self.native_on();
        } else {
            // (A handler installed earlier stays, inert: it records nothing while crash
            // reports are off.)
            switch::set_crash(false);
            drop(consentry_api::backend::drain_early());
            // Nothing can be sent; a panic is still saved here for the user to share by hand
            // (not in CI, where nobody reads it, and not when the app turned it off).
            let save = self.config.save_panics_locally
                && !self.debug
                && self.env().ci().is_none()
                && self.kept.is_some();
            if save {
                crate::panic::register(self.clone());
            }
            switch::PANIC_SAVE_LOCAL.store(save, Ordering::Release);
        }
        switch::set_usage(decision.usage);
    }

    pub(crate) fn decision(&self) -> Decision {
        self.consent.decision()
    }

    /// Takes note of settings this process just wrote (the prompt's answer).
    pub(crate) fn remember_settings(&self, data: &crate::settings::SettingsData) {
        self.consent.remember_version();
        self.consent
            .set_consent_since(crate::gate::consent_since(data));
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
                // The fast stack walk's tables, built on this thread's large stack.
                crate::unwind::prepare();
                rt.worker_loop();
            });
        if let Err(e) = spawned {
            diag::warn_once("worker-spawn", || {
                format!("cannot start the background worker: {e}")
            });
        }
    }

    /// Queues work for the worker. Beyond [`MAX_PENDING`] jobs or [`MAX_PENDING_BYTES`],
    /// captures are counted and dropped.
    fn push(&self, job: Job) -> bool {
        let size = job_bytes(&job);
        let Ok(mut jobs) = self.jobs.lock() else {
            return false;
        };
        if jobs.queue.len() >= MAX_PENDING || jobs.bytes + size > MAX_PENDING_BYTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // Only the worker waits, and only on an empty queue (or during a flush, which
        // drains the queue itself and wakes it every 50 ms): a push onto a non-empty queue
        // needs no wake-up, which spares the caller a futex call per capture in a burst.
        let was_empty = jobs.queue.is_empty();
        if jobs.queue.capacity() == 0 {
            jobs.queue.reserve_exact(MAX_PENDING);
        }
        jobs.bytes += size;
        jobs.queue.push_back((job, size));
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    fn pop(&self) -> Option<Job> {
        let mut jobs = self.jobs.lock().ok()?;
        let (job, size) = jobs.queue.pop_front()?;
        jobs.bytes = jobs.bytes.saturating_sub(size);
        Some(job)
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
        let backtrace = (backtrace && self.config.attach_backtrace).then(RawStack::capture);
        let id = event.event_id;
        self.push(Job::Capture(Captured {
            event,
            backtrace,
            breadcrumb_seq: BREADCRUMBS.current(),
            kind,
        }))
        .then_some(id)
    }

    /// Takes errors kept before `init` (one raced with it) and queues them.
    pub(crate) fn adopt_early(&self) {
        let seq = BREADCRUMBS.current();
        for early in consentry_api::backend::drain_early() {
            self.push(Job::Capture(Captured {
                event: crate::report::event_from_early(early),
                backtrace: None,
                breadcrumb_seq: seq,
                kind: Kind::Error,
            }));
        }
    }

    fn worker_loop(self: Arc<Self>) {
        // The costly set-up happens here, not on the thread that called `init`.
        let _ = catch_unwind(AssertUnwindSafe(|| self.pipeline.warm_up()));
        while !self.stop.load(Ordering::Acquire) {
            let step = catch_unwind(AssertUnwindSafe(|| {
                self.run_jobs(None, true);
                // During a flush, the flush counts repeats and sends: a first occurrence
                // sent from here would leave the repeats it is still counting to an event
                // of their own.
                if switch::crash_on() && self.flushing.load(Ordering::Acquire) == 0 {
                    self.expire_dedup(false);
                    self.upload(None, None);
                }
                if switch::usage_on() {
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
                // While a flush runs, the queue is the flush's: waiting on it would spin.
                let _ = self.wake.wait_timeout_while(jobs, wait, |jobs| {
                    !self.stop.load(Ordering::Acquire)
                        && (self.flushing.load(Ordering::Acquire) > 0
                            || (jobs.queue.is_empty()
                                && self.pings.time_until_due() != Some(Duration::ZERO)))
                });
            }
        }
    }

    /// How long the worker may sleep: until the next retry, usage batch or dedup expiry.
    fn next_wake(&self) -> Duration {
        if self.flushing.load(Ordering::Acquire) > 0 {
            return Duration::from_millis(50);
        }
        let mut wait = Duration::from_secs(5);
        if let Some(next) = self.uploads.as_ref().and_then(Uploads::next_retry) {
            wait = wait.min(next.saturating_duration_since(Instant::now()));
        }
        if let Some(d) = self.pings.time_until_due() {
            wait = wait.min(d);
        }
        if let Some(d) = self.dedup.next_hold_end() {
            wait = wait.min(d);
        }
        wait.max(Duration::from_millis(5))
    }

    /// Runs queued jobs. Past 3/4 of `deadline` (a flush's), or on the worker while a flush
    /// waits, events are still stored, but with bare addresses instead of a symbolicated
    /// stack trace: symbolication can take seconds, and a flush must leave time to send.
    /// Without `network` (at `exit`), a deletion request waits for the next start.
    fn run_jobs(&self, deadline: Option<Instant>, network: bool) {
        let start = Instant::now();
        let symbolicate_until =
            deadline.map(|d| start + d.saturating_duration_since(start) * 3 / 4);
        loop {
            // A flush waits for the worker's current job only until its deadline.
            // While a flush runs, the queue is the flush's: the worker finishes the job it
            // has (symbolication cut short) and leaves the rest, so no job is taken by a
            // thread that the end of the process would stop half-way.
            if deadline.is_none() && self.flushing.load(Ordering::Acquire) > 0 {
                break;
            }
            let _turn = match deadline {
                Some(d) => match lock_until(&self.turn, d) {
                    Some(turn) => turn,
                    None => break,
                },
                None => self.turn.lock().unwrap_or_else(|p| p.into_inner()),
            };
            let Some(job) = self.pop() else { break };
            match job {
                Job::Capture(captured) => {
                    if switch::crash_on() {
                        let stack = Stack::Later(Box::new(move |bt: &RawStack| {
                            self.stack_within(bt, symbolicate_until)
                        }));
                        self.process(captured, stack);
                    }
                }
                Job::Deletion(id) => {
                    // Still owed in the settings file: the next start sends it.
                    if network {
                        self.send_deletion(id);
                    }
                }
                Job::Native(path) => {
                    if switch::crash_on() {
                        self.adopt_native(&path, symbolicate_until);
                    }
                }
            }
        }
    }

    /// The capture's stack trace, symbolicated within the time there is
    /// ([`Runtime::symbolicate_within`]), else bare addresses (a server with the debug
    /// files symbolicates them).
    fn stack_within(
        &self,
        bt: &RawStack,
        until: Option<Instant>,
    ) -> Option<sentry::protocol::Stacktrace> {
        let copy = bt.clone();
        let app = self.config.app_name.clone();
        self.symbolicate_within(until, move || {
            crate::report::stacktrace_from(&copy, Some(&app))
        })
        .unwrap_or_else(|| crate::report::stacktrace_unresolved(bt))
    }

    /// Runs `work` (symbolication) on a helper thread and waits for it only while there is
    /// time: until `until` (a flush's), or on the worker until a flush starts (then until
    /// the flush's share for symbols). Symbolication of a large debug binary can take
    /// seconds, and a short CLI's exit flush must still have time to send. `None`: out of
    /// time, or the work failed.
    fn symbolicate_within<T: Send + 'static>(
        &self,
        until: Option<Instant>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let out_of_time = || match until {
            Some(t) => Instant::now() >= t,
            None if self.flushing.load(Ordering::Acquire) > 0 => self
                .flush_symbols_until
                .lock()
                .ok()
                .and_then(|t| *t)
                .is_none_or(|t| Instant::now() >= t),
            None => false,
        };
        if out_of_time() {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("consentry-symbols".into())
            .spawn(move || {
                crate::panic::mark_internal_thread();
                if let Ok(done) = catch_unwind(AssertUnwindSafe(work)) {
                    let _ = tx.send(done);
                }
            })
            .ok()?;
        loop {
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(done) => return Some(done),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if out_of_time() => return None,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// A native crash recorded by an earlier run: read (bounded), made a report, through the
    /// pipeline like any other, then the record is removed. A record that cannot be read or
    /// parsed is removed with one warning (it would fail the same way every start).
    fn adopt_native(&self, path: &Path, symbolicate_until: Option<Instant>) {
        // Another start of the app may be reporting it at the same moment: one takes it.
        let Some(claimed) = crate::native::claim(path) else {
            return;
        };
        let path = claimed.as_path();
        let record = crate::fsx::read_capped(path, crate::native::MAX_RECORD_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|bytes| crate::native::parse(&bytes));
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                diag::warn_once("native-record", || {
                    format!(
                        "a native crash record ({}) is unusable: {e}; it was removed",
                        path.display()
                    )
                });
                let _ = crate::fsx::remove(path);
                return;
            }
        };
        // Symbolicated (when this binary crashed) within the time there is, else bare
        // addresses with `debug_meta`, for the server to symbolicate.
        let app = self.config.app_name.clone();
        let copy = record.clone();
        let captured = self
            .symbolicate_within(symbolicate_until, move || {
                crate::native::event_of(&copy, Some(&app), true)
            })
            .unwrap_or_else(|| {
                crate::native::event_of(&record, Some(&self.config.app_name), false)
            });
        let dump_file = crate::native::minidump_of(path);
        let minidump = dump_file.as_deref().and_then(|file| self.minidump_of(file));
        if let Verdict::Keep { event, .. } = self.run_pipeline(captured, Stack::Addresses, false)
            && self.store_with(&event, minidump.as_ref()).is_none()
            && !self.debug
            && self.may_record()
        {
            // Could not be stored (a full disk): the record (and its minidump) stays for the
            // next start.
            return;
        }
        if let Some(file) = dump_file {
            let _ = crate::fsx::remove(&file);
        }
        let _ = crate::fsx::remove(path);
    }

    /// The minidump the helper wrote beside a native crash record, read (bounded) and
    /// scrubbed again, if the app and the user both allow minidumps now. Without both, the
    /// file is removed at once, unread.
    fn minidump_of(&self, file: &Path) -> Option<crate::minidump::Minidump> {
        if !self.minidumps_allowed() {
            let _ = crate::fsx::remove(file);
            return None;
        }
        crate::minidump::Minidump::read(file)
            .map_err(|e| {
                diag::warn_once("minidump-read", || {
                    format!("a minidump ({}) was not attached: {e}", file.display())
                })
            })
            .ok()
    }

    /// Native crashes: the handler while crash reports may be recorded, and the records of
    /// earlier runs queued for the worker.
    fn native_on(self: &Arc<Self>) {
        let Some(dir) = self.paths.native_dir() else {
            return;
        };
        let release = format!("{}@{}", self.config.app_name, self.config.app_version);
        if self.config.native_crashes
            && crate::native::SUPPORTED
            && let Err(e) = crate::native::install(&dir, &release, self.minidumps_allowed())
            && self.debug
        {
            // Said in debug mode only: an unusable data directory is warned about already,
            // and an app with its own crash handler is told in the README.
            diag::warn_once("native-install", || {
                format!("crashes that are not panics will not be reported: {e}")
            });
        }
        for path in crate::native::pending(&dir) {
            self.push(Job::Native(path));
        }
    }

    /// Runs the pipeline on this thread, marked so that a `flush` from the app's hook
    /// returns at once.
    fn run_pipeline(&self, captured: Captured, stack: Stack<'_>, dedup: bool) -> Verdict {
        let was = IN_PIPELINE.with(|f| f.replace(true));
        let repeats: Option<&dyn crate::pipeline::Repeats> = dedup.then_some(&self.dedup);
        let verdict = self
            .pipeline
            .run(captured, stack, repeats, self.consent.ids().0);
        IN_PIPELINE.with(|f| f.set(was));
        if let Verdict::Failed(e) = &verdict {
            diag::warn_once("scrub-failed", || {
                format!("a report could not be scrubbed ({e}); it was dropped, not sent")
            });
        }
        verdict
    }

    /// An error or a message: the pipeline, then the outbox. Returns the stored file.
    fn process(&self, captured: Captured, stack: Stack<'_>) -> Option<PathBuf> {
        let Verdict::Keep {
            event, dedup_key, ..
        } = self.run_pipeline(captured, stack, true)
        else {
            return None;
        };
        let path = self.store(&event);
        if let Some(key) = dedup_key {
            self.dedup.first_stored(key, path.clone(), event);
        }
        path
    }

    /// Stores a scrubbed event: printed in debug mode; else written to the outbox (and, with
    /// no DSN, recorded in the audit log as kept locally).
    fn store(&self, event: &Scrubbed) -> Option<PathBuf> {
        self.store_with(event, None)
    }

    /// [`Runtime::store`], with a minidump attached (native crashes only).
    fn store_with(
        &self,
        event: &Scrubbed,
        minidump: Option<&crate::minidump::Minidump>,
    ) -> Option<PathBuf> {
        if self.debug {
            let pretty = serde_json::to_string_pretty(event.get()).unwrap_or_default();
            diag::eprint_line(&format!(
                "[consentry debug] crash report (debug mode: not stored, not sent):\n{pretty}"
            ));
            return None;
        }
        let path = self.write_outbox(event, minidump)?;
        self.audit_local(event);
        Some(path)
    }

    /// Writes a scrubbed event to the outbox. Consent is read again first: `disable` in
    /// another process stops new reports from being stored, not only sent (with no DSN,
    /// storing is all that happens).
    fn write_outbox(
        &self,
        event: &Scrubbed,
        minidump: Option<&crate::minidump::Minidump>,
    ) -> Option<PathBuf> {
        if !self.may_record() {
            return None;
        }
        // Local mode writes where uploads never look: nothing kept locally can be sent by
        // a later "yes", only by the user's explicit `telemetry send`.
        let outbox = if self.consent.decision().crash_mode == Mode::Local {
            self.kept.as_ref()?
        } else {
            self.outbox.as_ref()?
        };
        let id = event.event_id().unwrap_or_else(Uuid::new_v4);
        match outbox.write_with(id, event, minidump) {
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
    fn audit_local(&self, event: &Scrubbed) {
        let local = self.consent.decision().crash_mode == Mode::Local;
        let destination = if local {
            "none: local mode, kept on this machine"
        } else if self.uploads.is_none() {
            "none: no DSN configured, kept in the local outbox"
        } else {
            return;
        };
        if let Some(log) = self.paths.audit_log() {
            crate::audit::append(&log, "crash", destination, None, None, event.get().clone());
        }
    }

    /// Reports the repeats counted for errors whose window ended (or all, at exit).
    fn expire_dedup(&self, all: bool) {
        for expired in self.dedup.expire(all) {
            match expired {
                Expired::AddToStored { path, event, total } => {
                    // Only while nobody is sending it: a file being sent gets no new count
                    // (the send deletes it); the count then goes out as its own event.
                    let claim = self.uploads.as_ref().map(|u| u.claims.take(&path));
                    let free = claim.as_ref().is_none_or(Option::is_some);
                    let rewritten = free
                        && crate::fsx::regular_len(&path).is_some()
                        && match (&self.outbox, crate::outbox::event_id_of(&path)) {
                            (Some(outbox), Some(id)) => {
                                let counted =
                                    event.with_count("consentry.occurrences", total, None);
                                outbox.replace(&path, id, &counted).is_ok()
                            }
                            _ => false,
                        };
                    drop(claim);
                    if !rewritten {
                        let id = Uuid::new_v4();
                        self.store(&event.with_count("consentry.occurrences", total - 1, Some(id)));
                    }
                }
                Expired::NewEvent { event, repeats } => {
                    let id = Uuid::new_v4();
                    self.store(&event.with_count("consentry.occurrences", repeats, Some(id)));
                }
            }
        }
    }

    fn upload(&self, deadline: Option<Instant>, only: Option<&Path>) -> Option<egress::Outcome> {
        // Local mode opens no socket at all; reports under review wait for the user.
        if self.debug
            || self.consent.decision().crash_mode != Mode::On
            || self.review.load(Ordering::Acquire)
        {
            return None;
        }
        let uploads = self.uploads.as_ref()?;
        let cx = crate::upload::Context {
            egress: &self.egress,
            gate: self,
            dedup: &self.dedup,
        };
        uploads.run(&cx, deadline, only)
    }

    /// Runs `f` with the usage delivery's context (local mode logs instead of sending).
    fn with_ping_context(&self, f: impl FnOnce(&crate::ping::Context<'_>)) {
        let local = self.consent.decision().usage_mode == Mode::Local;
        let log = self.paths.audit_log();
        f(&crate::ping::Context {
            egress: &self.egress,
            gate: self,
            pipeline: &self.pipeline,
            anonymous_id: self.consent.ids().0,
            local_log: local.then_some(log.as_deref()),
        });
    }

    fn usage_store_now(&self, until: Instant) {
        self.with_ping_context(|cx| self.pings.store_now(cx, until));
    }

    fn usage_tick(&self, deadline: Option<Instant>) {
        // A "no" given elsewhere stops storing too, not only sending.
        self.recheck();
        if !switch::usage_on() {
            return;
        }
        self.with_ping_context(|cx| self.pings.tick(cx, deadline));
    }

    /// Sends the deletion request for a retired id; on success, forgets it.
    fn send_deletion(&self, id: Uuid) {
        let Some(sink) = &self.config.usage_sink else {
            return;
        };
        if crate::ping::send_deletion(&self.egress, sink, id, Duration::from_secs(5), self.debug)
            && let Some(path) = self.paths.settings_file()
            && let Ok(mut s) = Settings::load_from(&path)
        {
            let _ = s.modify(|d| d.pending_deletion.retain(|p| *p != id));
        }
    }

    /// Processes what is queued and sends what is waiting, for at most the given times.
    /// From inside the app's `before_send` hook it returns `false` at once (it would wait
    /// for itself).
    pub(crate) fn flush(&self, crash_timeout: Duration, usage_timeout: Duration) -> bool {
        if IN_PIPELINE.with(Cell::get) {
            return false;
        }
        let start = Instant::now();
        self.flush_until(
            start + clamp_wait(crash_timeout),
            start + clamp_wait(usage_timeout),
            false,
        )
    }

    /// [`Runtime::flush`] with deadlines; `all_repeats` also reports repeat counts whose
    /// window has not ended (at exit).
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
        if let Ok(mut t) = self.flush_symbols_until.lock() {
            let now = Instant::now();
            // Three quarters of the deadline for symbols, the rest to scrub and send.
            *t = Some(now + crash_deadline.saturating_duration_since(now) * 3 / 4);
        }
        self.flushing.fetch_add(1, Ordering::AcqRel);
        // Usage first: stored (scrubbed) before anything else, waiting for events the worker
        // is storing, within the crash deadline (local work on bounded input); then sent
        // within the short usage budget, which starts once they are on disk. A ping stored
        // now is not lost even if it cannot be sent in time.
        if switch::usage_on() {
            let started = Instant::now();
            self.usage_store_now(crash_deadline);
            let send_until = Instant::now() + usage_deadline.saturating_duration_since(started);
            self.usage_tick(Some(send_until));
        }
        self.run_jobs(Some(crash_deadline), true);
        self.flushing.fetch_sub(1, Ordering::AcqRel);
        if switch::crash_on() {
            self.expire_dedup(all_repeats);
            self.upload(Some(crash_deadline), None);
        }
        let outbox_empty =
            self.uploads.is_none() || self.outbox.as_ref().is_none_or(|o| o.list().is_empty());
        outbox_empty && (self.pings.is_empty() || self.config.usage_sink.is_none())
    }

    /// At `exit` without the guard's drop ([`persist_at_exit`]): what waits in memory is
    /// stored (scrubbed) within the usage budget, and nothing is sent. Symbolication gets
    /// three quarters of it, then stack traces keep bare addresses. (Registered on Unix only:
    /// on Windows, `std::process::exit` calls `ExitProcess`; not handled there yet.)
    #[cfg_attr(not(unix), allow(dead_code))]
    fn store_at_exit(&self) {
        // `exit` from inside the app's `before_send`: this thread holds the pipeline.
        if IN_PIPELINE.with(Cell::get) || (!switch::crash_on() && !switch::usage_on()) {
            return;
        }
        // A bug of ours here is not reported as the app's panic.
        crate::panic::mark_internal_thread();
        let start = Instant::now();
        let deadline = start + self.config.usage_flush_timeout;
        if let Ok(mut t) = self.flush_symbols_until.lock() {
            *t = Some(start + self.config.usage_flush_timeout * 3 / 4);
        }
        // The worker finishes its job with symbolication cut short and leaves the queue to
        // this thread.
        self.flushing.fetch_add(1, Ordering::AcqRel);
        if switch::usage_on() {
            self.usage_store_now(deadline);
        }
        if switch::crash_on() {
            self.run_jobs(Some(deadline), false);
            self.expire_dedup(true);
        }
        self.flushing.fetch_sub(1, Ordering::AcqRel);
    }

    /// The guard was dropped: report pending repeat counts, flush with the configured
    /// deadlines, stop the worker and turn everything off. A request still in flight at the
    /// deadline is written to the audit log as such (its payload stays on disk).
    pub(crate) fn shutdown(&self) {
        let start = Instant::now();
        let mut crash_deadline = start + self.config.flush_timeout;
        let mut usage_deadline = start + self.config.usage_flush_timeout;
        // Dropped while a panic unwinds: the panic hook already waited, and this drop shares
        // its deadline (from the panic to the end of the drop: one `flush_timeout`).
        if let Some(panic_deadline) = crate::panic::unwinding_deadline() {
            crash_deadline = crash_deadline.min(panic_deadline);
            usage_deadline = usage_deadline.min(panic_deadline);
        }
        // Whatever happens in the flush, the worker stops and everything turns off below.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.flush_until(crash_deadline, usage_deadline, true)
        }));
        // Nothing starts past this point; what is still on the wire is logged, and its
        // endpoint is skipped by the next runs' exit flushes for a while (it did not answer
        // within the budget).
        for kind in self.egress.close_and_abandon() {
            let endpoint = match kind {
                egress::Kind::Crash => self.uploads.as_ref().map(|u| u.endpoint().to_owned()),
                egress::Kind::Usage => self.pings.endpoint(),
                egress::Kind::Deletion => None,
            };
            if let (Some(file), Some(endpoint)) = (self.paths.pauses_file(), endpoint) {
                crate::transport::Pauses::record_unreachable(
                    &file,
                    kind,
                    &endpoint,
                    std::time::SystemTime::now(),
                );
            }
        }
        let dropped = self.dropped.load(Ordering::Relaxed) + self.pings.queue.dropped();
        if dropped > 0 && self.debug {
            diag::eprint_line(&format!(
                "[consentry debug] {dropped} events were dropped because a queue was full"
            ));
        }
        self.stop.store(true, Ordering::Release);
        self.wake.notify_all();
        switch::set_crash(false);
        switch::set_usage(false);
        switch::PANIC_SAVE_LOCAL.store(false, Ordering::Release);
        if let Some(dir) = self.paths.native_dir() {
            crate::native::forget_own(&dir);
        }
        crate::panic::unregister();
        if let Ok(mut slot) = RUNTIME.write() {
            *slot = None;
        }
    }

    /// Consent withdrawn for `withdrawn`'s kinds, here or in another process: switches off,
    /// and what waits is deleted (the outbox, the usage store and queue).
    fn withdrawn(&self, withdrawn: Withdrawn) {
        // `review=true` set in another process holds crash reports from now on (turning it
        // off waits for the next start, as any change towards more sends does).
        if withdrawn.review {
            self.review.store(true, Ordering::Release);
        }
        if withdrawn.crash {
            switch::set_crash(false);
            if let Some(dir) = self.paths.native_dir() {
                crate::native::clear(&dir);
            }
            if let Some(outbox) = &self.outbox {
                outbox.clear();
            }
            if let Some(kept) = &self.kept {
                kept.clear();
            }
        }
        if withdrawn.usage {
            switch::set_usage(false);
            self.pings.clear();
        }
        // The yes to minidumps taken back: no new one is made, and those waiting go.
        if withdrawn.minidumps {
            crate::native::set_minidumps(false);
            let dirs: Vec<PathBuf> = [&self.outbox, &self.kept]
                .into_iter()
                .flatten()
                .map(|o| o.dir().to_owned())
                .collect();
            crate::minidump::withdraw(&dirs, self.paths.native_dir().as_deref());
        }
    }

    /// Consent re-read from the settings file (if it changed), and what a "no" found there
    /// withdraws applied here.
    fn recheck(&self) {
        let withdrawn = self.consent.recheck();
        self.withdrawn(withdrawn);
    }

    /// Whether a minidump may be made, kept or sent now: consent re-read first.
    fn minidumps_allowed(&self) -> bool {
        self.recheck();
        self.consent.minidumps_allowed()
    }

    /// Marks consent withdrawn in this process (after `disable` here).
    pub(crate) fn turn_off(&self, crash: bool, usage: bool) {
        self.consent.withdraw(crash, usage);
        self.withdrawn(Withdrawn {
            crash,
            usage,
            review: false,
            minidumps: false,
        });
    }

    /// The usage queue `track` writes to (and whether debug mode wants warnings).
    pub(crate) fn usage_queue(&self) -> &UsageQueue {
        &self.pings.queue
    }

    /// The environment snapshot `init` took.
    pub(crate) fn env(&self) -> &EnvSnapshot {
        self.consent.env()
    }
}

impl Runtime {
    /// Whether crash reports may be recorded now (on, or local): consent re-read first.
    fn may_record(&self) -> bool {
        self.recheck();
        switch::crash_on() && self.consent.decision().crash
    }
}

impl Gate for Runtime {
    fn allows_captured_at(&self, _kind: egress::Kind, at: std::time::SystemTime) -> bool {
        // Consent times have whole seconds: a capture in the same second is after it.
        self.consent
            .consent_since()
            .is_none_or(|since| at + Duration::from_secs(1) >= since)
    }

    fn allows_minidump(&self) -> bool {
        self.minidumps_allowed()
    }

    /// Consent at this moment: the settings file re-read if it changed (a "no" given in
    /// another terminal stops the very next request), the switches (off after a fork).
    fn allows(&self, kind: egress::Kind) -> bool {
        self.recheck();
        let decision = self.consent.decision();
        // Local mode never sends: consent to record is not consent to send.
        match kind {
            egress::Kind::Crash => switch::crash_on() && decision.crash_mode == Mode::On,
            egress::Kind::Usage => switch::usage_on() && decision.usage_mode == Mode::On,
            egress::Kind::Deletion => true,
        }
    }
}

impl crate::panic::Reporter for Runtime {
    fn deadline(&self) -> Duration {
        self.config.flush_timeout
    }

    /// A panic is stored twice: first at once with a stack trace of bare addresses, then
    /// again, in place, once symbolication is done. Symbolication of a large binary can take
    /// seconds, and the process may end (or abort) before: the first copy is what makes sure
    /// the report is not lost. Both copies go through the whole pipeline and the consent
    /// check of the outbox.
    fn store_panic(
        &self,
        captured: Captured,
        stored: &std::sync::mpsc::Sender<PathBuf>,
    ) -> Option<PathBuf> {
        if !switch::crash_on() {
            // Reporting is off: saved, scrubbed, where nothing is sent from (see
            // `Config::save_panics_locally`): at once with bare addresses, so the line can
            // say where it is even if symbolication is slow, then symbolicated in place.
            let kept = self.kept.as_ref()?;
            let copy = Captured {
                event: captured.event.clone(),
                backtrace: captured.backtrace.clone(),
                breadcrumb_seq: captured.breadcrumb_seq,
                kind: captured.kind,
            };
            let Verdict::Keep { event, .. } = self.run_pipeline(copy, Stack::Addresses, false)
            else {
                return None;
            };
            let id = event.event_id().unwrap_or_else(Uuid::new_v4);
            let path = kept.write(id, &event).ok()?;
            let _ = stored.send(path.clone());
            if let Verdict::Keep { event, .. } =
                self.run_pipeline(captured, Stack::Symbolicate, false)
            {
                let _ = kept.replace(&path, id, &event);
            }
            return Some(path);
        }
        let quick = if self.debug {
            None
        } else {
            let copy = Captured {
                event: captured.event.clone(),
                backtrace: captured.backtrace.clone(),
                breadcrumb_seq: captured.breadcrumb_seq,
                kind: captured.kind,
            };
            match self.run_pipeline(copy, Stack::Addresses, false) {
                Verdict::Keep { event, .. } => {
                    let path = self.write_outbox(&event, None)?;
                    let _ = stored.send(path.clone());
                    Some(path)
                }
                _ => return None,
            }
        };
        let Verdict::Keep { event, .. } = self.run_pipeline(captured, Stack::Symbolicate, false)
        else {
            return quick;
        };
        match quick {
            Some(path) => {
                // Unless it was sent meanwhile (a flush on another thread): then keep it
                // gone. The consent check comes first, as for any write to the outbox.
                let claims = self.uploads.as_ref().map(|u| &u.claims);
                let claim = claims.map(|c| c.take(&path));
                let free = claim.as_ref().is_none_or(Option::is_some);
                if free
                    && crate::fsx::regular_len(&path).is_some()
                    && self.may_record()
                    && let (Some(outbox), Some(id)) = (&self.outbox, event.event_id())
                {
                    // In place: the file is in the outbox or the kept directory, whichever
                    // the first copy went to.
                    let _ = outbox.replace(&path, id, &event);
                }
                self.audit_local(&event);
                Some(path)
            }
            None => self.store(&event),
        }
    }

    fn send_now(&self, path: &Path, deadline: Instant) -> Option<bool> {
        self.upload(Some(deadline), Some(path))
            .map(|o| matches!(o, egress::Outcome::Accepted { .. }))
    }

    fn panic_started(&self) {
        self.panics_in_progress.fetch_add(1, Ordering::AcqRel);
    }

    fn panic_finished(&self) {
        self.panics_in_progress.fetch_sub(1, Ordering::AcqRel);
    }

    fn command(&self) -> String {
        self.config.command()
    }

    fn saved_only(&self) -> bool {
        !switch::crash_on()
    }

    fn has_server(&self) -> bool {
        self.config.dsn.is_some()
            && self.consent.decision().crash_mode == Mode::On
            && !self.review.load(Ordering::Acquire)
    }

    fn debug(&self) -> bool {
        self.debug
    }
}
