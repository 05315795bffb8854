//! The one HTTP client consentry uses, for crash envelopes and usage batches alike.
//!
//! Every request has an overall deadline (sentry's own ureq transport has none, and a
//! server that never answers blocked it for 25 s and more), statuses are returned rather
//! than turned into errors so the outbox can tell 2xx from 429 from 5xx, and redirects are
//! not followed (a payload goes where the user agreed it goes, or nowhere).

use std::sync::LazyLock;
use std::time::Duration;

use ureq::Agent;

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<String>,
    pub(crate) sentry_rate_limits: Option<String>,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

static AGENT: LazyLock<Agent> = LazyLock::new(|| {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("consentry/", env!("CARGO_PKG_VERSION")))
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
});

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NetError {
    /// The deadline passed before an answer came; the server may have received the request.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Nothing listens there (or a firewall said no): the request reached no server.
    #[error("connection refused or host unreachable: {0}")]
    Unreachable(String),
    /// The TLS handshake failed: no payload was sent.
    #[error("TLS failure: {0}")]
    Tls(String),
    /// Anything else (the server closed the connection, a malformed answer, ...).
    #[error("{0}")]
    Other(String),
}

impl NetError {
    /// Whether the request may have reached a server (and so belongs in the audit log).
    pub(crate) fn may_have_reached(&self) -> bool {
        matches!(self, NetError::Timeout(_) | NetError::Other(_))
    }

    fn of(e: ureq::Error, timeout: Duration) -> NetError {
        match e {
            ureq::Error::Timeout(_) => NetError::Timeout(timeout),
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkUnreachable
                        | std::io::ErrorKind::AddrNotAvailable
                ) =>
            {
                NetError::Unreachable(io.to_string())
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                NetError::Timeout(timeout)
            }
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                NetError::Unreachable(e.to_string())
            }
            ureq::Error::Rustls(_) => NetError::Tls(e.to_string()),
            other => NetError::Other(other.to_string()),
        }
    }
}

/// POSTs `body` to `url` with `headers`, giving up after `timeout` in all (connect, send and
/// read together). Only [`crate::egress`] calls it.
pub(crate) fn post(
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, NetError> {
    if timeout.is_zero() {
        return Err(NetError::Timeout(timeout));
    }
    let mut request = AGENT.post(url);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let response = request
        .config()
        .timeout_global(Some(timeout))
        .build()
        .send(body)
        .map_err(|e| NetError::of(e, timeout))?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok(Answer {
        status: response.status().as_u16(),
        retry_after: header("retry-after"),
        sentry_rate_limits: header("x-sentry-rate-limits"),
    })
}

/// Whether `url` may carry a payload: HTTPS, or plain HTTP to a loopback address.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = lower.strip_prefix("http://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = if let Some(v6) = host.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            host.split(':').next().unwrap_or("")
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            return Ok(());
        }
        return Err(format!(
            "{url}: plain http is only allowed to loopback addresses; use https"
        ));
    }
    Err(format!("{url}: not an http(s) URL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_or_loopback_only() {
        for ok in [
            "https://o0.ingest.sentry.io/api/0/envelope/",
            "http://127.0.0.1:8000/x",
            "http://localhost/x",
            "http://[::1]:9/x",
            "http://key@127.0.0.2:1/1",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/x",
            "http://10.0.0.1/x",
            "http://127.0.0.1.example.com/x",
            "ftp://127.0.0.1/",
            "file:///tmp/x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
