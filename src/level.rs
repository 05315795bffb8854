//! consentry's own severity levels, so that a new `sentry` version cannot change consentry's
//! public API (the protocol's level is an implementation detail).

/// How severe a reported message or breadcrumb is.
///
/// ```
/// consentry::capture_message("cache rebuilt from scratch", consentry::Level::Warning);
/// assert_eq!(consentry::Level::default(), consentry::Level::Error);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum Level {
    /// Detail for debugging.
    Debug,
    /// Something worth knowing.
    Info,
    /// Something went wrong, and the app went on.
    Warning,
    /// Something failed.
    #[default]
    Error,
    /// The app cannot go on.
    Fatal,
}

impl From<Level> for sentry::protocol::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Debug => sentry::protocol::Level::Debug,
            Level::Info => sentry::protocol::Level::Info,
            Level::Warning => sentry::protocol::Level::Warning,
            Level::Error => sentry::protocol::Level::Error,
            Level::Fatal => sentry::protocol::Level::Fatal,
        }
    }
}
