//! Where usage pings go, and in which wire format: Google Analytics 4's Measurement
//! Protocol, Segment, PostHog, or plain JSON. Each event carries its own id where the sink
//! deduplicates on one (Segment `messageId`, PostHog `uuid`, the JSON sink's `id`), so a
//! batch sent again after an unanswered request is not counted twice.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// A usage event ready to send: properties resolved (hashed, scrubbed, cut). The pipeline
/// makes them; the usage store keeps them until the sink accepted them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct UsageRecord {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) props: Map<String, Value>,
    /// When `track` was called: RFC 3339, and microseconds since the Unix epoch (GA4).
    pub(crate) time: String,
    pub(crate) micros: u64,
}

/// Where usage pings go, in which wire format.
///
/// ```
/// use consentry::Sink;
/// let ga = Sink::ga4("G-XXXXXXX", "api-secret");
/// let segment = Sink::segment("write-key");
/// let posthog = Sink::posthog("phc_key").base_url("https://eu.i.posthog.com");
/// let own = Sink::json("https://collect.example.com/v1/usage");
/// # let _ = (ga, segment, posthog, own);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Sink {
    kind: SinkKind,
    base: String,
}

#[derive(Clone, PartialEq, Eq)]
enum SinkKind {
    Ga4 {
        measurement_id: String,
        api_secret: String,
    },
    Segment {
        write_key: String,
    },
    PostHog {
        api_key: String,
    },
    Json,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys and secrets stay out of logs.
        write!(f, "Sink({} at {})", self.format_name(), self.base)
    }
}

impl Sink {
    /// Google Analytics 4 Measurement Protocol (as Ultralytics and OpenVINO use it):
    /// `POST /mp/collect?measurement_id=..&api_secret=..` with `{client_id, events}`.
    ///
    /// ```
    /// let sink = consentry::Sink::ga4("G-XXXXXXX", "api-secret");
    /// assert!(consentry::Config::new("myapp", "1").usage_sink(sink).validate().is_ok());
    /// ```
    pub fn ga4(measurement_id: impl Into<String>, api_secret: impl Into<String>) -> Sink {
        Sink {
            kind: SinkKind::Ga4 {
                measurement_id: measurement_id.into(),
                api_secret: api_secret.into(),
            },
            base: "https://www.google-analytics.com".into(),
        }
    }

    /// Segment's HTTP Tracking API (as ZenML uses it): `POST /v1/batch`, basic auth with the
    /// write key, `anonymousId`.
    ///
    /// ```
    /// let sink = consentry::Sink::segment("write-key");
    /// assert!(consentry::Config::new("myapp", "1").usage_sink(sink).validate().is_ok());
    /// ```
    pub fn segment(write_key: impl Into<String>) -> Sink {
        Sink {
            kind: SinkKind::Segment {
                write_key: write_key.into(),
            },
            base: "https://api.segment.io".into(),
        }
    }

    /// PostHog's batch API: `POST /batch/` with `api_key` and `distinct_id`; person profiles
    /// are turned off.
    ///
    /// ```
    /// let sink = consentry::Sink::posthog("phc_key");
    /// assert!(consentry::Config::new("myapp", "1").usage_sink(sink).validate().is_ok());
    /// ```
    pub fn posthog(api_key: impl Into<String>) -> Sink {
        Sink {
            kind: SinkKind::PostHog {
                api_key: api_key.into(),
            },
            base: "https://us.i.posthog.com".into(),
        }
    }

    /// Plain JSON to any URL, for self-hosted collectors: `POST <url>` with
    /// `{client_id, sent_at, metadata, events: [{name, props, time}]}`. It also takes the
    /// deletion request `{type: "deletion-request", client_id}` sent on `disable`.
    ///
    /// ```
    /// let sink = consentry::Sink::json("https://collect.example.com/v1");
    /// assert!(consentry::Config::new("myapp", "1").usage_sink(sink).validate().is_ok());
    /// ```
    pub fn json(url: impl Into<String>) -> Sink {
        Sink {
            kind: SinkKind::Json,
            base: url.into(),
        }
    }

    /// Replaces the base URL (the whole URL for [`Sink::json`]): a regional endpoint, a proxy,
    /// or a loopback server in tests. HTTPS only, except loopback.
    ///
    /// ```
    /// let sink = consentry::Sink::segment("key").base_url("http://127.0.0.1:9999");
    /// # let _ = sink;
    /// ```
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Sink {
        self.base = url.into().trim_end_matches('/').to_owned();
        if matches!(self.kind, SinkKind::Json) && self.base.is_empty() {
            self.base = "/".into();
        }
        self
    }

    pub(crate) fn format_name(&self) -> &'static str {
        match self.kind {
            SinkKind::Ga4 { .. } => "ga4",
            SinkKind::Segment { .. } => "segment",
            SinkKind::PostHog { .. } => "posthog",
            SinkKind::Json => "json",
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        crate::http::check_url(&self.url())
    }

    /// Whether the sink accepts a deletion request for an anonymous id.
    pub(crate) fn supports_deletion(&self) -> bool {
        matches!(self.kind, SinkKind::Json)
    }

    /// The request URL, with the GA4 secret in it.
    pub(crate) fn url(&self) -> String {
        match &self.kind {
            SinkKind::Ga4 {
                measurement_id,
                api_secret,
            } => format!(
                "{}/mp/collect?measurement_id={}&api_secret={}",
                self.base,
                encode_query(measurement_id),
                encode_query(api_secret)
            ),
            SinkKind::Segment { .. } => format!("{}/v1/batch", self.base),
            SinkKind::PostHog { .. } => format!("{}/batch/", self.base),
            SinkKind::Json => self.base.clone(),
        }
    }

    /// The host the pings go to, for the notice and the prompt.
    pub(crate) fn host(&self) -> String {
        let rest = self
            .base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, r)| r);
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, h)| h)
            .to_owned()
    }

    /// The URL for messages and the audit log: no secrets.
    pub(crate) fn display_url(&self) -> String {
        match &self.kind {
            SinkKind::Ga4 { .. } => format!("{}/mp/collect", self.base),
            _ => self.url(),
        }
    }

    pub(crate) fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("Content-Type", "application/json".to_owned())];
        if let SinkKind::Segment { write_key } = &self.kind {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{write_key}:"));
            headers.push(("Authorization", format!("Basic {token}")));
        }
        headers
    }

    /// The request body for a batch, in this sink's wire format.
    pub(crate) fn body(
        &self,
        client_id: Uuid,
        events: &[UsageRecord],
        metadata: &Map<String, Value>,
        now: &str,
    ) -> Value {
        let client_id = client_id.to_string();
        match &self.kind {
            SinkKind::Ga4 { .. } => {
                let events: Vec<Value> = events
                    .iter()
                    .map(|e| {
                        // GA4 keeps 25 parameters per event. Kept first: the engagement time
                        // (GA4 needs it to count the event as activity), then the app's own
                        // props, then the metadata (in key order).
                        let mut params = Map::new();
                        params.insert("engagement_time_msec".into(), Value::from(1));
                        for (k, v) in e.props.iter().chain(metadata.iter()) {
                            if params.len() == GA4_MAX_PARAMS {
                                break;
                            }
                            params.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                        json!({
                            "name": e.name,
                            "timestamp_micros": e.micros,
                            "params": params,
                        })
                    })
                    .collect();
                json!({"client_id": client_id, "events": events})
            }
            SinkKind::Segment { .. } => {
                let batch: Vec<Value> = events
                    .iter()
                    .map(|e| {
                        json!({
                            "type": "track",
                            "event": e.name,
                            "anonymousId": client_id,
                            "messageId": e.id.to_string(),
                            "timestamp": e.time,
                            "properties": Value::Object(e.props.clone()),
                            "context": {
                                "library": {"name": "consentry", "version": env!("CARGO_PKG_VERSION")},
                                "app": {"name": metadata.get("app"), "version": metadata.get("app_version")},
                                "os": {"name": metadata.get("os"), "version": metadata.get("os_version")},
                                "ip": "0.0.0.0",
                                "traits": {},
                                "consentry": Value::Object(metadata.clone()),
                            },
                        })
                    })
                    .collect();
                json!({"batch": batch, "sentAt": now})
            }
            SinkKind::PostHog { api_key } => {
                let batch: Vec<Value> = events
                    .iter()
                    .map(|e| {
                        let mut properties = metadata.clone();
                        properties.extend(e.props.clone());
                        properties.insert("$lib".into(), Value::from("consentry"));
                        properties.insert(
                            "$lib_version".into(),
                            Value::from(env!("CARGO_PKG_VERSION")),
                        );
                        properties.insert("$process_person_profile".into(), Value::from(false));
                        properties.insert("$ip".into(), Value::Null);
                        json!({
                            "event": e.name,
                            "distinct_id": client_id,
                            "uuid": e.id.to_string(),
                            "timestamp": e.time,
                            "properties": properties,
                        })
                    })
                    .collect();
                json!({"api_key": api_key, "batch": batch})
            }
            SinkKind::Json => {
                let events: Vec<Value> = events
                    .iter()
                    .map(|e| json!({"id": e.id.to_string(), "name": e.name, "props": Value::Object(e.props.clone()), "time": e.time}))
                    .collect();
                json!({"client_id": client_id, "sent_at": now, "metadata": metadata, "events": events})
            }
        }
    }

    /// The most events one request may carry (GA4's Measurement Protocol takes 25; the
    /// others are kept well under their request size limits).
    pub(crate) fn max_events_per_request(&self) -> usize {
        match self.kind {
            SinkKind::Ga4 { .. } => 25,
            _ => 100,
        }
    }

    /// The deletion request for a retired anonymous id, if the sink takes one.
    pub(crate) fn deletion_body(&self, client_id: Uuid, now: &str) -> Option<Value> {
        self.supports_deletion().then(|| {
            json!({"type": "deletion-request", "client_id": client_id.to_string(), "sent_at": now})
        })
    }
}

/// The most parameters GA4 keeps per event.
const GA4_MAX_PARAMS: usize = 25;

/// Percent-encodes a query value.
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query("G-AB_c.9~"), "G-AB_c.9~");
        assert_eq!(encode_query("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn urls_hide_secrets() {
        let s = Sink::ga4("G-1", "s3cr3t").base_url("http://127.0.0.1:1/");
        assert_eq!(
            s.url(),
            "http://127.0.0.1:1/mp/collect?measurement_id=G-1&api_secret=s3cr3t"
        );
        assert!(!s.display_url().contains("s3cr3t"));
        assert!(!format!("{s:?}").contains("s3cr3t"));
    }
}
