//! The panic hook: chains the previous hook, then reports the panic synchronously (scrub,
//! store in the outbox, try to send within the flush deadline) and prints one line.
//!
//! A panic inside a panic hook aborts the process (the standard library counts it as a
//! panic while panicking), so `catch_unwind` in the hook itself cannot keep a bug of ours
//! from killing the host. The reporting therefore runs on a short-lived helper thread, where
//! a panic is an ordinary one that `catch_unwind` catches; the hook waits for it, for at
//! most the flush deadline. Panics on consentry's own threads are never reported (that
//! would loop) and never printed as the app's.
//!
//! The hook reaches the runtime through the [`Reporter`] trait, registered by `init` and
//! removed when the guard is dropped, so this module does not depend on the runtime.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, PanicHookInfo, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once, RwLock};
use std::time::{Duration, Instant};

use crate::diag;
use crate::report::{self, Captured, Kind};

static INSTALL: Once = Once::new();
static REPORTER: RwLock<Option<Arc<dyn Reporter>>> = RwLock::new(None);

/// What the panic hook needs from the runtime.
pub(crate) trait Reporter: Send + Sync {
    /// How long the hook may wait for the report.
    fn deadline(&self) -> Duration;
    /// Runs the pipeline and stores the report: first with bare addresses (its path is sent
    /// on `stored` at once), then symbolicated in its place. Returns the stored file.
    fn store_panic(
        &self,
        captured: Captured,
        stored: &std::sync::mpsc::Sender<PathBuf>,
    ) -> Option<PathBuf>;
    /// Sends one stored report now, within `deadline`. `Some(true)`: the server accepted it.
    fn send_now(&self, path: &Path, deadline: Instant) -> Option<bool>;
    /// A panic report is being written (a flush waits for it) / is done.
    fn panic_started(&self);
    fn panic_finished(&self);
    /// For the one line printed: the command users type, whether a server is configured,
    /// whether debug mode is on.
    fn command(&self) -> String;
    fn has_server(&self) -> bool;
    /// Reporting is off: the panic is only saved on this machine.
    fn saved_only(&self) -> bool;
    fn debug(&self) -> bool;
}

/// Registers the runtime that reports panics (and installs the hook, once per process).
pub(crate) fn register(reporter: Arc<dyn Reporter>) {
    if let Ok(mut r) = REPORTER.write() {
        *r = Some(reporter);
    }
    install();
}

/// No runtime reports panics any more (the guard was dropped).
pub(crate) fn unregister() {
    if let Ok(mut r) = REPORTER.write() {
        *r = None;
    }
}

fn reporter() -> Option<Arc<dyn Reporter>> {
    REPORTER.read().ok().and_then(|r| r.clone())
}

thread_local! {
    /// Set on consentry's own threads (the worker, the reporting helper).
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread's panic is being reported.
    static REPORTING: Cell<bool> = const { Cell::new(false) };
    /// The deadline of the panic this thread last reported: the guard dropped while that
    /// panic unwinds shares it (one wait per process, not one for the hook and another for
    /// the drop).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The deadline the panic hook set for the panic this thread is unwinding from, if it
/// reported one: the guard dropped during that unwinding waits no longer than it.
pub(crate) fn unwinding_deadline() -> Option<Instant> {
    if !std::thread::panicking() {
        return None;
    }
    DEADLINE.try_with(Cell::get).ok().flatten()
}

/// Marks the current thread as one of consentry's own.
pub(crate) fn mark_internal_thread() {
    let _ = INTERNAL.try_with(|f| f.set(true));
}

/// Installs the hook once per process, chaining whatever hook was there before.
fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if INTERNAL.try_with(Cell::get).unwrap_or(false) {
                // A bug in consentry: say so once, never as the app's panic, never reported.
                diag::warn_once("internal-panic", || {
                    format!("internal error while reporting ({info}); the report was dropped")
                });
                return;
            }
            previous(info);
            let again = REPORTING.try_with(|f| f.replace(true)).unwrap_or(true);
            if again {
                return;
            }
            let _ = DEADLINE.try_with(|d| d.set(None));
            report(info);
            let _ = REPORTING.try_with(|f| f.set(false));
        }));
    });
}

/// Reports one panic. Cheap work here (what only this thread can see); the rest on a
/// helper thread, waited for with the flush deadline.
fn report(info: &PanicHookInfo<'_>) {
    if !crate::switch::crash_on()
        && !crate::switch::PANIC_SAVE_LOCAL.load(std::sync::atomic::Ordering::Acquire)
    {
        return;
    }
    let Some(rt) = reporter() else {
        return;
    };
    let start = Instant::now();
    let deadline = start + rt.deadline();
    let _ = DEADLINE.try_with(|d| d.set(Some(deadline)));
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| crate::bound::cut(s, crate::bound::TEXT_MAX).into_owned())
        .or_else(|| {
            payload
                .downcast_ref::<String>()
                .map(|s| crate::bound::cut(s, crate::bound::TEXT_MAX).into_owned())
        })
        .unwrap_or_else(|| "Box<dyn Any>".to_owned());
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let thread = std::thread::current().name().map(str::to_owned);
    let backtrace = report::RawStack::capture();
    let event = report::event_from_panic(message, location, thread, None);
    let id = event.event_id;
    let captured = Captured {
        event,
        backtrace: Some(backtrace),
        breadcrumb_seq: report::BREADCRUMBS.current(),
        kind: Kind::Panic,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (stored_tx, stored_rx) = std::sync::mpsc::channel();
    let helper_rt = rt.clone();
    rt.panic_started();
    let spawned = std::thread::Builder::new()
        .name("consentry-panic".into())
        .spawn(move || {
            mark_internal_thread();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let path = helper_rt.store_panic(captured, &stored_tx)?;
                let sent = helper_rt.send_now(&path, deadline);
                Some((path, sent))
            }));
            helper_rt.panic_finished();
            let _ = tx.send(outcome.ok().flatten());
        });
    if spawned.is_err() {
        rt.panic_finished();
        return;
    }
    // Half the deadline for the symbolicated report; if symbolication is still going on
    // then, the first copy (bare addresses) is sent from here, so a slow symbolication
    // (a large debug binary) does not keep the report from leaving before the process ends.
    let half = start + (deadline - start) / 2;
    let outcome = match rx.recv_timeout(half.saturating_duration_since(Instant::now())) {
        Ok(outcome) => Ok(outcome),
        Err(_) => {
            // On another helper thread too: a panic in this hook would abort the process.
            let (sent_tx, sent_rx) = std::sync::mpsc::channel();
            let sender_rt = rt.clone();
            let quick_sent = stored_rx.try_recv().ok().and_then(|quick| {
                std::thread::Builder::new()
                    .name("consentry-panic-send".into())
                    .spawn(move || {
                        mark_internal_thread();
                        let sent =
                            catch_unwind(AssertUnwindSafe(|| sender_rt.send_now(&quick, deadline)));
                        let _ = sent_tx.send(Some((quick, sent.ok().flatten())));
                    })
                    .ok()
            });
            let wait =
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(50);
            match quick_sent {
                Some(_) => sent_rx.recv_timeout(wait),
                None => rx.recv_timeout(wait),
            }
        }
    };
    let short = &id.simple().to_string()[..8];
    if rt.saved_only() {
        if let Ok(Some((path, _))) = outcome {
            diag::eprint_line(&format!(
                "Reporting is off, so nothing was sent. A scrubbed report of this crash was saved in {}: see it with '{cmd} show {short}', write it to a file to attach to a bug report with '{cmd} export {short} -o FILE'.",
                path.display(),
                cmd = rt.command()
            ));
        }
        return;
    }
    let line = match outcome {
        Ok(Some((path, sent))) => match sent {
            Some(true) => format!("crash report {id} was sent"),
            _ if !rt.has_server() => format!(
                "crash report {id} was saved on this machine, scrubbed ({}); see it with '{cmd} show {short}', share it with '{cmd} send {short}' or '{cmd} export {short} -o FILE'",
                path.display(),
                cmd = rt.command(),
            ),
            _ => format!("crash report {id} was saved and will be sent later"),
        },
        Ok(None) if rt.debug() => {
            format!("crash report {id} was printed above (debug mode; nothing sent)")
        }
        Ok(None) => return,
        Err(_) => format!("crash report {id} was saved and will be sent later"),
    };
    diag::eprint_line(&format!(
        "{line} (consentry; turn reporting off: '{} disable')",
        rt.command()
    ));
}
