//! Privacy-respecting crash reporting, error reporting and anonymous usage pings for Rust
//! apps and libraries: nothing leaves the user's machine without consent, and nothing that
//! does carries personal data.
//!
//! Apps call [`init`] once in `main`; libraries call [`capture_error`] and [`track`], which
//! cost one atomic load when the host app never called `init` or the user said no.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! let guard = consentry::init(
//!     consentry::Config::new("myapp", "1.0.0")          // or consentry::app_info!()
//! #       .config_dir(dir.path()).data_dir(dir.path())
//!         .dsn("https://key@o0.ingest.sentry.io/0")      // optional: none = local outbox
//!         .usage_sink(consentry::Sink::json("https://collect.example.com/v1"))
//!         .policy(consentry::Policy::OptIn),            // the default
//! );
//! consentry::ask(); // y/N prompt on the first interactive run
//!
//! let err = std::io::Error::other("disk full");
//! consentry::capture_error(&err);                       // from any crate, any time
//! consentry::track("train", [("task", "detect")]);      // usage ping
//! drop(guard); // at the end of main: flushes, for at most 2 s
//! ```
//!
//! What happens to a report: the panic hook or [`capture_error`] builds a Sentry event
//! (the whole `source()` chain, a backtrace); the background worker adds tags that help
//! without identifying (app and OS version, architecture, Rust version), removes the host
//! name, scrubs every string with [`scrub`] (home paths, user and host names, secrets,
//! emails, IPs, card numbers, ...), writes it to the on-disk outbox, and sends it to the DSN.
//! It leaves the outbox only when the server accepted it. Every payload sent is appended to
//! an audit log the user can read with `telemetry log`.
//!
//! Users say no with `<app> telemetry disable` (or `sync=false` in the settings file),
//! `<APP>_TELEMETRY=0`, or `DO_NOT_TRACK=1`; CI and non-zero distributed ranks report
//! nothing.
//!
//! # Cargo features
//!
//! | feature   | default | what it adds |
//! |-----------|---------|--------------|
//! | `cli`     | yes     | the `consentry` binary and the embeddable `telemetry` clap subcommand (`consentry::cli`) |
//! | `anyhow`  | no      | `consentry::capture_anyhow`: an `anyhow::Error`'s chain and backtrace |
//! | `log`     | no      | `consentry::log::BreadcrumbLogger`: `log` records as breadcrumbs |
//! | `tracing` | no      | `consentry::tracing::BreadcrumbLayer`: `tracing` events as breadcrumbs |
//!
//! Libraries depend on [`consentry-api`](consentry_api) instead: the same `capture_error`,
//! `capture_message` and `track`, with no dependencies.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
mod bound;
mod config;
mod consent;
mod control;
mod dedup;
mod diag;
mod egress;
mod env;
mod facts;
mod fsx;
mod gate;
mod http;
mod identity;
mod inspect;
mod minidump;
mod modules;
mod native;
mod outbox;
mod panic;
mod paths;
mod ping;
mod pipeline;
mod prompt;
mod report;
mod review;
mod runtime;
mod settings;
mod sink;
mod switch;
mod transport;
mod unwind;
mod upload;
mod usage;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "log")]
pub mod log;
#[cfg(feature = "tracing")]
pub mod tracing;

/// The PII scrubbing engine (the `consentry-scrubbers` crate), usable on its own.
pub use consentry_scrubbers as scrub;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

pub use crate::config::{
    BeforeSend, Config, ConfigError, ConfigErrorKind, Fingerprint, Ignore, Policy,
};
pub use crate::consent::Decision;
pub use crate::control::{Disabled, Scope, disable, enable, enable_local};
#[allow(deprecated)]
pub use crate::inspect::status_of;
pub use crate::inspect::{
    PendingReport, Preview, PreviewError, Status, pending_reports, preview, privacy_statement,
    status_on_disk,
};
pub use crate::review::{ReviewError, Waiting, find_report, waiting_reports};
pub use crate::runtime::Guard;
pub use crate::settings::{
    Consent, ConsentSource, Mode, Recovery, SCHEMA_VERSION, SETTABLE_KEYS, Settings, SettingsError,
};
pub use crate::sink::Sink;
/// The facade libraries depend on ([`consentry-api`](consentry_api)): these are the same
/// functions and types, so `consentry::capture_error` and `consentry_api::capture_error`
/// reach the same backend.
pub use consentry_api::{
    AsError, EventId, Level, MAX_NAME_LEN, MAX_PROPS, MAX_VALUE_LEN, NO_PROPS, Prop, UsageEvent,
    add_breadcrumb, capture_error, capture_message, event_catalog, props, track, track_event,
    valid_name,
};

use crate::report::Kind;

/// Sets consentry up for this process and returns the guard that flushes when dropped.
///
/// Resolves the consent decision from the environment, the settings file and `config`.
/// When crash reports are off it starts no thread, opens no socket and installs no hook.
/// When on, it installs the panic hook (chaining the previous one) and starts one
/// background worker. It never fails toward the app: a bad name or DSN, or an unusable
/// directory, is reported once on stderr and reporting stays off.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let guard = consentry::init(consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path()));
/// // Opt-in and nobody said yes yet: nothing will be sent.
/// assert!(consentry::current_decision().is_off());
/// drop(guard);
/// ```
pub fn init(config: Config) -> Guard {
    match catch_unwind(AssertUnwindSafe(|| runtime::init(config))) {
        Ok(guard) => guard,
        Err(_) => {
            diag::warn_once("init-panic", || {
                "internal error in consentry::init; reporting is off".to_owned()
            });
            switch::set_crash(false);
            switch::set_usage(false);
            runtime::init_failed()
        }
    }
}

/// The decision this process is running with now, with the reason for each kind: what
/// `init` decided, as changed since by `ask`, `disable` or a "no" read from the settings
/// (off before `init`). For what the files and environment say for any app, without running
/// it, see [`status_on_disk`].
///
/// ```
/// let decision = consentry::current_decision();
/// assert!(!decision.crash);
/// assert!(decision.crash_reason.contains("init"));
/// ```
pub fn current_decision() -> Decision {
    runtime::current()
        .map(|rt| rt.decision())
        .unwrap_or_else(|| Decision::off("disabled: consentry::init was not called"))
}

/// The environment variables a child process needs to keep this process's "no", even where
/// its settings directory differs (a sidecar, a daemon, the app spawning itself):
/// `DO_NOT_TRACK=1` and `<APP>_TELEMETRY=0` when the user or a rule said no,
/// `<APP>_TELEMETRY_OFF=usage` (`crash`, `crash,usage`; also `<GROUP>_TELEMETRY_OFF` in a
/// consent group) when a kind is off or kept on this machine only. Such a variable only
/// ever turns a kind off in the child; a "yes" is never passed on. Empty before `init`,
/// when everything is on, and when nobody has decided yet.
///
/// ```
/// let mut cmd = std::process::Command::new("true");
/// cmd.envs(consentry::child_env());
/// ```
pub fn child_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    catch_unwind(|| {
        runtime::current()
            .map(|rt| {
                let prefixes: Vec<String> = std::iter::once(rt.config.env_prefix())
                    .chain(rt.config.group_env_prefix())
                    .collect();
                consent::child_vars(&prefixes, &rt.decision())
            })
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect()
    })
    .unwrap_or_default()
}

/// Gives `cmd` this process's "no" (see [`child_env`]): a sidecar, a daemon or the app
/// spawned again keeps it.
///
/// ```
/// let mut cmd = std::process::Command::new("true");
/// consentry::inherit_consent(&mut cmd).arg("--version");
/// ```
pub fn inherit_consent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    cmd.envs(child_env())
}

/// The old name of [`current_decision`].
#[deprecated(
    since = "0.2.0",
    note = "renamed `current_decision` (this process); `status_on_disk(&config)` reads the files"
)]
pub fn status() -> Decision {
    current_decision()
}

/// On the first interactive run of an opt-in app, shows what is collected and asks y/N
/// on stderr (a timeout or no answer is "no"; nothing at all is sent for a "no"). Records
/// the answer and returns the new decision. Does nothing (and returns the current decision)
/// when the user has decided, when stdin or stderr is not a terminal, in CI, or before
/// [`init`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let _guard = consentry::init(consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path()));
/// let decision = consentry::ask(); // not a terminal here: no prompt
/// assert!(decision.is_off());
/// ```
pub fn ask() -> Decision {
    catch_unwind(prompt::ask).unwrap_or_else(|_| current_decision())
}

/// [`capture_error`] with the fingerprint the server groups it by, instead of consentry's
/// default (the error's type and its innermost in-app function; see
/// [`Config::fingerprint`]).
///
/// ```
/// let err = std::io::Error::other("timed out after 30 s");
/// consentry::capture_error_grouped(&err, &["database", "timeout"]);
/// ```
pub fn capture_error_grouped<E: AsError + ?Sized>(
    err: &E,
    fingerprint: &[&str],
) -> Option<EventId> {
    if !switch::crash_on() {
        return capture_error(err);
    }
    catch_unwind(AssertUnwindSafe(|| {
        let rt = runtime::current()?;
        let mut event =
            report::event_from_dyn_error(err.as_error(), Some(std::any::type_name::<E>()));
        event.fingerprint = fingerprint
            .iter()
            .take(8)
            .map(|s| std::borrow::Cow::Owned(bound::cut(s, 256).into_owned()))
            .collect::<Vec<_>>()
            .into();
        rt.submit(event, Kind::Error, true)
            .map(|id| EventId::from_bytes(id.into_bytes()))
    }))
    .ok()
    .flatten()
}

/// Sends what is waiting (crash reports and usage pings), for at most `timeout`. Returns
/// `true` when nothing is left. What is not sent stays in the outbox for the next run.
///
/// ```
/// assert!(consentry::flush(std::time::Duration::from_millis(10)));
/// ```
pub fn flush(timeout: Duration) -> bool {
    runtime::current().is_none_or(|rt| {
        catch_unwind(AssertUnwindSafe(|| rt.flush(timeout, timeout))).unwrap_or(false)
    })
}

/// Flushes (for at most the configured flush timeout), then calls
/// [`std::process::exit`]: `process::exit` skips destructors, so without this a guard's
/// flush never runs and queued reports wait for the next start.
///
/// ```no_run
/// consentry::exit(2);
/// ```
pub fn exit(code: i32) -> ! {
    if let Some(rt) = runtime::current() {
        // What dropping the guard does: pending repeat counts too, with the same deadlines.
        let _ = catch_unwind(AssertUnwindSafe(|| rt.shutdown()));
    }
    std::process::exit(code)
}

/// Reports an `anyhow::Error`: its whole chain, and its backtrace when it captured one.
///
/// Unlike [`capture_error`], this resolves the error's backtrace on the caller's thread when
/// there is one (`RUST_BACKTRACE`/`RUST_LIB_BACKTRACE` set): std's `Backtrace` can only be
/// read through its text, and the error is borrowed. Without one, a raw backtrace of the
/// capture site is taken and symbolicated on the worker, as for `capture_error`.
///
/// ```
/// let err = anyhow::anyhow!("disk full").context("saving the model");
/// consentry::capture_anyhow(&err);
/// ```
#[cfg(feature = "anyhow")]
pub fn capture_anyhow(err: &anyhow::Error) -> Option<EventId> {
    let inner = AsRef::<dyn std::error::Error + Send + Sync>::as_ref(err);
    if !switch::crash_on() {
        // Off, or before `init`: the facade keeps it early or drops it.
        return capture_error(inner);
    }
    catch_unwind(AssertUnwindSafe(|| {
        let rt = runtime::current()?;
        let mut event = report::event_from_dyn_error(inner, None);
        // The outermost link is anyhow's own wrapper (a context or a message): its Debug
        // says only "Error".
        if let Some(top) = event.exception.values.last_mut() {
            top.ty = "anyhow::Error".into();
        }
        let bt = err.backtrace();
        let captured_bt = bt.status() == std::backtrace::BacktraceStatus::Captured;
        // `{:#}`: with each frame's address (what the server symbolicates, and what full
        // names are looked up by) and absolute paths.
        if captured_bt
            && let Some(st) = report::parsed_stacktrace(
                &report::capped_text(bt, true, report::BACKTRACE_TEXT_MAX),
                Some(&rt.config.app_name),
            )
            && let Some(top) = event.exception.values.last_mut()
        {
            top.stacktrace = Some(st);
        }
        rt.submit(event, Kind::Error, !captured_bt)
            .map(|id| EventId::from_bytes(id.into_bytes()))
    }))
    .ok()
    .flatten()
}
#[cfg(test)]
mod tidy;
