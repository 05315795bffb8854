//! `log` records as breadcrumbs (cargo feature `log`).
//!
//! Wrap the app's logger: every record at or above the breadcrumb level is kept as a
//! breadcrumb for the crash reports that follow (scrubbed like everything else), and then
//! passed to the wrapped logger unchanged.
//!
//! ```
//! struct Stderr;
//! impl log::Log for Stderr {
//!     fn enabled(&self, _: &log::Metadata<'_>) -> bool { true }
//!     fn log(&self, record: &log::Record<'_>) { eprintln!("{}", record.args()); }
//!     fn flush(&self) {}
//! }
//! let logger = consentry::log::BreadcrumbLogger::new(Stderr);
//! log::set_logger(Box::leak(Box::new(logger))).unwrap();
//! log::set_max_level(log::LevelFilter::Info);
//! log::info!("loaded 3 profiles"); // printed, and kept as a breadcrumb when reporting is on
//! ```

use sentry::protocol::Breadcrumb;

use crate::report::BREADCRUMBS;

/// A `log::Log` that records breadcrumbs and forwards to another logger.
///
/// ```
/// # struct Quiet;
/// # impl log::Log for Quiet {
/// #     fn enabled(&self, _: &log::Metadata<'_>) -> bool { false }
/// #     fn log(&self, _: &log::Record<'_>) {}
/// #     fn flush(&self) {}
/// # }
/// use log::Log;
/// let logger = consentry::log::BreadcrumbLogger::new(Quiet);
/// assert!(logger.enabled(&log::Metadata::builder().level(log::Level::Warn).build()));
/// ```
#[derive(Debug)]
pub struct BreadcrumbLogger<L> {
    inner: L,
    level: log::LevelFilter,
}

impl<L: log::Log> BreadcrumbLogger<L> {
    /// Wraps `inner`; records at `Info` and above become breadcrumbs.
    ///
    /// ```
    /// # struct Quiet;
    /// # impl log::Log for Quiet {
    /// #     fn enabled(&self, _: &log::Metadata<'_>) -> bool { false }
    /// #     fn log(&self, _: &log::Record<'_>) {}
    /// #     fn flush(&self) {}
    /// # }
    /// let logger = consentry::log::BreadcrumbLogger::new(Quiet);
    /// # let _ = logger;
    /// ```
    pub fn new(inner: L) -> Self {
        BreadcrumbLogger {
            inner,
            level: log::LevelFilter::Info,
        }
    }

    /// Records at `level` and above become breadcrumbs.
    ///
    /// ```
    /// # struct Quiet;
    /// # impl log::Log for Quiet {
    /// #     fn enabled(&self, _: &log::Metadata<'_>) -> bool { false }
    /// #     fn log(&self, _: &log::Record<'_>) {}
    /// #     fn flush(&self) {}
    /// # }
    /// let logger = consentry::log::BreadcrumbLogger::new(Quiet).breadcrumb_level(log::LevelFilter::Debug);
    /// # let _ = logger;
    /// ```
    #[must_use]
    pub fn breadcrumb_level(mut self, level: log::LevelFilter) -> Self {
        self.level = level;
        self
    }
}

fn level(level: log::Level) -> sentry::Level {
    match level {
        log::Level::Error => sentry::Level::Error,
        log::Level::Warn => sentry::Level::Warning,
        log::Level::Info => sentry::Level::Info,
        log::Level::Debug | log::Level::Trace => sentry::Level::Debug,
    }
}

impl<L: log::Log> log::Log for BreadcrumbLogger<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level || self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() <= self.level && crate::switch::crash_on() {
            BREADCRUMBS.add(Breadcrumb {
                ty: "log".into(),
                category: Some(record.target().to_owned()),
                message: Some(record.args().to_string()),
                level: level(record.level()),
                ..Default::default()
            });
        }
        if self.inner.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}
