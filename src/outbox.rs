//! The durable outbox: one file per envelope, written atomically before any send and removed
//! only after the server answered 2xx (or refused it for good).
//!
//! Files are named `<unix millis>-<event id>.envelope` so that a directory listing sorts them
//! oldest first. The outbox is bounded (default 100 envelopes and 10 MB); when a new envelope
//! would exceed a bound, the oldest are dropped first. Temporary files start with a dot and
//! are never listed.
//!
//! It accepts only [`Scrubbed`] events: nothing that skipped the pipeline's scrub step can be
//! stored, and so sent. The same type, with another suffix, is the usage store: scrubbed
//! usage events waiting for the sink (`usage/<millis>-<id>.usage`, one batch a file).
//!
//! Only regular files directly in the directory are listed or removed; a link (to the
//! directory itself or to a file in it) is never followed (see `fsx`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use crate::diag;
use crate::fsx;
use crate::minidump::Minidump;
use crate::pipeline::Scrubbed;
use crate::sink::UsageRecord;

const SUFFIX: &str = ".envelope";
const USAGE_SUFFIX: &str = ".usage";
/// The largest stored file read back.
const READ_MAX: u64 = 16 * 1024 * 1024;

/// One waiting envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
}

/// The outbox directory and its bounds.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    dir: PathBuf,
    max_files: usize,
    max_bytes: u64,
    suffix: &'static str,
}

impl Outbox {
    /// The crash report outbox.
    pub(crate) fn new(dir: PathBuf, max_files: usize, max_bytes: u64) -> Outbox {
        Outbox {
            dir,
            max_files,
            max_bytes,
            suffix: SUFFIX,
        }
    }

    /// The usage store.
    pub(crate) fn usage(dir: PathBuf, max_files: usize, max_bytes: u64) -> Outbox {
        Outbox {
            dir,
            max_files,
            max_bytes,
            suffix: USAGE_SUFFIX,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a scrubbed event durably and returns its path, then drops the oldest envelopes
    /// if the outbox is over a bound.
    pub(crate) fn write(&self, event_id: Uuid, event: &Scrubbed) -> io::Result<PathBuf> {
        self.write_with(event_id, event, None)
    }

    /// [`Outbox::write`], with a (scrubbed) minidump as the envelope's second item.
    pub(crate) fn write_with(
        &self,
        event_id: Uuid,
        event: &Scrubbed,
        minidump: Option<&Minidump>,
    ) -> io::Result<PathBuf> {
        let mut bytes = event.envelope(event_id);
        if let Some(dump) = minidump {
            dump.append_to_envelope(&mut bytes);
        }
        self.write_bytes(event_id, &bytes)
    }

    /// Replaces a stored envelope (its count of repeats, its symbolicated stack trace). The
    /// envelope is made again from the event alone: only for reports without an attachment
    /// (a native crash report, the only kind with a minidump, is never counted or replaced).
    pub(crate) fn replace(&self, path: &Path, event_id: Uuid, event: &Scrubbed) -> io::Result<()> {
        fsx::write_atomically(path, &event.envelope(event_id))
    }

    /// Writes scrubbed usage events as one file of the usage store.
    pub(crate) fn write_usage(&self, records: &[Scrubbed<UsageRecord>]) -> io::Result<PathBuf> {
        let list: Vec<&UsageRecord> = records.iter().map(Scrubbed::get).collect();
        let bytes = serde_json::to_vec(&list).map_err(io::Error::other)?;
        self.write_bytes(Uuid::new_v4(), &bytes)
    }

    /// The usage events of one file of the usage store.
    pub(crate) fn read_usage(&self, path: &Path) -> Option<Scrubbed<Vec<UsageRecord>>> {
        let bytes = fsx::read_capped(path, READ_MAX).ok()?;
        Scrubbed::from_usage_store(&bytes)
    }

    /// The bytes of a stored file, as they will be sent.
    pub(crate) fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fsx::read_capped(path, READ_MAX)
    }

    fn write_bytes(&self, id: Uuid, bytes: &[u8]) -> io::Result<PathBuf> {
        fsx::own_subdir(&self.dir)?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path = self
            .dir
            .join(format!("{millis:013}-{}{}", id.simple(), self.suffix));
        fsx::write_atomically(&path, bytes)?;
        self.enforce_bounds(&path);
        Ok(path)
    }

    /// Waiting files, oldest first. Links and anything but regular files are skipped, and
    /// a linked outbox directory lists nothing.
    pub(crate) fn list(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = fsx::regular_files(&self.dir)
            .into_iter()
            .filter(|(path, _)| {
                path.file_name().is_some_and(|n| {
                    let name = n.to_string_lossy();
                    !name.starts_with('.') && name.ends_with(self.suffix)
                })
            })
            .map(|(path, size)| Entry { path, size })
            .collect();
        entries.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
        entries
    }

    /// `(envelopes, bytes)` waiting.
    pub(crate) fn stats(&self) -> (usize, u64) {
        let entries = self.list();
        (entries.len(), entries.iter().map(|e| e.size).sum())
    }

    /// Removes one envelope. Already gone is fine (another process or thread sent it).
    pub(crate) fn remove(&self, path: &Path) {
        if let Err(e) = fsx::remove(path) {
            diag::warn_once("outbox-remove", || {
                format!("cannot remove {} from the outbox: {e}", path.display())
            });
        }
    }

    /// Deletes every waiting envelope (consent withdrawn). Returns how many were deleted.
    pub(crate) fn clear(&self) -> usize {
        let entries = self.list();
        for entry in &entries {
            self.remove(&entry.path);
        }
        entries.len()
    }

    /// Drops the oldest envelopes until the outbox is within its bounds. The envelope just
    /// written (`keep`) is dropped last.
    fn enforce_bounds(&self, keep: &Path) {
        let mut entries = self.list();
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        let mut dropped = 0usize;
        while entries.len() > self.max_files || (total > self.max_bytes && entries.len() > 1) {
            let Some(pos) = entries.iter().position(|e| e.path != keep) else {
                break;
            };
            let oldest = entries.remove(pos);
            total = total.saturating_sub(oldest.size);
            self.remove(&oldest.path);
            dropped += 1;
        }
        if dropped > 0 {
            diag::warn_once("outbox-full", || {
                format!(
                    "the crash report outbox {} is full ({} envelopes, {} bytes at most); dropped the {dropped} oldest",
                    self.dir.display(),
                    self.max_files,
                    self.max_bytes
                )
            });
        }
    }
}

/// The event id in an outbox file name, if it is one of ours.
pub(crate) fn event_id_of(path: &Path) -> Option<Uuid> {
    let name = path.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
    let (_, id) = name.split_once('-')?;
    Uuid::parse_str(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn write_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().join("outbox"), 10, 1 << 20);
        let id = Uuid::new_v4();
        let path = outbox.write_bytes(id, b"hello").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert_eq!(event_id_of(&path), Some(id));
        assert_eq!(outbox.stats(), (1, 5));
        outbox.remove(&path);
        outbox.remove(&path);
        assert_eq!(outbox.stats(), (0, 0));
    }

    #[test]
    fn oldest_dropped_first_by_count() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().to_owned(), 3, 1 << 20);
        let mut paths = Vec::new();
        for i in 0..5u8 {
            paths.push(outbox.write_bytes(Uuid::new_v4(), &[i]).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let left: Vec<_> = outbox.list().into_iter().map(|e| e.path).collect();
        assert_eq!(left, paths[2..].to_vec());
    }

    #[test]
    fn oldest_dropped_first_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path().to_owned(), 100, 2500);
        let mut paths = Vec::new();
        for _ in 0..4 {
            paths.push(outbox.write_bytes(Uuid::new_v4(), &[0u8; 1000]).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let left: Vec<_> = outbox.list().into_iter().map(|e| e.path).collect();
        assert_eq!(left, paths[2..].to_vec());
    }

    #[test]
    fn temp_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(".x.envelope.tmp"), b"partial").unwrap();
        fs::write(dir.path().join("notes.txt"), b"other").unwrap();
        let outbox = Outbox::new(dir.path().to_owned(), 10, 1 << 20);
        assert!(outbox.list().is_empty());
    }
}
