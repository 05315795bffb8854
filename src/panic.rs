//! The panic hook: chains the previous hook, then reports the panic synchronously (scrub,
//! store in the outbox, try to send within the flush deadline) and prints one line.
//!
//! A panic inside a panic hook aborts the process (the standard library counts it as a
//! panic while panicking), so `catch_unwind` in the hook itself cannot keep a bug of ours
//! from killing the host. The reporting therefore runs on a short-lived helper thread, where
//! a panic is an ordinary one that `catch_unwind` catches; the hook waits for it, for at
//! most the flush deadline. Panics on consentry's own threads are never reported (that
//! would loop) and never printed as the app's.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, PanicHookInfo, catch_unwind};
use std::sync::Once;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::diag;
use crate::report::{self, Captured, Kind};
use crate::runtime::{self, ON, STATE};
use crate::transport::Delivery;

static INSTALL: Once = Once::new();

thread_local! {
    /// Set on consentry's own threads (the worker, the reporting helper).
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread's panic is being reported.
    static REPORTING: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as one of consentry's own.
pub(crate) fn mark_internal_thread() {
    let _ = INTERNAL.try_with(|f| f.set(true));
}

/// Installs the hook once per process, chaining whatever hook was there before.
pub(crate) fn install() {
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
            report(info);
            let _ = REPORTING.try_with(|f| f.set(false));
        }));
    });
}

/// Reports one panic. Cheap work here (what only this thread can see); the rest on a
/// helper thread, waited for with the flush deadline.
fn report(info: &PanicHookInfo<'_>) {
    if STATE.load(Ordering::Acquire) != ON {
        return;
    }
    let Some(rt) = runtime::current() else {
        return;
    };
    let start = Instant::now();
    let deadline = start + rt.config.flush_timeout;
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "Box<dyn Any>".to_owned());
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let thread = std::thread::current().name().map(str::to_owned);
    let backtrace = backtrace::Backtrace::new_unresolved();
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
    rt.panics_in_progress.fetch_add(1, Ordering::AcqRel);
    let spawned = std::thread::Builder::new()
        .name("consentry-panic".into())
        .spawn(move || {
            mark_internal_thread();
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let path = helper_rt.process_with(captured, true, Some(&stored_tx))?;
                let delivery = helper_rt.upload_one(&path, deadline);
                Some((path, delivery))
            }));
            helper_rt.panics_in_progress.fetch_sub(1, Ordering::AcqRel);
            let _ = tx.send(outcome.ok().flatten());
        });
    if spawned.is_err() {
        rt.panics_in_progress.fetch_sub(1, Ordering::AcqRel);
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
                        let delivery = catch_unwind(AssertUnwindSafe(|| {
                            sender_rt.upload_one(&quick, deadline)
                        }));
                        let _ = sent_tx.send(Some((quick, delivery.ok().flatten())));
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
    let line = match outcome {
        Ok(Some((path, delivery))) => match delivery {
            Some(Delivery::Accepted { .. }) => format!("crash report {id} was sent"),
            _ if rt.config.dsn.is_none() => format!(
                "crash report {id} was kept on this machine (no server configured): {}",
                path.display()
            ),
            _ => format!("crash report {id} was saved and will be sent later"),
        },
        Ok(None) if rt.debug => {
            format!("crash report {id} was printed above (debug mode; nothing sent)")
        }
        Ok(None) => return,
        Err(_) => format!("crash report {id} was saved and will be sent later"),
    };
    diag::eprint_line(&format!(
        "{line} (consentry; turn reporting off: '{} disable')",
        rt.config.command()
    ));
}
