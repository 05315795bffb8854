//! Crashes that are not panics: SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP and SIGABRT (a
//! null pointer in `unsafe` or FFI code, a stack overflow, `std::process::abort()`, a failed
//! allocation).
//!
//! Two halves that share only a small text format (the *record*):
//!
//! - **In the crashing process** (Linux, the `native` feature): EmbarkStudios'
//!   `crash-handler` installs the signal handlers, on an alternate signal stack (so a stack
//!   overflow is caught too), and chains whatever handler was there before. Our part,
//!   [`on_crash`], allocates nothing and takes no lock of ours: it walks the crashed
//!   thread's stack (instruction addresses only, through the signal frame, as sentry-native's
//!   in-process backend does), lists the modules those addresses fall in (load address, size
//!   and GNU build id), formats all of it into a static buffer and writes it to
//!   `<data>/native/<pid>-<time>-<tid>.crash` (a temporary name, then `rename`, so a reader
//!   never sees half a record). Then the previous handler runs, or the default action: the
//!   process dies with the signal it would have died of without consentry. No memory, no
//!   registers but the program counter, no environment, no command line is written; the
//!   fault address only as a kind (null page, next to the stack pointer, elsewhere).
//! - **At the next start** (or in the same run, when a handler before ours recovered), the
//!   runtime's worker turns each record of a process that is gone into an ordinary report
//!   ([`event_of`]) and hands it to the one pipeline (scrub, outbox or `kept/`, consent gate).
//!   When this process has a module with the same build id (the same binary), the addresses
//!   are symbolicated here; the report always carries `debug_meta` (build ids, file names
//!   only), so a server with the debug files symbolicates a stripped build.
//!
//! Off when crash reports are off: the handler is installed only while they may be recorded
//! (on, or kept on this machine), removed when consent is withdrawn, and checks the switch
//! again when a signal arrives. A `SIGABRT` from a panic (`panic = "abort"`) is left to the
//! panic hook, which reported it already. A record a handler before ours recovered from is
//! deleted when the process ends normally (the guard's drop).
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sentry::protocol::{
    DebugImage, Event, Exception, Frame, Level, Mechanism, MechanismMeta, PosixSignal,
    SymbolicDebugImage,
};
use sentry::types::{CodeId, DebugId, Uuid};

use crate::report::{self, Captured, Kind};

/// The first line of a record, with the format's version.
const MAGIC: &str = "consentry-native 1";
/// The most frames a record holds (the innermost ones: where it crashed).
const MAX_FRAMES: usize = 256;
/// The most modules a record holds (only those a frame falls in are written).
const MAX_MODULES: usize = 64;
/// The largest record read back (a real one is a few kB).
pub(crate) const MAX_RECORD_BYTES: u64 = 256 * 1024;
/// A record of a process that still runs is left alone this long (its pid may have been
/// reused by then).
const LIVE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Where the fault address was, as a kind: the address itself is never written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// No fault address (a signal raised by a call: `abort`, `raise`, `kill`).
    None,
    /// The first 64 KiB: a null pointer, or a field of one.
    Null,
    /// Within 1 MiB below (or a page above) the stack pointer: a stack overflow.
    Stack,
    /// Anywhere else.
    Other,
}

impl Fault {
    #[cfg_attr(
        not(all(
            feature = "native",
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        )),
        allow(dead_code)
    )]
    fn classify(has_address: bool, addr: u64, sp: u64) -> Fault {
        if !has_address {
            Fault::None
        } else if addr < 0x10000 {
            Fault::Null
        } else if addr <= sp.saturating_add(4096) && sp - addr.min(sp) < 1 << 20 {
            Fault::Stack
        } else {
            Fault::Other
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::Null => "null",
            Fault::Stack => "stack",
            Fault::Other => "other",
        }
    }

    fn parse(s: &str) -> Option<Fault> {
        Some(match s {
            "none" => Fault::None,
            "null" => Fault::Null,
            "stack" => Fault::Stack,
            "other" => Fault::Other,
            _ => return None,
        })
    }
}

/// A loaded module (the executable, a shared library) as a record lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Module {
    /// Where its lowest segment is mapped, and the size of the span of its segments.
    pub(crate) base: u64,
    pub(crate) size: u64,
    /// The address its lowest segment asks for (0 for a position-independent binary).
    pub(crate) vmaddr: u64,
    /// The GNU build id (empty when the module has none).
    pub(crate) build_id: Vec<u8>,
    /// Its path as the loader knows it (only the file name ever leaves).
    pub(crate) name: String,
}

impl Module {
    fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
}

/// What a native crash left on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) signal: i32,
    pub(crate) code: i32,
    pub(crate) fault: Fault,
    /// Seconds since the epoch.
    pub(crate) time: u64,
    pub(crate) pid: u32,
    /// Instruction addresses, innermost first; the first is the program counter.
    pub(crate) frames: Vec<u64>,
    pub(crate) modules: Vec<Module>,
}

/// Reads a record. Every count and length is bounded; an unknown line is skipped (a newer
/// version may add some), a malformed known one is an error naming it.
pub(crate) fn parse(bytes: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the record is not UTF-8".to_owned())?;
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(format!("the record does not start with '{MAGIC}'"));
    }
    let mut record = Record {
        signal: 0,
        code: 0,
        fault: Fault::None,
        time: 0,
        pid: 0,
        frames: Vec::new(),
        modules: Vec::new(),
    };
    let mut ended = false;
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let bad = || {
            format!(
                "line {n} of the record is malformed: {:?}",
                crate::bound::cut(line, 80)
            )
        };
        let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "signal" => record.signal = rest.parse().map_err(|_| bad())?,
            "code" => record.code = rest.parse().map_err(|_| bad())?,
            "fault" => record.fault = Fault::parse(rest).ok_or_else(bad)?,
            "time" => record.time = rest.parse().map_err(|_| bad())?,
            "pid" => record.pid = rest.parse().map_err(|_| bad())?,
            "frame" if record.frames.len() < MAX_FRAMES => {
                record
                    .frames
                    .push(u64::from_str_radix(rest, 16).map_err(|_| bad())?);
            }
            "module" if record.modules.len() < MAX_MODULES => {
                let mut parts = rest.splitn(5, ' ');
                let mut hex = || {
                    parts
                        .next()
                        .and_then(|p| u64::from_str_radix(p, 16).ok())
                        .ok_or_else(bad)
                };
                let (base, size, vmaddr) = (hex()?, hex()?, hex()?);
                let id = parts.next().ok_or_else(bad)?;
                let build_id = if id == "-" {
                    Vec::new()
                } else {
                    hex_bytes(id).ok_or_else(bad)?
                };
                let name = crate::bound::cut(parts.next().unwrap_or(""), 512).into_owned();
                record.modules.push(Module {
                    base,
                    size,
                    vmaddr,
                    build_id,
                    name,
                });
            }
            "end" => {
                ended = true;
                break;
            }
            _ => {}
        }
    }
    if !ended {
        return Err("the record is incomplete (no 'end' line)".to_owned());
    }
    if record.signal <= 0 || record.frames.is_empty() {
        return Err("the record names no signal or no frame".to_owned());
    }
    Ok(record)
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signal's name and what it means, for the report's exception.
fn signal_names(signal: i32) -> (&'static str, &'static str) {
    match signal {
        4 => ("SIGILL", "illegal instruction"),
        5 => ("SIGTRAP", "trace or breakpoint trap"),
        6 => ("SIGABRT", "the process aborted"),
        7 => ("SIGBUS", "bus error (bad memory access)"),
        8 => ("SIGFPE", "arithmetic error"),
        11 => ("SIGSEGV", "segmentation fault (invalid memory access)"),
        _ => ("SIGNAL", "fatal signal"),
    }
}

/// The Sentry debug id of an ELF build id: its first 16 bytes as a little-endian GUID.
fn debug_id(build_id: &[u8]) -> Option<DebugId> {
    if build_id.is_empty() {
        return None;
    }
    let mut data = [0u8; 16];
    let n = build_id.len().min(16);
    data[..n].copy_from_slice(&build_id[..n]);
    data[0..4].reverse();
    data[4..6].reverse();
    data[6..8].reverse();
    Some(DebugId::from_uuid(Uuid::from_bytes(data)))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Turns a record into a report: a fatal exception named after the signal, the crashed
/// thread's frames (symbolicated where this process has the same module), and the debug
/// images of the modules they fall in, with their file names only.
pub(crate) fn event_of(record: &Record, app_crate: Option<&str>, symbolicate: bool) -> Captured {
    let here = if symbolicate {
        current_modules()
    } else {
        Vec::new()
    };
    // Innermost first; each with the crashed address and the address here (if any).
    let mut frames: Vec<(Frame, u64)> = Vec::new();
    // A zero address ends the walk (the process entry's caller).
    for (i, &addr) in record.frames.iter().enumerate().filter(|(_, a)| **a != 0) {
        let module = record.modules.iter().find(|m| m.contains(addr));
        let package = module.map(|m| file_name(&m.name));
        // The same binary loaded here: its symbols answer for the crashed addresses.
        let local = module.and_then(|m| {
            let same = here
                .iter()
                .find(|h| !m.build_id.is_empty() && h.build_id == m.build_id)?;
            Some(addr - m.base + same.base)
        });
        let mut resolved = local.map(|a| symbols(a, i == 0)).unwrap_or_default();
        if resolved.is_empty() {
            resolved.push(Frame::default());
        }
        for mut frame in resolved {
            // For now the address here, for full names (looked up one byte before: the
            // program counter itself is not a return address).
            frame.instruction_addr = local.map(|a| (if i == 0 { a + 1 } else { a }).into());
            frame.package = package.clone();
            if frame.function.is_none() {
                frame.function = Some("<unknown>".to_owned());
            }
            frames.push((frame, addr));
        }
    }
    frames.reverse();
    let mut resolved: Vec<Frame> = frames.iter().map(|(f, _)| f.clone()).collect();
    report::full_names(&mut resolved);
    for (frame, (_, addr)) in resolved.iter_mut().zip(&frames) {
        frame.instruction_addr = Some((*addr).into());
    }
    let stacktrace = report::native_stacktrace(resolved, app_crate);
    let (name, meaning) = signal_names(record.signal);
    let value = match record.fault {
        Fault::Null => format!("{meaning}: null pointer (an address in the first 64 KiB)"),
        Fault::Stack => format!("{meaning}: stack overflow (next to the stack pointer)"),
        Fault::Other | Fault::None => meaning.to_owned(),
    };
    let images = record
        .modules
        .iter()
        .filter_map(|m| {
            Some(DebugImage::Symbolic(SymbolicDebugImage {
                id: debug_id(&m.build_id)?,
                name: file_name(&m.name),
                arch: Some(std::env::consts::ARCH.to_owned()),
                image_addr: m.base.into(),
                image_size: m.size,
                image_vmaddr: m.vmaddr.into(),
                code_id: Some(CodeId::new(hex(&m.build_id))),
                debug_file: None,
            }))
        })
        .collect();
    let mut event = Event {
        level: Level::Fatal,
        timestamp: UNIX_EPOCH + Duration::from_secs(record.time),
        ..Default::default()
    };
    event.exception.values.push(Exception {
        ty: name.to_owned(),
        value: Some(value),
        mechanism: Some(Mechanism {
            ty: "signalhandler".to_owned(),
            handled: Some(false),
            meta: MechanismMeta {
                signal: Some(PosixSignal {
                    number: record.signal,
                    code: Some(record.code),
                    name: Some(name.to_owned()),
                    code_name: None,
                }),
                ..Default::default()
            },
            ..Default::default()
        }),
        stacktrace,
        ..Default::default()
    });
    event.debug_meta = std::borrow::Cow::Owned(sentry::protocol::DebugMeta {
        images,
        ..Default::default()
    });
    event
        .tags
        .insert("crash.kind".to_owned(), "native".to_owned());
    event
        .tags
        .insert("fault".to_owned(), record.fault.as_str().to_owned());
    Captured {
        event,
        backtrace: None,
        breadcrumb_seq: 0,
        kind: Kind::Native,
    }
}

/// Function, file and line of an address in this process (inlined calls each as a frame,
/// outermost last as the crashed thread saw them). A return address is looked up one byte
/// before (the call), the program counter itself as it is.
fn symbols(addr: u64, is_pc: bool) -> Vec<Frame> {
    let lookup = if is_pc { addr } else { addr.saturating_sub(1) };
    let mut out = Vec::new();
    backtrace::resolve(lookup as usize as *mut std::ffi::c_void, |sym| {
        if out.len() >= 16 {
            return;
        }
        let function = sym.name().map(|n| format!("{n:#}"));
        let abs_path = sym.filename().map(|p| p.to_string_lossy().into_owned());
        out.push(Frame {
            function,
            filename: abs_path.as_deref().map(file_name),
            abs_path,
            lineno: sym.lineno().map(u64::from),
            colno: sym.colno().map(u64::from),
            ..Default::default()
        });
    });
    out
}

fn file_name(path: &str) -> String {
    path.rsplit(['/', '\\']).next().unwrap_or(path).to_owned()
}

/// The modules loaded in this process now.
fn current_modules() -> Vec<Module> {
    let mut out = Vec::new();
    crate::modules::each_module(&mut |m: crate::modules::ModuleView<'_>| {
        if out.len() < 4096 {
            out.push(Module {
                base: m.base,
                size: m.size,
                vmaddr: m.vmaddr,
                build_id: m.build_id.to_vec(),
                name: String::from_utf8_lossy(m.name).into_owned(),
            });
        }
    });
    out
}

/// The records in `dir` that can be reported now, oldest first: those of processes that
/// are gone (or that still run but wrote them more than a day ago). Half-written
/// temporaries of processes that are gone are removed.
pub(crate) fn pending(dir: &Path) -> Vec<PathBuf> {
    let now = SystemTime::now();
    let own = std::process::id();
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    for (path, _) in crate::fsx::regular_files(dir) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let (stem, done) = match (name.strip_suffix(".crash"), name.strip_suffix(".tmp")) {
            (Some(stem), _) => (stem, true),
            (None, Some(stem)) => (stem, false),
            _ => continue,
        };
        let mut parts = stem.split('-');
        let (Some(Ok(pid)), Some(Ok(time))) = (
            parts.next().map(str::parse::<u32>),
            parts.next().map(str::parse::<u64>),
        ) else {
            continue;
        };
        let written = UNIX_EPOCH + Duration::from_secs(time);
        let old = now
            .duration_since(written)
            .is_ok_and(|age| age > LIVE_GRACE);
        if pid == own || (imp::alive(pid) && !old) {
            continue;
        }
        if done {
            out.push((time, path));
        } else {
            let _ = crate::fsx::remove(&path);
        }
    }
    out.sort();
    out.into_iter().map(|(_, p)| p).collect()
}

/// The process ends normally: a record it wrote (a handler before ours recovered from the
/// signal) was not a crash.
pub(crate) fn forget_own(dir: &Path) {
    let prefix = format!("{}-", std::process::id());
    for (path, _) in crate::fsx::regular_files(dir) {
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix))
        {
            let _ = crate::fsx::remove(&path);
        }
    }
}

/// Deletes every record (consent withdrawn); returns how many.
pub(crate) fn clear(dir: &Path) -> usize {
    crate::fsx::regular_files(dir)
        .into_iter()
        .filter(|(path, _)| crate::fsx::remove(path).is_ok())
        .count()
}

/// A record of this thread's stack as it is now, as a crash here would leave it (for
/// `preview`): the same formatter and module walk the handler uses.
pub(crate) fn sample() -> Option<Record> {
    let mut frames = Vec::new();
    backtrace::trace(|f| {
        frames.push(f.ip() as usize as u64);
        frames.len() < MAX_FRAMES
    });
    let mut storage = vec![0u8; 64 * 1024];
    let mut buf = imp::Buf::new(&mut storage);
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    imp::format_record(
        &mut buf,
        11,
        1,
        Fault::Null,
        time,
        std::process::id(),
        &frames,
        exe.as_bytes(),
    );
    parse(buf.bytes()).ok()
}

/// Whether native crashes are caught in this build (Linux on x86-64 or ARM64, with the
/// `native` feature).
pub(crate) const SUPPORTED: bool = imp::SUPPORTED;

/// Installs the handler, writing records to `dir` (created, private). `Err` says why not.
pub(crate) fn install(dir: &Path) -> Result<(), String> {
    imp::install(dir)
}

/// Removes the handler (restoring the handlers that were there before).
pub(crate) fn uninstall() {
    imp::uninstall();
}

#[cfg(all(
    feature = "native",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod imp {
    //! The handler itself and the formatting it needs, without allocation or locks of ours.

    use std::cell::UnsafeCell;
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

    use super::{Fault, MAGIC, MAX_FRAMES, MAX_MODULES};

    pub(super) const SUPPORTED: bool = true;

    /// What the handler needs, prepared at install: the directory and the executable's file
    /// name (the loader gives the executable no name). Leaked: a signal may arrive at any time.
    struct State {
        dir: Vec<u8>,
        exe: Vec<u8>,
    }

    static STATE: AtomicPtr<State> = AtomicPtr::new(std::ptr::null_mut());
    static HANDLER: Mutex<Option<crash_handler::CrashHandler>> = Mutex::new(None);
    /// Set while a signal is being recorded: a second one (a crash in the handler, another
    /// thread) is left to the handlers before ours.
    static BUSY: AtomicBool = AtomicBool::new(false);

    /// Memory for the handler, in the process image rather than on the (alternate, small)
    /// signal stack. Only touched while `BUSY` is held.
    struct Scratch {
        frames: UnsafeCell<[u64; MAX_FRAMES + 64]>,
        text: UnsafeCell<[u8; 48 * 1024]>,
        path: UnsafeCell<[u8; 4096]>,
        tmp: UnsafeCell<[u8; 4096]>,
    }
    // SAFETY: every access is under `BUSY` (one thread at a time).
    unsafe impl Sync for Scratch {}
    static SCRATCH: Scratch = Scratch {
        frames: UnsafeCell::new([0; MAX_FRAMES + 64]),
        text: UnsafeCell::new([0; 48 * 1024]),
        path: UnsafeCell::new([0; 4096]),
        tmp: UnsafeCell::new([0; 4096]),
    };

    pub(super) fn install(dir: &Path) -> Result<(), String> {
        use std::os::unix::ffi::OsStrExt;
        let mut slot = HANDLER
            .lock()
            .map_err(|_| "the handler's lock is poisoned".to_owned())?;
        if slot.is_some() {
            return Ok(());
        }
        crate::fsx::create_private_dir(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let dir = dir.as_os_str().as_bytes().to_vec();
        if dir.len() > 3000 || dir.contains(&0) {
            return Err("the data directory's path is too long for the crash handler".to_owned());
        }
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.as_bytes().to_vec()))
            .unwrap_or_else(|| b"<main>".to_vec());
        let state = Box::into_raw(Box::new(State { dir, exe }));
        // The previous state stays leaked: a handler on another thread may still read it.
        STATE.store(state, Ordering::Release);
        // SAFETY: `on_crash` does only async-signal-safe work: atomics, the unwinder's walk
        // (as sentry-native's in-process backend), `dl_iterate_phdr`, and
        // open/write/rename/close on memory prepared here.
        let event = unsafe {
            crash_handler::make_crash_event(|cc: &crash_handler::CrashContext| {
                on_crash(cc);
                // Not handled: the handler that was there before runs (Rust's own stack
                // overflow message, the app's), then the default action.
                crash_handler::CrashEventResult::Handled(false)
            })
        };
        // `attach` asserts on a failed `sigaltstack`: a panic there must not reach the app.
        let attached = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crash_handler::CrashHandler::attach(event)
        }))
        .map_err(|_| "installing the signal handler failed".to_owned())?;
        let handler = attached.map_err(|e| e.to_string())?;
        *slot = Some(handler);
        Ok(())
    }

    pub(super) fn uninstall() {
        if let Ok(mut slot) = HANDLER.lock() {
            // Dropping it restores the previous handlers.
            slot.take();
        }
    }

    /// Program counter and stack pointer of the crashed context.
    fn pc_sp(cc: &crash_handler::CrashContext) -> (u64, u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let g = &cc.context.uc_mcontext.gregs;
            (
                g[libc::REG_RIP as usize] as u64,
                g[libc::REG_RSP as usize] as u64,
            )
        }
        #[cfg(target_arch = "aarch64")]
        {
            (cc.context.uc_mcontext.pc, cc.context.uc_mcontext.sp)
        }
    }

    /// The fault address. `crash-handler` keeps the kernel's `siginfo_t` bytes under the
    /// `signalfd_siginfo` type, whose fields lie elsewhere: `si_addr` is the pointer at
    /// offset 16 of `siginfo_t` on 64-bit Linux.
    fn fault_address(cc: &crash_handler::CrashContext) -> u64 {
        const _: () = assert!(std::mem::size_of::<libc::signalfd_siginfo>() >= 24);
        let base = (&raw const cc.siginfo).cast::<u8>();
        // SAFETY: within the 128-byte structure; read unaligned.
        unsafe { std::ptr::read_unaligned(base.add(16).cast::<u64>()) }
    }

    fn on_crash(cc: &crash_handler::CrashContext) {
        if BUSY.swap(true, Ordering::AcqRel) {
            return;
        }
        let signal = cc.siginfo.ssi_signo as i32;
        // A panic with `panic = "abort"` (or a panic while panicking): the panic hook has
        // reported it.
        let from_panic = signal == libc::SIGABRT && std::thread::panicking();
        if crate::switch::crash_on() && !from_panic {
            // SAFETY: async-signal-safe; a hang in what follows ends the process (SIGALRM)
            // instead of keeping it alive.
            let previous_alarm = unsafe { libc::alarm(10) };
            record(cc, signal);
            // SAFETY: as above.
            unsafe { libc::alarm(previous_alarm) };
        }
        BUSY.store(false, Ordering::Release);
    }

    fn record(cc: &crash_handler::CrashContext, signal: i32) {
        let state = STATE.load(Ordering::Acquire);
        if state.is_null() {
            return;
        }
        // SAFETY: set once per install from a leaked box, never freed.
        let state = unsafe { &*state };
        let (pc, sp) = pc_sp(cc);
        let code = cc.siginfo.ssi_code;
        // si_code > 0: sent by the kernel for a fault, with a fault address.
        let faulted = code > 0
            && matches!(
                signal,
                libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE
            );
        let fault = Fault::classify(faulted, fault_address(cc), sp);
        // SAFETY: only this thread touches the scratch memory while BUSY is held.
        let frames = unsafe { &mut *SCRATCH.frames.get() };
        let mut n = 0;
        // SAFETY: on Linux the walk is `_Unwind_Backtrace`, which crosses the signal frame;
        // the callback only stores integers.
        unsafe {
            backtrace::trace_unsynchronized(|f| {
                if let Some(slot) = frames.get_mut(n) {
                    *slot = f.ip() as usize as u64;
                    n += 1;
                }
                n < frames.len()
            });
        }
        // The handler's own frames are above the program counter: skip them. When the walk
        // did not reach it, the program counter alone.
        let walked = &frames[..n];
        let start = walked.iter().position(|&ip| ip == pc);
        let mut from_pc = [0u64; 1];
        let crashed: &[u64] = match start {
            Some(i) => &walked[i..(i + MAX_FRAMES).min(n)],
            None => {
                from_pc[0] = pc;
                &from_pc
            }
        };
        // SAFETY: as above.
        let text = unsafe { &mut *SCRATCH.text.get() };
        let mut buf = Buf::new(text);
        let time = now_secs();
        let pid = cc.pid as u32;
        format_record(
            &mut buf, signal, code, fault, time, pid, crashed, &state.exe,
        );
        // <dir>/<pid>-<time>-<tid>.tmp, then renamed to .crash
        let path = unsafe { &mut *SCRATCH.path.get() };
        let tmp = unsafe { &mut *SCRATCH.tmp.get() };
        let mut p = Buf::new(path);
        p.put(&state.dir);
        p.put(b"/");
        p.dec(u64::from(pid));
        p.put(b"-");
        p.dec(time);
        p.put(b"-");
        p.dec(cc.tid as u32 as u64);
        let stem = p.len;
        let mut t = Buf::new(tmp);
        t.put(&p.buf[..stem]);
        t.put(b".tmp\0");
        p.put(b".crash\0");
        if p.full || t.full {
            return;
        }
        // SAFETY: open/write/close/rename/unlink are async-signal-safe; the paths are
        // NUL-terminated above.
        unsafe {
            let fd = libc::open(
                t.buf.as_ptr().cast(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            );
            if fd < 0 {
                return;
            }
            let bytes = buf.bytes();
            let mut written = 0;
            while written < bytes.len() {
                let w = libc::write(fd, bytes[written..].as_ptr().cast(), bytes.len() - written);
                if w <= 0 {
                    break;
                }
                written += w as usize;
            }
            libc::close(fd);
            if written == bytes.len() {
                libc::rename(t.buf.as_ptr().cast(), p.buf.as_ptr().cast());
            } else {
                libc::unlink(t.buf.as_ptr().cast());
            }
        }
    }

    fn now_secs() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime is async-signal-safe.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        ts.tv_sec.max(0) as u64
    }

    /// A fixed buffer that is written without allocating; past its end, writes are dropped
    /// and `full` is set.
    pub(crate) struct Buf<'a> {
        pub(super) buf: &'a mut [u8],
        pub(super) len: usize,
        pub(super) full: bool,
    }

    impl<'a> Buf<'a> {
        pub(crate) fn new(buf: &'a mut [u8]) -> Buf<'a> {
            Buf {
                buf,
                len: 0,
                full: false,
            }
        }

        pub(crate) fn bytes(&self) -> &[u8] {
            &self.buf[..self.len]
        }

        fn put(&mut self, bytes: &[u8]) {
            match self.buf.get_mut(self.len..self.len + bytes.len()) {
                Some(dst) => {
                    dst.copy_from_slice(bytes);
                    self.len += bytes.len();
                }
                None => self.full = true,
            }
        }

        fn dec(&mut self, mut v: u64) {
            let mut digits = [0u8; 20];
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            self.put(&digits[i..]);
        }

        fn signed(&mut self, v: i32) {
            if v < 0 {
                self.put(b"-");
            }
            self.dec(u64::from(v.unsigned_abs()));
        }

        fn hex(&mut self, mut v: u64) {
            let mut digits = [0u8; 16];
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b"0123456789abcdef"[(v & 15) as usize];
                v >>= 4;
                if v == 0 {
                    break;
                }
            }
            self.put(&digits[i..]);
        }

        /// A name on one line: control bytes become `?`.
        fn name(&mut self, bytes: &[u8]) {
            for &b in bytes.iter().take(512) {
                self.put(&[if b < 0x20 || b == 0x7f { b'?' } else { b }]);
            }
        }
    }

    /// Writes a whole record: the header, the frames, the modules the frames fall in.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn format_record(
        buf: &mut Buf<'_>,
        signal: i32,
        code: i32,
        fault: Fault,
        time: u64,
        pid: u32,
        frames: &[u64],
        exe: &[u8],
    ) {
        buf.put(MAGIC.as_bytes());
        buf.put(b"\nsignal ");
        buf.signed(signal);
        buf.put(b"\ncode ");
        buf.signed(code);
        buf.put(b"\nfault ");
        buf.put(fault.as_str().as_bytes());
        buf.put(b"\ntime ");
        buf.dec(time);
        buf.put(b"\npid ");
        buf.dec(u64::from(pid));
        buf.put(b"\n");
        for &ip in frames.iter().take(MAX_FRAMES) {
            buf.put(b"frame ");
            buf.hex(ip);
            buf.put(b"\n");
        }
        let mut modules = 0;
        crate::modules::each_module(&mut |m: crate::modules::ModuleView<'_>| {
            let hit = frames
                .iter()
                .any(|&ip| ip >= m.base && ip - m.base < m.size);
            if !hit || modules >= MAX_MODULES {
                return;
            }
            modules += 1;
            buf.put(b"module ");
            buf.hex(m.base);
            buf.put(b" ");
            buf.hex(m.size);
            buf.put(b" ");
            buf.hex(m.vmaddr);
            buf.put(b" ");
            if m.build_id.is_empty() {
                buf.put(b"-");
            }
            for &b in m.build_id.iter().take(64) {
                buf.put(&[
                    b"0123456789abcdef"[(b >> 4) as usize],
                    b"0123456789abcdef"[(b & 15) as usize],
                ]);
            }
            buf.put(b" ");
            buf.name(if m.name.is_empty() { exe } else { m.name });
            buf.put(b"\n");
        });
        buf.put(b"end\n");
    }

    /// Whether a process with this id exists (signal 0 checks without sending).
    pub(super) fn alive(pid: u32) -> bool {
        let Ok(pid) = i32::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

#[cfg(not(all(
    feature = "native",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod imp {
    //! Native crashes are not caught in this build: nothing is installed, no record is
    //! written; records another build left are still reported.

    use std::path::Path;

    use super::Fault;

    pub(super) const SUPPORTED: bool = false;

    pub(super) fn install(_dir: &Path) -> Result<(), String> {
        Err(
            "native crashes are caught only on Linux (x86-64, ARM64) with the `native` feature"
                .to_owned(),
        )
    }

    pub(super) fn uninstall() {}

    pub(crate) struct Buf<'a> {
        buf: &'a mut [u8],
    }

    impl<'a> Buf<'a> {
        pub(crate) fn new(buf: &'a mut [u8]) -> Buf<'a> {
            Buf { buf }
        }
        pub(crate) fn bytes(&self) -> &[u8] {
            &self.buf[..0]
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn format_record(
        _buf: &mut Buf<'_>,
        _signal: i32,
        _code: i32,
        _fault: Fault,
        _time: u64,
        _pid: u32,
        _frames: &[u64],
        _exe: &[u8],
    ) {
    }

    pub(super) fn alive(_pid: u32) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_kinds_never_addresses() {
        assert_eq!(Fault::classify(false, 0, 0), Fault::None);
        assert_eq!(Fault::classify(true, 0, 0x7fff_0000), Fault::Null);
        assert_eq!(Fault::classify(true, 0x18, 0x7fff_0000), Fault::Null);
        assert_eq!(
            Fault::classify(true, 0x7ffe_fff8, 0x7fff_0000),
            Fault::Stack
        );
        assert_eq!(
            Fault::classify(true, 0x7fff_0008, 0x7fff_0000),
            Fault::Stack
        );
        assert_eq!(
            Fault::classify(true, 0x5555_0000, 0x7fff_0000),
            Fault::Other
        );
    }

    #[test]
    fn malformed_records_say_where() {
        assert!(
            parse(b"garbage")
                .unwrap_err()
                .contains("consentry-native 1")
        );
        let bad = format!("{MAGIC}\nsignal eleven\nframe 1\nend\n");
        assert!(
            parse(bad.as_bytes()).unwrap_err().contains("line 2"),
            "{bad}"
        );
        let cut = format!("{MAGIC}\nsignal 11\nframe 1\n");
        assert!(parse(cut.as_bytes()).unwrap_err().contains("incomplete"));
        let bad_module = format!("{MAGIC}\nsignal 11\nframe 1\nmodule 10 zz 0 - a\nend\n");
        assert!(parse(bad_module.as_bytes()).unwrap_err().contains("line 4"));
        // Bounded: a record with a million frames keeps MAX_FRAMES.
        let mut many = format!("{MAGIC}\nsignal 11\n");
        for i in 0..100_000 {
            many.push_str(&format!("frame {i:x}\n"));
        }
        many.push_str("end\n");
        assert_eq!(parse(many.as_bytes()).unwrap().frames.len(), MAX_FRAMES);
    }

    #[test]
    fn debug_ids_follow_the_elf_convention() {
        // The build id's first 16 bytes, the first three GUID fields byte-swapped.
        let id = debug_id(&hex_bytes("0123456789abcdef0011223344556677deadbeef").unwrap());
        assert_eq!(
            id.unwrap().to_string(),
            "67452301-ab89-efcd-0011-223344556677"
        );
        assert!(debug_id(&[]).is_none());
    }

    #[cfg(all(
        feature = "native",
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn a_sample_record_round_trips_and_symbolicates_here() {
        let record = sample().expect("a record of this thread");
        assert_eq!(record.signal, 11);
        assert!(record.frames.len() > 3);
        // The executable is listed with its build id and file name.
        let exe = std::env::current_exe().unwrap();
        let exe_name = exe.file_name().unwrap().to_str().unwrap();
        let main = record
            .modules
            .iter()
            .find(|m| m.name == exe_name)
            .expect("the executable");
        assert!(!main.build_id.is_empty());
        let captured = event_of(&record, Some("consentry"), true);
        let st = captured.event.exception.values[0]
            .stacktrace
            .clone()
            .unwrap();
        assert!(
            st.frames.iter().any(|f| f
                .function
                .as_deref()
                .unwrap_or("")
                .contains("a_sample_record_round_trips")),
            "{:#?}",
            st.frames
        );
        let images = &captured.event.debug_meta.images;
        assert!(!images.is_empty());
        let json = serde_json::to_string(images).unwrap();
        assert!(
            !json.contains('/'),
            "image paths are file names only: {json}"
        );
    }
}
