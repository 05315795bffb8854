//! Where consentry keeps its files: one config directory and one data directory per app.
//!
//! Nothing is ever written outside these two directories.

use std::path::PathBuf;

use crate::config::Config;
use crate::env::EnvSnapshot;

/// The resolved locations for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paths {
    config_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
}

impl Paths {
    /// Resolves the directories: `<APP>_CONFIG_DIR` / `<APP>_DATA_DIR`, then the config's
    /// overrides, then the OS defaults (`dirs::config_dir()` and `dirs::data_local_dir()`, each
    /// followed by the app name). `None` when the OS has no such directory.
    pub(crate) fn resolve(config: &Config, env: &EnvSnapshot) -> Paths {
        Paths::resolve_in(config, env, dirs::config_dir(), dirs::data_local_dir())
    }

    /// [`Paths::resolve`] with the OS base directories given (tests).
    fn resolve_in(
        config: &Config,
        env: &EnvSnapshot,
        os_config: Option<PathBuf>,
        os_data: Option<PathBuf>,
    ) -> Paths {
        let prefix = config.env_prefix();
        // Read as bytes: a directory whose name is not UTF-8 is still a directory.
        let from_env = |suffix: &str| {
            env.get_os(&format!("{prefix}_{suffix}"))
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        // The app name becomes a path component only once it is known to be one word
        // (`../x` would leave the OS directory).
        let name_ok = crate::config::validate_app_name(&config.app_name).is_ok();
        let default =
            |base: Option<PathBuf>| base.filter(|_| name_ok).map(|d| d.join(&config.app_name));
        // A consent group shares one settings file (consent, anonymous id) among its apps:
        // it lives in the group's directory. Each app keeps its own data directory.
        let group_ok = config
            .consent_group
            .as_deref()
            .is_some_and(|g| crate::config::validate_app_name(g).is_ok());
        let config_default = |base: Option<PathBuf>| match &config.consent_group {
            Some(group) if group_ok => base.map(|d| d.join(group)),
            _ => default(base),
        };
        let config_dir = from_env("CONFIG_DIR")
            .or_else(|| config.config_dir.clone())
            .or_else(|| config_default(os_config));
        let data_dir = from_env("DATA_DIR")
            .or_else(|| config.data_dir.clone())
            .or_else(|| default(os_data));
        Paths {
            config_dir,
            data_dir,
        }
    }

    /// [`Paths::resolve`] with this process's environment.
    pub(crate) fn of(config: &Config) -> Paths {
        Paths::resolve(config, &EnvSnapshot::from_process(&config.env_prefix()))
    }

    /// `settings.json`.
    pub(crate) fn settings_file(&self) -> Option<PathBuf> {
        self.config_dir.as_ref().map(|d| d.join("settings.json"))
    }

    /// The outbox directory: one file per envelope waiting to be sent.
    pub(crate) fn outbox_dir(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("outbox"))
    }

    /// The audit log: every payload that left the machine, as sent.
    pub(crate) fn audit_log(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("sent.jsonl"))
    }

    /// Server-imposed pauses and unreachable endpoints, kept across runs.
    pub(crate) fn pauses_file(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("pauses.json"))
    }

    /// Crash reports kept on this machine only (local mode, or saved while reporting is off):
    /// never sent automatically, only by the user's `telemetry send`.
    pub(crate) fn kept_dir(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("kept"))
    }

    /// Records of native crashes (signals), written by the signal handler, turned into
    /// reports at the next start.
    pub(crate) fn native_dir(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("native"))
    }

    /// Usage events waiting to be sent (scrubbed), kept across runs.
    pub(crate) fn usage_dir(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("usage"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consent_group_shares_the_settings_and_keeps_data_apart() {
        let base = Some(PathBuf::from("/base/config"));
        let data = Some(PathBuf::from("/base/data"));
        let env = EnvSnapshot::default();
        let cli = Config::new("acme-cli", "1").consent_group("acme");
        let daemon = Config::new("acme-daemon", "1").consent_group("acme");
        let a = Paths::resolve_in(&cli, &env, base.clone(), data.clone());
        let b = Paths::resolve_in(&daemon, &env, base.clone(), data.clone());
        assert_eq!(a.settings_file(), b.settings_file());
        assert_eq!(
            a.settings_file(),
            Some(PathBuf::from("/base/config/acme/settings.json"))
        );
        assert_ne!(a.outbox_dir(), b.outbox_dir());
        let alone = Paths::resolve_in(&Config::new("other", "1"), &env, base, data);
        assert_ne!(alone.settings_file(), a.settings_file());
    }
}
