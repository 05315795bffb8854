//! Giving and withdrawing consent: what `enable` and `disable` do, for the CLI, the app's
//! own settings screen, and the prompt.
//!
//! Withdrawing consent for crash reports deletes the outbox. Withdrawing it for usage
//! rotates the anonymous id and, if the id may have been used and the usage sink supports
//! it, sends one deletion request carrying only the old id ("forget me", as Mozilla's Glean
//! does). When the sink is not known (the standalone `consentry` binary), the request is
//! recorded and the app sends it at its next start.

use std::time::Duration;

use uuid::Uuid;

use crate::config::Config;
use crate::paths::Paths;
use crate::settings::{ConsentSource, Mode, Settings, SettingsError};

/// Which kind of reporting `enable` and `disable` act on.
///
/// ```
/// assert_eq!(consentry::Scope::default(), consentry::Scope::All);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Scope {
    /// Crash reports and usage pings.
    #[default]
    All,
    /// Crash and error reports only.
    Crash,
    /// Usage pings only.
    Usage,
}

/// What `disable` did.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// consentry::enable(&config, consentry::Scope::All).unwrap();
/// let done = consentry::disable(&config, consentry::Scope::Usage).unwrap();
/// // The id may have been sent, and no sink is configured here: the app owes a deletion request.
/// assert!(done.id_rotated && done.deletion_pending && !done.deletion_sent);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disabled {
    /// Crash reports deleted from the outbox.
    pub outbox_deleted: usize,
    /// The anonymous id was replaced by a new one.
    pub id_rotated: bool,
    /// A deletion request for the old id was sent and accepted.
    pub deletion_sent: bool,
    /// A deletion request is owed and will be sent by the app at its next start.
    pub deletion_pending: bool,
}

/// Deletes what waits to be sent for the kinds whose consent was withdrawn: the crash
/// outbox, the usage store. Returns how many crash reports were deleted.
pub(crate) fn forget_waiting(paths: &Paths, crash: bool, usage: bool) -> usize {
    let mut deleted = 0;
    if crash && let Some(dir) = paths.outbox_dir() {
        deleted = crate::outbox::Outbox::new(dir, usize::MAX, u64::MAX).clear();
    }
    if crash && let Some(dir) = paths.kept_dir() {
        deleted += crate::outbox::Outbox::new(dir, usize::MAX, u64::MAX).clear();
    }
    if crash && let Some(dir) = paths.native_dir() {
        deleted += crate::native::clear(&dir);
    }
    if usage && let Some(dir) = paths.usage_dir() {
        crate::outbox::Outbox::usage(dir, usize::MAX, u64::MAX).clear();
    }
    deleted
}

/// Gives consent for `scope`, recorded as coming from `via`, in `mode` (on, or local:
/// recorded on this machine only).
pub(crate) fn enable_settings(
    settings: &mut Settings,
    scope: Scope,
    via: ConsentSource,
    mode: Mode,
    notice_version: Option<&str>,
) -> Result<(), SettingsError> {
    settings.modify(|d| {
        d.notice_version = notice_version.map(str::to_owned);
        let had_consent = d.consent.decided && d.consent.granted && d.sync;
        // From local to on is a new consent, to send: what was kept locally before it is
        // from before it (never uploaded by it). On to on keeps the moment it was given.
        let was_local = d.crash_reports == Mode::Local || d.usage == Mode::Local;
        if was_local && mode == Mode::On {
            d.consent.renew(via);
        }
        d.sync = true;
        match scope {
            Scope::All => {
                d.crash_reports = mode;
                d.usage = mode;
            }
            Scope::Crash => {
                d.crash_reports = mode;
                if !had_consent {
                    d.usage = Mode::Off;
                }
            }
            Scope::Usage => {
                d.usage = mode;
                if !had_consent {
                    d.crash_reports = Mode::Off;
                }
            }
        }
        d.consent.decide(true, via);
    })
}

/// Records an answer to the prompt.
pub(crate) fn record_answer(
    settings: &mut Settings,
    granted: bool,
    via: ConsentSource,
    notice_version: Option<&str>,
) -> Result<(), SettingsError> {
    let d = settings.data();
    let had_consent = d.consent.decided && d.consent.granted && d.sync;
    if granted && had_consent {
        // A "yes" to a new notice version: it renews what was already given (from now on:
        // nothing captured under the old notice is uploaded by it) and turns on nothing the
        // user had turned off or kept local.
        settings.modify(|d| {
            d.notice_version = notice_version.map(str::to_owned);
            d.consent.renew(via);
        })
    } else if granted {
        enable_settings(settings, Scope::All, via, Mode::On, notice_version)
    } else {
        settings.modify(|d| {
            d.sync = false;
            d.consent.decide(false, via);
        })
    }
}

/// Withdraws consent for `scope` in the settings: flags, the consent record, and for usage
/// a new anonymous id (the old one is owed a deletion request if it may have been used).
fn disable_settings(
    settings: &mut Settings,
    scope: Scope,
    via: ConsentSource,
) -> Result<Option<Uuid>, SettingsError> {
    let retired = std::cell::Cell::new(None);
    settings.withdraw(|d| {
        match scope {
            Scope::All => {
                d.sync = false;
                d.consent.decide(false, via);
            }
            Scope::Crash => d.crash_reports = Mode::Off,
            Scope::Usage => d.usage = Mode::Off,
        }
        if scope != Scope::Crash
            && let Some(old) = d.retire_id()
        {
            retired.set(Some(old));
        }
    })?;
    Ok(retired.get())
}

/// Gives consent for `scope` (what `telemetry enable` does), recorded as given by the app.
/// It takes effect at the app's next start.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use consentry::{Config, Scope};
/// let config = Config::new("myapp", "1.0.0").config_dir(dir.path());
/// consentry::enable(&config, Scope::Crash).unwrap();
/// let settings = consentry::Settings::load(&config).unwrap();
/// assert!(settings.crash_reports() && !settings.usage());
/// ```
pub fn enable(config: &Config, scope: Scope) -> Result<(), SettingsError> {
    enable_with(config, scope, ConsentSource::Api, Mode::On)
}

/// Turns `scope` to local mode (what `telemetry enable --local` does): reports are built,
/// scrubbed and kept on this machine, where `telemetry log` and `pending` show them, and
/// nothing is sent. What is recorded in local mode is never sent by a later `enable`; only
/// an explicit `telemetry send` sends it.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use consentry::{Config, Mode, Scope};
/// let config = Config::new("myapp", "1.0.0").config_dir(dir.path());
/// consentry::enable_local(&config, Scope::All).unwrap();
/// let settings = consentry::Settings::load(&config).unwrap();
/// assert_eq!(settings.crash_mode(), Mode::Local);
/// ```
pub fn enable_local(config: &Config, scope: Scope) -> Result<(), SettingsError> {
    enable_with(config, scope, ConsentSource::Api, Mode::Local)
}

pub(crate) fn enable_with(
    config: &Config,
    scope: Scope,
    via: ConsentSource,
    mode: Mode,
) -> Result<(), SettingsError> {
    let paths = Paths::of(config);
    let mut settings = Settings::load_for(config, &paths)?;
    enable_settings(
        &mut settings,
        scope,
        via,
        mode,
        crate::consent::notice_version(config).as_deref(),
    )
}

/// Withdraws consent for `scope` (what `telemetry disable` does): effective at once in this
/// process and at the next send in any other, deletes waiting crash reports, and for usage
/// rotates the anonymous id and asks the sink to delete the old one.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use consentry::{Config, Scope};
/// let config = Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// let done = consentry::disable(&config, Scope::All).unwrap();
/// assert!(done.id_rotated);
/// assert!(!consentry::Settings::load(&config).unwrap().sync());
/// ```
pub fn disable(config: &Config, scope: Scope) -> Result<Disabled, SettingsError> {
    disable_with(config, scope, ConsentSource::Api)
}

pub(crate) fn disable_with(
    config: &Config,
    scope: Scope,
    via: ConsentSource,
) -> Result<Disabled, SettingsError> {
    let paths = Paths::of(config);
    let crash = scope != Scope::Usage;
    let usage = scope != Scope::Crash;
    // What the user asked to stop stops first, whatever happens to the settings file: this
    // process sends nothing more, and what waits is deleted (which also frees space on a
    // full disk for the "no" to be written).
    let runtime = crate::runtime::current();
    if let Some(rt) = &runtime {
        rt.turn_off(crash, usage);
    }
    let mut done = Disabled {
        id_rotated: usage,
        ..Disabled::default()
    };
    done.outbox_deleted = forget_waiting(&paths, crash, usage);
    let mut settings = Settings::load_for(config, &paths)?;
    let retired = disable_settings(&mut settings, scope, via)?;
    if let Some(old) = retired {
        match &config.usage_sink {
            Some(sink) if sink.supports_deletion() => {
                let prefix = config.env_prefix();
                let debug = crate::env::EnvSnapshot::from_process(&prefix).debug(&prefix);
                let own;
                let egress = match &runtime {
                    Some(rt) => &rt.egress,
                    None => {
                        own = crate::egress::Egress::new(
                            Box::new(crate::egress::Http),
                            paths.audit_log(),
                        );
                        &own
                    }
                };
                if crate::ping::send_deletion(egress, sink, old, Duration::from_secs(5), debug) {
                    settings.modify(|d| d.pending_deletion.retain(|id| *id != old))?;
                    done.deletion_sent = true;
                } else {
                    done.deletion_pending = true;
                }
            }
            Some(_) => {
                // The sink has no deletion API: nothing is owed.
                settings.modify(|d| d.pending_deletion.retain(|id| *id != old))?;
            }
            None => done.deletion_pending = true,
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with(json: &str) -> (tempfile::TempDir, Settings) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(&path, json).unwrap();
        let settings = Settings::load_from(&path).unwrap();
        (dir, settings)
    }

    #[test]
    fn a_yes_to_a_new_notice_keeps_a_kind_turned_off_or_local() {
        let (_dir, mut settings) = settings_with(
            r#"{"sync": true, "crash_reports": "local", "usage": false,
                "consent": {"decided": true, "granted": true, "via": "cli",
                            "at": "2026-11-01T00:00:00Z"},
                "notice_version": "v1"}"#,
        );
        record_answer(&mut settings, true, ConsentSource::Prompt, Some("v2")).unwrap();
        let d = settings.data();
        assert_eq!(d.crash_reports, Mode::Local);
        assert_eq!(d.usage, Mode::Off);
        assert_eq!(d.notice_version.as_deref(), Some("v2"));
        assert_ne!(
            d.consent.at.as_deref(),
            Some("2026-11-01T00:00:00Z"),
            "a yes to a new notice counts from now"
        );

        // A first "yes" turns both on.
        let (_dir, mut fresh) = settings_with("{}");
        record_answer(&mut fresh, true, ConsentSource::Prompt, Some("v2")).unwrap();
        assert_eq!(fresh.data().crash_reports, Mode::On);
        assert_eq!(fresh.data().usage, Mode::On);
    }
}
