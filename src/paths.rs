//! Where consentry keeps its files: one config directory and one data directory per app.
//!
//! Nothing is ever written outside these two directories.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::env::EnvSnapshot;

/// The resolved locations for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    config_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
}

impl Paths {
    /// Resolves the directories: `<APP>_CONFIG_DIR` / `<APP>_DATA_DIR`, then the config's
    /// overrides, then the OS defaults (`dirs::config_dir()` and `dirs::data_local_dir()`, each
    /// followed by the app name). `None` when the OS has no such directory.
    pub(crate) fn resolve(config: &Config, env: &EnvSnapshot) -> Paths {
        let prefix = config.env_prefix();
        let from_env = |suffix: &str| {
            env.get(&format!("{prefix}_{suffix}"))
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        };
        let config_dir = from_env("CONFIG_DIR")
            .or_else(|| config.config_dir.clone())
            .or_else(|| dirs::config_dir().map(|d| d.join(&config.app_name)));
        let data_dir = from_env("DATA_DIR")
            .or_else(|| config.data_dir.clone())
            .or_else(|| dirs::data_local_dir().map(|d| d.join(&config.app_name)));
        Paths {
            config_dir,
            data_dir,
        }
    }

    /// The directory holding `settings.json`.
    pub fn config_dir(&self) -> Option<&Path> {
        self.config_dir.as_deref()
    }

    /// The directory holding the outbox and the audit log.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// `settings.json`.
    pub fn settings_file(&self) -> Option<PathBuf> {
        self.config_dir.as_ref().map(|d| d.join("settings.json"))
    }

    /// The outbox directory: one file per envelope waiting to be sent.
    pub fn outbox_dir(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("outbox"))
    }

    /// The audit log: every payload that left the machine, as sent.
    pub fn audit_log(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("sent.jsonl"))
    }

    /// Server-imposed rate limits, kept across runs.
    pub(crate) fn rate_limit_file(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("rate-limits.json"))
    }
}
