//! Severity levels, consentry's own, so that a new `sentry` version cannot change the public
//! API (the protocol's level is an implementation detail of the backend).

/// How severe a reported message or breadcrumb is.
///
/// ```
/// consentry_api::capture_message("cache rebuilt from scratch", consentry_api::Level::Warning);
/// assert_eq!(consentry_api::Level::default(), consentry_api::Level::Error);
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
