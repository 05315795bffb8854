//! `tracing` events as breadcrumbs (cargo feature `tracing`).
//!
//! Add the layer to the app's subscriber: every event at or above the breadcrumb level is
//! kept as a breadcrumb (its message and fields; scrubbed like everything else) for the
//! crash reports that follow.
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//! let subscriber = tracing_subscriber::registry().with(consentry::tracing::BreadcrumbLayer::new());
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!(profiles = 3, "loaded profiles");
//! });
//! ```

use std::collections::BTreeMap;
use std::fmt;

use sentry::protocol::{Breadcrumb, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;

use crate::report::BREADCRUMBS;

/// A `tracing_subscriber::Layer` that records breadcrumbs.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// let subscriber = tracing_subscriber::registry().with(consentry::tracing::BreadcrumbLayer::default());
/// # let _ = subscriber;
/// ```
#[derive(Debug, Clone)]
pub struct BreadcrumbLayer {
    level: tracing::Level,
}

impl Default for BreadcrumbLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl BreadcrumbLayer {
    /// Events at `INFO` and above become breadcrumbs.
    ///
    /// ```
    /// let layer = consentry::tracing::BreadcrumbLayer::new();
    /// # let _ = layer;
    /// ```
    pub fn new() -> Self {
        BreadcrumbLayer {
            level: tracing::Level::INFO,
        }
    }

    /// Events at `level` and above become breadcrumbs.
    ///
    /// ```
    /// let layer = consentry::tracing::BreadcrumbLayer::new().breadcrumb_level(tracing::Level::DEBUG);
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn breadcrumb_level(mut self, level: tracing::Level) -> Self {
        self.level = level;
        self
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    data: BTreeMap<String, Value>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            self.data.insert(field.name().to_owned(), Value::from(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.data
                .insert(field.name().to_owned(), Value::from(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.data
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.data
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.data
            .insert(field.name().to_owned(), Value::from(value));
    }
}

fn level(level: &tracing::Level) -> sentry::Level {
    match *level {
        tracing::Level::ERROR => sentry::Level::Error,
        tracing::Level::WARN => sentry::Level::Warning,
        tracing::Level::INFO => sentry::Level::Info,
        _ => sentry::Level::Debug,
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for BreadcrumbLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // tracing orders levels by verbosity: TRACE > DEBUG > INFO > WARN > ERROR.
        if !crate::switch::crash_on() || *meta.level() > self.level {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        BREADCRUMBS.add(Breadcrumb {
            ty: "log".into(),
            category: Some(meta.target().to_owned()),
            message: fields.message,
            data: fields.data.into_iter().collect(),
            level: level(meta.level()),
            ..Default::default()
        });
    }
}
