//! Consent on disk, for a running process: the decision `init` made, re-read from the
//! settings file whenever it changed, at the moment of every send and store.
//!
//! The change check is a stat of the settings file (device, inode, length, modification
//! time), taken *before* the file is read: a change that lands while it is being read is
//! seen by the next check, never missed. Atomic writes give a new inode, so even a change
//! within the file system's time resolution is seen.

use std::sync::Mutex;

use uuid::Uuid;

use crate::config::Config;
use crate::consent::{self, Decision, NextStep};
use crate::env::EnvSnapshot;
use crate::fsx::{self, Stamp};
use crate::paths::Paths;
use crate::settings::Settings;

/// [`consent::decide_for`] on loaded settings, plus one check only a real file needs: when
/// the decision would send or prompt, the settings directory must be writable. A file that
/// says yes in a directory that cannot be written would keep sending after a "no" that
/// cannot be recorded, so such settings count as unusable (nothing is sent).
pub(crate) fn decide_on_disk(
    config: &Config,
    env: &EnvSnapshot,
    mut settings: Result<Settings, String>,
    interactive: bool,
) -> (Result<Settings, String>, Decision) {
    let decide = |settings: &Result<Settings, String>| {
        consent::decide_for(
            config,
            env,
            settings
                .as_ref()
                .map(Settings::data)
                .map_err(String::as_str),
            interactive,
        )
    };
    let mut decision = decide(&settings);
    if (!decision.is_off() || matches!(decision.next, NextStep::Ask | NextStep::Notice))
        && let Ok(s) = &settings
        && let Err(e) = s.check_writable()
    {
        settings = Err(e.to_string());
        decision = decide(&settings);
    }
    (settings, decision)
}

/// Loads the settings, reporting a recovered corrupt file once. `Err` says why they cannot
/// be used (then nothing is sent).
pub(crate) fn load_settings(config: &Config, paths: &Paths) -> Result<Settings, String> {
    let settings = Settings::load_for(config, paths).map_err(|e| e.to_string())?;
    if let Some(r) = settings.recovered() {
        crate::diag::warn_once("settings-corrupt", || {
            format!(
                "the settings file {} was unreadable ({}); nothing is sent until you decide again ('{} enable'); the unreadable file was kept as {}",
                settings.path().display(),
                r.problem,
                config.command(),
                r.moved_to.display()
            )
        });
    }
    Ok(settings)
}

/// The kinds a settings file records a "no" for (not a rule of the environment: those
/// are not the user's decision about what waits).
pub(crate) fn recorded_no(data: &crate::settings::SettingsData) -> Withdrawn {
    let declined = !data.sync || (data.consent.decided && !data.consent.granted);
    Withdrawn {
        crash: declined || data.crash_reports.is_off(),
        usage: declined || data.usage.is_off(),
        review: false,
        // Dumps are checked where they are used (adopted, sent), not by reading every
        // waiting report at each start.
        minidumps: false,
    }
}

/// What a re-read found withdrawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Withdrawn {
    pub(crate) crash: bool,
    pub(crate) usage: bool,
    /// The settings now ask for crash reports to wait for review (fewer sends: at once).
    pub(crate) review: bool,
    /// The user's yes to minidumps was taken back.
    pub(crate) minidumps: bool,
}

/// The live consent of one process.
#[derive(Debug)]
pub(crate) struct ConsentOnDisk {
    config: Config,
    env: EnvSnapshot,
    paths: Paths,
    decision: Mutex<Decision>,
    /// The anonymous id and the salt from the settings.
    ids: Mutex<(Uuid, String)>,
    /// The stamp of the settings file when last read (`Some(None)`: it did not exist).
    seen: Mutex<Option<Option<Stamp>>>,
    /// When the consent in force was given (from the settings); nothing captured before it
    /// is uploaded. `None`: no such limit (consent from the environment, or none needed).
    consent_since: Mutex<Option<std::time::SystemTime>>,
    /// The user's yes to minidumps: read at the start, cleared by a later "no".
    minidumps_yes: std::sync::atomic::AtomicBool,
}

/// When the recorded consent was given, if it is a "yes" recorded with a time.
pub(crate) fn consent_since(data: &crate::settings::SettingsData) -> Option<std::time::SystemTime> {
    let c = &data.consent;
    if !(c.decided && c.granted) {
        return None;
    }
    // A file without the moment (written before it was recorded) sets no limit; a moment
    // that does not parse fails closed: consent counts from now.
    let at = c.at.as_deref()?;
    Some(
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .map_or_else(
                |_| std::time::SystemTime::now(),
                std::time::SystemTime::from,
            ),
    )
}

impl ConsentOnDisk {
    pub(crate) fn new(
        config: Config,
        env: EnvSnapshot,
        paths: Paths,
        decision: Decision,
        ids: (Uuid, String),
    ) -> ConsentOnDisk {
        ConsentOnDisk {
            config,
            env,
            paths,
            decision: Mutex::new(decision),
            ids: Mutex::new(ids),
            seen: Mutex::new(None),
            consent_since: Mutex::new(None),
            minidumps_yes: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// When the consent in force was given; see [`consent_since`].
    pub(crate) fn consent_since(&self) -> Option<std::time::SystemTime> {
        self.consent_since.lock().ok().and_then(|t| *t)
    }

    pub(crate) fn set_consent_since(&self, since: Option<std::time::SystemTime>) {
        if let Ok(mut t) = self.consent_since.lock() {
            *t = since;
        }
    }

    pub(crate) fn env(&self) -> &EnvSnapshot {
        &self.env
    }

    pub(crate) fn decision(&self) -> Decision {
        self.decision
            .lock()
            .map(|d| d.clone())
            .unwrap_or_else(|_| Decision::off("disabled: internal state unavailable"))
    }

    pub(crate) fn set_decision(&self, decision: Decision) {
        if let Ok(mut d) = self.decision.lock() {
            *d = decision;
        }
    }

    /// The anonymous id and the salt.
    pub(crate) fn ids(&self) -> (Uuid, String) {
        self.ids
            .lock()
            .map(|ids| ids.clone())
            .unwrap_or_else(|_| (Uuid::nil(), String::new()))
    }

    /// Takes note of the settings file as it is now (after `init` or the prompt wrote it).
    pub(crate) fn remember_version(&self) {
        let stamp = self.paths.settings_file().and_then(|p| fsx::stamp(&p));
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(stamp);
        }
    }

    /// Marks kinds withdrawn in this process (`disable` called here).
    pub(crate) fn withdraw(&self, crash: bool, usage: bool) {
        if let Ok(mut d) = self.decision.lock() {
            d.crash &= !crash;
            d.usage &= !usage;
            let reason = "disabled in this process (consentry::disable)";
            if crash {
                d.crash_mode = crate::settings::Mode::Off;
                d.crash_reason = reason.to_owned();
                d.crash_reasons.insert(0, reason.to_owned());
            }
            if usage {
                d.usage_mode = crate::settings::Mode::Off;
                d.usage_reason = reason.to_owned();
                d.usage_reasons.insert(0, reason.to_owned());
            }
        }
    }

    /// Whether a full minidump may be made, kept or attached now: crash reports are on
    /// (sent, not kept locally), the app turned minidumps on, and the user's own yes to them
    /// (`minidumps=true`) was in the settings at the start and has not been taken back
    /// since (see [`ConsentOnDisk::recheck`], which the caller runs first).
    pub(crate) fn minidumps_allowed(&self) -> bool {
        let d = self.decision();
        self.config.minidumps
            && d.crash
            && d.crash_mode == crate::settings::Mode::On
            && self
                .minidumps_yes
                .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The user's yes to minidumps in the settings read at the start.
    pub(crate) fn note_minidumps_yes(&self, yes: bool) {
        self.minidumps_yes
            .store(yes, std::sync::atomic::Ordering::Release);
    }

    /// Re-reads the settings if the file changed since the last read, and applies what they
    /// say now. Returns the kinds that this withdrew. A "yes" given in another process takes
    /// effect at the next start, never mid-run; a "no" at once.
    pub(crate) fn recheck(&self) -> Withdrawn {
        let Some(path) = self.paths.settings_file() else {
            return Withdrawn::default();
        };
        // Stamp first, then read: see the module docs.
        let stamp = fsx::stamp(&path);
        let unchanged = self
            .seen
            .lock()
            .map(|seen| *seen == Some(stamp))
            .unwrap_or(false);
        if unchanged {
            return Withdrawn::default();
        }
        let settings = Settings::load_from(&path).map_err(|e| e.to_string());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(stamp);
        }
        let (settings, decision) = decide_on_disk(&self.config, &self.env, settings, false);
        if let Ok(s) = &settings {
            if let Ok(mut ids) = self.ids.lock() {
                ids.0 = s.anonymous_id();
            }
            self.set_consent_since(consent_since(s.data()));
        }
        let was = self.decision();
        // A "no" to minidumps counts at once, a yes from the next start.
        let minidumps_now = settings.as_ref().is_ok_and(|s| s.data().minidumps);
        let minidumps_taken_back = !minidumps_now
            && self
                .minidumps_yes
                .swap(false, std::sync::atomic::Ordering::AcqRel);
        let withdrawn = Withdrawn {
            crash: was.crash && !decision.crash,
            usage: was.usage && !decision.usage,
            review: settings.as_ref().is_ok_and(|s| s.data().review),
            minidumps: minidumps_taken_back,
        };
        let mut merged = decision;
        merged.crash &= was.crash;
        merged.usage &= was.usage;
        // A mode changes at the next start too, except towards fewer sends: on -> local
        // takes effect now (nothing more leaves), local -> on waits.
        let keep = |was: crate::settings::Mode, now: crate::settings::Mode, on: bool| {
            use crate::settings::Mode::*;
            match (on, was, now) {
                (false, _, _) => Off,
                (true, Local, _) | (true, _, Local) => Local,
                _ => On,
            }
        };
        merged.crash_mode = keep(was.crash_mode, merged.crash_mode, merged.crash);
        merged.usage_mode = keep(was.usage_mode, merged.usage_mode, merged.usage);
        self.set_decision(merged);
        withdrawn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SettingsData;

    fn on() -> Decision {
        let mut d = Decision::off("x");
        d.crash = true;
        d.usage = true;
        d.crash_mode = crate::settings::Mode::On;
        d.usage_mode = crate::settings::Mode::On;
        d
    }

    #[test]
    fn the_moment_of_consent_fails_closed() {
        let mut data = SettingsData::default();
        data.consent.decided = true;
        data.consent.granted = true;
        data.consent.at = Some("2026-11-01T00:00:00Z".into());
        let given = consent_since(&data).unwrap();
        assert!(given < std::time::SystemTime::now());
        data.consent.at = Some("yesterday".into());
        let before = std::time::SystemTime::now();
        assert!(
            consent_since(&data).unwrap() >= before,
            "unreadable: from now"
        );
        data.consent.at = None;
        assert_eq!(
            consent_since(&data),
            None,
            "a file from before the moment was kept"
        );
    }

    #[test]
    fn a_no_written_elsewhere_is_seen_at_the_next_check_and_a_yes_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new("app", "1.0")
            .config_dir(dir.path())
            .data_dir(dir.path());
        let env = EnvSnapshot::from_pairs([("APP_TELEMETRY", "1")]);
        let paths = Paths::resolve(&config, &env);
        let path = paths.settings_file().unwrap();
        let mut s = Settings::load_from(&path).unwrap();
        let gate = ConsentOnDisk::new(config, env, paths, on(), (Uuid::nil(), String::new()));
        gate.remember_version();
        assert_eq!(gate.recheck(), Withdrawn::default(), "nothing changed");
        s.update([("crash_reports", false)]).unwrap();
        assert_eq!(
            gate.recheck(),
            Withdrawn {
                crash: true,
                ..Withdrawn::default()
            }
        );
        assert!(!gate.decision().crash && gate.decision().usage);
        // A "yes" given in another process waits for the next start.
        s.update([("crash_reports", true)]).unwrap();
        assert_eq!(gate.recheck(), Withdrawn::default());
        assert!(!gate.decision().crash);
        // `review=true` set elsewhere holds reports from the next check on.
        s.update([("review", true)]).unwrap();
        assert!(gate.recheck().review);
    }

    #[test]
    fn a_no_to_minidumps_counts_at_once_and_a_yes_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new("app", "1.0")
            .config_dir(dir.path())
            .data_dir(dir.path())
            .minidumps(true);
        let env = EnvSnapshot::from_pairs([("APP_TELEMETRY", "1")]);
        let paths = Paths::resolve(&config, &env);
        let path = paths.settings_file().unwrap();
        let mut s = Settings::load_from(&path).unwrap();
        s.update([("minidumps", true)]).unwrap();
        let gate = ConsentOnDisk::new(
            config.clone(),
            env.clone(),
            paths.clone(),
            on(),
            (Uuid::nil(), String::new()),
        );
        gate.remember_version();
        assert!(
            !gate.minidumps_allowed(),
            "not until the start noted the user's yes"
        );
        gate.note_minidumps_yes(true);
        assert!(gate.minidumps_allowed());
        s.update([("minidumps", false)]).unwrap();
        assert!(gate.recheck().minidumps, "taken back");
        assert!(!gate.minidumps_allowed());
        s.update([("minidumps", true)]).unwrap();
        assert!(!gate.recheck().minidumps);
        assert!(!gate.minidumps_allowed(), "a yes waits for the next start");
        // Without the app's switch, or with crash reports kept locally, never.
        let off = ConsentOnDisk::new(
            config.clone().minidumps(false),
            env.clone(),
            paths.clone(),
            on(),
            (Uuid::nil(), String::new()),
        );
        off.note_minidumps_yes(true);
        assert!(!off.minidumps_allowed());
        let mut local = on();
        local.crash_mode = crate::settings::Mode::Local;
        let local = ConsentOnDisk::new(config, env, paths, local, (Uuid::nil(), String::new()));
        local.note_minidumps_yes(true);
        assert!(!local.minidumps_allowed());
    }

    #[test]
    fn an_unreadable_file_withdraws_everything() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new("app", "1.0")
            .config_dir(dir.path())
            .data_dir(dir.path());
        let env = EnvSnapshot::from_pairs([("APP_TELEMETRY", "1")]);
        let paths = Paths::resolve(&config, &env);
        let path = paths.settings_file().unwrap();
        Settings::load_from(&path).unwrap();
        let gate = ConsentOnDisk::new(config, env, paths, on(), (Uuid::nil(), String::new()));
        gate.remember_version();
        std::fs::write(&path, b"{\"sync\": \"false\"}").unwrap();
        let w = gate.recheck();
        assert!(w.crash && w.usage, "{w:?}");
    }

    #[test]
    fn recorded_noes() {
        let mut d = SettingsData::default();
        assert_eq!(recorded_no(&d), Withdrawn::default());
        d.usage = crate::settings::Mode::Off;
        assert_eq!(
            recorded_no(&d),
            Withdrawn {
                usage: true,
                ..Withdrawn::default()
            }
        );
        d.sync = false;
        assert!(recorded_no(&d).crash);
    }
}
