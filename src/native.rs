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
//!   `<data>/native/<id>-<time>-<tid>.crash` (`<id>`: this process's random id; a temporary
//!   name, then `rename`, so a reader never sees half a record). Then the previous handler runs, or the default action: the
//!   process dies with the signal it would have died of without consentry. No memory, no
//!   registers but the program counter, no environment, no command line is written; the
//!   fault address only as a kind (null page, next to the stack pointer, elsewhere).
//! - **At the next start**, the runtime's worker turns each record of a process that is gone
//!   (its `<id>.alive` file is no longer locked) into an ordinary report
//!   ([`event_of`]) and hands it to the one pipeline (scrub, outbox or `kept/`, consent gate).
//!   When this process has a module with the same build id (the same binary), the addresses
//!   are symbolicated here; the report always carries `debug_meta` (build ids, file names
//!   only), so a server with the debug files symbolicates a stripped build.
//!
//! Off when crash reports are off: the handler is installed only while they may be recorded
//! (on, or kept on this machine) and checks the switch again when a signal arrives, so after
//! a "no" it records nothing (it stays installed: see [`install`]). A `SIGABRT` from a panic
//! (`panic = "abort"`) is left to the panic hook, which reported it already. A record of a
//! signal the process survived (a handler before ours recovered) is deleted when the process
//! ends normally (the guard's drop, or `exit`).
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
    /// The release of the app that crashed (`app@version`).
    pub(crate) release: Option<String>,
    /// Windows: the exception code (`signal` is then the nearest POSIX signal).
    pub(crate) exception: Option<u32>,
    /// The modules are PE images (Windows): a module's id is its link time stamp and image
    /// size (the code id), then the CodeView GUID and age (the debug id) when it has one.
    pub(crate) pe: bool,
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
        release: None,
        exception: None,
        pe: false,
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
            "release" => record.release = Some(crate::bound::cut(rest, 256).into_owned()),
            "exception" => {
                record.exception = Some(u32::from_str_radix(rest, 16).map_err(|_| bad())?);
            }
            "images" => record.pe = rest == "pe",
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

/// The Windows exceptions the handler names (NTSTATUS codes).
const EXCEPTION_ACCESS_VIOLATION: u32 = 0xC000_0005;
const EXCEPTION_STACK_OVERFLOW: u32 = 0xC000_00FD;

/// A Windows exception's name, what it means, and the POSIX signal nearest to it (a record
/// always names a signal).
fn exception_names(code: u32) -> (&'static str, &'static str, i32) {
    match code {
        EXCEPTION_ACCESS_VIOLATION => (
            "EXCEPTION_ACCESS_VIOLATION",
            "access violation (invalid memory access)",
            11,
        ),
        EXCEPTION_STACK_OVERFLOW => ("EXCEPTION_STACK_OVERFLOW", "stack overflow", 11),
        0xC000_0006 => (
            "EXCEPTION_IN_PAGE_ERROR",
            "in-page error (a mapped file could not be read)",
            7,
        ),
        0xC000_001D => ("EXCEPTION_ILLEGAL_INSTRUCTION", "illegal instruction", 4),
        0xC000_0096 => ("EXCEPTION_PRIV_INSTRUCTION", "privileged instruction", 4),
        0xC000_008C => (
            "EXCEPTION_ARRAY_BOUNDS_EXCEEDED",
            "array bounds exceeded",
            11,
        ),
        0xC000_0094 => (
            "EXCEPTION_INT_DIVIDE_BY_ZERO",
            "integer division by zero",
            8,
        ),
        0xC000_0095 => ("EXCEPTION_INT_OVERFLOW", "integer overflow", 8),
        0xC000_008D..=0xC000_0093 => ("EXCEPTION_FLT", "floating-point error", 8),
        0x8000_0003 => ("EXCEPTION_BREAKPOINT", "breakpoint", 5),
        0xC000_0409 => (
            "STATUS_STACK_BUFFER_OVERRUN",
            "fail-fast exit (a security check failed)",
            6,
        ),
        0xC000_0374 => ("STATUS_HEAP_CORRUPTION", "heap corruption", 6),
        0x4000_0015 => ("STATUS_FATAL_APP_EXIT", "the process aborted", 6),
        0xC000_000D => (
            "STATUS_INVALID_PARAMETER",
            "invalid parameter passed to the C runtime",
            6,
        ),
        0xC000_0025 => (
            "EXCEPTION_NONCONTINUABLE_EXCEPTION",
            "non-continuable exception",
            6,
        ),
        _ => ("EXCEPTION", "unhandled exception", 6),
    }
}

/// The ids of a PE module as a record holds them (link time stamp and image size, then
/// the CodeView GUID and age when the module has one): Sentry's debug id and code id. No
/// debug id (no CodeView record, as a MinGW build without `--build-id`): no image.
fn pe_ids(id: &[u8]) -> Option<(DebugId, CodeId)> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(id.get(at..at + 4)?.try_into().ok()?))
    };
    let (stamp, size) = (word(0)?, word(4)?);
    let guid = id.get(8..24)?;
    let age = word(24)?;
    let debug = DebugId::from_parts(Uuid::from_bytes_le(guid.try_into().ok()?), age);
    Some((debug, CodeId::new(format!("{stamp:08X}{size:x}"))))
}

/// The Sentry debug id of an ELF build id: its first 16 bytes as a little-endian GUID.
fn debug_id(build_id: &[u8]) -> Option<DebugId> {
    if build_id.is_empty() {
        return None;
    }
    let mut data = [0u8; 16];
    let n = build_id.len().min(16);
    data[..n].copy_from_slice(&build_id[..n]);
    Some(DebugId::from_uuid(Uuid::from_bytes_le(data)))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether a frame is `crash-handler`'s own: by its full name, or, where only a short name
/// is known (`simulate_exception` in a build with line tables only), by its source file in
/// that crate.
fn handler_frame(frame: &Frame) -> bool {
    frame
        .function
        .as_deref()
        .is_some_and(|name| name.starts_with("crash_handler::"))
        || frame.abs_path.as_deref().is_some_and(|path| {
            let path = path.replace('\\', "/");
            (path.contains("/crash-handler-") || path.contains("/crash-handler/"))
                && path.contains("/src/")
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
            Some(addr.wrapping_sub(m.base).wrapping_add(same.base))
        });
        let mut resolved = local
            .map(|a| report::symbol_frames(a, i == 0, 16))
            .unwrap_or_default();
        if resolved.is_empty() {
            resolved.push(Frame::default());
        }
        for mut frame in resolved {
            // For now the address here, for full names (looked up one byte before: the
            // program counter itself is not a return address).
            frame.instruction_addr =
                local.map(|a| (if i == 0 { a.wrapping_add(1) } else { a }).into());
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
    // The handler's own frames, where the crash context was taken inside it (Windows: the C
    // runtime's `abort` reaches `crash-handler` through a signal handler).
    while resolved.len() > 1 && resolved.last().is_some_and(handler_frame) {
        resolved.pop();
    }
    let stacktrace = report::native_stacktrace(resolved, app_crate);
    let (name, meaning) = match record.exception {
        Some(code) => {
            let (name, meaning, _) = exception_names(code);
            (name, meaning)
        }
        None => signal_names(record.signal),
    };
    let value = match record.fault {
        Fault::Null => format!("{meaning}: null pointer (an address in the first 64 KiB)"),
        Fault::Stack if record.exception != Some(EXCEPTION_STACK_OVERFLOW) => {
            format!("{meaning}: stack overflow (next to the stack pointer)")
        }
        Fault::Stack | Fault::Other | Fault::None => meaning.to_owned(),
    };
    let images = record
        .modules
        .iter()
        .filter_map(|m| {
            let (id, code_id) = if record.pe {
                pe_ids(&m.build_id)?
            } else {
                (debug_id(&m.build_id)?, CodeId::new(hex(&m.build_id)))
            };
            Some(DebugImage::Symbolic(SymbolicDebugImage {
                id,
                name: file_name(&m.name),
                arch: Some(std::env::consts::ARCH.to_owned()),
                image_addr: m.base.into(),
                image_size: m.size,
                image_vmaddr: m.vmaddr.into(),
                code_id: Some(code_id),
                debug_file: None,
            }))
        })
        .collect();
    // When it crashed, as the record says, but never in the future (a corrupt record).
    let now = SystemTime::now();
    let timestamp = UNIX_EPOCH
        .checked_add(Duration::from_secs(record.time))
        .filter(|t| *t <= now)
        .unwrap_or(now);
    let mut event = Event {
        level: Level::Fatal,
        timestamp,
        release: record.release.clone().map(Into::into),
        ..Default::default()
    };
    let mut mechanism = Mechanism {
        ty: "signalhandler".to_owned(),
        handled: Some(false),
        ..Default::default()
    };
    match record.exception {
        Some(code) => {
            mechanism.ty = "UnhandledExceptionFilter".to_owned();
            mechanism
                .data
                .insert("code".to_owned(), format!("0x{code:08x}").into());
        }
        None => {
            mechanism.meta = MechanismMeta {
                signal: Some(PosixSignal {
                    number: record.signal,
                    code: Some(record.code),
                    name: Some(name.to_owned()),
                    code_name: None,
                }),
                ..Default::default()
            };
        }
    }
    event.exception.values.push(Exception {
        ty: name.to_owned(),
        value: Some(value),
        mechanism: Some(mechanism),
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

/// This process's name in record file names: random, so a process id used again (in a
/// container the app is often pid 1 on every run) never mixes two processes up.
pub(crate) fn own_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let mut id = Uuid::new_v4().simple().to_string();
        id.truncate(16);
        id
    })
}

/// The `<id>.alive` files this process holds locked: the kernel releases the lock however
/// the process ends, so a record's writer is known to be gone, whatever its pid became.
static ALIVE: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

fn alive_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.alive"))
}

/// Marks this process as running for the readers of `dir`. The file is locked under a
/// temporary name and then renamed: a reader never sees it unlocked (it would take it for a
/// process that is gone, and delete it).
fn hold_alive(dir: &Path) -> Result<(), String> {
    let path = alive_path(dir, own_id());
    let tmp = dir.join(format!("{}.alive.new", own_id()));
    let file = crate::fsx::open_lock_file(&tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    file.try_lock()
        .map_err(|e| format!("cannot lock {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    if let Ok(mut held) = ALIVE.lock() {
        held.push(file);
    }
    Ok(())
}

/// Whether the process named `id` still runs: its `.alive` file is locked. Where locks do not
/// work, a record younger than a day counts as a running process's.
fn running(dir: &Path, id: &str, young: bool) -> bool {
    if id == own_id() {
        return true;
    }
    let path = alive_path(dir, id);
    if crate::fsx::regular_len(&path).is_none() {
        return false;
    }
    match crate::fsx::open_lock_file(&path).map(|f| f.try_lock()) {
        Ok(Ok(())) => false,
        Ok(Err(std::fs::TryLockError::WouldBlock)) => true,
        _ => young,
    }
}

/// A record file's name, taken apart: `<writer>-<time>-<thread>.crash`, `.tmp` while it is
/// written, `.claimed-<reader>` while a start reports it; beside it the minidump helper's
/// `.ctx` (the crash context, while it runs) and `.dmp`.
struct RecordName<'a> {
    writer: &'a str,
    time: u64,
    stem: &'a str,
    state: NameState<'a>,
}

enum NameState<'a> {
    Done,
    Writing,
    Claimed(&'a str),
    /// `<stem>.dmp`: the minidump the helper wrote for the record `<stem>`.
    Minidump,
}

fn record_name(name: &str) -> Option<RecordName<'_>> {
    // `.<stem>.dmp.<random>.tmp`: the helper's minidump being written.
    let name = name.strip_prefix('.').unwrap_or(name);
    let (stem, state) = if let Some(stem) = name.strip_suffix(".crash") {
        (stem, NameState::Done)
    } else if let Some(stem) = name
        .strip_suffix(".tmp")
        .or_else(|| name.strip_suffix(".ctx"))
    {
        // Being written, or the crash context the helper reads.
        (stem, NameState::Writing)
    } else if let Some(stem) = name.strip_suffix(".dmp") {
        (stem, NameState::Minidump)
    } else {
        let (stem, reader) = name.split_once(".claimed-")?;
        (stem, NameState::Claimed(reader))
    };
    let mut parts = stem.splitn(3, '-');
    let writer = parts.next()?;
    let time = parts.next()?.parse().ok()?;
    let id_like =
        |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !id_like(writer) || matches!(state, NameState::Claimed(r) if !id_like(r)) {
        return None;
    }
    Some(RecordName {
        writer,
        time,
        stem,
        state,
    })
}

/// The records in `dir` that can be reported now, oldest first: those whose writer is gone,
/// and those a start claimed and did not finish (its process is gone too). Half-written
/// records of processes that are gone, records dated more than a day ahead (a corrupt name)
/// and the `.alive` files of processes that are gone are removed.
pub(crate) fn pending(dir: &Path) -> Vec<PathBuf> {
    let now = SystemTime::now();
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    let mut alive_files = Vec::new();
    let mut stems = std::collections::HashSet::new();
    let mut minidumps = Vec::new();
    for (path, _) in crate::fsx::regular_files(dir) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(id) = name.strip_suffix(".alive") {
            alive_files.push((id.to_owned(), path.clone()));
            continue;
        }
        let Some(record) = record_name(name) else {
            continue;
        };
        let written = UNIX_EPOCH.checked_add(Duration::from_secs(record.time));
        if written.is_none_or(|w| w > now + LIVE_GRACE) {
            let _ = crate::fsx::remove(&path);
            continue;
        }
        let young = written.is_some_and(|w| now.duration_since(w).is_ok_and(|a| a < LIVE_GRACE));
        if matches!(record.state, NameState::Done | NameState::Claimed(_)) {
            stems.insert(record.stem.to_owned());
        }
        match record.state {
            NameState::Done if !running(dir, record.writer, young) => out.push((record.time, path)),
            NameState::Writing if !running(dir, record.writer, young) => {
                let _ = crate::fsx::remove(&path);
            }
            NameState::Claimed(reader) if !running(dir, reader, young) => {
                out.push((record.time, path));
            }
            NameState::Minidump if !running(dir, record.writer, young) => {
                minidumps.push((record.stem.to_owned(), path.clone()));
            }
            _ => {}
        }
    }
    // A minidump whose record is gone (reported, or unusable) is never sent: removed.
    for (stem, path) in minidumps {
        if !stems.contains(&stem) {
            let _ = crate::fsx::remove(&path);
        }
    }
    // A gone process's `.alive` file: its records are known to be its without it.
    for (id, path) in alive_files {
        if !running(dir, &id, true) {
            let _ = crate::fsx::remove(&path);
        }
    }
    out.sort();
    out.into_iter().map(|(_, p)| p).collect()
}

/// Takes a pending record for this process (an atomic rename to `.claimed-<own id>`), so
/// that two starts at the same time do not both report it. `None`: another took it.
pub(crate) fn claim(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let record = record_name(name)?;
    let claimed = path.with_file_name(format!("{}.claimed-{}", record.stem, own_id()));
    std::fs::rename(path, &claimed).ok()?;
    Some(claimed)
}

/// The minidump the helper wrote beside the record at `record` (its name as written, or
/// claimed), if there is one.
pub(crate) fn minidump_of(record: &Path) -> Option<PathBuf> {
    let name = record.file_name()?.to_str()?;
    let parsed = record_name(name)?;
    let path = record.with_file_name(format!("{}.dmp", parsed.stem));
    crate::fsx::regular_len(&path).map(|_| path)
}

/// The process ends normally: what it wrote (a handler before ours recovered from the
/// signal) was not a crash, and it no longer runs.
pub(crate) fn forget_own(dir: &Path) {
    let own = own_id();
    for (path, _) in crate::fsx::regular_files(dir) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let ours = record_name(name)
            .is_some_and(|r| r.writer == own && !matches!(r.state, NameState::Claimed(_)))
            || name == format!("{own}.alive");
        if ours {
            let _ = crate::fsx::remove(&path);
        }
    }
}

/// Deletes every record (consent withdrawn), and whatever else is in the directory but the
/// `.alive` files (they say who runs, nothing about a crash); returns how many records.
pub(crate) fn clear(dir: &Path) -> usize {
    let mut records = 0;
    for (path, _) in crate::fsx::regular_files(dir) {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            let _ = crate::fsx::remove(&path);
            continue;
        };
        if name.ends_with(".alive") {
            continue;
        }
        if crate::fsx::remove(&path).is_ok()
            && record_name(name).is_some_and(|r| !matches!(r.state, NameState::Minidump))
        {
            records += 1;
        }
    }
    records
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
    let mut buf = Buf::new(&mut storage);
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    format_record(
        &mut buf,
        11,
        1,
        Fault::Null,
        time,
        std::process::id(),
        &frames,
        exe.as_bytes(),
        b"",
        cfg!(windows).then_some(EXCEPTION_ACCESS_VIOLATION),
    );
    parse(buf.bytes()).ok()
}

/// A fixed buffer that is written without allocating; past its end, writes are dropped
/// and `full` is set.
pub(crate) struct Buf<'a> {
    buf: &'a mut [u8],
    len: usize,
    full: bool,
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
    release: &[u8],
    exception: Option<u32>,
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
    if let Some(code) = exception {
        buf.put(b"exception ");
        buf.hex(u64::from(code));
        buf.put(b"\n");
    }
    if cfg!(windows) {
        buf.put(b"images pe\n");
    }
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
        // The file name only: the directory (a home directory) is not needed.
        let path = if m.name.is_empty() { exe } else { m.name };
        let file = path
            .rsplit(|&b| b == b'/' || b == b'\\')
            .next()
            .unwrap_or(path);
        buf.name(file);
        buf.put(b"\n");
    });
    // The release the crash belongs to (an update may come before the next start).
    if !release.is_empty() {
        buf.put(b"release ");
        buf.name(release);
        buf.put(b"\n");
    }
    // At most ~45 KiB (256 frames, 64 modules of 512-byte names): `end` always fits.
    buf.put(b"end\n");
}

/// An absolute Windows path in the `\\?\` form (`C:\x` → `\\?\C:\x`, `\\srv\share` →
/// `\\?\UNC\srv\share`), which has no `MAX_PATH` limit; `None` when it is in that form
/// already, or not absolute.
#[cfg(any(windows, test))]
fn long_form(path: &str) -> Option<String> {
    if path.starts_with(r"\\?\") || path.starts_with(r"\\.\") {
        return None;
    }
    let long = if let Some(share) = path.strip_prefix(r"\\") {
        format!(r"\\?\UNC\{share}")
    } else if path.as_bytes().get(1) == Some(&b':') && path.as_bytes().get(2).is_some() {
        format!(r"\\?\{path}")
    } else {
        return None;
    };
    Some(long.replace('/', r"\"))
}

/// Attaches `crash-handler` with `on_crash`, which lets every crash go on: not handled, so
/// the handler (or filter) that was there before runs, then the default end, and the
/// process ends as it would have without consentry. A panic inside `attach` (it asserts on
/// a failed `sigaltstack`) does not reach the app.
#[cfg(any(
    all(
        feature = "native",
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ),
    all(feature = "native", windows, target_arch = "x86_64")
))]
fn attach(
    on_crash: fn(&crash_handler::CrashContext),
) -> Result<crash_handler::CrashHandler, String> {
    // SAFETY: each platform's `on_crash` does only what may be done while crashing (see
    // its module).
    let event = unsafe {
        crash_handler::make_crash_event(move |cc: &crash_handler::CrashContext| {
            on_crash(cc);
            crash_handler::CrashEventResult::Handled(false)
        })
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crash_handler::CrashHandler::attach(event)
    }))
    .map_err(|_| "installing the crash handler failed".to_owned())?
    .map_err(|e| e.to_string())
}

/// Whether native crashes are caught in this build (Linux on x86-64 or ARM64, with the
/// `native` feature).
pub(crate) const SUPPORTED: bool = imp::SUPPORTED;

/// Installs the handler, writing records to `dir` (created, private) with `release`
/// (`app@version`, the release the crash belongs to). `Err` says why not. Once installed it
/// stays for the life of the process: removing `crash-handler`'s handler from another thread
/// than the one that installed it would unmap that thread's alternate signal stack. When
/// crash reports are turned off it records nothing and passes every signal on.
///
/// `minidumps`: a crash also starts the minidump helper (see [`crate::minidump`]); the app
/// turned minidumps on and the user said yes to them.
pub(crate) fn install(dir: &Path, release: &str, minidumps: bool) -> Result<(), String> {
    if !SUPPORTED {
        return imp::install(dir, release, minidumps);
    }
    // Refused if it is a link: the handler writes nowhere but in our own directory.
    crate::fsx::own_subdir(dir).map_err(|e| format!("cannot use {}: {e}", dir.display()))?;
    hold_alive(dir)?;
    imp::install(dir, release, minidumps)?;
    forget_at_exit(dir);
    Ok(())
}

/// Turns minidumps off for the rest of the process (the user took back their yes).
pub(crate) fn set_minidumps(on: bool) {
    imp::set_minidumps(on);
}

/// The directory whose records this process forgets when it exits normally.
static EXIT_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// An `exit` (a return from `main`, or `std::process::exit`, which skips the guard's drop)
/// is a normal end: what this process recorded was a signal it survived. (A crash never
/// gets here: it ends by a signal, and `abort` skips `atexit` handlers.)
fn forget_at_exit(dir: &Path) {
    extern "C" fn at_exit() {
        let dir = EXIT_DIR.try_lock().ok().and_then(|d| d.clone());
        if let Some(dir) = dir {
            let _ = std::panic::catch_unwind(|| forget_own(&dir));
        }
    }
    if let Ok(mut d) = EXIT_DIR.lock() {
        *d = Some(dir.to_owned());
    }
    #[cfg(unix)]
    {
        static REGISTER: std::sync::Once = std::sync::Once::new();
        REGISTER.call_once(|| {
            // SAFETY: registers a plain function with no captures.
            unsafe {
                libc::atexit(at_exit);
            }
        });
    }
    #[cfg(not(unix))]
    let _ = at_exit;
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

    use super::{Buf, Fault, MAX_FRAMES, format_record};

    pub(super) const SUPPORTED: bool = true;

    /// What the handler needs, prepared at install: the directory and the executable's file
    /// name (the loader gives the executable no name). Leaked: a signal may arrive at any time.
    struct State {
        dir: Vec<u8>,
        exe: Vec<u8>,
        /// This process's id in record names.
        id: Vec<u8>,
        /// `app@version`, one line.
        release: Vec<u8>,
        /// The minidump helper: this program (`/proc/self/exe`) and its `argv[0]`, both
        /// NUL-terminated.
        #[cfg_attr(not(feature = "minidump"), allow(dead_code))]
        helper_exe: Vec<u8>,
        #[cfg_attr(not(feature = "minidump"), allow(dead_code))]
        helper_argv0: Vec<u8>,
        /// `LD_LIBRARY_PATH=...`, NUL-terminated, when the app was started with one (it may
        /// need it to start at all); empty otherwise.
        #[cfg_attr(not(feature = "minidump"), allow(dead_code))]
        helper_library_path: Vec<u8>,
    }

    /// Whether a crash starts the minidump helper (set at each install).
    static MINIDUMPS: AtomicBool = AtomicBool::new(false);
    /// Set by the first crash that started the helper: one per process (a signal that a
    /// handler before ours recovers from, over and over, does not freeze it each time).
    #[cfg(feature = "minidump")]
    static DUMPED: AtomicBool = AtomicBool::new(false);

    pub(super) fn set_minidumps(on: bool) {
        MINIDUMPS.store(on && minidumps_possible(), Ordering::Release);
    }

    /// Minidumps are built in, and the process lets itself be read: one that made itself
    /// non-dumpable (to keep keys out of reach) is never dumped (`crash-handler` turns
    /// dumping on for the handler, which would override that).
    ///
    /// And consentry is part of the program itself, not of a library it loaded (a Python
    /// extension, a plugin): the helper is this program started again, which only then
    /// runs consentry's `init` first.
    fn minidumps_possible() -> bool {
        // SAFETY: prctl(PR_GET_DUMPABLE) reads a flag.
        cfg!(feature = "minidump")
            && unsafe { libc::prctl(libc::PR_GET_DUMPABLE) } == 1
            && in_main_executable()
    }

    /// Whether this code is in the main executable (the loader lists it with no name).
    fn in_main_executable() -> bool {
        let here = in_main_executable as *const () as usize as u64;
        let mut main = false;
        crate::modules::each_module(&mut |m: crate::modules::ModuleView<'_>| {
            if here >= m.base && here - m.base < m.size && m.name.is_empty() {
                main = true;
            }
        });
        main
    }
    /// How long the handler waits for the minidump helper before it kills it.
    const HELPER_WAIT_MS: u32 = 10_000;

    static STATE: AtomicPtr<State> = AtomicPtr::new(std::ptr::null_mut());
    static HANDLER: Mutex<Option<crash_handler::CrashHandler>> = Mutex::new(None);
    /// Set while a signal is being recorded. (A fault inside the handler is fatal at once:
    /// the six signals are blocked while it runs; a crash on another thread waits for
    /// `crash-handler`'s lock and is then recorded.)
    static BUSY: AtomicBool = AtomicBool::new(false);

    /// Memory for the handler, in the process image rather than on the (alternate, small)
    /// signal stack. Only touched while `BUSY` is held.
    struct Scratch {
        frames: UnsafeCell<[u64; MAX_FRAMES + 64]>,
        text: UnsafeCell<[u8; 48 * 1024]>,
        path: UnsafeCell<[u8; 4096]>,
        tmp: UnsafeCell<[u8; 4096]>,
        /// The crash context's path, and the helper's one environment variable.
        #[cfg(feature = "minidump")]
        ctx: UnsafeCell<[u8; 4096]>,
        #[cfg(feature = "minidump")]
        env: UnsafeCell<[u8; 4200]>,
    }
    // SAFETY: every access is under `BUSY` (one thread at a time).
    unsafe impl Sync for Scratch {}
    static SCRATCH: Scratch = Scratch {
        frames: UnsafeCell::new([0; MAX_FRAMES + 64]),
        text: UnsafeCell::new([0; 48 * 1024]),
        path: UnsafeCell::new([0; 4096]),
        tmp: UnsafeCell::new([0; 4096]),
        #[cfg(feature = "minidump")]
        ctx: UnsafeCell::new([0; 4096]),
        #[cfg(feature = "minidump")]
        env: UnsafeCell::new([0; 4200]),
    };

    pub(super) fn install(dir: &Path, release: &str, minidumps: bool) -> Result<(), String> {
        use std::os::unix::ffi::OsStrExt;
        let dir = dir.as_os_str().as_bytes().to_vec();
        if dir.len() > 3000 || dir.contains(&0) {
            return Err("the data directory's path is too long for the crash handler".to_owned());
        }
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.as_bytes().to_vec()))
            .unwrap_or_else(|| b"<main>".to_vec());
        let release = release
            .bytes()
            .filter(|b| !b.is_ascii_control())
            .take(256)
            .collect();
        let id = super::own_id().as_bytes().to_vec();
        let mut helper_argv0 = exe.clone();
        helper_argv0.retain(|&b| b != 0);
        helper_argv0.push(0);
        let state = Box::into_raw(Box::new(State {
            dir,
            exe,
            id,
            release,
            helper_exe: b"/proc/self/exe\0".to_vec(),
            helper_argv0,
            helper_library_path: std::env::var_os("LD_LIBRARY_PATH")
                .map(|v| [b"LD_LIBRARY_PATH=", v.as_bytes(), b"\0"].concat())
                .filter(|v| v.len() <= 8192 && !v[..v.len() - 1].contains(&0))
                .unwrap_or_default(),
        }));
        set_minidumps(minidumps);
        // Records go to the latest runtime's directory. The previous state stays leaked: a
        // handler on another thread may still read it.
        STATE.store(state, Ordering::Release);
        let mut slot = HANDLER
            .lock()
            .map_err(|_| "the handler's lock is poisoned".to_owned())?;
        if slot.is_some() {
            return Ok(());
        }
        // `on_crash` does only async-signal-safe work: atomics, the unwinder's walk (as
        // sentry-native's in-process backend), `dl_iterate_phdr`, and open/write/rename/close
        // on memory prepared here.
        *slot = Some(super::attach(on_crash)?);
        Ok(())
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
            let bound = if MINIDUMPS.load(Ordering::Acquire) {
                10 + HELPER_WAIT_MS / 1000
            } else {
                10
            };
            let previous_alarm = unsafe { libc::alarm(bound) };
            record(cc, signal);
            // SAFETY: as above.
            unsafe { libc::alarm(previous_alarm) };
        }
        // A breakpoint trap (`int3`, si_code > 0) resumes after the instruction when the
        // handler returns, where without a handler the process dumps core: raise it again,
        // for the handler before ours or the default action once ours has returned (it is
        // blocked until then).
        if signal == libc::SIGTRAP && cc.siginfo.ssi_code > 0 {
            // SAFETY: tgkill is async-signal-safe.
            unsafe {
                libc::syscall(libc::SYS_tgkill, cc.pid, cc.tid, libc::SIGTRAP);
            }
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
        let release = &state.release;
        format_record(
            &mut buf, signal, code, fault, time, pid, crashed, &state.exe, release, None,
        );
        // <dir>/<id>-<time>-<tid>.tmp, then renamed to .crash
        let path = unsafe { &mut *SCRATCH.path.get() };
        let tmp = unsafe { &mut *SCRATCH.tmp.get() };
        let mut p = Buf::new(path);
        p.put(&state.dir);
        p.put(b"/");
        p.put(&state.id);
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
            match write_new(t.buf.as_ptr().cast(), buf.bytes()) {
                Some(true) => {
                    libc::rename(t.buf.as_ptr().cast(), p.buf.as_ptr().cast());
                }
                Some(false) => {
                    libc::unlink(t.buf.as_ptr().cast());
                    return;
                }
                None => return,
            }
        }
        #[cfg(feature = "minidump")]
        if MINIDUMPS.load(Ordering::Acquire) && !DUMPED.swap(true, Ordering::AcqRel) {
            dump_with_helper(cc, state, &p.buf[..stem]);
        }
    }

    #[cfg(feature = "minidump")]
    /// Starts the minidump helper (see [`crate::minidump`]) for the record at `stem`, lets
    /// it trace this process and waits for it, at most [`HELPER_WAIT_MS`]. Only system
    /// calls on memory prepared at install: the new process is a raw `clone` (no `atfork`
    /// handler, no allocator lock) that only resets its signal mask, points its standard
    /// streams at `/dev/null` and `execve`s this program with one environment variable.
    fn dump_with_helper(cc: &crash_handler::CrashContext, state: &State, stem: &[u8]) {
        // SAFETY: only this thread touches the scratch memory while BUSY is held.
        let ctx = unsafe { &mut *SCRATCH.ctx.get() };
        let env = unsafe { &mut *SCRATCH.env.get() };
        let mut c = Buf::new(ctx);
        c.put(stem);
        c.put(b".ctx\0");
        let mut e = Buf::new(env);
        e.put(crate::minidump::HELPER_ENV.as_bytes());
        e.put(b"=");
        e.put(stem);
        e.put(b"\0");
        if c.full || e.full {
            return;
        }
        // SAFETY: open/write/close/unlink/clone/execve/prctl/waitpid/kill/nanosleep are
        // async-signal-safe system calls; every pointer is to NUL-terminated memory above
        // or in `state`, which is never freed.
        unsafe {
            let created = write_new(c.buf.as_ptr().cast(), cc.as_bytes());
            if created.is_none() {
                return;
            }
            if created == Some(true) {
                let argv: [*const libc::c_char; 2] =
                    [state.helper_argv0.as_ptr().cast(), std::ptr::null()];
                let library_path = if state.helper_library_path.is_empty() {
                    std::ptr::null()
                } else {
                    state.helper_library_path.as_ptr().cast()
                };
                let envp: [*const libc::c_char; 3] =
                    [e.buf.as_ptr().cast(), library_path, std::ptr::null()];
                let child = libc::syscall(
                    libc::SYS_clone,
                    libc::c_ulong::from(libc::SIGCHLD as u32),
                    0usize,
                    0usize,
                    0usize,
                    0usize,
                );
                if child == 0 {
                    // Every signal blocked until `execve` (the app's handlers are still
                    // installed here); the helper clears the mask. Nothing of the app's is
                    // passed on but the standard streams, on /dev/null.
                    let mut all: libc::sigset_t = std::mem::zeroed();
                    libc::sigfillset(&mut all);
                    libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                    if null >= 0 {
                        libc::dup2(null, 0);
                        libc::dup2(null, 1);
                        libc::dup2(null, 2);
                    }
                    libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                    libc::execve(
                        state.helper_exe.as_ptr().cast(),
                        argv.as_ptr(),
                        envp.as_ptr(),
                    );
                    libc::syscall(libc::SYS_exit_group, 127);
                }
                if child > 0 {
                    let child = child as libc::pid_t;
                    // Yama's ptrace scope 1 lets only a descendant trace: name the helper.
                    libc::prctl(libc::PR_SET_PTRACER, child as libc::c_ulong, 0, 0, 0);
                    wait_bounded(child);
                }
            }
            libc::unlink(c.buf.as_ptr().cast());
        }
    }

    /// Waits for the helper to end, at most [`HELPER_WAIT_MS`] by the monotonic clock (a
    /// sleep cut short by a signal does not lengthen it); then kills it.
    #[cfg(feature = "minidump")]
    fn wait_bounded(child: libc::pid_t) {
        let mut status = 0;
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        let now_ms = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime is async-signal-safe.
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            ts.tv_sec.max(0) as u64 * 1000 + ts.tv_nsec.max(0) as u64 / 1_000_000
        };
        let deadline = now_ms() + u64::from(HELPER_WAIT_MS);
        while now_ms() < deadline {
            // SAFETY: waitpid and nanosleep are async-signal-safe.
            let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
            // Ended, or not ours to wait for (SIGCHLD ignored: reaped already).
            if r == child || r < 0 {
                return;
            }
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
        }
        // SAFETY: as above; the helper is our child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, &mut status, 0);
        }
    }

    /// Creates the file at `path` (NUL-terminated; not through a link, not over an existing
    /// file, mode 0600) and writes all of `bytes`: whether all was written, `None` if it was
    /// not created. Only async-signal-safe system calls.
    ///
    /// # Safety
    /// `path` points to a NUL-terminated path.
    unsafe fn write_new(path: *const libc::c_char, bytes: &[u8]) -> Option<bool> {
        // SAFETY: open/write/close on the caller's path and our own slice.
        unsafe {
            let fd = libc::open(
                path,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            );
            if fd < 0 {
                return None;
            }
            let mut written = 0;
            while written < bytes.len() {
                let w = libc::write(fd, bytes[written..].as_ptr().cast(), bytes.len() - written);
                if w <= 0 {
                    break;
                }
                written += w as usize;
            }
            libc::close(fd);
            Some(written == bytes.len())
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
}

#[cfg(all(feature = "native", windows, target_arch = "x86_64"))]
mod imp {
    //! The Windows handler: `crash-handler`'s unhandled-exception filter (and its `SIGABRT`
    //! hook for the C runtime's `abort`). Our part allocates nothing and takes no lock of
    //! ours: it walks the crashed thread's stack from the exception's context with the
    //! system's unwinder (`RtlLookupFunctionEntry`, `RtlVirtualUnwind`, within the thread's
    //! stack bounds), and writes the record with `CreateFileW` (`CREATE_NEW`: never over an
    //! existing file or link), `WriteFile` and `MoveFileExW`. Then the exception goes on:
    //! the process ends with the status it would have without consentry.

    use std::cell::UnsafeCell;
    use std::ffi::c_void;
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

    use super::{Buf, EXCEPTION_ACCESS_VIOLATION, EXCEPTION_STACK_OVERFLOW, Fault, MAX_FRAMES};

    pub(super) const SUPPORTED: bool = true;

    pub(super) fn set_minidumps(_on: bool) {}

    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn RtlLookupFunctionEntry(
            pc: u64,
            image_base: *mut u64,
            history: *mut c_void,
        ) -> *mut c_void;
        fn RtlVirtualUnwind(
            handler_type: u32,
            image_base: u64,
            pc: u64,
            function_entry: *mut c_void,
            context: *mut Context,
            handler_data: *mut *mut c_void,
            establisher_frame: *mut u64,
            context_pointers: *mut c_void,
        ) -> *mut c_void;
        fn GetCurrentThreadStackLimits(low: *mut usize, high: *mut usize);
        fn GetSystemTimeAsFileTime(time: *mut u64);
        fn CreateFileW(
            name: *const u16,
            access: u32,
            share: u32,
            security: *mut c_void,
            disposition: u32,
            flags: u32,
            template: *mut c_void,
        ) -> *mut c_void;
        fn WriteFile(
            file: *mut c_void,
            buffer: *const u8,
            len: u32,
            written: *mut u32,
            overlapped: *mut c_void,
        ) -> i32;
        fn CloseHandle(handle: *mut c_void) -> i32;
        fn MoveFileExW(from: *const u16, to: *const u16, flags: u32) -> i32;
        fn DeleteFileW(name: *const u16) -> i32;
        fn CreateSemaphoreW(
            security: *mut c_void,
            initial: i32,
            maximum: i32,
            name: *const u16,
        ) -> *mut c_void;
        fn ReleaseSemaphore(semaphore: *mut c_void, count: i32, previous: *mut i32) -> i32;
        fn WaitForSingleObject(handle: *mut c_void, ms: u32) -> u32;
        fn GetCurrentThreadId() -> u32;
        fn ExitThread(code: u32) -> !;
        fn GetCurrentProcess() -> *mut c_void;
        fn ReadProcessMemory(
            process: *mut c_void,
            address: *const c_void,
            buffer: *mut c_void,
            size: usize,
            read: *mut usize,
        ) -> i32;
        fn AddVectoredExceptionHandler(
            first: u32,
            handler: unsafe extern "system" fn(*const ExceptionPointers) -> i32,
        ) -> *mut c_void;
    }

    /// The x64 `CONTEXT` (1232 bytes), handled as bytes: only `Rsp` and `Rip` are read.
    #[repr(C, align(16))]
    struct Context([u8; 1232]);
    const RSP: usize = 0x98;
    const RIP: usize = 0xf8;

    impl Context {
        fn get(&self, at: usize) -> u64 {
            u64::from_le_bytes(self.0[at..at + 8].try_into().unwrap_or([0; 8]))
        }
        fn set(&mut self, at: usize, v: u64) {
            self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }

    /// What the handler needs, prepared at install. Leaked: an exception may come any time.
    struct State {
        /// `<dir>\<id>-`, UTF-16 without the NUL.
        prefix: Vec<u16>,
        exe: Vec<u8>,
        release: Vec<u8>,
    }

    static STATE: AtomicPtr<State> = AtomicPtr::new(std::ptr::null_mut());
    static HANDLER: Mutex<Option<crash_handler::CrashHandler>> = Mutex::new(None);
    static BUSY: AtomicBool = AtomicBool::new(false);

    /// Memory for the handler, outside the crashed thread's stack (which may have
    /// overflowed). Only touched while `BUSY` is held.
    struct Scratch {
        context: UnsafeCell<Context>,
        frames: UnsafeCell<[u64; MAX_FRAMES]>,
        text: UnsafeCell<[u8; 48 * 1024]>,
        path: UnsafeCell<[u16; 4200]>,
        tmp: UnsafeCell<[u16; 4200]>,
    }
    // SAFETY: every access is under `BUSY` (one thread at a time).
    unsafe impl Sync for Scratch {}
    static SCRATCH: Scratch = Scratch {
        context: UnsafeCell::new(Context([0; 1232])),
        frames: UnsafeCell::new([0; MAX_FRAMES]),
        text: UnsafeCell::new([0; 48 * 1024]),
        path: UnsafeCell::new([0; 4200]),
        tmp: UnsafeCell::new([0; 4200]),
    };

    pub(super) fn install(dir: &Path, release: &str, _minidumps: bool) -> Result<(), String> {
        let mut prefix = long_path(dir);
        if prefix.len() > 3000 || prefix.contains(&0) {
            return Err("the data directory's path is too long for the crash handler".to_owned());
        }
        prefix.push(u16::from(b'\\'));
        prefix.extend(super::own_id().encode_utf16());
        prefix.push(u16::from(b'-'));
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned().into_bytes())
            })
            .unwrap_or_else(|| b"<main>".to_vec());
        let release = release
            .bytes()
            .filter(|b| !b.is_ascii_control())
            .take(256)
            .collect();
        let state = Box::into_raw(Box::new(State {
            prefix,
            exe,
            release,
        }));
        STATE.store(state, Ordering::Release);
        let mut slot = HANDLER
            .lock()
            .map_err(|_| "the handler's lock is poisoned".to_owned())?;
        if slot.is_some() {
            return Ok(());
        }
        start_recorder();
        // `on_crash` allocates nothing and takes no lock of ours.
        *slot = Some(super::attach(on_crash)?);
        // SAFETY: registers a plain function, first in line; never removed.
        unsafe { AddVectoredExceptionHandler(1, overflow_first) };
        Ok(())
    }

    /// `EXCEPTION_POINTERS` and the start of `EXCEPTION_RECORD`, as the system lays them out.
    #[repr(C)]
    struct ExceptionPointers {
        record: *const ExceptionRecord,
        context: *const Context,
    }
    #[repr(C)]
    struct ExceptionRecord {
        code: u32,
        flags: u32,
        next: *const ExceptionRecord,
        address: *const c_void,
        parameters: u32,
        information: [usize; 15],
    }

    /// A crash, as the crashed thread hands it to the recording thread.
    struct Crash {
        pointers: *const ExceptionPointers,
        code: u32,
        pid: u32,
        tid: u32,
        /// The crashed thread's stack: its lowest and highest address.
        stack: (u64, u64),
    }

    /// The crash being recorded; written by the crashed thread, read by the recording
    /// thread, both under `BUSY` (the semaphores order them).
    struct Slot(UnsafeCell<Option<Crash>>);
    // SAFETY: see above.
    unsafe impl Sync for Slot {}
    static CRASH: Slot = Slot(UnsafeCell::new(None));
    /// The recording thread's two semaphores (a crash to record; recorded), once it runs.
    static REQUEST: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static DONE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    /// The recording thread's id (0 before it runs).
    static RECORDER_TID: AtomicU32 = AtomicU32::new(0);
    /// How long a crashed thread waits for its record.
    const RECORD_WAIT_MS: u32 = 10_000;

    /// Starts the thread that records crashes: a stack overflow leaves the crashed thread a
    /// few kB of stack, not enough to walk a stack and list modules, so the crashed thread
    /// only hands the crash over and waits (as Breakpad's in-process handler does).
    fn start_recorder() {
        // SAFETY: unnamed semaphores with no security attributes.
        let (request, done) = unsafe {
            (
                CreateSemaphoreW(std::ptr::null_mut(), 0, 1, std::ptr::null()),
                CreateSemaphoreW(std::ptr::null_mut(), 0, 1, std::ptr::null()),
            )
        };
        if request.is_null() || done.is_null() {
            return;
        }
        // Handles are plain numbers, usable from any thread.
        let (request_n, done_n) = (request as usize, done as usize);
        let spawned = std::thread::Builder::new()
            .name("consentry-crash".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let (request, done) = (request_n as *mut c_void, done_n as *mut c_void);
                // SAFETY: no arguments.
                RECORDER_TID.store(unsafe { GetCurrentThreadId() }, Ordering::Release);
                loop {
                    // SAFETY: our semaphore, never closed.
                    if unsafe { WaitForSingleObject(request, u32::MAX) } != 0 {
                        return;
                    }
                    // SAFETY: the crashed thread filled the slot and waits for `done`.
                    if let Some(crash) = unsafe { &*CRASH.0.get() } {
                        record(crash);
                    }
                    // SAFETY: our semaphore.
                    unsafe { ReleaseSemaphore(done, 1, std::ptr::null_mut()) };
                }
            });
        if spawned.is_ok() {
            DONE.store(done, Ordering::Release);
            REQUEST.store(request, Ordering::Release);
        }
    }

    /// `dir` as an absolute path in the `\\?\` form, which the handler's `CreateFileW` takes
    /// past `MAX_PATH` (260 characters; `std::fs` adds the prefix itself, so the directory
    /// exists however long its path is).
    fn long_path(dir: &Path) -> Vec<u16> {
        use std::os::windows::ffi::OsStrExt;
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let wide: Vec<u16> = absolute.as_os_str().encode_wide().collect();
        // A path that is not valid UTF-16 keeps its own form.
        String::from_utf16(&wide)
            .ok()
            .and_then(|text| super::long_form(&text))
            .map_or(wide, |long| long.encode_utf16().collect())
    }

    fn on_crash(cc: &crash_handler::CrashContext) {
        let code = cc.exception_code as u32;
        // A stack overflow was recorded when it was raised (see `overflow_first`).
        if code == EXCEPTION_STACK_OVERFLOW
            && OVERFLOW_RECORDED.load(Ordering::Acquire) == cc.thread_id
        {
            return;
        }
        hand_over(
            cc.exception_pointers.cast::<ExceptionPointers>(),
            code,
            cc.process_id,
            cc.thread_id,
        );
    }

    /// The thread whose stack overflow `overflow_first` recorded (0: none).
    static OVERFLOW_RECORDED: AtomicU32 = AtomicU32::new(0);

    /// First of the vectored handlers, for stack overflows only: it records the crash
    /// before any other handler uses what is left of the stack (Rust's own handler prints
    /// "has overflowed its stack", which may use it all up) and lets the exception go on.
    /// An overflow that a handler after it recovers from leaves a record that the process's
    /// normal end deletes, as on Linux.
    ///
    /// It also guards the recording thread: a fault there (an unwind through a smashed
    /// stack, a module unloaded by another thread meanwhile) must not become the process's
    /// crash in place of the real one. That thread gives up: the crashed thread is told the
    /// record is done (there is none), later crashes are recorded on their own thread, and
    /// the recording thread ends.
    unsafe extern "system" fn overflow_first(pointers: *const ExceptionPointers) -> i32 {
        // SAFETY: the system passes a valid EXCEPTION_POINTERS.
        let code = unsafe { (*pointers).record.as_ref().map_or(0, |r| r.code) };
        // SAFETY: no arguments.
        let tid = unsafe { GetCurrentThreadId() };
        if tid == RECORDER_TID.load(Ordering::Acquire) && BUSY.load(Ordering::Acquire) {
            let done = DONE.swap(std::ptr::null_mut(), Ordering::AcqRel);
            REQUEST.store(std::ptr::null_mut(), Ordering::Release);
            // SAFETY: our semaphore; then this thread (ours, holding no lock of ours) ends.
            unsafe {
                if !done.is_null() {
                    ReleaseSemaphore(done, 1, std::ptr::null_mut());
                }
                ExitThread(0);
            }
        }
        if code == EXCEPTION_STACK_OVERFLOW && hand_over(pointers, code, std::process::id(), tid) {
            OVERFLOW_RECORDED.store(tid, Ordering::Release);
        }
        0 // EXCEPTION_CONTINUE_SEARCH
    }

    /// On the crashed thread: hands the crash to the recording thread and waits (at most
    /// [`RECORD_WAIT_MS`]); records it here if that thread does not run. Whether this call
    /// handled the crash (`false`: another crash is being recorded). When the wait times
    /// out, the recording thread may still use the crash's memory: nothing more is recorded
    /// in this process (`BUSY` stays set).
    fn hand_over(pointers: *const ExceptionPointers, code: u32, pid: u32, tid: u32) -> bool {
        if BUSY.swap(true, Ordering::AcqRel) {
            return false;
        }
        // An abort from a panic (`panic = "abort"`): the panic hook reported it.
        let from_panic = matches!(code, 0x4000_0015 | 0xC000_0409) && std::thread::panicking();
        if crate::switch::crash_on() && !from_panic && !pointers.is_null() {
            let (mut low, mut high) = (0usize, 0usize);
            // SAFETY: writes the two bounds of this thread's stack.
            unsafe { GetCurrentThreadStackLimits(&mut low, &mut high) };
            let crash = Crash {
                pointers,
                code,
                pid,
                tid,
                stack: (low as u64, high as u64),
            };
            // SAFETY: under BUSY; the recording thread reads it only after `request`.
            unsafe { *CRASH.0.get() = Some(crash) };
            let (request, done) = (
                REQUEST.load(Ordering::Acquire),
                DONE.load(Ordering::Acquire),
            );
            // SAFETY: our semaphores; the slot stays valid while this thread waits.
            unsafe {
                if request.is_null() {
                    if let Some(crash) = &*CRASH.0.get() {
                        record(crash);
                    }
                } else if ReleaseSemaphore(request, 1, std::ptr::null_mut()) != 0
                    && WaitForSingleObject(done, RECORD_WAIT_MS) != 0
                {
                    return true;
                }
            }
        }
        BUSY.store(false, Ordering::Release);
        true
    }

    fn record(crash: &Crash) {
        let state = STATE.load(Ordering::Acquire);
        if state.is_null() {
            return;
        }
        // SAFETY: set once per install from a leaked box, never freed.
        let state = unsafe { &*state };
        let code = crash.code;
        // SAFETY: the system's (or `crash-handler`'s) exception record and context, valid
        // while the crashed thread waits.
        let (fault_addr, has_addr, context) = unsafe {
            let pointers = &*crash.pointers;
            let (has, addr) = match pointers.record.as_ref() {
                Some(rec) => (
                    matches!(code, EXCEPTION_ACCESS_VIOLATION | 0xC000_0006) && rec.parameters >= 2,
                    rec.information[1] as u64,
                ),
                None => (false, 0),
            };
            (addr, has, pointers.context)
        };
        if context.is_null() {
            return;
        }
        // SAFETY: only one thread touches the scratch memory while BUSY is held; the
        // context is the full x64 CONTEXT the system wrote.
        let ctx = unsafe { &mut *SCRATCH.context.get() };
        unsafe { std::ptr::copy_nonoverlapping(context.cast::<u8>(), ctx.0.as_mut_ptr(), 1232) };
        let sp = ctx.get(RSP);
        let fault = if code == EXCEPTION_STACK_OVERFLOW {
            Fault::Stack
        } else {
            Fault::classify(has_addr, fault_addr, sp)
        };
        let frames = unsafe { &mut *SCRATCH.frames.get() };
        let n = walk(ctx, frames, crash.stack);
        let (_, _, signal) = super::exception_names(code);
        let text = unsafe { &mut *SCRATCH.text.get() };
        let mut buf = Buf::new(text);
        let time = now_secs();
        super::format_record(
            &mut buf,
            signal,
            code as i32,
            fault,
            time,
            crash.pid,
            &frames[..n],
            &state.exe,
            &state.release,
            Some(code),
        );
        // <dir>\<id>-<time>-<tid>.tmp, then renamed to .crash
        let path = unsafe { &mut *SCRATCH.path.get() };
        let tmp = unsafe { &mut *SCRATCH.tmp.get() };
        let mut len = 0;
        let mut put = |s: &[u16], len: &mut usize| {
            for &c in s {
                if *len < path.len() {
                    path[*len] = c;
                    *len += 1;
                }
            }
        };
        put(&state.prefix, &mut len);
        let mut digits = [0u16; 20];
        put(decimal(time, &mut digits), &mut len);
        put(&[u16::from(b'-')], &mut len);
        put(decimal(u64::from(crash.tid), &mut digits), &mut len);
        let stem = len;
        if stem + 8 >= path.len() {
            return;
        }
        tmp[..stem].copy_from_slice(&path[..stem]);
        for (i, c) in ".tmp\0".encode_utf16().enumerate() {
            tmp[stem + i] = c;
        }
        for (i, c) in ".crash\0".encode_utf16().enumerate() {
            path[stem + i] = c;
        }
        const GENERIC_WRITE: u32 = 0x4000_0000;
        const CREATE_NEW: u32 = 1;
        const FILE_ATTRIBUTE_NORMAL: u32 = 0x80;
        // SAFETY: NUL-terminated paths above; the buffer and its length.
        unsafe {
            let file = CreateFileW(
                tmp.as_ptr(),
                GENERIC_WRITE,
                0,
                std::ptr::null_mut(),
                CREATE_NEW,
                FILE_ATTRIBUTE_NORMAL,
                std::ptr::null_mut(),
            );
            if file.is_null() || file as isize == -1 {
                return;
            }
            let bytes = buf.bytes();
            let mut done = 0usize;
            while done < bytes.len() {
                let mut wrote = 0u32;
                let chunk = (bytes.len() - done).min(1 << 20) as u32;
                if WriteFile(
                    file,
                    bytes[done..].as_ptr(),
                    chunk,
                    &mut wrote,
                    std::ptr::null_mut(),
                ) == 0
                    || wrote == 0
                {
                    break;
                }
                done += wrote as usize;
            }
            CloseHandle(file);
            if done == bytes.len() {
                MoveFileExW(tmp.as_ptr(), path.as_ptr(), 0);
            } else {
                DeleteFileW(tmp.as_ptr());
            }
        }
    }

    /// Walks the stack from the exception's context: the program counter, then each
    /// caller's return address, while the stack pointer stays within the crashed thread's
    /// stack (`low..high`) and moves up.
    fn walk(ctx: &mut Context, frames: &mut [u64], (low, high): (u64, u64)) -> usize {
        let mut n = 0;
        while n < frames.len() {
            let pc = ctx.get(RIP);
            let sp = ctx.get(RSP);
            if pc == 0 || sp < low || sp >= high {
                break;
            }
            frames[n] = pc;
            n += 1;
            let mut image_base = 0u64;
            // SAFETY: looks up the unwind data of the module `pc` is in.
            let entry =
                unsafe { RtlLookupFunctionEntry(pc, &mut image_base, std::ptr::null_mut()) };
            if entry.is_null() {
                // A leaf function: the return address is at the stack pointer.
                if sp + 8 > high {
                    break;
                }
                // Read without faulting, whatever the stack pointer became.
                let mut ret = 0u64;
                let mut read = 0usize;
                // SAFETY: our process; 8 bytes into a local.
                let ok = unsafe {
                    ReadProcessMemory(
                        GetCurrentProcess(),
                        sp as *const c_void,
                        (&raw mut ret).cast(),
                        8,
                        &mut read,
                    )
                };
                if ok == 0 || read != 8 {
                    break;
                }
                ctx.set(RIP, ret);
                ctx.set(RSP, sp + 8);
            } else {
                let mut data = std::ptr::null_mut();
                let mut frame = 0u64;
                // SAFETY: the entry the lookup gave, on our copy of the context.
                unsafe {
                    RtlVirtualUnwind(
                        0,
                        image_base,
                        pc,
                        entry,
                        ctx,
                        &mut data,
                        &mut frame,
                        std::ptr::null_mut(),
                    );
                }
            }
            if ctx.get(RSP) <= sp {
                break;
            }
        }
        n
    }

    fn decimal(mut v: u64, digits: &mut [u16; 20]) -> &[u16] {
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = u16::from(b'0') + (v % 10) as u16;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        &digits[i..]
    }

    /// `crash-handler`'s invalid-parameter handler ends in the C runtime's
    /// `_invoke_watson`, which MinGW's `msvcrt` import library lacks: the same end, as the
    /// Universal CRT's (the process ends with `STATUS_INVALID_CRT_PARAMETER`).
    #[cfg(target_env = "gnu")]
    #[unsafe(no_mangle)]
    extern "C" fn _invoke_watson(
        _expression: *const u16,
        _function: *const u16,
        _file: *const u16,
        _line: u32,
        _reserved: usize,
    ) -> ! {
        #[link(name = "kernel32")]
        unsafe extern "system" {
            fn GetCurrentProcess() -> *mut c_void;
            fn TerminateProcess(process: *mut c_void, code: u32) -> i32;
        }
        // SAFETY: ends this process.
        unsafe { TerminateProcess(GetCurrentProcess(), 0xC000_0417) };
        std::process::abort()
    }

    fn now_secs() -> u64 {
        let mut t = 0u64;
        // SAFETY: writes one FILETIME (100 ns since 1601).
        unsafe { GetSystemTimeAsFileTime(&mut t) };
        (t / 10_000_000).saturating_sub(11_644_473_600)
    }
}

#[cfg(not(any(
    all(
        feature = "native",
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ),
    all(feature = "native", windows, target_arch = "x86_64")
)))]
mod imp {
    //! Native crashes are not caught in this build: nothing is installed, no record is
    //! written; records another build left are still reported.

    use std::path::Path;

    pub(super) const SUPPORTED: bool = false;

    pub(super) fn set_minidumps(_on: bool) {}

    pub(super) fn install(_dir: &Path, _release: &str, _minidumps: bool) -> Result<(), String> {
        Err(
            "native crashes are caught only on Linux (x86-64, ARM64) with the `native` feature"
                .to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handlers_frames_are_known_by_name_or_by_source() {
        let frame = |function: &str, path: Option<&str>| Frame {
            function: Some(function.to_owned()),
            abs_path: path.map(str::to_owned),
            ..Frame::default()
        };
        assert!(handler_frame(&frame(
            "crash_handler::windows::signal::signal_handler",
            None
        )));
        // A build with line tables only names some functions without their path.
        assert!(handler_frame(&frame(
            "simulate_exception",
            Some(
                r"C:\Users\u\.cargo\registry\src\index-1\crash-handler-0.8.1\src\windows\state.rs"
            )
        )));
        assert!(!handler_frame(&frame(
            "simulate_exception",
            Some("/src/app/src/main.rs")
        )));
        assert!(!handler_frame(&frame("app::crash", None)));
    }

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
    fn windows_paths_take_the_long_form() {
        assert_eq!(
            long_form(r"C:\data\app").as_deref(),
            Some(r"\\?\C:\data\app")
        );
        assert_eq!(long_form("Z:/tmp/x").as_deref(), Some(r"\\?\Z:\tmp\x"));
        assert_eq!(
            long_form(r"\\srv\share\d").as_deref(),
            Some(r"\\?\UNC\srv\share\d")
        );
        assert_eq!(long_form(r"\\?\C:\x"), None);
        assert_eq!(long_form(r"\\.\pipe\x"), None);
        assert_eq!(long_form("relative"), None);
        assert_eq!(long_form("C:"), None);
    }

    #[test]
    fn a_windows_record_names_its_exception_and_carries_pe_ids() {
        // Link time stamp 0x6b0db48a, image size 0x7979000, GUID, age 3.
        let mut id = Vec::new();
        id.extend(0x6b0d_b48a_u32.to_le_bytes());
        id.extend(0x0797_9000_u32.to_le_bytes());
        id.extend([
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]);
        id.extend(3u32.to_le_bytes());
        let text = format!(
            "{MAGIC}\nsignal 11\ncode -1073741571\nfault stack\ntime 1\npid 4\n\
             exception c00000fd\nimages pe\nframe 140001000\nframe 7b000010\n\
             module 140000000 7979000 140000000 {} fixture.exe\n\
             module 7b000000 1000 7b000000 8ab40d6b00100000 kernel32.dll\nend\n",
            hex(&id)
        );
        let record = parse(text.as_bytes()).unwrap();
        assert_eq!(record.exception, Some(EXCEPTION_STACK_OVERFLOW));
        assert!(record.pe);
        let event = event_of(&record, Some("fixture"), false).event;
        let exception = &event.exception.values[0];
        assert_eq!(exception.ty, "EXCEPTION_STACK_OVERFLOW");
        assert_eq!(exception.value.as_deref(), Some("stack overflow"));
        let mechanism = exception.mechanism.as_ref().unwrap();
        assert_eq!(mechanism.ty, "UnhandledExceptionFilter");
        assert_eq!(mechanism.data["code"], "0xc00000fd");
        assert!(
            mechanism.meta.signal.is_none(),
            "no POSIX signal on Windows"
        );
        // Only the module with a CodeView id is an image; its ids as Sentry's PE images.
        let json = serde_json::to_value(&event.debug_meta.images).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
        assert_eq!(json[0]["id"], "00112233-4455-6677-8899-aabbccddeeff-3");
        assert_eq!(json[0]["code_id"], "6b0db48a7979000");
        assert_eq!(json[0]["name"], "fixture.exe");
        // A Linux record stays a signal.
        let linux = parse(format!("{MAGIC}\nsignal 11\nframe 1\nend\n").as_bytes()).unwrap();
        assert_eq!(linux.exception, None);
        let event = event_of(&linux, None, false).event;
        assert_eq!(event.exception.values[0].ty, "SIGSEGV");
        // Every code has a name and a signal; an unknown one is still a crash.
        assert_eq!(
            exception_names(0xE06D_7363),
            ("EXCEPTION", "unhandled exception", 6)
        );
        assert_eq!(exception_names(0xC000_0005).2, 11);
        assert!(parse(b"consentry-native 1\nsignal 6\nexception zz\nframe 1\nend\n").is_err());
    }

    /// A mapped PE image as the loader leaves it: headers, a debug directory with one
    /// CodeView entry.
    fn pe_image(lfanew: u32, debug_rva: u32, cv_rva: u32) -> Vec<u8> {
        let mut image = vec![0u8; 8192];
        let put = |image: &mut Vec<u8>, at: usize, bytes: &[u8]| {
            image[at..at + bytes.len()].copy_from_slice(bytes);
        };
        put(&mut image, 0, b"MZ");
        put(&mut image, 0x3c, &lfanew.to_le_bytes());
        let pe = lfanew as usize;
        if pe + 200 < image.len() {
            put(&mut image, pe, b"PE\0\0");
            put(&mut image, pe + 8, &0x6b0d_b48a_u32.to_le_bytes());
            let opt = pe + 24;
            put(&mut image, opt, &0x20b_u16.to_le_bytes());
            put(&mut image, opt + 24, &0x1_4000_0000_u64.to_le_bytes());
            put(&mut image, opt + 56, &8192u32.to_le_bytes());
            put(&mut image, opt + 108, &16u32.to_le_bytes());
            put(&mut image, opt + 112 + 48, &debug_rva.to_le_bytes());
            put(&mut image, opt + 112 + 52, &28u32.to_le_bytes());
        }
        if (debug_rva as usize) + 28 <= image.len() {
            let d = debug_rva as usize;
            put(&mut image, d + 12, &2u32.to_le_bytes());
            put(&mut image, d + 16, &40u32.to_le_bytes());
            put(&mut image, d + 20, &cv_rva.to_le_bytes());
        }
        if (cv_rva as usize) + 24 <= image.len() {
            let c = cv_rva as usize;
            put(&mut image, c, b"RSDS");
            put(&mut image, c + 4, &[7; 16]);
            put(&mut image, c + 20, &9u32.to_le_bytes());
        }
        image
    }

    #[test]
    fn pe_headers_give_the_ids_and_hostile_ones_give_nothing_out_of_bounds() {
        // SAFETY (each call): the buffer is 8192 bytes, the image size its headers give.
        let good =
            unsafe { crate::modules::pe_header(pe_image(0x80, 0x1000, 0x1100).as_ptr()) }.unwrap();
        assert_eq!(good.size, 8192);
        assert_eq!(good.image_base, 0x1_4000_0000);
        assert_eq!(good.id_len, 28);
        assert_eq!(&good.id[..4], &0x6b0d_b48a_u32.to_le_bytes());
        assert_eq!(&good.id[8..24], &[7; 16]);
        assert_eq!(&good.id[24..28], &9u32.to_le_bytes());
        // A debug directory or CodeView record outside the image: the code id only.
        for (debug, cv) in [(0xffff_fff0, 0x1100), (0x1000, 0x1ff0), (0x1000, u32::MAX)] {
            let image = pe_image(0x80, debug, cv);
            let header = unsafe { crate::modules::pe_header(image.as_ptr()) }.unwrap();
            assert_eq!(header.id_len, 8, "{debug:x} {cv:x}");
        }
        // Headers that point outside their page, or are not PE: nothing.
        let far = pe_image(0x2000, 0x1000, 0x1100);
        assert!(unsafe { crate::modules::pe_header(far.as_ptr()) }.is_none());
        let mut not_pe = pe_image(0x80, 0x1000, 0x1100);
        not_pe[0] = b'X';
        assert!(unsafe { crate::modules::pe_header(not_pe.as_ptr()) }.is_none());
    }

    fn now_secs_for_test() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// A file named `name` in `dir`, with a byte in it.
    fn touch(dir: &Path, name: String) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "x").unwrap();
        path
    }

    #[test]
    fn records_of_running_processes_wait_and_others_are_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let now = now_secs_for_test();
        let file = |name: String| touch(d, name);
        // A writer that is gone (no `.alive` file), one that runs (its `.alive` file locked
        // here, through another open file), this process, a name dated in three days, and
        // the `.alive` file of a process that ended.
        let gone = file(format!("aaaa000000000001-{now}-1.crash"));
        let running_id = "bbbb000000000002";
        let lock = std::fs::File::create(d.join(format!("{running_id}.alive"))).unwrap();
        lock.try_lock().unwrap();
        let live = file(format!("{running_id}-{now}-2.crash"));
        let ours = file(format!("{}-{now}-3.crash", own_id()));
        let future = file(format!("cccc000000000003-{}-4.crash", now + 3 * 86_400));
        let ended = file("dddd000000000004.alive".to_owned());
        let half = file(format!("aaaa000000000001-{now}-5.tmp"));
        assert_eq!(pending(d), vec![gone.clone()]);
        assert!(!future.exists() && !ended.exists() && !half.exists());
        assert!(live.exists() && ours.exists());
        // Two starts at once: one takes it.
        let claimed = claim(&gone).unwrap();
        assert!(claim(&gone).is_none());
        assert!(pending(d).is_empty(), "claimed by a running process");
        // A claim whose reader ended is pending again.
        let orphan = file(format!("aaaa000000000006-{now}-6.claimed-eeee000000000005"));
        assert_eq!(pending(d), vec![orphan]);
        // The running writer ends: its record is a crash now.
        drop(lock);
        assert!(pending(d).contains(&live));
        // This process ends normally: its own record goes, not another's.
        forget_own(d);
        assert!(!ours.exists() && live.exists() && claimed.exists());
        // A "no": every record goes (claimed ones too); `.alive` files say who runs, they stay.
        let runs = file("ffff000000000008.alive".to_owned());
        let junk = file("zz-not-a-record.claimed-zz".to_owned());
        assert_eq!(
            clear(d),
            3,
            "the ended writer's, the claimed one, the orphan claim"
        );
        assert!(!live.exists() && !claimed.exists() && !junk.exists());
        assert!(runs.exists());
    }

    #[test]
    fn a_minidump_waits_with_its_record_and_what_the_helper_left_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let now = now_secs_for_test();
        let file = |name: String| touch(d, name);
        // A gone writer's record with its dump; a dump whose record is gone; the crash
        // context and a half-written dump the helper left behind.
        let record = file(format!("aaaa000000000001-{now}-1.crash"));
        let dump = file(format!("aaaa000000000001-{now}-1.dmp"));
        let orphan = file(format!("aaaa000000000001-{now}-2.dmp"));
        let ctx = file(format!("aaaa000000000001-{now}-1.ctx"));
        let half = file(format!(".aaaa000000000001-{now}-1.dmp.Xy12ab.tmp"));
        assert_eq!(pending(d), vec![record.clone()], "a dump is not a record");
        assert!(dump.exists(), "kept with its record");
        assert!(!orphan.exists() && !ctx.exists() && !half.exists());
        // Found beside the record, also once it is claimed.
        assert_eq!(minidump_of(&record), Some(dump.clone()));
        let claimed = claim(&record).unwrap();
        assert_eq!(minidump_of(&claimed), Some(dump.clone()));
        std::fs::remove_file(&dump).unwrap();
        assert_eq!(minidump_of(&claimed), None);
        // A "no" counts records, not dumps.
        file(format!("aaaa000000000001-{now}-1.dmp"));
        assert_eq!(clear(d), 1);
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
