//! Where payloads go, and the pauses that outlive the process.
//!
//! sentry's own transport cannot report the HTTP status to a wrapper, drops the newest
//! envelope when its queue is full and never retries, so consentry sends the stored bytes
//! itself (through [`crate::egress`]): `Dsn::envelope_api_url` and `Dsn::to_auth` give the URL
//! and the auth header.
//!
//! [`Pauses`] (`pauses.json` in the data directory) remembers, per endpoint kind, until when
//! a server asked us to wait (429, `Retry-After`, `X-Sentry-Rate-Limits`) and until when an
//! endpoint that did not answer is skipped, so an offline user pays a timeout once per
//! backoff period rather than on every run. Every time read back is clamped: a corrupt or
//! hostile file can delay sending by at most [`crate::egress::MAX_SERVER_PAUSE`].

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sentry::types::Dsn;
use serde::{Deserialize, Serialize};

use crate::egress::{self, MAX_SERVER_PAUSE};

/// Where envelopes go.
#[derive(Debug, Clone)]
pub(crate) struct SentryTarget {
    url: String,
    auth: String,
}

impl SentryTarget {
    pub(crate) fn new(dsn: &Dsn) -> SentryTarget {
        SentryTarget {
            url: dsn.envelope_api_url().to_string(),
            auth: dsn
                .to_auth(Some(concat!("consentry/", env!("CARGO_PKG_VERSION"))))
                .to_string(),
        }
    }

    /// The endpoint, for the audit log (the key travels in a header, not the URL).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The headers of an envelope request.
    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("X-Sentry-Auth", self.auth.clone()),
            ("Content-Type", "application/x-sentry-envelope".to_owned()),
        ]
    }
}

/// How long an endpoint that did not answer is skipped: doubling from the first to the
/// last.
pub(crate) const UNREACHABLE_FIRST: Duration = Duration::from_secs(60);
pub(crate) const UNREACHABLE_MAX: Duration = Duration::from_secs(60 * 60);

/// One endpoint's pauses, in Unix seconds. They hold for the endpoint they were recorded
/// for: an app configured with another server is not held back by the old one's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Pause {
    /// The endpoint (URL without secrets) the pauses are for.
    #[serde(default)]
    pub(crate) endpoint: String,
    /// The server asked us not to send before this.
    #[serde(default)]
    pub(crate) until: u64,
    /// The endpoint did not answer; skip it before this.
    #[serde(default)]
    pub(crate) unreachable_until: u64,
    /// The length of the last unreachable backoff, in seconds (it doubles).
    #[serde(default)]
    pub(crate) unreachable_backoff: u64,
}

/// The pauses of every endpoint kind, on disk.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Pauses {
    #[serde(default)]
    pub(crate) crash: Pause,
    #[serde(default)]
    pub(crate) usage: Pause,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .unwrap_or(0)
}

/// A stored time, if it is in the future and no more than `max` from `now`. A time further
/// away (a corrupt file, `u64::MAX`, a clock that was set back) was never written by a
/// server's clamped pause: it is ignored, so no stored value can hold sending off for
/// longer than `max`. Never an overflow.
fn clamp_stored(stored: u64, now: SystemTime, max: Duration) -> Option<SystemTime> {
    let latest = now.checked_add(max).unwrap_or(now);
    let t = UNIX_EPOCH.checked_add(Duration::from_secs(stored))?;
    (t > now && t <= latest + Duration::from_secs(1)).then_some(t)
}

impl Pause {
    /// Until when the server's pause holds, if it is in the future (clamped).
    pub(crate) fn paused_until(&self, now: SystemTime) -> Option<SystemTime> {
        clamp_stored(self.until, now, MAX_SERVER_PAUSE)
    }

    /// Until when the endpoint is skipped as unreachable, if in the future (clamped).
    pub(crate) fn unreachable_until(&self, now: SystemTime) -> Option<SystemTime> {
        clamp_stored(self.unreachable_until, now, UNREACHABLE_MAX)
    }

    /// Whether sending to `endpoint` is held off now: by the server's pause, or, for a
    /// flush with a deadline (`at_exit`), by its recent silence.
    pub(crate) fn holds(&self, endpoint: &str, now: SystemTime, at_exit: bool) -> bool {
        self.endpoint == endpoint
            && (self.paused_until(now).is_some()
                || (at_exit && self.unreachable_until(now).is_some()))
    }
}

impl Pauses {
    /// Reads the file; missing, unreadable or corrupt means no pause.
    pub(crate) fn load(path: &Path) -> Pauses {
        crate::fsx::read_capped(path, 64 * 1024)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub(crate) fn of(&self, kind: egress::Kind) -> &Pause {
        match kind {
            egress::Kind::Usage => &self.usage,
            egress::Kind::Crash | egress::Kind::Deletion => &self.crash,
        }
    }

    /// `kind`'s pause, reset if it was recorded for another endpoint.
    fn of_mut(&mut self, kind: egress::Kind, endpoint: &str) -> &mut Pause {
        let pause = match kind {
            egress::Kind::Usage => &mut self.usage,
            egress::Kind::Crash | egress::Kind::Deletion => &mut self.crash,
        };
        if pause.endpoint != endpoint {
            *pause = Pause {
                endpoint: endpoint.to_owned(),
                ..Pause::default()
            };
        }
        pause
    }

    /// Records a server-imposed pause (already clamped by [`egress::classify`]).
    pub(crate) fn record_pause(path: &Path, kind: egress::Kind, endpoint: &str, until: SystemTime) {
        Pauses::update(path, |p| p.of_mut(kind, endpoint).until = secs(until));
    }

    /// Records that `kind`'s endpoint did not answer: skip it for a doubling backoff.
    pub(crate) fn record_unreachable(
        path: &Path,
        kind: egress::Kind,
        endpoint: &str,
        now: SystemTime,
    ) {
        Pauses::update(path, |p| {
            let pause = p.of_mut(kind, endpoint);
            let backoff = Duration::from_secs(pause.unreachable_backoff)
                .saturating_mul(2)
                .clamp(UNREACHABLE_FIRST, UNREACHABLE_MAX);
            pause.unreachable_backoff = backoff.as_secs();
            pause.unreachable_until = secs(now + backoff);
        });
    }

    /// The endpoint answered: forget that it was unreachable.
    pub(crate) fn record_answer(path: &Path, kind: egress::Kind, endpoint: &str) {
        if Pauses::load(path).of(kind).unreachable_until == 0 {
            return;
        }
        Pauses::update(path, |p| {
            let pause = p.of_mut(kind, endpoint);
            pause.unreachable_until = 0;
            pause.unreachable_backoff = 0;
        });
    }

    fn update(path: &Path, change: impl FnOnce(&mut Pauses)) {
        let mut pauses = Pauses::load(path);
        change(&mut pauses);
        let written = crate::fsx::create_private_dir(crate::fsx::parent_dir(path)).and_then(|()| {
            crate::fsx::write_atomically(path, &serde_json::to_vec(&pauses).unwrap_or_default())
        });
        if let Err(e) = written {
            crate::diag::warn_once("pauses-file", || {
                format!("cannot record a server's pause in {}: {e}", path.display())
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pauses.json");
        let now = SystemTime::now();
        assert_eq!(Pauses::load(&path).crash.paused_until(now), None);
        Pauses::record_pause(
            &path,
            egress::Kind::Crash,
            "e",
            now + Duration::from_secs(30),
        );
        let until = Pauses::load(&path).crash.paused_until(now).unwrap();
        assert!(Pauses::load(&path).crash.holds("e", now, false));
        assert!(
            !Pauses::load(&path)
                .crash
                .holds("another server", now, false)
        );
        let left = until.duration_since(now).unwrap();
        assert!(left > Duration::from_secs(28) && left <= Duration::from_secs(31));
        assert_eq!(Pauses::load(&path).usage.paused_until(now), None);
        Pauses::record_pause(
            &path,
            egress::Kind::Crash,
            "e",
            now - Duration::from_secs(1),
        );
        assert_eq!(Pauses::load(&path).crash.paused_until(now), None);
    }

    #[test]
    fn corrupt_or_hostile_times_are_clamped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pauses.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"crash":{{"until":{max},"unreachable_until":{max}}},"usage":{{"until":{max}}}}}"#,
                max = u64::MAX
            ),
        )
        .unwrap();
        let now = SystemTime::now();
        let p = Pauses::load(&path);
        // Further than a server could have asked: never written by us, ignored.
        assert_eq!(p.crash.paused_until(now), None);
        assert_eq!(p.crash.unreachable_until(now), None);
        assert!(!p.crash.holds("", now, true));
        let far = now + MAX_SERVER_PAUSE * 3;
        std::fs::write(&path, format!(r#"{{"crash":{{"until":{}}}}}"#, secs(far))).unwrap();
        assert_eq!(Pauses::load(&path).crash.paused_until(now), None);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Pauses::load(&path), Pauses::default());
    }

    #[test]
    fn unreachable_backoff_doubles_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pauses.json");
        let now = SystemTime::now();
        Pauses::record_unreachable(&path, egress::Kind::Usage, "e", now);
        let first = Pauses::load(&path).usage.unreachable_until(now).unwrap();
        assert!(first.duration_since(now).unwrap() <= UNREACHABLE_FIRST + Duration::from_secs(1));
        for _ in 0..20 {
            Pauses::record_unreachable(&path, egress::Kind::Usage, "e", now);
        }
        let last = Pauses::load(&path).usage.unreachable_until(now).unwrap();
        assert!(last.duration_since(now).unwrap() <= UNREACHABLE_MAX + Duration::from_secs(1));
        Pauses::record_answer(&path, egress::Kind::Usage, "e");
        assert_eq!(Pauses::load(&path).usage.unreachable_until(now), None);
    }
}
