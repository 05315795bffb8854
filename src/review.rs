//! Reports the user reviews: what waits in the outbox, one report exactly as it would be
//! sent, and the user's explicit decision to send or discard it.
//!
//! An explicit `send` is the user's consent for that one report: it goes out whatever the
//! mode (local included), whether it was captured before consent was given, and whether
//! the app asks for review, as desktop crash reporters let a user share one report. It still
//! goes through the egress gate (audit log, status table) and to the configured server only.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::config::Config;
use crate::egress::{self, Egress, Gate, Outcome, Request};
use crate::outbox::Outbox;

use crate::paths::Paths;

/// A crash report waiting in the outbox, for review.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// for r in consentry::waiting_reports(&config) {
///     println!("{} {} {} {} bytes", r.id, r.captured_at, r.title, r.size);
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Waiting {
    /// The report's id (its event id; `show`, `send` and `discard` take a unique prefix).
    pub id: String,
    /// When it was captured (RFC 3339, UTC).
    pub captured_at: String,
    /// What it is about: the error type and message, or the message, shortened; `[with a
    /// minidump, N bytes]` after it when one would go with it.
    pub title: String,
    /// Its size on disk, in bytes.
    pub size: u64,
    /// Its file.
    pub path: PathBuf,
    /// The event, scrubbed, exactly as it would be sent.
    pub event: Value,
    /// Kept on this machine only (local mode): sent only if you send it.
    pub kept_locally: bool,
}

/// Why a review command could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReviewError {
    /// No waiting report has this id (or prefix).
    #[error("no waiting report has the id '{0}' (see 'pending')")]
    NotFound(String),
    /// More than one report starts with this prefix.
    #[error("'{0}' matches more than one waiting report; give more of the id")]
    Ambiguous(String),
    /// Fewer than 4 characters of an id.
    #[error("'{0}' is too short: give at least 4 characters of the id (see 'pending')")]
    TooShort(String),
    /// Debug mode (`<APP>_TELEMETRY_DEBUG`) is on, which sends nothing.
    #[error("debug mode is on ({0}): nothing is sent; unset it to send")]
    DebugMode(String),
    /// The app has no server to send to.
    #[error("no server is configured (no DSN): the report can only be kept or discarded")]
    NoServer,
    /// The server did not take it.
    #[error("the report was not sent: {0}")]
    NotSent(String),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The outbox and the directory of reports kept locally.
fn stores_of(config: &Config) -> Vec<(Outbox, bool)> {
    let paths = Paths::of(config);
    [(paths.outbox_dir(), false), (paths.kept_dir(), true)]
        .into_iter()
        .filter_map(|(dir, kept)| dir.map(|d| (Outbox::new(d, usize::MAX, u64::MAX), kept)))
        .collect()
}

/// A title for a list: the top exception's type and value, or the message, one line of at
/// most 80 characters.
pub(crate) fn title_of(event: &Value) -> String {
    let top = event["exception"]["values"]
        .as_array()
        .and_then(|v| v.last())
        .map(|e| {
            format!(
                "{}: {}",
                e["type"].as_str().unwrap_or("error"),
                e["value"].as_str().unwrap_or("")
            )
        });
    let text = top
        .or_else(|| event["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

fn captured_at(event: &Value) -> String {
    event["timestamp"]
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs_f64(s.min(1e11))))
        .and_then(|t| {
            time::OffsetDateTime::from(t)
                .replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// The crash reports waiting in `config`'s app's outbox, oldest first.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// assert!(consentry::waiting_reports(&config).is_empty());
/// ```
pub fn waiting_reports(config: &Config) -> Vec<Waiting> {
    let mut all: Vec<Waiting> = stores_of(config)
        .into_iter()
        .flat_map(|(outbox, kept_locally)| {
            outbox
                .list()
                .into_iter()
                .filter_map(|entry| {
                    let id = crate::outbox::event_id_of(&entry.path)?
                        .simple()
                        .to_string();
                    let bytes = outbox.read(&entry.path).ok()?;
                    let event = crate::report::event_of_envelope(&bytes)?;
                    Some(Waiting {
                        id,
                        captured_at: captured_at(&event),
                        title: crate::minidump::titled(title_of(&event), &bytes),
                        size: entry.size,
                        path: entry.path,
                        event,
                        kept_locally,
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    all.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    all
}

/// A batch of usage events waiting in the usage store: sent in the background (it is not
/// reviewed one by one; `disable --usage` deletes it).
#[cfg(any(feature = "cli", test))] // used by the CLI only
#[derive(Debug, Clone)]
pub(crate) struct WaitingUsage {
    /// When its first event was recorded (RFC 3339, UTC).
    pub(crate) recorded_at: String,
    /// How many events it holds.
    pub(crate) events: usize,
    /// The event names, in order, each once.
    pub(crate) names: Vec<String>,
    /// Its size on disk, in bytes.
    pub(crate) size: u64,
}

/// The usage batches waiting in `config`'s app's usage store, oldest first.
#[cfg(any(feature = "cli", test))] // used by the CLI only
pub(crate) fn waiting_usage(config: &Config) -> Vec<WaitingUsage> {
    let Some(dir) = Paths::of(config).usage_dir() else {
        return Vec::new();
    };
    let store = Outbox::usage(dir, usize::MAX, u64::MAX);
    let mut entries = store.list();
    entries.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    entries
        .into_iter()
        .filter_map(|entry| {
            let records = store.read_usage(&entry.path)?;
            let records = records.get();
            let mut names: Vec<String> = Vec::new();
            for r in records {
                if !names.contains(&r.name) {
                    names.push(r.name.clone());
                }
            }
            Some(WaitingUsage {
                recorded_at: records
                    .first()
                    .map_or_else(|| "?".to_owned(), |r| r.time.clone()),
                events: records.len(),
                names,
                size: entry.size,
            })
        })
        .collect()
}

/// The waiting report whose id starts with `id` (at least 4 characters, or the whole id).
pub fn find_report(config: &Config, id: &str) -> Result<Waiting, ReviewError> {
    let id = id.trim().to_ascii_lowercase().replace('-', "");
    if id.len() < 4 {
        return Err(ReviewError::TooShort(id));
    }
    let mut found: Vec<Waiting> = waiting_reports(config)
        .into_iter()
        .filter(|w| w.id.starts_with(&id))
        .collect();
    match found.len() {
        0 => Err(ReviewError::NotFound(id)),
        1 => Ok(found.remove(0)),
        _ => Err(ReviewError::Ambiguous(id)),
    }
}

/// Deletes waiting reports (the user's decision). Returns how many.
pub(crate) fn discard(_config: &Config, reports: &[Waiting]) -> usize {
    for r in reports {
        // Only files listed from our own directories reach here.
        let _ = crate::fsx::remove(&r.path);
    }
    reports.len()
}

/// The user's explicit "send this one": consent for this report only.
struct Explicit;

impl Gate for Explicit {
    fn allows(&self, _: egress::Kind) -> bool {
        true
    }
}

/// Sends one waiting report now, because the user said so (see the module docs), and
/// removes it once the server took it.
pub(crate) fn send(config: &Config, report: &Waiting) -> Result<(), ReviewError> {
    let prefix = config.env_prefix();
    if crate::env::EnvSnapshot::from_process(&prefix).debug(&prefix) {
        return Err(ReviewError::DebugMode(format!("{prefix}_TELEMETRY_DEBUG")));
    }
    let dsn = config.parsed_dsn().ok_or(ReviewError::NoServer)?;
    let target = crate::transport::SentryTarget::new(&dsn);
    let paths = Paths::of(config);
    let bytes = crate::fsx::read_capped(&report.path, 16 * 1024 * 1024).map_err(|source| {
        ReviewError::Io {
            path: report.path.clone(),
            source,
        }
    })?;
    // Sent by the user's own hand, but a minidump still needs their own yes to minidumps
    // (and the app's switch), read now: without it the report goes without its dump.
    let minidumps = || {
        config.minidumps
            && crate::settings::Settings::load_for(config, &paths).is_ok_and(|s| s.data().minidumps)
    };
    let bytes = crate::minidump::sendable(&report.path, bytes, minidumps).ok_or_else(|| {
        ReviewError::NotSent("its minidump could not be read; the report was deleted".to_owned())
    })?;
    let egress = Egress::new(Box::new(egress::Http), paths.audit_log());
    let outcome = egress.send(
        &Explicit,
        Request {
            kind: egress::Kind::Crash,
            url: target.url(),
            shown_url: target.url(),
            headers: target.headers(),
            body: &bytes,
            record: crate::minidump::audit_record(report.event.clone(), &bytes),
            timeout: Duration::from_secs(15),
            captured_at: None,
        },
    );
    match outcome {
        Outcome::Accepted { .. } => {
            let _ = crate::fsx::remove(&report.path);
            Ok(())
        }
        Outcome::Rejected(status) => {
            let _ = crate::fsx::remove(&report.path);
            Err(ReviewError::NotSent(format!(
                "the server refused it for good (HTTP {status}); it was deleted"
            )))
        }
        Outcome::Paused { status, .. } => Err(ReviewError::NotSent(format!(
            "the server asked to wait (HTTP {status}); it is kept"
        ))),
        Outcome::Retry { status, error } => Err(ReviewError::NotSent(match (status, error) {
            (Some(s), _) => format!("the server answered {s}; it is kept"),
            (None, Some(e)) => format!("{e}; it is kept"),
            (None, None) => "no answer; it is kept".to_owned(),
        })),
        Outcome::NotAllowed => Err(ReviewError::NotSent("not allowed".to_owned())),
    }
}

/// Writes one waiting report, scrubbed, to `to` (to attach to a bug report by hand).
#[cfg(any(feature = "cli", test))] // used by the CLI only
pub(crate) fn export(report: &Waiting, to: &std::path::Path) -> Result<(), ReviewError> {
    let mut text = serde_json::to_string_pretty(&report.event).unwrap_or_default();
    text.push('\n');
    std::fs::write(to, text).map_err(|source| ReviewError::Io {
        path: to.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn titles_are_one_short_line() {
        let e = json!({"exception": {"values": [
            {"type": "io", "value": "root"},
            {"type": "app::LoadError", "value": "cannot load\nsecond line"}
        ]}});
        assert_eq!(title_of(&e), "app::LoadError: cannot load");
        let long = json!({"message": "x".repeat(200)});
        assert_eq!(title_of(&long).chars().count(), 81);
        assert_eq!(
            captured_at(&json!({"timestamp": 0.5})),
            "1970-01-01T00:00:00Z"
        );
        assert!(!captured_at(&json!({"timestamp": 1e300})).is_empty());
        assert_eq!(captured_at(&json!({"timestamp": -1.0})), "?");
    }
}
