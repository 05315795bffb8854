//! Anonymous usage pings: `track(name, props)` queues an event (bounded), and the worker
//! sends batches at most once per interval to the configured sink, in the sink's own wire
//! format (Google Analytics 4 Measurement Protocol, Segment, PostHog, or plain JSON).
//!
//! The caller's thread only validates the name and queues; hashing, scrubbing, serialising
//! and I/O happen on the worker. Usage pings are not persisted across runs.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::config::Config;
use crate::diag;
use crate::runtime::Runtime;

/// The longest event name or property key (Google Analytics' limit).
///
/// ```
/// assert!(consentry::valid_name(&"a".repeat(consentry::MAX_NAME_LEN)));
/// ```
pub const MAX_NAME_LEN: usize = 40;
/// The most properties one event carries; the ones past it (and any with an invalid key)
/// are dropped, the event is kept.
///
/// ```
/// assert_eq!(consentry::MAX_PROPS, 16);
/// ```
pub const MAX_PROPS: usize = 16;
/// The longest string property value sent, in characters (longer ones are cut).
///
/// ```
/// assert_eq!(consentry::MAX_VALUE_LEN, 100);
/// ```
pub const MAX_VALUE_LEN: usize = 100;

/// The value of a usage property.
///
/// Numbers and booleans pass as they are; free strings pass through the scrubbing engine;
/// [`Prop::choice`] reports values outside an allow-list as `custom`; [`Prop::hashed`]
/// sends a salted hash so equal values group without being revealed.
///
/// ```
/// use consentry::Prop;
/// let props: [(&str, Prop); 4] = [
///     ("task", "detect".into()),
///     ("epochs", 100.into()),
///     ("model", Prop::choice("yolov8n", &["yolov8n", "yolov8s"])),
///     ("project", Prop::hashed("acme-secret-project")),
/// ];
/// # let _ = props;
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Prop {
    /// A free string; scrubbed before it is sent and cut at [`MAX_VALUE_LEN`] characters.
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A value from an allow-list, or `custom`.
    Choice(String),
    /// A value sent only as a salted hash.
    Hashed(String),
}

impl fmt::Debug for Prop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prop::Str(s) => write!(f, "Str({s:?})"),
            Prop::Int(n) => write!(f, "Int({n})"),
            Prop::Float(x) => write!(f, "Float({x})"),
            Prop::Bool(b) => write!(f, "Bool({b})"),
            Prop::Choice(c) => write!(f, "Choice({c:?})"),
            // The raw value is what the user wanted hidden: never print it.
            Prop::Hashed(_) => f.write_str("Hashed(..)"),
        }
    }
}

impl Prop {
    /// `value` if it is in `allowed`, else `custom` (Ultralytics reports model names outside
    /// its own list this way).
    ///
    /// ```
    /// use consentry::Prop;
    /// assert_eq!(Prop::choice("yolov8n", &["yolov8n"]), Prop::Choice("yolov8n".into()));
    /// assert_eq!(Prop::choice("my-secret-model", &["yolov8n"]), Prop::Choice("custom".into()));
    /// ```
    pub fn choice(value: &str, allowed: &[&str]) -> Prop {
        if allowed.contains(&value) {
            Prop::Choice(value.to_owned())
        } else {
            Prop::Choice("custom".to_owned())
        }
    }

    /// A value sent as an HMAC-SHA256 of it under the per-install salt, truncated: equal
    /// values give equal hashes on this install, and the value itself never leaves.
    ///
    /// ```
    /// let p = consentry::Prop::hashed("my-project");
    /// assert_eq!(format!("{p:?}"), "Hashed(..)");
    /// ```
    pub fn hashed(value: impl Into<String>) -> Prop {
        Prop::Hashed(value.into())
    }
}

impl From<&str> for Prop {
    fn from(s: &str) -> Prop {
        Prop::Str(s.to_owned())
    }
}
impl From<String> for Prop {
    fn from(s: String) -> Prop {
        Prop::Str(s)
    }
}
impl From<bool> for Prop {
    fn from(b: bool) -> Prop {
        Prop::Bool(b)
    }
}
impl From<f64> for Prop {
    fn from(x: f64) -> Prop {
        Prop::Float(x)
    }
}
impl From<f32> for Prop {
    fn from(x: f32) -> Prop {
        Prop::Float(f64::from(x))
    }
}
macro_rules! int_prop {
    ($($t:ty),*) => {$(
        impl From<$t> for Prop {
            fn from(n: $t) -> Prop {
                Prop::Int(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_prop!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

/// An event name or property key: 1 to 40 of `[a-z0-9_]`, starting with a letter.
///
/// `const`, so typed event catalogs are checked at compile time (see
/// [`event_catalog!`](crate::event_catalog)).
///
/// ```
/// assert!(consentry::valid_name("train_started"));
/// assert!(!consentry::valid_name("Train Started"));
/// ```
pub const fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MAX_NAME_LEN || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
            return false;
        }
        i += 1;
    }
    true
}

/// An event of a typed catalog: the name is fixed at compile time.
///
/// Implemented by [`event_catalog!`](crate::event_catalog); apps may implement it by hand.
///
/// ```
/// struct Exported;
/// impl consentry::UsageEvent for Exported {
///     fn name(&self) -> &'static str { "exported" }
/// }
/// consentry::track_event(Exported, [("format", "onnx")]);
/// ```
pub trait UsageEvent {
    /// The event's name on the wire.
    fn name(&self) -> &'static str;
}

/// Declares a typed catalog of usage events (as ZenML does), with names checked at compile
/// time: a bad name does not compile.
///
/// ```
/// consentry::event_catalog! {
///     /// What this app reports.
///     pub enum AppEvent {
///         /// A training run started.
///         TrainStarted = "train_started",
///         /// A model was exported.
///         Exported = "exported",
///     }
/// }
/// use consentry::UsageEvent;
/// assert_eq!(AppEvent::TrainStarted.name(), "train_started");
/// consentry::track_event(AppEvent::Exported, [("format", "onnx")]);
/// ```
///
/// ```compile_fail
/// consentry::event_catalog! {
///     pub enum Bad { Oops = "Not Valid" }
/// }
/// ```
#[macro_export]
macro_rules! event_catalog {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $crate::UsageEvent for $name {
            fn name(&self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        const _: () = { $(assert!($crate::valid_name($wire), concat!("invalid usage event name: ", $wire));)+ };
    };
}

/// One queued usage event.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) name: String,
    pub(crate) props: Vec<(String, Prop)>,
    pub(crate) time: SystemTime,
}

/// The bounded queue between `track` and the worker.
#[derive(Debug)]
pub(crate) struct UsageQueue {
    events: Mutex<VecDeque<Queued>>,
    capacity: usize,
    dropped: AtomicU64,
    state: Mutex<SendState>,
}

#[derive(Debug, Default)]
struct SendState {
    last_sent: Option<Instant>,
    /// After a failure: when to try again, and the delay after that.
    retry_at: Option<Instant>,
    backoff: Option<Duration>,
}

impl UsageQueue {
    pub(crate) fn new(capacity: usize) -> UsageQueue {
        UsageQueue {
            // Grows as events come: an app whose usage is off allocates nothing.
            events: Mutex::new(VecDeque::new()),
            capacity,
            dropped: AtomicU64::new(0),
            state: Mutex::new(SendState::default()),
        }
    }

    /// Queues an event; when full, the newer event is counted and dropped.
    pub(crate) fn push(&self, event: Queued) -> bool {
        let Ok(mut events) = self.events.lock() else {
            return false;
        };
        if events.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        events.push_back(event);
        true
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.events.lock().map(|e| e.is_empty()).unwrap_or(true)
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut e) = self.events.lock() {
            e.clear();
        }
    }

    fn take(&self) -> Vec<Queued> {
        self.events
            .lock()
            .map(|mut e| e.drain(..).collect())
            .unwrap_or_default()
    }

    /// Puts a batch that failed back at the front, as much as fits.
    fn put_back(&self, batch: Vec<Queued>) {
        if let Ok(mut events) = self.events.lock() {
            for event in batch.into_iter().rev() {
                if events.len() >= self.capacity {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    events.push_front(event);
                }
            }
        }
    }

    /// How long until a batch may be sent, if one is waiting.
    pub(crate) fn time_until_due(&self, config: &Config) -> Option<Duration> {
        if self.is_empty() {
            return None;
        }
        let state = self.state.lock().ok()?;
        let now = Instant::now();
        let by_interval = state.last_sent.map_or(Duration::ZERO, |t| {
            (t + config.usage_interval).saturating_duration_since(now)
        });
        let by_retry = state
            .retry_at
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        Some(by_interval.max(by_retry))
    }

    /// Whether a batch may be sent now.
    pub(crate) fn due(&self, config: &Config) -> bool {
        self.time_until_due(config) == Some(Duration::ZERO)
    }
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
    fn url(&self) -> String {
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

    /// The URL for messages and the audit log: no secrets.
    pub(crate) fn display_url(&self) -> String {
        match &self.kind {
            SinkKind::Ga4 { .. } => format!("{}/mp/collect", self.base),
            _ => self.url(),
        }
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
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
        events: &[Ready],
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
                    .map(|e| json!({"name": e.name, "props": Value::Object(e.props.clone()), "time": e.time}))
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
    fn deletion_body(&self, client_id: Uuid, now: &str) -> Option<Value> {
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

/// An event ready to serialise: props resolved (hashed, scrubbed, cut).
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) props: Map<String, Value>,
    /// When `track` was called: RFC 3339, and microseconds since the Unix epoch (GA4).
    pub(crate) time: String,
    pub(crate) micros: u64,
}

/// Queues a usage event; see [`crate::track`].
pub(crate) fn track<'a, V: Into<Prop>>(
    rt: &Runtime,
    name: &str,
    props: impl IntoIterator<Item = (&'a str, V)>,
) {
    if !valid_name(name) {
        if rt.debug {
            diag::warn_once(&format!("bad-event-{name}"), || {
                format!("usage event name {name:?} is invalid (use 1-40 of [a-z0-9_]); dropped")
            });
        }
        return;
    }
    let mut list = Vec::new();
    for (key, value) in props.into_iter().take(MAX_PROPS + 1) {
        if !valid_name(key) || list.len() >= MAX_PROPS {
            // Only the property is dropped; the event still counts.
            if rt.debug {
                diag::warn_once(&format!("bad-prop-{name}-{key}"), || {
                    format!(
                        "usage property {key:?} of {name:?} is invalid (use 1-40 of [a-z0-9_]) or past the {MAX_PROPS}th; it was dropped"
                    )
                });
            }
            continue;
        }
        list.push((key.to_owned(), value.into()));
    }
    if rt.usage.push(Queued {
        name: name.to_owned(),
        props: list,
        time: SystemTime::now(),
    }) {
        rt.notify();
    }
}

impl Runtime {
    /// The static metadata sent with every usage event.
    pub(crate) fn usage_metadata(&self) -> Map<String, Value> {
        let f = self.facts();
        let mut m = Map::new();
        m.insert("app".into(), Value::from(self.config.app_name.clone()));
        m.insert(
            "app_version".into(),
            Value::from(self.config.app_version.clone()),
        );
        m.insert("os".into(), Value::from(f.os_name.clone()));
        m.insert("os_version".into(), Value::from(f.os_version.clone()));
        m.insert("arch".into(), Value::from(f.arch));
        m.insert("rust_version".into(), Value::from(f.rust_version));
        m.insert(
            "install_source".into(),
            Value::from(f.install_source.as_str()),
        );
        m.insert(
            "ci".into(),
            Value::from(f.ci.filter(|_| self.config.allow_ci).unwrap_or("none")),
        );
        m.insert("container".into(), Value::from(f.container));
        m.insert("wsl".into(), Value::from(f.wsl));
        m.insert("session_id".into(), Value::from(f.session_id.to_string()));
        m
    }

    /// Resolves props: hashes, scrubs free strings, cuts long values. An event whose
    /// strings cannot be scrubbed is dropped (fail closed).
    pub(crate) fn ready(&self, event: Queued) -> Option<Ready> {
        let scrubber = self.scrubber().ok()?;
        let mut props = Map::new();
        for (key, prop) in event.props {
            let value = match prop {
                Prop::Str(s) => {
                    let (clean, _) = scrubber.scrub_text(&s).ok()?;
                    Value::from(cut(clean))
                }
                Prop::Choice(c) => Value::from(c),
                Prop::Hashed(raw) => Value::from(scrubber.hash(&raw)),
                Prop::Int(n) => Value::from(n),
                Prop::Float(x) => {
                    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
                }
                Prop::Bool(b) => Value::from(b),
            };
            props.insert(key, value);
        }
        let time = time::OffsetDateTime::from(event.time)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let micros = event
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Some(Ready {
            id: Uuid::new_v4(),
            name: event.name,
            props,
            time,
            micros,
        })
    }

    /// Sends a usage batch if one is due (or, with a deadline, now). Consent is checked
    /// first: withdrawn in another process means the queue is dropped unsent.
    pub(crate) fn usage_tick(&self, deadline: Option<Instant>) {
        let Some(sink) = self.config.usage_sink.clone() else {
            // No sink: nothing can be sent; keep memory bounded.
            if !self.debug {
                self.usage.clear();
                return;
            }
            self.print_usage_batch(None);
            return;
        };
        if deadline.is_none() && !self.usage.due(&self.config) {
            return;
        }
        self.recheck_consent();
        if !crate::runtime::USAGE_ON.load(Ordering::Acquire) {
            return;
        }
        if self.debug {
            self.print_usage_batch(Some(&sink));
            return;
        }
        let mut rest = self.usage.take();
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(sink.max_events_per_request()));
            let chunk = std::mem::replace(&mut rest, tail);
            if let Err(unsent) = self.send_usage(&sink, chunk, deadline) {
                // Kept for a retry, in order: the failed request's events, then the rest.
                self.usage
                    .put_back(unsent.into_iter().chain(rest).collect());
                return;
            }
        }
    }

    /// Sends one request of usage events. `Err` gives back the events to retry.
    fn send_usage(
        &self,
        sink: &Sink,
        batch: Vec<Queued>,
        deadline: Option<Instant>,
    ) -> Result<(), Vec<Queued>> {
        let ready: Vec<Ready> = batch
            .iter()
            .cloned()
            .filter_map(|e| self.ready(e))
            .collect();
        if ready.is_empty() {
            return Ok(());
        }
        let now = crate::settings::now_rfc3339();
        let body = sink.body(self.ids().0, &ready, &self.usage_metadata(), &now);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let timeout = deadline.map_or(Duration::from_secs(10), |d| {
            d.saturating_duration_since(Instant::now())
        });
        if timeout.is_zero() {
            return Err(batch);
        }
        let answer = crate::http::post(&sink.url(), &sink.headers(), &bytes, timeout);
        // What reached a server is in the audit log, whatever it answered.
        if let (Ok(a), Some(log)) = (&answer, self.paths.audit_log()) {
            crate::audit::append(&log, "usage", &sink.display_url(), Some(a.status), body);
        }
        let Ok(mut state) = self.usage.state.lock() else {
            return Err(batch);
        };
        match answer {
            Ok(a) if a.is_success() => {
                state.last_sent = Some(Instant::now());
                state.retry_at = None;
                state.backoff = None;
                Ok(())
            }
            Ok(a) if (400..500).contains(&a.status) && a.status != 429 && a.status != 408 => {
                // The sink will never take this batch.
                state.last_sent = Some(Instant::now());
                drop(state);
                diag::warn_once("usage-rejected", || {
                    format!(
                        "the usage endpoint refused a batch (HTTP {}); it was dropped",
                        a.status
                    )
                });
                Ok(())
            }
            _ => {
                let delay = state.backoff.map_or(Duration::from_secs(1), |d| {
                    (d * 2).min(Duration::from_secs(300))
                });
                state.backoff = Some(delay);
                state.retry_at = Some(Instant::now() + delay);
                Err(batch)
            }
        }
    }

    /// Debug mode: print the batch as it would be sent, send nothing.
    fn print_usage_batch(&self, sink: Option<&Sink>) {
        let batch = self.usage.take();
        if batch.is_empty() {
            return;
        }
        let ready: Vec<Ready> = batch.into_iter().filter_map(|e| self.ready(e)).collect();
        let json_sink = Sink::json("https://collect.invalid/");
        let sink = sink.unwrap_or(&json_sink);
        let body = sink.body(
            self.ids().0,
            &ready,
            &self.usage_metadata(),
            &crate::settings::now_rfc3339(),
        );
        diag::eprint_line(&format!(
            "[consentry debug] usage batch for {} ({}; debug mode: not sent):\n{}",
            sink.display_url(),
            sink.format_name(),
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ));
        if let Ok(mut state) = self.usage.state.lock() {
            state.last_sent = Some(Instant::now());
        }
    }

    /// Sends the deletion request for a retired id; on success, forgets it.
    pub(crate) fn send_deletion(&self, id: Uuid) {
        let Some(sink) = &self.config.usage_sink else {
            return;
        };
        let log = self.paths.audit_log();
        if send_deletion(sink, id, Duration::from_secs(5), log.as_deref(), self.debug)
            && let Some(path) = self.paths.settings_file()
            && let Ok(mut s) = crate::settings::Settings::load_from(&path)
        {
            let _ = s.modify(|d| d.pending_deletion.retain(|p| *p != id));
        }
    }
}

/// Sends one deletion request carrying only `id`, and records it in the audit log when a
/// server answered. Returns whether the sink accepted it. Nothing is sent to a sink that
/// fails validation (plain HTTP to a remote host), nor in debug mode, which prints the
/// request instead (it stays owed, for a later run).
pub(crate) fn send_deletion(
    sink: &Sink,
    id: Uuid,
    timeout: Duration,
    audit_log: Option<&std::path::Path>,
    debug: bool,
) -> bool {
    let Some(body) = sink.deletion_body(id, &crate::settings::now_rfc3339()) else {
        return false;
    };
    if sink.validate().is_err() {
        return false;
    }
    if debug {
        diag::eprint_line(&format!(
            "[consentry debug] deletion request for {} (debug mode: not sent):\n{}",
            sink.display_url(),
            serde_json::to_string_pretty(&body).unwrap_or_default()
        ));
        return false;
    }
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let answer = crate::http::post(&sink.url(), &sink.headers(), &bytes, timeout);
    if let (Ok(a), Some(log)) = (&answer, audit_log) {
        crate::audit::append(log, "deletion", &sink.display_url(), Some(a.status), body);
    }
    answer.is_ok_and(|a| a.is_success())
}

fn cut(mut s: String) -> String {
    if s.chars().count() > MAX_VALUE_LEN {
        s = s.chars().take(MAX_VALUE_LEN).collect();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "train", "train_v2", &"a".repeat(40)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Train",
            "2train",
            "_x",
            "a-b",
            "a b",
            "é",
            &"a".repeat(41),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn queue_drops_newer_when_full() {
        let q = UsageQueue::new(2);
        for i in 0..5 {
            q.push(Queued {
                name: format!("e{i}"),
                props: vec![],
                time: SystemTime::now(),
            });
        }
        let names: Vec<_> = q.take().into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["e0", "e1"]);
        assert_eq!(q.dropped(), 3);
    }

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

    #[test]
    fn cut_counts_characters() {
        assert_eq!(cut("é".repeat(150)).chars().count(), MAX_VALUE_LEN);
    }
}
