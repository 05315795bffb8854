//! The two process-wide switches every capture and `track` reads (one atomic load each, in
//! the `consentry-api` facade, so a library's `capture_error` costs nothing when reporting
//! is off or `init` never ran), and the fork check.
//!
//! They live below everything else so that the consent gate can turn reporting off without
//! knowing the runtime, and the runtime can tell a forked child from its parent.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use consentry_api::backend;

/// Crash reports are on, in the process that turned them on.
pub(crate) fn crash_on() -> bool {
    backend::crash_on() && !forked()
}

/// Usage pings are on, in the process that turned them on.
pub(crate) fn usage_on() -> bool {
    backend::usage_on() && !forked()
}

pub(crate) fn set_crash(on: bool) {
    backend::set_crash(on);
}

pub(crate) fn set_usage(on: bool) {
    backend::set_usage(on);
}

/// Reporting is off, but a panic is still saved, scrubbed, on this machine (never sent) and
/// one line says where, so the user can attach it to a bug report.
pub(crate) static PANIC_SAVE_LOCAL: AtomicBool = AtomicBool::new(false);

/// Set in a child process forked after `init` (by a `pthread_atfork` child handler).
static FORKED: AtomicBool = AtomicBool::new(false);
static WATCH_FORKS: Once = Once::new();

/// Records this process as the one that ran `init`: from now on a forked child knows it is
/// one.
pub(crate) fn claim_process() {
    WATCH_FORKS.call_once(watch_forks);
}

/// Registers the child handler. The handler only stores to an atomic, which is
/// async-signal-safe, as a handler that runs in a child of a multi-threaded process must be.
#[cfg(unix)]
#[allow(unsafe_code)]
fn watch_forks() {
    extern "C" fn in_child() {
        FORKED.store(true, Ordering::Release);
    }
    // SAFETY: `pthread_atfork` only records the three function pointers; `in_child` is a
    // plain `extern "C"` function with no captures that stores to a static atomic.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    if rc != 0 {
        crate::diag::warn_once("atfork", || {
            format!(
                "cannot watch for fork (pthread_atfork: {rc}); do not fork after consentry::init"
            )
        });
    }
}

#[cfg(not(unix))]
fn watch_forks() {}

/// Whether this is a child forked after `init`. A child has a copy of the parent's memory
/// but not its threads: a lock the parent's worker held at the fork stays held forever in
/// the child, so the child must never touch the runtime. It turns both switches off (its
/// captures cost one load again) and reports nothing. One atomic load.
pub(crate) fn forked() -> bool {
    if !FORKED.load(Ordering::Acquire) {
        return false;
    }
    backend::set_crash(false);
    backend::set_usage(false);
    true
}
