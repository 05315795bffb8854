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
        b"",
    );
    parse(buf.bytes()).ok()
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

    use super::{Fault, MAGIC, MAX_FRAMES, MAX_MODULES};

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
            &mut buf, signal, code, fault, time, pid, crashed, &state.exe, release,
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
        release: &[u8],
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
            // The file name only: the directory (a home directory) is not needed.
            let path = if m.name.is_empty() { exe } else { m.name };
            let file = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
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

    pub(super) fn set_minidumps(_on: bool) {}

    pub(super) fn install(_dir: &Path, _release: &str, _minidumps: bool) -> Result<(), String> {
        Err(
            "native crashes are caught only on Linux (x86-64, ARM64) with the `native` feature"
                .to_owned(),
        )
    }

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
        _release: &[u8],
    ) {
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
