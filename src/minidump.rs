//! Full minidumps of native crashes, off unless the app turns them on
//! ([`crate::Config::minidumps`]) **and** the user gave a separate yes
//! (`telemetry settings minidumps=true`). A minidump holds memory: the crashed process's
//! thread stacks and the bytes around the crash, which may hold anything the program had in
//! hand (a password it was checking, a path, a token). The default native report carries
//! none of it.
//!
//! How one is made (Linux, the `minidump` feature): the signal handler (`native.rs`) writes
//! the crash context to `<stem>.ctx` and starts this program again (`/proc/self/exe`, no
//! arguments, an environment of [`HELPER_ENV`] and the app's `LD_LIBRARY_PATH` alone, output
//! to `/dev/null`, no other file descriptor), lets it trace
//! the crashed process and waits for it, with a bound. The new process's
//! [`crate::init`] sees [`HELPER_ENV`] before anything else and becomes the helper
//! ([`run_helper`]): `minidump-writer` reads the crashed process through `ptrace` (it cannot
//! read itself), with stack sanitising on (stack words that are not pointers into mapped
//! memory are overwritten), and the dump is scrubbed ([`Minidump::scrubbed`]) before it is
//! written to `<stem>.dmp`, beside the crash record. The next start attaches it to the
//! record's report, if both switches are still on, and removes it in any case.
//!
//! Scrubbing a dump: the streams that hold what the process was started with (command line,
//! environment), the files it had open, and who ran it (`/proc/<pid>/status`: user and
//! group ids) are blanked and marked unused, and every occurrence of the user's names, the
//! host names, the home directory and the crashed process's environment values and
//! arguments (6 bytes or longer) is overwritten with `*`, in UTF-8 and UTF-16 (same length:
//! every offset in the dump still holds; the header and stream directory are kept whole).
//! Memory is otherwise sent as it was: that is what the user's separate yes is for.

use std::path::Path;

/// The environment variable that makes `init` the minidump helper: the record's path
/// without its extension.
#[cfg(feature = "minidump")]
pub(crate) const HELPER_ENV: &str = "CONSENTRY_MINIDUMP_HELPER";

/// The attachment's file name on the server.
pub(crate) const ATTACHMENT_NAME: &str = "minidump.dmp";

/// The largest dump written or attached; `minidump-writer` leaves stacks out to fit.
pub(crate) const MAX_BYTES: u64 = 2 * 1024 * 1024;

/// Minidump stream types blanked in every dump.
const DROPPED_STREAMS: [u32; 4] = [
    12,          // HandleDataStream: the path of every open file
    0x4767_0004, // LinuxProcStatus: user and group ids
    0x4767_0006, // LinuxCmdLine
    0x4767_0007, // LinuxEnviron
];

/// The most streams a dump may list.
const MAX_STREAMS: usize = 4096;

/// A scrubbed minidump: only [`Minidump::scrubbed`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Minidump(Vec<u8>);

/// Why a dump was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DumpError {
    #[error("not a minidump (no MDMP signature)")]
    NotADump,
    #[error("the minidump's stream directory lies outside the file")]
    BadDirectory,
    #[error("the minidump is {0} bytes; at most {MAX_BYTES} are attached")]
    TooLarge(usize),
    #[error("the minidump could not be scrubbed")]
    Unscrubbable,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl Minidump {
    /// Checks a dump and scrubs it (see the module's documentation). `words`: what to
    /// overwrite ([`identity_words`]).
    pub(crate) fn scrubbed(mut bytes: Vec<u8>, words: &[Vec<u8>]) -> Result<Minidump, DumpError> {
        if bytes.len() as u64 > MAX_BYTES {
            return Err(DumpError::TooLarge(bytes.len()));
        }
        if bytes.get(..4) != Some(b"MDMP") {
            return Err(DumpError::NotADump);
        }
        let count = u32_at(&bytes, 8).ok_or(DumpError::NotADump)? as usize;
        let directory = u32_at(&bytes, 12).ok_or(DumpError::NotADump)? as usize;
        if count > MAX_STREAMS || directory.saturating_add(count * 12) > bytes.len() {
            return Err(DumpError::BadDirectory);
        }
        for i in 0..count {
            let entry = directory + i * 12;
            let (Some(kind), Some(size), Some(rva)) = (
                u32_at(&bytes, entry),
                u32_at(&bytes, entry + 4),
                u32_at(&bytes, entry + 8),
            ) else {
                return Err(DumpError::BadDirectory);
            };
            if !DROPPED_STREAMS.contains(&kind) {
                continue;
            }
            let (start, end) = (rva as usize, (rva as usize).saturating_add(size as usize));
            let data = bytes.get_mut(start..end).ok_or(DumpError::BadDirectory)?;
            data.fill(0);
            // UnusedStream: a reader skips it.
            bytes[entry..entry + 4].fill(0);
        }
        // The header and the stream directory are numbers a reader needs: a word that
        // happens to match their bytes must not change them.
        let header: Vec<u8> = bytes[..32.min(bytes.len())].to_vec();
        let dir_end = directory + count * 12;
        let dir: Vec<u8> = bytes[directory..dir_end].to_vec();
        overwrite_all(&mut bytes, words)?;
        bytes[..header.len()].copy_from_slice(&header);
        bytes[directory..dir_end].copy_from_slice(&dir);
        Ok(Minidump(bytes))
    }

    #[cfg_attr(not(all(feature = "minidump", target_os = "linux")), allow(dead_code))]
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Adds the dump to a Sentry envelope as an `event.minidump` attachment item.
    pub(crate) fn append_to_envelope(&self, envelope: &mut Vec<u8>) {
        let item = serde_json::json!({
            "type": "attachment",
            "length": self.0.len(),
            "filename": ATTACHMENT_NAME,
            "attachment_type": "event.minidump",
            "content_type": "application/octet-stream",
        });
        if !envelope.is_empty() && !envelope.ends_with(b"\n") {
            envelope.push(b'\n');
        }
        envelope.extend_from_slice(item.to_string().as_bytes());
        envelope.push(b'\n');
        envelope.extend_from_slice(&self.0);
        envelope.push(b'\n');
    }

    /// Reads a dump written by the helper (bounded), scrubbed again with this process's
    /// identity: what is on disk may come from an older version, or have been changed.
    pub(crate) fn read(path: &Path) -> Result<Minidump, String> {
        let bytes = crate::fsx::read_capped(path, MAX_BYTES + 1).map_err(|e| e.to_string())?;
        let words = identity_words(&crate::identity::Identity::current(), &[]);
        Minidump::scrubbed(bytes, &words).map_err(|e| e.to_string())
    }
}

/// What is overwritten in every dump: the user's names, full names, host names and home
/// directory, and the values of the environment and the command line (`extra`, from the
/// crashed process), 6 bytes or longer.
pub(crate) fn identity_words(
    identity: &crate::identity::Identity,
    extra: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let mut words: Vec<Vec<u8>> = identity
        .users
        .iter()
        .chain(&identity.full_names)
        .chain(&identity.hostnames)
        .chain(&identity.home)
        .map(|s| s.as_bytes().to_vec())
        .chain(identity.env.iter().map(|(_, v)| v.as_bytes().to_vec()))
        .filter(|w| w.len() >= 3)
        .collect();
    words.extend(extra.iter().filter(|w| w.len() >= 6).cloned());
    words.sort();
    words.dedup();
    words
}

/// Overwrites every occurrence of every word in `bytes`, as UTF-8 and as UTF-16 (the
/// writer keeps module and thread names in UTF-16), with `*`, in one pass (the longest word
/// wins where two start at the same place). A search that cannot be built is an error: the
/// dump is then not kept.
fn overwrite_all(bytes: &mut [u8], words: &[Vec<u8>]) -> Result<(), DumpError> {
    let wide = words.iter().filter_map(|w| {
        let text = std::str::from_utf8(w).ok()?;
        Some(
            text.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>(),
        )
    });
    let all: Vec<Vec<u8>> = words.iter().cloned().chain(wide).collect();
    let searcher = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostLongest)
        .build(&all)
        .map_err(|_| DumpError::Unscrubbable)?;
    let found: Vec<(usize, usize, bool)> = searcher
        .find_iter(&*bytes)
        .map(|m| (m.start(), m.end(), m.pattern().as_usize() >= words.len()))
        .collect();
    for (start, end, wide) in found {
        for (i, b) in bytes[start..end].iter_mut().enumerate() {
            *b = if wide && i % 2 == 1 { 0 } else { b'*' };
        }
    }
    Ok(())
}

/// In the helper process (see the module's documentation): writes the crashed parent's
/// minidump to `<stem>.dmp`, scrubbed, and exits (status 0 when written, 1 when not); never
/// prints. Returns (and `init` goes on as usual) only if this is not the helper after all:
/// no crash context of our parent waits at `<stem>` (a variable inherited or left over).
#[cfg(feature = "minidump")]
pub(crate) fn run_helper(stem: &std::ffi::OsStr) {
    let Some(context) = helper::context(Path::new(stem)) else {
        return;
    };
    helper::guard();
    let written = std::panic::catch_unwind(|| helper::write(Path::new(stem), context));
    helper::release_parent();
    std::process::exit(i32::from(!matches!(written, Ok(Ok(())))))
}

#[cfg(all(feature = "minidump", target_os = "linux"))]
mod helper {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::{MAX_BYTES, Minidump, identity_words};

    /// The most bytes read of the crashed process's environment or command line.
    const PROC_MAX: u64 = 1024 * 1024;

    fn with_extension(stem: &Path, ext: &str) -> PathBuf {
        let mut s = stem.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    }

    use minidump_writer::crash_context::CrashContext;

    /// The crash context our parent's handler left at `<stem>.ctx`, if there is one and it
    /// is our parent's (the process that started us and waits for us: never a way to trace
    /// another). `None`: we are not its helper.
    pub(super) fn context(stem: &Path) -> Option<CrashContext> {
        let parent = std::os::unix::process::parent_id() as i32;
        let dir = stem.parent()?;
        // Our own directory, not a link: the dump is written nowhere else.
        crate::fsx::own_subdir(dir).ok()?;
        let ctx = crate::fsx::read_capped(&with_extension(stem, ".ctx"), 64 * 1024).ok()?;
        let cc = CrashContext::from_bytes(&ctx)?;
        (cc.pid == parent).then_some(cc)
    }

    /// Lets the crashed parent go on: `minidump-writer` stops it (SIGSTOP) while it reads
    /// it and continues it when done; this makes sure of that on every way out.
    #[allow(unsafe_code)]
    pub(super) fn release_parent() {
        let parent = std::os::unix::process::parent_id() as i32;
        // SAFETY: kill is async-signal-safe; SIGCONT to our own parent.
        unsafe {
            libc::kill(parent, libc::SIGCONT);
        }
    }

    /// The helper's own safety: the signal mask the crash handler had is cleared; no core
    /// dump of it is made (it holds the parent's environment); a panic or a hang (a read
    /// that blocks) continues the parent and ends the helper, within 8 s, before the
    /// parent's own bound.
    #[allow(unsafe_code)]
    pub(super) fn guard() {
        extern "C" fn on_alarm(_: libc::c_int) {
            release_parent();
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(1) };
        }
        std::panic::set_hook(Box::new(|_| release_parent()));
        // SAFETY: plain system calls on values made here; `on_alarm` does only
        // async-signal-safe work.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::prctl(libc::PR_SET_DUMPABLE, 0);
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(
                libc::SIGALRM,
                on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
            libc::alarm(8);
        }
    }

    pub(super) fn write(stem: &Path, cc: CrashContext) -> Result<(), String> {
        let parent = cc.pid;
        // The crashed process's environment values and arguments, overwritten wherever they
        // appear in its memory.
        let mut extra = Vec::new();
        for file in ["environ", "cmdline"] {
            // Unread, they could not be overwritten: then no dump (fail closed).
            let path = PathBuf::from(format!("/proc/{parent}/{file}"));
            let bytes = crate::fsx::read_capped(&path, PROC_MAX).map_err(|e| e.to_string())?;
            // argv[0] is left: the module list needs the program's file name (a user's
            // name in its path is overwritten with the identity).
            let skip = usize::from(file == "cmdline");
            for part in bytes.split(|&b| b == 0).skip(skip) {
                let value = match file {
                    "environ" => part.splitn(2, |&b| b == b'=').nth(1).unwrap_or_default(),
                    _ => part,
                };
                extra.push(value.to_vec());
            }
        }
        let mut config =
            minidump_writer::minidump_writer::MinidumpWriterConfig::new(cc.pid, cc.tid);
        config
            .set_crash_context(minidump_writer::CrashContextExt { inner: cc })
            // Stack words that are not pointers into the process's mappings are overwritten.
            .sanitize_stack()
            .set_minidump_size_limit(MAX_BYTES)
            .stop_timeout(Duration::from_secs(2));
        let mut out = std::io::Cursor::new(Vec::new());
        config.write(&mut out).map_err(|e| e.to_string())?;
        let words = identity_words(&crate::identity::Identity::current(), &extra);
        let dump = Minidump::scrubbed(out.into_inner(), &words).map_err(|e| e.to_string())?;
        crate::fsx::write_atomically(&with_extension(stem, ".dmp"), dump.bytes())
            .map_err(|e| e.to_string())
    }
}

#[cfg(all(feature = "minidump", not(target_os = "linux")))]
mod helper {
    pub(super) fn context(_stem: &std::path::Path) -> Option<()> {
        None
    }
    pub(super) fn guard() {}
    pub(super) fn release_parent() {}
    pub(super) fn write(_stem: &std::path::Path, _: ()) -> Result<(), String> {
        Err("minidumps are written on Linux only".to_owned())
    }
}

/// An envelope's items: each one's header and payload.
type Items<'a> = Vec<(serde_json::Value, &'a [u8])>;

/// The items of a Sentry envelope: its header line, then each item's header and payload.
/// `None` if it does not parse (a length past the end, a header that is not JSON).
fn envelope_items(bytes: &[u8]) -> Option<(&[u8], Items<'_>)> {
    let newline = |from: usize| {
        bytes[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| from + i)
    };
    let end = newline(0);
    let header = &bytes[..end];
    let mut at = (end + 1).min(bytes.len());
    let mut items = Vec::new();
    while at < bytes.len() {
        let end = newline(at);
        let line = &bytes[at..end];
        at = (end + 1).min(bytes.len());
        if line.is_empty() {
            continue;
        }
        let item: serde_json::Value = serde_json::from_slice(line).ok()?;
        let payload = match item.get("length").and_then(serde_json::Value::as_u64) {
            Some(len) => {
                let len = usize::try_from(len).ok()?;
                let payload = bytes.get(at..at.checked_add(len)?)?;
                at = (at + len + 1).min(bytes.len());
                payload
            }
            None => {
                let end = newline(at);
                let payload = &bytes[at..end];
                at = (end + 1).min(bytes.len());
                payload
            }
        };
        items.push((item, payload));
    }
    Some((header, items))
}

fn is_minidump_item(item: &serde_json::Value) -> bool {
    item.get("attachment_type")
        .and_then(serde_json::Value::as_str)
        == Some("event.minidump")
}

/// Whether a stored envelope carries a minidump. One that does not parse does if it names
/// one anywhere (it is then not sent: see [`strip_from_envelope`]).
fn in_envelope(bytes: &[u8]) -> bool {
    match envelope_items(bytes) {
        Some((_, items)) => items.iter().any(|(i, _)| is_minidump_item(i)),
        None => bytes.windows(14).any(|w| w == b"event.minidump"),
    }
}

/// The envelope without its minidump (the user's yes to minidumps was withdrawn). `None`
/// if it does not parse: then it is not sent at all (fail closed).
fn strip_from_envelope(bytes: &[u8]) -> Option<Vec<u8>> {
    let (header, items) = envelope_items(bytes)?;
    let mut out = header.to_vec();
    out.push(b'\n');
    for (item, payload) in items.iter().filter(|(i, _)| !is_minidump_item(i)) {
        out.extend_from_slice(item.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(payload);
        out.push(b'\n');
    }
    Some(out)
}

/// The attachment items of an envelope, as the audit log shows them: type, file name and
/// length, not the bytes.
fn attachments_of(bytes: &[u8]) -> Vec<serde_json::Value> {
    envelope_items(bytes)
        .map(|(_, items)| {
            items
                .iter()
                .filter(|(i, _)| {
                    i.get("type").and_then(serde_json::Value::as_str) == Some("attachment")
                })
                .map(|(i, payload)| {
                    serde_json::json!({
                        "attachment_type": i.get("attachment_type"),
                        "filename": i.get("filename"),
                        "length": payload.len(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A stored envelope as it may be sent now: with its minidump only if `allowed()` (the
/// app's switch and the user's own yes, read now, and only for an envelope that carries
/// one); otherwise without it, the file rewritten so the dump is gone from the disk too.
/// `None`: it names a minidump but does not parse, so it is deleted, not sent (fail closed).
pub(crate) fn sendable(
    path: &Path,
    bytes: Vec<u8>,
    allowed: impl FnOnce() -> bool,
) -> Option<Vec<u8>> {
    if !in_envelope(&bytes) || allowed() {
        return Some(bytes);
    }
    match strip_from_envelope(&bytes) {
        Some(stripped) => {
            let _ = crate::fsx::write_atomically(path, &stripped);
            Some(stripped)
        }
        None => {
            let _ = crate::fsx::remove(path);
            None
        }
    }
}

/// The audit log's record of a crash report: the event, and what went with it (type, file
/// name and length of each attachment, not its bytes).
pub(crate) fn audit_record(mut event: serde_json::Value, envelope: &[u8]) -> serde_json::Value {
    let attachments = attachments_of(envelope);
    if !attachments.is_empty()
        && let Some(obj) = event.as_object_mut()
    {
        obj.insert("attachments".to_owned(), attachments.into());
    }
    event
}

/// The user took back their yes to minidumps: every envelope waiting in `dirs` loses its
/// minidump (one that does not parse is deleted), and every dump waiting beside a native
/// crash record in `native` is deleted.
pub(crate) fn withdraw(dirs: &[std::path::PathBuf], native: Option<&Path>) {
    for dir in dirs {
        for (file, _) in crate::fsx::regular_files(dir) {
            if let Ok(bytes) = crate::fsx::read_capped(&file, 16 * 1024 * 1024) {
                let _ = sendable(&file, bytes, || false);
            }
        }
    }
    for (file, _) in native.map(crate::fsx::regular_files).unwrap_or_default() {
        if file.extension().is_some_and(|e| e == "dmp") {
            let _ = crate::fsx::remove(&file);
        }
    }
}

/// A waiting report's title, with what goes with it: the user agrees to a memory dump
/// knowingly.
pub(crate) fn titled(title: String, envelope: &[u8]) -> String {
    match attachments_of(envelope)
        .iter()
        .find(|a| a["attachment_type"] == "event.minidump")
    {
        Some(a) => format!("{title} [with a minidump, {} bytes]", a["length"]),
        None => title,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minidump of `streams` (type, data), laid out as a writer would: header, directory,
    /// then each stream's data.
    fn dump(streams: &[(u32, &[u8])]) -> Vec<u8> {
        let mut out = b"MDMP".to_vec();
        out.extend_from_slice(&0xa793_u32.to_le_bytes());
        out.extend_from_slice(&(streams.len() as u32).to_le_bytes());
        out.extend_from_slice(&32_u32.to_le_bytes());
        out.resize(32, 0);
        let mut rva = 32 + 12 * streams.len();
        for (kind, data) in streams {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(rva as u32).to_le_bytes());
            rva += data.len();
        }
        for (_, data) in streams {
            out.extend_from_slice(data);
        }
        out
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_environment_command_line_and_ids_are_blanked_and_names_overwritten() {
        let words = vec![b"ann".to_vec(), b"hunter2hunter2".to_vec()];
        let wide_path: Vec<u8> = "/home/ann/lib.so"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let bytes = dump(&[
            (0x4767_0007, b"TOKEN=hunter2hunter2\0HOME=/home/ann"),
            (0x4767_0006, b"/usr/bin/tool\0--password\0s3cr3t"),
            (0x4767_0004, b"Name:\ttool\nUid:\t1000"),
            // Memory (a stack): a user name and an environment value in it.
            (5, b"..../home/ann/notes.txt....hunter2hunter2....annex"),
            // A module's name, in UTF-16 as the writer keeps it; the open files' paths.
            (4, &wide_path),
            (12, b"/media/usb/diary.txt"),
        ]);
        let scrubbed = Minidump::scrubbed(bytes.clone(), &words).unwrap();
        let out = scrubbed.bytes();
        assert_eq!(out.len(), bytes.len(), "same length: every offset holds");
        for gone in [
            &b"s3cr3t"[..],
            b"--password",
            b"Uid:",
            b"hunter2",
            b"/home/ann",
        ] {
            assert!(!contains(out, gone), "{}", String::from_utf8_lossy(gone));
        }
        assert!(contains(out, b"/home/***/notes.txt"));
        let wide_scrubbed: Vec<u8> = "/home/***/lib.so"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(contains(out, &wide_scrubbed), "UTF-16 too");
        assert!(!contains(out, b"diary"), "the open files' paths");
        // The blanked streams are marked unused; memory and modules are kept.
        let kinds: Vec<u32> = (0..6).map(|i| u32_at(out, 32 + i * 12).unwrap()).collect();
        assert_eq!(kinds, [0, 0, 0, 5, 4, 0]);
    }

    #[test]
    fn a_word_that_matches_the_directory_leaves_it_whole() {
        let bytes = dump(&[(5, b"abcdefgh")]);
        // The memory stream's type, size and offset, as bytes: a "word" that matches them.
        let directory_entry = bytes[32..44].to_vec();
        let scrubbed = Minidump::scrubbed(bytes.clone(), &[directory_entry]).unwrap();
        assert_eq!(scrubbed.bytes(), &bytes[..], "nothing else matched");
        let header = bytes[..32].to_vec();
        let scrubbed = Minidump::scrubbed(bytes.clone(), &[header]).unwrap();
        assert_eq!(scrubbed.bytes(), &bytes[..]);
    }

    #[test]
    fn what_is_not_a_sound_minidump_is_refused() {
        assert_eq!(
            Minidump::scrubbed(b"ELF\0".to_vec(), &[]),
            Err(DumpError::NotADump)
        );
        assert_eq!(
            Minidump::scrubbed(Vec::new(), &[]),
            Err(DumpError::NotADump)
        );
        // A directory past the end, a stream past the end, a count beyond reason.
        let mut past = dump(&[(7, b"abc")]);
        past[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Minidump::scrubbed(past, &[]), Err(DumpError::BadDirectory));
        let mut stream_past = dump(&[(0x4767_0007, b"abc")]);
        stream_past[32 + 8..32 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Minidump::scrubbed(stream_past, &[]),
            Err(DumpError::BadDirectory)
        );
        let mut many = dump(&[]);
        many[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Minidump::scrubbed(many, &[]), Err(DumpError::BadDirectory));
        let huge = [b"MDMP".to_vec(), vec![0; MAX_BYTES as usize]].concat();
        assert!(matches!(
            Minidump::scrubbed(huge, &[]),
            Err(DumpError::TooLarge(_))
        ));
    }

    #[test]
    fn an_envelope_carries_the_dump_and_loses_it_when_the_yes_is_withdrawn() {
        let event = serde_json::json!({"event_id": "0123456789abcdef0123456789abcdef"});
        let mut envelope = crate::report::envelope_bytes(uuid::Uuid::nil(), &event);
        assert!(!in_envelope(&envelope));
        let dump = Minidump::scrubbed(dump(&[(5, b"\n\nbinary\n{\"type\":1}")]), &[]).unwrap();
        dump.append_to_envelope(&mut envelope);
        assert!(in_envelope(&envelope));
        let attachments = attachments_of(&envelope);
        assert_eq!(attachments.len(), 1);
        assert_eq!(attachments[0]["attachment_type"], "event.minidump");
        assert_eq!(attachments[0]["length"], dump.bytes().len());
        // What sentry itself reads: an event and the minidump attachment.
        let parsed = sentry::Envelope::from_slice(&envelope).unwrap();
        assert_eq!(parsed.items().count(), 2);
        let stripped = strip_from_envelope(&envelope).unwrap();
        assert!(!in_envelope(&stripped));
        assert_eq!(crate::report::event_of_envelope(&stripped).unwrap(), event);
        assert_eq!(
            sentry::Envelope::from_slice(&stripped)
                .unwrap()
                .items()
                .count(),
            1
        );
        // A length past the end: not parsed, so not sent (fail closed).
        let mut cut = envelope.clone();
        cut.truncate(envelope.len() - 10);
        assert!(in_envelope(&cut));
        assert_eq!(strip_from_envelope(&cut), None);
    }
}
