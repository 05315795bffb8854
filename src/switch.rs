//! The two process-wide switches every capture and `track` reads: one atomic load each, so a
//! library's `capture_error` costs nothing when reporting is off or `init` never ran.
//!
//! They live below everything else so that the consent gate can turn reporting off without
//! knowing the runtime, and the runtime can tell a forked child from its parent.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

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
/// The process that ran `init` (0: none yet).
static OWNER_PID: AtomicU32 = AtomicU32::new(0);

/// Crash reports are on, in the process that turned them on.
pub(crate) fn crash_on() -> bool {
    STATE.load(Ordering::Acquire) == ON && !forked()
}

/// Usage pings are on, in the process that turned them on.
pub(crate) fn usage_on() -> bool {
    USAGE_ON.load(Ordering::Acquire) && !forked()
}

pub(crate) fn set_crash(on: bool) {
    STATE.store(if on { ON } else { OFF }, Ordering::Release);
}

pub(crate) fn set_usage(on: bool) {
    USAGE_ON.store(on, Ordering::Release);
}

/// Records this process as the one that ran `init`.
pub(crate) fn claim_process() {
    OWNER_PID.store(std::process::id(), Ordering::Release);
}

/// Whether this is a child forked after `init`. A child has a copy of the parent's memory
/// but not its threads: a lock the parent's worker held at the fork stays held forever in
/// the child, so the child must never touch the runtime. It turns both switches off (its
/// captures cost one load again) and reports nothing.
pub(crate) fn forked() -> bool {
    let owner = OWNER_PID.load(Ordering::Acquire);
    if owner == 0 || owner == std::process::id() {
        return false;
    }
    STATE.store(OFF, Ordering::Release);
    USAGE_ON.store(false, Ordering::Release);
    true
}
