//! Delivery of crash envelopes to Sentry (or any Sentry-compatible server).
//!
//! sentry's own transport cannot report the HTTP status to a wrapper, drops the newest
//! envelope when its queue is full and never retries, so consentry sends the stored bytes
//! itself: `Dsn::envelope_api_url` and `Dsn::to_auth` give the URL and the auth header, and
//! sentry's `RateLimiter` reads `Retry-After` and `X-Sentry-Rate-Limits`. Rate limits are
//! kept in the data directory so they are honoured across restarts.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sentry::transports::{RateLimiter, RateLimitingCategory};
use sentry::types::Dsn;
use serde::{Deserialize, Serialize};

use crate::http;

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
}

/// What happened to one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// 2xx: the server has it; remove it from the outbox. `limit`: the server also asked,
    /// with `X-Sentry-Rate-Limits`, to pause until then.
    Accepted {
        status: u16,
        limit: Option<SystemTime>,
    },
    /// No answer (`status` is `None`), a timeout, a 5xx or anything else unexpected (a
    /// redirect, which is not followed): keep it and try again later.
    Retry { status: Option<u16>, why: String },
    /// 429 or an active rate limit: keep it and wait until the limit ends.
    RateLimited(SystemTime),
    /// Any other 4xx: the server will never take it; drop it.
    Rejected(u16),
}

/// Sends one stored envelope, verbatim.
pub(crate) fn send(target: &SentryTarget, bytes: &[u8], timeout: Duration) -> Delivery {
    let headers = [
        ("X-Sentry-Auth", target.auth.clone()),
        ("Content-Type", "application/x-sentry-envelope".to_owned()),
    ];
    let answer = match http::post(&target.url, &headers, bytes, timeout) {
        Ok(answer) => answer,
        Err(why) => return Delivery::Retry { status: None, why },
    };
    let status = answer.status;
    // Sentry may send `X-Sentry-Rate-Limits` with any answer, a 200 included;
    // `Retry-After` matters on a refusal.
    let mut limiter = RateLimiter::new();
    if let Some(h) = &answer.sentry_rate_limits {
        limiter.update_from_sentry_header(h);
    } else if !answer.is_success() {
        if let Some(h) = &answer.retry_after {
            limiter.update_from_retry_after(h);
        } else if status == 429 {
            limiter.update_from_429();
        }
    }
    let limit = limiter
        .is_disabled(RateLimitingCategory::Error)
        .map(|left| SystemTime::now() + left);
    if answer.is_success() {
        return Delivery::Accepted { status, limit };
    }
    match limit {
        Some(until) => Delivery::RateLimited(until),
        None if status == 429 => Delivery::RateLimited(SystemTime::now() + Duration::from_secs(60)),
        None if (400..500).contains(&status) => Delivery::Rejected(status),
        None => Delivery::Retry {
            status: Some(status),
            why: format!("server answered {status}"),
        },
    }
}

/// A rate limit that outlives the process: `rate-limits.json` in the data directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RateLimitFile {
    /// Unix seconds until which crash envelopes must not be sent.
    #[serde(default)]
    pub(crate) error_until: u64,
}

impl RateLimitFile {
    pub(crate) fn load(path: &Path) -> RateLimitFile {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The time until which sending is paused, if it is in the future.
    pub(crate) fn active_until(&self) -> Option<SystemTime> {
        let until = UNIX_EPOCH + Duration::from_secs(self.error_until);
        (until > SystemTime::now()).then_some(until)
    }

    pub(crate) fn store(path: &Path, until: SystemTime) {
        let secs = until
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .unwrap_or(0);
        let file = RateLimitFile { error_until: secs };
        if let Ok(bytes) = serde_json::to_vec(&file)
            && let Err(e) = crate::settings::write_file_atomically(path, &bytes)
        {
            crate::diag::warn_once("rate-limit-file", || {
                format!(
                    "cannot record the server's rate limit in {}: {e}",
                    path.display()
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rate-limits.json");
        assert_eq!(RateLimitFile::load(&path).active_until(), None);
        RateLimitFile::store(&path, SystemTime::now() + Duration::from_secs(30));
        let until = RateLimitFile::load(&path).active_until().unwrap();
        let left = until.duration_since(SystemTime::now()).unwrap();
        assert!(
            left > Duration::from_secs(28) && left <= Duration::from_secs(31),
            "{left:?}"
        );
        RateLimitFile::store(&path, SystemTime::now() - Duration::from_secs(1));
        assert_eq!(RateLimitFile::load(&path).active_until(), None);
    }
}
