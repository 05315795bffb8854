//! The audit log: every payload that left the machine, appended as sent (scrubbed), one JSON
//! object per line in `sent.jsonl`, rotated to `sent.jsonl.1` at 1 MB. `telemetry log`
//! prints it, so users can see exactly what was sent.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The size at which the log is rotated.
pub(crate) const ROTATE_AT: u64 = 1024 * 1024;

/// The most read back from one log file (the current one is rotated at [`ROTATE_AT`]; a
/// larger file was not written by us and is skipped).
#[cfg(any(feature = "cli", test))] // used by the CLI only
const READ_MAX: u64 = 64 * ROTATE_AT;

/// Appends one record. Failures are reported once and otherwise ignored: the audit log must
/// never stop delivery or break the host. `status` is `None` when no answer came; `note`
/// then says why.
pub(crate) fn append(
    path: &Path,
    kind: &str,
    destination: &str,
    status: Option<u16>,
    note: Option<&str>,
    payload: Value,
) {
    let mut record = json!({
        "time": crate::settings::now_rfc3339(),
        "kind": kind,
        "destination": destination,
        "status": status,
        "payload": payload,
    });
    if let Some(note) = note {
        record["note"] = Value::from(note);
    }
    if let Err(e) = try_append(path, &record) {
        crate::diag::warn_once("audit-log", || {
            format!("cannot write the audit log {}: {e}", path.display())
        });
    }
}

/// Whether a line can be appended now (its directory made, the file opened for appending,
/// never through a link or into a FIFO). The egress gate asks before every request: nothing
/// may reach a server that this log cannot show. A failure is reported once.
pub(crate) fn ready(path: &Path) -> bool {
    let opened = crate::fsx::create_private_dir(crate::fsx::parent_dir(path))
        .and_then(|()| crate::fsx::append(path, b""));
    if let Err(e) = &opened {
        crate::diag::warn_once("audit-log", || {
            format!(
                "cannot write the audit log {}: {e}; nothing is sent",
                path.display()
            )
        });
    }
    opened.is_ok()
}

fn try_append(path: &Path, record: &Value) -> io::Result<()> {
    crate::fsx::create_private_dir(crate::fsx::parent_dir(path))?;
    if crate::fsx::regular_len(path).unwrap_or(0) >= ROTATE_AT {
        fs::rename(path, rotated(path))?;
    }
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    // Never through a link, never into a FIFO (see `fsx`).
    crate::fsx::append(path, &line)
}

/// `sent.jsonl.1`.
pub(crate) fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The records, oldest first (the rotated file, then the current one).
#[cfg(any(feature = "cli", test))] // used by the CLI only
pub(crate) fn read(path: &Path) -> Vec<Value> {
    [rotated(path), path.to_owned()]
        .iter()
        .filter_map(|p| crate::fsx::read_capped(p, READ_MAX).ok())
        .flat_map(|bytes| {
            bytes
                .split(|b| *b == b'\n')
                .filter_map(|line| serde_json::from_slice(line).ok())
                .collect::<Vec<Value>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sent.jsonl");
        append(
            &path,
            "usage",
            "https://x/",
            Some(200),
            None,
            json!({"n": 1}),
        );
        assert_eq!(read(&path).len(), 1);
        let big = "x".repeat(600 * 1024);
        append(
            &path,
            "usage",
            "https://x/",
            Some(200),
            None,
            json!({"big": big}),
        );
        append(
            &path,
            "usage",
            "https://x/",
            Some(200),
            None,
            json!({"big": big}),
        );
        append(
            &path,
            "crash",
            "https://x/",
            Some(200),
            None,
            json!({"n": 4}),
        );
        assert!(rotated(&path).exists());
        assert!(fs::metadata(&path).unwrap().len() < ROTATE_AT);
        let records = read(&path);
        assert_eq!(records.last().unwrap()["payload"]["n"], 4);
        assert_eq!(records.last().unwrap()["kind"], "crash");
    }
}
